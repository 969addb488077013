"""A FACS-driven face renderer: cfer's embedded data, so nothing has to be downloaded.

Every face is drawn from three independent draws:

* an **identity** (per subject): face shape, skin tone, hair, eye, brow, nose and mouth
  geometry, and how strongly this person moves each AU (their expressivity);
* an **expression**: the class's prototypical AUs from :data:`cfer.taxonomy.AU_PROFILES`,
  its optional AUs each present with the frequency Du et al. report, random intensities,
  and at higher difficulty a little spurious activity in other AUs;
* **nuisances**: rotation, scale and shift, a lighting gradient, sensor noise and,
  optionally, an occluding patch.

The AUs act on a parametric face the way FACS describes them (AU1 raises the inner
brows, AU12 pulls the lip corners up, AU9 wrinkles the nose, AU26 drops the jaw, ...),
so a compound face shares visible parts with both of its basic constituents. Each image
comes with its AU intensity vector and a map of the facial regions (forehead, brows,
eyes, nose, cheeks, mouth, chin), aligned pixel for pixel: the ground truth that Grad-CAM
maps are scored against.

The renderer is vectorised over a batch with numpy and draws several thousand 64x64
faces a second on one core (``benchmarks/synth_speed.py``).

Example:
    >>> from cfer.data.synthetic import render_faces
    >>> faces = render_faces(classes=["neutral", "happy", "happily_surprised"],
    ...                      n_subjects=3, per_class=2, seed=0)
    >>> len(faces), faces.images.shape[1:], faces.aus.shape[1]
    (18, (64, 64, 3), 17)
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from cfer import taxonomy
from cfer.data.synthetic.config import SynthConfig
from cfer.data.synthetic.sampling import (
    _AU_INDEX,
    _IDENTITY_KEYS,
    _N_AU,
    _NOISE_BANK,
    _sample_identity,
    _sample_nuisance,
)

__all__ = ["FaceRenderer", "SynthConfig"]

logger = logging.getLogger(__name__)

_ZOOM = 1.22  # how much of the frame the face fills
_V_OFFSET = 0.04  # the face sits slightly low in the frame


# ----------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------
def _col(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-sample scalars as a (B, 1, 1) float32 column for broadcasting over pixels."""
    return np.asarray(values, np.float32).reshape(-1, 1, 1)


