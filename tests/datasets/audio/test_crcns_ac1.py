"""CRCNSAC1Dataset end to end on a tiny ac-1 layout (Wehr and Asari sources)."""

from __future__ import annotations

import io
import math
import os
import shutil
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch
from fixtures.crcns_ac1 import make_ac1
from fixtures.http_emulator import Emulator, Reply, sha256
from scipy.ndimage import gaussian_filter1d, median_filter
from scipy.signal.windows import hann

from deepSTRF.datasets._errors import (
    ChecksumError,
    CredentialsError,
    DatasetFormatError,
    DatasetNotFoundError,
)
from deepSTRF.datasets._storage import is_sentinel
from deepSTRF.datasets.audio import asari, crcns_ac1, wehr
from deepSTRF.datasets.audio._spectrogram import log_band_centres, log_spectrogram
from deepSTRF.datasets.audio.crcns_ac1 import (
    WEHR_NEURONS_SPLIT_NATURAL,
    WEHR_VALID_NEURONS,
    CRCNSAC1Dataset,
    RepeatGating,
    download_ac1,
)
from deepSTRF.utils import download as dl

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore:CRCNSAC1Dataset mixes:RuntimeWarning")


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("ac1")
    return root, make_ac1(root)


# --------------------------------------------------------------------------- an independent oracle


def _detrend(x, sf, med=100.0, gauss=10.0):
    base = median_filter(x, size=max(1, round(med * sf / 1000)), mode="reflect")
    return x - gaussian_filter1d(base, sigma=max(1e-3, gauss * sf / 1000), mode="reflect")


def _rate(y, sf, med, gauss):
    y = _detrend(y, sf, med, gauss)
    h = y - median_filter(y, size=round(0.010 * sf), mode="reflect")
    crossings = (h > 2.5 * h.std()).astype(float)
    w = hann(max(3, round(0.021 * sf)))
    full = np.convolve(crossings, w)
    start = (w.size - 1) // 2
    return full[start:start + crossings.size]


def _bin(x, sf, dt):
    b = max(1, round(dt * sf / 1000))
    n = x.size // b
    return x[: n * b].reshape(n, b).mean(axis=1)


def _sound(truth, name):
    for info in truth["wehr_stims"].values():
        if info["name"] == name:
            return info["wav"], 44100.0
    return truth["asari"]["sounds"][name]["wav"], 97656.25


def expected(truth, experimenters=("wehr", "asari"), sites=("A1", "MGB"), dt=5.0, med=100.0, gauss=10.0):
    """(cells, stim names, {(s, n): (R, T) array}) that the loader must produce, from the fixture's truth."""
    cells = []
    if "wehr" in experimenters and "A1" in sites:
        cells += truth["wehr_cells"]
    if "asari" in experimenters:
        cells += [c for c in truth["asari_cells"] if c.meta["site"] in sites]
    stims, first_rep, blocks = [], {}, {}
    for n, cell in enumerate(cells):
        groups = {}
        for rep in cell.reps:
            groups.setdefault(rep.stim, []).append(rep)
        for name, reps in groups.items():
            kept = [r for r in reps if r.verdict == "kept"]
            if not kept:
                continue
            if name not in stims:
                stims.append(name)
                first_rep[name] = reps[0]
            sig = [_detrend(r.trace, r.sf, med, gauss) for r in kept]
            if not cell.whole_cell:
                sig = [_rate(y, r.sf, med, gauss) for y, r in zip(sig, kept)]
            binned = [_bin(y, r.sf, dt) for y, r in zip(sig, kept)]
            T = min(b.size for b in binned)
            blocks[(stims.index(name), n)] = np.stack([b[:T] for b in binned])
    Ts = []
    for s, name in enumerate(stims):
        wav, sf = _sound(truth, name)
        T = math.ceil(wav.size / max(round(dt * sf / 1000), 1))
        T = min(T, round(first_rep[name].duration_ms / dt))
        Ts.append(min([T] + [b.shape[1] for (s2, _), b in blocks.items() if s2 == s]))
    return cells, stims, {k: v[:, : Ts[k[0]]] for k, v in blocks.items()}, Ts


