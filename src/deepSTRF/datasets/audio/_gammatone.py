"""ERB gammatone front end (Slaney 1998 / Patterson–Holdsworth), written on scipy.

A bank of ``n_bands`` 4th-order gammatone filters whose centre frequencies are
evenly spaced on the Glasberg–Moore ERB scale. Each filter is the cascade of
four 2nd-order IIR sections of Slaney's *An efficient implementation of the
Patterson–Holdsworth auditory filter bank* (Apple TR #35, 1993; Auditory
Toolbox 2, 1998), normalised to unit gain at its centre frequency. The
"gammatone spectrogram" is the RMS amplitude of each filter output over frames
of ``window`` samples taken every ``hop`` samples, like ``gtgram`` of the PyPI
``gammatone`` package (which we do not depend on).

The sections are applied one after the other with ``scipy.signal.sosfilt``
(float64): a single 8th-order transfer function (``scipy.signal.gammatone``
with ``ftype='iir'``) has a 4-fold repeated pole pair, which is numerically
fragile in direct form; the tests check that both describe the same filter.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import sosfilt

__all__ = [
    "EAR_Q",
    "MIN_BW",
    "erb_space",
    "erb_filter_sos",
    "erb_filterbank",
    "frame_params",
    "gammatone_spectrogram",
]

#: Glasberg–Moore ERB parameters (ERB = cf / EAR_Q + MIN_BW, in Hz).
EAR_Q = 9.26449
MIN_BW = 24.7
#: Bandwidth scale of the 4th-order gammatone (Patterson–Holdsworth).
BW_FACTOR = 1.019


def erb_space(fmin: float, fmax: float, n_bands: int, ear_q: float = EAR_Q, min_bw: float = MIN_BW) -> np.ndarray:
    """Centre frequencies evenly spaced on the ERB scale, low to high.

    Parameters
    ----------
    fmin, fmax : float
        Range in Hz; the lowest centre is exactly ``fmin``, the highest lies
        one ERB step below ``fmax`` (e.g. 1000 ... 7692.9 Hz for 50 bands
        between 1 and 8 kHz).
    n_bands : int
        Number of filters.

    Returns
    -------
    numpy.ndarray, shape (n_bands,), float64, Hz
    """
    if isinstance(n_bands, bool) or not isinstance(n_bands, (int, np.integer)) or n_bands < 1:
        raise ValueError(f"n_bands must be an int >= 1, got {n_bands!r}")
    if not 0 < fmin < fmax:
        raise ValueError(f"need 0 < fmin < fmax, got fmin={fmin!r}, fmax={fmax!r}")
    offset = ear_q * min_bw
    steps = np.arange(1, n_bands + 1, dtype=np.float64)
    cfs = -offset + np.exp(steps * (np.log(fmin + offset) - np.log(fmax + offset)) / n_bands) * (fmax + offset)
    return cfs[::-1].copy()


def erb_filter_sos(centre_freqs: np.ndarray, fs: float, ear_q: float = EAR_Q, min_bw: float = MIN_BW) -> np.ndarray:
    """Second-order sections of the gammatone filters.

    Parameters
    ----------
    centre_freqs : array-like, shape (n_bands,)
        Centre frequencies in Hz (each below ``fs / 2``).
    fs : float
        Sample rate in Hz.

    Returns
    -------
    numpy.ndarray, shape (n_bands, 4, 6), float64
        ``sos[k]`` is the cascade of filter ``k`` in ``scipy.signal.sosfilt``
        layout ``[b0, b1, b2, a0, a1, a2]``; the gain that makes the cascade's
        magnitude 1 at the centre frequency is folded into the first section.
    """
    cf = np.asarray(centre_freqs, dtype=np.float64).reshape(-1)
    if fs <= 0 or np.any(cf <= 0) or np.any(cf >= fs / 2):
        raise ValueError(f"centre frequencies must lie in (0, fs/2) = (0, {fs / 2:g}) Hz, got {cf.min():g}..{cf.max():g}")
    T = 1.0 / fs
    erb = cf / ear_q + min_bw
    B = BW_FACTOR * 2 * np.pi * erb
    arg = 2 * np.pi * cf * T
    decay = np.exp(-B * T)
    cos_term = 2 * T * np.cos(arg) * decay
    sin_term = 2 * T * np.sin(arg) * decay
    sos = np.zeros((cf.size, 4, 6), dtype=np.float64)
    for k, root in enumerate((math.sqrt(3 + 2 ** 1.5), -math.sqrt(3 + 2 ** 1.5),
                              math.sqrt(3 - 2 ** 1.5), -math.sqrt(3 - 2 ** 1.5))):
        sos[:, k, 0] = T
        sos[:, k, 1] = -(cos_term + root * sin_term) / 2
        sos[:, k, 2] = 0.0
        sos[:, k, 3] = 1.0
        sos[:, k, 4] = -2 * np.cos(arg) * decay
        sos[:, k, 5] = np.exp(-2 * B * T)
    # magnitude of the cascade at its centre frequency
    z1 = np.exp(-1j * arg)  # z^-1 on the unit circle at cf
    z2 = z1 * z1
    num = sos[:, :, 0] + sos[:, :, 1] * z1[:, None] + sos[:, :, 2] * z2[:, None]
    den = sos[:, :, 3] + sos[:, :, 4] * z1[:, None] + sos[:, :, 5] * z2[:, None]
    gain = np.abs(np.prod(num / den, axis=1))
    sos[:, 0, :3] /= gain[:, None]
    return sos


def erb_filterbank(x: np.ndarray, fs: float, centre_freqs: np.ndarray) -> np.ndarray:
    """Filter a mono signal through the gammatone bank.

    Parameters
    ----------
    x : array-like, shape (n_samples,)
        Mono signal.
    fs : float
        Sample rate in Hz.
    centre_freqs : array-like, shape (n_bands,)
        Centre frequencies in Hz.

    Returns
    -------
    numpy.ndarray, shape (n_bands, n_samples), float64
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    sos = erb_filter_sos(centre_freqs, fs)
    out = np.empty((sos.shape[0], x.size), dtype=np.float64)
    for k in range(sos.shape[0]):
        out[k] = sosfilt(sos[k], x)
    return out


