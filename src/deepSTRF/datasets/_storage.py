"""The storage contract shared by every dataset: the missing-pair sentinel.

A (stim, neuron) pair that was never recorded is stored as a ``(1, 1)`` float
tensor holding NaN. That is the single definition of "missing" used by masks,
normalisation, smoothing, quality metrics and collate. A real response with one
repeat and one bin holding a number is data, not a sentinel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["make_sentinel", "make_sentinels", "is_sentinel", "complete_block"]


def make_sentinel(dtype: torch.dtype = torch.float32) -> Tensor:
    """Return a new missing-pair sentinel: a ``(1, 1)`` tensor holding NaN."""
    return torch.full((1, 1), math.nan, dtype=dtype)


def make_sentinels(count: int, dtype: torch.dtype = torch.float32) -> list[Tensor]:
    """Return ``count`` sentinels that do not share memory with each other.

    They are views on one NaN buffer (cheaper than ``count`` allocations), each
    on its own element, so an in-place edit of one never shows in another.
    """
    if count <= 0:
        return []
    return list(torch.full((count, 1, 1), math.nan, dtype=dtype).unbind(0))


def is_sentinel(response: Tensor) -> bool:
    """True iff ``response`` is the missing-pair sentinel (shape ``(1, 1)``, NaN)."""
    return response.numel() == 1 and response.dim() == 2 and bool(torch.isnan(response).item())


def complete_block(response: Tensor) -> Tensor:
    """Largest NaN-free block of a partly NaN ``(R, T)`` response.

    Keeps the repeats holding at least one value, then, among those, the bins
    valid in every kept repeat. Used by statistics that need complete cells
    (signal power, split-half correlations).
    """
    response = response[(~torch.isnan(response)).any(dim=1)]
    return response[:, (~torch.isnan(response)).all(dim=0)]
