"""The ``deepstrf demo`` job: ridge STRFs on the embedded simulated dataset.

Steps (each one a public library call, so the job doubles as a worked example):

1. build :class:`~deepSTRF.datasets.audio.demo.DemoDataset` (no download);
2. ``compute_neuron_quality()``: per-neuron SNR and CCmax;
3. ``standardize_stims(stim_indices=train)``: statistics from the train split only;
4. :func:`~deepSTRF.demo.ridge.fit_ridge_strfs`: closed-form ridge STRF per
   neuron on the train stims, penalty chosen per neuron on the val stims;
5. predict the test stims (one collated batch) and score them with
   :func:`deepSTRF.metrics.corrcoef` and :func:`deepSTRF.metrics.normalized_corrcoef`;
6. compare the fitted STRFs (back in raw-stim units) with the true ones;
7. write a figure (PNG) and the numbers (JSON).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .ridge import (
    DEFAULT_LAMBDAS,
    fit_ridge_strfs,
    predict_strfs,
    strf_correlation,
    unstandardize_strfs,
)
from .summary import DatasetSummary, summarize_dataset

__all__ = ["DemoReport", "run_demo", "FIGURE_NAME", "RESULTS_NAME"]

FIGURE_NAME = "deepstrf_demo.png"
RESULTS_NAME = "deepstrf_demo.json"

@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (tiny tensors: 1 is fastest)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _nanmedian(x: Tensor) -> float:
    finite = x[torch.isfinite(x)]
    return float(finite.median()) if finite.numel() else math.nan


@dataclass
class DemoReport:
    """Everything the demo computed.

    Attributes
    ----------
    seed : int
        Seed of the simulated dataset.
    summary : DatasetSummary
        Sizes, repeats, durations, missing pairs, SNR / CCmax of the dataset.
    neuron_ids : list of str
    n_lags : int
        STRF length in bins.
    dt_ms : float
    splits : dict
        Stim indices of ``'train'``, ``'val'`` and ``'test'``.
    snr, ccmax : Tensor, shape (N,)
        Quality of each neuron (over all stims).
    lambdas, val_cc : Tensor, shape (N,)
        Chosen relative ridge penalty and its validation correlation.
    cc_raw, cc_norm : Tensor, shape (N,)
        Test-set correlation with the PSTH, raw and normalised (Schoppe et al.
        2016, :func:`deepSTRF.metrics.normalized_corrcoef`).
    strf_r : Tensor, shape (N,)
        Correlation between the fitted STRF (raw-stim units) and the true one.
    fitted_strfs, true_strfs : Tensor, shape (N, F, L)
    example : dict
        One test stim for the figure: ``'stim_name'``, ``'psth'`` and
        ``'prediction'`` ``(N, T)``.
    figure_path, results_path : Path or None
        Files written (None when not written).
    timings : dict
        Seconds spent per step.
    """

    seed: int
    summary: DatasetSummary
    neuron_ids: list[str]
    n_lags: int
    dt_ms: float
    splits: dict[str, list[int]]
    snr: Tensor
    ccmax: Tensor
    lambdas: Tensor
    val_cc: Tensor
    cc_raw: Tensor
    cc_norm: Tensor
    strf_r: Tensor
    fitted_strfs: Tensor
    true_strfs: Tensor
    example: dict
    figure_path: Path | None = None
    results_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def medians(self) -> dict[str, float]:
        """Median over neurons of the test ``cc_raw``, ``cc_norm``, ``strf_r`` and ``ccmax``."""
        return {
            "cc_raw": _nanmedian(self.cc_raw),
            "cc_norm": _nanmedian(self.cc_norm),
            "strf_r": _nanmedian(self.strf_r),
            "ccmax": _nanmedian(self.ccmax),
        }

    def lines(self) -> list[str]:
        """Human-readable report, one string per line."""
        med = self.medians
        F = self.true_strfs.shape[1]
        out = [f"deepSTRF demo (seed {self.seed}): ridge STRFs on the embedded simulated dataset", ""]
        out += ["  " + line for line in self.summary.lines()]
        out += [
            "",
            (
                f"  model            linear STRF, {F} bands x {self.n_lags} lags ({self.n_lags * self.dt_ms:g} ms) "
                f"+ bias, closed-form ridge on the PSTH of {len(self.splits['train'])} train stims"
            ),
            (
                f"                   penalty chosen per neuron on {len(self.splits['val'])} val stims; "
                f"scored on {len(self.splits['test'])} test stims"
            ),
            "",
            f"  {'neuron':<14}{'CCmax':>7}{'lambda':>9}{'val CC':>8}{'CCraw':>8}{'CCnorm':>8}{'STRF r':>8}",
        ]
        for n, nid in enumerate(self.neuron_ids):
            out.append(
                f"  {nid:<14}{float(self.ccmax[n]):>7.3f}{float(self.lambdas[n]):>9.2g}{float(self.val_cc[n]):>8.3f}"
                f"{float(self.cc_raw[n]):>8.3f}{float(self.cc_norm[n]):>8.3f}{float(self.strf_r[n]):>8.3f}"
            )
        out += [
            (
                f"  {'median':<14}{med['ccmax']:>7.3f}{'':>9}{_nanmedian(self.val_cc):>8.3f}"
                f"{med['cc_raw']:>8.3f}{med['cc_norm']:>8.3f}{med['strf_r']:>8.3f}"
            ),
            "",
            (
                f"  test CCraw median {med['cc_raw']:.3f}, CCnorm median {med['cc_norm']:.3f}; "
                f"recovered vs true STRF: median correlation {med['strf_r']:.3f}"
            ),
        ]
        if self.figure_path is not None:
            out.append(f"  figure:  {self.figure_path}")
        if self.results_path is not None:
            out.append(f"  results: {self.results_path}")
        total = sum(self.timings.values())
        steps = ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items())
        out.append(f"  done in {total:.2f} s ({steps})")
        return out

    def to_json(self) -> dict:
        """JSON-able dict of the settings, per-neuron numbers and medians."""

        def num(x: float) -> float | None:
            return float(x) if math.isfinite(float(x)) else None

        return {
            "seed": self.seed,
            "dataset": {
                "S": self.summary.S,
                "N": self.summary.N,
                "dt_ms": self.dt_ms,
                "splits": {k: len(v) for k, v in self.splits.items()},
                "missing_fraction": self.summary.missing_fraction,
            },
            "model": {"n_lags": self.n_lags, "n_bands": int(self.true_strfs.shape[1]), "lambda_grid": list(DEFAULT_LAMBDAS)},
            "medians": {k: num(v) for k, v in self.medians.items()},
            "neurons": [
                {
                    "id": nid,
                    "snr": num(self.snr[n]),
                    "ccmax": num(self.ccmax[n]),
                    "lambda": num(self.lambdas[n]),
                    "val_cc": num(self.val_cc[n]),
                    "test_cc_raw": num(self.cc_raw[n]),
                    "test_cc_norm": num(self.cc_norm[n]),
                    "strf_r": num(self.strf_r[n]),
                }
                for n, nid in enumerate(self.neuron_ids)
            ],
            "timings_s": self.timings,
        }


def run_demo(
    out_dir: str | os.PathLike[str] | None = "deepstrf_demo",
    seed: int = 0,
    figure: bool = True,
    threads: int | None = 1,
) -> DemoReport:
    """Fit ridge STRFs to the embedded simulated dataset and score them.

    Parameters
    ----------
    out_dir : path or None, default ``'deepstrf_demo'``
        Folder that receives ``deepstrf_demo.png`` and ``deepstrf_demo.json``
        (created if needed); None writes nothing.
    seed : int, default 0
        Seed of the simulated dataset.
    figure : bool, default True
        Draw the figure (needs matplotlib) when ``out_dir`` is given.
    threads : int or None, default 1
        torch intra-op threads during the job (restored afterwards); the
        tensors are tiny, so one thread is fastest and immune to a busy
        machine. None leaves torch's setting alone.

    Returns
    -------
    DemoReport
        Per-neuron quality, test CCraw / CCnorm, STRF recovery, file paths.
    """
    from ..datasets.audio.demo import DemoDataset
    from ..metrics import corrcoef, normalized_corrcoef
    from ..utils.data import neural_collate

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    timings: dict[str, float] = {}
    with _torch_threads(threads):
        clock = time.perf_counter()
        ds = DemoDataset(seed=seed)
        timings["build"] = time.perf_counter() - clock

        clock = time.perf_counter()
        summary = summarize_dataset(ds, quality=True)
        quality = {
            "snr": torch.tensor([m["snr"] for m in ds.nrn_meta]),
            "ccmax": torch.tensor([m["ccmax"] for m in ds.nrn_meta]),
        }
        timings["quality"] = time.perf_counter() - clock

        clock = time.perf_counter()
        splits = {name: [s for s, m in enumerate(ds.stim_meta) if m["split"] == name] for name in ("train", "val", "test")}
        ds.standardize_stims(stim_indices=splits["train"])
        n_lags = int(ds.true_strfs.shape[-1])
        fit = fit_ridge_strfs(ds, splits["train"], splits["val"], n_lags=n_lags, lambdas=DEFAULT_LAMBDAS)
        timings["fit"] = time.perf_counter() - clock

        clock = time.perf_counter()
        ds.select_stims(splits["test"])
        carried = ds.nrn_masks[splits["test"]].any(dim=0).nonzero().flatten()
        batch = neural_collate([ds[i] for i in range(len(ds))])
        ds.reset_stim_selection()
        weights, bias = fit.weights[carried], fit.bias[carried]
        prediction = predict_strfs(batch["stims"], weights, bias)
        N = ds.N_neurons
        cc_raw = torch.full((N,), math.nan)
        cc_norm = torch.full((N,), math.nan)
        cc_raw[carried] = corrcoef(prediction, batch["responses"], reduction="none").float()
        cc_norm[carried] = normalized_corrcoef(prediction, batch["responses"], reduction="none").float()
        raw_weights, _ = unstandardize_strfs(fit.weights, fit.bias, ds.stim_normalization)
        strf_r = strf_correlation(raw_weights, ds.true_strfs)
        T0 = ds.stims[splits["test"][0]].shape[-1]
        example = {
            "stim_name": batch["stim_meta"][0]["name"],
            "psth": torch.full((N, T0), math.nan),
            "prediction": torch.full((N, T0), math.nan),
        }
        example["psth"][carried] = torch.nanmean(batch["responses"][0, :, :, :T0], dim=1).float()
        example["prediction"][carried] = prediction[0, :, 0, :T0].float()
        timings["evaluate"] = time.perf_counter() - clock

        report = DemoReport(
            seed=seed,
            summary=summary,
            neuron_ids=[str(m.get("id", n)) for n, m in enumerate(ds.nrn_meta)],
            n_lags=n_lags,
            dt_ms=float(ds.dt),
            splits=splits,
            snr=quality["snr"],
            ccmax=quality["ccmax"],
            lambdas=fit.lambdas,
            val_cc=fit.val_cc,
            cc_raw=cc_raw,
            cc_norm=cc_norm,
            strf_r=strf_r,
            fitted_strfs=raw_weights,
            true_strfs=ds.true_strfs.float(),
            example=example,
            timings=timings,
        )
        if out_dir is not None:
            folder = Path(out_dir)
            folder.mkdir(parents=True, exist_ok=True)
            if figure:
                from .figures import plot_demo_fit

                clock = time.perf_counter()
                report.figure_path = plot_demo_fit(report, folder / FIGURE_NAME)
                timings["figure"] = time.perf_counter() - clock
            report.results_path = folder / RESULTS_NAME
            report.results_path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return report
