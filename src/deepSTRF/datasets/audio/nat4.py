"""NAT4: ferret A1 / PEG population responses to 593 natural sounds (Pennington & David 2023).

Module layout: constants (Zenodo record, file names, label prefixes, per-site
archives), then :class:`NAT4Dataset`, then :func:`download_nat4`.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import warnings
import zlib
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
from ._spectrogram import resample_polyphase
from .audio_dataset import AudioNeuralDataset

__all__ = [
    "AREAS",
    "CELL_ID_PATTERN",
    "CORRELATION_FILE",
    "DT_MS",
    "EST_PREFIX",
    "NAT4_NAME",
    "POPULATION_FILE",
    "POP_FS",
    "SITES_FOLDER",
    "SITES_ZIP",
    "SITE_ARCHIVES",
    "SITE_FS",
    "SUBSETS",
    "VAL_PREFIX",
    "WAV_FOLDER",
    "WAV_ZIP",
    "ZENODO_DOI",
    "ZENODO_HASHES",
    "ZENODO_RECORD",
    "NAT4Dataset",
    "download_nat4",
]

# --------------------------------------------------------------------------- constants

NAT4_NAME = "NAT4"
AREAS: tuple[str, ...] = ("A1", "PEG")
SUBSETS: tuple[str, ...] = ("all", "est", "val")
#: Response bin width (ms) of the population recording (100 Hz).
DT_MS = 10.0
POP_FS = 100
#: Sampling rate of the per-site spike rasters (Hz).
SITE_FS = 1000
ZENODO_RECORD = 8044773
ZENODO_DOI = "10.5281/zenodo.8044773"
#: Registry pins per Zenodo key (``None``: verified against the md5 Zenodo publishes).
ZENODO_HASHES: dict[str, str | None] = {}
#: File-name templates (``{area}`` is ``'A1'`` or ``'PEG'``).
POPULATION_FILE = "{area}_NAT4_ozgf.fs100.ch18.tgz"
CORRELATION_FILE = "{area}_pred_correlation.csv"
SITES_FOLDER = "{area}_single_sites"
SITES_ZIP = "{area}_single_sites.zip"
WAV_ZIP = "wav.zip"
WAV_FOLDER = "wav"
#: Epoch-label prefixes of the validation (18 sounds x 20 repeats) and estimation (575 x 1) stims.
VAL_PREFIX = re.compile(r"^STIM_00cat")
EST_PREFIX = re.compile(r"^STIM_cat")
#: ``<site>-<electrode>-<unit>``, site = 3-letter animal code + digits + session letter.
CELL_ID_PATTERN = re.compile(r"^([A-Za-z]{3})(\d+[a-z]?)-(\d+)-(\d+)$")
#: Per-site archives ``<area>_<site>_<hash>.tgz`` of the release (to check that an unzip is complete).
SITE_ARCHIVES: dict[str, dict[str, str]] = {
    "A1": {
        "ARM029a": "aefada7c479857e55fdafe3e00e94df189250651",
        "ARM030a": "9b0586bd962b60ab7b02a21771c98695134b8be8",
        "ARM031a": "e73a3420ba4e26d680d9a8adc5bef1c32f6d9617",
        "ARM032a": "d28371c918efb9917c560f41e51ff15efdf516c5",
        "ARM033a": "8bc7cdda34517574d7973a1b6352d52d873bad7b",
        "CRD016d": "f9cf97eab58415d6187e5f104e9df6bf06a9fd99",
        "CRD017c": "07010f7f2781fc649e4f1f90679212e60a7ff3b4",
        "DRX006b": "adb77e6b989c6b08bf7fce0c19ab1a94ba124399",
        "DRX007a": "5409c3cb81c2745cec8af5f9a1402ed24ea7ec7d",
        "DRX008b": "240d4f51148b270f6dc099eaccd4f316ce3021f5",
        "TNC008a": "2eb34ed73bb45f087a72652b5fcea810a9f2e9c9",
        "TNC009a": "91819235d1188908cee2787e5769d3613fbd756f",
        "TNC010a": "2f50864a77d8ec2f1786ebd8b0161114a9e905b1",
        "TNC012a": "c677f8485dfd121765cd31de50230196a8a4bcc1",
        "TNC013a": "cc40dccc6e141410c8b0c16e403b763ad368b170",
        "TNC014a": "a0ebe478cdce9612658c29d6766859fd66f1a3b6",
        "TNC015a": "abf3608afd9b5c83bf8ed17a5ac61040e9c83261",
        "TNC016a": "13decf694dbf004e611c8e362e23b6fa7852ee4b",
        "TNC017a": "2d5a6c489bf573e2f762eb2e17ca5478271fcc64",
        "TNC018a": "2d5a31aeb27af29f52739c37061da96fcb058e96",
        "TNC020a": "2f0624a284401ad0e40680435fc57de3873e0a2c",
        "TNC021a": "89668bbfb0d89473b8efff14b7b6625bb58060dd",
    },
    "PEG": {
        "ARM017a": "78f8cd0f60b245f8dd137e6b00306c27f0cae9af",
        "ARM018a": "5e04645168a032cf445a5246a5865c1977a2378c",
        "ARM019a": "54195bae38f79360e61248914f2f035ead3c0279",
        "ARM021b": "ee2e2266509d78ceadee0da7906dadeb049c8909",
        "ARM022b": "5e0509b8a4bf6dd7ad890b620f1313941612e49a",
        "ARM023a": "55b620d7fd2958d3201d347d75c6b1be9aa757d9",
        "ARM024a": "b97ebd6d2780914105a1562ce19942dacaf8abb5",
        "ARM025a": "b6cabae20ac9a9d2863fa68569037b29fb1b62ed",
        "ARM026b": "f230bfe4a990c4a8eadcb843bbcb4deb79c837c9",
        "ARM027a": "c36811efdff0d4136be330e77953f6c6e69c7aec",
        "ARM028b": "f2005ed600d22a854579b7735758144c15c56f46",
        "TNC022a": "5da19f65eab678631540a3074cefc14e80dd076c",
    },
}

_LAYOUT = """\
<root>/{area}_NAT4_ozgf.fs100.ch18.tgz          population recording (or the extracted folder of that name)
<root>/{area}_pred_correlation.csv              columns cellid, sig_auditory
<root>/{area}_single_sites/<area>_<site>_<hash>.tgz   per-site recordings (unless subset='est')
<root>/wav/<label minus STIM_>                  source sounds (return_waveform=True only)"""
_FIX = ("deepSTRF.datasets.audio.nat4.download_nat4({area!r}, {root!r}{wav}) or "
        "NAT4Dataset({root!r}, area={area!r}, download=True{wavarg})")
_SUFFIXES = (".resp.json", ".resp.csv", ".stim.csv", ".resp.epoch.csv", ".resp.h5")


def _progress(iterable: Any, **kwargs: Any) -> Any:
    return tqdm(iterable, disable=None, leave=False, dynamic_ncols=True, **kwargs)


def _parse_cell_id(cell_id: Any) -> dict:
    """``site``, ``animal``, ``electrode``, ``unit_in_electrode`` of a cell id (None where it does not parse)."""
    site = cell_id.split("-", 1)[0] if isinstance(cell_id, str) and "-" in cell_id else None
    match = CELL_ID_PATTERN.match(cell_id) if isinstance(cell_id, str) else None
    if match is None:
        return {"site": site, "animal": None, "electrode": None, "unit_in_electrode": None}
    return {"site": site, "animal": match.group(1), "electrode": int(match.group(3)),
            "unit_in_electrode": int(match.group(4))}


def _match_key(cell_id: str) -> tuple[str, int, int] | None:
    """Key ignoring zero padding of the electrode/unit fields: ``(site, electrode, unit)``."""
    match = CELL_ID_PATTERN.match(cell_id)
    if match is None:
        return None
    return match.group(1) + match.group(2), int(match.group(3)), int(match.group(4))


# --------------------------------------------------------------------------- NEMS recordings


class _Recording:
    """Read-only access to one NEMS recording, packed (``.tgz``) or extracted (folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._files: dict[str, Any] = {}
        try:
            if path.is_dir():
                folder = self._locate_folder(path)
                names = [p for p in folder.iterdir() if p.is_file()]
                self._files = {p.name: p for p in names}
            else:
                self._tar = tarfile.open(path, "r:*")
                self._files = {Path(m.name).name: m for m in self._tar.getmembers() if m.isfile()}
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            self.close()
            raise DatasetFormatError(str(path), "archive", f"a truncated or corrupt archive ({exc})",
                                     "a readable .tgz NEMS recording: delete it and download it again") from exc
        if not any(name.endswith(".meta.json") for name in self._files):
            self.close()
            raise DatasetFormatError(str(path), "*.meta.json", "no such file",
                                     "a NEMS recording folder holding <rec>.meta.json")

    @staticmethod
    def _locate_folder(path: Path) -> Path:
        if any(path.glob("*.meta.json")):
            return path
        subs = [p for p in path.iterdir() if p.is_dir() and any(p.glob("*.meta.json"))]
        if len(subs) != 1:
            raise DatasetFormatError(str(path), "*.meta.json",
                                     f"{len(subs)} sub-folders holding one",
                                     "the recording files directly inside or inside exactly one sub-folder")
        return subs[0]

    def raw_files(self) -> list[Path]:
        if self._tar is not None:
            return [self.path]
        return sorted(self._files.values())

    def has(self, suffix: str) -> bool:
        return any(name.endswith(suffix) for name in self._files)

    def _entry(self, suffix: str) -> tuple[str, Any]:
        hits = [name for name in self._files if name.endswith(suffix)]
        if len(hits) != 1:
            raise DatasetFormatError(str(self.path), f"*{suffix}", f"{len(hits)} matching files {sorted(hits)}",
                                     "exactly one file with this suffix")
        return hits[0], self._files[hits[0]]

    def open(self, suffix: str) -> Any:
        """Binary stream of the single file whose name ends with ``suffix`` (decompressed on the fly)."""
        name, entry = self._entry(suffix)
        try:
            if self._tar is None:
                return open(entry, "rb")  # noqa: SIM115 - the caller closes it
            handle = self._tar.extractfile(entry)
            return handle if handle is not None else io.BytesIO(b"")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DatasetFormatError(str(self.path), name, f"an unreadable member ({exc})",
                                     "a complete archive: delete it and download it again") from exc

    def read(self, suffix: str) -> bytes:
        """Bytes of the single file whose name ends with ``suffix``."""
        name = self._entry(suffix)[0]
        try:
            with self.open(suffix) as fh:
                return fh.read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DatasetFormatError(str(self.path), name, f"an unreadable member ({exc})",
                                     "a complete archive: delete it and download it again") from exc

    def json(self, suffix: str) -> dict:
        try:
            doc = json.loads(self.read(suffix))
        except ValueError as exc:
            raise DatasetFormatError(str(self.path), f"*{suffix}", f"invalid JSON ({exc})", "a JSON object") from exc
        if not isinstance(doc, dict):
            raise DatasetFormatError(str(self.path), f"*{suffix}", type(doc).__name__, "a JSON object")
        return doc

    def epochs(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(start_s, end_s, names)`` of ``*.resp.epoch.csv``."""
        import pandas as pd

        try:
            table = pd.read_csv(io.BytesIO(self.read(".resp.epoch.csv")))
        except (ValueError, pd.errors.ParserError) as exc:
            raise DatasetFormatError(str(self.path), "*.resp.epoch.csv", f"unparsable CSV ({exc})",
                                     "a CSV with header start,end,name") from exc
        missing = {"start", "end", "name"} - set(table.columns)
        if missing:
            raise DatasetFormatError(str(self.path), "*.resp.epoch.csv", f"columns {list(table.columns)}",
                                     "columns start, end, name")
        try:
            start = table["start"].to_numpy(dtype=np.float64)
            end = table["end"].to_numpy(dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise DatasetFormatError(str(self.path), "*.resp.epoch.csv start/end", "non-numeric values",
                                     "times in seconds") from exc
        return start, end, [str(n) for n in table["name"].tolist()]

    def matrix(self, suffix: str, width: int | None = None) -> np.ndarray:
        """Headerless numeric CSV as a float32 ``(rows, columns)`` array (parsed in float64 chunks)."""
        import pandas as pd

        chunks = []
        try:
            # streamed: the CSV text (GBs for the real population) is never held in memory at once
            with self.open(suffix) as fh:
                for chunk in pd.read_csv(fh, header=None, dtype=np.float64, chunksize=20000):
                    chunks.append(chunk.to_numpy(dtype=np.float32))
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DatasetFormatError(str(self.path), f"*{suffix}", f"an unreadable member ({exc})",
                                     "a complete archive: delete it and download it again") from exc
        except (ValueError, pd.errors.ParserError) as exc:
            raise DatasetFormatError(str(self.path), f"*{suffix}", f"unparsable values ({exc})",
                                     "a headerless comma-separated numeric matrix") from exc
        if not chunks:
            raise DatasetFormatError(str(self.path), f"*{suffix}", "no rows", "a numeric matrix")
        out = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        if width is not None and out.shape[1] != width:
            raise DatasetFormatError(str(self.path), f"*{suffix} columns", f"{out.shape[1]} columns",
                                     f"{width} columns (one per entry of 'chans' in *.resp.json)")
        return out

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def __enter__(self) -> _Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _label_rows(names: list[str], pattern: re.Pattern) -> dict[str, list[int]]:
    """Rows of each label matching ``pattern``, labels in order of first appearance."""
    rows: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        if pattern.match(name):
            rows.setdefault(name, []).append(i)
    return rows


def _minmax(x: np.ndarray) -> tuple[float, float] | None:
    """NaN-ignoring global ``(min, max)``; None when empty, all NaN or constant (left unscaled)."""
    if x.size == 0 or np.isnan(x).all():
        return None
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    return None if hi == lo else (lo, hi)


class NAT4Dataset(AudioNeuralDataset):
    """Ferret A1 or PEG populations: 575 natural sounds x 1 repeat (est) + 18 x 20 repeats (val).

    Pennington J.R., David S.V. (2023) "A convolutional neural network provides
    a generalizable model of natural sound coding by neural populations in
    auditory cortex", *PLoS Comput Biol* 19(5): e1011110, DOI
    10.1371/journal.pcbi.1011110. Data: Zenodo record 8044773, DOI
    10.5281/zenodo.8044773 (files written by NEMS0). Awake, passively
    listening ferrets; multi-channel probes (LBHB).

    Parameters
    ----------
    path : path-like, optional
        Dataset folder (layout below); default ``data_root("NAT4")``.
    download : bool, default False
        Fetch the missing files of ``area`` with :func:`download_nat4`
        (``wav.zip`` too in waveform mode).
    area : {'A1', 'PEG'}, default 'A1'
        Cortical field; selects every file-name prefix.
    dt_ms : float, default 10.0
        Bin width in ms; only 10.0 is supported.
    smooth : bool, default False
        Core 21 ms Hann smoothing; at 10 ms the kernel is ``[0, 1, 0]`` (no change).
    subset : {'all', 'est', 'val'}, default 'all'
        ``'est'`` loads only the estimation stims (never opens the per-site
        archives); ``'val'`` only the validation stims (the stims are still
        normalised over the whole population recording). Neurons are never
        dropped.
    return_waveform : bool, default False
        ``stims[s]`` is the ``(1, T * hop)`` waveform read from ``wav/``.
    audio_fs : int, default 44100
        Waveform rate in Hz (multiple of 100 so that a 10 ms bin is a whole
        number of samples); wavs at another rate are resampled (polyphase).
    cache : bool, default True
        Use the processed-data cache.

    Attributes
    ----------
    stims : list of Tensor
        ``(1, F, T)`` float32 ``log1p`` gammatone spectrograms min-max scaled
        to [0, 1] over the whole recording (F = 18, T = 150 on the real data),
        or ``(1, T * hop)`` waveforms (sound starting after the pre-stimulus
        silence).
    responses : list of list of Tensor
        est stims: ``(R, T)`` population responses (R = 1) divided by the
        global maximum (min-max over the whole response matrix); val stims:
        ``(R, T)`` raw spike counts per 10 ms (R = 20). ``(1, 1)`` NaN
        sentinel for a cell without data for that stim.
    stim_meta : list of dict
        ``name`` (epoch label, ``STIM_...wav``), ``subset`` (``'est'``/``'val'``).
    nrn_meta : list of dict
        ``cell_id``, ``area``, ``auditory`` (``sig_auditory`` of the csv,
        False when absent), ``site``, ``animal``, ``electrode``,
        ``unit_in_electrode`` (None when the id does not parse),
        ``val_archive`` (per-site archive its val data came from, or None).
    dt : float
        10.0 ms.
    F : int
        Width of ``*.stim.csv``.

    Notes
    -----
    On-disk layout::

        <path>/<area>_NAT4_ozgf.fs100.ch18.tgz    (or the extracted folder; the tgz wins)
        <path>/<area>_pred_correlation.csv
        <path>/<area>_single_sites/<area>_<site>_<hash>.tgz
        <path>/wav/<label minus STIM_>            (waveform mode; matched case-insensitively)

    Stim order: est labels by first appearance in the epoch table, then val
    labels likewise. A stim's spectrogram and est responses come from the
    rows ``round(start * 100) .. round(end * 100)`` of its occurrences. Val
    responses: per-site spikes at 1 kHz (``floor(t * 1000)``, kept below the
    raster length), summed in groups of 10 samples from each occurrence
    start, one row per occurrence in the site's epoch order.

    Deliberate differences from deepSTRF 0.1.0:

    * per-site cells are matched to population ids exactly first, then on
      ``(site, int(electrode), int(unit))`` (some per-site files zero-pad the
      electrode field, e.g. ``TNC014a-008-1``);
    * only ``*.tgz``/``*.tar.gz`` entries of the per-site folder are read;
    * each cell's val response is built from its own site: sites may differ
      in repeat count or window length (bins past a site's own window are
      NaN), and a val stim a site never played is a sentinel for its cells;
    * ``F`` is the stim.csv width; argument checks raise ``ValueError`` up
      front; malformed files raise ``DatasetFormatError``;
    * the parse is cached (the reference re-parsed GB-scale CSV text on every
      construction); ``subset='val'`` does not parse ``resp.csv``.
    """

    FORMAT_VERSION = 1
    species = "ferret"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        area: str = "A1",
        dt_ms: float = DT_MS,
        smooth: bool = False,
        subset: str = "all",
        return_waveform: bool = False,
        audio_fs: int = 44100,
        cache: bool = True,
    ) -> None:
        if area not in AREAS:
            raise ValueError(f"area={area!r} is not one of {list(AREAS)}")
        if subset not in SUBSETS:
            raise ValueError(f"subset={subset!r} is not one of {list(SUBSETS)}")
        if isinstance(dt_ms, bool) or not isinstance(dt_ms, (int, float)) or float(dt_ms) != DT_MS:
            raise ValueError(f"dt_ms={dt_ms!r} is not supported: NAT4 responses are fixed at 10 ms bins (dt_ms=10.0)")
        if return_waveform:
            if isinstance(audio_fs, bool) or not isinstance(audio_fs, (int, np.integer)) or audio_fs <= 0 \
                    or audio_fs % 100:
                raise ValueError(f"audio_fs={audio_fs!r} must be a positive int multiple of 100 Hz so that a 10 ms "
                                 "bin spans a whole number of samples (e.g. 44100, 22000)")
            audio_fs = int(audio_fs)
        if path is not None:
            root = Path(path).expanduser()
        else:
            from ...utils.download import (
                data_root,  # the download machinery is imported only when needed
            )

            root = data_root(NAT4_NAME)
        super().__init__(str(root), DT_MS)
        self.area, self.subset = area, subset
        self.return_waveform = bool(return_waveform)
        self.smooth = bool(smooth)

        fix = _FIX.format(area=area, root=str(root), wav=", wav=True" if return_waveform else "",
                          wavarg=", return_waveform=True" if return_waveform else "")
        require_raw_files(NAT4_NAME, root, lambda: self._missing(root), download=download,
                          fetch=lambda: download_nat4(area, root, wav=self.return_waveform),
                          layout=_LAYOUT.format(area=area), fix=fix)

        population = self._population_path(root)
        if population.is_file():  # the key needs only the archive's size and mtime, not its members
            raw_files = [population]
        else:
            with _Recording(population) as rec:
                raw_files = rec.raw_files()
        raw_files.append(root / CORRELATION_FILE.format(area=area))
        sites = self._site_archives(root) if subset != "est" else []
        raw_files += sites
        if self.return_waveform:
            raw_files += sorted(self._wav_index(root).values())
        params = {"area": area, "subset": subset, "dt_ms": DT_MS, "smooth": self.smooth,
                  "return_waveform": self.return_waveform, "audio_fs": audio_fs if self.return_waveform else None}
        self._load_or_build(lambda: self._build(root, population, sites, audio_fs), params=params,
                            raw_files=raw_files, cache=cache, name=f"{NAT4_NAME}_{area}")
        self.validate()

    # ------------------------------------------------------------------ files
    def _population_path(self, root: Path) -> Path:
        tgz = root / POPULATION_FILE.format(area=self.area)
        return tgz if tgz.is_file() else tgz.with_name(tgz.name[: -len(".tgz")])

    def _sites_folder(self, root: Path) -> Path | None:
        wanted = SITES_FOLDER.format(area=self.area).lower()
        if not root.is_dir():
            return None
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and entry.name.lower() == wanted:
                return entry
        return None

    def _site_archives(self, root: Path) -> list[Path]:
        folder = self._sites_folder(root)
        if folder is None:
            return []
        return sorted((p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith((".tgz", ".tar.gz"))),
                      key=lambda p: p.name)

    def _wav_index(self, root: Path) -> dict[str, Path]:
        folder = root / WAV_FOLDER
        if not folder.is_dir():
            return {}
        return {p.name.lower(): p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(".wav")}

    def _missing(self, root: Path) -> list[str]:
        area = self.area
        missing = []
        pop = self._population_path(root)
        if not (pop.is_file() or pop.is_dir()):
            missing.append(POPULATION_FILE.format(area=area))
        if not (root / CORRELATION_FILE.format(area=area)).is_file():
            missing.append(CORRELATION_FILE.format(area=area))
        if self.subset != "est" and not self._site_archives(root):
            missing.append(SITES_FOLDER.format(area=area) + "/*.tgz")
        if self.return_waveform and not self._wav_index(root):
            missing.append(WAV_FOLDER + "/*.wav")
        return missing

    # ------------------------------------------------------------------ parse
    def _build(self, root: Path, population: Path, sites: list[Path], audio_fs: int) -> Payload:
        with _Recording(population) as rec:
            chans = rec.json(".resp.json").get("chans")
            if not isinstance(chans, list) or not chans:
                raise DatasetFormatError(str(population), "*.resp.json chans", repr(chans)[:80],
                                         "a non-empty list of cell ids")
            chans = [str(c) for c in chans]
            start, end, names = rec.epochs()
            stim_matrix = rec.matrix(".stim.csv")
            resp = rec.matrix(".resp.csv", width=len(chans)) if self.subset != "val" else None
        pop_slices = np.stack([np.round(start * POP_FS), np.round(end * POP_FS)], axis=1).astype(np.int64)
        est_rows = _label_rows(names, EST_PREFIX) if self.subset != "val" else {}
        val_rows = _label_rows(names, VAL_PREFIX) if self.subset != "est" else {}
        labels = [(lab, "est", rows) for lab, rows in est_rows.items()] + \
                 [(lab, "val", rows) for lab, rows in val_rows.items()]
        if not labels:
            raise DatasetFormatError(str(population), "*.resp.epoch.csv name", "no STIM_cat*/STIM_00cat* labels",
                                     f"epoch labels for the {self.subset!r} stims")
        n_rows = stim_matrix.shape[0]
        for lab, _, rows in labels:
            for i in rows:
                a, b = pop_slices[i]
                if not 0 <= a < b <= n_rows:
                    raise DatasetFormatError(str(population), f"*.resp.epoch.csv {lab}",
                                             f"rows {a}..{b}", f"a window inside the {n_rows} rows of the recording")
        N = len(chans)
        F = int(stim_matrix.shape[1])

        # stims: log1p then one global min-max over the whole matrix
        spec = np.log1p(stim_matrix.astype(np.float64))
        scale = _minmax(spec)
        if scale is not None:
            spec = (spec - scale[0]) / (scale[1] - scale[0])
        spec = spec.astype(np.float32)
        del stim_matrix
        T_of = []
        stims: list[Tensor] = []
        for lab, _, rows in labels:
            a, b = pop_slices[rows[0]]
            T_of.append(int(b - a))
            if not self.return_waveform:
                stims.append(torch.from_numpy(np.ascontiguousarray(spec[a:b].T)).unsqueeze(0))
        del spec
        if self.return_waveform:
            pre = [e - s for s, e, n in zip(start, end, names) if n == "PreStimSilence"]
            stims = self._read_wavs(root, [lab for lab, _, _ in labels], T_of, float(pre[0]) if pre else 0.0,
                                    audio_fs)

        responses: list[list[Tensor]] = []
        mask = torch.zeros((len(labels), N), dtype=torch.bool)
        # est: population values over the global min-max of the whole response matrix
        if resp is not None:
            scale = _minmax(resp)
            lo, span = (scale[0], scale[1] - scale[0]) if scale is not None else (0.0, 1.0)
            for s, (lab, kind, rows) in enumerate(labels):
                if kind != "est":
                    continue
                T = T_of[s]
                block = np.empty((N, len(rows), T), dtype=np.float32)
                for r, i in enumerate(rows):
                    a, b = pop_slices[i]
                    if b - a != T:
                        raise DatasetFormatError(str(population), f"*.resp.epoch.csv {lab}",
                                                 f"occurrences of {b - a} and {T} rows", "one window length per label")
                    block[:, r, :] = ((resp[a:b].astype(np.float64) - lo) / span).T
                real = ~np.isnan(block).all(axis=(1, 2))
                mask[s] = torch.from_numpy(real)
                cells = torch.from_numpy(block).unbind(0)
                pads = iter(make_sentinels(int((~real).sum())))
                responses.append([cells[n] if real[n] else next(pads) for n in range(N)])
            del resp
        # val: raw spike counts from the per-site recordings
        val_index = [s for s, (_, kind, _) in enumerate(labels) if kind == "val"]
        val_cells: dict[int, dict[int, Tensor]] = {s: {} for s in val_index}
        source = [None] * N
        if val_index:
            self._read_sites(sites, chans, [(s, labels[s][0], T_of[s]) for s in val_index], val_cells, source)
        out: list[list[Tensor]] = []
        est_iter = iter(responses)
        for s, (_, kind, _) in enumerate(labels):
            if kind == "est":
                out.append(next(est_iter))
                continue
            cells = val_cells[s]
            pads = iter(make_sentinels(N - len(cells)))
            out.append([cells[n] if n in cells else next(pads) for n in range(N)])
            mask[s, list(cells)] = True
        stim_meta = [{"name": lab, "subset": kind} for lab, kind, _ in labels]
        auditory = self._read_auditory(root / CORRELATION_FILE.format(area=self.area))
        nrn_meta = [{"cell_id": c, "area": self.area, "auditory": bool(auditory.get(c, False)), **_parse_cell_id(c),
                     "val_archive": source[n]} for n, c in enumerate(chans)]
        attrs = {"dt": DT_MS, "F": F, "audio_fs": audio_fs if self.return_waveform else None,
                 "hearing_range_hz": (200.0, 40000.0), "return_waveform": self.return_waveform}
        payload = Payload(stims, out, stim_meta, nrn_meta, attrs, mask)
        return self._smooth_built(payload, 21.0) if self.smooth else payload

    @staticmethod
    def _read_auditory(path: Path) -> dict[str, bool]:
        import pandas as pd

        try:
            table = pd.read_csv(path)
        except (ValueError, pd.errors.ParserError, OSError) as exc:
            raise DatasetFormatError(str(path), "table", f"unparsable CSV ({exc})", "a CSV with a header") from exc
        for column in ("cellid", "sig_auditory"):
            if column not in table.columns:
                raise DatasetFormatError(str(path), column, f"columns {list(table.columns)}",
                                         "columns cellid and sig_auditory")

        def truth(v: Any) -> bool:
            if isinstance(v, str):
                return v.strip().lower() in ("true", "1", "yes")
            return False if isinstance(v, float) and np.isnan(v) else bool(v)

        return {str(c): truth(v) for c, v in zip(table["cellid"], table["sig_auditory"])}

    def _read_sites(self, sites: list[Path], chans: list[str], val: list[tuple[int, str, int]],
                    cells_out: dict[int, dict[int, Tensor]], source: list[str | None]) -> None:
        """Fill ``cells_out[s][n]`` with ``(R, T)`` val counts of every population cell found in a site."""
        import h5py

        exact = {c: n for n, c in enumerate(chans)}
        loose: dict[tuple[str, int, int], int] = {}
        for n, c in enumerate(chans):
            key = _match_key(c)
            if key is not None:
                loose.setdefault(key, n)
        for archive in _progress(sites, desc=f"NAT4 {self.area} sites"):
            with _Recording(archive) as rec:
                doc = rec.json(".resp.json")
                site_chans = [str(c) for c in doc.get("chans") or []]
                segments = doc.get("segments") or []
                try:
                    fs = float(doc.get("fs", SITE_FS))
                    raster_end = int(round(float(segments[-1][1]))) if segments else None
                except (TypeError, ValueError, IndexError) as exc:
                    raise DatasetFormatError(str(archive), "*.resp.json segments/fs", repr(segments)[:80],
                                             "[[start, end], ...] in samples and a numeric fs") from exc
                start, end, names = rec.epochs()
                h5_bytes = rec.read(".resp.h5")
            targets = {}
            for c in site_chans:
                n = exact.get(c)
                if n is None:
                    key = _match_key(c)
                    n = loose.get(key) if key is not None else None
                if n is not None:
                    targets[c] = n
            if not targets:
                continue
            # windows of every val occurrence in this site, in label order then epoch order
            windows = []  # (stim, T, start sample, end sample)
            for s, label, T in val:
                for i, name in enumerate(names):
                    if name == label:
                        windows.append((s, T, int(round(start[i] * fs)), int(round(end[i] * fs))))
            per_bin = int(round(fs * DT_MS / 1000.0))
            if per_bin < 1:
                raise DatasetFormatError(str(archive), "*.resp.json fs", f"{fs} Hz", f"at least {SITE_FS} Hz")
            if raster_end is None:
                raster_end = max((w[3] for w in windows), default=0)
            try:
                h5 = h5py.File(io.BytesIO(h5_bytes), "r")
            except OSError as exc:
                raise DatasetFormatError(str(archive), "*.resp.h5", f"an unreadable HDF5 file ({exc})",
                                         "one spike-time dataset per cell") from exc
            with h5:
                for c, n in targets.items():
                    if c not in h5:
                        raise DatasetFormatError(str(archive), f"*.resp.h5 {c}", "no such dataset",
                                                 "one dataset of spike times (s) per entry of 'chans'")
                    times = np.asarray(h5[c][()], dtype=np.float64).reshape(-1)
                    samples = np.floor(times * fs).astype(np.int64)
                    samples = samples[(samples >= 0) & (samples < raster_end)]
                    self._bin_windows(samples, windows, per_bin, n, cells_out)
                    source[n] = archive.name

    @staticmethod
    def _bin_windows(samples: np.ndarray, windows: list[tuple[int, int, int, int]], per_bin: int, n: int,
                     cells_out: dict[int, dict[int, Tensor]]) -> None:
        """Spike counts of one cell in every window, grouped into one ``(R, T)`` tensor per stim."""
        if not windows:
            for s in cells_out:
                cells_out[s].pop(n, None)  # a later archive without these labels replaces an earlier one
            return
        samples = np.sort(samples)
        by_stim: dict[int, list[np.ndarray]] = {}
        for s, T, a, b in windows:
            span = min(b, a + T * per_bin)
            lo, hi = np.searchsorted(samples, [a, span])
            row = np.bincount((samples[lo:hi] - a) // per_bin, minlength=T).astype(np.float32)
            valid = -(-(b - a) // per_bin)  # bins touched by the site's own window
            if valid < T:
                row[max(valid, 0):] = np.nan
            by_stim.setdefault(s, []).append(row)
        for s in cells_out:
            if s in by_stim:
                cells_out[s][n] = torch.from_numpy(np.stack(by_stim[s]))
            else:
                cells_out[s].pop(n, None)

    def _read_wavs(self, root: Path, labels: list[str], T_of: list[int], pre_s: float, audio_fs: int) -> list[Tensor]:
        import soundfile as sf

        index = self._wav_index(root)
        hop = audio_fs * int(DT_MS) // 1000
        offset = int(round(pre_s * audio_fs))
        stims = []
        missing = [lab for lab in labels if lab[5:].lower() not in index]
        if missing:
            raise DatasetNotFoundError(NAT4_NAME, str(root), [f"{WAV_FOLDER}/{lab[5:]}" for lab in missing],
                                       layout=_LAYOUT.format(area=self.area),
                                       fix=f"deepSTRF.datasets.audio.nat4.download_nat4({self.area!r}, "
                                           f"{str(root)!r}, wav=True)")
        for lab, T in zip(_progress(labels, desc="NAT4 wavs"), T_of):
            path = index[lab[5:].lower()]
            try:
                audio, fs = sf.read(str(path), dtype="float32", always_2d=True)
            except (RuntimeError, sf.LibsndfileError) as exc:
                raise DatasetFormatError(str(path), "audio", f"an unreadable file ({exc})", "a WAV file") from exc
            audio = audio.mean(axis=1)
            audio = resample_polyphase(audio, int(fs), audio_fs)
            buf = np.zeros(T * hop, dtype=np.float32)
            k = max(0, min(buf.size - offset, audio.size))
            buf[offset:offset + k] = audio[:k]
            stims.append(torch.from_numpy(buf).unsqueeze(0))
        return stims


# --------------------------------------------------------------------------- download


def download_nat4(area: str = "A1", dest: str | os.PathLike[str] | None = None, wav: bool = False) -> str:
    """Download the NAT4 files of one area from Zenodo record 8044773.

    Fetches ``<area>_NAT4_ozgf.fs100.ch18.tgz`` (kept packed) and
    ``<area>_pred_correlation.csv``; fetches ``<area>_single_sites.zip`` and
    unzips it into ``dest`` unless ``<area>_single_sites/`` already holds
    per-site archives; with ``wav=True`` the same for ``wav.zip`` → ``wav/``.
    Every file is verified against the md5 Zenodo publishes (or a registry
    pin in :data:`ZENODO_HASHES`); zips are kept.

    Parameters
    ----------
    area : {'A1', 'PEG'}
        Cortical field.
    dest : path-like, optional
        Dataset folder; default ``data_root("NAT4")``.
    wav : bool, default False
        Also fetch the source sounds (waveform mode).

    Returns
    -------
    str
        ``dest``.

    Raises
    ------
    ValueError
        Unknown ``area``.
    ChecksumError, DownloadError, DatasetNotFoundError
        See :mod:`deepSTRF.utils.download`.
    """
    from ...utils.download import data_root, extract_zip, fetch_zenodo, is_extracted

    if area not in AREAS:
        raise ValueError(f"area={area!r} is not one of {list(AREAS)}")
    root = data_root(NAT4_NAME, dest)
    for name in (POPULATION_FILE.format(area=area), CORRELATION_FILE.format(area=area)):
        fetch_zenodo(ZENODO_RECORD, name, root, known_hash=ZENODO_HASHES.get(name))
    archives = [(SITES_ZIP.format(area=area), SITES_FOLDER.format(area=area), (".tgz", ".tar.gz"))]
    if wav:
        archives.append((WAV_ZIP, WAV_FOLDER, (".wav",)))
    for zip_name, folder, suffixes in archives:
        zip_path = root / zip_name
        present = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == folder.lower()] \
            if root.is_dir() else []
        complete = any(any(q.name.lower().endswith(suffixes) for q in p.iterdir()) for p in present)
        if complete and (not zip_path.exists() or is_extracted(zip_path, root)):
            continue
        fetch_zenodo(ZENODO_RECORD, zip_name, root, known_hash=ZENODO_HASHES.get(zip_name))
        extract_zip(zip_path, root)
    if wav and not (root / WAV_FOLDER).is_dir():
        warnings.warn(f"{WAV_ZIP} did not unpack into {root / WAV_FOLDER}", UserWarning, stacklevel=2)
    return str(root)
