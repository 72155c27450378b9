"""Espejo et al. 2019: ferret A1, natural sounds (NAT) and vocalization-modulated noise (VMN).

The data are NEMS recordings, one ``<site>_<hash>.tgz`` archive per recording
session, in two disjoint releases on Zenodo (record 3445557). The loader reads
the archives in place (no temporary extraction), bins the spike times of every
cell on the 10 ms grid of the stored stimulus matrices, and caches the result.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tarfile
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ...utils.download import data_root, extract_tar, fetch_url, fetch_zenodo, host_url, is_offline
from .._cache import Payload
from .._errors import DatasetFormatError, DatasetNotFoundError, DownloadError
from .._storage import make_sentinels
from ._spikes import bin_trials_by_index
from ._spectrogram import read_wav_mono
from .audio_dataset import AudioNeuralDataset

__all__ = ["EspejoDataset", "download_espejo", "download_espejo_nat_waveforms"]

# --------------------------------------------------------------------------- sources and constants

DATASET_NAME = "Espejo"
ESPEJO_ZENODO_RECORD = 3445557
ESPEJO_DOI = "10.1371/journal.pcbi.1007430"
ESPEJO_DATA_DOI = "10.5281/zenodo.3445557"


@dataclass(frozen=True)
class _Release:
    archive: str
    subdir: str
    F: int
    stimfmt: str


#: The two releases: outer Zenodo archive, folder of the per-site archives, F, NEMS ``stimfmt``.
RELEASES: dict[str, _Release] = {
    "nat": _Release("A1_natural_sounds.tgz", "A1_natural_sounds/NAT", 18, "ozgf"),
    "vmn": _Release("A1_voc_mod_noise.tgz", "A1_voc_mod_noise/VMN", 2, "envelope"),
}
#: Registry checksums of the outer archives (``None``: use the md5 Zenodo publishes).
KNOWN_HASHES: dict[str, str | None] = {"A1_natural_sounds.tgz": None, "A1_voc_mod_noise.tgz": None}

#: Silence before the sound in every stored window, in seconds.
PRESTIM_SILENCE_S = 0.5
#: Native sample rate of the NAT wavs.
NATIVE_WAV_FS = 44100
#: Bin width fixed by the stored 100 Hz matrices.
DT_MS = 10.0
_FS = 100

#: Raw NAT waveforms live in LBHB's baphy repository (not in the Zenodo deposit).
BAPHY_SOUNDS_PATH = "lbhb/baphy/raw/master/Config/lbhb/SoundObjects/%40NaturalSounds"
#: Sub-folders probed in this order; the first that has the file wins.
WAV_SUBDIRS = ("sounds_set3", "sounds_set4", "sounds_set2", "sounds_set6", "sounds_set7",
               "sounds_set8", "sounds", "Sounds_set3")
WAV_DIR = "nat_waveforms"

SUBSETS = ("all", "estimation", "test")

_CELL_ID = re.compile(r"^([A-Za-z]+\d+[A-Za-z]?)-([A-Za-z]*\d+)(?:-(\d+))?$")
_LAYOUT = """\
<path>/A1_natural_sounds/NAT/<site>_<hash>.tgz   (stimuli='nat')
<path>/A1_voc_mod_noise/VMN/<site>_<hash>.tgz    (stimuli='vmn')
<path>/nat_waveforms/<file>.wav                  (return_waveform=True only)"""


# --------------------------------------------------------------------------- one NEMS recording


@dataclass
class _Recording:
    """What the loader needs from one ``<site>_<hash>.tgz``."""

    archive: Path
    chans: list[str]
    epochs: list[tuple[str, float, float]]  # STIM_ rows in file order: (name, start_s, end_s)
    stims: dict[str, np.ndarray]  # name -> (F, T) matrix
    spikes: dict[str, np.ndarray] = field(default_factory=dict)  # PointProcess: cell -> spike times (s)
    raster: np.ndarray | None = None  # RasterizedSignal: (T_total, N_site)


def _members(archive: Path) -> dict[str, tuple[str, bytes]]:
    """Read the files of one recording archive: suffix -> (member name, bytes)."""
    wanted = (".meta.json", ".resp.json", ".resp.epoch.csv", ".resp.h5", ".resp.csv", ".stim.h5", ".stim.csv")
    found: dict[str, tuple[str, bytes]] = {}
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                suffix = next((s for s in wanted if base.endswith(s)), None)
                if suffix is None:
                    continue
                if suffix in found:
                    raise DatasetFormatError(str(archive), f"*{suffix}", f"two files ({found[suffix][0]!r} and "
                                             f"{member.name!r})", "exactly one per recording")
                fh = tf.extractfile(member)
                found[suffix] = (member.name, fh.read() if fh is not None else b"")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DatasetFormatError(str(archive), "archive", f"a truncated or unreadable tar.gz ({exc})",
                                 "a NEMS recording archive; delete the release folder and download it again") from exc
    for suffix in (".meta.json", ".resp.json", ".resp.epoch.csv"):
        if suffix not in found:
            raise DatasetFormatError(str(archive), f"<rec>{suffix}", "no such member", "one file per recording")
    if ".resp.h5" not in found and ".resp.csv" not in found:
        raise DatasetFormatError(str(archive), "<rec>.resp.h5", "neither .resp.h5 nor .resp.csv",
                                 "the response signal of the recording")
    if ".stim.h5" not in found and ".stim.csv" not in found:
        raise DatasetFormatError(str(archive), "<rec>.stim.h5", "neither .stim.h5 nor .stim.csv",
                                 "the stimulus signal of the recording")
    return found


def _json(archive: Path, member: tuple[str, bytes]) -> dict:
    where = f"{archive}:{member[0]}"
    try:
        doc = json.loads(member[1].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DatasetFormatError(where, "JSON", f"unparseable text ({exc})", "a JSON object") from None
    if not isinstance(doc, dict):
        raise DatasetFormatError(where, "JSON", type(doc).__name__, "a JSON object")
    return doc


def _epochs(archive: Path, member: tuple[str, bytes]) -> tuple[list[tuple[str, float, float]], dict[str, int]]:
    """STIM_ rows of the epoch table (file order) and every STIM_ label's occurrence count."""
    where = f"{archive}:{member[0]}"
    reader = csv.DictReader(io.StringIO(member[1].decode("utf-8", "replace")))
    if reader.fieldnames is None or not {"start", "end", "name"} <= set(reader.fieldnames):
        raise DatasetFormatError(where, "header", repr(reader.fieldnames), "columns start,end,name")
    rows: list[tuple[str, float, float]] = []
    for i, row in enumerate(reader, start=2):
        name = row["name"] or ""
        if not name.startswith("STIM_"):
            continue
        try:
            start, end = float(row["start"]), float(row["end"])
        except (TypeError, ValueError):
            raise DatasetFormatError(where, f"line {i} start/end", f"{row['start']!r}, {row['end']!r}",
                                     "times in seconds") from None
        if not end > start:
            raise DatasetFormatError(where, f"line {i} end", f"end={end} <= start={start}", "end > start")
        rows.append((name, start, end))
    counts: dict[str, int] = {}
    for name, _, _ in rows:
        counts[name] = counts.get(name, 0) + 1
    return rows, counts


