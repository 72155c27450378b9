"""Processed-data cache: one file per dataset configuration.

Parsing raw files (MATLAB structs, thousands of spike trains, spectrograms) is
slow; the tensors it produces are not. A loader hands its parse function to
:func:`load_or_build`, which either loads the tensors of an earlier parse of
*the same configuration* from one cache file, or runs the parse and writes that
file for next time.

Cache key
    sha256 over the dataset name, the loader's qualified class name, a
    per-loader integer format version (bump it whenever the parse changes what
    it produces), the content-changing constructor parameters (a JSON-able
    dict, keys sorted) and, for every raw file, its resolved path, size and
    ``st_mtime_ns``. Anything else (selection state, transforms) must stay out
    of the key.

Where
    ``$DEEPSTRF_CACHE`` if set, else ``platformdirs.user_cache_dir("deepSTRF")``.
    One file per configuration, named ``<dataset>-<key[:16]>.dscache``.

File layout (all integers little-endian)
    ``[header 192 B][metadata JSON][stim table][stim dims][response table]``
    ``[stim values][response values]``, every section starting on a 64-byte
    boundary. The header holds a magic number, the layout version, the total
    length, a CRC-32 of itself and a 64-bit additive checksum of everything
    after it. Tables are ``int64``: per stim ``(offset, ndim, first dim
    index)``, per (stim, neuron) pair ``(offset, R, T)`` with ``R = -1`` for
    the missing-pair sentinel, which is flagged, not stored. Values are the
    tensors' raw bytes (native byte order: a cache is local to its machine),
    one dtype per side (stims, responses), recorded in the metadata.

Loading maps the file copy-on-write (``numpy.memmap`` mode ``"c"``) and makes
every stim and response tensor a *view* on that one buffer: a load costs about
the bytes of the tensors, pages are shared with the OS page cache, and in-place
edits (normalisation) stay private to the process, never reaching the file. A
truncated or corrupt file (wrong length, magic, version, CRC or checksum, or a
table pointing outside the data) is reported with a :class:`CacheWarning` and
rebuilt, never trusted.

Reading every page to check the body costs about a third of a reload. Once a
file has passed that check and is at least two seconds old (older than any
file system's timestamp granularity, so a later rewrite cannot keep its
mtime), a ``<file>.verified`` record of its identity (inode, size, mtime,
header checksum) lets later loads skip the body pass; the dataset's
``validate()`` adds to the record that the tensors passed the storage checks,
so later loads skip those too. Any rewrite of the file changes its identity and
brings both checks back. ``DEEPSTRF_CACHE_VERIFY=1`` checks every load in full.

A loaded :class:`Payload` records its file (:class:`CacheSource`: path, inode,
size, mtime, header checksum). A dataset pickled for another process
(DataLoader worker) sends that record instead of the bytes while its tensors
are unmodified views of the file; :func:`reopen` maps it again there, checking
the identity and header but not re-reading the body.

Writing goes to a temporary file in the cache folder, then ``os.replace``,
under a ``filelock.FileLock`` on ``<file>.lock``: when several processes (DDP
ranks, parallel jobs) ask for the same configuration at once, one builds and
the others wait, then load its file.

Metadata (``stim_meta``, ``nrn_meta``, ``attrs``) goes through JSON, whether
or not the cache is enabled, so that a dataset looks the same on its first and
later loads: numpy scalars become Python scalars, numpy arrays and tensors
become (nested) lists, tuples become lists, ``pathlib`` paths become strings,
dict keys become strings, NaN and infinities are kept. Other types raise
``TypeError`` naming the offending type.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import hashlib
import json
import logging
import math
import mmap
import os
import re
import struct
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import platformdirs
import torch
from torch import Tensor

from ._errors import CacheError, DatasetNotFoundError
from ._storage import is_sentinel, make_sentinels

__all__ = [
    "Payload",
    "CacheWarning",
    "cache_dir",
    "cache_key",
    "cache_path",
    "load_or_build",
    "clear_cache",
    "CacheSource",
    "reopen",
    "LAYOUT_VERSION",
]

logger = logging.getLogger(__name__)

#: Version of the on-disk layout written by this module. Part of the key, so
#: a layout change never reads an old file.
LAYOUT_VERSION = 1
CACHE_SUFFIX = ".dscache"
_MAGIC = b"DSTRFCA\x00"
_ALIGN = 64
# magic, layout, header size, total size, body checksum, S, N, then
# (offset, length) of each section; the header's CRC-32 follows these fields.
_SECTIONS = ("meta", "stim_table", "stim_dims", "resp_table", "stim_data", "resp_data")
_HEAD = struct.Struct("<8sIIQQQQ" + "QQ" * len(_SECTIONS))
_HEADER_SIZE = 192
_SENTINEL_R = -1


class CacheWarning(UserWarning):
    """A cache file was unusable (corrupt, truncated, unwritable) and was bypassed."""


class _CorruptCache(CacheError):
    """Internal: the file failed a structural or checksum test."""


@dataclass(frozen=True)
class CacheSource:
    """Identity of a loaded cache file: enough for another process to map the same bytes.

    Attributes
    ----------
    path : str
        Absolute path of the cache file.
    inode, size, mtime_ns : int
        ``os.stat`` fields of the file when it was loaded.
    checksum : int
        The body checksum recorded in the file's header.
    S, N : int
        Grid size recorded in the header.

    Notes
    -----
    Pickling a dataset whose tensors are still the unmodified views of its cache
    file sends this record instead of the bytes; :func:`reopen` maps the file
    again after checking that it is still the same file (same identity and
    header), without re-reading the body.
    """

    path: str
    inode: int
    size: int
    mtime_ns: int
    checksum: int
    S: int
    N: int


@dataclass
class Payload:
    """What a loader's parse produces, and what the cache stores.

    Attributes
    ----------
    stims : list of Tensor
        ``S`` tensors of any shape, one dtype for all (float32 usually).
    responses : list of list of Tensor
        ``S`` lists of ``N`` tensors, each ``(R, T)`` or the missing-pair
        sentinel (a ``(1, 1)`` tensor holding NaN). One dtype for all real
        tensors.
    stim_meta : list of dict
        ``S`` JSON-able dicts.
    nrn_meta : list of dict
        ``N`` JSON-able dicts.
    attrs : dict
        JSON-able extra attributes (``dt``, ``F``, ``audio_fs`` ...).
    mask : Tensor or None
        ``(S, N)`` bool, ``True`` where the pair holds real data (not a
        sentinel). Filled by :func:`load_or_build`; a build function may leave
        it ``None``.
    """

    stims: list[Tensor]
    responses: list[list[Tensor]]
    stim_meta: list[dict] = field(default_factory=list)
    nrn_meta: list[dict] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    mask: Tensor | None = None
    #: Set by the cache loader: the file the tensors are views of.
    source: CacheSource | None = field(default=None, compare=False)
    #: Set by the cache loader: the base tensors of ``stims``, the real responses
    #: and the sentinels (their version counters reveal in-place edits).
    bases: tuple | None = field(default=None, compare=False, repr=False)
    #: Set by the cache loader: a verification record says these exact bytes
    #: already passed the dataset's storage checks (``NeuralDataset.validate``).
    cells_checked: bool = field(default=False, compare=False, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stim and real response tensors (sentinels excluded)."""
        total = sum(t.numel() * t.element_size() for t in self.stims)
        for row in self.responses:
            total += sum(t.numel() * t.element_size() for t in row if not is_sentinel(t))
        return total


