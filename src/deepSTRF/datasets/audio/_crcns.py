"""Readers shared by the CRCNS aa-1 / aa-2 / aa-4 loaders (Theunissen lab file conventions).

Text conventions of aa-1 and aa-2 (one folder per cell and stim class)::

    <cell>/<class>/stim<k>    first line: the wav file name, e.g. "723792DF8CA8D0B99B8059503E5006BA.wav"
    <cell>/<class>/spike<k>   one line per trial: spike times in ms re stimulus onset, space separated

plus the wav reader, the cell-name parser, the per-stim smoothing and the
CRCNS wording of the "data not found" hint (account and credentials).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile
import torch
from torch import Tensor

from .._cache import Payload
from .._errors import DatasetFormatError, DatasetNotFoundError
from .._storage import is_sentinel, make_sentinels
from ._spectrogram import (
    COMPRESSIONS,
    fit_length,
    hop_samples,
    mel_spectrogram,
    resample,
)
from ._spikes import bin_trials_by_index

if TYPE_CHECKING:
    from .audio_dataset import AudioNeuralDataset

__all__ = [
    "CellRecord",
    "FrontEnd",
    "animal_ids_arg",
    "bin_trials_ms",
    "build_text_payload",
    "choose_names",
    "crcns_fix",
    "index_class_folder",
    "list_text_files",
    "list_wavs",
    "parse_cell_name",
    "read_spike_file",
    "read_stim_name",
    "read_wav",
    "smooth_row",
]

_CELL_RE = re.compile(r"^(?P<animal>[^_]+)_(?P<seq>\d+)(?:_(?P<rig>[A-Z]))?$")
_STIM_FILE_RE = re.compile(r"^stim(\d+)$")
_TEXT_FILE_RE = re.compile(r"^(?:stim|spike)\d+$")


def choose_names(value: str | Iterable[str], allowed: Sequence[str], name: str) -> list[str]:
    """Normalise a constructor argument naming members of ``allowed``.

    Parameters
    ----------
    value : str or iterable of str
        ``'all'``, one name, or an iterable of names.
    allowed : sequence of str
        The valid names, in the order ``'all'`` gives.
    name : str
        Argument name used in the error messages.

    Returns
    -------
    list of str
        The names in the given order, duplicates dropped.

    Raises
    ------
    TypeError
        ``value`` is neither a string nor an iterable.
    ValueError
        A name is not in ``allowed``, or none is given.
    """
    if isinstance(value, str):
        value = list(allowed) if value == "all" else [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be 'all', a name or a list of names from {tuple(allowed)}, got {value!r}") from None
    out: list[str] = []
    for item in items:
        if item not in allowed:
            raise ValueError(f"{name} contains {item!r}; allowed: {tuple(allowed)} or 'all'")
        if item not in out:
            out.append(item)
    if not out:
        raise ValueError(f"{name} is empty; choose among {tuple(allowed)}")
    return out


def animal_ids_arg(animals: str | Iterable[str]) -> list[str] | None:
    """The bird ids an aa-1/aa-2 ``animals`` argument keeps: ``None`` for ``'all'``, else a list of str.

    Raises
    ------
    ValueError
        An empty iterable.
    """
    if isinstance(animals, str):
        return None if animals == "all" else [animals]
    out = [str(a) for a in animals]
    if not out:
        raise ValueError("animals is empty; pass 'all' or a list of animal ids such as ['gg0304']")
    return out


def parse_cell_name(name: str) -> tuple[str, int | None, str | None]:
    """Split a Theunissen-lab cell name ``<animal>_<seq>[_<rig>]``.

    Returns
    -------
    (animal, cell_seq, rig) : tuple
        e.g. ``'gg0304_4_B' -> ('gg0304', 4, 'B')``, ``'yy1617_3' -> ('yy1617', 3, None)``;
        a name of another shape gives ``(text before the first '_', None, None)``.
    """
    match = _CELL_RE.match(name)
    if match is None:
        return name.split("_", 1)[0], None, None
    return match["animal"], int(match["seq"]), match["rig"]


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a wav file as float32 ``(channels, n_samples)`` (PCM16 scaled by 1/32768) and its rate in Hz.

    Raises
    ------
    DatasetFormatError
        The file is not a readable audio file (truncated, wrong format).
    """
    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, EOFError) as exc:  # LibsndfileError subclasses RuntimeError
        raise DatasetFormatError(str(path), "audio", f"an unreadable file ({exc})",
                                 "a PCM wav file; delete it and extract the archive again") from None
    return np.ascontiguousarray(data.T), int(sr)


