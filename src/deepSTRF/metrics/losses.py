"""Masked training losses (keep gradients; ``docs/metrics_paradigm.md`` §10).

Both losses PSTH-collapse the target, resolve the mask like the metrics
(default ``~isnan(gt)``; a bool user mask replaces it) and compute, per
neuron, the mean element loss over its valid ``(B, R, T)`` positions, then
apply ``reduction`` over neurons. Invalid positions are replaced by 0 in both
``pred`` and ``gt`` *before* any arithmetic, so the loss and its gradient are
finite whatever the padding holds, and the gradient is exactly 0 there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._masking import check_reduction, check_tensor, per_neuron, psth, reduce, resolve_mask

__all__ = ["mse_loss", "poisson_loss"]


def _prepare(pred: object, gt: object, mask: object) -> tuple[Tensor, Tensor, Tensor]:
    """``(N, P)`` prediction and target with invalid positions zeroed, and the mask."""
    pred = check_tensor(pred, "pred")
    gt = psth(check_tensor(gt, "gt"))
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred shape {tuple(pred.shape)} must equal the (PSTH-collapsed) gt shape {tuple(gt.shape)}"
        )
    m = resolve_mask(mask, gt)
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    p = torch.where(m, pred, zero)
    g = torch.where(m, gt.to(pred.dtype), zero)
    return per_neuron(p), per_neuron(g), per_neuron(m)


def _per_neuron_mean(elem: Tensor, m: Tensor, reduction: str) -> Tensor:
    elem = torch.where(m, elem, torch.zeros((), dtype=elem.dtype, device=elem.device))
    count = m.sum(dim=1)
    per = elem.sum(dim=1) / count.clamp(min=1).to(elem.dtype)
    per = torch.where(count > 0, per, torch.full_like(per, float("nan")))
    return reduce(per, reduction)


def mse_loss(pred: Tensor, gt: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Masked mean squared error.

    Parameters
    ----------
    pred : Tensor
        ``(B, N, 1, T)`` predictions (requires grad as needed).
    gt : Tensor
        ``(B, N, R, T)`` targets, NaN where missing; ``R > 1`` is collapsed
        to the PSTH (NaN-aware mean over repeats).
    mask : Tensor, optional
        Bool, broadcastable to the collapsed target; replaces
        ``~isnan(gt)``.
    reduction : {'mean', 'none', 'sum'}
        Over neurons; NaN neurons (no valid position) are skipped by
        ``'mean'``/``'sum'``.

    Returns
    -------
    Tensor
        ``(N,)`` or 0-d, squared response units: per neuron the mean of
        ``(pred − gt)²`` over its valid positions (NaN with none).
        Gradients are finite everywhere and 0 at invalid positions.
    """
    check_reduction(reduction)
    p, g, m = _prepare(pred, gt, mask)
    return _per_neuron_mean((p - g).square(), m, reduction)


def poisson_loss(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    reduction: str = "mean",
    log_input: bool = False,
    validate_input: bool = False,
    eps: float = 1e-8,
) -> Tensor:
    """Masked Poisson negative log-likelihood (without the ``log(gt!)`` term).

    Parameters
    ----------
    pred : Tensor
        ``(B, N, 1, T)`` predicted rate (expected count per bin), or its log
        when ``log_input=True``.
    gt : Tensor
        ``(B, N, R, T)`` spike counts, NaN where missing; ``R > 1`` is
        collapsed to the PSTH.
    mask, reduction
        As in :func:`mse_loss`.
    log_input : bool, default False
        Element loss ``exp(pred) − gt·pred`` instead of
        ``pred − gt·log(max(pred, eps) + eps)``.
    validate_input : bool, default False
        Raise ``ValueError`` if ``pred`` is negative at a valid position
        (``log_input=False`` only).
    eps : float, default 1e-8
        Floor of the rate inside the log, ``> 0``. It enters twice
        (``max(pred, eps) + eps``), as in deepSTRF 0.1.0.

    Returns
    -------
    Tensor
        ``(N,)`` or 0-d (nats per bin): per neuron the mean element loss over
        its valid positions (NaN with none). Gradients are finite and 0 at
        invalid positions.
    """
    check_reduction(reduction)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive float, got {eps!r}")
    p, g, m = _prepare(pred, gt, mask)
    if log_input:
        elem = torch.exp(p) - g * p
    else:
        if validate_input and bool((p.detach() < 0).any()):
            n_bad = int((p.detach() < 0).sum())
            raise ValueError(
                f"pred must be >= 0 at valid positions when log_input=False; found {n_bad} negative value(s)"
            )
        elem = p - g * torch.log(p.clamp(min=eps) + eps)
    return _per_neuron_mean(elem, m, reduction)