def _round_half_away(value: float) -> int:
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def frame_params(fs: float, window_ms: float, hop_ms: float, n_samples: int) -> tuple[int, int, int]:
    """Window and hop in samples and the frame count of :func:`gammatone_spectrogram`.

    Returns
    -------
    (nwin, hop, T) : tuple of int
        ``nwin = round(window_ms * fs / 1000)``, ``hop = round(hop_ms * fs / 1000)``
        (halves rounded away from zero), ``T = 1 + floor((n_samples - nwin) / hop)``
        (0 when the signal is shorter than one window).
    """
    nwin = _round_half_away(window_ms * fs / 1000.0)
    hop = _round_half_away(hop_ms * fs / 1000.0)
    if nwin < 1 or hop < 1:
        raise ValueError(f"window_ms={window_ms} and hop_ms={hop_ms} give {nwin} and {hop} samples at "
                         f"{fs:g} Hz; both must be at least one sample")
    T = 1 + (n_samples - nwin) // hop if n_samples >= nwin else 0
    return nwin, hop, T


def gammatone_spectrogram(x: np.ndarray, fs: float, n_bands: int, fmin: float, fmax: float,
                          window_ms: float, hop_ms: float) -> np.ndarray:
    """RMS amplitude of the ERB gammatone bank, frame by frame.

    Parameters
    ----------
    x : array-like, shape (n_samples,)
        Mono signal.
    fs : float
        Sample rate in Hz.
    n_bands : int
        Number of filters (rows, low to high frequency).
    fmin, fmax : float
        Frequency range in Hz (see :func:`erb_space`).
    window_ms, hop_ms : float
        Frame length and step in ms.

    Returns
    -------
    numpy.ndarray, shape (n_bands, T), float64
        ``sqrt(mean(y_k[t*hop : t*hop + nwin] ** 2))`` for filter output
        ``y_k``; ``T`` from :func:`frame_params` (no padding: the last partial
        hop is dropped). Amplitude, not power; no compression.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    nwin, hop, T = frame_params(fs, window_ms, hop_ms, x.size)
    cfs = erb_space(fmin, fmax, n_bands)
    if T == 0:
        return np.zeros((n_bands, 0), dtype=np.float64)
    power = erb_filterbank(x, fs, cfs)
    np.square(power, out=power)
    frames = np.lib.stride_tricks.sliding_window_view(power[:, : (T - 1) * hop + nwin], nwin, axis=1)[:, ::hop]
    return np.sqrt(frames.mean(axis=-1))
