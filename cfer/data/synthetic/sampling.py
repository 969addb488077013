"""Random draws behind every synthetic face: an identity per subject, AU intensities per
face and the nuisances (pose, lighting, noise, occlusion).

Each function takes a seeded ``numpy.random.Generator``; nothing touches a global RNG.
"""

from __future__ import annotations

import math

import numpy as np

from cfer import taxonomy
from cfer.data.synthetic.config import SynthConfig

_AU_INDEX = {au: i for i, au in enumerate(taxonomy.AUS)}
_N_AU = len(taxonomy.AUS)
_DIFFICULTY_SCALE = 0.75  # internal nuisance scale at difficulty 1 (see benchmarks/synth_calibration.py)
_NOISE_BANK = 256  # pre-drawn noise fields; each face picks one (fast and batch-independent)


_IDENTITY_KEYS = (
    "face_rx", "face_ry", "face_cy", "skin_r", "skin_g", "skin_b", "hair_r", "hair_g", "hair_b",
    "hairline", "bg_r", "bg_g", "bg_b", "eye_x", "eye_y", "eye_w", "eye_h", "iris_l",
    "brow_gap", "brow_thick", "brow_arch", "brow_dark", "nose_tip", "nose_w", "mouth_y",
    "mouth_w", "lip_thick", "lip_r", "lip_g", "lip_b",
)


def _sample_identity(rng: np.random.Generator, difficulty: float) -> dict[str, float]:
    """Draw one person's face geometry, colours and per-AU expressivity."""
    u = rng.uniform
    tone = u(0.30, 0.92)
    warmth = u(0.0, 1.0)
    skin = np.array([tone, tone * (0.78 + 0.12 * warmth), tone * (0.62 + 0.2 * warmth)])
    hair_l = u(0.05, 0.55)
    hair = hair_l * np.array([1.0, u(0.75, 0.95), u(0.55, 0.85)])
    bg = u(0.15, 0.85) * np.array([u(0.8, 1.0), u(0.8, 1.0), u(0.8, 1.0)])
    lip = np.clip(skin * np.array([0.95, 0.62, 0.62]) * u(0.8, 1.0), 0, 1)
    ident = dict(
        face_rx=u(0.56, 0.68), face_ry=u(0.78, 0.88), face_cy=u(0.03, 0.09),
        skin_r=skin[0], skin_g=skin[1], skin_b=skin[2],
        hair_r=hair[0], hair_g=hair[1], hair_b=hair[2], hairline=u(-0.72, -0.56),
        bg_r=bg[0], bg_g=bg[1], bg_b=bg[2],
        eye_x=u(0.22, 0.28), eye_y=u(-0.16, -0.09), eye_w=u(0.10, 0.13), eye_h=u(0.040, 0.052),
        iris_l=u(0.05, 0.35),
        brow_gap=u(0.12, 0.16), brow_thick=u(0.022, 0.040), brow_arch=u(0.0, 0.035),
        brow_dark=u(0.45, 0.85),
        nose_tip=u(0.16, 0.25), nose_w=u(0.06, 0.085),
        mouth_y=u(0.44, 0.52), mouth_w=u(0.16, 0.21), lip_thick=u(0.024, 0.036),
        lip_r=lip[0], lip_g=lip[1], lip_b=lip[2],
    )
    # How strongly this person moves each AU: a mild idiosyncrasy that grows with difficulty.
    spread = 0.25 * difficulty
    ident["gain"] = np.clip(rng.uniform(1 - spread, 1 + 0.5 * spread, size=_N_AU), 0.3, 1.6)
    return ident


def _sample_aus(
    rng: np.random.Generator, cls: str, n: int, difficulty: float, gain: np.ndarray
) -> np.ndarray:
    """AU intensities ``(n, len(AUS))`` in [0, 1] for ``n`` faces of class ``cls``."""
    profile = taxonomy.AU_PROFILES[cls]
    low = float(np.clip(0.8 - 0.4 * difficulty, 0.15, 1.0))
    out = np.zeros((n, _N_AU), np.float32)
    for au in profile.prototypical:
        out[:, _AU_INDEX[au]] = rng.uniform(low, 1.0, size=n)
    for au, freq in profile.optional.items():
        present = rng.random(n) < freq
        out[:, _AU_INDEX[au]] = np.where(present, rng.uniform(low, 1.0, size=n) * 0.85, 0.0)
    if difficulty > 0:
        # Spurious low-level activity in AUs the class does not use.
        spurious = (rng.random((n, _N_AU)) < 0.12 * difficulty) & (out == 0)
        out = np.where(spurious, rng.uniform(0.0, 0.3 * min(difficulty, 2.0), size=(n, _N_AU)), out)
    return np.clip(out * gain[None, :], 0.0, 1.0).astype(np.float32)


def _sample_nuisance(rng: np.random.Generator, n: int, cfg: SynthConfig) -> dict[str, np.ndarray]:
    d = float(cfg.difficulty) * _DIFFICULTY_SCALE
    u = rng.uniform
    return dict(
        angle=u(-1, 1, n) * math.radians(9.0) * d,
        scale=1.0 + u(-0.07, 0.07, n) * d,
        shift_x=u(-0.06, 0.06, n) * d,
        shift_y=u(-0.05, 0.05, n) * d,
        light_amp=u(0.0, 0.35, n) * min(d, 2.0),
        light_dir=u(0, 2 * math.pi, n),
        contrast=1.0 + u(-0.15, 0.15, n) * min(d, 2.0),
        noise=u(0.5, 1.0, n) * 0.035 * d,
        occluded=(rng.random(n) < cfg.occlusion).astype(np.float32),
        occ_x=u(-0.6, 0.6, n), occ_y=u(-0.5, 0.7, n),
        occ_w=u(0.25, 0.55, n), occ_h=u(0.15, 0.40, n), occ_l=u(0.1, 0.9, n),
        noise_idx=rng.integers(0, _NOISE_BANK, n).astype(np.float32),
    )
