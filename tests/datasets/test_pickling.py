"""Pickling a dataset: flat storage, cache re-open, state survival, DataLoader workers."""

from __future__ import annotations

import copy
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from deepSTRF.datasets._errors import CacheError
from deepSTRF.datasets._storage import FlatTensors, is_sentinel, make_sentinel
from deepSTRF.utils.data import concat_neural_datasets, neural_collate
from fixtures.ragged import RaggedDataset
from fixtures.scale_workers import SyntheticCached, fingerprint, same_batch, same_item, write_raw


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def root(tmp_path):
    return write_raw(tmp_path / "raw", S=12, N=7, seed=1)


def _tensor_bytes(ds) -> int:
    cells = list(ds.stims) + [t for row in ds.responses for t in row]
    return sum(t.numel() * t.element_size() for t in cells)


def _assert_same(a, b):
    assert len(a) == len(b)
    assert a.I == b.I and a.S_sel == b.S_sel and a._pop_empty == b._pop_empty
    assert a.stim_meta == b.stim_meta and a.nrn_meta == b.nrn_meta
    assert torch.equal(a.nrn_masks, b.nrn_masks)
    for i in range(len(a)):
        assert same_item(a[i], b[i]), i
    assert fingerprint(a) == fingerprint(b)


def _storage_ptrs(ds) -> set[int]:
    cells = [t for row in ds.responses for t in row if not is_sentinel(t)]
    return {t.untyped_storage().data_ptr() for t in cells}


# ----------------------------------------------------------------- cache-backed
def test_cache_backed_dataset_sends_a_file_reference(root):
    ds = SyntheticCached(root)
    blob = pickle.dumps(ds)
    assert len(blob) < 1_000_000
    assert len(blob) < _tensor_bytes(ds) / 4  # no tensor bytes in it
    clone = pickle.loads(blob)
    _assert_same(ds, clone)
    # the clone's tensors are views on a fresh map of the same file
    (ptr,) = _storage_ptrs(clone)
    assert clone.responses[0][0].untyped_storage().nbytes() == os.path.getsize(clone._cache_origin.source.path)
    assert ptr != next(iter(_storage_ptrs(ds)))
    # and it can be pickled again the same way
    assert len(pickle.dumps(clone)) == len(blob)


def test_selection_normalisation_and_metadata_survive(root):
    ds = SyntheticCached(root)
    ds.standardize_stims()
    ds.select_stims([5, 1, 3, 3])
    ds.select_population([4, 0, 2])
    ds.nrn_meta[0]["note"] = "edited"
    clone = pickle.loads(pickle.dumps(ds))
    _assert_same(ds, clone)
    torch.testing.assert_close(clone.stim_normalization["mean"], ds.stim_normalization["mean"])
    # responses were untouched: still sent as a cache reference, stims flat
    assert len(pickle.dumps(ds)) < 0.5 * _tensor_bytes(ds)


def test_empty_selection_flag_survives(root):
    ds = SyntheticCached(root)
    with pytest.warns(UserWarning):
        ds.select_population([])
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == 0 and clone._pop_empty
    clone.reset_pop_selection()
    assert len(clone) == 12


@pytest.mark.parametrize("edit", ["normalize", "smooth", "in_place", "sentinel_in_place", "swap"])
def test_modified_dataset_is_sent_flat(root, edit):
    ds = SyntheticCached(root)
    if edit == "normalize":
        record = ds.normalize_responses("zscore")
    elif edit == "smooth":
        ds.smooth_responses(15.0)
    elif edit == "in_place":
        ds.responses[2][1].mul_(3.0)  # no new tensor: detected by the version counter
    elif edit == "sentinel_in_place":
        cell = next(t for t in ds.responses[0] if is_sentinel(t))
        cell.fill_(7.0)
        ds._invalidate_nrn_masks()
    else:
        ds.responses[1][0], ds.responses[1][1] = ds.responses[1][1], ds.responses[1][0]
        ds.select_stims([1])
    blob = pickle.dumps(ds)
    assert len(blob) <= 1.1 * _tensor_bytes(ds) + 20_000
    clone = pickle.loads(blob)
    _assert_same(ds, clone)
    if edit == "normalize":
        torch.testing.assert_close(clone.response_normalization["scale"], record["scale"])


def test_cache_file_replaced_before_pickling_falls_back_to_flat(root, cache_env):
    ds = SyntheticCached(root)
    (path,) = cache_env.glob("*.dscache")
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)  # same bytes, new inode: not the file the views map
    blob = pickle.dumps(ds)
    assert len(blob) > _tensor_bytes(ds) / 2
    _assert_same(ds, pickle.loads(blob))


def test_cache_file_removed_after_pickling_is_a_clear_error(root, cache_env):
    ds = SyntheticCached(root)
    blob = pickle.dumps(ds)
    for f in cache_env.glob("*.dscache"):
        f.unlink()
    with pytest.raises(CacheError, match="re-open"):
        pickle.loads(blob)


