"""The published one-new-class-at-a-time protocol, scored honestly.

The published method added one compound class to the basic model with a few images and
validated on that class's images only, where a model that always answers the new class
scores 100%. :func:`one_new_class_protocol` trains the same way but scores queries of the
new class **and** of the basic classes, and reports the flawed figure only alongside.
Episodic N-way K-shot evaluation (:mod:`cfer.fewshot.episodes`) is cfer's default.

Example:
    >>> res = one_new_class_protocol(model, support=train, queries=test,
    ...                              basic_classes=classes, new_class="awed", shots=1)  # doctest: +SKIP
    >>> res.balanced_accuracy                                                             # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from cfer.distributed import model_device
from cfer.fewshot.episodes import _train_frozen_bn

__all__ = ["OneClassResult", "one_new_class_protocol"]


@dataclass
class OneClassResult:
    """Outcome of :func:`one_new_class_protocol` for one new class."""

    new_class: str
    shots: int
    new_class_accuracy: float
    basic_accuracy: float
    balanced_accuracy: float
    new_only_validation: float

    def to_dict(self) -> dict:
        return asdict(self)


def one_new_class_protocol(
    model: nn.Module,
    *,
    support: "object",
    queries: "object",
    basic_classes: Sequence[str],
    new_class: str,
    shots: int = 1,
    steps: int = 30,
    lr: float = 1e-3,
    seed: int = 0,
) -> OneClassResult:
    """Add one new class to a basic model with ``shots`` images, then score it honestly.

    The published protocol grows the basic model's head by one output, trains on a few
    images of the new class and validates **on that class's images only**, where a model
    that always answers the new class scores 100%. Here the same training is scored on
    queries from the new class **and** from the basic classes; ``balanced_accuracy`` is
    the mean of the two, and ``new_only_validation`` is the flawed figure, kept for
    comparison.

    Args:
        model: The basic model (a :class:`~cfer.continual.growing.GrowingClassifier`
            whose units are ``basic_classes``); it is copied, never modified.
        support: A FaceDataset holding the new class's training images.
        queries: A FaceDataset with held-out images of the new class and the basic classes
            (other subjects than ``support``).
        basic_classes: The model's classes in unit order.
        new_class: The class to add.
        shots: Training images of the new class.
        steps: Adam steps on those images.
        lr: Learning rate.
        seed: Seed of the image choice and the new unit's initialisation.
    """
    import copy

    from cfer import taxonomy

    basic = list(taxonomy.normalize_many(list(basic_classes)))
    new = taxonomy.normalize(new_class)
    s_names = np.asarray(support.classes)[support.labels]
    pool = np.flatnonzero(s_names == new)
    if len(pool) < shots:
        raise ValueError(f"class {new!r} has {len(pool)} training images; {shots} shots need {shots}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(pool, size=shots, replace=False)
    xs = support.subset(pick).tensors()[0]
    net = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net.grow(len(basic) + 1)
    device = model_device(net)  # the model may be on any device
    xs = xs.to(device)
    ys = torch.full((shots,), len(basic), dtype=torch.long, device=device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    _train_frozen_bn(net)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xs), ys).backward()
        opt.step()
    net.eval()
    q_names = np.asarray(queries.classes)[queries.labels]
    keep = np.flatnonzero(np.isin(q_names, [*basic, new]))
    xq = queries.subset(keep).tensors()[0]
    target = np.array([len(basic) if n == new else basic.index(n) for n in q_names[keep]])
    with torch.no_grad():
        pred = torch.cat([net(xq[i:i + 256].to(device)).argmax(1) for i in range(0, len(xq), 256)]).cpu().numpy()
    is_new = target == len(basic)
    if not is_new.any() or is_new.all():
        raise ValueError("queries must hold images of the new class and of the basic classes")
    new_acc = float((pred[is_new] == target[is_new]).mean())
    basic_acc = float((pred[~is_new] == target[~is_new]).mean())
    return OneClassResult(new_class=new, shots=shots, new_class_accuracy=new_acc, basic_accuracy=basic_acc,
                          balanced_accuracy=(new_acc + basic_acc) / 2, new_only_validation=new_acc)
