"""Data helpers: batching ragged items, concatenating datasets, smoothing.

Importing this module needs only torch and numpy (no matplotlib).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._smoothing import hann_kernel, hann_window_bins, smooth_last_axis

if TYPE_CHECKING:
    from ..datasets.neural_dataset import NeuralDataset

__all__ = [
    "neural_collate",
    "concat_neural_datasets",
    "concatenate_datasets",
    "fill_missing_data",
    "hanning_smooth",
    "ResponseSmoothingTransform",
]


# ----------------------------------------------------------------- smoothing
def hanning_smooth(response: Tensor, window_ms: float, dt_ms: float) -> Tensor:
    """Smooth ``response`` along its last axis with a unit-gain Hann window.

    Parameters
    ----------
    response : Tensor, shape (..., T)
        Floating tensor (e.g. ``(R, T)`` spike counts); NaN entries are treated
        as missing, stay NaN and do not spread.
    window_ms : float
        Full window width in ms.
    dt_ms : float
        Bin width in ms.

    Returns
    -------
    Tensor, shape (..., T)
        The kernel has ``K`` = the odd number of bins nearest to
        ``window_ms / dt_ms`` taps and sums to 1, so the mean rate is kept;
        zero padding of ``(K - 1) / 2`` bins per side attenuates the edges.

    Notes
    -----
    Deliberate change from deepSTRF 0.1.0, whose kernel was not normalised
    (gain ``(K - 1) / 2``) and whose ``K`` was floor-then-odd. Hsu, Borst and
    Theunissen (2004) smooth PSTHs the same way.
    """
    if not isinstance(response, Tensor) or not response.is_floating_point():
        raise TypeError(f"response must be a floating torch.Tensor, got {type(response).__name__}")
    kernel = hann_kernel(hann_window_bins(window_ms, dt_ms), dtype=response.dtype, device=response.device)
    return smooth_last_axis(response, kernel)


class ResponseSmoothingTransform(nn.Module):
    """``nn.Module`` form of :func:`hanning_smooth` for ``(..., T)`` response tensors.

    Parameters
    ----------
    dt_ms : float, default 1
        Bin width in ms.
    window_size_ms : float, default 21
        Full Hann window width in ms.

    Notes
    -----
    NaN-aware like :func:`hanning_smooth`; follows the input's dtype and
    device. (The reference's version raised on every call.)
    """

    def __init__(self, dt_ms: float = 1, window_size_ms: float = 21) -> None:
        super().__init__()
        self.dt_ms = dt_ms
        self.window_size_ms = window_size_ms
        self.n_bins = hann_window_bins(window_size_ms, dt_ms)
        self.register_buffer("kernel", hann_kernel(self.n_bins, dtype=torch.float32), persistent=False)

    def forward(self, responses: Tensor) -> Tensor:
        """Smooth ``responses`` ``(..., T)`` along time; returns the same shape."""
        return smooth_last_axis(responses, self.kernel.to(dtype=responses.dtype, device=responses.device))

    def extra_repr(self) -> str:
        return f"dt_ms={self.dt_ms}, window_size_ms={self.window_size_ms}, n_bins={self.n_bins}"


# ------------------------------------------------------------------- collate
def _pad_stims(stims: Sequence[Tensor]) -> Tensor:
    first = stims[0]
    for b, stim in enumerate(stims):
        if not isinstance(stim, Tensor):
            raise TypeError(f"batch[{b}]['stims'] must be a torch.Tensor, got {type(stim).__name__}")
        if stim.dim() != first.dim() or stim.shape[:-1] != first.shape[:-1]:
            raise ValueError(
                f"cannot collate stims of shapes {tuple(first.shape)} (item 0) and {tuple(stim.shape)} "
                f"(item {b}): all axes but the last (time) must agree"
            )
        if stim.dtype != first.dtype or stim.device != first.device:
            raise TypeError(
                f"cannot collate stims of dtype/device {first.dtype}/{first.device} (item 0) and "
                f"{stim.dtype}/{stim.device} (item {b})"
            )
    T = max(stim.shape[-1] for stim in stims)
    out = first.new_zeros((len(stims), *first.shape[:-1], T))
    for b, stim in enumerate(stims):
        out[b, ..., : stim.shape[-1]] = stim
    return out


def neural_collate(batch: Sequence[dict]) -> dict:
    """Collate ragged dataset items into padded tensors (``DataLoader(collate_fn=...)``).

    Parameters
    ----------
    batch : sequence of dict
        Items as returned by ``ds[i]`` for an integer ``i``.

    Returns
    -------
    dict
        * ``'stims'``: ``(B, *stim_shape[:-1], T_max)``, zero-padded on the right.
        * ``'responses'``: ``(B, N_sel, R_max, T_resp_max)``, NaN-filled, each
          ``(R, T)`` response copied into the top-left corner; dtype and device
          of the stims. Sentinels stay all-NaN.
        * ``'valid_mask'``: ``~isnan(responses)``.
        * ``'stim_meta'``: list of ``B`` dicts; any other key: list of values.

    Notes
    -----
    Items with fewer neurons than the widest item are padded with NaN rows.
    Responses of equal shape are copied with one stacked write per item, so
    the cost is about one memory copy of the batch.
    """
    if len(batch) == 0:
        raise ValueError("neural_collate got an empty batch")
    stims = _pad_stims([item["stims"] for item in batch])
    all_responses = [item["responses"] for item in batch]
    n_max = max(len(r) for r in all_responses)
    shapes = [[(t.shape[0], t.shape[-1]) if t.dim() == 2 else (1, t.shape[-1]) for t in r] for r in all_responses]
    R_max = max((rt[0] for r in shapes for rt in r), default=1)
    T_max = max((rt[1] for r in shapes for rt in r), default=1)
    dtype = stims.dtype if stims.is_floating_point() else torch.float32
    device = stims.device
    B = len(batch)
    responses = torch.full((B, n_max, R_max, T_max), math.nan, dtype=dtype, device=device)
    extent = torch.zeros((2, B, n_max), dtype=torch.int64)  # (R, T) written per (item, neuron); 0 = nothing
    nan_inside: list[bool] = []
    for b, (item, cells, cell_shapes) in enumerate(zip(batch, all_responses, shapes)):
        item_mask = item.get("valid_mask")
        real = item_mask.tolist() if item_mask is not None else [True] * len(cells)
        by_T: dict[int, list[int]] = defaultdict(list)
        for n, is_real in enumerate(real):
            if is_real:  # sentinels stay NaN
                by_T[cell_shapes[n][1]].append(n)
        slab = responses[b].view(n_max * R_max, T_max)
        holds_nan = False
        for T, neurons in by_T.items():
            # one concatenation and one indexed write per (item, T), whatever the repeat counts
            repeats = torch.tensor([cell_shapes[n][0] for n in neurons])
            parts = [cells[n] if cells[n].dim() == 2 else cells[n].reshape(cell_shapes[n]) for n in neurons]
            stacked = torch.cat(parts).to(device=device, dtype=dtype)
            first_row = torch.tensor(neurons) * R_max
            rows = (torch.repeat_interleave(first_row, repeats) + _ranks(repeats)).to(device)
            slab[:, :T][rows] = stacked
            index = torch.tensor(neurons)
            extent[0, b, index] = repeats
            extent[1, b, index] = T
            holds_nan = holds_nan or bool(stacked.sum().isnan())
        nan_inside.append(holds_nan)
    # valid = inside the written (R, T) corner, built by broadcasting instead of B*N writes
    extent = extent.to(device)
    valid = (torch.arange(R_max, device=device).view(1, 1, R_max, 1) < extent[0, :, :, None, None]) & (
        torch.arange(T_max, device=device).view(1, 1, 1, T_max) < extent[1, :, :, None, None]
    )
    for b, holds_nan in enumerate(nan_inside):
        if holds_nan:  # NaN inside a real response is not valid either
            valid[b] &= ~torch.isnan(responses[b])
    out: dict[str, Any] = {
        "stims": stims,
        "responses": responses,
        "valid_mask": valid,
        "stim_meta": [item["stim_meta"] for item in batch],
    }
    for key in batch[0]:
        if key not in out:
            out[key] = [item.get(key) for item in batch]
    return out


def _ranks(repeats: Tensor) -> Tensor:
    """``[0..R_0-1, 0..R_1-1, ...]`` for the repeat counts ``repeats``."""
    total = int(repeats.sum())
    starts = torch.repeat_interleave(torch.cumsum(repeats, 0) - repeats, repeats)
    return torch.arange(total) - starts


def fill_missing_data(tensors: Sequence[Tensor], dims: Sequence[int], value: float = 0.0) -> Tensor:
    """Pad ``tensors`` along ``dims`` to their maxima with ``value`` and stack them.

    Parameters
    ----------
    tensors : sequence of Tensor
        Tensors of equal rank.
    dims : sequence of int
        Axes that may differ (negative allowed); every other axis must agree.
    value : float
        Fill value.

    Returns
    -------
    Tensor, shape (len(tensors), *max_shape)
    """
    if not tensors:
        raise ValueError("fill_missing_data needs at least one tensor")
    rank = tensors[0].dim()
    if any(t.dim() != rank for t in tensors):
        raise ValueError("fill_missing_data needs tensors of equal rank")
    dims = {d % rank for d in dims}
    shape = []
    for axis in range(rank):
        sizes = {t.shape[axis] for t in tensors}
        if axis not in dims and len(sizes) > 1:
            raise ValueError(f"axis {axis} differs across tensors ({sorted(sizes)}) but is not in dims")
        shape.append(max(sizes))
    out = tensors[0].new_full((len(tensors), *shape), value)
    for i, t in enumerate(tensors):
        out[(i, *[slice(0, n) for n in t.shape])] = t
    return out


# ------------------------------------------------------------ concatenation
def _common_class(datasets: Sequence[NeuralDataset]) -> type:
    first = type(datasets[0])
    if all(type(d) is first for d in datasets):
        return first
    for cls in first.__mro__:
        if all(isinstance(d, cls) for d in datasets):
            return cls
    raise TypeError("datasets share no common class")  # unreachable for NeuralDatasets


def concat_neural_datasets(datasets: Sequence[NeuralDataset], names: Sequence[str] | None = None) -> NeuralDataset:
    """Concatenate datasets into one with the union of stims and neurons.

    Parameters
    ----------
    datasets : sequence of NeuralDataset
        At least one; all must be compatible (equal ``dt``, and for audio equal
        ``F``, ``audio_fs`` and mode). A single dataset is returned as is.
    names : sequence of str, optional
        Source names written under ``'dataset'`` in every metadata dict (copies;
        the inputs are untouched). Default: the class names.

    Returns
    -------
    NeuralDataset
        Of the most specific class shared by the inputs. Its responses are
        block-diagonal: a stim of source ``k`` has real responses only for the
        neurons of source ``k``; every other pair is a sentinel (each its own
        tensor). The response tensors of the inputs are shared, not copied.
    """
    from ..datasets.neural_dataset import NeuralDataset

    datasets = list(datasets)
    if not datasets:
        raise ValueError("concat_neural_datasets needs at least one dataset")
    for k, d in enumerate(datasets):
        if not isinstance(d, NeuralDataset):
            raise TypeError(f"datasets[{k}] is a {type(d).__name__}, not a NeuralDataset")
    if len(datasets) == 1:
        return datasets[0]
    if names is None:
        names = [type(d).__name__ for d in datasets]
    names = list(names)
    if len(names) != len(datasets):
        raise ValueError(f"names has {len(names)} entries for {len(datasets)} datasets")
    for other in datasets[1:]:
        datasets[0]._concat_check_compat(other)
    cls = _common_class(datasets)
    out = cls.__new__(cls)
    NeuralDataset.__init__(out, "+".join(str(d.path) for d in datasets), datasets[0].dt)
    out._concat_copy_attrs(datasets[0])
    total_N = sum(d.N_neurons for d in datasets)
    first_neuron = 0
    mask_blocks = []
    from ..datasets._storage import make_sentinels

    for d, name in zip(datasets, names):
        N_k = d.N_neurons
        out.stims.extend(d.stims)
        out.stim_meta.extend({**meta, "dataset": name} for meta in d.stim_meta)
        out.nrn_meta.extend({**meta, "dataset": name} for meta in d.nrn_meta)
        before, after = first_neuron, total_N - first_neuron - N_k
        pads = iter(make_sentinels(len(d.responses) * (before + after)))
        for row in d.responses:
            out.responses.append(
                [next(pads) for _ in range(before)] + list(row) + [next(pads) for _ in range(after)]
            )
        block = torch.zeros((len(d.responses), total_N), dtype=torch.bool)
        block[:, first_neuron : first_neuron + N_k] = d.nrn_masks
        mask_blocks.append(block)
        first_neuron += N_k
    out.N_neurons = total_N
    out._set_nrn_masks(torch.cat(mask_blocks, dim=0))
    out.validate()
    return out


def concatenate_datasets(a: NeuralDataset, b: NeuralDataset) -> NeuralDataset:
    """Deprecated alias of ``concat_neural_datasets([a, b])``."""
    warnings.warn(
        "concatenate_datasets(a, b) is deprecated; use concat_neural_datasets([a, b]) or a + b",
        DeprecationWarning,
        stacklevel=2,
    )
    return concat_neural_datasets([a, b])
