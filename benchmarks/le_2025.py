#!/usr/bin/env python
"""Benchmark Le2025Dataset: build from raw wavs + pprox files versus cached reload.

Usage::

    python benchmarks/le_2025.py                # nat8b-sized fixture (S=96, N=445, R=10, T~170-240)
    python benchmarks/le_2025.py --units 100    # smaller
    python benchmarks/le_2025.py --keep DIR     # keep/reuse the generated raw data in DIR

A synthetic copy of the nat8b experiment at the real size (``shared/datasets/le_2025.md``
§8: 96 wavs of 0.84-1.2 s at 48 kHz, ~445 units, 10 trials per stim, F = 50,
dt = 5 ms) is written once; then, each in a fresh subprocess, with the default
constructor (gammatone spectrograms, smoothing, reliability):

- ``build``: empty cache, every wav filtered and every pprox parsed, cache written;
- ``reload``: same call, served from the cache.

Prints both times, their ratio, and each process's peak RSS (``ru_maxrss``,
minus the RSS after imports) next to the bytes of the final tensors. Targets:
reload >= 20x faster than build; no step above ~2x the tensor bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def generate(root: Path, n_units: int, seed: int = 0) -> None:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder = root / "zebf-auditory-restoration-1"
    (folder / "nat8b-stimuli").mkdir(parents=True, exist_ok=True)
    (folder / "nat8b-responses").mkdir(exist_ok=True)
    stems, durations = [], {}
    for k in range(8):
        dur = float(rng.uniform(0.84, 1.2))
        for v in ["C", "CM_snr0"] + [f"{v}_g{g}" + ("_snr0" if v in ("GB", "CB", "GM") else "")
                                     for v in ("G", "N", "GB", "CB", "GM") for g in (1, 2)]:
            stem = f"ep_nat8mk{k}_{v}"
            x = 0.03 * rng.standard_normal(int(48000 * dur))
            sf.write(folder / "nat8b-stimuli" / f"{stem}.wav", x, 48000, subtype="PCM_16")
            stems.append(stem)
            durations[stem] = dur
    for u in range(n_units):
        trials = []
        for stem in stems:
            for _ in range(10):
                n = int(rng.poisson(12))
                ev = np.round(rng.uniform(-1.0, durations[stem] + 1.0, size=n), 6).tolist()
                trials.append({"events": ev, "stimulus": {"name": stem, "interval": [0, durations[stem]]},
                               "interval": [-1.0, durations[stem] + 1.0], "offset": 0.0, "index": len(trials)})
        doc = {"$schema": "https://meliza.org/spec:2/stimtrial.json#", "pprox": trials}
        (folder / "nat8b-responses" / f"C{40 + u % 8}_1_{u // 8}_c{u}.pprox").write_text(json.dumps(doc))


def worker(root: str) -> None:
    import warnings

    sys.path.insert(0, str(SRC))
    import torch  # noqa: F401

    from deepSTRF.datasets.audio.le_2025 import Le2025Dataset

    base = _rss()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no metadata CSVs in the synthetic copy
        ds = Le2025Dataset(root)
    elapsed = time.perf_counter() - t0
    nbytes = sum(s.numel() * s.element_size() for s in ds.stims)
    mask = ds.nrn_masks
    for s, row in enumerate(ds.responses):
        for n in mask[s].nonzero().flatten().tolist():
            nbytes += row[n].numel() * row[n].element_size()
            float(row[n].sum())  # touch every page
    print(json.dumps({"seconds": elapsed, "peak": _rss() - base, "bytes": nbytes, "S": ds.get_S(),
                      "N": ds.N_neurons}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=445)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "Le_2025"
        if not (root / "zebf-auditory-restoration-1").exists():
            t0 = time.perf_counter()
            generate(root, args.units)
            print(f"generated {args.units} units in {time.perf_counter() - t0:.1f} s")
        env = dict(os.environ, DEEPSTRF_CACHE=str(Path(tmp) / "cache"))
        out = {}
        for step in ("build", "reload"):
            proc = subprocess.run([sys.executable, __file__, "--worker", str(root)], env=env,
                                  capture_output=True, text=True, check=True)
            out[step] = json.loads(proc.stdout.strip().splitlines()[-1])
        b, r = out["build"], out["reload"]
        mb = 1 / 2**20
        print(f"S={b['S']} N={b['N']} tensors {b['bytes'] * mb:.1f} MiB")
        print(f"{'step':8s} {'seconds':>8s} {'peak MiB':>9s} {'peak/bytes':>10s}")
        for step, res in out.items():
            print(f"{step:8s} {res['seconds']:8.2f} {res['peak'] * mb:9.1f} {res['peak'] / res['bytes']:10.2f}")
        print(f"reload speed-up: {b['seconds'] / r['seconds']:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
