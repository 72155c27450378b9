"""Alice EEG (Brennan & Hale; Brodbeck et al.'s MNE release): 33 listeners, one audiobook chapter.

Module layout: constants (DRUM bitstreams, checksums, segments), the private
spectrogram front ends, the dataset class, then :func:`download_alice_eeg`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .._cache import Payload
from .._errors import DatasetFormatError
from .._raw_files import require_raw_files
from .._storage import make_sentinels
from ._spectrogram import resample_polyphase
from .audio_dataset import AudioNeuralDataset

__all__ = ["AliceEEGDataset", "download_alice_eeg"]

#: Folder name under the data root.
NAME = "Alice_EEG"
#: UMD DRUM item (handle 1903/27591, DOI 10.13016/pulf-lndn): file -> bitstream uuid.
DRUM_BITSTREAMS = {
    "eeg.0.zip": "264ca110-f7f4-4fd5-9b00-896102b841ad",
    "eeg.1.zip": "bef532d8-cf74-4b9d-9b4c-5c1f81610ce9",
    "eeg.2.zip": "25fc51ae-d1fa-4094-85af-65dd4cf30251",
    "stimuli.zip": "df241468-26ee-42df-b27f-3f438cfc5a3f",
}
#: md5 of each zip as published by the release's own download script
#: (Eelbrain/Alice ``download_alice.py``, commit 9c333c37).
DRUM_MD5 = {
    "stimuli.zip": "4336a47bef7d3e63239c40c0623dc186",
    "eeg.0.zip": "d63d96a6e5080578dbf71320ddbec0a0",
    "eeg.1.zip": "bdc65f168db4c0f19bb0fed20eae129b",
    "eeg.2.zip": "3fb33ca1c4640c863a71bddd45006815",
}
EEG_SHARDS = ("eeg.0", "eeg.1", "eeg.2")
N_SEGMENTS = 12
MODES = ("neurons", "repeats")
BACKENDS = ("gaussian", "heeris")
_INSTALL_HINT = "pip install 'deepSTRF[eeg]'"

_LAYOUT = """\
<path>/stimuli/1.wav ... 12.wav                  the 12 audiobook segments (44.1 kHz)
<path>/eeg.N/eeg/<SUB>/<SUB>_alice-raw.fif       N = 0, 1, 2 (download_alice_eeg layout)
  or <path>/eeg/<SUB>/<SUB>_alice-raw.fif        (layout of the release's download_alice.py)"""


def _require_mne() -> Any:
    try:
        import mne
    except ImportError as exc:
        raise ImportError(f"AliceEEGDataset reads MNE .fif files and needs the optional package mne: "
                          f"{_INSTALL_HINT}") from exc
    return mne


# --------------------------------------------------------------------------- spectrogram front ends


def _erb_number(f: np.ndarray | float) -> np.ndarray:
    return 21.4 * np.log10(0.00437 * np.asarray(f, dtype=np.float64) + 1.0)


def _gaussian_erb_weights(n_bands: int, fmin: float, fmax: float, sr: float, n_fft: int) -> np.ndarray:
    """``(n_bands, n_fft // 2 + 1)`` Gaussian bumps centred on an ERB-number grid (not normalised)."""
    e = np.linspace(_erb_number(fmin), _erb_number(fmax), n_bands)
    centres = (10.0 ** (e / 21.4) - 1.0) / 0.00437
    bandwidth = 24.7 * (0.00437 * centres + 1.0)
    freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    return np.exp(-(((freqs[None, :] - centres[:, None]) / bandwidth[:, None]) ** 2))


def _gaussian_erb_spectrogram(wave: np.ndarray, sr: int, hop: int, n_fft: int, n_bands: int, fmin: float,
                              fmax: float) -> np.ndarray:
    """Log Gaussian-ERB band energies of a power STFT, ``(n_bands, 1 + n // hop)`` float32.

    Power STFT with a periodic Hann window of ``n_fft`` samples, centred frames
    (reflect padding of ``n_fft // 2``), hop ``hop``; each band sums the power
    bins weighted by its Gaussian; output ``ln(value + 1e-8)``, low band first.
    """
    x = torch.from_numpy(np.asarray(wave, dtype=np.float64))
    spec = torch.stft(x, n_fft, hop_length=hop, window=torch.hann_window(n_fft, periodic=True, dtype=torch.float64),
                      center=True, pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    weights = torch.from_numpy(_gaussian_erb_weights(n_bands, fmin, fmax, float(sr), n_fft))
    return torch.log(weights @ power + 1e-8).to(torch.float32).numpy()


def _heeris_spectrogram(wave: np.ndarray, sr: int, dt_ms: float, window_ms: float, n_bands: int, fmin: float,
                        fmax: float) -> np.ndarray:
    """``ln(gtgram + 1e-8)`` with the ERB gammatone bank (PyPI ``gammatone`` 1.x semantics), float32."""
    from ._gammatone import gammatone_spectrogram

    gram = gammatone_spectrogram(np.asarray(wave, dtype=np.float64), float(sr), n_bands, fmin, fmax, window_ms, dt_ms)
    return np.log(gram + 1e-8).astype(np.float32)


# --------------------------------------------------------------------------- discovery


def _find_wavs(root: Path) -> tuple[list[Path], list[str]]:
    """The 12 segment wavs sorted by integer stem, and the problems found."""
    folder = root / "stimuli"
    wavs = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    numbered = {}
    for w in wavs:
        if w.stem.isdigit():
            numbered[int(w.stem)] = w
    missing = [f"stimuli/{k}.wav" for k in range(1, N_SEGMENTS + 1) if k not in numbered]
    return [numbered[k] for k in sorted(numbered) if 1 <= k <= N_SEGMENTS], missing


def _find_subjects(root: Path) -> dict[str, Path]:
    """Subject id -> fif, from both layouts; a subject found twice is an error."""
    found: dict[str, list[Path]] = {}
    folders = [p / "eeg" for p in sorted(root.glob("eeg.*")) if p.is_dir()] + [root / "eeg"]
    for folder in folders:
        if not folder.is_dir():
            continue
        for sub in sorted(folder.iterdir()):
            fif = sub / f"{sub.name}_alice-raw.fif"
            if sub.is_dir() and fif.is_file():
                found.setdefault(sub.name, []).append(fif)
    twice = {s: p for s, p in found.items() if len(p) > 1}
    if twice:
        s, paths = next(iter(sorted(twice.items())))
        raise DatasetFormatError(str(root), f"subject {s}", "two recordings: " + ", ".join(map(str, paths)),
                                 "one <SUB>_alice-raw.fif per subject; delete or move the duplicate copy")
    return {s: p[0] for s, p in sorted(found.items())}


# --------------------------------------------------------------------------- EEG pipeline


def _segment_onsets(raw: Any, fif: Path) -> dict[int, float]:
    """Segment number -> onset in s from the first sample, from the digit annotations."""
    onsets: dict[int, float] = {}
    first_time = float(raw.first_time)
    for onset, desc in zip(raw.annotations.onset, raw.annotations.description):
        text = str(desc).strip()
        if not text.isdigit() or not 1 <= int(text) <= N_SEGMENTS:
            continue
        k = int(text)
        if k in onsets:
            raise DatasetFormatError(str(fif), "annotations", f"segment {k} annotated twice",
                                     "at most one onset annotation per segment '1'...'12'")
        onsets[k] = float(onset) - first_time
    return onsets


def _read_subject(mne: Any, fif: Path, hp: float | None, lp: float | None, fs: float) \
        -> tuple[list[str], np.ndarray, dict[int, float], list[str], dict[str, list[float] | None]]:
    """Channel names, ``(C, n)`` float64 EEG (bads and BAD windows NaN), segment onsets, bads, positions."""
    try:
        raw = mne.io.read_raw_fif(str(fif), preload=True, verbose="error")
    except (OSError, ValueError, RuntimeError, TypeError) as exc:
        raise DatasetFormatError(str(fif), "file", f"unreadable fif ({type(exc).__name__}: {exc})",
                                 "an MNE raw .fif file") from None
    picks = mne.pick_types(raw.info, eeg=True, exclude=[])
    if len(picks) == 0:
        raise DatasetFormatError(str(fif), "channels", "no EEG channel", "61 EEG channels '1'...'61'")
    raw.pick([raw.ch_names[i] for i in picks])
    onsets = _segment_onsets(raw, fif)
    if hp is not None or lp is not None:
        raw.filter(l_freq=hp, h_freq=lp, verbose="error")
    if not math.isclose(raw.info["sfreq"], fs):
        raw.resample(fs, verbose="error")
    data = raw.get_data()
    names = list(raw.ch_names)
    bads = [b for b in raw.info["bads"] if b in names]
    for b in bads:
        data[names.index(b)] = np.nan
    first_time = float(raw.first_time)
    n = data.shape[1]
    for onset, duration, desc in zip(raw.annotations.onset, raw.annotations.duration, raw.annotations.description):
        if str(desc).upper().startswith("BAD"):
            rel = float(onset) - first_time
            a = max(0, int(round(rel * fs)))
            b = min(n, max(0, int(round((rel + max(float(duration), 0.0)) * fs))))
            if b > a:
                data[:, a:b] = np.nan
    positions: dict[str, list[float] | None] = {name: None for name in names}
    montage = raw.get_montage()
    if montage is not None:
        for name, xyz in montage.get_positions()["ch_pos"].items():
            if name in positions and xyz is not None and np.all(np.isfinite(xyz)):
                positions[name] = [float(v) for v in xyz]
    return names, data, onsets, bads, positions


def _segment(data: np.ndarray, start: int, T: int) -> np.ndarray:
    """``data[:, start:start + T]`` as float32, NaN where the recording does not cover it."""
    out = np.full((data.shape[0], T), np.nan, dtype=np.float32)
    a, b = max(start, 0), min(start + T, data.shape[1])
    if b > a:
        out[:, a - start:b - start] = data[:, a:b]
    return out


# --------------------------------------------------------------------------- the dataset


class AliceEEGDataset(AudioNeuralDataset):
    """Scalp EEG of 33 people listening to chapter 1 of *Alice in Wonderland* (12 segments, ~12.4 min).

    Bhattasali S., Brennan J.R., Luh W.-M., Franzluebbers B., Hale J.T. (2020),
    "The Alice Datasets: fMRI & EEG Observations of Natural Language
    Comprehension", LREC 2020 (original data doi:10.7302/Z29C6VNH, CC BY 4.0);
    EEG paper: Brennan J.R., Hale J.T. (2019), *PLOS ONE*,
    doi:10.1371/journal.pone.0207741. Release read here: Brodbeck et al.'s
    MNE conversion for Eelbrain (*eLife* 2023, doi:10.7554/eLife.85012), UMD
    DRUM doi:10.13016/pulf-lndn.

    61 electrodes (easycap M10 "acti61", names ``'1'``...``'61'``), 500 Hz,
    volts, re-referenced and ICA-cleaned by the release. Channels play the
    role of neurons: one "neuron" per (subject, channel) by default, or one per
    channel with the subjects as repeats. Values are the EEG voltage (volts),
    not counts: z-score them (``ds.normalize_responses('zscore',
    stim_indices=train)``, or ``zscore=True``) where spike loaders would
    normalise rates.

    Parameters
    ----------
    path : path-like, optional
        Dataset folder; default ``$DEEPSTRF_DATA/Alice_EEG`` (else the user
        data dir). Layout (both EEG layouts are found)::

            <path>/stimuli/1.wav ... 12.wav
            <path>/eeg.N/eeg/<SUB>/<SUB>_alice-raw.fif   (N = 0, 1, 2)
            <path>/eeg/<SUB>/<SUB>_alice-raw.fif         (release script layout)

    download : bool, default False
        Fetch the missing files with :func:`download_alice_eeg` first.
    subjects : str or iterable of str, optional
        Subject ids (``'S01'``...) in the order wanted; default every subject
        found, sorted.
    dt_ms : float, default 10.0
        Bin width: the EEG is resampled to ``1000 / dt_ms`` Hz and the
        spectrogram hop is ``dt_ms``. ``44100 * dt_ms / 1000`` must be an integer.
    n_frequency_bands : int, default 8
        Spectrogram bands ``F``.
    treat_subjects_as : {'neurons', 'repeats'}, default 'neurons'
        ``'neurons'``: one neuron per (subject, channel), response ``(1, T)``.
        ``'repeats'``: one neuron per channel (union over subjects, first-seen
        order), response ``(R = n_subjects, T)`` with NaN rows where a subject
        lacks the channel, has it bad, or lacks the segment.
    hp_freq_hz, lp_freq_hz : float or None, default 1.0 and None
        MNE FIR band edges (MNE defaults); ``None`` disables that edge.
    window_ms : float, optional
        Analysis window: ``'gaussian'`` uses ``n_fft = max(round(window_ms * sr /
        1000), hop)`` (1024 when None); ``'heeris'`` uses 25 ms when None.
    fmin, fmax : float, default 80.0 and None
        Frequency range of the filter bank, Hz (``fmax`` None: Nyquist).
    spec_backend : {'gaussian', 'heeris'}, default 'gaussian'
        ``'gaussian'``: power STFT (periodic Hann, centred frames, reflect
        padding) through ``F`` Gaussian bumps on the ERB-number scale, then
        ``ln(x + 1e-8)``. ``'heeris'``: ERB gammatone bank RMS per frame (the
        PyPI ``gammatone`` ``gtgram`` semantics, our scipy port), ``ln(x + 1e-8)``.
    return_waveform : bool, default False
        Stims are the segment audio ``(1, T * hop)`` at ``audio_fs`` (zero-padded
        or cropped) instead of spectrograms; responses are identical.
    audio_fs : int, default 44100
        Waveform rate (Hz), waveform mode only; ``audio_fs * dt_ms / 1000`` must
        be an integer.
    zscore : bool, default False
        Z-score every neuron over all stims after loading (same as
        ``normalize_responses('zscore')``); off by default so that values equal
        the reference loader's.
    cache : bool, default True
        Use the processed-data cache.

    Attributes
    ----------
    stims : list of Tensor
        12 tensors ``(1, F, T_k)`` float32 (``T_k = 1 + n_samples // hop``), or
        ``(1, T_k * hop)`` waveforms.
    responses : list of list of Tensor
        ``(1, T_k)`` or ``(R, T_k)`` float32 volts; the ``(1, 1)`` NaN sentinel
        for a bad channel, a segment the subject lacks, or a subject without the
        channel (repeats mode, all rows NaN).
    stim_meta : list of dict
        ``name`` (``'1.wav'``), ``segment`` (int), ``type`` (``'alice_chapter1'``),
        ``sample_rate`` (Hz), ``n_samples``, ``duration_s``.
    nrn_meta : list of dict
        ``channel_id``, ``subject`` (None in repeats mode), ``area`` (``'EEG'``),
        ``xyz`` (montage position, head frame, metres, as a 3-list; None when
        unknown), ``bad`` (neurons mode: in the subject's ``info['bads']``) or
        ``bad_in`` (repeats mode: the subjects where it is bad).

    Notes
    -----
    EEG pipeline per subject: EEG channels in file order (bads kept); 1-12
    digit annotations give the segment onsets; MNE ``raw.filter`` then
    ``raw.resample`` (FFT, MNE defaults); bad channels and ``BAD*`` annotation
    windows become NaN; segment ``k`` is samples ``[round(onset * fs),
    + T_k)`` with a NaN tail past the recording end.

    Deliberate differences from the published deepSTRF 0.1.0 loader:

    * a subject without a segment annotation (S26, S34, S35, S36 lack segment
      1 in the release) gets ``(1, 1)`` NaN for that segment (an all-NaN row in
      repeats mode) instead of crashing the load; a segment annotated twice
      is a :class:`~deepSTRF.datasets._errors.DatasetFormatError`;
    * both layouts are found (the reference missed ``<path>/eeg/<SUB>/``, the
      release script's); a subject found twice is an error;
    * onsets are taken relative to the first sample (``first_samp`` > 0 safe);
      a segment beyond the recording end is all NaN (a sentinel);
    * a non-integer audio hop (e.g. dt 5 ms at 44.1 kHz) is refused instead of
      drifting; arguments are checked before any download;
    * a response with some NaN (a ``BAD`` window, a cut recording) is real data
      for ``nrn_masks`` (our core rule: only the sentinel is missing), while the
      reference's mask dropped such pairs; metrics skip the NaN;
    * ``xyz`` is a list (metadata goes through JSON), not a numpy array.
    """

    FORMAT_VERSION = 1
    species = "human"
    behavioral_state = "passive-listening"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        subjects: str | Iterable[str] | None = None,
        dt_ms: float = 10.0,
        n_frequency_bands: int = 8,
        treat_subjects_as: str = "neurons",
        hp_freq_hz: float | None = 1.0,
        lp_freq_hz: float | None = None,
        window_ms: float | None = None,
        fmin: float = 80.0,
        fmax: float | None = None,
        spec_backend: str = "gaussian",
        return_waveform: bool = False,
        audio_fs: int = 44100,
        zscore: bool = False,
        cache: bool = True,
    ) -> None:
        from ...utils.download import data_root

        mne = _require_mne()
        # ---- arguments first: nothing is read or downloaded for a bad call
        def positive(name: str, value: Any, allow_none: bool = False) -> float | None:
            if value is None and allow_none:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0{' or None' if allow_none else ''}, "
                                 f"got {value!r}")
            return float(value)

        dt = positive("dt_ms", dt_ms)
        hp = positive("hp_freq_hz", hp_freq_hz, True)
        lp = positive("lp_freq_hz", lp_freq_hz, True)
        win = positive("window_ms", window_ms, True)
        fmax_ = positive("fmax", fmax, True)
        if isinstance(fmin, bool) or not isinstance(fmin, (int, float)) or not math.isfinite(fmin) or fmin < 0:
            raise ValueError(f"fmin must be a finite number >= 0 (Hz), got {fmin!r}")
        if fmax_ is not None and fmax_ <= fmin:
            raise ValueError(f"fmax={fmax!r} must exceed fmin={fmin!r}")
        if hp is not None and lp is not None and lp <= hp:
            raise ValueError(f"lp_freq_hz={lp_freq_hz!r} must exceed hp_freq_hz={hp_freq_hz!r}")
        if isinstance(n_frequency_bands, bool) or not isinstance(n_frequency_bands, int) or n_frequency_bands < 1:
            raise ValueError(f"n_frequency_bands must be an int >= 1, got {n_frequency_bands!r}")
        if treat_subjects_as not in MODES:
            raise ValueError(f"treat_subjects_as={treat_subjects_as!r}: expected one of {list(MODES)}")
        if spec_backend not in BACKENDS:
            raise ValueError(f"spec_backend={spec_backend!r}: expected one of {list(BACKENDS)}")
        if return_waveform:
            if isinstance(audio_fs, bool) or not isinstance(audio_fs, int) or audio_fs <= 0:
                raise ValueError(f"audio_fs must be a positive int (Hz), got {audio_fs!r}")
            ratio = audio_fs * dt / 1000.0
            if abs(ratio - round(ratio)) > 1e-9:
                raise ValueError(f"audio_fs={audio_fs} Hz and dt_ms={dt_ms} give {ratio:g} audio samples per bin; "
                                 "choose values whose product / 1000 is an integer")
        if subjects is None:
            wanted = None
        else:
            wanted = [subjects] if isinstance(subjects, str) else list(subjects)
            if not wanted or not all(isinstance(s, str) for s in wanted):
                raise TypeError(f"subjects must be None, a str or a non-empty iterable of str, got {subjects!r}")

        root = data_root(NAME, path)
        super().__init__(str(root), dt)

        def fix() -> str:
            text = (f"AliceEEGDataset({str(root)!r}, download=True) or "
                    f"deepSTRF.datasets.audio.alice_eeg.download_alice_eeg({str(root)!r})  (~2.5 GiB from UMD DRUM)")
            available = sorted(_find_subjects(root))
            return f"{text}. Subjects found: {available}" if available else text

        require_raw_files(NAME, root, lambda: self._missing(root, wanted), download=download,
                          fetch=lambda: download_alice_eeg(root, subjects=wanted), layout=_LAYOUT, fix=fix)
        wavs, _ = _find_wavs(root)
        found = _find_subjects(root)
        self.subjects = list(wanted) if wanted is not None else list(found)
        fifs = [found[s] for s in self.subjects]

        import soundfile as sf

        rates = {int(sf.info(str(w)).samplerate) for w in wavs}
        for rate in sorted(rates):
            hop_ratio = rate * dt / 1000.0
            if abs(hop_ratio - round(hop_ratio)) > 1e-9:
                raise ValueError(f"dt_ms={dt_ms} at the wavs' {rate} Hz gives a hop of {hop_ratio:g} samples; the "
                                 "spectrogram frames would drift from the EEG bins: choose dt_ms with an integer hop "
                                 f"(e.g. {10.0 if rate % 100 == 0 else 1000.0 * round(hop_ratio) / rate:g})")

        self.F = int(n_frequency_bands)
        self.hp_freq_hz, self.lp_freq_hz = hp, lp
        self.window_ms, self.fmin, self.fmax = win, float(fmin), fmax_
        self.spec_backend = spec_backend
        self.treat_subjects_as = treat_subjects_as
        self.hearing_range_hz = (20.0, 20000.0)
        self.return_waveform = bool(return_waveform)
        self.audio_fs = int(audio_fs) if return_waveform else None
        params = {
            "subjects": self.subjects, "dt_ms": dt, "F": self.F, "mode": treat_subjects_as,
            "hp": hp, "lp": lp, "window_ms": win, "fmin": float(fmin), "fmax": fmax_, "backend": spec_backend,
            "return_waveform": self.return_waveform, "audio_fs": self.audio_fs,
        }

        def build() -> Payload:
            return self._build(mne, wavs, fifs)

        self._load_or_build(build, params=params, raw_files=[*wavs, *fifs], cache=cache, name=NAME)
        if zscore:
            self.normalize_responses("zscore")
        self.validate()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _missing(root: Path, wanted: list[str] | None) -> list[str]:
        _, missing = _find_wavs(root)
        found = _find_subjects(root)
        if wanted is None:
            if not found:
                missing.append("eeg.N/eeg/<SUB>/<SUB>_alice-raw.fif (no subject found)")
        else:
            missing += [f"eeg.N/eeg/{s}/{s}_alice-raw.fif (subject {s})" for s in wanted if s not in found]
        return missing

    def _stims(self, wavs: list[Path]) -> tuple[list[Tensor], list[int], list[dict]]:
        import soundfile as sf

        dt = float(self.dt)
        stims, frames, meta = [], [], []
        for w in tqdm(wavs, desc="Alice EEG: spectrograms", unit="wav", disable=None, leave=False):
            try:
                data, sr = sf.read(str(w), dtype="float32", always_2d=True)
            except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
                raise DatasetFormatError(str(w), "audio", f"unreadable sound file ({exc})", "a WAV file") from None
            wave = data.mean(axis=1)
            hop = int(round(sr * dt / 1000.0))
            fmax = self.fmax if self.fmax is not None else sr / 2.0
            if self.spec_backend == "gaussian":
                n_fft = 1024 if self.window_ms is None else max(int(round(self.window_ms * sr / 1000.0)), hop)
                if wave.size <= n_fft // 2:
                    raise DatasetFormatError(str(w), "samples", f"{wave.size} samples",
                                             f"more than n_fft/2 = {n_fft // 2} samples")
                spec = _gaussian_erb_spectrogram(wave, sr, hop, n_fft, self.F, self.fmin, fmax)
            else:
                window = 25.0 if self.window_ms is None else self.window_ms
                spec = _heeris_spectrogram(wave, sr, dt, window, self.F, max(self.fmin, 1e-3), fmax)
            T = spec.shape[1]
            if T < 1:
                raise DatasetFormatError(str(w), "samples", f"{wave.size} samples", "at least one analysis window")
            frames.append(T)
            if self.return_waveform:
                fs = int(self.audio_fs)  # type: ignore[arg-type]
                hop_a = int(round(fs * dt / 1000.0))
                audio = resample_polyphase(wave, int(sr), fs)[: T * hop_a]
                buf = torch.zeros((1, T * hop_a), dtype=torch.float32)
                buf[0, : audio.size] = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
                stims.append(buf)
            else:
                stims.append(torch.from_numpy(spec).unsqueeze(0))
            meta.append({"name": w.name, "segment": int(w.stem), "type": "alice_chapter1",
                         "sample_rate": float(sr), "n_samples": int(wave.size), "duration_s": wave.size / float(sr)})
        return stims, frames, meta

    def _build(self, mne: Any, wavs: list[Path], fifs: list[Path]) -> Payload:
        stims, frames, stim_meta = self._stims(wavs)
        segments = [m["segment"] for m in stim_meta]
        fs = 1000.0 / float(self.dt)
        per_subject = []
        for subject, fif in tqdm(list(zip(self.subjects, fifs)), desc="Alice EEG: subjects", unit="subject",
                                 disable=None, leave=False):
            names, data, onsets, bads, positions = _read_subject(mne, fif, self.hp_freq_hz, self.lp_freq_hz, fs)
            blocks: list[np.ndarray | None] = []
            for k, T in zip(segments, frames):
                blocks.append(None if k not in onsets else _segment(data, int(round(onsets[k] * fs)), T))
            del data
            per_subject.append((subject, names, blocks, bads, positions))
        if self.treat_subjects_as == "neurons":
            return self._neurons_payload(stims, stim_meta, per_subject)
        return self._repeats_payload(stims, stim_meta, frames, per_subject)

    def _attrs(self) -> dict:
        return {"dt": float(self.dt), "F": self.F, "audio_fs": self.audio_fs, "return_waveform": self.return_waveform}

    def _neurons_payload(self, stims: list[Tensor], stim_meta: list[dict], per_subject: list) -> Payload:
        nrn_meta = []
        columns: list[list[Tensor | None]] = [[] for _ in stims]
        for subject, names, blocks, bads, positions in per_subject:
            nrn_meta += [{"channel_id": c, "subject": subject, "area": "EEG", "xyz": positions[c], "bad": c in bads}
                         for c in names]
            for s, block in enumerate(blocks):
                if block is None:
                    columns[s] += [None] * len(names)
                    continue
                rows = torch.from_numpy(block)
                empty = np.isnan(block).all(axis=1)
                columns[s] += [None if empty[c] else rows[c:c + 1] for c in range(len(names))]
        return self._payload(stims, stim_meta, nrn_meta, columns)

    def _repeats_payload(self, stims: list[Tensor], stim_meta: list[dict], frames: list[int],
                         per_subject: list) -> Payload:
        channels: list[str] = []
        for _, names, _, _, _ in per_subject:
            channels += [c for c in names if c not in channels]
        R = len(per_subject)
        index = {c: i for i, c in enumerate(channels)}
        nrn_meta = []
        for c in channels:
            xyz = next((pos[c] for _, names, _, _, pos in per_subject if c in names and pos[c] is not None), None)
            bad_in = [subject for subject, names, _, bads, _ in per_subject if c in bads]
            nrn_meta.append({"channel_id": c, "subject": None, "area": "EEG", "xyz": xyz, "bad_in": bad_in})
        columns: list[list[Tensor | None]] = []
        for s, T in enumerate(frames):
            slab = np.full((len(channels), R, T), np.nan, dtype=np.float32)
            for r, (_, names, blocks, _, _) in enumerate(per_subject):
                if blocks[s] is not None:
                    slab[[index[c] for c in names], r] = blocks[s]
            empty = np.isnan(slab).all(axis=(1, 2))
            t = torch.from_numpy(slab)
            columns.append([None if empty[i] else t[i] for i in range(len(channels))])
        return self._payload(stims, stim_meta, nrn_meta, columns)

    def _payload(self, stims: list[Tensor], stim_meta: list[dict], nrn_meta: list[dict],
                 columns: list[list[Tensor | None]]) -> Payload:
        N = len(nrn_meta)
        mask = torch.tensor([[t is not None for t in row] for row in columns], dtype=torch.bool).reshape(len(stims), N)
        responses = []
        for row in columns:
            pads = iter(make_sentinels(sum(t is None for t in row)))
            responses.append([t if t is not None else next(pads) for t in row])
        return Payload(stims, responses, stim_meta, nrn_meta, self._attrs(), mask)


