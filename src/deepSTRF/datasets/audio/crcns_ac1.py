"""CRCNS ac-1: rat auditory cortex (A1) and thalamus (MGB) intracellular recordings under natural sounds (Zador lab)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...utils.download import data_root, extract_zip, fetch_crcns, is_extracted
from .._cache import Payload
from .._raw_files import require_raw_files
from .._storage import make_sentinels
from . import asari, wehr
from ._crcns import crcns_fix
from ._spectrogram import (
    fit_length,
    hop_samples,
    log_band_centres,
    log_spectrogram,
    resample,
)
from .audio_dataset import AudioNeuralDataset
from .wehr import WEHR_NEURONS_SPLIT_NATURAL, WEHR_VALID_NEURONS, RawGroup

__all__ = [
    "AC1_ARCHIVES",
    "AC1_EXPERIMENTERS",
    "AC1_SITES",
    "WEHR_NEURONS_SPLIT_NATURAL",
    "WEHR_VALID_NEURONS",
    "CRCNSAC1Dataset",
    "RepeatGating",
    "binned_mean",
    "download_ac1",
    "gate_repeats",
    "medgauss_detrend",
    "spike_rate",
]

#: Dataset folder name under the data root.
AC1_NAME = "CRCNS_AC1"
AC1_PAGE = "https://crcns.org/data-sets/ac/ac-1/about"
AC1_DOI = "10.6080/K0KW5CXR"
#: Sources, in neuron order.
AC1_EXPERIMENTERS = ("wehr", "asari")
AC1_SITES = ("A1", "MGB")
#: Archive -> path under the CRCNS download root; each unpacks into ``<root>/<archive stem>/``.
AC1_ARCHIVES = {
    "crcns-ac1.zip": "ac-1/crcns-ac1.zip",
    "crcns-ac1-asari-results-1.zip": "ac-1/crcns-ac1-asari-results-1.zip",
    "crcns-ac1-asari-results-2.zip": "ac-1/crcns-ac1-asari-results-2.zip",
}
#: Registry checksums; CRCNS publishes none (pin a sha256 after a trusted download).
AC1_REGISTRY: dict[str, str | None] = {path: None for path in AC1_ARCHIVES.values()}
#: Archives each source reads.
_NEEDS = {"wehr": ("crcns-ac1.zip",),
          "asari": ("crcns-ac1.zip", "crcns-ac1-asari-results-1.zip", "crcns-ac1-asari-results-2.zip")}

#: Fixed values of the signal path (ms): step-gate smoothing, spike high-pass, spike-rate window.
STEP_SMOOTH_MS = 5.0
SPIKE_HIGHPASS_MS = 10.0
SPIKE_THRESHOLD_SD = 2.5
SPIKE_HANN_MS = 21.0

_LAYOUT = """\
<root>/crcns-ac1/wehr/Stimuli/{fragments,category1,category2,category3}/<int>.mat     (Wehr)
<root>/crcns-ac1/wehr/Results/<yyyymmdd>-mw-<NNN>/*.mat                            (Wehr)
<root>/crcns-ac1/asari/Stimuli/class<N>/<name>.mat                                  (Asari)
<root>/crcns-ac1-asari-results-1/asari-results-1/<yyyymmdd>-ha<k>-<NNN>/*.mat       (Asari)
<root>/crcns-ac1-asari-results-2/asari-results-2/<yyyymmdd>-ha<k>-<NNN>/*.mat       (Asari)
(or the zips crcns-ac1.zip, crcns-ac1-asari-results-{1,2}.zip in <root>: they are extracted on first use)"""


# --------------------------------------------------------------------------- signal cleaning


@dataclass(frozen=True)
class RepeatGating:
    """Thresholds of the per-repeat artefact gates (applied to the detrended repeats).

    Attributes
    ----------
    abs_mv_max : float, default 150.0
        A repeat whose ``max |x|`` exceeds this (mV) fails the ``'range'`` gate.
    step_mv : float, default 30.0
        Deviation (mV) of the 5 ms median-smoothed repeat from its median that counts as a step.
    max_step_frac : float, default 5e-3
        A repeat with more than this fraction of step samples fails the ``'step'`` gate.
    min_xcorr : float, default 0.05
        A repeat whose correlation with the per-sample median of the other
        repeats is below this fails the ``'xcorr'`` gate (groups of 3 or more
        repeats only); ``<= 0`` disables the gate.
    """

    abs_mv_max: float = 150.0
    step_mv: float = 30.0
    max_step_frac: float = 5e-3
    min_xcorr: float = 0.05

    def __post_init__(self) -> None:
        for name in ("abs_mv_max", "step_mv", "max_step_frac", "min_xcorr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"RepeatGating.{name} must be a finite number, got {value!r}")
        if self.abs_mv_max <= 0 or self.step_mv <= 0:
            raise ValueError(f"RepeatGating.abs_mv_max and step_mv must be > 0 mV, got {self.abs_mv_max!r} "
                             f"and {self.step_mv!r}")
        if not 0 <= self.max_step_frac <= 1:
            raise ValueError(f"RepeatGating.max_step_frac must be in [0, 1], got {self.max_step_frac!r}")


def _samples(ms: float, sf: float) -> int:
    return round(float(ms) * float(sf) / 1000.0)


def medgauss_detrend(x: np.ndarray, sf: float, med_ms: float = 100.0, gauss_ms: float = 10.0) -> np.ndarray:
    """Residual of ``x`` around its median-then-Gaussian baseline (float64).

    Parameters
    ----------
    x : numpy.ndarray, shape (n,)
        One repeat, mV.
    sf : float
        Sampling rate, Hz.
    med_ms, gauss_ms : float
        Median window ``max(1, round(med_ms sf / 1000))`` samples, then a
        Gaussian of sigma ``max(1e-3, gauss_ms sf / 1000)`` samples, both with
        reflecting edges (``scipy.ndimage`` semantics).

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``x - baseline``.
    """
    from scipy.ndimage import gaussian_filter1d, median_filter

    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    base = median_filter(x, size=max(1, _samples(med_ms, sf)), mode="reflect")
    base = gaussian_filter1d(base, sigma=max(1e-3, gauss_ms * sf / 1000.0), mode="reflect")
    return x - base


def _step_fraction(x: np.ndarray, sf: float, step_mv: float) -> float:
    from scipy.ndimage import median_filter

    if x.size < 3:
        return 0.0
    size = _samples(STEP_SMOOTH_MS, sf)
    s = x if size <= 1 or size > x.size else median_filter(x, size=size, mode="reflect")
    return float(np.mean(np.abs(s - np.median(s)) > step_mv))


def _xcorr_scores(repeats: list[np.ndarray], min_xcorr: float) -> list[float]:
    """Correlation of each repeat with the per-sample median of the others (1.0 where not computed)."""
    R = len(repeats)
    L = min((r.size for r in repeats), default=0)
    if min_xcorr <= 0 or R < 3 or L <= 0:
        return [1.0] * R
    block = np.stack([r[:L] for r in repeats])
    scores = []
    for i in range(R):
        ref = np.median(np.delete(block, i, axis=0), axis=0)
        a = block[i] - block[i].mean()
        b = ref - ref.mean()
        scores.append(float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)))
    return scores


def gate_repeats(repeats: list[np.ndarray], sf: float, gating: RepeatGating) -> list[str]:
    """Verdict per detrended repeat: ``'range'``, ``'step'``, ``'xcorr'`` or ``'kept'`` (first failing gate wins)."""
    scores = _xcorr_scores(repeats, gating.min_xcorr)
    verdicts = []
    for x, r in zip(repeats, scores):
        if x.size == 0 or not np.nanmax(np.abs(x)) <= gating.abs_mv_max:
            verdicts.append("range")
        elif _step_fraction(x, sf, gating.step_mv) > gating.max_step_frac:
            verdicts.append("step")
        elif r < gating.min_xcorr:
            verdicts.append("xcorr")
        else:
            verdicts.append("kept")
    return verdicts


def spike_rate(y: np.ndarray, sf: float, med_ms: float = 100.0, gauss_ms: float = 10.0) -> np.ndarray:
    """Smoothed threshold-crossing rate (a.u., >= 0) of a detrended cell-attached repeat.

    ``y`` is detrended once more (as in deepSTRF 0.1.0), high-passed by
    subtracting a 10 ms running median, thresholded at 2.5 standard
    deviations, and the binary crossings are convolved with a (not normalised)
    21 ms symmetric Hann window, same length.
    """
    from scipy.ndimage import median_filter
    from scipy.signal import convolve
    from scipy.signal.windows import hann

    y = medgauss_detrend(y, sf, med_ms, gauss_ms)
    if y.size == 0:
        return y
    h = y - median_filter(y, size=max(1, _samples(SPIKE_HIGHPASS_MS, sf)), mode="reflect")
    crossings = (h > SPIKE_THRESHOLD_SD * np.std(h)).astype(np.float64)
    window = hann(max(3, _samples(SPIKE_HANN_MS, sf)))
    return convolve(crossings, window, mode="same", method="direct")


def binned_mean(x: np.ndarray, sf: float, dt_ms: float) -> np.ndarray:
    """Mean of consecutive blocks of ``max(1, round(dt sf / 1000))`` samples (remainder dropped).

    A repeat shorter than one block becomes its mean (one value); an empty one, no value.
    """
    block = max(1, _samples(dt_ms, sf))
    n = x.size // block
    if n == 0:
        return np.array([x.mean()]) if x.size else np.zeros(0)
    return x[:n * block].reshape(n, block).mean(axis=1)


def clean_group(group: RawGroup, whole_cell: bool, dt_ms: float, med_ms: float, gauss_ms: float,
                gating: RepeatGating, counter: dict[str, int]) -> np.ndarray | None:
    """Detrend, gate, convert and bin the repeats of a group: ``(R_kept, T_resp)`` float32 or ``None``."""
    sf = group.sf
    residuals = [medgauss_detrend(x, sf, med_ms, gauss_ms) for x in group.repeats]
    verdicts = gate_repeats(residuals, sf, gating)
    for v in verdicts:
        counter[v] += 1
    kept = [y for y, v in zip(residuals, verdicts) if v == "kept"]
    if not kept:
        return None
    signals = kept if whole_cell else [spike_rate(y, sf, med_ms, gauss_ms) for y in kept]
    binned = [binned_mean(y, sf, dt_ms) for y in signals]
    T = min(b.size for b in binned)
    if T <= 0:
        return None
    return np.stack([b[:T] for b in binned]).astype(np.float32)


# --------------------------------------------------------------------------- arguments and layout


def _choice(value: str | Iterable[str] | None, allowed: tuple[str, ...], name: str) -> tuple[str, ...]:
    """A bare name, an iterable of names, or None/empty (= all), in canonical order."""
    if value is None:
        return allowed
    items = [value] if isinstance(value, str) else value
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"{name} must be one of {allowed} or an iterable of them, got {value!r}") from None
    for item in items:
        if item not in allowed:
            raise ValueError(f"{name} contains {item!r}; allowed values (case-sensitive): {allowed}")
    return tuple(a for a in allowed if a in items) or allowed


def _positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def _first_dir(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


@dataclass
class _Layout:
    wehr_results: Path | None = None
    wehr_stimuli: Path | None = None
    asari_stimuli: Path | None = None
    asari_results: tuple[Path, ...] = ()


def _locate(root: Path) -> _Layout:
    """Find the unpacked folders (tolerating one extra ``crcns-ac1/`` level inside the first archive)."""
    base = root / "crcns-ac1"
    lay = _Layout()
    for top in (base, base / "crcns-ac1"):
        if lay.wehr_results is None and (top / "wehr" / "Results").is_dir() and (top / "wehr" / "Stimuli").is_dir():
            lay.wehr_results, lay.wehr_stimuli = top / "wehr" / "Results", top / "wehr" / "Stimuli"
        if lay.asari_stimuli is None:
            lay.asari_stimuli = _first_dir(top / "asari" / "Stimuli")
    found = []
    for k, name in enumerate(asari.ASARI_RESULTS, 1):
        outer = root / f"crcns-ac1-asari-results-{k}"
        d = _first_dir(outer / name, outer / outer.name / name)
        if d is not None:
            found.append(d)
    lay.asari_results = tuple(found)
    return lay


def _missing(lay: _Layout, experimenters: tuple[str, ...]) -> list[str]:
    missing = []
    if "wehr" in experimenters and lay.wehr_results is None:
        missing += ["crcns-ac1/wehr/Results/", "crcns-ac1/wehr/Stimuli/"]
    if "asari" in experimenters:
        if lay.asari_stimuli is None:
            missing.append("crcns-ac1/asari/Stimuli/")
        if not lay.asari_results:
            missing.append("crcns-ac1-asari-results-1/asari-results-1/ (or -2/asari-results-2/)")
    return missing


def _extract_present(root: Path, experimenters: tuple[str, ...]) -> None:
    """Extract the needed archives that lie in ``root`` but are not unpacked yet."""
    for name in dict.fromkeys(a for e in experimenters for a in _NEEDS[e]):
        archive = root / name
        dest = root / name[: -len(".zip")]
        if archive.is_file() and not is_extracted(archive, dest):
            extract_zip(archive, dest)


# --------------------------------------------------------------------------- the dataset


class CRCNSAC1Dataset(AudioNeuralDataset):
    """CRCNS ac-1: membrane potentials and cell-attached spikes in rat A1 and MGB under natural sounds.

    Asari H, Wehr M, Machens CK, Zador AM (2009) "Auditory cortex and thalamic
    neuronal responses to various natural and synthetic sounds", CRCNS.org,
    DOI 10.6080/K0KW5CXR (https://crcns.org/data-sets/ac/ac-1/about). Two
    sources with unrelated file formats:

    * **Wehr** (:mod:`.wehr`): whole-cell current clamp in A1 of anaesthetised
      rats, spikes blocked, Vm at 4 kHz. Machens CK, Wehr MS, Zador AM (2004)
      "Linearity of cortical receptive fields measured with natural sounds",
      J Neurosci 24(5):1089-1100, DOI 10.1523/JNEUROSCI.4445-03.2004. Real data
      at dt 5 ms: N = 25, S = 51, about 22 % of the (stim, neuron) pairs
      recorded, up to 25 repeats.
    * **Asari** (:mod:`.asari`): A1 whole-cell and MGB cell-attached at 10 kHz,
      sequences of spliced segments at 97656.25 Hz. Asari H, Zador AM (2009)
      "Long-lasting context dependence constrains neural encoding models in
      rodent auditory cortex", J Neurophysiol 102(5):2638-2656, DOI
      10.1152/jn.00577.2009.

    :data:`WEHR_VALID_NEURONS` and :data:`WEHR_NEURONS_SPLIT_NATURAL` (Rançon,
    Masquelier and Cottereau 2025, Commun Biol 8:1456, DOI
    10.1038/s42003-025-08858-3) refer to ``nrn_meta[n]['_wehr_cell_idx']``.

    Signal of each neuron (``nrn_meta[n]['signal_type']``), set by its recording mode:

    * whole-cell -> ``'subthresh'``: membrane potential in mV minus a
      median (``detrend_med_ms``) then Gaussian (``detrend_gauss_ms``) baseline,
      block-averaged into ``dt_ms`` bins (signed, continuous);
    * cell-attached -> ``'spikes'``: the detrended voltage high-passed (10 ms
      running median), thresholded at 2.5 SD, convolved with a 21 ms Hann
      window (a.u., >= 0), block-averaged.

    Before that, each repeat passes the gates of :class:`RepeatGating`
    (amplitude range, voltage steps, correlation with the other repeats);
    counts per verdict are in ``self._rejection_counter``. All kept repeats of
    a (cell, sound) are cut to the shortest, and each stim and all its
    responses to ``T = min(round(duration / dt), ceil(n_samples / hop), shortest
    response)`` bins. Stims are log-frequency spectrograms ``(1, F, T)`` in dB
    of the sound at its own rate (:func:`~._spectrogram.log_spectrogram`,
    ``F = floor(log2(fmax / fmin) * bins_per_octave) + 1``, 53 by default), or
    the waveform ``(1, T * audio_fs * dt / 1000)`` in waveform mode.

    Parameters
    ----------
    path : path-like, optional
        Folder holding the unpacked archives and/or the zips (see Layout);
        default ``$DEEPSTRF_DATA/CRCNS_AC1`` or the user data dir.
    download : bool, default False
        Fetch (and extract) the archives the requested sources need when
        missing. Needs a free CRCNS account: ``CRCNS_USERNAME`` /
        ``CRCNS_PASSWORD`` or a ``~/.netrc`` entry for ``crcns.org``.
    experimenter : {'wehr', 'asari'} or iterable of them, default both
        Sources to load (None or empty: both). Neurons are always ordered
        Wehr first, then Asari.
    sites : {'A1', 'MGB'} or iterable of them, default both
        Recording sites (None or empty: both). Wehr is all A1.
    dt_ms : float, default 5.0
        Response bin width and spectrogram hop (ms); bins are
        ``round(dt_ms * sf / 1000)`` samples of the response.
    fmin, fmax : float, default 100.0, 45000.0
        Lowest band centre and upper limit of the band centres (Hz). Bands
        above a sound's Nyquist frequency hold aliased energy: prefer
        ``fmax=25600`` for Wehr-only work.
    bins_per_octave : int, default 6
        Spectrogram bands per octave.
    window_ms : float, optional
        Spectrogram window (default ``2 * dt_ms``).
    detrend_med_ms, detrend_gauss_ms : float, default 100.0, 10.0
        Baseline removal: median window and Gaussian sigma, ms.
    gating : RepeatGating, optional
        Repeat-rejection thresholds (default ``RepeatGating()``).
    return_waveform : bool, default False
        Stims become waveforms at ``audio_fs`` (windowed-sinc resampling).
    audio_fs : int, default 96000
        Waveform sample rate; ``audio_fs * dt_ms / 1000`` must be a whole number.
    cache : bool, default True
        Reuse/write the processed-data cache (``$DEEPSTRF_CACHE``).

    Attributes
    ----------
    species ('rat'), hearing_range_hz ((250, 76000)), experimenters, sites,
    fmin, fmax, bins_per_octave, window_ms (as given), detrend_med_ms,
    detrend_gauss_ms, gating, return_waveform, audio_fs (None in spectrogram
    mode), F, dt, signal_type ('subthresh', 'spikes' or 'mixed').
    ``stim_meta[s]``: experimenter, name (unique), category, description,
    duration_s; Wehr: idx; Asari: class_n, segments, segment_files, sequence.
    ``nrn_meta[n]``: experimenter, session, animal_id, penetration, date,
    site, recording_type, species, signal_type; Wehr: _wehr_cell_idx.

    Layout
    ------
    ::

        <path>/crcns-ac1/wehr/{Results,Stimuli}/...                     crcns-ac1.zip (Wehr)
        <path>/crcns-ac1/asari/Stimuli/class<N>/*.mat                   crcns-ac1.zip (Asari)
        <path>/crcns-ac1-asari-results-K/asari-results-K/<session>/     crcns-ac1-asari-results-K.zip

    Only the archives of the requested sources are needed; for Asari, either
    results archive alone is enough (its cells are loaded).

    Notes
    -----
    Deliberate differences from deepSTRF 0.1.0 (values are otherwise the same):

    * only the requested sources' archives are required (0.1.0 demanded all
      three); a copy holding one results archive loads its Asari cells;
    * credentials come from the environment or netrc (no ``username`` /
      ``password`` arguments); errors are :class:`DatasetNotFoundError`,
      :class:`DatasetFormatError` (naming file and field) and ``ValueError`` /
      ``TypeError`` for arguments, never ``assert``;
    * unknown ``experimenter`` / ``sites`` values raise ``ValueError`` (0.1.0
      silently loaded nothing for them);
    * a Wehr session folder with a malformed name is skipped with a warning
      (0.1.0 crashed) and keeps its ``_wehr_cell_idx`` slot; ``animal_id`` is
      read from the folder name (always 'mw' in the release);
    * ``stim_meta`` has a unique ``name`` (Asari descriptions repeat); tuples
      in metadata are stored as lists (they go through the JSON cache);
    * the one extra ``crcns-ac1/`` level an archive might add is tolerated;
    * the processed tensors are cached; the loader does not smooth (use
      ``smooth_responses``, whose kernel has unit gain).
    """

    FORMAT_VERSION = 1

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        experimenter: str | Iterable[str] | None = AC1_EXPERIMENTERS,
        sites: str | Iterable[str] | None = AC1_SITES,
        dt_ms: float = 5.0,
        fmin: float = 100.0,
        fmax: float = 45000.0,
        bins_per_octave: int = 6,
        window_ms: float | None = None,
        detrend_med_ms: float = 100.0,
        detrend_gauss_ms: float = 10.0,
        gating: RepeatGating | None = None,
        return_waveform: bool = False,
        audio_fs: int = 96000,
        cache: bool = True,
    ) -> None:
        root = data_root(AC1_NAME, path)
        experimenters = _choice(experimenter, AC1_EXPERIMENTERS, "experimenter")
        site_list = _choice(sites, AC1_SITES, "sites")
        dt = _positive(dt_ms, "dt_ms")
        fmin_f, fmax_f = _positive(fmin, "fmin"), _positive(fmax, "fmax")
        if not fmax_f > fmin_f:
            raise ValueError(f"fmax={fmax!r} must be above fmin={fmin!r} (Hz)")
        if isinstance(bins_per_octave, bool) or not isinstance(bins_per_octave, (int, np.integer)) \
                or bins_per_octave < 1:
            raise ValueError(f"bins_per_octave must be an int >= 1, got {bins_per_octave!r}")
        window = None if window_ms is None else _positive(window_ms, "window_ms")
        med_ms = _positive(detrend_med_ms, "detrend_med_ms", allow_zero=True)
        gauss_ms = _positive(detrend_gauss_ms, "detrend_gauss_ms", allow_zero=True)
        if gating is None:
            gating = RepeatGating()
        elif not isinstance(gating, RepeatGating):
            raise TypeError(f"gating must be a RepeatGating or None, got {type(gating).__name__}")
        fs = None
        if return_waveform:
            if isinstance(audio_fs, bool) or not isinstance(audio_fs, (int, np.integer)) or audio_fs <= 0:
                raise ValueError(f"audio_fs must be an int > 0 (Hz), got {audio_fs!r}")
            hop_samples(int(audio_fs), dt, "audio_fs")
            fs = int(audio_fs)
        F = int(log_band_centres(fmin_f, fmax_f, int(bins_per_octave)).size)
        super().__init__(str(root), dt)

        lay = self._find_raw(root, experimenters, download)
        raw_files = self._raw_files(lay, experimenters)

        def build() -> Payload:
            return _build(lay, experimenters, site_list, dt, fmin_f, fmax_f, int(bins_per_octave), window,
                          med_ms, gauss_ms, gating, fs)

        params = {"experimenters": experimenters, "sites": site_list, "dt_ms": dt, "fmin": fmin_f, "fmax": fmax_f,
                  "bins_per_octave": int(bins_per_octave), "window_ms": window, "detrend_med_ms": med_ms,
                  "detrend_gauss_ms": gauss_ms, "gating": asdict(gating), "audio_fs": fs}
        self._load_or_build(build, params=params, raw_files=raw_files, cache=cache, name=AC1_NAME)
        self.species = "rat"
        self.hearing_range_hz = (250.0, 76000.0)
        self.experimenters = experimenters
        self.sites = site_list
        self.fmin, self.fmax = fmin_f, fmax_f
        self.bins_per_octave = int(bins_per_octave)
        self.window_ms = window_ms
        self.detrend_med_ms, self.detrend_gauss_ms = med_ms, gauss_ms
        self.gating = gating
        self.return_waveform = bool(return_waveform)
        self.audio_fs = fs
        self.F = F
        self.dt = dt
        kinds = list(dict.fromkeys(m["signal_type"] for m in self.nrn_meta))
        self.signal_type = kinds[0] if len(kinds) == 1 else "mixed"
        if self.signal_type == "mixed":
            warnings.warn("CRCNSAC1Dataset mixes whole-cell neurons (signal 'subthresh', mV) and cell-attached "
                          "neurons (signal 'spikes', a.u.); select one kind with "
                          "select_pop_by_nrn_attr('signal_type', ...) or sites='A1'", RuntimeWarning, stacklevel=2)
        self.validate()

    @staticmethod
    def _find_raw(root: Path, experimenters: tuple[str, ...], download: bool) -> _Layout:
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"path={str(root)!r} is a file; pass the folder holding the ac-1 archives")
        if root.is_dir():
            _extract_present(root, experimenters)
        archives = list(dict.fromkeys(AC1_ARCHIVES[a] for e in experimenters for a in _NEEDS[e]))
        call = f"CRCNSAC1Dataset({str(root)!r}, experimenter={list(experimenters)!r}, download=True)"
        require_raw_files(
            AC1_NAME, root, lambda: _missing(_locate(root), experimenters),
            download=download, fetch=lambda: download_ac1(root, experimenter=experimenters), layout=_LAYOUT,
            fix=crcns_fix(call, archives, AC1_PAGE))
        return _locate(root)

    @staticmethod
    def _raw_files(lay: _Layout, experimenters: tuple[str, ...]) -> list[Path]:
        files: list[Path] = []
        if "wehr" in experimenters:
            files += [p for _, _, p in wehr.stimulus_files(lay.wehr_stimuli)]
            for session in wehr.list_sessions(lay.wehr_results):
                files += session.trial_files()
        if "asari" in experimenters:
            files += asari.segment_files(lay.asari_stimuli)
            for session in asari.list_sessions(list(lay.asari_results)):
                files += session.recording_files()
        return files


def _iter_cells(lay: _Layout, experimenters: tuple[str, ...], sites: tuple[str, ...],
                dropped: list[int]) -> Any:
    """Raw cells of the wanted sites in neuron order; ``dropped[0]`` counts sessions without usable repeats."""
    from tqdm import tqdm

    jobs: list[tuple[str, Any]] = []
    index = None
    if "wehr" in experimenters and "A1" in sites:
        index = wehr.index_stimuli(lay.wehr_stimuli)
        jobs += [("wehr", s) for s in wehr.list_sessions(lay.wehr_results)]
    if "asari" in experimenters:
        jobs += [("asari", s) for s in asari.list_sessions(list(lay.asari_results))]
    for source, session in tqdm(jobs, desc="CRCNS ac-1 sessions", disable=None, leave=False):
        if source == "wehr":
            cell = wehr.read_session(session, index)
        else:
            cell = asari.read_session(session, lay.asari_stimuli, sites)
        if cell is None:
            dropped[0] += 1
        elif cell.groups:
            yield cell


def _stim_tensor(group: RawGroup, T: int, dt: float, fmin: float, fmax: float, bpo: int,
                 window_ms: float | None, audio_fs: int | None, waveform: np.ndarray, sf: float) -> Tensor:
    if audio_fs is None:
        spec, _ = log_spectrogram(waveform, sf, dt, fmin=fmin, fmax=fmax, bins_per_octave=bpo, window_ms=window_ms)
        return spec[:, :T].unsqueeze(0).contiguous()
    wav = torch.from_numpy(waveform.astype(np.float32))
    wav = resample(wav, round(sf), audio_fs)
    return fit_length(wav, T * hop_samples(audio_fs, dt)).unsqueeze(0).contiguous()


def _build(lay: _Layout, experimenters: tuple[str, ...], sites: tuple[str, ...], dt: float, fmin: float,
           fmax: float, bpo: int, window_ms: float | None, med_ms: float, gauss_ms: float, gating: RepeatGating,
           audio_fs: int | None) -> Payload:
    counter = {"range": 0, "step": 0, "xcorr": 0, "kept": 0}
    dropped = [0]
    stim_index: dict[str, int] = {}
    stim_groups: list[RawGroup] = []  # the registering group of each stim (meta, duration, waveform)
    cells: list[tuple[dict, dict[int, np.ndarray]]] = []
    empty_cells = 0
    for cell in _iter_cells(lay, experimenters, sites, dropped):
        kept: dict[int, np.ndarray] = {}
        for group in cell.groups:
            block = clean_group(group, cell.whole_cell, dt, med_ms, gauss_ms, gating, counter)
            group.repeats = []  # release the raw traces
            if block is None:
                continue
            s = stim_index.get(group.key)
            if s is None:
                s = stim_index[group.key] = len(stim_groups)
                stim_groups.append(group)
            if s not in kept:
                kept[s] = block
        if not kept:
            empty_cells += 1
            continue
        meta = dict(cell.meta, signal_type="subthresh" if cell.whole_cell else "spikes")
        cells.append((meta, kept))
    if not cells:
        raise ValueError(f"CRCNS ac-1: no cell of experimenter={list(experimenters)} at sites={list(sites)} kept "
                         "any natural-sound repeat; loosen `gating` or check the files")

    S, N = len(stim_groups), len(cells)
    stims: list[Tensor] = []
    responses: list[list[Tensor]] = []
    mask = torch.zeros((S, N), dtype=torch.bool)
    stim_meta = []
    for s, group in enumerate(stim_groups):
        waveform, sf = group.waveform()
        hop = max(round(dt * sf / 1000.0), 1)
        T = -(-waveform.size // hop)
        T_dur = round(group.duration_ms / dt)
        if T_dur > 0:
            T = min(T, T_dur)
        present = [n for n, (_, kept) in enumerate(cells) if s in kept]
        T = min([T] + [cells[n][1][s].shape[1] for n in present])
        stims.append(_stim_tensor(group, T, dt, fmin, fmax, bpo, window_ms, audio_fs, waveform, sf))
        row = make_sentinels(N)
        for n in present:
            row[n] = torch.from_numpy(np.ascontiguousarray(cells[n][1][s][:, :T]))
            mask[s, n] = True
        responses.append(row)
        stim_meta.append(dict(group.meta, sample_rate=float(sf), n_samples=int(waveform.size)))
    attrs = {"_rejection_counter": counter, "_dropped_cells_empty": dropped[0] + empty_cells}
    return Payload(stims, responses, stim_meta, [m for m, _ in cells], attrs, mask)


def download_ac1(path: str | os.PathLike[str] | None = None, *,
                 experimenter: str | Sequence[str] | None = AC1_EXPERIMENTERS) -> Path:
    """Download and extract the ac-1 archives the requested sources need (once).

    Parameters
    ----------
    path : path-like, optional
        Dataset folder (default ``$DEEPSTRF_DATA/CRCNS_AC1`` or the user data dir).
    experimenter : {'wehr', 'asari'} or iterable of them, default both
        ``'wehr'`` needs ``crcns-ac1.zip`` only; ``'asari'`` needs it plus
        ``crcns-ac1-asari-results-{1,2}.zip``.

    Returns
    -------
    pathlib.Path
        The dataset folder; each archive is kept next to its folder
        ``<path>/<archive stem>/``.

    Raises
    ------
    CredentialsError
        No CRCNS credentials (``CRCNS_USERNAME``/``CRCNS_PASSWORD`` or a
        ``~/.netrc`` entry for ``crcns.org``), or CRCNS rejected them.
    DownloadError, ChecksumError
        Transfer failure or corrupt download.
    DatasetNotFoundError
        ``DEEPSTRF_OFFLINE=1`` and an archive is missing.
    """
    root = data_root(AC1_NAME, path)
    experimenters = _choice(experimenter, AC1_EXPERIMENTERS, "experimenter")
    for name in dict.fromkeys(a for e in experimenters for a in _NEEDS[e]):
        dest = root / name[: -len(".zip")]
        if is_extracted(root / name, dest):
            continue
        archive = fetch_crcns(AC1_ARCHIVES[name], root, known_hash=AC1_REGISTRY[AC1_ARCHIVES[name]])
        extract_zip(archive, dest)
    return root
