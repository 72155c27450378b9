"""NAT4Dataset end to end on the tiny fixture of tests/fixtures/nat4.py (no network)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.http_emulator import Emulator, file_reply, json_reply, md5
from fixtures.nat4 import EST_LABELS, VAL_LABELS, make_nat4

from deepSTRF.datasets._errors import (
    ChecksumError,
    DatasetFormatError,
    DatasetNotFoundError,
)
from deepSTRF.datasets.audio import nat4
from deepSTRF.datasets.audio.nat4 import NAT4Dataset, download_nat4
from deepSTRF.utils import download as dl


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A1 packed (with wavs) and PEG as an extracted folder, in one root."""
    root = tmp_path_factory.mktemp("nat4") / "NAT4"
    return make_nat4(root, "A1", wav=True), make_nat4(root, "PEG", packed=False, seed=1)


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    return make_nat4(tmp_path_factory.mktemp("nat4d") / "NAT4", "A1", defects=True, seed=2)


def _is_sentinel(t):
    return t.shape == (1, 1) and bool(torch.isnan(t).all())


def _check(ds, fx, labels=None):
    labels = labels or fx.labels
    assert [m["name"] for m in ds.stim_meta] == labels
    assert [m["cell_id"] for m in ds.nrn_meta] == fx.chans
    for s, lab in enumerate(labels):
        assert ds.stims[s].shape == (1, 18, fx.stims[lab].shape[1]) and ds.stims[s].dtype == torch.float32
        np.testing.assert_allclose(ds.stims[s][0].numpy(), fx.stims[lab], rtol=1e-6, atol=1e-7)
        table = fx.est if lab in EST_LABELS else fx.val
        for n in range(len(fx.chans)):
            expected, got = table[(lab, n)], ds.responses[s][n]
            if expected is None:
                assert _is_sentinel(got), (lab, n)
                assert not bool(ds.nrn_masks[s, n])
            else:
                assert got.shape == expected.shape and got.dtype == torch.float32, (lab, n)
                np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, equal_nan=True)
                assert bool(ds.nrn_masks[s, n])


# --------------------------------------------------------------------------- content


def test_all_subset_values(both):
    a1, _ = both
    ds = NAT4Dataset(a1.root)
    assert ds.get_S() == 6 and ds.N_neurons == 8 and ds.F == 18 and ds.dt == 10.0
    assert ds.audio_fs is None and ds.area == "A1" and ds.species == "ferret"
    _check(ds, a1)
    # est values are counts over the global maximum of the whole matrix; val values are raw counts
    assert float(ds.responses[0][1].max()) == pytest.approx(1.0)
    assert ds.responses[EST_LABELS.index(EST_LABELS[3])][0].shape == (2, 60)  # two occurrences -> R = 2
    val1 = ds.responses[4][0]
    assert val1.shape == (3, 40) and torch.equal(val1, val1.round())
    assert float(val1.sum()) == a1.val[(VAL_LABELS[0], 0)].sum()  # includes the two spikes sharing one ms


def test_missing_and_partial_est(both):
    a1, _ = both
    ds = NAT4Dataset(a1.root)
    assert _is_sentinel(ds.responses[1][2])  # all-NaN window -> sentinel
    partial = ds.responses[2][4]
    assert partial.shape == (1, 50) and bool(torch.isnan(partial[0, :10]).all())
    assert not bool(torch.isnan(partial[0, 10:]).any()) and bool(ds.nrn_masks[2, 4])
    # cells of a site without archive (DRX006b) and without site have val sentinels only
    assert all(_is_sentinel(ds.responses[s][n]) for s in (4, 5) for n in (6, 7))


def test_extracted_folder_other_area(both):
    _, peg = both
    ds = NAT4Dataset(peg.root, area="PEG")
    assert ds.area == "PEG" and all(m["area"] == "PEG" for m in ds.nrn_meta)
    _check(ds, peg)


