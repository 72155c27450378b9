"""Wingert2026Dataset end to end on the fixture of ``tests/fixtures/wingert2026.py``."""

from __future__ import annotations

import io
import math
import os
import zipfile

import numpy as np
import pytest
import torch
from fixtures.http_emulator import Emulator, file_reply, json_reply, md5
from fixtures.wingert2026 import (
    ABSENT_CELL,
    AUDIO_FS,
    CSV_ROWS,
    SESSIONS,
    SILENT_CELL,
    build_wingert,
    expected_counts,
    write_cell_list,
)

from deepSTRF.datasets._errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from deepSTRF.datasets._storage import is_sentinel
from deepSTRF.datasets.audio import wingert2026 as wg
from deepSTRF.datasets.audio.wingert2026 import (
    Wingert2026Dataset,
    download_wingert2026,
    parse_wingert_cell_id,
    read_wingert_cell_list,
)
from deepSTRF.utils import download as dl

pytestmark = pytest.mark.filterwarnings("ignore:Wingert2026:UserWarning")

DEFAULT_CELLS = [r[0] for r in CSV_ROWS if r[2] in ("A1", "PEG", "AC", "HC")]
SESSION_OF_ARCHIVE = {s.session: s for s in SESSIONS}


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("wingert")
    truth = build_wingert(root)
    return root, truth


@pytest.fixture(scope="module")
def ds_default(fixture_root):
    return Wingert2026Dataset(fixture_root[0], cache=False)


def _stim_index(ds, session, label):
    return next(s for s, m in enumerate(ds.stim_meta) if m["session"] == session and m["name"] == label)


# ---------------------------------------------------------------- shapes, order, values


def test_shapes_order_and_attributes(ds_default):
    ds = ds_default
    assert ds.dt == 10.0 and ds.F == 32 and ds.audio_fs is None and ds.return_waveform is False
    assert ds.species == "ferret" and ds.hearing_range_hz == (200.0, 40000.0) and ds.subset == "all"
    assert [m["cell_id"] for m in ds.nrn_meta] == DEFAULT_CELLS  # csv order, unlabelled excluded
    assert ds.N_neurons == len(DEFAULT_CELLS) == 12
    expected = [(s.session, label) for s in sorted(SESSIONS, key=lambda s: s.session) if s.session != "PRN081b"
                for label in sorted(s.stims)]
    assert [(m["session"], m["name"]) for m in ds.stim_meta] == expected
    for s, meta in enumerate(ds.stim_meta):
        T = SESSION_OF_ARCHIVE[meta["session"]].T
        assert ds.stims[s].shape == (1, 32, T) and ds.stims[s].dtype == torch.float32
        for n, nm in enumerate(ds.nrn_meta):
            cell = ds.responses[s][n]
            same = nm["session"] == meta["session"] and nm["cell_id"] != ABSENT_CELL
            assert bool(ds.nrn_masks[s, n]) == same
            if same:
                R = SESSION_OF_ARCHIVE[meta["session"]].stims[meta["name"]]
                assert cell.shape == (R, T) and cell.dtype == torch.float32
            else:
                assert is_sentinel(cell)


def test_responses_are_counts_scaled_by_neuron_max(ds_default, fixture_root):
    ds, truth = ds_default, fixture_root[1]
    for n, nm in enumerate(ds.nrn_meta):
        cell = nm["cell_id"]
        if cell == ABSENT_CELL:
            continue
        peak = truth.cell_max(cell)
        for label in SESSION_OF_ARCHIVE[nm["session"]].stims:
            got = ds.responses[_stim_index(ds, nm["session"], label)][n]
            raw = truth.counts[(nm["session"], label, cell)]
            want = raw / peak if peak > 0 else raw
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=0)
        if cell == SILENT_CELL:
            assert all(float(ds.responses[s][n].abs().sum()) == 0 for s in ds.nrn_masks[:, n].nonzero().flatten())
        else:
            assert max(float(ds.responses[s][n].max()) for s in ds.nrn_masks[:, n].nonzero().flatten()) == 1.0


