"""The options of the synthetic renderer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SynthConfig"]


@dataclass(frozen=True)
class SynthConfig:
    """How synthetic faces are drawn.

    Attributes:
        image_size: Side of the square images in pixels (16-512).
        channels: 3 for RGB, 1 for grey.
        difficulty: Scales every nuisance (pose, lighting, noise) and the spread of AU
            intensities; 0 gives clean, full-intensity prototypes, 1 is the calibrated
            default, 2 is hard.
        occlusion: Probability that a face gets an occluding patch.
    """

    image_size: int = 64
    channels: int = 3
    difficulty: float = 1.0
    occlusion: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, (int, np.integer)) or not 16 <= self.image_size <= 512:
            raise ValueError(f"image_size must be an int in [16, 512], got {self.image_size!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        if not 0.0 <= float(self.difficulty) <= 3.0:
            raise ValueError(f"difficulty must lie in [0, 3] (1 is the default), got {self.difficulty!r}")
        if not 0.0 <= float(self.occlusion) <= 1.0:
            raise ValueError(f"occlusion is a probability in [0, 1], got {self.occlusion!r}")
