#!/usr/bin/env python
"""Benchmark EspejoDataset: build from raw NEMS archives versus cached reload.

Usage::

    python benchmarks/espejo.py                 # NAT-sized fixture (35 sites, ~540 cells, ~690 stims)
    python benchmarks/espejo.py --sites 8       # smaller
    python benchmarks/espejo.py --keep DIR      # keep/reuse the generated raw data in DIR

A synthetic copy of the NAT release at the real size (stated in
``shared/datasets/espejo.md`` §8: 35 sites, ~540 cells, ~686 stim labels,
F = 18, T = 400, ~3 stims per site at 10-30 repeats, the rest 1-5) is written
once; then, each in a fresh subprocess (``--repeat`` of each, default 1;
``--threads`` torch threads, default 1):

- ``build``: empty cache, ``EspejoDataset(root)`` parses every archive and writes the cache;
- ``reload``: same call, served from the cache.

Prints both (median) times, their ratio, and each process's peak RSS
(``ru_maxrss`` after a pass over every tensor, minus the peak after imports)
next to the bytes of the final tensors. Targets: reload >= 20x faster than
build; no step above ~2x the tensor bytes. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _loader_bench import prepare_raw, report, run_build_and_reload, verdict  # noqa: E402

TARGET = "deepSTRF.datasets.audio.espejo:EspejoDataset"


def make_raw(root: Path, n_sites: int, seed: int = 0) -> None:
    """NAT-release layout with ``n_sites`` site archives (random spikes and spectrograms)."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=35)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads per worker (1: robust timings on a shared machine)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="espejo-bench-") as tmp:
        root = args.keep or Path(tmp) / "Espejo"
        prepare_raw(root, "A1_natural_sounds", partial(make_raw, n_sites=args.sites), f"{args.sites} sites")
        result = run_build_and_reload(TARGET, root, Path(tmp) / "cache", {}, args.repeat, args.threads)
    return verdict(report("Espejo", result))


if __name__ == "__main__":
    sys.exit(main())