def test_binning_uses_the_nems_rule_not_relative_floor():
    # start 1.237 s (bin 123.7 -> 124); spike at 1.3085 s: absolute bin 130 -> 6; relative floor would say 7
    got = expected_counts(np.array([1.3085]), 1.237, 3.0, 20)
    assert got[6] == 1 and got.sum() == 1
    binned = wg.bin_trials_by_index(np.floor(np.array([1.3085]) * 100), np.array([0]), 1, 20, 1.0,
                                    t0=np.round(np.array([1.237]) * 100))
    assert binned[0, 6] == 1 and binned.sum() == 1


def test_stims_log_compressed_and_scaled_per_band_over_the_sessions_read(ds_default, fixture_root):
    ds, truth = ds_default, fixture_root[1]
    sessions = sorted({m["session"] for m in ds.stim_meta})
    logs = {(sess, lab): np.log((g.astype(np.float32) + np.float32(0.1)) / np.float32(0.1))
            for sess in sessions for lab, g in truth.gtgrams[sess].items()}
    lo = np.min([g.min(axis=1) for g in logs.values()], axis=0)[:, None]
    hi = np.max([g.max(axis=1) for g in logs.values()], axis=0)[:, None]
    for s, meta in enumerate(ds.stim_meta):
        want = (logs[(meta["session"], meta["name"])] - lo) / (hi - lo)
        want[want < 1e-6] = 0
        np.testing.assert_allclose(ds.stims[s][0].numpy(), want, atol=2e-6)
    flanked = _stim_index(ds, "PRN044c", "STIM_00seq2.wav")
    assert float(ds.stims[flanked][0, :, :10].abs().sum()) == 0.0  # silent flanks stay exactly 0
    # the band statistics pool the sessions read: one site alone gives other values
    one = Wingert2026Dataset(fixture_root[0], site="CLT099a", cache=False)
    assert [m["session"] for m in one.stim_meta] == ["CLT099a"] * 4
    assert float(one.stims[0].amax(dim=-1).min()) <= 1.0
    assert not torch.allclose(one.stims[0], ds.stims[0])
    # no log compression: linear values scaled to [0, 1]
    lin = Wingert2026Dataset(fixture_root[0], site="CLT099a", log_compress=False, cache=False)
    g = np.stack([truth.gtgrams["CLT099a"][m["name"]] for m in lin.stim_meta]).astype(np.float32)
    glo, ghi = g.min(axis=(0, 2))[:, None], g.max(axis=(0, 2))[:, None]
    np.testing.assert_allclose(lin.stims[1][0].numpy(), (g[1] - glo) / (ghi - glo), atol=2e-6)


def test_log_offset_soft_rule():
    assert wg._log_offset_exponent(-1.0) == -1.0
    assert wg._log_offset_exponent(2.0) == 2.0
    assert wg._log_offset_exponent(7.0) == pytest.approx(2.1)
    assert wg._log_offset_exponent(-7.0) == pytest.approx(-2.1)


# ---------------------------------------------------------------- metadata and filters


def test_metadata(ds_default):
    ds = ds_default
    keys = {"cell_id", "site", "session", "area", "layer", "depth", "narrow", "celltype", "sw", "goodpred",
            "animal", "electrode", "unit_in_electrode"}
    assert all(set(m) == keys for m in ds.nrn_meta)
    first = ds.nrn_meta[0]
    assert first == {"cell_id": "CLT099a-001-1", "site": "CLT099a", "session": "CLT099a", "area": "A1",
                     "layer": "1-3", "depth": -250.5, "narrow": False, "celltype": "RS", "sw": 0.42,
                     "goodpred": True, "animal": "CLT", "electrode": 1, "unit_in_electrode": 1}
    empty = ds.nrn_meta[3]  # CLT099a-002-1: empty fields are None
    assert (empty["layer"], empty["depth"], empty["narrow"], empty["celltype"], empty["sw"]) == (None,) * 5
    b_probe = next(m for m in ds.nrn_meta if m["cell_id"] == "SLJ050b-B-010-2")
    assert (b_probe["site"], b_probe["session"], b_probe["electrode"], b_probe["unit_in_electrode"]) == \
        ("SLJ050b-B", "SLJ050b", 10, 2)
    assert next(m for m in ds.nrn_meta if m["cell_id"] == "PRN044c-011-1")["layer"] == "4"  # text, not 4.0
    assert set(ds.stim_meta[0]) == {"name", "subset", "session"}
    assert {m["subset"] for m in ds.stim_meta if m["name"].startswith("STIM_00")} == {"val"}
    assert {m["subset"] for m in ds.stim_meta if not m["name"].startswith("STIM_00")} == {"est"}
    assert parse_wingert_cell_id("LMD004a-A-001-1") == ("LMD", 1, 1)
    assert parse_wingert_cell_id("odd") == (None, None, None)


