"""Wingert et al. (2026): ferret A1 / PEG single units listening to natural-sound sequences.

Module layout: constants (Zenodo record, areas), the public helpers
(:func:`parse_wingert_cell_id`, :func:`read_wingert_cell_list`), the dataset
class, then :func:`download_wingert2026`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tarfile
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .._cache import Payload
from .._errors import DatasetFormatError, DatasetNotFoundError
from .._raw_files import require_raw_files
from .._storage import make_sentinels
from ._spikes import bin_trials_by_index
from ._spectrogram import read_wav_mono
from .audio_dataset import AudioNeuralDataset

__all__ = ["Wingert2026Dataset", "download_wingert2026", "parse_wingert_cell_id", "read_wingert_cell_list"]

#: Folder name under the data root.
NAME = "Wingert2026"
#: Zenodo record (version id) holding the release; DOI 10.5281/zenodo.18331549.
ZENODO_RECORD = 18331549
#: Files of the record the loader uses. Their md5 is read from Zenodo's API
#: (``files[].checksum``) at download time; candidate values seen in a third-party
#: reproduction (not yet confirmed against the API) are kept for the registry.
ZENODO_FILES = ("cell_list.csv", "recordings.zip", "wav.zip")
CANDIDATE_MD5 = {
    "cell_list.csv": "301e93a36f2fc00197e92cf7ef6718c7",
    "recordings.zip": "3c5f5b785bc31f2cab561dfc52fee101",
    "wav.zip": "e8047588ad8b47726ade7621ab17abe8",
}
#: Area labels of ``cell_list.csv`` (AC and HC are less curated per the authors).
AREAS = ("A1", "PEG", "AC", "HC")
#: Subsets: stims whose epoch label starts with ``STIM_00`` are validation ("val").
SUBSETS = ("all", "est", "val")
VAL_PREFIX = "STIM_00"
#: Response sampling rate of the release (Hz) and its bin width (ms).
FS_HZ = 100
DT_MS = 10.0
N_BANDS = 32
_ZERO_FLOOR = 1e-6

_LAYOUT = """\
<path>/cell_list.csv                      one row per unit (columns cellid, siteid, area, layer, ...)
<path>/recordings/<SITE>_<hash>.tgz       one NEMS recording per session (from recordings.zip)
<path>/wav/<seqNNNN>.wav                  44.1 kHz sources, waveform mode only (from wav.zip)"""

_CELL_3 = re.compile(r"^([A-Za-z]{3})\d+[a-z]?-(\d+)-(\d+)$")
_CELL_4 = re.compile(r"^([A-Za-z]{3})\d+[a-z]?-[A-Z]-(\d+)-(\d+)$")
_CSV_COLUMNS = ("cellid", "siteid", "area", "layer", "depth", "narrow", "celltype", "sw", "goodpred")


# --------------------------------------------------------------------------- public helpers


def parse_wingert_cell_id(cell_id: str) -> tuple[str | None, int | None, int | None]:
    """Split a cell id into ``(animal, electrode, unit_in_electrode)``.

    Parameters
    ----------
    cell_id : str
        ``'CLT027c-009-1'`` (session-channel-unit) or ``'SLJ032a-A-003-1'``
        (session-probe-channel-unit, two-probe session).

    Returns
    -------
    tuple
        ``('CLT', 9, 1)``; ``(None, None, None)`` when the id matches neither form.
    """
    match = _CELL_3.match(cell_id) or _CELL_4.match(cell_id)
    if match is None:
        return None, None, None
    return match.group(1), int(match.group(2)), int(match.group(3))


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _float(value: str | None, path: Path, column: str, row: int) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise DatasetFormatError(str(path), f"{column} (row {row})", repr(text), "a number or an empty cell") from None


def _bool(value: str | None, path: Path, column: str, row: int) -> bool | None:
    text = _text(value)
    if text is None:
        return None
    low = text.lower()
    if low in ("true", "1", "1.0", "yes"):
        return True
    if low in ("false", "0", "0.0", "no"):
        return False
    raise DatasetFormatError(str(path), f"{column} (row {row})", repr(text), "True, False or an empty cell")


def _read_cell_rows(csv_path: Path) -> list[dict]:
    """Every row of ``cell_list.csv`` as the neuron metadata dict (all text read as text)."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetFormatError(str(csv_path), "file", f"unreadable CSV ({exc})", "a UTF-8 CSV with a header row") \
            from None
    id_column = "cellid"
    if "cellid" not in header and header and header[0] in ("", "Unnamed: 0"):
        id_column = header[0]  # written by pandas with the ids as an unnamed index
    missing = [c for c in _CSV_COLUMNS if c not in header and not (c == "cellid" and id_column != "cellid")]
    if missing:
        raise DatasetFormatError(str(csv_path), ", ".join(missing), f"columns {header[:12]}",
                                 f"the columns {list(_CSV_COLUMNS)}")
    out = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        cell_id = _text(row.get(id_column))
        if cell_id is None:
            raise DatasetFormatError(str(csv_path), f"{id_column} (row {i})", "an empty cell", "a cell id")
        animal, electrode, unit = parse_wingert_cell_id(cell_id)
        out.append({
            "cell_id": cell_id,
            "site": _text(row.get("siteid")),
            "session": cell_id.split("-", 1)[0],
            "area": _text(row.get("area")),
            "layer": _text(row.get("layer")),
            "depth": _float(row.get("depth"), csv_path, "depth", i),
            "narrow": _bool(row.get("narrow"), csv_path, "narrow", i),
            "celltype": _text(row.get("celltype")),
            "sw": _float(row.get("sw"), csv_path, "sw", i),
            "goodpred": _bool(row.get("goodpred"), csv_path, "goodpred", i),
            "animal": animal,
            "electrode": electrode,
            "unit_in_electrode": unit,
        })
    return out


