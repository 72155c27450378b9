"""CRCNSAA2Dataset end to end on a tiny aa-2 layout."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from fixtures.crcns_aa import AA1_RATE, AA2_CELLS, AA2_STIMS, expected_counts, make_aa2
from fixtures.http_emulator import Emulator, Reply, sha256

from deepSTRF.datasets._errors import (
    CredentialsError,
    DatasetFormatError,
    DatasetNotFoundError,
)
from deepSTRF.datasets._storage import is_sentinel
from deepSTRF.datasets.audio import crcns_aa2 as aa2
from deepSTRF.datasets.audio.crcns_aa2 import CRCNSAA2Dataset, download_aa2
from deepSTRF.utils import download as dl

FIELD_L = ("L", "L1", "L2a", "L2b", "L3")


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTRF_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("aa2")
    return root, make_aa2(root)


def _expected(labels, stim_types, animals=None):
    cells = []
    for label in labels:
        for cell, region, classes in AA2_CELLS:
            if region == label and (animals is None or cell.split("_")[0] in animals) \
                    and any(t in classes for t in stim_types) and cell not in cells:
                cells.append(cell)
    discovered = {}
    for cls in ("songrip", "flatrip", "conspecific"):
        discovered[cls] = []
        for cell, _, classes in sorted(AA2_CELLS):
            for k, wav, _ in sorted(classes.get(cls, []), key=lambda e: f"stim{e[0]}"):
                if wav not in discovered[cls]:
                    discovered[cls].append(wav)
    return cells, [(t, w) for t in stim_types for w in discovered[t]]


def _check(ds, truth, labels, stim_types, animals=None, dt=1.0):
    cells, candidates = _expected(labels, stim_types, animals)
    spikes = truth["spikes"]
    assert [m["cell_id"] for m in ds.nrn_meta] == cells
    stims = [(t, w) for t, w in candidates if any((c, t, w) in spikes for c in cells)]
    assert [(m["type"], m["name"]) for m in ds.stim_meta] == stims
    hop = int(dt * 32)
    for s, (t, w) in enumerate(stims):
        T = 1 + int(round(AA2_STIMS[w][1] * AA1_RATE)) // hop
        for n, c in enumerate(cells):
            resp = ds.responses[s][n]
            if (c, t, w) not in spikes:
                assert is_sentinel(resp) and not ds.nrn_masks[s, n]
                continue
            np.testing.assert_array_equal(resp.numpy(), expected_counts(spikes[(c, t, w)], T, dt))
    return stims


def test_defaults(raw):
    root, truth = raw
    ds = CRCNSAA2Dataset(root)
    assert ds.N_neurons == len(AA2_CELLS) and ds.F == 32 and ds.dt == 1.0
    rows = (root / "cell_stim_classes.csv").read_text().splitlines()
    assert ds.animals == list(dict.fromkeys(r.split(",")[0].split("_")[0] for r in rows))  # first row included
    assert len(ds.animals) == 8
    assert [m["area"] for m in ds.nrn_meta] == ["L", "L1", "L2a", "L2b", "L3", "mld", "OV", "OV", "CM", "None"]
    undone = CRCNSAA2Dataset(root, smooth=False)
    _check(undone, truth, (*FIELD_L, "mld", "OV", "CM", "None"), ("conspecific", "flatrip", "songrip"))
    undone.smooth_responses(21.0)
    for s in range(ds.get_S()):
        for n in range(ds.N_neurons):
            assert torch.allclose(ds.responses[s][n], undone.responses[s][n], atol=1e-6, equal_nan=True)
    rr = ds.nrn_meta[0]
    assert (rr["cell_id"], rr["animal_id"], rr["cell_seq"], rr["rig"]) == ("rr1416_5_B", "rr1416", 5, "B")
    metas = {m["name"]: m for m in ds.stim_meta}
    a0 = metas["A0000000000000000000000000000001.wav"]
    assert (a0["sample_rate"], a0["n_samples"], a0["duration_s"]) == (32000.0, 9600, pytest.approx(0.3))
    c3 = metas["C0000000000000000000000000000003.wav"]  # no stim_data.csv row
    assert c3["sample_rate"] is None and c3["n_samples"] is None and c3["duration_s"] is None


def test_duplicate_presentation_stim10_beats_stim2(raw):
    root, truth = raw
    ds = CRCNSAA2Dataset(root, areas=["L1"], stimuli="conspecific", smooth=False)
    assert [m["cell_id"] for m in ds.nrn_meta] == ["pp2020_1"]
    (s,) = [i for i, m in enumerate(ds.stim_meta) if m["name"] == "A0000000000000000000000000000001.wav"]
    assert ds.responses[s][0].shape[0] == 7  # stim10 (7 trials), not stim2 (9)


def test_mld_ov_subset_dt5_log1p(raw):
    root, truth = raw
    ds = CRCNSAA2Dataset(root, areas=["mld", "OV"], stimuli=["conspecific", "songrip"], dt_ms=5,
                         compression="log1p", n_mels=16, smooth=False)
    assert ds.F == 16 and ds.stims[0].shape[1] == 16
    _check(ds, truth, ("mld", "OV"), ("conspecific", "songrip"), dt=5.0)


def test_all_areas_flatrip(raw):
    root, truth = raw
    ds = CRCNSAA2Dataset(root, areas="all", stimuli=["flatrip"], smooth=False)
    _check(ds, truth, (*FIELD_L, "OV", "CM", "mld", "None"), ("flatrip",))
    assert "tt5050_1" not in [m["cell_id"] for m in ds.nrn_meta]  # no flatrip folder


def test_sub_areas_front_end(raw):
    root, truth = raw
    ds = CRCNSAA2Dataset(root, areas=["L2a", "L3", "CM"], window_ms=25, dt_ms=2.5, compression="none", n_mels=20,
                         smooth=False)
    _check(ds, truth, ("L2a", "L3", "CM"), ("conspecific", "flatrip", "songrip"), dt=2.5)
    for s, meta in enumerate(ds.stim_meta):
        freq = AA2_STIMS[meta["name"]][2]
        from deepSTRF.datasets.audio._spectrogram import hz_to_mel, mel_to_hz

        edges = mel_to_hz(np.linspace(0, hz_to_mel(16000), 22))
        m = int(ds.stims[s][0].sum(-1).argmax())
        assert edges[m] <= freq <= edges[m + 2]


def test_waveform_with_animal_subset(raw):
    root, truth = raw
    ds = CRCNSAA2Dataset(root, animals=["pp2020", "oo0101"], return_waveform=True, smooth=False)
    _check(ds, truth, (*FIELD_L, "mld", "OV", "CM", "None"), ("conspecific", "flatrip", "songrip"),
           animals=("pp2020", "oo0101"))
    assert [m["area"] for m in ds.nrn_meta] == ["L1", "L2a", "OV", "OV"]
    assert ds.animals == ["pp2020", "oo0101"]
    for s, stim in enumerate(ds.stims):
        T = next(r for r in ds.responses[s] if not is_sentinel(r)).shape[-1]
        assert stim.shape == (1, 32 * T)


def test_waveform_16k_dt2_field_l(raw):
    root, truth = raw
    ds = CRCNSAA2Dataset(root, areas=["L"], return_waveform=True, audio_fs=16000, dt_ms=2, smooth=False)
    _check(ds, truth, FIELD_L, ("conspecific", "flatrip", "songrip"), dt=2.0)
    assert ds.hop == 32
    for s, stim in enumerate(ds.stims):
        T = next(r for r in ds.responses[s] if not is_sentinel(r)).shape[-1]
        assert stim.shape == (1, 32 * T)


def test_selection_by_region(raw):
    root, _ = raw
    ds = CRCNSAA2Dataset(root, dt_ms=5)
    ov = ds.select_pop_by_nrn_attr("area", "OV")
    assert [ds.nrn_meta[n]["cell_id"] for n in ov] == ["oo0101_1", "oo0101_2"]
    assert len(ds) > 0 and all(len(ds[i]["responses"]) == 2 for i in range(len(ds)))


def test_cache_reuse_and_invalidation(raw, monkeypatch):
    root, _ = raw
    calls = []
    real = aa2.build_text_payload
    monkeypatch.setattr(aa2, "build_text_payload", lambda *a, **k: calls.append(1) or real(*a, **k))
    CRCNSAA2Dataset(root, dt_ms=5)
    CRCNSAA2Dataset(root, dt_ms=5)
    assert len(calls) == 1
    CRCNSAA2Dataset(root, dt_ms=5, areas=["OV"])
    assert len(calls) == 2


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        CRCNSAA2Dataset(tmp_path / "none")
    assert "cell_regions.csv" in str(err.value) and "CRCNS_PASSWORD" in str(err.value)
    root = tmp_path / "aa2"
    make_aa2(root)
    regions = root / "cell_regions.csv"
    regions.write_text(regions.read_text() + "zz9999_1,Lx\n")
    with pytest.raises(DatasetFormatError) as err:
        CRCNSAA2Dataset(root, cache=False)
    assert "cell_regions.csv" in str(err.value) and "region" in str(err.value)


def test_bad_areas(raw):
    with pytest.raises(ValueError, match="areas"):
        CRCNSAA2Dataset(raw[0], areas=["V1"])


# --------------------------------------------------------------------------- download

def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_download_three_archives_strip_two(raw, tmp_path, monkeypatch):
    root, _ = raw
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    docs = {k: v for k, v in files.items() if "/" not in k}
    cells = {k: v for k, v in files.items() if k.startswith("all_cells/")}
    stims = {k: v for k, v in files.items() if k.startswith("all_stims/")}
    payloads = {fn: _tar({f"crcns/aa2/{k}": v for k, v in part.items()})
                for fn, part in zip(aa2.AA2_NERSC_FILES, (docs, cells, stims))}
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
                return Reply(200, {"Content-Type": "text/html"}, b'<form><input name="password"></form>')
            return Reply(200, {"Content-Type": "application/octet-stream"}, payloads[form["fn"]])

        for fn in aa2.AA2_NERSC_FILES:
            emu.route("POST", f"/project/crcns/download/{fn}", handle)
            monkeypatch.setitem(aa2.AA2_REGISTRY, fn, "sha256:" + sha256(payloads[fn]))
        with pytest.raises(CredentialsError):
            download_aa2(tmp_path / "dl")
        monkeypatch.setenv("CRCNS_USERNAME", "finch")
        monkeypatch.setenv("CRCNS_PASSWORD", "badpw")
        with pytest.raises(CredentialsError, match="rejected"):
            download_aa2(tmp_path / "dl")
        monkeypatch.setenv("CRCNS_PASSWORD", "pw")
        ds = CRCNSAA2Dataset(tmp_path / "dl", download=True, dt_ms=5)
        assert ds.N_neurons == len(AA2_CELLS)
        assert (tmp_path / "dl" / "all_cells" / "rr1416_5_B").is_dir()
        n_requests = len(emu.log)
        download_aa2(tmp_path / "dl")
        assert len(emu.log) == n_requests
