"""CRCNS ac-1, Wehr source: rat A1 whole-cell membrane potentials (Machens, Wehr and Zador 2004).

Reader of the ``crcns-ac1/wehr`` half of the ac-1 release, used by
:class:`~deepSTRF.datasets.audio.crcns_ac1.CRCNSAC1Dataset`::

    wehr/Stimuli/{fragments,category1,category2,category3}/<int>.mat
        stimulus.samples (column), stimulus.param.sf (Hz), stimulus.param.description
    wehr/Results/<yyyymmdd>-mw-<NNN>/<yyyymmdd>-mw-<NNN>-<TTT>.mat      one trial per file
        response.trace (column, integer units), response.scale (mV / unit), response.sf (4000 Hz)
        triggers(1).type, .time (1-based sample of the onset), .param.description, .param.duration (ms)

A trial is matched to its sound by the trigger *description* (exact text),
looked up in an index built from every stimulus file. Sessions are numbered
``_wehr_cell_idx`` = their position among the ``Results`` folders whose name
starts with four digits; :data:`WEHR_VALID_NEURONS` and
:data:`WEHR_NEURONS_SPLIT_NATURAL` are indexed by that number.

The module also holds the record types (:class:`RawGroup`, :class:`RawCell`)
and the MAT-file helpers that the Asari reader (:mod:`.asari`) shares.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DatasetFormatError

__all__ = [
    "WEHR_NEURONS_SPLIT_NATURAL",
    "WEHR_STIM_FOLDERS",
    "WEHR_TRIGGER_TYPES",
    "WEHR_VALID_NEURONS",
    "RawCell",
    "RawGroup",
    "WehrSession",
    "WehrStimulus",
    "index_stimuli",
    "list_sessions",
    "read_session",
    "read_stimulus",
    "stimulus_files",
]

#: ``_wehr_cell_idx`` of the cells kept by Rançon et al. 2025 (Commun Biol 8:1456,
#: DOI 10.1038/s42003-025-08858-3): 0..24 except 1, 2 and 8 (unresponsive) and
#: 4 (too little data), following Machens et al. 2004.
WEHR_VALID_NEURONS: tuple[int, ...] = tuple(i for i in range(25) if i not in (1, 2, 4, 8))

#: ``(train, val, test)`` natural-sound counts per Wehr cell, indexed by ``_wehr_cell_idx``
#: (Rançon et al. 2025). Use with
#: ``ds.select_pop_by_nrn_predicate(lambda m: m.get('_wehr_cell_idx') in WEHR_VALID_NEURONS)``.
WEHR_NEURONS_SPLIT_NATURAL: tuple[tuple[int, int, int], ...] = (
    (7, 2, 2), (5, 1, 1), (3, 1, 1), (7, 1, 1), (1, 1, 1),
    (6, 1, 1), (3, 1, 1), (1, 1, 1), (4, 1, 1), (7, 1, 2),
    (11, 2, 3), (25, 4, 7), (7, 1, 2), (25, 4, 7), (7, 1, 1),
    (14, 3, 5), (25, 4, 7), (17, 3, 5), (5, 1, 1), (11, 2, 3),
    (5, 1, 1), (12, 2, 4), (7, 2, 2), (44, 6, 13), (4, 1, 1),
)

#: Stimulus sub-folders, in scan order (the first file with a description wins).
WEHR_STIM_FOLDERS = ("fragments", "category1", "category2", "category3")
#: Trigger types of natural-sound trials ('nauralsound' is a typo present in the release).
WEHR_TRIGGER_TYPES = frozenset({"naturalsound", "nauralsound", "natural"})

_SESSION_START = re.compile(r"^\d{4}")


# --------------------------------------------------------------------------- shared records


@dataclass
class RawGroup:
    """The repeats of one sound heard by one cell, sliced but not yet cleaned.

    Attributes
    ----------
    key : str
        Unique stimulus name (the de-duplication key as text).
    meta : dict
        Stimulus metadata taken from the group's first repeat.
    sf : float
        Response sampling rate of the first repeat, Hz.
    duration_ms : float
        Trigger duration of the first repeat, ms.
    repeats : list of numpy.ndarray
        Membrane potential of each repeat in mV (float64), from stimulus onset.
    waveform : callable
        ``waveform() -> (samples float64 (n,), sample_rate Hz)`` of the sound.
    """

    key: str
    meta: dict
    sf: float
    duration_ms: float
    repeats: list[np.ndarray] = field(default_factory=list)
    waveform: Callable[[], tuple[np.ndarray, float]] | None = None


@dataclass
class RawCell:
    """One recorded cell (a session folder): metadata and its groups in order of first appearance."""

    meta: dict
    whole_cell: bool
    groups: list[RawGroup]


# --------------------------------------------------------------------------- MAT helpers


def _loadmat(path: Path, variables: list[str] | None = None) -> dict:
    """Read a MATLAB v5/v7 file as nested ``mat_struct`` objects (squeezed); errors name the file."""
    from scipy.io import loadmat

    try:
        return loadmat(str(path), variable_names=variables, squeeze_me=True, struct_as_record=False,
                       chars_as_strings=True)
    except NotImplementedError as exc:  # v7.3 / HDF5
        raise DatasetFormatError(str(path), "file", f"a MATLAB v7.3/HDF5 file ({exc})",
                                 "a MATLAB v5/v7 MAT-file readable by scipy.io.loadmat") from exc
    except Exception as exc:  # scipy raises many types on a damaged file
        raise DatasetFormatError(str(path), "file", f"an unreadable or truncated file ({type(exc).__name__}: {exc})",
                                 "a MATLAB v5/v7 MAT-file: delete it and extract the archive again") from exc


_MISSING = object()


def _get(obj: Any, dotted: str, path: Path, default: Any = _MISSING) -> Any:
    """Field ``a.b.c`` of a loaded struct; missing -> ``default`` or a DatasetFormatError naming it."""
    cur = obj
    for part in dotted.split("."):
        if isinstance(cur, np.ndarray) and cur.dtype == object and cur.size >= 1:
            cur = cur.reshape(-1)[0]  # a struct array: its first element
        if isinstance(cur, dict):
            cur = cur.get(part, _MISSING)
        else:
            cur = getattr(cur, part, _MISSING)
        if cur is _MISSING:
            if default is not _MISSING:
                return default
            raise DatasetFormatError(str(path), dotted, "no such field", f"a MAT-file holding {dotted!r}")
    return cur


def _structs(value: Any) -> list[Any]:
    """A struct or a 1xK struct array as a list of structs (empty for ``[]``)."""
    if isinstance(value, np.ndarray):
        return [v for v in value.reshape(-1)] if value.dtype == object else []
    return [] if value is None else [value]


def _text(value: Any) -> str:
    """A MATLAB char array as ``str`` (``''`` when empty)."""
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if arr.size == 0:
        return ""
    if arr.dtype.kind in "US":
        return "".join(str(v) for v in arr.reshape(-1))
    return str(arr.reshape(-1)[0])


def _number(value: Any, dotted: str, path: Path) -> float:
    arr = np.asarray(value)
    if arr.size < 1 or arr.dtype.kind not in "biuf":
        raise DatasetFormatError(str(path), dotted, f"{arr.dtype} of shape {arr.shape}", "a number")
    return float(arr.reshape(-1)[0])


def _vector(value: Any, dotted: str, path: Path) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DatasetFormatError(str(path), dotted, f"values of type {arr.dtype}", "a numeric vector")
    return arr.astype(np.float64, copy=False).reshape(-1)


def _trace_mv(mat: dict, path: Path) -> tuple[np.ndarray, float]:
    """``response.trace * response.scale`` in mV (float64) and ``response.sf`` in Hz."""
    trace = _vector(_get(mat, "response.trace", path), "response.trace", path)
    scale = _number(_get(mat, "response.scale", path), "response.scale", path)
    sf = _number(_get(mat, "response.sf", path), "response.sf", path)
    if not sf > 0:
        raise DatasetFormatError(str(path), "response.sf", f"{sf!r}", "a sampling rate > 0 Hz")
    return trace * scale, sf


def _slice(trace: np.ndarray, time: float, duration_ms: float, sf: float) -> np.ndarray:
    """The repeat of a trigger: ``round(duration_ms * sf / 1000)`` samples from 1-based sample ``time``."""
    start = max(int(time) - 1, 0)
    length = max(round(duration_ms * sf / 1000.0), 0)
    return trace[start:start + length].copy()


def _trigger(trig: Any, path: Path) -> tuple[str, float, str, float]:
    """(type, time, description, duration_ms) of one trigger struct."""
    kind = _text(_get(trig, "type", path, "")).strip().lower()
    time = _get(trig, "time", path, None)
    if time is None:
        raise DatasetFormatError(str(path), "triggers.time", "no such field", "the 1-based onset sample")
    time = _number(time, "triggers.time", path)
    description = _text(_get(trig, "param.description", path, ""))
    duration = _get(trig, "param.duration", path, None)
    duration_ms = _number(duration, "triggers.param.duration", path) if duration is not None else 0.0
    return kind, time, description, duration_ms


# --------------------------------------------------------------------------- stimuli


@dataclass(frozen=True)
class WehrStimulus:
    """One Wehr stimulus file: ``Stimuli/<category>/<idx>.mat``."""

    category: str
    idx: int
    description: str
    path: Path


def _int_stem(name: str) -> int | None:
    if not name.endswith(".mat"):
        return None
    try:
        return int(name[:-4])
    except ValueError:
        return None


def stimulus_files(stim_root: Path) -> list[tuple[str, int, Path]]:
    """``(category, idx, path)`` of every stimulus file, in scan order (nothing read).

    Only files whose stem is an integer count; sub-folders in
    :data:`WEHR_STIM_FOLDERS` order, files in sorted-name order.
    """
    out = []
    for category in WEHR_STIM_FOLDERS:
        folder = stim_root / category
        if not folder.is_dir():
            continue
        for name in sorted(os.listdir(folder)):
            idx = _int_stem(name)
            if idx is not None:
                out.append((category, idx, folder / name))
    return out


def index_stimuli(stim_root: Path) -> dict[str, WehrStimulus]:
    """Map each stimulus description to its file (first file wins; later duplicates are warned about).

    Raises
    ------
    DatasetFormatError
        A stimulus file lacks ``stimulus`` or ``stimulus.param.description``.
    """
    index: dict[str, WehrStimulus] = {}
    for category, idx, path in stimulus_files(stim_root):
        mat = _loadmat(path, ["stimulus"])
        description = _text(_get(mat, "stimulus.param.description", path))
        if description in index:
            first = index[description]
            warnings.warn(f"Wehr stimulus {path} repeats the description {description!r} of {first.path}; "
                          "trials are matched by description, so it is never used", UserWarning, stacklevel=3)
            continue
        index[description] = WehrStimulus(category, idx, description, path)
    return index


def read_stimulus(path: Path) -> tuple[np.ndarray, float]:
    """``stimulus.samples`` flattened to float64 and ``stimulus.param.sf`` (Hz) of one stimulus file."""
    mat = _loadmat(path, ["stimulus"])
    samples = _vector(_get(mat, "stimulus.samples", path), "stimulus.samples", path)
    sf = _number(_get(mat, "stimulus.param.sf", path), "stimulus.param.sf", path)
    if not sf > 0:
        raise DatasetFormatError(str(path), "stimulus.param.sf", f"{sf!r}", "a sampling rate > 0 Hz")
    return samples, sf


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class WehrSession:
    """One ``Results/<date>-<animal>-<penetration>`` folder (one cell)."""

    cell_idx: int
    name: str
    date: str
    animal: str
    penetration: int
    path: Path

    def trial_files(self) -> list[Path]:
        """The trial files, sorted by name."""
        return [self.path / n for n in sorted(os.listdir(self.path)) if n.endswith(".mat")]


def list_sessions(results_root: Path) -> list[WehrSession]:
    """Session folders of ``Results`` in name order, numbered by ``_wehr_cell_idx``.

    Every folder whose name starts with four digits consumes an index. One
    whose name is not ``<date>-<animal>-<integer>`` is skipped with a warning
    (deepSTRF 0.1.0 crashed) but still consumes its index, so the numbering of
    the others never moves.
    """
    sessions = []
    names = sorted(n for n in os.listdir(results_root) if (results_root / n).is_dir() and _SESSION_START.match(n))
    for idx, name in enumerate(names):
        parts = name.split("-")
        if len(parts) != 3 or not parts[2].strip().isdigit():
            warnings.warn(f"skipping Wehr session folder {results_root / name}: its name is not "
                          "<yyyymmdd>-<animal>-<number>", UserWarning, stacklevel=2)
            continue
        sessions.append(WehrSession(idx, name, parts[0], parts[1], int(parts[2]), results_root / name))
    return sessions


def read_session(session: WehrSession, index: dict[str, WehrStimulus]) -> RawCell | None:
    """Natural-sound repeats of one Wehr cell, grouped by sound; ``None`` if it has none.

    One trigger per trial file (the first). Trials of other types are ignored;
    a description missing from ``index`` is skipped with one warning per
    description and session.
    """
    groups: dict[str, RawGroup] = {}
    unknown: set[str] = set()
    for path in session.trial_files():
        mat = _loadmat(path, ["response", "triggers"])
        triggers = _structs(_get(mat, "triggers", path))
        if not triggers:
            continue
        kind, time, description, duration_ms = _trigger(triggers[0], path)
        if kind not in WEHR_TRIGGER_TYPES:
            continue
        stim = index.get(description)
        if stim is None:
            if description not in unknown:
                unknown.add(description)
                warnings.warn(f"{path}: no Wehr stimulus is described as {description!r}; trial skipped",
                              UserWarning, stacklevel=2)
            continue
        trace, sf = _trace_mv(mat, path)
        group = groups.get(description)
        if group is None:
            key = f"wehr/{stim.category}/{stim.idx}"
            meta = {"experimenter": "wehr", "name": key, "category": stim.category, "idx": stim.idx,
                    "description": description, "duration_s": duration_ms / 1000.0}
            group = groups[description] = RawGroup(key, meta, sf, duration_ms,
                                                   waveform=lambda p=stim.path: read_stimulus(p))
        group.repeats.append(_slice(trace, time, duration_ms, sf))
    if not groups:
        return None
    meta = {"experimenter": "wehr", "session": session.name, "animal_id": session.animal, "penetration": session.penetration,
            "date": session.date, "site": "A1", "recording_type": "whole-cell", "species": "rat",
            "_wehr_cell_idx": session.cell_idx}
    return RawCell(meta, True, list(groups.values()))


def iter_cells(results_root: Path, stim_root: Path) -> Iterator[RawCell]:
    """Every Wehr cell with at least one natural-sound trial, in session order."""
    index = index_stimuli(stim_root)
    for session in list_sessions(results_root):
        cell = read_session(session, index)
        if cell is not None:
            yield cell