def _csv_matrix(archive: Path, member: tuple[str, bytes], columns: int | None) -> np.ndarray:
    where = f"{archive}:{member[0]}"
    try:
        data = np.loadtxt(io.StringIO(member[1].decode("utf-8")), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DatasetFormatError(where, "values", f"unparseable CSV ({exc})", "comma-separated floats") from None
    if columns is not None and data.shape[1] != columns:
        raise DatasetFormatError(where, "columns", f"{data.shape[1]} columns", f"{columns}")
    return data


def _read_recording(archive: Path, stimfmt: str, F: int, wanted_cells: set[str] | None) -> _Recording:
    """Parse one NEMS archive (only the cells in ``wanted_cells`` when given)."""
    import h5py

    files = _members(archive)
    meta = _json(archive, files[".meta.json"])
    if meta.get("stimfmt") != stimfmt:
        raise DatasetFormatError(f"{archive}:{files['.meta.json'][0]}", "stimfmt", repr(meta.get("stimfmt")),
                                 f"{stimfmt!r}: this archive belongs to the other release (wrong folder?)")
    resp = _json(archive, files[".resp.json"])
    where = f"{archive}:{files['.resp.json'][0]}"
    chans = resp.get("chans")
    if not isinstance(chans, list) or not chans or not all(isinstance(c, str) for c in chans):
        raise DatasetFormatError(where, "chans", repr(chans)[:80], "a non-empty list of cell ids")
    if resp.get("fs") != _FS:
        raise DatasetFormatError(where, "fs", repr(resp.get("fs")), f"{_FS} (Hz)")
    epochs, _ = _epochs(archive, files[".resp.epoch.csv"])
    rec = _Recording(archive, chans, epochs, {})

    played = {name for name, _, _ in epochs}
    if ".stim.h5" in files:
        name, data = files[".stim.h5"]
        try:
            with h5py.File(io.BytesIO(data), "r") as h5:
                for key in h5.keys():
                    if key in played:
                        mat = np.asarray(h5[key])
                        if mat.ndim != 2 or mat.shape[0] != F:
                            raise DatasetFormatError(f"{archive}:{name}", key, f"shape {mat.shape}", f"({F}, T)")
                        rec.stims[key] = mat
        except OSError as exc:
            raise DatasetFormatError(f"{archive}:{name}", "HDF5", f"an unreadable file ({exc})", "an HDF5 file") from None
    else:
        full = _csv_matrix(archive, files[".stim.csv"], F)
        for stim, start, end in epochs:  # first occurrence defines the matrix
            if stim not in rec.stims:
                rec.stims[stim] = full[round(start * _FS):round(end * _FS)].T.copy()

    cells = [c for c in chans if wanted_cells is None or c in wanted_cells]
    if ".resp.h5" in files:
        name, data = files[".resp.h5"]
        try:
            with h5py.File(io.BytesIO(data), "r") as h5:
                for cell in cells:
                    if cell not in h5:
                        raise DatasetFormatError(f"{archive}:{name}", cell, "no dataset",
                                                 "one 1-D dataset of spike times (s) per cell id in 'chans'")
                    rec.spikes[cell] = np.sort(np.asarray(h5[cell], dtype=np.float64).reshape(-1))
        except OSError as exc:
            raise DatasetFormatError(f"{archive}:{name}", "HDF5", f"an unreadable file ({exc})", "an HDF5 file") from None
    else:
        rec.raster = _csv_matrix(archive, files[".resp.csv"], len(chans))
    return rec


def _rows(rec: _Recording, cell: str, occurrences: list[tuple[float, float]], T: int) -> Tensor:
    """``(R, T)`` counts of one cell for the given occurrence windows (cut or zero-padded to ``T``)."""
    lengths = np.array([round((end - start) * _FS) for start, end in occurrences], dtype=np.int64)
    if rec.raster is not None:
        column = rec.chans.index(cell)
        out = np.zeros((len(occurrences), T), dtype=np.float32)
        for r, (start, end) in enumerate(occurrences):
            piece = rec.raster[round(start * _FS):round(end * _FS), column][:T]
            out[r, :piece.shape[0]] = piece
        return torch.from_numpy(out)
    times = rec.spikes[cell]
    starts = np.array([s for s, _ in occurrences], dtype=np.float64)
    lo = np.searchsorted(times, starts - 1e-9, side="left")
    hi = np.searchsorted(times, starts + (lengths + 1) / _FS, side="right")
    index = np.concatenate([np.full(h - l, r, dtype=np.int64) for r, (l, h) in enumerate(zip(lo, hi))])
    spikes = np.concatenate([times[l:h] for l, h in zip(lo, hi)])
    counts = bin_trials_by_index(spikes, index, len(occurrences), T, 1.0 / _FS, t0=starts)
    short = np.nonzero(lengths < T)[0]
    for r in short:  # bins past the end of this occurrence's own window stay empty
        counts[r, lengths[r]:] = 0
    return counts


def _parse_cell_id(cell: str, experiment_set: str) -> dict:
    match = _CELL_ID.match(cell)
    if match is None:
        site = cell.split("-", 1)[0] if "-" in cell else None
        return {"cell_id": cell, "experiment_set": experiment_set, "site": site, "animal_id": None,
                "channel": None, "unit": None}
    site, channel, unit = match.groups()
    return {"cell_id": cell, "experiment_set": experiment_set, "site": site,
            "animal_id": re.match(r"[A-Za-z]+", site).group(0), "channel": channel, "unit": unit}


# --------------------------------------------------------------------------- the dataset


class EspejoDataset(AudioNeuralDataset):
    """Ferret A1 single units listening to natural sounds (NAT) or vocalization-modulated noise (VMN).

    Lopez Espejo M., Schwartz Z.P., David S.V. (2019). Spectral tuning of
    adaptation supports coding of sensory context in auditory cortex. *PLoS
    Comput Biol* 15(10): e1007430. DOI 10.1371/journal.pcbi.1007430. Data:
    Zenodo record 3445557 (DOI 10.5281/zenodo.3445557).

    Awake, passively listening ferrets; spike counts per 10 ms bin, one row per
    repeat. ``stimuli='nat'``: 18-band log gammatone ("ozgf") spectrograms
    (F=18); ``stimuli='vmn'``: the 2 envelopes of two modulated noise streams
    (F=2). The two releases share no cells and have different F.

    On-disk layout (``path`` or the data root ``Espejo``)::

        <path>/A1_natural_sounds/NAT/<site>_<hash>.tgz   (stimuli='nat')
        <path>/A1_voc_mod_noise/VMN/<site>_<hash>.tgz    (stimuli='vmn')
        <path>/nat_waveforms/<file>.wav                  (return_waveform=True only)

    Each archive is one NEMS recording (``.meta.json``, ``.resp.json``,
    ``.resp.epoch.csv``, ``.resp.h5`` or ``.resp.csv``, ``.stim.h5`` or
    ``.stim.csv``); archives are read in file-name order.

    Parameters
    ----------
    path : str or path-like, optional
        Folder holding ``A1_natural_sounds/`` and/or ``A1_voc_mod_noise/``;
        default ``$DEEPSTRF_DATA/Espejo`` (else the platformdirs data dir).
    download : bool, default False
        Fetch the release (and, in waveform mode, the missing NAT wavs) when
        files are missing.
    stimuli : {'nat', 'vmn'}, default 'nat'
        Which release.
    dt_ms : float, default 10.0
        Bin width in ms; only 10.0 is possible (the stored stims are at 100 Hz).
    subset : {'all', 'estimation', 'test'}, default 'all'
        Keep the stims of this split (neurons are never dropped).
    cells : iterable of str, optional
        Whitelist of cell ids (ids not on disk are ignored).
    smooth : bool, default False
        Hann smoothing with a 21 ms window; at dt = 10 ms the kernel is the
        identity, so this changes nothing (accepted for API symmetry).
    return_waveform : bool, default False
        NAT only: stims are the raw waveforms ``(1, T * hop)`` instead of
        spectrograms, with ``hop = audio_fs * dt / 1000``.
    audio_fs : int, default 44100
        Waveform sample rate (wavs are resampled to it); ``self.audio_fs`` is
        ``None`` in spectrogram mode.
    cache : bool, default True
        Use the processed-data cache.

    Attributes
    ----------
    stims : list of Tensor
        ``(1, F, T_s)`` float32 (as stored, no normalisation; T includes the
        0.5 s pre- and post-stim silences), or ``(1, T_s * hop)`` in waveform mode.
    responses : list of list of Tensor
        ``(R, T_s)`` float32 spike counts per 10 ms bin, or the ``(1, 1)`` NaN sentinel.
    stim_meta : list of dict
        ``name``, ``type``, ``n_repeats`` (max over sites), ``split``,
        ``duration_s``, ``n_samples``.
    nrn_meta : list of dict
        ``cell_id``, ``experiment_set``, ``site``, ``animal_id``, ``channel``, ``unit``.

    Raises
    ------
    DatasetNotFoundError
        Release folder, archives or (waveform mode) wavs missing and ``download=False``.
    DatasetFormatError
        An archive is corrupt, lacks a file, or a file lacks a field.
    ValueError
        Bad argument values, an empty cell whitelist match or an empty subset.

    Notes
    -----
    Same numbers as deepSTRF 0.1.0 on the same files (S, N, T, counts, stored
    matrices, metadata). Deliberate differences:

    * arguments after ``path`` are keyword-only; bad arguments and bad files
      raise ``ValueError``/``DatasetFormatError`` instead of ``AssertionError``;
    * in waveform mode, missing wavs are fetched only with ``download=True``
      (otherwise ``DatasetNotFoundError`` names them and the download call);
    * wavs are resampled with ``scipy.signal.resample_poly`` (polyphase,
      Kaiser window) instead of torchaudio's windowed sinc;
    * archives are read in memory, not untarred to a temporary folder, and the
      parsed result is cached.
    """

    FORMAT_VERSION = 1

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        stimuli: str = "nat",
        dt_ms: float = 10.0,
        subset: str = "all",
        cells: Iterable[str] | None = None,
        smooth: bool = False,
        return_waveform: bool = False,
        audio_fs: int = NATIVE_WAV_FS,
        cache: bool = True,
    ) -> None:
        if stimuli not in RELEASES:
            raise ValueError(f"stimuli={stimuli!r} is not a release; choose one of {sorted(RELEASES)}")
        if isinstance(dt_ms, bool) or not isinstance(dt_ms, (int, float)) or float(dt_ms) != DT_MS:
            raise ValueError(f"dt_ms={dt_ms!r} is not possible: the stored stims are at 100 Hz, so dt_ms must be 10.0")
        if subset not in SUBSETS:
            raise ValueError(f"subset={subset!r} is not valid; choose one of {SUBSETS}")
        if isinstance(cells, str):
            raise TypeError("cells must be an iterable of cell ids (e.g. ['AMT003c-11-1']), not a single string")
        cell_list = None if cells is None else sorted({str(c) for c in cells})
        hop = None
        if return_waveform:
            if stimuli != "nat":
                raise ValueError("return_waveform=True needs stimuli='nat': the VMN release has no audio")
            if isinstance(audio_fs, bool) or not isinstance(audio_fs, int) or audio_fs <= 0:
                raise ValueError(f"audio_fs must be a positive int (Hz), got {audio_fs!r}")
            ratio = audio_fs * DT_MS / 1000.0
            if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
                raise ValueError(f"audio_fs={audio_fs} gives {ratio:g} samples per 10 ms bin; choose audio_fs "
                                 "as a multiple of 100 Hz")
            hop = int(round(ratio))

        root = data_root(DATASET_NAME, path)
        super().__init__(str(root), DT_MS)
        release = RELEASES[stimuli]
        archives = self._find_archives(root, release)
        if not archives:
            if not download:
                raise DatasetNotFoundError(
                    DATASET_NAME, str(root), [f"{release.subdir}/<site>_<hash>.tgz"], layout=_LAYOUT,
                    fix=f"EspejoDataset({str(root)!r}, stimuli={stimuli!r}, download=True), or "
                        f"deepSTRF.datasets.audio.espejo.download_espejo({stimuli!r}, dest={str(root)!r}) "
                        f"(Zenodo record {ESPEJO_ZENODO_RECORD}, {release.archive})")
            download_espejo(stimuli, root)
            archives = self._find_archives(root, release)
            if not archives:
                raise DatasetFormatError(str(root / release.subdir), "archives", "no <site>_<hash>.tgz file",
                                         f"the per-site archives unpacked from {release.archive}")

        params = {"stimuli": stimuli, "subset": subset, "cells": cell_list,
                  "return_waveform": bool(return_waveform), "audio_fs": audio_fs if return_waveform else None}
        raw_files: list[Path] = list(archives)
        wav_paths: dict[str, Path] | None = None
        if return_waveform:
            # The stim names come from the archives: parse (or reload) the spectrogram configuration first.
            names = self._stim_names(root, archives, stimuli, subset, cell_list, cache)
            wav_paths = self._wav_paths(root, names, download)
            raw_files += list(wav_paths.values())

        def build() -> Payload:
            return self._build(archives, release, stimuli, subset, cell_list, wav_paths, audio_fs, hop)

        self._load_or_build(build, params=params, raw_files=raw_files, cache=cache, name=DATASET_NAME)
        self.stimuli = stimuli
        self.F = release.F
        self.return_waveform = bool(return_waveform)
        self.audio_fs = audio_fs if return_waveform else None
        self.species = "ferret"
        self.behavioral_state = "awake-passive"
        self.hearing_range_hz = (200.0, 40000.0)
        if smooth:
            # 21 ms at dt = 10 ms is the 3-tap kernel [0, 1, 0]: the identity. Nothing to do.
            pass
        self.validate()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _find_archives(root: Path, release: _Release) -> list[Path]:
        folder = root / release.subdir
        if not folder.is_dir():
            return []
        return sorted((p for p in folder.iterdir() if p.is_file() and p.name.endswith((".tgz", ".tar.gz"))),
                      key=lambda p: p.name)

    def _stim_names(self, root: Path, archives: list[Path], stimuli: str, subset: str,
                    cells: list[str] | None, cache: bool) -> list[str]:
        """Stim names of the spectrogram configuration (reuses its cache)."""
        probe = EspejoDataset.__new__(EspejoDataset)
        AudioNeuralDataset.__init__(probe, str(root), DT_MS)
        release = RELEASES[stimuli]
        params = {"stimuli": stimuli, "subset": subset, "cells": cells, "return_waveform": False, "audio_fs": None}
        probe._load_or_build(lambda: probe._build(archives, release, stimuli, subset, cells, None, None, None),
                             params=params, raw_files=archives, cache=cache, name=DATASET_NAME)
        return [m["name"] for m in probe.stim_meta]

    @staticmethod
    def _wav_paths(root: Path, names: list[str], download: bool) -> dict[str, Path]:
        folder = root / WAV_DIR
        paths = {name: folder / _wav_file(name) for name in names}
        missing = [name for name, p in paths.items() if not p.is_file()]
        if missing and download:
            download_espejo_nat_waveforms(missing, root)
            missing = [name for name, p in paths.items() if not p.is_file()]
            if missing:
                raise DatasetNotFoundError(
                    DATASET_NAME, str(root), [f"{WAV_DIR}/{_wav_file(m)}" for m in missing],
                    fix="these wavs were not found in LBHB's baphy repository; copy them into "
                        f"{folder} by hand or use return_waveform=False")
        elif missing:
            raise DatasetNotFoundError(
                DATASET_NAME, str(root), [f"{WAV_DIR}/{_wav_file(m)}" for m in missing], layout=_LAYOUT,
                fix=f"EspejoDataset(..., return_waveform=True, download=True), or "
                    f"deepSTRF.datasets.audio.espejo.download_espejo_nat_waveforms(names, dest={str(root)!r})")
        return paths

    def _build(self, archives: list[Path], release: _Release, stimuli: str, subset: str,
               cells: list[str] | None, wav_paths: dict[str, Path] | None, audio_fs: int | None,
               hop: int | None) -> Payload:
        wanted = None if cells is None else set(cells)
        matrices: dict[str, np.ndarray] = {}  # first registered matrix per stim
        n_repeats: dict[str, int] = {}
        test: set[str] = set()
        # cell -> stim -> list of (R, T) pieces (session order)
        pieces: dict[str, dict[str, list[Tensor]]] = {}
        all_cells: set[str] = set()
        for archive in tqdm(archives, desc=f"Espejo {stimuli}: reading sites", unit="site", disable=None, leave=False):
            rec = _read_recording(archive, release.stimfmt, release.F, wanted)
            all_cells.update(rec.chans)
            occurrences: dict[str, list[tuple[float, float]]] = {}
            for name, start, end in rec.epochs:
                occurrences.setdefault(name, []).append((start, end))
            for name in occurrences:
                if name not in matrices and name in rec.stims:
                    matrices[name] = rec.stims[name]
            counted = {name: len(occ) for name, occ in occurrences.items() if name in matrices}
            top = max((len(occ) for occ in occurrences.values()), default=0)
            for name, count in counted.items():
                n_repeats[name] = max(n_repeats.get(name, 0), count)
                if top > 1 and count == top:
                    test.add(name)
            for cell in rec.spikes if rec.raster is None else [c for c in rec.chans if wanted is None or c in wanted]:
                per_stim = pieces.setdefault(cell, {})
                for name in counted:
                    T = matrices[name].shape[1]
                    per_stim.setdefault(name, []).append(_rows(rec, cell, occurrences[name], T))
        if wanted is not None:
            kept = sorted(wanted & all_cells)
            if not kept:
                raise ValueError(f"cells={cells[:5]}{'...' if len(cells) > 5 else ''} matches no cell of the "
                                 f"{stimuli!r} release (ids look like {sorted(all_cells)[:3]})")
        else:
            kept = sorted(all_cells)
        names = sorted(matrices)
        split = {name: "test" if name in test else "estimation" for name in names}
        if subset != "all":
            names = [n for n in names if split[n] == subset]
            if not names:
                raise ValueError(f"subset={subset!r} holds no stim in the {stimuli!r} release")

        N = len(kept)
        stims: list[Tensor] = []
        responses: list[list[Tensor]] = []
        stim_meta: list[dict] = []
        mask = torch.zeros((len(names), N), dtype=torch.bool)
        for s, name in enumerate(names):
            T = matrices[name].shape[1]
            if wav_paths is None:
                stims.append(torch.from_numpy(np.ascontiguousarray(matrices[name], dtype=np.float32)).unsqueeze(0))
            else:
                stims.append(self._waveform(wav_paths[name], T, audio_fs, hop))
            row = make_sentinels(N)
            for n, cell in enumerate(kept):
                got = pieces.get(cell, {}).get(name)
                if got:
                    row[n] = got[0] if len(got) == 1 else torch.cat(got, dim=0)
                    mask[s, n] = True
            responses.append(row)
            stim_meta.append({"name": name, "type": stimuli, "n_repeats": n_repeats[name], "split": split[name],
                              "duration_s": round(T * DT_MS / 1000.0, 10), "n_samples": T})
        nrn_meta = [_parse_cell_id(cell, stimuli) for cell in kept]
        return Payload(stims, responses, stim_meta, nrn_meta, {}, mask)

    @staticmethod
    def _waveform(path: Path, T: int, audio_fs: int, hop: int) -> Tensor:
        """Waveform of one stim on the response grid: zeros, the sound from 0.5 s, cut at ``T * hop``."""
        wav = read_wav_mono(path, audio_fs)
        out = np.zeros(T * hop, dtype=np.float32)
        onset = round(PRESTIM_SILENCE_S * audio_fs)
        piece = wav[: max(0, out.shape[0] - onset)]
        out[onset:onset + piece.shape[0]] = piece
        return torch.from_numpy(out).unsqueeze(0)