def test_selection_by_own_metadata(ds_default):
    ds = ds_default
    peg = ds.select_pop_by_nrn_attr("area", "PEG")
    assert [ds.nrn_meta[n]["cell_id"] for n in peg] == ["PRN044c-011-1", "SLJ050b-B-010-2", "CLT099a-005-2",
                                                        "PRN044c-012-3"]
    val = ds.select_stims_by_attr("subset", "val")
    assert all(ds.stim_meta[s]["name"].startswith("STIM_00") for s in val)
    item = ds[0]
    assert len(item["responses"]) == len(ds.get_nrn_meta())
    ds.reset_pop_selection()
    ds.reset_stim_selection()


def test_filters(fixture_root):
    root = fixture_root[0]
    peg = Wingert2026Dataset(root, area="PEG", cache=False)
    assert [m["area"] for m in peg.nrn_meta] == ["PEG"] * 4
    b = Wingert2026Dataset(root, site="SLJ050b-B", cache=False)
    assert [m["cell_id"] for m in b.nrn_meta] == ["SLJ050b-B-010-2"]
    assert [m["name"] for m in b.stim_meta] == sorted(SESSION_OF_ARCHIVE["SLJ050b"].stims)  # whole session read
    unl = Wingert2026Dataset(root, include_unlabeled=True, cache=False)
    assert [m["cell_id"] for m in unl.nrn_meta] == [r[0] for r in CSV_ROWS]
    assert unl.nrn_meta[6]["area"] is None and {m["session"] for m in unl.stim_meta} >= {"PRN081b"}
    both = Wingert2026Dataset(root, area=["A1", "PEG"], include_unlabeled=True, cache=False)
    assert all(m["area"] in ("A1", "PEG") for m in both.nrn_meta)
    assert read_wingert_cell_list(root, site=["PRN061a"]) == [m for m in Wingert2026Dataset(
        root, site="PRN061a", cache=False).nrn_meta]


@pytest.mark.parametrize("kwargs, match", [
    ({"area": "V1"}, "unknown label"),
    ({"area": 3}, "area must be"),
    ({"site": "XYZ001a"}, "not in"),
    ({"site": "PRN081b"}, "no cell left"),
    ({"area": "HC", "site": "CLT099a"}, "no cell left"),
    ({"dt_ms": 5.0}, "10-ms bins only"),
    ({"subset": "test"}, "subset="),
    ({"log_offset": float("nan")}, "log_offset"),
    ({"return_waveform": True, "audio_fs": 44150}, "multiple of 100"),
    ({"return_waveform": True, "prestim_ms": -1.0}, "prestim_ms"),
])
def test_argument_errors_before_any_work(fixture_root, monkeypatch, kwargs, match):
    monkeypatch.setattr(wg, "_read_archive", lambda *a: pytest.fail("archives read despite a bad argument"))
    with pytest.raises((ValueError, TypeError), match=match):
        Wingert2026Dataset(fixture_root[0], **kwargs)


