"""Le2025Dataset end to end on a tiny figshare-layout fixture; the gammatone front end; the download helper."""

from __future__ import annotations

import io
import math
import os
import shutil
import zipfile

import numpy as np
import pytest
import scipy.signal as ss
import torch

from deepSTRF.datasets._errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from deepSTRF.datasets.audio import le_2025 as le_mod
from deepSTRF.datasets.audio._gammatone import (
    erb_filter_sos,
    erb_space,
    frame_params,
    gammatone_spectrogram,
)
from deepSTRF.datasets.audio.le_2025 import Le2025Dataset, download_le_2025
from deepSTRF.utils import download as dl
from fixtures.http_emulator import Emulator, file_reply, json_reply, md5
from fixtures.le_2025 import UNPACKED, build_le_2025, expected_counts

pytestmark = pytest.mark.filterwarnings("ignore:skipping:UserWarning")


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    parent = tmp_path_factory.mktemp("le2025")
    return build_le_2025(parent)


@pytest.fixture
def data(fixture, tmp_path):
    dst = tmp_path / "Le_2025"
    shutil.copytree(fixture["folder"].parent, dst)
    return dst / UNPACKED


def _raw(folder, experiment="nat8b", **kw):
    return Le2025Dataset(folder, experiment=experiment, smooth=False, compute_reliability=False, **kw)


# --------------------------------------------------------------------------- gammatone front end

# gammatone.gtgram.gtgram(x, 16000, 0.0025, 0.005, 8, 500.0, 6000.0) of PyPI gammatone 1.0.3, recorded once
GTGRAM_REF = np.array([
    [0.0005011619, 0.0017130993, 0.0008349167, 0.0002767867, 0.0002031637, 0.0002376466, 0.0001588296, 0.000260459, 0.0002491579, 0.0002238168],
    [0.0009931274, 0.0070736046, 0.0022329684, 0.0003780603, 0.0001754492, 0.0001470986, 0.0002445912, 0.0001001759, 0.0001446677, 0.0002445121],
    [0.0017522159, 0.0033390625, 0.0087854855, 0.0043548201, 0.0034105698, 0.0032568982, 0.0025403793, 0.0036636303, 0.003179974, 0.0025663145],
    [0.0030423488, 0.0041825894, 0.0050927228, 0.0091747544, 0.0123860206, 0.0050354898, 0.0044190418, 0.0042640425, 0.0041567821, 0.0041595341],
    [0.0014035223, 0.0004314495, 0.0004390906, 0.000477016, 0.001243509, 0.0040015873, 0.0119046246, 0.0084377143, 0.0009560638, 0.0004674479],
    [0.000912519, 0.0004876675, 0.0004362606, 0.0005023941, 0.0005494972, 0.0005515328, 0.0007275484, 0.0018800899, 0.0047140749, 0.0116600002],
    [0.0007386415, 0.0008913559, 0.0008566555, 0.000913037, 0.0009083512, 0.000856133, 0.0008792786, 0.0008539121, 0.0008783236, 0.000993188],
    [0.000627181, 0.0007175045, 0.0006750186, 0.0007369996, 0.0007118088, 0.0005999999, 0.0006621506, 0.0006326816, 0.0006166361, 0.0006589656],
])


def test_gammatone_matches_recorded_gtgram():
    fs = 16000
    t = np.arange(800) / fs
    x = (0.03 * np.sin(2 * np.pi * 1200 * t) + 0.02 * np.sin(2 * np.pi * (700 + 20000 * t) * t)
         + 0.01 * np.sign(np.sin(2 * np.pi * 310 * t)))
    ours = gammatone_spectrogram(x, fs, 8, 500.0, 6000.0, 2.5, 5.0)
    np.testing.assert_allclose(ours, GTGRAM_REF, rtol=1e-6, atol=1e-12)


def test_erb_space_and_frames():
    cfs = erb_space(1000.0, 8000.0, 50)
    assert cfs[0] == pytest.approx(1000.0) and cfs[-1] == pytest.approx(7692.92, abs=0.01)
    assert np.all(np.diff(cfs) > 0)
    assert frame_params(48000, 2.5, 5.0, 14400) == (120, 240, 60)
    assert frame_params(44100, 2.5, 5.0, 11025) == (110, 221, 50)  # 110.25 -> 110, 220.5 -> 221 (half away)
    assert frame_params(40000, 2.5, 5.0, 100) == (100, 200, 1)


