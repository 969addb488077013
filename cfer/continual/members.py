"""Train a late-fusion ensemble one member at a time, then fit its fusion weights on validation data.

Trained jointly, the ensemble loss couples the members: early stopping watches the fused
accuracy, so a strong member may stop before its best epoch, and the KL term pulls every
member towards the fused output (see :mod:`cfer.models.ensemble_loss`). Trained one by one
(``TeacherConfig(member_training="one_by_one")``), each member is an ordinary classifier:
its backbone and head learn with cross-entropy and stop at their own best validation epoch,
as the member would alone. With ``learn_weights=true`` in the arch string the fusion
weights are then fitted on the **validation** set (the members frozen; L-BFGS on the fused
cross-entropy), which is the held-out data a stacked ensemble needs: the training set
would favour whichever member memorised it best. Without it the weights stay uniform.

Each named member starts from the weights a standalone teacher of its arch gets with the
config's seed, and trains with that seed's shuffles: member ``i`` of a one-by-one ensemble
is the model ``train_teacher`` trains for that arch alone, so the ensemble is the late
fusion of the single teachers a user would otherwise compare it with. A second member of
the same arch takes the next seed (two copies of one model would be one model).

Example:
    >>> from cfer.continual.teacher import TeacherConfig, train_teacher
    >>> from cfer.data.synthetic import make_synthetic_splits
    >>> sp = make_synthetic_splits(classes="basic", subjects=(4, 2, 2), per_class=2, image_size=32)
    >>> cfg = TeacherConfig(arch="ensemble:cfer_tiny+cfer_tiny,learn_weights=true", max_epochs=1,
    ...                     member_training="one_by_one", device="cpu")
    >>> res = train_teacher(train=sp["train"], val=sp["val"], config=cfg)
    >>> sorted({h["member"] for h in res.history})
    ['cfer_tiny#0', 'cfer_tiny#1']
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from cfer.continual.evaluation import LazyItems
from cfer.continual.teacher_fit import FitResult, _sharded_accuracy, fit
from cfer.distributed import autocast, resolve_device
from cfer.models.ensemble import LateFusionEnsemble, fuse

if TYPE_CHECKING:
    from cfer.continual.teacher import TeacherConfig

__all__ = ["fit_members", "fit_fusion_weights", "member_seeds"]

logger = logging.getLogger(__name__)


def fit_members(ensemble: LateFusionEnsemble, *, xt: torch.Tensor | LazyItems, yt: torch.Tensor,
                xv: torch.Tensor | LazyItems, yv: torch.Tensor, config: TeacherConfig,
                image_size: int | None = None, channels: int | None = None) -> FitResult:
    """Train each member alone (cross-entropy, its own early stopping), then the fusion weights.

    Member ``i`` trains with ``config`` and the seed :func:`member_seeds` gives it. A named
    member first takes the initial weights ``build_model(arch=its name, seed=that seed)``
    gives, so it trains exactly as ``train_teacher`` would train it alone; members given as
    modules, members loaded from weight files (``config.weights``, or the ensemble's own
    ``weights=``) and projected members
    (``proj_dim``), which have no standalone twin, keep their weights. The fusion weights are
    fitted on ``(xv, yv)`` when the ensemble learns them (:func:`fit_fusion_weights`).

    Args:
        ensemble: The ensemble, trained in place.
        xt: Training inputs, ``yt`` their class indices.
        xv: Validation inputs, ``yv`` their class indices.
        config: The teacher's settings, used for every member.
        image_size: Side of the faces (for ``augment="faces"``).
        channels: Channels of the faces (for ``augment="faces"``).

    Returns:
        The fused model's validation accuracy; ``best_epoch`` the latest of the members' best
        epochs; the history of every member's epochs, each row with its ``"member"``.

    Raises:
        ValueError: If ``ensemble`` is not a :class:`~cfer.models.ensemble.LateFusionEnsemble`.
    """
    if not isinstance(ensemble, LateFusionEnsemble):
        raise ValueError(f"fit_members trains a LateFusionEnsemble's members; got {type(ensemble).__name__} "
                         "(build it from an 'ensemble:A+B' arch)")
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history, best_epochs = [], []
    seeds = member_seeds(ensemble, seed=config.seed)
    if config.weights is None and ensemble.proj_dim is None:
        files = getattr(ensemble, "_files", None) or [None] * len(ensemble.members)
        for i, member in enumerate(ensemble.members):
            if files[i] is None:  # a member read from its own weight file keeps them
                _start_as_alone(member, arch=ensemble._names[i], size=ensemble._sizes[i], seed=seeds[i],
                                in_chans=ensemble.in_chans, image_size=image_size)
    for i, (name, member) in enumerate(zip(ensemble.member_names, ensemble.members)):
        result = fit(member, xt=xt, yt=yt, xv=xv, yv=yv, criterion=criterion,
                     config=dataclasses.replace(config, seed=seeds[i]), image_size=image_size,
                     channels=channels, label=f"member {name}")
        logger.info("member %s: best val acc %.3f at epoch %d", name, result.best_val_accuracy, result.best_epoch)
        history += [{**row, "member": name} for row in result.history]
        best_epochs.append(result.best_epoch)
    device = resolve_device(config.device)
    if ensemble.learn_weights:
        fit_fusion_weights(ensemble, x=xv, y=yv, device=device, precision=config.precision)
    accuracy = _sharded_accuracy(ensemble, xv, yv, device=device, precision=config.precision)
    weights = [round(float(w), 3) for w in ensemble.fusion_weights.detach()]
    logger.info("ensemble: fusion weights %s, val acc %.3f", weights, accuracy)
    return FitResult(best_val_accuracy=accuracy, best_epoch=max(best_epochs), history=history)


def member_seeds(ensemble: LateFusionEnsemble, *, seed: int) -> list[int]:
    """Each member's seed for one-by-one training: ``seed`` for the first member of an arch,
    ``seed + k`` for its ``k``-th repeat (at any size); a member given as a module gets ``seed + i``.

    Example:
        >>> ens = LateFusionEnsemble(members=["cfer_tiny", "manet_tiny", "cfer_tiny"], num_classes=2)
        >>> member_seeds(ens, seed=5)
        [5, 5, 6]
    """
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(ensemble._names):
        if name is None:
            out.append(seed + i)
            continue
        out.append(seed + seen.get(name, 0))
        seen[name] = seen.get(name, 0) + 1
    return out


@torch.no_grad()
def _start_as_alone(member: nn.Module, *, arch: str | None, size: int | None, seed: int, in_chans: int,
                    image_size: int | None) -> None:
    """Give a named member the initial weights of a standalone ``build_model(arch=arch, seed=seed)``."""
    if arch is None:
        return
    from cfer.continual.growing import build_model

    alone = build_model(arch=arch, num_classes=member.num_classes, in_chans=in_chans, img_size=size or image_size,
                        seed=seed)
    member.backbone.load_state_dict(alone.backbone.state_dict())
    # the growing ensemble's heads are IncrementalClassifiers like the standalone's; a plain
    # LateFusionEnsemble's are nn.Linear: copy the linear layer either way
    mine, theirs = getattr(member.head, "classifier", member.head), alone.head.classifier
    if isinstance(mine, nn.Linear) and mine.weight.shape == theirs.weight.shape:
        mine.weight.copy_(theirs.weight)
        mine.bias.copy_(theirs.bias)


def fit_fusion_weights(ensemble: LateFusionEnsemble, *, x: torch.Tensor | LazyItems, y: torch.Tensor,
                       device: torch.device | str = "cpu", precision: str = "fp32",
                       max_iter: int = 100) -> torch.Tensor:
    """Fit the ensemble's fusion weights to ``(x, y)`` with its members frozen; returns the weights.

    Minimises the cross-entropy of the fused output (the ensemble's own fusion rule) over
    the weights' logits with L-BFGS. Every process scores all of ``(x, y)``, so under DDP
    every rank fits the same weights without communicating.

    Args:
        ensemble: An ensemble built with ``learn_weights=True``.
        x: Held-out inputs (the validation set), ``y`` their class indices.
        device: Where the members run.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` for the members' forward.
        max_iter: L-BFGS iterations.

    Raises:
        ValueError: If the ensemble's weights are fixed (``learn_weights=False``) or ``x`` is empty.

    Example:
        >>> ens = LateFusionEnsemble(members=["cfer_tiny", "cfer_tiny"], num_classes=2, learn_weights=True)
        >>> w = fit_fusion_weights(ens, x=torch.rand(8, 3, 32, 32), y=torch.arange(8) % 2)
        >>> round(float(w.sum()), 4)
        1.0
    """
    if not ensemble.learn_weights:
        raise ValueError("the ensemble's fusion weights are fixed; build it with learn_weights=true to fit them")
    if len(y) == 0:
        raise ValueError("fit_fusion_weights needs held-out items; got none")
    ensemble.eval()
    logits = []
    with torch.no_grad():
        for i in range(0, len(y), 256):
            with autocast(device, precision):
                xb = x[torch.arange(i, min(i + 256, len(y)))].to(device)
                logits.append(torch.stack([m(xb).float().cpu() for m in ensemble.members]))
    z = torch.cat(logits, 1)  # (members, items, classes)
    theta = ensemble.fusion_logits
    opt = torch.optim.LBFGS([theta], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        fused = fuse(list(z), weights=torch.softmax(theta.cpu(), 0), fusion=ensemble.fusion)
        loss = nn.functional.cross_entropy(fused, y)
        loss.backward()
        return loss

    opt.step(closure)
    theta.grad = None
    return ensemble.fusion_weights.detach()
