"""CRCNS aa-1: zebra finch Field L and MLd single units (Theunissen lab), songs and ripple noise."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ...utils.download import data_root, extract_zip, fetch_crcns
from .._raw_files import require_raw_files
from ._crcns import (
    CellRecord,
    FrontEnd,
    animal_ids_arg,
    build_text_payload,
    choose_names,
    crcns_fix,
    list_text_files,
    list_wavs,
    parse_cell_name,
)
from .audio_dataset import AudioNeuralDataset

__all__ = ["AA1_AREAS", "AA1_NERSC_PATH", "AA1_STIM_TYPES", "CRCNSAA1Dataset", "download_aa1"]

#: Dataset folder name under the data root.
AA1_NAME = "AA1"
#: Path of the archive under the CRCNS download root.
AA1_NERSC_PATH = "aa-1/crcns-aa1.zip"
#: Registry checksum of the archive; CRCNS publishes none (pin after a trusted download).
AA1_REGISTRY: dict[str, str | None] = {AA1_NERSC_PATH: None}
AA1_PAGE = "https://crcns.org/data-sets/aa/aa-1/about"
AA1_DOI = "10.6080/K0F769GP"
#: Recording areas, in default neuron order (folder ``<area>_cells``).
AA1_AREAS = ("Field_L", "MLd")
#: Stimulus classes, in default stim order (folder ``all_stims/<class>``).
AA1_STIM_TYPES = ("conspecific", "flatrip")
AA1_SAMPLE_RATE = 32000

_LAYOUT = """\
<root>/all_stims/conspecific/<MD5>.wav      32 kHz mono PCM16
<root>/all_stims/flatrip/<MD5>.wav
<root>/Field_L_cells/<cell>/<class>/stim<k>, spike<k>
<root>/MLd_cells/<cell>/<class>/stim<k>, spike<k>"""


class CRCNSAA1Dataset(AudioNeuralDataset):
    """CRCNS aa-1: single units of Field L and MLd of anesthetized adult male zebra finches.

    Theunissen FE, Hauber ME, Woolley SMN, Gill P, Shaevitz SS, Amin N, Hsu A,
    Singh NC, Grace GA, Fremouw T, Zhang J, Cassey P, Doupe AJ, David SV (2009)
    "Single-unit recordings from two auditory areas in male zebra finches",
    CRCNS.org, DOI 10.6080/K0F769GP. Papers: Woolley et al. 2005 Nat Neurosci
    (DOI 10.1038/nn1536); Hsu et al. 2004 J Neurosci (DOI
    10.1523/JNEUROSCI.2449-04.2004). Real data: N = 100 cells (50 Field L, 50
    MLd), S = 30 stims (10 conspecific songs, 20 "flatrip" ripple noises, up to
    5 s at 32 kHz), about 10 trials per pair.

    Stims are mel spectrograms ``(1, n_mels, T)`` computed from the wavs
    (power STFT with a periodic Hann window of ``window_ms``, centred frames
    every ``dt_ms``, HTK mel over 0-16 kHz, then ``compression``); frame ``b``
    is centred on ``b * dt_ms`` ms and matches response bin ``[b dt, (b+1) dt)``
    ms after onset. Responses are spike counts ``(R, T)`` float32 (R = trials
    in the spike file), Hann-smoothed over 21 ms by default.

    Parameters
    ----------
    path : path-like, optional
        Folder holding ``all_stims/``, ``Field_L_cells/``, ``MLd_cells/``
        (default: ``$DEEPSTRF_DATA/AA1`` or the user data dir).
    download : bool, default False
        Fetch and unzip ``aa-1/crcns-aa1.zip`` (~17 MB) from CRCNS when files
        are missing. Needs a CRCNS account: ``CRCNS_USERNAME`` /
        ``CRCNS_PASSWORD`` or a ``~/.netrc`` entry for ``crcns.org``.
    areas : 'all', str or sequence of {'Field_L', 'MLd'}, default ('Field_L', 'MLd')
        Areas to load; their order sets the neuron order (cells sorted by
        name inside each area).
    stimuli : 'all', str or sequence of {'conspecific', 'flatrip'}, default ('conspecific', 'flatrip')
        Stim classes; their order sets the stim order (wav names sorted
        inside each class). Cells with none of these classes are dropped.
    animals : 'all' or sequence of str, default 'all'
        Bird ids (cell-name prefix, e.g. ``'gg0304'``) to keep.
    dt_ms : float, default 1
        Response bin width and spectrogram hop (``int(dt_ms * 32)`` samples), ms.
    smooth : bool, default True
        Hann smoothing over 21 ms (unit gain, see Notes).
    n_mels : int, default 32
        Mel channels ``F``.
    compression : {'cubic', 'log1p', 'none'}, default 'cubic'
        Spectrogram compression (``x ** (1/3)``, ``log(1 + x)`` or none).
    window_ms : float, default 10.0
        STFT window (``n_fft = max(round(window_ms / dt_ms * hop), hop)``).
    return_waveform : bool, default False
        Stims become ``(1, T * hop)`` audio at ``audio_fs`` (grid-locked to the bins).
    audio_fs : int, default 32000
        Waveform-mode sample rate (Hz); ``audio_fs * dt_ms / 1000`` must be whole.
    cache : bool, default True
        Reuse/write the processed-data cache (``$DEEPSTRF_CACHE``).

    Attributes
    ----------
    species, behavioral_state, hearing_range_hz, F, window_ms, compression,
    return_waveform, audio_fs (None in spectrogram mode), animals, dt, N_neurons.
    ``stim_meta[s]``: name, type, sample_rate, n_samples, duration_s.
    ``nrn_meta[n]``: cell_id, animal_id, area, cell_seq, rig.

    Notes
    -----
    Deliberate differences from deepSTRF 0.1.0:

    * smoothing uses the unit-gain kernel of ``smooth_responses``: values are
      the reference's divided by ``(K - 1) / 2`` (10 at dt 1 ms, 2 at 5 ms);
    * ``area`` is the folder the cell came from and ``animal_id`` its name
      prefix (the reference mislabels both, or crashes, after the ``animals``
      filter or a dropped cell);
    * ``areas='MLd'`` (one string) means that area; unknown names and
      compressions raise ``ValueError`` (the reference fell back to 'none');
    * spike lines and stim-file names are parsed without relying on the
      trailing space / newline; an empty spike file or one without trials is a
      missing pair instead of a crash; only ``*.wav`` files are stims;
    * multi-channel wavs are averaged to mono before the front end;
    * credentials come from the environment or netrc only (no
      ``username=``/``password=`` arguments);
    * the processed tensors are cached.
    """

    FORMAT_VERSION = 1

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        areas: str | Sequence[str] = AA1_AREAS,
        stimuli: str | Sequence[str] = AA1_STIM_TYPES,
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
        root = data_root(AA1_NAME, path)
        area_list = choose_names(areas, AA1_AREAS, "areas")
        stim_types = choose_names(stimuli, AA1_STIM_TYPES, "stimuli")
        animal_list = animal_ids_arg(animals)
        front = FrontEnd.from_args(dt_ms, n_mels, compression, window_ms, return_waveform, audio_fs)
        super().__init__(str(root), float(dt_ms))

        needed = [f"all_stims/{t}" for t in stim_types] + [f"{a}_cells" for a in area_list]
        require_raw_files(
            AA1_NAME, root, lambda: [rel for rel in needed if not (root / rel).is_dir()],
            download=download, fetch=lambda: download_aa1(root), layout=_LAYOUT,
            fix=crcns_fix(f"CRCNSAA1Dataset({str(root)!r}, download=True)", [AA1_NERSC_PATH], AA1_PAGE))

        cells, raw_files, seen_animals = self._scan(root, area_list, stim_types, animal_list)
        stims = [(name, t, root / "all_stims" / t / name) for t in stim_types
                 for name in list_wavs(root / "all_stims" / t)]
        raw_files += [p for _, _, p in stims]

        def build():
            def meta(name: str, cls: str, sr: int, n: int) -> dict:
                return {"name": name, "type": cls, "sample_rate": float(sr), "n_samples": int(n),
                        "duration_s": n / sr if sr else float("nan")}

            return build_text_payload(stims, cells, front, smooth, meta, expected_rate=AA1_SAMPLE_RATE,
                                      dataset=AA1_NAME)

        params = {"areas": area_list, "stimuli": stim_types, "animals": animal_list, "smooth": bool(smooth),
                  **front.cache_params()}
        self._load_or_build(build, params=params, raw_files=raw_files, cache=cache, name=AA1_NAME)
        self.species = "zebra finch"
        self.behavioral_state = "anesthetized"
        self.hearing_range_hz = (250.0, 8000.0)
        front.set_attributes(self)
        self.smooth = bool(smooth)
        self.animals = animal_list if animal_list is not None else seen_animals
        self.validate()

    @staticmethod
    def _scan(root: Path, areas: list[str], stim_types: list[str], animals: list[str] | None
              ) -> tuple[list[CellRecord], list[Path], list[str]]:
        """Cells to load (area blocks, sorted names), the text files they use, and every animal id seen."""
        seen: list[str] = []
        for area in AA1_AREAS:  # animal list over both areas, as the reference reports it
            folder = root / f"{area}_cells"
            if folder.is_dir():
                for cell in sorted(os.listdir(folder)):
                    animal = parse_cell_name(cell)[0]
                    if (folder / cell).is_dir() and animal not in seen:
                        seen.append(animal)
        cells: list[CellRecord] = []
        files: list[Path] = []
        for area in areas:
            folder = root / f"{area}_cells"
            for cell in sorted(os.listdir(folder)):
                if not (folder / cell).is_dir():
                    continue
                animal, seq, rig = parse_cell_name(cell)
                if animals is not None and animal not in animals:
                    continue
                classes = {cls: folder / cell / cls for cls in stim_types if (folder / cell / cls).is_dir()}
                for class_folder in classes.values():
                    files += list_text_files(class_folder)
                if not classes:
                    continue
                meta = {"cell_id": cell, "animal_id": animal, "area": area, "cell_seq": seq, "rig": rig}
                cells.append(CellRecord(meta, classes))
        return cells, files, seen


def download_aa1(path: str | os.PathLike[str] | None = None) -> Path:
    """Download ``aa-1/crcns-aa1.zip`` from CRCNS and extract it (once).

    Parameters
    ----------
    path : path-like, optional
        Dataset folder (default: ``$DEEPSTRF_DATA/AA1`` or the user data dir).

    Returns
    -------
    pathlib.Path
        The dataset folder, holding ``all_stims/``, ``Field_L_cells/``, ``MLd_cells/``
        (the archive is kept next to them).

    Raises
    ------
    CredentialsError
        No CRCNS credentials (``CRCNS_USERNAME``/``CRCNS_PASSWORD`` or a
        ``~/.netrc`` entry for ``crcns.org``), or CRCNS rejected them.
    DownloadError, ChecksumError
        Transfer failure or corrupt download.
    """
    root = data_root(AA1_NAME, path)
    archive = fetch_crcns(AA1_NERSC_PATH, root, known_hash=AA1_REGISTRY[AA1_NERSC_PATH])
    return extract_zip(archive, root)
