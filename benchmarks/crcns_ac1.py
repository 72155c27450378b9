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

Workers run ``--threads`` torch threads (default 1). Reported: median
constructor wall time, peak RSS of the process (``ru_maxrss`` after a pass over
every tensor) minus its value right after the imports, and the bytes of the
final tensors. Targets: reload >= 20x faster than build; reload peak <= 2x
the tensor bytes (the build peak is reported, not a target); every run's
values identical. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _loader_bench import prepare_raw, report, run_build_and_reload, verdict  # noqa: E402

TARGET = "deepSTRF.datasets.audio.crcns_ac1:CRCNSAC1Dataset"


def make_raw(root: Path, scale: float = 1.0, seed: int = 0) -> None:
    """Wehr layout: 51 sounds, 25 sessions, ~1260 single-trial Vm files; ``scale`` shrinks every duration."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="where to generate (kept); default: a temporary folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="duration scale of sounds and traces")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads per worker (1: robust timings on a shared machine)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ac1-bench-") as tmp:
        root = args.root or Path(tmp) / "CRCNS_AC1"
        prepare_raw(root, "crcns-ac1/wehr/Results", partial(make_raw, scale=args.scale), "the Wehr layout")
        result = run_build_and_reload(TARGET, root, Path(tmp) / "cache", {"experimenter": "wehr"}, args.repeat,
                                      args.threads)
    return verdict(report("CRCNS ac-1 wehr", result, max_build_peak=None, rtol=0.0))


if __name__ == "__main__":
    sys.exit(main())
