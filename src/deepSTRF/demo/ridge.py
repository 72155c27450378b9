"""Closed-form ridge STRFs: lagged design matrices, fit, prediction, comparison.

A linear spectro-temporal receptive field (STRF) predicts the PSTH of neuron
``n`` in bin ``t`` from the ``L`` most recent frames of an ``F``-band stim::

    r̂_n[t] = b_n + Σ_{f, l} w_n[f, l] · x[f, t − l]        (x[f, t < 0] = 0)

Lag 0 is the current bin. The weights are fitted in closed form by ridge
regression (the bias is not penalised) on the training stims each neuron was
recorded on, with the PSTH (NaN-aware mean over repeats) as target; the
penalty is picked from a log grid by the correlation on validation stims.
Only torch is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..datasets.neural_dataset import NeuralDataset

__all__ = [
    "DEFAULT_LAMBDAS",
    "RidgeSTRFs",
    "lagged_design",
    "fit_ridge_strfs",
    "predict_strfs",
    "unstandardize_strfs",
    "strf_correlation",
]

#: Ridge penalties relative to the mean diagonal of each neuron's centred Gram matrix:
#: half-decade steps from 1e-4 to 1e2.
DEFAULT_LAMBDAS: tuple[float, ...] = tuple(10.0 ** (k / 2) for k in range(-8, 5))


@dataclass(frozen=True)
class RidgeSTRFs:
    """Fitted STRFs of ``N`` neurons.

    Attributes
    ----------
    weights : Tensor, shape (N, F, L)
        STRF of each neuron (lag 0 first), in the units of the stims it was
        fitted on. NaN for a neuron without training data.
    bias : Tensor, shape (N,)
        Offset of each neuron's prediction.
    lambdas : Tensor, shape (N,)
        Chosen penalty per neuron, relative to the mean diagonal of its
        centred Gram matrix (an entry of ``lambda_grid``).
    val_cc : Tensor, shape (N,)
        Validation correlation at the chosen penalty (NaN without validation data).
    lambda_grid : Tensor, shape (K,)
        Relative penalties that were tried.
    val_cc_grid : Tensor, shape (N, K)
        Validation correlation of every neuron at every penalty.
    """

    weights: Tensor
    bias: Tensor
    lambdas: Tensor
    val_cc: Tensor
    lambda_grid: Tensor
    val_cc_grid: Tensor


def lagged_design(stim: Tensor, n_lags: int) -> Tensor:
    """Lagged copies of a ``(F, T)`` stim: the design matrix of a linear STRF.

    Parameters
    ----------
    stim : Tensor, shape (F, T)
        One stim (bands × bins); a leading singleton axis ``(1, F, T)`` is
        accepted.
    n_lags : int
        STRF length ``L`` in bins (>= 1).

    Returns
    -------
    Tensor, shape (T, F * L)
        Row ``t``, column ``f * L + l`` holds ``stim[f, t - l]`` (0 before the
        stim starts), so ``X @ w.reshape(-1)`` applies a ``(F, L)`` STRF ``w``.
    """
    if not isinstance(stim, Tensor):
        raise TypeError(f"stim must be a torch.Tensor, got {type(stim).__name__}")
    if stim.dim() == 3 and stim.shape[0] == 1:
        stim = stim[0]
    if stim.dim() != 2:
        raise ValueError(f"stim must have shape (F, T) or (1, F, T), got {tuple(stim.shape)}")
    if isinstance(n_lags, bool) or not isinstance(n_lags, int) or n_lags < 1:
        raise ValueError(f"n_lags must be an int >= 1, got {n_lags!r}")
    n_bands, n_bins = stim.shape
    padded = F.pad(stim, (n_lags - 1, 0))
    windows = padded.unfold(-1, n_lags, 1).flip(-1)  # (F, T, L): [..., l] = stim[f, t - l]
    return windows.permute(1, 0, 2).reshape(n_bins, n_bands * n_lags)


def _psth(response: Tensor) -> Tensor:
    """NaN-aware mean over repeats of an ``(R, T)`` response."""
    return torch.nanmean(response.to(torch.float64), dim=0)


def _pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation of the columns of ``x`` (P, K) with ``y`` (P,); NaN if undefined."""
    xc = x - x.mean(dim=0, keepdim=True)
    yc = y - y.mean()
    den = torch.sqrt(xc.square().sum(dim=0) * yc.square().sum())
    out = (xc * yc[:, None]).sum(dim=0) / den.clamp_min(1e-300)
    return torch.where(den > 1e-12, out, torch.full_like(out, math.nan))


def _designs(ds: NeuralDataset, stims: Sequence[int], n_lags: int) -> dict[int, Tensor]:
    """Design matrices with a trailing bias column, float64, one per stim."""
    out = {}
    for s in stims:
        X = lagged_design(ds.stims[s].to(torch.float64), n_lags)
        out[s] = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)
    return out