def test_subset_keeps_values_and_neurons(ds_default, fixture_root):
    val = Wingert2026Dataset(fixture_root[0], subset="val", cache=False)
    est = Wingert2026Dataset(fixture_root[0], subset="est", cache=False)
    assert val.N_neurons == est.N_neurons == ds_default.N_neurons
    assert val.get_S() + est.get_S() == ds_default.get_S()
    for s, meta in enumerate(val.stim_meta):
        full = _stim_index(ds_default, meta["session"], meta["name"])
        assert torch.equal(val.stims[s], ds_default.stims[full])
        assert torch.equal(val.nrn_masks[s], ds_default.nrn_masks[full])
        for n in val.nrn_masks[s].nonzero().flatten().tolist():
            assert torch.equal(val.responses[s][n], ds_default.responses[full][n])


def test_smooth_changes_nothing_at_10_ms(ds_default, fixture_root):
    sm = Wingert2026Dataset(fixture_root[0], smooth=True, cache=False)
    for s in range(sm.get_S()):
        for n in sm.nrn_masks[s].nonzero().flatten().tolist():
            assert torch.allclose(sm.responses[s][n], ds_default.responses[s][n])


def test_release_quirks_warn(fixture_root):
    with pytest.warns(UserWarning) as record:
        ds = Wingert2026Dataset(fixture_root[0], site=["PRN070a", "CLT099a"], cache=False)
    text = " ".join(str(w.message) for w in record)
    assert "PRN070a_1111.tgz" in text and "PRN070b_2222.tgz" in text  # kept / dropped duplicate
    assert ABSENT_CELL in text
    n = [m["cell_id"] for m in ds.nrn_meta].index(ABSENT_CELL)
    assert not ds.nrn_masks[:, n].any()
    # the PRN061b archive holds PRN061a cells: found by their ids, not the file name
    ac = Wingert2026Dataset(fixture_root[0], site="PRN061a", cache=False)
    assert ac.nrn_masks.all() and {m["session"] for m in ac.stim_meta} == {"PRN061a"}


# ---------------------------------------------------------------- waveform mode


def test_waveform_mode(fixture_root, ds_default):
    root, truth = fixture_root
    ds = Wingert2026Dataset(root, site="CLT099a", return_waveform=True, cache=False)
    assert ds.return_waveform and ds.audio_fs == AUDIO_FS and ds.hop == 441 and ds.F == 32
    spec = Wingert2026Dataset(root, site="CLT099a", cache=False)
    offset = 44100
    for s, meta in enumerate(ds.stim_meta):
        T = spec.stims[s].shape[-1]
        wave = ds.stims[s]
        assert wave.shape == (1, T * 441) and wave.dtype == torch.float32
        src = truth.wavs[meta["name"].removeprefix("STIM_").lower()]
        n = min(src.size, T * 441 - offset)
        assert float(wave[0, :offset].abs().max()) == 0.0
        np.testing.assert_array_equal(wave[0, offset:offset + n].numpy(), src[:n])
        assert float(wave[0, offset + n:].abs().sum()) == 0.0
        for k in spec.nrn_masks[s].nonzero().flatten().tolist():
            assert torch.equal(ds.responses[s][k], spec.responses[s][k])
    resampled = Wingert2026Dataset(root, site="CLT099a", return_waveform=True, audio_fs=16000, cache=False)
    assert resampled.stims[0].shape == (1, 120 * 160)


def test_waveform_mode_missing_wavs(tmp_path):
    build_wingert(tmp_path, wav=False)
    with pytest.raises(DatasetNotFoundError, match="wav=True"):
        Wingert2026Dataset(tmp_path, return_waveform=True)
    (tmp_path / "wav").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"seq1001\.wav \(epoch STIM_seq1001\.wav\)"):
        Wingert2026Dataset(tmp_path, site="CLT099a", return_waveform=True)


# ---------------------------------------------------------------- cache


