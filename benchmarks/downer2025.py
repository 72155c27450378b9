#!/usr/bin/env python
"""Benchmark Downer2025Dataset at the real size, TIMIT and mVocs, against deepstrf 0.1.0.

Usage::

    python benchmarks/downer2025.py                                  # 2 sessions x 64 channels
    python benchmarks/downer2025.py --real --keep /tmp/downer-bench  # spec §11: 41 sessions, 1718 channels
    python benchmarks/downer2025.py --real --keep /tmp/downer-bench --reference /opt/deepstrf-ref/bin/python

The synthetic layout follows spec downer2025.md §11: 499 sentences (speech
0.99-2.59 s at 16 kHz, 0.5 s of silence each side) and a ~28 min 41 kHz stereo
vocalisation WAV with 780 slots of 303 ids (228 ids once, 11 test ids exactly
15 times, the rest 2-30 times); per session one shuffled TIMIT block (499 + 10 x
10 test presentations; four sessions double the repeat block, two play the list
twice) followed by the 780 WAV slots (two sessions have no vocalisation trials);
per channel Poisson spikes at ~15 Hz over the ~1 h session, only ``spktimes`` in
``spike``, uncompressed ``savemat``. ``--real`` writes 18 x 64 + 6 x 48 + 6 x 32
+ 5 x 16 + 6 x 1 = 1718 channels (≈ 1 GB); otherwise ``--sessions`` x
``--channels``.

Each load runs in a fresh process that then goes through the steps a user
takes: first ``nrn_masks``, one DataLoader epoch (``neural_collate``, batch of 4
stimuli, every neuron), ``compute_neuron_quality()``, ``normalize_responses
('zscore')``. Reported per mode: build from raw (empty cache) and cached reload
times, each step's time, the peak RSS growth over the post-import baseline
against the final tensors' bytes, and, with ``--reference PYTHON`` (a venv
holding deepstrf 0.1.0), the published loader on the same files in the same
run. Its ``torchaudio`` import is served by a stand-in whose ``kaldi.fbank`` and
``functional.resample`` call this package's equivalents (the reference's own
code is timed; the numbers it computes are not compared here). A step that
grows the process past ``--memory-limit`` GiB is stopped and reported as such.

Targets (issue 13): build >= 5x faster than the reference, cached reload < 5 s
and >= 20x faster than the build, quality < 60 s, no step above ~2x the tensor
bytes (quality within 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FS, WAV_FS, N_SENT, N_TEST, N_VOCS, N_SLOTS = 16000, 41000, 499, 11, 303, 780
TEST_IDS = (12, 13, 32, 43, 56, 163, 212, 218, 287, 308)
REAL_CHANNELS = [64] * 18 + [48] * 6 + [32] * 6 + [16] * 5 + [1] * 6
STEPS = ("masks", "epoch", "quality", "normalize")


# --------------------------------------------------------------------------- synthetic layout


def _vocalisation_slots(rng) -> tuple[list[int], list[float]]:
    """Play order of the 780 WAV slots (ids 1..303) and each slot's length in s."""
    import numpy as np

    ids = np.arange(1, N_VOCS + 1)
    counts = np.ones(N_VOCS, dtype=int)
    test = rng.choice(ids, 11, replace=False)
    counts[test - 1] = 15
    multi = rng.choice(np.setdiff1d(ids, test), 64, replace=False)
    counts[multi - 1] = 2
    extra = N_SLOTS - counts.sum()
    while extra > 0:  # spread the remaining slots over the multi-slot ids, capped at 30 each
        k = rng.choice(multi)
        if counts[k - 1] < 30 and counts[k - 1] != 14:
            counts[k - 1] += 1
            extra -= 1
    order = rng.permutation(np.repeat(ids, counts))
    call = np.where(rng.random(N_VOCS) < 0.7, rng.uniform(0.95, 2.2, N_VOCS), rng.uniform(0.95, 4.69, N_VOCS))
    lengths = [float(call[v - 1] + rng.uniform(0.0, 0.05)) for v in order]
    return [int(v) for v in order], lengths