def _as_list(value: str | Iterable[str] | None, name: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be None, a str or an iterable of str, got {type(value).__name__}") from None
    if not items or not all(isinstance(v, str) for v in items):
        raise TypeError(f"{name} must be None, a str or a non-empty iterable of str, got {value!r}")
    return items


def _check_areas(area: str | Iterable[str] | None) -> list[str] | None:
    areas = _as_list(area, "area")
    if areas is not None:
        bad = [a for a in areas if a not in AREAS]
        if bad:
            raise ValueError(f"area={area!r}: unknown label(s) {bad}; valid areas are {list(AREAS)} (or None)")
    return areas


def _filter_cells(rows: list[dict], areas: list[str] | None, sites: list[str] | None,
                  include_unlabeled: bool, csv_path: Path) -> list[dict]:
    if areas is not None:
        kept = [r for r in rows if r["area"] in areas]
    else:
        kept = [r for r in rows if r["area"] in AREAS or (include_unlabeled and r["area"] is None)]
    if sites is not None:
        known = {r["site"] for r in rows}
        unknown = [s for s in sites if s not in known]
        if unknown:
            raise ValueError(f"site={sites!r}: {unknown} not in {csv_path} (column siteid); "
                             f"available sites: {sorted(s for s in known if s)}")
        wanted = set(sites)
        kept = [r for r in kept if r["site"] in wanted]
        survivors = {r["site"] for r in kept}
        lost = [s for s in sites if s not in survivors]
        if lost:
            raise ValueError(f"site(s) {lost} have no cell left after the area filter (area={areas!r}, "
                             f"include_unlabeled={include_unlabeled}); widen area or drop these sites")
    if not kept:
        raise ValueError(f"no cell of {csv_path} passes the filters area={areas!r}, site={sites!r}, "
                         f"include_unlabeled={include_unlabeled}")
    return kept


def read_wingert_cell_list(path: str | os.PathLike[str] | None = None, *,
                           area: str | Iterable[str] | None = None, site: str | Iterable[str] | None = None,
                           include_unlabeled: bool = False) -> list[dict]:
    """Neuron metadata from ``cell_list.csv`` alone, without opening the recordings.

    Same filters and the same dicts as :class:`Wingert2026Dataset` ``nrn_meta``
    (replaces the reference's internal ``_enumerate_only`` switch).

    Parameters
    ----------
    path : path-like, optional
        Dataset folder (default: the data root ``Wingert2026``).
    area, site, include_unlabeled
        As in :class:`Wingert2026Dataset`.

    Returns
    -------
    list of dict
        One dict per kept unit, in file order.
    """
    from ...utils.download import data_root

    root = data_root(NAME, path)
    csv_path = root / "cell_list.csv"
    if not csv_path.is_file():
        raise DatasetNotFoundError(NAME, str(root), ["cell_list.csv"], _LAYOUT,
                                   f"deepSTRF.datasets.audio.wingert2026.download_wingert2026({str(root)!r})")
    return _filter_cells(_read_cell_rows(csv_path), _check_areas(area), _as_list(site, "site"),
                         bool(include_unlabeled), csv_path)


# --------------------------------------------------------------------------- archive parsing


@dataclass
class _Session:
    """What one recording archive contributes: its stims and the binned counts of the wanted cells."""

    archive: Path
    session: str
    names: list[str] = field(default_factory=list)
    gtgrams: list[np.ndarray] = field(default_factory=list)  # (32, T) float32 each, linear
    # cell id -> per stim index: (R, T) float32 counts or None (no epoch rows)
    counts: dict[str, list[Tensor | None]] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)  # wanted cells missing from chans