@pytest.mark.parametrize("cf", [1000.0, 3000.0, 7692.9])
def test_sections_match_scipy_gammatone(cf):
    fs = 48000
    w = np.linspace(300, 15000, 300)
    _, ours = ss.sosfreqz(erb_filter_sos([cf], fs)[0], worN=w, fs=fs)
    b, a = ss.gammatone(cf, "iir", fs=fs)
    _, ref = ss.freqz(b, a, worN=w, fs=fs)
    _, at_cf = ss.freqz(b, a, worN=[cf], fs=fs)
    np.testing.assert_allclose(np.abs(ours), np.abs(ref) / abs(at_cf[0]), atol=1e-4)
    _, gain = ss.sosfreqz(erb_filter_sos([cf], fs)[0], worN=[cf], fs=fs)
    assert abs(gain[0]) == pytest.approx(1.0, abs=1e-9)


# --------------------------------------------------------------------------- loader


def _check_counts(ds, info, dt_ms):
    units = {u.stem: u for u in info["units"]}
    names = [m["name"] for m in ds.stim_meta]
    for n, meta in enumerate(ds.nrn_meta):
        unit = units[meta["cell_id"]]
        for s, name in enumerate(names):
            rate, n_samples = info["wavs"][name]
            _, _, T = frame_params(rate, 2.5, dt_ms, n_samples)
            got = ds.responses[s][n]
            if name in unit.trials:
                want = expected_counts(unit.trials[name], T, dt_ms)
                np.testing.assert_array_equal(got.numpy(), want)
            else:
                assert got.shape == (1, 1) and torch.isnan(got).all()


