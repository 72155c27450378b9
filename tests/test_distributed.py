"""DDP for real: two gloo ranks on 127.0.0.1 build one dataset and split an epoch."""

from __future__ import annotations

import json
import socket
from collections import Counter

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from fixtures.scale_workers import ddp_rank, write_raw

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available"
)

WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_ranks_build_once_and_split_the_epoch(tmp_path):
    sizes = [12, 11]  # 11: the sampler pads one rank with a repeated item
    roots = [str(write_raw(tmp_path / f"raw{S}", S=S, N=6, seed=S)) for S in sizes]
    counters = [str(tmp_path / f"builds{S}.txt") for S in sizes]
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    mp.spawn(ddp_rank, args=(WORLD, _free_port(), roots, str(cache), counters, str(out)), nprocs=WORLD, join=True)

    by_rank = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert len(list(cache.glob("*.dscache"))) == len(sizes)
    for k, S in enumerate(sizes):
        # the file lock made one build; the other rank waited and loaded the file
        with open(counters[k]) as fh:
            assert len(fh.read().splitlines()) == 1
        results = [r[k] for r in by_rank]
        prints = results[0]["fingerprints"]
        assert len(prints) == WORLD and len(set(prints)) == 1  # identical data in both ranks

        per_rank = -(-S // WORLD)  # DistributedSampler pads to a multiple of the world size
        padding = per_rank * WORLD - S
        for workers in ("0", "2"):
            seen = results[0]["epochs"][workers]
            assert seen == results[1]["epochs"][workers]  # every rank gathered the same lists
            assert [len(s) for s in seen] == [per_rank] * WORLD
            counts = Counter(i for s in seen for i in s)
            assert set(counts) == set(range(S))  # the union is every item
            assert sum(c - 1 for c in counts.values()) == padding  # repeats: only the documented padding
            if padding == 0:
                assert not set(seen[0]) & set(seen[1])  # disjoint
        # the worker count does not change what a rank sees
        assert results[0]["epochs"]["0"] == results[0]["epochs"]["2"]
    assert not dist.is_initialized()
