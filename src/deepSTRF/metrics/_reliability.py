"""Low-level reliability kernels shared by the metrics and the dataset layer.

Everything here works on *complete* cells: a float tensor ``x`` of shape
``(M, R, T)`` holds ``M`` independent cells (one (stim, neuron) pair each),
``R`` repeats and ``T`` time bins, with no missing value. Callers that hold
ragged or padded data (``deepSTRF.metrics.signal_power``,
``NeuralDataset.compute_neuron_quality``) compact the valid repeats first and
group cells by repeat count.

The kernels are vectorised over ``M`` (no per-cell or per-split Python loop,
no host synchronisation inside the hot path) and device-agnostic: helper
tensors are created on ``x.device``. Arithmetic is carried out in float64
(float32 on Apple ``mps``, which has no float64) and the results are returned
in ``x.dtype``.

Formulas and conventions: ``docs/metrics_paradigm.md`` §5 (signal/noise
power), §6 (split-half reliability, CCmax) and §11 (length-weighted
aggregation).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "cell_signal_noise_power",
    "cell_split_half_rho",
    "cell_trial_to_trial_rho",
    "split_half_masks",
    "spearman_brown_ccmax",
    "length_weighted_mean",
    "padded_cell_stats",
]

#: Absolute threshold of the Pearson helper: a correlation whose denominator
#: ``sqrt(Σx̃² Σỹ²)`` is below this value is undefined (NaN).
PEARSON_EPS = 1e-12

# Relative guard (in units of machine epsilon) that recognises a quantity that
# is zero up to rounding. The Gram formulation obtains ``Σ_t (mean_A x̃)²`` as
# a difference of inner products, so a constant half-average comes out as
# rounding noise of order eps·‖x̃_r‖² rather than 0; the guard (with the eps
# of the *input* dtype, whose rounding dominates) restores the exact answer.
# The noise-power guard uses the compute dtype's eps: identical repeats give
# exactly 0 there up to compute rounding.
_REL_GUARD_ULPS = 100.0

# Upper bound on the number of float elements materialised per chunk.
_CHUNK_ELEMENTS = 1 << 22


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------


def _check_cells(x: object, name: str = "x", *, min_repeats: int = 2, min_bins: int = 2) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (M, R, T), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), got {x.dtype}")
    if x.ndim != 3:
        raise ValueError(f"{name} must be 3-D (M, R, T), got shape {tuple(x.shape)}")
    if x.shape[1] < min_repeats:
        raise ValueError(
            f"{name} must have R >= {min_repeats} repeats (axis 1), got R={x.shape[1]} "
            f"(shape {tuple(x.shape)})"
        )
    if x.shape[2] < min_bins:
        raise ValueError(
            f"{name} must have T >= {min_bins} time bins (axis 2), got T={x.shape[2]} (shape {tuple(x.shape)})"
        )
    return x


def _check_max_iters(max_iters: object) -> int:
    if isinstance(max_iters, bool) or not isinstance(max_iters, (int, np.integer)):
        raise TypeError(f"max_iters must be an int >= 1, got {max_iters!r}")
    if max_iters < 1:
        raise ValueError(f"max_iters must be an int >= 1, got {max_iters}")
    return int(max_iters)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return int(seed)


def _compute_dtype(device: torch.device) -> torch.dtype:
    # mps has no float64; everywhere else the extra precision is cheap here.
    return torch.float32 if device.type == "mps" else torch.float64


# ---------------------------------------------------------------------------
# split enumeration / sampling
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _split_half_masks_cached(R: int, max_iters: int, seed: int) -> Tensor:
    h = R // 2
    n_splits = math.comb(R, h) // 2
    if n_splits <= max_iters:
        # Every unordered split {A, complement} appears once with repeat 0 in A.
        # combinations(range(1, R), h - 1) yields them in the lexicographic
        # order of the reference (its first C/2 subsets all contain 0).
        masks = torch.zeros((n_splits, R), dtype=torch.bool)
        masks[:, 0] = True
        if h > 1:
            rest = torch.tensor(list(itertools.combinations(range(1, R), h - 1)), dtype=torch.long)
            masks.scatter_(1, rest, True)
        return masks

    # Too many splits: draw max_iters distinct ones at random. A split is
    # canonicalised by putting repeat 0 in half A, so drawing the other h - 1
    # members of A uniformly among repeats 1..R-1 samples unordered splits
    # uniformly; duplicates are rejected on the packed bit pattern.
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    chosen: list[Tensor] = []
    seen: set[bytes] = set()
    while len(chosen) < max_iters:
        need = max_iters - len(chosen)
        n_draw = 2 * need + 16
        perm = torch.rand((n_draw, R - 1), generator=gen).argsort(dim=1)[:, : h - 1] + 1
        draw = torch.zeros((n_draw, R), dtype=torch.bool)
        draw[:, 0] = True
        draw.scatter_(1, perm, True)
        keys = np.packbits(draw.numpy(), axis=1)
        for row, key in zip(draw, keys):
            k = key.tobytes()
            if k not in seen:
                seen.add(k)
                chosen.append(row)
                if len(chosen) == max_iters:
                    break
    return torch.stack(chosen)


def split_half_masks(R: int, max_iters: int = 126, seed: int = 0) -> Tensor:
    """Indicator vectors of the half-splits used by the split-half estimate.

    Parameters
    ----------
    R : int
        Number of repeats, ``R >= 2``. An odd ``R`` is reduced to ``R - 1``
        (the last repeat is dropped), so the masks have ``R - R % 2`` columns.
    max_iters : int, default 126
        Largest number of splits to return.
    seed : int, default 0
        Seed of the ``torch.Generator`` used when the splits are sampled.

    Returns
    -------
    Tensor
        ``bool`` tensor ``(K, R')`` on the CPU, ``R' = R - R % 2``. Row ``k``
        marks the ``R'/2`` repeats of half A of split ``k``; half B is its
        complement. Every row contains repeat 0, so no row is the complement
        of another and all rows are distinct.

        - If the number of distinct unordered splits ``C = binom(R', R'/2)/2``
          is ``<= max_iters``: all ``C`` splits, in the lexicographic order
          of the reference implementation (``K = C``: 1, 3, 10, 35, 126 for
          ``R' = 2, 4, 6, 8, 10``).
        - Otherwise ``K = max_iters`` distinct splits drawn uniformly at
          random with a generator seeded by ``seed`` (reproducible; a
          different seed gives a different set). The full list of
          ``binom(R', R'/2)`` subsets is never built.

    Notes
    -----
    Deliberate change from deepSTRF 0.1.0, which used the *first* ``K``
    subsets in lexicographic order (for ``R > 10`` a biased sample that always
    keeps the lowest-numbered repeats together) and materialised all
    ``binom(R, R/2)`` subsets.
    """
    if isinstance(R, bool) or not isinstance(R, (int, np.integer)):
        raise TypeError(f"R must be an int >= 2, got {R!r}")
    if R < 2:
        raise ValueError(f"R must be an int >= 2, got {R}")
    max_iters = _check_max_iters(max_iters)
    seed = _check_seed(seed)
    R = int(R) - int(R) % 2
    return _split_half_masks_cached(R, max_iters, seed).clone()


# ---------------------------------------------------------------------------
# internal building blocks (also used by deepSTRF.metrics.performance)
# ---------------------------------------------------------------------------


def _centre(x: Tensor, col_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Centre each repeat along time, in the compute dtype.

    ``x`` is ``(M, R, T)``; ``col_mask`` (``(M, T)`` bool or ``None``) marks
    the valid bins of each cell. Invalid bins may hold anything (NaN
    included) and are zero in the result. Returns ``(xc, n_bins)`` with
    ``n_bins`` the ``(M,)`` number of valid bins.
    """
    cdt = _compute_dtype(x.device)
    x = x.to(cdt)
    M, _, T = x.shape
    if col_mask is None:
        n_bins = torch.full((M,), float(T), dtype=cdt, device=x.device)
        return x - x.mean(dim=-1, keepdim=True), n_bins
    valid = col_mask[:, None, :]
    n_bins = col_mask.sum(dim=-1).to(cdt)
    xz = torch.where(valid, x, torch.zeros((), dtype=cdt, device=x.device))
    mean = xz.sum(dim=-1, keepdim=True) / n_bins.clamp(min=1.0)[:, None, None]
    xc = torch.where(valid, xz - mean, torch.zeros((), dtype=cdt, device=x.device))
    return xc, n_bins


def _signal_noise_from_centred(xc: Tensor, n_bins: Tensor) -> tuple[Tensor, Tensor]:
    """Sahani–Linden SP and NP from centred repeats ``xc (M, R, T)``."""
    R = xc.shape[1]
    dof = n_bins - 1.0
    psth = xc.mean(dim=1)  # (M, T), centred as well
    total_power = xc.square().sum(dim=(1, 2)) / (R * dof)  # mean single-trial variance
    psth_power = psth.square().sum(dim=-1) / dof
    sp = (R * psth_power - total_power) / (R - 1)
    # NP = TP - SP written as the pooled residual variance around the PSTH:
    # identical in exact arithmetic, but non-negative by construction.
    np_ = (xc - psth[:, None, :]).square().sum(dim=(1, 2)) / (dof * (R - 1))
    eps = torch.finfo(xc.dtype).eps
    np_ = torch.where(np_ <= _REL_GUARD_ULPS * eps * total_power, torch.zeros_like(np_), np_)
    return sp, np_


def _chunks(M: int, per_cell: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, per_cell))
    for start in range(0, M, step):
        yield slice(start, min(M, start + step))


def _split_half_rho_from_centred(xc: Tensor, masks: Tensor, data_dtype: torch.dtype) -> Tensor:
    """Mean split-half Pearson correlation from centred repeats.

    ``xc`` is ``(M, R, T)`` centred (and zero at invalid bins), ``R`` even;
    ``masks`` is ``(K, R)`` bool (half A of each split); ``data_dtype`` is
    the dtype the data came in, whose rounding decides what counts as a
    constant half-average. Returns ``(M,)`` in ``xc.dtype``.
    """
    M, R, T = xc.shape
    K = masks.shape[0]
    h = R // 2
    a = masks.to(device=xc.device, dtype=xc.dtype) / h  # (K, R): weights of half A's mean
    b = (1.0 / h) - a  # complement
    # data rounding coarser than float32 (half, bfloat16) is not chased further
    data_eps = min(torch.finfo(data_dtype).eps, torch.finfo(torch.float32).eps)
    tol = _REL_GUARD_ULPS * max(torch.finfo(xc.dtype).eps, data_eps)
    out = torch.empty(M, dtype=xc.dtype, device=xc.device)
    for sl in _chunks(M, R * max(T, K, R)):
        g = torch.bmm(xc[sl], xc[sl].transpose(1, 2))  # (m, R, R) Gram matrix
        ga = torch.matmul(g, a.T)  # (m, R, K)
        gb = torch.matmul(g, b.T)
        cov = torch.einsum("kr,mrk->mk", a, gb)
        var_a = torch.einsum("kr,mrk->mk", a, ga)
        var_b = torch.einsum("kr,mrk->mk", b, gb)
        # Relative guard: |mean_A x̃|² <= (Σ_r a_r ‖x̃_r‖)², so a value within
        # rounding of 0 against that scale is a constant half-average.
        norms = torch.diagonal(g, dim1=1, dim2=2).clamp(min=0).sqrt()  # (m, R)
        scale_a = (norms @ a.T).square()
        scale_b = (norms @ b.T).square()
        const = (var_a <= tol * scale_a) | (var_b <= tol * scale_b)
        den = (var_a.clamp(min=0) * var_b.clamp(min=0)).sqrt()
        undefined = const | (den < PEARSON_EPS)
        r = cov / torch.where(undefined, torch.ones_like(den), den)
        r = torch.where(undefined, torch.full_like(r, float("nan")), r)
        out[sl] = torch.nanmean(r, dim=1)
    return out


def _trial_to_trial_rho_from_centred(xc: Tensor) -> Tensor:
    """Mean Pearson correlation over all pairs of repeats (``(M,)``)."""
    M, R, T = xc.shape
    iu = torch.triu_indices(R, R, offset=1, device=xc.device)
    out = torch.empty(M, dtype=xc.dtype, device=xc.device)
    for sl in _chunks(M, R * max(T, R)):
        g = torch.bmm(xc[sl], xc[sl].transpose(1, 2))
        d = torch.diagonal(g, dim1=1, dim2=2)
        den = (d[:, iu[0]] * d[:, iu[1]]).clamp(min=0).sqrt()
        undefined = den < PEARSON_EPS
        r = g[:, iu[0], iu[1]] / torch.where(undefined, torch.ones_like(den), den)
        r = torch.where(undefined, torch.full_like(r, float("nan")), r)
        out[sl] = torch.nanmean(r, dim=1)
    return out


# ---------------------------------------------------------------------------
# public kernels
# ---------------------------------------------------------------------------


@torch.no_grad()
def cell_signal_noise_power(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sahani–Linden signal and noise power of complete cells.

    Parameters
    ----------
    x : Tensor
        ``(M, R, T)`` float tensor: ``M`` cells, ``R >= 2`` repeats,
        ``T >= 2`` time bins, no missing value (NaN propagates to that
        cell's outputs). Any device.

    Returns
    -------
    sp, np : tuple of Tensor
        ``(M,)`` each, dtype and device of ``x``, in squared response units.
        With ``ψ(t)`` the PSTH (mean over repeats), ``TP`` the mean over
        repeats of ``var_t(x_r)`` and ``var_t`` the unbiased variance along
        time (divisor ``T - 1``)::

            SP = (R · var_t(ψ) − TP) / (R − 1)
            NP = TP − SP

        ``NP`` is evaluated as ``Σ_r Σ_t (x_r(t) − ψ(t))² / ((R−1)(T−1))``,
        which equals ``TP − SP`` exactly and is never negative; a noise power
        below ``100·eps·TP`` (rounding of identical repeats) is returned as
        exactly 0. ``SP`` may be negative (noise-dominated cells).

    References
    ----------
    Sahani & Linden (2003), NIPS 15. See ``docs/metrics_paradigm.md`` §5.
    """
    _check_cells(x)
    xc, n_bins = _centre(x, None)
    sp, np_ = _signal_noise_from_centred(xc, n_bins)
    return sp.to(x.dtype), np_.to(x.dtype)


@torch.no_grad()
def cell_split_half_rho(x: Tensor, max_iters: int = 126, seed: int = 0) -> Tensor:
    """Mean split-half correlation of complete cells.

    Parameters
    ----------
    x : Tensor
        ``(M, R, T)`` float tensor, ``R >= 2`` repeats, ``T >= 2`` bins, no
        missing value. If ``R`` is odd the last repeat is dropped.
    max_iters : int, default 126
        Largest number of half-splits per cell (see :func:`split_half_masks`:
        all ``binom(R, R/2)/2`` splits when that many or fewer exist, else
        ``max_iters`` distinct splits drawn with ``seed``). The same splits
        are used for every cell of the call.
    seed : int, default 0
        Seed of the split sampler; irrelevant when all splits are enumerated.

    Returns
    -------
    Tensor
        ``(M,)`` ``ρ_half``, dtype and device of ``x``: for each split, the
        Pearson correlation over time between the mean of the repeats in one
        half and the mean of the other half; then the mean over splits.
        A split whose correlation is undefined is skipped: a half-average is
        constant, i.e. the denominator ``sqrt(Σx̃²Σỹ²)`` is below ``1e-12`` or
        a half's ``Σx̃²`` is below ``100·eps(x.dtype)·(Σ_r ‖x̃_r‖ / (R/2))²``
        (constant up to the rounding of the data). The result is NaN when
        every split is skipped.

    Notes
    -----
    Computed from the per-cell Gram matrix ``G = X̃ X̃ᵀ`` of the time-centred
    repeats (one batched matmul, cost ``R²T`` per cell); each split's
    covariance and variances are the quadratic forms ``aᵀGb``, ``aᵀGa``,
    ``bᵀGb`` of its indicator vectors, so there is no per-split loop.

    Deliberate changes from deepSTRF 0.1.0: undefined split correlations are
    skipped instead of turning the cell's ``ρ_half`` into NaN; beyond
    ``max_iters`` splits a seeded random sample of distinct splits replaces
    the first ones in lexicographic order.
    """
    _check_cells(x)
    max_iters = _check_max_iters(max_iters)
    seed = _check_seed(seed)
    R = x.shape[1] - x.shape[1] % 2
    masks = _split_half_masks_cached(R, max_iters, seed)
    xc, _ = _centre(x[:, :R], None)
    return _split_half_rho_from_centred(xc, masks, x.dtype).to(x.dtype)


@torch.no_grad()
def cell_trial_to_trial_rho(x: Tensor) -> Tensor:
    """Mean Pearson correlation over all pairs of repeats of complete cells.

    Parameters
    ----------
    x : Tensor
        ``(M, R, T)`` float tensor, ``R >= 2``, ``T >= 2``, no missing value.

    Returns
    -------
    Tensor
        ``(M,)``, dtype and device of ``x``: the mean over the
        ``R(R−1)/2`` pairs ``i < j`` of Pearson(``x_i``, ``x_j``). Pairs
        involving a constant repeat (undefined correlation) are skipped; NaN
        when every pair is skipped.
    """
    _check_cells(x)
    xc, _ = _centre(x, None)
    return _trial_to_trial_rho_from_centred(xc).to(x.dtype)


@torch.no_grad()
def padded_cell_stats(
    x: Tensor,
    valid: Tensor | None = None,
    *,
    split_half: bool = False,
    trial_to_trial: bool = False,
    max_iters: int = 126,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Per-cell reliability statistics of padded (possibly ragged) cells.

    Parameters
    ----------
    x : Tensor
        ``(C, R, T)`` float tensor of ``C`` cells, e.g. the ``(B·N, R_max,
        T_max)`` view of a collated batch where each ``(R_i, T_i)`` response
        sits in the top-left corner of a NaN-filled slab.
    valid : Tensor, optional
        ``(C, R, T)`` bool, ``True`` at usable entries. Default
        ``~isnan(x)``. Values at invalid entries are never read.
    split_half : bool, default False
        Also compute the mean split-half correlation ``rho_half``.
    trial_to_trial : bool, default False
        Also compute the mean pairwise trial correlation ``ttrc``.
    max_iters, seed : int
        Passed to the split sampler (:func:`split_half_masks`).

    Returns
    -------
    dict of str to Tensor
        ``'n_repeats'`` (``R_v``, rows with at least one valid entry) and
        ``'n_bins'`` (``T_v``, columns with at least one valid entry), int64
        ``(C,)``; ``'complete'`` bool ``(C,)``, ``True`` when the valid
        entries fill the whole ``R_v × T_v`` block; ``'qualifies'``
        = ``complete & R_v >= 2 & T_v >= 2``; ``'sp'``, ``'np'`` and, when
        requested, ``'rho_half'`` / ``'ttrc'``: ``(C,)`` in ``x.dtype``, NaN
        for cells that do not qualify.

    Notes
    -----
    The valid rows and columns of each cell are compacted (any position, not
    only top-left), cells are grouped by ``R_v`` and each group goes through
    the same kernels as :func:`cell_signal_noise_power` and
    :func:`cell_split_half_rho` (invalid columns are zeroed after centring,
    so cells of different ``T_v`` share one group). A cell with a hole inside
    its ``R_v × T_v`` block (a NaN or masked entry in an otherwise valid row
    and column) does not qualify: there is no unique rectangle to use.
    """
    _check_cells(x, min_repeats=0, min_bins=0)
    if valid is None:
        valid = ~torch.isnan(x)
    elif not isinstance(valid, Tensor) or valid.dtype != torch.bool:
        raise TypeError(f"valid must be a bool torch.Tensor, got {getattr(valid, 'dtype', type(valid).__name__)}")
    elif valid.shape != x.shape:
        raise ValueError(f"valid must have the shape of x {tuple(x.shape)}, got {tuple(valid.shape)}")
    max_iters = _check_max_iters(max_iters)
    seed = _check_seed(seed)
    C, R, T = x.shape
    rows = valid.any(dim=-1)  # (C, R)
    cols = valid.any(dim=-2)  # (C, T)
    n_rep = rows.sum(dim=-1)
    n_bins = cols.sum(dim=-1)
    complete = valid.sum(dim=(1, 2)) == n_rep * n_bins
    qualifies = complete & (n_rep >= 2) & (n_bins >= 2)
    out: dict[str, Tensor] = {
        "n_repeats": n_rep,
        "n_bins": n_bins,
        "complete": complete,
        "qualifies": qualifies,
    }
    names = ["sp", "np"] + (["rho_half"] if split_half else []) + (["ttrc"] if trial_to_trial else [])
    for name in names:
        out[name] = torch.full((C,), float("nan"), dtype=x.dtype, device=x.device)
    if C == 0 or not bool(qualifies.any()):
        return out
    for r in torch.unique(n_rep[qualifies]).tolist():
        idx = torch.nonzero(qualifies & (n_rep == r)).squeeze(1)
        g_cols = cols[idx]
        t_hi = int(torch.nonzero(g_cols.any(dim=0)).max()) + 1  # trim trailing padding
        g_cols = g_cols[:, :t_hi]
        g_rows = rows[idx]
        if bool(g_rows[:, :r].all()):  # top-left layout: a plain slice
            xs = x[idx, :r, :t_hi]
        else:
            order = torch.argsort((~g_rows).to(torch.int8), dim=1, stable=True)[:, :r]
            xs = x[idx, :, :t_hi].gather(1, order[:, :, None].expand(-1, -1, t_hi))
        xc, nb = _centre(xs, None if bool(g_cols.all()) else g_cols)
        sp, np_ = _signal_noise_from_centred(xc, nb)
        out["sp"][idx] = sp.to(x.dtype)
        out["np"][idx] = np_.to(x.dtype)
        if split_half:
            r_even = r - r % 2
            masks = _split_half_masks_cached(r_even, max_iters, seed)
            out["rho_half"][idx] = _split_half_rho_from_centred(xc[:, :r_even], masks, x.dtype).to(x.dtype)
        if trial_to_trial:
            out["ttrc"][idx] = _trial_to_trial_rho_from_centred(xc).to(x.dtype)
    return out


def spearman_brown_ccmax(rho: Tensor) -> Tensor:
    """CCmax from a split-half correlation (Spearman–Brown prophecy).

    Parameters
    ----------
    rho : Tensor
        Split-half correlation(s) ``ρ_half``, any shape.

    Returns
    -------
    Tensor
        ``sqrt(2ρ / (1 + ρ))`` where ``ρ > 0``, NaN elsewhere (``ρ <= 0`` or
        NaN): the expected correlation between the all-trial PSTH and the
        noise-free response. Same shape, dtype and device as ``rho``.
    """
    if not isinstance(rho, Tensor):
        raise TypeError(f"rho must be a torch.Tensor, got {type(rho).__name__}")
    positive = rho > 0
    safe = torch.where(positive, rho, torch.ones_like(rho))
    cc = torch.sqrt(2.0 * safe / (1.0 + safe))
    return torch.where(positive, cc, torch.full_like(cc, float("nan")))


def length_weighted_mean(values: Tensor, weights: Tensor, dim: int = 0) -> Tensor:
    """Length-weighted mean across stims (``docs/metrics_paradigm.md`` §11).

    Parameters
    ----------
    values : Tensor
        Per-cell values, e.g. ``(B, N)`` (stim × neuron). Entries whose
        weight is 0 are ignored whatever they hold (NaN included).
    weights : Tensor
        Same shape: the weight of each cell, normally its number of valid
        time bins ``T_v``; 0 for a cell that does not contribute.
    dim : int, default 0
        Axis that is averaged out (the stim axis).

    Returns
    -------
    Tensor
        ``Σ w·v / Σ w`` over the cells with ``w > 0``; NaN where no cell
        contributes. A NaN value with a positive weight propagates.
    """
    use = weights > 0
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    w = torch.where(use, weights.to(values.dtype), zero)
    v = torch.where(use, values, zero)
    total = w.sum(dim=dim)
    num = (w * v).sum(dim=dim)
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, num / safe_total, torch.full_like(num, float("nan")))
