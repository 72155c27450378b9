"""NeuralDataset: storage contract, selection, preprocessing, quality, validation."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch

from deepSTRF.datasets import DatasetFormatError, NeuralDataset
from fixtures.ragged import BareDataset, RaggedDataset, sentinel, spec_example


# --------------------------------------------------------------- selection
def test_spec_example_no_selection():
    ds = spec_example()
    assert len(ds) == 3
    assert ds.nrn_masks.tolist() == [[True, False, False], [True, True, False], [False, False, True]]
    for i in range(3):
        item = ds[i]
        assert set(item) == {"stims", "responses", "valid_mask", "stim_meta"}
        assert len(item["responses"]) == 3
        assert item["stims"] is ds.stims[i]
        assert item["stim_meta"] is ds.stim_meta[i]


def test_spec_example_stim_selection_drops_silent_neurons_and_sorts():
    ds = spec_example()
    ds.select_stims([1, 0])
    assert len(ds) == 2
    assert [ds[i]["stim_meta"]["kind"] for i in range(2)] == ["song", "noise"]  # ascending stim order
    assert [len(ds[i]["responses"]) for i in range(2)] == [2, 2]
    assert ds[0]["responses"][0] is ds.responses[0][0]
    assert ds[0]["valid_mask"].tolist() == [True, False]
    assert [m["area"] for m in ds.get_nrn_meta()] == ["A1", "A1"]


def test_spec_example_neuron_and_stim_selection():
    ds = spec_example()
    ds.select_neuron(2)
    assert len(ds) == 1
    assert ds[0]["responses"][0] is ds.responses[2][2]
    ds.select_stims([0, 1])
    assert len(ds) == 0
    ds.reset_stim_selection()
    assert len(ds) == 1
    ds.reset_pop_selection()
    assert len(ds) == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda ds: ds.select_pop_by_nrn_attr("area", "nowhere"),
        lambda ds: ds.select_pop_by_nrn_predicate(lambda m: False),
        lambda ds: ds.select_pop_by_stim_attr("kind", "absent"),
        lambda ds: ds.select_pop_by_stim_predicate(lambda m: m["missing_key"]),
        lambda ds: ds.select_population([]),
        lambda ds: ds.select_stims_by_attr("kind", "absent"),
        lambda ds: ds.select_stims_by_predicate(lambda m: False),
        lambda ds: ds.select_stims([]),
    ],
)
def test_filter_matching_nothing_is_empty_and_warns(call):
    """Deliberate change: never the whole population."""
    ds = spec_example()
    with pytest.warns(UserWarning, match="matched nothing"):
        call(ds)
    assert len(ds) == 0
    assert ds.get_nrn_meta() == [] or ds.S_sel == []
    with pytest.raises(IndexError):
        ds[0]
    ds.reset_pop_selection()
    ds.reset_stim_selection()
    assert len(ds) == 3


def test_select_by_attr_and_predicate():
    ds = spec_example()
    assert ds.select_pop_by_nrn_attr("area", "PEG") == [2]
    assert ds.I == [2]
    assert ds.select_pop_by_nrn_predicate(lambda m: m["area"] == "A1") == [0, 1]
    assert ds.select_pop_by_stim_attr("kind", "noise") == [0, 1]
    assert ds.select_pop_by_stim_predicate(lambda m: m["kind"] == "song") == [0, 2]
    assert ds.select_stims_by_attr("kind", "song") == [0, 2]
    assert ds.S_sel == [0, 2]
    assert ds.select_stims_by_predicate(lambda m: m["kind"] != "song") == [1]


def test_predicate_other_exceptions_propagate_and_keep_selection():
    ds = spec_example()
    ds.select_neuron(1)

    def boom(meta):
        raise RuntimeError("bad predicate")

    with pytest.raises(RuntimeError):
        ds.select_pop_by_nrn_predicate(boom)
    assert ds.I == [1]


def test_population_order_and_duplicates_kept():
    ds = spec_example()
    ds.select_population([1, 0, 1])
    item = ds[1]  # stim 1: both neurons real
    assert item["responses"] == [ds.responses[1][1], ds.responses[1][0], ds.responses[1][1]]
    assert len(ds.get_nrn_meta()) == 3


def test_selection_arguments_are_checked():
    ds = spec_example()
    with pytest.raises(IndexError, match="neuron_index=3"):
        ds.select_neuron(3)
    with pytest.raises(IndexError):
        ds.select_neuron(-1)
    with pytest.raises(TypeError):
        ds.select_neuron(1.5)
    with pytest.raises(TypeError):
        ds.select_neuron(True)
    with pytest.raises(IndexError, match=r"stim_indices\[1\]"):
        ds.select_stims([0, 7])
    with pytest.raises(IndexError):
        ds.select_population([0, 5])
    ds.select_neuron(np.int64(2))
    assert ds.I == [2]
    ds.select_stim(torch.tensor(2))
    assert ds.S_sel == [2]


def test_getitem_index_types():
    ds = spec_example()
    assert ds[np.int64(1)]["stim_meta"] is ds.stim_meta[1]
    assert ds[-1]["stim_meta"] is ds.stim_meta[2]
    batch = ds[0:2]
    assert list(batch) == ["stims", "responses", "valid_mask", "stim_meta"]
    assert batch["stim_meta"] == ds.stim_meta[:2]
    assert ds[[2, 0]]["stim_meta"] == [ds.stim_meta[2], ds.stim_meta[0]]
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(IndexError):
        ds[[0, 9]]
    with pytest.raises(TypeError):
        ds[1.0]
    with pytest.raises(TypeError):
        ds["a"]


def test_valid_mask_is_independent_copy():
    ds = spec_example()
    item = ds[0]
    item["valid_mask"][:] = False
    assert ds[0]["valid_mask"].tolist() == [True, False, False]


def test_direct_assignment_of_I_and_S_sel_is_seen():
    ds = spec_example()
    assert len(ds) == 3
    ds.I = [2]
    assert len(ds) == 1
    ds.I.append(0)  # in-place edit of the public list is also picked up
    assert len(ds) == 3
    ds.S_sel = [1]
    assert len(ds) == 1
    ds.S_sel = None
    ds.I = []
    assert len(ds) == 3


def test_real_single_bin_response_is_data():
    """Deliberate change: only a (1, 1) NaN is missing."""
    stims = [torch.zeros(1, 2, 1), torch.zeros(1, 2, 1)]
    responses = [[torch.tensor([[3.0]]), sentinel()], [torch.tensor([[0.0]]), torch.tensor([[1.0]])]]
    ds = BareDataset(stims, responses)
    assert ds.nrn_masks.tolist() == [[True, False], [True, True]]


def test_invalidate_masks_after_structural_edit():
    ds = spec_example()
    assert not ds.nrn_masks[0, 1]
    ds.responses[0][1] = torch.ones(2, ds.stims[0].shape[-1])
    ds._invalidate_nrn_masks()
    assert ds.nrn_masks[0, 1]
    assert len(ds[0]["responses"]) == 3


def test_repr_and_accessors():
    ds = spec_example()
    assert ds.get_S() == 3 and ds.get_N() == 3 and ds.get_F() == 3
    assert repr(ds) == "RaggedDataset(N_neurons=3, selected=0, N_stims=3, dt_ms=5.0)"
    ds.select_population([0, 1])
    assert "selected=2" in repr(ds)


def test_empty_base_dataset_masks():
    ds = NeuralDataset("p", 1.0)
    ds.N_neurons = 4
    assert ds.nrn_masks.shape == (0, 4)
    assert len(ds) == 0


# ------------------------------------------------------------ preprocessing
def _flat_values(ds, n, stims):
    vals = [ds.responses[s][n].flatten().numpy() for s in stims if ds.nrn_masks[s, n]]
    vals = np.concatenate(vals) if vals else np.zeros(0)
    return vals[~np.isnan(vals)]


def test_normalize_zscore_matches_numpy_on_a_subset():
    ds = RaggedDataset([[2, 3, 0], [1, 0, 4], [3, 2, 2], [0, 1, 1]], seed=3)
    before = [[t.clone() for t in row] for row in ds.responses]
    train = [0, 2]
    expected = []
    for n in range(3):
        v = _flat_values(ds, n, train).astype(np.float64)
        expected.append((v.mean(), v.std(ddof=1)) if v.size >= 2 else (0.0, 1.0))
    record = ds.normalize_responses("zscore", stim_indices=train)
    assert record["method"] == "zscore" and record["stim_indices"] == train
    assert ds.response_normalization is record
    for n, (mu, sd) in enumerate(expected):
        assert record["offset"][n].item() == pytest.approx(mu, rel=1e-5)
        assert record["scale"][n].item() == pytest.approx(sd, rel=1e-5)
        for s in range(4):
            if ds.nrn_masks[s, n]:
                want = (before[s][n].double() - mu) / sd
                torch.testing.assert_close(ds.responses[s][n].double(), want, rtol=1e-5, atol=1e-5)
            else:
                assert ds.responses[s][n].shape == (1, 1) and torch.isnan(ds.responses[s][n]).all()
    assert ds.responses[0][0].dtype == torch.float32


def test_normalize_max_uses_absolute_value_and_leaves_sparse_neurons():
    stims = [torch.zeros(1, 1, 3), torch.zeros(1, 1, 3)]
    responses = [
        [torch.tensor([[-4.0, 1.0, 2.0]]), torch.tensor([[5.0]]).expand(1, 3).clone(), sentinel()],
        [torch.tensor([[1.0, 0.0, 3.0]]), sentinel(), torch.tensor([[7.0, 7.0, 7.0]])],
    ]
    ds = BareDataset(stims, responses)
    record = ds.normalize_responses("max", stim_indices=[0])
    assert record["scale"].tolist() == [4.0, 5.0, 1.0]  # neuron 2 has no value on stim 0: untouched
    assert ds.responses[0][0].tolist() == [[-1.0, 0.25, 0.5]]
    assert ds.responses[1][2].tolist() == [[7.0, 7.0, 7.0]]


def test_normalize_rejects_bad_method():
    with pytest.raises(ValueError, match="'max' or 'zscore'"):
        spec_example().normalize_responses("minmax")


def test_standardize_stims_per_band_uses_subset_statistics():
    ds = RaggedDataset([[1], [1], [1]], durations=[5, 6, 7], F=4)
    X = torch.cat([ds.stims[0], ds.stims[2]], dim=-1)
    mean, std = X.mean(dim=(0, 2), keepdim=True), X.std(dim=(0, 2), keepdim=True)
    old = [s.clone() for s in ds.stims]
    record = ds.standardize_stims(stim_indices=[0, 2])
    assert record["mean"].shape == (1, 4, 1)
    for s in range(3):
        torch.testing.assert_close(ds.stims[s], (old[s] - mean) / std)
    record = ds.standardize_stims(per_band=False)
    assert record["mean"].dim() == 0
    with pytest.raises(ValueError):
        ds.standardize_stims(stim_indices=[])


def test_smooth_responses_unit_gain_and_constant_preserved():
    """Deliberate change: unit-sum kernel, odd K nearest window/dt."""
    T = 40
    stims = [torch.zeros(1, 1, T)]
    responses = [[torch.full((2, T), 3.0), sentinel(), torch.zeros(1, T)]]
    responses[0][2][0, 20] = 1.0  # an impulse
    ds = BareDataset(stims, responses, dt_ms=5.0)
    sentinel_obj = ds.responses[0][1]
    ds.smooth_responses(21.0)  # K = 5: hanning(5) = [0, .5, 1, .5, 0] / 2
    constant = ds.responses[0][0]
    torch.testing.assert_close(constant[:, 2:-2], torch.full((2, T - 4), 3.0))
    assert constant[0, 0] < 3.0  # zero-padded edge
    impulse = ds.responses[0][2][0]
    assert impulse.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(impulse[18:23], torch.tensor([0.0, 0.25, 0.5, 0.25, 0.0]))
    assert ds.responses[0][1] is sentinel_obj


def test_smooth_keeps_nan_entries_local():
    T = 12
    cell = torch.ones(1, T)
    cell[0, 5] = math.nan
    ds = BareDataset([torch.zeros(1, 1, T)], [[cell]], dt_ms=1.0)
    ds.smooth_responses(5.0)
    out = ds.responses[0][0][0]
    assert math.isnan(out[5])
    assert torch.isfinite(out[[3, 4, 6, 7]]).all()
    torch.testing.assert_close(out[3:5], torch.ones(2))


# ------------------------------------------------------------------ quality
def test_quality_identical_repeats_are_noiseless():
    T = 30
    base = torch.rand(1, T, generator=torch.Generator().manual_seed(1)) * 5
    ds = BareDataset([torch.zeros(1, 1, T)], [[base.expand(4, T).clone(), base.expand(1, T).clone()]])
    out = ds.compute_neuron_quality()
    assert out["snr"][0] == math.inf
    assert out["ccmax"][0].item() == pytest.approx(1.0)
    assert math.isnan(out["snr"][1])  # R = 1 only: no SNR
    assert out["ccmax"][1].item() == 1.0  # R = 1 only: CCnorm = CCraw
    assert ds.nrn_meta[0]["ccmax"] == pytest.approx(1.0)
    assert isinstance(ds.nrn_meta[1]["snr"], float)


def test_quality_two_repeats_is_spearman_brown_of_one_split():
    gen = torch.Generator().manual_seed(4)
    T = 50
    a, b = torch.rand(T, generator=gen), torch.rand(T, generator=gen)
    shared = torch.rand(T, generator=gen)
    cell = torch.stack([shared + a, shared + b])
    ds = BareDataset([torch.zeros(1, 1, T)], [[cell]])
    rho = np.corrcoef(cell[0].numpy(), cell[1].numpy())[0, 1]
    out = ds.compute_neuron_quality()
    assert out["ccmax"][0].item() == pytest.approx(math.sqrt(2 * rho / (1 + rho)), rel=1e-4)


def test_quality_length_weighted_across_stims():
    gen = torch.Generator().manual_seed(5)
    cells, stims = [], []
    for T in (20, 60):
        shared = torch.rand(T, generator=gen)
        cells.append([torch.stack([shared + 0.5 * torch.rand(T, generator=gen) for _ in range(2)])])
        stims.append(torch.zeros(1, 1, T))
    ds = BareDataset(stims, cells)
    sps, nps, ccs = [], [], []
    for (cell,) in cells:
        x = cell.double().numpy()
        psth_var = x.mean(0).var(ddof=1)
        tp = x.var(axis=1, ddof=1).mean()
        sp = (2 * psth_var - tp) / 1
        sps.append(sp)
        nps.append(tp - sp)
        r = np.corrcoef(x[0], x[1])[0, 1]
        ccs.append(math.sqrt(2 * r / (1 + r)))
    w = np.array([20, 60])
    out = ds.compute_neuron_quality()
    assert out["snr"][0].item() == pytest.approx((w @ sps) / (w @ nps), rel=1e-4)
    assert out["ccmax"][0].item() == pytest.approx((w @ ccs) / w.sum(), rel=1e-4)


def test_quality_poisson_snr_near_expectation():
    gen = torch.Generator().manual_seed(6)
    T, R = 400, 20
    rate = 2.0 + 1.5 * torch.sin(torch.linspace(0, 12 * math.pi, T))
    cell = torch.poisson(rate.expand(R, T).contiguous(), generator=gen)
    ds = BareDataset([torch.zeros(1, 1, T)], [[cell]])
    expected = rate.double().var().item() / rate.double().mean().item()  # SP ~ var(rate), NP ~ mean(rate)
    out = ds.compute_neuron_quality()
    assert out["snr"][0].item() == pytest.approx(expected, rel=0.2)


def test_quality_silent_half_is_skipped_not_nan():
    """Deliberate change: an undefined split correlation does not poison the neuron."""
    gen = torch.Generator().manual_seed(7)
    T = 40
    good = torch.rand(1, T, generator=gen).expand(4, T) + 0.1 * torch.rand(4, T, generator=gen)
    silent = torch.zeros(2, T)  # every split has a constant half
    ds = BareDataset([torch.zeros(1, 1, T), torch.zeros(1, 1, T)], [[good.clone()], [silent]])
    out = ds.compute_neuron_quality()
    assert math.isfinite(out["ccmax"][0].item())
    assert 0.9 < out["ccmax"][0].item() <= 1.0


def test_quality_seed_and_iters_are_checked():
    ds = spec_example()
    with pytest.raises(ValueError):
        ds.compute_neuron_quality(max_ccmax_iters=0)
    a = RaggedDataset([[12, 12]], durations=[30], seed=1).compute_neuron_quality(max_ccmax_iters=5, seed=1)
    b = RaggedDataset([[12, 12]], durations=[30], seed=1).compute_neuron_quality(max_ccmax_iters=5, seed=1)
    torch.testing.assert_close(a["ccmax"], b["ccmax"], equal_nan=True)


# --------------------------------------------------------------- validation
def test_validate_names_the_offending_pair():
    ds = RaggedDataset([[2, 2], [1, 1]])
    ds.responses[1][1] = torch.zeros(1, 99)
    with pytest.raises(DatasetFormatError, match=r"responses\[1\]\[1\]"):
        ds.validate()


def test_validate_rejects_spectrogram_length_mismatch():
    ds = RaggedDataset([[2, 2]])
    T = ds.stims[0].shape[-1]
    ds.responses[0] = [torch.zeros(2, T + 1), torch.zeros(1, T + 1)]
    with pytest.raises(DatasetFormatError, match=r"match stims\[0\]"):
        ds.validate()


@pytest.mark.parametrize(
    "mutate, error, pattern",
    [
        (lambda ds: setattr(ds, "dt", 0), ValueError, "dt"),
        (lambda ds: setattr(ds, "dt", True), ValueError, "dt"),
        (lambda ds: setattr(ds, "path", 3), TypeError, "path"),
        (lambda ds: setattr(ds, "N_neurons", 5), ValueError, "N_neurons"),
        (lambda ds: ds.stim_meta.__setitem__(0, "x"), TypeError, r"stim_meta\[0\]"),
        (lambda ds: ds.nrn_meta.__setitem__(1, None), TypeError, r"nrn_meta\[1\]"),
        (lambda ds: ds.stims[0].__setitem__((0, 0, 0), math.nan), DatasetFormatError, r"stims\[0\]"),
        (lambda ds: ds.responses[0].__setitem__(0, torch.zeros(6)), DatasetFormatError, "2-D"),
        (lambda ds: ds.responses[0].__setitem__(0, torch.zeros(2, 6, dtype=torch.int64)), DatasetFormatError, "dtype"),
        (lambda ds: ds.stims.pop(), ValueError, "len"),
        (lambda ds: setattr(ds, "F", 0), ValueError, "F"),
        (lambda ds: setattr(ds, "hearing_range_hz", (500, 100)), ValueError, "hearing_range_hz"),
    ],
)
def test_validate_errors(mutate, error, pattern):
    ds = RaggedDataset([[2, 1], [1, 3]])
    mutate(ds)
    ds._invalidate_nrn_masks()
    with pytest.raises(error, match=pattern):
        ds.validate()


def test_validate_survives_python_O_semantics():
    """Checks are exceptions, not asserts: they hold with assertions disabled."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from deepSTRF.datasets import NeuralDataset\n"
        "ds = NeuralDataset('p', -1.0)\n"
        "try:\n    ds.validate()\nexcept ValueError:\n    print('raised')\n"
    )
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "raised"