def check(ds, truth, **kw):
    cells, stims, blocks, Ts = expected(truth, **kw)
    assert [m["session"] for m in ds.nrn_meta] == [c.meta["session"] for c in cells]
    for m, c in zip(ds.nrn_meta, cells):
        assert {k: m[k] for k in c.meta} == c.meta
    assert [m["name"] for m in ds.stim_meta] == stims
    assert ds.get_S() == len(stims) and ds.N_neurons == len(cells)
    for s in range(ds.get_S()):
        for n in range(ds.N_neurons):
            resp = ds.responses[s][n]
            assert bool(ds.nrn_masks[s, n]) == ((s, n) in blocks)
            if (s, n) not in blocks:
                assert is_sentinel(resp)
                continue
            want = blocks[(s, n)]
            assert resp.dtype == torch.float32 and tuple(resp.shape) == want.shape == (want.shape[0], Ts[s])
            np.testing.assert_allclose(resp.numpy(), want, atol=2e-4, rtol=1e-5)
    return cells, stims, Ts


def _rejections(cells):
    return Counter(r.verdict for c in cells for r in c.reps)


# --------------------------------------------------------------------------- loading


def test_defaults_mixed_both_sources(raw):
    root, truth = raw
    with pytest.warns(RuntimeWarning, match="whole-cell.*cell-attached"):
        ds = CRCNSAC1Dataset(root)
    cells, _stims, Ts = check(ds, truth)
    assert ds.signal_type == "mixed" and ds.F == 53 and ds.dt == 5.0
    assert (ds.species, ds.hearing_range_hz) == ("rat", (250.0, 76000.0))
    assert ds.experimenters == ("wehr", "asari") and ds.sites == ("A1", "MGB")
    assert (ds.fmin, ds.fmax, ds.bins_per_octave, ds.window_ms) == (100.0, 45000.0, 6, None)
    assert (ds.detrend_med_ms, ds.detrend_gauss_ms, ds.gating) == (100.0, 10.0, RepeatGating())
    assert ds.return_waveform is False and ds.audio_fs is None
    # the gates caught exactly the planted artefacts, and only them
    assert ds._rejection_counter == {"range": 2, "step": 1, "xcorr": 1, "kept": _rejections(cells)["kept"]}
    assert ds._dropped_cells_empty == 2  # the tone-only Wehr session, the Asari session without param.recording
    # neuron order: Wehr sessions, then asari-results-1, then asari-results-2
    assert [m["session"] for m in ds.nrn_meta] == ["20030114-mw-002", "20030121-mw-001", "20030128-mw-003",
                                                   "20050301-ha1-001", "20050305-ha2-003", "20060410-ha3-002"]
    assert [m.get("_wehr_cell_idx") for m in ds.nrn_meta] == [0, 2, 3, None, None, None]
    assert [m["signal_type"] for m in ds.nrn_meta] == ["subthresh"] * 4 + ["spikes", "subthresh"]
    for s in range(ds.get_S()):
        assert ds.stims[s].shape == (1, 53, Ts[s]) and ds.stims[s].dtype == torch.float32


def test_metadata(raw):
    root, _truth = raw
    ds = CRCNSAC1Dataset(root)
    by_name = {m["name"]: m for m in ds.stim_meta}
    frog = by_name["wehr/category2/4"]
    assert {k: frog[k] for k in ("experimenter", "category", "idx", "description")} == {
        "experimenter": "wehr", "category": "category2", "idx": 4, "description": "knudsens frog"}
    assert frog["duration_s"] == pytest.approx(0.57)
    seq = by_name["asari/class6/1.mat+class3/1.mat+class3/2.mat"]  # registered from the first file's rows 3 1 2
    assert seq["segments"] == [3, 1, 2] and seq["segment_files"] == ["class6/1.mat", "class3/1.mat", "class3/2.mat"]
    assert (seq["category"], seq["class_n"], seq["sequence"]) == ("class6", 6, "Sequence 2: 3 1 2")
    mixed = by_name["asari/class6/4.mat"]  # a backslash in the table entry -> 'mixed'
    assert (mixed["category"], mixed["class_n"], mixed["segment_files"]) == ("mixed", None, ["class6\\4.mat"])
    for m in ds.stim_meta:
        assert set(m) >= {"experimenter", "name", "category", "description", "duration_s"}
    for m in ds.nrn_meta:
        assert set(m) >= {"experimenter", "session", "animal_id", "penetration", "date", "site",
                          "recording_type", "species", "signal_type"}
    # the same splice reached through other rows / sequence numbers / sessions is one stim
    shared = [m["name"] for m in ds.stim_meta].index("asari/class3/1.mat+class3/2.mat")
    assert ds.responses[shared][3].shape[0] == 4 and ds.responses[shared][4].shape[0] == 3


