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

Workers run ``--threads`` torch threads (default 1). Reported: median
constructor wall time, the peak RSS of the process (``ru_maxrss`` after a pass
over every tensor) minus its value right after the imports, and the bytes of
the final tensors (stims + real responses). Targets: reload >= 20x faster
than build; no step above ~2x the tensor bytes; every run's values identical.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _loader_bench import prepare_raw, report, run_build_and_reload, verdict  # noqa: E402

TARGET = "deepSTRF.datasets.audio.crcns_aa1:CRCNSAA1Dataset"


def make_raw(root: Path, seed: int = 0) -> None:
    """aa-1 layout: 30 wavs, 100 cells with 10 trials of every stim of both classes (random spikes)."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="where to generate (kept); default: a temporary folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads per worker (1: robust timings on a shared machine)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aa1-bench-") as tmp:
        root = args.root or Path(tmp) / "AA1"
        prepare_raw(root, "MLd_cells", make_raw, "the aa-1 layout")
        result = run_build_and_reload(TARGET, root, Path(tmp) / "cache", {}, args.repeat, args.threads)
    return verdict(report("CRCNS aa-1", result, rtol=0.0))


if __name__ == "__main__":
    sys.exit(main())