def _wav_file(name: str) -> str:
    return name[len("STIM_"):] if name.startswith("STIM_") else name


# --------------------------------------------------------------------------- downloads


def download_espejo(stimuli: str = "nat", dest: str | os.PathLike[str] | None = None) -> str:
    """Download and unpack one Espejo release from Zenodo (record 3445557).

    Parameters
    ----------
    stimuli : {'nat', 'vmn'}, default 'nat'
        ``'nat'``: ``A1_natural_sounds.tgz`` (~638 MB); ``'vmn'``:
        ``A1_voc_mod_noise.tgz`` (~25 MB).
    dest : path-like, optional
        Target folder; default the data root ``Espejo``.

    Returns
    -------
    str
        ``dest``. The per-site archives end up in
        ``<dest>/A1_natural_sounds/NAT/`` (resp. ``A1_voc_mod_noise/VMN/``);
        the outer archive is kept (delete it by hand to save space).

    Raises
    ------
    ChecksumError
        The archive does not match the md5 Zenodo publishes (it is deleted).
    DownloadError, DatasetNotFoundError
        Network failure, or ``DEEPSTRF_OFFLINE`` set with the files missing.

    Notes
    -----
    Nothing is fetched when the sites folder already holds archives. The
    per-site archives stay packed (the loader reads them in place).
    """
    if stimuli not in RELEASES:
        raise ValueError(f"stimuli={stimuli!r} is not a release; choose one of {sorted(RELEASES)}")
    release = RELEASES[stimuli]
    root = data_root(DATASET_NAME, dest)
    if EspejoDataset._find_archives(root, release):
        return str(root)
    archive = fetch_zenodo(ESPEJO_ZENODO_RECORD, release.archive, root, KNOWN_HASHES.get(release.archive))
    extract_tar(archive, root)
    if not (root / release.subdir).is_dir():
        raise DatasetFormatError(str(archive), "layout", f"no folder {release.subdir}/ after extraction",
                                 f"the archive to unpack to {release.subdir}/")
    return str(root)


