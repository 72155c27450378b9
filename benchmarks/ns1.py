#!/usr/bin/env python
"""Benchmark NS1Dataset: build from raw files versus cached reload, at the real data's size.

Usage::

    python benchmarks/ns1.py                 # 3 runs each (~1 min on 2 cores)
    python benchmarks/ns1.py --repeat 5 --keep /tmp/ns1-bench

A synthetic raw layout with the real shape (S = 20 natural stims + 12 DRC,
N = 119 spike files, R = 20, T = 999, F = 34, ~3.1 M spikes in the natural
windows) is written once. Every measurement runs in a fresh subprocess
(``--threads`` torch threads, default 1; harness: ``benchmarks/_loader_bench.py``):

- ``build``: empty cache folder, the constructor parses every MAT file,
  smooths, writes the cache and maps it back;
- ``reload``: the constructor finds the cache file and maps it.

Reported: median wall time of the constructor, ratio build / reload (target
>= 20), and the peak RSS growth (``ru_maxrss`` after a full pass over every
tensor minus the peak right after the imports) against the bytes of the final
tensors (target: no step above ~2x). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _loader_bench import prepare_raw, report, run_build_and_reload, verdict  # noqa: E402

TARGET = "deepSTRF.datasets.audio.ns1_drc:NS1Dataset"
CONFIGURATIONS = (("NS1 smooth=True (default)", {}), ("NS1 smooth=False", {"smooth": False}))


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="folder for the raw layout (reused when present)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads per worker (1: robust timings on a shared machine)")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="ns1-bench-") as tmp:
        root = args.keep or Path(tmp) / "NS1"
        prepare_raw(root, "MetadataSHEnCneurons.mat", make_raw, "the raw layout")
        for label, kwargs in CONFIGURATIONS:
            result = run_build_and_reload(TARGET, root, Path(tmp) / "cache", kwargs, args.repeat, args.threads)
            ok &= report(label, result, rtol=1e-3)
    return verdict(ok)


if __name__ == "__main__":
    sys.exit(main())
