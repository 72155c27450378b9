"""Closed-form ridge STRFs: design matrix, fit, prediction, unit conversion."""

from __future__ import annotations

import math

import pytest
import torch

from deepSTRF.datasets import AudioNeuralDataset
from deepSTRF.demo.ridge import (
    fit_ridge_strfs,
    lagged_design,
    predict_strfs,
    strf_correlation,
    unstandardize_strfs,
)


class LinearNeurons(AudioNeuralDataset):
    """Noiseless linear STRF neurons on random stims (tiny, in memory)."""

    def __init__(self, strfs: torch.Tensor, bias: torch.Tensor, n_stims: int = 12, seed: int = 0,
                 missing: list[tuple[int, int]] = (), repeats: int = 2) -> None:
        super().__init__("<test>", 5.0)
        gen = torch.Generator().manual_seed(seed)
        N, F, L = strfs.shape
        self.F = F
        self.audio_fs = None
        for s in range(n_stims):
            T = 60 + 7 * s
            stim = 2.0 + 0.5 * torch.randn(F, T, generator=gen, dtype=torch.float64)
            X = lagged_design(stim, L)
            rates = X @ strfs.reshape(N, -1).T + bias  # (T, N)
            row = []
            for n in range(N):
                if (s, n) in missing:
                    row.append(torch.full((1, 1), math.nan))
                else:
                    row.append(rates[:, n].float().expand(repeats, T).clone())
            self.stims.append(stim.unsqueeze(0).float())
            self.responses.append(row)
            self.stim_meta.append({"name": f"s{s}", "split": "train" if s < n_stims - 3 else "val"})
        self.nrn_meta = [{"id": f"n{n}"} for n in range(N)]
        self.N_neurons = N
        self.validate()


def _splits(ds):
    train = [s for s, m in enumerate(ds.stim_meta) if m["split"] == "train"]
    val = [s for s, m in enumerate(ds.stim_meta) if m["split"] == "val"]
    return train, val


def test_lagged_design_puts_lag_l_of_band_f_in_column_f_times_L_plus_l():
    stim = torch.arange(2 * 5, dtype=torch.float64).reshape(2, 5)
    X = lagged_design(stim, 3)
    assert X.shape == (5, 6)
    for t in range(5):
        for f in range(2):
            for lag in range(3):
                expected = stim[f, t - lag] if t - lag >= 0 else 0.0
                assert X[t, f * 3 + lag] == expected
    torch.testing.assert_close(lagged_design(stim.unsqueeze(0), 3), X)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_lagged_design_rejects_bad_lags(bad):
    with pytest.raises(ValueError):
        lagged_design(torch.zeros(2, 5), bad)


def test_lagged_design_rejects_bad_stims():
    with pytest.raises(ValueError):
        lagged_design(torch.zeros(5), 2)
    with pytest.raises(TypeError):
        lagged_design([[0.0, 1.0]], 2)


