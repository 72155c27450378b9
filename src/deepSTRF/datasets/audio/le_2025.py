"""Le, Bjoring & Meliza 2025: zebra finch auditory pallium, auditory restoration of occluded song.

One figshare zip (article 29203457) holds the stimuli (wavs), one pprox JSON
file per single unit and three metadata CSVs. Stims are ERB gammatone
spectrograms computed here (:mod:`._gammatone`); responses are spike counts
binned on the spectrogram frame grid.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ...utils.download import data_root, extract_zip, fetch_figshare
from .._cache import Payload
from .._errors import DatasetFormatError, DatasetNotFoundError
from .._storage import make_sentinels
from ._gammatone import frame_params, gammatone_spectrogram
from ._spikes import bin_trials_by_index
from ._spectrogram import resample_polyphase
from .audio_dataset import AudioNeuralDataset

__all__ = ["Le2025Dataset", "download_le_2025"]

# --------------------------------------------------------------------------- sources and constants

DATASET_NAME = "Le_2025"
PAPER_DOI = "10.1038/s41467-025-63182-y"
FIGSHARE_DOI = "10.6084/m9.figshare.29203457"
FIGSHARE_ARTICLE_ID = "29203457"
FIGSHARE_FILE_ID = 55083911
FIGSHARE_FILENAME = "zebf-auditory-restoration-1.zip"
FIGSHARE_UNPACKED_DIR = "zebf-auditory-restoration-1"
#: Registry checksum of the zip (``None``: use figshare's ``computed_md5``).
KNOWN_HASH: str | None = None

EXPERIMENTS = ("nat8a", "nat8b", "synth8b")
VARIANTS = ("C", "G", "N", "GB", "CB", "GM", "CM")
#: Response folders of each experiment, with the cohort they hold (read in this order).
RESPONSE_DIRS: dict[str, tuple[tuple[str, int], ...]] = {
    "nat8a": (("nat8a-alpha-responses", 1), ("nat8a-beta-responses", 2)),
    "nat8b": (("nat8b-responses", 3),),
    "synth8b": (("synth8b-responses", 3),),
}
#: nat8a file-name condition -> (variant, critical interval).
NAT8A_CONDITIONS: dict[str, tuple[str, int | None]] = {
    "continuous": ("C", None), "gap1": ("G", 1), "gap2": ("G", 2), "noise1": ("N", 1), "noise2": ("N", 2),
    "gapnoise1": ("GB", 1), "gapnoise2": ("GB", 2), "continuousnoise1": ("CB", 1), "continuousnoise2": ("CB", 2),
}
METADATA_FILES = ("metadata/ephys-birds.csv", "metadata/song-birds.csv", "metadata/recordings.csv")
SMOOTH_WINDOW_MS = 21.0

_NAT8A_STEM = re.compile(r"^([^_]+)_([a-z0-9]+)$")
_EP_STEM = re.compile(r"^ep_([^_]+)_(C|G|N|GB|CB|GM|CM)(?:_g([A-Za-z0-9]+))?(?:_snr(-?\d+))?$")
_AGE = re.compile(r"^(?:(\d+)y)?(?:(\d+)d)?$")
_LAYOUT = """\
<path>/ (or <path>/zebf-auditory-restoration-1/)
  metadata/ephys-birds.csv  metadata/song-birds.csv  metadata/recordings.csv
  <experiment>-stimuli/*.wav
  nat8a-alpha-responses/*.pprox  nat8a-beta-responses/*.pprox  (nat8a)
  nat8b-responses/*.pprox  (nat8b)    synth8b-responses/*.pprox  (synth8b)"""


# --------------------------------------------------------------------------- parsing helpers


def _parse_stem(stem: str, experiment: str) -> dict | None:
    """``motif``, ``variant``, ``critical_interval`` of a wav stem, or ``None`` when it does not parse."""
    if experiment == "nat8a":
        match = _NAT8A_STEM.match(stem)
        if match is None or match.group(2) not in NAT8A_CONDITIONS:
            return None
        variant, ci = NAT8A_CONDITIONS[match.group(2)]
        return {"motif": match.group(1), "variant": variant, "critical_interval": ci}
    match = _EP_STEM.match(stem)
    if match is None:
        return None
    motif, variant, tag, _snr = match.groups()
    ci: int | str | None
    if variant in ("C", "CM") or tag is None:
        ci = None
    else:
        ci = int(tag) if tag.isdigit() else tag
    return {"motif": motif, "variant": variant, "critical_interval": ci}


def _read_csv(path: Path) -> list[dict[str, str]] | None:
    if not path.is_file():
        warnings.warn(f"{path} is missing: the metadata it provides will be 'unknown'/None/NaN",
                      UserWarning, stacklevel=4)
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in csv.DictReader(fh)]


def _age_days(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    match = _AGE.match(text.strip())
    if not text.strip() or match is None or (match.group(1) is None and match.group(2) is None):
        return None
    return int(match.group(1) or 0) * 365 + int(match.group(2) or 0)


def _area(text: Any) -> str:
    text = str(text).strip() if text is not None else ""
    return "unknown" if text in ("", "N/A") else text


class _Metadata:
    """The three metadata CSVs, indexed."""

    def __init__(self, folder: Path) -> None:
        ephys = _read_csv(folder / METADATA_FILES[0]) or []
        songs = _read_csv(folder / METADATA_FILES[1]) or []
        recs = _read_csv(folder / METADATA_FILES[2]) or []
        self.birds = {r.get("bird", ""): r for r in ephys if r.get("bird")}
        self.recordings = {r.get("site", ""): r for r in recs if r.get("site")}
        self.gaps: dict[tuple[str, int], tuple[float, float]] = {}
        self.song_groups: list[tuple[str, str]] = []  # (song bird, rearing group)
        for row in songs:
            bird = row.get("bird", "")
            code = row.get("nat8b_encoding") or row.get("nat8b_coding") or ""
            if bird:
                self.song_groups.append((bird, row.get("group", "")))
            try:
                gap, start, stop = int(row.get("gap", "")), float(row.get("gap_start", "")), float(row.get("gap_stop", ""))
            except ValueError:
                continue
            for key in (bird, code):
                if key:
                    self.gaps[(key, gap)] = (start / 1000.0, stop / 1000.0)

    def familiar(self, group: Any) -> list[str]:
        if not isinstance(group, str) or not group:
            return []
        return sorted({bird for bird, g in self.song_groups if g == group})


def _load_pprox(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DatasetFormatError(str(path), "JSON", f"unparseable text ({exc})", "a pprox JSON document") from None
    if not isinstance(doc, dict):
        raise DatasetFormatError(str(path), "JSON", type(doc).__name__, "a JSON object")
    if not isinstance(doc.get("pprox"), list):
        raise DatasetFormatError(str(path), "pprox", repr(type(doc.get("pprox")).__name__), "a list of trials")
    return doc


def _is_legacy(doc: dict) -> bool:
    schema = str(doc.get("$schema", ""))
    return schema.endswith(("pprox.json#", "pprox.json"))


def _trials(path: Path, doc: dict, legacy: bool, dt_ms: float) -> dict[str, tuple[list[np.ndarray], list[float]]]:
    """Stim key -> (spike times per trial, onset per trial), in the unit of ``dt`` (ms legacy, s stimtrial)."""
    out: dict[str, tuple[list[np.ndarray], list[float]]] = {}
    for i, trial in enumerate(doc["pprox"]):
        where = f"pprox[{i}]"
        if not isinstance(trial, dict):
            raise DatasetFormatError(str(path), where, type(trial).__name__, "a trial object")
        try:
            if legacy:
                key = f"{trial['stimulus']}_{trial['condition']}"
                times = np.asarray(trial["event"], dtype=np.float64).reshape(-1)
                onset = float(trial.get("stim_on", 0.0) or 0.0)
            else:
                stim = trial["stimulus"]
                key = stim["name"] if isinstance(stim, dict) else PurePosixPath(str(stim)).stem
                times = np.asarray(trial["events"], dtype=np.float64).reshape(-1)
                onset = 0.0
        except KeyError as exc:
            raise DatasetFormatError(str(path), f"{where}.{exc.args[0]}", "no such field",
                                     "legacy pprox: stimulus, condition, event (ms); stimtrial: stimulus, events (s)") from None
        except (TypeError, ValueError) as exc:
            raise DatasetFormatError(str(path), f"{where} spike times", f"non-numeric values ({exc})",
                                     "a list of numbers") from None
        entry = out.setdefault(str(key), ([], []))
        entry[0].append(times)
        entry[1].append(onset)
    return out


def _bin(trials: tuple[list[np.ndarray], list[float]], T: int, dt: float) -> Tensor:
    times, onsets = trials
    index = np.repeat(np.arange(len(times)), [t.size for t in times])
    spikes = np.concatenate(times) if times else np.zeros(0)
    return bin_trials_by_index(spikes, index, len(times), T, dt, t0=np.asarray(onsets, dtype=np.float64))


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise DatasetFormatError(str(path), "audio", f"an unreadable file ({exc})", "a PCM wav file") from None
    return data.mean(axis=1), int(rate)


# --------------------------------------------------------------------------- the dataset


class Le2025Dataset(AudioNeuralDataset):
    """Zebra finch auditory pallium single units listening to song with occluded syllables.

    Le B., Bjoring M.C., Meliza C.D. (2025). The zebra finch auditory cortex
    reconstructs occluded syllables in conspecific song. *Nature
    Communications* 16:8452. DOI 10.1038/s41467-025-63182-y. Data: figshare
    article 29203457 (DOI 10.6084/m9.figshare.29203457).

    Anaesthetised adult zebra finches (NCM/L3, L2a/b, CM/L1). 8 song motifs
    (8 scrambled-syntax pseudo-motifs in ``synth8b``), each with two critical
    intervals (CIs) and up to 7 variants (``VARIANTS``: C continuous, G gap,
    N noise burst alone, GB gap+burst, CB continuous+burst, GM/CM gap/continuous
    masked).

    On-disk layout (``path``, or ``path/zebf-auditory-restoration-1/``)::

        metadata/ephys-birds.csv  metadata/song-birds.csv  metadata/recordings.csv
        <experiment>-stimuli/*.wav
        nat8a-alpha-responses/*.pprox  nat8a-beta-responses/*.pprox   (nat8a)
        nat8b-responses/*.pprox                                       (nat8b)
        synth8b-responses/*.pprox                                     (synth8b)

    Parameters
    ----------
    path : str or path-like, optional
        The unpacked folder, or its parent (the download folder); default the
        data root ``Le_2025``.
    download : bool, default False
        Fetch and unzip the figshare archive (~105 MB) when missing.
    experiment : {'nat8a', 'nat8b', 'synth8b'}, default 'nat8b'
        ``nat8a`` merges cohorts 1 and 2 (``nrn_meta['cohort']`` tells them apart).
    dt_ms : float, default 5.0
        Bin width = spectrogram hop, in ms.
    n_bands : int, default 50
        Gammatone filters (``F``).
    fmin, fmax : float, default 1000.0, 8000.0
        Filter-bank range in Hz (see :func:`._gammatone.erb_space`).
    window_ms : float, default 2.5
        Spectrogram frame length in ms.
    smooth : bool, default True
        Hann smoothing of the responses with a 21 ms window (unit gain).
    keep_areas : iterable of str, optional
        Keep only units whose ``nrn_meta['area']`` is listed.
    compute_reliability : bool, default True
        Store each unit's Sahani–Linden ``signal_power``, ``noise_power`` and
        ``snr`` (length-weighted over its stims, after smoothing) in ``nrn_meta``.
    return_waveform : bool, default False
        Stims are the waveforms ``(1, T * hop)`` at ``audio_fs`` instead of
        spectrograms; responses are unchanged (binned on the frame grid).
    audio_fs : int, default 48000
        Waveform sample rate (``audio_fs * dt_ms / 1000`` must be an integer);
        ``self.audio_fs`` is ``None`` in spectrogram mode.
    cache : bool, default True
        Use the processed-data cache.

    Attributes
    ----------
    stims : list of Tensor
        ``(1, n_bands, T_s)`` float32: ``ln(1 + RMS amplitude)`` of each filter
        over ``window_ms`` frames every ``dt_ms``, rows low to high frequency,
        ``T_s = 1 + floor((n_samples - nwin) / hop)``; or ``(1, T_s * hop)`` waveforms.
    responses : list of list of Tensor
        ``(R, T_s)`` float32 spike counts per bin (smoothed by default), or the
        ``(1, 1)`` NaN sentinel.
    stim_meta : list of dict
        ``name``, ``motif``, ``critical_interval``, ``variant``, ``syntax``,
        ``experiment``, ``sample_rate_hz``, ``duration_s``, ``ci_onset_s``, ``ci_offset_s``.
    nrn_meta : list of dict
        ``cell_id``, ``animal_id``, ``animal_uuid``, ``cohort``, ``experiment``,
        ``area``, ``hemisphere``, ``familiar_motifs``, ``sex``, ``age_days``,
        ``pprox_file`` (+ ``signal_power``, ``noise_power``, ``snr``).

    Notes
    -----
    Same S, N, T, spike counts and metadata as deepSTRF 0.1.0 on the same
    files; spectrograms equal ``gammatone.gtgram`` (1.x) to float precision.
    Deliberate differences:

    * **smoothing has unit gain**: the Hann kernel is normalised to sum 1, so
      smoothed values are the reference's divided by ``(K - 1) / 2`` (÷2 at
      dt = 5 ms, ÷10 at dt = 1 ms); signal and noise powers scale by the
      square of that factor, the SNR does not change;
    * **waveform mode works** (the reference binned the responses on the audio
      sample grid and always failed): responses are binned on the spectrogram
      frame grid and each waveform is cropped/zero-padded to ``T_s * hop``
      samples, resampled with ``scipy.signal.resample_poly``;
    * ``path=None`` means the data root (the reference required
      ``download=True``); ``path`` may be the unpacked folder or its parent,
      with or without ``download``;
    * the filter bank is our scipy port (no ``gammatone`` package);
    * errors are :class:`DatasetNotFoundError`/:class:`DatasetFormatError`
      naming the file and field, not ``FileNotFoundError``/``RuntimeError``.
    """

    FORMAT_VERSION = 1

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        experiment: str = "nat8b",
        dt_ms: float = 5.0,
        n_bands: int = 50,
        fmin: float = 1000.0,
        fmax: float = 8000.0,
        window_ms: float = 2.5,
        smooth: bool = True,
        keep_areas: Iterable[str] | None = None,
        compute_reliability: bool = True,
        return_waveform: bool = False,
        audio_fs: int = 48000,
        cache: bool = True,
    ) -> None:
        if experiment not in EXPERIMENTS:
            raise ValueError(f"experiment={experiment!r} is not valid; choose one of {EXPERIMENTS}")
        for name, value in (("dt_ms", dt_ms), ("fmin", fmin), ("fmax", fmax), ("window_ms", window_ms)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
            raise ValueError(f"n_bands must be an int >= 1, got {n_bands!r}")
        if not fmin < fmax:
            raise ValueError(f"fmin={fmin} must be below fmax={fmax}")
        if isinstance(keep_areas, str):
            raise TypeError(f"keep_areas must be an iterable of area names, e.g. [{keep_areas!r}], not a string")
        areas = None if keep_areas is None else sorted({str(a) for a in keep_areas})
        hop_a = None
        if return_waveform:
            if isinstance(audio_fs, bool) or not isinstance(audio_fs, int) or audio_fs <= 0:
                raise ValueError(f"audio_fs must be a positive int (Hz), got {audio_fs!r}")
            ratio = audio_fs * float(dt_ms) / 1000.0
            if round(ratio) < 1 or abs(ratio - round(ratio)) > 1e-9:
                raise ValueError(f"audio_fs * dt_ms / 1000 = {ratio:g} is not a positive integer; choose "
                                 "audio_fs and dt_ms so that one bin spans a whole number of samples")
            hop_a = int(round(ratio))

        root = data_root(DATASET_NAME, path)
        folder = self._resolve(root, experiment)
        if folder is None:
            if not download:
                raise DatasetNotFoundError(
                    DATASET_NAME, str(root), [f"{FIGSHARE_UNPACKED_DIR}/{experiment}-stimuli/*.wav"], layout=_LAYOUT,
                    fix=f"Le2025Dataset({str(root)!r}, download=True), or "
                        f"deepSTRF.datasets.audio.le_2025.download_le_2025({str(root)!r}) "
                        f"(figshare {FIGSHARE_DOI}, {FIGSHARE_FILENAME}, ~105 MB)")
            download_le_2025(root)
            folder = self._resolve(root, experiment)
            if folder is None:
                raise DatasetFormatError(str(root / FIGSHARE_UNPACKED_DIR), f"{experiment}-stimuli",
                                         "no such folder after download", "the layout of the figshare archive")
        super().__init__(str(folder), float(dt_ms))

        wavs = sorted((folder / f"{experiment}-stimuli").glob("*.wav"), key=lambda p: p.name)
        pprox = []
        for dirname, cohort in RESPONSE_DIRS[experiment]:
            d = folder / dirname
            if not d.is_dir():
                warnings.warn(f"{d} is missing: no {experiment} units of cohort {cohort}", UserWarning, stacklevel=2)
                continue
            files = sorted((p for p in d.iterdir() if p.suffix == ".pprox" and p.is_file()), key=lambda p: p.name)
            if not files:
                warnings.warn(f"{d} holds no .pprox file", UserWarning, stacklevel=2)
            pprox += [(p, cohort) for p in files]
        if not wavs:
            raise DatasetNotFoundError(DATASET_NAME, str(folder), [f"{experiment}-stimuli/*.wav"], layout=_LAYOUT,
                                       fix=f"download_le_2025({str(root)!r}) and check the archive was fully unpacked")
        if not pprox:
            raise DatasetNotFoundError(DATASET_NAME, str(folder),
                                       [f"{d}/*.pprox" for d, _ in RESPONSE_DIRS[experiment]], layout=_LAYOUT,
                                       fix=f"download_le_2025({str(root)!r}) and check the archive was fully unpacked")
        meta_files = [folder / m for m in METADATA_FILES if (folder / m).is_file()]
        params = {"experiment": experiment, "dt_ms": float(dt_ms), "n_bands": n_bands, "fmin": float(fmin),
                  "fmax": float(fmax), "window_ms": float(window_ms), "smooth": bool(smooth), "keep_areas": areas,
                  "compute_reliability": bool(compute_reliability), "return_waveform": bool(return_waveform),
                  "audio_fs": audio_fs if return_waveform else None}

        def build() -> Payload:
            return self._build(folder, experiment, wavs, pprox, n_bands, float(fmin), float(fmax),
                               float(window_ms), bool(smooth), areas, bool(compute_reliability),
                               audio_fs if return_waveform else None, hop_a)

        self._load_or_build(build, params=params, raw_files=wavs + [p for p, _ in pprox] + meta_files,
                            cache=cache, name=DATASET_NAME)
        self.experiment = experiment
        self.F = n_bands
        self.fmin, self.fmax, self.window_ms = float(fmin), float(fmax), float(window_ms)
        self.return_waveform = bool(return_waveform)
        self.audio_fs = audio_fs if return_waveform else None
        self.species = "zebra finch"
        self.behavioral_state = "anesthetized"
        self.hearing_range_hz = (250.0, 8000.0)
        self.validate()

    # ------------------------------------------------------------------ building
    @staticmethod
    def _resolve(root: Path, experiment: str) -> Path | None:
        for candidate in (root, root / FIGSHARE_UNPACKED_DIR):
            if (candidate / f"{experiment}-stimuli").is_dir():
                return candidate
        return None

    def _build(self, folder: Path, experiment: str, wavs: list[Path], pprox: list[tuple[Path, int]],
               n_bands: int, fmin: float, fmax: float, window_ms: float, smooth: bool,
               areas: list[str] | None, reliability: bool, audio_fs: int | None, hop_a: int | None) -> Payload:
        dt_ms = float(self.dt)
        meta = _Metadata(folder)
        # ---- stims
        entries = []
        for wav in wavs:
            info = _parse_stem(wav.stem, experiment)
            if info is None:
                warnings.warn(f"skipping {wav}: its name does not follow the {experiment} naming scheme",
                              UserWarning, stacklevel=3)
                continue
            entries.append((wav, info))
        if not entries:
            raise DatasetFormatError(str(folder / f"{experiment}-stimuli"), "file names", "no parseable wav name",
                                     "names like 'ep_nat8mk0_C.wav' (nat8b/synth8b) or 'B189_continuous.wav' (nat8a)")
        entries.sort(key=lambda e: (e[1]["motif"], (1, "") if e[1]["critical_interval"] is None
                                    else (0, str(e[1]["critical_interval"])), e[1]["variant"]))
        stims: list[Tensor] = []
        stim_meta: list[dict] = []
        T_of: dict[str, int] = {}
        for wav, info in tqdm(entries, desc=f"Le 2025 {experiment}: stimuli", unit="wav", disable=None, leave=False):
            x, rate = _read_wav(wav)
            if fmax >= rate / 2:
                raise ValueError(f"fmax={fmax} Hz is not below the Nyquist frequency of {wav} ({rate} Hz)")
            _, _, T = frame_params(rate, window_ms, dt_ms, x.size)
            if T < 1:
                raise DatasetFormatError(str(wav), "samples", f"{x.size} samples",
                                         f"at least one {window_ms} ms frame")
            if audio_fs is None:
                spec = gammatone_spectrogram(x, rate, n_bands, fmin, fmax, window_ms, dt_ms)
                stims.append(torch.from_numpy(np.log1p(np.maximum(spec, 0.0)).astype(np.float32)).unsqueeze(0))
            else:
                stims.append(self._waveform(x, rate, T, audio_fs, hop_a))
            ci, motif = info["critical_interval"], info["motif"]
            gap = meta.gaps.get((motif, ci)) if (experiment != "synth8b" and isinstance(ci, int)
                                                  and info["variant"] not in ("C", "CM")) else None
            T_of[wav.stem] = T
            stim_meta.append({"name": wav.stem, "motif": motif, "critical_interval": ci, "variant": info["variant"],
                              "syntax": "scrambled" if experiment == "synth8b" else "natural",
                              "experiment": experiment, "sample_rate_hz": rate, "duration_s": x.size / rate,
                              "ci_onset_s": gap[0] if gap else math.nan, "ci_offset_s": gap[1] if gap else math.nan})
        names = [m["name"] for m in stim_meta]
        # ---- units
        units: list[tuple[dict, dict[str, Tensor]]] = []
        for path, cohort in tqdm(pprox, desc=f"Le 2025 {experiment}: units", unit="unit", disable=None, leave=False):
            doc = _load_pprox(path)
            legacy = _is_legacy(doc)
            trials = _trials(path, doc, legacy, dt_ms)
            dt = dt_ms if legacy else dt_ms / 1000.0
            cells = {name: _bin(trials[name], T_of[name], dt) for name in names if name in trials}
            if not cells:
                warnings.warn(f"skipping {path.name}: none of its trials names a wav of {experiment}-stimuli",
                              UserWarning, stacklevel=3)
                continue
            nrn = self._unit_meta(path, doc, legacy, cohort, experiment, meta)
            if areas is not None and nrn["area"] not in areas:
                continue
            units.append((nrn, cells))
        if not units:
            if areas is not None:
                raise ValueError(f"keep_areas={areas} keeps no unit of {experiment}")
            raise DatasetFormatError(str(folder), "pprox trials", f"no unit with a trial of a {experiment} wav",
                                     "pprox files whose trials name the wavs of the stimuli folder")
        N = len(units)
        mask = torch.zeros((len(names), N), dtype=torch.bool)
        responses = []
        for s, name in enumerate(names):
            row = make_sentinels(N)
            for n, (_, cells) in enumerate(units):
                if name in cells:
                    row[n] = cells[name]
                    mask[s, n] = True
            responses.append(row)
        nrn_meta = [nrn for nrn, _ in units]
        payload = Payload(stims, responses, stim_meta, nrn_meta, {}, mask)
        # smoothing and reliability run once here; their result is what the cache stores
        with self._holding_built(payload):
            if smooth:
                self.smooth_responses(SMOOTH_WINDOW_MS)
            if reliability:
                self._reliability()
        return payload

    @staticmethod
    def _waveform(x: np.ndarray, rate: int, T: int, audio_fs: int, hop_a: int) -> Tensor:
        x = resample_polyphase(x, rate, audio_fs)
        out = np.zeros(T * hop_a, dtype=np.float32)
        n = min(out.size, x.size)
        out[:n] = x[:n]
        return torch.from_numpy(out).unsqueeze(0)

    @staticmethod
    def _unit_meta(path: Path, doc: dict, legacy: bool, cohort: int, experiment: str, meta: _Metadata) -> dict:
        stem = path.stem
        prefix = stem.split("_", 1)[0]
        if legacy:
            animal = str(doc.get("bird") or prefix)
            bird = meta.birds.get(animal, {})
            uuid = doc.get("bird-uuid") or bird.get("uuid") or None
            area = _area(doc.get("location"))
            hemisphere = doc.get("hemisphere") or None
            familiar = meta.familiar(doc.get("familiar"))
            sex = bird.get("sex") or doc.get("bird-sex") or None
            age = _age_days(bird.get("age"))
            if age is None:
                age = _age_days(doc.get("bird-age"))
        else:
            animal = prefix
            bird = meta.birds.get(animal, {})
            uuid = doc.get("bird") or bird.get("uuid") or None
            site = meta.recordings.get("_".join(stem.split("_")[:3]), {})
            area = _area(site.get("area"))
            hemisphere = site.get("hemisphere") or None
            familiar = []
            sex = bird.get("sex") or None
            age = _age_days(bird.get("age"))
        return {"cell_id": stem, "animal_id": animal, "animal_uuid": uuid, "cohort": cohort,
                "experiment": experiment, "area": area, "hemisphere": hemisphere, "familiar_motifs": familiar,
                "sex": sex, "age_days": age, "pprox_file": path.name}

    def _reliability(self) -> None:
        """Sahani–Linden signal/noise power and SNR per unit, length-weighted across its stims."""
        from ...metrics._reliability import cell_signal_noise_power

        N = self.N_neurons
        sp_sum = torch.zeros(N, dtype=torch.float64)
        np_sum = torch.zeros(N, dtype=torch.float64)
        weight = torch.zeros(N, dtype=torch.float64)
        with torch.no_grad():
            for x, _, owner in self._cell_batches():
                _, R, T = x.shape
                if R < 2 or T < 2:
                    continue
                sp, noise = cell_signal_noise_power(x.double())
                sp_sum.index_add_(0, owner, T * sp)
                np_sum.index_add_(0, owner, T * noise)
                weight.index_add_(0, owner, torch.full_like(sp, float(T)))
        nan = torch.tensor(math.nan, dtype=torch.float64)
        sp_n = torch.where(weight > 0, sp_sum / weight.clamp_min(1), nan)
        np_n = torch.where(weight > 0, np_sum / weight.clamp_min(1), nan)
        snr = sp_n / np_n
        for n, (a, b, c) in enumerate(zip(sp_n.tolist(), np_n.tolist(), snr.tolist())):
            self.nrn_meta[n].update(signal_power=a, noise_power=b, snr=c)

    # ------------------------------------------------------------------ selectors
    def select_variant(self, variant: str) -> list[int]:
        """Select the stims of one variant (``'C'``, ``'G'``, ... see ``VARIANTS``); returns their indices."""
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r} is not one of {VARIANTS}")
        return self.select_stims_by_attr("variant", variant)

    def select_motif(self, motif: str) -> list[int]:
        """Select the stims of one motif (e.g. ``'nat8mk0'``, ``'B189'``); returns their indices."""
        return self.select_stims_by_attr("motif", motif)

    def select_critical_interval(self, ci: int | str | None) -> list[int]:
        """Select the stims whose ``critical_interval`` equals ``ci``; returns their indices."""
        return self.select_stims_by_attr("critical_interval", ci)

    def select_restoration_quartet(self, motif: str, ci: int | str,
                                   variants: Sequence[str] = ("C", "CB", "GB", "GM")) -> list[int]:
        """Select the stims of ``motif`` with a listed variant at critical interval ``ci``.

        C and CM (CI-independent) are kept whatever their CI.

        Returns
        -------
        list of int
            The selected stim indices, sorted (also stored in ``S_sel``).
        """
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"variants {bad} are not in {VARIANTS}")
        chosen = [s for s, m in enumerate(self.stim_meta)
                  if m.get("motif") == motif and m.get("variant") in variants
                  and (m.get("variant") in ("C", "CM") or m.get("critical_interval") == ci)]
        return self._set_stims(sorted(chosen), f"select_restoration_quartet({motif!r}, {ci!r})")


# --------------------------------------------------------------------------- download


def download_le_2025(dest: str | os.PathLike[str] | None = None) -> str:
    """Download and unzip the Le 2025 figshare archive.

    Parameters
    ----------
    dest : path-like, optional
        Download folder; default the data root ``Le_2025``.

    Returns
    -------
    str
        The unpacked folder ``<dest>/zebf-auditory-restoration-1`` (pass it,
        or ``dest``, as ``path`` to :class:`Le2025Dataset`).

    Raises
    ------
    ChecksumError
        The zip does not match figshare's ``computed_md5`` (it is deleted).
    DownloadError, DatasetNotFoundError
        Network failure, or ``DEEPSTRF_OFFLINE`` set with the zip missing.

    Notes
    -----
    Nothing is fetched when the unpacked folder already exists. The zip
    (~105 MB) is kept next to it.
    """
    root = data_root(DATASET_NAME, dest)
    inner = root / FIGSHARE_UNPACKED_DIR
    if inner.is_dir():
        return str(inner)
    archive = fetch_figshare(FIGSHARE_ARTICLE_ID, FIGSHARE_FILENAME, root, KNOWN_HASH, file_id=FIGSHARE_FILE_ID)
    extract_zip(archive, root)
    if not inner.is_dir():
        raise DatasetFormatError(str(archive), "layout", f"no folder {FIGSHARE_UNPACKED_DIR}/ after unzipping",
                                 f"the archive to unpack to {FIGSHARE_UNPACKED_DIR}/")
    return str(inner)
