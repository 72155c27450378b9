#!/usr/bin/env python
"""Benchmark NAT4Dataset: build from raw files versus cached reload.

Usage::

    python benchmarks/nat4.py                  # N = 106 cells (1/8 of A1), ~1-2 min on 2 cores
    python benchmarks/nat4.py --cells 849      # the real A1 size (GB-scale CSV: slow to generate)
    python benchmarks/nat4.py --keep /tmp/nat4-bench --repeat 5

The synthetic layout has the real A1 shape except for the number of cells:
S = 593 (575 est x 1 repeat + 18 val x 20 repeats), T = 150 bins of 10 ms,
F = 18, 22 per-site archives with spike times at 1 kHz, a population
``resp.csv`` of 88 950 rows written with NEMS' ``%.18e``. Build time and
memory grow linearly with the cell count. Each measurement runs in a fresh
subprocess (see ``benchmarks/ns1.py`` for the protocol and the targets).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _loader_bench import prepare_raw, report, run_build_and_reload, verdict  # noqa: E402

TARGET = "deepSTRF.datasets.audio.nat4:NAT4Dataset"
CONFIGURATIONS = (("NAT4 A1 subset='all'", {}), ("NAT4 A1 subset='est'", {"subset": "est"}))

N_EST, N_VAL, R_VAL, T, F, N_SITES = 575, 18, 20, 150, 18, 22


def _fast_csv(matrix, denominators: int = 20) -> bytes:
    """``%.18e`` CSV of a matrix whose values are multiples of 1/denominators (lookup table of strings)."""
    import numpy as np

    codes = np.round(matrix * denominators).astype(np.int64)
    table = np.array([f"{k / denominators:.18e}" for k in range(int(codes.max()) + 1)], dtype=object)
    lines = [",".join(row) for row in table[codes]]
    return ("\n".join(lines) + "\n").encode()


def make_raw(root: Path, cells: int, seed: int = 0) -> None:
    """A1-shaped NAT4 layout with ``cells`` cells (population archive and per-site archives)."""
    import numpy as np

    from fixtures.nat4 import _epoch_csv, _h5, _tar, _trial_rows

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    sites = [f"{'ARM' if i < 5 else 'DRX' if i < 10 else 'TNC'}{20 + i:03d}a" for i in range(N_SITES)]
    chans = [f"{sites[i % N_SITES]}-{i // N_SITES + 1:02d}-1" for i in range(cells)]
    val = [f"STIM_00cat{k}_v.wav" for k in range(N_VAL)]
    est = [f"STIM_cat{k}_e.wav" for k in range(N_EST)]
    T_total = (N_VAL + N_EST) * T
    val_counts = rng.poisson(0.3, (N_VAL, cells, R_VAL, T)).astype(np.float64)
    resp = np.empty((T_total, cells))
    rows = []
    for k, lab in enumerate(val + est):
        a = k * T
        rows += _trial_rows(a / 100, (a + T) / 100, lab, 0.25)
        resp[a:a + T] = val_counts[k].mean(axis=1).T if k < N_VAL else rng.poisson(0.3, (T, cells))
    stim = rng.gamma(2.0, 1.0, (T_total, F))
    rec = "A1_NAT4_ozgf.fs100.ch18"
    pop = {f"{rec}/{rec}.meta.json": b"{}",
           f"{rec}/{rec}.resp.json": json.dumps({"chans": chans, "fs": 100, "segments": [[0, T_total]]}).encode(),
           f"{rec}/{rec}.resp.epoch.csv": _epoch_csv(rows),
           f"{rec}/{rec}.stim.csv": ("\n".join(",".join(f"{v:.18e}" for v in r) for r in stim) + "\n").encode(),
           f"{rec}/{rec}.resp.csv": _fast_csv(resp)}
    _tar(root / f"{rec}.tgz", pop)
    (root / "A1_pred_correlation.csv").write_text(
        "cellid,r_test,sig_auditory\n" + "".join(f"{c},0.5,{i % 9 != 0}\n" for i, c in enumerate(chans)))
    folder = root / "A1_single_sites"
    folder.mkdir(exist_ok=True)
    for si, site in enumerate(sites):
        idx = [i for i in range(cells) if i % N_SITES == si]
        order = [(lab, r) for r in range(R_VAL) for lab in val] + [(lab, 0) for lab in est]
        rng.shuffle(order)
        rows, t, starts = [], 1.0, {}
        for lab, r in order:
            rows += _trial_rows(t, t + 1.5, lab, 0.25)
            starts[(lab, r)] = t
            t += 1.6
        spikes = {}
        for i in idx:
            times = [rng.uniform(0, t, int(rng.poisson(2.0 * t)))]
            for k, lab in enumerate(val):
                for r in range(R_VAL):
                    counts = val_counts[k, i, r].astype(int)
                    b = np.repeat(np.arange(T), counts)
                    times.append(starts[(lab, r)] + (b * 10 + rng.integers(0, 10, b.size) + 0.5) / 1000)
            spikes[chans[i]] = np.sort(np.concatenate(times))
        name = f"A1_{site}_{'0' * 40}"
        _tar(folder / f"{name}.tgz", {
            f"{name}/{name}.meta.json": b"{}",
            f"{name}/{name}.resp.h5": _h5(spikes),
            f"{name}/{name}.resp.json": json.dumps({"chans": list(spikes), "fs": 1000,
                                                    "segments": [[0, round(1000 * t)]]}).encode(),
            f"{name}/{name}.resp.epoch.csv": _epoch_csv(rows)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cells", type=int, default=106)
    parser.add_argument("--keep", type=Path, help="folder for the raw layout (reused when present)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads per worker (1: robust timings on a shared machine)")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="nat4-bench-") as tmp:
        root = args.keep or Path(tmp) / "NAT4"
        prepare_raw(root, "A1_pred_correlation.csv", partial(make_raw, cells=args.cells),
                    f"the raw layout of {args.cells} cells")
        for label, kwargs in CONFIGURATIONS:
            result = run_build_and_reload(TARGET, root, Path(tmp) / "cache", kwargs, args.repeat, args.threads)
            ok &= report(label, result, rtol=1e-3)
    return verdict(ok)


if __name__ == "__main__":
    sys.exit(main())
