"""The storage contract shared by every dataset: the missing-pair sentinel.

A (stim, neuron) pair that was never recorded is stored as a ``(1, 1)`` float
tensor holding NaN. That is the single definition of "missing" used by masks,
normalisation, smoothing, quality metrics and collate. A real response with one
repeat and one bin holding a number is data, not a sentinel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["make_sentinel", "make_sentinels", "is_sentinel", "complete_block", "FlatTensors"]


def make_sentinel(dtype: torch.dtype = torch.float32) -> Tensor:
    """Return a new missing-pair sentinel: a ``(1, 1)`` tensor holding NaN."""
    return torch.full((1, 1), math.nan, dtype=dtype)


def make_sentinels(count: int, dtype: torch.dtype = torch.float32) -> list[Tensor]:
    """Return ``count`` sentinels that do not share memory with each other.

    They are views on one NaN buffer (cheaper than ``count`` allocations), each
    on its own element, so an in-place edit of one never shows in another.
    """
    if count <= 0:
        return []
    return list(torch.full((count, 1, 1), math.nan, dtype=dtype).unbind(0))


def is_sentinel(response: Tensor) -> bool:
    """True iff ``response`` is the missing-pair sentinel (shape ``(1, 1)``, NaN)."""
    return response.numel() == 1 and response.dim() == 2 and bool(torch.isnan(response).item())


def complete_block(response: Tensor) -> Tensor:
    """Largest NaN-free block of a partly NaN ``(R, T)`` response.

    Keeps the repeats holding at least one value, then, among those, the bins
    valid in every kept repeat. Used by statistics that need complete cells
    (signal power, split-half correlations).
    """
    response = response[(~torch.isnan(response)).any(dim=1)]
    return response[:, (~torch.isnan(response)).all(dim=0)]


# --------------------------------------------------------------------------- flat storage
#
# A dataset crosses process boundaries (DataLoader workers, ``pickle``) as a
# handful of flat buffers plus shape tables, never as S x N tensor objects:
# pickling (and unpickling) a tensor object costs microseconds each, and
# ``torch.multiprocessing`` would give every one its own shared-memory segment.


class FlatTensors:
    """A list of ``M`` tensors stored as one flat value buffer per dtype plus tables.

    Attributes
    ----------
    dtypes : list of torch.dtype
        The distinct dtypes, in order of first appearance.
    code : numpy.ndarray or None
        ``(M,)`` uint8 index into ``dtypes`` per tensor (``None`` when there is
        one dtype).
    ndim : numpy.ndarray
        ``(M,)`` number of dimensions per tensor.
    dims : numpy.ndarray
        The shapes of all tensors, concatenated (``ndim.sum()`` entries).
    values : list of Tensor
        One contiguous 1-D tensor per dtype owning exactly its storage: the
        tensors' values back to back, in list order.

    Notes
    -----
    :meth:`unpack` returns contiguous tensors that are views on ``values``
    (distinct elements: no two tensors share memory); runs of consecutive
    tensors of one shape and dtype are made by a single ``unbind``.
    """

    __slots__ = ("dtypes", "code", "ndim", "dims", "values")

    def __init__(self, dtypes, code, ndim, dims, values) -> None:
        self.dtypes = list(dtypes)
        self.code = code
        self.ndim = ndim
        self.dims = dims
        self.values = list(values)

    def __len__(self) -> int:
        return int(self.ndim.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the values (tables excluded)."""
        return sum(v.numel() * v.element_size() for v in self.values)

    # pickling: tables as compact numpy arrays, values as owned tensors
    def __getstate__(self) -> tuple:
        return ([str(d).removeprefix("torch.") for d in self.dtypes], self.code, self.ndim, self.dims, self.values)

    def __setstate__(self, state: tuple) -> None:
        names, self.code, self.ndim, self.dims, self.values = state
        self.dtypes = [getattr(torch, name) for name in names]

    @classmethod
    def pack(cls, tensors: list[Tensor]) -> FlatTensors:
        """Copy ``tensors`` (CPU, no autograd history needed) into flat buffers."""
        import numpy as np

        M = len(tensors)
        dtypes: list[torch.dtype] = []
        codes = None
        first = tensors[0].dtype if M else torch.float32
        if all(t.dtype == first for t in tensors):
            dtypes = [first]
        else:
            index: dict[torch.dtype, int] = {}
            codes = np.fromiter((index.setdefault(t.dtype, len(index)) for t in tensors), dtype=np.uint8, count=M)
            dtypes = list(index)
        shapes = [t.shape for t in tensors]
        ndim = np.fromiter(map(len, shapes), dtype=np.int8, count=M)
        if M and int(ndim.min()) == int(ndim.max()):
            dims = np.asarray(shapes, dtype=np.int64).reshape(-1)
        else:
            dims = np.fromiter((d for shape in shapes for d in shape), dtype=np.int64)
        values = []
        with torch.no_grad():
            for k, dtype in enumerate(dtypes):
                group = tensors if codes is None else [t for t, c in zip(tensors, codes.tolist()) if c == k]
                flat = [t.detach().reshape(-1) for t in group]
                values.append(torch.cat(flat) if flat else torch.empty(0, dtype=dtype))
        if int(dims.max(initial=0)) < 2**31:
            dims = dims.astype(np.int32)
        return cls(dtypes, codes, ndim, dims, values)

    def unpack(self) -> list[Tensor]:
        """Rebuild the tensors as views on ``values``."""
        import numpy as np

        M = len(self)
        if M == 0:
            return []
        ndim = self.ndim.astype(np.int64)
        dims = self.dims.astype(np.int64)
        code = np.zeros(M, dtype=np.int64) if self.code is None else self.code.astype(np.int64)
        same_ndim = int(ndim.min()) == int(ndim.max())
        if same_ndim:
            k = int(ndim[0])
            shape_rows = dims.reshape(M, k)
            numel = shape_rows.prod(axis=1) if k else np.ones(M, dtype=np.int64)
        else:
            ends = np.cumsum(ndim)
            numel = np.array([int(np.prod(dims[e - d:e])) for e, d in zip(ends.tolist(), ndim.tolist())], dtype=np.int64)
        # offset of each tensor inside its dtype's buffer
        offsets = np.zeros(M, dtype=np.int64)
        for c in range(len(self.dtypes)):
            where = np.flatnonzero(code == c)
            offsets[where] = np.cumsum(numel[where]) - numel[where]
            if int(numel[where].sum()) != self.values[c].numel():
                raise ValueError("flat storage tables disagree with the value buffer")
        out: list[Tensor | None] = [None] * M
        if same_ndim:
            # consecutive tensors of one dtype and shape whose values follow each other
            change = np.ones(M, dtype=bool)
            if M > 1:
                change[1:] = (code[1:] != code[:-1]) | (shape_rows[1:] != shape_rows[:-1]).any(axis=1) | (
                    offsets[1:] != offsets[:-1] + numel[:-1]
                )
            starts = np.flatnonzero(change)
            lengths = np.diff(np.append(starts, M))
            for a, n in zip(starts.tolist(), lengths.tolist()):
                shape = shape_rows[a].tolist()
                buf = self.values[int(code[a])]
                if n == 1:
                    out[a] = buf.as_strided(shape, _contiguous_strides(shape), int(offsets[a]) + buf.storage_offset())
                else:
                    out[a:a + n] = buf.narrow(0, int(offsets[a]), n * int(numel[a])).view([n, *shape]).unbind(0)
        else:
            ends = np.cumsum(ndim).tolist()
            for i in range(M):
                shape = dims[ends[i] - int(ndim[i]):ends[i]].tolist()
                out[i] = self.values[int(code[i])].narrow(0, int(offsets[i]), int(numel[i])).view(shape)
        return out  # type: ignore[return-value]


def _contiguous_strides(shape: list[int]) -> list[int]:
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * max(1, shape[i + 1])
    return strides
