"""Low-level reliability kernels: closed forms, split enumeration, Gram trick."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepSTRF.metrics import (
    cell_signal_noise_power,
    cell_split_half_rho,
    cell_trial_to_trial_rho,
    length_weighted_mean,
    padded_cell_stats,
    spearman_brown_ccmax,
    split_half_masks,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float("nan") if den < 1e-12 else float((a * b).sum() / den)


def _naive_rho(cell: np.ndarray, masks: np.ndarray) -> float:
    """Per-split loop on explicit half-averages (the definition)."""
    rs = []
    for m in masks:
        r = _pearson(cell[: m.size][m].mean(axis=0), cell[: m.size][~m].mean(axis=0))
        if not np.isnan(r):
            rs.append(r)
    return float(np.mean(rs)) if rs else float("nan")


# ---------------------------------------------------------------------------
# split masks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("R, expected", [(2, 1), (4, 3), (6, 10), (8, 35), (10, 126)])
def test_enumerated_split_counts_distinct_and_complement_free(R, expected):
    masks = split_half_masks(R, max_iters=126)
    assert masks.dtype == torch.bool and masks.shape == (expected, R)
    assert bool((masks.sum(dim=1) == R // 2).all())
    rows = {tuple(m.tolist()) for m in masks}
    assert len(rows) == expected  # distinct
    complements = {tuple((~m).tolist()) for m in masks}
    assert not rows & complements  # no split listed twice as (A, B) and (B, A)
    # together with their complements they are every half-size subset
    assert len(rows | complements) == math.comb(R, R // 2)


def test_enumeration_follows_reference_lexicographic_order():
    masks = split_half_masks(6)
    subsets = [tuple(np.flatnonzero(m.numpy())) for m in masks]
    assert subsets == list(itertools.combinations(range(6), 3))[:10]


def test_odd_R_drops_last_repeat():
    assert split_half_masks(7).shape == (10, 6)
    torch.manual_seed(1)
    x = torch.randn(5, 7, 30, dtype=torch.float64)
    torch.testing.assert_close(cell_split_half_rho(x), cell_split_half_rho(x[:, :6]))


def test_random_splits_when_too_many():
    a = split_half_masks(20, max_iters=126, seed=0)
    assert a.shape == (126, 20)
    assert bool((a.sum(dim=1) == 10).all()) and bool(a[:, 0].all())
    assert len({tuple(m.tolist()) for m in a}) == 126
    torch.testing.assert_close(a, split_half_masks(20, max_iters=126, seed=0))  # reproducible
    b = split_half_masks(20, max_iters=126, seed=1)
    assert {tuple(m.tolist()) for m in a} != {tuple(m.tolist()) for m in b}
    # not the reference's biased "first K in lexicographic order"
    first = torch.zeros(20, dtype=torch.bool)
    first[:10] = True
    assert not bool((a == first).all(dim=1).all())


def test_random_splits_cap_below_enumeration():
    m = split_half_masks(10, max_iters=50, seed=3)
    assert m.shape == (50, 10)
    assert len({tuple(r.tolist()) for r in m}) == 50


def test_large_R_does_not_materialise_all_subsets():
    t0 = time.perf_counter()
    m = split_half_masks(60, max_iters=126, seed=0)  # binom(60, 30) ~ 1.2e17
    assert m.shape == (126, 60)
    torch.manual_seed(0)
    rho = cell_split_half_rho(torch.randn(3, 61, 20), max_iters=126)
    assert rho.shape == (3,)
    assert time.perf_counter() - t0 < 2.0


def test_returned_masks_are_copies():
    m = split_half_masks(4)
    m[:] = False
    assert bool(split_half_masks(4)[:, 0].all())


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"R": 1}, ValueError),
        ({"R": 2.0}, TypeError),
        ({"R": 4, "max_iters": 0}, ValueError),
        ({"R": 4, "max_iters": 1.5}, TypeError),
        ({"R": 4, "seed": "a"}, TypeError),
    ],
)
def test_split_masks_argument_errors(kwargs, exc):
    with pytest.raises(exc):
        split_half_masks(**kwargs)


# ---------------------------------------------------------------------------
# signal / noise power
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identical_repeats_zero_noise_ccmax_one(dtype):
    torch.manual_seed(0)
    base = torch.randn(4, 1, 40, dtype=dtype) * 3 + 1.7
    x = base.expand(4, 10, 40).contiguous()
    sp, np_ = cell_signal_noise_power(x)
    assert sp.dtype == dtype and np_.dtype == dtype
    assert bool((np_ == 0).all())
    torch.testing.assert_close(sp, base[:, 0].var(dim=-1))
    rho = cell_split_half_rho(x)
    assert rho.dtype == dtype
    torch.testing.assert_close(spearman_brown_ccmax(rho), torch.ones(4, dtype=dtype))


def test_signal_noise_closed_form_small():
    x = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 2.0, 7.0]]], dtype=torch.float64)
    a = x[0].numpy()
    psth = a.mean(0)
    tp = a.var(axis=1, ddof=1).mean()
    sp_ref = (2 * psth.var(ddof=1) - tp) / 1
    sp, np_ = cell_signal_noise_power(x)
    assert sp.item() == pytest.approx(sp_ref)
    assert np_.item() == pytest.approx(tp - sp_ref)


def test_poisson_repeats_recover_rate_statistics():
    gen = torch.Generator().manual_seed(0)
    T, R = 400, 300
    t = torch.arange(T, dtype=torch.float64)
    lam = 5.0 + 4.0 * torch.sin(2 * math.pi * t / 50.0)
    x = torch.poisson(lam.expand(R, T).contiguous(), generator=gen)[None]
    sp, np_ = cell_signal_noise_power(x)
    assert sp.item() == pytest.approx(lam.var().item(), rel=0.05)
    assert np_.item() == pytest.approx(lam.mean().item(), rel=0.05)


def test_noise_power_never_negative():
    torch.manual_seed(2)
    x = torch.randn(200, 3, 5)
    _, np_ = cell_signal_noise_power(x)
    assert bool((np_ >= 0).all())


# ---------------------------------------------------------------------------
# split-half correlation
# ---------------------------------------------------------------------------


def test_R2_ccmax_is_spearman_brown_of_single_split():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 50))
    a[1] += a[0]
    r = np.corrcoef(a[0], a[1])[0, 1]
    rho = cell_split_half_rho(torch.from_numpy(a)[None])
    assert rho.item() == pytest.approx(r)
    cc = spearman_brown_ccmax(rho)
    assert cc.item() == pytest.approx(np.sqrt(2 * r / (1 + r)))


def test_R4_equals_mean_of_three_splits():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 30))
    splits = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    expected = np.mean([np.corrcoef(a[list(p)].mean(0), a[list(q)].mean(0))[0, 1] for p, q in splits])
    assert cell_split_half_rho(torch.from_numpy(a)[None]).item() == pytest.approx(expected)


def test_silent_half_split_is_skipped():
    rng = np.random.default_rng(2)
    a = np.zeros((4, 25))
    a[2:] = rng.poisson(2.0, size=(2, 25))
    # split {0,1}|{2,3} has a constant half (all zero) and is skipped
    expected = np.mean([np.corrcoef(a[[0, 2]].mean(0), a[[1, 3]].mean(0))[0, 1],
                        np.corrcoef(a[[0, 3]].mean(0), a[[1, 2]].mean(0))[0, 1]])
    assert cell_split_half_rho(torch.from_numpy(a)[None]).item() == pytest.approx(expected)


def test_all_splits_undefined_gives_nan():
    x = torch.zeros(2, 2, 10)
    x[1, 1] = torch.arange(10.0)  # one silent repeat in each split
    assert bool(torch.isnan(cell_split_half_rho(x)).all())


def test_constant_half_average_from_anticorrelated_repeats_is_skipped():
    # repeats 0 and 1 sum to a constant: their average is flat although the
    # Gram entries are not zero; rounding must not turn it into a value.
    rng = np.random.default_rng(3)
    f = rng.normal(size=33)
    a = np.stack([f, 2.5 - f, rng.normal(size=33), rng.normal(size=33)])
    masks = split_half_masks(4).numpy()
    expected = _naive_rho(a, masks)
    got = cell_split_half_rho(torch.from_numpy(a)[None]).item()
    assert got == pytest.approx(expected)
    got32 = cell_split_half_rho(torch.from_numpy(a).float()[None]).item()
    assert got32 == pytest.approx(expected, abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(2, 9),
    st.integers(2, 9),
    st.integers(1, 40),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_gram_rho_matches_naive_loop(M, R, T, max_iters, spikes, seed):
    rng = np.random.default_rng(seed)
    if spikes:
        a = rng.integers(0, 3, size=(M, R, T)).astype(np.float64)
    else:
        a = rng.integers(-8, 9, size=(M, R, T)) / 4.0
    masks = split_half_masks(R, max_iters=max_iters, seed=seed).numpy()
    expected = np.array([_naive_rho(cell, masks) for cell in a])
    got = cell_split_half_rho(torch.from_numpy(a), max_iters=max_iters, seed=seed).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_max_iters_and_seed_reach_the_sampler():
    torch.manual_seed(4)
    x = torch.randn(3, 14, 25, dtype=torch.float64) + torch.randn(3, 1, 25, dtype=torch.float64)
    a = cell_split_half_rho(x, max_iters=20, seed=0)
    masks = split_half_masks(14, max_iters=20, seed=0).numpy()
    np.testing.assert_allclose(a.numpy(), [_naive_rho(c, masks) for c in x.numpy()], rtol=1e-10)
    assert not torch.equal(a, cell_split_half_rho(x, max_iters=20, seed=1))
    full = cell_split_half_rho(x, max_iters=2000)  # all 1716 splits
    masks = split_half_masks(14, max_iters=2000).numpy()
    assert masks.shape[0] == math.comb(14, 7) // 2
    np.testing.assert_allclose(full.numpy(), [_naive_rho(c, masks) for c in x.numpy()], rtol=1e-10)


@pytest.mark.parametrize("bad, exc", [
    (torch.zeros(3, 1, 5), ValueError),
    (torch.zeros(3, 2, 1), ValueError),
    (torch.zeros(2, 5), ValueError),
    (torch.zeros(2, 2, 5, dtype=torch.int64), TypeError),
    (np.zeros((2, 2, 5)), TypeError),
])
def test_kernel_argument_errors(bad, exc):
    for f in (cell_signal_noise_power, cell_split_half_rho, cell_trial_to_trial_rho):
        with pytest.raises(exc):
            f(bad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernels_follow_input_device_and_dtype(device, dtype):
    x = torch.randn(6, 5, 12, dtype=dtype, device=device)
    for out in (*cell_signal_noise_power(x), cell_split_half_rho(x), cell_trial_to_trial_rho(x)):
        assert out.device == x.device and out.dtype == dtype and out.shape == (6,)


def test_kernels_ignore_autograd():
    x = torch.randn(2, 4, 10, requires_grad=True)
    assert not cell_split_half_rho(x).requires_grad
    assert not cell_signal_noise_power(x)[0].requires_grad


def test_kernel_speed_300x10x200():
    torch.manual_seed(0)
    x = torch.poisson(torch.rand(300, 1, 200).expand(300, 10, 200) * 3)
    cell_signal_noise_power(x), cell_split_half_rho(x)  # warm-up
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        cell_signal_noise_power(x)
        cell_split_half_rho(x)
        best = min(best, time.perf_counter() - t0)
    # ~6 ms on 2 idle CPU cores; the bound only catches a per-cell or
    # per-split Python loop (the reference needs ~1.7 s for these 300 cells)
    # and leaves room for a machine shared with other jobs.
    assert best < 1.0


# ---------------------------------------------------------------------------
# trial-to-trial correlation, Spearman–Brown, weighting, padded cells
# ---------------------------------------------------------------------------


def test_trial_to_trial_rho_is_mean_pairwise_pearson():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(3, 40)) + rng.normal(size=40)
    expected = np.mean([np.corrcoef(a[i], a[j])[0, 1] for i, j in [(0, 1), (0, 2), (1, 2)]])
    assert cell_trial_to_trial_rho(torch.from_numpy(a)[None]).item() == pytest.approx(expected)


def test_spearman_brown_values():
    rho = torch.tensor([1.0, 0.5, 0.0, -0.3, float("nan")], dtype=torch.float64)
    cc = spearman_brown_ccmax(rho)
    assert cc[0].item() == pytest.approx(1.0)
    assert cc[1].item() == pytest.approx(math.sqrt(2 * 0.5 / 1.5))
    assert bool(torch.isnan(cc[2:]).all())
    # equivalent form sqrt(2 / (1 + sqrt(1/rho^2)))
    assert cc[1].item() == pytest.approx(math.sqrt(2 / (1 + math.sqrt(1 / 0.25))))


def test_length_weighted_mean():
    v = torch.tensor([[1.0, float("nan"), 5.0], [3.0, 2.0, float("nan")]])
    w = torch.tensor([[10, 0, 0], [30, 4, 0]])
    out = length_weighted_mean(v, w)
    torch.testing.assert_close(out[:2], torch.tensor([(10 + 90) / 40, 2.0]))
    assert torch.isnan(out[2])
    # a NaN value with a positive weight propagates
    assert torch.isnan(length_weighted_mean(torch.tensor([[float("nan")], [1.0]]), torch.tensor([[3], [3]])))[0]


def test_padded_cell_stats_match_compacted_kernels():
    torch.manual_seed(6)
    x = torch.full((3, 5, 30), float("nan"), dtype=torch.float64)
    cells = [torch.randn(5, 30, dtype=torch.float64), torch.randn(3, 17, dtype=torch.float64),
             torch.randn(4, 9, dtype=torch.float64)]
    x[0] = cells[0]
    x[1, :3, :17] = cells[1]  # top-left padded
    x[2, [0, 2, 3, 4], 5:14] = cells[2]  # scattered rows, shifted bins
    stats = padded_cell_stats(x, split_half=True, trial_to_trial=True, max_iters=126)
    assert stats["n_repeats"].tolist() == [5, 3, 4]
    assert stats["n_bins"].tolist() == [30, 17, 9]
    for i, c in enumerate(cells):
        sp, np_ = cell_signal_noise_power(c[None])
        assert stats["sp"][i].item() == pytest.approx(sp.item())
        assert stats["np"][i].item() == pytest.approx(np_.item())
        assert stats["rho_half"][i].item() == pytest.approx(cell_split_half_rho(c[None]).item())
        assert stats["ttrc"][i].item() == pytest.approx(cell_trial_to_trial_rho(c[None]).item())


def test_padded_cell_stats_holes_and_small_cells_do_not_qualify():
    x = torch.full((4, 3, 6), float("nan"))
    x[0] = torch.randn(3, 6)
    x[0, 1, 2] = float("nan")  # hole inside the 3x6 block
    x[1, :1] = torch.randn(1, 6)  # single repeat
    x[2, :, :1] = torch.randn(3, 1)  # single bin
    stats = padded_cell_stats(x)
    assert stats["qualifies"].tolist() == [False, False, False, False]
    assert stats["complete"].tolist() == [False, True, True, True]
    assert bool(torch.isnan(stats["sp"]).all())
    with pytest.raises(TypeError):
        padded_cell_stats(x, valid=torch.ones(4, 3, 6))
    with pytest.raises(ValueError):
        padded_cell_stats(x, valid=torch.ones(4, 3, 5, dtype=torch.bool))
