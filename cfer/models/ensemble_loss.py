"""The ensemble loss: each member's and the fused cross-entropy, plus a KL pull towards the fused output.

On-the-fly native ensemble training (Lan, Zhu & Gong 2018, "Knowledge Distillation by
On-the-Fly Native Ensemble", NeurIPS):

    L = sum_m CE(z_m, y) + CE(fused, y) + lam * sum_m KL(p_fused || p_m)

with ``KL(p || q) = sum_c p_c (log p_c - log q_c)`` averaged over the batch,
``p_m = softmax(z_m)`` and ``p_fused = softmax(fused)`` (the softmax of the fused output
is the fused distribution for both fusions: of log-probabilities it is themselves).
``p_fused`` is **detached**: it is each member's soft target, as a teacher's
distribution is in distillation (Hinton, Vinyals & Dean 2015), so the term pulls the
members towards the ensemble and never the ensemble towards a member; its gradient on
``z_m`` is ``lam * (p_m - p_fused) / B``. The fusion weights, when learned, get their
gradient from ``CE(fused, y)`` alone.

:class:`EnsembleCriterion` is that loss as a ``criterion(output, target)``: the
ensemble's ``forward`` keeps the members' logits of the same forward on
``model.last_member_logits``, which the criterion reads, so it serves an Avalanche
strategy or :func:`cfer.continual.teacher.train_teacher` as any criterion does.
:func:`criterion_for` picks it for an ensemble and cross-entropy for anything else.

Example:
    >>> import torch
    >>> from cfer.models.ensemble import LateFusionEnsemble
    >>> ens = LateFusionEnsemble(members=["cfer_tiny", "cfer_tiny"], num_classes=2)
    >>> crit = EnsembleCriterion(ens, lam=0.5)
    >>> loss = crit(ens(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 0, 1]))
    >>> sorted(crit.last)
    ['fused', 'kl', 'members', 'total']
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from cfer.models.ensemble import LateFusionEnsemble

__all__ = ["EnsembleCriterion", "criterion_for", "ensemble_loss"]


def _terms(output: torch.Tensor, target: torch.Tensor, members: Sequence[torch.Tensor],
           label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    log_p = torch.log_softmax(output.detach(), 1)
    p = log_p.exp()
    kl = sum((p * (log_p - torch.log_softmax(z, 1))).sum(1).mean() for z in members)

    def ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(z, y, label_smoothing=label_smoothing)

    return {"members": sum(ce(z, target) for z in members), "fused": ce(output, target), "kl": kl}


def ensemble_loss(output: torch.Tensor, target: torch.Tensor, *, members: Sequence[torch.Tensor],
                  lam: float = 1.0) -> torch.Tensor:
    """``sum_m CE(z_m, y) + CE(output, y) + lam * sum_m KL(softmax(output).detach() || softmax(z_m))``.

    Args:
        output: The fused output (log-probabilities or logits; ``softmax`` of either is the
            fused distribution).
        target: Class indices ``(B,)``.
        members: The members' logits ``(B, C)`` of the same forward.
        lam: Weight of the KL term.

    Example:
        >>> from cfer.models.ensemble import fuse
        >>> z = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
        >>> float(ensemble_loss(fuse(z), torch.tensor([0]), members=z, lam=0.0)) > 0
        True
    """
    if not members:
        raise ValueError("ensemble_loss needs the members' logits (model.last_member_logits)")
    t = _terms(output, target, members)
    return t["members"] + t["fused"] + lam * t["kl"]


class EnsembleCriterion:
    """:func:`ensemble_loss` as ``criterion(output, target)``, reading the model's member logits.

    Call it right after ``model(x)``: it reads ``model.last_member_logits`` of that forward
    (an Avalanche strategy and :func:`cfer.continual.teacher.train_teacher` do). The last
    call's terms are on :attr:`last` (floats), the number of calls on :attr:`calls`.

    Args:
        model: The ensemble.
        lam: KL weight (default: ``model.lam``).
        label_smoothing: Label smoothing of every cross-entropy term (the KL term has none).

    Example:
        >>> ens = LateFusionEnsemble(members=["cfer_tiny", "cfer_tiny"], num_classes=2)
        >>> crit = EnsembleCriterion(ens, lam=0.5)
        >>> loss = crit(ens(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 0, 1]))
        >>> sorted(crit.last)
        ['fused', 'kl', 'members', 'total']
    """

    def __init__(self, model: LateFusionEnsemble, *, lam: float | None = None, label_smoothing: float = 0.0) -> None:
        if not isinstance(model, LateFusionEnsemble):
            raise TypeError(f"EnsembleCriterion needs a LateFusionEnsemble, got {type(model).__name__}; "
                            "use torch.nn.CrossEntropyLoss() for a single model (or criterion_for(model))")
        self.model, self.lam = model, model.lam if lam is None else float(lam)
        self.label_smoothing = float(label_smoothing)
        self.last: dict[str, float] = {}
        self.calls = 0

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        members = self.model.last_member_logits
        if members is None or any(z.shape[0] != output.shape[0] for z in members):
            raise RuntimeError("the ensemble's member logits are not those of this output: call the criterion "
                               "right after model(x) of the same batch")
        t = _terms(output, target, members, self.label_smoothing)
        total = t["members"] + t["fused"] + self.lam * t["kl"]
        self.last = {**{k: float(v.detach()) for k, v in t.items()}, "total": float(total.detach())}
        self.calls += 1
        return total


def criterion_for(model: nn.Module, *, lam: float | None = None, label_smoothing: float = 0.0
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:class:`EnsembleCriterion` for an ensemble with heads,
    :class:`~cfer.models.temporal_loss.StreamCriterion` for a clip model trained with
    ``stream_loss > 0`` (alone with its head, or in a growing classifier), cross-entropy for
    anything else (all with ``label_smoothing``)."""
    if isinstance(model, LateFusionEnsemble) and model.num_classes > 0:
        return EnsembleCriterion(model, lam=lam, label_smoothing=label_smoothing)
    from cfer.models.temporal_loss import StreamCriterion, stream_model

    net = stream_model(model)
    if net is not None and (net is not model or net.num_classes > 0):
        return StreamCriterion(model, label_smoothing=label_smoothing)
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
