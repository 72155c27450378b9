"""Shared harness of the loader benchmarks: build from raw versus cached reload, each in a fresh process.

A loader script keeps its workload generator, its options and one call per
configuration::

    with tempfile.TemporaryDirectory(prefix="wingert-bench-") as tmp:
        root = args.keep or Path(tmp) / "Wingert2026"
        prepare_raw(root, "cell_list.csv", partial(make_raw, sessions=args.sessions), f"{args.sessions} sessions")
        result = run_build_and_reload(TARGET, root, Path(tmp) / "cache", {}, args.repeat, args.threads)
    return verdict(report("Wingert2026", result))

``measure`` runs one constructor in a subprocess (so build and cached reload
each start cold) and returns its wall time, the peak RSS growth over the
post-import baseline after a pass over every tensor, the bytes of the final
stim + response tensors, the dataset size and a value checksum.
``run_build_and_reload`` repeats builds (cache emptied first) and reloads and
summarises them; ``report`` prints one line and says whether the targets hold:
build / reload >= 20x and no process above ~2.2x the tensor bytes, unless the
caller states other targets.

Optional hooks, named ``"module:function"`` and resolved in the worker
(``benchmarks/`` is on its path), cover what the constructor timing alone does
not: ``setup`` runs before the loader's module is imported (a stand-in module,
a warnings filter), and each of ``steps`` is called with the dataset after the
constructor and timed in the same process (its returned dict, if any, is
recorded with its time). ``python`` runs the worker with another interpreter
(e.g. a venv holding a reference release), without this checkout's ``src/``.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss(pid: int | str = "self") -> int:
    """Current resident set size of process ``pid`` (default: this one), in bytes (Linux; 0 elsewhere or once gone)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _restart_peak() -> None:
    """Restart the kernel's peak-RSS counter (``VmHWM``) at the current RSS (Linux >= 4.0; no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def _peak_since_restart() -> int:
    """``VmHWM`` in bytes: the peak RSS since the last ``_restart_peak`` (``peak_rss()`` where unavailable)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss()


# --------------------------------------------------------------------------- worker (fresh process)


