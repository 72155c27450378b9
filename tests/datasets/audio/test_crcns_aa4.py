"""CRCNSAA4Dataset end to end on a tiny aa-4 layout (six birds, h5 units)."""

from __future__ import annotations

import io
import math
import tarfile

import numpy as np
import pytest
import torch
from fixtures.crcns_aa import (
    AA4_CLIPS,
    AA4_RATE,
    AA4_WAVS,
    expected_counts,
    make_aa4,
    md5_of,
)
from fixtures.http_emulator import Emulator, Reply, sha256

from deepSTRF.datasets._errors import (
    CredentialsError,
    DatasetFormatError,
    DatasetNotFoundError,
)
from deepSTRF.datasets._storage import is_sentinel
from deepSTRF.datasets.audio import crcns_aa4 as aa4
from deepSTRF.datasets.audio.crcns_aa4 import (
    AA4_ANIMAL_IDS,
    CRCNSAA4Dataset,
    download_aa4,
)
from deepSTRF.utils import download as dl


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("aa4")
    return root, make_aa4(root)


def _n_samples(clip):
    return int(round(AA4_CLIPS[clip][2] * AA4_RATE))


def _walk(truth, animals, types, dt):
    """Independent replay of the documented walk on the fixture plan."""
    hop = max(1, int(AA4_RATE * dt / 1000))
    registry: dict[str, tuple[int, str]] = {}
    units = []
    for a in animals:
        for stem, sort, protos in sorted(truth["plan"][a]):
            sort = {"singl": "single"}.get(sort, sort)
            if sort in ("noise", "tdt"):
                continue
            resp = {}
            for proto in sorted(protos):
                for number in sorted(protos[proto]):
                    clip = truth["number_clip"][a][number]
                    typ = "song" if clip == "nowhere" else AA4_CLIPS[clip][0]
                    if typ not in types:
                        continue
                    md5 = "0" * 32 if clip == "nowhere" else md5_of(clip)
                    if md5 not in registry:
                        if int(number) not in AA4_WAVS[a]:
                            continue
                        registry[md5] = (len(registry), AA4_WAVS[a][int(number)])
                    s, wclip = registry[md5]
                    T = 1 + _n_samples(wclip) // hop
                    trs = protos[proto][number]
                    order = sorted(range(len(trs)), key=lambda i: str(i + 1))
                    kept = [np.asarray(trs[i])[np.asarray(trs[i]) >= 0] * 1000 for i in order if trs[i] is not None]
                    kept = [k for k in kept if k.size]
                    if not kept:
                        continue
                    counts = expected_counts(kept, T, dt)
                    if counts.sum():
                        resp[s] = counts
            if resp:
                units.append((stem, a, sort, resp))
    stims = [None] * len(registry)
    for md5, (s, clip) in registry.items():
        stims[s] = (md5, clip)
    return stims, units


def _check(ds, truth, animals, types, dt=1.0):
    stims, units = _walk(truth, animals, types, dt)
    assert [m["name"] for m in ds.stim_meta] == [md5 for md5, _ in stims]
    assert [m["cell_id"] for m in ds.nrn_meta] == [u[0] for u in units]
    for s, (md5, clip) in enumerate(stims):
        meta = ds.stim_meta[s]
        assert (meta["type"], meta["class"]) == AA4_CLIPS[clip][:2]
        assert meta["duration_s"] == pytest.approx(AA4_CLIPS[clip][2])
        for n, (_, _, _, resp) in enumerate(units):
            got = ds.responses[s][n]
            if s not in resp:
                assert is_sentinel(got) and not ds.nrn_masks[s, n]
            else:
                np.testing.assert_array_equal(got.numpy(), resp[s])
    return stims, units


