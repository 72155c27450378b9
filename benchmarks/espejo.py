#!/usr/bin/env python
"""Benchmark EspejoDataset: build from raw NEMS archives versus cached reload.

Usage::

    python benchmarks/espejo.py                 # NAT-sized fixture (35 sites, ~540 cells, ~690 stims)
    python benchmarks/espejo.py --sites 8       # smaller
    python benchmarks/espejo.py --keep DIR      # keep/reuse the generated raw data in DIR

A synthetic copy of the NAT release at the real size (stated in
``shared/datasets/espejo.md`` §8: 35 sites, ~540 cells, ~686 stim labels,
F = 18, T = 400, ~3 stims per site at 10-30 repeats, the rest 1-5) is written
once; then, each in a fresh subprocess:

- ``build``: empty cache, ``EspejoDataset(root)`` parses every archive and writes the cache;
- ``reload``: same call, served from the cache.

Prints both times, their ratio, and each process's peak RSS (``ru_maxrss``,
minus the RSS after imports) next to the bytes of the final tensors. Targets:
reload >= 20x faster than build; no step above ~2x the tensor bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def generate(root: Path, n_sites: int, seed: int = 0) -> None:
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    folder = root / "A1_natural_sounds" / "NAT"
    folder.mkdir(parents=True, exist_ok=True)
    bank = [f"STIM_{i:05d}cat_rec{i}_excerpt.wav" for i in range(686)]
    for k in range(n_sites):
        site = f"AMT{k:03d}c"
        rec = f"{site}_rec"
        cells = [f"{site}-{c:02d}-1" for c in range(1, 16 + (k % 3))]
        stims = list(rng.choice(bank, size=22, replace=False))
        reps = [int(rng.integers(10, 31))] * 3 + [int(rng.integers(1, 6)) for _ in range(19)]
        order = [s for s, r in zip(stims, reps) for _ in range(r)]
        order = [order[i] for i in rng.permutation(len(order))]
        T = 400 if k % 5 else 550
        starts = 20 + np.arange(len(order)) * (T + 20)
        total = int(starts[-1] + T + 20)
        rows = ["start,end,name"] + [f"{s / 100:.2f},{(s + T) / 100:.2f},{n}" for s, n in zip(starts, order)]
        spikes = {}
        for cell in cells:
            n = rng.poisson(0.25 * total)
            spikes[cell] = np.sort(rng.uniform(0, total / 100, size=n))
        files = {}
        buf = io.BytesIO()
        with h5py.File(buf, "w") as h5:
            for cell, t in spikes.items():
                h5.create_dataset(cell, data=t)
        files[f"{rec}/{rec}.resp.h5"] = buf.getvalue()
        buf = io.BytesIO()
        with h5py.File(buf, "w") as h5:
            for s in stims:
                h5.create_dataset(s, data=rng.random((18, T)))
        files[f"{rec}/{rec}.stim.h5"] = buf.getvalue()
        files[f"{rec}/{rec}.meta.json"] = json.dumps({"rasterfs": 100, "stimfmt": "ozgf"}).encode()
        files[f"{rec}/{rec}.resp.json"] = json.dumps({"fs": 100, "chans": cells, "recording": rec,
                                                       "segments": [[0, total]]}).encode()
        files[f"{rec}/{rec}.resp.epoch.csv"] = ("\n".join(rows) + "\n").encode()
        with tarfile.open(folder / f"{site}_{k:04x}.tgz", "w:gz", compresslevel=1) as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def worker(root: str) -> None:
    sys.path.insert(0, str(SRC))
    import torch  # noqa: F401

    from deepSTRF.datasets.audio.espejo import EspejoDataset

    base = _rss()
    t0 = time.perf_counter()
    ds = EspejoDataset(root)
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
    parser.add_argument("--sites", type=int, default=35)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "Espejo"
        if not (root / "A1_natural_sounds").exists():
            t0 = time.perf_counter()
            generate(root, args.sites)
            print(f"generated {args.sites} sites in {time.perf_counter() - t0:.1f} s")
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