class FaceRenderer:
    """Draws batches of faces from identity, AU and nuisance parameters.

    Most users want :func:`render_faces`; the renderer is exposed for custom designs
    (e.g. sweeping one AU's intensity on one identity).

    Args:
        config: Image size, channels, difficulty and occlusion.

    Example:
        >>> import numpy as np
        >>> from cfer.data.synthetic import FaceRenderer, SynthConfig
        >>> r = FaceRenderer(config=SynthConfig(image_size=32))
        >>> img, regions = r.render_prototype(cls="happy", seed=1)
        >>> img.shape, regions.shape
        ((32, 32, 3), (32, 32))
    """

    def __init__(self, *, config: SynthConfig = SynthConfig()) -> None:
        self.config = config
        s = config.image_size
        c = (np.arange(s, dtype=np.float32) + 0.5) / s * 2.0 - 1.0
        self._gx = c[None, None, :]
        self._gy = c[None, :, None]
        self._edge = np.float32(2.4 / s)  # anti-aliasing width in canonical units
        self._bank: np.ndarray | None = None

    def _noise_bank(self) -> np.ndarray:
        if self._bank is None:
            s = self.config.image_size
            rng = np.random.default_rng(12345)
            self._bank = rng.standard_normal((_NOISE_BANK, s, s, 3), dtype=np.float32)
        return self._bank

    def _window(self, N: dict[str, np.ndarray], u_half, v0, v1, margin: int = 2) -> tuple[slice, slice]:
        """Pixel rows and columns that the canonical box |u| <= u_half, v0 <= v <= v1 can
        reach in any sample of the batch (features are only computed there)."""
        ca, sa = np.cos(N["angle"]), np.sin(N["angle"])
        zoom = N["scale"] * _ZOOM
        xs, ys = [], []
        for u in (-u_half, u_half):
            for v in (v0, v1):
                uz, vz = u * zoom, (v - _V_OFFSET) * zoom
                xs.append(ca * uz - sa * vz + N["shift_x"])
                ys.append(sa * uz + ca * vz + N["shift_y"])
        s = self.config.image_size
        to_px = lambda a: (np.concatenate([np.ravel(np.broadcast_to(x, N["angle"].shape)) for x in a]) + 1) / 2 * s  # noqa: E731
        px, py = to_px(xs), to_px(ys)
        c0, c1 = max(int(np.floor(px.min())) - margin, 0), min(int(np.ceil(px.max())) + margin, s)
        r0, r1 = max(int(np.floor(py.min())) - margin, 0), min(int(np.ceil(py.max())) + margin, s)
        return slice(r0, max(r1, r0)), slice(c0, max(c1, c0))

    # -- small helpers ----------------------------------------------------------------
    def _soft(self, d: np.ndarray, width: np.floating | None = None) -> np.ndarray:
        """Coverage of a shape from its signed distance (negative inside)."""
        w = self._edge if width is None else width
        return np.clip(0.5 - d / w, 0.0, 1.0)

    def _line(self, dist: np.ndarray, half: np.ndarray | float) -> np.ndarray:
        """Coverage of a stroke of half-thickness ``half`` at distance ``dist``."""
        return self._soft(np.abs(dist) - half)

    # -- main entry ---------------------------------------------------------------------
    def render(
        self, *, identity: dict[str, np.ndarray], aus: np.ndarray, nuisance: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render a batch.

        Args:
            identity: Per-sample identity parameters (arrays of length B; see
                ``_IDENTITY_KEYS``).
            aus: AU intensities ``(B, len(AUS))`` in [0, 1].
            nuisance: Per-sample nuisance parameters (arrays of length B).

        Returns:
            uint8 images ``(B, S, S, C)`` and region maps ``(B, S, S)`` uint8, where 0 is
            no region and ``k`` is ``taxonomy.REGIONS[k - 1]``.
        """
        cfg = self.config
        B = aus.shape[0]
        I = {g: p for g, p in ((k, _col(identity[k])) for k in _IDENTITY_KEYS)}
        A = {au: _col(aus[:, _AU_INDEX[au]]) for au in taxonomy.AUS}
        N = {k: _col(v) for k, v in nuisance.items()}

        # Canonical coordinates: undo rotation, scale and shift per sample.
        ca, sa = np.cos(N["angle"]), np.sin(N["angle"])
        zoom = N["scale"] * _ZOOM
        x0 = self._gx - N["shift_x"]
        y0 = self._gy - N["shift_y"]
        U = ((ca * x0 + sa * y0) / zoom).astype(np.float32, copy=False)
        V = ((-sa * x0 + ca * y0) / zoom + _V_OFFSET).astype(np.float32, copy=False)
        AU_ = np.abs(U)

        def rgb(*keys: str) -> np.ndarray:
            return np.stack([I[k] for k in keys], axis=-1)  # (B,1,1,3)

        shade = np.ones_like(U)  # multiplicative darkening of lines and folds

        def paint(im: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
            im += alpha[..., None] * (color - im)

        def darken(sh: np.ndarray, alpha: np.ndarray, amount: np.ndarray | float) -> None:
            sh *= 1.0 - alpha * amount

        class _W:  # the pixels of one feature's window, as views
            def __init__(w, rs: slice, cs: slice) -> None:  # noqa: N805
                w.u, w.v, w.au = U[:, rs, cs], V[:, rs, cs], AU_[:, rs, cs]
                w.img, w.shade, w.face = img[:, rs, cs], shade[:, rs, cs], face_a[:, rs, cs]

        def window(u_half: np.ndarray | float, v0: np.ndarray | float, v1: np.ndarray | float) -> _W:
            return _W(*self._window(N, u_half, v0, v1))

        # --- head and hair (whole image) -------------------------------------------
        jaw = 0.06 * A[26]
        ry = I["face_ry"] + jaw * (V > I["face_cy"])
        face_r = np.sqrt((U / I["face_rx"]) ** 2 + ((V - I["face_cy"]) / ry) ** 2)
        face_a = self._soft((face_r - 1.0) * I["face_rx"])
        hair_a = self._soft((face_r - 1.06) * I["face_rx"]) * (V < I["hairline"] + 0.25)
        fringe = self._soft(V - (I["hairline"] + 0.05 * np.cos(U * 3.0))) * face_a
        # Background, then hair, then skin, then the fringe over the skin, composited at once.
        keep = 1.0 - fringe
        w_bg = (1.0 - hair_a) * (1.0 - face_a) * keep
        w_hair = hair_a * (1.0 - face_a) * keep + fringe
        w_skin = face_a * keep
        weights = np.stack([w_bg, w_hair, w_skin], axis=-1).reshape(B, -1, 3)
        colours = np.concatenate([rgb("bg_r", "bg_g", "bg_b"), rgb("hair_r", "hair_g", "hair_b"),
                                  rgb("skin_r", "skin_g", "skin_b")], axis=1).reshape(B, 3, 3)
        img = np.matmul(weights, colours).reshape(B, *U.shape[1:], 3)

        # --- brows and forehead ---------------------------------------------------------
        eye_x, eye_y, eye_w, eye_h = I["eye_x"], I["eye_y"], I["eye_w"], I["eye_h"]
        brow_y = eye_y - I["brow_gap"]
        u_in = 0.095 - 0.04 * A[4]
        u_out = eye_x + eye_w + 0.05
        inner_y = brow_y - 0.11 * A[1] + 0.075 * A[4] - 0.02 * A[2]
        outer_y = brow_y - 0.10 * A[2] - 0.025 * A[1] + 0.025 * A[4]
        w = window(u_out + 0.02, I["hairline"], brow_y + 0.15)
        t = np.clip((w.au - u_in) / (u_out - u_in), 0.0, 1.0)
        centre = (1 - t) * inner_y + t * outer_y - I["brow_arch"] * 4 * t * (1 - t)
        half = I["brow_thick"] * (1.15 - 0.45 * t)
        along = np.maximum(u_in - w.au, w.au - u_out)
        brow_a = self._soft(np.maximum(np.abs(w.v - centre) - half, along)) * w.face
        darken(w.shade, brow_a, I["brow_dark"])
        # AU4: vertical furrows between the brows.
        furrow_v = np.clip(1 - np.abs(w.v - (brow_y + 0.05)) / 0.07, 0, 1)
        darken(w.shade, self._line(w.au - 0.03, 0.006) * furrow_v, 0.55 * A[4])
        # AU1/AU2: horizontal lines across the forehead.
        fh_mask = (w.v < brow_y - 0.07) & (w.v > I["hairline"] + 0.08)
        waves = np.clip(np.cos((w.v - brow_y) * 70.0) * 2.0 - 1.0, 0, 1) * fh_mask
        waves *= np.clip(1.2 - w.au / 0.4, 0, 1) * w.face
        darken(w.shade, waves, 0.35 * np.maximum(A[1], A[2]))

        # --- eyes ------------------------------------------------------------------------
        up = eye_h * np.maximum(1.0 + 1.0 * A[5] - 0.55 * A[7] - 0.25 * A[6] + 0.2 * A[1] * A[2], 0.15)
        lo = eye_h * np.maximum(1.0 + 0.35 * A[5] - 0.5 * A[7] - 0.6 * A[6], 0.15)
        w = window(eye_x + eye_w + 0.08, eye_y - 0.13, eye_y + 0.1)
        du = w.au - eye_x
        prof = np.sqrt(np.clip(1.0 - (du / eye_w) ** 2, 0.0, 1.0))
        top = eye_y - up * prof
        bot = eye_y + lo * prof
        eye_a = self._soft(np.maximum(np.maximum(top - w.v, w.v - bot), np.abs(du) - eye_w))
        paint(w.img, eye_a, np.array([0.93, 0.92, 0.88], np.float32))
        rad = np.sqrt(du**2 + (w.v - eye_y) ** 2)
        iris_r = 0.040 + 0.2 * eye_h
        iris_col = I["iris_l"][..., None] * np.array([0.9, 0.75, 0.6], np.float32)
        paint(w.img, self._soft(rad - iris_r) * eye_a, iris_col)
        paint(w.img, self._soft(rad - iris_r * 0.45) * eye_a, np.zeros(3, np.float32))
        darken(w.shade, self._line(w.v - top + 0.004, 0.008) * (np.abs(du) < eye_w * 1.08), 0.7)
        darken(w.shade, self._line(w.v - bot, 0.004) * (np.abs(du) < eye_w), 0.3)
        # AU6: crow's feet at the outer corners and a raised lower-lid fold; AU7 adds to the fold.
        crow = (w.au > eye_x + eye_w * 0.95) & (w.au < eye_x + eye_w + 0.07) & (np.abs(w.v - eye_y) < 0.06)
        crow_lines = np.clip(np.cos((w.v - eye_y) * 90.0 + du * 20) * 2 - 1, 0, 1) * crow
        darken(w.shade, crow_lines, 0.45 * A[6])
        fold = self._line(w.v - (bot + 0.03), 0.005) * (np.abs(du) < eye_w * 0.9)
        darken(w.shade, fold, 0.45 * A[6] + 0.15 * A[7])

        # --- nose ------------------------------------------------------------------------
        nose_w, tip = I["nose_w"], I["nose_tip"] - 0.03 * A[9] - 0.015 * A[10]
        w = window(nose_w + 0.05, eye_y, tip + 0.05)
        side = self._line(w.au - nose_w * 0.55, 0.006) * (w.v > eye_y + 0.03) * (w.v < tip - 0.03)
        darken(w.shade, side, 0.18)
        nostril_w = nose_w * (0.32 + 0.12 * A[9] + 0.1 * A[10])
        nos_d = np.sqrt(((w.au - nose_w * 0.5) / nostril_w) ** 2 + ((w.v - tip) / 0.022) ** 2) - 1.0
        darken(w.shade, self._soft(nos_d * 0.02), 0.65)
        darken(w.shade, self._line(w.v - (tip + 0.025), 0.006) * (w.au < nose_w * 0.45), 0.25)
        # AU9: wrinkles across the bridge.
        bridge = (w.au < nose_w * 0.9) & (w.v > eye_y + 0.04) & (w.v < eye_y + 0.17)
        darken(w.shade, np.clip(np.cos((w.v - eye_y) * 95.0) * 2 - 1, 0, 1) * bridge, 0.6 * A[9])

        # --- mouth -----------------------------------------------------------------------
        press = np.maximum(A[23], A[24])
        mw = I["mouth_w"] * (1 + 0.28 * A[12] + 0.35 * A[20] - 0.22 * A[23] - 0.1 * A[24] + 0.05 * A[15])
        corner = -0.10 * A[12] + 0.085 * A[15] + 0.025 * A[20] + 0.02 * A[17]
        gap = np.maximum(0.035 * A[25] + 0.12 * A[26] + 0.015 * A[10], 0.0) * (1 - 0.8 * press)
        ul_raise = 0.035 * A[10]
        lt = I["lip_thick"] * (1 - 0.6 * press)
        my = I["mouth_y"] - 0.02 * A[17]
        w = window(mw + 0.02, my - 0.2, my + 0.22)
        r = np.clip(w.u / mw, -1.2, 1.2)
        s = np.sqrt(np.clip(1 - r**2, 0.0, 1.0))
        yc = my + corner * r**2
        g_top = yc - (0.3 * gap + ul_raise) * s
        g_bot = yc + 0.7 * gap * s
        outer_top = g_top - lt * s - 0.005
        outer_bot = g_bot + 1.25 * lt * s + 0.005 + 0.02 * A[17] * s
        lips_a = self._soft(np.maximum(np.maximum(outer_top - w.v, w.v - outer_bot), w.au - mw))
        paint(w.img, lips_a, rgb("lip_r", "lip_g", "lip_b"))
        inner = np.maximum(np.maximum(g_top - w.v, w.v - g_bot), w.au - mw * 0.96)
        open_a = self._soft(inner) * (gap + ul_raise > 0.004)
        paint(w.img, open_a, np.array([0.22, 0.05, 0.06], np.float32))
        teeth_a = open_a * (w.v < g_top + np.minimum(0.5 * (g_bot - g_top), 0.03)) * (w.au < mw * 0.8)
        paint(w.img, teeth_a, np.array([0.92, 0.9, 0.85], np.float32))
        seam = self._line(w.v - yc, 0.004 + 0.004 * press) * (w.au < mw) * (gap < 0.01)
        darken(w.shade, seam, 0.55)
        # Fold under the lower lip; AU17 deepens it.
        mentolabial = self._line(w.v - (outer_bot + 0.03), 0.006) * (w.au < mw * 0.6)
        darken(w.shade, mentolabial, 0.15 + 0.5 * A[17])

        # --- cheeks and nasolabial folds --------------------------------------------------
        cheek_y = eye_y + 0.2 - 0.05 * A[6] - 0.03 * A[12]
        w = window(I["face_rx"], np.minimum(tip, cheek_y) - 0.12, my + 0.05)
        fold_t = np.clip((w.v - tip) / (my - tip + 1e-3), 0.0, 1.0)
        fold_x = (nose_w + 0.035) + fold_t * (mw + 0.03 - nose_w - 0.035) + 0.05 * fold_t * (1 - fold_t)
        nl = self._line(w.au - fold_x, 0.006) * (w.v > tip - 0.01) * (w.v < my + 0.02)
        darken(w.shade, nl, 0.12 + 0.6 * A[11] + 0.35 * A[12] + 0.25 * A[10] + 0.15 * A[9])
        # AU6/AU12: raised, rounder cheeks (highlight above, shadow below).
        ck = np.sqrt(((w.au - (eye_x + 0.03)) / 0.13) ** 2 + ((w.v - cheek_y) / 0.09) ** 2)
        lift = np.maximum(A[6], 0.6 * A[12])
        darken(w.shade, self._line(ck - 1.0, 0.06) * (w.v > cheek_y), 0.25 * lift)
        w.shade *= 1.0 + 0.2 * lift * np.clip(1 - ck, 0, 1)

        # --- chin ------------------------------------------------------------------------
        chin_y = my + 0.19 + 0.6 * gap
        w = window(0.14, chin_y - 0.1, chin_y + 0.1)
        cd = np.sqrt((w.u / 0.12) ** 2 + ((w.v - chin_y) / 0.08) ** 2)
        dimples = np.clip(np.cos(w.u * 80) * np.cos(w.v * 80) * 2 - 1, 0, 1) * (cd < 1)
        darken(w.shade, dimples, 0.5 * A[17])


        # --- regions (before occlusion and photometric nuisances) -----------------------
        regions = self._regions(I, U, V, AU_, face_a, inner_y, outer_y, u_out, up, lo, tip, my, mw, gap)

        # --- nuisances ---------------------------------------------------------------------
        occ = (
            (np.abs(self._gx - N["occ_x"]) < N["occ_w"] / 2)
            & (np.abs(self._gy - N["occ_y"]) < N["occ_h"] / 2)
            & (N["occluded"] > 0.5)
        )
        if occ.any():
            # The occluder hides the face's lines and folds too.
            shade = np.where(occ, np.float32(1.0), shade)
            paint(img, occ.astype(np.float32), N["occ_l"][..., None] * np.array([1.0, 0.97, 0.93], np.float32))
            regions = np.where(occ, 0, regions).astype(np.uint8)
        # Shading, lighting gradient and contrast in one gain; then offset and sensor noise.
        light = 1.0 + N["light_amp"] * (np.cos(N["light_dir"]) * self._gx + np.sin(N["light_dir"]) * self._gy)
        shade *= light * N["contrast"]
        img *= shade[..., None]
        if cfg.channels == 1:
            img = (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        bank = self._noise_bank()[..., : cfg.channels]
        noise = bank[nuisance["noise_idx"].astype(np.int64) % len(bank)]
        noise *= N["noise"][..., None]
        noise += (0.5 * (1.0 - N["contrast"]))[..., None]
        img += noise
        img *= 255.0
        img += 0.5
        np.clip(img, 0.0, 255.0, out=img)
        out = img.astype(np.uint8)
        return out, regions

    def _regions(self, I, U, V, AU_, face_a, inner_y, outer_y, u_out, up, lo, tip, my, mw, gap):
        """Region label map: each pixel of the face gets the first region that claims it."""
        face = face_a > 0.5
        eye_x, eye_y, eye_w = I["eye_x"], I["eye_y"], I["eye_w"]
        eyes = ((AU_ - eye_x) / (eye_w * 1.4)) ** 2 + ((V - eye_y) / (np.maximum(up, lo) + 0.035)) ** 2 < 1
        brow_top = np.minimum(inner_y, outer_y) - 0.07
        brow_bot = np.maximum(inner_y, outer_y) + 0.06
        brows = (V > brow_top) & (V < brow_bot) & (AU_ < u_out + 0.04)
        nose = (AU_ < I["nose_w"] + 0.04) & (V > eye_y) & (V < tip + 0.05)
        mouth = (U / (mw + 0.06)) ** 2 + ((V - (my + 0.25 * gap)) / (0.08 + 0.7 * gap)) ** 2 < 1
        cheeks = (V > eye_y + 0.05) & (V < my + 0.04) & (AU_ > I["nose_w"] + 0.02)
        chin = V > my + 0.04
        forehead = (V < brow_top + 0.01) & (V > I["hairline"] + 0.02)
        out = np.zeros(U.shape, np.uint8)
        # Priority order: later assignments only fill pixels still unclaimed.
        order = (("eyes", eyes), ("brows", brows), ("nose", nose), ("mouth", mouth),
                 ("cheeks", cheeks), ("chin", chin), ("forehead", forehead))
        for name, m in order:
            k = taxonomy.REGIONS.index(name) + 1
            out = np.where((out == 0) & m & face, np.uint8(k), out)
        return out

    def render_prototype(self, *, cls: str, seed: int = 0, intensity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """One face of a class with only its prototypical AUs at ``intensity``, no nuisances.

        Returns:
            The uint8 image ``(S, S, C)`` and its region map ``(S, S)``.
        """
        cls = taxonomy.normalize(cls)
        rng = np.random.default_rng(seed)
        ident = _sample_identity(rng, 0.0)
        aus = np.zeros((1, _N_AU), np.float32)
        for au in taxonomy.AU_PROFILES[cls].prototypical:
            aus[0, _AU_INDEX[au]] = intensity
        clean = SynthConfig(image_size=self.config.image_size, channels=self.config.channels, difficulty=0.0)
        nuis = _sample_nuisance(rng, 1, clean)
        img, reg = self.render(identity={k: np.array([ident[k]]) for k in _IDENTITY_KEYS}, aus=aus, nuisance=nuis)
        return img[0], reg[0]