def download_espejo_nat_waveforms(names: Iterable[str], dest: str | os.PathLike[str] | None = None, *,
                                  progress: bool = True) -> dict[str, str]:
    """Fetch the raw NAT wavs from LBHB's baphy repository on Bitbucket.

    Parameters
    ----------
    names : iterable of str
        Stim names as in ``stim_meta['name']`` (``STIM_<file>.wav``); the
        leading ``STIM_`` is stripped to get the file name. Duplicates ignored.
    dest : path-like, optional
        Dataset root; files go to ``<dest>/nat_waveforms/<file>``. Default:
        the data root ``Espejo``.
    progress : bool, default True
        Show a progress bar over the names (only on a terminal).

    Returns
    -------
    dict
        ``{name: local path}`` for every name found (existing files are kept
        without any request).

    Warns
    -----
    RuntimeWarning
        Names found in none of the sub-folders (the first 5 listed).

    Notes
    -----
    For each file the sub-folders of :data:`WAV_SUBDIRS` are tried in order;
    any failure (404 or other) moves to the next one. Bitbucket publishes no
    checksum, so files are only checked for completeness and HTML.
    """
    root = data_root(DATASET_NAME, dest)
    folder = root / WAV_DIR
    unique = list(dict.fromkeys(str(n) for n in names))
    found: dict[str, str] = {}
    todo = []
    for name in unique:
        target = folder / _wav_file(name)
        if target.is_file():
            found[name] = str(target)
        else:
            todo.append(name)
    if todo and is_offline():
        raise DatasetNotFoundError(DATASET_NAME, str(root), [f"{WAV_DIR}/{_wav_file(n)}" for n in todo],
                                   fix="DEEPSTRF_OFFLINE is set, so nothing is downloaded; unset it and call again")
    base = f"{host_url('bitbucket')}/{BAPHY_SOUNDS_PATH}"
    not_found = []
    for name in tqdm(todo, desc="NAT wavs", unit="file", disable=None if progress else True, leave=False):
        fname = _wav_file(name)
        for sub in WAV_SUBDIRS:
            try:
                path = fetch_url(f"{base}/{sub}/{quote(fname)}", folder, fname=fname)
            except DownloadError:
                continue
            found[name] = str(path)
            break
        else:
            not_found.append(name)
    if not_found:
        warnings.warn(f"{len(not_found)} NAT wav(s) not found in any of {WAV_SUBDIRS} under {base}: "
                      f"{not_found[:5]}{' ...' if len(not_found) > 5 else ''}", RuntimeWarning, stacklevel=2)
    return found
