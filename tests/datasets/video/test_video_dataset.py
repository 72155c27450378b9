"""VideoNeuralDataset: storage contract, every documented method on ragged data, the demo dataset."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from deepSTRF.datasets import AudioNeuralDataset, DatasetFormatError, NeuralDataset, VideoNeuralDataset
from deepSTRF.datasets._storage import is_sentinel
from deepSTRF.datasets.video import VideoDemoDataset
from deepSTRF.datasets.video.video_dataset import gaussian_kernel
from deepSTRF.utils.data import hanning_smooth, neural_collate
from fixtures.ragged import RaggedDataset, sentinel
from fixtures.video import DURATIONS, REPEATS, BareVideoDataset, RaggedVideoDataset, ragged_video


# ------------------------------------------------------------------ helpers
def snapshot(ds: VideoNeuralDataset) -> list[list[torch.Tensor]]:
    return [[t.clone() for t in row] for row in ds.responses]


def real_pairs(ds: VideoNeuralDataset) -> list[tuple[int, int]]:
    return [tuple(p) for p in ds.nrn_masks.nonzero().tolist()]


def assert_sentinels_kept(ds: VideoNeuralDataset, mask: torch.Tensor) -> None:
    for s, n in (~mask).nonzero().tolist():
        assert is_sentinel(ds.responses[s][n]), (s, n)


def run_epoch(ds: VideoNeuralDataset) -> int:
    """One DataLoader epoch with neural_collate; checks the batch shapes."""
    loader = DataLoader(ds, batch_size=4, collate_fn=neural_collate)
    n_sel = len(ds.get_nrn_meta())
    seen = 0
    for batch in loader:
        B = batch["stims"].shape[0]
        assert batch["stims"].shape[1:4] == (ds.C, ds.H, ds.W)
        assert batch["responses"].shape[:2] == (B, n_sel)
        assert torch.equal(batch["valid_mask"], ~torch.isnan(batch["responses"]))
        seen += B
    assert seen == len(ds)
    return seen


def ramp_stims(ds: VideoNeuralDataset) -> None:
    """Every pixel of frame t holds t (a linear ramp in time)."""
    ds.stims = [torch.arange(x.shape[-1], dtype=torch.float32).expand_as(x).clone() for x in ds.stims]


# ------------------------------------------------------------ construction
def test_attributes_accessors_and_exports():
    ds = ragged_video(C=3, H=4, W=5)
    assert (ds.C, ds.H, ds.W) == (3, 4, 5)
    assert ds.get_dt() == 10.0 and ds.get_frame_dt() == 10.0 and ds.frame_dt is None
    assert ds.get_S() == 4 and ds.get_N() == 3
    assert all(x.shape == (3, 4, 5, T) for x, T in zip(ds.stims, DURATIONS))
    assert ds.nrn_masks.tolist() == [[r > 0 for r in row] for row in REPEATS]
    import deepSTRF.datasets.video as video

    assert video.VideoNeuralDataset is VideoNeuralDataset and "VideoDemoDataset" in video.__all__
    assert len(ds) == 4 and run_epoch(ds) == 4


def _set(attr, value):
    return lambda ds: setattr(ds, attr, value)


@pytest.mark.parametrize(
    "mutate, error, pattern",
    [
        (_set("C", 2), ValueError, "C must be 1"),
        (_set("H", 0), ValueError, r"H must be an int > 0"),
        (_set("W", 2.0), ValueError, r"W must be an int > 0"),
        (_set("frame_dt", -1.0), ValueError, "frame_dt"),
        (lambda ds: ds.stims.__setitem__(1, torch.zeros(4, 5, 10)), DatasetFormatError, r"4-D \(C, H, W, T\)"),
        (lambda ds: ds.stims.__setitem__(1, torch.zeros(1, 4, 6, 10)), DatasetFormatError, r"stims\[1\]"),
        (lambda ds: ds.stims.__setitem__(1, torch.zeros(1, 4, 5, 10, dtype=torch.int64)), DatasetFormatError, "dtype"),
        (lambda ds: ds.stims[2].__setitem__((0, 0, 0, 3), math.nan), DatasetFormatError, "NaN"),
        (lambda ds: ds.stims.__setitem__(0, torch.zeros(1, 4, 5, 8)), DatasetFormatError, r"responses\[0\]\[0\]"),
        (lambda ds: ds.stims.__setitem__(0, [0.0]), TypeError, r"stims\[0\] must be a torch.Tensor"),
    ],
)
def test_validate_names_the_fault(mutate, error, pattern):
    ds = ragged_video()
    mutate(ds)
    with pytest.raises(error, match=pattern):
        ds.validate()


def test_unset_shape_attributes_are_rejected():
    class Incomplete(VideoNeuralDataset):
        def __init__(self):
            super().__init__("memory", 10.0)
            self.stims = [torch.zeros(1, 2, 2, 3)]
            self.responses = [[torch.zeros(1, 3)]]
            self.stim_meta, self.nrn_meta, self.N_neurons = [{}], [{}], 1
            self.validate()

    with pytest.raises(ValueError, match=r"C must be an int > 0"):
        Incomplete()


# ----------------------------------------------------------- concatenation
def test_concatenation_copies_video_attributes():
    a, b = ragged_video(seed=1), ragged_video(seed=2)
    c = a + b
    assert isinstance(c, VideoNeuralDataset)
    assert (c.C, c.H, c.W, c.dt, c.frame_dt) == (1, 4, 5, 10.0, None)
    assert c.get_S() == 8 and c.get_N() == 6
    assert not c.nrn_masks[:4, 3:].any() and not c.nrn_masks[4:, :3].any()
    assert run_epoch(c) == 8


@pytest.mark.parametrize(
    "other, attr",
    [
        (lambda: ragged_video(C=3), "C"),
        (lambda: ragged_video(H=6), "H"),
        (lambda: ragged_video(W=2), "W"),
        (lambda: ragged_video(dt_ms=5.0), "dt"),
    ],
)
def test_concatenation_checks_each_attribute(other, attr):
    with pytest.raises(ValueError, match=rf"\b{attr}\b"):
        ragged_video() + other()


def test_concatenation_rejects_other_modalities_and_frame_rates():
    audio = RaggedDataset([[1, 2]], dt_ms=10.0)
    with pytest.raises(ValueError, match="not video"):
        ragged_video() + audio
    b = ragged_video()
    b.change_video_temporal_resolution(10.0, 20.0)
    with pytest.raises(ValueError, match="frame_dt"):
        ragged_video() + b
    assert isinstance(audio, AudioNeuralDataset)


# ------------------------------------------------------------------- noise
def test_add_noise_is_reproducible_and_has_the_requested_level():
    a, b, c = ragged_video(H=16, W=16), ragged_video(H=16, W=16), ragged_video(H=16, W=16)
    clean = [x.clone() for x in a.stims]
    rng_state = torch.get_rng_state()
    record = a.add_noise_to_videos(noise_level=0.25, seed=7)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is not used
    b.add_noise_to_videos(noise_level=0.25, seed=7)
    c.add_noise_to_videos(noise_level=0.25, seed=8)
    assert record == {"method": "add_noise_to_videos", "noise_level": 0.25, "seed": 7}
    assert a.video_transforms[-1] is record
    noise = torch.cat([(x - x0).flatten() for x, x0 in zip(a.stims, clean)])
    assert noise.std().item() == pytest.approx(0.25, rel=0.05)
    assert abs(noise.mean().item()) < 0.02
    assert all(torch.equal(x, y) for x, y in zip(a.stims, b.stims))
    assert not torch.equal(a.stims[0], c.stims[0])
    d = ragged_video()
    before = [x.clone() for x in d.stims]
    d.add_noise_to_videos(noise_level=0.0)
    assert all(torch.equal(x, y) for x, y in zip(d.stims, before))


@pytest.mark.parametrize("kwargs, error", [({"noise_level": -0.1}, ValueError), ({"noise_level": math.nan}, ValueError),
                                           ({"noise_level": True}, ValueError), ({"seed": 1.5}, TypeError)])
def test_add_noise_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        ragged_video().add_noise_to_videos(**kwargs)


# ------------------------------------------------------- spatial resolution
def test_change_spatial_resolution_keeps_constants_and_antialiases():
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float()
    stims = [checker[None, :, :, None].expand(1, 8, 8, 5).clone(), torch.full((1, 8, 8, 3), 0.7)]
    responses = [[torch.ones(2, 5)], [torch.ones(1, 3)]]
    ds = BareVideoDataset(stims, responses)
    record = ds.change_spatial_resolution((4, 4))
    assert record["old_size"] == (8, 8) and record["new_size"] == (4, 4)
    assert (ds.H, ds.W) == (4, 4) and ds.stims[0].shape == (1, 4, 4, 5)
    # antialiasing averages the checkerboard to mid-grey (plain decimation would give 0 or 1)
    torch.testing.assert_close(ds.stims[0][:, 1:3, 1:3], torch.full((1, 2, 2, 5), 0.5))
    assert ((ds.stims[0] - 0.5).abs() < 0.02).all()
    torch.testing.assert_close(ds.stims[1], torch.full((1, 4, 4, 3), 0.7))
    ds.change_spatial_resolution(6)
    assert (ds.H, ds.W) == (6, 6) and ds.stims[1].shape == (1, 6, 6, 3)
    torch.testing.assert_close(ds.stims[1], torch.full((1, 6, 6, 3), 0.7))
    ds.validate()


def test_change_spatial_resolution_on_ragged_rgb_then_epoch():
    ds = ragged_video(C=3)
    ds.change_spatial_resolution((3, 7))
    assert all(x.shape == (3, 3, 7, T) for x, T in zip(ds.stims, DURATIONS))
    assert all(x.is_contiguous() for x in ds.stims)
    ds.validate()
    assert run_epoch(ds) == 4


@pytest.mark.parametrize("size, error", [(0, ValueError), ((4, 0), ValueError), ((4,), ValueError),
                                         ((2.5, 3), TypeError), ("big", TypeError)])
def test_change_spatial_resolution_rejects_bad_sizes(size, error):
    ds = ragged_video()
    with pytest.raises(error):
        ds.change_spatial_resolution(size)
    assert (ds.H, ds.W) == (4, 5)


# ----------------------------------------------- video temporal resolution
def test_change_video_temporal_resolution_averages_frames_of_a_ramp():
    ds = ragged_video()
    ramp_stims(ds)
    responses = [list(row) for row in ds.responses]
    record = ds.change_video_temporal_resolution(10.0, 30.0)
    assert record["mode"] == "average" and record["factor"] == 3
    assert record["dropped_frames"] == [T % 3 for T in DURATIONS]
    # frames (0,1,2), (3,4,5), (6,7,8) average to 1, 4, 7 (not decimated to 0, 3, 6, not summed to 3, 12, 21)
    torch.testing.assert_close(ds.stims[1][0, 0, 0], torch.tensor([1.0, 4.0, 7.0]))
    assert [x.shape[-1] for x in ds.stims] == [T // 3 for T in DURATIONS]
    assert all(torch.equal(x, x[:1, :1, :1].expand_as(x)) for x in ds.stims)  # every pixel follows the ramp
    assert ds.frame_dt == 30.0 and ds.get_frame_dt() == 30.0 and ds.dt == 10.0
    assert all(a is b for ra, rb in zip(responses, ds.responses) for a, b in zip(ra, rb))  # responses untouched
    ds.validate()
    assert run_epoch(ds) == 4
    # back to the response grid: repeat frames, frame_dt is unset again
    record = ds.change_video_temporal_resolution(30.0, 10.0)
    assert record["mode"] == "repeat" and ds.frame_dt is None
    torch.testing.assert_close(ds.stims[1][0, 0, 0], torch.tensor([1.0, 1, 1, 4, 4, 4, 7, 7, 7]))


def test_change_video_temporal_resolution_upsamples_by_repeating():
    ds = ragged_video()
    ramp_stims(ds)
    ds.change_video_temporal_resolution(10.0, 5.0)
    torch.testing.assert_close(ds.stims[3][0, 1, 2], torch.tensor([0.0, 0, 1, 1, 2, 2, 3, 3, 4, 4]))
    assert ds.frame_dt == 5.0
    ds.validate()
    assert ds.change_video_temporal_resolution(5.0, 5.0)["mode"] == "none"


@pytest.mark.parametrize(
    "native, target, pattern",
    [(10.0, 15.0, "integer"), (10.0, 4.0, "integer"), (20.0, 40.0, "does not match"), (10.0, 60.0, "fewer than"),
     (0.0, 10.0, "native_dt"), (10.0, -5.0, "target_dt")],
)
def test_change_video_temporal_resolution_rejects_bad_arguments(native, target, pattern):
    ds = ragged_video()
    before = [x.clone() for x in ds.stims]
    with pytest.raises(ValueError, match=pattern):
        ds.change_video_temporal_resolution(native, target)
    assert all(torch.equal(x, y) for x, y in zip(ds.stims, before)) and ds.frame_dt is None


# ------------------------------------------------- joint temporal resolution
def test_change_temporal_resolution_sums_counts_into_coarser_bins():
    ds = ragged_video()
    ramp_stims(ds)
    before = snapshot(ds)
    mask = ds.nrn_masks.clone()
    record = ds.change_temporal_resolution(20.0)
    assert record["response_mode"] == "sum" and record["stim_mode"] == "average" and record["response_factor"] == 2
    assert record["dropped_ms"] == [10.0, 0.0, 0.0, 10.0]  # odd durations lose their last bin
    assert ds.dt == 20.0 and ds.get_dt() == 20.0 and ds.frame_dt is None
    for s, n in real_pairs(ds):
        old, new = before[s][n], ds.responses[s][n]
        T2 = old.shape[1] // 2
        assert new.shape == (old.shape[0], T2)
        torch.testing.assert_close(new, old[:, 0 : 2 * T2 : 2] + old[:, 1 : 2 * T2 : 2])
        assert new.sum() == old[:, : 2 * T2].sum()  # spike count preserved over the kept bins
        if old.shape[1] % 2 == 0:
            assert new.sum() == old.sum()
    assert torch.equal(ds.nrn_masks, mask)
    assert_sentinels_kept(ds, mask)
    for s, x in enumerate(ds.stims):
        assert x.shape[-1] == DURATIONS[s] // 2
        torch.testing.assert_close(x[0, 0, 0], torch.arange(DURATIONS[s] // 2, dtype=torch.float32) * 2 + 0.5)
    ds.validate()
    assert run_epoch(ds) == 4


def test_change_temporal_resolution_splits_counts_evenly_into_finer_bins():
    ds = ragged_video()
    ramp_stims(ds)
    before = snapshot(ds)
    mask = ds.nrn_masks.clone()
    record = ds.change_temporal_resolution(2.5)
    assert record["response_mode"] == "split" and record["response_factor"] == 4 and record["stim_mode"] == "repeat"
    assert ds.dt == 2.5
    for s, n in real_pairs(ds):
        old, new = before[s][n], ds.responses[s][n]
        assert new.shape == (old.shape[0], 4 * old.shape[1])
        torch.testing.assert_close(new, old.repeat_interleave(4, dim=1) / 4)
        torch.testing.assert_close(new.sum(dim=1), old.sum(dim=1))  # totals preserved (not multiplied by 4)
    assert_sentinels_kept(ds, mask)
    assert [x.shape[-1] for x in ds.stims] == [4 * T for T in DURATIONS]
    torch.testing.assert_close(ds.stims[3][0, 0, 0, :8], torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1]))
    ds.validate()
    assert run_epoch(ds) == 4


def test_change_temporal_resolution_keeps_nan_local_to_its_bin():
    cell = torch.tensor([[1.0, 2.0, math.nan, 4.0, 5.0, 6.0]])
    ds = BareVideoDataset([torch.zeros(1, 2, 2, 6)], [[cell, sentinel()]])
    ds.change_temporal_resolution(20.0)
    out = ds.responses[0][0]
    assert out[0, 0] == 3.0 and math.isnan(out[0, 1]) and out[0, 2] == 11.0
    assert is_sentinel(ds.responses[0][1])


def test_change_temporal_resolution_from_a_different_frame_rate():
    ds = ragged_video()
    ramp_stims(ds)
    ds.change_video_temporal_resolution(10.0, 30.0)  # frames of 30 ms, responses still at 10 ms
    ds.change_temporal_resolution(30.0)
    assert ds.dt == 30.0 and ds.frame_dt is None
    for s in range(4):
        T = DURATIONS[s] // 3
        assert ds.stims[s].shape[-1] == T
        for n in ds.nrn_masks[s].nonzero().flatten().tolist():
            assert ds.responses[s][n].shape[-1] == T
    ds.validate()
    ds2 = ragged_video()
    ds2.change_video_temporal_resolution(10.0, 5.0)  # finer frames; responses summed, frames averaged by 4
    ds2.change_temporal_resolution(20.0)
    assert [x.shape[-1] for x in ds2.stims] == [T // 2 for T in DURATIONS]
    ds2.validate()


@pytest.mark.parametrize("new_dt, error, pattern", [(15.0, ValueError, "integer"), (7.0, ValueError, "integer"),
                                                    (60.0, ValueError, "too short"), (0, ValueError, "new_dt"),
                                                    ("20", ValueError, "new_dt")])
def test_change_temporal_resolution_rejects_bad_factors_without_side_effects(new_dt, error, pattern):
    ds = ragged_video()
    before, stims = snapshot(ds), [x.clone() for x in ds.stims]
    with pytest.raises(error, match=pattern):
        ds.change_temporal_resolution(new_dt)
    assert ds.dt == 10.0
    assert all(torch.equal(x, y) for x, y in zip(ds.stims, stims))
    for s, n in real_pairs(ds):
        assert torch.equal(ds.responses[s][n], before[s][n])


@settings(max_examples=25, deadline=None)
@given(
    repeats=st.lists(st.lists(st.integers(0, 3), min_size=3, max_size=3), min_size=1, max_size=4),
    durations=st.lists(st.integers(4, 13), min_size=4, max_size=4),
    factor=st.integers(1, 4),
    finer=st.booleans(),
)
def test_rebinning_preserves_spike_totals(repeats, durations, factor, finer):
    repeats = [row if any(row) else [1, 0, 0] for row in repeats]
    ds = RaggedVideoDataset(repeats, durations[: len(repeats)], H=2, W=2)
    before = snapshot(ds)
    ds.change_temporal_resolution(10.0 / factor if finer else 10.0 * factor)
    for s, n in real_pairs(ds):
        old = before[s][n]
        kept = old if finer else old[:, : (old.shape[1] // factor) * factor]
        torch.testing.assert_close(ds.responses[s][n].sum(dim=1), kept.sum(dim=1))
    ds.validate()


# --------------------------------------------------------------- greyscale
def test_grayscale_uses_bt601_weights():
    ds = ragged_video(C=3, H=2, W=2)
    for x in ds.stims:
        x.zero_()
    ds.stims[0][0] = 1.0  # pure red
    ds.stims[1][1] = 1.0  # pure green
    ds.stims[2][2] = 1.0  # pure blue
    ds.stims[3][:] = 1.0  # white
    record = ds.from_rgb_to_grayscale()
    assert record["converted"] and record["weights"] == (0.299, 0.587, 0.114)
    assert ds.C == 1 and all(x.shape[0] == 1 for x in ds.stims)
    for s, value in enumerate([0.299, 0.587, 0.114, 1.0]):
        torch.testing.assert_close(ds.stims[s], torch.full_like(ds.stims[s], value))
    ds.validate()
    assert run_epoch(ds) == 4
    before = [x.clone() for x in ds.stims]
    assert not ds.from_rgb_to_grayscale()["converted"]  # already grey: a no-op
    assert all(torch.equal(x, y) for x, y in zip(ds.stims, before))


# ------------------------------------------------------------ signal power
def _sahani_linden_sp(x: np.ndarray) -> float:
    R = x.shape[0]
    return (R * x.mean(axis=0).var(ddof=1) - x.var(axis=1, ddof=1).mean()) / (R - 1)


def test_signal_power_per_pair_matches_the_formula():
    ds = ragged_video()
    ds.responses[2][1][0, 3] = math.nan  # a rejected bin inside a real response
    sp = ds.get_responses_signal_power()
    assert sp.shape == (4, 3) and sp.dtype == torch.float32
    for s in range(4):
        for n in range(3):
            R = REPEATS[s][n]
            if R < 2:  # missing pair or a single repeat
                assert math.isnan(sp[s, n]), (s, n)
                continue
            x = ds.responses[s][n].double().numpy()
            if s == 2 and n == 1:
                x = np.delete(x, 3, axis=1)  # the bin is dropped from every repeat
            assert sp[s, n].item() == pytest.approx(_sahani_linden_sp(x), rel=1e-5, abs=1e-6)


def test_signal_power_of_noiseless_and_single_bin_cells():
    psth = torch.tensor([0.0, 1.0, 4.0, 1.0, 0.0])
    ds = BareVideoDataset([torch.zeros(1, 1, 1, 5)], [[psth.expand(3, 5).clone(), torch.zeros(2, 5)]])
    sp = ds.get_responses_signal_power()
    assert sp[0, 0].item() == pytest.approx(psth.var().item())  # identical repeats: SP = var_t(psth)
    assert sp[0, 1].item() == 0.0
    short = BareVideoDataset([torch.zeros(1, 1, 1, 1)], [[torch.ones(3, 1)]])
    assert math.isnan(short.get_responses_signal_power()[0, 0])  # T < 2


# ------------------------------------------------------- response methods
def test_normalize_responses_is_the_base_method():
    assert VideoNeuralDataset.normalize_responses is NeuralDataset.normalize_responses
    assert inspect.signature(VideoNeuralDataset.normalize_responses) == inspect.signature(
        NeuralDataset.normalize_responses
    )
    ds = ragged_video()
    mask = ds.nrn_masks.clone()
    record = ds.normalize_responses("zscore", stim_indices=[0, 2])
    assert ds.response_normalization is record
    assert_sentinels_kept(ds, mask)
    assert run_epoch(ds) == 4


def test_normalize_videos_per_pixel_uses_subset_statistics():
    ds = ragged_video(C=3)
    old = [x.clone().double() for x in ds.stims]
    X = torch.cat([old[0], old[2]], dim=-1)
    mean, std = X.mean(dim=-1, keepdim=True), X.std(dim=-1, keepdim=True)
    record = ds.normalize_videos(stim_indices=[0, 2])
    assert ds.video_normalization is record and record["stim_indices"] == [0, 2] and record["per_pixel"]
    assert record["mean"].shape == (3, 4, 5, 1) and record["std"].shape == (3, 4, 5, 1)
    torch.testing.assert_close(record["mean"].double(), mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(record["std"].double(), std, rtol=1e-6, atol=1e-6)
    for s in range(4):  # every stim transformed with the subset statistics
        torch.testing.assert_close(ds.stims[s].double(), (old[s] - mean) / std, rtol=1e-5, atol=1e-5)
    Z = torch.cat([ds.stims[0], ds.stims[2]], dim=-1)
    torch.testing.assert_close(Z.mean(dim=-1), torch.zeros(3, 4, 5), atol=1e-5, rtol=0)
    assert ds.stims[0].dtype == torch.float32
    ds.validate()
    assert run_epoch(ds) == 4


def test_normalize_videos_global_and_constant_pixels():
    ds = ragged_video()
    old = [x.clone().double() for x in ds.stims]
    X = torch.cat([o.flatten() for o in old])
    record = ds.normalize_videos(per_pixel=False)
    assert record["mean"].dim() == 0 and record["stim_indices"] is None
    assert record["mean"].item() == pytest.approx(X.mean().item(), rel=1e-6)
    assert record["std"].item() == pytest.approx(X.std().item(), rel=1e-6)
    flat = BareVideoDataset([torch.full((1, 2, 2, 4), 3.0)], [[torch.ones(1, 4)]])
    flat.normalize_videos()
    assert torch.equal(flat.stims[0], torch.zeros(1, 2, 2, 4))  # centred, not blown up by a zero std


@pytest.mark.parametrize("kwargs, error", [({"stim_indices": []}, ValueError), ({"stim_indices": [4]}, IndexError),
                                           ({"stim_indices": [0.5]}, TypeError), ({"eps": -1.0}, ValueError)])
def test_normalize_videos_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        ragged_video().normalize_videos(**kwargs)


def test_normalize_videos_needs_two_frames():
    ds = BareVideoDataset([torch.zeros(1, 2, 2, 1)], [[torch.ones(1, 1)]])
    with pytest.raises(ValueError, match="at least 2"):
        ds.normalize_videos()


def test_smooth_hann_is_the_base_behaviour():
    ds = ragged_video()
    before = snapshot(ds)
    mask = ds.nrn_masks.clone()
    record = ds.smooth_responses(window_ms=50.0)
    assert record["kernel"] == "hann" and record["n_bins"] == 5 and record["sigma_ms"] is None
    for s, n in real_pairs(ds):
        torch.testing.assert_close(ds.responses[s][n], hanning_smooth(before[s][n], 50.0, 10.0))
    assert_sentinels_kept(ds, mask)
    assert "kernel" in inspect.signature(VideoNeuralDataset.smooth_responses).parameters
    ds.smooth_responses(21.0)  # the base signature still works positionally


def test_smooth_gaussian_is_centred_symmetric_and_unit_gain():
    T, centre = 41, 20
    impulse = torch.zeros(1, T)
    impulse[0, centre] = 1.0
    ds = BareVideoDataset([torch.zeros(1, 1, 1, T)], [[impulse, sentinel(), torch.full((2, T), 3.0)]])
    record = ds.smooth_responses(kernel="gaussian", sigma_ms=20.0)  # sigma = 2 bins: taps -6..6
    assert record["n_bins"] == 13 and record["sigma_ms"] == 20.0
    out = ds.responses[0][0][0]
    torch.testing.assert_close(out, out.flip(0))  # symmetric about the impulse bin (T odd, centre in the middle)
    assert int(out.argmax()) == centre
    assert out.sum().item() == pytest.approx(1.0)
    assert (out[centre - 6 : centre + 7] > 0).all() and (out[: centre - 6] == 0).all()
    expected = torch.exp(-0.5 * (torch.arange(-6, 7, dtype=torch.float64) / 2.0) ** 2)
    torch.testing.assert_close(out[centre - 6 : centre + 7].double(), expected / expected.sum(), rtol=1e-5, atol=1e-7)
    constant = ds.responses[0][2]
    torch.testing.assert_close(constant[:, 6:-6], torch.full((2, T - 12), 3.0))
    assert is_sentinel(ds.responses[0][1])


def test_gaussian_kernel_shape_and_default_sigma():
    for sigma in (0.2, 0.5, 1.0, 1.7, 3.0):
        k = gaussian_kernel(sigma)
        assert k.numel() % 2 == 1 and k.numel() == 2 * math.ceil(3 * sigma) + 1
        assert torch.equal(k, k.flip(0)) and int(k.argmax()) == k.numel() // 2
        assert k.sum().item() == pytest.approx(1.0)
    assert gaussian_kernel(0.2)[1].item() == pytest.approx(1.0, abs=1e-5)  # a narrow sigma is ~ the identity
    ds = ragged_video()
    record = ds.smooth_responses(window_ms=60.0, kernel="gaussian")  # sigma = 60 / 6 = 10 ms = 1 bin
    assert record["sigma_ms"] == 10.0 and record["n_bins"] == 7


def test_smooth_gaussian_is_nan_aware():
    cell = torch.ones(1, 15)
    cell[0, 7] = math.nan
    ds = BareVideoDataset([torch.zeros(1, 1, 1, 15)], [[cell]])
    ds.smooth_responses(kernel="gaussian", sigma_ms=10.0)
    out = ds.responses[0][0][0]
    assert math.isnan(out[7]) and torch.isfinite(out[[5, 6, 8, 9]]).all()
    torch.testing.assert_close(out[4:7], torch.ones(3))  # neighbours renormalised, NaN not spread


@pytest.mark.parametrize("kwargs", [{"kernel": "box"}, {"sigma_ms": 5.0}, {"kernel": "gaussian", "sigma_ms": 0.0},
                                    {"kernel": "gaussian", "window_ms": -1.0}])
def test_smooth_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ragged_video().smooth_responses(**kwargs)


# ------------------------------------------------------------------- clips
def test_split_into_clips_pad():
    ds = ragged_video(stim_meta=[{"name": f"v{s}", "kind": s % 2} for s in range(4)])
    stims, before = [x.clone() for x in ds.stims], snapshot(ds)
    mask, nrn_meta = ds.nrn_masks.clone(), [dict(m) for m in ds.nrn_meta]
    ds.select_neuron(1)
    ds.select_stims([1])
    L = 4
    record = ds.split_into_clips(L)
    counts = [math.ceil(T / L) for T in DURATIONS]
    assert record["clips_per_stim"] == counts and record["n_clips"] == sum(counts) == ds.get_S()
    assert record["padded_bins"] == sum(c * L - T for c, T in zip(counts, DURATIONS))
    assert ds.I == [] and ds.S_sel is None and ds.nrn_meta == nrn_meta
    assert len(ds.responses) == len(ds.stim_meta) == len(ds.stims) == sum(counts)
    i = 0
    for s, T in enumerate(DURATIONS):
        for c in range(counts[s]):
            a, b = c * L, min((c + 1) * L, T)
            meta = ds.stim_meta[i]
            assert meta == {"name": f"v{s}", "kind": s % 2, "source_stim": s, "clip": c, "clip_start_bin": a,
                            "clip_valid_bins": b - a}
            assert ds.stims[i].shape == (1, 4, 5, L)
            torch.testing.assert_close(ds.stims[i][..., : b - a], stims[s][..., a:b])
            assert (ds.stims[i][..., b - a :] == 0).all()  # zero frames in the padding
            assert ds.nrn_masks[i].tolist() == mask[s].tolist()
            for n in range(3):
                cell = ds.responses[i][n]
                if not mask[s, n]:
                    assert is_sentinel(cell)
                    continue
                assert cell.shape == (REPEATS[s][n], L)
                torch.testing.assert_close(cell[:, : b - a], before[s][n][:, a:b])
                assert torch.isnan(cell[:, b - a :]).all()  # padded responses are NaN, not 0
            i += 1
    sentinels = [ds.responses[i][n] for i in range(ds.get_S()) for n in range(3) if not ds.nrn_masks[i, n]]
    assert len({id(t) for t in sentinels}) == len(sentinels)  # one sentinel per clip, not shared
    ds.stim_meta[0]["name"] = "changed"
    assert ds.stim_meta[1]["name"] == "v0"
    ds.validate()
    assert run_epoch(ds) == sum(counts)
    ds.select_stims_by_attr("source_stim", 2)
    assert len(ds) == counts[2]


def test_split_into_clips_drop():
    ds = ragged_video()
    before = snapshot(ds)
    record = ds.split_into_clips(4, tail="drop")
    counts = [T // 4 for T in DURATIONS]
    assert record["clips_per_stim"] == counts and ds.get_S() == sum(counts)
    assert record["dropped_bins"] == sum(T % 4 for T in DURATIONS) and record["padded_bins"] == 0
    for i in range(ds.get_S()):
        for n in ds.nrn_masks[i].nonzero().flatten().tolist():
            assert not torch.isnan(ds.responses[i][n]).any()
    assert sum(ds.responses[i][0].sum() for i in range(ds.get_S()) if ds.nrn_masks[i, 0]) == sum(
        before[s][0][:, : counts[s] * 4].sum() for s in range(4) if REPEATS[s][0]
    )
    ds.validate()
    ds2 = ragged_video()
    record = ds2.split_into_clips(6, tail="drop")  # the 5-bin stim disappears
    assert record["source_stim"] == [0, 1, 2, 2] and [m["clip"] for m in ds2.stim_meta] == [0, 0, 0, 1]
    assert run_epoch(ds2) == 4


def test_split_into_clips_rejects_bad_arguments_without_side_effects():
    ds = ragged_video()
    bad = [({"clip_bins": 0}, ValueError), ({"clip_bins": 2.5}, TypeError),
           ({"clip_bins": 3, "tail": "keep"}, ValueError), ({"clip_bins": 13, "tail": "drop"}, ValueError)]
    for kwargs, error in bad:
        with pytest.raises(error):
            ds.split_into_clips(**kwargs)
        assert ds.get_S() == 4
    ds.change_video_temporal_resolution(10.0, 5.0)
    with pytest.raises(ValueError, match="frame_dt"):
        ds.split_into_clips(3)


# -------------------------------------------------- every transform + epoch
TRANSFORMS = {
    "noise": lambda ds: ds.add_noise_to_videos(0.1, seed=3),
    "spatial": lambda ds: ds.change_spatial_resolution((2, 3)),
    "video_average": lambda ds: ds.change_video_temporal_resolution(10.0, 20.0),
    "video_repeat": lambda ds: ds.change_video_temporal_resolution(10.0, 5.0),
    "rebin_sum": lambda ds: ds.change_temporal_resolution(20.0),
    "rebin_split": lambda ds: ds.change_temporal_resolution(5.0),
    "grey": lambda ds: ds.from_rgb_to_grayscale(),
    "normalize_videos": lambda ds: ds.normalize_videos([0, 1]),
    "normalize_responses": lambda ds: ds.normalize_responses("zscore", [0, 1]),
    "smooth_hann": lambda ds: ds.smooth_responses(30.0),
    "smooth_gauss": lambda ds: ds.smooth_responses(kernel="gaussian", sigma_ms=10.0),
    "clips_pad": lambda ds: ds.split_into_clips(4),
    "clips_drop": lambda ds: ds.split_into_clips(4, tail="drop"),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_dataloader_epoch_after_each_transform(name):
    ds = ragged_video(C=3)
    mask_rows = ds.nrn_masks.any(dim=0)
    result = TRANSFORMS[name](ds)
    assert isinstance(result, dict)
    ds.validate()
    assert run_epoch(ds) == len(ds) > 0
    assert torch.equal(ds.nrn_masks.any(dim=0), mask_rows)  # no neuron lost its data
    ds.select_neuron(2)
    run_epoch(ds)


def test_transforms_chain_and_record_in_order():
    ds = VideoDemoDataset(n_stims=6, n_neurons=4, n_channels=3)
    ds.from_rgb_to_grayscale()
    ds.change_spatial_resolution(4)
    ds.normalize_videos([s for s, m in enumerate(ds.stim_meta) if m["split"] == "train"])
    ds.change_temporal_resolution(50.0)
    ds.smooth_responses(kernel="gaussian")
    ds.split_into_clips(8)
    assert [r["method"] for r in ds.video_transforms] == [
        "from_rgb_to_grayscale", "change_spatial_resolution", "normalize_videos",
        "change_temporal_resolution", "smooth_responses", "split_into_clips",
    ]
    ds.validate()
    assert run_epoch(ds) == ds.get_S()


# -------------------------------------------------------------------- demo
def test_demo_is_deterministic_and_ragged():
    a, b = VideoDemoDataset(seed=3), VideoDemoDataset(seed=3)
    assert (a.get_S(), a.get_N(), a.C, a.H, a.W) == (12, 10, 1, 8, 8)
    for s in range(12):
        assert torch.equal(a.stims[s], b.stims[s])
        for n in range(10):
            torch.testing.assert_close(a.responses[s][n], b.responses[s][n], equal_nan=True)
    assert len({x.shape[-1] for x in a.stims}) > 1
    assert len({a.responses[s][n].shape[0] for s, n in real_pairs(a)}) > 1
    assert not a.nrn_masks.all() and a.nrn_masks.any(dim=0).all() and a.nrn_masks.any(dim=1).all()
    assert torch.equal(a.nrn_masks, a._compute_masks())
    assert {m["kind"] for m in a.stim_meta} == {"grating", "noise"}
    assert all(0.0 <= float(x.min()) and float(x.max()) <= 1.0 for x in a.stims)
    assert a.true_filters.shape == (10, 1, 8, 8, 4)
    c = VideoDemoDataset(seed=4)
    assert not torch.equal(a.stims[1], c.stims[1]) or a.stims[1].shape != c.stims[1].shape
    test = [s for s, m in enumerate(a.stim_meta) if m["split"] == "test"]
    assert test and a.nrn_masks[test].all()
    sp = a.get_responses_signal_power()
    assert torch.nanmean(sp).item() > 0  # the neurons follow the stimulus
    assert run_epoch(a) == 12


def test_demo_rgb():
    ds = VideoDemoDataset(n_stims=4, n_neurons=3, height=6, width=5, n_channels=3)
    assert ds.stims[0].shape[:3] == (3, 6, 5) and ds.true_filters.shape == (3, 3, 6, 5, 4)
    assert not torch.equal(ds.stims[0][0], ds.stims[0][1])  # tinted gratings


@pytest.mark.parametrize("kwargs", [{"n_stims": 2}, {"n_channels": 2}, {"missing_fraction": 1.0}, {"n_neurons": 0},
                                    {"duration_bins": (5, 60)}, {"height": 1}])
def test_demo_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        VideoDemoDataset(**kwargs)
