"""PNG figures of the ``deepstrf`` command (matplotlib, imported only when drawing).

The figures are built with matplotlib's object API on an Agg canvas, so
drawing never changes the user's pyplot backend and needs no display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..datasets.neural_dataset import NeuralDataset
    from .job import DemoReport

__all__ = ["plot_demo_fit", "plot_stim_responses"]


def _new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas; ImportError with the install hint if absent."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a test dependency
        raise ImportError(
            "drawing figures needs matplotlib: pip install 'deepSTRF[plot]' (or pip install matplotlib)"
        ) from exc
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _pick_spread(order: Sequence[int], k: int) -> list[int]:
    """``k`` entries evenly spread over ``order`` (first and last included)."""
    if len(order) <= k:
        return list(order)
    return [order[round(i * (len(order) - 1) / (k - 1))] for i in range(k)] if k > 1 else [order[0]]


def plot_demo_fit(report: DemoReport, path: str | os.PathLike[str], n_neurons: int = 4) -> Path:
    """Draw true vs fitted STRFs and a test PSTH vs its prediction.

    Parameters
    ----------
    report : DemoReport
        Result of :func:`deepSTRF.demo.run_demo`.
    path : path
        PNG file to write.
    n_neurons : int, default 4
        Columns of the figure: neurons spread from the best to the worst STRF
        recovery, so the figure is representative rather than flattering.

    Returns
    -------
    Path
        ``path``.
    """
    r = torch.nan_to_num(report.strf_r, nan=-2.0)
    order = torch.argsort(r, descending=True).tolist()
    shown = _pick_spread(order, n_neurons)
    fig = _new_figure(3.2 * len(shown), 7.6)
    axes = fig.subplots(3, len(shown), squeeze=False)
    dt = report.dt_ms
    L = report.n_lags
    for col, n in enumerate(shown):
        for row, (strf, label) in enumerate(((report.true_strfs[n], "true STRF"), (report.fitted_strfs[n], "ridge STRF"))):
            ax = axes[row][col]
            values = strf.detach().cpu().numpy()
            vmax = float(abs(values).max()) or 1.0
            image = ax.imshow(
                values, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                extent=(-0.5 * dt, (L - 0.5) * dt, -0.5, values.shape[0] - 0.5),
            )
            title = f"{report.neuron_ids[n]}\n{label}"
            if row == 1:
                title = f"{label}, r = {float(report.strf_r[n]):.2f}"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("lag (ms)", fontsize=8)
            if col == 0:
                ax.set_ylabel("frequency band", fontsize=8)
            fig.colorbar(image, ax=ax, shrink=0.8)
        ax = axes[2][col]
        psth = report.example["psth"][n].numpy()
        pred = report.example["prediction"][n].numpy()
        t = [i * dt / 1000.0 for i in range(len(psth))]
        ax.plot(t, psth, color="0.35", lw=0.9, label="PSTH")
        ax.plot(t, pred, color="tab:red", lw=1.1, label="ridge prediction")
        ax.set_title(
            f"test CCraw {float(report.cc_raw[n]):.2f}, CCnorm {float(report.cc_norm[n]):.2f}", fontsize=9
        )
        ax.set_xlabel(f"time in {report.example['stim_name']} (s)", fontsize=8)
        if col == 0:
            ax.set_ylabel("spikes / bin", fontsize=8)
            ax.legend(fontsize=7, loc="upper right")
    med = report.medians
    fig.suptitle(
        f"deepSTRF demo (seed {report.seed}): median STRF r {med['strf_r']:.2f}, "
        f"test CCraw {med['cc_raw']:.2f}, CCnorm {med['cc_norm']:.2f}",
        fontsize=11,
    )
    return _save(fig, path)


def _stim_image(stim: Tensor) -> tuple[Any, str]:
    """2-D array (rows × time) to draw for a stim, and the y label."""
    x = stim.detach().to(torch.float32).cpu()
    if x.dim() == 3 and x.shape[0] == 1:
        return x[0].numpy(), "frequency band"
    if x.dim() >= 2:
        return x.reshape(-1, x.shape[-1]).numpy(), "channel x pixel" if x.dim() == 4 else "row"
    return x.reshape(1, -1).numpy(), "value"


def plot_stim_responses(
    ds: NeuralDataset,
    stim_index: int,
    path: str | os.PathLike[str],
    n_neurons: int = 4,
    title: str | None = None,
) -> tuple[Path, list[int], str]:
    """Draw one stim and the raster + PSTH of its most reliable neurons.

    Parameters
    ----------
    ds : NeuralDataset
    stim_index : int
        Stim to draw, ``0 <= stim_index < S``.
    path : path
        PNG file to write.
    n_neurons : int, default 4
        Number of neurons shown, chosen by
        :func:`deepSTRF.demo.summary.rank_neurons_on_stim`.
    title : str, optional
        Figure title (default: the dataset class and the stim name).

    Returns
    -------
    (Path, list of int, str)
        The PNG path, the neurons drawn and the ranking criterion.

    Notes
    -----
    Spectrograms ``(1, F, T)`` are drawn as images, waveforms ``(1, T_audio)``
    as a trace, videos ``(C, H, W, T)`` as a ``(C·H·W) × T`` image. A raster
    row is one repeat (grey level = count in the bin); the PSTH is the
    NaN-aware mean over repeats.
    """
    from .summary import rank_neurons_on_stim

    order, scores, criterion = rank_neurons_on_stim(ds, stim_index)
    shown = order[: max(0, n_neurons)]
    stim = ds.stims[stim_index]
    meta = ds.stim_meta[stim_index] if stim_index < len(ds.stim_meta) else {}
    responses = [ds.responses[stim_index][n].detach().to(torch.float32).cpu() for n in shown]
    T = responses[0].shape[-1] if responses else stim.shape[-1]
    duration = T * float(ds.dt) / 1000.0

    rows = 1 + len(shown)
    fig = _new_figure(9.0, 2.2 + 1.7 * len(shown))
    axes = fig.subplots(rows, 1, squeeze=False, sharex=True)[:, 0]
    ax = axes[0]
    if stim.dim() == 2 and stim.shape[0] == 1:  # waveform
        wave = stim[0].detach().to(torch.float32).cpu().numpy()
        ax.plot([i * duration / len(wave) for i in range(len(wave))], wave, lw=0.4, color="k")
        ax.set_ylabel("waveform", fontsize=8)
    else:
        image, ylabel = _stim_image(stim)
        ax.imshow(
            image, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
            extent=(0.0, image.shape[-1] * duration / max(T, 1), -0.5, image.shape[0] - 0.5),
        )
        ax.set_ylabel(ylabel, fontsize=8)
    name = meta.get("name", f"stim {stim_index}")
    ax.set_title(title or f"{type(ds).__name__}: stim {stim_index} ({name})", fontsize=10)

    for ax, n, score, resp in zip(axes[1:], shown, scores, responses):
        R = resp.shape[0]
        ax.imshow(
            resp.numpy(), origin="upper", aspect="auto", cmap="Greys", interpolation="nearest",
            extent=(0.0, duration, R - 0.5, -0.5),
        )
        ax.set_ylabel("repeat", fontsize=8)
        psth_ax = ax.twinx()
        psth = torch.nanmean(resp, dim=0).numpy()
        psth_ax.plot([(i + 0.5) * float(ds.dt) / 1000.0 for i in range(len(psth))], psth, color="tab:red", lw=1.0)
        psth_ax.set_ylabel("PSTH", fontsize=8, color="tab:red")
        label = ds.nrn_meta[n].get("cell_id", ds.nrn_meta[n].get("id", n)) if n < len(ds.nrn_meta) else n
        shown_score = "n/a" if not math.isfinite(score) else f"{score:.2f}"
        ax.set_title(f"neuron {n} ({label}): R = {R}, {criterion.split(' on ')[0]} {shown_score}", fontsize=9)
    axes[-1].set_xlabel("time (s)", fontsize=9)
    if not shown:
        axes[0].text(0.5, -0.2, "no neuron was recorded on this stim", transform=axes[0].transAxes, ha="center")
    return _save(fig, path), shown, criterion
