"""log_mel: shape, where a sine's energy lands, pooling to mel_steps, normalisation, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cfer.data.video.audio import hz_to_mel, log_mel, mel_filterbank, mel_frequencies, mel_to_hz


def _sine(freq: float, *, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_sine_energy_peaks_in_the_band_holding_its_frequency(freq):
    mel = log_mel(_sine(freq), sample_rate=16000, mel_bins=32, mel_steps=16)
    assert mel.shape == (32, 16) and mel.dtype == np.float32
    centres = mel_frequencies(mel_bins=32, fmax=8000.0)
    peak = mel.mean(axis=1).argmax()
    assert peak == np.abs(centres - freq).argmin()
    # every time step sees the same tone
    assert (mel.argmax(axis=0) == peak).all()


def test_normalised_per_clip_and_gain_invariant():
    x = _sine(1000.0) + 0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    a = log_mel(x, sample_rate=16000, mel_bins=16, mel_steps=8)
    b = log_mel(10 * x, sample_rate=16000, mel_bins=16, mel_steps=8)
    assert abs(a.mean()) < 1e-5 and abs(a.std() - 1) < 1e-4
    np.testing.assert_allclose(a, b, atol=1e-4)
    raw = log_mel(x, sample_rate=16000, mel_bins=16, mel_steps=8, normalize=False)
    raw10 = log_mel(10 * x, sample_rate=16000, mel_bins=16, mel_steps=8, normalize=False)
    np.testing.assert_allclose(raw10 - raw, np.log(100.0), atol=1e-3)  # raw log energies: gain shifts them


def test_silence_is_all_zeros_and_raw_silence_sits_at_the_floor():
    silent = np.zeros(4000, np.float32)
    assert not log_mel(silent, sample_rate=16000, mel_bins=8, mel_steps=4).any()
    raw = log_mel(silent, sample_rate=16000, mel_bins=8, mel_steps=4, normalize=False, floor=1e-6)
    np.testing.assert_allclose(raw, np.log(1e-6), rtol=1e-6)


def test_pools_long_and_repeats_short_audio_to_exactly_mel_steps():
    rate = 16000
    # first half 500 Hz, second half 4 kHz: pooled steps keep the order in time
    x = np.concatenate([_sine(500.0, seconds=1.0), _sine(4000.0, seconds=1.0)])
    mel = log_mel(x, sample_rate=rate, mel_bins=24, mel_steps=4)
    low, high = np.abs(mel_frequencies(mel_bins=24) - 500).argmin(), np.abs(mel_frequencies(mel_bins=24) - 4000).argmin()
    assert mel.argmax(axis=0).tolist() == [low, low, high, high]
    # 100 samples: shorter than one 512-sample window, zero-padded to one frame, repeated
    short = log_mel(_sine(1000.0, seconds=100 / rate), sample_rate=rate, mel_bins=8, mel_steps=5, normalize=False)
    assert short.shape == (8, 5)
    assert np.allclose(short, short[:, :1])


def test_other_sample_rates_keep_the_band_layout():
    # 8 kHz audio: fmax defaults to 4 kHz (its Nyquist), bands still hold the tone
    mel = log_mel(_sine(1000.0, rate=8000), sample_rate=8000, mel_bins=16, mel_steps=4)
    centres = mel_frequencies(mel_bins=16, fmax=4000.0)
    assert mel.mean(axis=1).argmax() == np.abs(centres - 1000).argmin()


def test_mel_scale_round_trip_and_filterbank_shape():
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.5)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(np.array([0.0, 440.0, 7999.0]))), [0.0, 440.0, 7999.0])
    bank = mel_filterbank(sample_rate=16000, n_fft=512, mel_bins=32)
    assert bank.shape == (32, 257) and bank.max() <= 1.0 and (bank.max(axis=1) > 0.3).all()


def test_too_many_bands_for_the_fft_warns():
    with pytest.warns(UserWarning, match="cover no FFT bin.*lower mel_bins or raise n_fft"):
        mel_filterbank(sample_rate=16000, n_fft=64, mel_bins=64)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"waveform": np.zeros(0)}, "waveform is empty; a clip without audio is packed with mel=None"),
    ({"waveform": np.zeros((2, 100))}, r"mono 1-D, got shape \(2, 100\); mix the channels down"),
    ({"waveform": np.array([0.0, np.nan])}, "NaN or infinite"),
    ({"waveform": np.zeros(100), "sample_rate": 0}, "sample_rate must be a positive int"),
    ({"waveform": np.zeros(100), "fmax": 9000.0}, "above half the sample rate .*lower fmax"),
    ({"waveform": np.zeros(100), "mel_steps": 0}, "mel_steps must be a positive int"),
])
def test_bad_input_names_the_fix(kwargs, message):
    kwargs = {"sample_rate": 16000, **kwargs}
    with pytest.raises(ValueError, match=message):
        log_mel(**kwargs)
