"""2x2 max pooling that is fast on the CPU when no gradient is needed.

PyTorch's CPU kernel for ``max_pool2d`` on contiguous NCHW tensors also finds the index of
each window's maximum, one output at a time. With one thread, ``resemotenet_slim``'s three
stem pools took about half of its no-grad forward pass on this project's machine, and as
long as all of its convolutions over a profiled continual run (``docs/benchmarks.md``).
The maximum of the four strided quarters of the input (``x[..., 0::2, 0::2]``, ...) gives
the same values, vectorised, without the indices. :class:`MaxPool2x2` uses it where nothing
needs the indices (no gradient recorded: evaluation, the teacher's outputs, class means,
scoring) and PyTorch's kernel everywhere else (training, Grad-CAM, CUDA, odd sizes), so
training is unchanged bit for bit and inference gives the same outputs
(``tests/models/test_pooling.py``).

Example:
    >>> import torch
    >>> x = torch.randn(2, 3, 8, 8)
    >>> with torch.no_grad():
    ...     torch.equal(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2))
    True
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaxPool2x2", "max_pool2x2"]


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """The 2x2, stride-2 max pooling of ``x`` ``(..., H, W)`` with even ``H`` and ``W``, as
    the maximum of its four strided quarters (no indices, so no gradient to the positions
    ``max_pool2d`` would pick; use it where no gradient is needed).

    Example:
        >>> max_pool2x2(torch.arange(16.0).view(1, 1, 4, 4)).tolist()
        [[[[5.0, 7.0], [13.0, 15.0]]]]
    """
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"max_pool2x2 needs an even height and width, got {tuple(x.shape[-2:])}")
    return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                         torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` with a fast path for CPU inference (see the module's docstring).

    A subclass of ``nn.MaxPool2d`` with the same (empty) state, so checkpoints, timm's
    feature extraction and code that looks for pooling layers see what they saw before.
    """

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = (x.device.type == "cpu" and x.ndim == 4 and not x.shape[-1] % 2 and not x.shape[-2] % 2
                and not (torch.is_grad_enabled() and x.requires_grad))
        return max_pool2x2(x) if fast else super().forward(x)
