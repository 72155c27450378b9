"""Shared spectrogram front ends against independent numpy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepSTRF.datasets.audio import _spectrogram as sp


def _numpy_mel(x, sr, hop, n_fft, n_mels):
    """Direct port of the definition: reflect pad, periodic Hann frames, |rfft|^2, HTK triangles."""
    pad = n_fft // 2
    xp = np.pad(x.astype(np.float64), pad, mode="reflect")
    T = 1 + x.size // hop
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([xp[i * hop: i * hop + n_fft] * win for i in range(T)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (T, K)
    freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    pts = 700 * (10 ** (np.linspace(mel(0), mel(sr // 2), n_mels + 2) / 2595) - 1)
    fb = np.zeros((freqs.size, n_mels))
    for m in range(n_mels):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        fb[:, m] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return (power @ fb).T


@pytest.mark.parametrize("sr,hop,n_fft,n_mels", [(32000, 32, 320, 32), (24414, 24, 240, 16), (32000, 80, 800, 20)])
def test_mel_matches_definition(sr, hop, n_fft, n_mels):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3001).astype(np.float32) * 0.3
    ours = sp.mel_spectrogram(x, sr, hop=hop, n_fft=n_fft, n_mels=n_mels).numpy()
    ref = _numpy_mel(x, sr, hop, n_fft, n_mels)
    assert ours.shape == (n_mels, 1 + x.size // hop) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.max())


def test_compressions():
    x = torch.tensor([0.0, 1.0, 8.0])
    assert sp.compress(x, "cubic").tolist() == pytest.approx([0.0, 1.0, 2.0])
    assert sp.compress(x, "log1p").tolist() == pytest.approx([0.0, math.log(2), math.log(9)])
    assert sp.compress(x, "none") is x
    with pytest.raises(ValueError, match="compression"):
        sp.compress(x, "cube")


def test_log_spectrogram_tone_peak_and_shape():
    sr = 48000
    x = np.sin(2 * np.pi * 1600 * np.arange(4800) / sr)
    spec, freqs = sp.log_spectrogram(x, sr, dt_ms=5.0, fmin=100, fmax=12800, bins_per_octave=6)
    assert spec.shape == (43, 20) and freqs[0] == 100 and freqs[-1] == pytest.approx(12800)
    assert freqs[int(spec[:, 5:15].mean(dim=1).argmax())] == pytest.approx(1600)
    assert sp.log_band_centres(100, 45000, 6).size == 53


@pytest.mark.parametrize("orig,new", [(32000, 16000), (24414, 24000), (16000, 32000)])
def test_resample_keeps_a_low_tone(orig, new):
    f = 440.0
    n = orig // 10
    x = torch.sin(2 * math.pi * f * torch.arange(n, dtype=torch.float64) / orig)
    y = sp.resample(x, orig, new)
    assert y.shape[-1] == math.ceil(n * new / orig)
    want = torch.sin(2 * math.pi * f * torch.arange(y.shape[-1], dtype=torch.float64) / new)
    core = slice(200, y.shape[-1] - 200)
    assert torch.allclose(y[core], want[core], atol=2e-3)
    assert sp.resample(x, orig, orig) is x


def test_grid_helpers():
    assert sp.hop_samples(24000, 1.0) == 24
    with pytest.raises(ValueError, match="samples per bin"):
        sp.hop_samples(24414, 1.0)
    t = torch.arange(5.0)
    assert sp.fit_length(t, 3).tolist() == [0, 1, 2] and sp.fit_length(t, 7).tolist() == [0, 1, 2, 3, 4, 0, 0]


def _polyphase(x, orig, new, lpw=6, rolloff=0.99):
    """The polyphase-bank formulation (conv1d with stride ``orig``) of the same windowed-sinc filter."""
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    base = min(orig, new) * rolloff
    width = math.ceil(lpw * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None] / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx) * base
    t = t.clamp(-lpw, lpw)
    window = torch.cos(t * math.pi / lpw / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * base / orig
    padded = torch.nn.functional.pad(x[None, None], (width, width + orig))
    y = torch.nn.functional.conv1d(padded, kernel[:, None], stride=orig).transpose(1, 2).reshape(-1)
    return y[: math.ceil(new * x.numel() / orig)]


@pytest.mark.parametrize("orig,new", [(32000, 16000), (5, 3), (147, 160)])
def test_resample_equals_polyphase_bank(orig, new):
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(3000))
    np.testing.assert_allclose(sp.resample(x, orig, new).numpy(), _polyphase(x, orig, new).numpy(), atol=1e-10)
