#!/usr/bin/env python
"""Benchmark NS1Dataset: build from raw files versus cached reload, at the real data's size.

Usage::

    python benchmarks/ns1.py                 # 3 runs each (~1 min on 2 cores)
    python benchmarks/ns1.py --repeat 5 --keep /tmp/ns1-bench

A synthetic raw layout with the real shape (S = 20 natural stims + 12 DRC,
N = 119 spike files, R = 20, T = 999, F = 34, ~3.1 M spikes in the natural
windows) is written once. Every measurement runs in a fresh subprocess:

- ``build``: empty cache folder, the constructor parses every MAT file,
  smooths, writes the cache and maps it back;
- ``reload``: the constructor finds the cache file and maps it.

Reported: median wall time of the constructor, ratio build / reload (target
>= 20), and the peak RSS growth (``ru_maxrss`` after a full pass over every
tensor minus the peak right after the imports) against the bytes of the final
tensors (target: no step above ~2x).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]


def peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def make_raw(root: Path, seed: int = 0) -> None:
    """Real-sized NS1 layout (spikes random, ~64 per natural-stim repeat)."""
    import numpy as np
    from fixtures.ns1 import make_spike_file
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    savemat(str(root / "test_data_5ms.mat"), {"X_nfht": rng.random((20, 34, 1, 999)), "y_nt": rng.random((20, 999))})
    fields = ("path", "NrOfElectrodes", "ElectrodeNumber", "depth", "NoiseRatio", "singleT", "singleN")
    neuron = np.zeros((1, 119), dtype=[(k, "O") for k in fields])
    for i in range(119):
        path = f"exp{45 + i % 5}_1x32/P{i // 8:02d}-SH_En_C/cluster.{i % 8:02d}.data.mat"
        values = (path, np.array([[np.uint8(32)]]), np.array([[np.uint8(1 + i % 32)]]),
                  np.array([[np.int16(100 * (i % 15))]]), np.array([[5.0 + i % 30]]), "Yes", np.array([[np.uint8(2)]]))
        for k, v in zip(fields, values):
            neuron[0, i][k] = v
        trains = [[np.sort(rng.uniform(-1.0, 5200.0, rng.poisson(68)))[None, :] for _ in range(20)]
                  for _ in range(20)]
        make_spike_file(root / "spikesandwav" / path, trains)
    savemat(str(root / "MetadataSHEnCneurons.mat"), {"neuron": neuron})


def worker(root: str, kwargs: dict) -> None:
    import torch

    from deepSTRF.datasets.audio.ns1_drc import NS1Dataset

    base = peak_rss()
    t0 = time.perf_counter()
    ds = NS1Dataset(root, **kwargs)
    elapsed = time.perf_counter() - t0
    nbytes = sum(t.numel() * t.element_size() for t in ds.stims)
    total = 0.0
    for row in ds.responses:
        for t in row:
            nbytes += t.numel() * t.element_size()
            total += float(t.sum())
    print(json.dumps({"seconds": elapsed, "rss": peak_rss() - base, "bytes": nbytes,
                      "N": ds.N_neurons, "S": ds.get_S(), "check": total, "torch": torch.__version__}))


def measure(script: Path, root: Path, cache: Path, kwargs: dict, clear: bool) -> dict:
    env = dict(os.environ, DEEPSTRF_CACHE=str(cache))
    if clear:
        for f in cache.glob("*"):
            f.unlink()
    out = subprocess.run([sys.executable, str(script), "--worker", str(root), json.dumps(kwargs)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(name: str, builds: list[dict], reloads: list[dict]) -> bool:
    b = statistics.median(r["seconds"] for r in builds)
    r = statistics.median(x["seconds"] for x in reloads)
    nbytes = builds[0]["bytes"]
    b_mem = max(x["rss"] for x in builds) / nbytes
    r_mem = max(x["rss"] for x in reloads) / nbytes
    print(f"{name:<28} build {b:8.3f} s   reload {r:7.3f} s   ratio {b / r:7.1f}x   "
          f"tensors {nbytes / 2**20:7.1f} MiB   peak build {b_mem:4.2f}x   peak reload {r_mem:4.2f}x")
    return b / r >= 20 and b_mem <= 2.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="folder for the raw layout (reused when present)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], json.loads(args.worker[1]))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="ns1-bench-"))
    root = args.keep or tmp / "NS1"
    if not (root / "MetadataSHEnCneurons.mat").exists():
        t0 = time.perf_counter()
        make_raw(root)
        print(f"generated the raw layout in {time.perf_counter() - t0:.1f} s under {root}")
    ok = True
    for name, kwargs in (("NS1 smooth=True (default)", {}), ("NS1 smooth=False", {"smooth": False})):
        cache = tmp / "cache"
        cache.mkdir(exist_ok=True)
        builds = [measure(Path(__file__), root, cache, kwargs, clear=True) for _ in range(args.repeat)]
        reloads = [measure(Path(__file__), root, cache, kwargs, clear=False) for _ in range(args.repeat)]
        if any(abs(x["check"] - builds[0]["check"]) > 1e-3 * abs(builds[0]["check"]) for x in reloads):
            print("  WARNING: reload differs from build")
            ok = False
        ok &= report(name, builds, reloads)
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
