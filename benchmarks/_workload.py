"""Synthetic ragged workload shared by the benchmarks (numpy only).

The workload is generated from a fixed seed with numpy alone, so the process
timing our package and the process timing the reference build bit-identical
data. :func:`build_dataset` then wraps it in a minimal subclass of whichever
``AudioNeuralDataset`` class it is handed (ours or the reference's).

Layout, as in ``/work/shared/core-semantics.md`` §1.1: ``S`` stims
``(1, F, T_s)`` float32, ``responses[s][n]`` a float32 ``(R[s][n], T_s)``
array of Poisson spike counts, or ``None`` for a missing pair (turned into
the ``(1, 1)`` NaN sentinel by :func:`build_dataset`). ``stim_meta[s]`` has a
``'split'`` key (``'train'`` for 80 % of the stims, ``'test'`` otherwise) and
``nrn_meta[n]`` an ``'area'`` key (``'A1'`` for about 2/3 of the neurons,
``'PEG'`` otherwise).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SEED = 20250117


@dataclass
class Workload:
    S: int
    N: int
    F: int
    stims: list  # S arrays (1, F, T_s) float32
    responses: list  # S lists of N arrays (R, T_s) float32 or None
    stim_meta: list  # S dicts
    nrn_meta: list  # N dicts

    def train_stims(self) -> list[int]:
        return [s for s, m in enumerate(self.stim_meta) if m["split"] == "train"]

    def fingerprint(self) -> str:
        """Digest of every value, to prove both processes built the same data."""
        h = hashlib.sha256()
        for stim in self.stims:
            h.update(stim.tobytes())
        for row in self.responses:
            for cell in row:
                h.update(
                    b"-" if cell is None else cell.tobytes() + str(cell.shape).encode()
                )
        h.update(repr(self.stim_meta).encode())
        h.update(repr(self.nrn_meta).encode())
        return h.hexdigest()[:16]


def make_workload(
    S: int = 200,
    N: int = 150,
    F: int = 16,
    T_range: tuple[int, int] = (180, 220),
    R_range: tuple[int, int] = (1, 10),
    missing: float = 0.2,
    seed: int = SEED,
) -> Workload:
    """Generate the workload. ``T_range``/``R_range`` are inclusive; equal bounds fix the value."""
    rng = np.random.default_rng(seed)
    T = rng.integers(T_range[0], T_range[1] + 1, size=S)
    R = rng.integers(R_range[0], R_range[1] + 1, size=(S, N))
    absent = rng.random((S, N)) < missing
    n_test = S // 5
    test = set(rng.choice(S, size=n_test, replace=False).tolist())
    stim_meta = [
        {"split": "test" if s in test else "train", "name": f"stim{s:04d}"}
        for s in range(S)
    ]
    nrn_meta = [
        {"area": "PEG" if n % 3 == 2 else "A1", "name": f"unit{n:04d}"}
        for n in range(N)
    ]
    # Each neuron mixes a few slow latent signals of the stim: responses have a
    # real stimulus-locked component (positive split-half correlations).
    base = rng.uniform(0.3, 2.0, size=N)
    mix = rng.standard_normal((N, 4)) * 0.5
    R_max = int(R.max())
    stims: list = []
    responses: list = []
    for s in range(S):
        Ts = int(T[s])
        stims.append(rng.standard_normal((1, F, Ts)).astype(np.float32))
        noise = rng.standard_normal((4, Ts + 8))
        kernel = np.hanning(9) / np.hanning(9).sum()
        latent = (
            np.stack([np.convolve(row, kernel, mode="valid") for row in noise])[:, :Ts]
            * 3.0
        )
        rate = base[:, None] * np.exp(mix @ latent)  # (N, T_s)
        counts = rng.poisson(rate[:, None, :], size=(N, R_max, Ts)).astype(np.float32)
        row = []
        for n in range(N):
            row.append(
                None if absent[s, n] else np.ascontiguousarray(counts[n, : R[s, n]])
            )
        responses.append(row)
    return Workload(
        S=S,
        N=N,
        F=F,
        stims=stims,
        responses=responses,
        stim_meta=stim_meta,
        nrn_meta=nrn_meta,
    )


_CLASSES: dict = {}


def _dataset_class(base_cls):
    """One ``SyntheticAudioDataset`` subclass per base class (so ``a + b`` keeps the type)."""
    if base_cls not in _CLASSES:
        import torch

        class SyntheticAudioDataset(base_cls):
            def __init__(
                self, wl: Workload, dt_ms: float, stims=None, neurons=None
            ) -> None:
                super().__init__("synthetic", dt_ms)
                self.F = wl.F
                nan = float("nan")
                nrn_ids = list(range(wl.N) if neurons is None else neurons)
                for s in range(wl.S) if stims is None else stims:
                    self.stims.append(torch.from_numpy(wl.stims[s].copy()))
                    row = wl.responses[s]
                    self.responses.append(
                        [
                            torch.full((1, 1), nan, dtype=torch.float32)
                            if row[n] is None
                            else torch.from_numpy(row[n].copy())
                            for n in nrn_ids
                        ]
                    )
                    self.stim_meta.append(dict(wl.stim_meta[s]))
                self.nrn_meta = [dict(wl.nrn_meta[n]) for n in nrn_ids]
                self.N_neurons = len(self.nrn_meta)
                self.validate()

        _CLASSES[base_cls] = SyntheticAudioDataset
    return _CLASSES[base_cls]


def build_dataset(base_cls, wl: Workload, dt_ms: float = 5.0, stims=None, neurons=None):
    """Instantiate a minimal ``base_cls`` (an ``AudioNeuralDataset``) subclass holding ``wl``.

    ``stims``/``neurons`` optionally restrict to a block of the workload (used
    for the two halves of the concatenation benchmark). Every tensor is a fresh
    copy, so a benchmark that edits a dataset never leaks into the next one.
    """
    return _dataset_class(base_cls)(wl, dt_ms, stims, neurons)