def test_in_place_edit_of_a_clone_stays_private(root, cache_env):
    ds = SyntheticCached(root)
    (path,) = cache_env.glob("*.dscache")
    before = path.read_bytes()
    clone = pickle.loads(pickle.dumps(ds))
    clone.responses[0][0].add_(100.0)
    clone.stims[0].zero_()
    assert path.read_bytes() == before
    assert not torch.equal(clone.responses[0][0], ds.responses[0][0])


def test_deepcopy(root):
    ds = SyntheticCached(root)
    ds.select_neuron(3)
    other = copy.deepcopy(ds)
    _assert_same(ds, other)
    other.responses[0][0].zero_()
    assert not torch.equal(other.responses[0][0], ds.responses[0][0]) or ds.responses[0][0].eq(0).all()


# ------------------------------------------------------------------ in memory
def test_in_memory_dataset_is_sent_flat():
    ds = RaggedDataset([[3, 0, 2, 1], [1, 2, 0, 4], [0, 0, 5, 2]], durations=[40, 25, 31], seed=4)
    ds.select_pop_by_nrn_attr("id", 2)
    blob = pickle.dumps(ds)
    assert len(blob) <= 1.1 * _tensor_bytes(ds) + 20_000
    clone = pickle.loads(blob)
    _assert_same(ds, clone)
    # the responses are views on one flat buffer, not separate tensors
    assert len(_storage_ptrs(clone)) == 1
    # every sentinel is its own element
    sentinels = [t for row in clone.responses for t in row if is_sentinel(t)]
    sentinels[0].fill_(1.0)
    assert all(torch.isnan(t).all() for t in sentinels[1:])


def test_mixed_dtypes_and_concatenation_round_trip(root):
    a = SyntheticCached(root)
    b = RaggedDataset([[2, 0, 1], [1, 3, 2]], durations=[9, 11], F=4, seed=2)
    b.responses[1][1] = b.responses[1][1].double()
    b.stims[0] = b.stims[0].double()
    both = concat_neural_datasets([a, b])
    both.select_stims_by_attr("split", "test")
    clone = pickle.loads(pickle.dumps(both))
    _assert_same(both, clone)
    assert clone.responses[13][8].dtype == torch.float64 and clone.stims[12].dtype == torch.float64


def test_flat_tensors_round_trip_any_shapes():
    tensors = [torch.randn(2, 3), torch.randn(2, 3), make_sentinel(), torch.randn(4, 5).t(), torch.zeros(0, 7),
               torch.arange(6).view(1, 2, 3), torch.randn(2, 3, dtype=torch.float64), torch.tensor(5.0)]
    tensors += [torch.randn(3, 4) for _ in range(20)] + [make_sentinel() for _ in range(9)]
    flat = pickle.loads(pickle.dumps(FlatTensors.pack(tensors)))
    out = flat.unpack()
    assert len(out) == len(tensors)
    for x, y in zip(tensors, out):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x.nan_to_num(-1.0), y.nan_to_num(-1.0))
    assert FlatTensors.pack([]).unpack() == []


def test_torch_multiprocessing_pickler_round_trip(root):
    """The pickler torch uses for spawned workers moves the few flat buffers to shared memory."""
    import torch.multiprocessing  # noqa: F401 - registers torch's reductions
    from multiprocessing.reduction import ForkingPickler

    ds = SyntheticCached(root)
    ds.normalize_responses("max")
    clone = pickle.loads(ForkingPickler.dumps(ds))
    _assert_same(ds, clone)


def test_old_state_without_packed_storage_still_loads():
    ds = RaggedDataset([[1, 2], [0, 3]], durations=[5, 6])
    state = {k: v for k, v in ds.__dict__.items() if k not in ("_view_cache", "_cache_origin")}
    clone = RaggedDataset.__new__(RaggedDataset)
    clone.__setstate__(state)
    _assert_same(ds, clone)


# --------------------------------------------------------------- DataLoader
def _batches(ds, workers: int, context=None) -> list:
    loader = DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=neural_collate,
                        multiprocessing_context=context if workers else None)
    return list(loader)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_give_the_same_batches(root, context):
    if context not in torch.multiprocessing.get_all_start_methods():
        pytest.skip(f"start method {context} not available")
    ds = SyntheticCached(root)
    ds.select_stims_by_attr("split", "train")
    ds.select_population([0, 2, 3, 5])
    assert len(pickle.dumps(ds)) < 1_000_000
    expected = _batches(ds, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _batches(ds, 2, context)
    assert len(got) == len(expected) == 3
    assert all(same_batch(a, b) for a, b in zip(expected, got))


def test_workers_on_a_normalised_dataset(root):
    ds = SyntheticCached(root)
    ds.normalize_responses("zscore")
    expected = _batches(ds, 0)
    got = _batches(ds, 2, "spawn" if "spawn" in torch.multiprocessing.get_all_start_methods() else None)
    assert all(same_batch(a, b) for a, b in zip(expected, got))
    assert np.isfinite(expected[0]["stims"].numpy()).all()
