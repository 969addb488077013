"""Synthetic video clips: cfer's FACS faces animated over time, with a voice and landmarks.

:class:`SyntheticClipSource` is the embedded default :class:`~cfer.data.video.ClipSource`:
clip ``i`` is rendered when it is asked for, from ``(seed, subject, class, clip)`` alone,
so a source of a million clips costs no memory and the same index always gives the
same clip. Each clip is a script (:class:`~cfer.data.video.timing.ClipScript`) played by
the still-image renderer (:class:`cfer.data.synthetic.FaceRenderer`), all ``T`` frames
in one vectorised call:

* **Expression.** An apex AU vector is drawn as for a still face; each active AU follows
  an onset-apex-offset curve, and a compound expression plays its two constituents one
  after the other (:mod:`cfer.data.video.timing` gives the rules).
* **Head motion.** The still renderer's per-face pose draw (rotation, scale, shift,
  lighting) is the clip's starting point; the pose then drifts smoothly (two slow
  sinusoids per parameter, 0.15-0.5 Hz, about 3 degrees and 1.5% of scale and shift at
  difficulty 1). Sensor noise is drawn afresh for every frame.
* **Blinks.** The renderer has no eye-closure AU (no AU43/45), and the renderer is not
  changed for clips. Identity parameters are per sample, so a blink is rendered by
  scaling that frame's ``eye_h`` (the eye opening) down to 10% for about 0.25 s
  (a triangular closure of half-width 0.12 s, centred on a frame), about 0.3 blinks
  per second. The iris shrinks a little with it, which a real closing lid also hides.
* **Landmarks.** :func:`cfer.data.video.landmarks.landmarks_from_regions` reads ``L``
  points per frame off the rendered region map, so they move with the AUs and the head.
* **Voice.** :func:`cfer.data.video.synth_audio.synth_voice`: a per-subject voice
  pitch and a per-class prosody; a compound glides from its first constituent's
  prosody to its second's between the two face peaks.

Speed: about 50 clips/s of 16 frames at 64 px with a 16 kHz voice, 85/s without, per
CPU second (``docs/video.md`` gives the command).

Example:
    >>> src = SyntheticClipSource(classes=["happy", "happily_surprised"], n_subjects=2,
    ...                           per_class=1, frames=8, image_size=32, seed=0)
    >>> len(src), src.classes, src.subjects.tolist()
    (4, ('happy', 'happily_surprised'), ['s0000', 's0000', 's0001', 's0001'])
    >>> clip = src.load(1)
    >>> clip.frames.shape, clip.landmarks.shape, clip.audio.shape
    ((8, 32, 32, 3), (8, 16, 2), (16000,))
    >>> src.script(1).order
    ('happy', 'surprised')
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np

from cfer import taxonomy
from cfer.data.synthetic.config import SynthConfig
from cfer.data.synthetic.dataset import _resolve_classes
from cfer.data.synthetic.renderer import FaceRenderer
from cfer.data.synthetic.sampling import (
    _DIFFICULTY_SCALE,
    _IDENTITY_KEYS,
    _NOISE_BANK,
    _sample_aus,
    _sample_identity,
    _sample_nuisance,
)
from cfer.data.video.landmarks import landmarks_from_regions
from cfer.data.video.layout import RawClip
from cfer.data.video.synth_audio import prosody_of, synth_voice
from cfer.data.video.timing import ClipPlan, ClipScript

__all__ = ["SyntheticClipSource"]

logger = logging.getLogger(__name__)

_BLINK_RATE = 0.3  # blinks per second
_BLINK_HALF = 0.12  # seconds from full closure to open
_BLINK_DEPTH = 0.9  # share of the eye opening a blink closes
_AUDIO_CONTROL = 200  # points of the mix / intensity curves handed to the voice


def _check_int(name: str, value: object, low: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}{hint}, got {value!r}")
    return int(value)


class SyntheticClipSource:
    """Synthetic expression clips, rendered on demand: a :class:`~cfer.data.video.ClipSource`.

    Clips are ordered by subject, then class, then clip number (like
    :func:`cfer.data.synthetic.render_faces`). Subject ``k`` is the same person as in
    ``render_faces(seed=seed)``, and clip ``(subject, class, j)`` is the same whatever
    other classes or subjects the source holds.

    Args:
        classes: Class names, or ``"basic"``, ``"compound"``, ``"basic+neutral"``,
            ``"all"`` (all 22, the default).
        n_subjects: Number of people.
        per_class: Clips of each class per person.
        first_subject: Id of the first person (ids are ``first_subject + k``); give
            disjoint ranges for subject-disjoint splits.
        frames: Frames per clip (>= 2).
        fps: Frames per second; a clip lasts ``frames / fps`` seconds.
        image_size: Side of the square frames (16-512).
        channels: 3 (RGB) or 1 (grey).
        difficulty: Nuisance, head-motion and AU-spread scale (0-3, 1 the default).
        seed: Seed of everything.
        audio: Render a voice track.
        sample_rate: Audio samples per second.
        landmarks: Points per frame (see :data:`cfer.data.video.landmarks.LANDMARK_NAMES`).
        split: Optional split name for every clip (:attr:`splits`).

    Attributes:
        classes: Canonical class names; :attr:`labels` index them.
        labels: int64 ``(N,)``.
        subjects: str ``(N,)`` subject ids ``"s0000"``...
        splits: str ``(N,)`` or None.

    Raises:
        ValueError: On an unknown class or an out-of-range option; the message says
            what is allowed.

    Example:
        >>> src = SyntheticClipSource(classes="basic", n_subjects=1, per_class=1,
        ...                           frames=4, image_size=16, audio=False)
        >>> clip = src.load(0)
        >>> clip.frames.shape, clip.audio is None, src.classes[src.labels[0]]
        ((4, 16, 16, 3), True, 'happy')
    """

    def __init__(
        self,
        *,
        classes: Sequence[str] | str | None = "all",
        n_subjects: int = 4,
        per_class: int = 2,
        first_subject: int = 0,
        frames: int = 16,
        fps: float = 8,
        image_size: int = 64,
        channels: int = 3,
        difficulty: float = 1.0,
        seed: int = 0,
        audio: bool = True,
        sample_rate: int = 16000,
        landmarks: int = 16,
        split: str | None = None,
    ) -> None:
        try:
            self.classes: tuple[str, ...] = _resolve_classes(classes)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"{err}; give class names from cfer.taxonomy.ALL_CLASSES or one of "
                "'basic', 'compound', 'basic+neutral', 'all'"
            ) from None
        self.n_subjects = _check_int("n_subjects", n_subjects, 1)
        self.per_class = _check_int("per_class", per_class, 1)
        self.first_subject = _check_int("first_subject", first_subject, 0)
        self.frames = _check_int("frames", frames, 2, " (a clip needs at least two frames to move; try 16)")
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) or not 0 < float(fps) <= 120:
            raise ValueError(f"fps must be a number in (0, 120] (8 is the default), got {fps!r}")
        self.fps = float(fps)
        self.seed = _check_int("seed", seed, 0)
        self.audio = bool(audio)
        self.sample_rate = _check_int("sample_rate", sample_rate, 4000, " (16000 is typical)")
        self.landmarks = _check_int("landmarks", landmarks, 1, " (16 is the default)")
        self.config = SynthConfig(image_size=image_size, channels=channels, difficulty=difficulty)
        self._renderer = FaceRenderer(config=self.config)
        self._d = float(difficulty) * _DIFFICULTY_SCALE

        n_cls = len(self.classes)
        block = n_cls * self.per_class
        n = self.n_subjects * block
        idx = np.arange(n)
        self.labels = ((idx % block) // self.per_class).astype(np.int64)
        self.subjects = np.array([f"s{self.first_subject + k:04d}" for k in idx // block])
        self.splits = None if split is None else np.array([str(split)] * n)
        self._identities: dict[int, dict] = {}
        logger.debug("synthetic clips: %d of %d classes x %d subjects x %d, %d frames at %g fps",
                     n, n_cls, self.n_subjects, self.per_class, self.frames, self.fps)

    def __getstate__(self) -> dict:
        # Workers rebuild the renderer (and its noise bank, drawn from a fixed seed) themselves.
        state = self.__dict__.copy()
        state["_renderer"], state["_identities"] = None, {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._renderer = FaceRenderer(config=self.config)

    # -- the ClipSource protocol -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def duration(self) -> float:
        """Seconds per clip (``frames / fps``)."""
        return self.frames / self.fps

    def load(self, index: int) -> RawClip:
        """Render clip ``index``: frames, voice, landmarks and region maps.

        Raises:
            IndexError: If ``index`` is out of range.
        """
        i, k, cls, j = self._locate(index)
        plan, rng = self._plan(k, cls, j)
        T = self.frames
        t = np.arange(T) / self.fps
        ident = self._identity(k)
        identity = {key: np.full(T, ident[key], np.float32) for key in _IDENTITY_KEYS}
        blink = self._blinks(rng, t)
        identity["eye_h"] = identity["eye_h"] * (1.0 - _BLINK_DEPTH * blink).astype(np.float32)
        nuisance = self._motion(rng, t)
        frames, regions = self._renderer.render(identity=identity, aus=plan.curves(t / self.duration),
                                                nuisance=nuisance)
        wave = None
        if self.audio:
            wave = self._voice(k, cls, j, plan)
        return RawClip(
            frames=frames, fps=self.fps, audio=wave, sample_rate=self.sample_rate if self.audio else None,
            landmarks=landmarks_from_regions(regions, points=self.landmarks), regions=regions,
        )

    # -- introspection -----------------------------------------------------------------------
    def script(self, index: int) -> ClipScript:
        """What clip ``index`` shows, without rendering it (cheap).

        Example:
            >>> src = SyntheticClipSource(classes=["appalled"], n_subjects=1, per_class=1, frames=8)
            >>> s = src.script(0)
            >>> s.order, s.curves.shape
            (('disgusted', 'angry'), (8, 17))
        """
        i, k, cls, j = self._locate(index)
        plan, rng = self._plan(k, cls, j)
        t = np.arange(self.frames) / self.fps
        u = t / self.duration
        return ClipScript(
            cls=cls, subject=str(self.subjects[i]), order=tuple(plan.order), apex=plan.apex.copy(),
            groups=plan.groups.copy(), curves=plan.curves(u),
            peak_times=tuple(float(p) * self.duration for p in plan.peaks),
            blink=self._blinks(rng, t).astype(np.float32), mix=plan.mix(u),
        )

    def au_curves(self, index: int) -> np.ndarray:
        """float32 ``(T, len(taxonomy.AUS))``: the AU intensities of each frame of a clip."""
        return self.script(index).curves

    # -- internals -----------------------------------------------------------------------------
    def _locate(self, index: int) -> tuple[int, int, str, int]:
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"clip index must be an int, got {type(index).__name__}")
        i = int(index) + (n if index < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"clip index {index} out of range for {n} clips")
        block = len(self.classes) * self.per_class
        k = self.first_subject + i // block
        return i, k, self.classes[int(self.labels[i])], i % self.per_class

    def _identity(self, k: int) -> dict:
        if k not in self._identities:  # the same stream render_faces uses for subject k
            self._identities[k] = _sample_identity(np.random.default_rng([self.seed, 0, k]), self._d)
            if len(self._identities) > 4096:
                self._identities.pop(next(iter(self._identities)))
        return self._identities[k]

    def _plan(self, k: int, cls: str, j: int) -> tuple[ClipPlan, np.random.Generator]:
        rng = np.random.default_rng([self.seed, 2, k, taxonomy.class_index(cls), j])
        apex = _sample_aus(rng, cls, 1, self._d, self._identity(k)["gain"])[0]
        return ClipPlan(cls=cls, apex=apex, rng=rng), rng

    def _blinks(self, rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
        n = int(rng.poisson(_BLINK_RATE * self.duration))
        centres = t[rng.integers(0, len(t), size=n)] if n else np.zeros(0)
        if not n:
            return np.zeros(len(t))
        return np.clip(1.0 - np.abs(t[:, None] - centres[None, :]) / _BLINK_HALF, 0.0, 1.0).max(axis=1)

    def _motion(self, rng: np.random.Generator, t: np.ndarray) -> dict[str, np.ndarray]:
        base = _sample_nuisance(rng, 1, self.config)
        T = len(t)
        out = {key: np.repeat(np.asarray(v, np.float64), T) for key, v in base.items()}
        d = float(self.config.difficulty) * _DIFFICULTY_SCALE
        amps = {"angle": math.radians(4.0) * d, "scale": 0.02 * d, "shift_x": 0.02 * d, "shift_y": 0.015 * d}
        for key, amp in amps.items():
            f = rng.uniform(0.15, 0.5, 2)
            ph = rng.uniform(0.0, 2 * math.pi, 2)
            out[key] = out[key] + amp * (0.7 * np.sin(2 * math.pi * f[0] * t + ph[0])
                                         + 0.3 * np.sin(2 * math.pi * f[1] * t + ph[1]))
        out["noise_idx"] = rng.integers(0, _NOISE_BANK, T).astype(np.float32)
        return {key: np.asarray(v, np.float32) for key, v in out.items()}

    def _voice(self, k: int, cls: str, j: int, plan: ClipPlan) -> np.ndarray:
        voice_f0 = float(np.exp(np.random.default_rng([self.seed, 4, k]).uniform(math.log(90), math.log(250))))
        rng = np.random.default_rng([self.seed, 3, k, taxonomy.class_index(cls), j])
        u = np.linspace(0.0, 1.0, _AUDIO_CONTROL)
        parts = prosody_of(cls)
        return synth_voice(
            first=parts[0], second=parts[1] if len(parts) > 1 else None, mix=plan.mix(u),
            intensity=plan.intensity(u), duration=self.duration, sample_rate=self.sample_rate,
            voice_f0=voice_f0, rng=rng,
        )
