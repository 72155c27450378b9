"""CRCNSAA1Dataset end to end on a tiny aa-1 layout."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
import torch
from fixtures.crcns_aa import AA1_CELLS, AA1_RATE, AA1_STIMS, expected_counts, make_aa1
from fixtures.http_emulator import Emulator, Reply, sha256

from deepSTRF.datasets._errors import (
    ChecksumError,
    CredentialsError,
    DatasetFormatError,
    DatasetNotFoundError,
)
from deepSTRF.datasets._storage import is_sentinel
from deepSTRF.datasets.audio import _crcns
from deepSTRF.datasets.audio import crcns_aa1 as aa1
from deepSTRF.datasets.audio.crcns_aa1 import CRCNSAA1Dataset, download_aa1
from deepSTRF.utils import download as dl


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("aa1")
    return root, make_aa1(root)


def _heard(stim_types, areas=("Field_L", "MLd"), animals=None):
    """Expected stim list (class order, sorted names) and cells (area order, sorted)."""
    cells = [(a, c) for a in areas for (a2, c) in sorted(AA1_CELLS) if a2 == a
             and (animals is None or c.split("_")[0] in animals)
             and any(t in AA1_CELLS[(a2, c)] for t in stim_types)]
    return cells


def _check(ds, truth, stim_types, areas=("Field_L", "MLd"), animals=None, dt=1.0, smooth=False):
    cells = _heard(stim_types, areas, animals)
    assert [(m["area"], m["cell_id"]) for m in ds.nrn_meta] == cells
    spikes = truth["spikes"]
    expected_stims = [(t, name, dur) for t in stim_types for name, dur, _ in sorted(AA1_STIMS[t])
                      if any((a, c, t, name) in spikes for a, c in cells)]
    assert [(m["type"], m["name"]) for m in ds.stim_meta] == [(t, n) for t, n, _ in expected_stims]
    hop = int(dt * 32)
    for s, (t, name, dur) in enumerate(expected_stims):
        n_samples = int(round(dur * AA1_RATE))
        T = 1 + n_samples // hop
        meta = ds.stim_meta[s]
        assert meta["sample_rate"] == 32000.0 and meta["n_samples"] == n_samples
        assert meta["duration_s"] == pytest.approx(dur)
        for n, (a, c) in enumerate(cells):
            resp = ds.responses[s][n]
            key = (a, c, t, name)
            assert bool(ds.nrn_masks[s, n]) == (key in spikes)
            if key not in spikes:
                assert is_sentinel(resp)
                continue
            counts = expected_counts(spikes[key], T, dt)
            assert resp.shape == counts.shape and resp.dtype == torch.float32
            if smooth:  # unit-gain Hann, 21 ms
                K = 2 * int(21 / dt // 2) + 1
                kernel = np.hanning(K) / np.hanning(K).sum()
                want = np.stack([np.convolve(row, kernel, mode="same") for row in counts])
                np.testing.assert_allclose(resp.numpy(), want, atol=1e-5)
            else:
                np.testing.assert_array_equal(resp.numpy(), counts)


def test_defaults(raw):
    root, truth = raw
    ds = CRCNSAA1Dataset(root)
    assert (ds.F, ds.dt, ds.audio_fs, ds.return_waveform, ds.compression) == (32, 1.0, None, False, "cubic")
    assert ds.species == "zebra finch" and ds.behavioral_state == "anesthetized"
    assert ds.hearing_range_hz == (250.0, 8000.0)
    assert ds.animals == ["bb2021", "gg0304", "pipu1018", "yy1617"]
    assert ds.N_neurons == 6 and ds.get_S() == 6  # the unheard flatrip wav is dropped
    assert "FFFF0718293A4B5C6D7E8F90A1B2C3D4.wav" not in [m["name"] for m in ds.stim_meta]
    _check(ds, truth, ("conspecific", "flatrip"), smooth=True)
    assert set(ds.nrn_meta[0]) >= {"cell_id", "animal_id", "area", "cell_seq", "rig"}
    gg = next(m for m in ds.nrn_meta if m["cell_id"] == "gg0304_4_B")
    assert (gg["animal_id"], gg["cell_seq"], gg["rig"], gg["area"]) == ("gg0304", 4, "B", "Field_L")
    for s, stim in enumerate(ds.stims):
        assert stim.shape[:2] == (1, 32) and stim.dtype == torch.float32


def test_unsmoothed_counts_and_unit_gain_smoothing(raw):
    root, truth = raw
    ds = CRCNSAA1Dataset(root, smooth=False)
    _check(ds, truth, ("conspecific", "flatrip"))
    smoothed = CRCNSAA1Dataset(root)
    ds.smooth_responses(21.0)  # the core method gives the cached smoothing exactly
    for s in range(ds.get_S()):
        for n in range(ds.N_neurons):
            a, b = ds.responses[s][n], smoothed.responses[s][n]
            assert torch.allclose(a, b, equal_nan=True, atol=1e-6)


def test_mld_flatrip_dt5(raw):
    root, truth = raw
    ds = CRCNSAA1Dataset(root, areas="MLd", stimuli=["flatrip"], dt_ms=5, smooth=False)
    assert {m["area"] for m in ds.nrn_meta} == {"MLd"}
    _check(ds, truth, ("flatrip",), areas=("MLd",), dt=5.0)
    assert ds.stims[0].shape[-1] == 1 + int(round(0.25 * AA1_RATE)) // 160


def test_conspecific_animal_subset(raw):
    root, truth = raw
    ds = CRCNSAA1Dataset(root, stimuli=["conspecific"], animals=["gg0304", "yy1617"], smooth=False)
    _check(ds, truth, ("conspecific",), animals=("gg0304", "yy1617"))
    assert ds.animals == ["gg0304", "yy1617"]
    # area follows the folder, animal the name prefix (the reference mislabels both here)
    assert [(m["cell_id"], m["area"], m["animal_id"]) for m in ds.nrn_meta] == [
        ("gg0304_4_B", "Field_L", "gg0304"), ("gg0304_4_A", "MLd", "gg0304"), ("yy1617_3", "MLd", "yy1617")]


def test_front_end_knobs_and_tone_band(raw):
    root, truth = raw
    ds = CRCNSAA1Dataset(root, dt_ms=2.5, window_ms=25, compression="none", n_mels=20, smooth=False)
    assert ds.F == 20 and ds.dt == 2.5
    _check(ds, truth, ("conspecific", "flatrip"), dt=2.5)
    from deepSTRF.datasets.audio._spectrogram import hz_to_mel, mel_to_hz

    edges = mel_to_hz(np.linspace(0, hz_to_mel(16000), 22))
    for s, meta in enumerate(ds.stim_meta):
        freq = next(f for n, _, f in AA1_STIMS[meta["type"]] if n == meta["name"])
        energy = ds.stims[s][0].sum(dim=-1)
        assert edges[int(energy.argmax())] <= freq <= edges[int(energy.argmax()) + 2]
        assert bool((ds.stims[s] >= 0).all())


def test_selection_by_own_metadata(raw):
    root, _ = raw
    ds = CRCNSAA1Dataset(root)
    mld = ds.select_pop_by_nrn_attr("area", "MLd")
    assert [ds.nrn_meta[n]["area"] for n in mld] == ["MLd"] * 3
    flat = ds.select_stims_by_attr("type", "flatrip")
    assert all(ds.stim_meta[s]["type"] == "flatrip" for s in flat)
    for i in range(len(ds)):
        assert ds[i]["responses"]


@pytest.mark.parametrize("fs", [32000, 16000])
def test_waveform_mode(raw, fs):
    root, truth = raw
    ds = CRCNSAA1Dataset(root, return_waveform=True, audio_fs=fs, smooth=False)
    hop = fs // 1000
    assert ds.audio_fs == fs and ds.hop == hop and ds.F == 32
    _check(ds, truth, ("conspecific", "flatrip"))
    for s, stim in enumerate(ds.stims):
        T = next(r for r in ds.responses[s] if not is_sentinel(r)).shape[-1]
        assert stim.shape == (1, T * hop)
    if fs == 32000:  # native rate: the wav itself, zero-padded to the grid
        name = ds.stim_meta[0]["name"]
        import soundfile
        wav, _ = soundfile.read(root / "all_stims" / "conspecific" / name, dtype="float32")
        np.testing.assert_array_equal(ds.stims[0][0, : wav.size].numpy(), wav)
        assert not ds.stims[0][0, wav.size:].any()


def test_cache_reuse_and_invalidation(raw, monkeypatch, tmp_path):
    root, _ = raw
    calls = []
    real = aa1.build_text_payload

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(aa1, "build_text_payload", counting)
    a = CRCNSAA1Dataset(root, dt_ms=5)
    b = CRCNSAA1Dataset(root, dt_ms=5)
    assert len(calls) == 1
    assert all(torch.equal(x, y) for x, y in zip(a.stims, b.stims))
    CRCNSAA1Dataset(root, dt_ms=5, n_mels=16)  # a knob changes the key
    assert len(calls) == 2
    CRCNSAA1Dataset(root, dt_ms=5, cache=False)
    assert len(calls) == 3


def test_touching_a_raw_file_rebuilds(tmp_path, monkeypatch):
    root = tmp_path / "aa1"
    make_aa1(root)
    calls = []
    real = aa1.build_text_payload
    monkeypatch.setattr(aa1, "build_text_payload", lambda *a, **k: calls.append(1) or real(*a, **k))
    CRCNSAA1Dataset(root, dt_ms=5, smooth=False)
    spike = root / "MLd_cells" / "yy1617_3" / "flatrip" / "spike4"
    spike.write_text("1.0 2.0 \n3.0 \n")
    os.utime(spike, ns=(1, 10**9 * 12345))
    ds = CRCNSAA1Dataset(root, dt_ms=5, smooth=False)
    assert len(calls) == 2
    n = [m["cell_id"] for m in ds.nrn_meta].index("yy1617_3")
    s = [m["name"] for m in ds.stim_meta].index(AA1_STIMS["flatrip"][2][0])
    assert ds.responses[s][n][:, 0].tolist() == [2.0, 1.0]


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        CRCNSAA1Dataset(tmp_path / "nothing")
    msg = str(err.value)
    assert "Field_L_cells" in msg and "download=True" in msg and "CRCNS_USERNAME" in msg
    assert "crcns.org/register" in msg and "netrc" in msg


def test_corrupt_files(tmp_path):
    root = tmp_path / "aa1"
    make_aa1(root)
    bad = root / "Field_L_cells" / "bb2021_1" / "conspecific" / "spike2"
    bad.write_text("1.0 2.0 \n3.0 x17 \n")
    with pytest.raises(DatasetFormatError) as err:
        CRCNSAA1Dataset(root, cache=False)
    assert str(bad) in str(err.value) and "line 2" in str(err.value)
    bad.write_text("1.0 \n")
    wav = root / "all_stims" / "flatrip" / AA1_STIMS["flatrip"][0][0]
    wav.write_bytes(wav.read_bytes()[:30])  # truncated header
    with pytest.raises(DatasetFormatError, match="audio"):
        CRCNSAA1Dataset(root, cache=False)


def test_bad_arguments(raw):
    root, _ = raw
    with pytest.raises(ValueError, match="areas"):
        CRCNSAA1Dataset(root, areas=["mld"])
    with pytest.raises(ValueError, match="compression"):
        CRCNSAA1Dataset(root, compression="cube")
    with pytest.raises(ValueError, match="samples per bin"):
        CRCNSAA1Dataset(root, return_waveform=True, audio_fs=22050)


# --------------------------------------------------------------------------- download (local CRCNS emulator)

LOGIN = ('<html><body><p>Invalid user name or password</p><form method="post">'
         '<input name="username"><input type="password" name="password"></form></body></html>')


def _zip_tree(root) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root).as_posix())
    return buf.getvalue()


@pytest.fixture
def crcns(tmp_path, monkeypatch, raw):
    root, _ = raw
    payload = _zip_tree(root)
    with Emulator() as emu:
        for key, value in emu.host_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
        for var in ("CRCNS_USERNAME", "CRCNS_PASSWORD"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(dl, "_sleep", lambda s: None)

        def handle(req):
            form = req.form()
            if form.get("username") != "finch" or form.get("password") != "s3cret":
                return Reply(200, {"Content-Type": "text/html"}, LOGIN.encode())
            return Reply(200, {"Content-Type": "application/octet-stream"}, payload)

        emu.route("POST", "/project/crcns/download/aa-1/crcns-aa1.zip", handle)
        yield emu, payload


def test_download_needs_credentials(crcns, tmp_path):
    emu, _ = crcns
    with pytest.raises(CredentialsError) as err:
        CRCNSAA1Dataset(tmp_path / "dl", download=True)
    assert "CRCNS_USERNAME" in str(err.value) and "netrc" in str(err.value)
    assert emu.log == []


def test_download_rejected_credentials_html_login_page(crcns, tmp_path, monkeypatch):
    emu, _ = crcns
    monkeypatch.setenv("CRCNS_USERNAME", "finch")
    monkeypatch.setenv("CRCNS_PASSWORD", "wrong-one")
    with pytest.raises(CredentialsError, match="rejected") as err:
        download_aa1(tmp_path / "dl")
    assert "wrong-one" not in str(err.value)
    assert not (tmp_path / "dl" / "crcns-aa1.zip").exists()


def test_download_then_load(crcns, tmp_path, monkeypatch):
    emu, payload = crcns
    monkeypatch.setenv("CRCNS_USERNAME", "finch")
    monkeypatch.setenv("CRCNS_PASSWORD", "s3cret")
    monkeypatch.setitem(aa1.AA1_REGISTRY, aa1.AA1_NERSC_PATH, "sha256:" + sha256(payload))
    ds = CRCNSAA1Dataset(tmp_path / "dl", download=True, dt_ms=5)
    assert ds.N_neurons == 6 and ds.get_S() == 6
    (req,) = emu.log
    assert req.method == "POST" and req.form()["fn"] == "aa-1/crcns-aa1.zip" and "s3cret" not in req.path
    CRCNSAA1Dataset(tmp_path / "dl", download=True, dt_ms=5)  # nothing fetched again
    assert len(emu.log) == 1


def test_download_checksum_mismatch(crcns, tmp_path, monkeypatch):
    monkeypatch.setenv("CRCNS_USERNAME", "finch")
    monkeypatch.setenv("CRCNS_PASSWORD", "s3cret")
    monkeypatch.setitem(aa1.AA1_REGISTRY, aa1.AA1_NERSC_PATH, "sha256:" + "0" * 64)
    with pytest.raises(ChecksumError):
        download_aa1(tmp_path / "dl")
    assert not (tmp_path / "dl" / "crcns-aa1.zip").exists()


def test_offline_download_is_not_found(crcns, tmp_path, monkeypatch):
    emu, _ = crcns
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError):
        CRCNSAA1Dataset(tmp_path / "dl", download=True)
    assert emu.log == []


def test_parse_cell_name():
    assert _crcns.parse_cell_name("gg0304_4_B") == ("gg0304", 4, "B")
    assert _crcns.parse_cell_name("yy1617_3") == ("yy1617", 3, None)
    assert _crcns.parse_cell_name("odd_name_x") == ("odd", None, None)
