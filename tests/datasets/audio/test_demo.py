"""The embedded simulated dataset."""

from __future__ import annotations

import pytest
import torch

from deepSTRF.datasets.audio.demo import DemoDataset


def test_demo_is_deterministic_and_ragged():
    a, b = DemoDataset(n_stims=10, n_neurons=5, seed=3), DemoDataset(n_stims=10, n_neurons=5, seed=3)
    for s in range(10):
        torch.testing.assert_close(a.stims[s], b.stims[s])
        for n in range(5):
            torch.testing.assert_close(a.responses[s][n], b.responses[s][n], equal_nan=True)
    durations = {stim.shape[-1] for stim in a.stims}
    repeats = {a.responses[s][n].shape[0] for s, n in a.nrn_masks.nonzero().tolist()}
    assert len(durations) > 1 and len(repeats) > 1
    assert not a.nrn_masks.all()
    assert torch.equal(a.nrn_masks, a._compute_masks())
    assert a.true_strfs.shape == (5, 16, 12)
    c = DemoDataset(n_stims=10, n_neurons=5, seed=4)
    assert not torch.equal(a.stims[0], c.stims[0]) or a.stims[0].shape != c.stims[0].shape


def test_demo_test_stims_have_every_neuron_with_repeats():
    ds = DemoDataset(n_stims=20, n_neurons=6)
    test = [s for s, m in enumerate(ds.stim_meta) if m["split"] == "test"]
    assert test and ds.nrn_masks[test].all()
    assert all(ds.responses[s][n].shape[0] >= 4 for s in test for n in range(6))


@pytest.mark.parametrize("kwargs", [{"n_stims": 2}, {"missing_fraction": 1.0}, {"n_neurons": 0},
                                    {"duration_bins": (10, 300)}])
def test_demo_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        DemoDataset(**kwargs)


def test_demo_is_exported_by_the_audio_package():
    from deepSTRF.datasets.audio import DemoDataset as exported

    assert exported is DemoDataset


def test_demo_neurons_are_reliable_enough_to_recover_their_strfs():
    # tuned so that a ridge STRF recovers the truth (deepstrf demo): typical CCmax 0.7-0.9
    ds = DemoDataset()
    quality = ds.compute_neuron_quality()
    ccmax, snr = quality["ccmax"], quality["snr"]
    assert 0.75 <= float(ccmax.median()) <= 0.9
    assert float(ccmax.min()) >= 0.6 and float(ccmax.max()) <= 0.95
    assert 0.2 <= float(snr.median()) <= 1.0
    assert ds.true_gain.min() >= 0.6 and ds.true_gain.max() <= 1.8
    splits = [m["split"] for m in ds.stim_meta]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (34, 7, 7)