# --------------------------------------------------------------------------- download


def download_alice_eeg(dest: str | os.PathLike[str] | None = None, subjects: Iterable[str] | None = None) -> str:
    """Download (and unpack) the Alice EEG release from UMD DRUM (~2.5 GiB in all).

    ``stimuli.zip`` is unpacked into ``<dest>`` (giving ``stimuli/``) unless the
    12 wavs are there; ``eeg.N.zip`` into ``<dest>/eeg.N/`` (giving
    ``eeg.N/eeg/<SUB>/``). Every zip is verified against the md5 published by the
    release's own download script; zips are kept, finished extractions are not
    repeated, and a verified zip is never fetched again.

    Parameters
    ----------
    dest : path-like, optional
        Dataset folder (default: the data root ``Alice_EEG``).
    subjects : iterable of str, optional
        Stop fetching EEG shards once these subjects are on disk (which subject
        sits in which shard is not published); default: all three shards.

    Returns
    -------
    str
        ``dest``.

    Raises
    ------
    ChecksumError, DownloadError, DatasetNotFoundError
        See :func:`deepSTRF.utils.download.fetch_url` (``DEEPSTRF_OFFLINE=1``
        gives ``DatasetNotFoundError``).
    """
    from ...utils.download import data_root, extract_zip, fetch_url, host_url

    root = data_root(NAME, dest)
    root.mkdir(parents=True, exist_ok=True)
    wanted = None if subjects is None else list(subjects)

    def get(name: str) -> Path:
        url = f"{host_url('drum')}/bitstreams/{DRUM_BITSTREAMS[name]}/download"
        return fetch_url(url, root, fname=name, known_hash=f"md5:{DRUM_MD5[name]}")

    if _find_wavs(root)[1]:
        extract_zip(get("stimuli.zip"), root)
    for shard in EEG_SHARDS:
        found = _find_subjects(root)
        if wanted is not None and all(s in found for s in wanted):
            break
        target = root / shard
        if wanted is None and not (root / f"{shard}.zip").exists() and any(target.glob("eeg/*/*_alice-raw.fif")):
            continue  # unpacked earlier (or by hand) and the zip removed
        extract_zip(get(f"{shard}.zip"), target)
    return str(root)
