"""AliceEEGDataset end to end on the fixture of ``tests/fixtures/alice_eeg.py``."""

from __future__ import annotations

import io
import os
import shutil
import sys
import zipfile

import numpy as np
import pytest
import torch
from fixtures.alice_eeg import (
    AUDIO_FS,
    BADS,
    BLINK,
    EEG_CHANNELS,
    TONE_HZ,
    WAV_SAMPLES,
    build_alice,
    write_subject,
)
from fixtures.http_emulator import Emulator, file_reply, md5

from deepSTRF.datasets._errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from deepSTRF.datasets._storage import is_sentinel
from deepSTRF.datasets.audio import alice_eeg as al
from deepSTRF.datasets.audio.alice_eeg import AliceEEGDataset, download_alice_eeg
from deepSTRF.utils import download as dl

mne = pytest.importorskip("mne")
C = len(EEG_CHANNELS)


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def alice(tmp_path_factory):
    root = tmp_path_factory.mktemp("alice")
    return root, build_alice(root)


@pytest.fixture(scope="module")
def alice100(tmp_path_factory):
    root = tmp_path_factory.mktemp("alice100")
    return root, build_alice(root, sfreq=100.0, seed=1)


@pytest.fixture(scope="module")
def ds_default(alice):
    return AliceEEGDataset(alice[0], cache=False)


def _n(ds, subject, channel):
    return next(i for i, m in enumerate(ds.nrn_meta) if m["subject"] == subject and m["channel_id"] == channel)


# ---------------------------------------------------------------- shapes, metadata, mask


