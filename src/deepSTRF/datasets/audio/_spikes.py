"""Spike times to binned counts, shared by the spike-count loaders.

Every spike is counted: bin ``b = floor((t - t0) / dt)``, kept when
``0 <= b < n_bins``. Spikes sharing a bin add up (the NS1 reference lost
those: see ``ns1.md`` §9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .._storage import make_sentinels

__all__ = ["bin_spike_times", "bin_trials", "bin_trials_by_index", "response_row"]


def bin_spike_times(spike_times: Sequence[float] | np.ndarray, n_bins: int, dt: float, t0: float = 0.0) -> np.ndarray:
    """Count the spikes of one trial per bin.

    Parameters
    ----------
    spike_times : array-like, shape (n_spikes,)
        Spike times, in the same unit as ``dt`` and ``t0`` (ms or s).
    n_bins : int
        Number of bins ``T``.
    dt : float
        Bin width.
    t0 : float
        Time of the left edge of bin 0 (e.g. stim onset).

    Returns
    -------
    numpy.ndarray, shape (n_bins,), float32
        Spike counts; spikes before ``t0`` or at/after ``t0 + n_bins * dt`` are dropped.
    """
    if n_bins < 0:
        raise ValueError(f"n_bins must be >= 0, got {n_bins}")
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    times = np.asarray(spike_times, dtype=np.float64).reshape(-1)
    bins = np.floor((times - t0) / dt)
    bins = bins[(bins >= 0) & (bins < n_bins)].astype(np.int64)
    return np.bincount(bins, minlength=n_bins).astype(np.float32)


def bin_trials_by_index(
    spike_times: np.ndarray, trial_index: np.ndarray, n_trials: int, n_bins: int, dt: float,
    t0: float | np.ndarray = 0.0,
) -> Tensor:
    """Bin the spikes of many trials at once.

    Parameters
    ----------
    spike_times : numpy.ndarray, shape (n_spikes,)
        Spike times.
    trial_index : numpy.ndarray of int, shape (n_spikes,)
        Trial (repeat) of each spike, in ``[0, n_trials)``.
    n_trials, n_bins : int
        Output shape ``(R, T)``.
    dt : float
        Bin width (unit of ``spike_times``).
    t0 : float or numpy.ndarray, shape (n_trials,)
        Onset of bin 0, global or per trial.

    Returns
    -------
    Tensor, shape (n_trials, n_bins), float32
    """
    times = np.asarray(spike_times, dtype=np.float64).reshape(-1)
    trials = np.asarray(trial_index, dtype=np.int64).reshape(-1)
    if times.shape != trials.shape:
        raise ValueError(f"spike_times and trial_index differ in length: {times.shape[0]} vs {trials.shape[0]}")
    onset = np.broadcast_to(np.asarray(t0, dtype=np.float64), (n_trials,)) if n_trials else np.zeros(0)
    keep = (trials >= 0) & (trials < n_trials)
    times, trials = times[keep], trials[keep]
    bins = np.floor((times - onset[trials]) / dt)
    inside = (bins >= 0) & (bins < n_bins)
    flat = trials[inside] * n_bins + bins[inside].astype(np.int64)
    counts = np.bincount(flat, minlength=n_trials * n_bins).astype(np.float32)
    return torch.from_numpy(counts.reshape(n_trials, n_bins))


def bin_trials(trials: Sequence[Sequence[float] | np.ndarray], n_bins: int, dt: float, t0: float = 0.0) -> Tensor:
    """Bin a list of trials (one array of spike times each) into an ``(R, T)`` float32 tensor."""
    if not trials:
        return torch.zeros((0, n_bins), dtype=torch.float32)
    return torch.from_numpy(np.stack([bin_spike_times(t, n_bins, dt, t0) for t in trials]))


def response_row(cells: Mapping[int, Tensor], n_neurons: int) -> list[Tensor]:
    """One stim's row of ``responses``: the given cells, sentinels elsewhere.

    Parameters
    ----------
    cells : mapping int -> Tensor
        Neuron index to its ``(R, T)`` response for this stim.
    n_neurons : int
        Row length ``N``.
    """
    pads = iter(make_sentinels(n_neurons - len(cells)))
    return [cells[n] if n in cells else next(pads) for n in range(n_neurons)]
