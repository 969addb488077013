"""Log-mel spectrograms of a clip's audio, in pure numpy.

:func:`log_mel` turns a mono waveform into the ``(mel_bins, mel_steps)`` array that
:meth:`cfer.data.video.ClipLayout.pack` stores beside the frames:

1. short-time Fourier transform: Hann window of ``n_fft`` samples (default 25 ms,
   rounded up to a power of two), hop ``hop`` samples (default 10 ms), the signal
   zero-padded by ``n_fft // 2`` at both ends so frames are centred on their time;
2. power spectrum ``|X|^2`` through an **HTK-scale** mel filterbank
   (``mel = 2595 * log10(1 + f / 700)``): ``mel_bins`` triangles with peak 1, evenly
   spaced in mel between ``fmin`` and ``fmax`` (default 8 kHz, at most half the
   sample rate), without area normalisation (torchaudio's ``mel_scale="htk",
   norm=None``);
3. natural log of ``max(energy, floor)``;
4. exactly ``mel_steps`` time steps: when the STFT has more frames, each step is the
   mean of an equal share of them (average pooling); when it has fewer, frames are
   repeated (nearest neighbour);
5. per-clip normalisation (``normalize=True``, the default): minus the clip's mean,
   divided by its standard deviation, so loudness and recording gain drop out; a
   constant spectrogram (silence) becomes all zeros.

Audio shorter than one window is zero-padded to one window (a single STFT frame,
repeated ``mel_steps`` times); empty audio is an error (pack the clip with
``mel=None`` instead).

Example:
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> mel = log_mel(np.sin(2 * np.pi * 1000 * t), sample_rate=16000, mel_bins=32, mel_steps=16)
    >>> mel.shape, mel.dtype.name
    ((32, 16), 'float32')
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["log_mel", "mel_filterbank", "mel_frequencies", "hz_to_mel", "mel_to_hz"]

_DEFAULT_FMAX = 8000.0


def hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    """Frequency in Hz on the HTK mel scale, ``2595 * log10(1 + hz / 700)``.

    Example:
        >>> round(float(hz_to_mel(1000.0)), 1)
        1000.0
    """
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: float | np.ndarray) -> np.ndarray:
    """The inverse of :func:`hz_to_mel`.

    Example:
        >>> round(float(mel_to_hz(hz_to_mel(440.0))), 6)
        440.0
    """
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_frequencies(*, mel_bins: int, fmin: float = 0.0, fmax: float = _DEFAULT_FMAX) -> np.ndarray:
    """Centre frequencies (Hz) of the ``mel_bins`` filters of :func:`mel_filterbank`.

    Example:
        >>> mel_frequencies(mel_bins=4, fmin=0.0, fmax=8000.0).round().tolist()
        [459.0, 1218.0, 2475.0, 4556.0]
    """
    _check_positive_int("mel_bins", mel_bins)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), mel_bins + 2))
    return edges[1:-1]


def mel_filterbank(*, sample_rate: int, n_fft: int, mel_bins: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """HTK-scale triangular mel filters, ``(mel_bins, n_fft // 2 + 1)``, peak 1 each.

    Args:
        sample_rate: Samples per second of the audio.
        n_fft: FFT size (samples).
        mel_bins: Number of filters.
        fmin: Lowest frequency (Hz) covered.
        fmax: Highest frequency (Hz) covered; default 8 kHz or half the sample rate,
            whichever is lower.

    Warns:
        UserWarning: When some filter covers no FFT bin (too many ``mel_bins`` for
            ``n_fft``); its band is then always at the floor.

    Example:
        >>> mel_filterbank(sample_rate=16000, n_fft=512, mel_bins=32).shape
        (32, 257)
    """
    _check_positive_int("sample_rate", sample_rate)
    _check_positive_int("n_fft", n_fft)
    _check_positive_int("mel_bins", mel_bins)
    fmin, fmax = _check_band(sample_rate=sample_rate, fmin=fmin, fmax=fmax)
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), mel_bins + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    bank = np.clip(np.minimum(rising, falling), 0.0, None)
    empty = np.flatnonzero(bank.max(axis=1) <= 0)
    if len(empty):
        warnings.warn(
            f"{len(empty)} of {mel_bins} mel filters cover no FFT bin (first: filter {int(empty[0])} around "
            f"{centre[empty[0], 0]:.0f} Hz) with n_fft={n_fft} at {sample_rate} Hz; lower mel_bins or raise n_fft",
            stacklevel=2,
        )
    return bank


def log_mel(
    waveform: np.ndarray,
    *,
    sample_rate: int,
    mel_bins: int = 32,
    mel_steps: int = 32,
    n_fft: int | None = None,
    hop: int | None = None,
    fmin: float = 0.0,
    fmax: float | None = None,
    floor: float = 1e-10,
    normalize: bool = True,
) -> np.ndarray:
    """The log-mel spectrogram of a mono waveform, resampled to ``mel_steps`` steps.

    See the module docstring for the exact recipe (Hann STFT, HTK mel filters, log
    with a floor, pooling to ``mel_steps``, per-clip standardisation).

    Args:
        waveform: 1-D float waveform (any scale; ``[-1, 1]`` as decoded).
        sample_rate: Samples per second of ``waveform``.
        mel_bins: Mel bands (rows of the result).
        mel_steps: Time steps (columns of the result).
        n_fft: STFT window and FFT size in samples; default the power of two at or
            above 25 ms (512 at 16 kHz).
        hop: Samples between STFT frames; default 10 ms (160 at 16 kHz).
        fmin: Lowest frequency (Hz) of the filterbank.
        fmax: Highest frequency (Hz); default min(8 kHz, sample_rate / 2).
        floor: Smallest energy before the log (keeps silence finite).
        normalize: Standardise the result per clip (zero mean, unit variance).

    Returns:
        float32 ``(mel_bins, mel_steps)``; row 0 is the lowest band.

    Raises:
        ValueError: If the waveform is empty, not 1-D or not finite, or an option is
            out of range; the message names the fix.

    Example:
        >>> t = np.arange(8000) / 16000
        >>> mel = log_mel(np.sin(2 * np.pi * 440 * t), sample_rate=16000, mel_bins=16, mel_steps=8)
        >>> int(mel.mean(axis=1).argmax()) == int(np.abs(mel_frequencies(mel_bins=16) - 440).argmin())
        True
    """
    _check_positive_int("sample_rate", sample_rate)
    _check_positive_int("mel_bins", mel_bins)
    _check_positive_int("mel_steps", mel_steps)
    x = np.asarray(waveform)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise ValueError(
            f"waveform must be mono 1-D, got shape {x.shape}; mix the channels down, e.g. waveform.mean(axis=0)"
        )
    if x.size == 0:
        raise ValueError("waveform is empty; a clip without audio is packed with mel=None (its audio flag is 0)")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"waveform must hold real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("waveform holds NaN or infinite values; fix the decoder or replace them with 0")
    if n_fft is None:
        n_fft = 1 << max(1, math.ceil(math.log2(0.025 * sample_rate)))
    if hop is None:
        hop = max(1, int(round(0.010 * sample_rate)))
    _check_positive_int("n_fft", n_fft)
    _check_positive_int("hop", hop)
    if n_fft < 2:
        raise ValueError(f"n_fft must be >= 2 samples, got {n_fft}")
    if not (isinstance(floor, (int, float)) and floor > 0):
        raise ValueError(f"floor must be a positive number (e.g. 1e-10), got {floor!r}")

    power = _power_spectrogram(x, n_fft=n_fft, hop=hop)  # (frames, n_fft // 2 + 1)
    bank = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, mel_bins=mel_bins, fmin=fmin, fmax=fmax)
    mel = np.log(np.maximum(power @ bank.T, floor)).T  # (mel_bins, frames)
    mel = _to_steps(mel, mel_steps)
    if normalize:
        mel = mel - mel.mean()
        std = mel.std()
        mel = mel / std if std > 1e-8 else np.zeros_like(mel)
    return mel.astype(np.float32)


def _power_spectrogram(x: np.ndarray, *, n_fft: int, hop: int) -> np.ndarray:
    pad = n_fft // 2
    x = np.pad(x, (pad, pad))
    if len(x) < n_fft:  # shorter than one window even after centring: one zero-padded frame
        x = np.pad(x, (0, n_fft - len(x)))
    frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, the STFT convention
    spec = np.fft.rfft(x[idx] * window[None, :], axis=1)
    return spec.real ** 2 + spec.imag ** 2


def _to_steps(mel: np.ndarray, steps: int) -> np.ndarray:
    """Average-pool (more frames) or repeat (fewer frames) columns to ``steps``."""
    frames = mel.shape[1]
    if frames == steps:
        return mel
    if frames > steps:
        edges = np.linspace(0, frames, steps + 1)
        starts = np.floor(edges[:-1]).astype(int)
        stops = np.maximum(np.ceil(edges[1:]).astype(int), starts + 1)
        csum = np.concatenate([np.zeros((mel.shape[0], 1)), np.cumsum(mel, axis=1)], axis=1)
        return (csum[:, stops] - csum[:, starts]) / (stops - starts)[None, :]
    src = np.minimum(((np.arange(steps) + 0.5) * frames / steps).astype(int), frames - 1)
    return mel[:, src]


def _check_band(*, sample_rate: int, fmin: float, fmax: float | None) -> tuple[float, float]:
    nyquist = sample_rate / 2.0
    if fmax is None:
        fmax = min(_DEFAULT_FMAX, nyquist)
    if not (np.isfinite(fmin) and np.isfinite(fmax) and 0 <= fmin < fmax):
        raise ValueError(f"need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
    if fmax > nyquist:
        raise ValueError(
            f"fmax={fmax} Hz is above half the sample rate ({nyquist:g} Hz at {sample_rate} Hz); lower fmax or "
            "leave it at None"
        )
    return float(fmin), float(fmax)


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
