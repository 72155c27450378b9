"""Dataset summaries and the per-stim neuron ranking behind ``deepstrf info`` / ``plot``."""

from __future__ import annotations

import math

import pytest

from deepSTRF.datasets.audio.demo import DemoDataset
from deepSTRF.demo.summary import (
    format_quantiles,
    rank_neurons_on_stim,
    summarize_dataset,
)


def test_format_quantiles():
    assert format_quantiles([1, 2, 3, 4, 5], "g") == "min 1  q1 2  median 3  q3 4  max 5"
    assert format_quantiles([7.0], "g") == "min 7  q1 7  median 7  q3 7  max 7"
    assert format_quantiles([]) == "n/a"
    assert format_quantiles([math.nan, math.inf]) == "n/a (2 undefined)"
    assert format_quantiles([1.0, math.nan], "g").endswith("(1 undefined)")


def test_summarize_dataset_counts_pairs_repeats_and_splits():
    ds = DemoDataset(n_stims=10, n_neurons=5, seed=1)
    summary = summarize_dataset(ds, quality=False)
    masks = ds.nrn_masks
    assert (summary.S, summary.N) == (10, 5)
    assert len(summary.repeats) == int(masks.sum())
    assert summary.missing_fraction == pytest.approx(1 - masks.float().mean().item())
    assert summary.durations_ms == [stim.shape[-1] * 5.0 for stim in ds.stims]
    assert sum(summary.splits.values()) == 10 and set(summary.splits) == {"train", "val", "test"}
    assert summary.snr == [] and "snr" not in ds.nrn_meta[0]
    with_quality = summarize_dataset(ds)
    assert len(with_quality.ccmax) == 5 and "ccmax" in ds.nrn_meta[0]
    text = "\n".join(with_quality.lines())
    assert "missing pairs" in text and "CCmax" in text and "SNR" in text


def test_rank_neurons_on_stim_puts_reliable_neurons_first():
    ds = DemoDataset(n_stims=10, n_neurons=6, seed=2)
    s = 9  # a test stim: every neuron, >= 4 repeats
    order, scores, criterion = rank_neurons_on_stim(ds, s)
    assert sorted(order) == list(range(6))
    assert "CCmax" in criterion
    finite = [v for v in scores if math.isfinite(v)]
    assert finite == sorted(finite, reverse=True)
    # missing pairs are never ranked
    s_missing, n_missing = (~ds.nrn_masks).nonzero()[0].tolist()
    assert n_missing not in rank_neurons_on_stim(ds, s_missing)[0]


def test_rank_neurons_single_repeat_falls_back_to_variance():
    ds = DemoDataset(n_stims=10, n_neurons=4, max_repeats=1, seed=0)
    s = 0
    for n in range(4):
        if ds.nrn_masks[s, n]:
            ds.responses[s][n] = ds.responses[s][n][:1]
    _, scores, criterion = rank_neurons_on_stim(ds, s)
    assert criterion.startswith("response variance")
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("bad", [-1, 10, 2.0, True])
def test_rank_neurons_rejects_bad_stim_index(bad):
    ds = DemoDataset(n_stims=10, n_neurons=3)
    with pytest.raises(IndexError):
        rank_neurons_on_stim(ds, bad)
