"""Train, save and load the basic-expression teacher.

The teacher is a :class:`~cfer.strategies.growing.GrowingClassifier` trained on the basic
classes only, with early stopping on a validation split (never on the test split). Its
frozen copy is what :class:`~cfer.strategies.distillation.BasicDistillationPlugin` distils
from.

Example:
    >>> from cfer.data.synthetic import make_synthetic_splits
    >>> from cfer.teacher import TeacherConfig, train_teacher
    >>> sp = make_synthetic_splits(classes="basic", subjects=(6, 2, 2), per_class=3)
    >>> result = train_teacher(train=sp["train"], val=sp["val"],
    ...                        config=TeacherConfig(arch="cfer_tiny", max_epochs=2))  # doctest: +SKIP
    >>> result.best_val_accuracy                                                        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cfer import taxonomy
from cfer.atomic import torch_save
from cfer.data.base import FaceDataset

__all__ = ["TeacherConfig", "TeacherResult", "build_model", "train_teacher", "evaluate", "evaluate_classes",
           "save_model", "load_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherConfig:
    """How the teacher is trained.

    Attributes:
        arch: Backbone name (a cfer model such as ``"resemotenet_slim"`` or any timm model).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        batch_size: Mini-batch size.
        max_epochs: Upper bound on epochs.
        patience: Stop after this many epochs without a better validation accuracy.
        seed: Seed of initialisation and shuffling (private generators).
        augment: Random horizontal flips and small shifts during training.
        progress: Show a tqdm bar over epochs.
        weights: Optional local weights file for the backbone (see ``cfer.models.load_weights``).
    """

    arch: str = "resemotenet_slim"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 15
    patience: int = 3
    seed: int = 0
    augment: bool = True
    progress: bool = False
    weights: str | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class TeacherResult:
    """A trained teacher and its training record."""

    model: nn.Module
    classes: tuple[str, ...]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)


def build_model(*, arch: str, num_classes: int, in_chans: int = 3, img_size: int | None = None,
                seed: int = 0, weights: str | Path | None = None) -> nn.Module:
    """A :class:`GrowingClassifier` on a fresh backbone (or one loaded from a local ``weights``
    file), all ``num_classes`` units active."""
    from cfer.models import create_backbone
    from cfer.strategies.growing import GrowingClassifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = create_backbone(arch, in_chans=in_chans, img_size=img_size, weights=weights)
        model = GrowingClassifier(backbone=backbone, initial_classes=num_classes)
    model.grow(num_classes)
    return model


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


@torch.no_grad()
def evaluate(model: nn.Module, data: FaceDataset, *, batch_size: int = 256, label_map: np.ndarray | None = None) -> float:
    """Accuracy of ``model`` on ``data`` (labels optionally mapped to output units)."""
    was = model.training
    model.eval()
    x, y = data.tensors()
    if label_map is not None:
        y = torch.as_tensor(label_map[y.numpy()])
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was)
    return correct / max(len(x), 1)


def evaluate_classes(model: nn.Module, data: FaceDataset, *, classes: tuple[str, ...]) -> tuple[float, int]:
    """Accuracy of ``model`` (outputs in ``classes`` order) on the items of ``data`` whose class
    is one of ``classes``; returns ``(accuracy, number of items)``.

    Example:
        >>> acc, n = evaluate_classes(teacher, test, classes=("happy", "sad"))   # doctest: +SKIP
    """
    sub = data.subset(np.flatnonzero(np.isin(np.asarray(data.classes)[data.labels], list(classes))))
    label_map = np.array([classes.index(c) if c in classes else -1 for c in sub.classes])
    return evaluate(model, sub, label_map=label_map), len(sub)


def train_teacher(*, train: FaceDataset, val: FaceDataset, config: TeacherConfig = TeacherConfig(),
                  classes: tuple[str, ...] | None = None) -> TeacherResult:
    """Train the basic-expression teacher with early stopping on ``val``.

    Args:
        train: Training faces (only the ``classes`` are used).
        val: Validation faces from other subjects; selects the best epoch.
        config: Architecture and optimisation settings.
        classes: The teacher's classes, in output order (default: the basic classes
            that have training items, neutral first when it has).

    Returns:
        A :class:`TeacherResult` whose model holds the best validation epoch's weights.

    Raises:
        ValueError: If a class has no training or validation item, or subjects overlap.
    """
    if classes is None:
        present = {train.classes[i] for i in np.unique(train.labels)}
        classes = tuple(c for c in (taxonomy.NEUTRAL, *taxonomy.BASIC) if c in present)
    classes = taxonomy.normalize_many(list(classes))
    if train.subjects is not None and val.subjects is not None:
        shared = set(train.subjects) & set(val.subjects)
        if shared:
            raise ValueError(f"{len(shared)} subjects are in both train and val; split by subject first")

    def pick(ds: FaceDataset, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        names = np.asarray(ds.classes)[ds.labels]
        keep = np.isin(names, classes)
        for c in classes:
            if not (names == c).any():
                raise ValueError(f"class {c!r} has no {name} items; the teacher needs every class in both splits")
        x = torch.from_numpy(ds.images[keep]).permute(0, 3, 1, 2).float().div_(255.0)
        y = torch.as_tensor([classes.index(n) for n in names[keep]])
        return x, y

    xt, yt = pick(train, "train")
    xv, yv = pick(val, "val")
    model = build_model(arch=config.arch, num_classes=len(classes), in_chans=xt.shape[1],
                        img_size=xt.shape[-1], seed=config.seed, weights=config.weights)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(config.seed)
    best, best_state, best_epoch, since, history = -1.0, None, 0, 0, []
    epochs = range(config.max_epochs)
    if config.progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="teacher", unit="epoch")
    for epoch in epochs:
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        total = 0.0
        for i in range(0, len(xt), config.batch_size):
            idx = perm[i:i + config.batch_size]
            xb = _augment(xt[idx], g) if config.augment else xt[idx]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            acc = sum((model(xv[i:i + 256]).argmax(1) == yv[i:i + 256]).sum().item()
                      for i in range(0, len(xv), 256)) / len(xv)
        history.append({"epoch": epoch, "train_loss": total / len(xt), "val_accuracy": acc})
        logger.info("teacher epoch %d: loss %.3f, val acc %.3f", epoch, total / len(xt), acc)
        if acc > best:
            best, best_state, best_epoch, since = acc, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            since += 1
            if since >= config.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return TeacherResult(model=model, classes=classes, best_epoch=best_epoch, best_val_accuracy=best, history=history)


def save_model(model: nn.Module, path: str | Path, *, arch: str, classes: tuple[str, ...], extra: dict | None = None) -> Path:
    """Save a cfer model (weights + what rebuilds it) loadable with ``weights_only=True``.

    The file is written to a temporary name and renamed, so a kill never leaves half a file.
    A student's feature-distillation projection (``cfer_feature_projection``), a training
    aid that is not part of the classifier, is left out.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "cfer-model/1", "arch": arch, "classes": list(classes),
        "num_classes": int(model.num_classes), "in_chans": _in_chans(model),
        "state_dict": {k: v for k, v in model.state_dict().items() if not k.startswith("cfer_feature_projection.")},
        "extra": extra or {},
    }
    return torch_save(payload, path)


def _in_chans(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return 3


def load_model(path: str | Path, *, img_size: int | None = None) -> tuple[nn.Module, tuple[str, ...]]:
    """Load a model saved by :func:`save_model`; returns ``(model, classes)``.

    What was saved as ``extra`` (e.g. ``{"image_size": 48}``) is on ``model.cfer_meta``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is not a cfer model file or carries pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}; train one first (e.g. cfer.teacher.train_teacher)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError and others
        raise ValueError(f"{path} cannot be loaded with weights_only=True (it carries pickled objects, "
                         f"refused for safety): {type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != "cfer-model/1":
        raise ValueError(f"{path} is not a cfer model file (save one with cfer.teacher.save_model)")
    if img_size is None:  # fixed-grid models (ViTs) are rebuilt at the size they were trained at
        img_size = (payload.get("extra") or {}).get("image_size")
    model = build_model(arch=payload["arch"], num_classes=payload["num_classes"], in_chans=payload["in_chans"],
                        img_size=img_size)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    model.cfer_meta = dict(payload.get("extra") or {})
    return model, tuple(payload["classes"])