# ------------------------------------------------------------ concatenation
def test_concatenation_is_block_diagonal():
    a = RaggedDataset([[2, 1], [1, 0]], seed=1)
    b = RaggedDataset([[3], [2], [1]], seed=2)
    c = a + b
    assert type(c) is RaggedDataset
    assert c.get_S() == 5 and c.get_N() == 3
    expected = torch.tensor(
        [[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=torch.bool
    )
    assert torch.equal(c.nrn_masks, expected)
    assert torch.equal(c._compute_masks(), expected)
    assert c.responses[2][2] is b.responses[0][0]
    assert c.nrn_meta[2]["dataset"] == "RaggedDataset" and "dataset" not in b.nrn_meta[0]
    pads = [c.responses[s][n] for s in range(5) for n in range(3) if not expected[s, n]]
    assert len({id(p) for p in pads}) == len(pads)  # no shared sentinel object
    assert c.F == a.F


def test_concatenation_checks_compatibility():
    from deepSTRF.utils.data import concat_neural_datasets

    a = RaggedDataset([[1]], dt_ms=5.0)
    with pytest.raises(ValueError, match="dt"):
        a + RaggedDataset([[1]], dt_ms=10.0)
    with pytest.raises(ValueError, match="F differs"):
        a + RaggedDataset([[1]], F=4)
    with pytest.raises(TypeError):
        a + 3
    assert concat_neural_datasets([a]) is a
    with pytest.raises(ValueError):
        concat_neural_datasets([])
    with pytest.raises(ValueError, match="names"):
        concat_neural_datasets([a, a], names=["x"])
    c = concat_neural_datasets([a, a], names=["first", "second"])
    assert [m["dataset"] for m in c.stim_meta] == ["first", "second"]


# ------------------------------------------------------------------ pickling
def test_pickle_round_trip_keeps_selection_and_items():
    ds = spec_example()
    ds.select_stims([1, 2])
    ds.select_population([0, 2])
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == len(ds)
    for i in range(len(ds)):
        a, b = ds[i], clone[i]
        assert a["stim_meta"] == b["stim_meta"]
        for x, y in zip(a["responses"], b["responses"]):
            torch.testing.assert_close(x, y, equal_nan=True)


def test_no_warning_on_plain_use():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = spec_example()
        ds.select_stims([0])
        _ = ds[0]


def test_quality_agrees_with_batch_metrics_on_the_collated_dataset():
    """compute_neuron_quality and deepSTRF.metrics share one definition (metrics_paradigm §11)."""
    from deepSTRF.metrics import compute_CCmax, snr
    from deepSTRF.utils.data import neural_collate

    ds = RaggedDataset([[3, 2, 0], [4, 0, 2], [2, 5, 3], [0, 2, 2]], durations=[9, 14, 11, 7], seed=11, rate=3.0)
    quality = ds.compute_neuron_quality()
    batch = neural_collate([ds[i] for i in range(len(ds))])
    torch.testing.assert_close(snr(batch["responses"], reduction="none"), quality["snr"], rtol=1e-4, atol=1e-6)
    # CCmax of one cell equals the per-cell helper
    gen = torch.Generator().manual_seed(12)
    rate = 1 + 3 * torch.rand(25, generator=gen)
    cell = torch.poisson(rate.expand(6, 25).contiguous(), generator=gen)
    single = BareDataset([torch.zeros(1, 1, 25)], [[cell]])
    torch.testing.assert_close(
        single.compute_neuron_quality()["ccmax"][0], compute_CCmax(cell.unsqueeze(0))[0].float(), rtol=1e-5, atol=1e-6
    )
    assert 0 < single.nrn_meta[0]["ccmax"] < 1


def test_pickle_of_views_stays_compact():
    """Responses that are views on a shared buffer must not each pickle the whole buffer."""
    ds = RaggedDataset([[4, 3, 2]] * 6, durations=[50] * 6, seed=2)
    ds.normalize_responses("zscore")  # responses are now views on per-stim stacks
    tensor_bytes = sum(t.numel() * t.element_size() for row in ds.responses for t in row)
    tensor_bytes += sum(t.numel() * t.element_size() for t in ds.stims)
    size = len(pickle.dumps(ds))
    assert size < 1.5 * tensor_bytes + 20_000
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone.responses[3][1], ds.responses[3][1])


def test_load_or_build_hook_fills_storage_and_reuses_cache(tmp_path, monkeypatch):
    from deepSTRF.datasets import AudioNeuralDataset
    from deepSTRF.datasets._cache import Payload

    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"raw data")
    builds = []

    class Cached(AudioNeuralDataset):
        def __init__(self, scale: float, cache: bool = True):
            super().__init__(str(tmp_path), 5.0)

            def build():
                builds.append(scale)
                stims = [torch.ones(1, 2, 4), torch.zeros(1, 2, 3)]
                responses = [[torch.full((2, 4), scale), sentinel()], [sentinel(), torch.ones(1, 3)]]
                return Payload(stims, responses, [{"k": 0}, {"k": 1}], [{"id": "a"}, {"id": "b"}], {"F": 2})

            self._load_or_build(build, params={"scale": scale}, raw_files=[raw], cache=cache)
            self.validate()

    a = Cached(2.0)
    b = Cached(2.0)
    assert builds == [2.0]
    assert b.F == 2 and b.nrn_masks.tolist() == [[True, False], [False, True]]
    torch.testing.assert_close(b.responses[0][0], torch.full((2, 4), 2.0))
    assert len(b) == 2 and b.nrn_meta == a.nrn_meta
    Cached(3.0)
    Cached(3.0, cache=False)
    assert builds == [2.0, 3.0, 3.0]


