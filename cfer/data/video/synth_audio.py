"""A voice-like waveform whose prosody follows the expression: the audio of synthetic clips.

Nothing is said; the sound is a buzz of syllables (a glottal source with harmonics and
breath noise, switched on and off at the syllable rate) whose **prosody** carries the
emotion the way speech does (Scherer 2003; Banse & Scherer 1996): pitch level and
contour, a tremor, loudness, voice tension (how strong the upper harmonics are),
breathiness and tempo. :data:`PROSODY` holds one :class:`Prosody` per basic
expression and neutral. The differences are moderate on purpose and every clip adds
its own noise, and each subject speaks at their own pitch (90-250 Hz), so the audio
helps a model without solving the task alone: a "high" voice is only high for its
speaker.

A compound clip glides from its first constituent's prosody to its second's
(``mix`` goes 0 -> 1), in the same order and at the same times as its face
(:class:`cfer.data.video.SyntheticClipSource` passes the face's timing).

Example:
    >>> import numpy as np
    >>> wave = synth_voice(first=PROSODY["happy"], duration=0.5, sample_rate=8000,
    ...                    voice_f0=150.0, rng=np.random.default_rng(0))
    >>> wave.shape, wave.dtype, bool(np.abs(wave).max() <= 1.0)
    ((4000,), dtype('float32'), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Mapping

import numpy as np

from cfer import taxonomy

__all__ = ["Prosody", "PROSODY", "prosody_of", "synth_voice", "estimate_pitch"]


@dataclass(frozen=True)
class Prosody:
    """How an expression sounds.

    Attributes:
        pitch: Pitch level relative to the speaker's own voice, in semitones.
        contour: Pitch change over one phrase, in semitones (+ rising, - falling).
        tremor: Depth of a 6-8 Hz pitch tremble, in semitones.
        energy: Loudness, a linear gain in (0, 1].
        tension: 0-1; a tense voice has stronger upper harmonics (flatter spectrum).
        breath: 0-1 share of breath noise in the voice.
        rate: Syllables per second.
    """

    pitch: float = 0.0
    contour: float = 0.0
    tremor: float = 0.0
    energy: float = 0.5
    tension: float = 0.3
    breath: float = 0.1
    rate: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.energy <= 1.0:
            raise ValueError(f"Prosody.energy must lie in (0, 1], got {self.energy!r}")
        if not 0.0 < self.rate <= 12.0:
            raise ValueError(f"Prosody.rate must lie in (0, 12] syllables/s, got {self.rate!r}")
        for name in ("tension", "breath"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Prosody.{name} must lie in [0, 1], got {getattr(self, name)!r}")


# Directions as in the vocal-affect literature (Banse & Scherer 1996, Juslin & Laukka 2003);
# sizes kept moderate so the voice is a hint, not the answer.
PROSODY: Mapping[str, Prosody] = MappingProxyType({
    taxonomy.NEUTRAL: Prosody(pitch=0.0, contour=-0.5, tremor=0.0, energy=0.50, tension=0.30, breath=0.10, rate=4.0),
    "happy": Prosody(pitch=2.5, contour=2.5, tremor=0.0, energy=0.65, tension=0.40, breath=0.08, rate=4.8),
    "surprised": Prosody(pitch=3.5, contour=4.0, tremor=0.0, energy=0.60, tension=0.40, breath=0.12, rate=4.0),
    "sad": Prosody(pitch=-2.5, contour=-2.5, tremor=0.0, energy=0.35, tension=0.15, breath=0.20, rate=3.0),
    "angry": Prosody(pitch=1.0, contour=-1.5, tremor=0.0, energy=0.85, tension=0.85, breath=0.05, rate=5.2),
    "fearful": Prosody(pitch=3.0, contour=1.0, tremor=0.7, energy=0.50, tension=0.45, breath=0.18, rate=5.5),
    "disgusted": Prosody(pitch=-2.0, contour=-1.5, tremor=0.0, energy=0.50, tension=0.50, breath=0.12, rate=3.4),
})
"""The prosody of neutral and of each basic expression."""

_PHRASE_S = (0.8, 1.6)  # a pitch contour repeats over phrases of this length (seconds)
_TREMOR_HZ = (6.0, 8.0)


def prosody_of(name: str) -> tuple[Prosody, ...]:
    """The prosody of a class: one entry for neutral and basic classes, the two
    constituents' (in order) for a compound class.

    Example:
        >>> [p.pitch for p in prosody_of("happily_surprised")]
        [2.5, 3.5]
    """
    cls = taxonomy.normalize(name)
    if cls in taxonomy.CONSTITUENTS:
        return tuple(PROSODY[c] for c in taxonomy.CONSTITUENTS[cls])
    return (PROSODY[cls],)


def _jitter(p: Prosody, rng: np.random.Generator) -> Prosody:
    """This clip's take on a prosody: every parameter drawn around its value."""
    return replace(
        p,
        pitch=p.pitch + rng.normal(0.0, 1.0),
        contour=p.contour + rng.normal(0.0, 1.0),
        tremor=max(0.0, p.tremor + rng.normal(0.0, 0.1)),
        energy=float(np.clip(p.energy * rng.uniform(0.85, 1.15), 0.05, 1.0)),
        tension=float(np.clip(p.tension + rng.normal(0.0, 0.08), 0.0, 1.0)),
        breath=float(np.clip(p.breath + rng.normal(0.0, 0.03), 0.0, 1.0)),
        rate=float(np.clip(p.rate * rng.uniform(0.88, 1.12), 1.0, 12.0)),
    )


