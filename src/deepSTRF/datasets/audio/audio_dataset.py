"""``AudioNeuralDataset``: a ``NeuralDataset`` whose stims are sounds.

Spectrogram mode (default): ``stims[s]`` is ``(1, F, T_s)`` and every real
response of stim ``s`` has ``T_s`` bins. Waveform mode (``return_waveform =
True``): ``stims[s]`` is ``(1, T_audio)`` mono audio at ``audio_fs`` Hz, locked
to the response grid: audio sample ``j`` belongs to response bin ``j // hop``
with ``hop = audio_fs * dt / 1000`` an integer.
"""

from __future__ import annotations

from numbers import Real

from ..neural_dataset import NeuralDataset

__all__ = ["AudioNeuralDataset"]


class AudioNeuralDataset(NeuralDataset):
    """Base class of the auditory datasets.

    Parameters
    ----------
    path : str
        Raw-data folder.
    dt_ms : float
        Response bin width in ms.

    Attributes
    ----------
    F : int
        Spectrogram height (number of frequency channels); set by the
        subclass, kept even in waveform mode.
    audio_fs : int or None
        Audio sampling rate in Hz when known (required in waveform mode).
    hearing_range_hz : tuple of float or None
        ``(low, high)`` frequency range of the species, informational.
    return_waveform : bool
        ``True`` when ``stims`` hold waveforms instead of spectrograms.
    """

    return_waveform: bool = False

    def __init__(self, path: str, dt_ms: float) -> None:
        super().__init__(path, dt_ms)
        self.F: int = -1
        self.audio_fs: int | None = None
        self.hearing_range_hz: tuple[float, float] | None = None

    def get_F(self) -> int:
        """Number of frequency channels of the spectrogram front end."""
        return self.F

    @property
    def hop(self) -> int | None:
        """Audio samples per response bin, ``round(audio_fs * dt / 1000)``; ``None`` without ``audio_fs``."""
        if self.audio_fs is None:
            return None
        return int(round(self.audio_fs * self.dt / 1000.0))

    def _expected_response_T(self, s: int) -> int | None:
        stim = self.stims[s]
        if self.return_waveform:
            hop = self.hop
            return None if not hop else stim.shape[-1] // hop
        return stim.shape[-1]

    def validate(self) -> None:
        """Base checks, then ``F``, ``hearing_range_hz`` and, in waveform mode, the grid lock.

        Raises
        ------
        ValueError, TypeError, DatasetFormatError
            Naming the attribute or the stim at fault.
        """
        name = type(self).__name__
        if isinstance(self.F, bool) or not isinstance(self.F, int) or self.F <= 0:
            raise ValueError(f"{name}.F must be an int > 0 (spectrogram channels), got {self.F!r}")
        if self.hearing_range_hz is not None:
            hr = self.hearing_range_hz
            if (
                not isinstance(hr, (tuple, list))
                or len(hr) != 2
                or not all(isinstance(v, Real) and not isinstance(v, bool) for v in hr)
                or not 0 < hr[0] < hr[1]
            ):
                raise ValueError(f"{name}.hearing_range_hz must be (low, high) with 0 < low < high, got {hr!r}")
        if self.return_waveform:
            self._check_waveform_grid()
        super().validate()

    def _check_waveform_grid(self) -> None:
        name = type(self).__name__
        fs = self.audio_fs
        if isinstance(fs, bool) or not isinstance(fs, int) or fs <= 0:
            raise ValueError(f"{name}.audio_fs must be an int > 0 in waveform mode, got {fs!r}")
        ratio = fs * float(self.dt) / 1000.0
        hop = round(ratio)
        if hop < 1 or abs(ratio - hop) > 1e-6:
            raise ValueError(
                f"{name}: audio_fs * dt / 1000 = {ratio:g} samples per bin is not a positive integer; "
                "choose dt (ms) so that each response bin spans a whole number of audio samples"
            )
        for s, stim in enumerate(self.stims):
            if stim.dim() != 2 or stim.shape[0] != 1:
                raise ValueError(f"{name}.stims[{s}] has shape {tuple(stim.shape)}; waveform stims must be (1, T_audio)")
            if stim.shape[-1] % hop:
                raise ValueError(
                    f"{name}.stims[{s}] has {stim.shape[-1]} samples, not a multiple of hop={hop} samples per bin"
                )

    def _concat_check_compat(self, other: NeuralDataset) -> None:
        super()._concat_check_compat(other)
        if not isinstance(other, AudioNeuralDataset):
            raise ValueError(f"cannot concatenate {type(self).__name__} (audio) with {type(other).__name__} (not audio)")
        for attr in ("F", "audio_fs", "return_waveform"):
            a, b = getattr(self, attr), getattr(other, attr)
            if a != b:
                raise ValueError(
                    f"cannot concatenate {type(self).__name__} and {type(other).__name__}: {attr} differs ({a!r} vs {b!r})"
                )

    def _concat_copy_attrs(self, source: NeuralDataset) -> None:
        super()._concat_copy_attrs(source)
        self.F = source.F
        self.audio_fs = source.audio_fs
        self.hearing_range_hz = source.hearing_range_hz
        self.return_waveform = source.return_waveform
