"""``VideoNeuralDataset``: a ``NeuralDataset`` whose stims are movies.

Storage (same ragged paradigm as every dataset, see ``docs/data_paradigm.md``):

* ``stims[s]`` is a float tensor ``(C, H, W, T_s)``: ``C`` = 1 (grey) or 3
  (RGB) channels, ``H x W`` pixels, ``T_s`` frames, time on the last axis.
* ``responses[s][n]`` is ``(R[s][n], T_s)`` or the ``(1, 1)`` NaN sentinel.
* By default one frame lasts one response bin (``dt`` ms), so a stim and its
  responses have the same ``T_s``. After ``change_video_temporal_resolution``
  the frames may last ``frame_dt != dt`` ms (see :attr:`VideoNeuralDataset.frame_dt`).

Every method works in place on the dataset, keeps sentinels as sentinels,
treats NaN inside a real response as missing, and returns a dict describing
what it did (also appended to ``video_transforms``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._errors import DatasetFormatError
from .._storage import make_sentinels
from ..neural_dataset import NeuralDataset, _as_index

__all__ = ["VideoNeuralDataset", "BT601_LUMA_WEIGHTS", "gaussian_kernel"]

#: ITU-R BT.601 luma weights of the (R, G, B) channels.
BT601_LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

# Two durations (ms) closer than this relative tolerance are the same, and a
# ratio within it of an integer is that integer (floats such as 33.3333 ms).
_RATIO_TOL = 1e-6


# --------------------------------------------------------------------- helpers
def _positive_number(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _same_duration(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_RATIO_TOL, abs_tol=0.0)


def _integer_factor(source_ms: float, target_ms: float, what: str) -> tuple[str, int]:
    """Classify a change of time step ``source_ms -> target_ms``.

    Returns ``('coarser', k)`` when ``target = k * source``, ``('finer', k)``
    when ``source = k * target`` and ``('same', 1)`` when they are equal.

    Raises
    ------
    ValueError
        If neither ratio is an integer.
    """
    if _same_duration(source_ms, target_ms):
        return "same", 1
    coarse = source_ms < target_ms
    ratio = target_ms / source_ms if coarse else source_ms / target_ms
    k = round(ratio)
    if abs(ratio - k) > _RATIO_TOL * ratio:
        raise ValueError(
            f"{what}: {source_ms:g} ms -> {target_ms:g} ms is a factor of {target_ms / source_ms:g}; only integer "
            "factors are supported (the larger step must be a whole multiple of the smaller one)"
        )
    return ("coarser" if coarse else "finer"), k


def _average_frames(x: Tensor, k: int) -> Tensor:
    """Mean of consecutive groups of ``k`` frames along the last axis; an incomplete tail group is dropped."""
    n = x.shape[-1] // k
    return x[..., : n * k].reshape(*x.shape[:-1], n, k).mean(dim=-1)


def _sum_bins(x: Tensor, k: int) -> Tensor:
    """Sum of consecutive groups of ``k`` bins along the last axis (NaN in a group gives NaN); tail dropped."""
    n = x.shape[-1] // k
    return x[..., : n * k].reshape(*x.shape[:-1], n, k).sum(dim=-1)


def _resample_frames(x: Tensor, mode: str, k: int) -> Tensor:
    if mode == "coarser":
        return _average_frames(x, k)
    if mode == "finer":
        return x.repeat_interleave(k, dim=-1)
    return x


def _resample_counts(x: Tensor, mode: str, k: int) -> Tensor:
    if mode == "coarser":
        return _sum_bins(x, k)
    if mode == "finer":
        return x.repeat_interleave(k, dim=-1) / k
    return x


def _resampled_length(T: int, mode: str, k: int) -> int:
    if mode == "coarser":
        return T // k
    if mode == "finer":
        return T * k
    return T


def gaussian_kernel(sigma_bins: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """Centred Gaussian kernel truncated at ``±3 sigma``, unit sum.

    Parameters
    ----------
    sigma_bins : float
        Standard deviation in bins (> 0).
    dtype : torch.dtype
        Output dtype.

    Returns
    -------
    Tensor, shape (2 * h + 1,)
        With ``h = ceil(3 * sigma_bins)``: taps at offsets ``-h .. h`` bins,
        exactly symmetric (``k[i] == k[-1 - i]``), peak at the centre tap.
        A sigma well below one bin gives (almost) the identity.
    """
    if not sigma_bins > 0:
        raise ValueError(f"sigma_bins must be > 0, got {sigma_bins!r}")
    half = max(1, math.ceil(3.0 * sigma_bins - 1e-9))
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma_bins) ** 2)
    return (kernel / kernel.sum()).to(dtype)


# ----------------------------------------------------------------------- class
class VideoNeuralDataset(NeuralDataset):
    """Base class of the visual datasets: stims are ``(C, H, W, T)`` movies.

    Parameters
    ----------
    path : str
        Raw-data folder (informational).
    dt_ms : float
        Response bin width in ms.

    Attributes
    ----------
    C : int
        Channels per frame: 1 (grey) or 3 (RGB). Set by the subclass before
        ``validate()``.
    H, W : int
        Frame height and width in pixels. Set by the subclass.
    frame_dt : float or None
        Duration of one stim frame in ms. ``None`` (the default) means "one
        frame per response bin" (``frame_dt == dt``); then ``validate()``
        requires ``stims[s].shape[-1] == T_s``. Set by
        :meth:`change_video_temporal_resolution` when the frames no longer
        match the bins, in which case stim and response lengths are not
        compared (they cover the same time up to a dropped tail).
    video_normalization : dict
        Record of the last :meth:`normalize_videos` (absent before).
    video_transforms : list of dict
        Records returned by the video methods of this class, in call order
        (the inherited ``normalize_responses``/``standardize_stims`` keep
        their own records, ``response_normalization``/``stim_normalization``).

    Notes
    -----
    Deliberate differences from the ``VideoNeuralDataset`` of deepSTRF 0.1.0,
    whose methods assumed a dense ``(N, S, R, T)`` response tensor:

    * every method edits the ragged lists in place, keeps sentinels, ignores
      NaN, and returns a record dict instead of new tensors;
    * ``normalize_responses`` is the base class method (not shadowed);
      ``smooth_responses`` keeps the base signature and adds a Gaussian
      kernel that is exactly centred (the reference's was off by ~0.4 bin);
    * temporal down-sampling averages frames (the reference decimated them in
      ``change_video_temporal_resolution`` and summed them in
      ``change_temporal_resolution``) and splits spike counts evenly when
      up-sampling (the reference repeated them, inflating counts), and ``dt``
      is updated;
    * ``split_into_clips`` pads responses with NaN (not 0) and orders clips
      stim-major;
    * ``validate()`` and the concatenation checks cover ``C``, ``H``, ``W``
      (and ``frame_dt``).
    """

    def __init__(self, path: str, dt_ms: float) -> None:
        super().__init__(path, dt_ms)
        self.C: int = -1
        self.H: int = -1
        self.W: int = -1
        self.frame_dt: float | None = None
        self.video_transforms: list[dict] = []

    # -------------------------------------------------------------- accessors
    def get_dt(self) -> float:
        """Response bin width in ms."""
        return self.dt

    def get_frame_dt(self) -> float:
        """Duration of one stim frame in ms (``dt`` unless ``frame_dt`` is set)."""
        return float(self.dt) if self.frame_dt is None else float(self.frame_dt)

    def _frames_locked(self) -> bool:
        return self.frame_dt is None or _same_duration(float(self.frame_dt), float(self.dt))

    def _log(self, record: dict) -> dict:
        if not hasattr(self, "video_transforms"):
            self.video_transforms = []
        self.video_transforms.append(record)
        return record

    # ------------------------------------------------------------- validation
    def _expected_response_T(self, s: int) -> int | None:
        return self.stims[s].shape[-1] if self._frames_locked() else None

    def validate(self) -> None:
        """Base checks plus the video contract.

        Checks that ``C`` is 1 or 3, ``H`` and ``W`` are positive ints,
        ``frame_dt`` is ``None`` or a positive number, and every stim is a
        floating 4-D ``(C, H, W, T)`` tensor with the dataset's ``C, H, W`` and
        ``T >= 1``; then the base contract (no NaN in stims, responses of
        ``T_s`` bins equal to the stim's frames when ``frame_dt`` is unset).

        Raises
        ------
        ValueError, TypeError, DatasetFormatError
            Naming the attribute or the stim at fault.
        """
        name = type(self).__name__
        for attr, what in (("C", "channels"), ("H", "frame height in pixels"), ("W", "frame width in pixels")):
            value = getattr(self, attr, None)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}.{attr} must be an int > 0 ({what}), got {value!r}")
        if self.C not in (1, 3):
            raise ValueError(f"{name}.C must be 1 (grey) or 3 (RGB), got {self.C!r}")
        if self.frame_dt is not None:
            _positive_number(self.frame_dt, f"{name}.frame_dt")
        expected = (self.C, self.H, self.W)
        for s, stim in enumerate(self.stims):
            where = f"{name}.stims[{s}]"
            if not isinstance(stim, Tensor):
                raise TypeError(f"{where} must be a torch.Tensor, got {type(stim).__name__}")
            if stim.dim() != 4:
                raise DatasetFormatError(where, "shape", f"shape {tuple(stim.shape)}", "a 4-D (C, H, W, T) video")
            if tuple(stim.shape[:3]) != expected:
                raise DatasetFormatError(
                    where, "shape", f"(C, H, W) = {tuple(stim.shape[:3])}", f"(C, H, W) = {expected} like the dataset"
                )
            if not stim.is_floating_point():
                raise DatasetFormatError(where, "dtype", str(stim.dtype), "a floating dtype")
            if stim.shape[-1] < 1:
                raise DatasetFormatError(where, "T", "0 frames", "at least 1 frame")
        super().validate()

    # ---------------------------------------------------------- concatenation
    def _concat_check_compat(self, other: NeuralDataset) -> None:
        super()._concat_check_compat(other)
        if not isinstance(other, VideoNeuralDataset):
            raise ValueError(
                f"cannot concatenate {type(self).__name__} (video) with {type(other).__name__} (not video)"
            )
        for attr in ("C", "H", "W"):
            a, b = getattr(self, attr), getattr(other, attr)
            if a != b:
                raise ValueError(
                    f"cannot concatenate {type(self).__name__} and {type(other).__name__}: {attr} differs "
                    f"({a!r} vs {b!r}); use change_spatial_resolution / from_rgb_to_grayscale first"
                )
        if not _same_duration(self.get_frame_dt(), other.get_frame_dt()):
            raise ValueError(
                f"cannot concatenate {type(self).__name__} and {type(other).__name__}: frame_dt differs "
                f"({self.get_frame_dt():g} ms vs {other.get_frame_dt():g} ms); "
                "use change_video_temporal_resolution first"
            )

    def _concat_copy_attrs(self, source: NeuralDataset) -> None:
        super()._concat_copy_attrs(source)
        self.C = source.C
        self.H = source.H
        self.W = source.W
        self.frame_dt = source.frame_dt
        self.video_transforms = []

    # ---------------------------------------------------------------- helpers
    def _response_T(self, s: int) -> int | None:
        """Common ``T`` of the real responses of stim ``s`` (``None`` if it has none)."""
        row = self.responses[s]
        for n in self.nrn_masks[s].nonzero().flatten().tolist():
            return row[n].shape[-1]
        return None

    # ---------------------------------------------------------- stim methods
    def add_noise_to_videos(self, noise_level: float = 0.1, seed: int = 0) -> dict:
        """Add white Gaussian noise to every stim, in place and reproducibly.

        Parameters
        ----------
        noise_level : float, default 0.1
            Standard deviation of the noise, in stim units (>= 0).
        seed : int, default 0
            Seed of a private ``torch.Generator``; the noise of stim ``s`` is
            the ``s``-th draw, so equal seeds give equal noise. The global
            torch RNG is not used.

        Returns
        -------
        dict
            ``{'method', 'noise_level', 'seed'}``.
        """
        if isinstance(noise_level, bool) or not isinstance(noise_level, Real) or not math.isfinite(noise_level) \
                or noise_level < 0:
            raise ValueError(f"noise_level must be a finite number >= 0, got {noise_level!r}")
        seed = _as_index(seed, "seed")
        gen = torch.Generator().manual_seed(seed)
        level = float(noise_level)
        noisy = []
        for x in self.stims:
            noise = torch.randn(x.shape, generator=gen, dtype=x.dtype)
            noisy.append(x + level * noise.to(x.device))
        self.stims = noisy
        return self._log({"method": "add_noise_to_videos", "noise_level": level, "seed": seed})

    def change_spatial_resolution(self, size: int | Sequence[int]) -> dict:
        """Resize every frame of every stim to ``size`` pixels, in place.

        Antialiased bilinear interpolation (``torch.nn.functional.interpolate``
        with ``mode='bilinear', antialias=True, align_corners=False``), so a
        down-sampled frame averages the pixels it covers instead of aliasing.
        A constant frame stays constant. Updates ``H`` and ``W``.

        Parameters
        ----------
        size : int or (int, int)
            New ``(H, W)`` in pixels; an int gives a square frame.

        Returns
        -------
        dict
            ``{'method', 'old_size': (H, W), 'new_size': (H, W)}``.
        """
        if isinstance(size, Tensor) or hasattr(size, "tolist"):  # tensors and numpy arrays / integers
            size = size.tolist()
        pair = [size, size] if not isinstance(size, (tuple, list)) else list(size)
        if len(pair) != 2:
            raise ValueError(f"size must be an int or a pair (H, W) of ints, got {size!r}")
        h, w = (_as_index(v, "size") for v in pair)
        if h < 1 or w < 1:
            raise ValueError(f"size must be >= 1 pixel on each side, got (H, W) = ({h}, {w})")
        old = (self.H, self.W)
        if (h, w) != tuple(old):
            resized = []
            for x in self.stims:
                frames = x.movedim(-1, 0)  # (T, C, H, W): interpolate sees T as the batch
                work = frames if frames.dtype in (torch.float32, torch.float64) else frames.float()
                out = F.interpolate(work, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
                resized.append(out.to(x.dtype).movedim(0, -1).contiguous())
            self.stims = resized
            self.H, self.W = h, w
        return self._log({"method": "change_spatial_resolution", "old_size": old, "new_size": (h, w)})

    def change_video_temporal_resolution(self, native_dt: float, target_dt: float) -> dict:
        """Resample the stims (only) from frames of ``native_dt`` ms to ``target_dt`` ms.

        Parameters
        ----------
        native_dt : float
            Current frame duration in ms; must equal :meth:`get_frame_dt`
            (``dt`` unless ``frame_dt`` was set).
        target_dt : float
            New frame duration in ms. ``target_dt / native_dt`` or its inverse
            must be an integer ``k``.

        Returns
        -------
        dict
            ``{'method', 'native_dt', 'target_dt', 'mode', 'factor',
            'dropped_frames'}``; ``mode`` is ``'average'``, ``'repeat'`` or
            ``'none'``; ``dropped_frames[s]`` counts the native frames of the
            incomplete tail group of stim ``s``.

        Notes
        -----
        Coarser frames are the **mean** of ``k`` consecutive native frames (so
        brightness is kept; the reference kept every ``k``-th frame), and a
        tail of fewer than ``k`` frames is dropped. Finer frames repeat each
        native frame ``k`` times. Responses are not touched: afterwards
        ``frame_dt = target_dt`` (``None`` when it equals ``dt``, i.e. the
        stims are back on the response grid). To resample stims and responses
        together use :meth:`change_temporal_resolution`.
        """
        native = _positive_number(native_dt, "native_dt")
        target = _positive_number(target_dt, "target_dt")
        current = self.get_frame_dt()
        if not _same_duration(native, current):
            raise ValueError(
                f"native_dt={native_dt!r} ms does not match the current frame duration {current:g} ms "
                "(get_frame_dt(): frame_dt, or dt when frame_dt is None); set ds.frame_dt if the stims "
                "were stored at another frame rate"
            )
        mode, k = _integer_factor(native, target, "change_video_temporal_resolution")
        if mode == "coarser":
            for s, x in enumerate(self.stims):
                if x.shape[-1] < k:
                    raise ValueError(
                        f"stims[{s}] has {x.shape[-1]} frames, fewer than the averaging factor {k} "
                        f"({native:g} ms -> {target:g} ms); nothing was changed"
                    )
        dropped = [x.shape[-1] % k if mode == "coarser" else 0 for x in self.stims]
        self.stims = [_resample_frames(x, mode, k) for x in self.stims]
        self.frame_dt = None if _same_duration(target, float(self.dt)) else target
        names = {"coarser": "average", "finer": "repeat", "same": "none"}
        return self._log(
            {
                "method": "change_video_temporal_resolution",
                "native_dt": native,
                "target_dt": target,
                "mode": names[mode],
                "factor": k,
                "dropped_frames": dropped,
            }
        )

    def from_rgb_to_grayscale(self) -> dict:
        """Convert RGB stims to grey luminance in place: ``Y = 0.299 R + 0.587 G + 0.114 B``.

        ITU-R BT.601 luma weights (the reference used 0.2989 for red). Stims
        become ``(1, H, W, T)`` and ``C`` becomes 1. Grey stims (``C == 1``)
        are left as they are.

        Returns
        -------
        dict
            ``{'method', 'weights', 'converted'}`` (``converted`` False when
            the stims were already grey).
        """
        converted = self.C == 3
        if converted:
            out = []
            for s, x in enumerate(self.stims):
                if x.shape[0] != 3:
                    raise DatasetFormatError(
                        f"{type(self).__name__}.stims[{s}]", "shape", f"{x.shape[0]} channels", "3 (RGB) channels"
                    )
                weights = torch.tensor(BT601_LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(3, 1, 1, 1)
                out.append((x * weights).sum(dim=0, keepdim=True))
            self.stims = out
            self.C = 1
        return self._log(
            {"method": "from_rgb_to_grayscale", "weights": BT601_LUMA_WEIGHTS, "converted": converted}
        )

    def normalize_videos(
        self, stim_indices: Sequence[int] | None = None, per_pixel: bool = True, eps: float = 1e-8
    ) -> dict:
        """Z-score every stim in place, ``(x - mean) / std``, with statistics of a stim subset.

        Parameters
        ----------
        stim_indices : sequence of int, optional
            Stims whose frames give the statistics (typically the training
            stims; duplicates count twice); all when ``None``. Every stim is
            transformed with the same statistics.
        per_pixel : bool, default True
            One mean and std per (channel, row, column), over all frames of the
            chosen stims: shape ``(C, H, W, 1)``. False: one scalar over every
            value.
        eps : float, default 1e-8
            Floor on the (unbiased) standard deviation, so a pixel that never
            changes is centred but not blown up.

        Returns
        -------
        dict
            ``{'method', 'mean', 'std', 'per_pixel', 'stim_indices', 'eps'}``,
            also stored as ``self.video_normalization``. Not idempotent.

        Notes
        -----
        The reference z-scored each video with its own statistics; using a
        fixed subset keeps test statistics out of the training data. The
        statistics are accumulated stim by stim in float64 (no concatenation
        of the movies).
        """
        if isinstance(eps, bool) or not isinstance(eps, Real) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        indices = self._stim_subset(stim_indices)
        if not indices:
            raise ValueError("normalize_videos needs at least one stim to compute statistics (stim_indices is empty)")
        count = 0
        mean: Tensor | None = None
        m2: Tensor | None = None
        for s in indices:
            x = self.stims[s].to(torch.float64)
            if per_pixel:
                n = x.shape[-1]
                mu = x.mean(dim=-1, keepdim=True)
                sq = ((x - mu) ** 2).sum(dim=-1, keepdim=True)
            else:
                n = x.numel()
                mu = x.mean()
                sq = ((x - mu) ** 2).sum()
            if mean is None or m2 is None:
                count, mean, m2 = n, mu, sq
            else:  # Chan et al. parallel update of mean and sum of squared deviations
                total = count + n
                delta = mu - mean
                mean = mean + delta * (n / total)
                m2 = m2 + sq + delta**2 * (count * n / total)
                count = total
        if mean is None or m2 is None or count < 2:
            raise ValueError(
                f"normalize_videos needs at least 2 {'frames' if per_pixel else 'values'} in the chosen stims, "
                f"got {count}"
            )
        std = (m2 / (count - 1)).sqrt().clamp_min(float(eps))
        dtype = self.stims[indices[0]].dtype
        mean_t, std_t = mean.to(dtype), std.to(dtype)
        self.stims = [(x - mean_t.to(x.device, x.dtype)) / std_t.to(x.device, x.dtype) for x in self.stims]
        record = {
            "method": "normalize_videos",
            "mean": mean_t.clone(),
            "std": std_t.clone(),
            "per_pixel": bool(per_pixel),
            "stim_indices": None if stim_indices is None else list(indices),
            "eps": float(eps),
        }
        self.video_normalization = record
        return self._log(record)

    # ------------------------------------------------------ response methods
    def get_responses_signal_power(self) -> Tensor:
        """Sahani–Linden signal power of every (stim, neuron) pair.

        Returns
        -------
        Tensor, shape (S, N), float32
            ``SP = (R var_t(psth) - mean_r var_t(x_r)) / (R - 1)`` in squared
            response units (unbiased variances over time), per pair; NaN for a
            missing pair and for a cell with fewer than 2 repeats or 2 bins.
            A cell holding NaN entries is first reduced to its repeats with a
            value and, among them, the bins valid in every repeat (as in
            ``compute_neuron_quality``). The selection is ignored.

        Notes
        -----
        Cells of equal ``(R, T)`` are computed together with
        ``deepSTRF.metrics._reliability.cell_signal_noise_power``. SP may be
        negative for noise-dominated cells.
        """
        from ...metrics._reliability import cell_signal_noise_power

        S, N = self.get_S(), self.N_neurons
        out = torch.full((S, N), math.nan, dtype=torch.float64)
        with torch.no_grad():
            for x, stim_index, neuron_index in self._cell_batches():
                if x.shape[1] >= 2 and x.shape[2] >= 2:
                    out[stim_index, neuron_index] = cell_signal_noise_power(x.to(torch.float64))[0].cpu()
        return out.float()

    def smooth_responses(self, window_ms: float = 21.0, kernel: str = "hann", sigma_ms: float | None = None) -> dict:
        """Smooth every real response in place along time (NaN-aware, sentinels kept).

        Parameters
        ----------
        window_ms : float, default 21.0
            ``'hann'``: full window width in ms, exactly as the base class
            (odd number of bins nearest to ``window_ms / dt``, unit sum).
            ``'gaussian'``: only sets the default ``sigma_ms = window_ms / 6``
            (the ``±3 sigma`` support then spans the window).
        kernel : {'hann', 'gaussian'}, default 'hann'
            ``'hann'`` is the base-class behaviour.
        sigma_ms : float, optional
            Standard deviation of the Gaussian in ms (``'gaussian'`` only).

        Returns
        -------
        dict
            ``{'method', 'kernel', 'window_ms', 'sigma_ms', 'n_bins'}``
            (``sigma_ms`` None for Hann).

        Notes
        -----
        The Gaussian kernel has taps at ``-h .. h`` bins with
        ``h = ceil(3 sigma / dt)`` and sums to 1: it is exactly centred, so a
        smoothed impulse stays symmetric about its bin (the reference's grid
        was asymmetric and shifted responses by ~0.4 bin, and its default
        padding shortened them). Zero padding attenuates the edge bins; NaN
        entries stay NaN and their neighbours are renormalised
        (``deepSTRF.utils._smoothing.smooth_last_axis``).
        """
        from ...utils._smoothing import hann_window_bins, smooth_last_axis

        if kernel not in ("hann", "gaussian"):
            raise ValueError(f"kernel must be 'hann' or 'gaussian', got {kernel!r}")
        window = _positive_number(window_ms, "window_ms")
        if kernel == "hann":
            if sigma_ms is not None:
                raise ValueError(f"sigma_ms applies to kernel='gaussian' only, got sigma_ms={sigma_ms!r} with 'hann'")
            super().smooth_responses(window)
            n_bins = hann_window_bins(window, float(self.dt))
            sigma = None
        else:
            sigma = window / 6.0 if sigma_ms is None else _positive_number(sigma_ms, "sigma_ms")
            weights = gaussian_kernel(sigma / float(self.dt))
            n_bins = weights.numel()
            self._map_real_cells(lambda x, nrn: smooth_last_axis(x, weights))
        return self._log(
            {"method": "smooth_responses", "kernel": kernel, "window_ms": window, "sigma_ms": sigma, "n_bins": n_bins}
        )

    # -------------------------------------------------------- joint methods
    def change_temporal_resolution(self, new_dt: float) -> dict:
        """Rebin stims and responses together to bins of ``new_dt`` ms, in place.

        Parameters
        ----------
        new_dt : float
            New bin width in ms. ``new_dt / dt`` or ``dt / new_dt`` must be an
            integer ``k`` (and likewise against the frame duration).

        Returns
        -------
        dict
            ``{'method', 'old_dt', 'new_dt', 'response_mode', 'response_factor',
            'stim_mode', 'stim_factor', 'dropped_ms'}``; modes are
            ``'sum'``/``'split'``/``'none'`` (responses) and
            ``'average'``/``'repeat'``/``'none'`` (stims); ``dropped_ms[s]`` is
            the response time of stim ``s`` that did not fill a new bin.

        Notes
        -----
        * Coarser bins (``new_dt = k dt``): each new bin is the **sum** of
          ``k`` consecutive counts, so spike totals are preserved; a tail of
          fewer than ``k`` bins is **dropped** (never a partial bin, which
          would under-count). A new bin that covers a NaN entry is NaN.
        * Finer bins (``dt = k new_dt``): each count is split **evenly**, every
          new bin holding ``count / k`` (totals preserved; the reference
          repeated counts, multiplying totals by ``k``).
        * Stims go from :meth:`get_frame_dt` to ``new_dt``: frames are
          averaged or repeated (:meth:`change_video_temporal_resolution`).
          Both are then cut to the same length, so ``stims[s].shape[-1]``
          equals the responses' ``T`` and ``frame_dt`` is reset to ``None``.
        * ``dt`` becomes ``new_dt``. Sentinels stay sentinels. Records such
          as ``response_normalization`` are not rewritten.
        """
        new = _positive_number(new_dt, "new_dt")
        old = float(self.dt)
        frame = self.get_frame_dt()
        resp_mode, resp_k = _integer_factor(old, new, "change_temporal_resolution (responses, dt)")
        stim_mode, stim_k = _integer_factor(frame, new, "change_temporal_resolution (stims, frame_dt)")
        plan: list[tuple[int | None, int]] = []
        for s, x in enumerate(self.stims):
            T_resp = self._response_T(s)
            T_new = _resampled_length(x.shape[-1], stim_mode, stim_k)
            if T_resp is not None:
                T_new = min(T_new, _resampled_length(T_resp, resp_mode, resp_k))
            if T_new < 1:
                raise ValueError(
                    f"stim {s} is too short for new_dt={new_dt!r} ms: {x.shape[-1]} frames of {frame:g} ms and "
                    f"{T_resp} bins of {old:g} ms do not fill one {new:g} ms bin; nothing was changed"
                )
            plan.append((T_resp, T_new))
        self.stims = [_resample_frames(x, stim_mode, stim_k)[..., :T_new] for x, (_, T_new) in zip(self.stims, plan)]
        for s, (T_resp, T_new) in enumerate(plan):
            if T_resp is not None:
                self._map_real_cells(
                    lambda r, _, T_new=T_new: _resample_counts(r, resp_mode, resp_k)[:, :T_new], stims=[s]
                )
        dropped = [0.0 if T_resp is None else T_resp * old - T_new * new for T_resp, T_new in plan]
        self.dt = new
        self.frame_dt = None
        self._invalidate_nrn_masks()
        resp_names = {"coarser": "sum", "finer": "split", "same": "none"}
        stim_names = {"coarser": "average", "finer": "repeat", "same": "none"}
        return self._log(
            {
                "method": "change_temporal_resolution",
                "old_dt": old,
                "new_dt": new,
                "response_mode": resp_names[resp_mode],
                "response_factor": resp_k,
                "stim_mode": stim_names[stim_mode],
                "stim_factor": stim_k,
                "dropped_ms": dropped,
            }
        )

    def split_into_clips(self, clip_bins: int, tail: str = "pad") -> dict:
        """Replace every stim (and its responses) by consecutive clips of ``clip_bins`` bins.

        Parameters
        ----------
        clip_bins : int
            Clip length ``L`` in bins (>= 1).
        tail : {'pad', 'drop'}, default 'pad'
            What to do with a last clip shorter than ``L``: ``'pad'`` fills it
            to ``L`` bins with zero frames and NaN responses (stim ``s`` gives
            ``ceil(T_s / L)`` clips); ``'drop'`` discards it
            (``floor(T_s / L)`` clips; a stim shorter than ``L`` disappears).

        Returns
        -------
        dict
            ``{'method', 'clip_bins', 'tail', 'n_clips', 'clips_per_stim',
            'source_stim', 'dropped_bins', 'padded_bins'}``; ``source_stim[i]``
            is the original index of new stim ``i``.

        Notes
        -----
        * Clips are stim-major: all clips of stim 0, then of stim 1, ...
        * A missing pair gives a (new) sentinel in each of the stim's clips;
          real responses keep their repeats, ``(R, L)`` per clip. Padded bins
          are NaN, so masked losses and metrics ignore them.
        * ``stim_meta`` of a clip is a shallow copy of the source's with
          ``'source_stim'``, ``'clip'`` (0-based), ``'clip_start_bin'`` and
          ``'clip_valid_bins'`` (unpadded bins) added; ``nrn_meta`` is
          unchanged. Both selections are reset and the mask is recomputed.
          Stim indices stored in earlier records refer to the old stims.
        * Needs frames on the response grid (``frame_dt`` unset).
        """
        L = _as_index(clip_bins, "clip_bins")
        if L < 1:
            raise ValueError(f"clip_bins must be >= 1, got {L}")
        if tail not in ("pad", "drop"):
            raise ValueError(f"tail must be 'pad' or 'drop', got {tail!r}")
        if not self._frames_locked():
            raise ValueError(
                f"split_into_clips needs one frame per response bin, but frame_dt={self.frame_dt!r} ms != "
                f"dt={self.dt!r} ms; call change_video_temporal_resolution(frame_dt, dt) first"
            )
        lengths = [x.shape[-1] for x in self.stims]
        counts = [-(-T // L) if tail == "pad" else T // L for T in lengths]
        if sum(counts) == 0:
            raise ValueError(
                f"split_into_clips(clip_bins={L}, tail='drop') would leave no stim: the longest stim has "
                f"{max(lengths)} bins; nothing was changed"
            )
        masks = self.nrn_masks
        N = self.N_neurons
        new_stims: list[Tensor] = []
        new_responses: list[list[Tensor]] = []
        new_meta: list[dict] = []
        sources: list[int] = []
        for s, (T, n_clips) in enumerate(zip(lengths, counts)):
            if n_clips == 0:
                continue
            span = n_clips * L
            stim = self.stims[s]
            stim = F.pad(stim, (0, span - T)) if span > T else stim[..., :span]
            new_stims.extend(stim.reshape(*stim.shape[:-1], n_clips, L).movedim(-2, 0).contiguous().unbind(0))
            rows: list[list[Tensor | None]] = [[None] * N for _ in range(n_clips)]
            neurons = masks[s].nonzero().flatten().tolist()
            if neurons:
                stacked, _ = self._stack_stim(s, neurons)
                if span > T:
                    stacked = F.pad(stacked, (0, span - T), value=math.nan)
                else:
                    stacked = stacked[:, :span]
                per_clip = stacked.reshape(stacked.shape[0], n_clips, L).movedim(1, 0).contiguous()
                repeats = [self.responses[s][n].shape[0] for n in neurons]
                for c in range(n_clips):
                    for n, piece in zip(neurons, torch.split(per_clip[c], repeats, dim=0)):
                        rows[c][n] = piece
            missing = N - len(neurons)
            pads = iter(make_sentinels(n_clips * missing))
            for c in range(n_clips):
                row = rows[c]
                new_responses.append([cell if cell is not None else next(pads) for cell in row])
                new_meta.append(
                    {
                        **self.stim_meta[s],
                        "source_stim": s,
                        "clip": c,
                        "clip_start_bin": c * L,
                        "clip_valid_bins": min(L, T - c * L),
                    }
                )
                sources.append(s)
        self.stims = new_stims
        self.responses = new_responses
        self.stim_meta = new_meta
        self.reset_pop_selection()
        self.reset_stim_selection()
        self._invalidate_nrn_masks()
        return self._log(
            {
                "method": "split_into_clips",
                "clip_bins": L,
                "tail": tail,
                "n_clips": len(new_stims),
                "clips_per_stim": counts,
                "source_stim": sources,
                "dropped_bins": sum(T - n * L for T, n in zip(lengths, counts)) if tail == "drop" else 0,
                "padded_bins": sum(n * L - T for T, n in zip(lengths, counts)) if tail == "pad" else 0,
            }
        )