def _resolve(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _bytes_and_checksum(ds: Any) -> tuple[int, float]:
    """Bytes of the stims and real responses, and the sum of their values (faults every page in)."""
    nbytes = sum(t.numel() * t.element_size() for t in ds.stims)
    total = sum(float(t.sum()) for t in ds.stims)
    for s, row in enumerate(ds.responses):
        for n in ds.nrn_masks[s].nonzero().flatten().tolist():
            nbytes += row[n].numel() * row[n].element_size()
            total += float(row[n].nan_to_num().sum())
    return nbytes, total


def _worker(job: dict) -> None:
    if job["setup"]:
        _resolve(job["setup"])()
    loader = _resolve(job["target"])
    record: dict = {"running": "load", "steps": {}}
    base, floor = peak_rss(), current_rss()
    t0 = time.perf_counter()
    ds = loader(job["root"], **job["kwargs"])
    record["seconds"] = time.perf_counter() - t0
    record["load_rss"] = peak_rss() - base
    for step in job["steps"]:
        name = step.partition(":")[2]
        record["running"] = name
        print(json.dumps(record), flush=True)  # what was measured so far, should this step kill the process
        _restart_peak()
        t0 = time.perf_counter()
        values = _resolve(step)(ds) or {}
        record["steps"][name] = {"seconds": time.perf_counter() - t0, "rss": peak_rss() - base,
                                 "peak": _peak_since_restart() - floor, **values}
    record["running"] = "checksum"
    nbytes, check = _bytes_and_checksum(ds)
    del record["running"]
    record.update(rss=peak_rss() - base, bytes=nbytes, check=check, N=ds.N_neurons, S=ds.get_S(),
                  pairs=int(ds.nrn_masks.sum()))
    print(json.dumps(record), flush=True)


# --------------------------------------------------------------------------- parent


def measure(target: str, root: Path, cache: Path, kwargs: dict, clear: bool, threads: int = 1, *,
            steps: Sequence[str] = (), setup: str | None = None, python: str | None = None,
            memory_limit_gib: float | None = None) -> dict:
    """Construct a loader on ``root`` in a fresh process and measure it.

    Parameters
    ----------
    target : str
        ``"module:Class"`` of the loader, called as ``Class(root, **kwargs)``.
    root : pathlib.Path
        Raw-data folder.
    cache : pathlib.Path
        ``$DEEPSTRF_CACHE`` of the worker; created if missing.
    kwargs : dict
        JSON-able keyword arguments of the constructor.
    clear : bool
        Delete ``cache`` and its content first (a build from raw); else the constructor may reload.
    threads : int, default 1
        ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` of the worker.
    steps : sequence of str, optional
        ``"module:function"`` hooks called in order with the dataset after the
        constructor, each timed; a hook may return a dict of JSON-able values
        to record next to its time.
    setup : str, optional
        ``"module:function"`` hook called before the loader's module is imported.
    python : str, optional
        Interpreter of the worker; another one runs without this checkout's
        ``src/`` and ``tests/`` on ``PYTHONPATH``, i.e. with its own ``deepSTRF``.
    memory_limit_gib : float, optional
        Kill the worker once its RSS exceeds this (watched from this process);
        a worker that dies, killed here or by the OS, returns what it had
        measured before the step it was in, with a ``"stopped"`` note.

    Returns
    -------
    dict
        ``seconds`` (constructor wall time), ``load_rss`` (peak RSS growth
        right after the constructor), ``rss`` (the same after the steps and a
        pass over every tensor), ``bytes`` (stims + real responses), ``N``,
        ``S``, ``pairs`` (real (stim, neuron) pairs), ``check`` (sum of all
        values, NaN as 0) and ``steps`` (name -> ``seconds``, ``rss``, ``peak``
        — the step's own peak RSS over the post-import RSS, on Linux — and the
        hook's values); only what was measured, plus ``stopped``, when the
        memory limit ended the run.

    Raises
    ------
    RuntimeError
        When the worker printed no record (its stderr tail is in the message).
    """
    env = dict(os.environ, DEEPSTRF_CACHE=str(cache), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if python is None:
        paths = [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    else:
        env.pop("PYTHONPATH", None)
    if clear:
        shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    job = {"target": target, "root": str(root), "kwargs": kwargs, "steps": list(steps), "setup": setup,
           "memory_limit_gib": memory_limit_gib}
    limit = None if memory_limit_gib is None else int(memory_limit_gib * 2**30)
    stopped = False
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([python or sys.executable, __file__, json.dumps(job)], env=env, stdout=out,
                                stderr=err, text=True)
        # watched from here: a worker stuck in one long C call (holding the GIL) cannot watch itself
        while proc.poll() is None:
            if limit is not None and current_rss(proc.pid) > limit:
                proc.kill()
                stopped = True
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        records = [line for line in out.read().splitlines() if line.startswith("{")]
        errors = err.read()
    if not records:
        raise RuntimeError(f"{target} on {root} failed (exit {proc.returncode}):\n{errors[-3000:]}")
    record = json.loads(records[-1])
    if proc.returncode != 0:
        why = f"RSS over {memory_limit_gib:g} GiB" if stopped else f"exit {proc.returncode}"
        record["stopped"] = f"{why} during {record.get('running')}"
    return record


def run_build_and_reload(target: str, root: Path, cache: Path, kwargs: dict | None = None, repeat: int = 3,
                         threads: int = 1, *, steps: Sequence[str] = (), setup: str | None = None,
                         memory_limit_gib: float | None = None) -> dict:
    """``repeat`` builds from raw (cache emptied before each), then ``repeat`` cached reloads, each via ``measure``.

    Parameters
    ----------
    target, root, cache, kwargs, threads, setup, memory_limit_gib
        As in ``measure``.
    repeat : int, default 3
        Runs of each kind.
    steps : sequence of str, optional
        Hooks timed after each reload (not after the builds), as in ``measure``.

    Returns
    -------
    dict
        ``builds`` and ``reloads`` (the records of ``measure``), ``build_s`` and
        ``reload_s`` (median constructor times), ``build_peak`` and
        ``reload_peak`` (largest ``rss`` of each kind, bytes), ``bytes``, ``S``,
        ``N`` and ``pairs`` (of the first build) and ``steps`` (name ->
        median ``seconds``, largest ``rss`` and the first reload's values).

    Raises
    ------
    RuntimeError
        When a worker fails or hits the memory limit.
    """
    def one(clear: bool, run_steps: Sequence[str]) -> dict:
        record = measure(target, root, cache, kwargs or {}, clear, threads, steps=run_steps, setup=setup,
                         memory_limit_gib=memory_limit_gib)
        if "stopped" in record:
            raise RuntimeError(f"{target}: {record['stopped']}")
        return record

    builds = [one(True, ()) for _ in range(repeat)]
    reloads = [one(False, steps) for _ in range(repeat)]
    step_summary = {}
    for name, first in reloads[0]["steps"].items():
        step_summary[name] = {**first, "seconds": statistics.median(r["steps"][name]["seconds"] for r in reloads),
                              "rss": max(r["steps"][name]["rss"] for r in reloads),
                              "peak": max(r["steps"][name]["peak"] for r in reloads)}
    return {"builds": builds, "reloads": reloads,
            "build_s": statistics.median(r["seconds"] for r in builds),
            "reload_s": statistics.median(r["seconds"] for r in reloads),
            "build_peak": max(r["rss"] for r in builds), "reload_peak": max(r["rss"] for r in reloads),
            "bytes": builds[0]["bytes"], "S": builds[0]["S"], "N": builds[0]["N"], "pairs": builds[0]["pairs"],
            "steps": step_summary}


def _consistent(result: dict, rtol: float) -> bool:
    """Every run's checksum matches the first run's with the same steps (reloads match builds without steps)."""
    first_build = result["builds"][0]["check"]
    first_reload = result["reloads"][0]["check"] if result["steps"] else first_build

    def close(value: float, expected: float) -> bool:
        return abs(value - expected) <= rtol * abs(expected) + 1e-9

    return (all(close(r["check"], first_build) for r in result["builds"])
            and all(close(r["check"], first_reload) for r in result["reloads"]))


def report(label: str, result: dict, *, min_ratio: float = 20.0, max_build_peak: float | None = 2.2,
           max_reload_peak: float | None = 2.2, max_reload_s: float | None = None,
           max_step_s: Mapping[str, float] | None = None, rtol: float = 1e-6) -> bool:
    """Print one line for ``result`` of ``run_build_and_reload`` (plus the steps and any miss) and check the targets.

    Parameters
    ----------
    label : str
        Name of the configuration, first on the line.
    result : dict
        Output of ``run_build_and_reload``.
    min_ratio : float, default 20
        Lowest accepted median build / median reload time.
    max_build_peak, max_reload_peak : float or None, default 2.2
        Highest accepted peak RSS growth of a build / a reload (after its
        steps), as a multiple of the tensor bytes; ``None``: not a target.
    max_reload_s : float, optional
        Highest accepted median reload time, in s.
    max_step_s : mapping of str to float, optional
        Highest accepted median time of the named steps, in s.
    rtol : float, default 1e-6
        Relative tolerance between the runs' checksums (0: exact up to 1e-9).

    Returns
    -------
    bool
        True iff every target holds and every reload matches the builds.
    """
    b, r, nbytes = result["build_s"], result["reload_s"], result["bytes"]
    build_peak, reload_peak = result["build_peak"] / nbytes, result["reload_peak"] / nbytes
    print(f"{label:<28} S={result['S']} N={result['N']} pairs={result['pairs']}: build {b:8.3f} s   "
          f"reload {r:7.3f} s   ratio {b / r:7.1f}x   tensors {nbytes / MiB:7.1f} MiB   "
          f"peak build {build_peak:4.2f}x = {result['build_peak'] / MiB:.0f} MiB   "
          f"peak reload {reload_peak:4.2f}x = {result['reload_peak'] / MiB:.0f} MiB")
    if result["steps"]:
        print("  after reload: " + "   ".join(
            f"{name} {step['seconds']:.3f} s ({step['rss'] / nbytes:.2f}x"
            + "".join(f", {k} {v}" for k, v in step.items() if k not in ("seconds", "rss", "peak")) + ")"
            for name, step in result["steps"].items()))
    missed = []
    if b / r < min_ratio:
        missed.append(f"ratio {b / r:.1f}x < {min_ratio:g}x")
    if max_build_peak is not None and build_peak > max_build_peak:
        missed.append(f"peak build {build_peak:.2f}x > {max_build_peak:g}x")
    if max_reload_peak is not None and reload_peak > max_reload_peak:
        missed.append(f"peak reload {reload_peak:.2f}x > {max_reload_peak:g}x")
    if max_reload_s is not None and r >= max_reload_s:
        missed.append(f"reload {r:.2f} s >= {max_reload_s:g} s")
    for name, limit in (max_step_s or {}).items():
        if name in result["steps"] and result["steps"][name]["seconds"] >= limit:
            missed.append(f"{name} {result['steps'][name]['seconds']:.2f} s >= {limit:g} s")
    consistent = _consistent(result, rtol)
    if not consistent:
        print("  WARNING: reload differs from build")
    if missed:
        print("  missed: " + "; ".join(missed))
    return consistent and not missed


def prepare_raw(root: Path, marker: str, make: Callable[[Path], None], what: str) -> None:
    """Generate the raw layout with ``make(root)`` unless ``root / marker`` exists; print its size and time.

    Parameters
    ----------
    root : pathlib.Path
        Raw-data folder (reused when ``root / marker`` exists, e.g. from ``--keep``).
    marker : str
        Path, relative to ``root``, that exists once the layout is complete.
    make : callable
        Writes the layout under the folder it is given.
    what : str
        Description of the layout for the printed line (e.g. ``"6 sessions"``).
    """
    if (root / marker).exists():
        return
    t0 = time.perf_counter()
    make(root)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"generated {what} ({size / MiB:.0f} MiB of raw files) in {time.perf_counter() - t0:.1f} s under {root}")


def verdict(ok: bool) -> int:
    """Print the overall verdict; the exit status: 0 when every target holds, else 1."""
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