def test_cache_reuse_and_invalidation(fixture_root, monkeypatch, tmp_path):
    root = fixture_root[0]
    calls = []
    real = wg._read_archive
    monkeypatch.setattr(wg, "_read_archive", lambda *a: calls.append(a[0]) or real(*a))
    first = Wingert2026Dataset(root, site="CLT099a")
    n_archives = len(calls)
    assert n_archives == len(list((root / "recordings").glob("*.tgz")))
    second = Wingert2026Dataset(root, site="CLT099a")
    assert len(calls) == n_archives  # nothing re-parsed
    for a, b in zip(first.stims, second.stims):
        assert torch.equal(a, b)
    assert torch.equal(first.nrn_masks, second.nrn_masks) and first.nrn_meta == second.nrn_meta
    Wingert2026Dataset(root, site="CLT099a", subset="val")  # subset and smooth are applied after the cache
    assert len(calls) == n_archives
    Wingert2026Dataset(root, site="CLT099a", log_offset=-2.0)  # a content knob rebuilds
    assert len(calls) == 2 * n_archives
    archive = next((root / "recordings").glob("CLT099a_*.tgz"))
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touching a raw file rebuilds
    Wingert2026Dataset(root, site="CLT099a")
    assert len(calls) == 3 * n_archives


# ---------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        Wingert2026Dataset(tmp_path / "nothing")
    text = str(err.value)
    assert "cell_list.csv" in text and "recordings/" in text and "download_wingert2026(" in text
    assert isinstance(err.value, FileNotFoundError)


def test_truncated_archive(tmp_path):
    build_wingert(tmp_path, wav=False)
    archive = next((tmp_path / "recordings").glob("CLT099a_*.tgz"))
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(DatasetFormatError) as err:
        Wingert2026Dataset(tmp_path, cache=False)
    assert archive.name in str(err.value) and err.value.field == "archive"


def test_corrupt_csv_and_stim(tmp_path):
    build_wingert(tmp_path, wav=False)
    rows = [list(r) for r in CSV_ROWS]
    rows[1][4] = "deep"
    write_cell_list(tmp_path / "cell_list.csv", rows)
    with pytest.raises(DatasetFormatError) as err:
        Wingert2026Dataset(tmp_path, cache=False)
    assert "cell_list.csv" in str(err.value) and "depth" in err.value.field
    (tmp_path / "cell_list.csv").write_text("cellid,siteid\nCLT099a-001-1,CLT099a\n")
    with pytest.raises(DatasetFormatError, match="area"):
        Wingert2026Dataset(tmp_path, cache=False)


def test_wrong_band_count_and_missing_spike_train(tmp_path):
    import tarfile

    import h5py

    build_wingert(tmp_path, wav=False)
    archive = next((tmp_path / "recordings").glob("CLT099a_*.tgz"))

    def rewrite(edit):
        with tarfile.open(archive) as tf:
            members = {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}
        for name in list(members):
            members[name] = edit(name, members[name])
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        archive.write_bytes(buf.getvalue())

    def h5_edit(suffix, fn):
        def edit(name, data):
            if not name.endswith(suffix):
                return data
            src = io.BytesIO(data)
            with h5py.File(src, "a") as f:
                fn(f)
            return src.getvalue()
        return edit

    original = archive.read_bytes()
    rewrite(h5_edit(".stim.h5", lambda f: (f.__delitem__("STIM_seq1002.wav"),
                                           f.create_dataset("STIM_seq1002.wav", data=np.zeros((18, 120))))))
    with pytest.raises(DatasetFormatError) as err:
        Wingert2026Dataset(tmp_path, site="CLT099a", cache=False)
    assert err.value.field == "STIM_seq1002.wav" and archive.name in err.value.path
    archive.write_bytes(original)
    rewrite(h5_edit(".resp.h5", lambda f: f.__delitem__("CLT099a-002-1")))
    with pytest.raises(DatasetFormatError) as err:
        Wingert2026Dataset(tmp_path, site="CLT099a", cache=False)
    assert err.value.field == "CLT099a-002-1" and "resp.h5" in err.value.path


# ---------------------------------------------------------------- download


def _zip_of(folder):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return buf.getvalue()


