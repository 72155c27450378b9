"""Processed-data cache: round trip, views, concurrency, corruption, invalidation."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from deepSTRF.datasets._cache import CacheWarning, Payload, cache_dir, clear_cache, load_or_build
from deepSTRF.datasets._storage import is_sentinel
from fixtures.cache_workers import concurrent_worker, digest, synthetic_payload


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSTRF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def raw(tmp_path):
    files = [tmp_path / "raw" / "a.mat", tmp_path / "raw" / "b.mat"]
    files[0].parent.mkdir()
    for f in files:
        f.write_bytes(b"raw bytes")
    return files


class Builder:
    """A build function that counts its calls."""

    def __init__(self, **kwargs):
        self.calls = 0
        self.kwargs = kwargs

    def __call__(self) -> Payload:
        self.calls += 1
        return synthetic_payload(**self.kwargs)


def _load(raw, build, params=None, enabled=True, version=1):
    return load_or_build("Toy", "tests.Toy", version, params or {"dt_ms": 5.0, "area": "A1"}, raw, build, enabled)


def _same_meta(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_meta(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_meta, a, b))
    return type(a) is type(b) and a == b


def _cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dscache")) if folder.exists() else []


def test_cache_dir(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DEEPSTRF_CACHE")
    import platformdirs

    assert cache_dir() == Path(platformdirs.user_cache_dir("deepSTRF"))


def test_round_trip_is_exact(raw, cache_env):
    build = Builder()
    first = _load(raw, build)
    second = _load(raw, Builder())
    original = synthetic_payload()
    assert build.calls == 1
    (path,) = _cache_files(cache_env)
    assert path.name.startswith("Toy-") and len(path.stem) == len("Toy-") + 16
    for got in (first, second):
        assert len(got.stims) == len(original.stims)
        for a, b in zip(got.stims, original.stims):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        for row_a, row_b in zip(got.responses, original.responses):
            assert len(row_a) == len(row_b)
            for a, b in zip(row_a, row_b):
                assert a.dtype == b.dtype and a.shape == b.shape
                assert is_sentinel(a) == is_sentinel(b)
                if not is_sentinel(b):
                    assert torch.equal(a, b)
        # numpy scalars became Python scalars, tuples/arrays lists; NaN, inf and unicode survive
        assert got.stim_meta[0]["name"] == "stim 0 – ünïcødé ✓"
        assert type(got.stim_meta[0]["idx"]) is int and got.stim_meta[0]["dur_s"] == 0.5
        assert math.isnan(got.stim_meta[0]["nan"]) and got.stim_meta[0]["inf"] == -math.inf
        assert got.stim_meta[0]["tags"] == ["a", "b"] and got.stim_meta[0]["vec"] == [0, 1, 2]
        assert got.nrn_meta[1] == {"id": "n1", "depth": 100.5, "single": True, "none": None}
        assert got.attrs == {"dt": 5.0, "F": 2, "audio_fs": None}
    assert _same_meta(first.stim_meta, second.stim_meta) and _same_meta(first.nrn_meta, second.nrn_meta)
    assert digest(first) == digest(second)


def test_mask_marks_sentinels_only(raw):
    got = _load(raw, Builder())
    expected = torch.tensor([[not is_sentinel(t) for t in row] for row in synthetic_payload().responses])
    assert got.mask.dtype == torch.bool and torch.equal(got.mask, expected)
    assert bool(got.mask[0, 0])  # the real (1, 1) response is data
    uncached = _load(raw, Builder(), enabled=False)
    assert torch.equal(uncached.mask, expected)


def test_loaded_tensors_are_views_on_one_buffer(raw):
    _load(raw, Builder())
    got = _load(raw, Builder())
    real = [t for row in got.responses for t in row if not is_sentinel(t)]
    base = real[0].untyped_storage().data_ptr()
    assert all(t.untyped_storage().data_ptr() == base for t in real + got.stims)
    assert all(t.is_contiguous() for t in real)
    # sentinels are distinct memory: editing one never shows in another
    sentinels = [t for row in got.responses for t in row if is_sentinel(t)]
    sentinels[0].fill_(1.0)
    assert all(math.isnan(s.item()) for s in sentinels[1:])


def test_in_place_edits_stay_private(raw, cache_env):
    got = _load(raw, Builder())
    (path,) = _cache_files(cache_env)
    before = path.read_bytes()
    got.responses[0][1].mul_(0).add_(7)
    got.stims[0].zero_()
    assert path.read_bytes() == before
    again = _load(raw, Builder())
    assert not torch.equal(again.responses[0][1], got.responses[0][1])


def test_empty_and_zero_size(raw):
    empty = _load(raw, lambda: Payload([], [], [], [], {}), params={"empty": True})
    assert empty.stims == [] and empty.responses == [] and empty.mask.shape == (0, 0)
    odd = Payload([torch.zeros(1, 0, 3)], [[torch.zeros(0, 3)]], [{}], [{}], {})
    got = _load(raw, lambda: odd, params={"zero": True})
    got = _load(raw, lambda: 1 / 0, params={"zero": True})
    assert got.stims[0].shape == (1, 0, 3) and got.responses[0][0].shape == (0, 3)


def test_other_dtypes_round_trip(raw):
    p = Payload([torch.arange(6, dtype=torch.float64).reshape(2, 3)], [[torch.ones(2, 3, dtype=torch.float16)]],
                [{}], [{}], {})
    _load(raw, lambda: p, params={"dtypes": 1})
    got = _load(raw, lambda: 1 / 0, params={"dtypes": 1})
    assert got.stims[0].dtype == torch.float64 and got.responses[0][0].dtype == torch.float16
    assert torch.equal(got.stims[0], p.stims[0])


def _race(cache: Path, raw: Path, counter: Path) -> list[str]:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=concurrent_worker, args=(str(cache), str(raw), str(counter), barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


def test_concurrent_processes_build_once(raw, cache_env, tmp_path):
    counter = tmp_path / "calls.txt"
    digests = _race(cache_env, raw[0], counter)
    assert len(counter.read_text().splitlines()) == 1
    assert digests[0] == digests[1]
    assert len(_cache_files(cache_env)) == 1


def test_truncated_file_is_rebuilt(raw, cache_env):
    build = Builder()
    _load(raw, build)
    (path,) = _cache_files(cache_env)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(CacheWarning, match="truncated") as caught:
        got = _load(raw, build)
    assert len(caught) == 1
    assert build.calls == 2 and digest(got) == digest(_load(raw, build))
    assert build.calls == 2 and path.stat().st_size == len(data)


@pytest.mark.parametrize("where", ["header", "metadata", "data"])
def test_corrupt_byte_is_rebuilt(raw, cache_env, where):
    build = Builder()
    reference = digest(_load(raw, build))
    (path,) = _cache_files(cache_env)
    data = bytearray(path.read_bytes())
    pos = {"header": 20, "metadata": 200, "data": len(data) - 100}[where]
    data[pos] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="unusable"):
        got = _load(raw, build)
    assert build.calls == 2 and digest(got) == reference


def test_garbage_file_is_rebuilt(raw, cache_env):
    build = Builder()
    _load(raw, build)
    (path,) = _cache_files(cache_env)
    path.write_bytes(b"not a cache")
    with pytest.warns(CacheWarning, match="shorter than its header"):
        _load(raw, build)
    assert build.calls == 2


def test_key_changes_with_params_version_and_raw_files(raw, cache_env):
    build = Builder()
    _load(raw, build)
    _load(raw, build, params={"area": "A1", "dt_ms": 5.0})  # same params, other order
    assert build.calls == 1
    _load(raw, build, params={"dt_ms": 10.0, "area": "A1"})
    assert build.calls == 2
    _load(raw, build, version=2)
    assert build.calls == 3
    raw[0].write_bytes(b"raw bytes, longer")  # size changes
    _load(raw, build)
    assert build.calls == 4
    st = raw[1].stat()
    os.utime(raw[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched
    _load(raw, build)
    assert build.calls == 5
    _load(raw, build)
    assert build.calls == 5
    assert len(_cache_files(cache_env)) == 5


def test_disabled_cache_writes_nothing(raw, cache_env):
    build = Builder()
    got = _load(raw, build, enabled=False)
    _load(raw, build, enabled=False)
    assert build.calls == 2
    assert not cache_env.exists()
    assert type(got.stim_meta[0]["idx"]) is int  # metadata normalised the same way as when cached


def test_unwritable_cache_folder_falls_back(raw, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("DEEPSTRF_CACHE", str(blocker / "sub"))
    with pytest.warns(CacheWarning, match="DEEPSTRF_CACHE"):
        got = _load(raw, Builder())
    assert len(got.stims) == 4


def test_clear_cache(raw, cache_env):
    _load(raw, Builder())
    _load(raw, Builder(), params={"x": 1})
    load_or_build("Other", "tests.Other", 1, {}, raw, Builder())
    (cache_env / "unrelated.txt").write_text("keep me")
    assert clear_cache("Toy") == 2
    assert [p.name.split("-")[0] for p in _cache_files(cache_env)] == ["Other"]
    assert clear_cache() == 1
    assert _cache_files(cache_env) == [] and (cache_env / "unrelated.txt").exists()
    assert not list(cache_env.glob("*.lock"))
    assert clear_cache("Toy") == 0


def test_bad_inputs_raise_clear_errors(raw):
    with pytest.raises(TypeError, match="format_version"):
        load_or_build("Toy", "tests.Toy", "1", {}, raw, Builder())
    with pytest.raises(TypeError, match="JSON-able"):
        _load(raw, Builder(), params={"f": object()})
    bad = synthetic_payload()
    bad.responses[1] = bad.responses[1][:-1]
    with pytest.raises(ValueError, match=r"responses\[1\] holds 2 tensors"):
        _load(raw, lambda: bad, params={"bad": 1})
    mixed = synthetic_payload()
    mixed.stims[1] = mixed.stims[1].double()
    with pytest.raises(TypeError, match="mixes dtypes"):
        _load(raw, lambda: mixed, params={"mixed": 1})
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        _load([raw[0].parent / "nope.mat"], Builder())


def test_many_cells_load_fast(raw, cache_env):
    """A 100 x 120 grid: loading builds views per run of equal shapes, not per cell copies."""
    S, N = 100, 120
    flat = torch.arange(S * N * 2 * 10, dtype=torch.float32).reshape(S, N, 2, 10)

    def build():
        responses = [[flat[s, n] for n in range(N)] for s in range(S)]
        return Payload([torch.zeros(1, 3, 10)] * S, responses, [{}] * S, [{}] * N, {})

    _load(raw, build, params={"big": 1})
    got = _load(raw, lambda: 1 / 0, params={"big": 1})
    assert torch.equal(torch.stack([torch.stack(row) for row in got.responses]), flat)
    assert np.array_equal(got.mask.numpy(), np.ones((S, N), dtype=bool))


def _rss_file_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile line")


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="needs Linux /proc/self/pagemap")
def test_release_mapped_pages_drops_clean_pages_and_keeps_every_value(tmp_path):
    from deepSTRF.datasets._cache import _only_file_pages, release_mapped_pages

    page_floats = 4096 // 4
    values = np.random.default_rng(0).standard_normal(1024 * page_floats).astype(np.float32)  # 4 MiB
    path = tmp_path / "map.bin"
    values.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="c")
    region = torch.from_numpy(mm)
    views = list(region.split(page_floats))
    assert float(region.sum()) == pytest.approx(float(values.sum()), rel=1e-4)  # every page now resident
    before = _rss_file_kib()
    release_mapped_pages(views[:768], region)
    assert before - _rss_file_kib() >= 768 * 4 // 2  # KiB: most of the 3 MiB left this process
    torch.testing.assert_close(region, torch.from_numpy(values))  # read back from the file, unchanged
    views[900][5] = 123.0  # a private (copy-on-write) page: its range must be left alone
    first = views[800].data_ptr()
    assert not _only_file_pages(first, first + 200 * 4096)
    release_mapped_pages(views[800:1000], region)
    assert float(views[900][5]) == 123.0
    assert _only_file_pages(views[0].data_ptr(), views[0].data_ptr() + 4096)
    release_mapped_pages([torch.ones(3)], region)  # tensors outside the map are ignored
    assert path.read_bytes() == values.tobytes()  # the file itself never changes


def _age(path: Path, seconds: float = 60.0) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_verification_record_skips_the_body_pass_only_for_the_exact_file(raw, cache_env, monkeypatch):
    build = Builder()
    reference = digest(_load(raw, build))
    (path,) = _cache_files(cache_env)
    record = path.with_name(path.name + ".verified")
    _load(raw, build)
    assert not record.exists()  # a file younger than any timestamp granularity is never vouched for
    _age(path)
    _load(raw, build)  # full check, then the record
    assert record.exists() and build.calls == 1
    aged = path.stat()
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x10
    path.write_bytes(bytes(data))
    os.utime(path, ns=(aged.st_atime_ns, aged.st_mtime_ns))  # same identity: the record vouches, body not re-read
    assert digest(_load(raw, build)) != reference and build.calls == 1
    monkeypatch.setenv("DEEPSTRF_CACHE_VERIFY", "1")  # forced full check finds the bad byte
    with pytest.warns(CacheWarning, match="checksum"):
        assert digest(_load(raw, build)) == reference
    assert build.calls == 2
    monkeypatch.delenv("DEEPSTRF_CACHE_VERIFY")
    _age(path)
    _load(raw, build)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x10
    path.write_bytes(bytes(data))  # an ordinary rewrite changes the mtime: the record no longer applies
    with pytest.warns(CacheWarning, match="checksum"):
        assert digest(_load(raw, build)) == reference
    assert build.calls == 3
    assert clear_cache() == 1 and not record.exists()
