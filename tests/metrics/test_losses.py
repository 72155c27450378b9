"""Masked losses: values, NaN handling and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepSTRF.metrics import mse_loss, poisson_loss

NAN = float("nan")


@pytest.fixture
def data():
    torch.manual_seed(0)
    gt = torch.poisson(torch.full((3, 4, 2, 10), 2.0))
    gt[0, 1, :, 5:] = NAN  # padded bins
    gt[1, 2, 1] = NAN  # one repeat missing: PSTH from the other
    gt[:, 3] = NAN  # neuron without data
    pred = torch.rand(3, 4, 1, 10) * 3 + 0.1
    return pred, gt


def _reference(pred, gt, elem):
    """Per-neuron mean over valid positions of the PSTH-collapsed target."""
    g = torch.nanmean(gt, dim=2, keepdim=True)
    out = []
    for n in range(gt.shape[1]):
        p, t = pred[:, n].flatten().numpy(), g[:, n].flatten().numpy()
        ok = ~np.isnan(t)
        out.append(elem(p[ok], t[ok]).mean() if ok.any() else NAN)
    return np.array(out)


def test_mse_matches_masked_mean(data):
    pred, gt = data
    expected = _reference(pred, gt, lambda p, t: (p - t) ** 2)
    got = mse_loss(pred, gt, reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert mse_loss(pred, gt).item() == pytest.approx(np.nanmean(expected), rel=1e-6)
    assert mse_loss(pred, gt, reduction="sum").item() == pytest.approx(np.nansum(expected), rel=1e-6)


def test_poisson_matches_formula(data):
    pred, gt = data
    eps = 1e-8
    expected = _reference(pred, gt, lambda p, t: p - t * np.log(np.maximum(p, eps) + eps))
    np.testing.assert_allclose(poisson_loss(pred, gt, reduction="none").numpy(), expected, rtol=1e-6)
    log_pred = torch.log(pred)
    expected = _reference(log_pred, gt, lambda p, t: np.exp(p) - t * p)
    np.testing.assert_allclose(poisson_loss(log_pred, gt, reduction="none", log_input=True).numpy(),
                               expected, rtol=1e-6)


def test_poisson_minimised_at_the_rate():
    gt = torch.poisson(torch.full((1, 1, 400, 50), 3.0, dtype=torch.float64))
    rates = torch.linspace(1.0, 5.0, 81, dtype=torch.float64)
    losses = [poisson_loss(torch.full((1, 1, 1, 50), r.item(), dtype=torch.float64), gt).item() for r in rates]
    best = rates[int(np.argmin(losses))].item()
    assert best == pytest.approx(gt.mean().item(), abs=0.05)


@pytest.mark.parametrize("loss", [mse_loss, poisson_loss])
def test_gradients_finite_and_zero_at_invalid_positions(loss, data):
    pred, gt = data
    pred = pred.clone()
    pred[0, 1, 0, 7] = NAN  # garbage in the padding must not leak
    pred.requires_grad_(True)
    out = loss(pred, gt)
    assert torch.isfinite(out)
    out.backward()
    assert torch.isfinite(pred.grad).all()
    invalid = torch.isnan(torch.nanmean(gt, dim=2, keepdim=True))
    assert (pred.grad[invalid] == 0).all()
    assert (pred.grad[~invalid] != 0).any()


def test_log_input_gradient_zero_at_invalid(data):
    pred, gt = data
    p = torch.log(pred).requires_grad_(True)
    poisson_loss(p, gt, log_input=True, reduction="sum").backward()
    invalid = torch.isnan(torch.nanmean(gt, dim=2, keepdim=True))
    assert torch.isfinite(p.grad).all() and (p.grad[invalid] == 0).all()


def test_neuron_without_data_is_nan_and_skipped(data):
    pred, gt = data
    per = mse_loss(pred, gt, reduction="none")
    assert torch.isnan(per[3]) and torch.isfinite(per[:3]).all()
    assert mse_loss(pred, gt).item() == pytest.approx(per[:3].mean().item())


def test_user_mask_replaces_nan_mask(data):
    pred, gt = data
    gt = torch.nan_to_num(gt, nan=0.0)
    mask = torch.zeros(3, 4, 1, 10, dtype=torch.bool)
    mask[..., :4] = True
    expected = mse_loss(pred[..., :4], gt[..., :4], reduction="none")
    torch.testing.assert_close(mse_loss(pred, gt, mask=mask, reduction="none"), expected)
    with pytest.raises(TypeError):
        mse_loss(pred, gt, mask=mask.float())
    with pytest.raises(ValueError):
        mse_loss(pred, gt, mask=torch.ones(7, dtype=torch.bool))


def test_validate_input(data):
    pred, gt = data
    bad = pred.clone()
    bad[0, 0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        poisson_loss(bad, gt, validate_input=True)
    assert math.isfinite(poisson_loss(bad, gt).item())  # not validated by default
    bad = pred.clone()
    bad[0, 1, 0, 8] = -1.0  # an invalid (padded) position is not checked
    poisson_loss(bad, gt, validate_input=True)


@pytest.mark.parametrize("loss", [mse_loss, poisson_loss])
def test_argument_errors(loss, data):
    pred, gt = data
    with pytest.raises(ValueError, match="reduction"):
        loss(pred, gt, reduction="batchmean")
    with pytest.raises(ValueError):
        loss(pred[..., :5], gt)
    with pytest.raises(ValueError):
        loss(pred[0], gt[0])
    with pytest.raises(TypeError):
        loss(pred.numpy(), gt)


def test_poisson_eps_must_be_positive(data):
    pred, gt = data
    with pytest.raises(ValueError, match="eps"):
        poisson_loss(pred, gt, eps=0.0)