# --------------------------------------------------------------------------- paths and keys


def cache_dir() -> Path:
    """Folder of the processed-data cache files.

    Returns
    -------
    pathlib.Path
        ``$DEEPSTRF_CACHE`` if set and non-empty, else
        ``platformdirs.user_cache_dir("deepSTRF")``. Not created here.
    """
    env = os.environ.get("DEEPSTRF_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("deepSTRF"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, Tensor)):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        raise TypeError("sets are not JSON-able (their order is not defined); pass a sorted list")
    raise TypeError(f"objects of type {type(obj).__module__}.{type(obj).__qualname__} are not JSON-able")


def _dumps(obj: Any, what: str, *, sort_keys: bool = False) -> str:
    try:
        return json.dumps(obj, default=_json_default, ensure_ascii=False, allow_nan=True,
                          sort_keys=sort_keys, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must hold only JSON-able values (str, int, float, bool, None, lists, dicts, "
            f"numpy scalars/arrays): {exc}"
        ) from exc


def cache_key(
    dataset_name: str,
    cls_qualname: str,
    format_version: int,
    params: Mapping[str, Any],
    raw_files: Iterable[str | os.PathLike[str]],
) -> str:
    """Hex sha256 naming one dataset configuration.

    Parameters
    ----------
    dataset_name : str
        Short dataset name, e.g. ``"NS1"`` (also used in the file name).
    cls_qualname : str
        ``f"{cls.__module__}.{cls.__qualname__}"`` of the loader.
    format_version : int
        The loader's own version of what its parse produces.
    params : mapping
        Constructor parameters that change the content (JSON-able).
    raw_files : iterable of path-like
        The raw files the parse reads; their resolved path, size (bytes) and
        ``st_mtime_ns`` enter the key, so replacing or touching one yields a new
        key.

    Returns
    -------
    str
        64 hex characters.

    Raises
    ------
    TypeError
        ``format_version`` is not an int, or ``params`` is not JSON-able.
    DatasetNotFoundError
        A raw file does not exist.
    """
    if not isinstance(format_version, int) or isinstance(format_version, bool):
        raise TypeError(f"format_version must be an int, got {format_version!r}")
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of constructor parameters, got {type(params).__name__}")
    stats = []
    missing = []
    for f in sorted({Path(f).resolve() for f in raw_files}, key=str):
        try:
            st = f.stat()
        except FileNotFoundError:
            missing.append(str(f))
            continue
        stats.append([str(f), st.st_size, st.st_mtime_ns])
    if missing:
        raise DatasetNotFoundError(dataset_name, os.path.commonpath(missing), missing,
                                   fix="the loader listed raw files that are not on disk; download them first")
    doc = {
        "layout": LAYOUT_VERSION,
        "dataset": dataset_name,
        "class": cls_qualname,
        "format_version": format_version,
        "params": dict(params),
        "raw_files": stats,
    }
    blob = _dumps(doc, "params", sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _safe_name(dataset_name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", dataset_name).strip("._")
    if not name:
        raise ValueError(f"dataset_name must contain letters or digits, got {dataset_name!r}")
    return name


def cache_path(dataset_name: str, key: str) -> Path:
    """Path of the cache file of one configuration: ``cache_dir()/<dataset>-<key[:16]>.dscache``."""
    return cache_dir() / f"{_safe_name(dataset_name)}-{key[:16]}{CACHE_SUFFIX}"


# --------------------------------------------------------------------------- payload checks


def _as_payload(obj: Any) -> Payload:
    if isinstance(obj, Payload):
        return obj
    if isinstance(obj, Mapping):
        try:
            return Payload(**obj)
        except TypeError as exc:
            raise TypeError(f"build() returned a dict that is not a Payload: {exc}") from exc
    raise TypeError(f"build() must return a Payload (or a dict of its fields), got {type(obj).__name__}")


def _common_dtype(tensors: Iterable[Tensor], side: str) -> torch.dtype | None:
    dtype = None
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{side}[{i}] is a {type(t).__name__}, expected a torch.Tensor")
        if dtype is None:
            dtype = t.dtype
        elif t.dtype != dtype:
            raise TypeError(f"{side} mixes dtypes {dtype} and {t.dtype} (at index {i}); cast them to one dtype")
    return dtype


def _response_grid(responses: list[list[Tensor]], mask: Tensor | None = None) -> tuple[int, list[Tensor], np.ndarray]:
    """Check the S x N grid; return N, the real tensors in order, and the (S*N, 3) table.

    With the loader's ``mask`` (``True`` = real pair) sentinels are recognised
    without inspecting their value.
    """
    known = None if mask is None else torch.as_tensor(mask, dtype=torch.bool).reshape(-1).tolist()
    S = len(responses)
    N = len(responses[0]) if S else 0
    if known is not None and len(known) != S * N:
        raise ValueError(f"the mask handed over has {len(known)} entries, expected S*N = {S}*{N}")
    table = np.zeros((S * N, 3), dtype=np.int64)
    real: list[Tensor] = []
    offset = 0
    i = 0
    for s, row in enumerate(responses):
        if len(row) != N:
            raise ValueError(f"responses[{s}] holds {len(row)} tensors, responses[0] holds {N}: "
                             "every stim needs one tensor (or sentinel) per neuron")
        for n, t in enumerate(row):
            if not isinstance(t, Tensor):
                raise TypeError(f"responses[{s}][{n}] is a {type(t).__name__}, expected a torch.Tensor")
            if t.dim() != 2:
                raise ValueError(f"responses[{s}][{n}] has shape {tuple(t.shape)}, expected (R, T) "
                                 "or the (1, 1) NaN sentinel")
            if (not known[i]) if known is not None else (t.numel() == 1 and is_sentinel(t)):
                table[i] = (0, _SENTINEL_R, 0)
            else:
                R, T = t.shape
                table[i] = (offset, R, T)
                offset += R * T
                real.append(t)
            i += 1
    return N, real, table


def _normalise_meta(payload: Payload) -> None:
    """Round-trip the metadata through JSON (the cached and uncached paths then agree)."""
    for name in ("stim_meta", "nrn_meta", "attrs"):
        setattr(payload, name, json.loads(_dumps(getattr(payload, name), name)))


def _mask_from_table(table: np.ndarray, S: int, N: int) -> Tensor:
    return torch.from_numpy((table[:, 1] != _SENTINEL_R).reshape(S, N).copy())


# --------------------------------------------------------------------------- writing


def _pad(fh, pos: int) -> int:
    extra = (-pos) % _ALIGN
    if extra:
        fh.write(b"\0" * extra)
    return pos + extra


def _raw_bytes(t: Tensor):
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy() if flat.numel() else b""


def _write(path: Path, payload: Payload) -> None:
    """Write ``payload`` to ``path`` (a fresh temporary file)."""
    stims, responses = payload.stims, payload.responses
    if len(stims) != len(responses):
        raise ValueError(f"build() returned {len(stims)} stims but {len(responses)} response rows")
    S = len(stims)
    N, real, resp_table = _response_grid(responses, payload.mask)
    stim_dtype = _common_dtype(stims, "stims") or torch.float32
    resp_dtype = _common_dtype(real, "responses") or torch.float32
    stim_sz = torch.empty((), dtype=stim_dtype).element_size()
    resp_sz = torch.empty((), dtype=resp_dtype).element_size()

    stim_table = np.zeros((S, 3), dtype=np.int64)
    dims: list[int] = []
    offset = 0
    for s, t in enumerate(stims):
        stim_table[s] = (offset, t.dim(), len(dims))
        dims.extend(t.shape)
        offset += t.numel()
    stim_dims = np.asarray(dims, dtype=np.int64)

    meta = _dumps({
        "dtypes": {"stims": str(stim_dtype).removeprefix("torch."),
                   "responses": str(resp_dtype).removeprefix("torch.")},
        "stim_meta": payload.stim_meta,
        "nrn_meta": payload.nrn_meta,
        "attrs": payload.attrs,
    }, "metadata").encode("utf-8")

    sections: dict[str, tuple[int, int]] = {}
    with open(path, "wb") as fh:
        fh.write(b"\0" * _HEADER_SIZE)
        pos = _HEADER_SIZE

        def put(name: str, chunks: Iterable[Any]) -> None:
            nonlocal pos
            start = pos
            for chunk in chunks:
                n = memoryview(chunk).nbytes
                if n:
                    fh.write(chunk)
                    pos += n
            sections[name] = (start, pos - start)
            pos = _pad(fh, pos)

        put("meta", [meta])
        put("stim_table", [stim_table.astype("<i8")])
        put("stim_dims", [stim_dims.astype("<i8")])
        put("resp_table", [resp_table.astype("<i8")])
        put("stim_data", (_raw_bytes(t) for t in stims))
        put("resp_data", (_raw_bytes(t) for t in real))
        if sections["stim_data"][1] != offset * stim_sz:
            raise CacheError(f"{path}: stim bytes written do not match the stim shapes")
        if sections["resp_data"][1] != int(resp_table[:, 1].clip(0) @ resp_table[:, 2]) * resp_sz:
            raise CacheError(f"{path}: response bytes written do not match the response shapes")
        total = pos

    checksum = _body_checksum(path, total)
    fields = [_MAGIC, LAYOUT_VERSION, _HEADER_SIZE, total, checksum, S, N]
    for name in _SECTIONS:
        fields.extend(sections[name])
    head = _HEAD.pack(*fields)
    head += struct.pack("<I", zlib.crc32(head))
    with open(path, "r+b") as fh:
        fh.write(head.ljust(_HEADER_SIZE, b"\0"))


def _body_checksum(path: Path, total: int, chunk_bytes: int = 1 << 24) -> int:
    """Additive uint64 checksum of the body, read back in plain chunks.

    Reading (rather than memory-mapping) keeps the freshly written file out of
    this process's resident memory while the built tensors are still alive.
    """
    checksum = 0
    with open(path, "rb") as fh:
        fh.seek(_HEADER_SIZE)
        remaining = total - _HEADER_SIZE
        while remaining > 0:
            block = fh.read(min(chunk_bytes, remaining))
            if not block:
                raise CacheError(f"{path}: file shorter than the {total} bytes just written")
            remaining -= len(block)
            checksum = (checksum + int(np.add.reduce(np.frombuffer(block, dtype="<u8"), dtype=np.uint64))) % (1 << 64)
    return checksum


# --------------------------------------------------------------------------- reading


def _dtype(name: Any) -> torch.dtype:
    dt = getattr(torch, str(name), None)
    if not isinstance(dt, torch.dtype):
        raise _CorruptCache(f"unknown dtype {name!r}")
    return dt


def _load(path: Path, expect: CacheSource | None = None, *, stims: bool = True, responses: bool = True) -> Payload:
    """Load a cache file; raise :class:`_CorruptCache` when it cannot be trusted.

    With ``expect`` (a re-open of a file this or another process already
    verified), the file must have that identity and header checksum, and the
    body is not checksummed again (which would read every page).
    ``stims=False`` / ``responses=False`` skip making the views of that side
    (its list is then empty).
    """
    st = path.stat()
    size = st.st_size
    if expect is not None and (st.st_ino, st.st_size, st.st_mtime_ns) != (expect.inode, expect.size, expect.mtime_ns):
        raise _CorruptCache("the file changed since it was loaded (inode, size or mtime differ)")
    if size < _HEADER_SIZE:
        raise _CorruptCache(f"file is {size} bytes, shorter than its header")
    mm = np.memmap(path, dtype=np.uint8, mode="c")
    head = mm[:_HEADER_SIZE].tobytes()
    if head[:8] != _MAGIC:
        raise _CorruptCache("not a deepSTRF cache file (bad magic number)")
    fields = _HEAD.unpack_from(head)
    (crc,) = struct.unpack_from("<I", head, _HEAD.size)
    if zlib.crc32(head[:_HEAD.size]) != crc:
        raise _CorruptCache("header CRC mismatch")
    _, layout, header_size, total, checksum, S, N = fields[:7]
    if layout != LAYOUT_VERSION or header_size != _HEADER_SIZE:
        raise _CorruptCache(f"layout version {layout}, this deepSTRF reads {LAYOUT_VERSION}")
    if total != size:
        raise _CorruptCache(f"file is {size} bytes, its header says {total} (truncated?)")
    if (total - _HEADER_SIZE) % 8:
        raise _CorruptCache("body length is not a multiple of 8")
    record = None
    if expect is not None:
        if (checksum, S, N) != (expect.checksum, expect.S, expect.N):
            raise _CorruptCache("the file's header changed since it was loaded")
    else:
        record = _read_record(path, st, checksum)
        if record is None:
            if int(np.add.reduce(mm[_HEADER_SIZE:].view("<u8"), dtype=np.uint64)) != checksum:
                raise _CorruptCache("checksum mismatch (corrupt bytes)")
            _write_record(path, st, checksum, cells_checked=False)
    sec = {name: fields[7 + 2 * i: 9 + 2 * i] for i, name in enumerate(_SECTIONS)}
    for name, (off, length) in sec.items():
        if off < _HEADER_SIZE or off + length > total or (name != "meta" and off % _ALIGN):
            raise _CorruptCache(f"section {name} out of bounds")

    def part(name: str) -> np.ndarray:
        off, length = sec[name]
        return mm[off:off + length]

    try:
        meta = json.loads(part("meta").tobytes().decode("utf-8"))
        stim_dtype = _dtype(meta["dtypes"]["stims"])
        resp_dtype = _dtype(meta["dtypes"]["responses"])
        stim_meta, nrn_meta, attrs = meta["stim_meta"], meta["nrn_meta"], meta["attrs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _CorruptCache(f"unreadable metadata: {exc}") from exc
    stim_table = part("stim_table").view("<i8").reshape(-1, 3).astype(np.int64)
    stim_dims = part("stim_dims").view("<i8").astype(np.int64)
    resp_table = part("resp_table").view("<i8").reshape(-1, 3).astype(np.int64)
    if stim_table.shape[0] != S or resp_table.shape[0] != S * N:
        raise _CorruptCache("table sizes disagree with the header")

    storage = torch.from_numpy(mm).untyped_storage()
    stim_flat = _typed(storage, sec["stim_data"], stim_dtype)
    resp_flat = _typed(storage, sec["resp_data"], resp_dtype)
    # Creating S*N tensor objects would trigger full garbage-collector passes
    # over every object torch created: pause the collector meanwhile.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        stim_list = _stim_views(stim_flat, stim_table, stim_dims) if stims else []
        if responses:
            resp_grid, sentinel_base = _response_views(resp_flat, resp_table, S, N, resp_dtype)
        else:
            resp_grid, sentinel_base = [], None
    finally:
        if gc_was_enabled:
            gc.enable()
    source = CacheSource(str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, checksum, S, N)
    return Payload(stim_list, resp_grid, stim_meta, nrn_meta, attrs, _mask_from_table(resp_table, S, N),
                   source=source, bases=(stim_flat, resp_flat, sentinel_base),
                   cells_checked=bool(record and record.get("cells_checked")))


# --------------------------------------------------------------------------- verification records

_TRUST_AGE_NS = 2_000_000_000


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _read_record(path: Path, st: os.stat_result, checksum: int) -> dict | None:
    """The verification record of ``path`` if it vouches for exactly this file, else ``None``."""
    if os.environ.get("DEEPSTRF_CACHE_VERIFY", "").strip() not in ("", "0"):
        return None
    try:
        record = json.loads(_record_path(path).read_text())
        same = [record["inode"], record["size"], record["mtime_ns"], record["checksum"]] == \
            [st.st_ino, st.st_size, st.st_mtime_ns, checksum]
        old_enough = record["verified_at_ns"] - st.st_mtime_ns >= _TRUST_AGE_NS
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if same and old_enough else None


def _write_record(path: Path, st: os.stat_result, checksum: int, cells_checked: bool) -> None:
    """Record that ``path`` (identity ``st``) passed the body check; only once it is old enough (best effort)."""
    now = time.time_ns()
    if now - st.st_mtime_ns < _TRUST_AGE_NS:
        return
    record = {"inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "checksum": checksum,
              "verified_at_ns": now, "cells_checked": cells_checked}
    target = _record_path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def mark_cells_checked(source: CacheSource) -> None:
    """Add to the verification record of ``source`` that its tensors passed the dataset's storage checks.

    Only when a record already vouches for exactly this file (same identity and
    header checksum): a file too young for a record is checked in full again at
    its next load.
    """
    path = Path(source.path)
    try:
        st = path.stat()
    except OSError:
        return
    if (st.st_ino, st.st_size, st.st_mtime_ns) != (source.inode, source.size, source.mtime_ns):
        return
    if _read_record(path, st, source.checksum) is not None:
        _write_record(path, st, source.checksum, cells_checked=True)


def _typed(storage: torch.UntypedStorage, section: tuple[int, int], dtype: torch.dtype) -> Tensor:
    """A 1-D tensor of ``dtype`` over one section of the map.

    Not a view of a common base tensor: each side (stims, responses) gets its
    own version counter, so an in-place edit of a stim does not mark the
    responses as modified (see ``NeuralDataset.__getstate__``).
    """
    off, length = section
    size = torch.empty((), dtype=dtype).element_size()
    if length % size or off % size:
        raise _CorruptCache(f"data section of {length} bytes is not a whole number of {dtype} values")
    return torch.empty(0, dtype=dtype).set_(storage, off // size, (length // size,))


def _stim_views(flat: Tensor, table: np.ndarray, dims: np.ndarray) -> list[Tensor]:
    out = []
    for off, ndim, first in table.tolist():
        shape = dims[first:first + ndim].tolist()
        if ndim < 0 or first + ndim > dims.shape[0] or min(shape, default=0) < 0:
            raise _CorruptCache("stim table out of bounds")
        numel = math.prod(shape)
        if off < 0 or off + numel > flat.numel():
            raise _CorruptCache("stim table points outside the stim data")
        out.append(flat.narrow(0, off, numel).view(shape))
    return out


def _response_views(
    flat: Tensor, table: np.ndarray, S: int, N: int, dtype: torch.dtype
) -> tuple[list[list[Tensor]], Tensor | None]:
    """The response grid as views on ``flat``, and the buffer the sentinels are views of."""
    M = S * N
    if M == 0:
        return [[] for _ in range(S)], None
    off, R, T = table[:, 0], table[:, 1], table[:, 2]
    real = R != _SENTINEL_R
    numel = np.where(real, R * T, 0)
    if (real & ((R < 0) | (T < 0))).any():
        raise _CorruptCache("negative response shape in the table")
    # Real cells are stored back to back, in table order.
    expected_off = np.cumsum(numel) - numel
    if (off[real] != expected_off[real]).any() or int(numel.sum()) != flat.numel():
        raise _CorruptCache("response table disagrees with the response data")
    # Long runs of consecutive real cells of one shape become one (k, R, T) view
    # unbound into k views (one C call per run); the other cells get one
    # as_strided view each. No data is copied.
    change = np.ones(M, dtype=bool)
    change[1:] = (real[1:] != real[:-1]) | (R[1:] != R[:-1]) | (T[1:] != T[:-1])
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, M))
    long_run = real[starts] & (lengths >= 8)
    cells: list[Tensor | None] = [None] * M
    for a, k in zip(starts[long_run].tolist(), lengths[long_run].tolist()):
        r, t = int(R[a]), int(T[a])
        cells[a:a + k] = flat.narrow(0, int(off[a]), k * r * t).view(k, r, t).unbind(0)
    single = np.flatnonzero(real & ~np.repeat(long_run, lengths))
    strided, base = flat.as_strided, flat.storage_offset()
    for i, o, r, t in zip(single.tolist(), (off[single] + base).tolist(), R[single].tolist(), T[single].tolist()):
        cells[i] = strided((r, t), (t, 1), o)
    sentinel_base = None
    missing = np.flatnonzero(~real)
    if missing.size:
        # one batched op; what remains is the cost of the tensor objects themselves
        sentinels = make_sentinels(int(missing.size), dtype=dtype)
        sentinel_base = sentinels[0]._base
        for i, sentinel in zip(missing.tolist(), sentinels):
            cells[i] = sentinel
    return [cells[s * N:(s + 1) * N] for s in range(S)], sentinel_base


# --------------------------------------------------------------------------- public entry points


def reopen(source: CacheSource, *, stims: bool = True, responses: bool = True) -> Payload:
    """Map a cache file again, e.g. in a DataLoader worker that received a pickled dataset.

    Parameters
    ----------
    source : CacheSource
        The record of the file as loaded by another process (or this one).

    Returns
    -------
    Payload
        Views on a fresh copy-on-write map of the file. The body checksum is
        not recomputed: the file must still be the one that was verified
        (same inode, size, mtime and header checksum). ``stims=False`` or
        ``responses=False`` leave that side's list empty (not needed).

    Raises
    ------
    CacheError
        The file is gone or was replaced since ``source`` was recorded (e.g.
        :func:`clear_cache` ran, or the cache was rebuilt).
    """
    path = Path(source.path)
    try:
        return _load(path, expect=source, stims=stims, responses=responses)
    except (_CorruptCache, OSError, ValueError) as exc:
        raise CacheError(
            f"cannot re-open the processed-data cache {path} for a dataset sent to this process ({exc}). "
            "The file was removed or rebuilt after the dataset was loaded; do not clear the cache while "
            "DataLoader workers or other processes use it, or load the dataset again."
        ) from exc


def _try_load(path: Path) -> Payload | None:
    try:
        return _load(path)
    except FileNotFoundError:
        return None
    except (_CorruptCache, OSError, ValueError) as exc:
        warnings.warn(f"processed-data cache {path} is unusable ({exc}); rebuilding it", CacheWarning, stacklevel=3)
        return None


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _build(build: Callable[[], Any]) -> Payload:
    payload = _as_payload(build())
    _normalise_meta(payload)
    return payload


def _with_mask(payload: Payload) -> Payload:
    """Fill ``payload.mask`` from its responses (the uncached paths)."""
    S = len(payload.stims)
    if len(payload.responses) != S:
        raise ValueError(f"build() returned {S} stims but {len(payload.responses)} response rows")
    N, _, table = _response_grid(payload.responses, payload.mask)
    payload.mask = _mask_from_table(table, S, N)
    return payload


_MADV_DONTNEED = 4
_PAGE_PRESENT, _PAGE_FILE = 1 << 63, 1 << 61  # /proc/self/pagemap entry bits


def _only_file_pages(first: int, last: int) -> bool:
    """Whether no page of ``[first, last)`` was privately copied (written in place) by this process."""
    page = mmap.PAGESIZE
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(first // page * 8)
            entries = np.frombuffer(f.read((last - first) // page * 8), dtype=np.uint64)
    except OSError:
        return False
    present = (entries & np.uint64(_PAGE_PRESENT)) != 0
    file_backed = (entries & np.uint64(_PAGE_FILE)) != 0
    return entries.size == (last - first) // page and not bool((present & ~file_backed).any())


def release_mapped_pages(tensors: Iterable[Tensor], region: Tensor) -> None:
    """Drop from this process the cache-file pages under ``tensors`` (best effort, Linux only).

    Called after an operation copied the data of ``tensors`` (views of the
    cache map ``region``) into new tensors, so the old pages would only add to
    the process's memory. Only done when every page in the range is still an
    unmodified file page (checked in ``/proc/self/pagemap``): the views stay
    valid and read the same values back from the file (kept in the OS page
    cache) if used again. A range holding a page written in place is left
    alone, as are the partial pages at either end.

    Parameters
    ----------
    tensors : iterable of Tensor
        Views whose bytes are contiguous or nearly so (one stim's responses);
        tensors that are not views of ``region`` are ignored.
    region : Tensor
        The 1-D tensor over the mapped file section the views belong to.
    """
    if not sys.platform.startswith("linux"):
        return
    storage = region.untyped_storage().data_ptr()
    low, high = None, None
    for t in tensors:
        if t.untyped_storage().data_ptr() != storage or not t.numel():
            continue
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        low = start if low is None else min(low, start)
        high = end if high is None else max(high, end)
    if low is None:
        return
    page = mmap.PAGESIZE
    first, last = -(-low // page) * page, (high // page) * page
    if last <= first or not _only_file_pages(first, last):
        return
    libc = _libc()
    if libc is not None:
        libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), ctypes.c_int(_MADV_DONTNEED))


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    """The C library of this (Linux) process, loaded once; ``None`` where it cannot be loaded."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def _release_freed_memory() -> None:
    """Hand the memory of the just-freed build back to the OS before mapping the cache.

    A build leaves thousands of small freed allocations in the C heap; without
    a trim they stay resident and add to the mapped file's pages (peak ~2.4x
    the tensor bytes on Downer 2025). Best effort: glibc only, silent elsewhere.
    """
    gc.collect()
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def load_or_build(
    dataset_name: str,
    cls_qualname: str,
    format_version: int,
    params: Mapping[str, Any],
    raw_files: Iterable[str | os.PathLike[str]],
    build: Callable[[], Payload],
    enabled: bool = True,
) -> Payload:
    """Return the processed tensors of one dataset configuration, from cache if possible.

    Parameters
    ----------
    dataset_name : str
        Short dataset name, e.g. ``"NS1"``; the cache file is
        ``<dataset_name>-<key[:16]>.dscache`` in :func:`cache_dir`.
    cls_qualname : str
        ``f"{cls.__module__}.{cls.__qualname__}"`` of the loader class.
    format_version : int
        The loader's own format version; bump it whenever ``build`` changes
        what it returns for the same inputs.
    params : mapping
        Every constructor parameter that changes the content (JSON-able).
    raw_files : iterable of path-like
        The raw files ``build`` reads (size and mtime enter the key).
    build : callable
        No-argument function parsing the raw files into a :class:`Payload`
        (or a dict with its fields). Called at most once; not called at all
        when a valid cache file exists.
    enabled : bool, default True
        ``False`` skips the cache entirely: no file is read, locked or
        written; ``build`` runs.

    Returns
    -------
    Payload
        With ``mask`` filled. When cached, every tensor is a view on one
        copy-on-write memory map of the cache file (also right after a build,
        so first and later loads look the same). Metadata has gone through JSON
        (see the module docstring).

    Raises
    ------
    TypeError, ValueError
        ``build`` returned something that is not a valid payload, or the
        parameters/metadata are not JSON-able. Problems with the cache file
        itself never raise: it is rebuilt, or bypassed with a
        :class:`CacheWarning` when the cache folder is not writable.
    """
    if not enabled:
        return _with_mask(_build(build))
    key = cache_key(dataset_name, cls_qualname, format_version, params, raw_files)
    path = cache_path(dataset_name, key)
    rejected = None  # identity of a file found unusable, so that it is reported once
    if path.exists():
        loaded = _try_load(path)
        if loaded is not None:
            return loaded
        rejected = _identity(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            logger.info("waiting for another process building %s", path)
            lock.acquire()
    except OSError as exc:
        warnings.warn(f"cannot use the cache folder {path.parent} ({exc}); building {dataset_name} "
                      "without cache (set DEEPSTRF_CACHE to a writable folder)", CacheWarning, stacklevel=2)
        return _with_mask(_build(build))
    try:
        if path.exists():  # another process may have built or replaced it while we waited
            loaded = _try_load(path) if _identity(path) != rejected else None
            if loaded is not None:
                return loaded
            path.unlink(missing_ok=True)
        payload = _build(build)
        tmp = None
        try:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
            _write(tmp, payload)
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            warnings.warn(f"could not write the cache file {path} ({exc}); continuing without cache",
                          CacheWarning, stacklevel=2)
            return _with_mask(payload)
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        del payload
        _release_freed_memory()
        try:
            return _load(path)
        except _CorruptCache as exc:  # pragma: no cover - would mean the writer is broken
            raise CacheError(f"the cache file {path} just written cannot be read back: {exc}") from exc
    finally:
        lock.release()


def clear_cache(dataset: str | None = None) -> int:
    """Delete processed-data cache files.

    Parameters
    ----------
    dataset : str, optional
        Only this dataset's files (the ``dataset_name`` given to
        :func:`load_or_build`); all deepSTRF cache files when ``None``.

    Returns
    -------
    int
        Number of cache files removed (lock and leftover temporary files are
        removed too but not counted). Files being built right now are skipped.
    """
    folder = cache_dir()
    if not folder.is_dir():
        return 0
    stem = re.escape(_safe_name(dataset)) if dataset is not None else r"[A-Za-z0-9_.]+"
    pattern = re.compile(rf"^{stem}-[0-9a-f]{{16}}{re.escape(CACHE_SUFFIX)}$")
    removed = 0
    for entry in folder.iterdir():
        if not pattern.match(entry.name):
            continue
        lock = filelock.FileLock(str(entry) + ".lock")
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            logger.warning("skipping %s: another process is building it", entry)
            continue
        try:
            for tmp in folder.glob(f".{entry.name}.*.tmp"):
                tmp.unlink(missing_ok=True)
            try:
                entry.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        finally:
            lock.release()
        Path(str(entry) + ".lock").unlink(missing_ok=True)
        _record_path(entry).unlink(missing_ok=True)
    return removed
