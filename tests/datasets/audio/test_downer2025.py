"""Downer2025Dataset (TIMIT mode) on a tiny synthetic copy of the release layout."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
import torch
from fixtures.downer2025 import (
    FS,
    MVOC_SLOTS,
    N_TEST,
    N_TEST_MVOC,
    NAMES,
    SPEECH_SAMPLES,
    VECTOR_TRIAL_SESSIONS,
    TONES_HZ,
    WAV_FS,
    build_downer,
    expected_counts,
)
from fixtures.http_emulator import Emulator, file_reply, json_reply, md5
from scipy.io import savemat

from deepSTRF.datasets._errors import (
    ChecksumError,
    DatasetFormatError,
    DatasetNotFoundError,
)
from deepSTRF.datasets._storage import is_sentinel
from deepSTRF.datasets.audio import downer2025 as dw
from deepSTRF.datasets.audio.downer2025 import Downer2025Dataset, download_downer2025
from deepSTRF.utils import download as dl

CELLS = ["b_180413_Ch10", "b_180413_Ch1p", "c_190101_Ch3", "c_191125_Ch12s2", "c_191125_Ch1ps2",
         "c_191125_Ch2p", "f_200213_Ch5", "f_200213_Ch5p"]


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    parent = tmp_path_factory.mktemp("downer")
    truth = build_downer(parent / "auditory_cortex_data")
    return parent, truth


@pytest.fixture(scope="module")
def ds_raw(fixture_root):
    return Downer2025Dataset(fixture_root[0], smooth=False, cache=False)


def _T(n, dt):
    return round(n / FS * 1000.0 / dt)


# ---------------------------------------------------------------- content


def test_shapes_and_metadata(ds_raw, fixture_root):
    ds = ds_raw
    assert ds.path == str(fixture_root[0] / "auditory_cortex_data")
    assert (ds.get_S(), ds.N_neurons, ds.F, ds.dt, ds.audio_fs, ds.hop) == (4, 8, 80, 5.0, 16000, 80)
    assert ds.species == "squirrel monkey" and ds.compression == "log1p" and not ds.return_waveform
    assert [m["cell_id"] for m in ds.nrn_meta] == CELLS  # string order; bad session 180420 skipped
    for s, meta in enumerate(ds.stim_meta):
        T = _T(SPEECH_SAMPLES[s], 5.0)
        assert ds.stims[s].shape == (1, 80, T) and ds.stims[s].dtype == torch.float32
        assert meta["name"] == NAMES[s] and meta["stim_id"] == s + 1 and meta["type"] == "timit"
        assert meta["n_samples"] == SPEECH_SAMPLES[s] and meta["duration_s"] == pytest.approx(SPEECH_SAMPLES[s] / FS)
        assert list(meta["befaft_s"]) == [0.0, 0.0]
    # sentence 2 is repeated in every session, sentence 4 only in 180413: both test (N_TEST read from the YAML)
    assert [m["split"] for m in ds.stim_meta] == ["estimation", "test", "estimation", "test"]
    assert [m["n_reps_canonical"] for m in ds.stim_meta] == [1, N_TEST, 1, N_TEST]
    m = ds.nrn_meta
    assert m[1] == {"cell_id": "b_180413_Ch1p", "session_id": "180413", "animal_id": "b", "hemisphere": "RH",
                    "area_group": "non-primary", "area": "AL", "channel": 1, "channel_suffix": "p",
                    "n_channels_in_session": 2, "coord_x": 1.5, "coord_y": -2.0, "recording_type": "multi-unit"}
    assert (m[2]["hemisphere"], m[2]["area_group"], m[2]["area"], m[2]["coord_x"]) == (None, None, None, None)
    assert m[3]["n_channels_in_session"] == 4 and m[4]["channel_suffix"] == "ps2" and m[3]["channel"] == 12
    assert (m[6]["area"], m[6]["area_group"], m[6]["coord_y"]) == ("R", "core", None)
    # R per pair: 1 / N_TEST, doubled in 200213 (list played twice); 191125 never heard sentence 4
    assert [r.shape[0] for r in ds.responses[1]] == [3, 3, 3, 3, 3, 3, 6, 6]
    assert [r.shape[0] for r in ds.responses[3]] == [3, 3, 3, 1, 1, 1, 2, 2]
    assert [is_sentinel(r) for r in ds.responses[3]] == [False] * 3 + [True] * 3 + [False] * 2
    assert ds.nrn_masks.sum() == 4 * 8 - 3


@pytest.mark.parametrize("dt", [5.0, 20.0])
def test_spike_counts_match_fixture(fixture_root, dt):
    root, truth = fixture_root
    ds = Downer2025Dataset(root, dt_ms=dt, smooth=False, cache=False)
    for s, meta in enumerate(ds.stim_meta):
        T = _T(SPEECH_SAMPLES[s], dt)
        assert ds.stims[s].shape[-1] == T
        for n, cell in enumerate(CELLS):
            if not ds.nrn_masks[s, n]:
                continue
            expected = expected_counts(truth, cell, meta["stim_id"], dt, T)
            np.testing.assert_array_equal(ds.responses[s][n].numpy(), expected)


def test_both_trial_struct_layouts_are_read(fixture_root, tmp_path):
    from scipy.io import loadmat

    root, truth = fixture_root
    data = root / "auditory_cortex_data"
    vector = loadmat(data / "sessions" / "200213" / "f_200213_Ch5_MUspk.mat")["trial"]
    array = loadmat(data / "sessions" / "191125" / "c_191125_Ch2p_MUspk.mat")["trial"]
    assert "200213" in VECTOR_TRIAL_SESSIONS and vector.shape == (1, 1) and vector["stimon"][0, 0].size > 1
    assert array.shape == (1, len(truth.trials["191125"])) and array["stimon"][0, 0].size == 1
    ds = Downer2025Dataset(root, smooth=False, cache=False)
    n = [m["cell_id"] for m in ds.nrn_meta].index("f_200213_Ch5")
    reps = {m["stim_id"]: ds.responses[s][n].shape[0] for s, m in enumerate(ds.stim_meta)}
    assert reps == {c: sum(t[0] == c for t in truth.trials["200213"]) for c in reps}
    # a vector layout whose code vector is shorter than stimon names the field
    bad = tmp_path / "auditory_cortex_data"
    build_downer(bad)
    first = bad / "sessions" / "180413" / "b_180413_Ch10_MUspk.mat"
    savemat(first, {"spike": {"spktimes": np.zeros((1, 1))},
                    "trial": {"stimon": np.arange(4.0)[None], "timitStimcode": np.ones((1, 3))}})
    with pytest.raises(DatasetFormatError) as err:
        Downer2025Dataset(bad, cache=False)
    assert err.value.field == "trial.timitStimcode" and first.name in err.value.path


def test_smoothing_is_unit_gain(fixture_root, ds_raw):
    sm = Downer2025Dataset(fixture_root[0], cache=False)  # smooth=True by default: Hann K=5 at 5 ms
    core = Downer2025Dataset(fixture_root[0], smooth=False, cache=False)
    core.smooth_responses(21.0)  # built-in smoothing == the core method on the raw counts
    for s in range(sm.get_S()):
        for n in sm.nrn_masks[s].nonzero().flatten().tolist():
            assert torch.equal(sm.responses[s][n], core.responses[s][n])
    for s in range(sm.get_S()):
        for n in sm.nrn_masks[s].nonzero().flatten().tolist():
            raw = ds_raw.responses[s][n].numpy()
            want = np.stack([np.convolve(r, [0.25, 0.5, 0.25], mode="same") for r in raw])
            np.testing.assert_allclose(sm.responses[s][n].numpy(), want, atol=1e-6)


def test_spectrogram_front_end(fixture_root):
    root = fixture_root[0]
    ds = Downer2025Dataset(root, spec_zscore=False, n_mels=24, fmax=6000.0, smooth=False, cache=False)
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)
    edges = np.linspace(0.0, mel(6000.0), 24 + 2)
    for s, f in enumerate(TONES_HZ):
        spec = ds.stims[s][0].numpy()
        T = spec.shape[1]
        n_frames = 1 + (SPEECH_SAMPLES[s] - 400) // 80
        assert np.all(spec[:, n_frames:] == 0) and np.all(spec[:, :n_frames] != 0)  # right-padded tail
        band = int(spec[:, :n_frames].mean(axis=1).argmax())
        assert edges[band] < mel(f) < edges[band + 2], (f, band)
        assert T == _T(SPEECH_SAMPLES[s], 5.0)
    z = Downer2025Dataset(root, dt_ms=20.0, smooth=False, cache=False)
    for s in range(z.get_S()):
        spec = z.stims[s][0].numpy()
        n_frames = (1 + (SPEECH_SAMPLES[s] - 400) // 160) // 2
        assert spec.shape == (80, _T(SPEECH_SAMPLES[s], 20.0))
        np.testing.assert_allclose(spec[:, :n_frames].mean(axis=1), 0.0, atol=1e-4)


def test_waveform_mode(fixture_root, ds_raw):
    root = fixture_root[0]
    ds = Downer2025Dataset(root, return_waveform=True, smooth=False, cache=False)
    assert ds.hop == 80 and ds.F == 80
    for s, f in enumerate(TONES_HZ):
        T = _T(SPEECH_SAMPLES[s], 5.0)
        wave = ds.stims[s]
        assert wave.shape == (1, T * 80)
        t = np.arange(T * 80) / FS
        np.testing.assert_allclose(wave[0].numpy(), 0.2 * np.sin(2 * np.pi * f * t), atol=1e-3)  # trimmed
        for n in ds.nrn_masks[s].nonzero().flatten().tolist():
            assert torch.equal(ds.responses[s][n], ds_raw.responses[s][n])
    low = Downer2025Dataset(root, return_waveform=True, audio_fs=8000, dt_ms=10.0, smooth=False, cache=False)
    assert low.stims[0].shape == (1, _T(SPEECH_SAMPLES[0], 10.0) * 80)


def test_filters_and_subsets(fixture_root, ds_raw):
    root = fixture_root[0]
    ids = lambda d: [m["cell_id"] for m in d.nrn_meta]
    assert ids(Downer2025Dataset(root, animals=["b"], cache=False)) == CELLS[:2]
    assert ids(Downer2025Dataset(root, areas=["A1"], cache=False)) == CELLS[3:6]
    assert ids(Downer2025Dataset(root, areas=["primary"], cache=False)) == CELLS[3:]
    as_int = Downer2025Dataset(root, sessions=[191125], smooth=False, cache=False)  # reference: selects nothing
    assert ids(as_int) == CELLS[3:6] == ids(Downer2025Dataset(root, sessions=["191125"], cache=False))
    # test split over the whole release: sentence 4 stays "test" although 191125 never played it
    assert [m["split"] for m in as_int.stim_meta] == ["estimation", "test", "estimation", "test"]
    assert not as_int.nrn_masks[3].any()
    test = Downer2025Dataset(root, subset="test", smooth=False, cache=False)
    est = Downer2025Dataset(root, subset="estimation", smooth=False, cache=False)
    assert [m["stim_id"] for m in test.stim_meta] == [2, 4] and [m["stim_id"] for m in est.stim_meta] == [1, 3]
    assert test.N_neurons == est.N_neurons == 8
    assert torch.equal(test.responses[0][0], ds_raw.responses[1][0])


def test_attach_well_tuned_lists(fixture_root):
    assert (len(dw.AHMED2025_WELL_TUNED_TIMIT), len(dw.AHMED2025_WELL_TUNED_MVOCS)) == (417, 476)
    assert list(dw.AHMED2025_WELL_TUNED_TIMIT) == sorted(dw.AHMED2025_WELL_TUNED_TIMIT)
    ds = Downer2025Dataset(fixture_root[0], sessions=["191125", "200213"], smooth=False, cache=False)
    assert ds.attach_ahmed2025_well_tuned() == 1  # c_191125_Ch2p is listed; f_200213_Ch5 is not
    assert [m["ahmed2025_timit_well_tuned"] for m in ds.nrn_meta] == [False, False, True, False, False]


def test_paper_tuning(fixture_root):
    ds = Downer2025Dataset(fixture_root[0], smooth=False, cache=False)
    with pytest.raises(ValueError, match="integer multiple"):
        ds.compute_paper_tuning(dt_ms_analysis=12.0)
    # a neuron whose repeats are identical and structured is tuned; the fixture's random spikes are not
    for s in (1, 3):
        cell = ds.responses[s][0]
        pattern = torch.zeros(cell.shape[-1])
        pattern[::7] = 5.0
        pattern[3::11] = 2.0
        cell.copy_(pattern.expand_as(cell))
    out = ds.compute_paper_tuning(n_resamples=300, verbose=False)
    assert out["stimuli"] == "timit" and out["n_with_data"] == 5  # 191125 lacks sentence 4: no data
    meta = ds.nrn_meta
    assert meta[0]["ahmed2025_timit_tuned"] and meta[0]["ahmed2025_timit_well_tuned"]
    assert meta[0]["ahmed2025_timit_p_wilcoxon"] < 1e-10 and meta[0]["ahmed2025_timit_delta_normalized"] > 1
    assert np.isnan(meta[3]["ahmed2025_timit_p_wilcoxon"]) and not meta[3]["ahmed2025_timit_tuned"]
    again = [dict(m) for m in meta]
    ds.compute_paper_tuning(n_resamples=300, verbose=False)
    assert [m["ahmed2025_timit_p_wilcoxon"] for m in again if not np.isnan(m["ahmed2025_timit_p_wilcoxon"])] == \
        [m["ahmed2025_timit_p_wilcoxon"] for m in meta if not np.isnan(m["ahmed2025_timit_p_wilcoxon"])]
    est = Downer2025Dataset(fixture_root[0], subset="estimation", smooth=False, cache=False)
    with pytest.raises(RuntimeError, match="no test stimulus"):
        est.compute_paper_tuning(n_resamples=10, verbose=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"stimuli": "speech"}, "stimuli="),
    ({"subset": "val"}, "subset="),
    ({"compression": "sqrt"}, "compression="),
    ({"dt_ms": 15.0}, "multiple of 10"),
    ({"dt_ms": -1}, "dt_ms"),
    ({"n_mels": 3}, "n_mels"),
    ({"fmax": 9000.0}, "Nyquist"),
    ({"return_waveform": True, "audio_fs": 16001}, "integer"),
    ({"animals": ["x"]}, "unknown id"),
    ({"areas": ["V1"]}, "unknown label"),
    ({"sessions": ["999999"]}, "no session passes"),
])
def test_argument_errors_before_parsing(fixture_root, monkeypatch, kwargs, match):
    monkeypatch.setattr(dw, "_read_spikes", lambda *a: pytest.fail("spikes read despite a bad argument"))
    with pytest.raises(ValueError, match=match):
        Downer2025Dataset(fixture_root[0], **kwargs)


# ---------------------------------------------------------------- vocalisations


def _voc_truth(truth):
    """id -> (first onset sample, minimum slot length in samples, number of slots)."""
    out = {}
    for v, on, n in truth.slots:
        first, shortest, count = out.get(v, (on, n, 0))
        out[v] = (first, min(shortest, n), count + 1)
    return out


@pytest.mark.parametrize("dt", [5.0, 20.0])
def test_mvocs_content(fixture_root, dt):
    root, truth = fixture_root
    ds = Downer2025Dataset(root, stimuli="mvocs", dt_ms=dt, smooth=False, cache=False)
    vocs = _voc_truth(truth)
    assert [m["stim_id"] for m in ds.stim_meta] == sorted(MVOC_SLOTS) and ds.N_neurons == 8
    assert ds.audio_fs == 16000 and ds.F == 80
    for s, meta in enumerate(ds.stim_meta):
        _first, shortest, count = vocs[meta["stim_id"]]
        T = round(shortest / WAV_FS * 1000.0 / dt)
        assert meta["name"] == f"mvoc_{meta['stim_id']:03d}" and meta["type"] == "mvoc"
        assert meta["duration_s"] == pytest.approx(shortest / WAV_FS) and meta["n_samples"] == shortest
        assert meta["n_reps_in_wav"] == count == MVOC_SLOTS[meta["stim_id"]]
        assert meta["split"] == ("test" if count == N_TEST_MVOC else "estimation")  # exactly, not >=
        assert meta["n_reps_canonical"] == (N_TEST_MVOC if count == N_TEST_MVOC else 1)
        assert ds.stims[s].shape == (1, 80, T)
        for n, cell in enumerate(CELLS):
            if cell == "c_190101_Ch3":  # session without vocalisation trials
                assert not ds.nrn_masks[s, n] and is_sentinel(ds.responses[s][n])
                continue
            expected = expected_counts(truth, cell, meta["stim_id"], dt, T, mvoc=True)
            np.testing.assert_array_equal(ds.responses[s][n].numpy(), expected)
    # R: slots, doubled where the WAV was played twice (200213), one slot fewer of voc 3 in 191125
    voc3 = [m["stim_id"] for m in ds.stim_meta].index(3)
    assert [ds.responses[voc3][n].shape[0] for n in (0, 3, 6)] == [6, 5, 12]
    assert [m["split"] for m in Downer2025Dataset(root, stimuli="mvocs", subset="test", cache=False).stim_meta] \
        == ["test", "test"]


def test_mvocs_waveform_is_channel_mean(fixture_root):
    root, truth = fixture_root
    ds = Downer2025Dataset(root, stimuli="mvocs", return_waveform=True, audio_fs=WAV_FS, dt_ms=5.0,
                           smooth=False, cache=False)
    assert ds.hop == 205
    for s, meta in enumerate(ds.stim_meta):
        first, shortest, _ = _voc_truth(truth)[meta["stim_id"]]
        T = round(shortest / WAV_FS * 1000.0 / 5.0)
        src = truth.wav[first:first + shortest].mean(axis=1)  # reference: both channels averaged
        n = min(src.size, T * 205)
        assert ds.stims[s].shape == (1, T * 205)
        np.testing.assert_allclose(ds.stims[s][0, :n].numpy(), src[:n], atol=1e-6)
        assert float(ds.stims[s][0, n:].abs().sum()) == 0.0


def test_mvocs_missing_files_and_yaml_key(tmp_path, fixture_root):
    root = tmp_path / "auditory_cortex_data"
    build_downer(root)
    (root / "stimuli" / "MonkVocs_15Blocks.wav").unlink()
    Downer2025Dataset(tmp_path, sessions="180413", cache=False)  # TIMIT does not need the WAV
    with pytest.raises(DatasetNotFoundError, match="MonkVocs_15Blocks.wav"):
        Downer2025Dataset(tmp_path, stimuli="mvocs", cache=False)
    both = Downer2025Dataset(fixture_root[0], cache=False) + Downer2025Dataset(fixture_root[0], stimuli="mvocs",
                                                                             cache=False)
    assert both.get_S() == 4 + len(MVOC_SLOTS)
    yml = fixture_root[0] / "auditory_cortex_data" / "sessions_metadata.yml"
    (root / "sessions_metadata.yml").write_text(yml.read_text().replace("  mVocs: 5\n", ""))
    sf_root = fixture_root[0] / "auditory_cortex_data" / "stimuli" / "MonkVocs_15Blocks.wav"
    (root / "stimuli" / "MonkVocs_15Blocks.wav").write_bytes(sf_root.read_bytes())
    with pytest.raises(DatasetFormatError) as err:
        Downer2025Dataset(tmp_path, stimuli="mvocs", cache=False)
    assert err.value.field == "stim_wise_num_repeats.mVocs"


# ---------------------------------------------------------------- cache


def test_cache_reuse_and_invalidation(fixture_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    root = fixture_root[0]
    calls = []
    real = dw._read_spikes
    monkeypatch.setattr(dw, "_read_spikes", lambda p: calls.append(p) or real(p))
    first = Downer2025Dataset(root)
    assert len(calls) == 8
    second = Downer2025Dataset(root)
    assert len(calls) == 8  # nothing re-read
    assert list((tmp_path / "cache").glob("Downer2025-*.dscache"))
    for a, b in zip(first.stims, second.stims):
        assert torch.equal(a, b)
    for ra, rb in zip(first.responses, second.responses):
        for a, b in zip(ra, rb):
            assert torch.equal(a, b) or (is_sentinel(a) and is_sentinel(b))
    assert torch.equal(first.nrn_masks, second.nrn_masks) and first.nrn_meta == second.nrn_meta
    Downer2025Dataset(root, subset="test")  # applied after the cache
    assert len(calls) == 8
    Downer2025Dataset(root, n_mels=40)  # a content knob rebuilds
    assert len(calls) == 16
    f = root / "auditory_cortex_data" / "sessions" / "200213" / "f_200213_Ch5p_MUspk.mat"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    Downer2025Dataset(root)
    assert len(calls) == 24


# ---------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        Downer2025Dataset(tmp_path / "nothing")
    text = str(err.value)
    assert "sessions_metadata.yml" in text and "download=True" in text and "download_downer2025" in text
    assert isinstance(err.value, FileNotFoundError)


def test_format_errors_name_file_and_field(tmp_path):
    root = tmp_path / "auditory_cortex_data"
    build_downer(root)
    bad = root / "sessions" / "200213" / "f_200213_Ch5p_MUspk.mat"
    savemat(bad, {"spike": {"times": np.zeros((3, 1))}, "trial": np.zeros(1)})
    with pytest.raises(DatasetFormatError) as err:
        Downer2025Dataset(tmp_path, cache=False)
    assert err.value.field == "spike.spktimes" and bad.name in err.value.path
    first = root / "sessions" / "180413" / "b_180413_Ch10_MUspk.mat"
    savemat(first, {"spike": {"spktimes": np.zeros((1, 1))}, "trial": {"stimon": np.zeros((1, 1))}})
    with pytest.raises(DatasetFormatError) as err:
        Downer2025Dataset(tmp_path, cache=False)
    assert err.value.field == "trial.timitStimcode" and first.name in err.value.path
    yml = root / "sessions_metadata.yml"
    yml.write_text("bad_sessions: []\n")
    with pytest.raises(DatasetFormatError) as err:
        Downer2025Dataset(tmp_path, cache=False)
    assert err.value.field == "stim_wise_num_repeats.timit" and "sessions_metadata.yml" in err.value.path


# ---------------------------------------------------------------- download


@pytest.fixture
def zenodo(monkeypatch, fixture_root):
    monkeypatch.setattr(dl, "_sleep", lambda s: None)
    folder = fixture_root[0] / "auditory_cortex_data"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    data = buf.getvalue()
    with Emulator() as emu:
        monkeypatch.setenv("DEEPSTRF_ZENODO_URL", emu.base)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        rec = f"/api/records/{dw.DOWNER_ZENODO_RECORD}"
        key = dw.DOWNER_ZENODO_ARCHIVE
        emu.route("GET", rec, json_reply({"id": dw.DOWNER_ZENODO_RECORD, "files": [
            {"id": "1", "key": key, "size": len(data), "checksum": f"md5:{md5(data)}",
             "links": {"self": f"{emu.base}{rec}/files/{key}/content"}}]}))
        emu.route("GET", f"{rec}/files/{key}/content", file_reply(data))
        emu.data = data
        yield emu


def test_download_then_load(zenodo, tmp_path):
    dest = tmp_path / "dl"
    ds = Downer2025Dataset(dest, download=True, smooth=False, cache=False)
    assert ds.N_neurons == 8 and (dest / "auditory_cortex_data.zip").is_file()
    assert ds.path == str(dest / "auditory_cortex_data")
    assert any(r.path.endswith("/content") for r in zenodo.log)
    n = len(zenodo.log)
    assert download_downer2025(dest) == str(dest / "auditory_cortex_data")
    assert len(zenodo.log) == n  # already unpacked: no request
    # the unpacked folder itself with download=True: no second download into it
    Downer2025Dataset(dest / "auditory_cortex_data", download=True, smooth=False, cache=False)
    assert len(zenodo.log) == n


def test_download_checksum_mismatch(zenodo, tmp_path):
    bad = bytearray(zenodo.data)
    bad[100] ^= 1
    zenodo.route("GET", f"/api/records/{dw.DOWNER_ZENODO_RECORD}/files/{dw.DOWNER_ZENODO_ARCHIVE}/content",
                 file_reply(bytes(bad)))
    with pytest.raises(ChecksumError) as err:
        download_downer2025(tmp_path / "bad")
    assert md5(zenodo.data) in str(err.value)
    assert not (tmp_path / "bad" / "auditory_cortex_data").exists()


def test_default_root_from_environment(monkeypatch, tmp_path):
    build_downer(tmp_path / "Downer2025" / "auditory_cortex_data")
    monkeypatch.setenv("DEEPSTRF_DATA", str(tmp_path))
    ds = Downer2025Dataset(sessions="180413", smooth=False, cache=False)
    assert ds.path == str(tmp_path / "Downer2025" / "auditory_cortex_data") and ds.N_neurons == 2