def test_subset_est_never_opens_sites(both, tmp_path, monkeypatch):
    a1, _ = both
    root = tmp_path / "est"
    root.mkdir()
    for name in ("A1_NAT4_ozgf.fs100.ch18.tgz", "A1_pred_correlation.csv"):
        shutil.copy(a1.root / name, root / name)
    monkeypatch.setattr(NAT4Dataset, "_read_sites", lambda *a, **k: pytest.fail("per-site archives opened"))
    ds = NAT4Dataset(root, subset="est")
    assert [m["subset"] for m in ds.stim_meta] == ["est"] * 4
    _check(ds, a1, EST_LABELS)


def test_subset_val_keeps_neurons(both):
    a1, _ = both
    ds = NAT4Dataset(a1.root, subset="val")
    full = NAT4Dataset(a1.root)
    assert ds.get_S() == 2 and ds.N_neurons == 8
    _check(ds, a1, VAL_LABELS)
    for s in range(2):
        assert torch.equal(ds.stims[s], full.stims[4 + s])  # stims normalised over the whole recording
    assert len(ds.get_nrn_meta()) == 8
    ds.select_stims([0, 1])
    assert [m["cell_id"] for m in ds.get_nrn_meta()] == a1.chans[:6]  # the bidirectional filter hides the rest


def test_defect_layouts(defects):
    """Zero-padded ids, another R, a site missing one val label, a stray file (nat4.md §9.1-3)."""
    ds = NAT4Dataset(defects.root)
    _check(ds, defects)
    tnc = defects.chans.index("TNC014a-08-1")
    crd = defects.chans.index("CRD016d-05-1")
    assert ds.responses[4][tnc].shape == (2, 40) and ds.responses[4][0].shape == (3, 40)
    assert ds.nrn_meta[tnc]["val_archive"].startswith("A1_TNC014a_")
    assert ds.responses[4][crd].shape == (3, 40) and _is_sentinel(ds.responses[5][crd])


def test_metadata_and_selection(both):
    a1, _ = both
    ds = NAT4Dataset(a1.root)
    keys = {"cell_id", "area", "auditory", "site", "animal", "electrode", "unit_in_electrode"}
    assert all(keys <= set(m) for m in ds.nrn_meta)
    assert [m["auditory"] for m in ds.nrn_meta] == [a1.auditory[c] for c in a1.chans]
    assert ds.nrn_meta[6] | {"val_archive": None} == {
        "cell_id": "DRX006b-128-2", "area": "A1", "auditory": True, "site": "DRX006b", "animal": "DRX",
        "electrode": 128, "unit_in_electrode": 2, "val_archive": None}
    weird = ds.nrn_meta[7]
    assert weird["site"] is None and weird["animal"] is None and weird["auditory"] is False
    assert [m["subset"] for m in ds.stim_meta] == ["est"] * 4 + ["val"] * 2
    assert ds.select_pop_by_nrn_attr("animal", "TNC") == [3, 4]
    ds.reset_pop_selection()
    assert ds.select_stims_by_attr("subset", "val") == [4, 5]
    assert len(ds) == 2 and len(ds[0]["responses"]) == 6


def test_public_constants():
    assert len(nat4.SITE_ARCHIVES["A1"]) == 22 and len(nat4.SITE_ARCHIVES["PEG"]) == 12
    assert nat4.ZENODO_RECORD == 8044773 and nat4.POPULATION_FILE.format(area="A1") == "A1_NAT4_ozgf.fs100.ch18.tgz"
    assert nat4.VAL_PREFIX.match("STIM_00cat1.wav") and not nat4.EST_PREFIX.match("STIM_00cat1.wav")


# --------------------------------------------------------------------------- waveform


