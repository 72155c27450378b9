"""CRCNS aa-4: zebra finch auditory pallium units and the species' vocal repertoire (Elie & Theunissen)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...utils.download import data_root, extract_tar, fetch_crcns, is_extracted
from .._cache import Payload
from .._errors import DatasetFormatError
from .._raw_files import require_raw_files
from .._storage import make_sentinels
from ._crcns import FrontEnd, _progress, bin_trials_ms, crcns_fix, read_wav, smooth_row
from ._spectrogram import hop_samples
from .audio_dataset import AudioNeuralDataset

__all__ = ["AA4_ANIMAL_IDS", "AA4_STIM_TYPES", "CRCNSAA4Dataset", "download_aa4"]

AA4_NAME = "AA4"
#: The six birds of aa-4 (last letter = sex); one archive ``aa-4/<id>.tar.gz`` each.
AA4_ANIMAL_IDS = ("BlaBro09xxF", "GreBlu9508M", "LblBlu2028M", "WhiBlu5396M", "WhiWhi4522M", "YelBlu6903F")
#: Registry checksums of the archives (CRCNS publishes none; pin after a trusted download).
AA4_REGISTRY: dict[str, str | None] = {f"aa-4/{a}.tar.gz": None for a in AA4_ANIMAL_IDS}
AA4_PAGE = "https://crcns.org/data-sets/aa/aa-4/about-aa-4"
AA4_DOI = "10.6080/K00C4T06"
#: ``stim_type`` values of the stim groups.
AA4_STIM_TYPES = ("song", "call", "mlnoise")
_SKIPPED_GROUPS = ("class_info", "extra_info")
_SKIPPED_SORTS = ("tdt", "noise")
_AA4_SUBSORT_RE = re.compile(r"_ss(\d+)$")
_AA4_SORTTYPE_FIXES = {"singl": "single"}

_LAYOUT = """\
<root>/<animal>/wavfiles/stim<N>.wav                      24414 Hz PCM
<root>/<animal>/Site<S>_L<ld>R<rd>_e<el>_s<sort>[_ss<k>].h5   one unit per file
animal: BlaBro09xxF GreBlu9508M LblBlu2028M WhiBlu5396M WhiWhi4522M YelBlu6903F"""


def _text(value: object) -> str:
    """Decode an HDF5 string attribute (fixed bytes, 1-element bytes array or str)."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _scalar(value: object, default: float) -> float:
    if value is None:
        return default
    arr = np.asarray(value).reshape(-1)
    if arr.size == 0:
        return default
    try:
        return float(arr[0])
    except (TypeError, ValueError):
        return default


def _animals_arg(animals: str | Iterable[str]) -> list[str]:
    if isinstance(animals, str):
        animals = list(AA4_ANIMAL_IDS) if animals == "all" else [animals]
    out = list(dict.fromkeys(str(a) for a in animals))
    unknown = [a for a in out if a not in AA4_ANIMAL_IDS]
    if unknown or not out:
        raise ValueError(f"animals must be 'all' or ids among {AA4_ANIMAL_IDS}, got {unknown or out!r}")
    return out


def _stim_types_arg(stimuli: str | Iterable[str]) -> list[str]:
    if isinstance(stimuli, str):
        stimuli = list(AA4_STIM_TYPES) if stimuli == "all" else [stimuli]
    chosen = set(stimuli)
    if not chosen or not chosen <= set(AA4_STIM_TYPES):
        raise ValueError(f"stimuli must be 'all' or a subset of {AA4_STIM_TYPES}, got {sorted(map(str, chosen))!r}")
    return [t for t in AA4_STIM_TYPES if t in chosen]