def fit_ridge_strfs(
    ds: NeuralDataset,
    train: Sequence[int],
    val: Sequence[int],
    n_lags: int,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    per_neuron: bool = True,
) -> RidgeSTRFs:
    """Fit one ridge STRF per neuron of a spectrogram dataset.

    Parameters
    ----------
    ds : NeuralDataset
        Dataset whose stims are ``(1, F, T)`` spectrograms (standardise them
        first, e.g. ``ds.standardize_stims(stim_indices=train)``).
    train : sequence of int
        Stims the weights are fitted on; each neuron uses those it was
        recorded on (``ds.nrn_masks``).
    val : sequence of int
        Stims that choose the penalty (may be empty: then the median penalty
        of the grid is used).
    n_lags : int
        STRF length ``L`` in bins.
    lambdas : sequence of float, default ``DEFAULT_LAMBDAS``
        Penalties relative to the mean diagonal of each neuron's centred Gram
        matrix (bias excluded), so the grid does not depend on the stim scale.
    per_neuron : bool, default True
        Choose the penalty per neuron (a neuron without validation data gets
        the global choice); when False, one penalty for all, maximising the
        median validation correlation.

    Returns
    -------
    RidgeSTRFs
        Weights ``(N, F, L)``, biases, chosen penalties and validation scores.

    Notes
    -----
    Target: the PSTH ``nanmean`` over repeats of ``responses[s][n]``; bins
    where it is NaN are left out. The normal equations
    ``(XᵀX + λ·s_n·P) w = Xᵀy`` (``P`` = identity without the bias entry,
    ``s_n`` = mean diagonal of the neuron's centred Gram matrix) are
    accumulated per stim in float64 and solved, for every penalty at once,
    from one eigendecomposition of each neuron's centred Gram matrix.
    """
    if not train:
        raise ValueError("fit_ridge_strfs needs at least one training stim")
    grid = torch.as_tensor([float(v) for v in lambdas], dtype=torch.float64)
    if grid.numel() == 0 or not bool((grid > 0).all()):
        raise ValueError(f"lambdas must be a non-empty sequence of positive floats, got {list(lambdas)!r}")
    masks = ds.nrn_masks
    N = ds.N_neurons
    n_bands = ds.stims[train[0]].shape[-2]
    D = n_bands * n_lags + 1
    designs = _designs(ds, sorted(set(train) | set(val)), n_lags)

    gram = torch.zeros(N, D, D, dtype=torch.float64)
    moment = torch.zeros(N, D, dtype=torch.float64)
    for s in train:
        neurons = masks[s].nonzero().flatten()
        if neurons.numel() == 0:
            continue
        X = designs[s]
        Y = torch.stack([_psth(ds.responses[s][n]) for n in neurons.tolist()], dim=1)  # (T, k)
        complete = ~torch.isnan(Y).any(dim=0)
        if bool(complete.any()):
            full = neurons[complete]
            gram[full] += X.T @ X
            moment[full] += (X.T @ Y[:, complete]).T
        for j in (~complete).nonzero().flatten().tolist():  # PSTHs with NaN bins: their own Gram
            ok = ~torch.isnan(Y[:, j])
            gram[neurons[j]] += X[ok].T @ X[ok]
            moment[neurons[j]] += X[ok].T @ Y[ok, j]

    # Unpenalised bias = centre on each neuron's training mean, then ridge without bias:
    # one eigendecomposition per neuron gives the solution for every penalty of the grid.
    count = gram[:, -1, -1]
    trained = count > 0  # at least one valid training bin
    safe_count = count.clamp_min(1.0)
    sum_x, sum_y = gram[:, :-1, -1], moment[:, -1]
    centred_gram = gram[:, :-1, :-1] - sum_x[:, :, None] * sum_x[:, None, :] / safe_count[:, None, None]
    centred_moment = moment[:, :-1] - sum_x * (sum_y / safe_count)[:, None]
    centred_gram[~trained] = torch.eye(D - 1, dtype=torch.float64)  # placeholder, result discarded
    scale = torch.diagonal(centred_gram, dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12)
    eigval, eigvec = torch.linalg.eigh(centred_gram)  # (N, D-1), (N, D-1, D-1)
    K = grid.numel()
    projected = torch.einsum("nde,nd->ne", eigvec, centred_moment)  # Vᵀ b
    shrunk = projected[:, None, :] / (eigval[:, None, :] + grid[None, :, None] * scale[:, None, None])
    weights = torch.einsum("nke,nde->nkd", shrunk, eigvec)  # (N, K, D-1)
    bias = (sum_y[:, None] - (weights * sum_x[:, None, :]).sum(dim=-1)) / safe_count[:, None]
    solutions = torch.cat([weights, bias[..., None]], dim=-1)  # (N, K, D)

    val_cc = torch.full((N, K), math.nan, dtype=torch.float64)
    preds: list[list[Tensor]] = [[] for _ in range(N)]
    targets: list[list[Tensor]] = [[] for _ in range(N)]
    for s in val:
        X = designs[s]
        for n in masks[s].nonzero().flatten().tolist():
            y = _psth(ds.responses[s][n])
            ok = ~torch.isnan(y)
            preds[n].append(X[ok] @ solutions[n].T)
            targets[n].append(y[ok])
    for n in range(N):
        if preds[n] and bool(trained[n]):
            val_cc[n] = _pearson(torch.cat(preds[n]), torch.cat(targets[n]))

    scored = ~torch.isnan(val_cc).all(dim=1)
    if bool(scored.any()):
        global_k = int(torch.nan_to_num(val_cc[scored].nanmedian(dim=0).values, nan=-math.inf).argmax())
    else:
        global_k = K // 2
    chosen = torch.full((N,), global_k, dtype=torch.long)
    if per_neuron:
        best = torch.nan_to_num(val_cc, nan=-math.inf).argmax(dim=1)
        chosen = torch.where(scored, best, chosen)

    w = solutions[torch.arange(N), chosen]  # (N, D)
    w[~trained] = math.nan
    return RidgeSTRFs(
        weights=w[:, :-1].reshape(N, n_bands, n_lags).float(),
        bias=w[:, -1].float(),
        lambdas=grid[chosen].float(),
        val_cc=val_cc[torch.arange(N), chosen].float(),
        lambda_grid=grid.float(),
        val_cc_grid=val_cc.float(),
    )


