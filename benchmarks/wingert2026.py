#!/usr/bin/env python
"""Benchmark Wingert2026Dataset: build from raw archives versus cached reload, at real per-session size.

Usage::

    python benchmarks/wingert2026.py                     # 6 sessions, 3 runs each
    python benchmarks/wingert2026.py --sessions 12 --repeat 2 --keep /tmp/wg-bench

The real release has 67 sessions of ~42 cells, ~100 single-presentation
estimation stims and ~6 validation stims at R = 20, T = 2000 frames of 10 ms,
F = 32 (~4.35 GB of archives, S ~ 7,000, N = 3,128). This script writes
``--sessions`` sessions with exactly that per-session shape (so build time and
memory scale linearly to the full release) and measures, each in a fresh
subprocess:

- ``build``: empty cache folder; the constructor streams every archive, bins
  the spikes, normalises, writes the cache and maps it back;
- ``reload``: the constructor maps the cache file.

Reported: median wall time, ratio build / reload (target >= 20) and the peak
RSS growth (``ru_maxrss`` after touching every tensor minus the peak after the
imports) against the final tensors' bytes (target: no step above ~2x).
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
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _loader_bench import prepare_raw, report, run_build_and_reload, verdict  # noqa: E402

TARGET = "deepSTRF.datasets.audio.wingert2026:Wingert2026Dataset"

CELLS, EST, VAL, VAL_R, T = 42, 100, 6, 20, 2000


def make_raw(root: Path, sessions: int, seed: int = 0) -> None:
    import numpy as np
    from fixtures.wingert2026 import CSV_HEADER, _epoch_csv, _h5_bytes

    rng = np.random.default_rng(seed)
    rec = root / "recordings"
    rec.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(sessions):
        session = f"BEN{k:03d}a"
        cells = [f"{session}-{c + 1:03d}-1" for c in range(CELLS)]
        rows += [[c, session, "A1" if i % 3 else "PEG", "4", "0", "False", "RS", "0.4", "True", "0", "0"]
                 for i, c in enumerate(cells)]
        labels = [f"STIM_00seq{k:03d}{v}.wav" for v in range(VAL)] + [f"STIM_seq{k:03d}{e:03d}.wav" for e in range(EST)]
        order = [lab for lab in labels for _ in range(VAL_R if lab.startswith("STIM_00") else 1)]
        rng.shuffle(order)
        epochs, t = [], 1.0
        for lab in order:
            start = round(t + 0.0037, 6)
            epochs.append((start, start + T / 100, lab))
            t = start + T / 100 + 0.5
        grams = {lab: rng.gamma(2.0, 0.05, size=(32, T)).astype(np.float32) for lab in labels}
        spikes = {c: np.sort(rng.uniform(0, t, size=int(t * rng.uniform(2, 10)))) for c in cells}
        name = f"{session}_bench"
        members = {
            f"{name}.meta.json": json.dumps({"siteid": session}).encode(),
            f"{name}.resp.json": json.dumps({"chans": cells, "fs": 100, "signal_type": "PointProcess"}).encode(),
            f"{name}.resp.epoch.csv": _epoch_csv(epochs),
            f"{name}.resp.h5": _h5_bytes(spikes),
            f"{name}.stim.h5": _h5_bytes(grams),
        }
        with tarfile.open(rec / f"{name}.tgz", "w:gz", compresslevel=1) as tf:
            for member, data in members.items():
                info = tarfile.TarInfo(f"{name}/{member}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    import csv

    with open(root / "cell_list.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_HEADER)
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="folder for the raw layout (reused when present)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads per worker (1: robust timings on a shared machine)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wingert-bench-") as tmp:
        root = args.keep or Path(tmp) / "Wingert2026"
        prepare_raw(root, "cell_list.csv", partial(make_raw, sessions=args.sessions), f"{args.sessions} sessions")
        result = run_build_and_reload(TARGET, root, Path(tmp) / "cache", {}, args.repeat, args.threads)
    return verdict(report("Wingert2026", result))


if __name__ == "__main__":
    sys.exit(main())
