#!/usr/bin/env python
"""Benchmark CRCNSAC1Dataset: build from raw versus cached reload, on a Wehr layout of the real size.

Usage::

    python benchmarks/crcns_ac1.py                 # generate (~1 min, ~300 MB), then 3 builds + 3 reloads
    python benchmarks/crcns_ac1.py --repeat 5 --root /tmp/ac1-bench --scale 0.5

The synthetic ``crcns-ac1/wehr`` tree has the size of the real Wehr subset
(``crcns_ac1.md`` §8): 25 sessions, 51 sounds of 7.5-15 s at 44.1 kHz, about
280 (cell, sound) pairs (22 % coverage) with 1-8 repeats (mean ~4.5), one
MAT file per trial holding an int16 Vm trace at 4 kHz (sound + 0.45 s).
``--scale`` shrinks the durations. The Asari part is not generated (its real
size is not established). Default knobs (``experimenter='wehr'``, dt 5 ms,
53 bands). Each measurement runs in a fresh subprocess:

- ``build``: cache folder emptied; the constructor reads every trial file,
  detrends and gates ~1260 repeats, computes 51 spectrograms, writes the
  cache and maps it back;
- ``reload``: the constructor finds the cache file and maps it.

Reported: median constructor wall time, peak RSS of the process
(``ru_maxrss``) minus its value right after the imports, and the bytes of the
final tensors. Targets: reload >= 20x faster than build; reload peak <= 2x
the tensor bytes.
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


def generate(root: Path, scale: float = 1.0, seed: int = 0) -> None:
    import numpy as np
    import scipy.io as sio
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(seed)
    base = root / "crcns-ac1" / "wehr"
    sounds = []
    for k in range(51):
        folder = ("fragments", "category1", "category2", "category3")[k % 4]
        dur = float(rng.uniform(7.5, 15.0)) * scale
        wav = (0.1 * rng.standard_normal(int(dur * 44100))).astype(np.float32)
        desc = f"natural sound {k}"
        path = base / "Stimuli" / folder / f"{k + 1}.mat"
        path.parent.mkdir(parents=True, exist_ok=True)
        sio.savemat(path, {"stimulus": {"samples": wav[:, None], "param": {"sf": 44100.0, "description": desc}}})
        locked = gaussian_filter1d(rng.standard_normal(int(dur * 4000)), 20) * 30
        sounds.append((desc, dur, locked))
    sio.savemat(base / "Summary.mat", {"summary": {"n": 25.0}})
    pairs = rng.permutation(25 * 51)[:280]
    for cell in range(25):
        session = f"2002{(cell // 28) + 5:02d}{cell % 28 + 1:02d}-mw-{cell % 7 + 1:03d}"
        folder = base / "Results" / session
        folder.mkdir(parents=True)
        trials = []
        for p in pairs[pairs // 51 == cell]:
            trials += [int(p % 51)] * int(rng.integers(1, 9))
        rng.shuffle(trials)
        for t, k in enumerate(trials, 1):
            desc, dur, locked = sounds[k]
            pre, n = 1000, int((dur + 0.45) * 4000)
            vm = -60 + 0.5 * rng.standard_normal(n)
            vm[pre:pre + locked.size] += locked[: n - pre]
            sio.savemat(folder / f"{session}-{t:03d}.mat", {
                "response": {"trace": np.round(vm / 0.02).astype(np.int16)[:, None], "scale": 0.02, "sf": 4000.0},
                "triggers": {"type": "naturalsound", "time": float(pre + 1),
                             "param": {"description": desc, "duration": dur * 1000}}})


def worker(root: str) -> None:
    import torch  # noqa: F401

    from deepSTRF.datasets._storage import is_sentinel
    from deepSTRF.datasets.audio.crcns_ac1 import CRCNSAC1Dataset

    base = _rss()
    t0 = time.perf_counter()
    ds = CRCNSAC1Dataset(root, experimenter="wehr")
    elapsed = time.perf_counter() - t0
    nbytes = sum(t.numel() * t.element_size() for t in ds.stims)
    nbytes += sum(t.numel() * t.element_size() for row in ds.responses for t in row if not is_sentinel(t))
    touch = float(sum(float(t.sum()) for row in ds.responses for t in row if not is_sentinel(t)))  # fault pages in
    print(json.dumps({"seconds": elapsed, "peak": _rss() - base, "bytes": nbytes, "S": ds.get_S(),
                      "N": ds.N_neurons, "pairs": int(ds.nrn_masks.sum()), "check": touch}))


def run(root: Path, cache: Path) -> dict:
    env = dict(os.environ, DEEPSTRF_CACHE=str(cache), PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, __file__, "--worker", str(root)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="where to generate (kept); default: a temporary folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="duration scale of sounds and traces")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="ac1-bench-"))
    root = args.root or tmp / "CRCNS_AC1"
    try:
        if not (root / "crcns-ac1" / "wehr" / "Results").is_dir():
            t0 = time.perf_counter()
            generate(root, args.scale)
            print(f"generated the Wehr layout in {time.perf_counter() - t0:.1f} s under {root}")
        cache = tmp / "cache"
        builds, reloads = [], []
        for _ in range(args.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            builds.append(run(root, cache))
            reloads.append(run(root, cache))
        b = statistics.median(r["seconds"] for r in builds)
        r = statistics.median(r["seconds"] for r in reloads)
        nbytes = builds[0]["bytes"]
        print(f"S={builds[0]['S']} N={builds[0]['N']} pairs={builds[0]['pairs']} tensors={nbytes / 2**20:.1f} MiB")
        print(f"{'name':10s} {'seconds':>8s} {'peak MiB':>9s} {'peak/bytes':>10s}")
        for name, rows, t in (("build", builds, b), ("reload", reloads, r)):
            peak = max(x["peak"] for x in rows)
            print(f"{name:10s} {t:8.3f} {peak / 2**20:9.1f} {peak / nbytes:10.2f}")
        print(f"ratio build/reload = {b / r:.1f}x (target >= 20x)")
        assert all(x["check"] == builds[0]["check"] for x in builds + reloads), "reload differs from build"
        ok = b / r >= 20 and max(x["peak"] for x in reloads) <= 2.2 * nbytes
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
