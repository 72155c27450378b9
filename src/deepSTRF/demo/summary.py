"""Plain-text summaries of a dataset, shared by ``deepstrf info`` and ``deepstrf demo``."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from ..datasets.neural_dataset import NeuralDataset

__all__ = ["DatasetSummary", "summarize_dataset", "format_quantiles", "rank_neurons_on_stim"]


def format_quantiles(values: Iterable[float], fmt: str = ".3g") -> str:
    """``min / q1 / median / q3 / max`` of the finite values, as one line.

    Parameters
    ----------
    values : iterable of float
        NaN and infinite values are left out and counted at the end.
    fmt : str, default ``'.3g'``
        Format spec of each number.

    Returns
    -------
    str
        e.g. ``'min 1  q1 4  median 6  q3 8  max 10'``; ``'n/a'`` without a
        finite value.
    """
    values = [float(v) for v in values]
    finite = sorted(v for v in values if math.isfinite(v))
    dropped = len(values) - len(finite)
    if not finite:
        return "n/a" + (f" ({dropped} undefined)" if dropped else "")
    q = statistics.quantiles(finite, n=4, method="inclusive") if len(finite) > 1 else [finite[0]] * 3
    text = (
        f"min {finite[0]:{fmt}}  q1 {q[0]:{fmt}}  median {q[1]:{fmt}}  q3 {q[2]:{fmt}}  max {finite[-1]:{fmt}}"
    )
    return text + (f"  ({dropped} undefined)" if dropped else "")


@dataclass
class DatasetSummary:
    """What ``deepstrf info`` reports about a loaded dataset.

    Attributes
    ----------
    name : str
        ``repr`` of the dataset.
    S, N : int
        Number of stims and neurons.
    dt_ms : float
        Response bin width.
    stim_shape : str
        Shape of the first stim, e.g. ``'(1, 16, 240)'``.
    F : int or None
        Spectrogram bands (audio datasets).
    repeats : list of int
        ``R`` of every real (stim, neuron) pair.
    durations_ms : list of float
        Response duration of every stim (``T_s · dt``).
    missing_fraction : float
        Fraction of (stim, neuron) pairs without data.
    splits : dict
        Count of stims per value of ``stim_meta['split']`` (or ``'subset'``),
        empty when the dataset has neither.
    snr, ccmax : list of float
        Per-neuron quality (empty when not computed).
    """

    name: str
    S: int
    N: int
    dt_ms: float
    stim_shape: str
    F: int | None
    repeats: list[int]
    durations_ms: list[float]
    missing_fraction: float
    splits: dict[str, int] = field(default_factory=dict)
    snr: list[float] = field(default_factory=list)
    ccmax: list[float] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary as aligned text lines."""
        split_text = ""
        if self.splits:
            split_text = " (" + ", ".join(f"{k} {v}" for k, v in self.splits.items()) + ")"
        repeat_counts = Counter(self.repeats)
        common = ", ".join(f"R={r}: {c}" for r, c in sorted(repeat_counts.items())[:8])
        if len(repeat_counts) > 8:
            common += ", ..."
        out = [
            f"dataset          {self.name}",
            f"stims S          {self.S}{split_text}; first stim shape {self.stim_shape}"
            + (f", F = {self.F} bands" if self.F is not None else ""),
            f"neurons N        {self.N}",
            f"bin width        {self.dt_ms:g} ms",
            f"durations (ms)   {format_quantiles(self.durations_ms, '.6g')}",
            f"repeats per pair {format_quantiles(self.repeats, 'g')}",
            f"                 {common}",
            f"missing pairs    {100 * self.missing_fraction:.1f} % of {self.S} x {self.N}",
        ]
        if self.snr or self.ccmax:
            out.append(f"SNR              {format_quantiles(self.snr)}")
            out.append(f"CCmax            {format_quantiles(self.ccmax)}")
        return out


def _split_counts(stim_meta: Sequence[dict]) -> dict[str, int]:
    for key in ("split", "subset"):
        values = [m.get(key) for m in stim_meta]
        if any(v is not None for v in values):
            return dict(Counter(str(v) for v in values))
    return {}


