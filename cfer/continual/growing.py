"""A classifier whose head grows as new classes arrive, around any timm-style backbone.

The backbone is any module with ``forward_features``, ``forward_head(x, pre_logits=True)``
and ``num_features`` (every timm model, and cfer's own models). The head is Avalanche's
:class:`~avalanche.models.IncrementalClassifier`, so any Avalanche strategy grows it at
the start of each experience (``model_adaptation``), keeping the old classes' weights.

An ensemble arch (``"ensemble:cfer_tiny+resemotenet_slim@48"``) builds a
:class:`GrowingEnsemble` instead: a :class:`~cfer.models.ensemble.LateFusionEnsemble`
whose member heads are ``IncrementalClassifier`` s, so it keeps its late fusion (each
member its own head, fused outputs) and every member head grows with the stream. A
``GrowingClassifier`` around ``create_backbone("ensemble:...")`` would instead classify
the members' concatenated features with one head (early fusion).

Example:
    >>> import timm
    >>> from cfer.continual.growing import GrowingClassifier
    >>> net = GrowingClassifier(backbone=timm.create_model("resnet18", num_classes=0),
    ...                         initial_classes=6)                       # doctest: +SKIP
    >>> net(x).shape, net.forward_head(net.forward_features(x), pre_logits=True).shape  # doctest: +SKIP
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from avalanche.models import DynamicModule, IncrementalClassifier
from torch import nn

from cfer.continual.cosine_head import CosineLinear, has_cosine_head, use_cosine_head
from cfer.models.ensemble import LateFusionEnsemble
from cfer.models.features import pre_logits
from cfer.models.io import read_model_file

__all__ = ["GrowingClassifier", "GrowingEnsemble", "build_model", "load_model", "head_width", "member_classifier",
           "best_member"]


@torch.no_grad()
def _grow(head: IncrementalClassifier, num_classes: int) -> None:
    """Widen ``head`` to ``num_classes`` outputs (old rows kept, all units active)."""
    old = head.classifier
    if num_classes < old.out_features:
        raise ValueError(f"the head has {old.out_features} outputs; it can grow, not shrink to {num_classes}")
    if num_classes > old.out_features and isinstance(old, CosineLinear):
        head.classifier = old.widened(num_classes)
    elif num_classes > old.out_features:
        new = nn.Linear(old.in_features, num_classes).to(old.weight.device)
        new.weight[: old.out_features] = old.weight
        new.bias[: old.out_features] = old.bias
        head.classifier = new
    head.active_units = torch.ones(num_classes, dtype=torch.int8, device=old.weight.device)


class GrowingClassifier(DynamicModule):
    """Backbone + incremental linear head, with the timm feature API.

    Args:
        backbone: Feature extractor exposing ``forward_features``, ``forward_head`` (with
            ``pre_logits=True``) and ``num_features``. Its own classifier is not used.
        initial_classes: Width of the head before any experience.
        masking: Mask the logits of classes not trained yet (Avalanche's default).

    Attributes:
        num_features: Width of the pre-logit features.
        head: The :class:`~avalanche.models.IncrementalClassifier`.
    """

    def __init__(self, *, backbone: nn.Module, initial_classes: int = 2, masking: bool = True) -> None:
        super().__init__()
        missing = [a for a in ("forward_features", "forward_head", "num_features") if not hasattr(backbone, a)]
        if missing:
            raise TypeError(
                f"backbone {type(backbone).__name__} lacks {missing}; use a timm model or a cfer model "
                "(cfer.models.create_backbone)"
            )
        if initial_classes < 1:
            raise ValueError(f"initial_classes must be >= 1, got {initial_classes}")
        self.backbone = backbone
        self.num_features = int(backbone.num_features)
        # An identity whose output is the pre-logit features: a stable name to hook
        # (Avalanche's herding selection takes a layer name).
        self.pre_logits = nn.Identity()
        self.head = IncrementalClassifier(self.num_features, initial_out_features=initial_classes, masking=masking)

    @property
    def num_classes(self) -> int:
        """Current width of the head."""
        return int(self.head.classifier.out_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled backbone features."""
        return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the backbone features; with ``pre_logits`` stop before the head."""
        f = self.pre_logits(self.backbone.forward_head(x, pre_logits=True))
        return f if pre_logits else self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit features of a batch of images."""
        return pre_logits(self, x)

    def grow(self, num_classes: int) -> None:
        """Widen the head to ``num_classes`` outputs by hand (old rows are kept, all active)."""
        _grow(self.head, num_classes)


class GrowingEnsemble(LateFusionEnsemble, DynamicModule):
    """A :class:`~cfer.models.ensemble.LateFusionEnsemble` whose member heads grow.

    Each member head is an Avalanche :class:`~avalanche.models.IncrementalClassifier`:
    any Avalanche strategy widens all of them at each experience, as it widens a
    :class:`GrowingClassifier`'s head. Fusion, features (``pre_logits``), the ensemble
    loss (``last_member_logits``) and the arch string are the ensemble's.

    Args:
        initial_classes: Width of every member head before any experience.
        masking: Mask the logits of classes not trained yet (Avalanche's default).
        **options: :class:`~cfer.models.ensemble.LateFusionEnsemble`'s keyword arguments
            (``members``, ``img_sizes``, ``fusion``, ...), ``num_classes`` and
            ``head_factory`` excepted.

    Example:
        >>> net = GrowingEnsemble(members=["cfer_tiny", "cfer_tiny"], img_sizes=[None, 24], initial_classes=6)
        >>> net.grow(7); net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 7])
    """

    def __init__(self, *, initial_classes: int = 2, masking: bool = True, **options: object) -> None:
        for key in ("num_classes", "head_factory"):
            if key in options:
                raise TypeError(f"GrowingEnsemble takes initial_classes, not {key}")
        if initial_classes < 1:
            raise ValueError(f"initial_classes must be >= 1, got {initial_classes}")
        super().__init__(num_classes=initial_classes, head_factory=partial(IncrementalClassifier, masking=masking),
                         **options)
        self.masking = masking

    def grow(self, num_classes: int) -> None:
        """Widen every member head to ``num_classes`` outputs by hand (old rows kept, all active)."""
        for m in self.members:
            _grow(m.head, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit features (the members' concatenated features) of a batch of images."""
        return pre_logits(self, x)

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):  # noqa: ANN201
        """Also takes a plain :class:`~cfer.models.ensemble.LateFusionEnsemble`'s state
        (``members.i.head.weight``): its heads load as fully active growing heads."""
        state = dict(state_dict)
        for i in range(len(self.members)):
            pre = f"members.{i}.head."
            if pre + "weight" in state:
                for k in ("weight", "bias"):
                    state[pre + "classifier." + k] = state.pop(pre + k)
                state[pre + "active_units"] = torch.ones(state[pre + "classifier.weight"].shape[0], dtype=torch.int8)
        return super().load_state_dict(state, strict=strict, assign=assign)


def best_member(ensemble: nn.Module, *, data: object, classes: tuple[str, ...]) -> int:
    """The index of the ensemble member most accurate on ``data``, each on its own head.

    Pass validation faces (never the test faces): the member a student should start from
    (:func:`member_classifier`) is chosen like any other setting. Ties go to the first.

    Args:
        ensemble: A trained :class:`GrowingEnsemble` (or
            :class:`~cfer.models.ensemble.LateFusionEnsemble`).
        data: Labelled faces (a :class:`~cfer.data.FaceDataset`), e.g. the validation subjects.
        classes: The ensemble's classes, in output order (items of other classes are left out).

    Example:
        >>> best_member(teacher, data=splits["val"], classes=teacher_classes)   # doctest: +SKIP
        1
    """
    from cfer.continual.evaluation import evaluate_classes

    members = getattr(ensemble, "members", None)
    if not isinstance(members, nn.ModuleList):
        raise TypeError(f"best_member takes an ensemble (GrowingEnsemble), got {type(ensemble).__name__}")
    scores = [evaluate_classes(m, data, classes=classes)[0] for m in members]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def member_classifier(ensemble: nn.Module, *, member: int | str) -> GrowingClassifier:
    """A trained ensemble member as a :class:`GrowingClassifier` of its own (a copy).

    The copy has the member's backbone and its head rows, so it predicts what the member
    predicts, and it grows like any single model. A student that starts as this copy
    already knows the basic classes, as a copy of a single teacher does
    (``run_order(student=..., basic_epochs=0)``), and learns the fused ensemble's soft
    targets from then on.

    Args:
        ensemble: A trained :class:`GrowingEnsemble` (or
            :class:`~cfer.models.ensemble.LateFusionEnsemble`).
        member: The member's index, or its name as the ensemble arch spells it
            (``"resemotenet_slim"``; with its ``@size`` where it has one).

    Raises:
        TypeError: If ``ensemble`` is not an ensemble.
        ValueError: If no member has that name or index, or the member cannot stand alone
            (it resizes its input or projects its features).

    Example:
        >>> ens = GrowingEnsemble(members=["cfer_tiny", "manet_tiny"], initial_classes=6)
        >>> member_classifier(ens, member="cfer_tiny").num_classes
        6
    """
    import copy

    members = getattr(ensemble, "members", None)
    if not isinstance(members, nn.ModuleList):
        raise TypeError(f"member_classifier takes an ensemble (GrowingEnsemble), got {type(ensemble).__name__}")
    names = [m.name for m in members]
    if isinstance(member, str):
        if member not in names:
            raise ValueError(f"the ensemble has no member {member!r}; its members are {names}")
        member = names.index(member)
    if not 0 <= member < len(members):
        raise ValueError(f"member index {member} out of range; the ensemble has members 0..{len(members) - 1}")
    m = members[member]
    if m.img_size is not None or not isinstance(m.projection, nn.Identity):
        raise ValueError(f"member {m.name!r} resizes its input or projects its features, so it cannot stand alone; "
                         "pick a member without @size and without a projection, or a student of its own (build_model)")
    out = GrowingClassifier(backbone=copy.deepcopy(m.backbone), initial_classes=m.num_classes)
    head = m.head.classifier if hasattr(m.head, "classifier") else m.head
    with torch.no_grad():
        out.head.classifier.weight.copy_(head.weight)
        out.head.classifier.bias.copy_(head.bias)
    out.grow(m.num_classes)  # every unit active, as in build_model
    out.train(ensemble.training)
    out.trained_basic = True  # run_order: no basic epochs needed, as for a copy of the teacher
    return out


def head_width(state_dict: dict) -> int:
    """The head width a :class:`GrowingClassifier`'s or :class:`GrowingEnsemble`'s state
    dict holds (what a checkpointed student grows back to)."""
    for key in ("head.classifier.weight", "members.0.head.classifier.weight"):
        if key in state_dict:
            return int(state_dict[key].shape[0])
    raise ValueError("the state dict holds no growing head (head.classifier.weight or "
                     "members.0.head.classifier.weight); was it saved from a GrowingClassifier or GrowingEnsemble?")


def build_model(*, arch: str, num_classes: int, in_chans: int = 3, img_size: int | None = None,
                seed: int = 0, weights: str | Path | None = None, options: dict | None = None) -> nn.Module:
    """A :class:`GrowingClassifier` on a fresh backbone (or one loaded from a local ``weights``
    file), all ``num_classes`` units active; for an ensemble arch (``"ensemble:a+b@48"``,
    see :mod:`cfer.models.ensemble_arch`) a :class:`GrowingEnsemble` of those members.
    ``options`` are keyword arguments of the backbone's builder (not for ensembles)."""
    from cfer.models import create_backbone, is_ensemble_arch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if is_ensemble_arch(arch):
            if options:
                raise ValueError("options are the builder's arguments of one backbone; an ensemble takes none")
            from cfer.models.ensemble_arch import parse_ensemble_arch

            per_member = None if weights is None or isinstance(weights, (str, Path)) else list(weights)
            model = GrowingEnsemble(**parse_ensemble_arch(arch), initial_classes=num_classes, in_chans=in_chans,
                                    img_size=img_size, weights=per_member)
            if isinstance(weights, (str, Path)):
                from cfer.models.weights import load_weights

                load_weights(model, weights)
        else:
            backbone = create_backbone(arch, in_chans=in_chans, img_size=img_size, weights=weights, **(options or {}))
            model = GrowingClassifier(backbone=backbone, initial_classes=num_classes)
    model.grow(num_classes)
    return model


def load_model(path: str | Path, *, img_size: int | None = None) -> tuple[nn.Module, tuple[str, ...]]:
    """Rebuild a classifier saved by :func:`cfer.models.io.save_model`; returns ``(model, classes)``.

    What was saved as ``extra`` (e.g. ``{"image_size": 48}``) is on ``model.cfer_meta``; its
    ``arch_options`` (e.g. a clip model's layout and frame encoder) rebuild the model. A
    student saved with class means (:func:`cfer.continual.plugins.ncm.attached_class_means`)
    predicts by nearest class mean again.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is not a cfer model file or carries pickled objects.

    Example:
        >>> model, classes = load_model("runs/demo/teacher.pt")       # doctest: +SKIP
    """
    payload = read_model_file(path)
    if img_size is None:  # fixed-grid models (ViTs) are rebuilt at the size they were trained at
        img_size = (payload.get("extra") or {}).get("image_size")
    options = dict((payload.get("extra") or {}).get("arch_options") or {})
    if (payload["arch"].startswith("temporal") and "fusion" not in options
            and ("backbone.query" in payload["state_dict"] or "query" in payload["state_dict"])):
        options["fusion"] = "attention"  # a clip model saved when attention fusion was temporal*'s default
    model = build_model(arch=payload["arch"], num_classes=payload["num_classes"], in_chans=payload["in_chans"],
                        img_size=img_size, options=options or None)
    if has_cosine_head(payload["state_dict"]):  # a student trained with head="cosine" (cfer.continual.cosine_head)
        use_cosine_head(model)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    model.cfer_meta = dict(payload.get("extra") or {})
    if "class_means" in model.cfer_meta:  # a student that predicts by nearest class mean
        from cfer.continual.plugins.ncm import attach_class_means

        attach_class_means(model, model.cfer_meta["class_means"], scale=float(model.cfer_meta["class_means_scale"]))
    return model, tuple(payload["classes"])