def _resample(curve: np.ndarray | None, n: int, default: float) -> np.ndarray:
    """A control curve sampled uniformly over the clip, stretched to ``n`` samples."""
    if curve is None:
        return np.full(n, default, np.float64)
    c = np.asarray(curve, np.float64).ravel()
    if c.size == 0 or not np.all(np.isfinite(c)):
        raise ValueError("control curves (mix, intensity) must be non-empty and finite")
    if c.size == 1:
        return np.full(n, float(c[0]))
    return np.interp(np.linspace(0.0, 1.0, n), np.linspace(0.0, 1.0, c.size), c)


def synth_voice(
    *,
    first: Prosody,
    second: Prosody | None = None,
    mix: np.ndarray | None = None,
    intensity: np.ndarray | None = None,
    duration: float,
    sample_rate: int = 16000,
    voice_f0: float = 150.0,
    rng: np.random.Generator,
) -> np.ndarray:
    """Synthesise a voice-like float32 waveform in [-1, 1].

    Args:
        first: Prosody at the start (a basic class's, or a compound's first constituent's).
        second: Prosody that ``mix`` glides to (a compound's second constituent), or None.
        mix: Weight of ``second`` over the clip (any number of points, spread evenly
            from start to end; values in [0, 1]); None is 0 throughout.
        intensity: Expression intensity over the clip, in [0, 1]: how far the prosody
            departs from neutral (half way at 0, fully at 1); None is 1 throughout.
        duration: Length in seconds.
        sample_rate: Samples per second (>= 4000).
        voice_f0: The speaker's own pitch in Hz (60-400).
        rng: Seeded generator; the same state gives the same waveform.

    Returns:
        float32 ``(round(duration * sample_rate),)``.

    Raises:
        ValueError: On a non-positive duration, a sample rate below 4000 Hz or a voice
            pitch outside 60-400 Hz.

    Example:
        >>> w = synth_voice(first=PROSODY["sad"], duration=0.25, sample_rate=8000,
        ...                 voice_f0=120.0, rng=np.random.default_rng(1))
        >>> len(w)
        2000
    """
    if not (isinstance(duration, (int, float)) and duration > 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 4000:
        raise ValueError(f"sample_rate must be an int >= 4000 Hz (16000 is typical), got {sample_rate!r}")
    if not 60.0 <= float(voice_f0) <= 400.0:
        raise ValueError(f"voice_f0 must lie in 60-400 Hz (a speaking voice), got {voice_f0!r}")
    sr = int(sample_rate)
    n = max(1, int(round(duration * sr)))
    t = np.arange(n, dtype=np.float64) / sr
    neutral = PROSODY[taxonomy.NEUTRAL]
    a = _jitter(first, rng)
    b = _jitter(second, rng) if second is not None else a
    w = np.clip(_resample(mix, n, 0.0), 0.0, 1.0)
    k = 0.5 + 0.5 * np.clip(_resample(intensity, n, 1.0), 0.0, 1.0)

    def param(name: str) -> np.ndarray:
        target = (1.0 - w) * getattr(a, name) + w * getattr(b, name)
        return getattr(neutral, name) + k * (target - getattr(neutral, name))

    # Pitch: level + a contour repeated over phrases + micro-intonation per syllable + tremor.
    phrase = rng.uniform(*_PHRASE_S)
    pos = ((t + rng.uniform(0, phrase)) % phrase) / phrase - 0.5  # -0.5 .. 0.5 through each phrase
    rate = param("rate")
    syl_phase = 2 * math.pi * np.cumsum(rate) / sr + rng.uniform(0, 2 * math.pi)
    n_syl = int(syl_phase[-1] / (2 * math.pi)) + 2
    syl_idx = np.minimum((syl_phase / (2 * math.pi)).astype(np.int64), n_syl - 1)
    micro = rng.normal(0.0, 0.6, n_syl)[syl_idx]
    trem_hz = rng.uniform(*_TREMOR_HZ)
    semis = param("pitch") + param("contour") * pos + micro
    semis = semis + param("tremor") * np.sin(2 * math.pi * trem_hz * t + rng.uniform(0, 2 * math.pi))
    f0 = voice_f0 * 2.0 ** (semis / 12.0) * (1.0 + 0.004 * rng.standard_normal(n))  # jitter
    phase = 2 * math.pi * np.cumsum(f0) / sr + rng.uniform(0, 2 * math.pi)

    # Glottal source: a lax (harmonics h^-2.2) and a tense (h^-0.8) spectrum, blended by the
    # tension; sin(h x) by the Chebyshev recurrence sin(h x) = 2 cos(x) sin((h-1) x) - sin((h-2) x).
    n_harm = max(1, int(min(0.45 * sr, 5000.0) / f0.max()))  # speech energy lies below ~5 kHz
    two_cos = 2.0 * np.cos(phase)
    prev, cur = np.zeros(n), np.sin(phase)
    lax, tense = cur.copy(), cur.copy()
    p_lax = p_tense = 1.0
    for h in range(2, n_harm + 1):
        prev, cur = cur, two_cos * cur - prev
        lax += h**-2.2 * cur
        tense += h**-0.8 * cur
        p_lax += h**-4.4
        p_tense += h**-1.6
    tension = param("tension")
    # Equal loudness whatever the tension; peaks stay below ~1.
    voiced = (1.0 - tension) * lax / (1.9 * math.sqrt(p_lax)) + tension * tense / (1.9 * math.sqrt(p_tense))
    breath = param("breath")
    noise = rng.standard_normal(n)
    noise = np.convolve(noise, np.ones(3) / 3, mode="same") / 0.6  # soften the hiss a little
    voice = (1.0 - breath) * voiced + breath * 0.5 * noise

    # Syllables: smooth bursts with gaps between them, each with its own loudness.
    burst = np.clip(0.5 - 0.5 * np.cos(syl_phase), 0.0, 1.0) ** 1.5
    syl_gain = rng.uniform(0.7, 1.0, n_syl)[syl_idx]
    attack = np.clip(t / 0.02, 0.0, 1.0) * np.clip((duration - t) / 0.02, 0.0, 1.0)
    out = param("energy") * burst * syl_gain * attack * voice
    out += 0.004 * rng.standard_normal(n)  # room noise floor
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def estimate_pitch(wave: np.ndarray, *, sample_rate: int, fmin: float = 60.0, fmax: float = 600.0) -> float:
    """Median pitch (Hz) of the loud frames of a waveform, by autocorrelation.

    Frames of 40 ms whose energy is in the top half are autocorrelated; each frame's
    period is the first lag whose correlation comes within 10% of the best lag in
    ``[sample_rate / fmax, sample_rate / fmin]`` (which avoids octave errors).

    Returns:
        The pitch in Hz, or ``nan`` when no frame is voiced.

    Example:
        >>> sr = 8000
        >>> tone = np.sin(2 * np.pi * 200 * np.arange(sr) / sr)
        >>> round(estimate_pitch(tone, sample_rate=sr))
        200
    """
    x = np.asarray(wave, np.float64).ravel()
    size = int(0.04 * sample_rate)
    lo, hi = max(1, int(sample_rate / fmax)), int(sample_rate / fmin)
    if size <= hi or len(x) < size:
        return float("nan")
    frames = np.lib.stride_tricks.sliding_window_view(x, size)[:: size // 2]
    energy = (frames**2).mean(axis=1)
    loud = frames[energy >= max(np.median(energy), 1e-6)]
    pitches = []
    for f in loud:
        f = f - f.mean()
        ac = np.correlate(f, f, mode="full")[size - 1:]
        if ac[0] <= 0:
            continue
        r = ac / ac[0]
        seg = r[lo:hi + 1]
        best = seg.max()
        if best < 0.3:
            continue
        lag = lo + int(np.argmax(seg >= 0.9 * best))
        # Refine the peak to a fraction of a sample (parabola through three points).
        if lo < lag < len(r) - 1:
            y0, y1, y2 = r[lag - 1], r[lag], r[lag + 1]
            den = y0 - 2 * y1 + y2
            if den < 0:
                lag = lag + 0.5 * (y0 - y2) / den
        pitches.append(sample_rate / lag)
    return float(np.median(pitches)) if pitches else float("nan")