_SUFFIXES = (".meta.json", ".resp.json", ".resp.epoch.csv", ".resp.h5", ".stim.h5")


def _member_kind(name: str) -> str | None:
    base = name.rsplit("/", 1)[-1]
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            return suffix
    return None


def _read_archive(archive: Path, wanted_sessions: set[str]) -> tuple[str | None, dict[str, bytes]]:
    """Stream one ``.tgz``; return its session and the member bytes (empty if the session is not wanted)."""
    members: dict[str, bytes] = {}
    session: str | None = None
    try:
        with tarfile.open(archive, "r|gz") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                kind = _member_kind(member.name)
                if kind is None:
                    continue
                if kind in members:
                    raise DatasetFormatError(str(archive), f"*{kind}", "more than one such file", "exactly one")
                fh = tf.extractfile(member)
                members[kind] = fh.read() if fh is not None else b""
                if kind == ".resp.json":
                    session = _session_of(archive, members[kind])
                    if session is not None and session not in wanted_sessions:
                        return session, {}
                    if session is None:
                        return None, {}
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DatasetFormatError(str(archive), "archive", f"a truncated or corrupt tar.gz ({exc})",
                                 "a readable .tgz: delete recordings/ and download recordings.zip again") from None
    if ".resp.json" not in members:
        raise DatasetFormatError(str(archive), "*.resp.json", "no such file", "exactly one NEMS response sidecar")
    return session, members


def _session_of(archive: Path, resp_json: bytes) -> str | None:
    try:
        doc = json.loads(resp_json)
        chans = doc["chans"]
    except (ValueError, KeyError, TypeError):
        raise DatasetFormatError(f"{archive}:*.resp.json", "chans", "no readable list", "a list of cell ids") from None
    if not isinstance(chans, list) or not all(isinstance(c, str) for c in chans):
        raise DatasetFormatError(f"{archive}:*.resp.json", "chans", repr(chans)[:80], "a list of cell ids")
    return chans[0].split("-", 1)[0] if chans else None


def _read_epochs(archive: Path, data: bytes) -> tuple[np.ndarray, np.ndarray, list[str]]:
    where = f"{archive}:*.resp.epoch.csv"
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
        header = reader.fieldnames or []
        for column in ("start", "end", "name"):
            if column not in header:
                raise DatasetFormatError(where, column, f"columns {header}", "columns start, end, name")
        starts, ends, names = [], [], []
        for row in reader:
            starts.append(float(row["start"]))
            ends.append(float(row["end"]))
            names.append(row["name"])
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        if isinstance(exc, DatasetFormatError):
            raise
        raise DatasetFormatError(where, "start/end", f"unreadable values ({exc})", "times in seconds") from None
    return np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64), names


def _h5(archive: Path, kind: str, data: bytes) -> Any:
    import h5py

    try:
        return h5py.File(io.BytesIO(data), "r")
    except OSError as exc:
        raise DatasetFormatError(f"{archive}:*{kind}", "file", f"unreadable HDF5 ({exc})", "an HDF5 file") from None


