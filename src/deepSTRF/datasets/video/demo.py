"""``VideoDemoDataset``: a tiny simulated visual dataset with known ground truth.

Nothing is downloaded: movies and spikes are generated deterministically from
a seed at construction (a few milliseconds with the defaults). Stims alternate
between drifting sinusoidal gratings and spatio-temporally smoothed noise
movies; each neuron is a linear spatio-temporal filter (a Gabor receptive
field times a biphasic temporal kernel) followed by a rectifier and Poisson
spiking. Durations, repeat counts and coverage are ragged, so the dataset
exercises every aspect of the storage contract.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._simulated import check_design_args, draw_design, poisson_row
from .video_dataset import VideoNeuralDataset

__all__ = ["VideoDemoDataset"]


def _blur(x: Tensor, sigma: float, dim: int) -> Tensor:
    """Gaussian blur of ``x`` along ``dim`` (zero padding, unit-sum kernel)."""
    half = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-half, half + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    moved = x.movedim(dim, -1)
    rows = moved.reshape(-1, 1, moved.shape[-1])
    out = F.conv1d(rows, kernel, padding=half).reshape(moved.shape)
    return out.movedim(-1, dim)


class VideoDemoDataset(VideoNeuralDataset):
    """Simulated visual neurons driven by gratings and noise movies, with true filters.

    Parameters
    ----------
    n_stims : int, default 12
        Number of stimuli ``S`` (even indices: gratings, odd: noise movies).
    n_neurons : int, default 10
        Number of neurons ``N``.
    height, width : int, default 8
        Frame size in pixels.
    n_channels : {1, 3}, default 1
        Grey (1) or RGB (3) movies; RGB gratings are tinted per stim and the
        neurons weigh the channels unequally.
    n_lags : int, default 4
        Temporal filter length in bins.
    dt_ms : float, default 25.0
        Bin width (and frame duration) in ms.
    duration_bins : (int, int), default (30, 60)
        Range of stim durations in bins (inclusive).
    max_repeats : int, default 6
        Repeats per (stim, neuron) are drawn in ``[1, max_repeats]`` (test
        stims: at least ``min(3, max_repeats)``).
    missing_fraction : float, default 0.2
        Fraction of (stim, neuron) pairs that were "not recorded" (sentinels);
        test stims are recorded for every neuron.
    seed : int, default 0
        Seed of every draw: equal seeds give identical datasets.

    Attributes
    ----------
    true_filters : Tensor, shape (N, C, H, W, n_lags)
        Ground-truth spatio-temporal filters (lag 0 first), acting on the
        contrast ``stim - 0.5``.
    true_bias, true_gain : Tensor, shape (N,)
        Drive offset and spikes per bin per unit of rectified drive.

    Notes
    -----
    Frames hold luminance in ``[0, 1]`` (mean grey 0.5). The rate of neuron
    ``n`` in bin ``t`` is ``gain_n * relu(bias_n + sum_{c,y,x,l}
    filter_n[c, y, x, l] * (stim[c, y, x, t - l] - 0.5))`` spikes per bin.
    ``stim_meta[s]`` holds ``'name'``, ``'split'`` (``'train'``/``'val'``/
    ``'test'``), ``'kind'`` (``'grating'``/``'noise'``), ``'duration_ms'`` and,
    for gratings, ``'orientation_deg'``, ``'spatial_freq_cpp'`` (cycles per
    pixel) and ``'temporal_freq_hz'``. ``nrn_meta[n]`` holds ``'id'``,
    ``'area'``, ``'rf_center'`` ``(row, col)`` and ``'preferred_orientation_deg'``.
    """

    def __init__(
        self,
        n_stims: int = 12,
        n_neurons: int = 10,
        height: int = 8,
        width: int = 8,
        n_channels: int = 1,
        n_lags: int = 4,
        dt_ms: float = 25.0,
        duration_bins: tuple[int, int] = (30, 60),
        max_repeats: int = 6,
        missing_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__("<embedded video demo>", dt_ms)
        for name, value, low in (("n_stims", n_stims, 3), ("n_neurons", n_neurons, 1), ("height", height, 2),
                                 ("width", width, 2), ("n_lags", n_lags, 1), ("max_repeats", max_repeats, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if n_channels not in (1, 3):
            raise ValueError(f"n_channels must be 1 (grey) or 3 (RGB), got {n_channels!r}")
        check_design_args(missing_fraction, duration_bins, n_lags)
        gen = torch.Generator().manual_seed(seed)
        self.C, self.H, self.W = n_channels, height, width
        filters, centres, orientations = self._make_filters(gen, n_neurons, n_channels, height, width, n_lags)
        self.true_filters = filters
        self.true_bias = 0.3 + 0.3 * torch.rand(n_neurons, generator=gen, dtype=torch.float64)
        self.true_gain = 0.4 + 0.4 * torch.rand(n_neurons, generator=gen, dtype=torch.float64)

        splits, recorded, durations = draw_design(gen, n_stims, n_neurons, missing_fraction, duration_bins)

        P = n_channels * height * width
        weight = filters.reshape(n_neurons, P, n_lags).flip(-1)  # conv1d correlates; flip so lag 0 is the current bin
        for s in range(n_stims):
            T = durations[s]
            meta: dict = {"name": f"video_demo_{s:03d}", "split": splits[s], "duration_ms": T * dt_ms}
            if s % 2 == 0:
                movie, params = self._grating(gen, n_channels, height, width, T, dt_ms)
                meta.update(kind="grating", **params)
            else:
                movie = self._noise_movie(gen, n_channels, height, width, T)
                meta["kind"] = "noise"
            contrast = (movie - 0.5).reshape(1, P, T)
            drive = F.conv1d(F.pad(contrast, (n_lags - 1, 0)), weight).squeeze(0) + self.true_bias[:, None]
            rate = self.true_gain[:, None] * torch.relu(drive)  # (N, T) spikes per bin
            min_repeats = min(3, max_repeats) if splits[s] == "test" else 1
            self.stims.append(movie.float())
            self.responses.append(poisson_row(gen, rate, recorded[s], min_repeats, max_repeats))
            self.stim_meta.append(meta)
        self.nrn_meta = [
            {
                "id": f"video_demo_unit_{n:03d}",
                "area": "V1" if n % 3 else "LM",
                "rf_center": tuple(centres[n]),
                "preferred_orientation_deg": orientations[n],
            }
            for n in range(n_neurons)
        ]
        self.N_neurons = n_neurons
        self._set_nrn_masks(recorded)
        self.validate()

    @staticmethod
    def _make_filters(
        gen: torch.Generator, n_neurons: int, C: int, H: int, W: int, n_lags: int
    ) -> tuple[Tensor, list[list[float]], list[float]]:
        """Gabor receptive fields times biphasic temporal kernels, ``(N, C, H, W, n_lags)``."""
        rows = torch.arange(H, dtype=torch.float64)[:, None]
        cols = torch.arange(W, dtype=torch.float64)[None, :]
        lags = torch.arange(n_lags, dtype=torch.float64)
        filters, centres, orientations = [], [], []
        for _ in range(n_neurons):
            cy = float(torch.rand(1, generator=gen)) * (H - 1)
            cx = float(torch.rand(1, generator=gen)) * (W - 1)
            theta = float(torch.rand(1, generator=gen)) * math.pi
            size = 0.15 * min(H, W) * (1.0 + float(torch.rand(1, generator=gen)))
            freq = 0.12 + 0.1 * float(torch.rand(1, generator=gen))  # cycles per pixel
            phase = 2 * math.pi * float(torch.rand(1, generator=gen))
            along = (cols - cx) * math.cos(theta) + (rows - cy) * math.sin(theta)
            envelope = torch.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * size**2))
            spatial = envelope * torch.cos(2 * math.pi * freq * along + phase)
            spatial = spatial - spatial.mean()
            temporal = torch.exp(-lags / max(1.0, n_lags / 3)) * torch.cos(math.pi * lags / max(1, n_lags))
            channel = torch.ones(C, dtype=torch.float64)
            if C > 1:
                channel = 0.5 + torch.rand(C, generator=gen, dtype=torch.float64)
            f = channel[:, None, None, None] * spatial[None, :, :, None] * temporal
            filters.append(f / f.abs().sum() * 2.0 * C * H * W / 16.0)
            centres.append([round(cy, 3), round(cx, 3)])
            orientations.append(round(math.degrees(theta), 3))
        return torch.stack(filters), centres, orientations

    @staticmethod
    def _grating(gen: torch.Generator, C: int, H: int, W: int, T: int, dt_ms: float) -> tuple[Tensor, dict]:
        """Drifting sinusoidal grating in ``[0, 1]``, ``(C, H, W, T)`` float64."""
        theta = float(torch.rand(1, generator=gen)) * math.pi
        freq = 0.08 + 0.17 * float(torch.rand(1, generator=gen))  # cycles per pixel
        speed_hz = 1.0 + 3.0 * float(torch.rand(1, generator=gen))
        contrast = 0.5 + 0.5 * float(torch.rand(1, generator=gen))
        phase0 = 2 * math.pi * float(torch.rand(1, generator=gen))
        rows = torch.arange(H, dtype=torch.float64)[:, None, None]
        cols = torch.arange(W, dtype=torch.float64)[None, :, None]
        t_s = torch.arange(T, dtype=torch.float64)[None, None, :] * dt_ms / 1000.0
        along = cols * math.cos(theta) + rows * math.sin(theta)
        wave = torch.sin(2 * math.pi * (freq * along - speed_hz * t_s) + phase0)
        tint = torch.ones(C, dtype=torch.float64)
        if C > 1:
            tint = 0.6 + 0.4 * torch.rand(C, generator=gen, dtype=torch.float64)
        movie = 0.5 + 0.5 * contrast * tint[:, None, None, None] * wave[None]
        params = {
            "orientation_deg": round(math.degrees(theta), 3),
            "spatial_freq_cpp": round(freq, 4),
            "temporal_freq_hz": round(speed_hz, 3),
        }
        return movie, params

    @staticmethod
    def _noise_movie(gen: torch.Generator, C: int, H: int, W: int, T: int) -> Tensor:
        """White noise blurred in space (sigma 1 px) and time (sigma 1.5 bins), in ``[0, 1]``."""
        noise = torch.randn(C, H, W, T, generator=gen, dtype=torch.float64)
        smooth = _blur(_blur(_blur(noise, 1.0, 1), 1.0, 2), 1.5, 3)
        smooth = (smooth - smooth.mean()) / smooth.std().clamp_min(1e-12)
        return (0.5 + 0.18 * smooth).clamp(0.0, 1.0)