def test_preprocessing_a_concatenation_leaves_the_sources_untouched():
    a = RaggedDataset([[2, 1], [1, 3]], seed=4)
    b = RaggedDataset([[3], [2]], seed=5)
    before = [t.clone() for row in a.responses + b.responses for t in row]
    c = a + b
    c.normalize_responses("zscore")
    c.smooth_responses(21.0)
    c.normalize_responses("max")
    after = [t for row in a.responses + b.responses for t in row]
    for x, y in zip(before, after):
        torch.testing.assert_close(x, y, equal_nan=True)


def test_whole_dataset_transforms_of_a_cached_dataset_keep_old_views_intact(tmp_path, monkeypatch):
    from deepSTRF.datasets import AudioNeuralDataset
    from deepSTRF.datasets._cache import Payload

    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"raw data")
    g = torch.Generator().manual_seed(0)
    T = 4096  # several pages per stim, so the transforms' page release has whole pages to drop
    responses = [[torch.poisson(torch.full((3, T), 2.0), generator=g) for _ in range(4)] for _ in range(3)]

    class Cached(AudioNeuralDataset):
        def __init__(self):
            super().__init__(str(tmp_path), 5.0)
            build = lambda: Payload([torch.zeros(1, 2, T)] * 3, [list(r) for r in responses],  # noqa: E731
                                    [{"k": s} for s in range(3)], [{"id": n} for n in range(4)], {"F": 2})
            self._load_or_build(build, params={}, raw_files=[raw])
            self.validate()

    Cached()
    ds = Cached()  # from the cache file
    assert ds._cache_origin is not None
    old = [list(row) for row in ds.responses]
    old[1][2].add_(1.0)  # an in-place edit of a mapped view (a private page) must survive
    ds.normalize_responses("zscore")
    ds.smooth_responses(21.0)
    for s in range(3):
        for n in range(4):
            expected = responses[s][n] + (1.0 if (s, n) == (1, 2) else 0.0)
            torch.testing.assert_close(old[s][n], expected)
    assert not torch.equal(ds.responses[0][0], responses[0][0])


