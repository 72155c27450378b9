"""Spectrogram front ends and resampling shared by the audio loaders (torch.stft / numpy only).

Three families, each a plain function of a waveform and its sample rate that
returns a ``(F, T)`` float32 tensor whose frame ``i`` is centred on audio
sample ``i * hop`` (time ``i * hop / sample_rate``):

* :func:`mel_spectrogram` -- power STFT (periodic Hann window, reflect-padded,
  centred frames) through an HTK-scale triangular mel filterbank
  (:func:`mel_filterbank`), optionally compressed (:func:`compress`: cube
  root, ``log1p`` or none). This is the front end of the CRCNS AA1/AA2/AA4
  loaders; with ``compression='none'`` it equals torchaudio's
  ``MelSpectrogram`` defaults (``norm=None``, ``mel_scale='htk'``, power 2).
* :func:`log_spectrogram` -- magnitude in dB of a Hamming-windowed DFT
  evaluated only at log-spaced band centres (``bins_per_octave`` per octave
  from ``fmin``), one frame per ``dt_ms``.
* :func:`resample` -- band-limited (Hann-windowed sinc) rational resampling,
  the filter torchaudio's ``functional.resample`` uses by default, so
  waveform-mode stims match loaders written against torchaudio.

Helpers :func:`hop_samples` and :func:`fit_length` express the grid lock
between audio samples and response bins.
"""

from __future__ import annotations

import math
import os
from math import gcd
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "read_wav_mono",
    "resample_polyphase",
    "COMPRESSIONS",
    "compress",
    "fit_length",
    "hop_samples",
    "hz_to_mel",
    "log_band_centres",
    "log_spectrogram",
    "mel_filterbank",
    "mel_spectrogram",
    "mel_to_hz",
    "power_stft",
    "resample",
]

#: Accepted values of ``compression`` in :func:`compress` / :func:`mel_spectrogram`.
COMPRESSIONS = ("cubic", "log1p", "none")


def _as_mono_float(waveform: Tensor | np.ndarray, what: str = "waveform") -> Tensor:
    """``(n_samples,)`` float tensor: a 1-D signal, or the channel mean of a ``(channels, n_samples)`` one."""
    x = torch.as_tensor(waveform)
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if x.dim() == 2:
        x = x.mean(dim=0)
    if x.dim() != 1:
        raise ValueError(f"{what} must be (n_samples,) or (channels, n_samples), got shape {tuple(x.shape)}")
    return x


