"""NS1Dataset end to end on the tiny fixture of tests/fixtures/ns1.py (no network)."""

from __future__ import annotations

import io
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.http_emulator import (
    Emulator,
    file_reply,
    json_reply,
    md5,
    redirect,
    sha256,
)
from fixtures.ns1 import F_FIXTURE, NS1_ROWS, make_ns1, make_spike_file

from deepSTRF.datasets._errors import (
    ChecksumError,
    DatasetFormatError,
    DatasetNotFoundError,
)
from deepSTRF.datasets.audio import ns1_drc
from deepSTRF.datasets.audio.ns1_drc import NS1Dataset, download_ns1
from deepSTRF.utils import download as dl


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_ns1(tmp_path_factory.mktemp("ns1") / "NS1", defects=True)


@pytest.fixture(scope="module")
def fx_wav(tmp_path_factory):
    return make_ns1(tmp_path_factory.mktemp("ns1w") / "NS1", waveform=True)


def _load(root, **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="NS1: skipping neuron")
        return NS1Dataset(root, **kw)


def _copy(fx, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(fx.root, dst)
    return dst


# --------------------------------------------------------------------------- content


def test_shapes_and_counts(fx):
    ds = _load(fx.root, smooth=False)
    assert ds.get_S() == 20 and ds.N_neurons == 4 and ds.F == F_FIXTURE and ds.dt == 5.0
    assert ds.audio_fs is None and ds.hop is None and not ds.return_waveform
    assert ds.species == "ferret" and tuple(ds.hearing_range_hz) == (200.0, 40000.0)
    for s in range(20):
        assert ds.stims[s].shape == (1, F_FIXTURE, 999) and ds.stims[s].dtype == torch.float32
        np.testing.assert_allclose(ds.stims[s][0].numpy(), fx.X[s, :, 0, :].astype(np.float32))
        for n in range(4):
            expected = fx.counts[n][s]
            assert ds.responses[s][n].shape == expected.shape
            np.testing.assert_array_equal(ds.responses[s][n].numpy(), expected)
    assert bool(ds.nrn_masks.all())
    # repeat counts vary per (stim, neuron): 2..5 in the fixture (stim 0 of neuron 0: 2 + 3 defect trains)
    assert {ds.responses[s][n].shape[0] for s in range(20) for n in range(4)} == {2, 3, 4, 5}
    assert ds.responses[0][0].shape[0] == 5


def test_every_spike_counted(fx):
    """Spikes sharing a rounded ms, column vectors and 0x0 empties all count (ns1.md §9.1-2)."""
    ds = _load(fx.root, smooth=False)
    cell = ds.responses[0][0]
    extra = cell[-3:]  # the three defect trains: 0x0, column vector, coincident spikes
    assert extra[0].sum() == 0
    assert extra[1, 12 // 5] == 1 and extra[1, 49 // 5] == 1 and extra[1, 300 // 5] == 1 and extra[1].sum() == 3
    assert extra[2, 20] == 3  # 100.2 and 100.4 -> ms 100, 101.6 -> 102: all in bin 20
    assert extra[2, 998] == 1  # 4994.5 rounds to even 4994 -> last bin
    assert extra[2].sum() == 4
    total = sum(float(ds.responses[s][n].sum()) for s in range(20) for n in range(4))
    assert total == sum(float(c.sum()) for counts in fx.counts for c in counts)


def test_edge_rounding_rules(fx):
    ds = _load(fx.root, smooth=False)
    # -0.2 ms counts in bin 0, 4994.2 in bin 998; -1.6, 4994.7 and 5100 are dropped (all encoded in fx.counts)
    first = sum(float(ds.responses[s][n][:, 0].sum()) for s in range(20) for n in range(4))
    last = sum(float(ds.responses[s][n][:, 998].sum()) for s in range(20) for n in range(4))
    assert first == sum(float(c[:, 0].sum()) for cs in fx.counts for c in cs) > 0
    assert last == sum(float(c[:, 998].sum()) for cs in fx.counts for c in cs) > 0


def test_default_smoothing_is_unit_gain_hann(fx):
    ds = _load(fx.root)
    kernel = np.hanning(5) / np.hanning(5).sum()  # [0, .25, .5, .25, 0]: the reference's [0, .5, 1, .5, 0] / 2
    for s in (0, 7, 19):
        for n in range(4):
            expected = np.stack([np.convolve(row, kernel, mode="same") for row in fx.counts[n][s]])
            np.testing.assert_allclose(ds.responses[s][n].numpy(), expected, atol=1e-6)


def test_metadata(fx):
    with pytest.warns(UserWarning, match=r"cluster\.03\.data\.mat.*cluster\.03\.data_1\.mat"):
        ds = NS1Dataset(fx.root, smooth=False)
    assert [m["name"] for m in ds.stim_meta][:3] == ["nat01", "nat02", "nat03"]
    assert ds.stim_meta[19]["name"] == "nat20"
    types = [m["type"] for m in ds.stim_meta]
    assert types[0] == types[19] == "water_sounds" and types[3] == "ferret_vocalization"
    assert types[6] == "insects_buzzing" and types[8:12] == ["human_speech"] * 4 and types[1] == "unknown"
    keys = {"cell_id", "area", "depth_um", "noise_ratio", "single_n", "single_t", "n_electrodes", "electrode_number"}
    assert all(keys <= set(m) for m in ds.nrn_meta)
    kept = [NS1_ROWS[i] for i in fx.kept_rows]
    assert [m["cell_id"] for m in ds.nrn_meta] == [r[0][:-4] for r in kept]
    assert ds.nrn_meta[1]["spike_file"].endswith("cluster.02.data_1.mat")  # the _1 fallback
    for meta, row in zip(ds.nrn_meta, kept):
        assert meta["area"] == "A1"
        assert meta["n_electrodes"] == int(row[1]) and meta["electrode_number"] == int(row[2])
        assert meta["depth_um"] == int(row[3]) and isinstance(meta["depth_um"], int)
        assert meta["noise_ratio"] == pytest.approx(row[4]) and meta["single_t"] == row[5]
        assert meta["single_n"] == int(row[6]) and isinstance(meta["single_n"], int)
    assert ds.nrn_meta[1]["depth_um"] == -200


def test_selection_by_metadata(fx):
    ds = _load(fx.root, smooth=False)
    assert ds.select_pop_by_nrn_attr("single_t", "Yes") == [0, 3]
    ds.reset_pop_selection()
    chosen = ds.select_pop_by_nrn_predicate(lambda m: m["single_t"] in ("Yes", "Maybe") and m["depth_um"] >= 0)
    assert chosen == [0, 3]
    ds.reset_pop_selection()
    ds.select_stims_by_attr("type", "human_speech")
    assert len(ds) == 4
    assert ds[0]["responses"][0].shape[-1] == 999


def test_public_constants():
    assert sorted(ns1_drc.RAHMAN2020_TRAIN + ns1_drc.RAHMAN2020_TEST) == list(range(20))
    assert len(ns1_drc.WAV_NAMES) == 20 and len(set(ns1_drc.WAV_NAMES)) == 20
    assert ns1_drc.WAV_NAMES[11].endswith("fw.2.frozen.12") and ns1_drc.WAV_NAMES[12].endswith("fw.1.frozen.1")
    assert ns1_drc.OSF_FILES["MetadataSHEnCneurons.mat"] == "gdwyd" and ns1_drc.SPEECH_STIMS == (8, 9, 10, 11)


# --------------------------------------------------------------------------- waveform mode


@pytest.mark.parametrize("fs", [48000, 16000])
def test_waveform_mode(fx_wav, fs):
    ds = _load(fx_wav.root, return_waveform=True, audio_fs=fs, smooth=False)
    spec = _load(fx_wav.root, smooth=False)
    hop = fs * 5 // 1000
    assert ds.audio_fs == fs and ds.hop == hop and ds.F == F_FIXTURE and ds.return_waveform
    for s in (0, 5, 13):
        wave = ds.stims[s][0].numpy()
        assert ds.stims[s].shape == (1, 999 * hop) and ds.stims[s].dtype == torch.float32
        native = fx_wav.wav_lengths[s] / 48828
        if native < 4.995:  # zero-padded after the sound
            assert np.abs(wave[int(native * fs) + 2 * hop:]).max() < 1e-4
        # energy per second is preserved by the resampler; the tone sits at its frequency
        energy = (wave.astype(np.float64) ** 2).sum() / fs
        full = 0.25 * 0.5 * 0.375 * native  # amplitude^2 * mean sin^2 * mean hann^2 * s if s != 5 else None
        if full is not None:
            assert energy == pytest.approx(full, rel=0.03)
        spectrum = np.abs(np.fft.rfft(wave))
        peak = np.argmax(spectrum) * fs / wave.size
        assert peak == pytest.approx(fx_wav.wav_freqs[s], abs=3.0)
        np.testing.assert_array_equal(ds.responses[s][2].numpy(), spec.responses[s][2].numpy())


def test_waveform_long_wav_is_cropped(fx_wav):
    ds = _load(fx_wav.root, return_waveform=True, smooth=False)
    wave = ds.stims[5][0].numpy()
    # 5.2 s of sound cut at 4.995 s: the (faded) tone still runs at the end, no zero padding
    envelope = 0.5 * np.hanning(round(5.2 * 48828))[round(4.99 * 48828)]
    assert wave.size == 239760 and np.abs(wave[-1000:]).max() == pytest.approx(envelope, rel=0.2)


def test_argument_errors(fx, tmp_path):
    with pytest.raises(ValueError, match="dt_ms"):
        NS1Dataset(tmp_path / "nothing", dt_ms=10.0)
    with pytest.raises(ValueError, match="audio_fs"):
        NS1Dataset(tmp_path / "nothing", return_waveform=True, audio_fs=44100)


# --------------------------------------------------------------------------- cache


def test_cache_reuse_and_invalidation(fx, tmp_path, monkeypatch):
    root = _copy(fx, tmp_path)
    calls = []
    original = NS1Dataset._read_spikes

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(NS1Dataset, "_read_spikes", staticmethod(counting))
    first = _load(root)
    assert len(calls) == 4
    second = _load(root)
    assert len(calls) == 4  # loaded from the processed cache, nothing parsed
    for s in range(20):
        for n in range(4):
            assert torch.equal(first.responses[s][n], second.responses[s][n])
    assert second.nrn_meta == first.nrn_meta and second.F == F_FIXTURE
    _load(root, smooth=False)  # another knob value: rebuilt
    assert len(calls) == 8
    spike = root / "spikesandwav" / NS1_ROWS[0][0]
    st = spike.stat()
    os.utime(spike, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    _load(root)  # a touched raw file: rebuilt
    assert len(calls) == 12
    _load(root, cache=False)
    assert len(calls) == 16


# --------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        NS1Dataset(tmp_path / "nowhere")
    msg = str(info.value)
    assert "test_data_5ms.mat" in msg and "MetadataSHEnCneurons.mat" in msg and "spikesandwav/" in msg
    assert "download_ns1" in msg and "download=True" in msg


def test_missing_wavs_in_waveform_mode(fx):
    with pytest.raises(DatasetNotFoundError, match="SH.En.C"):
        _load(fx.root, return_waveform=True)


def test_truncated_spike_file(fx, tmp_path):
    root = _copy(fx, tmp_path)
    spike = root / "spikesandwav" / NS1_ROWS[3][0]
    spike.write_bytes(spike.read_bytes()[:300])
    with pytest.raises(DatasetFormatError) as info:
        _load(root)
    assert str(spike) in str(info.value) and info.value.field == "data"


def test_spike_file_without_set(fx, tmp_path):
    from scipy.io import savemat

    root = _copy(fx, tmp_path)
    spike = root / "spikesandwav" / NS1_ROWS[0][0]
    savemat(str(spike), {"data": np.zeros((1, 1), dtype=[("other", "O")])})
    with pytest.raises(DatasetFormatError, match=r"data\.set"):
        _load(root)


@pytest.mark.parametrize("shape", [(19, F_FIXTURE, 1, 999), (20, F_FIXTURE, 1, 998)])
def test_spectrogram_shape_checked(fx, tmp_path, shape):
    from scipy.io import savemat

    root = _copy(fx, tmp_path)
    savemat(str(root / "test_data_5ms.mat"), {"X_nfht": np.ones(shape)})
    with pytest.raises(DatasetFormatError) as info:
        _load(root)
    assert info.value.field == "X_nfht" and "test_data_5ms.mat" in info.value.path


def test_metadata_without_fields(fx, tmp_path):
    from scipy.io import savemat

    root = _copy(fx, tmp_path)
    savemat(str(root / "MetadataSHEnCneurons.mat"), {"neuron": np.zeros((1, 2), dtype=[("path", "O")])})
    with pytest.raises(DatasetFormatError, match="neuron"):
        _load(root)


# --------------------------------------------------------------------------- download


def _zip_folder(folder: Path, base: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(base).as_posix())
    return buf.getvalue()


def _blob(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def server(monkeypatch, tmp_path):
    with Emulator() as emu:
        for key, value in emu.host_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setattr(dl, "_sleep", lambda s: None)
        yield emu


def _serve_ns1(emu: Emulator, fx, *, zip_hash: str | None = None) -> dict[str, bytes]:
    files = {
        "MetadataSHEnCneurons.mat": (fx.root / "MetadataSHEnCneurons.mat").read_bytes(),
        "spikesandwav.zip": _zip_folder(fx.root / "spikesandwav", fx.root),
    }
    for name, data in files.items():
        guid = ns1_drc.OSF_FILES[name]
        emu.route("GET", f"/osfapi/v2/files/{guid}/", json_reply({"data": {
            "id": guid, "type": "files",
            "attributes": {"name": name, "kind": "file", "size": len(data), "guid": guid,
                           "extra": {"hashes": {"md5": md5(data),
                                                "sha256": zip_hash if zip_hash and name.endswith(".zip")
                                                else sha256(data)}, "downloads": 3}},
            "links": {"download": f"{emu.base}/osf/download/{guid}/"}}}))
        emu.route("GET", f"/osf/download/{guid}/",
                  redirect(f"/v1/resources/ayw2p/providers/osfstorage/{guid}?action=download&direct&version=1"))
        emu.route("GET", f"/v1/resources/ayw2p/providers/osfstorage/{guid}", file_reply(data))
    spec = (fx.root / "test_data_5ms.mat").read_bytes()
    emu.route("GET", f"/raw/monzilur/DNet/{ns1_drc.DNET_COMMIT}/test_data_5ms.mat", file_reply(spec))
    files["test_data_5ms.mat"] = spec
    return files


def test_download_then_load(fx, server, tmp_path, monkeypatch):
    files = _serve_ns1(server, fx)
    monkeypatch.setattr(ns1_drc, "DNET_BLOB_SHA1", _blob(files["test_data_5ms.mat"]))
    dest = tmp_path / "dl"
    ds = _load(dest, download=True, smooth=False)
    assert ds.N_neurons == 4
    np.testing.assert_array_equal(ds.responses[3][1].numpy(), fx.counts[1][3])
    assert (dest / "spikesandwav.zip").is_file() and (dest / "spikesandwav").is_dir()
    assert not (dest / "ReadMe.rtf").exists()  # fetched only on request
    paths = {r.path for r in server.log}
    assert "/osfapi/v2/files/gdwyd/" in paths and f"/raw/monzilur/DNet/{ns1_drc.DNET_COMMIT}/test_data_5ms.mat" in paths
    assert all(r.headers.get("user-agent", "").startswith("deepSTRF/") for r in server.log)
    before = len(server.log)
    assert download_ns1(dest) == str(dest)
    assert len(server.log) == before  # everything verified on disk: no request


def test_download_blob_mismatch(fx, server, tmp_path):
    _serve_ns1(server, fx)  # real blob id pinned, fixture bytes differ
    dest = tmp_path / "dl"
    with pytest.raises(ChecksumError, match="git-blob-sha1"):
        download_ns1(dest)
    assert not (dest / "test_data_5ms.mat").exists()


def test_download_osf_checksum_mismatch(fx, server, tmp_path):
    _serve_ns1(server, fx, zip_hash="0" * 64)
    dest = tmp_path / "dl"
    with pytest.raises(ChecksumError):
        download_ns1(dest)
    assert not (dest / "spikesandwav.zip").exists()


def test_offline_download_is_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError):
        NS1Dataset(tmp_path / "dl", download=True)


def test_spike_file_helper_roundtrip(tmp_path):
    """A single-repeat stim (1x1 struct array) and a column vector parse."""
    trains = [[np.array([[1.4], [7.6]])] for _ in range(20)]
    path = tmp_path / "one.mat"
    make_spike_file(path, trains)
    counts = [ns1_drc._bin_stim([cell])[0] for cell in NS1Dataset._read_spikes(path)]
    assert len(counts) == 20 and counts[0].shape == (1, 999)
    assert counts[0][0, 0] == 1 and counts[0][0, 1] == 1