def read_stim_name(path: str | os.PathLike[str]) -> str:
    """The wav name on the first line of a ``stim<k>`` file (surrounding white space removed).

    Raises
    ------
    DatasetFormatError
        The file is empty or its first line is blank.
    """
    with open(path, encoding="utf-8", errors="replace") as fh:
        name = fh.readline().strip()
    if not name:
        raise DatasetFormatError(str(path), "line 1", "nothing", "the name of the wav file that was played")
    return name


def read_spike_file(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Spike times of every trial of a ``spike<k>`` file.

    Parameters
    ----------
    path : path-like
        Text file, one line per trial, spike times in ms re stimulus onset
        separated by white space (the trailing space of the real files is
        optional here).

    Returns
    -------
    list of numpy.ndarray (float64, ms)
        One array per line (an empty line is a trial without spikes).

    Raises
    ------
    DatasetFormatError
        A token is not a number (names the line).
    """
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    trials = []
    for i, line in enumerate(lines, 1):
        tokens = line.split()
        try:
            trials.append(np.array(tokens, dtype=np.float64))
        except ValueError:
            bad = next(t for t in tokens if not _is_number(t))
            raise DatasetFormatError(str(path), f"line {i}", f"the token {bad[:30]!r}",
                                     "spike times in ms separated by spaces") from None
    return trials


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def bin_trials_ms(trials: Sequence[np.ndarray], n_bins: int, dt_ms: float) -> Tensor:
    """Counts per bin ``[b dt, (b+1) dt)`` ms after onset, ``(R, n_bins)`` float32; earlier/later spikes dropped."""
    if not trials:
        return torch.zeros((0, n_bins), dtype=torch.float32)
    lengths = np.fromiter((t.size for t in trials), dtype=np.int64, count=len(trials))
    times = np.concatenate(trials) if lengths.sum() else np.zeros(0)
    index = np.repeat(np.arange(len(trials)), lengths)
    return bin_trials_by_index(times, index, len(trials), n_bins, float(dt_ms))


def index_class_folder(folder: Path) -> tuple[dict[str, tuple[Path, Path]], list[Path]]:
    """Map each wav name to its ``(stim<k>, spike<k>)`` pair in one ``<cell>/<class>/`` folder.

    ``stim<k>`` files are scanned in lexicographic name order (``stim1, stim10,
    stim2``); when a wav was presented twice, the first one in that order wins
    (as in the reference). ``spike<k>`` may be absent (the pair is then missing).

    Returns
    -------
    pairs : dict
        Wav name -> (stim file, spike file), in discovery order.
    stim_files : list of Path
        Every ``stim<k>`` file read (for the cache key).
    """
    pairs: dict[str, tuple[Path, Path]] = {}
    stim_files: list[Path] = []
    for name in sorted(os.listdir(folder)):
        match = _STIM_FILE_RE.match(name)
        if match is None:
            continue
        stim_file = folder / name
        stim_files.append(stim_file)
        wav = read_stim_name(stim_file)
        if wav not in pairs:
            pairs[wav] = (stim_file, folder / f"spike{int(match.group(1))}")
    return pairs, stim_files


def list_text_files(folder: Path) -> list[Path]:
    """The ``stim<k>`` and ``spike<k>`` files of a ``<cell>/<class>/`` folder (listing only, nothing read)."""
    return [folder / n for n in os.listdir(folder) if _TEXT_FILE_RE.match(n)]


def list_wavs(folder: Path) -> list[str]:
    """Sorted names of the ``*.wav`` files of ``folder`` (hidden files skipped)."""
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(".wav") and not n.startswith("."))


def _smooth_block(block: Tensor, dt_ms: float, window_ms: float = 21.0) -> Tensor:
    """Hann-smooth the rows of an ``(R, T)`` block with the kernel of ``smooth_responses``."""
    from ...utils._smoothing import hann_kernel, hann_window_bins, smooth_last_axis

    return smooth_last_axis(block, hann_kernel(hann_window_bins(window_ms, float(dt_ms)), dtype=torch.float64))


def smooth_row(row: list[Tensor], dt_ms: float, window_ms: float = 21.0) -> list[Tensor]:
    """Hann-smooth the real responses of one stim along time (sentinels untouched).

    Uses exactly the kernel of :meth:`NeuralDataset.smooth_responses` (unit
    gain, odd length nearest ``window_ms / dt_ms``), applied to all the stim's
    repeats in one convolution.
    """
    real = [n for n, t in enumerate(row) if not is_sentinel(t)]
    if not real:
        return row
    smoothed = _smooth_block(torch.cat([row[n] for n in real], dim=0), dt_ms, window_ms)
    out = list(row)
    for n, part in zip(real, torch.split(smoothed, [row[n].shape[0] for n in real], dim=0)):
        out[n] = part.contiguous()
    return out


def crcns_fix(call: str, files: Sequence[str], page: str) -> str:
    """The "how to get the data" text of a CRCNS ``DatasetNotFoundError``."""
    return (
        f"{call} (needs a free CRCNS account: register at https://crcns.org/register, then set "
        "CRCNS_USERNAME and CRCNS_PASSWORD, or add 'machine crcns.org login <user> password <pw>' to ~/.netrc). "
        f"Or log in at {page}, download {', '.join(files)} by hand and extract it into the folder above."
    )


def _progress(iterable, **kwargs):
    from tqdm import tqdm

    return tqdm(iterable, disable=None, leave=False, dynamic_ncols=True, **kwargs)


@dataclass(frozen=True)
class FrontEnd:
    """Stimulus front end of the CRCNS aa loaders (mel spectrogram or grid-locked waveform).

    Attributes
    ----------
    dt_ms : float
        Response bin width in ms; spectrogram hop ``max(1, int(sr * dt_ms / 1000))`` samples.
    n_mels : int
        Mel channels ``F``.
    compression : str
        ``'cubic'``, ``'log1p'`` or ``'none'``.
    window_ms : float
        Analysis window; ``n_fft = max(round(window_ms / dt_ms * hop), hop)`` samples.
    return_waveform : bool
        Waveform mode.
    audio_fs : int or None
        Output rate of waveform mode (Hz).
    """

    dt_ms: float
    n_mels: int
    compression: str
    window_ms: float
    return_waveform: bool
    audio_fs: int | None

    @classmethod
    def from_args(cls, dt_ms: float, n_mels: int, compression: str, window_ms: float, return_waveform: bool,
                  audio_fs: int) -> FrontEnd:
        """Validate the constructor knobs (``ValueError``/``TypeError`` naming the argument)."""
        for name, value in (("dt_ms", dt_ms), ("window_ms", window_ms)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0 (ms), got {value!r}")
        if isinstance(n_mels, bool) or not isinstance(n_mels, int) or n_mels < 1:
            raise ValueError(f"n_mels must be an int >= 1, got {n_mels!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression={compression!r} is not one of {COMPRESSIONS}")
        if not isinstance(return_waveform, bool):
            raise TypeError(f"return_waveform must be a bool, got {return_waveform!r}")
        fs: int | None = None
        if return_waveform:
            if isinstance(audio_fs, bool) or not isinstance(audio_fs, int) or audio_fs <= 0:
                raise ValueError(f"audio_fs must be an int > 0 (Hz), got {audio_fs!r}")
            hop_samples(audio_fs, dt_ms)
            fs = audio_fs
        return cls(float(dt_ms), n_mels, compression, float(window_ms), return_waveform, fs)

    def cache_params(self) -> dict:
        """The front-end knobs as they enter the cache key."""
        return {"dt_ms": self.dt_ms, "n_mels": self.n_mels, "compression": self.compression,
                "window_ms": self.window_ms, "return_waveform": self.return_waveform, "audio_fs": self.audio_fs}

    def set_attributes(self, dataset: AudioNeuralDataset) -> None:
        """Set ``F``, ``window_ms``, ``compression``, ``return_waveform`` and ``audio_fs`` on ``dataset``."""
        dataset.F = self.n_mels
        dataset.window_ms = self.window_ms
        dataset.compression = self.compression
        dataset.return_waveform = self.return_waveform
        dataset.audio_fs = self.audio_fs

    def hop(self, sample_rate: int) -> int:
        """Spectrogram hop at ``sample_rate`` (truncated, as in the reference)."""
        return max(1, int(sample_rate * self.dt_ms / 1000.0))

    def n_fft(self, sample_rate: int) -> int:
        hop = self.hop(sample_rate)
        return max(int(round(self.window_ms / self.dt_ms * hop)), hop)

    def n_frames(self, n_samples: int, sample_rate: int) -> int:
        """Spectrogram frames ``1 + n_samples // hop`` (the response length ``T``)."""
        return 1 + n_samples // self.hop(sample_rate)

    def stim(self, audio: np.ndarray, sample_rate: int) -> Tensor:
        """``(1, F, T)`` mel spectrogram, or ``(1, T * hop_w)`` waveform at ``audio_fs`` in waveform mode.

        ``audio`` is ``(channels, n_samples)`` float32; channels are averaged.
        """
        mono = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).mean(dim=0)
        T = self.n_frames(mono.numel(), sample_rate)
        if self.return_waveform:
            hop_w = hop_samples(self.audio_fs, self.dt_ms)
            wave = resample(mono, sample_rate, self.audio_fs)
            return fit_length(wave, T * hop_w).reshape(1, -1).contiguous()
        spec = mel_spectrogram(mono, sample_rate, hop=self.hop(sample_rate), n_fft=self.n_fft(sample_rate),
                               n_mels=self.n_mels, compression=self.compression)
        return spec.unsqueeze(0)