def hz_to_mel(freq_hz: float | np.ndarray) -> float | np.ndarray:
    """HTK mel scale: ``2595 * log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(freq_hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: float | np.ndarray) -> float | np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> Tensor:
    """Triangular HTK-mel filterbank with unit peaks (not area-normalised).

    Parameters
    ----------
    n_freqs : int
        Number of one-sided STFT bins (``n_fft // 2 + 1``), spread linearly on
        ``[0, sample_rate // 2]`` Hz.
    n_mels : int
        Number of filters ``F``.
    sample_rate : int
        Sampling rate in Hz.
    f_min, f_max : float
        Band edges in Hz (``f_max`` default ``sample_rate // 2``).

    Returns
    -------
    Tensor, shape (n_freqs, n_mels), float64
        ``fb[k, m]``: weight of STFT bin ``k`` in filter ``m``. Filter ``m``
        rises from ``f_pts[m]`` to a peak of 1 at ``f_pts[m+1]`` and falls to 0
        at ``f_pts[m+2]``, the ``n_mels + 2`` points being equally spaced in
        mel between ``f_min`` and ``f_max``.
    """
    if n_mels < 1 or n_freqs < 2:
        raise ValueError(f"need n_mels >= 1 and n_freqs >= 2, got n_mels={n_mels}, n_freqs={n_freqs}")
    f_max = float(sample_rate // 2) if f_max is None else float(f_max)
    bins_hz = np.linspace(0.0, float(sample_rate // 2), n_freqs)
    pts = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(pts)
    offsets = pts[None, :] - bins_hz[:, None]  # (n_freqs, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    return torch.from_numpy(np.maximum(0.0, np.minimum(rising, falling)))


def power_stft(waveform: Tensor | np.ndarray, n_fft: int, hop: int) -> Tensor:
    """Power spectrogram ``|STFT|^2`` with centred, reflect-padded frames and a periodic Hann window.

    Parameters
    ----------
    waveform : Tensor, shape (n_samples,) or (channels, n_samples)
        Audio (channels are averaged).
    n_fft : int
        Frame (and FFT) length in samples.
    hop : int
        Frame step in samples.

    Returns
    -------
    Tensor, shape (n_fft // 2 + 1, 1 + n_samples // hop), same float dtype as the input
    """
    x = _as_mono_float(waveform)
    if hop < 1 or n_fft < 1:
        raise ValueError(f"hop and n_fft must be >= 1, got hop={hop}, n_fft={n_fft}")
    pad = n_fft // 2
    if x.numel() <= pad:  # reflect padding needs more samples than the pad
        raise ValueError(f"the waveform has {x.numel()} samples; at least {pad + 1} are needed for n_fft={n_fft}")
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype)
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
                      pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
    return spec.real.square() + spec.imag.square()


def compress(spec: Tensor, compression: str) -> Tensor:
    """Amplitude compression of a non-negative spectrogram.

    ``'cubic'``: ``spec ** (1/3)``; ``'log1p'``: ``log(1 + spec)``; ``'none'``: unchanged.

    Raises
    ------
    ValueError
        For any other value (naming the allowed ones).
    """
    if compression == "cubic":
        return spec.clamp_min(0).pow(1.0 / 3.0)
    if compression == "log1p":
        return torch.log1p(spec)
    if compression == "none":
        return spec
    raise ValueError(f"compression={compression!r} is not one of {COMPRESSIONS}")


@lru_cache(maxsize=32)
def _cached_filterbank(n_freqs: int, n_mels: int, sample_rate: int) -> Tensor:
    return mel_filterbank(n_freqs, n_mels, sample_rate).to(torch.float32)


def mel_spectrogram(waveform: Tensor | np.ndarray, sample_rate: int, *, hop: int, n_fft: int, n_mels: int,
                    compression: str = "none") -> Tensor:
    """Mel power spectrogram (HTK mel over ``0 .. sample_rate // 2`` Hz), optionally compressed.

    Parameters
    ----------
    waveform : Tensor, shape (n_samples,) or (channels, n_samples)
        Audio in any unit (PCM16 read as float in [-1, 1) in the loaders).
    sample_rate : int
        Sampling rate in Hz.
    hop : int
        Frame step in samples (one frame per response bin).
    n_fft : int
        Window length in samples (periodic Hann).
    n_mels : int
        Number of mel channels ``F``.
    compression : {'cubic', 'log1p', 'none'}
        See :func:`compress`.

    Returns
    -------
    Tensor, shape (n_mels, 1 + n_samples // hop), float32
        ``spec[m, i] = sum_k fb[k, m] |X_i(k)|^2``, frame ``i`` centred on sample ``i * hop``.
    """
    power = power_stft(torch.as_tensor(waveform, dtype=torch.float32), n_fft, hop)
    fb = _cached_filterbank(n_fft // 2 + 1, n_mels, int(sample_rate))
    return compress(fb.T @ power, compression).contiguous()


def log_band_centres(fmin: float, fmax: float, bins_per_octave: int) -> np.ndarray:
    """Band centres ``fmin * 2**(k / bins_per_octave)``, ``k = 0 .. floor(log2(fmax/fmin) * bins_per_octave)``."""
    if not 0 < fmin < fmax:
        raise ValueError(f"need 0 < fmin < fmax, got fmin={fmin}, fmax={fmax}")
    if bins_per_octave < 1:
        raise ValueError(f"bins_per_octave must be >= 1, got {bins_per_octave}")
    n = int(math.floor(math.log2(fmax / fmin) * bins_per_octave + 1e-9)) + 1
    return fmin * 2.0 ** (np.arange(n) / bins_per_octave)


def log_spectrogram(waveform: Tensor | np.ndarray, sample_rate: float, dt_ms: float = 5.0, *,
                    fmin: float = 100.0, fmax: float = 45000.0, bins_per_octave: int = 6,
                    window_ms: float | None = None, eps: float = 1e-12) -> tuple[Tensor, np.ndarray]:
    """Log-frequency spectrogram in dB: a Hamming-windowed DFT evaluated at log-spaced band centres.

    Parameters
    ----------
    waveform : array-like, shape (n_samples,) or (channels, n_samples)
        Audio (channels are averaged).
    sample_rate : float
        Sampling rate in Hz.
    dt_ms : float
        Frame step in ms; ``hop = max(round(dt_ms * sample_rate / 1000), 1)`` samples.
    fmin, fmax : float
        Lowest band centre and upper limit of the centres, in Hz (see :func:`log_band_centres`).
    bins_per_octave : int
        Bands per octave.
    window_ms : float, optional
        Window length in ms (default ``2 * dt_ms``); ``W = max(round(window_ms * sample_rate / 1000), 4)``
        samples of a symmetric Hamming window.
    eps : float
        Floor added to the magnitude before ``20 log10``.

    Returns
    -------
    spec : Tensor, shape (F, ceil(n_samples / hop)), float32
        ``20 log10(|X| + eps)`` dB; frame ``i`` covers ``W`` samples centred on sample ``i * hop``
        (zero padding ``W // 2`` in front, ``W`` behind).
    freqs : numpy.ndarray, shape (F,)
        Band centres in Hz.
    """
    x = _as_mono_float(waveform).to(torch.float64)
    hop = max(int(round(dt_ms * sample_rate / 1000.0)), 1)
    window_ms = 2.0 * dt_ms if window_ms is None else window_ms
    W = max(int(round(window_ms * sample_rate / 1000.0)), 4)
    freqs = log_band_centres(fmin, fmax, bins_per_octave)
    n_frames = -(-x.numel() // hop)
    padded = F.pad(x, (W // 2, W))
    frames = padded.unfold(0, W, hop)[:n_frames]  # (T, W)
    n = torch.arange(W, dtype=torch.float64)
    phase = -2.0 * math.pi * torch.from_numpy(freqs)[None, :] * n[:, None] / sample_rate
    basis = torch.from_numpy(np.hamming(W))[:, None] * torch.polar(torch.ones_like(phase), phase)  # (W, F)
    out = torch.empty((freqs.size, n_frames), dtype=torch.float32)
    step = max(1, 4_000_000 // max(W * freqs.size, 1))
    for start in range(0, n_frames, step):  # bounded memory on long recordings
        spec = frames[start:start + step].to(torch.complex128) @ basis
        out[:, start:start + step] = (20.0 * torch.log10(spec.abs() + eps)).T.to(torch.float32)
    return out, freqs


def resample(waveform: Tensor, orig_fs: int, new_fs: int, *, lowpass_filter_width: int = 6,
             rolloff: float = 0.99) -> Tensor:
    """Band-limited resampling by a rational factor (Hann-windowed sinc).

    Output sample ``j`` is ``sum_n x[n] h(n / orig - j / new)`` (rates reduced
    by their gcd, ``x`` zero outside the signal) with
    ``h(u) = (c / orig) sinc(c u) cos^2(pi c u / (2 w))`` for ``|c u| <= w``,
    ``c = rolloff * min(orig, new)`` and ``w = lowpass_filter_width``: the
    filter of torchaudio's ``functional.resample`` defaults, evaluated only
    at the taps each output needs (memory ``O(n_out * w * orig / c)`` instead
    of a ``new x orig`` polyphase bank, which is large for 24414 -> 16000 Hz).

    Parameters
    ----------
    waveform : Tensor, shape (..., n_samples)
        Audio; leading dimensions are kept.
    orig_fs, new_fs : int
        Sampling rates in Hz.
    lowpass_filter_width : int
        Zero crossings of the sinc on each side.
    rolloff : float
        Cut-off as a fraction of the lower Nyquist frequency.

    Returns
    -------
    Tensor, shape (..., ceil(n_samples * new_fs / orig_fs)), dtype of the input
        The input itself when the rates are equal.
    """
    orig_fs, new_fs = int(orig_fs), int(new_fs)
    if orig_fs <= 0 or new_fs <= 0:
        raise ValueError(f"sample rates must be > 0, got {orig_fs} and {new_fs}")
    if orig_fs == new_fs:
        return waveform
    g = math.gcd(orig_fs, new_fs)
    orig, new = orig_fs // g, new_fs // g
    cutoff = min(orig, new) * rolloff
    reach = math.ceil(lowpass_filter_width * orig / cutoff) + 1  # input samples on each side of an output
    length = waveform.shape[-1]
    n_out = -(-new * length // orig)
    x = waveform.to(torch.float64)
    out = torch.empty((*waveform.shape[:-1], n_out), dtype=torch.float64)
    offsets = torch.arange(-reach, reach + 1, dtype=torch.int64)
    step = max(1, 2_000_000 // offsets.numel())
    for start in range(0, n_out, step):  # bounded memory on long recordings
        j = torch.arange(start, min(n_out, start + step), dtype=torch.int64)
        n = (j * orig // new)[:, None] + offsets[None, :]
        u = (n * new - j[:, None] * orig).to(torch.float64) * (cutoff / (orig * new))
        u = u.clamp(-lowpass_filter_width, lowpass_filter_width)
        taps = torch.sinc(u) * torch.cos(u * (math.pi / (2 * lowpass_filter_width))) ** 2 * (cutoff / orig)
        taps = taps * ((n >= 0) & (n < length))
        out[..., start:start + j.numel()] = (x[..., n.clamp(0, max(length - 1, 0))] * taps).sum(-1)
    return out.to(waveform.dtype)


def fit_length(waveform: Tensor, n_samples: int) -> Tensor:
    """Crop or right-zero-pad the last axis to exactly ``n_samples``."""
    have = waveform.shape[-1]
    if have >= n_samples:
        return waveform[..., :n_samples]
    return F.pad(waveform, (0, n_samples - have))


def hop_samples(audio_fs: int, dt_ms: float, what: str = "audio_fs") -> int:
    """Audio samples per response bin; raise ``ValueError`` unless ``audio_fs * dt_ms / 1000`` is a whole number."""
    ratio = float(audio_fs) * float(dt_ms) / 1000.0
    hop = int(round(ratio))
    if hop < 1 or abs(ratio - hop) > 1e-6:
        raise ValueError(f"{what}={audio_fs} Hz with dt_ms={dt_ms} gives {ratio:g} samples per bin; "
                         "waveform mode needs a whole number (e.g. dt_ms=1 or 2 at 16000/24000/32000 Hz)")
    return hop


@lru_cache(maxsize=8)
def _polyphase_lowpass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing filter ``scipy.signal.resample_poly`` designs (Kaiser, beta 5), built once per ratio."""
    from scipy.signal import firwin

    rate = max(up, down)
    return firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


def resample_polyphase(audio: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Band-limited polyphase resampling of a 1-D signal from ``fs_in`` to ``fs_out`` Hz.

    Same result as ``scipy.signal.resample_poly`` with its default filter, whose
    taps are designed once per rate ratio. Returns float32 (the input itself
    when the rates are equal).
    """
    from scipy.signal import resample_poly

    if fs_in == fs_out:
        return audio
    g = gcd(fs_in, fs_out)
    up, down = fs_out // g, fs_in // g
    return resample_poly(np.asarray(audio, dtype=np.float64), up, down, window=_polyphase_lowpass(up, down)).astype(
        np.float32
    )


def read_wav_mono(path: str | os.PathLike[str], audio_fs: int) -> np.ndarray:
    """Read a sound file as mono float32 at ``audio_fs`` Hz (channels averaged, polyphase resampled).

    Raises
    ------
    DatasetFormatError
        If the file cannot be decoded, naming it.
    """
    import soundfile as sf

    from .._errors import DatasetFormatError

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
        raise DatasetFormatError(str(path), "audio", f"an unreadable sound file ({exc})", "a WAV file") from None
    return resample_polyphase(data.mean(axis=1), int(rate), int(audio_fs))