def _parse_session(archive: Path, session: str, members: dict[str, bytes], cells: list[str]) -> _Session:
    """Stims of the session and the binned spike counts of ``cells`` (cell ids of this session)."""
    for kind in (".resp.epoch.csv", ".resp.h5", ".stim.h5"):
        if kind not in members:
            raise DatasetFormatError(str(archive), f"*{kind}", "no such file", "exactly one")
    doc = json.loads(members[".resp.json"])
    chans = list(doc["chans"])
    fs = doc.get("fs")
    if fs is None or not math.isclose(float(fs), FS_HZ):
        raise DatasetFormatError(f"{archive}:*.resp.json", "fs", repr(fs), f"{FS_HZ} (10-ms bins)")
    out = _Session(archive, session)
    with _h5(archive, ".stim.h5", members.pop(".stim.h5")) as f:
        for name in sorted(f.keys()):
            arr = np.asarray(f[name][()], dtype=np.float32)
            if arr.ndim != 2 or arr.shape[0] != N_BANDS or arr.shape[1] < 1:
                raise DatasetFormatError(f"{archive}:*.stim.h5", name, f"shape {arr.shape}",
                                         f"({N_BANDS}, T) gammatone-gram")
            out.names.append(name)
            out.gtgrams.append(arr)
    starts, ends, labels = _read_epochs(archive, members[".resp.epoch.csv"])
    index = {name: i for i, name in enumerate(out.names)}
    rows_of: list[list[int]] = [[] for _ in out.names]
    for row, label in enumerate(labels):
        s = index.get(label)
        if s is not None:
            rows_of[s].append(row)
    order = np.asarray([r for rows in rows_of for r in rows], dtype=np.int64)
    reps = [len(rows) for rows in rows_of]
    W = int(order.size)
    w_start, w_end = starts[order], ends[order]
    t0 = np.round(w_start * FS_HZ)  # numpy rounds half to even, as NEMS does
    T_max = max((g.shape[1] for g in out.gtgrams), default=0)
    present = set(chans)
    with _h5(archive, ".resp.h5", members.pop(".resp.h5")) as f:
        for cell in cells:
            if cell not in present:
                out.absent.append(cell)
                continue
            if cell not in f:
                raise DatasetFormatError(f"{archive}:*.resp.h5", cell, "no dataset",
                                         "one spike-time array per cell listed in resp.json chans")
            times = np.sort(np.asarray(f[cell][()], dtype=np.float64).reshape(-1))
            lo = np.searchsorted(times, w_start, side="left")
            hi = np.searchsorted(times, w_end, side="left")
            n_in = np.clip(hi - lo, 0, None)
            window = np.repeat(np.arange(W), n_in)
            first = np.repeat(lo - np.cumsum(n_in) + n_in, n_in)
            spikes = times[first + np.arange(window.size)] if window.size else np.zeros(0)
            # NEMS rule: absolute-time floor minus the rounded window start (not floor((t - start) * fs))
            binned = bin_trials_by_index(np.floor(spikes * FS_HZ), window, W, T_max, 1.0, t0=t0)
            _minmax_scale(binned, [out.gtgrams[s].shape[1] for s, r in enumerate(reps) if r], T_max,
                          [r for r in reps if r])
            per_stim: list[Tensor | None] = []
            pos = 0
            for s, r in enumerate(reps):
                if r == 0:
                    per_stim.append(None)
                    continue
                T = out.gtgrams[s].shape[1]
                block = binned[pos:pos + r]
                per_stim.append(block if T == T_max else block[:, :T].contiguous())
                pos += r
            out.counts[cell] = per_stim
    return out


def _minmax_scale(binned: Tensor, T_of_block: list[int], T_max: int, reps: list[int]) -> None:
    """Scale one unit's counts in place to ``[0, 1]`` with its min and max over every real bin.

    ``binned`` is ``(W, T_max)``: the unit's presentation windows, stim by stim
    (``reps[i]`` rows of ``T_of_block[i]`` valid bins each). Values ``< 1e-6``
    become 0; a unit with max == min (silent) is left as is.
    """
    if binned.numel() == 0:
        return
    if all(T == T_max for T in T_of_block):
        lo, hi = float(binned.min()), float(binned.max())
    else:
        blocks = torch.split(binned, reps)
        lo = min(float(b[:, :T].min()) for b, T in zip(blocks, T_of_block))
        hi = max(float(b[:, :T].max()) for b, T in zip(blocks, T_of_block))
    if hi > lo:
        binned.sub_(lo).div_(hi - lo)
        binned.masked_fill_(binned < _ZERO_FLOOR, 0.0)


def _log_offset_exponent(log_offset: float) -> float:
    """NEMS soft rule: the offset exponent grows 50 times slower beyond +-2."""
    if abs(log_offset) <= 2:
        return log_offset
    return math.copysign(2.0, log_offset) + (log_offset - math.copysign(2.0, log_offset)) / 50.0


# --------------------------------------------------------------------------- the dataset


