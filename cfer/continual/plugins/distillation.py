"""Distil the frozen basic teacher into the growing student (an Avalanche plugin).

At compound step ``i`` (the basic experience is step 0) the training loss becomes

    loss = (1 - g_i) * CE(y, s) + g_i * KD + w_p * P + w_f * F + w_q * Q

* ``CE(y, s)``: the strategy's own criterion; the plugin scales it by ``1 - g_i``
  through :mod:`cfer.continual.plugins.criterion` (so another plugin that changes the
  criterion, such as logit adjustment, composes with it in either order) and adds its
  own terms to ``strategy.loss``;
* ``KD = - sum_c softmax(t / T)_c * log_softmax(s / T)_c``, averaged over the batch,
  where ``t`` are the **frozen basic teacher's** logits zero-padded on the right to the
  student's width (not the previous step's model), ``T = 3``; multiplied by ``T**2``
  only if ``t_squared=True`` (the published method has no such factor); a teacher whose
  outputs are log-probabilities (``teacher.log_prob_output``: a probability-fused
  :class:`~cfer.models.ensemble.LateFusionEnsemble`) is centred first, ``t - mean_c t``
  (the same softmax), since zero-padded log-probabilities would give every new class
  probability 1 before tempering;
* ``g_i = gamma0 * exp(-i / (1 + e))`` with ``gamma0 = 0.1`` (Maiden & Nakisa 2023); by
  default ``i`` is the experience index, so the first compound step has ``i = 1``
  (``g = 0.076``); the authors' public code counts compound steps from 0 (``g = 0.1`` at
  the first one): ``first_step=0`` reproduces that;
* ``P`` (off by default, not in the published method): the same tempered cross-entropy
  from the **previous step's** frozen student, on the outputs it had (the compound classes
  learnt so far included), weighted by ``previous_weight`` (times ``sqrt(n_old / n_new)``,
  old over new classes, with ``previous_weight_scale="sqrt_ratio"``, as LUCIR scales it);
* ``Q`` (off by default, not in the published method): ``1 - cosine`` between the
  student's pre-logit features and the **previous step's** frozen student's, weighted by
  ``previous_feature_weight`` (a less-forget constraint on the features);
* ``F``: feature distillation, the student's pre-logit features mapped by a learned
  linear projection (identity-initialised when the widths match) towards the teacher's
  pre-logit features, by mean squared error (``"mse"``) or ``1 - cosine`` (``"cosine"``),
  weighted by ``feature_weight`` (0 switches it off), over every item of the mini-batch or
  only the memory's (old classes) or the new classes' items (``feature_samples``).

The features are read by a forward hook (:class:`cfer.models.features.FeatureTap`) on the
module :func:`cfer.models.features.find_feature_layer` names, during the forward passes
that make the logits: the student's training forward (no second pass, batch-norm
statistics updated once) and one teacher forward per distinct input in a step, later epochs
reading a cache (:mod:`cfer.continual.output_cache`, ``cache_outputs=True``). Any ``nn.Module`` works: timm and
cfer models, a torchvision ResNet, a network whose classifier is its last ``nn.Linear``;
otherwise name the layer (``feature_layer=``, ``feature_from="output"`` for a module's
output). A probe image checks the layer as the first experience starts, so a model it cannot
read fails there, with the fix in the message.

Without a given teacher, the plugin takes a frozen copy of the model at the end of the
first (basic) experience. The projection is the plugin's (``plugin.projection``), not the
model's: it joins the strategy's optimiser as a parameter group of its own, and
:meth:`BasicDistillationPlugin.state_dict` saves it.

Example:
    >>> from avalanche.training import Naive
    >>> plugin = BasicDistillationPlugin(temperature=3.0, gamma0=0.1, feature_weight=1.0)
    >>> strategy = Naive(model=model, optimizer=opt, plugins=[plugin])   # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from cfer.continual.output_cache import OutputCache
from cfer.continual.plugins.criterion import CriterionAdjustment, adjust_criterion
from cfer.continual.plugins.distillation_terms import FEATURE_SAMPLES, feature_distillation, feature_rows, old_new_ratio
from cfer.models.features import FeatureTap, find_feature_layer, probe_features
from cfer.models.freeze import frozen_copy

__all__ = ["BasicDistillationPlugin", "gamma_schedule", "logit_distillation", "feature_distillation", "old_new_ratio"]


def gamma_schedule(step: int, *, gamma0: float = 0.1) -> float:
    """``gamma0 * exp(-step / (1 + e))``: the weight of logit distillation at ``step``."""
    return float(gamma0 * math.exp(-step / (1.0 + math.e)))


def logit_distillation(student: torch.Tensor, teacher: torch.Tensor, *, temperature: float = 3.0,
                       t_squared: bool = False) -> torch.Tensor:
    """Cross-entropy between softened teacher and student distributions (teacher zero-padded)."""
    if teacher.shape[1] > student.shape[1]:
        raise ValueError(f"the teacher has {teacher.shape[1]} outputs, more than the student's {student.shape[1]}")
    pad = student.shape[1] - teacher.shape[1]
    t = nn.functional.pad(teacher, (0, pad)) if pad else teacher
    kd = -(torch.softmax(t / temperature, 1) * torch.log_softmax(student / temperature, 1)).sum(1).mean()
    return kd * temperature**2 if t_squared else kd


class BasicDistillationPlugin(SupervisedPlugin, CriterionAdjustment, supports_distributed=True):
    """Logit + feature distillation from a frozen basic teacher.

    Args:
        teacher: The frozen basic model; default: a copy taken after the first experience.
        temperature: Softmax temperature ``T``.
        gamma0: Initial logit-distillation weight.
        gamma: Custom schedule ``step -> weight`` (overrides ``gamma0``).
        first_step: The value of ``i`` at the first compound experience (1: the
            experience index, the default; 0: the authors' code).
        t_squared: Multiply the logit term by ``T**2``.
        use_logits: Use the logit term at all.
        feature_weight: Weight of the feature term (0: off).
        feature_loss: ``"mse"`` or ``"cosine"``.
        feature_layer: Dotted name of the student's module whose input holds the
            pre-logit features (default: found, see
            :func:`~cfer.models.features.find_feature_layer`).
        feature_from: ``"input"`` or ``"output"``: the side of ``feature_layer`` read.
        feature_samples: The items the feature term covers: ``"all"``, ``"memory"`` (those
            of classes seen before the step) or ``"new"`` (those of the step's classes).
        teacher_feature_layer: The teacher's module (default: ``feature_layer``).
        teacher_feature_from: The side of it read (default: ``feature_from``).
        previous_weight: Weight of distillation from the previous step's student (0: off,
            as published).
        previous_feature_weight: Weight of the ``1 - cosine`` term between the student's
            pre-logit features and the previous step's student's (0: off, as published).
        previous_weight_scale: ``"constant"``, or ``"sqrt_ratio"``: ``previous_weight`` times
            ``sqrt(n_old / n_new)`` at each step (more weight as old classes outnumber new ones).
        cache_outputs: Compute the frozen teacher's (and previous student's) logits and
            features once per distinct input in a step and reuse them in later epochs
            (:class:`~cfer.continual.output_cache.OutputCache`; it switches itself off when
            inputs do not repeat). The losses are the same; ``cache_stats`` holds the last
            step's hits, misses and forwards.

    Raises:
        ValueError: For a bad option, or a given teacher whose feature layer cannot be
            found (the message names ``teacher_feature_layer=``).
    """

    def __init__(
        self,
        *,
        teacher: nn.Module | None = None,
        temperature: float = 3.0,
        gamma0: float = 0.1,
        gamma: Callable[[int], float] | None = None,
        first_step: int = 1,
        t_squared: bool = False,
        use_logits: bool = True,
        feature_weight: float = 1.0,
        feature_loss: Literal["mse", "cosine"] = "mse",
        feature_layer: str | None = None,
        feature_from: Literal["input", "output"] = "input",
        feature_samples: Literal["all", "memory", "new"] = "all",
        teacher_feature_layer: str | None = None,
        teacher_feature_from: Literal["input", "output"] | None = None,
        previous_weight: float = 0.0,
        previous_feature_weight: float = 0.0,
        previous_weight_scale: Literal["constant", "sqrt_ratio"] = "constant",
        cache_outputs: bool = True,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= gamma0 <= 1:
            raise ValueError(f"gamma0 must lie in [0, 1], got {gamma0}")
        for name, value in (("feature_weight", feature_weight), ("previous_weight", previous_weight),
                            ("previous_feature_weight", previous_feature_weight), ("first_step", first_step)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if previous_weight_scale not in ("constant", "sqrt_ratio"):
            raise ValueError(f"previous_weight_scale must be 'constant' or 'sqrt_ratio', got {previous_weight_scale!r}")
        self.previous_weight, self.previous_weight_scale = previous_weight, previous_weight_scale
        self.previous_feature_weight = previous_feature_weight
        self.cache_outputs = bool(cache_outputs)
        self._caches: dict[str, OutputCache] = {}  # "teacher" / "previous", while an experience trains
        self.cache_stats: dict[str, dict] = {}
        self.previous: nn.Module | None = None  # the frozen student of the step before
        if feature_samples not in FEATURE_SAMPLES:
            raise ValueError(f"feature_samples must be one of {list(FEATURE_SAMPLES)}, got {feature_samples!r}")
        self.feature_samples = feature_samples
        if feature_loss not in ("mse", "cosine"):
            raise ValueError(f"feature_loss must be 'mse' or 'cosine', got {feature_loss!r}")
        for name, side in (("feature_from", feature_from), ("teacher_feature_from", teacher_feature_from or "input")):
            if side not in ("input", "output"):
                raise ValueError(f"{name} must be 'input' or 'output', got {side!r}")
        self.feature_layer, self.feature_from = feature_layer, feature_from
        self.teacher_feature_layer, self.teacher_feature_from = teacher_feature_layer, teacher_feature_from
        self.teacher = None
        self._t_layer: tuple[str, str] | None = None  # the teacher's (module name, side)
        if teacher is not None:
            self.teacher = self._freeze(teacher)
            if feature_weight > 0:
                self._t_layer = self._teacher_layer(self.teacher)
        self.temperature, self.gamma0, self.gamma, self.t_squared = temperature, gamma0, gamma, t_squared
        self.first_step = first_step
        self.use_logits, self.feature_weight, self.feature_loss = use_logits, feature_weight, feature_loss
        self.last: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.projection: nn.Linear | None = None
        self._scale: float | None = None  # 1 - g_i while a compound experience trains
        self._step = 0
        self._s_layer: tuple[str, str] | None = None  # the student's (module name, side)
        # FeatureTaps on the student, the teacher and the previous student, while an experience trains
        self._tap: FeatureTap | None = None
        self._t_tap = self._p_tap = self._tap

    _freeze = staticmethod(frozen_copy)

    def _teacher_layer(self, teacher: nn.Module) -> tuple[str, str]:
        name = self.teacher_feature_layer or self.feature_layer
        side = self.teacher_feature_from or self.feature_from
        try:
            return find_feature_layer(teacher, feature_layer=name, feature_from=side)
        except ValueError as err:
            raise ValueError(f"teacher: {err}; pass teacher_feature_layer='<name>' for the teacher") from None

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def weight(self, step: int) -> float:
        """Logit-distillation weight at ``step``."""
        return float(self.gamma(step)) if self.gamma is not None else gamma_schedule(step, gamma0=self.gamma0)

    # -- the criterion and the plugin's own state ------------------------------------------
    def adjust(self, criterion, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        """``(1 - g_i) * criterion(logits, targets)`` while a compound experience trains."""
        loss = criterion(logits, targets)
        return loss if self._scale is None else self._scale * loss

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """The plugin's trainable parameters (the feature projection), by name."""
        return {} if self.projection is None else {f"projection.{n}": p
                                                   for n, p in self.projection.named_parameters()}

    def state_dict(self) -> dict:
        """The projection's weights (empty before it exists): what a resumed run needs."""
        return {} if self.projection is None else {"projection": self.projection.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        if "projection" in state:
            w = state["projection"]["weight"]
            self.projection = nn.Linear(int(w.shape[1]), int(w.shape[0]))
            self.projection.load_state_dict(state["projection"])

    # -- callbacks ---------------------------------------------------------------------------
    def before_train_dataset_adaptation(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._count("before_train_dataset_adaptation")
        if self.feature_weight == 0 and self.previous_feature_weight == 0:
            return
        model = strategy.model
        first = self._s_layer is None  # the first experience: check the student (and a given teacher) now
        if first:
            self._s_layer = find_feature_layer(model, feature_layer=self.feature_layer, feature_from=self.feature_from)
        if self.feature_weight == 0:
            if first:
                probe = strategy.experience.dataset[0][0][None].to(strategy.device)
                probe_features(model, probe, layer=self._s_layer[0], side=self._s_layer[1],
                               check_classifier=self.feature_layer is None)
            return
        if not first and (self.teacher is None or self.projection is not None):
            return
        probe = strategy.experience.dataset[0][0][None].to(strategy.device)
        s_dim = probe_features(model, probe, layer=self._s_layer[0], side=self._s_layer[1],
                               check_classifier=first and self.feature_layer is None).shape[1]
        if self.teacher is None:
            return
        t_dim = self._probe_teacher(probe).shape[1]
        if self.projection is not None:
            return
        proj = nn.Linear(s_dim, t_dim).to(strategy.device)
        with torch.no_grad():
            if s_dim == t_dim:
                proj.weight.copy_(torch.eye(s_dim))
                proj.bias.zero_()
        self.projection = proj

    def _probe_teacher(self, probe: torch.Tensor) -> torch.Tensor:
        if self._t_layer is None:
            self._t_layer = self._teacher_layer(self.teacher)
        x = probe.to(next(self.teacher.parameters()).device)
        auto = (self.teacher_feature_layer or self.feature_layer) is None
        try:
            return probe_features(self.teacher, x, layer=self._t_layer[0], side=self._t_layer[1], check_classifier=auto)
        except ValueError as err:
            raise ValueError(f"teacher: {err}; pass teacher_feature_layer='<name>' for the teacher") from None

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._count("before_training_exp")
        if self.teacher is None:
            return
        if getattr(strategy, "device", None) is not None:  # a given teacher follows the strategy's device
            self.teacher.to(strategy.device)
        self._step = strategy.clock.train_exp_counter - 1 + self.first_step
        if self.use_logits:
            self._scale = 1.0 - self.weight(self._step)
            adjust_criterion(strategy, self)
        if self.projection is not None:
            self.projection.to(strategy.device)
            in_optimizer = {id(p) for g in strategy.optimizer.param_groups for p in g["params"]}
            params = [p for p in self.projection.parameters() if id(p) not in in_optimizer]
            if params:
                strategy.optimizer.add_param_group({"params": params})
        if self.feature_weight > 0:
            # Hooks resolved by name now (the head grew): the student's features from its training forward.
            if self._s_layer is None:
                self._s_layer = find_feature_layer(strategy.model, feature_layer=self.feature_layer,
                                                   feature_from=self.feature_from)
            if self._t_layer is None:
                self._t_layer = self._teacher_layer(self.teacher)
            self._tap = FeatureTap(strategy.model, layer=self._s_layer[0], side=self._s_layer[1])
            self._t_tap = FeatureTap(self.teacher, layer=self._t_layer[0], side=self._t_layer[1])
        if self.previous_feature_weight > 0 and self.previous is not None and self._step > self.first_step:
            if self._tap is None:
                self._tap = FeatureTap(strategy.model, layer=self._s_layer[0], side=self._s_layer[1])
            self.previous.to(strategy.device)
            self._p_tap = FeatureTap(self.previous, layer=self._s_layer[0], side=self._s_layer[1])
        if self.cache_outputs:  # the frozen models' outputs, once per distinct input this step
            self._caches = {"teacher": OutputCache(self.teacher, tap=self._t_tap)}
            if self.previous is not None:
                self._caches["previous"] = OutputCache(self.previous, tap=self._p_tap)

    def before_forward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        if self._tap is not None:
            self._tap.clear()

    def before_backward(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._count("before_backward")
        if self.teacher is None:
            return
        x = strategy.mb_x
        student_logits = strategy.mb_output
        self.last = {"step": self._step}
        t_logits, t_feat = self._frozen("teacher", x)  # one teacher forward (or none) serves both terms
        if getattr(self.teacher, "log_prob_output", False):  # a probability-fused ensemble, see the module
            t_logits = t_logits - t_logits.mean(1, keepdim=True)
        if self.use_logits:
            g = self.weight(self._step)
            kd = logit_distillation(student_logits, t_logits, temperature=self.temperature, t_squared=self.t_squared)
            strategy.loss = strategy.loss + g * kd
            self.last.update(kd=float(kd.detach()), gamma=g)
        if self.previous_weight > 0 and self.previous is not None and self._step > self.first_step:
            p_logits = self._frozen("previous", x)[0]
            n = p_logits.shape[1]
            pkd = logit_distillation(student_logits[:, :n], p_logits, temperature=self.temperature)
            ratio = old_new_ratio(strategy.experience, n_old=n, width=student_logits.shape[1])
            w = self.previous_weight * (math.sqrt(ratio) if self.previous_weight_scale == "sqrt_ratio" else 1.0)
            strategy.loss = strategy.loss + w * pkd
            self.last.update(previous=float(pkd.detach()), previous_weight=w)
        if self._p_tap is not None:
            s_feat, p_feat = self._student_features(x), self._frozen("previous", x)[1]
            q = feature_distillation(s_feat, p_feat, kind="cosine")
            strategy.loss = strategy.loss + self.previous_feature_weight * q
            self.last["previous_feat"] = float(q.detach())
        if self.feature_weight > 0 and self._tap is not None:
            s_feat = self._student_features(x)
            if self.projection is not None:
                s_feat = self.projection(s_feat)
            rows = feature_rows(self.feature_samples, strategy.mb_y, strategy.experience)
            if rows is not None:
                s_feat, t_feat = s_feat[rows], t_feat[rows]
            f = feature_distillation(s_feat, t_feat, kind=self.feature_loss) if len(s_feat) else s_feat.sum()
            strategy.loss = strategy.loss + self.feature_weight * f
            self.last["feat"] = float(f.detach())

    def _student_features(self, x: torch.Tensor) -> torch.Tensor:
        """The student's tapped pre-logit features of this mini-batch's training forward."""
        s_feat = self._tap.features
        if s_feat is None or s_feat.shape[0] != x.shape[0]:
            raise RuntimeError(f"the student's feature layer {self._tap.layer!r} did not run in the strategy's "
                               "forward pass of this mini-batch; pass feature_layer= naming a module it uses")
        return s_feat

    def _frozen(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frozen teacher's or previous student's logits and tapped features of ``x``."""
        if name in self._caches:
            return self._caches[name](x)
        tap = self._t_tap if name == "teacher" else self._p_tap
        with torch.no_grad():
            logits = getattr(self, name)(x)
        return logits, None if tap is None else tap.features

    def after_training_epoch(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        for cache in self._caches.values():
            cache.end_epoch()

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001, ANN003
        self._count("after_training_exp")
        self.cache_stats = {k: {"hits": c.hits, "misses": c.misses, "forwards": c.forwards, "active": c.active}
                            for k, c in self._caches.items()}
        self._caches = {}
        self._scale = None
        for tap in (self._tap, self._t_tap, self._p_tap):
            if tap is not None:
                tap.remove()
        self._tap = self._t_tap = self._p_tap = None
        if self.previous_weight > 0 or self.previous_feature_weight > 0:
            self.previous = self._freeze(strategy.model)
        if self.teacher is None:
            self.teacher = self._freeze(strategy.model)
            if self.teacher_feature_layer is None and self.teacher_feature_from is None:  # the student's layer
                self._t_layer = self._s_layer
