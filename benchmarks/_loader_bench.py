"""Shared harness of the loader benchmarks: time and peak memory of one load in a fresh process.

``measure("deepSTRF.datasets.audio.wingert2026:Wingert2026Dataset", root, cache, {}, clear=True)``
runs the constructor in a subprocess (so build and cached reload each start
cold) and returns ``{"seconds", "rss", "bytes", "N", "S", "check"}``: wall time
of the constructor, peak RSS growth over the post-import baseline (bytes), the
bytes of the final stim + response tensors, the dataset size, and a value
checksum that lets a caller compare build and reload.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _worker(target: str, root: str, kwargs: dict) -> None:
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    base = peak_rss()
    t0 = time.perf_counter()
    ds = cls(root, **kwargs)
    elapsed = time.perf_counter() - t0
    nbytes = sum(t.numel() * t.element_size() for t in ds.stims)
    total = 0.0
    for s, row in enumerate(ds.responses):
        for n in ds.nrn_masks[s].nonzero().flatten().tolist():
            nbytes += row[n].numel() * row[n].element_size()
            total += float(row[n].nan_to_num().sum())
    total += sum(float(t.sum()) for t in ds.stims)
    print(json.dumps({"seconds": elapsed, "rss": peak_rss() - base, "bytes": nbytes,
                      "N": ds.N_neurons, "S": ds.get_S(), "check": total}))


def measure(target: str, root: Path, cache: Path, kwargs: dict, clear: bool, threads: int = 1) -> dict:
    """Construct ``target`` (``"module:Class"``) on ``root`` in a fresh process; ``clear`` empties ``cache`` first."""
    env = dict(os.environ, DEEPSTRF_CACHE=str(cache), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    if clear:
        for f in cache.glob("*"):
            f.unlink()
    out = subprocess.run([sys.executable, __file__, target, str(root), json.dumps(kwargs)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
