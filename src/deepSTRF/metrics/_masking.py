"""Shared conventions of the metrics and losses (``docs/metrics_paradigm.md`` §2).

- Responses are ``(B, N, R, T)``, predictions ``(B, N, 1, T)``.
- A 4-D target with ``R > 1`` is collapsed to its PSTH (NaN-aware mean over
  repeats) before being compared with a prediction.
- The default mask is ``~isnan(target)``; a user mask must be a bool tensor,
  is broadcast to the target's shape and *replaces* the NaN mask.
- ``reduction`` is ``'none'`` (per neuron, ``(N,)``), ``'mean'`` (NaN-aware
  mean over neurons) or ``'sum'`` (NaN-aware sum).
"""

from __future__ import annotations

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")


def check_tensor(x: object, name: str, ndim: int | None = 4) -> Tensor:
    """Raise unless ``x`` is a floating tensor (of rank ``ndim`` if given)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        layout = {4: " (B, N, R, T)", 3: " (B, R, T)"}.get(ndim, "")
        raise ValueError(f"{name} must be {ndim}-D{layout}, got shape {tuple(x.shape)}")
    return x


def check_reduction(reduction: object) -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def psth(x: Tensor) -> Tensor:
    """NaN-aware mean over the repeat axis (2) when it has more than one row."""
    return torch.nanmean(x, dim=2, keepdim=True) if x.shape[2] > 1 else x


def resolve_mask(mask: object, target: Tensor, name: str = "mask") -> Tensor:
    """The validity mask of ``target``: ``~isnan(target)`` or the user's mask.

    A user mask must be a bool tensor broadcastable to ``target.shape``; it
    replaces (is not AND-ed with) the NaN mask.
    """
    if mask is None:
        return ~torch.isnan(target)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{name} must be a torch.Tensor of dtype torch.bool, got {got}")
    try:
        return mask.to(target.device).expand_as(target)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} cannot be broadcast to the target shape {tuple(target.shape)}"
        ) from None


def per_neuron(x: Tensor) -> Tensor:
    """``(B, N, R, T)`` → ``(N, B·R·T)``: one row of positions per neuron."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def reduce(values: Tensor, reduction: str) -> Tensor:
    """Apply ``reduction`` to per-neuron ``values`` ``(N,)``."""
    if reduction == "none":
        return values
    if reduction == "mean":
        return torch.nanmean(values)
    return torch.nansum(values)
