"""deepSTRF.utils.data: collate, smoothing helpers, import hygiene."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from deepSTRF.utils.data import (
    ResponseSmoothingTransform,
    concatenate_datasets,
    fill_missing_data,
    hanning_smooth,
    neural_collate,
)
from fixtures.ragged import RaggedDataset, sentinel, spec_example


def test_collate_shapes_padding_and_masks():
    ds = RaggedDataset([[2, 0, 3], [1, 4, 0], [0, 2, 2]], durations=[5, 8, 6], F=2)
    batch = neural_collate([ds[i] for i in range(3)])
    assert batch["stims"].shape == (3, 1, 2, 8)
    assert batch["responses"].shape == (3, 3, 4, 8)
    assert batch["valid_mask"].dtype == torch.bool
    torch.testing.assert_close(batch["stims"][0, :, :, :5], ds.stims[0])
    assert (batch["stims"][0, :, :, 5:] == 0).all()
    for b in range(3):
        for n in range(3):
            cell = ds.responses[b][n]
            block = batch["responses"][b, n]
            if ds.nrn_masks[b, n]:
                R, T = cell.shape
                torch.testing.assert_close(block[:R, :T], cell)
                assert torch.isnan(block[R:]).all() and torch.isnan(block[:, T:]).all()
                assert batch["valid_mask"][b, n].sum() == R * T
            else:
                assert torch.isnan(block).all() and not batch["valid_mask"][b, n].any()
    assert batch["stim_meta"] == ds.stim_meta


def test_collate_under_selection_and_extra_keys():
    ds = spec_example()
    ds.select_population([2, 0])
    items = [ds[i] for i in range(len(ds))]
    for i, item in enumerate(items):
        item["tag"] = i
    batch = neural_collate(items)
    assert batch["responses"].shape[1] == 2
    assert batch["tag"] == list(range(len(items)))


def test_collate_casts_to_stim_dtype_and_rejects_mismatch():
    item = {"stims": torch.zeros(1, 2, 4), "responses": [torch.ones(1, 4, dtype=torch.float64)],
            "valid_mask": torch.tensor([True]), "stim_meta": {}}
    out = neural_collate([item])
    assert out["responses"].dtype == torch.float32
    other = dict(item, stims=torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="all axes but the last"):
        neural_collate([item, other])
    with pytest.raises(ValueError, match="empty batch"):
        neural_collate([])


def test_collate_items_of_different_width_are_padded():
    a = {"stims": torch.zeros(1, 5), "responses": [torch.ones(1, 5)], "stim_meta": {}}
    b = {"stims": torch.zeros(1, 5), "responses": [torch.ones(2, 5), torch.ones(1, 5)], "stim_meta": {}}
    out = neural_collate([a, b])
    assert out["responses"].shape == (2, 2, 2, 5)
    assert torch.isnan(out["responses"][0, 1]).all()


def test_dataloader_epoch_visits_every_item_once():
    ds = RaggedDataset([[r % 4, (r + 1) % 3] for r in range(10)], durations=[5 + r for r in range(10)])
    loader = DataLoader(ds, batch_size=4, collate_fn=neural_collate, shuffle=False)
    names = [m["name"] for batch in loader for m in batch["stim_meta"]]
    assert names == [ds.stim_meta[s]["name"] for s in range(10) if ds.nrn_masks[s].any()]


def test_masked_loss_pattern_from_docs_has_finite_gradients():
    ds = RaggedDataset([[2, 0], [1, 3]])
    batch = neural_collate([ds[0], ds[1]])
    pred = torch.zeros(batch["responses"].shape[:2] + (1, batch["responses"].shape[-1]), requires_grad=True)
    target, mask = batch["responses"], batch["valid_mask"]
    err = (pred - torch.nan_to_num(target)) ** 2
    loss = (err * mask).sum() / mask.sum()
    loss.backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize(
    "window, dt, taps",
    [(21, 1, 21), (21, 5, 5), (12, 5, 3), (30, 5, 7), (4, 5, 1), (20, 5, 5), (19, 5, 3)],
)
def test_hanning_window_is_nearest_odd(window, dt, taps):
    impulse = torch.zeros(1, 61)
    impulse[0, 30] = 1.0
    out = hanning_smooth(impulse, window, dt)[0]
    support = (out.abs() > 0).nonzero().flatten()
    expected_nonzero = max(1, taps - 2)  # the two end taps of a Hann window are zero
    assert len(support) == expected_nonzero
    assert out.sum().item() == pytest.approx(1.0)
    if taps > 1:
        want = np.hanning(taps) / np.hanning(taps).sum()
        np.testing.assert_allclose(out[30 - taps // 2 : 30 + taps // 2 + 1].numpy(), want, rtol=1e-6, atol=1e-7)


def test_hanning_smooth_arguments_are_checked():
    with pytest.raises(ValueError, match="window_ms"):
        hanning_smooth(torch.zeros(1, 4), 0, 1)
    with pytest.raises(ValueError, match="dt_ms"):
        hanning_smooth(torch.zeros(1, 4), 5, -1)
    with pytest.raises(TypeError):
        hanning_smooth(np.zeros((1, 4)), 5, 1)


def test_response_smoothing_transform_works_and_matches_function():
    x = torch.rand(3, 2, 50, dtype=torch.float64)
    module = ResponseSmoothingTransform(dt_ms=5, window_size_ms=21)
    out = module(x)
    assert out.dtype == torch.float64 and out.shape == x.shape
    torch.testing.assert_close(out, hanning_smooth(x, 21, 5))
    assert "n_bins=5" in repr(module)


def test_fill_missing_data_pads_and_checks():
    out = fill_missing_data([torch.ones(2, 3), torch.ones(2, 5)], dims=[-1], value=-1.0)
    assert out.shape == (2, 2, 5) and out[0, 0, 4] == -1
    with pytest.raises(ValueError, match="not in dims"):
        fill_missing_data([torch.ones(2, 3), torch.ones(4, 3)], dims=[1])


def test_concatenate_datasets_alias_warns():
    a = RaggedDataset([[1]])
    with pytest.warns(DeprecationWarning):
        c = concatenate_datasets(a, a)
    assert c.get_S() == 2


def test_importing_utils_data_does_not_import_matplotlib():
    code = "import sys, deepSTRF.utils.data, deepSTRF.datasets, deepSTRF.metrics; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sentinel_helpers_are_independent():
    from deepSTRF.datasets._storage import is_sentinel, make_sentinels

    pads = make_sentinels(3)
    pads[0].fill_(1.0)
    assert math.isnan(pads[1].item()) and is_sentinel(pads[2]) and not is_sentinel(pads[0])
    assert not is_sentinel(torch.tensor([[2.0]])) and is_sentinel(sentinel())


def test_collate_mask_equals_isnan_even_with_nan_inside_real_responses():
    ds = RaggedDataset([[2, 0, 3], [1, 4, 2]], durations=[5, 8], F=2)
    ds.responses[1][1][2, 3] = math.nan
    batch = neural_collate([ds[0], ds[1]])
    assert torch.equal(batch["valid_mask"], ~torch.isnan(batch["responses"]))
    assert not batch["valid_mask"][1, 1, 2, 3] and batch["valid_mask"][1, 1, 2, 2]