def test_nat8b_shapes_counts_and_stims(fixture):
    info = fixture["nat8b"]
    with pytest.warns(UserWarning, match="weird name.wav") as rec:
        ds = _raw(fixture["folder"])
    assert any("C44_2_1_c8" in str(w.message) for w in rec)  # unit with no usable trial dropped
    assert ds.get_S() == 6 and ds.N_neurons == 3 and ds.F == 50 and ds.dt == 5.0
    assert ds.audio_fs is None and ds.species == "zebra finch" and ds.hearing_range_hz == (250.0, 8000.0)
    assert [m["cell_id"] for m in ds.nrn_meta] == ["C43_1_1_c109", "C43_1_2_c5", "C44_2_1_c7"]
    for s, m in enumerate(ds.stim_meta):
        rate, n = info["wavs"][m["name"]]
        assert ds.stims[s].shape == (1, 50, 1 + (n - 120) // 240)
        assert ds.stims[s].dtype == torch.float32
    _check_counts(ds, info, 5.0)
    assert not bool(ds.nrn_masks[[m["name"] for m in ds.stim_meta].index("ep_nat8mk1_N_g1"), 0])


def test_tone_lands_in_its_band(fixture):
    ds = _raw(fixture["folder"])
    cfs = erb_space(1000.0, 8000.0, 50)
    for name, tone in (("ep_nat8mk0_C", 3000.0), ("ep_nat8mk1_C", 1500.0)):
        s = [m["name"] for m in ds.stim_meta].index(name)
        profile = ds.stims[s][0, :, 5:-5].mean(dim=1).numpy()
        assert abs(cfs[profile.argmax()] - tone) < 0.08 * tone
        # -30 dBFS: RMS amplitude ~0.03 at the peak band, barely bent by ln(1 + x)
        assert 0.01 < profile.max() < 0.05
    assert float(min(s.min() for s in ds.stims)) >= 0.0


def test_stim_order_and_metadata(fixture):
    ds = _raw(fixture["folder"])
    assert [m["name"] for m in ds.stim_meta] == [
        "ep_nat8mk0_G_g1", "ep_nat8mk0_GB_g2_snr0", "ep_nat8mk0_C", "ep_nat8mk0_CM_snr0",
        "ep_nat8mk1_N_g1", "ep_nat8mk1_C"]
    m = ds.stim_meta[0]
    assert m == {"name": "ep_nat8mk0_G_g1", "motif": "nat8mk0", "critical_interval": 1, "variant": "G",
                 "syntax": "natural", "experiment": "nat8b", "sample_rate_hz": 48000, "duration_s": 0.3,
                 "ci_onset_s": 0.1, "ci_offset_s": 0.16}
    assert ds.stim_meta[1]["ci_offset_s"] == pytest.approx(0.262)
    assert ds.stim_meta[2]["critical_interval"] is None and math.isnan(ds.stim_meta[2]["ci_onset_s"])
    n0, n1, n2 = ds.nrn_meta
    assert n0 == {"cell_id": "C43_1_1_c109", "animal_id": "C43", "animal_uuid": "uuid-c43-pprox", "cohort": 3,
                  "experiment": "nat8b", "area": "NCM", "hemisphere": "L", "familiar_motifs": [], "sex": "F",
                  "age_days": 375, "pprox_file": "C43_1_1_c109.pprox"}
    assert n1["area"] == "unknown" and n1["hemisphere"] == "R" and n1["animal_uuid"] == "uuid-c43"
    assert n2["area"] == "unknown" and n2["hemisphere"] is None and n2["age_days"] == 400


def test_nat8a_legacy_and_stimtrial_units(fixture):
    with pytest.warns(UserWarning, match="R56_bogus"):
        ds = _raw(fixture["folder"], "nat8a")
    info = fixture["nat8a"]
    assert ds.get_S() == 5 and ds.N_neurons == 3
    _check_counts(ds, info, 5.0)
    o129, r99, c43 = ds.nrn_meta
    assert [m["cohort"] for m in ds.nrn_meta] == [1, 1, 2]
    assert o129["animal_uuid"] == "uuid-o129-pprox" and o129["area"] == "NCM" and o129["hemisphere"] == "L"
    assert o129["familiar_motifs"] == ["B189", "B2"] and o129["sex"] == "M" and o129["age_days"] == 730
    assert r99["area"] == "unknown" and r99["familiar_motifs"] == ["R56"] and r99["sex"] == "M"
    assert r99["age_days"] == 100 and r99["animal_uuid"] is None
    by = {m["name"]: m for m in ds.stim_meta}
    assert by["B189_gapnoise2"]["variant"] == "GB" and by["B189_gapnoise2"]["critical_interval"] == 2
    assert by["R56_noise1"]["ci_onset_s"] == pytest.approx(0.09)
    assert by["B189_continuous"]["sample_rate_hz"] == 40000


def test_synth8b_string_cis(fixture):
    ds = _raw(fixture["folder"], "synth8b")
    assert [(m["name"], m["critical_interval"]) for m in ds.stim_meta] == [
        ("ep_synth8mk0_G_g2a", "2a"), ("ep_synth8mk0_GB_g4a_snr0", "4a"), ("ep_synth8mk0_C", None)]
    assert all(m["syntax"] == "scrambled" and math.isnan(m["ci_onset_s"]) for m in ds.stim_meta)
    frames = [frame_params(44100, 2.5, 5.0, fixture["synth8b"]["wavs"][m["name"]][1])[2] for m in ds.stim_meta]
    assert [s.shape[-1] for s in ds.stims] == frames
    _check_counts(ds, fixture["synth8b"], 5.0)


def test_defaults_smooth_with_unit_gain_and_reliability(fixture):
    raw = _raw(fixture["folder"])
    ds = Le2025Dataset(fixture["folder"])
    kernel = torch.tensor([0.0, 0.5, 1.0, 0.5, 0.0], dtype=torch.float64) / 2.0
    for s in range(ds.get_S()):
        for n in range(ds.N_neurons):
            r = raw.responses[s][n]
            if r.shape == (1, 1):
                continue
            want = torch.nn.functional.conv1d(r.double().unsqueeze(1), kernel.view(1, 1, 5), padding=2).squeeze(1)
            torch.testing.assert_close(ds.responses[s][n].double(), want, atol=1e-6, rtol=1e-6)
            # the mean rate survives smoothing away from the edges (unit gain)
            assert float(ds.responses[s][n].sum()) == pytest.approx(float(r[:, 1:-1].sum()), abs=float(r.sum()) * 0.2 + 2)
    for meta in ds.nrn_meta:
        assert {"signal_power", "noise_power", "snr"} <= set(meta)
        assert meta["noise_power"] > 0 and meta["snr"] == pytest.approx(meta["signal_power"] / meta["noise_power"])


def test_selectors(fixture):
    ds = _raw(fixture["folder"])
    assert ds.select_variant("C") == [2, 5]
    assert ds.select_motif("nat8mk1") == [4, 5]
    assert ds.select_critical_interval(1) == [0, 4]
    assert ds.select_restoration_quartet("nat8mk0", 2) == [1, 2]  # GB g2 + C
    assert ds.S_sel == [1, 2]
    assert ds.select_restoration_quartet("nat8mk0", 1, variants=("G", "CM")) == [0, 3]
    sel = ds.select_pop_by_nrn_attr("area", "NCM")
    assert [ds.nrn_meta[i]["cell_id"] for i in sel] == ["C43_1_1_c109"]
    with pytest.raises(ValueError, match="variant"):
        ds.select_variant("Q")


def test_keep_areas(fixture):
    ds = _raw(fixture["folder"], keep_areas=["NCM"])
    assert [m["cell_id"] for m in ds.nrn_meta] == ["C43_1_1_c109"]
    with pytest.raises(ValueError, match="keeps no unit"):
        _raw(fixture["folder"], keep_areas=["CM"])
    with pytest.raises(TypeError, match="keep_areas"):
        _raw(fixture["folder"], keep_areas="NCM")


def test_waveform_mode_bins_on_the_frame_grid(fixture):
    spec = _raw(fixture["folder"])
    ds = _raw(fixture["folder"], return_waveform=True)
    assert ds.return_waveform and ds.audio_fs == 48000 and ds.hop == 240 and ds.F == 50
    for s in range(ds.get_S()):
        T = spec.stims[s].shape[-1]
        assert ds.stims[s].shape == (1, T * 240)
        for n in range(ds.N_neurons):
            torch.testing.assert_close(ds.responses[s][n], spec.responses[s][n], equal_nan=True)
    # 40 kHz nat8a wavs resampled to 16 kHz: 1 ms bins of 16 samples; tone kept
    wf = _raw(fixture["folder"], "nat8a", return_waveform=True, audio_fs=16000, dt_ms=1.0)
    s = [m["name"] for m in wf.stim_meta].index("B189_continuous")
    x = wf.stims[s][0].numpy()
    assert x.shape[0] == wf.responses[s][0].shape[-1] * 16
    assert np.fft.rfftfreq(x.size, 1 / 16000)[np.abs(np.fft.rfft(x)).argmax()] == pytest.approx(2000, abs=10)
    with pytest.raises(ValueError, match="whole number"):
        _raw(fixture["folder"], return_waveform=True, audio_fs=44100)


def test_cache_reuse_and_invalidation(data, monkeypatch):
    calls = []
    real = le_mod._load_pprox
    monkeypatch.setattr(le_mod, "_load_pprox", lambda p: calls.append(p) or real(p))
    a = _raw(data)
    assert len(calls) == 4
    b = _raw(data)
    assert len(calls) == 4  # cached
    torch.testing.assert_close(a.stims[0], b.stims[0])
    _raw(data, n_bands=8)  # a knob rebuilds
    assert len(calls) == 8
    wav = data / "nat8b-stimuli/ep_nat8mk1_C.wav"
    st = wav.stat()
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _raw(data)
    assert len(calls) == 12


def test_parent_folder_and_data_root(data, monkeypatch):
    ds = _raw(data.parent, "synth8b")  # the download folder works too
    assert ds.path == str(data)
    monkeypatch.setenv("DEEPSTRF_DATA", str(data.parent.parent))
    assert Le2025Dataset(experiment="synth8b", smooth=False).path == str(data)


def test_missing_folder_and_bad_args(tmp_path, fixture):
    with pytest.raises(DatasetNotFoundError, match="nat8b-stimuli") as info:
        Le2025Dataset(tmp_path / "none")
    assert "download_le_2025" in str(info.value)
    for kwargs, match in ((dict(experiment="nat9"), "experiment"), (dict(dt_ms=0), "dt_ms"),
                          (dict(n_bands=0), "n_bands"), (dict(fmin=9000.0), "fmin"),
                          (dict(fmax=30000.0), "Nyquist")):
        with pytest.raises(ValueError, match=match):
            Le2025Dataset(fixture["folder"], **kwargs)


def test_corrupt_pprox(data):
    bad = data / "nat8b-responses/C43_1_2_c5.pprox"
    bad.write_text(bad.read_text()[:300])
    with pytest.raises(DatasetFormatError, match="C43_1_2_c5.pprox") as info:
        _raw(data)
    assert info.value.field == "JSON"
    bad.write_text('{"$schema": "x", "pprox": [{"stimulus": {"name": "ep_nat8mk0_C"}}]}')
    with pytest.raises(DatasetFormatError, match="events"):
        _raw(data)


def test_missing_metadata_csv_warns(data):
    (data / "metadata/recordings.csv").unlink()
    with pytest.warns(UserWarning, match="recordings.csv"):
        ds = _raw(data)
    assert all(m["area"] == "unknown" for m in ds.nrn_meta)


# --------------------------------------------------------------------------- download


def _zip_of(folder) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "synth8b" in str(p) or p.parent.name == "metadata":
                zf.write(p, f"{UNPACKED}/{p.relative_to(folder)}")
    return buf.getvalue()


@pytest.fixture
def server(monkeypatch):
    with Emulator() as emu:
        for key, value in emu.host_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setattr(dl, "_sleep", lambda s: None)
        yield emu


def _figshare(emu, payload, checksum):
    emu.route("GET", f"/v2/articles/{le_mod.FIGSHARE_ARTICLE_ID}", json_reply({
        "id": int(le_mod.FIGSHARE_ARTICLE_ID), "doi": le_mod.FIGSHARE_DOI, "version": 1,
        "license": {"value": 1, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
        "files": [{"id": le_mod.FIGSHARE_FILE_ID, "name": le_mod.FIGSHARE_FILENAME, "size": len(payload),
                   "is_link_only": False, "download_url": f"{emu.base}/ndownloader/files/{le_mod.FIGSHARE_FILE_ID}",
                   "supplied_md5": "", "computed_md5": checksum, "mimetype": "application/zip"}]}))
    emu.route("GET", f"/ndownloader/files/{le_mod.FIGSHARE_FILE_ID}", lambda req: _redirect(emu))
    emu.route("GET", "/storage/zip", file_reply(payload, content_type="application/zip"))


def _redirect(emu):
    from fixtures.http_emulator import Reply

    return Reply(302, {"Location": f"{emu.base}/storage/zip"})


def test_download_le_2025(server, fixture, tmp_path):
    payload = _zip_of(fixture["folder"])
    _figshare(server, payload, md5(payload))
    dest = tmp_path / "dl"
    inner = download_le_2025(dest)
    assert inner == str(dest / UNPACKED) and (dest / le_mod.FIGSHARE_FILENAME).is_file()
    ds = Le2025Dataset(dest, experiment="synth8b", download=True, smooth=False)
    assert ds.get_S() == 3 and ds.N_neurons == 1
    n = len(server.log)
    download_le_2025(dest)
    assert len(server.log) == n
    assert all(r.headers["user-agent"].startswith("deepSTRF/") for r in server.log)


def test_constructor_downloads(server, fixture, tmp_path):
    payload = _zip_of(fixture["folder"])
    _figshare(server, payload, md5(payload))
    ds = Le2025Dataset(tmp_path / "ctor", experiment="synth8b", download=True, compute_reliability=False)
    assert ds.path == str(tmp_path / "ctor" / UNPACKED)


def test_download_checksum_mismatch(server, fixture, tmp_path):
    payload = _zip_of(fixture["folder"])
    _figshare(server, payload, "f" * 32)
    with pytest.raises(ChecksumError, match=le_mod.FIGSHARE_FILENAME):
        download_le_2025(tmp_path / "bad")
    assert not (tmp_path / "bad" / le_mod.FIGSHARE_FILENAME).exists()
    assert not (tmp_path / "bad" / UNPACKED).exists()
