"""Late-fusion ensembles of any backbones, each member with its own input size and head.

A :class:`LateFusionEnsemble` holds members; member ``m`` is a backbone by timm name (cfer's
models included, e.g. ``"cfer_tiny"``, ``"resemotenet_slim"``, ``"vit_tiny_patch16_224"``)
with no classifier, optionally loaded from a local weight file, then an optional linear
projection to ``proj_dim``, then its own head ``z_m = head_m(g_m)``. A member with an
input size of its own gets the batch resized to it (bilinear, antialiased when shrinking)
inside ``forward``, so one batch feeds a 32 px CNN and a 48 px ViT alike. The members'
outputs are fused with weights ``w = softmax(theta)`` (uniform, fixed, or learned with
``learn_weights=True``):

* ``fusion="prob"`` (default): the weighted average of the members' probabilities, the
  classic ensemble rule (Kittler et al. 1998, "On combining classifiers"; Lakshminarayanan
  et al. 2017, "Simple and scalable predictive uncertainty estimation using deep
  ensembles"). ``forward`` returns its **log**, ``log sum_m w_m softmax(z_m)`` (computed with
  ``logsumexp``), so cross-entropy, ``argmax`` and ``softmax`` read it as logits;
  ``model.log_prob_output`` is True;
* ``fusion="logit"``: the weighted average ``sum_m w_m z_m`` of the logits.

**Features.** ``forward_features(x)`` returns the concatenated pooled (projected) member
features ``g = [g_1, ..., g_M]``, ``(B, num_features)``; ``forward_head(g, pre_logits=True)``
returns them through an identity module named ``pre_logits`` (the name cfer's feature hooks,
distillation and herding look for), and ``forward_head(g)`` splits ``g`` back per member,
applies each head and fuses. ``num_classes=0`` makes the ensemble a feature extractor
(``forward`` returns ``g``), which is what :func:`cfer.models.create_backbone` builds.

**Loss** (:mod:`cfer.models.ensemble_loss`): ``sum_m CE(z_m, y) + CE(fused, y) + lam *
sum_m KL(p_fused || p_m)``, the fused distribution detached (Lan, Zhu & Gong 2018). ``forward``
keeps the members' logits of the same forward on ``last_member_logits``, which
:class:`~cfer.models.ensemble_loss.EnsembleCriterion` reads, so ``criterion(model(x), y)``
works in an Avalanche strategy and in :func:`cfer.continual.teacher.train_teacher`.

**In the continual run.** ``cfer.continual.growing.build_model(arch="ensemble:...")``
builds a ``GrowingEnsemble``: this class with Avalanche ``IncrementalClassifier`` member
heads (through ``head_factory``), so the teacher keeps its late fusion and the student,
copied from it, grows every member head per experience. The distillation plugin works on
it or from it into a single student unchanged: logits from the fused output, features from
``pre_logits`` (the members' projected features; one linear projection of the student's
features onto them is one projection per member, stacked).

**Arch strings** (:mod:`cfer.models.ensemble_arch`; what ``save_model`` stores and ``--arch``
takes): ``ensemble:NAME[@SIZE]+NAME[@SIZE]...[,fusion=logit][,learn_weights=true][,proj_dim=N][,lam=X]``.

Example:
    >>> import torch
    >>> ens = LateFusionEnsemble(members=["cfer_tiny", "cfer_tiny"], img_sizes=[None, 24], num_classes=3)
    >>> out = ens(torch.rand(2, 3, 32, 32))
    >>> out.shape, [tuple(z.shape) for z in ens.last_member_logits], ens.num_features
    (torch.Size([2, 3]), [(2, 3), (2, 3)], 32)
    >>> bool(torch.allclose(out.exp().sum(1), torch.ones(2)))
    True
    >>> ens.arch
    'ensemble:cfer_tiny+cfer_tiny@24'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from cfer.models.backbones import create_backbone
from cfer.models.ensemble_arch import FUSIONS, ensemble_arch, parse_ensemble_arch

__all__ = ["FUSIONS", "EnsembleMember", "LateFusionEnsemble", "fuse", "create_ensemble"]

HeadFactory = Callable[[int, int], nn.Module]


def _width(head: nn.Module) -> int:
    if isinstance(head, nn.Linear):
        return int(head.out_features)
    inner = getattr(head, "classifier", None)  # Avalanche's IncrementalClassifier
    if isinstance(inner, nn.Module):
        return _width(inner)
    return int(getattr(head, "out_features", 0))


def _grid_size(backbone: nn.Module) -> int | None:
    """The input side a fixed-grid backbone (a ViT) was built for; None for any-size CNNs."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    if not (isinstance(cfg, dict) and cfg.get("fixed_input_size")):
        return None
    size = getattr(getattr(backbone, "patch_embed", None), "img_size", None) or cfg.get("input_size", (0, 0))[-2:]
    return int(size[-1])


