"""EspejoDataset end to end on a tiny NEMS-archive fixture, and its download helpers against 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import tarfile
import warnings

import numpy as np
import pytest
import torch

from deepSTRF.datasets._errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from deepSTRF.datasets.audio import espejo as espejo_mod
from deepSTRF.datasets.audio.espejo import EspejoDataset, download_espejo, download_espejo_nat_waveforms
from deepSTRF.utils import download as dl
from fixtures.espejo import WAVS, build_espejo
from fixtures.http_emulator import Emulator, file_reply, json_reply, md5


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("espejo")
    return root, build_espejo(root)


@pytest.fixture
def data(fixture_root, tmp_path):
    """A private copy (tests may touch or corrupt files)."""
    src, expected = fixture_root
    dst = tmp_path / "Espejo"
    shutil.copytree(src, dst)
    return dst, expected


@pytest.fixture(scope="module")
def nat(fixture_root, tmp_path_factory):
    root, expected = fixture_root
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPSTRF_CACHE", str(tmp_path_factory.mktemp("cache")))
    ds = EspejoDataset(root)
    mp.undo()
    return ds, expected["nat"]


def _check_against(ds, exp):
    names = [m["name"] for m in ds.stim_meta]
    assert names == sorted(exp.stims)
    assert [m["cell_id"] for m in ds.nrn_meta] == exp.cells
    for s, name in enumerate(names):
        mat = exp.stims[name]
        assert ds.stims[s].shape == (1, mat.shape[0], mat.shape[1])
        assert ds.stims[s].dtype == torch.float32
        torch.testing.assert_close(ds.stims[s][0], torch.from_numpy(mat.astype(np.float32)))
        for n, cell in enumerate(exp.cells):
            got = ds.responses[s][n]
            if (name, cell) in exp.counts:
                want = exp.counts[(name, cell)]
                assert tuple(got.shape) == want.shape
                np.testing.assert_array_equal(got.numpy(), want.astype(np.float32))
                assert bool(ds.nrn_masks[s, n])
            else:
                assert got.shape == (1, 1) and torch.isnan(got).all()
                assert not bool(ds.nrn_masks[s, n])


def test_nat_shapes_values_and_masks(nat):
    ds, exp = nat
    assert ds.get_S() == 5 and ds.N_neurons == 5
    assert ds.F == 18 and ds.dt == 10.0 and ds.audio_fs is None and ds.return_waveform is False
    assert ds.species == "ferret" and ds.hearing_range_hz == (200.0, 40000.0)
    _check_against(ds, exp)


def test_nat_quirks(nat):
    ds, exp = nat
    names = [m["name"] for m in ds.stim_meta]
    cells = [m["cell_id"] for m in ds.nrn_meta]
    c, d, a = names.index("STIM_c.wav"), names.index("STIM_d.wav"), names.index("STIM_a.wav")
    # c: first-seen window 200 bins; the second site's 230-bin rasters are cut to 200
    assert ds.stims[c].shape[-1] == 200
    assert ds.responses[c][cells.index("AMT005b-03-1")].shape == (2, 200)
    # d: the first site played it without its matrix -> its cells get sentinels
    assert not bool(ds.nrn_masks[d, cells.index("AMT003c-11-1")])
    # d: 250-bin window in the last site zero-padded to 260
    r = ds.responses[d][cells.index("BRT010a-05-1")]
    assert r.shape == (1, 260) and float(r[0, 250:].sum()) == 0.0
    # a: the same cell recorded in two sessions -> 3 + 2 rows, n_repeats is the per-site max
    assert ds.responses[a][cells.index("AMT003c-11-1")].shape[0] == 5
    assert ds.stim_meta[a]["n_repeats"] == 3


def test_nat_metadata(nat):
    ds, exp = nat
    by_name = {m["name"]: m for m in ds.stim_meta}
    assert {k: m["split"] for k, m in by_name.items()} == exp.split
    assert exp.split == {"STIM_a.wav": "test", "STIM_b.wav": "test", "STIM_c.wav": "test",
                         "STIM_d.wav": "estimation", "STIM_e.wav": "estimation"}
    assert {k: m["n_repeats"] for k, m in by_name.items()} == exp.n_repeats
    m = by_name["STIM_b.wav"]
    assert m["type"] == "nat" and m["n_samples"] == 120 and m["duration_s"] == pytest.approx(1.2)
    meta = ds.nrn_meta[0]
    assert meta == {"cell_id": "AMT003c-11-1", "experiment_set": "nat", "site": "AMT003c",
                    "animal_id": "AMT", "channel": "11", "unit": "1"}


def test_selection_by_own_metadata(nat):
    ds, _ = nat
    sel = ds.select_pop_by_nrn_attr("site", "AMT003c")
    assert [ds.nrn_meta[i]["cell_id"] for i in sel] == ["AMT003c-11-1", "AMT003c-12-2", "AMT003c-14-1"]
    ds.reset_pop_selection()
    test = ds.select_stims_by_attr("split", "test")
    assert [ds.stim_meta[s]["name"] for s in test] == ["STIM_a.wav", "STIM_b.wav", "STIM_c.wav"]
    assert len(ds) == 3
    ds.reset_stim_selection()


def test_vmn_hdf5_and_csv_sites(fixture_root):
    root, expected = fixture_root
    ds = EspejoDataset(root, stimuli="vmn")
    exp = expected["vmn"]
    assert ds.F == 2 and ds.get_S() == 3 and ds.N_neurons == 3
    _check_against(ds, exp)
    assert ds.nrn_meta[0] == {"cell_id": "btn144a-c1", "experiment_set": "vmn", "site": "btn144a",
                              "animal_id": "btn", "channel": "c1", "unit": None}
    assert [m["split"] for m in ds.stim_meta] == ["test", "test", "estimation"]


def test_subset_and_cells(fixture_root):
    root, expected = fixture_root
    test = EspejoDataset(root, subset="test")
    est = EspejoDataset(root, subset="estimation")
    assert [m["name"] for m in test.stim_meta] == ["STIM_a.wav", "STIM_b.wav", "STIM_c.wav"]
    assert [m["name"] for m in est.stim_meta] == ["STIM_d.wav", "STIM_e.wav"]
    assert test.N_neurons == est.N_neurons == 5  # neurons are not dropped
    sub = EspejoDataset(root, cells=["BRT010a-05-1", "AMT003c-12-2", "nope-1-1"])
    assert [m["cell_id"] for m in sub.nrn_meta] == ["AMT003c-12-2", "BRT010a-05-1"]
    full = EspejoDataset(root)
    torch.testing.assert_close(sub.responses[0][0], full.responses[0][1])
    with pytest.raises(ValueError, match="matches no cell"):
        EspejoDataset(root, cells=["XYZ001a-1-1"])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(stimuli="foo"), ValueError, "stimuli"),
    (dict(dt_ms=5.0), ValueError, "dt_ms"),
    (dict(subset="train"), ValueError, "subset"),
    (dict(cells="AMT003c-11-1"), TypeError, "cells"),
    (dict(stimuli="vmn", return_waveform=True), ValueError, "VMN"),
    (dict(return_waveform=True, audio_fs=44150), ValueError, "audio_fs"),
])
def test_bad_arguments(fixture_root, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EspejoDataset(fixture_root[0], **kwargs)


def test_waveform_mode(fixture_root):
    root, expected = fixture_root
    spec = EspejoDataset(root)
    ds = EspejoDataset(root, return_waveform=True)
    assert ds.audio_fs == 44100 and ds.hop == 441 and ds.F == 18 and ds.return_waveform
    onset = 22050
    for s, meta in enumerate(ds.stim_meta):
        T = spec.stims[s].shape[-1]
        assert ds.stims[s].shape == (1, T * 441)
        wav = ds.stims[s][0].numpy()
        assert np.all(wav[:onset] == 0)
        rate, dur, freq = WAVS[meta["name"][5:]]
        n = min(int(round(dur * 44100)), T * 441 - onset)
        seg = wav[onset:onset + n]
        assert np.abs(seg).max() > 0.05
        assert np.all(wav[onset + int(dur * 44100) + 50:] == 0)  # short sounds padded with zeros
        spectrum = np.abs(np.fft.rfft(seg))
        assert np.fft.rfftfreq(seg.size, 1 / 44100)[spectrum.argmax()] == pytest.approx(freq, abs=5)
        for n_ in range(ds.N_neurons):  # responses identical to spectrogram mode
            torch.testing.assert_close(ds.responses[s][n_], spec.responses[s][n_], equal_nan=True)


def test_waveform_audio_fs_must_give_integer_hop(fixture_root):
    with pytest.raises(ValueError, match="multiple of 100"):
        EspejoDataset(fixture_root[0], return_waveform=True, audio_fs=22050)
    ds = EspejoDataset(fixture_root[0], return_waveform=True, audio_fs=16000, subset="test")
    assert ds.hop == 160 and ds.stims[0].shape[-1] == ds.stims[0].shape[-1] // 160 * 160


def test_missing_wav_is_reported(data):
    root, _ = data
    (root / "nat_waveforms" / "b.wav").unlink()
    with pytest.raises(DatasetNotFoundError, match="b.wav") as info:
        EspejoDataset(root, return_waveform=True)
    assert "download_espejo_nat_waveforms" in str(info.value)


def test_cache_reuse_and_invalidation(data, monkeypatch):
    root, _ = data
    calls = []
    real = espejo_mod._read_recording
    monkeypatch.setattr(espejo_mod, "_read_recording", lambda *a: calls.append(a[0]) or real(*a))
    first = EspejoDataset(root)
    assert len(calls) == 4
    second = EspejoDataset(root)
    assert len(calls) == 4  # reloaded from the cache, nothing parsed
    for s in range(first.get_S()):
        torch.testing.assert_close(first.stims[s], second.stims[s])
    EspejoDataset(root, subset="test")  # a knob that changes the content rebuilds
    assert len(calls) == 8
    archive = root / "A1_natural_sounds/NAT/AMT005b_33cc.tgz"
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touching a raw file rebuilds
    EspejoDataset(root)
    assert len(calls) == 12
    EspejoDataset(root, cache=False)
    assert len(calls) == 16


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="A1_natural_sounds/NAT") as info:
        EspejoDataset(tmp_path / "nothing")
    assert "download_espejo('nat'" in str(info.value)


def test_default_root_uses_deepstrf_data(data, monkeypatch):
    root, _ = data
    monkeypatch.setenv("DEEPSTRF_DATA", str(root.parent))
    assert EspejoDataset(stimuli="vmn").path == str(root)


def test_truncated_archive(data):
    root, _ = data
    archive = root / "A1_natural_sounds/NAT/AMT005b_33cc.tgz"
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DatasetFormatError, match="AMT005b_33cc.tgz") as info:
        EspejoDataset(root)
    assert info.value.field == "archive"


def _rewrite(archive, edit):
    with tarfile.open(archive, "r:gz") as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(archive, "w:gz") as tf:
        for m, data in members:
            data = edit(m.name, data)
            if data is None:
                continue
            m.size = len(data)
            import io

            tf.addfile(m, io.BytesIO(data))


def test_corrupt_members(data):
    root, _ = data
    archive = root / "A1_natural_sounds/NAT/AMT003c_9f8e.tgz"
    _rewrite(archive, lambda name, d: d.replace(b'"chans"', b'"chanz"') if name.endswith(".resp.json") else d)
    with pytest.raises(DatasetFormatError, match="resp.json") as info:
        EspejoDataset(root)
    assert info.value.field == "chans"
    _rewrite(archive, lambda name, d: None if name.endswith(".resp.epoch.csv") else d)
    with pytest.raises(DatasetFormatError, match="resp.epoch.csv"):
        EspejoDataset(root)


def test_wrong_release_folder(data):
    root, _ = data
    vmn = root / "A1_voc_mod_noise/VMN/btn144a_aa01.tgz"
    shutil.copy(vmn, root / "A1_natural_sounds/NAT/ZZZ001a_0000.tgz")
    with pytest.raises(DatasetFormatError, match="stimfmt"):
        EspejoDataset(root)


# --------------------------------------------------------------------------- downloads


@pytest.fixture
def server(monkeypatch, tmp_path):
    with Emulator() as emu:
        for key, value in emu.host_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("DEEPSTRF_BITBUCKET_URL", emu.base + "/bb")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setattr(dl, "_sleep", lambda s: None)
        yield emu


def _release_tgz(src_root, sub, tmp_path) -> bytes:
    out = tmp_path / "release.tgz"
    with tarfile.open(out, "w:gz") as tf:
        tf.add(src_root / sub, arcname=sub)
    return out.read_bytes()


def _zenodo_routes(emu, name, payload, checksum):
    record = espejo_mod.ESPEJO_ZENODO_RECORD
    emu.route("GET", f"/api/records/{record}", json_reply({
        "id": record, "doi": "10.5281/zenodo.3445557", "metadata": {"license": {"id": "cc-by-4.0"}},
        "files": [{"id": "x", "key": name, "size": len(payload), "checksum": f"md5:{checksum}",
                   "links": {"self": f"{emu.base}/api/records/{record}/files/{name}/content"}}]}))
    emu.route("GET", f"/api/records/{record}/files/{name}/content", file_reply(payload))


def test_download_espejo_vmn(server, fixture_root, tmp_path):
    src, expected = fixture_root
    payload = _release_tgz(src, "A1_voc_mod_noise", tmp_path)
    _zenodo_routes(server, "A1_voc_mod_noise.tgz", payload, md5(payload))
    dest = tmp_path / "dl"
    assert download_espejo("vmn", dest) == str(dest)
    assert (dest / "A1_voc_mod_noise.tgz").is_file()
    ds = EspejoDataset(dest, stimuli="vmn")
    assert ds.N_neurons == 3
    n = len(server.log)
    download_espejo("vmn", dest)
    EspejoDataset(dest, stimuli="vmn", download=True)
    assert len(server.log) == n  # nothing fetched again


def test_constructor_download(server, fixture_root, tmp_path):
    src, _ = fixture_root
    payload = _release_tgz(src, "A1_voc_mod_noise", tmp_path)
    _zenodo_routes(server, "A1_voc_mod_noise.tgz", payload, md5(payload))
    ds = EspejoDataset(tmp_path / "ctor", stimuli="vmn", download=True)
    assert ds.get_S() == 3
    assert server.requests_to("/api/records/3445557")[0].headers["user-agent"].startswith("deepSTRF/")


def test_download_espejo_checksum_mismatch(server, fixture_root, tmp_path):
    src, _ = fixture_root
    payload = _release_tgz(src, "A1_voc_mod_noise", tmp_path)
    _zenodo_routes(server, "A1_voc_mod_noise.tgz", payload, "0" * 32)
    dest = tmp_path / "dl"
    with pytest.raises(ChecksumError, match="A1_voc_mod_noise.tgz"):
        download_espejo("vmn", dest)
    assert not (dest / "A1_voc_mod_noise.tgz").exists()
    assert not (dest / "A1_voc_mod_noise").exists()


def test_download_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError):
        download_espejo("nat", tmp_path / "off")
    with pytest.raises(DatasetNotFoundError):
        download_espejo_nat_waveforms(["STIM_a.wav"], tmp_path / "off")


def test_download_nat_waveforms_probes_subdirs(server, tmp_path):
    wav = (tmp_path / "src.wav")
    import soundfile as sf

    sf.write(wav, np.zeros(441, dtype=np.float32), 44100, subtype="PCM_16")
    data = wav.read_bytes()
    base = "/bb/lbhb/baphy/raw/master/Config/lbhb/SoundObjects/@NaturalSounds"
    name = "cat10000_rec1 buzz & more.wav"  # spaces and '&' must be URL-quoted
    server.route("GET", f"{base}/sounds_set4/{name}", file_reply(data, content_type="audio/wav"))
    server.route("GET", f"{base}/sounds/plain.wav", file_reply(data, content_type="audio/wav"))
    dest = tmp_path / "Espejo"
    with pytest.warns(RuntimeWarning, match="STIM_absent.wav"):
        got = download_espejo_nat_waveforms([f"STIM_{name}", "STIM_plain.wav", "STIM_plain.wav",
                                             "STIM_absent.wav"], dest, progress=False)
    assert set(got) == {f"STIM_{name}", "STIM_plain.wav"}
    assert (dest / "nat_waveforms" / name).read_bytes() == data
    probed = [r.path.rsplit("/", 2)[-2] for r in server.log if r.path.endswith(name)]
    assert probed == ["sounds_set3", "sounds_set4"]  # first hit wins
    raw_paths = [r for r in server.log if "cat10000" in r.path]
    assert all(r.headers["user-agent"].startswith("deepSTRF/") for r in raw_paths)
    n = len(server.log)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = download_espejo_nat_waveforms([f"STIM_{name}"], dest)
    assert again == {f"STIM_{name}": str(dest / "nat_waveforms" / name)} and len(server.log) == n
