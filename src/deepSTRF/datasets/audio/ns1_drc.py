"""NS1: ferret A1 responses to 20 natural sound clips (Harper et al. 2016 release).

Module layout: constants (sources, stim tables, splits), then
:class:`NS1Dataset`, then :func:`download_ns1`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .._cache import Payload
from .._errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from .._raw_files import require_raw_files
from ._spikes import bin_trials_by_index
from ._spectrogram import resample_polyphase
from .audio_dataset import AudioNeuralDataset

__all__ = [
    "DNET_BLOB_SHA1",
    "DNET_COMMIT",
    "DNET_FILE",
    "DNET_REPO",
    "DT_MS",
    "METADATA_FILE",
    "NATIVE_WAV_FS",
    "NS1_NAME",
    "N_BINS",
    "N_NATURAL_STIMS",
    "OSF_FILES",
    "OSF_HASHES",
    "OSF_PROJECT",
    "RAHMAN2020_TEST",
    "RAHMAN2020_TRAIN",
    "SPECTROGRAM_FILE",
    "SPEECH_STIMS",
    "SPIKE_FOLDER",
    "STIM_TYPES",
    "WAV_FOLDER",
    "WAV_NAMES",
    "WINDOW_MS",
    "NS1Dataset",
    "download_ns1",
]

# --------------------------------------------------------------------------- constants

#: Dataset folder name under the data root.
NS1_NAME = "NS1"
#: Natural-sound clips loaded (the spike files also hold 12 DRC stims, ignored).
N_NATURAL_STIMS = 20
#: Response bin width (ms); the only value the precomputed spectrogram supports.
DT_MS = 5.0
#: Response window after sound onset (ms): 999 bins of 5 ms.
WINDOW_MS = 4995
N_BINS = WINDOW_MS // int(DT_MS)
#: Sampling rate written in the wav headers (the true rate is 48828.125 Hz).
NATIVE_WAV_FS = 48828
#: Folder of the stimulus wavs, relative to the dataset root.
WAV_FOLDER = "spikesandwav/SH.En.C"
#: Wav file (no extension) of each natural stim, 0-based stim index.
WAV_NAMES: tuple[str, ...] = tuple(
    [f"source.1.sound.0.snr.0.token.0.fw.2.frozen.{s + 1}" for s in range(12)]
    + [f"source.2.sound.0.snr.0.token.0.fw.1.frozen.{s - 11}" for s in range(12, 20)]
)

SPECTROGRAM_FILE = "test_data_5ms.mat"
METADATA_FILE = "MetadataSHEnCneurons.mat"
SPIKE_FOLDER = "spikesandwav"
SPIKE_ZIP = "spikesandwav.zip"
README_FILE = "ReadMe.rtf"

#: OSF project of the recordings and the GUID of each file.
OSF_PROJECT = "ayw2p"
OSF_FILES: dict[str, str] = {METADATA_FILE: "gdwyd", SPIKE_ZIP: "5nxga", README_FILE: "f3rtm"}
#: Registry pins (``None``: verified against the sha256 OSF publishes in its API).
OSF_HASHES: dict[str, str | None] = {METADATA_FILE: None, SPIKE_ZIP: None, README_FILE: None}
#: Repository of Rahman et al. (2019) holding the precomputed 5 ms spectrogram.
DNET_REPO = "monzilur/DNet"
#: Last commit of the (frozen) repository; the .mat files never changed after 87367c9.
DNET_COMMIT = "e6ab272ed228882b3b7046a14b2e1cb228ddf943"
DNET_FILE = SPECTROGRAM_FILE
#: Git blob id of ``test_data_5ms.mat``: SHA-1 of ``b"blob <size>\\0" + bytes``.
DNET_BLOB_SHA1 = "70179b2d34a90c6436955363c802280a89c0cc0f"

#: Human speech clips (sound numbers 9-12).
SPEECH_STIMS: tuple[int, ...] = (8, 9, 10, 11)
#: Sound category of each stim (Rahman et al. 2020); absent = ``'unknown'``.
STIM_TYPES: dict[int, str] = {
    0: "water_sounds",
    19: "water_sounds",
    3: "ferret_vocalization",
    6: "insects_buzzing",
    8: "human_speech",
    9: "human_speech",
    10: "human_speech",
    11: "human_speech",
}
#: Rahman et al. (2020) train/validation and test stims (exposed, not applied by the loader).
RAHMAN2020_TRAIN: tuple[int, ...] = (0, 1, 2, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18)
RAHMAN2020_TEST: tuple[int, ...] = (3, 6, 9, 19)

_LAYOUT = f"""\
<root>/{SPECTROGRAM_FILE}                      X_nfht (20, F, H, 999), from GitHub {DNET_REPO}
<root>/{METADATA_FILE}               'neuron' struct array (OSF {OSF_PROJECT})
<root>/{SPIKE_FOLDER}/<neuron.path>              one spike file per neuron (unzipped {SPIKE_ZIP})
<root>/{WAV_FOLDER}/<20 wav files>      waveform mode only"""
_FIX = "deepSTRF.datasets.audio.ns1_drc.download_ns1({root!r}) or NS1Dataset({root!r}, download=True)"
_META_FIELDS = ("path", "NrOfElectrodes", "ElectrodeNumber", "depth", "NoiseRatio", "singleT", "singleN")


def _resolve_root(path: str | os.PathLike[str] | None) -> Path:
    """``path`` itself, else the data root (imports the download machinery only then)."""
    if path is not None:
        return Path(path).expanduser()
    from ...utils.download import data_root

    return data_root(NS1_NAME)


def _mat_files(folder: Path) -> list[str]:
    """Every ``*.mat`` file below ``folder`` (sorted paths)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in filenames if f.endswith(".mat")]
    return sorted(found)