class CRCNSAA4Dataset(AudioNeuralDataset):
    """CRCNS aa-4: single and multi units of the zebra finch auditory pallium, full vocal repertoire.

    Elie JE, Theunissen FE (2019) "Simultaneous extracellular recordings of
    avian auditory neurons in zebra finches presented with all the repertoire
    of vocalizations used by this species for vocal communication", CRCNS.org,
    DOI 10.6080/K00C4T06. Papers: Elie & Theunissen 2015 Eur J Neurosci (DOI
    10.1111/ejn.12812); Elie & Theunissen 2019 PLoS Comput Biol (DOI
    10.1371/journal.pcbi.1006698). Anesthetized adults (4 males, 2 females),
    Field L, CLM, CMM and NCM (no per-unit area), two 16-electrode arrays.
    Real data: 1401 units (914 single) before the noise/tdt filter, 170
    distinct clips (songs, calls, ``mlnoise``), up to 3 s at 24414 Hz, ~10
    trials; coverage is sparse (many missing pairs).

    A stim is identified by its wav md5 (``stim_meta['name']``): the same clip
    has different numbers in different birds. Walk order (it fixes stim and
    neuron order): animals in the given order, ``.h5`` files sorted by name,
    protocol groups and stim groups sorted as strings; a stim is registered
    the first time a unit of a requested type meets it and its own animal has
    ``wavfiles/stim<N>.wav``; the spectrogram comes from that wav. Spike times
    (s) are binned at ``dt_ms`` after onset and cropped/padded to the stim's
    ``T = 1 + n_samples // hop`` frames, ``hop = int(24414 * dt_ms / 1000)``.

    Parameters
    ----------
    path : path-like, optional
        Folder with the animal sub-folders (default ``$DEEPSTRF_DATA/AA4``).
    download : bool, default False
        Fetch and extract ``aa-4/<animal>.tar.gz`` (hundreds of MB each) for
        the requested animals that are missing. CRCNS account needed
        (``CRCNS_USERNAME``/``CRCNS_PASSWORD`` or ``~/.netrc``).
    animals : 'all' or sequence of str, default 'all'
        Birds from :data:`AA4_ANIMAL_IDS`; the order sets the neuron order and
        which bird's wav defines a shared stim.
    stimuli : 'all' or sequence of {'song', 'call', 'mlnoise'}, default all
        Stim types (a set).
    dt_ms : float, default 1.0
        Response bin width (ms).
    smooth : bool, default True
        21 ms unit-gain Hann smoothing.
    n_mels, compression, window_ms : int, str, float
        Mel front end (defaults 32, 'cubic', 10.0), as in :class:`CRCNSAA1Dataset`.
    return_waveform : bool, default False
        Stims become ``(1, T * hop_w)`` mono audio at ``audio_fs``.
    audio_fs : int, default 24000
        Waveform-mode rate (Hz); ``audio_fs * dt_ms / 1000`` must be whole.
    cache : bool, default True
        Processed-data cache.

    Attributes
    ----------
    ``stim_meta[s]``: name (md5), type, class (call type etc.), duration_s.
    ``nrn_meta[n]``: cell_id, animal_id, sex, site, electrode, ldepth, rdepth
    (µm, NaN if absent), sort_type ('single'/'multi'), sort_id, subsort_id.
    ``animals`` (tuple), ``stim_types`` (set), ``_wav_hop``.

    Notes
    -----
    Reference behaviours kept on purpose (same data as deepSTRF 0.1.0):
    trials without a post-onset spike are dropped (``R`` counts non-empty
    trials, which biases PSTHs upward); a unit/stim pair whose counts are all
    zero is missing; units of sort type ``noise``/``tdt`` are skipped; the
    spectrogram hop is truncated, so frames last ``hop / 24414`` s (0.983 ms
    at dt 1 ms) while spikes are binned at exactly ``dt_ms``: over a 3 s clip
    the spectrogram and the responses drift apart by ~50 ms (use waveform
    mode at 24 kHz for an exact grid).

    Deliberate differences: unit-gain smoothing (values = reference /
    ``(K - 1) / 2``); 1-element array attributes (``electrode``) are read;
    unknown animals or stim types raise ``ValueError``; the tutorial archive
    ``CRCNSCode.tar.gz`` is not downloaded (never read); credentials from the
    environment/netrc only; processed tensors are cached.
    """

    FORMAT_VERSION = 1

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        animals: str | Sequence[str] = "all",
        stimuli: str | Sequence[str] = AA4_STIM_TYPES,
        dt_ms: float = 1.0,
        smooth: bool = True,
        n_mels: int = 32,
        compression: str = "cubic",
        window_ms: float = 10.0,
        return_waveform: bool = False,
        audio_fs: int = 24000,
        cache: bool = True,
    ) -> None:
        root = data_root(AA4_NAME, path)
        animal_list = _animals_arg(animals)
        stim_types = _stim_types_arg(stimuli)
        front = FrontEnd.from_args(dt_ms, n_mels, compression, window_ms, return_waveform, audio_fs)
        super().__init__(str(root), float(dt_ms))

        def missing_animals() -> list[str]:
            return [a for a in animal_list if not (root / a / "wavfiles").is_dir()]

        require_raw_files(
            AA4_NAME, root, lambda: [f"{a}/wavfiles" for a in missing_animals()],
            download=download, fetch=lambda: download_aa4(root, animals=missing_animals()), layout=_LAYOUT,
            fix=lambda: crcns_fix(f"CRCNSAA4Dataset({str(root)!r}, animals={animal_list!r}, download=True)",
                                  [f"aa-4/{a}.tar.gz" for a in missing_animals()], AA4_PAGE))

        units = {a: sorted(p for p in (root / a).iterdir() if p.suffix == ".h5" and p.is_file())
                 for a in animal_list}
        wavs = {a: {p.stem: p for p in sorted((root / a / "wavfiles").iterdir()) if p.suffix.lower() == ".wav"}
                for a in animal_list}
        raw_files = [p for a in animal_list for p in units[a]] + [p for a in animal_list for p in wavs[a].values()]

        def build() -> Payload:
            return _build_aa4(animal_list, units, wavs, set(stim_types), front, smooth)

        params = {"animals": animal_list, "stimuli": stim_types, "smooth": bool(smooth), **front.cache_params()}
        self._load_or_build(build, params=params, raw_files=raw_files, cache=cache, name=AA4_NAME)
        self.species = "zebra finch"
        self.behavioral_state = "anesthetized"
        self.hearing_range_hz = (250.0, 8000.0)
        front.set_attributes(self)
        self._wav_hop = hop_samples(front.audio_fs, dt_ms) if return_waveform else None
        self.smooth = bool(smooth)
        self.animals = tuple(animal_list)
        self.stim_types = set(stim_types)
        self.validate()