def test_predict_matches_the_design_matrix():
    gen = torch.Generator().manual_seed(1)
    stims = torch.randn(3, 1, 4, 20, generator=gen)
    w = torch.randn(5, 4, 6, generator=gen)
    b = torch.randn(5, generator=gen)
    pred = predict_strfs(stims, w, b)
    assert pred.shape == (3, 5, 1, 20)
    for i in range(3):
        expected = lagged_design(stims[i, 0], 6) @ w.reshape(5, -1).T + b
        torch.testing.assert_close(pred[i, :, 0].T, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        predict_strfs(stims, torch.randn(5, 3, 6), b)


def test_fit_recovers_noiseless_linear_strfs_and_bias():
    gen = torch.Generator().manual_seed(0)
    strfs = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    bias = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    ds = LinearNeurons(strfs, bias)
    train, val = _splits(ds)
    fit = fit_ridge_strfs(ds, train, val, n_lags=5, lambdas=(1e-8, 1e-2, 1.0))
    assert fit.weights.shape == (3, 4, 5) and fit.bias.shape == (3,)
    torch.testing.assert_close(fit.weights.double(), strfs, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(fit.bias.double(), bias, rtol=1e-3, atol=1e-3)
    assert torch.all(fit.lambdas == 1e-8)
    assert torch.all(fit.val_cc > 0.999)
    assert fit.val_cc_grid.shape == (3, 3)


def test_fit_uses_only_the_recorded_pairs():
    gen = torch.Generator().manual_seed(2)
    strfs = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    bias = torch.zeros(2, dtype=torch.float64)
    # neuron 1 was never recorded on a training stim: its weights are NaN, neuron 0 is unaffected
    missing = [(s, 1) for s in range(9)] + [(0, 0), (3, 0)]
    ds = LinearNeurons(strfs, bias, missing=missing)
    train, val = _splits(ds)
    fit = fit_ridge_strfs(ds, train, val, n_lags=4, lambdas=(1e-8,))
    torch.testing.assert_close(fit.weights[0].double(), strfs[0], rtol=1e-3, atol=1e-3)
    assert torch.isnan(fit.weights[1]).all()


def test_fit_skips_nan_bins_inside_real_responses():
    gen = torch.Generator().manual_seed(5)
    strfs = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    bias = torch.tensor([1.0, -0.5], dtype=torch.float64)
    ds = LinearNeurons(strfs, bias)
    ds.responses[0][1][:, 10:20] = math.nan  # a rejected stretch in every repeat: those bins have no PSTH
    ds.responses[1][0][0, :] = math.nan  # one rejected repeat: the PSTH uses the other
    train, val = _splits(ds)
    fit = fit_ridge_strfs(ds, train, val, n_lags=4, lambdas=(1e-8,))
    torch.testing.assert_close(fit.weights.double(), strfs, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(fit.bias.double(), bias, rtol=1e-3, atol=1e-3)


def test_global_penalty_choice_and_no_validation_stims():
    gen = torch.Generator().manual_seed(3)
    ds = LinearNeurons(torch.randn(2, 3, 4, generator=gen, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    train, val = _splits(ds)
    fit = fit_ridge_strfs(ds, train, val, n_lags=4, lambdas=(1e-8, 10.0), per_neuron=False)
    assert torch.all(fit.lambdas == fit.lambdas[0])
    no_val = fit_ridge_strfs(ds, train, [], n_lags=4, lambdas=(1e-8, 1e-4, 10.0))
    assert torch.isnan(no_val.val_cc).all()
    assert torch.all(no_val.lambdas == 1e-4)  # middle of the grid


def test_fit_rejects_bad_arguments():
    ds = LinearNeurons(torch.ones(1, 2, 3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), n_stims=4)
    with pytest.raises(ValueError):
        fit_ridge_strfs(ds, [], [0], n_lags=3)
    with pytest.raises(ValueError):
        fit_ridge_strfs(ds, [0, 1], [2], n_lags=3, lambdas=(0.0,))
    with pytest.raises(ValueError):
        fit_ridge_strfs(ds, [0, 1], [2], n_lags=3, lambdas=())


def test_unstandardize_gives_the_same_predictions_on_raw_stims():
    gen = torch.Generator().manual_seed(4)
    raw = torch.randn(2, 1, 3, 30, generator=gen, dtype=torch.float64) * 3 + 1
    mean = raw.mean(dim=(0, 3), keepdim=True)[0]
    std = raw.std(dim=(0, 3), keepdim=True)[0]
    w = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(4, generator=gen, dtype=torch.float64)
    on_standardised = predict_strfs((raw - mean) / std, w, b)
    w_raw, b_raw = unstandardize_strfs(w, b, {"mean": mean, "std": std})
    # the mean is only subtracted where the stim exists: compare after the first n_lags - 1 bins
    torch.testing.assert_close(predict_strfs(raw, w_raw, b_raw)[..., 4:], on_standardised[..., 4:])
    w_s, _ = unstandardize_strfs(w, b, {"mean": torch.tensor(1.0), "std": torch.tensor(2.0)})
    torch.testing.assert_close(w_s, w / 2)


def test_strf_correlation():
    a = torch.randn(3, 4, 5)
    r = strf_correlation(a, 2 * a + 1)
    torch.testing.assert_close(r, torch.ones(3))
    torch.testing.assert_close(strf_correlation(a, -a), -torch.ones(3))
    flat = strf_correlation(a, torch.zeros(3, 4, 5))
    assert torch.isnan(flat).all()
    with pytest.raises(ValueError):
        strf_correlation(a, torch.zeros(3, 4, 4))
