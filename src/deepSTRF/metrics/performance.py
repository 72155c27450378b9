"""Evaluation metrics for encoding models (NaN-aware, vectorised, device-agnostic).

Shapes follow the collated batches of ``deepSTRF.utils.data.neural_collate``:
responses ``(B, N, R, T)`` (stim × neuron × repeat × bin, NaN where there is no
data) and predictions ``(B, N, 1, T)``. Every metric is computed per neuron
over the positions of the whole batch (the ``B`` stims are treated as one
concatenated recording) and then reduced over neurons.

Conventions (``docs/metrics_paradigm.md`` §2): a target with ``R > 1`` is
collapsed to its PSTH; the default mask is ``~isnan(target)`` and a user mask
(bool, broadcastable) replaces it; ``reduction`` is ``'none'`` → ``(N,)``,
``'mean'`` → NaN-aware mean over neurons, ``'sum'`` → NaN-aware sum; a neuron
without enough data is NaN. Metrics run under ``torch.no_grad()``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from ._masking import check_reduction, check_tensor, per_neuron, psth, reduce, resolve_mask
from ._reliability import (
    PEARSON_EPS,
    _check_max_iters,
    _check_seed,
    length_weighted_mean,
    padded_cell_stats,
    spearman_brown_ccmax,
)

__all__ = [
    "corrcoef",
    "fve",
    "signal_power",
    "noise_power",
    "snr",
    "normalized_corrcoef",
    "compute_CCmax",
    "compute_TTRC",
    "coherence",
]

_METHODS = ("schoppe", "hsu")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _pred_target(pred: object, gt: object, mask: object) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes, PSTH-collapse ``gt`` and resolve the mask (``(B, N, 1, T)`` each)."""
    pred = check_tensor(pred, "pred")
    gt = psth(check_tensor(gt, "gt"))
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred shape {tuple(pred.shape)} must equal the (PSTH-collapsed) gt shape {tuple(gt.shape)}"
        )
    return pred, gt, resolve_mask(mask, gt)