def _progress(iterable: Any, **kwargs: Any) -> Any:
    return tqdm(iterable, disable=None, leave=False, dynamic_ncols=True, **kwargs)


def _loadmat(path: Path, variable: str) -> Any:
    """One variable of a MATLAB v5 file; a missing variable or unreadable file is a DatasetFormatError."""
    from scipy.io import loadmat

    try:
        content = loadmat(str(path), variable_names=[variable], squeeze_me=False, struct_as_record=True)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
        raise DatasetFormatError(str(path), variable, f"a MATLAB v7.3/HDF5 file ({exc})",
                                 "a MATLAB v5/v7 MAT-file readable by scipy.io.loadmat") from exc
    except Exception as exc:  # scipy raises many types on a damaged file (MatReadError, ValueError, ...)
        raise DatasetFormatError(str(path), variable, f"an unreadable or truncated file ({type(exc).__name__}: {exc})",
                                 "a MATLAB v5/v7 MAT-file: delete it and download it again") from exc
    if variable not in content:
        raise DatasetFormatError(str(path), variable, "no such variable", f"a MAT-file holding {variable!r}")
    return content[variable]


def _scalar(value: Any) -> Any:
    """A MATLAB 1x1 number or 1-element char array as a Python scalar (None when empty)."""
    arr = np.asarray(value)
    if arr.size == 0:
        return None
    item = arr.reshape(-1)[0]
    return item.item() if isinstance(item, np.generic) else item


def _spike_times(value: Any) -> np.ndarray:
    """Spike times of one repeat, whatever the MATLAB shape (row, column, 1x0, 0x0)."""
    arr = np.asarray(value)
    if arr.dtype == object:
        arr = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arr.reshape(-1)]) \
            if arr.size else np.zeros(0)
    return arr.astype(np.float64, copy=False).reshape(-1)


def _bin_stim(cells: list[tuple[np.ndarray, np.ndarray, int]]) -> list[Tensor]:
    """One stim's ``(R_n, 999)`` count tensors, views on one contiguous block."""
    repeats = [R for _, _, R in cells]
    offsets = np.concatenate([[0], np.cumsum(repeats)])
    bins = np.concatenate([b for b, _, _ in cells]) if cells else np.zeros(0, np.int32)
    rows = np.concatenate([t + offsets[n] for n, (_, t, _) in enumerate(cells)]) if cells else bins
    total = int(offsets[-1])
    block = bin_trials_by_index(bins.astype(np.float64), rows, total, N_BINS, 1.0)
    return list(torch.split(block, repeats, dim=0))