def summarize_dataset(ds: NeuralDataset, quality: bool = True) -> DatasetSummary:
    """Collect the numbers of :class:`DatasetSummary` from a dataset.

    Parameters
    ----------
    ds : NeuralDataset
    quality : bool, default True
        Report per-neuron SNR and CCmax, computing them with
        ``ds.compute_neuron_quality()`` unless every ``nrn_meta`` already has
        them (can take minutes on the largest datasets).

    Returns
    -------
    DatasetSummary
    """
    masks = ds.nrn_masks
    S, N = int(masks.shape[0]), int(masks.shape[1])
    real = masks.nonzero().tolist()
    repeats = [int(ds.responses[s][n].shape[0]) for s, n in real]
    bins = [None] * S
    for s, n in real:
        if bins[s] is None:
            bins[s] = int(ds.responses[s][n].shape[-1])
    durations = [float(t) * float(ds.dt) for t in bins if t is not None]
    snr: list[float] = []
    ccmax: list[float] = []
    if quality and N:
        if not all("snr" in m and "ccmax" in m for m in ds.nrn_meta):
            ds.compute_neuron_quality()
        snr = [float(m["snr"]) for m in ds.nrn_meta]
        ccmax = [float(m["ccmax"]) for m in ds.nrn_meta]
    F = getattr(ds, "F", None)
    return DatasetSummary(
        name=repr(ds),
        S=S,
        N=N,
        dt_ms=float(ds.dt),
        stim_shape=str(tuple(ds.stims[0].shape)) if ds.stims else "()",
        F=int(F) if isinstance(F, int) else None,
        repeats=repeats,
        durations_ms=durations,
        missing_fraction=1.0 - len(real) / (S * N) if S * N else 0.0,
        splits=_split_counts(ds.stim_meta),
        snr=snr,
        ccmax=ccmax,
    )


def rank_neurons_on_stim(ds: NeuralDataset, stim_index: int) -> tuple[list[int], list[float], str]:
    """Neurons recorded on one stim, most reliable first.

    Parameters
    ----------
    ds : NeuralDataset
    stim_index : int
        Index into ``ds.stims`` (``0 <= stim_index < S``).

    Returns
    -------
    (list of int, list of float, str)
        Neuron indices, their scores and the name of the criterion. The
        score is the split-half CCmax of the neuron's responses to this stim
        (Spearman–Brown, :func:`deepSTRF.metrics.cell_split_half_rho`) when
        some neuron has ``R >= 2`` repeats there; neurons without a defined
        CCmax (one repeat, NaN inside the response, no reliable signal)
        follow, ordered by response variance. With a single repeat
        everywhere, the variance of the response is the criterion.

    Raises
    ------
    IndexError
        ``stim_index`` outside ``[0, S)``.
    """
    from ..metrics import cell_split_half_rho, spearman_brown_ccmax

    S = ds.get_S()
    if isinstance(stim_index, bool) or not isinstance(stim_index, int) or not 0 <= stim_index < S:
        raise IndexError(f"stim index {stim_index!r} is out of range: the dataset has {S} stims (0..{S - 1})")
    neurons = ds.nrn_masks[stim_index].nonzero().flatten().tolist()
    responses = {n: ds.responses[stim_index][n].to(torch.float64) for n in neurons}
    variance = {
        n: float(torch.nan_to_num(torch.nanmean(r, dim=0).var(), nan=-1.0)) if r.shape[-1] > 1 else -1.0
        for n, r in responses.items()
    }
    ccmax: dict[int, float] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for n, r in responses.items():
        if r.shape[0] >= 2 and r.shape[1] >= 2 and not bool(torch.isnan(r).any()):
            groups.setdefault(tuple(r.shape), []).append(n)
    for members in groups.values():
        rho = cell_split_half_rho(torch.stack([responses[n] for n in members]))
        for n, value in zip(members, spearman_brown_ccmax(rho).tolist()):
            if math.isfinite(value):
                ccmax[n] = value
    if ccmax:
        criterion = "split-half CCmax on this stim"
        order = sorted(neurons, key=lambda n: (n not in ccmax, -ccmax.get(n, 0.0), -variance[n], n))
        scores = [ccmax.get(n, math.nan) for n in order]
    else:
        criterion = "response variance on this stim"
        order = sorted(neurons, key=lambda n: (-variance[n], n))
        scores = [variance[n] for n in order]
    return order, scores, criterion