def test_validate_skips_cell_checks_the_cache_file_already_passed(tmp_path, monkeypatch):
    from deepSTRF.datasets import AudioNeuralDataset
    import os

    from deepSTRF.datasets import neural_dataset as nd
    from deepSTRF.datasets._cache import Payload

    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"raw data")

    class Cached(AudioNeuralDataset):
        def __init__(self):
            super().__init__(str(tmp_path), 5.0)
            stims = [torch.ones(1, 2, 4), torch.zeros(1, 2, 3)]
            responses = [[torch.ones(2, 4), sentinel()], [sentinel(), torch.ones(1, 3)]]
            self._load_or_build(lambda: Payload(stims, responses, [{}, {}], [{}, {}], {"F": 2}),
                                params={}, raw_files=[raw])
            self.validate()

    checked = []
    real_check = nd._cells_conform
    monkeypatch.setattr(nd, "_cells_conform", lambda cells, T: checked.append(len(cells)) or real_check(cells, T))
    Cached()
    (path,) = (tmp_path / "cache").glob("*.dscache")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 60_000_000_000))
    Cached()  # body verified and recorded, then the cells checked and recorded
    assert checked == [1, 1] * 2
    ds = Cached()  # this file's cells already passed: validate() skips them once
    assert checked == [1, 1] * 2
    ds.validate()  # a later explicit call checks everything again
    assert checked == [1, 1] * 3
