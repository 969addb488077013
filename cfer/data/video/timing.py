"""When each AU moves in a synthetic clip: onset-apex-offset curves and compound timing.

A clip's expression is an apex AU vector (drawn as for a still face: the class's
prototypical AUs, its optional AUs with Du et al.'s frequencies, spurious low AUs at
difficulty > 0) played over clip time ``u`` in [0, 1] by a :class:`ClipPlan`. Each
active AU follows an onset-apex-offset curve: a smooth rise, a plateau, a smooth fall.
A basic expression moves all its AUs together (one curve, a little jitter per AU). A
**compound** expression plays its two constituents (:data:`cfer.taxonomy.CONSTITUENTS`,
e.g. happily surprised = happy then surprised; appalled = disgusted then angry, hatred =
angry then disgusted, awed = fearful then surprised) one after the other: each AU goes
to the constituent whose profile holds it more strongly (prototypical = 1, optional =
its share of subjects), and the second constituent's AUs start 30-42% of the clip after
the first's, so their peaks are at least ~18% of the clip apart. AUs both constituents
hold equally (AU25 in happily surprised), and AUs of the compound's own profile that
neither holds, stay up from the first onset to the second offset. Appalled and hatred
share their AUs and differ mainly in this order: information a temporal model can use
and a single apex frame cannot see. The expression fills the clip whatever its length.

:class:`ClipScript` is what :meth:`cfer.data.video.synthetic.SyntheticClipSource.script`
reports of one clip; ``groups`` holds each AU's timeline (:data:`INACTIVE`,
:data:`WHOLE`, :data:`FIRST`, :data:`SECOND`, :data:`SPURIOUS`).

Example:
    >>> import numpy as np
    >>> from cfer import taxonomy
    >>> apex = np.zeros(len(taxonomy.AUS))
    >>> apex[[taxonomy.AUS.index(12), taxonomy.AUS.index(26)]] = 1.0
    >>> plan = ClipPlan(cls="happily_surprised", apex=apex, rng=np.random.default_rng(0))
    >>> plan.order  # AU12 (smile) goes to happy, AU26 (jaw drop) to surprised
    ('happy', 'surprised')
    >>> int(plan.groups[taxonomy.AUS.index(12)]) == FIRST, int(plan.groups[taxonomy.AUS.index(26)]) == SECOND
    (True, True)
    >>> bool(plan.peaks[0] < plan.peaks[1]), plan.curves(np.linspace(0, 1, 8)).shape
    (True, (8, 17))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfer import taxonomy
from cfer.data.synthetic.sampling import _AU_INDEX, _N_AU

__all__ = ["ClipScript", "ClipPlan", "INACTIVE", "WHOLE", "FIRST", "SECOND", "SPURIOUS"]

# AU timelines (ClipScript.groups).
INACTIVE, WHOLE, FIRST, SECOND, SPURIOUS = -1, 0, 1, 2, 3


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _envelope(u: np.ndarray, on: np.ndarray, rise: np.ndarray, hold: np.ndarray, fall: np.ndarray) -> np.ndarray:
    """Onset-apex-offset curves: ``u`` ``(n,)`` clip times in [0, 1] -> ``(n, len(on))`` in [0, 1]."""
    u = np.asarray(u, np.float64)[:, None]
    up = _smooth((u - on) / rise)
    down = 1.0 - _smooth((u - on - rise - hold) / fall)
    return np.minimum(up, down)


def _strength(profile: taxonomy.AUProfile, au: int) -> float:
    if au in profile.prototypical:
        return 1.0
    return float(profile.optional.get(au, 0.0))


@dataclass(frozen=True, eq=False)
class ClipScript:
    """What happens in one synthetic clip (drawn before anything is rendered).

    Attributes:
        cls: Canonical class name.
        subject: Subject id (``"s0000"``...).
        order: A compound's constituents in the order their AUs peak; ``(cls,)`` for a
            basic class; ``()`` for neutral.
        apex: float32 ``(len(AUS),)`` each AU's peak intensity.
        groups: int8 ``(len(AUS),)`` the timeline each AU follows: -1 inactive,
            0 the whole expression (basic; or held by both constituents), 1 the first
            constituent, 2 the second, 3 spurious (its own random curve).
        curves: float32 ``(T, len(AUS))`` AU intensities of each frame (what is rendered).
        peak_times: Seconds at which each entry of ``order`` peaks.
        blink: float32 ``(T,)`` eye closure of each frame in [0, 1].
        mix: float32 ``(T,)`` weight of the second constituent's voice (0 for basic).
    """

    cls: str
    subject: str
    order: tuple[str, ...]
    apex: np.ndarray
    groups: np.ndarray
    curves: np.ndarray
    peak_times: tuple[float, ...]
    blink: np.ndarray
    mix: np.ndarray


class ClipPlan:
    """A clip's timeline in clip time ``u`` in [0, 1]; evaluated at frames and audio.

    Every draw from ``rng`` has a fixed size, so what follows from the same generator
    (blinks, head motion) does not depend on which AUs are active.

    Attributes:
        order: A compound's constituents in time order; ``(cls,)`` basic; ``()`` neutral.
        peaks: Clip times (in [0, 1]) at which each entry of ``order`` peaks.
        groups: int8 ``(len(AUS),)`` each AU's timeline (as :attr:`ClipScript.groups`).
        params: ``(4, len(AUS))`` each AU's onset, rise, plateau and fall (clip time).
    """

    def __init__(self, *, cls: str, apex: np.ndarray, rng: np.random.Generator) -> None:
        self.cls, self.apex = cls, apex
        u = rng.uniform
        n = _N_AU
        # Every draw has a fixed size, so a clip's randomness does not depend on its AUs.
        whole = np.array([u(0.05, 0.25), u(0.15, 0.30), u(0.20, 0.40), u(0.15, 0.30)])
        first = np.array([u(0.00, 0.12), u(0.12, 0.22), u(0.08, 0.18), u(0.20, 0.30)])
        lag = u(0.30, 0.42)
        second = np.array([first[0] + lag, u(0.12, 0.22), u(0.15, 0.30), u(0.15, 0.25)])
        spurious = np.stack([u(0.0, 0.7, n), u(0.10, 0.25, n), u(0.0, 0.2, n), u(0.10, 0.25, n)])
        jitter = np.stack([u(-0.04, 0.04, n), u(0.85, 1.15, n), u(0.9, 1.1, n), u(0.85, 1.15, n)])

        profile = taxonomy.AU_PROFILES[cls]
        groups = np.full(n, INACTIVE, np.int8)
        active = apex > 0
        if cls in taxonomy.CONSTITUENTS:
            a, b = (taxonomy.AU_PROFILES[c] for c in taxonomy.CONSTITUENTS[cls])
            self.order = taxonomy.CONSTITUENTS[cls]
            for au in taxonomy.AUS:
                i = _AU_INDEX[au]
                if not active[i]:
                    continue
                sa, sb = _strength(a, au), _strength(b, au)
                if sa > sb:
                    groups[i] = FIRST
                elif sb > sa:
                    groups[i] = SECOND
                else:
                    groups[i] = WHOLE if (sa > 0 or au in profile.all_aus) else SPURIOUS
            end_second = second[0] + second[1] + second[2]
            shared = np.array([first[0], first[1], end_second - first[0] - first[1], second[3]])
            self.peaks = (first[0] + first[1] + first[2] / 2, second[0] + second[1] + second[2] / 2)
            timelines = {WHOLE: shared, FIRST: first, SECOND: second}
        else:
            self.order = () if cls == taxonomy.NEUTRAL else (cls,)
            for au in taxonomy.AUS:
                i = _AU_INDEX[au]
                if active[i]:
                    groups[i] = WHOLE if au in profile.all_aus else SPURIOUS
            self.peaks = () if not self.order else (whole[0] + whole[1] + whole[2] / 2,)
            timelines = {WHOLE: whole}
        params = spurious.copy()
        for g, p in timelines.items():
            params[:, groups == g] = p[:, None]
        ruled = groups != SPURIOUS
        params[0, ruled] += jitter[0, ruled]
        params[1:, ruled] *= jitter[1:, ruled]
        self.groups, self.params = groups, params

    def envelopes(self, u: np.ndarray) -> np.ndarray:
        """``(len(u), len(AUS))`` each AU's curve in [0, 1] (0 for inactive AUs)."""
        env = _envelope(u, *self.params)
        env[:, self.groups == INACTIVE] = 0.0
        return env

    def curves(self, u: np.ndarray) -> np.ndarray:
        return (self.envelopes(u) * self.apex[None, :]).astype(np.float32)

    def mix(self, u: np.ndarray) -> np.ndarray:
        if len(self.peaks) < 2:
            return np.zeros(len(u), np.float32)
        p0, p1 = self.peaks
        return _smooth((np.asarray(u) - p0) / (p1 - p0)).astype(np.float32)

    def intensity(self, u: np.ndarray) -> np.ndarray:
        env = self.envelopes(u)[:, (self.groups != INACTIVE) & (self.groups != SPURIOUS)]
        return env.max(axis=1) if env.size else np.zeros(len(u))