@pytest.fixture
def zenodo(monkeypatch, tmp_path, fixture_root):
    monkeypatch.setattr(dl, "_sleep", lambda s: None)
    root = fixture_root[0]
    payloads = {
        "cell_list.csv": (root / "cell_list.csv").read_bytes(),
        "recordings.zip": _zip_of(root / "recordings"),
        "wav.zip": _zip_of(root / "wav"),
    }
    with Emulator() as emu:
        monkeypatch.setenv("DEEPSTRF_ZENODO_URL", emu.base)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        rec = f"/api/records/{wg.ZENODO_RECORD}"
        files = [{"id": str(i), "key": k, "size": len(v), "checksum": f"md5:{md5(v)}",
                  "links": {"self": f"{emu.base}{rec}/files/{k}/content"}} for i, (k, v) in enumerate(payloads.items())]
        files.append({"id": "9", "key": "models.zip", "size": 1, "checksum": "md5:" + "0" * 32,
                      "links": {"self": f"{emu.base}{rec}/files/models.zip/content"}})
        emu.route("GET", rec, json_reply({"id": wg.ZENODO_RECORD, "doi": "10.5281/zenodo.18331549",
                                          "metadata": {"license": {"id": "cc-by-4.0"}}, "files": files}))
        for key, data in payloads.items():
            emu.route("GET", f"{rec}/files/{key}/content", file_reply(data))
        emu.payloads = payloads
        yield emu


def test_download_then_load(zenodo, tmp_path):
    dest = tmp_path / "dl"
    ds = Wingert2026Dataset(dest, download=True, site="CLT099a", cache=False)
    assert ds.N_neurons == 4 and (dest / "recordings.zip").is_file() and (dest / "cell_list.csv").is_file()
    paths = [r.path for r in zenodo.log]
    assert not any("wav.zip" in p or "models.zip" in p for p in paths)  # fetch by need only
    assert all(r.headers["user-agent"].startswith("deepSTRF/") for r in zenodo.log)
    n = len(zenodo.log)
    assert download_wingert2026(dest) == str(dest)
    assert len(zenodo.log) == n  # verified and extracted: zero requests
    download_wingert2026(dest, wav=True)
    assert (dest / "wav" / "seq1002.wav").is_file()
    assert any(p.endswith("wav.zip/content") for p in (r.path for r in zenodo.log))


def test_download_checksum_mismatch(zenodo, tmp_path):
    rec = f"/api/records/{wg.ZENODO_RECORD}"
    bad = bytearray(zenodo.payloads["cell_list.csv"])
    bad[10] ^= 1
    zenodo.route("GET", f"{rec}/files/cell_list.csv/content", file_reply(bytes(bad)))
    dest = tmp_path / "bad"
    with pytest.raises(ChecksumError) as err:
        download_wingert2026(dest)
    assert "cell_list.csv" in str(err.value) and md5(zenodo.payloads["cell_list.csv"]) in str(err.value)
    assert not (dest / "cell_list.csv").exists() and not (dest / "cell_list.csv.part").exists()


def test_offline_download_is_not_found(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError):
        Wingert2026Dataset(tmp_path / "off", download=True)


def test_default_root_from_environment(monkeypatch, tmp_path):
    build_wingert(tmp_path / "Wingert2026", wav=False)
    monkeypatch.setenv("DEEPSTRF_DATA", str(tmp_path))
    ds = Wingert2026Dataset(site="PRN061a", cache=False)
    assert ds.path == str(tmp_path / "Wingert2026") and math.isclose(ds.dt, 10.0)


def test_minmax_scale_ignores_bins_beyond_a_shorter_stim():
    binned = torch.tensor([[0.0, 2.0, 4.0, 9.0], [1.0, 1.0, 0.0, 0.0], [3.0, 0.0, 2.0, 1.0]])
    wg._minmax_scale(binned, [3, 4], 4, [1, 2])  # first stim: T = 3, so its 9.0 is outside the data
    np.testing.assert_allclose(binned[0, :3].numpy(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(binned[2].numpy(), [0.75, 0.0, 0.5, 0.25])
    silent = torch.zeros(2, 3)
    wg._minmax_scale(silent, [3], 3, [2])
    assert float(silent.abs().sum()) == 0.0
