"""CRCNS aa-2: zebra finch OV, MLd, Field L and CM single units (Theunissen lab), songs and ripples."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ...utils.download import data_root, extract_tar, fetch_crcns, is_extracted
from .._errors import DatasetFormatError, DatasetNotFoundError
from .._raw_files import require_raw_files
from ._crcns import (
    CellRecord,
    FrontEnd,
    animal_ids_arg,
    build_text_payload,
    choose_names,
    crcns_fix,
    index_class_folder,
    list_text_files,
    parse_cell_name,
)
from .audio_dataset import AudioNeuralDataset

__all__ = ["AA2_NERSC_FILES", "AA2_REGIONS", "AA2_STIM_TYPES", "CRCNSAA2Dataset", "download_aa2"]

AA2_NAME = "AA2"
#: Archives under the CRCNS download root, each wrapping its content in ``crcns/aa2/``.
AA2_NERSC_FILES = ("aa-2/crcns-aa2-docs.tar.gz", "aa-2/crcns-aa2-all_cells.tar.gz", "aa-2/crcns-aa2-all_stims.tar.gz")
#: What each archive provides (its presence means the archive is not needed).
AA2_ANCHORS = {AA2_NERSC_FILES[0]: "stim_data.csv", AA2_NERSC_FILES[1]: "all_cells", AA2_NERSC_FILES[2]: "all_stims"}
#: Registry checksums (CRCNS publishes none; pin after a trusted download).
AA2_REGISTRY: dict[str, str | None] = {fn: None for fn in AA2_NERSC_FILES}
AA2_PAGE = "https://crcns.org/data-sets/aa/aa-2/about"
AA2_DOI = "10.6080/K0JW8BSC"
#: Region labels of ``cell_regions.csv``.
AA2_REGIONS = ("L", "L1", "L2a", "L2b", "L3", "mld", "OV", "CM", "None")
#: ``'Field_L'`` (or ``'L'``) selects all of these, in this order.
AA2_FIELD_L = ("L", "L1", "L2a", "L2b", "L3")
AA2_DEFAULT_AREAS = ("Field_L", "mld", "OV", "CM", "None")
#: ``areas='all'``.
AA2_ALL_AREAS = ("Field_L", "OV", "CM", "mld", "None")
AA2_STIM_TYPES = ("conspecific", "flatrip", "songrip")
#: Discovery order of the classes when the stim list is built (as in the reference).
_DISCOVERY_ORDER = ("songrip", "flatrip", "conspecific")
AA2_SAMPLE_RATE = 32000

_LAYOUT = """\
<root>/all_stims/<MD5>.wav                 32 kHz mono PCM16
<root>/all_cells/<cell>/<class>/stim<k>, spike<k>   class: conspecific | flatrip | songrip
<root>/cell_regions.csv                    <cell>,<region>
<root>/cell_stim_classes.csv               <cell>,<class>[,<class>...]
<root>/stim_data.csv                       <wav>,<sampleRate>,<bitDepth>,<numSamples>,<class>"""
_CSVS = ("cell_regions.csv", "cell_stim_classes.csv", "stim_data.csv")


def _area_labels(areas: str | Iterable[str]) -> list[str]:
    """Region labels to load, in block order; 'Field_L'/'L' expand to the five Field L labels."""
    if isinstance(areas, str):
        areas = list(AA2_ALL_AREAS) if areas == "all" else [areas]
    lookup = {r.lower(): r for r in AA2_REGIONS}
    labels: list[str] = []
    for area in list(areas):
        key = str(area).lower()
        if key in ("field_l", "l"):
            block = list(AA2_FIELD_L)
        elif key in lookup:
            block = [lookup[key]]
        else:
            raise ValueError(f"areas contains {area!r}; allowed: 'Field_L', {AA2_REGIONS} or 'all'")
        labels += [b for b in block if b not in labels]
    if not labels:
        raise ValueError(f"areas is empty; choose among 'Field_L', {AA2_REGIONS}")
    return labels


def _read_regions(path: Path) -> list[tuple[str, str]]:
    out = []
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for i, row in enumerate(csv.reader(fh), 1):
            if len(row) < 2:
                continue
            cell, region = row[0].strip(), row[-1].strip()
            if region not in AA2_REGIONS:
                raise DatasetFormatError(str(path), f"row {i} region", repr(region), f"one of {AA2_REGIONS}")
            out.append((cell, region))
    return out


def _read_animals(path: Path) -> list[str]:
    """Bird ids of every row of ``cell_stim_classes.csv`` (first-seen order; no header row)."""
    seen: list[str] = []
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.reader(fh):
            if row and row[0].strip():
                animal = parse_cell_name(row[0].strip())[0]
                if animal not in seen:
                    seen.append(animal)
    return seen


def _read_stim_data(path: Path) -> dict[str, tuple[float, int]]:
    """``wav -> (sample_rate, n_samples)``; rows with < 5 fields and a header row are skipped."""
    out: dict[str, tuple[float, int]] = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for i, row in enumerate(csv.reader(fh), 1):
            if len(row) < 5:
                continue
            try:
                out[row[0].strip()] = (float(row[1]), int(float(row[3])))
            except ValueError:
                if i == 1:
                    continue  # a header line
                raise DatasetFormatError(str(path), f"row {i}", repr(row[:4]),
                                         "<wav>,<sampleRate>,<bitDepth>,<numSamples>,<class> with numbers") from None
    return out


class CRCNSAA2Dataset(AudioNeuralDataset):
    """CRCNS aa-2: single units of OV, MLd, Field L (L, L1, L2a, L2b, L3) and CM of male zebra finches.

    Theunissen FE, Gill P, Amin N, Zhang J, Woolley SMN, Fremouw T (2011)
    "Single-unit recordings from multiple auditory areas in male zebra
    finches", CRCNS.org, DOI 10.6080/K0JW8BSC. Papers: Gill et al. 2006 J
    Comput Neurosci (DOI 10.1007/s10827-006-7059-4); Amin, Gill & Theunissen
    2010 J Neurophysiol (DOI 10.1152/jn.00128.2010). The dataset README asks
    that S. Woolley and T. Fremouw be credited. Real data: N = 494 cells (143
    mld, 59 OV, 189 Field L, 37 CM, 66 unidentified "None"), S = 117 stims (72
    conspecific songs, 20 flat ripples, 25 song ripples, up to 5 s at 32 kHz),
    10-20 trials per pair.

    Stims and responses are computed exactly as in :class:`CRCNSAA1Dataset`
    (mel spectrogram ``(1, n_mels, T)`` from the wav, spike counts ``(R, T)``
    float32 Hann-smoothed over 21 ms by default).

    Parameters
    ----------
    path : path-like, optional
        Folder with ``all_stims/``, ``all_cells/`` and the three CSVs
        (default ``$DEEPSTRF_DATA/AA2`` or the user data dir).
    download : bool, default False
        Fetch and extract the three CRCNS archives (~30 MB, account needed:
        ``CRCNS_USERNAME``/``CRCNS_PASSWORD`` or ``~/.netrc``) when files are missing.
    areas : 'all', str or sequence, default ('Field_L', 'mld', 'OV', 'CM', 'None')
        Region labels (``'L', 'L1', 'L2a', 'L2b', 'L3', 'mld', 'OV', 'CM',
        'None'``; ``'Field_L'`` or ``'L'`` = the five Field L labels; case
        ignored). Neuron order: area blocks in this order, ``cell_regions.csv``
        row order inside a block. ``'all'`` = ('Field_L', 'OV', 'CM', 'mld', 'None').
    stimuli : 'all', str or sequence of {'conspecific', 'flatrip', 'songrip'}
        Stim classes (default all three); their order sets the stim order
        (discovery order inside a class). Cells with none of them are dropped.
    animals : 'all' or sequence of str, default 'all'
        Bird ids (cell-name prefix) to keep.
    dt_ms, smooth, n_mels, compression, window_ms, return_waveform, audio_fs, cache
        As in :class:`CRCNSAA1Dataset` (defaults 1, True, 32, 'cubic', 10.0,
        False, 32000, True).

    Attributes
    ----------
    ``stim_meta[s]``: name, type, sample_rate, n_samples, duration_s (the last
    three from ``stim_data.csv``, ``None`` without a row).
    ``nrn_meta[n]``: cell_id, animal_id, area (raw region label), cell_seq, rig.
    ``animals``: every bird id of ``cell_stim_classes.csv`` or the given list.

    Notes
    -----
    Deliberate differences from deepSTRF 0.1.0:

    * unit-gain smoothing (values = reference / ``(K - 1) / 2``);
    * ``cell_stim_classes.csv`` is read as plain CSV (every row is data; the
      reference consumed the first row as a pandas header, losing its bird);
    * the class filter drops every cell lacking all requested classes (the
      reference skipped the cell after each removed one); ``animal_id`` is the
      cell prefix and ``area`` its own CSV region (the reference mislabelled
      both after filtering);
    * overlapping areas (``('Field_L', 'L1')``) no longer duplicate neurons;
      area labels are case-insensitive; unknown labels raise ``ValueError``;
    * a header row in ``stim_data.csv`` is skipped instead of crashing;
    * file-format tolerance, credentials and caching as in :class:`CRCNSAA1Dataset`.
    """

    FORMAT_VERSION = 1

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        areas: str | Sequence[str] = AA2_DEFAULT_AREAS,
        stimuli: str | Sequence[str] = AA2_STIM_TYPES,
        animals: str | Sequence[str] = "all",
        dt_ms: float = 1,
        smooth: bool = True,
        n_mels: int = 32,
        compression: str = "cubic",
        window_ms: float = 10.0,
        return_waveform: bool = False,
        audio_fs: int = 32000,
        cache: bool = True,
    ) -> None:
        root = data_root(AA2_NAME, path)
        labels = _area_labels(areas)
        stim_types = choose_names(stimuli, AA2_STIM_TYPES, "stimuli")
        animal_list = animal_ids_arg(animals)
        front = FrontEnd.from_args(dt_ms, n_mels, compression, window_ms, return_waveform, audio_fs)
        super().__init__(str(root), float(dt_ms))

        needed = ["all_stims", "all_cells", *_CSVS]
        require_raw_files(
            AA2_NAME, root, lambda: [rel for rel in needed if not (root / rel).exists()],
            download=download, fetch=lambda: download_aa2(root), layout=_LAYOUT,
            fix=crcns_fix(f"CRCNSAA2Dataset({str(root)!r}, download=True)", list(AA2_NERSC_FILES), AA2_PAGE))

        regions = _read_regions(root / "cell_regions.csv")
        cells_dir = root / "all_cells"
        cells: list[CellRecord] = []
        taken: set[str] = set()
        raw_files: list[Path] = [root / name for name in _CSVS]
        for label in labels:
            for cell, region in regions:
                if region != label or cell in taken:
                    continue
                animal, seq, rig = parse_cell_name(cell)
                if animal_list is not None and animal not in animal_list:
                    continue
                if not (cells_dir / cell).is_dir():
                    raise DatasetNotFoundError(AA2_NAME, str(root), [f"all_cells/{cell}"], _LAYOUT,
                                               f"cell_regions.csv lists {cell!r}: extract "
                                               "crcns-aa2-all_cells.tar.gz again (download=True)")
                classes = {c: cells_dir / cell / c for c in stim_types if (cells_dir / cell / c).is_dir()}
                if not classes:
                    continue
                taken.add(cell)
                cells.append(CellRecord({"cell_id": cell, "animal_id": animal, "area": region,
                                         "cell_seq": seq, "rig": rig}, classes))
                for folder in classes.values():
                    raw_files += list_text_files(folder)
        # the stim order is discovered from every cell on disk, as in the reference
        all_cells = sorted(n for n in os.listdir(cells_dir) if (cells_dir / n).is_dir())
        for cell in all_cells:
            for cls in stim_types:
                if (cells_dir / cell / cls).is_dir():
                    raw_files += [p for p in list_text_files(cells_dir / cell / cls) if p.name.startswith("stim")]
        raw_files = list(dict.fromkeys(raw_files))

        def build():
            discovered: dict[str, list[str]] = {c: [] for c in _DISCOVERY_ORDER}
            for cls in _DISCOVERY_ORDER:
                if cls not in stim_types:
                    continue
                known = set()
                for cell in all_cells:
                    if (cells_dir / cell / cls).is_dir():
                        for wav in index_class_folder(cells_dir / cell / cls)[0]:
                            if wav not in known:
                                known.add(wav)
                                discovered[cls].append(wav)
            stims = [(wav, cls, root / "all_stims" / wav) for cls in stim_types for wav in discovered[cls]]
            rows = _read_stim_data(root / "stim_data.csv")

            def meta(name: str, cls: str, sr: int, n: int) -> dict:
                if name not in rows:
                    return {"name": name, "type": cls, "sample_rate": None, "n_samples": None, "duration_s": None}
                rate, count = rows[name]
                return {"name": name, "type": cls, "sample_rate": rate, "n_samples": count,
                        "duration_s": count / rate if rate else math.nan}

            return build_text_payload(stims, cells, front, smooth, meta, expected_rate=AA2_SAMPLE_RATE,
                                      dataset=AA2_NAME)

        wavs = [root / "all_stims" / n for n in os.listdir(root / "all_stims") if n.lower().endswith(".wav")]
        params = {"areas": labels, "stimuli": stim_types, "animals": animal_list, "smooth": bool(smooth),
                  **front.cache_params()}
        self._load_or_build(build, params=params, raw_files=raw_files + wavs, cache=cache, name=AA2_NAME)
        self.species = "zebra finch"
        self.hearing_range_hz = (250.0, 8000.0)
        front.set_attributes(self)
        self.smooth = bool(smooth)
        self.animals = animal_list if animal_list is not None else _read_animals(root / "cell_stim_classes.csv")
        self.validate()


def download_aa2(path: str | os.PathLike[str] | None = None) -> Path:
    """Download the three aa-2 archives from CRCNS (account needed) and extract them (``crcns/aa2/`` stripped).

    An archive is skipped when it was already extracted here, or when what it
    provides (``stim_data.csv``, ``all_cells/``, ``all_stims/``) is present
    without it (a manual install).

    Parameters
    ----------
    path : path-like, optional
        Dataset folder (default ``$DEEPSTRF_DATA/AA2`` or the user data dir).

    Returns
    -------
    pathlib.Path
        The dataset folder.

    Raises
    ------
    CredentialsError, DownloadError, ChecksumError
        See :func:`deepSTRF.utils.download.fetch_crcns`.
    """
    root = data_root(AA2_NAME, path)
    for fn in AA2_NERSC_FILES:
        archive = root / Path(fn).name
        if is_extracted(archive, root) or ((root / AA2_ANCHORS[fn]).exists() and not archive.exists()):
            continue
        fetched = fetch_crcns(fn, root, known_hash=AA2_REGISTRY[fn])
        extract_tar(fetched, root, strip_components=2)
    return root