class EnsembleMember(nn.Module):
    """One member: resize to its size, backbone (no classifier), projection, its own head.

    A classifier with timm's feature interface in its own right, so Grad-CAM and
    ``pre_logits`` read one member as they read any model (``backbone`` is what
    :func:`cfer.explain.gradcam.find_target_layer` looks into).

    Args:
        backbone: A feature extractor with ``forward_features``, ``forward_head`` and ``num_features``.
        projection: ``nn.Linear`` to the member's feature width, or ``nn.Identity``.
        head: The member's classifier (``nn.Identity`` for none).
        img_size: Side the input is resized to (None: used as given).
        name: The member's name (its arch, ``@size`` included).
    """

    def __init__(self, *, backbone: nn.Module, projection: nn.Module, head: nn.Module, img_size: int | None,
                 name: str) -> None:
        super().__init__()
        self.backbone, self.projection, self.head = backbone, projection, head
        self.img_size, self.name = img_size, name
        out = getattr(projection, "out_features", None)
        self.num_features = int(out if out is not None else backbone.num_features)

    @property
    def num_classes(self) -> int:
        """Width of the member's head (0: none)."""
        return _width(self.head)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` at the member's size (unchanged if it has none or ``x`` has it already)."""
        s = self.img_size
        if s is None or tuple(x.shape[-2:]) == (s, s):
            return x
        shrink = min(x.shape[-2:]) > s
        return nn.functional.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=shrink)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's unpooled features of ``x`` resized to the member's size."""
        return self.backbone.forward_features(self.resize(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and project; with ``pre_logits`` stop before the head."""
        g = self.projection(self.backbone.forward_head(x, pre_logits=True))
        return g if pre_logits else self.head(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def fuse(member_logits: Sequence[torch.Tensor], *, weights: torch.Tensor | None = None,
         fusion: str = "prob") -> torch.Tensor:
    """Fuse members' logits ``(B, C)`` with ``weights`` (summing to 1; default uniform).

    ``"prob"``: ``log sum_m w_m softmax(z_m)`` (a log-probability); ``"logit"``: ``sum_m w_m z_m``.

    Example:
        >>> z = [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])]
        >>> fuse(z).exp()
        tensor([[0.5000, 0.5000]])
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {fusion!r}")
    z = torch.stack(list(member_logits))
    w = torch.full((len(z),), 1.0 / len(z), device=z.device) if weights is None else weights.to(z.device)
    if w.shape != (len(z),):
        raise ValueError(f"{len(z)} members but {tuple(w.shape)} weights")
    if fusion == "prob":
        return torch.logsumexp(torch.log_softmax(z, -1) + torch.log(w)[:, None, None], 0)
    return (w[:, None, None] * z).sum(0)


class LateFusionEnsemble(nn.Module):
    """Members with their own heads, fused late; timm's feature interface (see the module).

    Args:
        members: timm names (cfer's models included) or backbone modules (feature
            extractors with ``forward_features``, ``forward_head`` and ``num_features``).
        num_classes: Width of every member head (0: a feature extractor, no heads).
        img_sizes: Each member's input side (None entries: the input as given, or for a
            fixed-grid model such as a ViT the size it was built at).
        weights: Each member's local weight file (None entries: none), read by
            :func:`cfer.models.load_weights`.
        in_chans: Input channels of named members.
        img_size: Side for named fixed-grid members without an ``img_sizes`` entry.
        fusion: ``"prob"`` or ``"logit"``.
        learn_weights: Learn the fusion weights (a softmax over a parameter vector).
        fusion_weights: Initial (or, unlearned, fixed) fusion weights; default uniform.
        proj_dim: Project each member's features to this width (None: no projection).
        lam: The KL weight :class:`EnsembleCriterion` uses by default.
        head_factory: ``(in_features, num_classes) -> module`` for the member heads
            (default ``nn.Linear``; the growing ensemble passes Avalanche's ``IncrementalClassifier``).
        **kwargs: Passed to :func:`cfer.models.create_backbone` for named members (``drop_rate=``).

    Attributes:
        members: The :class:`EnsembleMember` modules.
        last_member_logits: The members' logits of the last forward (None before it).
    """

    def __init__(self, *, members: Sequence[str | nn.Module], num_classes: int = 7,
                 img_sizes: Sequence[int | None] | None = None, weights: Sequence[str | Path | None] | None = None,
                 in_chans: int = 3, img_size: int | None = None, fusion: str = "prob", learn_weights: bool = False,
                 fusion_weights: Sequence[float] | None = None, proj_dim: int | None = None, lam: float = 1.0,
                 head_factory: HeadFactory | None = None, **kwargs: Any) -> None:
        super().__init__()
        n = len(members)
        sizes, files = list(img_sizes or [None] * n), list(weights or [None] * n)
        if n < 1 or isinstance(members, str):
            raise ValueError(f"members must be a list of model names or modules, got {members!r}")
        for what, seq in (("img_sizes", sizes), ("weights", files)):
            if len(seq) != n:
                raise ValueError(f"{n} members but {len(seq)} {what}; give one per member (None for the default)")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {fusion!r}")
        if num_classes < 0 or (proj_dim is not None and proj_dim < 1) or lam < 0:
            raise ValueError(f"need num_classes >= 0, proj_dim >= 1 or None, lam >= 0; got {num_classes}, "
                             f"{proj_dim}, {lam}")
        init = torch.zeros(n)
        if fusion_weights is not None:
            w = torch.as_tensor(list(fusion_weights), dtype=torch.float32)
            if w.shape != (n,) or not bool((w > 0).all()):
                raise ValueError(f"fusion_weights must be {n} positive numbers, got {list(fusion_weights)}")
            init = torch.log(w / w.sum())
        self.fusion, self.learn_weights, self.proj_dim, self.lam = fusion, bool(learn_weights), proj_dim, float(lam)
        self.in_chans = in_chans
        self.head_factory: HeadFactory = head_factory or nn.Linear
        self._names = [m if isinstance(m, str) else None for m in members]
        built = []
        for i, (member, size, file) in enumerate(zip(members, sizes, files)):
            if isinstance(member, nn.Module):
                if file is not None or kwargs:
                    raise ValueError(f"member {i} is a module: load its weights and set its options yourself")
                backbone, name = member, type(member).__name__
            else:
                try:
                    backbone = create_backbone(member, in_chans=in_chans, img_size=size or img_size, weights=file,
                                               **kwargs)
                except ValueError as exc:
                    raise ValueError(f"ensemble member {i} ({member!r}): {exc}") from None
                name = member if size is None else f"{member}@{size}"
            proj = nn.Linear(int(backbone.num_features), proj_dim) if proj_dim else nn.Identity()
            built.append(EnsembleMember(backbone=backbone, projection=proj, head=nn.Identity(),
                                        img_size=size or _grid_size(backbone), name=name))
        self.members = nn.ModuleList(built)
        self._sizes, self._files = sizes, files
        if self.learn_weights:
            self.fusion_logits = nn.Parameter(init)
        else:
            self.register_buffer("fusion_logits", init)
        self.pre_logits = nn.Identity()
        self.num_features = sum(self.member_widths)
        self.pretrained_cfg = {"classifier": tuple(f"members.{i}.head" for i in range(n)), "first_conv": None}
        self.last_member_logits: tuple[torch.Tensor, ...] | None = None
        self.reset_classifier(num_classes)

    # -- description -----------------------------------------------------------------------
    @property
    def member_widths(self) -> tuple[int, ...]:
        """Each member's feature width, in ``forward_features`` order."""
        return tuple(m.num_features for m in self.members)

    @property
    def member_names(self) -> list[str]:
        """Each member's name (``#i`` appended where names repeat)."""
        names = [m.name for m in self.members]
        return [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    @property
    def log_prob_output(self) -> bool:
        """``forward`` returns log-probabilities (``fusion="prob"``), not free logits."""
        return self.fusion == "prob" and self.num_classes > 0

    @property
    def fusion_weights(self) -> torch.Tensor:
        """The members' weights, ``softmax(fusion_logits)``."""
        return torch.softmax(self.fusion_logits, 0)

    @property
    def arch(self) -> str | None:
        """The arch string that rebuilds this ensemble (None if a member was given as a module)."""
        if any(n is None for n in self._names):
            return None
        return ensemble_arch(members=self._names, img_sizes=self._sizes, fusion=self.fusion,
                             learn_weights=self.learn_weights, proj_dim=self.proj_dim, lam=self.lam)

    # -- timm interface ------------------------------------------------------------------
    def get_classifier(self) -> nn.ModuleList:
        """The member heads."""
        return nn.ModuleList([m.head for m in self.members])

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Fresh member heads of ``num_classes`` outputs (0: none; the ensemble gives features)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        for m in self.members:
            if global_pool is not None:
                m.backbone.reset_classifier(0, global_pool)
            m.head = self.head_factory(m.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The members' pooled, projected features, concatenated: ``(B, num_features)``."""
        return torch.cat([m.forward_head(m.forward_features(x), pre_logits=True) for m in self.members], 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``pre_logits``: the features; else each member's head on its part, fused."""
        x = self.pre_logits(x)
        if pre_logits or self.num_classes == 0:
            return x
        logits = tuple(m.head(part) for m, part in zip(self.members, x.split(self.member_widths, 1)))
        self.last_member_logits = logits
        return fuse(logits, weights=self.fusion_weights, fusion=self.fusion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- training members jointly or one by one -------------------------------------------------
    def _check(self, indices: Iterable[int]) -> list[int]:
        out = [int(i) for i in indices]
        bad = [i for i in out if not 0 <= i < len(self.members)]
        if bad:
            raise ValueError(f"member indices {bad} out of range; the ensemble has members 0..{len(self.members) - 1}"
                             f" ({self.member_names})")
        return out

    def set_trainable(self, indices: Iterable[int] | None = None) -> None:
        """Train the members in ``indices`` (None: all); freeze the others.

        A frozen member's parameters get no gradients and it stays in eval mode (its
        batch-norm statistics do not move) even in ``train()``. The fusion weights are not
        touched (freeze them with ``fusion_logits.requires_grad_(False)``).

        Example:
            >>> ens = LateFusionEnsemble(members=["cfer_tiny", "cfer_tiny"], num_classes=2)
            >>> ens.set_trainable([1]); ens.frozen_members
            (0,)
        """
        keep = set(range(len(self.members)) if indices is None else self._check(indices))
        for i, m in enumerate(self.members):
            m.requires_grad_(i in keep)
        self.train(self.training)

    def freeze_members(self, *, except_: int | None = None) -> None:
        """Freeze every member but ``except_`` (None: all): train members one by one."""
        self.set_trainable([] if except_ is None else [except_])

    @property
    def frozen_members(self) -> tuple[int, ...]:
        """Members none of whose parameters require gradients."""
        return tuple(i for i, m in enumerate(self.members)
                     if not any(p.requires_grad for p in m.parameters()))

    def train(self, mode: bool = True) -> "LateFusionEnsemble":
        super().train(mode)
        for i in self.frozen_members:
            self.members[i].eval()
        return self

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["last_member_logits"] = None  # a copy never carries another forward's graph
        return state


def create_ensemble(arch: str, *, num_classes: int = 0, in_chans: int = 3, img_size: int | None = None,
                    weights: str | Path | Sequence[str | Path | None] | None = None,
                    **kwargs: Any) -> LateFusionEnsemble:
    """A :class:`LateFusionEnsemble` from an arch string.

    Args:
        arch: ``ensemble:NAME[@SIZE]+NAME[@SIZE]...[,option=value...]`` (see the module).
        num_classes: Member head width (0: a feature extractor, as ``create_backbone`` gives).
        in_chans: Input channels.
        img_size: Side for fixed-grid members without their own ``@SIZE``.
        weights: One file for the whole ensemble (as ``save_model`` or ``state_dict`` wrote
            it), or one file (or None) per member.
        **kwargs: Passed to every member's :func:`cfer.models.create_backbone`.

    Example:
        >>> create_ensemble("ensemble:cfer_tiny+cfer_tiny@24,proj_dim=8").num_features
        16
    """
    options = parse_ensemble_arch(arch)
    whole = weights if isinstance(weights, (str, Path)) else None
    per_member = None if whole is not None or weights is None else list(weights)
    model = LateFusionEnsemble(**options, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                               weights=per_member, **kwargs)
    if whole is not None:
        from cfer.models.weights import load_weights

        load_weights(model, whole)
    return model


