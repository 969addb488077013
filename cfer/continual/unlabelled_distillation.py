"""Distil a teacher into a student on unlabelled faces (before the continual stream).

A student that starts as a copy of one member of an ensemble teacher
(:func:`cfer.continual.growing.member_classifier`) knows the basic classes as that member
does, not as the fused ensemble does; on its own training faces the two already agree, so
distillation there passes little on. Faces nobody labelled are where they differ: matching
the teacher's output distribution on them (Hinton et al. 2015; an ensemble compressed into
one network through unlabelled data, Buciluǎ et al. 2006) moves the student towards the
ensemble on faces it has never seen. Only the weights learn: BatchNorm statistics and
dropout stay as they are (the student runs in eval mode), so the statistics keep describing
the faces the student was trained on, whatever mix of faces the pool holds.

Measured in ``docs/benchmarks.md`` ("An ensemble teacher and its students"): the copy of a
two-CNN ensemble's first member, distilled for 20 epochs on the basic training faces and
2,100 unlabelled faces of 100 other people, starts the stream closer to the ensemble (basic
test accuracy 0.885 against 0.856 before), but the cfer student it becomes is not measurably
better than the single teacher's copy: average accuracy over steps +0.4 ± 1.3 points, ahead
in 13 seeds of 20.

Example:
    >>> import torch
    >>> from torch import nn
    >>> teacher, student = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    >>> faces = torch.rand(40, 1, 4, 4)
    >>> history = distil_unlabelled(student=student, teacher=teacher, images=faces, epochs=5, lr=1e-2)
    >>> history[-1] < history[0]
    True
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from cfer.continual.teacher_fit import _shift, _shift_draws
from cfer.distributed import all_reduce_sum, model_device, rank, resolve_device, shard, world_size, wrap_ddp

__all__ = ["distil_unlabelled"]

logger = logging.getLogger(__name__)


def _shares(student: nn.Module) -> bool:
    """Whether the processes of a distributed job share the work: the student lives where the
    process group reduces (the CPU under gloo, a GPU under NCCL). Otherwise every process
    distils alone, to the same student."""
    if world_size() == 1:
        return False
    on_gpu = next(student.parameters()).device.type == "cuda"
    if (torch.distributed.get_backend() == "nccl") != on_gpu:
        logger.info("distillation on unlabelled faces: the student is on the %s, which the %s process group does "
                    "not reduce; every process distils alone", "GPU" if on_gpu else "CPU",
                    torch.distributed.get_backend())
        return False
    return True


def _check(images: torch.Tensor, epochs: int, lr: float, batch_size: int, temperature: float, shift: int) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor of faces, got {got}; for a FaceDataset pass "
                         "cfer.continual.evaluation.inputs_of(dataset, range(len(dataset)))")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if lr <= 0 or temperature <= 0:
        raise ValueError(f"lr and temperature must be > 0, got {lr} and {temperature}")
    if shift < 0:
        raise ValueError(f"shift must be >= 0 (0: flips only), got {shift}")


def distil_unlabelled(*, student: nn.Module, teacher: nn.Module, images: torch.Tensor, epochs: int = 20,
                      lr: float = 1e-4, batch_size: int = 64, temperature: float = 1.0, shift: int = 3,
                      seed: int = 0, device: str | torch.device | None = None, progress: bool = False) -> list[float]:
    """Train ``student`` in place to match ``teacher``'s outputs on unlabelled ``images``.

    The loss is ``T² · KL(softmax(t / T) ‖ softmax(s / T))`` over each mini-batch, the
    teacher's and the student's outputs on the same augmented faces (a random flip per face,
    one random shift per batch). A teacher that returns log-probabilities (a
    probability-fusion ensemble) works as one that returns logits: ``log_softmax`` leaves
    log-probabilities as they are. Adam; both models in eval mode (BatchNorm statistics and
    dropout frozen; both models' modes are restored afterwards); the teacher is not changed.
    Both models run on ``device`` (default: the student's) and go back to the devices they
    came on; the faces may stay on the CPU (each mini-batch is moved).

    Under ``torchrun`` (:mod:`cfer.distributed`) every process passes the same ``images`` and
    ``seed``; the student is wrapped in ``DistributedDataParallel`` and each process takes
    every N-th face of each global mini-batch of ``batch_size`` (with the flips and shift one
    process would draw), so N processes share the work and end with the student one process
    trains, to float rounding. (A student on the CPU in a job whose processes reduce on GPUs
    is distilled by every process alone, to the same weights.)

    Args:
        student: The model to train (e.g. a copy of an ensemble member from
            :func:`cfer.continual.growing.member_classifier`), with the teacher's outputs.
        teacher: The model to match (e.g. the fused ensemble), frozen.
        images: Unlabelled faces ``(N, C, H, W)`` as the models take them (labelled
            training faces may be among them; their labels are not used).
        epochs: Passes over ``images``.
        lr: Adam learning rate (small: the student already knows the classes).
        batch_size: Faces per mini-batch.
        temperature: ``T`` of the softened distributions.
        shift: Largest shift in pixels of the augmentation (0: flips only).
        seed: Seed of the shuffling and augmentation (a private generator).
        device: Where to compute (``cfer.distributed.resolve_device`` spellings or a
            ``torch.device``; default: where the student's parameters are).
        progress: Show a tqdm bar over epochs.

    Returns:
        The mean loss of each epoch.

    Raises:
        ValueError: If ``images`` is not a non-empty 4-D tensor, a setting is out of range,
            or the two models do not have the same number of outputs.

    Example:
        >>> import copy, torch
        >>> from torch import nn
        >>> teacher = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> student = copy.deepcopy(teacher)  # matches already: nothing to learn
        >>> distil_unlabelled(student=student, teacher=teacher, images=torch.rand(8, 1, 4, 4), epochs=1)
        [0.0]

    A student that already matches the teacher has nothing to learn, but float rounding
    leaves its gradients a hair above zero and Adam rescales them into small steps: such a
    student drifts a little (the control of ``benchmarks/ensemble_teacher.py``'s
    ``single->self+pool`` set-up measures what that drift does).
    """
    _check(images, epochs, lr, batch_size, temperature, shift)
    if not any(p.requires_grad for p in student.parameters()):
        raise ValueError("the student has no trainable parameter")
    student_at, teacher_at = model_device(student), model_device(teacher)
    dev = (student_at if device is None
           else resolve_device(device) if isinstance(device, str) else torch.device(device))
    was_training, teacher_training = student.training, teacher.training
    try:
        student.to(dev).eval()
        teacher.to(dev).eval()
        opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
        shares = _shares(student)
        world, at = (world_size(), rank()) if shares else (1, 0)
        net = wrap_ddp(student, device=dev) if shares else student
        g = torch.Generator().manual_seed(seed)
        history: list[float] = []
        rounds = range(epochs)
        if progress:
            from tqdm.auto import tqdm

            rounds = tqdm(rounds, desc="distilling on unlabelled faces", unit="epoch")
        for epoch in rounds:
            perm = torch.randperm(len(images), generator=g)
            total = torch.zeros((), dtype=torch.float64)
            for i in range(0, len(images), batch_size):
                idx = perm[i:i + batch_size]
                flip, dx, dy = _shift_draws(len(idx), g, shift=shift)  # drawn for the global batch
                if len(idx) < world:  # a last batch too small to give every process a face (all skip it)
                    continue
                mine = images[shard(idx, of=world, at=at)].cpu()  # its share, shifted on the CPU, then moved
                xb = _shift(mine, shard(flip, of=world, at=at), dx, dy).to(dev, non_blocking=True)
                with torch.no_grad():
                    t = teacher(xb)
                s = net(xb)
                if s.shape != t.shape:
                    raise ValueError(f"student and teacher outputs differ in shape ({tuple(s.shape)} vs "
                                     f"{tuple(t.shape)}); the student needs the teacher's classes (e.g. "
                                     "member_classifier(ensemble, member=...))")
                loss = nn.functional.kl_div(nn.functional.log_softmax(s / temperature, 1),
                                            nn.functional.log_softmax(t / temperature, 1),
                                            log_target=True, reduction="batchmean") * temperature ** 2
                opt.zero_grad()
                # DDP averages the processes' gradients: weigh each by its share of the global batch
                (loss * (len(xb) * world / len(idx)) if world > 1 else loss).backward()
                opt.step()
                total += float(loss.detach()) * len(xb)
            history.append(float(all_reduce_sum(total) if shares else total) / len(images))
            logger.info("distillation on unlabelled faces, epoch %d: KL %.4f", epoch, history[-1])
    finally:
        student.to(student_at).train(was_training)
        teacher.to(teacher_at).train(teacher_training)
    return history