class Wingert2026Dataset(AudioNeuralDataset):
    """Ferret A1/PEG single units (3,259 units, 67 sessions) listening to natural-sound sequences.

    Wingert J.C., Parida S., Norman-Haignere S.V., David S.V. (2026),
    "Convolutional neural network models describe the encoding subspace of
    local circuits in auditory cortex", *Nature Neuroscience*,
    doi:10.1038/s41593-026-02216-0. Data: Zenodo record 18331549
    (doi:10.5281/zenodo.18331549), open access.

    Awake, passively listening ferrets (CLT, LMD, PRN, SLJ); Kilosort single
    units from 64-channel probes and Neuropixels (LBHB). Each session played
    ~100 single-presentation "estimation" sequences (~20 s of cross-faded
    natural sounds) and 1-6 validation sequences with 5-30 repeats. Responses
    are spike counts per 10-ms bin, min-max scaled per neuron to ``[0, 1]``.
    Stims are the release's 32-band gammatone-grams (200 Hz-20 kHz, 100 Hz
    frames), log-compressed and min-max scaled per band.

    Parameters
    ----------
    path : path-like, optional
        Dataset folder; default ``$DEEPSTRF_DATA/Wingert2026`` (else the user
        data dir). Layout::

            <path>/cell_list.csv
            <path>/recordings/<SITE>_<hash>.tgz   one NEMS recording per session
            <path>/wav/<seqNNNN>.wav              waveform mode only

    download : bool, default False
        Fetch the missing files with :func:`download_wingert2026` first.
    area : str or iterable of str, optional
        Keep only these areas (``'A1'``, ``'PEG'``, ``'AC'``, ``'HC'``); default:
        all four (units without an area label are excluded unless
        ``include_unlabeled``; an explicit ``area`` always excludes them).
    site : str or iterable of str, optional
        Keep only units with these ``siteid`` values (e.g. ``'CLT027c'``,
        ``'SLJ032a-B'``); every site must keep at least one unit after the area
        filter.
    dt_ms : float, default 10.0
        Bin width; only 10 ms exists in the release.
    subset : {'all', 'est', 'val'}, default 'all'
        Keep all stims, the estimation stims or the validation stims (label
        starting with ``STIM_00``). Applied after both normalisations, so the
        values do not depend on it; neurons are never dropped.
    smooth : bool, default False
        Apply :meth:`smooth_responses` (21 ms). At dt = 10 ms that is a 3-tap
        kernel ``[0, 1, 0]``: nothing changes (our kernel is unit-gain, the
        reference's had gain ``(K - 1) / 2 = 1`` here as well).
    log_compress : bool, default True
        Log-compress the gammatone-grams, ``ln((x + d) / d)`` with ``d = 10**a``.
    log_offset : float, default -1.0
        ``a`` above (NEMS rule: beyond +-2 it grows 50 times slower).
    include_unlabeled : bool, default False
        Also keep the 131 units without an area label (sessions PRN010b,
        PRN011b, PRN020b); their area/layer/... metadata is ``None``.
    return_waveform : bool, default False
        Stims are the source wavs ``(1, T * hop)`` at ``audio_fs`` instead of
        gammatone-grams; responses are identical. Needs ``<path>/wav/``.
    audio_fs : int, default 44100
        Waveform sampling rate (Hz); ``audio_fs * dt_ms / 1000`` must be an integer.
    prestim_ms : float, default 1000.0
        Where the sound starts inside the stim window (waveform mode).
    cache : bool, default True
        Use the processed-data cache (built on the first load).

    Attributes
    ----------
    stims : list of Tensor
        ``(1, 32, T)`` float32 (``T`` = 2000 or 2200 frames of 10 ms), or
        ``(1, T * hop)`` waveforms.
    responses : list of list of Tensor
        ``(R, T)`` float32 in ``[0, 1]``, or the ``(1, 1)`` NaN sentinel.
    stim_meta : list of dict
        ``name`` (epoch label, e.g. ``'STIM_seq0032.wav'``), ``subset``
        (``'est'``/``'val'``), ``session``.
    nrn_meta : list of dict
        ``cell_id``, ``site``, ``session``, ``area``, ``layer`` (str), ``depth``
        (um from the L3/4 boundary), ``narrow``, ``celltype``, ``sw`` (ms),
        ``goodpred``, ``animal``, ``electrode``, ``unit_in_electrode``.

    Notes
    -----
    Content and ordering follow the published deepSTRF 0.1.0 loader: one stim
    per (session, stim label), never merged across sessions (the same sound
    played in 5 sessions gives 5 stims); stims ordered by session then label;
    neurons in ``cell_list.csv`` order; repeats in epoch-table order. Spikes
    go to bin ``floor(t * 100) - round(start * 100)`` of each presentation
    window (NEMS rasterisation; starts are not on the 10-ms grid). The (stim,
    neuron) grid is block-diagonal by session (~98 % missing pairs).

    The per-band stim scaling pools every stim of every session read, so a
    session's stim values change with ``area``/``site`` (as in the reference).
    The subset rule is the label prefix ``STIM_00``, not the paper's
    occurrence-count split.

    Deliberate differences from the reference: argument errors raise
    ``ValueError``/``TypeError`` before any file is opened; missing files
    raise :class:`~deepSTRF.datasets._errors.DatasetNotFoundError` with the
    download call; malformed files raise
    :class:`~deepSTRF.datasets._errors.DatasetFormatError`; a unit of
    ``cell_list.csv`` absent from its archive warns (the reference kept its
    sentinels silently); an empty ``goodpred`` is ``None`` (not ``True``);
    the recordings are "present" when ``recordings/`` holds archives (the
    reference demanded at least 60); the waveform grid is checked first.
    Duplicate archives of one session (the release's PRN018a/PRN018b) keep the
    one named after the session and warn, as the reference does.
    """

    FORMAT_VERSION = 1
    species = "ferret"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        area: str | Iterable[str] | None = None,
        site: str | Iterable[str] | None = None,
        dt_ms: float = DT_MS,
        subset: str = "all",
        smooth: bool = False,
        log_compress: bool = True,
        log_offset: float = -1.0,
        include_unlabeled: bool = False,
        return_waveform: bool = False,
        audio_fs: int = 44100,
        prestim_ms: float = 1000.0,
        cache: bool = True,
    ) -> None:
        from ...utils.download import data_root

        # ---- arguments first: nothing is read or downloaded for a bad call
        areas = _check_areas(area)
        sites = _as_list(site, "site")
        if isinstance(dt_ms, bool) or not isinstance(dt_ms, (int, float)) or float(dt_ms) != DT_MS:
            raise ValueError(f"dt_ms={dt_ms!r}: the Wingert 2026 release has 10-ms bins only (dt_ms=10.0)")
        if subset not in SUBSETS:
            raise ValueError(f"subset={subset!r}: expected one of {list(SUBSETS)}")
        if isinstance(log_offset, bool) or not isinstance(log_offset, (int, float)) or not math.isfinite(log_offset):
            raise ValueError(f"log_offset must be a finite number, got {log_offset!r}")
        if return_waveform:
            if isinstance(audio_fs, bool) or not isinstance(audio_fs, int) or audio_fs <= 0:
                raise ValueError(f"audio_fs must be a positive int (Hz), got {audio_fs!r}")
            if (audio_fs * DT_MS) % 1000:
                raise ValueError(f"audio_fs={audio_fs} Hz gives {audio_fs * DT_MS / 1000:g} samples per 10-ms bin; "
                                 "choose a rate that is a multiple of 100 Hz")
            if isinstance(prestim_ms, bool) or not isinstance(prestim_ms, (int, float)) \
                    or not math.isfinite(prestim_ms) or prestim_ms < 0:
                raise ValueError(f"prestim_ms must be a finite number >= 0, got {prestim_ms!r}")

        root = data_root(NAME, path)
        super().__init__(str(root), DT_MS)
        self.subset = subset
        self.F = N_BANDS
        self.hearing_range_hz = (200.0, 40000.0)
        self.return_waveform = bool(return_waveform)
        self.audio_fs = int(audio_fs) if return_waveform else None

        require_raw_files(
            NAME, root, lambda: self._missing(root, self.return_waveform), download=download,
            fetch=lambda: download_wingert2026(root, wav=self.return_waveform), layout=_LAYOUT,
            fix=f"Wingert2026Dataset({str(root)!r}, download=True) or "
                f"deepSTRF.datasets.audio.wingert2026.download_wingert2026({str(root)!r}"
                f"{', wav=True' if self.return_waveform else ''})  (~4.4 GB"
                f"{' + ~3.7 GB of wavs' if self.return_waveform else ''}, Zenodo record {ZENODO_RECORD})")

        csv_path = root / "cell_list.csv"
        cells = _filter_cells(_read_cell_rows(csv_path), areas, sites, bool(include_unlabeled), csv_path)
        archives = sorted((root / "recordings").glob("*.tgz"))
        raw_files = [csv_path, *archives]
        if self.return_waveform:
            raw_files += sorted(p for p in (root / "wav").iterdir() if p.is_file() and p.suffix.lower() == ".wav")
        params = {
            "area": areas, "site": sites, "include_unlabeled": bool(include_unlabeled), "dt_ms": DT_MS,
            "log_compress": bool(log_compress), "log_offset": float(log_offset),
            "return_waveform": self.return_waveform,
            "audio_fs": self.audio_fs, "prestim_ms": float(prestim_ms) if return_waveform else None,
        }

        def build() -> Payload:
            return self._build(root, cells, archives, bool(log_compress), float(log_offset), float(prestim_ms))

        self._load_or_build(build, params=params, raw_files=raw_files, cache=cache, name=NAME)
        if subset != "all":
            self._keep_subset(subset)
        if smooth:
            self.smooth_responses(21.0)
        self.validate()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _missing(root: Path, wav: bool) -> list[str]:
        missing = []
        if not (root / "cell_list.csv").is_file():
            missing.append("cell_list.csv")
        rec = root / "recordings"
        if not rec.is_dir() or not any(rec.glob("*.tgz")):
            missing.append("recordings/<SITE>_<hash>.tgz (one per session, from recordings.zip)")
        if wav and not (root / "wav").is_dir():
            missing.append("wav/<seqNNNN>.wav (from wav.zip; needed by return_waveform=True)")
        return missing

    def _keep_subset(self, subset: str) -> None:
        keep = [s for s, meta in enumerate(self.stim_meta) if meta["subset"] == subset]
        if not keep:
            raise ValueError(f"subset={subset!r}: none of the {len(self.stim_meta)} stims read is in this subset "
                             f"(validation stims are labelled {VAL_PREFIX}*); use subset='all'")
        mask = self.nrn_masks[torch.tensor(keep, dtype=torch.long)]
        self.stims = [self.stims[s] for s in keep]
        self.responses = [self.responses[s] for s in keep]
        self.stim_meta = [self.stim_meta[s] for s in keep]
        self._set_nrn_masks(mask)

    def _build(self, root: Path, cells: list[dict], archives: list[Path], log_compress: bool,
               log_offset: float, prestim_ms: float) -> Payload:
        by_session: dict[str, list[str]] = {}
        for meta in cells:
            by_session.setdefault(meta["session"], []).append(meta["cell_id"])
        wanted = set(by_session)
        chosen: dict[str, _Session] = {}
        dropped: dict[str, list[str]] = {}
        for archive in tqdm(archives, desc="Wingert2026: reading recordings", unit="archive",
                            disable=None, leave=False):
            session, members = _read_archive(archive, wanted)
            if session is None or session not in wanted:
                continue
            prefix = archive.name.split("_", 1)[0]
            previous = chosen.get(session)
            if previous is not None:
                if previous.archive.name.split("_", 1)[0] == session or prefix != session:
                    dropped.setdefault(session, []).append(archive.name)
                    continue
                dropped.setdefault(session, []).append(previous.archive.name)
            chosen[session] = _parse_session(archive, session, members, by_session[session])
            del members
        for session, names in dropped.items():
            warnings.warn(f"Wingert2026: several archives hold session {session}; using "
                          f"{chosen[session].archive.name}, ignoring {sorted(names)}", UserWarning, stacklevel=7)
        lost = sorted(wanted - set(chosen))
        if lost:
            raise DatasetNotFoundError(
                NAME, str(root / "recordings"), [f"the archive of session {s}" for s in lost], _LAYOUT,
                f"download_wingert2026({str(root)!r}) (the archives' cell ids decide their session)")
        absent = [c for s in chosen.values() for c in s.absent]
        if absent:
            warnings.warn(f"Wingert2026: {len(absent)} unit(s) of cell_list.csv are not in their session's "
                          f"recording and have no data: {absent[:10]}", UserWarning, stacklevel=7)

        sessions = [chosen[s] for s in sorted(chosen)]
        stims = self._stims(sessions, root, log_compress, log_offset, prestim_ms)
        cell_index = {meta["cell_id"]: n for n, meta in enumerate(cells)}
        N = len(cells)
        S = sum(len(sess.names) for sess in sessions)
        mask = torch.zeros((S, N), dtype=torch.bool)
        rows: list[dict[int, Tensor]] = [{} for _ in range(S)]
        stim_meta = []
        s0 = 0
        for sess in sessions:
            for k, name in enumerate(sess.names):
                stim_meta.append({"name": name, "subset": "val" if name.startswith(VAL_PREFIX) else "est",
                                  "session": sess.session})
            for cell, per_stim in sess.counts.items():
                n = cell_index[cell]
                for k, t in enumerate(per_stim):
                    if t is not None:
                        rows[s0 + k][n] = t
                        mask[s0 + k, n] = True
            s0 += len(sess.names)
            sess.counts = {}
        responses = []
        for s in range(S):
            pads = iter(make_sentinels(N - len(rows[s])))
            responses.append([rows[s].get(n) if n in rows[s] else next(pads) for n in range(N)])
        attrs = {"dt": DT_MS, "F": N_BANDS, "audio_fs": self.audio_fs, "return_waveform": self.return_waveform}
        return Payload(stims, responses, stim_meta, [dict(c) for c in cells], attrs, mask)

    def _stims(self, sessions: list[_Session], root: Path, log_compress: bool, log_offset: float,
               prestim_ms: float) -> list[Tensor]:
        if self.return_waveform:
            return self._waveforms(sessions, root, prestim_ms)
        grams = [torch.from_numpy(g) for sess in sessions for g in sess.gtgrams]
        for sess in sessions:
            sess.gtgrams = []
        if log_compress:
            d = 10.0 ** _log_offset_exponent(log_offset)
            for g in grams:
                g.add_(d).div_(d).log_()
        if grams:
            lo = torch.stack([g.amin(dim=1) for g in grams]).amin(dim=0, keepdim=True).T  # (32, 1)
            hi = torch.stack([g.amax(dim=1) for g in grams]).amax(dim=0, keepdim=True).T
            span = hi - lo
            span[span == 0] = 1.0
            for g in grams:
                g.sub_(lo).div_(span)
                g.masked_fill_(g < _ZERO_FLOOR, 0.0)
        return [g.unsqueeze(0) for g in grams]

    def _waveforms(self, sessions: list[_Session], root: Path, prestim_ms: float) -> list[Tensor]:
        fs = int(self.audio_fs)  # type: ignore[arg-type]
        hop = fs * int(DT_MS) // 1000
        offset = int(round(prestim_ms / 1000.0 * fs))
        wav_dir = root / "wav"
        by_name = {p.name.lower(): p for p in wav_dir.iterdir() if p.is_file()}
        needed = {name for sess in sessions for name in sess.names}
        lost = sorted(n for n in needed if n.removeprefix("STIM_").lower() not in by_name)
        if lost:
            raise DatasetNotFoundError(NAME, str(wav_dir), [n.removeprefix("STIM_") + f" (epoch {n})" for n in lost],
                                       _LAYOUT, f"download_wingert2026({str(root)!r}, wav=True)")
        loaded: dict[str, np.ndarray] = {}
        out = []
        for sess in tqdm(sessions, desc="Wingert2026: wavs", unit="session", disable=None, leave=False):
            for name, gram in zip(sess.names, sess.gtgrams):
                key = name.removeprefix("STIM_").lower()
                if key not in loaded:
                    loaded[key] = read_wav_mono(by_name[key], fs)
                wave = loaded[key]
                buf = torch.zeros((1, gram.shape[1] * hop), dtype=torch.float32)
                n = max(0, min(wave.size, buf.shape[1] - offset))
                if n:
                    buf[0, offset:offset + n] = torch.from_numpy(wave[:n])
                out.append(buf)
            sess.gtgrams = []
        return out


