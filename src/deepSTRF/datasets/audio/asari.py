"""CRCNS ac-1, Asari source: rat A1 whole-cell and MGB cell-attached recordings (Asari and Zador 2009).

Reader of the Asari half of the ac-1 release, used by
:class:`~deepSTRF.datasets.audio.crcns_ac1.CRCNSAC1Dataset`::

    crcns-ac1/asari/Stimuli/class<N>/<name>.mat         segments at 97656.25 Hz
        stimulus.sample (or stimulus.samples), stimulus.param.sf
    crcns-ac1-asari-results-K/asari-results-K/<yyyymmdd>-ha<k>-<NNN>/*.mat   K = 1, 2
        param.stimulus(m).file        segment table of this recording file, e.g. 'class6/3.mat'
        param.recording.site, .type   e.g. 'auditory cortex' / 'whole cell', 'MGB' / 'cell attached'
        response.trace, .scale, .sf   one long trace (10 kHz)
        triggers(k).type, .time, .param.description ('Sequence <n>: i1 i2 ...'), .param.duration (ms)

A natural-sound trigger plays a *sequence* of segments: the integers after the
colon are 1-based rows of that file's ``param.stimulus`` table. The sound is
identified by the resolved segment files, so the same splice reached through
other rows or sequence numbers (other files, other sessions) is one stimulus.
Each segment gets a 5 ms sin² onset/offset ramp before concatenation.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import DatasetFormatError
from .wehr import (
    RawCell,
    RawGroup,
    _get,
    _loadmat,
    _number,
    _slice,
    _structs,
    _text,
    _trace_mv,
    _trigger,
    _vector,
)

__all__ = [
    "ASARI_RAMP_MS",
    "ASARI_RESULTS",
    "ASARI_TRIGGER_TYPES",
    "AsariSession",
    "list_sessions",
    "onset_offset_ramp",
    "parse_sequence",
    "read_segment",
    "read_session",
    "recording_type_of",
    "resolve_segment",
    "segment_files",
    "site_of",
    "splice",
]

#: Folders of the two results archives, in neuron order.
ASARI_RESULTS = ("asari-results-1", "asari-results-2")
#: Trigger types of natural-sound presentations (compared lower-cased and trimmed).
ASARI_TRIGGER_TYPES = frozenset({"naturalsound", "natural sound"})
#: Length of the sin² ramp applied to both ends of every segment, ms.
ASARI_RAMP_MS = 5.0

_SEQUENCE = re.compile(r"Sequence\s*(\d+)\s*:\s*(\d+(?:\s+\d+)*)")
_CLASS = re.compile(r"^class(\d+)/")


def parse_sequence(description: str) -> tuple[int, tuple[int, ...]] | None:
    """``'Sequence 3: 2 1 4'`` -> ``(3, (2, 1, 4))``; ``None`` if the text is not a sequence."""
    match = _SEQUENCE.search(description)
    if match is None:
        return None
    return int(match.group(1)), tuple(int(i) for i in match.group(2).split())


def resolve_segment(entry: str) -> str:
    """A table entry as a path under ``asari/Stimuli``: ``\\`` -> ``/``, leading ``/`` dropped."""
    return entry.replace("\\", "/").lstrip("/")


def site_of(text: str) -> str:
    """``'A1'`` if the recording-site text mentions the cortex (any case), else ``'MGB'``."""
    return "A1" if "cortex" in text.lower() else "MGB"


def recording_type_of(text: str) -> str:
    """Recording type lower-cased with spaces as dashes: ``'Cell attached'`` -> ``'cell-attached'``."""
    return text.strip().lower().replace(" ", "-")


def onset_offset_ramp(n_samples: int, sf: float, ramp_ms: float = ASARI_RAMP_MS) -> np.ndarray:
    """Gains ``(n_samples,)`` of the segment ramp: ``sin²(π/2 · j/n)`` on the first and (reversed) last n samples.

    ``n = max(1, round(ramp_ms * sf / 1000))`` capped at ``n_samples // 2``
    (no ramp when that is 0): 488 samples at 97656.25 Hz.
    """
    gains = np.ones(n_samples, dtype=np.float64)
    n = min(max(1, round(ramp_ms * sf / 1000.0)), n_samples // 2)
    if n > 0:
        rise = np.sin(np.pi / 2 * np.arange(n) / n) ** 2
        gains[:n] = rise
        gains[n_samples - n:] = rise[::-1]
    return gains


def segment_files(stim_root: Path) -> list[Path]:
    """Every ``class*/*.mat`` segment file (listing only, for the cache key)."""
    out = []
    for folder in sorted(os.listdir(stim_root)):
        if (stim_root / folder).is_dir():
            out += [stim_root / folder / n for n in sorted(os.listdir(stim_root / folder)) if n.endswith(".mat")]
    return out


def read_segment(path: Path) -> tuple[np.ndarray, float]:
    """``stimulus.sample`` (or ``stimulus.samples``) as float64 and ``stimulus.param.sf`` of one segment file."""
    mat = _loadmat(path, ["stimulus"])
    samples = _get(mat, "stimulus.sample", path, None)
    field = "stimulus.sample"
    if samples is None:
        samples, field = _get(mat, "stimulus.samples", path), "stimulus.samples"
    sf = _number(_get(mat, "stimulus.param.sf", path), "stimulus.param.sf", path)
    return _vector(samples, field, path), sf


def splice(stim_root: Path, files: tuple[str, ...]) -> tuple[np.ndarray, float]:
    """The sound of a sequence: each resolved segment file ramped (5 ms), then concatenated.

    Raises
    ------
    DatasetFormatError
        Two segments differ in sampling rate by more than 1 Hz.
    """
    pieces, rate, first = [], None, None
    for rel in files:
        path = stim_root / rel
        x, sf = read_segment(path)
        if rate is None:
            rate, first = sf, path
        elif abs(sf - rate) > 1.0:
            raise DatasetFormatError(str(path), "stimulus.param.sf", f"{sf} Hz",
                                     f"{rate} Hz like {first}, the first segment of the same sequence")
        pieces.append(x * onset_offset_ramp(x.size, sf))
    return np.concatenate(pieces) if pieces else np.zeros(0), float(rate or 0.0)


@dataclass(frozen=True)
class AsariSession:
    """One ``asari-results-K/<yyyymmdd>-ha<k>-<NNN>`` folder (one cell)."""

    name: str
    date: str
    animal: str
    penetration: int | str
    path: Path

    def recording_files(self) -> list[Path]:
        """Every ``*.mat`` of the session, sorted by name."""
        return [self.path / n for n in sorted(os.listdir(self.path)) if n.endswith(".mat")]


def list_sessions(results_dirs: list[Path]) -> list[AsariSession]:
    """Session folders of the given results folders (each sorted by name), in order.

    A folder counts when its name splits on ``-`` into at least three parts
    with an all-digit first part; other entries are skipped.
    """
    sessions = []
    for folder in results_dirs:
        for name in sorted(os.listdir(folder)):
            parts = name.split("-")
            if len(parts) < 3 or not parts[0].isdigit() or not (folder / name).is_dir():
                continue
            pen = parts[2]
            sessions.append(AsariSession(name, parts[0], parts[1], int(pen) if pen.isdigit() else pen,
                                         folder / name))
    return sessions


def read_session(session: AsariSession, stim_root: Path, sites: tuple[str, ...] = ("A1", "MGB")) -> RawCell | None:
    """Natural-sound repeats of one Asari cell grouped by spliced sound.

    Returns ``None`` when the session has no usable natural-sound repeat or no
    ``param.recording``, and a cell without groups when its site is not in ``sites``.

    Per recording file (sorted): an unreadable file is skipped with a
    warning; one without ``param.stimulus`` rows or without triggers is
    skipped. Site and recording type come from the first remaining file with
    ``param.recording``; a session without one is dropped. A trigger whose
    rows fall outside the table, or whose segment files are missing, is
    skipped with a warning.
    """
    groups: dict[tuple[str, ...], RawGroup] = {}
    site = rec_type = None
    for path in session.recording_files():
        try:
            mat = _loadmat(path, ["param", "response", "triggers"])
        except DatasetFormatError as exc:
            warnings.warn(f"skipping unreadable Asari recording file: {exc}", UserWarning, stacklevel=2)
            continue
        param = mat.get("param")
        table = _structs(_get(param, "stimulus", path, None)) if param is not None else []
        if not table:
            continue
        triggers = _structs(mat.get("triggers"))
        if not triggers:
            continue
        if site is None:
            recording = _get(param, "recording", path, None)
            if recording is not None:
                site = site_of(_text(_get(recording, "site", path, "")))
                rec_type = recording_type_of(_text(_get(recording, "type", path, "")))
                if site not in sites:  # not wanted: no groups (the caller does not count it as empty)
                    return RawCell(_cell_meta(session, site, rec_type), "attached" not in rec_type, [])
        trace = sf = None
        for trig in triggers:
            kind, time, description, duration_ms = _trigger(trig, path)
            if kind not in ASARI_TRIGGER_TYPES:
                continue
            parsed = parse_sequence(description)
            if parsed is None:
                continue
            rows = parsed[1]
            if any(not 1 <= r <= len(table) for r in rows):
                warnings.warn(f"{path}: trigger {description!r} points past the {len(table)}-row stimulus "
                              "table; skipped", UserWarning, stacklevel=2)
                continue
            stored = tuple(_text(_get(table[r - 1], "file", path)) for r in rows)
            key = tuple(resolve_segment(f) for f in stored)
            group = groups.get(key)
            if group is None:
                absent = [f for f in key if not (stim_root / f).is_file()]
                if absent:
                    warnings.warn(f"{path}: segment file(s) {absent} not found under {stim_root}; "
                                  f"trigger {description!r} skipped", UserWarning, stacklevel=2)
                    continue
                if trace is None:
                    trace, sf = _trace_mv(mat, path)
                text = " ".join(description.split())
                cls = _CLASS.match(stored[0])
                meta = {"experimenter": "asari", "name": "asari/" + "+".join(key),
                        "category": f"class{cls.group(1)}" if cls else "mixed",
                        "class_n": int(cls.group(1)) if cls else None, "segments": list(rows),
                        "segment_files": list(stored), "sequence": text, "description": text,
                        "duration_s": duration_ms / 1000.0}
                group = groups[key] = RawGroup(meta["name"], meta, sf, duration_ms,
                                               waveform=lambda k=key: splice(stim_root, k))
            if trace is None:
                trace, sf = _trace_mv(mat, path)
            group.repeats.append(_slice(trace, time, duration_ms, sf))
    if site is None or not groups:
        return None
    return RawCell(_cell_meta(session, site, rec_type), "attached" not in rec_type, list(groups.values()))


def _cell_meta(session: AsariSession, site: str, rec_type: str) -> dict:
    return {"experimenter": "asari", "session": session.name, "animal_id": session.animal,
            "penetration": session.penetration, "date": session.date, "site": site,
            "recording_type": rec_type, "species": "rat"}