@dataclass
class CellRecord:
    """One neuron of an aa-1/aa-2 style folder: its metadata and its ``<cell>/<class>/`` folder per class."""

    meta: dict
    classes: dict[str, Path]


def build_text_payload(stims: Sequence[tuple[str, str, Path]], cells: Sequence[CellRecord], front: FrontEnd,
                       smooth: bool, stim_meta: Callable[[str, str, int, int], dict],
                       expected_rate: int | None = None, dataset: str = "CRCNS") -> Payload:
    """Assemble an aa-1/aa-2 dataset: one row per stim heard by at least one cell.

    Parameters
    ----------
    stims : sequence of (wav name, class, wav path)
        Candidate stims in output order.
    cells : sequence of CellRecord
        Neurons in output order.
    front : FrontEnd
        Stim front end.
    smooth : bool
        Hann-smooth (21 ms, unit gain) the responses.
    stim_meta : callable (name, class, sample_rate, n_samples) -> dict
        Builds ``stim_meta[s]``.
    expected_rate : int, optional
        Required wav sample rate (``DatasetFormatError`` otherwise).
    dataset : str
        Dataset name for the error raised when a needed wav is missing.

    Returns
    -------
    Payload
        With the ``(S, N)`` mask. A (stim, cell) pair is missing when the cell
        has no folder of the stim's class, no ``stim<k>`` naming the wav, or no
        ``spike<k>`` next to it. Spikes before onset or at/after ``T`` bins are dropped.
    """
    N = len(cells)
    index = [{cls: index_class_folder(folder)[0] for cls, folder in cell.classes.items()}
             for cell in _progress(cells, desc="CRCNS cells", unit="cell")]
    out_stims: list[Tensor] = []
    rows: list[list[Tensor]] = []
    metas: list[dict] = []
    masks: list[list[bool]] = []
    for name, cls, wav_path in _progress(stims, desc="CRCNS stims", unit="stim"):
        found: dict[int, list[np.ndarray]] = {}
        for n in range(N):
            pair = index[n].get(cls, {}).get(name)
            if pair is not None and pair[1].is_file():
                trials = read_spike_file(pair[1])
                if trials:  # an empty spike file holds no trial: the pair is missing
                    found[n] = trials
        if not found:
            continue  # nobody heard it: dropped, as in the reference
        if not wav_path.is_file():
            raise DatasetNotFoundError(dataset, str(wav_path.parent), [wav_path.name],
                                       fix="a cell names this wav but it is missing: extract the stim archive again")
        audio, sr = read_wav(wav_path)
        if expected_rate is not None and sr != expected_rate:
            raise DatasetFormatError(str(wav_path), "sample rate", f"{sr} Hz", f"{expected_rate} Hz")
        stim = front.stim(audio, sr)
        T = front.n_frames(audio.shape[1], sr)
        order = sorted(found)
        trials = [tr for n in order for tr in found[n]]
        block = bin_trials_ms(trials, T, front.dt_ms)  # (sum of R, T): one buffer per stim
        if smooth:
            block = _smooth_block(block, front.dt_ms)
        parts = dict(zip(order, torch.split(block, [len(found[n]) for n in order], dim=0)))
        pads = iter(make_sentinels(N - len(found)))
        row = [parts[n] if n in parts else next(pads) for n in range(N)]
        out_stims.append(stim)
        rows.append(row)
        metas.append(stim_meta(name, cls, sr, audio.shape[1]))
        masks.append([n in found for n in range(N)])
    mask = torch.tensor(masks, dtype=torch.bool).reshape(len(rows), N)
    return Payload(out_stims, rows, metas, [c.meta for c in cells], {}, mask)
