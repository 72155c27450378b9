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
import sys
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _loader_bench import measure, prepare_raw, report, run_build_and_reload, verdict  # noqa: E402

TARGET = "deepSTRF.datasets.audio.downer2025:Downer2025Dataset"

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
    counts[multi[:3] - 1] = 30  # the largest repeat count of the release (the reference's quality step fails on it)
    extra = N_SLOTS - counts.sum()
    while extra > 0:  # spread the remaining slots over the other multi-slot ids, never exactly 15 (the test count)
        k = rng.choice(multi[3:])
        step = 2 if counts[k - 1] == 14 else 1
        if counts[k - 1] + step <= 30 and step <= extra:
            counts[k - 1] += step
            extra -= step
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


# --------------------------------------------------------------------------- hooks run in the worker


def torchaudio_stand_in() -> None:
    """Serve the reference's ``torchaudio`` calls with this package's Kaldi filterbank and resampler."""
    import types

    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from deepSTRF.datasets.audio._spectrogram import resample_polyphase
    from deepSTRF.datasets.audio.downer2025 import kaldi_fbank

    sys.path.pop(0)
    for name in [m for m in sys.modules if m == "deepSTRF" or m.startswith("deepSTRF.")]:
        del sys.modules[name]  # the functions keep their module globals; the reference imports its own package

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


def masks(ds) -> None:
    """First access of the (S, N) pair mask."""
    ds.nrn_masks  # noqa: B018


def epoch(ds) -> None:
    """One DataLoader pass, batches of 4 stimuli with every neuron."""
    from torch.utils.data import DataLoader

    from deepSTRF.utils.data import neural_collate

    for _ in DataLoader(ds, batch_size=4, collate_fn=neural_collate):
        pass


def quality(ds) -> dict:
    """SNR and CCmax of every neuron."""
    import torch

    result = ds.compute_neuron_quality()
    ccmax = next(v for k, v in result.items() if k.lower() == "ccmax")
    return {"finite_ccmax": int(torch.isfinite(torch.as_tensor(ccmax)).sum())}


def normalize(ds) -> None:
    """Per-neuron z-scoring of the responses."""
    ds.normalize_responses("zscore")


# --------------------------------------------------------------------------- parent


def _mode(args, root: Path, cache: Path, stimuli: str) -> bool:
    steps = [s for s in STEPS if s in args.steps.split(",")]
    kwargs, hooks = {"stimuli": stimuli}, [f"downer2025:{s}" for s in steps]
    ours = run_build_and_reload(TARGET, root, cache, kwargs, args.repeat, args.threads, steps=hooks,
                                memory_limit_gib=args.memory_limit)
    print()
    ok = report(f"Downer2025 {stimuli}", ours, max_reload_s=5.0, max_step_s={"quality": 60.0})
    nbytes = ours["bytes"]
    ref: dict = {}
    if args.reference:
        ref = measure(TARGET, root, cache, kwargs, False, args.threads, python=args.reference,
                      setup="downer2025:torchaudio_stand_in", memory_limit_gib=args.memory_limit,
                      steps=[h for h, s in zip(hooks, steps) if s in args.reference_steps.split(",")])
    rows = [("build from raw", ours["build_s"], ref.get("seconds"),
             ours["build_peak"], ref.get("load_rss"))]
    rows.append(("cached reload", ours["reload_s"], None, max(r["load_rss"] for r in ours["reloads"]), None))
    for s in steps:
        theirs = ref.get("steps", {}).get(s, {})
        rows.append((s, ours["steps"][s]["seconds"], theirs.get("seconds"), ours["steps"][s]["peak"],
                     theirs.get("peak")))
    print(f"  {'':<16}{'ours (s)':>10}{'ref (s)':>10}{'ref/ours':>10}   peak RSS / tensor bytes: ours   ref")
    for label, mine, theirs, peak, ref_peak in rows:
        ratio = f"{theirs / mine:9.1f}x" if theirs and mine > 0 else f"{'':>10}"
        print(f"  {label:<16}{mine:10.3f}{'' if theirs is None else f'{theirs:.3f}':>10}{ratio}   "
              f"{peak / nbytes:32.2f}   {'' if ref_peak is None else f'{ref_peak / nbytes:.2f}'}")
    if "stopped" in ref:
        print(f"  reference stopped: {ref['stopped']}")
    worst_step = max((ours["steps"][s]["peak"] for s in steps), default=0) / nbytes
    if worst_step > 2.2:
        print(f"  missed: a step peaks at {worst_step:.2f}x the tensor bytes")
        ok = False
    if "quality" in steps and ours["steps"]["quality"]["peak"] / nbytes > 1.5:
        print("  missed: quality above 1.5x the tensor bytes")
        ok = False
    if ref.get("seconds") and ref["seconds"] / ours["build_s"] < 5:
        print("  missed: build less than 5x faster than the reference")
        ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
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
    channels = REAL_CHANNELS if args.real else [args.channels] * args.sessions
    with tempfile.TemporaryDirectory(prefix="downer-bench-") as tmp:
        root = args.keep or Path(tmp) / "auditory_cortex_data"
        prepare_raw(root, "sessions_metadata.yml", partial(make_raw, channels=channels),
                    f"{len(channels)} sessions, {sum(channels)} channels")
        ok = all([_mode(args, root, Path(tmp) / "cache", s) for s in args.stimuli.split(",")])
    return verdict(ok)


if __name__ == "__main__":
    sys.exit(main())