def _masked_moments(x: Tensor, y: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Centred second moments over the valid positions of each row.

    ``x``, ``y``, ``m`` are ``(N, P)``; returns ``(count, Sxy, Sxx, Syy)``,
    sums over the valid positions of the mean-removed values
    (``Sxy = Σ x̃ỹ`` etc.).
    """
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    count = m.sum(dim=1)
    safe = count.clamp(min=1).to(x.dtype)
    xz = torch.where(m, x, zero)
    yz = torch.where(m, y, zero)
    xc = torch.where(m, xz - (xz.sum(dim=1) / safe)[:, None], zero)
    yc = torch.where(m, yz - (yz.sum(dim=1) / safe)[:, None], zero)
    return count, (xc * yc).sum(dim=1), xc.square().sum(dim=1), yc.square().sum(dim=1)


def _nan_where(cond: Tensor, values: Tensor) -> Tensor:
    return torch.where(cond, torch.full_like(values, float("nan")), values)


def _pearson_per_neuron(pred: Tensor, gt: Tensor, m: Tensor) -> Tensor:
    """Pearson correlation per neuron over valid positions; ``(N,)``."""
    dtype = torch.promote_types(pred.dtype, gt.dtype)
    count, sxy, sxx, syy = _masked_moments(
        per_neuron(pred).to(dtype), per_neuron(gt).to(dtype), per_neuron(m)
    )
    den = (sxx * syy).sqrt()
    bad = (count < 2) | (den < PEARSON_EPS)
    return _nan_where(bad, sxy / torch.where(bad, torch.ones_like(den), den))


def _cell_stats(responses: Tensor, valid: Tensor, **kw) -> dict[str, Tensor]:
    """:func:`padded_cell_stats` on the ``(B·N, R, T)`` view; outputs ``(B, N)``."""
    B, N, R, T = responses.shape
    stats = padded_cell_stats(responses.reshape(B * N, R, T), valid.reshape(B * N, R, T), **kw)
    return {k: v.reshape(B, N) for k, v in stats.items()}


def _signal_noise_per_neuron(responses: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Length-weighted ``SP_n`` and ``NP_n`` (``(N,)`` each)."""
    stats = _cell_stats(responses, valid)
    w = torch.where(stats["qualifies"], stats["n_bins"], torch.zeros_like(stats["n_bins"]))
    return length_weighted_mean(stats["sp"], w), length_weighted_mean(stats["np"], w)


def _ccmax_per_neuron(responses: Tensor, valid: Tensor, max_iters: int, seed: int) -> Tensor:
    """Length-weighted CCmax per neuron with the ``R = 1`` fallback to 1.0."""
    stats = _cell_stats(responses, valid, split_half=True, max_iters=max_iters, seed=seed)
    cc = spearman_brown_ccmax(stats["rho_half"])
    w = torch.where(torch.isnan(cc), torch.zeros_like(stats["n_bins"]), stats["n_bins"])
    ccmax = length_weighted_mean(cc, w)
    has_r2 = (stats["n_repeats"] >= 2).any(dim=0)
    return torch.where(torch.isnan(ccmax) & ~has_r2, torch.ones_like(ccmax), ccmax)


# ---------------------------------------------------------------------------
# prediction vs. data
# ---------------------------------------------------------------------------


@torch.no_grad()
def corrcoef(pred: Tensor, gt: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Pearson correlation between prediction and (PSTH of the) data, per neuron.

    Parameters
    ----------
    pred : Tensor
        ``(B, N, 1, T)`` predictions, same units as ``gt``.
    gt : Tensor
        ``(B, N, R, T)`` responses, NaN where missing. ``R > 1`` is collapsed
        to the PSTH (NaN-aware mean over repeats) first.
    mask : Tensor, optional
        Bool, broadcastable to the collapsed ``(B, N, 1, T)`` target; replaces
        the default ``~isnan(gt)`` (positions it marks valid must hold finite
        values in both tensors, otherwise NaN propagates).
    reduction : {'mean', 'none', 'sum'}
        Over neurons; ``'mean'``/``'sum'`` skip NaN neurons.

    Returns
    -------
    Tensor
        ``(N,)`` for ``'none'`` else a 0-d tensor (dimensionless, in
        ``[-1, 1]``). For each neuron, the Pearson correlation over all valid
        ``(b, t)`` positions pooled: ``Σx̃ỹ / sqrt(Σx̃²·Σỹ²)``; NaN with fewer
        than 2 valid positions or a denominator below ``1e-12``.

    Raises
    ------
    TypeError
        Non-tensor inputs or a non-bool mask.
    ValueError
        Non-4-D inputs, shapes that differ after the collapse, an
        unbroadcastable mask or an unknown ``reduction``.
    """
    check_reduction(reduction)
    pred, gt, m = _pred_target(pred, gt, mask)
    return reduce(_pearson_per_neuron(pred, gt, m), reduction)


@torch.no_grad()
def fve(pred: Tensor, gt: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Fraction of variance explained (coefficient of determination), per neuron.

    Parameters
    ----------
    pred, gt, mask, reduction
        As in :func:`corrcoef` (``gt`` is PSTH-collapsed).

    Returns
    -------
    Tensor
        ``(N,)`` or 0-d, dimensionless: ``1 − Σ(p − g)² / Σ(g − ḡ)²`` over the
        valid positions of each neuron (``ḡ`` their mean). NaN with fewer than
        2 positions or ``Σ(g − ḡ)² < 1e-12``. Unbounded below (a prediction
        worse than the constant ``ḡ`` is negative), at most 1.
    """
    check_reduction(reduction)
    pred, gt, m = _pred_target(pred, gt, mask)
    dtype = torch.promote_types(pred.dtype, gt.dtype)
    p, g, mm = per_neuron(pred).to(dtype), per_neuron(gt).to(dtype), per_neuron(m)
    count, _, _, ss_tot = _masked_moments(g, g, mm)
    zero = torch.zeros((), dtype=dtype, device=p.device)
    ss_res = torch.where(mm, p - torch.where(mm, g, zero), zero).square().sum(dim=1)
    bad = (count < 2) | (ss_tot < PEARSON_EPS)
    out = 1.0 - ss_res / torch.where(bad, torch.ones_like(ss_tot), ss_tot)
    return reduce(_nan_where(bad, out), reduction)


# ---------------------------------------------------------------------------
# data reliability (Sahani–Linden)
# ---------------------------------------------------------------------------


def _responses_and_mask(responses: object, mask: object) -> tuple[Tensor, Tensor]:
    responses = check_tensor(responses, "responses")
    return responses, resolve_mask(mask, responses)


@torch.no_grad()
def signal_power(responses: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Sahani–Linden signal power per neuron (squared response units).

    Parameters
    ----------
    responses : Tensor
        ``(B, N, R, T)``, NaN where missing (e.g. the top-left padded output
        of ``neural_collate``).
    mask : Tensor, optional
        Bool, broadcastable to ``responses``; replaces ``~isnan(responses)``.
    reduction : {'mean', 'none', 'sum'}

    Returns
    -------
    Tensor
        ``(N,)`` or 0-d. For each ``(b, n)`` cell the valid repeats are the
        rows with any valid entry and the valid bins the columns with any
        valid entry (``R_v``, ``T_v``); a cell contributes when ``R_v >= 2``,
        ``T_v >= 2`` and its ``R_v × T_v`` block has no hole. Per cell
        ``SP = (R_v·var_t(ψ) − TP)/(R_v − 1)`` (``ψ`` the PSTH, ``TP`` the mean
        single-trial variance, unbiased variances along time); across the
        batch the length-weighted mean ``Σ T_v·SP / Σ T_v``
        (``docs/metrics_paradigm.md`` §11). NaN for a neuron with no
        contributing cell. Can be negative.
    """
    check_reduction(reduction)
    responses, m = _responses_and_mask(responses, mask)
    return reduce(_signal_noise_per_neuron(responses, m)[0], reduction)


@torch.no_grad()
def noise_power(responses: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Sahani–Linden noise power per neuron (squared response units).

    Same arguments and cell rules as :func:`signal_power`; per cell
    ``NP = TP − SP`` (never negative), length-weighted across the batch
    (``docs/metrics_paradigm.md`` §11). Returns ``(N,)`` or 0-d.
    """
    check_reduction(reduction)
    responses, m = _responses_and_mask(responses, mask)
    return reduce(_signal_noise_per_neuron(responses, m)[1], reduction)


@torch.no_grad()
def snr(responses: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Sahani–Linden signal-to-noise ratio per neuron (dimensionless).

    Same arguments and cell rules as :func:`signal_power`.

    Returns
    -------
    Tensor
        ``(N,)`` or 0-d: ``SP_n / NP_n``, a ratio of the length-weighted
        powers (not a mean of per-stim ratios, ``docs/metrics_paradigm.md``
        §11). Can be negative (noise-only neurons); ``±inf`` values enter
        ``'mean'``/``'sum'`` as such.

    Notes
    -----
    Deliberate change from deepSTRF 0.1.0, which divided by
    ``max(NP_n, 1e-12)``: a noiseless neuron (identical repeats, ``NP_n = 0``)
    gets ``+inf`` as documented there (``SP_n = NP_n = 0``, a flat response,
    gives NaN).
    """
    check_reduction(reduction)
    responses, m = _responses_and_mask(responses, mask)
    sp, np_ = _signal_noise_per_neuron(responses, m)
    return reduce(sp / np_, reduction)


# ---------------------------------------------------------------------------
# noise-ceiling corrected correlation
# ---------------------------------------------------------------------------


@torch.no_grad()
def normalized_corrcoef(
    pred: Tensor,
    responses: Tensor,
    method: str = "schoppe",
    mask: Tensor | None = None,
    reduction: str = "mean",
    ccmax_iters: int = 126,
    seed: int = 0,
) -> Tensor:
    """Correlation corrected for the noise ceiling of the data, per neuron.

    Parameters
    ----------
    pred : Tensor
        ``(B, N, 1, T)`` predictions.
    responses : Tensor
        ``(B, N, R, T)`` single-trial responses, NaN where missing.
    method : {'schoppe', 'hsu'}
        ``'schoppe'``: ``CC_norm = cov(p, ψ) / sqrt(var(p) · SP_n)`` (Schoppe
        et al. 2016). ``'hsu'``: ``CC_norm = CC_raw / CCmax_n`` with the
        split-half CCmax (Hsu et al. 2004).
    mask : Tensor, optional
        Bool, broadcastable to the PSTH ``(B, N, 1, T)``; replaces
        ``~isnan(psth)`` for the correlation part. The reliability part
        (``SP_n`` or ``CCmax_n``) always uses ``~isnan(responses)``.
    reduction : {'mean', 'none', 'sum'}
    ccmax_iters : int, default 126
        ``max_iters`` of the split-half estimate (``'hsu'`` only).
    seed : int, default 0
        Seed of the split sampler (``'hsu'`` with more than ``ccmax_iters``
        splits only).

    Returns
    -------
    Tensor
        ``(N,)`` or 0-d, dimensionless.

        - If ``responses.shape[2] == 1`` (single trial): plain
          :func:`corrcoef` against the responses.
        - ``'schoppe'``: over the valid PSTH positions (``M >= 2``, else NaN),
          ``cov = Σ(p − p̄)(ψ − ψ̄)/(M − 1)``, ``var_p`` unbiased, ``SP_n`` from
          :func:`signal_power` on the same batch; NaN unless ``SP_n`` is finite
          and ``> 0`` and ``var_p >= 1e-12``. ``cov``/``var_p`` centre on the
          pooled mean while ``SP_n`` uses per-stim centred variances.
        - ``'hsu'``: ``CCmax_n`` = length-weighted mean of the per-cell
          ``sqrt(2ρ/(1+ρ))`` over cells with ``ρ_half > 0``
          (``docs/metrics_paradigm.md`` §11); 1.0 for a neuron with no cell
          of ``R_v >= 2`` (so ``CC_norm = CC_raw``); NaN when it has such
          cells but none with ``ρ_half > 0``.

    Notes
    -----
    Deliberate changes from deepSTRF 0.1.0: ``method`` is always checked (the
    reference skipped the check for single-trial data); ``'hsu'`` falls back
    to ``CCmax = 1`` for neurons recorded with a single repeat, as
    ``NeuralDataset.compute_neuron_quality`` does (the reference gave NaN);
    undefined split-half correlations are skipped, not propagated; more than
    ``ccmax_iters`` splits are sampled at random (seeded), not taken in
    lexicographic order.
    """
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    check_reduction(reduction)
    pred = check_tensor(pred, "pred")
    responses = check_tensor(responses, "responses")
    ccmax_iters = _check_max_iters(ccmax_iters)
    seed = _check_seed(seed)
    if pred.shape[2] != 1:
        raise ValueError(f"pred must have a single repeat (shape[2] == 1), got shape {tuple(pred.shape)}")
    if (pred.shape[0], pred.shape[1], pred.shape[3]) != (responses.shape[0], responses.shape[1], responses.shape[3]):
        raise ValueError(
            f"pred {tuple(pred.shape)} and responses {tuple(responses.shape)} must agree on B, N and T"
        )
    target = psth(responses)
    m = resolve_mask(mask, target)
    if responses.shape[2] == 1:
        return reduce(_pearson_per_neuron(pred, target, m), reduction)

    valid_responses = ~torch.isnan(responses)
    if method == "hsu":
        cc = _pearson_per_neuron(pred, target, m)
        ccmax = _ccmax_per_neuron(responses, valid_responses, ccmax_iters, seed).to(cc.dtype)
        return reduce(cc / ccmax, reduction)

    dtype = torch.promote_types(pred.dtype, responses.dtype)
    count, sxy, sxx, _ = _masked_moments(
        per_neuron(pred).to(dtype), per_neuron(target).to(dtype), per_neuron(m)
    )
    dof = (count - 1).clamp(min=1).to(dtype)
    cov, var_p = sxy / dof, sxx / dof
    sp = _signal_noise_per_neuron(responses, valid_responses)[0].to(dtype)
    bad = (count < 2) | ~torch.isfinite(sp) | ~(sp > 0) | (var_p < PEARSON_EPS)
    den = torch.where(bad, torch.ones_like(var_p), var_p * sp).sqrt()
    return reduce(_nan_where(bad, cov / den), reduction)


# ---------------------------------------------------------------------------
# per-cell reliability helpers (B cells of one neuron, or any cells)
# ---------------------------------------------------------------------------


@torch.no_grad()
def compute_CCmax(responses: Tensor, max_iters: int = 126, seed: int = 0) -> Tensor:
    """Split-half noise ceiling (CCmax) of each cell.

    Parameters
    ----------
    responses : Tensor
        ``(B, R, T)``: ``B`` cells (e.g. the stims of one neuron), NaN where
        missing (valid repeats/bins as in :func:`signal_power`).
    max_iters : int, default 126
        Largest number of half-splits per cell (all of them up to ``R = 10``).
    seed : int, default 0
        Seed of the split sampler when more than ``max_iters`` splits exist.

    Returns
    -------
    Tensor
        ``(B,)`` in ``[0, 1]``: ``sqrt(2ρ_half / (1 + ρ_half))`` (Spearman–Brown
        prophecy for doubling the trials, Hsu et al. 2004), with ``ρ_half``
        the mean split-half correlation (:func:`cell_split_half_rho`; an odd
        ``R_v`` drops its last valid repeat). Edge values: ``R_v == 1`` →
        1.0 (whatever ``T``); ``R_v == 0``, ``T_v < 2``, a hole in the
        ``R_v × T_v`` block, ``ρ_half <= 0`` or every split undefined → NaN.
    """
    responses = check_tensor(responses, "responses", ndim=3)
    stats = padded_cell_stats(responses, split_half=True, max_iters=max_iters, seed=seed)
    cc = spearman_brown_ccmax(stats["rho_half"])
    return torch.where(stats["n_repeats"] == 1, torch.ones_like(cc), cc)


@torch.no_grad()
def compute_TTRC(responses: Tensor) -> Tensor:
    """Trial-to-trial response correlation of each cell.

    Parameters
    ----------
    responses : Tensor
        ``(B, R, T)`` cells, NaN where missing.

    Returns
    -------
    Tensor
        ``(B,)``: mean Pearson correlation over all pairs of valid repeats.
        Pairs with a constant repeat are skipped (NaN if all are). Edge
        values as in :func:`compute_CCmax`: ``R_v == 1`` → 1.0;
        ``R_v == 0``, ``T_v < 2`` or a hole in the block → NaN.
    """
    responses = check_tensor(responses, "responses", ndim=3)
    stats = padded_cell_stats(responses, trial_to_trial=True)
    ttrc = stats["ttrc"]
    return torch.where(stats["n_repeats"] == 1, torch.ones_like(ttrc), ttrc)


# ---------------------------------------------------------------------------
# spectral
# ---------------------------------------------------------------------------


@torch.no_grad()
def coherence(
    pred: Tensor,
    gt: Tensor,
    dt_ms: float,
    reduction: str = "mean",
    nperseg: int | None = None,
) -> Tensor:
    """Mean magnitude-squared coherence between prediction and data, per neuron.

    Parameters
    ----------
    pred, gt : Tensor
        ``(B, N, 1, T)`` each, without NaN (a PSTH target: collapse repeats
        and fill or crop missing bins beforehand).
    dt_ms : float
        Bin width in milliseconds (sampling rate ``1000 / dt_ms`` Hz).
    reduction : {'mean', 'none', 'sum'}
    nperseg : int, optional
        Welch segment length in bins (Hann window, 50 % overlap, constant
        detrend). Default ``min(256, T // 4)``: about seven segments, so the
        estimate is not degenerate. Must leave at least 2 segments.

    Returns
    -------
    Tensor
        ``(N,)`` or 0-d, in ``[0, 1]``: ``scipy.signal.coherence`` along time,
        averaged over the ``B`` stims and over every frequency bin (DC and
        Nyquist included). NaN where a signal is constant (undefined
        coherence).

    Raises
    ------
    ValueError
        Shapes not ``(B, N, 1, T)`` or different, NaN in an input,
        ``dt_ms <= 0``, ``T < 8`` with the default ``nperseg``, or an
        ``nperseg`` that leaves fewer than 2 segments.

    Notes
    -----
    Deliberate change from deepSTRF 0.1.0, which used scipy's default
    ``nperseg = 256``: for ``T <= 256`` that is a single segment, whose
    coherence is identically 1 whatever the prediction. Coherence is computed
    on the CPU with scipy; the result is returned on ``pred.device``.
    """
    from scipy import signal as sps  # deferred: keeps `import deepSTRF.metrics` light

    check_reduction(reduction)
    pred = check_tensor(pred, "pred")
    gt = check_tensor(gt, "gt")
    for name, x in (("pred", pred), ("gt", gt)):
        if x.shape[2] != 1:
            raise ValueError(f"{name} must be (B, N, 1, T), got shape {tuple(x.shape)}")
        if bool(torch.isnan(x).any()):
            raise ValueError(f"{name} must not contain NaN (coherence needs complete time series)")
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} must equal gt shape {tuple(gt.shape)}")
    if isinstance(dt_ms, bool) or not isinstance(dt_ms, (int, float, np.integer, np.floating)) or not dt_ms > 0:
        raise ValueError(f"dt_ms must be a positive number of milliseconds, got {dt_ms!r}")
    T = pred.shape[3]
    if nperseg is None:
        if T < 8:
            raise ValueError(f"coherence needs T >= 8 time bins with the default nperseg, got T={T}")
        nperseg = min(256, T // 4)
    elif isinstance(nperseg, bool) or not isinstance(nperseg, (int, np.integer)) or not 2 <= nperseg <= T:
        raise ValueError(f"nperseg must be an int in [2, T={T}], got {nperseg!r}")
    step = nperseg - nperseg // 2
    n_segments = 1 + (T - nperseg) // step
    if n_segments < 2:
        raise ValueError(
            f"nperseg={nperseg} leaves {n_segments} Welch segment(s) for T={T} bins; "
            "a single segment gives a coherence of exactly 1; use a smaller nperseg"
        )
    p = pred[:, :, 0].detach().to("cpu", torch.float64).numpy()
    g = gt[:, :, 0].detach().to("cpu", torch.float64).numpy()
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        _, cxy = sps.coherence(p, g, fs=1000.0 / float(dt_ms), nperseg=int(nperseg), axis=-1)
    per_neuron_mean = cxy.mean(axis=(0, 2)) if cxy.shape[0] else np.full(cxy.shape[1], np.nan)
    out = torch.as_tensor(per_neuron_mean, dtype=pred.dtype, device=pred.device)
    return reduce(out, reduction)