def predict_strfs(stims: Tensor, weights: Tensor, bias: Tensor) -> Tensor:
    """Predictions of linear STRFs for a batch of spectrograms.

    Parameters
    ----------
    stims : Tensor, shape (B, 1, F, T) or (B, F, T)
        Spectrograms (e.g. ``neural_collate(...)['stims']``).
    weights : Tensor, shape (N, F, L)
        STRFs, lag 0 first.
    bias : Tensor, shape (N,)

    Returns
    -------
    Tensor, shape (B, N, 1, T)
        ``bias[n] + Σ_{f,l} weights[n, f, l] · stims[b, f, t − l]``, in the
        layout the metrics expect (one "repeat").
    """
    if stims.dim() == 4:
        stims = stims[:, 0]
    if stims.dim() != 3 or weights.dim() != 3 or stims.shape[1] != weights.shape[1]:
        raise ValueError(
            f"stims (B, [1,] F, T) and weights (N, F, L) must agree on F, got {tuple(stims.shape)} "
            f"and {tuple(weights.shape)}"
        )
    n_lags = weights.shape[-1]
    x = F.pad(stims.to(weights.dtype), (n_lags - 1, 0))
    out = F.conv1d(x, weights.flip(-1)) + bias.to(weights.dtype)[None, :, None]
    return out[:, :, None, :]


def unstandardize_strfs(weights: Tensor, bias: Tensor, normalization: dict) -> tuple[Tensor, Tensor]:
    """Express STRFs fitted on standardised stims in the units of the raw stims.

    Parameters
    ----------
    weights : Tensor, shape (N, F, L)
    bias : Tensor, shape (N,)
    normalization : dict
        The record of ``NeuralDataset.standardize_stims`` (``'mean'``,
        ``'std'``, per band ``(1, F, 1)`` or scalar).

    Returns
    -------
    (Tensor, Tensor)
        ``weights / std`` and ``bias − Σ weights · mean / std``, so that the
        same predictions come out of the raw stims.
    """
    mean = torch.as_tensor(normalization["mean"], dtype=weights.dtype).reshape(-1)
    std = torch.as_tensor(normalization["std"], dtype=weights.dtype).reshape(-1)
    if mean.numel() == 1:
        mean, std = mean.expand(weights.shape[1]), std.expand(weights.shape[1])
    raw = weights / std[None, :, None]
    return raw, bias - (raw * mean[None, :, None]).sum(dim=(1, 2))


def strf_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation between two sets of STRFs, per neuron.

    Parameters
    ----------
    a, b : Tensor, shape (N, F, L)

    Returns
    -------
    Tensor, shape (N,)
        Correlation over the ``F · L`` entries (NaN for a flat or NaN STRF).
    """
    if a.shape != b.shape:
        raise ValueError(f"STRF shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    x = a.reshape(a.shape[0], -1).to(torch.float64)
    y = b.reshape(b.shape[0], -1).to(torch.float64)
    xc = x - x.mean(dim=1, keepdim=True)
    yc = y - y.mean(dim=1, keepdim=True)
    den = torch.sqrt(xc.square().sum(dim=1) * yc.square().sum(dim=1))
    out = (xc * yc).sum(dim=1) / den.clamp_min(1e-300)
    return torch.where(den > 1e-12, out, torch.full_like(out, math.nan)).float()
