#!/usr/bin/env python
"""Benchmark AliceEEGDataset: build from raw fif/wav files versus cached reload, at real per-subject size.

Usage::

    python benchmarks/alice_eeg.py                       # 3 subjects, 2 runs each
    python benchmarks/alice_eeg.py --subjects 8 --keep /tmp/alice-bench

The real release: 33 subjects x 61 EEG channels (+ VEOG/AUD) at 500 Hz for
~12.4 min (~372 k samples, one fif ~90 MB), 12 wavs at 44.1 kHz (~744 s in
all). This script writes ``--subjects`` subjects of exactly that size (build
time and memory per subject scale linearly) and measures, each in a fresh
subprocess, ``build`` (MNE read, 1-Hz high-pass, resampling to 100 Hz,
slicing, spectrograms, cache write) and ``reload`` (cache map).

Reported: median wall time, ratio build / reload (target >= 20) and the peak
RSS growth (``ru_maxrss`` after touching every tensor minus the peak after the
imports) against the final tensors' bytes (target: no step above ~2x; at small
subject counts the transient of one 500-Hz float64 recording dominates).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _loader_bench import prepare_raw, report, run_build_and_reload, verdict  # noqa: E402

TARGET = "deepSTRF.datasets.audio.alice_eeg:AliceEEGDataset"

N_SUB_SAMPLES = 372_000
SEGMENT_S = [62.0] * 11 + [46.98]


def make_raw(root: Path, subjects: int, seed: int = 0) -> None:
    import mne
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    stim = root / "stimuli"
    stim.mkdir(parents=True, exist_ok=True)
    for k, sec in enumerate(SEGMENT_S, start=1):
        n = int(sec * 44100) + 7
        t = np.arange(n) / 44100
        x = 0.1 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(n)
        sf.write(stim / f"{k}.wav", x.astype(np.float32), 44100, subtype="PCM_16")
    names = [str(c) for c in range(1, 62) if c != 29] + ["29"]  # 61 EEG, reference last
    onsets, t = [], 2.0
    for sec in SEGMENT_S:
        onsets.append(t + 0.0013)
        t += sec + 0.3
    for i in range(subjects):
        sub = f"S{i + 1:02d}"
        info = mne.create_info(names + ["VEOG", "AUD"], 500.0, ["eeg"] * 60 + ["eeg"] + ["stim", "stim"])
        data = rng.standard_normal((63, N_SUB_SAMPLES)).astype(np.float32) * 1e-5
        raw = mne.io.RawArray(data, info, verbose="error")
        raw.info["bads"] = [names[j] for j in rng.choice(61, 5, replace=False)]
        keep = list(range(12)) if i % 4 else list(range(1, 12))  # some subjects lack segment 1
        raw.set_annotations(mne.Annotations([onsets[k] for k in keep], [0.1] * len(keep), [str(k + 1) for k in keep]))
        folder = root / f"eeg.{i % 3}" / "eeg" / sub
        folder.mkdir(parents=True, exist_ok=True)
        raw.save(str(folder / f"{sub}_alice-raw.fif"), fmt="single", overwrite=True, verbose="error")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder for the raw layout (reused when present)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads per worker (1: robust timings on a shared machine)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alice-bench-") as tmp:
        root = args.keep or Path(tmp) / "Alice_EEG"
        prepare_raw(root, "stimuli", partial(make_raw, subjects=args.subjects), f"{args.subjects} subjects")
        result = run_build_and_reload(TARGET, root, Path(tmp) / "cache", {}, args.repeat, args.threads)
    return verdict(report("AliceEEG", result, rtol=1e-5))


if __name__ == "__main__":
    sys.exit(main())
