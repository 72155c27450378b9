"""Hann-window temporal smoothing shared by the dataset methods and the helpers.

Deliberate change from deepSTRF 0.1.0: the window length is the odd number of
bins nearest to ``window_ms / dt_ms`` and the kernel is normalised to unit sum,
so the mean rate is preserved (the reference's kernel had a gain of
``(K - 1) / 2``). For a 21 ms window both rules give the same ``K`` at every bin
width the loaders use, so our smoothed values are the reference's divided by
``(K - 1) / 2``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["hann_window_bins", "hann_kernel", "smooth_last_axis"]


def hann_window_bins(window_ms: float, dt_ms: float) -> int:
    """Odd number of bins nearest to ``window_ms / dt_ms`` (at least 1).

    Ties (an even ratio such as 4.0) round up, e.g. 30 ms at 5 ms gives 7.

    Raises
    ------
    ValueError
        If ``window_ms`` or ``dt_ms`` is not a finite positive number.
    """
    for name, value in (("window_ms", window_ms), ("dt_ms", dt_ms)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    ratio = float(window_ms) / float(dt_ms)
    return max(1, 2 * int(math.floor(ratio / 2.0)) + 1)


def hann_kernel(n_bins: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Hann window of ``n_bins`` taps (both end taps zero) normalised to unit sum.

    ``n_bins`` 1 and 3 give the identity kernel.
    """
    if n_bins == 1:
        window = np.ones(1)
    else:
        window = np.hanning(n_bins)
    window = window / window.sum()
    return torch.as_tensor(window, dtype=dtype, device=device)


def smooth_last_axis(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve the last axis of ``x`` with a symmetric odd ``kernel``, NaN-aware.

    Zero padding of ``(K - 1) / 2`` bins on each side keeps the shape, so the
    edge bins are attenuated as with any zero-padded filter; a constant input
    stays constant away from the edges. NaN entries are treated as missing:
    they stay NaN, and their neighbours are renormalised by the kernel mass that
    fell on valid samples, so a NaN never spreads. Without NaN the result is the
    plain zero-padded convolution.

    Parameters
    ----------
    x : Tensor, shape (..., T)
        Floating tensor; any leading shape.
    kernel : Tensor, shape (K,)
        Odd-length kernel, same dtype/device as ``x`` after casting.

    Returns
    -------
    Tensor, shape (..., T)
    """
    if x.numel() == 0:
        return x.clone()
    if kernel.numel() == 1:
        return x * kernel.to(dtype=x.dtype, device=x.device)[0]
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    rows = x.reshape(-1, x.shape[-1])
    valid = ~torch.isnan(rows)
    if bool(valid.all()):
        return _correlate(rows, kernel).reshape(x.shape)
    filled = torch.where(valid, rows, torch.zeros((), dtype=rows.dtype, device=rows.device))
    numerator = _correlate(filled, kernel)
    valid_mass = _correlate(valid.to(rows.dtype), kernel)
    full_mass = _correlate(torch.ones_like(rows[:1]), kernel)
    out = numerator * full_mass / valid_mass
    out = torch.where(valid & (valid_mass > 0), out, torch.full_like(out, math.nan))
    return out.reshape(x.shape)


def _correlate(rows: Tensor, kernel: Tensor) -> Tensor:
    """Zero-padded 'same' correlation of each row of ``rows`` ``(M, T)`` with an odd ``kernel``.

    Short kernels are applied as a sum of shifted copies (several times faster
    than a single-channel ``conv1d`` on CPU); long ones go through ``conv1d``.
    """
    K = kernel.numel()
    half = K // 2
    if K > 64:
        return F.conv1d(rows.unsqueeze(1), kernel.view(1, 1, K), padding=half).squeeze(1)
    T = rows.shape[-1]
    padded = F.pad(rows, (half, half))
    out = torch.zeros_like(rows)
    for k, weight in enumerate(kernel.tolist()):
        if weight != 0.0:
            out.add_(padded[:, k : k + T], alpha=weight)
    return out