@pytest.mark.parametrize("fs", [44100, 22000])
def test_waveform_mode(both, fs):
    a1, _ = both
    ds = NAT4Dataset(a1.root, return_waveform=True, audio_fs=fs)
    spec = NAT4Dataset(a1.root)
    hop = fs // 100
    offset = round(0.1 * fs)  # first PreStimSilence row lasts 0.1 s
    assert ds.hop == hop and ds.audio_fs == fs and ds.F == 18
    for s, lab in enumerate(a1.labels):
        wave = ds.stims[s][0].numpy()
        T = a1.stims[lab].shape[1]
        assert wave.shape == (T * hop,)
        assert np.abs(wave[:offset]).max() == 0.0
        n = round(a1.wav_samples[lab] * fs / 44100)
        if offset + n < wave.size:
            assert np.abs(wave[offset + n + hop:]).max() < 1e-3  # zero padding after a short sound
        peak = np.argmax(np.abs(np.fft.rfft(wave))) * fs / wave.size
        assert peak == pytest.approx(300.0 + 200.0 * s, abs=fs / wave.size + 1)
        for n_ in range(8):
            a, b = ds.responses[s][n_], spec.responses[s][n_]
            assert torch.equal(torch.nan_to_num(a, -1.0), torch.nan_to_num(b, -1.0))
    # STIM_cat12_True.wav is found as cat12_true.wav
    assert a1.wav_names[EST_LABELS[2]] == "cat12_true.wav"


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="area"):
        NAT4Dataset(tmp_path, area="AC")
    with pytest.raises(ValueError, match="subset"):
        NAT4Dataset(tmp_path, subset="test")
    with pytest.raises(ValueError, match="dt_ms"):
        NAT4Dataset(tmp_path, dt_ms=5.0)
    with pytest.raises(ValueError, match="audio_fs"):
        NAT4Dataset(tmp_path, return_waveform=True, audio_fs=22050)


# --------------------------------------------------------------------------- cache


