#!/usr/bin/env python
"""Benchmark the processed-data cache: parse (build) versus cached reload.

Usage::

    python benchmarks/cache.py              # both workloads, 3 runs each (~1 min on 2 cores)
    python benchmarks/cache.py --repeat 5 --only ns1

A synthetic loader stands in for a real one: its "raw parse" draws spike
times for every (stim, neuron, repeat) and bins them (numpy), which costs
about a second for the NS1-sized workload, like parsing a few hundred MAT
files would. Every measurement runs in a fresh subprocess (one process per
run, sequentially) so that neither imports nor the page cache of the tensors
are shared by accident, except the cache file itself, which is the point:

- ``build``: cache cleared, ``load_or_build`` parses, writes the cache file
  and maps it back;
- ``reload``: ``load_or_build`` finds the file and maps it.

Times are medians (seconds) of ``--repeat`` runs of the ``load_or_build`` call
alone; ``touch`` is the extra time of a first full pass over every tensor
(page faults of the mapping; the OS page cache is warm, as in any reuse).
Memory is the peak RSS (``ru_maxrss``) of the process after that full pass
minus its peak right after importing torch and deepSTRF, compared with the
bytes of the tensors.

Prints ``name  build  reload  ratio`` (ratio = build / reload) and a memory
table, and exits non-zero when a target is missed (reload >= 20x faster than
build; reload memory <= 1.5x the tensor bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

WORKLOADS = {
    # NS1 on the real data: S = 20, N = 119, R = 20, T = 999, F = 34 (0 % missing there; 20 % here)
    "ns1": dict(S=20, N=119, F=34, R=(20, 20), T=(999, 999), missing=0.2, rate=0.2),
    # many small stims: S = 200, N = 120, ragged R and T
    "many": dict(S=200, N=120, F=34, R=(1, 10), T=(200, 400), missing=0.2, rate=0.2),
}


KERNEL = [0.0, 0.5, 1.0, 0.5, 0.0]


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _build(spec: dict):
    """The synthetic raw parse: spike times -> binned counts, NaN sentinels for missing pairs."""
    import numpy as np
    import torch

    from deepSTRF.datasets._cache import Payload
    from deepSTRF.datasets._storage import make_sentinel

    rng = np.random.default_rng(1234)
    S, N = spec["S"], spec["N"]
    stims, responses, stim_meta = [], [], []
    for s in range(S):
        T = int(rng.integers(spec["T"][0], spec["T"][1] + 1))
        stims.append(torch.from_numpy(rng.standard_normal((1, spec["F"], T), dtype=np.float32)))
        row = []
        for n in range(N):
            if rng.random() < spec["missing"]:
                row.append(make_sentinel())
                continue
            R = int(rng.integers(spec["R"][0], spec["R"][1] + 1))
            counts = np.empty((R, T), dtype=np.float32)
            for r in range(R):  # spike times (bins) -> counts -> the NS1 5-tap smoothing
                times = np.sort(rng.uniform(0.0, T * 5.0, size=rng.poisson(spec["rate"] * T)))  # ms
                binned = np.bincount((np.round(times) // 5).astype(np.int64), minlength=T)[:T]
                counts[r] = np.convolve(binned, KERNEL, mode="same")
            row.append(torch.from_numpy(counts))
        responses.append(row)
        stim_meta.append({"name": f"stim{s}", "split": "test" if s % 5 == 0 else "train", "T": T})
    nrn_meta = [{"id": f"n{n}", "depth": float(n * 10)} for n in range(N)]
    return Payload(stims, responses, stim_meta, nrn_meta, {"dt": 5.0, "F": spec["F"]})


def _child(name: str, raw: str, clear: bool) -> dict:
    sys.path.insert(0, str(SRC))
    import torch

    from deepSTRF.datasets import _cache

    spec = WORKLOADS[name]
    if clear:
        _cache.clear_cache(f"bench_{name}")
    base = _peak_rss_bytes()
    t0 = time.perf_counter()
    payload = _cache.load_or_build(f"bench_{name}", "benchmarks.cache.Synthetic", 1, spec, [Path(raw)],
                                   lambda: _build(spec))
    t_call = time.perf_counter() - t0
    t0 = time.perf_counter()
    total = 0.0
    for t in payload.stims:
        total += float(t.sum())
    for row in payload.responses:
        for t in row:
            total += float(torch.nansum(t))
    t_touch = time.perf_counter() - t0
    return {"call_s": t_call, "touch_s": t_touch, "mem_bytes": _peak_rss_bytes() - base,
            "tensor_bytes": payload.nbytes, "check": total}


def _run_child(name: str, raw: str, clear: bool, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", name, "--raw", raw] + (["--clear"] if clear else []),
                         env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--child")
    ap.add_argument("--raw")
    ap.add_argument("--clear", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.raw, args.clear)))
        return 0

    failed = False
    with tempfile.TemporaryDirectory(prefix="deepstrf-cache-bench-") as tmp:
        env = dict(os.environ, DEEPSTRF_CACHE=str(Path(tmp) / "cache"))
        raw = Path(tmp) / "raw.mat"
        raw.write_bytes(b"stand-in raw file")
        rows = []
        for name in args.only.split(","):
            builds = [_run_child(name, str(raw), True, env) for _ in range(args.repeat)]
            reloads = [_run_child(name, str(raw), False, env) for _ in range(args.repeat)]
            if len({round(r["check"], 3) for r in builds + reloads}) != 1:
                print(f"{name}: reloaded data differ from the build!", file=sys.stderr)
                failed = True
            rows.append((name, _median(builds, "call_s"), _median(reloads, "call_s"), _median(reloads, "touch_s"),
                         _median(builds, "mem_bytes"), _median(reloads, "mem_bytes"), reloads[0]["tensor_bytes"]))
        print(f"{'name':<6} {'build':>8} {'reload':>8} {'ratio':>7} {'touch':>7}   (seconds, median of {args.repeat})")
        for name, b, r, touch, *_ in rows:
            print(f"{name:<6} {b:8.3f} {r:8.4f} {b / r:7.1f} {touch:7.3f}")
            failed |= b / r < 20
        print(f"\n{'name':<6} {'tensors MB':>11} {'build MB':>9} {'reload MB':>10} {'reload/tensors':>15}")
        for name, *_, mem_b, mem_r, nbytes in rows:
            print(f"{name:<6} {nbytes / 1e6:11.1f} {mem_b / 1e6:9.1f} {mem_r / 1e6:10.1f} {mem_r / nbytes:15.2f}")
            failed |= mem_r / nbytes > 1.5
    print("\ntargets: reload >= 20x faster than build, reload memory <= 1.5x tensor bytes:",
          "MISSED" if failed else "met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