def _unit_meta(path: Path, animal: str, attrs, sort_type: str) -> dict:
    sub = _AA4_SUBSORT_RE.search(path.stem)
    return {
        "cell_id": path.stem,
        "animal_id": animal,
        "sex": animal[-1],
        "site": _text(attrs["site"]) if "site" in attrs else "",
        "electrode": int(_scalar(attrs.get("electrode"), 0)),
        "ldepth": _scalar(attrs.get("ldepth"), math.nan),
        "rdepth": _scalar(attrs.get("rdepth"), math.nan),
        "sort_type": sort_type,
        "sort_id": int(_scalar(attrs.get("sortid"), 0)),
        "subsort_id": int(sub.group(1)) if sub else None,
    }


def _trial_times_ms(group, path: Path, where: str) -> list[np.ndarray]:
    """Post-onset spike times (ms) of each trial of a stim group; trials without any are dropped."""
    import h5py

    out = []
    for key in sorted(group):
        trial = group[key]
        if not isinstance(trial, h5py.Group):
            continue
        if "spike_times" not in trial:
            raise DatasetFormatError(str(path), f"{where}/{key}/spike_times", "nothing", "a dataset of spike times (s)")
        times = np.atleast_1d(np.asarray(trial["spike_times"][()], dtype=np.float64))
        times = times[times >= 0]  # also removes the -999 marker of an empty trial
        if times.size:
            out.append(times * 1000.0)
    return out