def test_shapes_attributes_and_metadata(ds_default, alice):
    ds, truth = ds_default, alice[1]
    assert ds.get_S() == 12 and ds.N_neurons == 3 * C and ds.F == 8 and ds.dt == 10.0
    assert ds.subjects == ["S02", "S11", "S40"] and ds.treat_subjects_as == "neurons"
    assert (ds.species, ds.behavioral_state, ds.hearing_range_hz) == ("human", "passive-listening", (20.0, 20000.0))
    assert ds.audio_fs is None and not ds.return_waveform and ds.spec_backend == "gaussian"
    assert (ds.hp_freq_hz, ds.lp_freq_hz, ds.window_ms, ds.fmin, ds.fmax) == (1.0, None, None, 80.0, None)
    for s, meta in enumerate(ds.stim_meta):
        n = WAV_SAMPLES[s]
        assert ds.stims[s].shape == (1, 8, 1 + n // 441) and ds.stims[s].dtype == torch.float32
        assert meta == {"name": f"{s + 1}.wav", "segment": s + 1, "type": "alice_chapter1", "sample_rate": 44100.0,
                        "n_samples": n, "duration_s": n / 44100.0}
    assert [m["channel_id"] for m in ds.nrn_meta] == EEG_CHANNELS * 3
    assert [m["subject"] for m in ds.nrn_meta] == ["S02"] * C + ["S11"] * C + ["S40"] * C
    first = ds.nrn_meta[0]
    assert set(first) == {"channel_id", "subject", "area", "xyz", "bad"} and first["area"] == "EEG"
    np.testing.assert_allclose(first["xyz"], truth.positions["1"], atol=1e-6)
    assert ds.nrn_meta[_n(ds, "S02", "22")]["bad"] and not ds.nrn_meta[_n(ds, "S02", "1")]["bad"]


def test_mask_bad_channels_missing_segment_blink_and_cut(ds_default, alice):
    ds, truth = ds_default, alice[1]
    expected = torch.ones(12, 3 * C, dtype=torch.bool)
    for subject, bads in BADS.items():
        for b in bads:
            expected[:, _n(ds, subject, b)] = False
    expected[0, [_n(ds, "S40", c) for c in EEG_CHANNELS]] = False  # S40 has no annotation '1'
    assert torch.equal(ds.nrn_masks, expected)
    for s in range(12):
        for n in range(3 * C):
            cell = ds.responses[s][n]
            assert is_sentinel(cell) != bool(expected[s, n])
            if expected[s, n]:
                assert cell.shape == (1, ds.stims[s].shape[-1]) and cell.dtype == torch.float32
    # BAD_blink: NaN inside S11 segment 3 in every channel, the pair stays real
    subject, seg, offset, dur = BLINK
    onset = truth.onsets[subject][seg]
    for c in ("1", "45"):
        trace = ds.responses[seg - 1][_n(ds, subject, c)][0]
        nan = torch.isnan(trace).nonzero().flatten().tolist()
        a = round((onset + offset) * 100) - round(onset * 100)
        b = round((onset + offset + dur) * 100) - round(onset * 100)
        assert nan == list(range(a, b))
    # the S02 recording stops 0.4 s into segment 12: NaN tail
    tail = ds.responses[11][_n(ds, "S02", "1")][0]
    valid = (~torch.isnan(tail)).sum().item()
    assert 35 <= valid <= 41 and torch.isnan(tail[valid:]).all()


def test_exact_samples_without_filter_or_resampling(alice100):
    root, truth = alice100
    ds = AliceEEGDataset(root, hp_freq_hz=None, cache=False)
    for subject in ds.subjects:
        data = truth.data[subject].astype(np.float32)
        for s in range(12):
            seg = s + 1
            if seg not in truth.onsets[subject]:
                continue
            start = round(truth.onsets[subject][seg] * 100)
            T = ds.stims[s].shape[-1]
            for c, ch in enumerate(EEG_CHANNELS):
                cell = ds.responses[s][_n(ds, subject, ch)]
                if ch in BADS[subject]:
                    assert is_sentinel(cell)
                    continue
                want = np.full(T, np.nan, dtype=np.float32)
                piece = data[c, start:start + T]
                want[:piece.size] = piece
                if (subject, seg) == BLINK[:2]:
                    blink = truth.onsets[subject][seg] + BLINK[2]
                    want[round(blink * 100) - start:round((blink + BLINK[3]) * 100) - start] = np.nan
                np.testing.assert_array_equal(cell[0].numpy(), want)


def test_default_pipeline_is_mne_filter_then_resample(ds_default, alice):
    truth = alice[1]
    raw = mne.io.read_raw_fif(str(truth.fifs["S11"]), preload=True, verbose="error").pick(EEG_CHANNELS)
    raw.filter(l_freq=1.0, h_freq=None, verbose="error")
    raw.resample(100.0, verbose="error")
    data = raw.get_data()
    for seg in (2, 7):
        start = round(truth.onsets["S11"][seg] * 100)
        T = ds_default.stims[seg - 1].shape[-1]
        got = ds_default.responses[seg - 1][_n(ds_default, "S11", "25")][0].numpy()
        np.testing.assert_allclose(got, data[2, start:start + T].astype(np.float32), rtol=1e-5, atol=1e-12)


# ---------------------------------------------------------------- stims


def _reference_gaussian(wave, sr, hop, n_fft, n_bands, fmin, fmax):
    pad = n_fft // 2
    x = np.pad(wave.astype(np.float64), pad, mode="reflect")
    n_frames = 1 + wave.size // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.stack([x[t * hop:t * hop + n_fft] * window for t in range(n_frames)], axis=1)
    power = np.abs(np.fft.rfft(frames, axis=0)) ** 2
    erb = lambda f: 21.4 * np.log10(0.00437 * f + 1)  # noqa: E731
    centres = (10 ** (np.linspace(erb(fmin), erb(fmax), n_bands) / 21.4) - 1) / 0.00437
    bw = 24.7 * (0.00437 * centres + 1)
    f = np.linspace(0, sr / 2, n_fft // 2 + 1)
    weights = np.exp(-(((f[None] - centres[:, None]) / bw[:, None]) ** 2))
    return np.log(weights @ power + 1e-8)


def test_gaussian_spectrogram_values_and_tone_band(ds_default, alice):
    import soundfile as sf

    for k in (1, 5):
        wave, sr = sf.read(str(alice[0] / "stimuli" / f"{k}.wav"), dtype="float32")
        want = _reference_gaussian(wave, sr, 441, 1024, 8, 80.0, sr / 2)
        np.testing.assert_allclose(ds_default.stims[k - 1][0].numpy(), want, atol=2e-4, rtol=1e-4)
    erb = lambda f: 21.4 * np.log10(0.00437 * f + 1)  # noqa: E731
    centres = (10 ** (np.linspace(erb(80.0), erb(22050.0), 8) / 21.4) - 1) / 0.00437
    nearest = int(np.argmin(np.abs(centres - TONE_HZ)))
    mid = ds_default.stims[0][0, :, 10:-10]  # segment 1 is a pure 2 kHz tone
    assert mid.mean(dim=1).argmax().item() == nearest


def test_heeris_backend_and_window(alice):
    ds = AliceEEGDataset(alice[0], subjects="S02", spec_backend="heeris", n_frequency_bands=6, fmin=200.0,
                         fmax=8000.0, cache=False)
    for s, n in enumerate(WAV_SAMPLES):
        assert ds.stims[s].shape == (1, 6, 1 + (n - 1103) // 441)
        assert ds.responses[s][0].shape[-1] == ds.stims[s].shape[-1]
    from deepSTRF.datasets.audio._gammatone import erb_space

    band = int(np.argmin(np.abs(erb_space(200.0, 8000.0, 6) - TONE_HZ)))
    assert ds.stims[0][0, :, 5:-5].mean(dim=1).argmax().item() == band
    wide = AliceEEGDataset(alice[0], subjects="S02", window_ms=50.0, cache=False)
    assert wide.stims[0].shape == (1, 8, 1 + WAV_SAMPLES[0] // 441)


def test_waveform_mode(alice, ds_default):
    import soundfile as sf

    ds = AliceEEGDataset(alice[0], subjects=["S11"], return_waveform=True, cache=False)
    assert ds.return_waveform and ds.audio_fs == AUDIO_FS and ds.hop == 441 and ds.F == 8
    for s, n in enumerate(WAV_SAMPLES):
        T = 1 + n // 441
        wave, _ = sf.read(str(alice[0] / "stimuli" / f"{s + 1}.wav"), dtype="float32")
        assert ds.stims[s].shape == (1, T * 441)
        np.testing.assert_array_equal(ds.stims[s][0, :n].numpy(), wave)
        assert float(ds.stims[s][0, n:].abs().sum()) == 0.0
        assert torch.equal(ds.responses[s][0].nan_to_num(), ds_default.responses[s][_n(ds_default, "S11", "1")]
                           .nan_to_num())
    low = AliceEEGDataset(alice[0], subjects=["S11"], return_waveform=True, audio_fs=16000, cache=False)
    assert low.stims[0].shape == (1, (1 + WAV_SAMPLES[0] // 441) * 160)


# ---------------------------------------------------------------- repeats mode


def test_repeats_mode(alice, ds_default):
    ds = AliceEEGDataset(alice[0], treat_subjects_as="repeats", cache=False)
    assert ds.N_neurons == C and [m["channel_id"] for m in ds.nrn_meta] == EEG_CHANNELS
    assert all(m["subject"] is None for m in ds.nrn_meta)
    assert ds.nrn_meta[1]["bad_in"] == ["S02"] and ds.nrn_meta[4]["bad_in"] == ["S11"]
    assert ds.nrn_masks.all()
    for s in range(12):
        for c, ch in enumerate(EEG_CHANNELS):
            slab = ds.responses[s][c]
            assert slab.shape == (3, ds.stims[s].shape[-1])
            for r, subject in enumerate(ds.subjects):
                row = slab[r]
                bad = ch in BADS[subject] or (subject == "S40" and s == 0)
                if bad:
                    assert torch.isnan(row).all()
                else:
                    want = ds_default.responses[s][_n(ds_default, subject, ch)][0]
                    assert torch.equal(row.nan_to_num(), want.nan_to_num())


def test_repeats_slab_all_nan_is_sentinel(alice):
    ds = AliceEEGDataset(alice[0], subjects=["S40", "S02"], treat_subjects_as="repeats", cache=False)
    # segment 1: S40 lacks it and S02's '22' is bad: that slab is all NaN
    assert is_sentinel(ds.responses[0][1]) and not ds.nrn_masks[0, 1]
    assert ds.responses[0][0].shape[0] == 2 and torch.isnan(ds.responses[0][0][0]).all()


# ---------------------------------------------------------------- layouts, subjects, selection


def test_release_script_layout_and_duplicates(tmp_path):
    build_alice(tmp_path, layout="release", subjects=("S02", "S40"))
    ds = AliceEEGDataset(tmp_path, cache=False)
    assert ds.subjects == ["S02", "S40"] and ds.N_neurons == 2 * C
    shutil.copytree(tmp_path / "eeg" / "S02", tmp_path / "eeg.0" / "eeg" / "S02")
    with pytest.raises(DatasetFormatError, match="S02"):
        AliceEEGDataset(tmp_path, cache=False)


def test_subject_order_selection_and_unknown(alice):
    ds = AliceEEGDataset(alice[0], subjects=["S40", "S02"], cache=False)
    assert ds.subjects == ["S40", "S02"] and ds.nrn_meta[0]["subject"] == "S40"
    picked = ds.select_pop_by_nrn_attr("subject", "S02")
    assert picked == list(range(C, 2 * C))
    ds.select_stims_by_attr("segment", 1)
    assert len(ds) == 1 and len(ds[0]["responses"]) == C - 1  # '22' is bad in S02
    with pytest.raises(DatasetNotFoundError) as err:
        AliceEEGDataset(alice[0], subjects=["S02", "S99"])
    assert "S99" in str(err.value) and "S11" in str(err.value)


def test_zscore_option(alice):
    ds = AliceEEGDataset(alice[0], subjects="S11", zscore=True, cache=False)
    values = torch.cat([ds.responses[s][0].flatten() for s in range(12)])
    values = values[~torch.isnan(values)]
    assert abs(values.mean().item()) < 1e-4 and values.std().item() == pytest.approx(1.0, abs=1e-3)


# ---------------------------------------------------------------- errors


def test_missing_mne_names_the_extra(monkeypatch, alice):
    monkeypatch.setitem(sys.modules, "mne", None)
    with pytest.raises(ImportError, match=r"pip install 'deepSTRF\[eeg\]'"):
        AliceEEGDataset(alice[0])


@pytest.mark.parametrize("kwargs, match", [
    ({"spec_backend": "mel"}, "spec_backend"),
    ({"treat_subjects_as": "trials"}, "treat_subjects_as"),
    ({"dt_ms": 0}, "dt_ms"),
    ({"n_frequency_bands": 0}, "n_frequency_bands"),
    ({"fmin": 1000.0, "fmax": 500.0}, "fmax"),
    ({"return_waveform": True, "audio_fs": 44150}, "audio samples per bin"),
    ({"subjects": [3]}, "subjects"),
])
def test_argument_errors_before_any_work(tmp_path, monkeypatch, kwargs, match):
    monkeypatch.setattr(al, "download_alice_eeg", lambda *a, **k: pytest.fail("download despite a bad argument"))
    with pytest.raises((ValueError, TypeError), match=match):
        AliceEEGDataset(tmp_path / "none", download=True, **kwargs)


def test_non_integer_hop_is_refused(alice, monkeypatch):
    monkeypatch.setattr(al, "_read_subject", lambda *a: pytest.fail("EEG read despite a drifting hop"))
    with pytest.raises(ValueError, match="220.5"):
        AliceEEGDataset(alice[0], dt_ms=5.0)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        AliceEEGDataset(tmp_path / "nothing")
    text = str(err.value)
    assert "stimuli/1.wav" in text and "alice-raw.fif" in text and "download_alice_eeg(" in text


def test_corrupt_fif_and_duplicate_annotation(tmp_path):
    truth = build_alice(tmp_path, subjects=("S02", "S11"))
    fif = truth.fifs["S11"]
    good = fif.read_bytes()
    fif.write_bytes(good[: len(good) // 3])
    with pytest.raises(DatasetFormatError) as err:
        AliceEEGDataset(tmp_path, cache=False)
    assert str(fif) in str(err.value)
    fif.write_bytes(good)
    raw = mne.io.read_raw_fif(str(fif), preload=True, verbose="error")
    raw.set_annotations(raw.annotations + mne.Annotations([5.0], [0.1], ["4"], orig_time=raw.annotations.orig_time))
    raw.save(str(fif), overwrite=True, verbose="error")
    with pytest.raises(DatasetFormatError, match="segment 4 annotated twice") as err:
        AliceEEGDataset(tmp_path, cache=False)
    assert err.value.field == "annotations"


def test_first_samp_offset_is_respected(tmp_path):
    """A fif whose first sample is not 0 is cut relative to its first sample."""
    truth = build_alice(tmp_path, sfreq=100.0, subjects=("S11",))
    raw = mne.io.read_raw_fif(str(truth.fifs["S11"]), preload=True, verbose="error")
    shifted = mne.io.RawArray(raw.get_data(), raw.info, first_samp=700, verbose="error")
    ann = raw.annotations
    shifted.set_annotations(mne.Annotations(ann.onset, ann.duration, ann.description))
    shifted.save(str(truth.fifs["S11"]), overwrite=True, fmt="single", verbose="error")
    ds = AliceEEGDataset(tmp_path, hp_freq_hz=None, cache=False)
    start = round(truth.onsets["S11"][2] * 100)
    T = ds.stims[1].shape[-1]
    np.testing.assert_array_equal(ds.responses[1][0][0].numpy(), truth.data["S11"][0, start:start + T]
                                  .astype(np.float32))


# ---------------------------------------------------------------- cache


def test_cache_reuse_and_invalidation(alice, monkeypatch):
    root, truth = alice
    calls = []
    real = al._read_subject
    monkeypatch.setattr(al, "_read_subject", lambda *a: calls.append(a[1]) or real(*a))
    first = AliceEEGDataset(root, subjects=["S02", "S40"])
    assert len(calls) == 2
    second = AliceEEGDataset(root, subjects=["S02", "S40"])
    assert len(calls) == 2  # nothing re-parsed
    assert torch.equal(first.nrn_masks, second.nrn_masks) and first.nrn_meta == second.nrn_meta
    for s in range(12):
        assert torch.equal(first.stims[s], second.stims[s])
        assert torch.equal(first.responses[s][0].nan_to_num(), second.responses[s][0].nan_to_num())
    AliceEEGDataset(root, subjects=["S02", "S40"], hp_freq_hz=0.5)  # a content knob rebuilds
    assert len(calls) == 4
    fif = truth.fifs["S40"]
    st = fif.stat()
    os.utime(fif, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touching a raw file rebuilds
    AliceEEGDataset(root, subjects=["S02", "S40"])
    assert len(calls) == 6


# ---------------------------------------------------------------- download (UMD DRUM emulated)


def _zip(folder, arc_root):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(arc_root).as_posix())
    return buf.getvalue()


@pytest.fixture
def drum(monkeypatch, tmp_path):
    monkeypatch.setattr(dl, "_sleep", lambda s: None)
    src = tmp_path / "src"
    for subject, shard in (("S02", "eeg.0"), ("S11", "eeg.1"), ("S40", "eeg.2")):
        write_subject(src / shard / "eeg" / subject / f"{subject}_alice-raw.fif", subject, 100.0, WAV_SAMPLES,
                      np.random.default_rng(0))
    build_alice(src / "stim_only", subjects=())
    payloads = {"stimuli.zip": _zip(src / "stim_only" / "stimuli", src / "stim_only")}
    for shard in ("eeg.0", "eeg.1", "eeg.2"):
        payloads[f"{shard}.zip"] = _zip(src / shard, src / shard)  # members eeg/<SUB>/...
    monkeypatch.setattr(al, "DRUM_MD5", {k: md5(v) for k, v in payloads.items()})
    with Emulator() as emu:
        monkeypatch.setenv("DEEPSTRF_DRUM_URL", emu.base)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        for name, data in payloads.items():
            emu.route("GET", f"/bitstreams/{al.DRUM_BITSTREAMS[name]}/download", file_reply(data))
        emu.payloads = payloads
        yield emu


def test_download_by_need_then_load(drum, tmp_path):
    dest = tmp_path / "dl"
    ds = AliceEEGDataset(dest, download=True, subjects=["S02"], hp_freq_hz=None, cache=False)
    assert ds.subjects == ["S02"] and (dest / "eeg.0" / "eeg" / "S02" / "S02_alice-raw.fif").is_file()
    fetched = {r.path.split("/")[2] for r in drum.log}
    assert fetched == {al.DRUM_BITSTREAMS["stimuli.zip"], al.DRUM_BITSTREAMS["eeg.0.zip"]}
    assert all(r.headers["user-agent"].startswith("deepSTRF/") for r in drum.log)
    download_alice_eeg(dest)
    assert sorted(AliceEEGDataset(dest, hp_freq_hz=None, cache=False).subjects) == ["S02", "S11", "S40"]
    n = len(drum.log)
    download_alice_eeg(dest)
    assert len(drum.log) == n  # verified and unpacked: zero requests


def test_download_checksum_mismatch(drum, tmp_path, monkeypatch):
    monkeypatch.setitem(al.DRUM_MD5, "stimuli.zip", "0" * 32)
    dest = tmp_path / "bad"
    with pytest.raises(ChecksumError) as err:
        download_alice_eeg(dest)
    assert "stimuli.zip" in str(err.value) and "0" * 32 in str(err.value)
    assert not (dest / "stimuli.zip").exists() and not (dest / "stimuli").exists()


def test_offline_download_is_not_found(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError):
        AliceEEGDataset(tmp_path / "off", download=True)