def test_cache_reuse_and_invalidation(both, tmp_path, monkeypatch):
    a1, _ = both
    root = tmp_path / "c"
    shutil.copytree(a1.root, root, ignore=shutil.ignore_patterns("PEG*", "wav"))
    calls = []
    original = NAT4Dataset._build

    def counting(self, *args):
        calls.append(self.subset)
        return original(self, *args)

    monkeypatch.setattr(NAT4Dataset, "_build", counting)
    first = NAT4Dataset(root)
    second = NAT4Dataset(root)
    assert calls == ["all"]
    for s in range(6):
        for n in range(8):
            assert torch.equal(torch.nan_to_num(first.responses[s][n], -1.0),
                               torch.nan_to_num(second.responses[s][n], -1.0))
    assert torch.equal(first.nrn_masks, second.nrn_masks) and second.nrn_meta == first.nrn_meta
    NAT4Dataset(root, subset="est")
    assert calls == ["all", "est"]
    tgz = root / "A1_NAT4_ozgf.fs100.ch18.tgz"
    st = tgz.stat()
    os.utime(tgz, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    NAT4Dataset(root)
    assert calls == ["all", "est", "all"]


# --------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        NAT4Dataset(tmp_path / "nowhere")
    msg = str(info.value)
    assert "A1_NAT4_ozgf.fs100.ch18.tgz" in msg and "A1_pred_correlation.csv" in msg
    assert "A1_single_sites" in msg and "download_nat4" in msg


def test_missing_wavs(both, tmp_path):
    a1, _ = both
    root = tmp_path / "nw"
    shutil.copytree(a1.root, root, ignore=shutil.ignore_patterns("PEG*"))
    (root / "wav" / a1.wav_names[VAL_LABELS[1]]).unlink()
    with pytest.raises(DatasetNotFoundError, match="00cat2_beta.wav"):
        NAT4Dataset(root, return_waveform=True)


def test_truncated_population(both, tmp_path):
    a1, _ = both
    root = tmp_path / "t"
    shutil.copytree(a1.root, root, ignore=shutil.ignore_patterns("PEG*", "wav"))
    tgz = root / "A1_NAT4_ozgf.fs100.ch18.tgz"
    tgz.write_bytes(tgz.read_bytes()[:2000])
    with pytest.raises(DatasetFormatError) as info:
        NAT4Dataset(root)
    assert info.value.path == str(tgz)


def _rewrite_population(root: Path, replace: dict[str, bytes | None]) -> None:
    tgz = root / "A1_NAT4_ozgf.fs100.ch18.tgz"
    with tarfile.open(tgz) as tf:
        members = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    for suffix, data in replace.items():
        for name in list(members):
            if name.endswith(suffix):
                if data is None:
                    del members[name]
                else:
                    members[name] = data
    with tarfile.open(tgz, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("replace, field", [
    ({".resp.csv": b"1.0,2.0\n3.0,4.0\n"}, "*.resp.csv columns"),
    ({".stim.csv": None}, "*.stim.csv"),
    ({".meta.json": None}, "*.meta.json"),
    ({".resp.epoch.csv": b"begin,stop,label\n0,1,x\n"}, "*.resp.epoch.csv"),
])
def test_corrupt_population_fields(both, tmp_path, replace, field):
    a1, _ = both
    root = tmp_path / "f"
    shutil.copytree(a1.root, root, ignore=shutil.ignore_patterns("PEG*", "wav"))
    _rewrite_population(root, replace)
    with pytest.raises(DatasetFormatError) as info:
        NAT4Dataset(root)
    assert info.value.field == field and info.value.path.endswith("A1_NAT4_ozgf.fs100.ch18.tgz")


def test_correlation_csv_without_column(both, tmp_path):
    a1, _ = both
    root = tmp_path / "csv"
    shutil.copytree(a1.root, root, ignore=shutil.ignore_patterns("PEG*", "wav"))
    (root / "A1_pred_correlation.csv").write_text("cellid,r_test\nx,1\n")
    with pytest.raises(DatasetFormatError, match="sig_auditory"):
        NAT4Dataset(root, subset="est")


# --------------------------------------------------------------------------- download


@pytest.fixture
def server(monkeypatch):
    with Emulator() as emu:
        for key, value in emu.host_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setattr(dl, "_sleep", lambda s: None)
        yield emu


def _zip(folder: Path, base: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(base).as_posix())
    return buf.getvalue()


def _serve_zenodo(emu: Emulator, a1, bad: str | None = None) -> None:
    files = {
        "A1_NAT4_ozgf.fs100.ch18.tgz": (a1.root / "A1_NAT4_ozgf.fs100.ch18.tgz").read_bytes(),
        "A1_pred_correlation.csv": (a1.root / "A1_pred_correlation.csv").read_bytes(),
        "A1_single_sites.zip": _zip(a1.root / "A1_single_sites", a1.root),
        "wav.zip": _zip(a1.root / "wav", a1.root),
    }
    rec = nat4.ZENODO_RECORD
    entries = []
    for key, data in files.items():
        checksum = "md5:" + ("0" * 32 if key == bad else md5(data))
        entries.append({"id": key, "key": key, "size": len(data), "checksum": checksum,
                        "links": {"self": f"{emu.base}/api/records/{rec}/files/{key}/content"}})
        emu.route("GET", f"/api/records/{rec}/files/{key}/content", file_reply(data))
    emu.route("GET", f"/api/records/{rec}", json_reply({"id": rec, "doi": nat4.ZENODO_DOI,
                                                        "metadata": {"license": {"id": "cc-by-4.0"}},
                                                        "files": entries}))


def test_download_then_load(both, server, tmp_path):
    a1, _ = both
    _serve_zenodo(server, a1)
    dest = tmp_path / "dl"
    ds = NAT4Dataset(dest, download=True, return_waveform=True)
    assert ds.N_neurons == 8 and ds.get_S() == 6
    assert (dest / "A1_single_sites").is_dir() and (dest / "wav").is_dir()
    assert not (dest / "A1_NAT4_ozgf.fs100.ch18").exists()  # population kept packed
    paths = [r.path for r in server.log]
    assert not any("PEG" in p for p in paths)  # only the requested area
    assert all(r.headers.get("user-agent", "").startswith("deepSTRF/") for r in server.log)
    before = len(server.log)
    assert download_nat4("A1", dest, wav=True) == str(dest)
    assert len(server.log) == before


def test_download_checksum_mismatch(both, server, tmp_path):
    a1, _ = both
    _serve_zenodo(server, a1, bad="A1_single_sites.zip")
    dest = tmp_path / "dl"
    with pytest.raises(ChecksumError):
        download_nat4("A1", dest)
    assert not (dest / "A1_single_sites.zip").exists() and not (dest / "A1_single_sites").exists()


def test_download_bad_area(tmp_path):
    with pytest.raises(ValueError, match="area"):
        download_nat4("AC", tmp_path)