def make_raw(root: Path, channels: list[int], seed: int = 0) -> None:
    """Write the synthetic layout (both stimulus classes) with ``channels[i]`` channel files in session ``i``."""
    import numpy as np
    import soundfile as sf
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    (root / "sessions").mkdir(exist_ok=True)
    ids = [190000 + k for k in range(len(channels))]
    animals = "bcf"
    groups = {a: [i for k, i in enumerate(ids) if k % 3 == j] for j, a in enumerate(animals)}
    (root / "sessions_metadata.yml").write_text(
        "stim_wise_num_repeats:\n  timit: 11\n  mVocs: 15\n"
        + "".join(f"{a}_RH_sessions: [{', '.join(map(str, groups[a]))}]\n" for a in animals)
        + "c_LH_sessions: []\n"
        + f"area_wise_sessions:\n  core: [{', '.join(map(str, ids[::2]))}]\n"
        + f"  non-primary: [{', '.join(map(str, ids[1::2]))}]\n"
        + "bad_sessions: []\nsession_coordinates: {}\n")

    rec = np.zeros((1, N_SENT), dtype=[("name", "O"), ("sentId", "O"), ("sound", "O"), ("soundf", "O"),
                                       ("befaft", "O"), ("duration", "O")])
    speech = rng.uniform(0.99, 2.59, N_SENT)
    for i in range(N_SENT):
        sound = np.concatenate([np.zeros(FS // 2), 0.1 * rng.standard_normal(int(speech[i] * FS)), np.zeros(FS // 2)])
        rec[0, i] = (f"spk{i:03d}_sx{i}", float(i + 1), sound[:, None], float(FS), np.array([[0.5, 0.5]]),
                     sound.size / FS)
    savemat(root / "stimuli" / "out_sentence_details_timit_all_loudness.mat", {"sentdet": rec})

    voc_order, slot_s = _vocalisation_slots(rng)
    onsets = 0.1 + np.concatenate([[0.0], np.cumsum(slot_s)[:-1]])
    frames = int(round((onsets[-1] + slot_s[-1]) * WAV_FS))
    with sf.SoundFile(root / "stimuli" / "MonkVocs_15Blocks.wav", "w", WAV_FS, 2, subtype="PCM_16") as wav:
        chunk = 60 * WAV_FS
        for start in range(0, frames, chunk):
            n = min(chunk, frames - start)
            block = np.zeros((n, 2), dtype=np.float32)
            block[:, 0] = 0.1 * rng.standard_normal(n)
            wav.write(block)
    savemat(root / "stimuli" / "SqMoPhys_MVOCStimcodes.mat",
            {"mVocsStimCodes": np.asarray(voc_order, dtype=float)[None], "mVocsStimOnTimes": onsets[None]})

    for k, (sid, n_channels) in enumerate(zip(ids, channels)):
        doubled, twice, no_vocs = k in (0, 1, 2, 3), k in (4, 5), k in (6, 24)
        extra = [t for t in TEST_IDS for _ in range((2 if doubled else 1) * (N_TEST - 1))]
        block = list(range(1, N_SENT + 1)) + extra
        codes = np.array(block * (2 if twice else 1))
        rng.shuffle(codes)
        gaps = rng.uniform(0.2, 0.5, codes.size) + 1.0
        stimon = 1.0 + np.concatenate([[0.0], np.cumsum(speech[codes - 1] + gaps)[:-1]])
        timit_end = float(stimon[-1] + speech[codes[-1] - 1] + 2.0)
        vocs = [] if no_vocs else voc_order
        voc_on = [timit_end + float(o) for o in onsets[:len(vocs)]]
        trial = {"stimon": np.concatenate([stimon, voc_on])[None],  # a 1x1 struct of 1 x n_trials vectors
                 "timitStimcode": np.concatenate([codes, np.zeros(len(vocs))])[None].astype(float),
                 "mVocStimcode": np.concatenate([np.zeros(codes.size), vocs])[None].astype(float)}
        folder = root / "sessions" / str(sid)
        folder.mkdir()
        end = (voc_on[-1] if vocs else timit_end) + 6.0
        for c in range(1, n_channels + 1):
            spikes = np.sort(rng.uniform(0, end, rng.poisson(15 * end)))[:, None]
            token = f"{c}p" if c < 10 else str(c)
            savemat(folder / f"{animals[k % 3]}_{sid}_Ch{token}_MUspk.mat", {"spike": {"spktimes": spikes},
                                                                               "trial": trial})


# --------------------------------------------------------------------------- one load in a fresh process


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _install_torchaudio_stand_in() -> None:
    """Serve the reference's ``torchaudio`` calls with this package's Kaldi filterbank and resampler."""
    import types

    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from deepSTRF.datasets.audio._spectrogram import resample_polyphase
    from deepSTRF.datasets.audio.downer2025 import kaldi_fbank

    def fbank(wave, num_mel_bins=23, sample_frequency=16000.0, frame_length=25.0, frame_shift=10.0,
              high_freq=0.0, **_):
        spec = kaldi_fbank(wave[0].double().numpy() / 32768.0, int(sample_frequency), float(frame_shift),
                           int(num_mel_bins), float(high_freq), float(frame_length))
        return torch.from_numpy(spec.T.copy())

    def resample(wave, orig_freq, new_freq, **_):
        return torch.from_numpy(resample_polyphase(wave[0].numpy(), int(orig_freq), int(new_freq)))[None]

    module = types.ModuleType("torchaudio")
    module.compliance = types.SimpleNamespace(kaldi=types.SimpleNamespace(fbank=fbank))  # type: ignore[attr-defined]
    module.functional = types.SimpleNamespace(resample=resample)  # type: ignore[attr-defined]
    module.transforms = types.SimpleNamespace()  # type: ignore[attr-defined]
    sys.modules["torchaudio"] = module
    sys.path.pop(0)
    for name in [m for m in sys.modules if m == "deepSTRF" or m.startswith("deepSTRF.")]:
        del sys.modules[name]  # the functions above keep their module globals; the reference imports afresh


def _guard(limit: int, base: int, out: dict) -> None:
    """Stop the process when it grows by more than ``limit`` bytes, printing what it measured so far."""
    def watch() -> None:
        while True:
            if _rss() - base > limit:
                out["stopped"] = f"RSS over {limit / 2**30:.0f} GiB during {out.get('running')}"
                print(json.dumps(out), flush=True)
                os._exit(3)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


def _tensor_bytes(ds) -> int:
    nbytes = sum(t.numel() * t.element_size() for t in ds.stims)
    for s, row in enumerate(ds.responses):
        for n in ds.nrn_masks[s].nonzero().flatten().tolist():
            nbytes += row[n].numel() * row[n].element_size()
    return nbytes


def _worker(which: str, root: str, stimuli: str, steps: list[str], limit_gib: float) -> None:
    if which == "reference":
        _install_torchaudio_stand_in()
        from deepSTRF.datasets.audio.downer2025 import Downer2025Dataset
        from deepSTRF.utils.data import neural_collate
    else:
        from deepSTRF.datasets.audio.downer2025 import Downer2025Dataset
        from deepSTRF.utils.data import neural_collate
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    base = _peak()
    out: dict = {"running": "load"}
    _guard(int(limit_gib * 2**30), _rss(), out)
    t0 = time.perf_counter()
    ds = Downer2025Dataset(root, stimuli=stimuli)
    out["load"] = time.perf_counter() - t0
    out["load_peak"] = _peak() - base
    out["S"], out["N"] = ds.get_S(), ds.N_neurons
    for step in steps:
        out["running"] = step
        t0 = time.perf_counter()
        if step == "masks":
            ds.nrn_masks  # noqa: B018
        elif step == "epoch":
            for _ in DataLoader(ds, batch_size=4, collate_fn=neural_collate):
                pass
        elif step == "quality":
            q = ds.compute_neuron_quality()
            ccmax = next(v for k, v in q.items() if k.lower() == "ccmax")
            out["finite_ccmax"] = int(torch.isfinite(torch.as_tensor(ccmax)).sum())
        elif step == "normalize":
            ds.normalize_responses("zscore")
        out[step] = time.perf_counter() - t0
        out[step + "_peak"] = _peak() - base
        if step == "masks":
            out["bytes"] = _tensor_bytes(ds)
    out.pop("running")
    out.setdefault("bytes", _tensor_bytes(ds))
    print(json.dumps(out), flush=True)


def run(python: str, which: str, root: Path, cache: Path, stimuli: str, steps: list[str], clear: bool,
        threads: int, limit_gib: float) -> dict:
    """One load (+ ``steps``) in a fresh process; ``clear`` empties ``cache`` first."""
    env = dict(os.environ, DEEPSTRF_CACHE=str(cache), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if which == "ours":
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    else:
        env.pop("PYTHONPATH", None)
    if clear:
        for f in cache.glob("*"):
            f.unlink()
    proc = subprocess.run([python, __file__, "--worker", which, str(root), stimuli, ",".join(steps), str(limit_gib)],
                          env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{which} {stimuli} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- report


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _mode(args, root: Path, cache: Path, stimuli: str) -> bool:
    steps = [s for s in STEPS if s in args.steps]
    builds = [run(sys.executable, "ours", root, cache, stimuli, [], True, args.threads, args.memory_limit)
              for _ in range(args.repeat)]
    reloads = [run(sys.executable, "ours", root, cache, stimuli, steps, False, args.threads, args.memory_limit)
               for _ in range(args.repeat)]
    ours = {"load": statistics.median(b["load"] for b in builds), "reload": statistics.median(r["load"] for r in reloads)}
    for s in steps:
        ours[s] = statistics.median(r[s] for r in reloads)
    nbytes = builds[0]["bytes"]
    build_peak = max(b["load_peak"] for b in builds) / nbytes
    step_peak = max(r.get(s + "_peak", r["load_peak"]) for r in reloads for s in ["load"] + steps) / nbytes
    ref = None
    if args.reference:
        ref = run(args.reference, "reference", root, cache, stimuli, [s for s in steps if s in args.reference_steps],
                  False, args.threads, args.memory_limit)
    print(f"\n{stimuli}: S={builds[0]['S']} N={builds[0]['N']}, tensors {nbytes / 2**20:.0f} MiB"
          + (f", finite CCmax {reloads[0].get('finite_ccmax')}/{builds[0]['N']}" if "quality" in steps else ""))
    print(f"  {'step':<22}{'ours (s)':>9}{'ref (s)':>9}{'ratio':>9}   peak (x tensor bytes) ours / ref")
    rows = [("build from raw", ours["load"], "load", build_peak)] + \
           [("cached reload", ours["reload"], None, max(r["load_peak"] for r in reloads) / nbytes)] + \
           [(s, ours[s], s, max(r[s + "_peak"] for r in reloads) / nbytes) for s in steps]
    for label, mine, key, peak in rows:
        theirs = ref.get(key) if (ref and key) else None
        ratio = f"{theirs / mine:7.1f}x" if theirs and mine > 0 and theirs / mine < 1e5 else "       "
        ref_peak = f"{ref[key + '_peak'] / ref['bytes']:.2f}" if (ref and key and key + "_peak" in ref
                                                                 and "bytes" in ref) else "—"
        print(f"  {label:<22}{mine:9.3f}{_fmt(theirs):>9}{ratio:>9}   {peak:.2f} / {ref_peak}")
    if ref and "stopped" in ref:
        print(f"  reference stopped: {ref['stopped']}")
    ok = ours["reload"] < 5.0 and ours["load"] / ours["reload"] >= 20 and max(build_peak, step_peak) <= 2.2
    if "quality" in steps:
        ok &= ours["quality"] < 60.0
    if ref and "load" in ref:
        ok &= ref["load"] / ours["load"] >= 5
    print(f"  build/reload {ours['load'] / ours['reload']:.1f}x; "
          + ("targets met" if ok else "TARGET MISSED"))
    return ok


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        _worker(argv[1], argv[2], argv[3], [s for s in argv[4].split(",") if s], float(argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--real", action="store_true", help="the real layout: 41 sessions, 1718 channels")
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--stimuli", default="timit,mvocs")
    parser.add_argument("--steps", default=",".join(STEPS), help="steps after each reload (comma-separated)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder for the raw layout (reused when present)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference", metavar="PYTHON", help="interpreter of a venv holding deepstrf 0.1.0")
    parser.add_argument("--reference-steps", default=",".join(STEPS))
    parser.add_argument("--memory-limit", type=float, default=14.0, metavar="GIB")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="downer-bench-"))
    root = args.keep or tmp / "auditory_cortex_data"
    if not (root / "sessions_metadata.yml").exists():
        t0 = time.perf_counter()
        make_raw(root, REAL_CHANNELS if args.real else [args.channels] * args.sessions)
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        print(f"generated {size / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f} s under {root}")
    cache = tmp / "cache"
    cache.mkdir(exist_ok=True)
    ok = all([_mode(args, root, cache, s) for s in args.stimuli.split(",")])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