class NS1Dataset(AudioNeuralDataset):
    """Ferret primary auditory cortex (A1): 119 units, 20 natural sound clips x 20 repeats.

    Recordings of Harper et al. (2016), *PLoS Comput Biol* 12(11): e1005113,
    DOI 10.1371/journal.pcbi.1005113 (OSF project ``ayw2p``); 5 ms
    log-frequency spectrograms of Rahman et al. (2019), *PLoS Comput Biol*
    15(5): e1006618, DOI 10.1371/journal.pcbi.1006618 (GitHub
    ``monzilur/DNet``); stim categories and split from Rahman et al. (2020),
    *PNAS* 117(45), DOI 10.1073/pnas.1922033117. Anaesthetised ferrets.

    Parameters
    ----------
    path : path-like, optional
        Dataset folder (layout below); default ``data_root("NS1")``
        (``$DEEPSTRF_DATA/NS1`` or the platform data folder).
    download : bool, default False
        Fetch missing raw files with :func:`download_ns1` first.
    dt_ms : float, default 5.0
        Bin width in ms; only 5.0 is supported (the spectrogram's frame rate).
    smooth : bool, default True
        Smooth every response with the core 21 ms Hann window
        (:meth:`~deepSTRF.datasets.NeuralDataset.smooth_responses`; K = 5
        bins at 5 ms). Our kernel has unit gain, so the values are the
        reference's divided by 2 (``(K - 1) / 2``).
    return_waveform : bool, default False
        ``stims[s]`` is the ``(1, 999 * hop)`` waveform at ``audio_fs``
        instead of the ``(1, F, 999)`` spectrogram.
    audio_fs : int, default 48000
        Waveform sampling rate in Hz (waveform mode only; a multiple of 200 so
        that a 5 ms bin spans a whole number of samples). The wavs (header rate
        48828 Hz) are resampled with a polyphase band-limited filter.
    cache : bool, default True
        Use the processed-data cache (see ``docs/data_and_caches.md``).

    Attributes
    ----------
    stims : list of Tensor
        20 tensors ``(1, F, 999)`` float32 (spectrogram, F = 34 on the real
        file, units as stored) or ``(1, 999 * hop)`` float32 (waveform, ±1).
    responses : list of list of Tensor
        ``responses[s][n]`` is ``(R, 999)`` float32: spike counts per 5 ms bin
        (smoothed when ``smooth``), R = 20 on the real data. No missing pairs.
    stim_meta : list of dict
        ``name`` (``'nat01'`` ... ``'nat20'``), ``type`` (:data:`STIM_TYPES`).
    nrn_meta : list of dict
        ``cell_id`` (spike-file path without ``.mat``), ``area`` (``'A1'``),
        ``depth_um`` (int; negative = above the reference / unknown),
        ``noise_ratio`` (float, normalised noise power, lower is cleaner),
        ``single_n`` (2 / 1 / 0 = ``single_t`` Yes / Maybe / No),
        ``single_t`` (str), ``n_electrodes`` (int), ``electrode_number``
        (int, 1-based), ``spike_file`` (path actually read, relative to
        ``spikesandwav/``).
    dt : float
        5.0 ms.
    F : int
        Spectrogram channels (from the file; kept in waveform mode).
    audio_fs : int or None
        ``audio_fs`` in waveform mode, else None.
    species : str
        ``'ferret'``.
    hearing_range_hz : tuple of float
        ``(200.0, 40000.0)``.
    skipped_neurons : list
        ``[metadata path, [spike-file paths tried]]`` of every neuron left out
        because its spike file is missing (also reported as a warning).

    Notes
    -----
    On-disk layout::

        <path>/test_data_5ms.mat               X_nfht (20, F, H, 999); only h = 0 is used
        <path>/MetadataSHEnCneurons.mat        'neuron': 1 x 119 struct array
        <path>/spikesandwav/<neuron.path>      'data.set(j).repeats(r).t': spike times (ms from onset)
        <path>/spikesandwav/SH.En.C/<name>     20 wavs without extension (waveform mode)

    Binning: each spike time is rounded to the nearest ms (ties to even), kept
    when ``0 <= m < 4995`` and counted in bin ``m // 5``. A spike file missing
    under its path is looked up with ``.mat`` replaced by ``_1.mat``; a neuron
    with neither is skipped with a warning. Neurons keep metadata order.

    Deliberate differences from deepSTRF 0.1.0:

    * every spike is counted: the reference marked each millisecond once and
      lost spikes sharing a rounded millisecond (2.6 % of all spikes on the
      real data, up to 16 % of one neuron's);
    * spike vectors of any shape are accepted (the reference read only the
      first row: a column vector gave one spike, a 0 x 0 empty crashed);
    * smoothing is unit-gain (values are the reference's / 2);
    * arguments are checked first with ``ValueError``; a file whose ``X_nfht``
      does not have S = 20 and T = 999 raises ``DatasetFormatError``;
    * ``cell_id`` is ``path`` minus a trailing ``.mat`` (same result on the
      real file); a neuron without spike file triggers a warning, not a print;
    * the parsed tensors are cached (second construction loads in well under
      a second).
    """

    FORMAT_VERSION = 1
    species = "ferret"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        dt_ms: float = DT_MS,
        smooth: bool = True,
        return_waveform: bool = False,
        audio_fs: int = 48000,
        cache: bool = True,
    ) -> None:
        if isinstance(dt_ms, bool) or not isinstance(dt_ms, (int, float)) or float(dt_ms) != DT_MS:
            raise ValueError(f"dt_ms={dt_ms!r} is not supported: NS1 spectrograms are fixed at 5 ms bins (dt_ms=5.0)")
        if return_waveform:
            if isinstance(audio_fs, bool) or not isinstance(audio_fs, (int, np.integer)) or audio_fs <= 0 \
                    or audio_fs % 200:
                raise ValueError(f"audio_fs={audio_fs!r} must be a positive int multiple of 200 Hz so that a 5 ms "
                                 "bin spans a whole number of samples (e.g. 48000, 16000)")
            audio_fs = int(audio_fs)
        root = _resolve_root(path)
        super().__init__(str(root), DT_MS)
        self.return_waveform = bool(return_waveform)
        self.smooth = bool(smooth)

        require_raw_files(NS1_NAME, root, lambda: self._missing(root), download=download,
                          fetch=lambda: download_ns1(root), layout=_LAYOUT, fix=_FIX.format(root=str(root)))

        # The key covers every MAT file under spikesandwav/ (a cheap walk), so a reload needs
        # no MATLAB parsing at all; which neurons have a file is decided inside the build.
        raw_files = [root / SPECTROGRAM_FILE, root / METADATA_FILE] + _mat_files(root / SPIKE_FOLDER)
        if self.return_waveform:
            raw_files += [root / WAV_FOLDER / name for name in WAV_NAMES]
        params = {"dt_ms": DT_MS, "smooth": self.smooth, "return_waveform": self.return_waveform,
                  "audio_fs": audio_fs if self.return_waveform else None}
        self._load_or_build(lambda: self._build(root, audio_fs), params=params,
                            raw_files=raw_files, cache=cache, name=NS1_NAME)
        for cell_id, tried in getattr(self, "skipped_neurons", []):
            warnings.warn(f"NS1: skipping neuron {cell_id!r}: no spike file at " + " or ".join(tried),
                          UserWarning, stacklevel=2)
        self.validate()

    # ------------------------------------------------------------------ files
    def _missing(self, root: Path) -> list[str]:
        needed = [SPECTROGRAM_FILE, METADATA_FILE]
        missing = [f for f in needed if not (root / f).is_file()]
        if not (root / SPIKE_FOLDER).is_dir():
            missing.append(SPIKE_FOLDER + "/")
        if self.return_waveform:
            missing += [f"{WAV_FOLDER}/{n}" for n in WAV_NAMES if not (root / WAV_FOLDER / n).is_file()]
        return missing

    @staticmethod
    def _read_metadata(root: Path) -> list[dict]:
        """Rows of ``MetadataSHEnCneurons.mat`` as dicts of Python scalars."""
        path = root / METADATA_FILE
        neuron = _loadmat(path, "neuron")
        names = neuron.dtype.names or ()
        absent = [f for f in _META_FIELDS if f not in names]
        if absent:
            raise DatasetFormatError(str(path), "neuron", f"a struct with fields {list(names)}",
                                     f"a struct array with fields {list(_META_FIELDS)}")
        rows = []
        for i, entry in enumerate(neuron.reshape(-1)):
            row = {f: _scalar(entry[f]) for f in _META_FIELDS}
            if not isinstance(row["path"], str) or not row["path"]:
                raise DatasetFormatError(str(path), f"neuron({i + 1}).path", repr(row["path"]),
                                         "a spike file path relative to spikesandwav/")
            rows.append(row)
        if not rows:
            raise DatasetFormatError(str(path), "neuron", "an empty struct array", "at least one neuron")
        return rows

    def _spike_files(self, root: Path) -> tuple[list[tuple[dict, Path, str]], list[list]]:
        """``(metadata row, spike file, path relative to spikesandwav/)`` of every neuron with a file,
        and ``[path, [paths tried]]`` of every neuron without one."""
        found, skipped = [], []
        folder = root / SPIKE_FOLDER
        for row in self._read_metadata(root):
            rel = row["path"].replace("\\", "/")
            candidates = [rel]
            if rel.endswith(".mat"):
                candidates.append(rel[:-4] + "_1.mat")
            for cand in candidates:
                if (folder / cand).is_file():
                    found.append((row, folder / cand, cand))
                    break
            else:
                skipped.append([rel, [str(folder / c) for c in candidates]])
        if not found:
            raise DatasetNotFoundError(NS1_NAME, str(root), [f"{SPIKE_FOLDER}/{r}" for r, _ in skipped],
                                       layout=_LAYOUT, fix=_FIX.format(root=str(root)))
        return found, skipped

    # ------------------------------------------------------------------ parse
    def _build(self, root: Path, audio_fs: int) -> Payload:
        spike_files, skipped = self._spike_files(root)
        X, F = self._read_spectrogram(root / SPECTROGRAM_FILE)
        if self.return_waveform:
            stims = [self._read_wav(root / WAV_FOLDER / name, audio_fs) for name in
                     _progress(WAV_NAMES, desc="NS1 wavs")]
        else:
            stims = [torch.from_numpy(np.ascontiguousarray(X[s, :, 0, :], dtype=np.float32)).unsqueeze(0)
                     for s in range(N_NATURAL_STIMS)]
        del X
        N = len(spike_files)
        # Keep the (small) spike times per file, then bin stim by stim into one block each:
        # a stim's raw block is freed as soon as smoothing has replaced it.
        trains: list[list[tuple[np.ndarray, np.ndarray, int]]] = []
        nrn_meta = []
        for row, file, rel in _progress(spike_files, desc="NS1 spike files"):
            trains.append(self._read_spikes(file))
            nrn_meta.append(self._neuron_meta(row, rel))
        responses = [_bin_stim([trains[n][s] for n in range(N)]) for s in range(N_NATURAL_STIMS)]
        del trains
        stim_meta = [{"name": f"nat{s + 1:02d}", "type": STIM_TYPES.get(s, "unknown")} for s in range(N_NATURAL_STIMS)]
        mask = torch.ones((N_NATURAL_STIMS, N), dtype=torch.bool)
        attrs = {"dt": DT_MS, "F": F, "audio_fs": audio_fs if self.return_waveform else None,
                 "hearing_range_hz": (200.0, 40000.0), "return_waveform": self.return_waveform,
                 "skipped_neurons": skipped}
        payload = Payload(stims, responses, stim_meta, nrn_meta, attrs, mask)
        return self._smooth_built(payload, 21.0) if self.smooth else payload

    @staticmethod
    def _read_spectrogram(path: Path) -> tuple[np.ndarray, int]:
        X = _loadmat(path, "X_nfht")
        if X.ndim != 4 or X.shape[0] != N_NATURAL_STIMS or X.shape[2] < 1 or X.shape[3] != N_BINS \
                or X.shape[1] < 1 or not np.issubdtype(X.dtype, np.number):
            raise DatasetFormatError(str(path), "X_nfht", f"shape {X.shape} dtype {X.dtype}",
                                     f"a numeric (S={N_NATURAL_STIMS}, F, H, T={N_BINS}) array "
                                     "(stim, frequency, history, 5 ms frames)")
        if not np.isfinite(X[:, :, 0, :]).all():
            raise DatasetFormatError(str(path), "X_nfht", "NaN or infinite values", "finite spectrogram values")
        return X, int(X.shape[1])

    @staticmethod
    def _read_spikes(path: Path) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """Binned spikes of the 20 natural stims of one spike file.

        Returns, per stim, ``(bin, repeat, R)``: the 5 ms bin and the repeat
        index of every spike inside the window (int arrays of equal length)
        and the number of repeats.
        """
        data = _loadmat(path, "data")
        if data.dtype.names is None or "set" not in data.dtype.names or data.size < 1:
            raise DatasetFormatError(str(path), "data.set", f"a {type(data).__name__} without field 'set'",
                                     "a struct 'data' with a field 'set' (one entry per stimulus)")
        sets = np.asarray(data.reshape(-1)[0]["set"]).reshape(-1)
        if sets.dtype.names is None or "repeats" not in sets.dtype.names or sets.size < N_NATURAL_STIMS:
            raise DatasetFormatError(str(path), "data.set", f"{sets.size} entries with fields {sets.dtype.names}",
                                     f"at least {N_NATURAL_STIMS} entries with a field 'repeats'")
        out = []
        for s in range(N_NATURAL_STIMS):
            reps = np.asarray(sets[s]["repeats"]).reshape(-1)
            if reps.size and (reps.dtype.names is None or "t" not in reps.dtype.names):
                raise DatasetFormatError(str(path), f"data.set({s + 1}).repeats", f"fields {reps.dtype.names}",
                                         "a struct array with a field 't' (spike times in ms)")
            trains = [_spike_times(rep["t"]) for rep in reps]
            if not trains:
                raise DatasetFormatError(str(path), f"data.set({s + 1}).repeats", "no repeats", "at least one repeat")
            times = np.concatenate(trains)
            trial = np.repeat(np.arange(len(trains), dtype=np.int32), [t.size for t in trains])
            # nearest ms (ties to even) before the window test; every spike counts
            ms = np.round(times)
            keep = (ms >= 0) & (ms < WINDOW_MS)
            out.append(((ms[keep] // DT_MS).astype(np.int32), trial[keep], len(trains)))
        return out

    @staticmethod
    def _neuron_meta(row: dict, rel: str) -> dict:
        path = row["path"].replace("\\", "/")
        cell_id = path.removesuffix(".mat")

        def as_int(v: Any) -> int | None:
            return None if v is None else int(v)

        return {
            "cell_id": cell_id,
            "area": "A1",
            "depth_um": as_int(row["depth"]),
            "noise_ratio": None if row["NoiseRatio"] is None else float(row["NoiseRatio"]),
            "single_n": as_int(row["singleN"]),
            "single_t": None if row["singleT"] is None else str(row["singleT"]),
            "n_electrodes": as_int(row["NrOfElectrodes"]),
            "electrode_number": as_int(row["ElectrodeNumber"]),
            "spike_file": rel,
        }

    @staticmethod
    def _read_wav(path: Path, audio_fs: int) -> Tensor:
        """``(1, 999 * hop)`` float32 waveform at ``audio_fs``: mono, resampled, cut or zero-padded."""
        import soundfile as sf
        try:
            audio, fs = sf.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise DatasetFormatError(str(path), "audio", f"an unreadable file ({exc})", "a WAV file") from exc
        audio = audio.mean(axis=1)
        audio = resample_polyphase(audio, int(fs), audio_fs)
        length = N_BINS * (audio_fs * int(DT_MS) // 1000)
        out = np.zeros(length, dtype=np.float32)
        k = min(length, audio.shape[0])
        out[:k] = audio[:k]
        return torch.from_numpy(out).unsqueeze(0)


# --------------------------------------------------------------------------- download


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1()
    h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def download_ns1(dest: str | os.PathLike[str] | None = None, *, readme: bool = False) -> str:
    """Download and unpack the NS1 raw files.

    Fetches ``MetadataSHEnCneurons.mat`` and ``spikesandwav.zip`` from OSF
    (project ``ayw2p``; verified against OSF's published sha256), unzips the
    latter into ``dest`` (``spikesandwav/``; the zip is kept, the extraction is
    skipped once complete), and ``test_data_5ms.mat`` from GitHub
    ``monzilur/DNet`` at a pinned commit, verified against its git blob id.

    Parameters
    ----------
    dest : path-like, optional
        Dataset folder; default ``data_root("NS1")``.
    readme : bool, default False
        Also fetch the release's ``ReadMe.rtf`` (never read by the loader).

    Returns
    -------
    str
        ``dest``.

    Raises
    ------
    ChecksumError
        A file does not match its published checksum (it is deleted).
    DownloadError
        Network or HTTP failure.
    DatasetNotFoundError
        A file is missing and ``DEEPSTRF_OFFLINE`` is set.
    """
    from ...utils.download import data_root, extract_zip, fetch_github_raw, fetch_osf

    root = data_root(NS1_NAME, dest)
    names = [METADATA_FILE, SPIKE_ZIP] + ([README_FILE] if readme else [])
    for name in names:
        fetch_osf(OSF_FILES[name], root, filename=name, known_hash=OSF_HASHES[name])
    extract_zip(root / SPIKE_ZIP, root)
    target = root / SPECTROGRAM_FILE
    fresh = not target.is_file()
    fetch_github_raw(DNET_REPO, DNET_COMMIT, DNET_FILE, root)
    if fresh:
        blob = _git_blob_sha1(target)
        if blob != DNET_BLOB_SHA1:
            target.unlink(missing_ok=True)
            target.with_name(f".{target.name}.verified").unlink(missing_ok=True)
            raise ChecksumError(str(target), f"git-blob-sha1:{DNET_BLOB_SHA1}", f"git-blob-sha1:{blob}",
                                fix=f"Download it again; the file at github.com/{DNET_REPO} (commit "
                                    f"{DNET_COMMIT[:7]}) should never change, so please report a persistent "
                                    "mismatch.")
    return str(root)