def _build_aa4(animals: list[str], units: dict[str, list[Path]], wavs: dict[str, dict[str, Path]],
               stim_types: set[str], front: FrontEnd, smooth: bool) -> Payload:
    import h5py

    stims: list[Tensor] = []
    stim_meta: list[dict] = []
    frames: list[int] = []
    index: dict[str, int] = {}
    kept: list[tuple[dict, dict[int, Tensor]]] = []
    files = [(a, p) for a in animals for p in units[a]]
    for animal, path in _progress(files, desc="AA4 units", unit="file"):
        try:
            fh = h5py.File(path, "r")
        except OSError as exc:
            raise DatasetFormatError(str(path), "file", f"an unreadable HDF5 file ({exc})",
                                     "an aa-4 unit file; extract the animal's archive again") from None
        with fh:
            if "sortType" not in fh.attrs:
                raise DatasetFormatError(str(path), "sortType", "no such attribute", "single / multi / noise / tdt")
            sort_type = _text(fh.attrs["sortType"]).strip()
            sort_type = _AA4_SORTTYPE_FIXES.get(sort_type, sort_type)
            if sort_type in _SKIPPED_SORTS:
                continue
            responses: dict[int, Tensor] = {}
            for proto in sorted(fh):
                if proto in _SKIPPED_GROUPS or not isinstance(fh[proto], h5py.Group):
                    continue
                for number in sorted(fh[proto]):
                    group = fh[proto][number]
                    if not isinstance(group, h5py.Group):
                        continue
                    if _text(group.attrs.get("stim_type", "")) not in stim_types:
                        continue
                    if "stim_md5" not in group.attrs:
                        raise DatasetFormatError(str(path), f"{proto}/{number} attribute stim_md5", "nothing",
                                                 "the md5 of the stim's wav")
                    md5 = _text(group.attrs["stim_md5"]).strip()
                    if md5 not in index:
                        wav = wavs[animal].get(f"stim{number}")
                        if wav is None:
                            continue  # unknown clip, and not in this bird's wavfiles
                        audio, sr = read_wav(wav)
                        index[md5] = len(stims)
                        stims.append(front.stim(audio, sr))
                        frames.append(front.n_frames(audio.shape[1], sr))
                        stim_meta.append({
                            "name": md5,
                            "type": _text(group.attrs["stim_type"]),
                            "class": _text(group.attrs.get("stim_class", "")),
                            "duration_s": _scalar(group.attrs.get("stim_duration"), math.nan),
                        })
                    s = index[md5]
                    trials = _trial_times_ms(group, path, f"{proto}/{number}")
                    if not trials:
                        continue
                    counts = bin_trials_ms(trials, frames[s], front.dt_ms)
                    if not bool(counts.any()):
                        continue
                    responses[s] = counts  # a later group with the same md5 replaces it
            if responses:
                kept.append((_unit_meta(path, animal, fh.attrs, sort_type), responses))
    S, N = len(stims), len(kept)
    rows: list[list[Tensor]] = []
    mask = torch.zeros((S, N), dtype=torch.bool)
    for n, (_, responses) in enumerate(kept):
        for s in responses:
            mask[s, n] = True
    for s in range(S):
        pads = iter(make_sentinels(N - int(mask[s].sum())))
        row = [kept[n][1][s] if mask[s, n] else next(pads) for n in range(N)]
        rows.append(smooth_row(row, front.dt_ms) if smooth else row)
    if N == 0:
        raise DatasetFormatError(", ".join(animals), "units", "no unit with a usable response",
                                 "at least one single/multi unit with post-onset spikes for the requested stimuli")
    return Payload(stims, rows, stim_meta, [meta for meta, _ in kept], {}, mask)


def download_aa4(path: str | os.PathLike[str] | None = None, animals: Sequence[str] = AA4_ANIMAL_IDS) -> Path:
    """Download and extract ``aa-4/<animal>.tar.gz`` from CRCNS (account needed) for each animal.

    Animals already extracted (or whose folder was installed by hand) are
    skipped. The lab's tutorial code ``CRCNSCode.tar.gz`` is not fetched.

    Parameters
    ----------
    path : path-like, optional
        Dataset folder (default ``$DEEPSTRF_DATA/AA4`` or the user data dir).
    animals : sequence of str
        Ids from :data:`AA4_ANIMAL_IDS` (default all six).

    Returns
    -------
    pathlib.Path
        The dataset folder.

    Raises
    ------
    ValueError
        Unknown animal id.
    CredentialsError, DownloadError, ChecksumError
        See :func:`deepSTRF.utils.download.fetch_crcns`.
    """
    root = data_root(AA4_NAME, path)
    for animal in _animals_arg(list(animals)):
        fn = f"aa-4/{animal}.tar.gz"
        archive = root / f"{animal}.tar.gz"
        if is_extracted(archive, root) or ((root / animal / "wavfiles").is_dir() and not archive.exists()):
            continue
        extract_tar(fetch_crcns(fn, root, known_hash=AA4_REGISTRY[fn]), root)
    return root
