#!/usr/bin/env python
"""Benchmark Le2025Dataset: build from raw wavs + pprox files versus cached reload.

Usage::

    python benchmarks/le_2025.py                # nat8b-sized fixture (S=96, N=445, R=10, T~170-240)
    python benchmarks/le_2025.py --units 100    # smaller
    python benchmarks/le_2025.py --keep DIR     # keep/reuse the generated raw data in DIR

A synthetic copy of the nat8b experiment at the real size (``shared/datasets/le_2025.md``
§8: 96 wavs of 0.84-1.2 s at 48 kHz, ~445 units, 10 trials per stim, F = 50,
dt = 5 ms) is written once; then, each in a fresh subprocess (``--repeat`` of
each, default 1; ``--threads`` torch threads, default 1), with the default
constructor (gammatone spectrograms, smoothing, reliability) and its warnings
silenced (the synthetic copy has no metadata CSVs):

- ``build``: empty cache, every wav filtered and every pprox parsed, cache written;
- ``reload``: same call, served from the cache.

Prints both (median) times, their ratio, and each process's peak RSS
(``ru_maxrss`` after a pass over every tensor, minus the peak after imports)
next to the bytes of the final tensors. Targets: reload >= 20x faster than
build; no step above ~2x the tensor bytes. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _loader_bench import prepare_raw, report, run_build_and_reload, verdict  # noqa: E402

TARGET = "deepSTRF.datasets.audio.le_2025:Le2025Dataset"


def make_raw(root: Path, n_units: int, seed: int = 0) -> None:
    """nat8b layout: 96 wavs and ``n_units`` pprox files of 10 trials per stim (random spikes)."""
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


def silence_warnings() -> None:
    """Worker setup hook: no warnings (the synthetic copy lacks the metadata CSVs the loader warns about)."""
    warnings.simplefilter("ignore")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=445)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads per worker (1: robust timings on a shared machine)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="le2025-bench-") as tmp:
        root = args.keep or Path(tmp) / "Le_2025"
        prepare_raw(root, "zebf-auditory-restoration-1", partial(make_raw, n_units=args.units), f"{args.units} units")
        result = run_build_and_reload(TARGET, root, Path(tmp) / "cache", {}, args.repeat, args.threads,
                                      setup="le_2025:silence_warnings")
    return verdict(report("Le2025", result))


if __name__ == "__main__":
    sys.exit(main())