def test_wehr_only_dt2_fmax25600(raw):
    root, truth = raw
    ds = CRCNSAC1Dataset(root, experimenter="wehr", dt_ms=2, fmax=25600)
    assert ds.F == 49 and ds.signal_type == "subthresh" and ds.experimenters == ("wehr",)
    _, stims, Ts = check(ds, truth, experimenters=("wehr",), dt=2.0)
    centres = log_band_centres(100.0, 25600.0, 6)
    for s, name in enumerate(stims):
        wav, sf = _sound(truth, name)
        want, _ = log_spectrogram(wav, sf, 2.0, fmin=100.0, fmax=25600.0, bins_per_octave=6)
        np.testing.assert_allclose(ds.stims[s][0].numpy(), want[:, : Ts[s]].numpy(), atol=1e-3)
        freq = next(i["freq"] for i in truth["wehr_stims"].values() if i["name"] == name)
        band = int(ds.stims[s][0, :, 2:-2].mean(dim=-1).argmax())
        assert band == int(np.argmin(np.abs(np.log2(centres / freq))))  # a tone -> its band


def test_membrane_potential_is_the_encoded_psp_train(raw):
    root, truth = raw
    ds = CRCNSAC1Dataset(root, experimenter="wehr", sites="A1")
    for n, cell in enumerate(truth["wehr_cells"]):
        for name, psp in cell.psp.items():
            s = [m["name"] for m in ds.stim_meta].index(name)
            resp = ds.responses[s][n].numpy().mean(axis=0)
            clean = _bin(_detrend(psp, 4000.0), 4000.0, 5.0)[: resp.size]
            assert np.corrcoef(resp, clean)[0, 1] > 0.95
            assert np.abs(resp - clean).max() < 1.0  # mV: drift and -60 mV baseline are gone


def test_asari_a1_dt10_custom_front_end_and_detrend(raw):
    root, truth = raw
    ds = CRCNSAC1Dataset(root, experimenter="asari", sites="A1", dt_ms=10, bins_per_octave=4, window_ms=15,
                         detrend_med_ms=80, detrend_gauss_ms=5)
    assert ds.F == 36 and ds.signal_type == "subthresh" and ds.window_ms == 15
    _, stims, Ts = check(ds, truth, experimenters=("asari",), sites=("A1",), dt=10.0, med=80.0, gauss=5.0)
    for s, name in enumerate(stims):
        wav = truth["asari"]["sounds"][name]["wav"]
        want, _ = log_spectrogram(wav, 97656.25, 10.0, fmin=100.0, fmax=45000.0, bins_per_octave=4, window_ms=15)
        np.testing.assert_allclose(ds.stims[s][0].numpy(), want[:, : Ts[s]].numpy(), atol=1e-3)


def test_asari_mgb_spike_rate_dt4(raw):
    root, truth = raw
    ds = CRCNSAC1Dataset(root, experimenter="asari", sites="MGB", dt_ms=4)
    assert ds.signal_type == "spikes" and [m["site"] for m in ds.nrn_meta] == ["MGB"]
    assert ds._dropped_cells_empty == 1  # the session without param.recording; A1 cells are filtered, not empty
    check(ds, truth, experimenters=("asari",), sites=("MGB",), dt=4.0)
    for s in range(ds.get_S()):
        assert bool((ds.responses[s][0] >= 0).all()) and float(ds.responses[s][0].max()) > 0


def test_sites_a1_both_sources(raw):
    root, truth = raw
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no mixing warning: all whole-cell
        ds = CRCNSAC1Dataset(root, sites="A1")
    assert ds.signal_type == "subthresh" and ds.sites == ("A1",)
    check(ds, truth, sites=("A1",))


