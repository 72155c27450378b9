"""Evaluation metrics on (B, N, R, T) batches: closed forms and conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal as sps

from deepSTRF.metrics import (
    cell_signal_noise_power,
    cell_split_half_rho,
    coherence,
    compute_CCmax,
    compute_TTRC,
    corrcoef,
    fve,
    noise_power,
    normalized_corrcoef,
    signal_power,
    snr,
    spearman_brown_ccmax,
)

NAN = float("nan")


def _collate(cells: list[list[np.ndarray | None]]) -> torch.Tensor:
    """Top-left pad ``cells[b][n]`` ((R, T) arrays or None) like neural_collate."""
    arrays = [c for row in cells for c in row if c is not None]
    R = max(a.shape[0] for a in arrays)
    T = max(a.shape[1] for a in arrays)
    out = torch.full((len(cells), len(cells[0]), R, T), NAN, dtype=torch.float64)
    for b, row in enumerate(cells):
        for n, c in enumerate(row):
            if c is not None:
                out[b, n, : c.shape[0], : c.shape[1]] = torch.from_numpy(c)
    return out


@pytest.fixture
def batch():
    """3 stims × 4 neurons, ragged T and R, one missing pair, one R=1 neuron."""
    rng = np.random.default_rng(0)
    Ts = [40, 25, 33]
    Rs = [5, 4, 3, 1]
    rates = [[rng.gamma(2.0, 1.5, size=T) for _ in Rs] for T in Ts]
    cells = [
        [rng.poisson(rates[b][n], size=(Rs[n], Ts[b])).astype(float) for n in range(4)]
        for b in range(3)
    ]
    cells[1][2] = None  # never recorded
    resp = _collate(cells)
    pred = torch.full((3, 4, 1, resp.shape[-1]), 0.0, dtype=torch.float64)
    for b in range(3):
        for n in range(4):
            pred[b, n, 0, : Ts[b]] = torch.from_numpy(rates[b][n] + rng.normal(0, 0.5, Ts[b]))
    return pred, resp, cells


def _valid_pairs(pred, gt_psth, n):
    p = pred[:, n, 0].numpy().ravel()
    g = gt_psth[:, n, 0].numpy().ravel()
    ok = ~np.isnan(g)
    return p[ok], g[ok]


# ---------------------------------------------------------------------------
# corrcoef / fve
# ---------------------------------------------------------------------------


def test_corrcoef_matches_numpy_on_valid_positions(batch):
    pred, resp, _ = batch
    psth = torch.nanmean(resp, dim=2, keepdim=True)
    got = corrcoef(pred, resp, reduction="none")
    assert got.shape == (4,)
    for n in range(4):
        p, g = _valid_pairs(pred, psth, n)
        assert got[n].item() == pytest.approx(np.corrcoef(p, g)[0, 1], rel=1e-10)
    assert corrcoef(pred, resp).item() == pytest.approx(got.mean().item())
    assert corrcoef(pred, resp, reduction="sum").item() == pytest.approx(got.sum().item())


def test_fve_matches_closed_form(batch):
    pred, resp, _ = batch
    psth = torch.nanmean(resp, dim=2, keepdim=True)
    got = fve(pred, resp, reduction="none")
    for n in range(4):
        p, g = _valid_pairs(pred, psth, n)
        expected = 1 - ((p - g) ** 2).sum() / ((g - g.mean()) ** 2).sum()
        assert got[n].item() == pytest.approx(expected, rel=1e-10)
    # perfect prediction -> 1, constant-mean prediction -> 0, worse -> negative
    assert fve(psth, resp, reduction="none").tolist() == pytest.approx([1.0] * 4)
    flat = torch.nan_to_num(psth, nan=0.0)
    mean_pred = torch.stack([torch.full_like(flat[:, n], torch.nanmean(psth[:, n]).item()) for n in range(4)], 1)
    assert fve(mean_pred, resp, reduction="none").tolist() == pytest.approx([0.0] * 4, abs=1e-12)
    assert fve(-psth.nan_to_num(0.0), resp).item() < 0


def test_neuron_without_data_is_nan_and_skipped():
    gt = torch.randn(2, 3, 1, 10)
    gt[:, 1] = NAN
    pred = torch.randn(2, 3, 1, 10)
    per = corrcoef(pred, gt, reduction="none")
    assert torch.isnan(per[1]) and not torch.isnan(per[[0, 2]]).any()
    assert corrcoef(pred, gt).item() == pytest.approx(per[[0, 2]].mean().item())
    assert corrcoef(pred, gt, reduction="sum").item() == pytest.approx(per[[0, 2]].sum().item())
    assert torch.isnan(fve(pred, gt, reduction="none")[1])


def test_constant_or_too_short_gives_nan():
    gt = torch.randn(1, 2, 1, 5)
    gt[0, 0] = 3.0  # constant target
    gt[0, 1, 0, 1:] = NAN  # a single valid position
    pred = torch.randn(1, 2, 1, 5)
    assert torch.isnan(corrcoef(pred, gt, reduction="none")).all()
    assert torch.isnan(fve(pred, gt, reduction="none")).all()


def test_user_mask_replaces_nan_mask():
    torch.manual_seed(0)
    gt = torch.randn(2, 2, 1, 20)
    pred = gt + 0.5 * torch.randn_like(gt)
    mask = torch.zeros_like(gt, dtype=torch.bool)
    mask[:, :, :, :12] = True
    expected = corrcoef(pred[..., :12], gt[..., :12], reduction="none")
    torch.testing.assert_close(corrcoef(pred, gt, mask=mask, reduction="none"), expected)
    # broadcast: one (T,) mask for everyone
    torch.testing.assert_close(corrcoef(pred, gt, mask=mask[0, 0, 0], reduction="none"), expected)
    # replaced, not AND-ed: a NaN at a position the mask marks valid propagates
    gt[0, 0, 0, 0] = NAN
    assert torch.isnan(corrcoef(pred, gt, mask=mask, reduction="none")[0])


@pytest.mark.parametrize("fn", [corrcoef, fve])
def test_prediction_metric_argument_errors(fn):
    pred, gt = torch.randn(2, 3, 1, 8), torch.randn(2, 3, 4, 8)
    with pytest.raises(TypeError):
        fn(pred, gt, mask=torch.ones(2, 3, 1, 8))  # not bool
    with pytest.raises(TypeError):
        fn(pred, gt, mask=np.ones((2, 3, 1, 8), dtype=bool))
    with pytest.raises(ValueError):
        fn(pred, gt, mask=torch.ones(5, dtype=torch.bool))  # not broadcastable
    with pytest.raises(ValueError, match="reduction"):
        fn(pred, gt, reduction="avg")
    with pytest.raises(ValueError):
        fn(pred[0], gt[0])  # 3-D
    with pytest.raises(ValueError):
        fn(pred[..., :7], gt)  # T mismatch
    with pytest.raises(TypeError):
        fn(pred.numpy(), gt)
    with pytest.raises(TypeError):
        fn(pred, gt.long())


def test_metrics_do_not_track_gradients():
    pred = torch.randn(2, 3, 1, 8, requires_grad=True)
    gt = torch.randn(2, 3, 2, 8)
    for out in (corrcoef(pred, gt), fve(pred, gt), normalized_corrcoef(pred, gt),
                normalized_corrcoef(pred, gt, "hsu")):
        assert not out.requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_input(dtype, batch):
    pred, resp, _ = batch
    pred, resp = pred.to(dtype), resp.to(dtype)
    for out in (corrcoef(pred, resp, reduction="none"), fve(pred, resp, reduction="none"),
                snr(resp, reduction="none"), normalized_corrcoef(pred, resp, "hsu", reduction="none"),
                compute_CCmax(resp[:, 0])):
        assert out.dtype == dtype and out.device == pred.device


# ---------------------------------------------------------------------------
# signal / noise power, SNR
# ---------------------------------------------------------------------------


def test_power_is_length_weighted_over_valid_cells(batch):
    _, resp, cells = batch
    sp = signal_power(resp, reduction="none")
    np_ = noise_power(resp, reduction="none")
    for n in range(4):
        contributing = [c for c in (cells[b][n] for b in range(3)) if c is not None and c.shape[0] >= 2]
        if not contributing:
            assert torch.isnan(sp[n]) and torch.isnan(np_[n])
            continue
        w = np.array([c.shape[1] for c in contributing], dtype=float)
        sps_, nps_ = zip(*[(s.item(), q.item()) for s, q in
                           (cell_signal_noise_power(torch.from_numpy(c)[None]) for c in contributing)])
        assert sp[n].item() == pytest.approx((w * sps_).sum() / w.sum(), rel=1e-10)
        assert np_[n].item() == pytest.approx((w * nps_).sum() / w.sum(), rel=1e-10)
    # SNR is the ratio of the weighted powers, not a mean of ratios
    torch.testing.assert_close(snr(resp, reduction="none"), sp / np_, equal_nan=True)
    assert torch.isnan(sp[3])  # R = 1 neuron


def test_snr_noiseless_is_inf_and_flat_is_nan():
    x = torch.randn(2, 1, 1, 30).expand(2, 1, 4, 30).clone()
    flat = torch.full((2, 1, 4, 30), 2.0)
    resp = torch.cat([x, flat], dim=1)
    out = snr(resp, reduction="none")
    assert out[0].item() == math.inf
    assert torch.isnan(out[1])
    assert noise_power(resp, reduction="none")[0].item() == 0.0


def test_power_user_mask_selects_repeats_and_bins():
    torch.manual_seed(1)
    resp = torch.randn(1, 2, 6, 40) + torch.randn(1, 2, 1, 40)
    mask = torch.zeros_like(resp, dtype=torch.bool)
    mask[:, :, :4, 10:30] = True
    expected = signal_power(resp[:, :, :4, 10:30].clone(), reduction="none")
    torch.testing.assert_close(signal_power(resp, mask=mask, reduction="none"), expected)


def test_power_argument_errors():
    with pytest.raises(ValueError):
        signal_power(torch.randn(3, 4, 5))
    with pytest.raises(ValueError):
        snr(torch.randn(1, 2, 3, 4), reduction="median")
    with pytest.raises(TypeError):
        noise_power(torch.randn(1, 2, 3, 4), mask=torch.ones(1, 2, 3, 4, dtype=torch.uint8))


# ---------------------------------------------------------------------------
# normalized correlation
# ---------------------------------------------------------------------------


def test_invalid_method_always_raises():
    pred, gt = torch.randn(2, 3, 1, 8), torch.randn(2, 3, 1, 8)
    with pytest.raises(ValueError, match="method"):
        normalized_corrcoef(pred, gt, method="pearson")  # single trial too
    with pytest.raises(ValueError, match="method"):
        normalized_corrcoef(pred, torch.randn(2, 3, 4, 8), method="Hsu")


def test_single_trial_is_plain_corrcoef():
    torch.manual_seed(2)
    pred, gt = torch.randn(2, 3, 1, 8), torch.randn(2, 3, 1, 8)
    for method in ("schoppe", "hsu"):
        torch.testing.assert_close(normalized_corrcoef(pred, gt, method, reduction="none"),
                                   corrcoef(pred, gt, reduction="none"))


def test_schoppe_closed_form(batch):
    pred, resp, _ = batch
    psth = torch.nanmean(resp, dim=2, keepdim=True)
    sp = signal_power(resp, reduction="none")
    got = normalized_corrcoef(pred, resp, "schoppe", reduction="none")
    for n in range(3):
        p, g = _valid_pairs(pred, psth, n)
        cov = np.cov(p, g)[0, 1]
        expected = cov / np.sqrt(p.var(ddof=1) * sp[n].item())
        assert got[n].item() == pytest.approx(expected, rel=1e-10)
    assert torch.isnan(got[3])  # no signal power for the R = 1 neuron


def test_schoppe_noiseless_prediction_of_the_signal_is_one():
    torch.manual_seed(3)
    sig = torch.randn(1, 2, 1, 50, dtype=torch.float64)
    resp = sig.expand(1, 2, 6, 50).clone()
    out = normalized_corrcoef(sig, resp, "schoppe", reduction="none")
    torch.testing.assert_close(out, torch.ones(2, dtype=torch.float64))


def test_hsu_is_cc_over_length_weighted_ccmax(batch):
    pred, resp, cells = batch
    cc = corrcoef(pred, resp, reduction="none")
    got = normalized_corrcoef(pred, resp, "hsu", reduction="none")
    for n in range(3):
        vals, ws = [], []
        for b in range(3):
            c = cells[b][n]
            if c is None:
                continue
            ccmax = spearman_brown_ccmax(cell_split_half_rho(torch.from_numpy(c)[None])).item()
            if not math.isnan(ccmax):
                vals.append(ccmax)
                ws.append(c.shape[1])
        ccmax_n = np.dot(vals, ws) / np.sum(ws)
        assert got[n].item() == pytest.approx(cc[n].item() / ccmax_n, rel=1e-10)
    # R = 1 neuron: CCmax falls back to 1.0, so CC_norm == CC_raw
    assert got[3].item() == pytest.approx(cc[3].item())


def test_hsu_nan_split_does_not_poison_neuron():
    rng = np.random.default_rng(4)
    good = rng.poisson(3.0, size=(4, 30)).astype(float) + rng.normal(size=30) * 2
    silent = np.zeros((4, 30))
    resp = _collate([[good], [silent]])
    pred = torch.from_numpy(np.stack([good.mean(0), np.zeros(30)]))[:, None, None] + 0.1
    out = normalized_corrcoef(pred, resp, "hsu", reduction="none")
    assert torch.isfinite(out).all()


def test_normalized_corrcoef_argument_errors():
    pred, resp = torch.randn(2, 3, 1, 8), torch.randn(2, 3, 4, 8)
    with pytest.raises(ValueError):
        normalized_corrcoef(torch.randn(2, 3, 2, 8), resp)
    with pytest.raises(ValueError):
        normalized_corrcoef(pred, torch.randn(2, 4, 4, 8))
    with pytest.raises(ValueError):
        normalized_corrcoef(pred, resp, reduction="all")
    with pytest.raises(ValueError):
        normalized_corrcoef(pred, resp, "hsu", ccmax_iters=0)


# ---------------------------------------------------------------------------
# compute_CCmax / compute_TTRC
# ---------------------------------------------------------------------------


def test_compute_ccmax_closed_forms_and_edges():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(2, 40))
    a[1] += a[0]
    r = np.corrcoef(a[0], a[1])[0, 1]
    x = torch.full((6, 5, 40), NAN, dtype=torch.float64)
    x[0, :2] = torch.from_numpy(a)  # R = 2, closed form
    x[1, :4] = torch.from_numpy(rng.normal(size=40))  # identical repeats
    x[2, :1] = torch.from_numpy(rng.normal(size=40))  # single repeat -> 1.0
    x[3, :3, :1] = 1.0  # T_v = 1 -> NaN
    # x[4] all missing -> NaN
    x[5, :2] = torch.from_numpy(np.stack([a[0], -a[0]]))  # rho < 0 -> NaN
    out = compute_CCmax(x)
    assert out[0].item() == pytest.approx(np.sqrt(2 * r / (1 + r)))
    assert out[1].item() == pytest.approx(1.0)
    assert out[2].item() == 1.0
    assert torch.isnan(out[3:]).all()


def test_compute_ccmax_odd_R_uses_first_valid_repeats():
    torch.manual_seed(6)
    x = torch.full((1, 5, 20), NAN, dtype=torch.float64)
    x[0, :3] = torch.randn(3, 20) + torch.randn(20)
    expected = spearman_brown_ccmax(cell_split_half_rho(x[:, :2].clone()))
    torch.testing.assert_close(compute_CCmax(x), expected)


def test_compute_ccmax_seed_and_iters():
    torch.manual_seed(7)
    x = torch.randn(2, 16, 30, dtype=torch.float64) + torch.randn(2, 1, 30, dtype=torch.float64)
    a = compute_CCmax(x, max_iters=30, seed=0)
    torch.testing.assert_close(a, compute_CCmax(x, max_iters=30, seed=0))
    assert not torch.equal(a, compute_CCmax(x, max_iters=30, seed=5))
    with pytest.raises(ValueError):
        compute_CCmax(x[0])


def test_compute_ttrc():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(3, 25)) + rng.normal(size=25)
    x = torch.full((3, 4, 25), NAN, dtype=torch.float64)
    x[0, :3] = torch.from_numpy(a)
    x[1, :1] = 1.0
    out = compute_TTRC(x)
    expected = np.mean([np.corrcoef(a[i], a[j])[0, 1] for i, j in [(0, 1), (0, 2), (1, 2)]])
    assert out[0].item() == pytest.approx(expected)
    assert out[1].item() == 1.0
    assert torch.isnan(out[2])


# ---------------------------------------------------------------------------
# coherence
# ---------------------------------------------------------------------------


def test_coherence_identical_is_one():
    torch.manual_seed(9)
    x = torch.randn(3, 2, 1, 120, dtype=torch.float64)
    out = coherence(x, x, dt_ms=5.0, reduction="none")
    torch.testing.assert_close(out, torch.ones(2, dtype=torch.float64))


def test_coherence_short_unrelated_signals_are_not_trivially_one():
    torch.manual_seed(10)
    a, b = torch.randn(4, 3, 1, 200), torch.randn(4, 3, 1, 200)
    out = coherence(a, b, dt_ms=10.0)
    assert out.item() < 0.6  # the reference's nperseg=256 gives exactly 1 here


def test_coherence_matches_scipy_with_explicit_nperseg():
    rng = np.random.default_rng(11)
    a = rng.normal(size=(2, 3, 1, 300))
    b = a + rng.normal(size=a.shape)
    _, c = sps.coherence(a[:, :, 0], b[:, :, 0], fs=200.0, nperseg=64, axis=-1)
    got = coherence(torch.from_numpy(a), torch.from_numpy(b), dt_ms=5.0, nperseg=64, reduction="none")
    np.testing.assert_allclose(got.numpy(), c.mean(axis=(0, 2)), rtol=1e-12)
    _, c = sps.coherence(a[:, :, 0], b[:, :, 0], fs=200.0, nperseg=75, axis=-1)
    got = coherence(torch.from_numpy(a), torch.from_numpy(b), dt_ms=5.0, reduction="none")  # T // 4
    np.testing.assert_allclose(got.numpy(), c.mean(axis=(0, 2)), rtol=1e-12)


def test_coherence_argument_errors():
    x = torch.randn(2, 3, 1, 64)
    with pytest.raises(ValueError, match="segment"):
        coherence(x, x, dt_ms=1.0, nperseg=64)  # a single segment
    with pytest.raises(ValueError):
        coherence(x, x, dt_ms=0.0)
    with pytest.raises(ValueError):
        coherence(x[..., :6], x[..., :6], dt_ms=1.0)  # too short for the default
    with pytest.raises(ValueError):
        coherence(torch.randn(2, 3, 2, 64), torch.randn(2, 3, 2, 64), dt_ms=1.0)
    y = x.clone()
    y[0, 0, 0, 3] = NAN
    with pytest.raises(ValueError, match="NaN"):
        coherence(x, y, dt_ms=1.0)
    with pytest.raises(ValueError):
        coherence(x, x, dt_ms=1.0, reduction="max")
