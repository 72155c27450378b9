"""Spike binning helpers shared by the loaders."""

import numpy as np
import pytest
import torch

from deepSTRF.datasets._storage import is_sentinel
from deepSTRF.datasets.audio._spikes import bin_spike_times, bin_trials, bin_trials_by_index, response_row


def test_every_spike_is_counted_even_when_sharing_a_bin():
    counts = bin_spike_times([0.0, 0.1, 4.9, 5.0, 12.5, -0.1, 15.0], n_bins=3, dt=5.0)
    assert counts.tolist() == [3.0, 1.0, 1.0]  # -0.1 and 15.0 fall outside


def test_onset_and_trials_by_index_match_the_loop():
    rng = np.random.default_rng(0)
    times = rng.uniform(-10, 110, 500)
    trials = rng.integers(0, 4, 500)
    onsets = np.array([0.0, 5.0, -3.0, 10.0])
    fast = bin_trials_by_index(times, trials, 4, 20, 5.0, t0=onsets)
    slow = torch.from_numpy(np.stack([bin_spike_times(times[trials == r], 20, 5.0, onsets[r]) for r in range(4)]))
    torch.testing.assert_close(fast, slow)
    assert fast.dtype == torch.float32


def test_bin_trials_and_row():
    resp = bin_trials([[1.0, 2.0], [7.0]], n_bins=2, dt=5.0)
    assert resp.tolist() == [[2.0, 0.0], [0.0, 1.0]]
    row = response_row({1: resp}, 3)
    assert row[1] is resp and is_sentinel(row[0]) and is_sentinel(row[2])
    with pytest.raises(ValueError):
        bin_spike_times([1.0], 3, 0.0)
