"""The ``deepstrf`` command.

``deepstrf demo`` builds the embedded simulated dataset, computes every
neuron's quality metrics and prints a summary. Errors a user can fix are
reported as one line on stderr with a non-zero exit code, no traceback.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]


def _quantiles(values: Sequence[float]) -> str:
    finite = sorted(v for v in values if v == v and abs(v) != float("inf"))
    if not finite:
        return "n/a"
    q = statistics.quantiles(finite, n=4) if len(finite) > 1 else [finite[0]] * 3
    return f"min {finite[0]:.3f}  q1 {q[0]:.3f}  median {q[1]:.3f}  q3 {q[2]:.3f}  max {finite[-1]:.3f}"


def _run_demo(args: argparse.Namespace) -> int:
    from .datasets.audio.demo import DemoDataset

    start = time.perf_counter()
    ds = DemoDataset(seed=args.seed)
    built = time.perf_counter()
    quality = ds.compute_neuron_quality()
    scored = time.perf_counter()
    masks = ds.nrn_masks
    repeats = [ds.responses[s][n].shape[0] for s, n in masks.nonzero().tolist()]
    durations = [stim.shape[-1] * ds.dt for stim in ds.stims]
    splits = [meta["split"] for meta in ds.stim_meta]
    print(f"deepSTRF demo: {ds!r}")
    print(f"  stims S = {ds.get_S()} (train {splits.count('train')}, val {splits.count('val')}, "
          f"test {splits.count('test')}), neurons N = {ds.get_N()}, F = {ds.get_F()} channels, dt = {ds.dt} ms")
    print(f"  stim durations (ms): {_quantiles(durations)}")
    print(f"  repeats per pair:    {_quantiles(repeats)}")
    print(f"  missing pairs:       {100 * (1 - masks.float().mean().item()):.1f} %")
    print(f"  SNR (Sahani-Linden): {_quantiles(quality['snr'].tolist())}")
    print(f"  CCmax (split-half):  {_quantiles(quality['ccmax'].tolist())}")
    print(f"  built in {built - start:.2f} s, quality in {scored - built:.2f} s")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="deepstrf",
        description="Public sensory neural-response datasets behind one PyTorch API.",
    )
    parser.add_argument("--version", action="version", version=f"deepSTRF {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    demo = commands.add_parser(
        "demo",
        help="run the library end to end on the embedded simulated dataset (no download)",
        description="Build the embedded simulated dataset, compute neuron quality and print a summary.",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated dataset (default 0)")
    demo.set_defaults(handler=_run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deepstrf`` console script; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, OSError, IndexError, ImportError) as exc:
        print(f"deepstrf {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deepstrf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
