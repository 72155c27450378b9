"""The ragged experiment shared by the simulated demo datasets (audio and video).

Splits, which (stim, neuron) pairs were recorded, stim durations, and Poisson
responses with a random number of repeats per pair: the parts of the design
that do not depend on the kind of stimulus.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_design_args", "draw_design", "poisson_row"]


def check_design_args(missing_fraction: float, duration_bins: tuple[int, int], n_lags: int) -> None:
    """Validate the coverage and duration knobs of a demo dataset.

    Raises
    ------
    ValueError
        ``missing_fraction`` is outside ``[0, 1)``, or ``duration_bins`` is not
        ``(low, high)`` with ``2 * n_lags <= low <= high``.
    """
    if not 0.0 <= missing_fraction < 1.0:
        raise ValueError(f"missing_fraction must be in [0, 1), got {missing_fraction!r}")
    t_min, t_max = duration_bins
    if not 2 * n_lags <= t_min <= t_max:
        raise ValueError(f"duration_bins must satisfy 2*n_lags <= low <= high, got {duration_bins!r}")


def draw_design(generator: torch.Generator, n_stims: int, n_neurons: int, missing_fraction: float,
                duration_bins: tuple[int, int]) -> tuple[list[str], Tensor, list[int]]:
    """Draw the splits, the recorded pairs and the durations of a simulated experiment.

    Parameters
    ----------
    generator : torch.Generator
        Source of every draw.
    n_stims, n_neurons : int
        ``S`` and ``N``.
    missing_fraction : float
        Probability that a (stim, neuron) pair of a non-test stim was not recorded.
    duration_bins : (int, int)
        Inclusive range of the stim durations, bins.

    Returns
    -------
    splits : list of str
        ``'train'``, then ``'val'`` and ``'test'`` for the last
        ``max(1, round(0.15 S))`` stims each.
    recorded : Tensor, shape (S, N), bool
        Pairs holding real data; every neuron is recorded on every test stim.
    durations : list of int
        Duration of each stim, bins.
    """
    splits = ["train"] * n_stims
    n_test = max(1, round(0.15 * n_stims))
    n_val = max(1, round(0.15 * n_stims))
    for s in range(n_stims - n_test - n_val, n_stims - n_test):
        splits[s] = "val"
    for s in range(n_stims - n_test, n_stims):
        splits[s] = "test"
    recorded = torch.rand(n_stims, n_neurons, generator=generator) >= missing_fraction
    recorded[torch.tensor([split == "test" for split in splits])] = True
    t_min, t_max = duration_bins
    durations = torch.randint(t_min, t_max + 1, (n_stims,), generator=generator).tolist()
    return splits, recorded, durations


def poisson_row(generator: torch.Generator, rate: Tensor, recorded: Tensor, min_repeats: int,
                max_repeats: int) -> list[Tensor]:
    """Poisson responses of every neuron to one stim, with a random number of repeats each.

    Parameters
    ----------
    generator : torch.Generator
        Source of every draw.
    rate : Tensor, shape (N, T)
        Expected spikes per bin of each neuron.
    recorded : Tensor, shape (N,), bool
        Neurons recorded on this stim; the others get the missing-pair sentinel.
    min_repeats, max_repeats : int
        Repeats per neuron are drawn uniformly in ``[min_repeats, max(min_repeats, max_repeats)]``.

    Returns
    -------
    list of Tensor
        ``N`` float32 count tensors ``(R_n, T)`` or ``(1, 1)`` NaN sentinels.
    """
    N, T = rate.shape
    repeats = torch.randint(min_repeats, max(min_repeats, max_repeats) + 1, (N,), generator=generator).tolist()
    row = []
    for n, heard in enumerate(recorded.tolist()):
        if not heard:
            row.append(torch.full((1, 1), math.nan))
            continue
        counts = torch.poisson(rate[n].expand(repeats[n], T).contiguous(), generator=generator)
        row.append(counts.float())
    return row
