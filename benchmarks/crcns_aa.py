#!/usr/bin/env python
"""Benchmark CRCNSAA1Dataset: build from raw versus cached reload, on an aa-1 layout of the real size.

Usage::

    python benchmarks/crcns_aa.py                 # generate (~10 s), then 3 builds + 3 reloads
    python benchmarks/crcns_aa.py --repeat 5 --root /tmp/aa1-bench

The synthetic layout has the real aa-1 size (design: ``crcns_aa1.md`` §8):
S = 30 wavs (10 conspecific + 20 flatrip, 1.5-5 s of 32 kHz PCM16 noise),
N = 100 cells (50 Field L + 50 MLd) that each heard every stim of both
classes, R = 10 trials of ~20 spikes/s. Default knobs (dt 1 ms, 32 mels,
cubic, smoothing on). Each measurement runs in a fresh subprocess, one after
the other:

- ``build``: cache folder emptied; the constructor parses every file,
  computes the spectrograms, smooths, writes the cache and maps it back;
- ``reload``: the constructor finds the cache file and maps it.

Reported: median constructor wall time, the peak RSS of the process
(``ru_maxrss``) minus its value right after the imports, and the bytes of
the final tensors (stims + real responses). Targets: reload >= 20x faster
than build; no step above ~2x the tensor bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def generate(root: Path, seed: int = 0) -> None:
    import numpy as np
    import soundfile

    rng = np.random.default_rng(seed)
    names = {"conspecific": 10, "flatrip": 20}
    durations = {}
    for cls, count in names.items():
        folder = root / "all_stims" / cls
        folder.mkdir(parents=True)
        for i in range(count):
            name = f"{cls[:1].upper()}{i:031X}.wav"
            dur = float(rng.uniform(1.5, 5.0))
            durations[(cls, name)] = dur
            soundfile.write(folder / name, (0.2 * rng.standard_normal(int(dur * 32000))).astype("float32"),
                            32000, subtype="PCM_16")
    for area in ("Field_L", "MLd"):
        for c in range(50):
            cell = f"bird{c % 17:02d}_{c}_{'AB'[c % 2]}"
            for cls in names:
                folder = root / f"{area}_cells" / cell / cls
                folder.mkdir(parents=True)
                for k, ((cls2, name), dur) in enumerate(d for d in durations.items() if d[0][0] == cls):
                    (folder / f"stim{k + 1}").write_text(name + "\n")
                    lines = []
                    for _ in range(10):
                        n = rng.poisson(20 * (dur + 0.5))
                        times = np.sort(rng.uniform(-500, dur * 1000, n))
                        lines.append("".join(f"{t:.1f} " for t in times) + "\n")
                    (folder / f"spike{k + 1}").write_text("".join(lines))


def worker(root: str) -> None:
    import torch  # noqa: F401

    from deepSTRF.datasets._storage import is_sentinel
    from deepSTRF.datasets.audio.crcns_aa1 import CRCNSAA1Dataset

    base = _rss()
    t0 = time.perf_counter()
    ds = CRCNSAA1Dataset(root)
    elapsed = time.perf_counter() - t0
    nbytes = sum(t.numel() * t.element_size() for t in ds.stims)
    nbytes += sum(t.numel() * t.element_size() for row in ds.responses for t in row if not is_sentinel(t))
    touch = float(sum(float(t.sum()) for row in ds.responses for t in row if not is_sentinel(t)))  # fault pages in
    print(json.dumps({"seconds": elapsed, "peak": _rss() - base, "bytes": nbytes, "S": ds.get_S(),
                      "N": ds.N_neurons, "check": touch}))


def run(root: Path, cache: Path) -> dict:
    env = dict(os.environ, DEEPSTRF_CACHE=str(cache), PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, __file__, "--worker", str(root)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="where to generate (kept); default: a temporary folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="aa1-bench-"))
    root = args.root or tmp / "AA1"
    try:
        if not (root / "MLd_cells").is_dir():
            t0 = time.perf_counter()
            generate(root)
            print(f"generated the aa-1 layout in {time.perf_counter() - t0:.1f} s under {root}")
        cache = tmp / "cache"
        builds, reloads = [], []
        for _ in range(args.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            builds.append(run(root, cache))
            reloads.append(run(root, cache))
        b = statistics.median(r["seconds"] for r in builds)
        r = statistics.median(r["seconds"] for r in reloads)
        nbytes = builds[0]["bytes"]
        print(f"S={builds[0]['S']} N={builds[0]['N']} tensors={nbytes / 2**20:.1f} MiB")
        print(f"{'name':10s} {'seconds':>8s} {'peak MiB':>9s} {'peak/bytes':>10s}")
        for name, rows, t in (("build", builds, b), ("reload", reloads, r)):
            peak = max(x["peak"] for x in rows)
            print(f"{name:10s} {t:8.3f} {peak / 2**20:9.1f} {peak / nbytes:10.2f}")
        print(f"ratio build/reload = {b / r:.1f}x (target >= 20x)")
        ok = b / r >= 20 and max(x["peak"] for x in builds + reloads) <= 2.2 * nbytes
        assert all(x["check"] == builds[0]["check"] for x in builds + reloads), "reload differs from build"
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