# --------------------------------------------------------------------------- download


def download_wingert2026(dest: str | os.PathLike[str] | None = None, wav: bool = False) -> str:
    """Download (and unpack) the Wingert 2026 release from Zenodo record 18331549.

    Fetches ``cell_list.csv`` and ``recordings.zip`` (~4.4 GB; unpacked into
    ``<dest>/recordings/``), and with ``wav=True`` also ``wav.zip`` (~3.7 GB;
    unpacked into ``<dest>/wav/``). Never fetches the published models and
    tables. Each file is verified against the md5 Zenodo publishes; verified
    files and finished extractions are not fetched or unpacked again.

    Parameters
    ----------
    dest : path-like, optional
        Dataset folder (default: the data root ``Wingert2026``).
    wav : bool, default False
        Also fetch the source sounds (needed by ``return_waveform=True``).

    Returns
    -------
    str
        ``dest``.

    Raises
    ------
    ChecksumError, DownloadError, DatasetNotFoundError
        See :func:`deepSTRF.utils.download.fetch_zenodo` (``DEEPSTRF_OFFLINE=1``
        gives ``DatasetNotFoundError``).
    """
    from ...utils.download import data_root, extract_zip, fetch_zenodo

    root = data_root(NAME, dest)
    root.mkdir(parents=True, exist_ok=True)
    fetch_zenodo(ZENODO_RECORD, "cell_list.csv", root)
    wanted = ["recordings.zip"] + (["wav.zip"] if wav else [])
    for name in wanted:
        folder = root / name.removesuffix(".zip")
        # An unpacked folder without its archive (copied or unpacked by hand) counts as present.
        if not (root / name).exists() and folder.is_dir() and any(folder.iterdir()):
            continue
        extract_zip(fetch_zenodo(ZENODO_RECORD, name, root), root)  # both skip work already done
    return str(root)