@pytest.mark.parametrize(("kw", "fs"), [({"experimenter": "wehr"}, 48000), ({}, 96000)])
def test_waveform_mode(raw, kw, fs):
    root, truth = raw
    spec = CRCNSAC1Dataset(root, **kw)
    ds = CRCNSAC1Dataset(root, return_waveform=True, audio_fs=fs, **kw)
    hop = fs * 5 // 1000
    assert ds.audio_fs == fs and ds.hop == hop and ds.F == 53 and ds.return_waveform
    for s in range(ds.get_S()):
        T = spec.stims[s].shape[-1]
        assert ds.stims[s].shape == (1, T * hop) and ds.stims[s].dtype == torch.float32
        for a, b in zip(ds.responses[s], spec.responses[s]):
            assert torch.equal(a, b) or (is_sentinel(a) and is_sentinel(b))
        name = ds.stim_meta[s]["name"]
        if name.startswith("wehr/") or name == "asari/class6/4.mat":
            wav, sf = _sound(truth, name)
            x = ds.stims[s][0].numpy()[: int(wav.size * fs / sf) - 50]
            peak = np.fft.rfftfreq(x.size, 1 / fs)[np.abs(np.fft.rfft(x * np.hanning(x.size))).argmax()]
            freq = (next((i["freq"] for i in truth["wehr_stims"].values() if i["name"] == name), 24000.0))
            assert abs(peak - freq) < 30  # resampled to audio_fs, pitch unchanged
            assert np.sqrt(np.mean(x[200:-200] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)  # amplitude kept


def test_selection_by_metadata(raw):
    root, _ = raw
    ds = CRCNSAC1Dataset(root)
    a = ds.select_pop_by_nrn_attr("experimenter", "asari")
    assert [ds.nrn_meta[n]["session"][9:12] for n in a] == ["ha1", "ha2", "ha3"]
    assert all(ds.stim_meta[s]["experimenter"] == "asari" for s in ds._view()[1])
    ds.reset_pop_selection()
    assert [ds.nrn_meta[n]["site"] for n in ds.select_pop_by_nrn_attr("site", "MGB")] == ["MGB"]
    ds.reset_pop_selection()
    valid = ds.select_pop_by_nrn_predicate(lambda m: m["_wehr_cell_idx"] in WEHR_VALID_NEURONS)
    assert [ds.nrn_meta[n]["_wehr_cell_idx"] for n in valid] == [0, 3]
    for i in range(len(ds)):
        assert len(ds[i]["responses"]) == 2


def test_constants():
    assert len(WEHR_VALID_NEURONS) == 21 and not {1, 2, 4, 8} & set(WEHR_VALID_NEURONS)
    assert len(WEHR_NEURONS_SPLIT_NATURAL) == 25
    assert WEHR_NEURONS_SPLIT_NATURAL[23] == (44, 6, 13) and WEHR_NEURONS_SPLIT_NATURAL[9] == (7, 1, 2)
    assert wehr.WEHR_VALID_NEURONS is WEHR_VALID_NEURONS
    assert asari.parse_sequence("Sequence 12:  3 1  4") == (12, (3, 1, 4))
    assert asari.parse_sequence("Tone 4000 Hz") is None
    assert asari.resolve_segment("\\class6\\4.mat") == "class6/4.mat"
    ramp = asari.onset_offset_ramp(10000, 97656.25)
    assert (ramp[:488] < 1).all() and ramp[488] == 1 and ramp[0] == 0 and ramp[-1] == 0
    assert asari.site_of("Auditory CORTEX") == "A1" and asari.site_of("mgb") == "MGB"


# --------------------------------------------------------------------------- sources need only their archives


def _copy(root: Path, dest: Path, *parts: str) -> Path:
    for part in parts:
        shutil.copytree(root / part, dest / part)
    return dest


def test_wehr_only_needs_only_the_first_archive(raw, tmp_path):
    root, truth = raw
    copy = _copy(root, tmp_path / "w", "crcns-ac1")
    ds = CRCNSAC1Dataset(copy, experimenter="wehr")
    check(ds, truth, experimenters=("wehr",))
    with pytest.raises(DatasetNotFoundError) as err:
        CRCNSAC1Dataset(copy)  # Asari requested too
    assert len(err.value.missing) == 1 and "asari-results-1" in err.value.missing[0]


def test_asari_without_wehr_folder_and_with_one_results_archive(raw, tmp_path):
    root, truth = raw
    copy = _copy(root, tmp_path / "a", "crcns-ac1", "crcns-ac1-asari-results-1", "crcns-ac1-asari-results-2")
    shutil.rmtree(copy / "crcns-ac1" / "wehr")
    check(CRCNSAC1Dataset(copy, experimenter="asari"), truth, experimenters=("asari",))
    with pytest.raises(DatasetNotFoundError, match="crcns-ac1/wehr/Results"):
        CRCNSAC1Dataset(copy, experimenter="wehr")
    shutil.rmtree(copy / "crcns-ac1-asari-results-1")
    ds = CRCNSAC1Dataset(copy, experimenter="asari")
    assert [m["session"] for m in ds.nrn_meta] == ["20060410-ha3-002"]


def test_zips_in_root_are_extracted_once(raw, tmp_path):
    root, truth = raw
    copy = tmp_path / "z"
    copy.mkdir()
    (copy / "crcns-ac1.zip").write_bytes(_zip_tree(root / "crcns-ac1"))
    ds = CRCNSAC1Dataset(copy, experimenter="wehr")
    check(ds, truth, experimenters=("wehr",))
    assert (copy / "crcns-ac1" / ".crcns-ac1.zip.extracted").is_file()


def test_missing_everything(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        CRCNSAC1Dataset(tmp_path / "nothing")
    msg = str(err.value)
    for text in ("crcns-ac1/wehr/Results", "crcns-ac1/asari/Stimuli", "asari-results-1", "download=True",
                 "CRCNS_USERNAME", "netrc", "crcns.org/register", "ac-1/crcns-ac1-asari-results-2.zip"):
        assert text in msg
    with pytest.raises(DatasetNotFoundError) as err:
        CRCNSAC1Dataset(tmp_path / "nothing", experimenter="wehr")
    assert err.value.missing == ["crcns-ac1/wehr/Results/", "crcns-ac1/wehr/Stimuli/"]
    assert "results-1.zip" not in str(err.value)  # only the archive Wehr needs is named


# --------------------------------------------------------------------------- cache


def test_cache_reuse_and_invalidation(raw, monkeypatch):
    root, _ = raw
    calls = []
    real = crcns_ac1._build
    monkeypatch.setattr(crcns_ac1, "_build", lambda *a, **k: calls.append(1) or real(*a, **k))
    a = CRCNSAC1Dataset(root, experimenter="wehr")
    b = CRCNSAC1Dataset(root, experimenter="wehr")
    assert len(calls) == 1
    assert all(torch.equal(x, y) for x, y in zip(a.stims, b.stims))
    assert b._rejection_counter == a._rejection_counter and b.stim_meta == a.stim_meta
    CRCNSAC1Dataset(root, experimenter="wehr", detrend_med_ms=50)
    CRCNSAC1Dataset(root, experimenter="wehr", gating=RepeatGating(min_xcorr=0.0))
    CRCNSAC1Dataset(root, experimenter="wehr", cache=False)
    assert len(calls) == 4
    ungated = CRCNSAC1Dataset(root, experimenter="wehr", gating=RepeatGating(min_xcorr=0.0))
    assert len(calls) == 4 and ungated._rejection_counter["xcorr"] == 0


def test_touching_a_raw_file_rebuilds(tmp_path, monkeypatch):
    root = tmp_path / "ac1"
    make_ac1(root)
    calls = []
    real = crcns_ac1._build
    monkeypatch.setattr(crcns_ac1, "_build", lambda *a, **k: calls.append(1) or real(*a, **k))
    CRCNSAC1Dataset(root, experimenter="wehr")
    trial = root / "crcns-ac1/wehr/Results/20030128-mw-003/20030128-mw-003-002.mat"  # the only sea-lion trial
    mat = sio.loadmat(trial)
    mat["response"]["trace"][0, 0][:] = 0
    sio.savemat(trial, {k: v for k, v in mat.items() if not k.startswith("__")})
    os.utime(trial, ns=(1, 10**9 * 12345))
    ds = CRCNSAC1Dataset(root, experimenter="wehr")
    assert len(calls) == 2
    s = [m["name"] for m in ds.stim_meta].index("wehr/fragments/2")
    assert not ds.responses[s][2].any()  # a flat trace detrends to zero


# --------------------------------------------------------------------------- errors


def test_format_errors_name_file_and_field(tmp_path):
    root = tmp_path / "ac1"
    make_ac1(root)
    trial = root / "crcns-ac1/wehr/Results/20030121-mw-001/20030121-mw-001-002.mat"
    mat = sio.loadmat(trial)
    sio.savemat(trial, {"triggers": mat["triggers"], "response": {"scale": 0.02, "sf": 4000.0}})
    with pytest.raises(DatasetFormatError) as err:
        CRCNSAC1Dataset(root, experimenter="wehr", cache=False)
    assert str(trial) in str(err.value) and "response.trace" in str(err.value)
    trial.write_bytes(b"MATLAB 5.0 MAT-file, garbage" + b"\0" * 50)
    with pytest.raises(DatasetFormatError, match="20030121-mw-001-002.mat"):
        CRCNSAC1Dataset(root, experimenter="wehr", cache=False)
    stim = root / "crcns-ac1/wehr/Stimuli/fragments/5.mat"
    sio.savemat(stim, {"sound": {"samples": np.zeros(10)}})
    with pytest.raises(DatasetFormatError) as err:
        CRCNSAC1Dataset(root, experimenter="wehr", cache=False)
    assert str(stim) in str(err.value) and "stimulus.param.description" in str(err.value)
    seg = root / "crcns-ac1/asari/Stimuli/class3/2.mat"
    sio.savemat(seg, {"stimulus": {"sample": np.zeros(1000), "param": {"sf": 44100.0}}})
    with pytest.raises(DatasetFormatError, match="stimulus.param.sf"):
        CRCNSAC1Dataset(root, experimenter="asari", cache=False)


def test_unreadable_asari_file_is_skipped_with_a_warning(tmp_path):
    root = tmp_path / "ac1"
    truth = make_ac1(root)
    bad = root / "crcns-ac1-asari-results-1/asari-results-1/20050301-ha1-001/20050301-ha1-001-02.mat"
    bad.write_bytes(b"not a mat file")
    with pytest.warns(UserWarning, match="unreadable"):
        ds = CRCNSAC1Dataset(root, experimenter="asari", sites="A1", cache=False)
    n = [m["session"] for m in ds.nrn_meta].index("20050301-ha1-001")
    s = [m["name"] for m in ds.stim_meta].index("asari/class3/1.mat+class3/2.mat")
    assert ds.responses[s][n].shape[0] == 2  # only the first file's two repeats remain
    assert truth  # fixture built


def test_bad_arguments(raw):
    root, _ = raw
    with pytest.raises(ValueError, match="experimenter.*'Wehr'"):
        CRCNSAC1Dataset(root, experimenter="Wehr")
    with pytest.raises(ValueError, match="sites"):
        CRCNSAC1Dataset(root, sites=["A2"])
    with pytest.raises(ValueError, match="dt_ms"):
        CRCNSAC1Dataset(root, dt_ms=0)
    with pytest.raises(ValueError, match="fmax"):
        CRCNSAC1Dataset(root, fmin=5000, fmax=1000)
    with pytest.raises(ValueError, match="bins_per_octave"):
        CRCNSAC1Dataset(root, bins_per_octave=0)
    with pytest.raises(ValueError, match="samples per bin"):
        CRCNSAC1Dataset(root, return_waveform=True, audio_fs=44100, dt_ms=5.01)
    with pytest.raises(TypeError, match="gating"):
        CRCNSAC1Dataset(root, gating={"min_xcorr": 0})
    with pytest.raises(ValueError, match="max_step_frac"):
        RepeatGating(max_step_frac=2)
    with pytest.raises(NotADirectoryError):
        CRCNSAC1Dataset(root / "crcns-ac1" / "wehr" / "Summary.mat")
    ds = CRCNSAC1Dataset(root, experimenter=[], sites=None)  # empty / None mean both
    assert ds.experimenters == ("wehr", "asari") and ds.sites == ("A1", "MGB")


def test_no_cell_survives(raw):
    root, _ = raw
    with pytest.raises(ValueError, match="no cell"):
        CRCNSAC1Dataset(root, experimenter="wehr", gating=RepeatGating(abs_mv_max=1e-3), cache=False)


# --------------------------------------------------------------------------- download (local CRCNS emulator)

LOGIN = ('<html><body><p>Invalid user name or password</p><form method="post">'
         '<input name="username"><input type="password" name="password"></form></body></html>')


def _zip_tree(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return buf.getvalue()


@pytest.fixture
def crcns(tmp_path, monkeypatch, raw):
    root, _ = raw
    payloads = {
        "crcns-ac1.zip": _zip_tree(root / "crcns-ac1"),
        "crcns-ac1-asari-results-1.zip": _zip_tree(root / "crcns-ac1-asari-results-1"),
        "crcns-ac1-asari-results-2.zip": _zip_tree(root / "crcns-ac1-asari-results-2"),
    }
    with Emulator() as emu:
        for key, value in emu.host_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
        for var in ("CRCNS_USERNAME", "CRCNS_PASSWORD"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(dl, "_sleep", lambda s: None)

        for name, data in payloads.items():
            def handle(req, data=data):
                form = req.form()
                if form.get("username") != "rat" or form.get("password") != "s3cret":
                    return Reply(200, {"Content-Type": "text/html"}, LOGIN.encode())
                return Reply(200, {"Content-Type": "application/octet-stream"}, data)

            emu.route("POST", f"/project/crcns/download/ac-1/{name}", handle)
        yield emu, payloads


def _login(monkeypatch, password="s3cret"):
    monkeypatch.setenv("CRCNS_USERNAME", "rat")
    monkeypatch.setenv("CRCNS_PASSWORD", password)


def test_download_needs_credentials(crcns, tmp_path):
    emu, _ = crcns
    with pytest.raises(CredentialsError) as err:
        CRCNSAC1Dataset(tmp_path / "dl", download=True)
    assert "CRCNS_USERNAME" in str(err.value) and "netrc" in str(err.value)
    assert emu.log == []


def test_download_rejected_credentials_html_login_page(crcns, tmp_path, monkeypatch):
    _login(monkeypatch, "wrong-one")
    with pytest.raises(CredentialsError, match="rejected") as err:
        download_ac1(tmp_path / "dl", experimenter="wehr")
    assert "wrong-one" not in str(err.value)
    assert not (tmp_path / "dl" / "crcns-ac1.zip").exists()


def test_download_wehr_fetches_only_its_archive_then_loads(crcns, tmp_path, monkeypatch, raw):
    emu, payloads = crcns
    _login(monkeypatch)
    monkeypatch.setitem(crcns_ac1.AC1_REGISTRY, "ac-1/crcns-ac1.zip", "sha256:" + sha256(payloads["crcns-ac1.zip"]))
    ds = CRCNSAC1Dataset(tmp_path / "dl", download=True, experimenter="wehr")
    check(ds, raw[1], experimenters=("wehr",))
    (req,) = emu.log
    assert req.method == "POST" and req.form()["fn"] == "ac-1/crcns-ac1.zip" and "s3cret" not in req.path
    CRCNSAC1Dataset(tmp_path / "dl", download=True, experimenter="wehr")  # nothing fetched again
    assert len(emu.log) == 1
    ds = CRCNSAC1Dataset(tmp_path / "dl", download=True)  # Asari now: the two results archives only
    assert sorted(r.form()["fn"] for r in emu.log[1:]) == ["ac-1/crcns-ac1-asari-results-1.zip",
                                                            "ac-1/crcns-ac1-asari-results-2.zip"]
    check(ds, raw[1])


def test_download_checksum_mismatch(crcns, tmp_path, monkeypatch):
    _login(monkeypatch)
    monkeypatch.setitem(crcns_ac1.AC1_REGISTRY, "ac-1/crcns-ac1.zip", "sha256:" + "0" * 64)
    with pytest.raises(ChecksumError):
        download_ac1(tmp_path / "dl", experimenter="wehr")
    assert not (tmp_path / "dl" / "crcns-ac1.zip").exists()


def test_offline_download_is_not_found(crcns, tmp_path, monkeypatch):
    emu, _ = crcns
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError):
        CRCNSAC1Dataset(tmp_path / "dl", download=True)
    assert emu.log == []
