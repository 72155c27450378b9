#!/usr/bin/env python
"""Benchmark Downer2025Dataset (TIMIT): build from raw channel files versus cached reload.

Usage::

    python benchmarks/downer2025.py                          # 2 sessions x 64 channels, 499 sentences
    python benchmarks/downer2025.py --sessions 6 --repeat 2 --keep /tmp/downer-bench

The real release has 41 sessions / 1718 channels, 499 sentences (speech 0.99-2.59 s,
16 kHz, 0.5 s of silence each side), per session one shuffled TIMIT block of 599
trials (10 test ids x 11). This script writes ``--sessions`` sessions of
``--channels`` channels with that per-session shape (spec downer2025.md §11:
Poisson spikes at ~15 Hz, only ``spktimes`` in ``spike``, uncompressed ``savemat``),
so build time and memory scale linearly, and measures, each in a fresh subprocess:

- ``build``: empty cache folder; the constructor reads every channel file, bins,
  computes the spectrograms, writes the cache and maps it back;
- ``reload``: the constructor maps the cache file.

Reported: median wall time, ratio build / reload (target >= 20) and the peak RSS
growth against the final tensors' bytes (target: no step above ~2x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _loader_bench import measure  # noqa: E402

TARGET = "deepSTRF.datasets.audio.downer2025:Downer2025Dataset"

FS, N_SENT, TEST_IDS, N_TEST = 16000, 499, (12, 13, 32, 43, 56, 163, 212, 218, 287, 308), 11


def make_raw(root: Path, sessions: int, channels: int, seed: int = 0) -> None:
    import numpy as np
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    (root / "sessions").mkdir(exist_ok=True)
    ids = [190000 + k for k in range(sessions)]
    (root / "sessions_metadata.yml").write_text(
        "stim_wise_num_repeats:\n  timit: 11\n  mVocs: 15\nc_RH_sessions:\n"
        + "".join(f"  - {i}\n" for i in ids) + "area_wise_sessions:\n  core:\n"
        + "".join(f"  - {i}\n" for i in ids) + "bad_sessions: []\nsession_coordinates: {}\n")
    rec = np.zeros((1, N_SENT), dtype=[("name", "O"), ("sentId", "O"), ("sound", "O"), ("soundf", "O"),
                                       ("befaft", "O")])
    speech = rng.uniform(0.99, 2.59, N_SENT)
    for i in range(N_SENT):
        n = int(speech[i] * FS)
        sound = np.concatenate([np.zeros(FS // 2), 0.1 * rng.standard_normal(n), np.zeros(FS // 2)])
        rec[0, i] = (f"spk{i:03d}_sx{i}", float(i + 1), sound[:, None], float(FS), np.array([[0.5, 0.5]]))
    savemat(root / "stimuli" / "out_sentence_details_timit_all_loudness.mat", {"sentdet": rec})
    for sid in ids:
        codes = np.array(list(range(1, N_SENT + 1)) + [t for t in TEST_IDS for _ in range(N_TEST - 1)])
        rng.shuffle(codes)
        gaps = rng.uniform(0.2, 0.5, codes.size) + 1.0
        stimon = 1.0 + np.concatenate([[0.0], np.cumsum(speech[codes - 1] + gaps)[:-1]])
        trial = np.zeros((1, codes.size), dtype=[("stimon", "O"), ("timitStimcode", "O"), ("mVocStimcode", "O")])
        for j in range(codes.size):
            trial[0, j] = (float(stimon[j]), float(codes[j]), 0.0)
        folder = root / "sessions" / str(sid)
        folder.mkdir()
        end = float(stimon[-1] + 4.0)
        for c in range(1, channels + 1):
            spikes = np.sort(rng.uniform(0, end, rng.poisson(15 * end)))[:, None]
            token = f"{c}p" if c < 10 else str(c)
            savemat(folder / f"c_{sid}_Ch{token}_MUspk.mat", {"spike": {"spktimes": spikes}, "trial": trial})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder for the raw layout (reused when present)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="downer-bench-"))
    root = args.keep or tmp / "auditory_cortex_data"
    if not (root / "sessions_metadata.yml").exists():
        t0 = time.perf_counter()
        make_raw(root, args.sessions, args.channels)
        size = sum(p.stat().st_size for p in root.rglob("*.mat"))
        print(f"generated {args.sessions} x {args.channels} channels ({size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - t0:.1f} s under {root}")
    cache = tmp / "cache"
    cache.mkdir(exist_ok=True)
    builds = [measure(TARGET, root, cache, {}, True, args.threads) for _ in range(args.repeat)]
    reloads = [measure(TARGET, root, cache, {}, False, args.threads) for _ in range(args.repeat)]
    ok = all(abs(x["check"] - builds[0]["check"]) <= 1e-6 * abs(builds[0]["check"]) for x in reloads)
    if not ok:
        print("  WARNING: reload differs from build")
    b = statistics.median(r["seconds"] for r in builds)
    r = statistics.median(x["seconds"] for x in reloads)
    nbytes = builds[0]["bytes"]
    b_mem = max(x["rss"] for x in builds) / nbytes
    r_mem = max(x["rss"] for x in reloads) / nbytes
    print(f"Downer2025 S={builds[0]['S']} N={builds[0]['N']}: build {b:7.2f} s   reload {r:6.3f} s   "
          f"ratio {b / r:6.1f}x   tensors {nbytes / 2**20:7.1f} MiB   peak build {b_mem:4.2f}x   "
          f"peak reload {r_mem:4.2f}x")
    ok &= b / r >= 20 and b_mem <= 2.2
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