def test_defaults_all_six(raw):
    root, truth = raw
    ds = CRCNSAA4Dataset(root)
    assert ds.animals == AA4_ANIMAL_IDS and ds.stim_types == {"song", "call", "mlnoise"}
    assert (ds.F, ds.dt, ds.audio_fs, ds.species) == (32, 1.0, None, "zebra finch")
    raw_ds = CRCNSAA4Dataset(root, smooth=False)
    stims, units = _check(raw_ds, truth, AA4_ANIMAL_IDS, {"song", "call", "mlnoise"})
    assert len(units) == 7 and len(stims) == 5
    raw_ds.smooth_responses(21.0)
    for s in range(ds.get_S()):
        for n in range(ds.N_neurons):
            assert torch.allclose(ds.responses[s][n], raw_ds.responses[s][n], atol=1e-6, equal_nan=True)
    first = ds.nrn_meta[0]
    assert first == {"cell_id": "Site1_L1400R1400_e10_s0_ss1", "animal_id": "BlaBro09xxF", "sex": "F",
                     "site": "Site1", "electrode": 10, "ldepth": 1400.0, "rdepth": 1400.0, "sort_type": "single",
                     "sort_id": 0, "subsort_id": 1}
    assert ds.nrn_meta[1]["sort_type"] == "single"  # 'singl' fixed
    whi = next(m for m in ds.nrn_meta if m["cell_id"] == "Site1_R1100_e30_s0")
    assert math.isnan(whi["ldepth"]) and whi["rdepth"] == 1100.0 and whi["subsort_id"] is None
    hop = 24
    for s, stim in enumerate(ds.stims):
        assert stim.shape[:2] == (1, 32)
    # a tone lands in the right mel band
    from deepSTRF.datasets.audio._spectrogram import hz_to_mel, mel_to_hz

    edges = mel_to_hz(np.linspace(0, hz_to_mel(AA4_RATE // 2), 34))
    for s, (md5, clip) in enumerate(stims):
        m = int(ds.stims[s][0].sum(-1).argmax())
        assert edges[m] <= AA4_CLIPS[clip][3] <= edges[m + 2]
        assert ds.stims[s].shape[-1] == 1 + _n_samples(clip) // hop


def test_one_animal_song_call_dt5(raw):
    root, truth = raw
    ds = CRCNSAA4Dataset(root, animals=["GreBlu9508M"], stimuli=["song", "call"], dt_ms=5, compression="log1p",
                         n_mels=16, smooth=False)
    _check(ds, truth, ["GreBlu9508M"], {"song", "call"}, dt=5.0)
    assert ds.F == 16 and ds.stims[0].shape[1] == 16


def test_two_animals_reversed_dt2(raw):
    root, truth = raw
    animals = ["WhiBlu5396M", "LblBlu2028M"]
    ds = CRCNSAA4Dataset(root, animals=animals, stimuli=["mlnoise", "call"], dt_ms=2, smooth=False)
    _check(ds, truth, animals, {"mlnoise", "call"}, dt=2.0)
    assert [m["animal_id"] for m in ds.nrn_meta] == animals


def test_front_end_knobs(raw):
    root, truth = raw
    ds = CRCNSAA4Dataset(root, dt_ms=2.5, window_ms=25, compression="none", n_mels=20, smooth=False)
    _check(ds, truth, AA4_ANIMAL_IDS, {"song", "call", "mlnoise"}, dt=2.5)


@pytest.mark.parametrize("fs,dt", [(24000, 1.0), (16000, 2.0)])
def test_waveform(raw, fs, dt):
    root, truth = raw
    ds = CRCNSAA4Dataset(root, animals=["BlaBro09xxF", "YelBlu6903F"], return_waveform=True, audio_fs=fs, dt_ms=dt,
                         smooth=False)
    _check(ds, truth, ["BlaBro09xxF", "YelBlu6903F"], {"song", "call", "mlnoise"}, dt=dt)
    hop = int(fs * dt / 1000)
    assert ds._wav_hop == hop == ds.hop
    for s, stim in enumerate(ds.stims):
        T = next(r for r in ds.responses[s] if not is_sentinel(r)).shape[-1]
        assert stim.shape == (1, T * hop)


def test_selection_and_cache(raw, monkeypatch):
    root, _ = raw
    calls = []
    real = aa4._build_aa4
    monkeypatch.setattr(aa4, "_build_aa4", lambda *a, **k: calls.append(1) or real(*a, **k))
    ds = CRCNSAA4Dataset(root, dt_ms=5)
    CRCNSAA4Dataset(root, dt_ms=5)
    assert len(calls) == 1
    CRCNSAA4Dataset(root, dt_ms=5, stimuli=["call"])
    assert len(calls) == 2
    females = ds.select_pop_by_nrn_attr("sex", "F")
    assert {ds.nrn_meta[n]["animal_id"] for n in females} == {"BlaBro09xxF", "YelBlu6903F"}
    calls_ = ds.select_stims_by_attr("type", "call")
    assert calls_ and all(ds.stim_meta[s]["type"] == "call" for s in calls_)


def test_missing_and_corrupt(tmp_path, raw):
    with pytest.raises(DatasetNotFoundError) as err:
        CRCNSAA4Dataset(tmp_path / "none", animals=["LblBlu2028M"])
    assert "LblBlu2028M/wavfiles" in str(err.value) and "aa-4/LblBlu2028M.tar.gz" in str(err.value)
    assert "CRCNS_USERNAME" in str(err.value)
    root = tmp_path / "aa4"
    make_aa4(root)
    bad = root / "YelBlu6903F" / "Site1_L800R800_e2_s0.h5"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DatasetFormatError) as err:
        CRCNSAA4Dataset(root, animals=["YelBlu6903F"], cache=False)
    assert str(bad) in str(err.value)
    with pytest.raises(ValueError, match="animals"):
        CRCNSAA4Dataset(root, animals=["Nobody"])
    with pytest.raises(ValueError, match="stimuli"):
        CRCNSAA4Dataset(root, stimuli=["speech"])


def test_download_one_animal(raw, tmp_path, monkeypatch):
    root, _ = raw
    animal = "LblBlu2028M"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(root / animal, arcname=animal)
    payload = buf.getvalue()
    with Emulator() as emu:
        for key, value in emu.host_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
        monkeypatch.setattr(dl, "_sleep", lambda s: None)
        monkeypatch.delenv("CRCNS_USERNAME", raising=False)
        monkeypatch.delenv("CRCNS_PASSWORD", raising=False)

        def handle(req):
            form = req.form()
            if (form.get("username"), form.get("password")) != ("finch", "pw"):
                return Reply(200, {"Content-Type": "text/html; charset=utf-8"},
                             b'<html><form method="post"><input type="password" name="password"></form></html>')
            return Reply(200, {"Content-Type": "application/octet-stream"}, payload)

        emu.route("POST", f"/project/crcns/download/aa-4/{animal}.tar.gz", handle)
        with pytest.raises(CredentialsError, match="CRCNS_USERNAME"):
            CRCNSAA4Dataset(tmp_path / "dl", animals=[animal], download=True)
        netrc = tmp_path / "netrc"
        netrc.write_text("machine crcns.org login finch password nope\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        with pytest.raises(CredentialsError, match="rejected"):
            download_aa4(tmp_path / "dl", animals=[animal])
        netrc.write_text("machine crcns.org login finch password pw\n")
        monkeypatch.setitem(aa4.AA4_REGISTRY, f"aa-4/{animal}.tar.gz", "sha256:" + sha256(payload))
        ds = CRCNSAA4Dataset(tmp_path / "dl", animals=[animal], download=True, dt_ms=5)
        assert ds.N_neurons == 1 and all(m["animal_id"] == animal for m in ds.nrn_meta)
        assert [r.form()["fn"] for r in emu.log][-1] == f"aa-4/{animal}.tar.gz"
        assert not any("CRCNSCode" in r.form().get("fn", "") for r in emu.log)
        with pytest.raises(ValueError, match="animals"):
            download_aa4(tmp_path / "dl", animals=["Nobody"])
