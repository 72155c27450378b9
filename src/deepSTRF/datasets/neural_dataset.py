"""``NeuralDataset``: the triply ragged base class every dataset builds on.

Storage contract (see ``docs/data_paradigm.md``):

* ``stims``: list of ``S`` tensors, time on the last axis (spectrogram
  ``(1, F, T_s)``, waveform ``(1, T_audio)``, video ``(C, H, W, T_s)``). No NaN.
* ``responses``: list of ``S`` lists of ``N`` tensors; ``responses[s][n]`` is
  ``(R[s][n], T_s)`` (repeat x bin) or the missing-pair sentinel, a ``(1, 1)``
  tensor holding NaN.
* ``stim_meta`` (``S`` dicts), ``nrn_meta`` (``N`` dicts), ``N_neurons``, ``dt``
  (bin width in ms).
* Selection state: ``I`` (neuron indices, ``[]`` = no restriction) and
  ``S_sel`` (stim indices, ``None`` = no restriction).

Everything derived from these (the ``(S, N)`` mask, the visible neurons, the
iterable stims) is computed once and cached until the selection or the
responses change, so ``len(ds)`` and ``ds[i]`` cost O(selected neurons).
"""

from __future__ import annotations

import math
import operator
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._errors import DatasetFormatError
from ._storage import complete_block

if TYPE_CHECKING:
    from ._cache import Payload

__all__ = ["NeuralDataset"]


def _as_index(value: Any, name: str) -> int:
    """Convert an integer-like value (int, numpy integer, integer 0-d tensor) to int."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer index, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer index, got {type(value).__name__} {value!r}") from None


def _check_range(index: int, size: int, name: str, what: str) -> int:
    if not 0 <= index < size:
        raise IndexError(f"{name}={index} is out of range: valid {what} indices are 0..{size - 1} ({size} in total)")
    return index


def _matches(predicate: Callable[[dict], Any], meta: dict) -> bool:
    try:
        return bool(predicate(meta))
    except (KeyError, TypeError):
        return False


_UNSET = object()


class NeuralDataset(Dataset):
    """Base class for datasets of sensory neural responses.

    Parameters
    ----------
    path : str
        Folder holding the raw data (informational; recorded as ``self.path``).
    dt_ms : float
        Width of one response bin, in milliseconds.

    Notes
    -----
    A subclass fills ``stims``, ``responses``, ``stim_meta``, ``nrn_meta`` and
    ``N_neurons`` in its ``__init__`` and calls ``self.validate()`` last. Code
    that replaces a real response by a sentinel (or the reverse) after
    construction must call ``self._invalidate_nrn_masks()``.

    Deliberate differences from deepSTRF 0.1.0, each pinned by a test:

    * "missing" means exactly the ``(1, 1)`` NaN sentinel everywhere; a real
      ``(1, 1)`` response holding a number is data;
    * a neuron or stim filter that matches nothing gives an empty selection
      (``len(ds) == 0``) and a ``UserWarning``, never the whole population;
    * ``get_nrn_meta()`` returns the metadata of the neurons the items carry
      (all of them when nothing is selected);
    * indices may be numpy integers or integer 0-d tensors; user-facing checks
      raise ``IndexError``/``TypeError``/``ValueError``, never ``assert``;
    * ``smooth_responses`` uses a unit-gain Hann kernel (see its docstring);
    * ``compute_neuron_quality`` skips undefined split-half correlations and
      samples distinct random half-splits (seeded) when there are too many.
    """

    def __init__(self, path: str, dt_ms: float) -> None:
        self.path = path
        self.dt = dt_ms
        self.stims: list[Tensor] = []
        self.responses: list[list[Tensor]] = []
        self.stim_meta: list[dict] = []
        self.nrn_meta: list[dict] = []
        self.N_neurons = 0
        self._I: list[int] = []
        self._pop_empty = False
        self._S_sel: list[int] | None = None
        self._mask_cache: Tensor | None = None
        self._view_cache: tuple | None = None
        self._cache_origin: _CacheOrigin | None = None

    # ------------------------------------------------------------------ state
    @property
    def I(self) -> list[int]:  # noqa: E743 - public name fixed by the API
        """Selected neuron indices; ``[]`` means no restriction (all neurons)."""
        return self._I

    @I.setter
    def I(self, value: Iterable[int]) -> None:  # noqa: E743
        self._I = list(value)
        self._pop_empty = False
        self._view_cache = None

    @property
    def S_sel(self) -> list[int] | None:
        """Selected stim indices; ``None`` = no restriction, ``[]`` = nothing."""
        return self._S_sel

    @S_sel.setter
    def S_sel(self, value: Iterable[int] | None) -> None:
        self._S_sel = None if value is None else list(value)
        self._view_cache = None

    # -------------------------------------------------------------- pickling
    def __getstate__(self) -> dict:
        """State for ``pickle`` (DataLoader workers, ``torch.multiprocessing``, ``copy.deepcopy``).

        The tensors never travel as ``S x N`` tensor objects. A side (stims,
        responses) that is still the unmodified set of views of the processed
        cache file it was loaded from is sent as a reference to that file (path,
        identity, header checksum), and the receiving process maps the file
        again; any other side is sent flat (one value buffer per dtype plus
        shape tables, :class:`~deepSTRF.datasets._storage.FlatTensors`). The
        selection, the mask, the normalisation records and the metadata travel
        as they are.
        """
        state = self.__dict__.copy()
        for key in ("stims", "responses", "_view_cache", "_mask_cache", "_cache_origin"):
            state.pop(key, None)
        packed = _pack_storage(self)
        state["_packed"] = packed
        _keep_alive_while_spawning(packed)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        packed = state.pop("_packed", None)
        self.__dict__.update(state)
        self._view_cache = None
        self._cache_origin = None
        if packed is None:  # a state without packed storage: tensors are in it as lists
            self.__dict__.setdefault("_mask_cache", None)
            return
        _unpack_storage(self, packed)

    # -------------------------------------------------------------- accessors
    def get_S(self) -> int:
        """Number of stimuli in the dataset (ignores the selection)."""
        return len(self.stim_meta)

    def get_N(self) -> int:
        """Size of the whole neural population (ignores the selection)."""
        return self.N_neurons

    def get_nrn_meta(self) -> list[dict]:
        """Metadata of the neurons carried by the items, in item order.

        These are the neurons of the current selection that have at least one
        real response on the selected stims: ``len(ds.get_nrn_meta())`` equals
        ``len(ds[i]['responses'])``. All neurons when nothing is selected.
        """
        sel = self._view()[0]
        return [self.nrn_meta[n] for n in sel]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(N_neurons={self.N_neurons}, selected={len(self._I)}, "
            f"N_stims={self.get_S()}, dt_ms={self.dt})"
        )

    # ------------------------------------------------------------------ masks
    @property
    def nrn_masks(self) -> Tensor:
        """``(S, N)`` bool tensor: ``True`` iff neuron ``n`` has real data for stim ``s``.

        Derived from the sentinels in ``responses`` on first access and cached.
        Call ``_invalidate_nrn_masks()`` after swapping a real response and a
        sentinel. Shape-preserving edits (smoothing, normalisation) need not.
        """
        if self._mask_cache is None:
            self._mask_cache = self._compute_masks()
        return self._mask_cache

    def _compute_masks(self) -> Tensor:
        S, N = len(self.responses), self.N_neurons
        if S == 0:
            return torch.zeros((0, N), dtype=torch.bool)
        numel = Tensor.numel
        sizes = [list(map(numel, row)) for row in self.responses]
        if any(len(row) != N for row in sizes):
            raise DatasetFormatError(
                f"{type(self).__name__}.responses", "row lengths", f"rows of unequal length or != N_neurons={N}",
                "every responses[s] to hold N_neurons tensors",
            )
        mask = torch.tensor(sizes, dtype=torch.int64).reshape(S, N) != 1
        singles = (~mask).nonzero()
        if len(singles):
            pairs = singles.tolist()
            cells = [self.responses[s][n] for s, n in pairs]
            try:
                values = torch.cat(cells)  # succeeds as (k, 1) only if every cell is (1, 1)
            except (RuntimeError, TypeError):
                values = None
            if values is not None and values.dim() == 2:
                mask[singles[:, 0], singles[:, 1]] = ~torch.isnan(values[:, 0])
            else:
                for (s, n), t in zip(pairs, cells):
                    mask[s, n] = t.dim() != 2 or not math.isnan(float(t.reshape(-1)[0]))
        return mask

    def _set_nrn_masks(self, mask: Tensor) -> None:
        """Hand over a mask the loader already knows (saves the scan)."""
        mask = torch.as_tensor(mask, dtype=torch.bool)
        expected = (len(self.responses), self.N_neurons)
        if tuple(mask.shape) != expected:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected (S, N) = {expected}")
        self._mask_cache = mask
        self._view_cache = None

    #: Bump in a loader whenever its parsing changes, so stale caches are rebuilt.
    FORMAT_VERSION: int = 1

    def _load_or_build(
        self,
        build: Callable[[], Any],
        *,
        params: dict,
        raw_files: Iterable[Any],
        cache: bool = True,
        name: str | None = None,
    ) -> None:
        """Fill the storage from the processed cache, or build it with ``build`` and cache it.

        Parameters
        ----------
        build : callable
            Parses the raw files; returns a :class:`deepSTRF.datasets._cache.Payload`
            (stims, responses, stim_meta, nrn_meta, attrs, optional mask).
        params : dict
            Every constructor argument that changes the content (JSON-able).
        raw_files : iterable of path
            The raw files read by ``build``; their size and mtime enter the key.
        cache : bool
            ``False`` always builds and writes nothing.
        name : str, optional
            Dataset name used in the cache file name (default: the class name).

        Notes
        -----
        The key covers the class, ``FORMAT_VERSION``, ``params`` and the raw
        files, so a change to any of them rebuilds. Attributes in
        ``payload.attrs`` (``dt``, ``F``, ``audio_fs`` ...) are set on ``self``.
        """
        from ._cache import load_or_build

        cls = type(self)
        payload = load_or_build(
            name or cls.__name__,
            f"{cls.__module__}.{cls.__qualname__}",
            cls.FORMAT_VERSION,
            params,
            raw_files,
            build,
            enabled=cache,
        )
        self.stims = list(payload.stims)
        self.responses = [list(row) for row in payload.responses]
        self._cache_origin = _CacheOrigin.of(payload)
        # consumed by the next validate(): skip the per-cell checks these exact bytes already passed,
        # or record that they pass
        self._cells_checked_once = payload.cells_checked
        self._cells_to_record = None if payload.cells_checked else payload.source
        self.stim_meta = list(payload.stim_meta)
        self.nrn_meta = list(payload.nrn_meta)
        self.N_neurons = len(self.nrn_meta)
        for key, value in payload.attrs.items():
            setattr(self, key, value)
        if payload.mask is not None:
            self._set_nrn_masks(payload.mask)
        else:
            self._invalidate_nrn_masks()

    @contextmanager
    def _holding_built(self, payload: Payload) -> Iterator[None]:
        """Make a freshly built payload this dataset's storage inside the block, then put back what was there.

        Lets a build function run whole-dataset methods (``smooth_responses``,
        quality statistics) so that the cache stores their result, without
        keeping references that would stop the cache from freeing the parsed
        tensors once it has written them.

        Parameters
        ----------
        payload : Payload
            The parsed lists and their ``(S, N)`` mask (``None``: derived from
            the sentinels). On leaving the block it holds the lists as the
            methods left them; ``stims``, ``responses``, ``stim_meta``,
            ``nrn_meta``, ``N_neurons`` and the mask of ``self`` are restored.
        """
        saved = (self.stims, self.responses, self.stim_meta, self.nrn_meta, self.N_neurons,
                 self._mask_cache, self._view_cache)
        self.stims, self.responses = payload.stims, payload.responses
        self.stim_meta, self.nrn_meta = payload.stim_meta, payload.nrn_meta
        self.N_neurons = len(payload.nrn_meta)
        if payload.mask is None:
            self._invalidate_nrn_masks()
        else:
            self._set_nrn_masks(payload.mask)
        try:
            yield
            payload.stims, payload.responses = self.stims, self.responses
            payload.stim_meta, payload.nrn_meta = self.stim_meta, self.nrn_meta
        finally:
            (self.stims, self.responses, self.stim_meta, self.nrn_meta, self.N_neurons,
             self._mask_cache, self._view_cache) = saved

    def _smooth_built(self, payload: Payload, window_ms: float = 21.0) -> Payload:
        """Apply :meth:`smooth_responses` to a freshly built payload, so that the cache holds smoothed values.

        Parameters
        ----------
        payload : Payload
            Parsed lists (see :meth:`_holding_built`); smoothed in place.
        window_ms : float, default 21.0
            Hann window width, ms.

        Returns
        -------
        Payload
            ``payload``; ``self`` is left as it was.
        """
        with self._holding_built(payload):
            self.smooth_responses(window_ms)
        return payload

    def _invalidate_nrn_masks(self) -> None:
        """Drop the cached mask and every selection view derived from it."""
        self._mask_cache = None
        self._view_cache = None

    # -------------------------------------------------------------- selection
    def _selection_key(self) -> tuple:
        return (tuple(self._I), self._pop_empty, None if self._S_sel is None else tuple(self._S_sel))

    def _view(self) -> tuple[list[int], list[int], Tensor]:
        """Return ``(sel, iter_idx, sub_mask)`` for the current selection.

        ``sel`` lists the neurons an item carries, ``iter_idx`` the stims that
        ``__getitem__`` visits (ascending), ``sub_mask`` is ``nrn_masks[:, sel]``.
        Cached until the selection or the mask changes.
        """
        key = self._selection_key()
        cached = self._view_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        masks = self.nrn_masks
        S = masks.shape[0]
        if self._pop_empty:
            base: list[int] = []
        elif self._I:
            base = list(self._I)
        else:
            base = list(range(self.N_neurons))
        if self._S_sel is None:
            sel = base
        elif not self._S_sel or not base:
            sel = []
        else:
            stim_rows = masks[torch.tensor(sorted(set(self._S_sel)), dtype=torch.long)]
            heard = stim_rows.any(dim=0).tolist()
            sel = [n for n in base if heard[n]]
        if sel and S:
            sub_mask = masks[:, torch.tensor(sel, dtype=torch.long)]
            candidates = sub_mask.any(dim=1).nonzero().flatten().tolist()
            if self._S_sel is not None:
                chosen = set(self._S_sel)
                candidates = [s for s in candidates if s in chosen]
            iter_idx = candidates
        else:
            sub_mask = torch.zeros((S, len(sel)), dtype=torch.bool)
            iter_idx = []
        picker: Callable[[list[Tensor]], Any]
        if len(sel) == 1:
            only = sel[0]
            picker = lambda row: [row[only]]  # noqa: E731
        elif sel:
            getter = operator.itemgetter(*sel)
            picker = lambda row: list(getter(row))  # noqa: E731
        else:
            picker = lambda row: []  # noqa: E731
        view = (sel, iter_idx, sub_mask, picker)
        self._view_cache = (key, view)
        return view

    def _warn_empty(self, what: str) -> None:
        warnings.warn(
            f"{what} matched nothing: the selection is now empty (len(ds) == 0). "
            "Call reset_pop_selection()/reset_stim_selection() to see everything again.",
            UserWarning,
            stacklevel=3,
        )

    def _set_population(self, indices: list[int], what: str) -> list[int]:
        self._I = indices
        self._pop_empty = not indices
        self._view_cache = None
        if not indices:
            self._warn_empty(what)
        return indices

    def _set_stims(self, indices: list[int], what: str) -> list[int]:
        self._S_sel = indices
        self._view_cache = None
        if not indices:
            self._warn_empty(what)
        return indices

    def select_neuron(self, neuron_index: int) -> None:
        """Restrict the items to one neuron.

        Parameters
        ----------
        neuron_index : int
            Index into the full population, in ``[0, N_neurons)``.
        """
        n = _check_range(_as_index(neuron_index, "neuron_index"), self.N_neurons, "neuron_index", "neuron")
        self._set_population([n], "select_neuron")

    def select_population(self, neuron_indices: Iterable[int]) -> None:
        """Restrict the items to the listed neurons (order and duplicates kept).

        Parameters
        ----------
        neuron_indices : sequence of int
            Indices into the full population, each in ``[0, N_neurons)``. An
            empty sequence selects nobody (with a ``UserWarning``).
        """
        if isinstance(neuron_indices, Tensor):
            neuron_indices = neuron_indices.tolist()
        indices = [
            _check_range(_as_index(n, "neuron_indices[i]"), self.N_neurons, f"neuron_indices[{i}]", "neuron")
            for i, n in enumerate(neuron_indices)
        ]
        self._set_population(indices, "select_population([])")

    def select_pop_by_nrn_attr(self, attribute_name: str, value: Any) -> list[int]:
        """Select neurons whose ``nrn_meta[attribute_name] == value``.

        Neurons without ``attribute_name`` never match, so one call works on a
        concatenation of datasets with different metadata keys.

        Returns
        -------
        list of int
            The selected neuron indices (also stored in ``self.I``).
        """
        indices = [n for n, meta in enumerate(self.nrn_meta) if attribute_name in meta and meta[attribute_name] == value]
        return self._set_population(indices, f"select_pop_by_nrn_attr({attribute_name!r}, {value!r})")

    def select_pop_by_nrn_predicate(self, predicate: Callable[[dict], Any]) -> list[int]:
        """Select neurons whose metadata dict satisfies ``predicate``.

        A ``KeyError`` or ``TypeError`` raised by ``predicate`` counts as "no"
        (so ``lambda m: m['snr'] > 0.5`` skips neurons without ``'snr'``); any
        other exception propagates and leaves the selection unchanged.

        Returns
        -------
        list of int
            The selected neuron indices (also stored in ``self.I``).
        """
        indices = [n for n, meta in enumerate(self.nrn_meta) if _matches(predicate, meta)]
        return self._set_population(indices, "select_pop_by_nrn_predicate")

    def _neurons_heard(self, stim_indices: list[int]) -> list[int]:
        if not stim_indices:
            return []
        rows = self.nrn_masks[torch.tensor(stim_indices, dtype=torch.long)]
        return rows.any(dim=0).nonzero().flatten().tolist()

    def select_pop_by_stim_attr(self, attribute_name: str, value: Any) -> list[int]:
        """Select the neurons with a real response to at least one matching stim.

        Stims are matched on ``stim_meta[attribute_name] == value`` (stims
        without the key never match). The stim selection is not changed.

        Returns
        -------
        list of int
            Ascending neuron indices (also stored in ``self.I``).
        """
        stims = [s for s, meta in enumerate(self.stim_meta) if attribute_name in meta and meta[attribute_name] == value]
        return self._set_population(
            self._neurons_heard(stims), f"select_pop_by_stim_attr({attribute_name!r}, {value!r})"
        )

    def select_pop_by_stim_predicate(self, predicate: Callable[[dict], Any]) -> list[int]:
        """Select the neurons with a real response to a stim satisfying ``predicate``.

        ``KeyError``/``TypeError`` raised by ``predicate`` count as "no".

        Returns
        -------
        list of int
            Ascending neuron indices (also stored in ``self.I``).
        """
        stims = [s for s, meta in enumerate(self.stim_meta) if _matches(predicate, meta)]
        return self._set_population(self._neurons_heard(stims), "select_pop_by_stim_predicate")

    def select_stim(self, stim_index: int) -> None:
        """Restrict iteration to one stim, index in ``[0, S)``."""
        s = _check_range(_as_index(stim_index, "stim_index"), self.get_S(), "stim_index", "stim")
        self._set_stims([s], "select_stim")

    def select_stims(self, stim_indices: Iterable[int]) -> None:
        """Restrict iteration to the listed stims (each in ``[0, S)``).

        Items are always visited in ascending stim order; duplicates are
        visited once. An empty sequence selects nothing (with a warning).
        """
        if isinstance(stim_indices, Tensor):
            stim_indices = stim_indices.tolist()
        S = self.get_S()
        indices = [
            _check_range(_as_index(s, "stim_indices[i]"), S, f"stim_indices[{i}]", "stim")
            for i, s in enumerate(stim_indices)
        ]
        self._set_stims(indices, "select_stims([])")

    def select_stims_by_attr(self, attribute_name: str, value: Any) -> list[int]:
        """Restrict iteration to stims with ``stim_meta[attribute_name] == value``.

        Returns
        -------
        list of int
            Ascending stim indices (also stored in ``self.S_sel``).
        """
        stims = [s for s, meta in enumerate(self.stim_meta) if attribute_name in meta and meta[attribute_name] == value]
        return self._set_stims(stims, f"select_stims_by_attr({attribute_name!r}, {value!r})")

    def select_stims_by_predicate(self, predicate: Callable[[dict], Any]) -> list[int]:
        """Restrict iteration to stims whose metadata satisfies ``predicate``.

        ``KeyError``/``TypeError`` raised by ``predicate`` count as "no".

        Returns
        -------
        list of int
            Ascending stim indices (also stored in ``self.S_sel``).
        """
        stims = [s for s, meta in enumerate(self.stim_meta) if _matches(predicate, meta)]
        return self._set_stims(stims, "select_stims_by_predicate")

    def reset_pop_selection(self) -> None:
        """Make every neuron eligible again (``I = []``)."""
        self._I = []
        self._pop_empty = False
        self._view_cache = None

    def reset_stim_selection(self) -> None:
        """Make every stim eligible again (``S_sel = None``)."""
        self._S_sel = None
        self._view_cache = None

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self._view()[1])

    def _item(self, s: int, sel_row: Tensor, picker: Callable) -> dict:
        return {
            "stims": self.stims[s],
            "responses": picker(self.responses[s]),
            "valid_mask": sel_row.clone(),
            "stim_meta": self.stim_meta[s],
        }

    def __getitem__(self, idx: Any) -> dict:
        """Return one item (int index) or a batch dict of lists (slice / list of ints).

        Indices address the iterable stims of the current selection, not the raw
        stim list. An item is ``{'stims': Tensor, 'responses': list[Tensor],
        'valid_mask': BoolTensor (n_sel,), 'stim_meta': dict}``.
        """
        _, iter_idx, sub_mask, picker = self._view()
        length = len(iter_idx)
        if isinstance(idx, slice):
            positions: list[int] = list(range(*idx.indices(length)))
        elif isinstance(idx, (list, tuple)) or (isinstance(idx, Tensor) and idx.dim() == 1):
            positions = []
            for k in (idx.tolist() if isinstance(idx, Tensor) else idx):
                p = _as_index(k, "index")
                if not -length <= p < length:
                    raise IndexError(f"index {p} is out of range for a dataset of length {length}")
                positions.append(p % length)
        else:
            try:
                p = _as_index(idx, "index")
            except TypeError:
                raise TypeError(
                    f"dataset indices must be integers, slices or lists of integers, got {type(idx).__name__}"
                ) from None
            if not -length <= p < length:
                raise IndexError(f"index {p} is out of range for a dataset of length {length}")
            s = iter_idx[p]
            return self._item(s, sub_mask[s], picker)
        items = [self._item(iter_idx[p], sub_mask[iter_idx[p]], picker) for p in positions]
        return {key: [item[key] for item in items] for key in ("stims", "responses", "valid_mask", "stim_meta")}

    # ---------------------------------------------------------- preprocessing
    def _stim_subset(self, stim_indices: Sequence[int] | None, name: str = "stim_indices") -> list[int]:
        S = self.get_S()
        if stim_indices is None:
            return list(range(S))
        if isinstance(stim_indices, Tensor):
            stim_indices = stim_indices.tolist()
        return [
            _check_range(_as_index(s, name), S, f"{name}[{i}]", "stim") for i, s in enumerate(stim_indices)
        ]

    def standardize_stims(
        self, stim_indices: Sequence[int] | None = None, per_band: bool = True, eps: float = 1e-8
    ) -> dict:
        """Standardise every stim in place, ``(x - mean) / std``, with statistics of a subset.

        Parameters
        ----------
        stim_indices : sequence of int, optional
            Stims whose values give the statistics (typically train + validation);
            all stims when ``None``. Every stim is transformed.
        per_band : bool, default True
            Statistics per index of axis -2 (per frequency band for a
            ``(1, F, T)`` spectrogram: shape ``(1, F, 1)``); a single scalar
            mean and std when False.
        eps : float, default 1e-8
            Floor on the (unbiased) standard deviation.

        Returns
        -------
        dict
            ``{'mean', 'std', 'per_band', 'stim_indices'}``, also stored as
            ``self.stim_normalization``. Not idempotent.
        """
        indices = self._stim_subset(stim_indices)
        if not indices:
            raise ValueError("standardize_stims needs at least one stim to compute statistics (stim_indices is empty)")
        X = torch.cat([self.stims[s] for s in indices], dim=-1)
        if per_band:
            if X.dim() < 2:
                raise ValueError(f"per_band=True needs stims with at least 2 axes, got shape {tuple(X.shape)}")
            axes = [a for a in range(X.dim()) if a != X.dim() - 2]
            mean = X.mean(dim=axes, keepdim=True)
            std = X.std(dim=axes, keepdim=True).clamp_min(eps)
        else:
            mean = X.mean()
            std = X.std().clamp_min(eps)
        self.stims = [(x - mean) / std for x in self.stims]
        record = {
            "mean": mean.clone(),
            "std": std.clone(),
            "per_band": per_band,
            "stim_indices": None if stim_indices is None else list(indices),
        }
        self.stim_normalization = record
        return record

    def _real_cells(self, stims: Iterable[int]) -> Iterable[tuple[int, list[int]]]:
        masks = self.nrn_masks
        for s in stims:
            yield s, masks[s].nonzero().flatten().tolist()

    def normalize_responses(
        self, method: str = "max", stim_indices: Sequence[int] | None = None, eps: float = 1e-8
    ) -> dict:
        """Normalise every neuron's responses in place with statistics of a stim subset.

        Parameters
        ----------
        method : {'max', 'zscore'}
            ``'max'``: divide by ``max |x|``. ``'zscore'``: subtract the mean and
            divide by the unbiased std. Both ignore NaN and sentinels.
        stim_indices : sequence of int, optional
            Stims giving the statistics (all when ``None``); every stim is
            transformed. A neuron with fewer than 2 valid values there keeps
            ``offset = 0``, ``scale = 1``.
        eps : float
            Floor on ``scale``.

        Returns
        -------
        dict
            ``{'method', 'scale': Tensor[N], 'offset': Tensor[N], 'stim_indices'}``,
            also stored as ``self.response_normalization``. Not idempotent.
        """
        if method not in ("max", "zscore"):
            raise ValueError(f"method must be 'max' or 'zscore', got {method!r}")
        N = self.N_neurons
        stats = self._stim_subset(stim_indices)  # a duplicated stim counts twice
        # Per-row count / mean / sum of squared deviations, merged per neuron with
        # the parallel-variance formula: one pass, stable, no per-element scatter.
        # Each stim's responses are stacked once; the stacks are the new storage
        # (transformed in place), so the data is copied exactly once.
        count = torch.zeros(N, dtype=torch.float64)
        total = torch.zeros(N, dtype=torch.float64)
        spread = torch.zeros(N, dtype=torch.float64)
        peak = torch.zeros(N, dtype=torch.float64)
        row_stats: list[tuple[Tensor, Tensor, Tensor]] = []
        stacks: dict[int, tuple[Tensor, Tensor, list[int]]] = {}

        def stack(s: int, neurons: list[int]) -> tuple[Tensor, Tensor, list[int]]:
            if s not in stacks:
                stacks[s] = (*self._stack_stim(s, neurons), neurons)
                self._release_cache_pages(s, neurons)
            return stacks[s]

        for s, neurons in self._real_cells(stats):
            if not neurons:
                continue
            x, owner, _ = stack(s, neurons)
            if bool(x.sum().isnan()):  # cheaper than isnan().any(); inf - inf also lands here, harmlessly
                x64 = x.to(torch.float64)
                valid = ~torch.isnan(x64)
                n_valid = valid.sum(dim=1).to(torch.float64)
                x0 = torch.where(valid, x64, torch.zeros((), dtype=x64.dtype))
                row_sum = x0.sum(dim=1)
                row_mean = row_sum / n_valid.clamp_min(1)
                row_peak = x0.abs().amax(dim=1)
                row_spread = torch.where(valid, x64 - row_mean[:, None], torch.zeros((), dtype=x64.dtype))
                row_spread = (row_spread**2).sum(dim=1)
            else:
                n_valid = torch.full((x.shape[0],), float(x.shape[1]), dtype=torch.float64)
                if method == "max":
                    low, high = torch.aminmax(x, dim=1)
                    row_peak = torch.maximum(low.abs(), high.abs()).to(torch.float64)
                else:
                    # plain reductions: torch.var_mean along rows is ~30x slower on CPU
                    mean_ = x.sum(dim=1) / x.shape[1]
                    deviation = x - mean_.unsqueeze(1)
                    row_mean = mean_.to(torch.float64)
                    row_sum = row_mean * n_valid
                    row_spread = (deviation * deviation).sum(dim=1).to(torch.float64)
            count.index_add_(0, owner, n_valid)
            if method == "max":
                peak.scatter_reduce_(0, owner, row_peak, reduce="amax")
            else:
                total.index_add_(0, owner, row_sum)
                spread.index_add_(0, owner, row_spread)
                row_stats.append((owner, n_valid, row_mean))
        enough = count >= 2
        offset = torch.zeros(N, dtype=torch.float64)
        scale = torch.ones(N, dtype=torch.float64)
        if method == "max":
            scale = torch.where(enough, peak.clamp_min(eps), scale)
        else:
            mean = total / count.clamp_min(1)
            for owner, n_valid, row_mean in row_stats:
                spread.index_add_(0, owner, n_valid * (row_mean - mean[owner]) ** 2)
            std = (spread / (count - 1).clamp_min(1)).sqrt()
            offset = torch.where(enough, mean, offset)
            scale = torch.where(enough, std.clamp_min(eps), scale)
        offset32, scale32 = offset.float(), scale.float()
        for s, neurons in self._real_cells(range(self.get_S())):
            if not neurons:
                continue
            x, owner, _ = stack(s, neurons)
            stacks.pop(s, None)
            if x.data_ptr() == self.responses[s][neurons[0]].data_ptr() and len(neurons) == 1:
                x = x.clone()  # a single cell is not copied by the stacking
            if method == "zscore":
                x.sub_(offset32.to(x.dtype)[owner].unsqueeze(1))
            x.div_(scale32.to(x.dtype)[owner].unsqueeze(1))
            row = self.responses[s]
            for n, piece in zip(neurons, torch.split(x, [row[n].shape[0] for n in neurons], dim=0)):
                row[n] = piece
        record = {
            "method": method,
            "scale": scale32,
            "offset": offset32,
            "stim_indices": None if stim_indices is None else stats,
        }
        self.response_normalization = record
        return record

    def _release_cache_pages(self, s: int, neurons: list[int]) -> None:
        """Let the OS reclaim the cache-file pages under ``responses[s][neurons]`` (their values were copied).

        Only for a dataset loaded from the processed cache; a hint that never
        loses data (see :func:`~deepSTRF.datasets._cache.release_mapped_pages`).
        Keeps a whole-dataset transform near one copy of the responses in memory
        instead of the mapped file plus the copy.
        """
        origin = self._cache_origin
        if origin is not None and origin.bases[1] is not None:
            from ._cache import release_mapped_pages

            row = self.responses[s]
            release_mapped_pages([row[n] for n in neurons], origin.bases[1])

    def _stack_stim(self, s: int, neurons: list[int]) -> tuple[Tensor, Tensor]:
        """Stack the real responses of stim ``s`` along repeats: ``(sum_n R[s][n], T_s)``.

        Returns the stacked values and the neuron index of each row.
        """
        row = self.responses[s]
        cells = [row[n] for n in neurons]
        T = cells[0].shape[-1]
        if any(c.dim() != 2 or c.shape[-1] != T for c in cells):
            raise DatasetFormatError(
                f"{type(self).__name__}.responses[{s}]", "shape", "responses of unequal T or rank",
                "every real response of a stim to be (R, T_s) with a common T_s (run validate())",
            )
        repeats = torch.tensor([c.shape[0] for c in cells])
        owner = torch.repeat_interleave(torch.tensor(neurons, dtype=torch.long), repeats)
        return torch.cat(cells, dim=0), owner

    def _map_real_cells(self, fn: Callable[[Tensor, Tensor], Tensor], stims: Iterable[int] | None = None) -> None:
        """Replace the real responses of each stim by ``fn`` applied to all of them at once.

        ``fn(values, neuron_of_row)`` receives the stim's real responses stacked
        along the repeat axis, ``(sum_n R[s][n], T_s)``, and the neuron index of
        each row as a ``(rows, 1)`` tensor; it returns ``(sum_n R[s][n], T')``
        (same rows, the number of bins may change). The new responses are views
        on that result; sentinels are not touched.

        Parameters
        ----------
        fn : callable
            The transform.
        stims : iterable of int, optional
            Stims to transform (all when ``None``).
        """
        for s, neurons in self._real_cells(range(self.get_S()) if stims is None else stims):
            if not neurons:
                continue
            row = self.responses[s]
            stacked, owner = self._stack_stim(s, neurons)
            self._release_cache_pages(s, neurons)
            result = fn(stacked, owner.unsqueeze(1))
            for n, piece in zip(neurons, torch.split(result, [row[n].shape[0] for n in neurons], dim=0)):
                row[n] = piece

    def _cell_batches(self, max_elements: int = 2_000_000) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Yield the real cells grouped by shape: ``(x, stim_index, neuron_index)``.

        ``x`` is ``(M, R, T)`` (cells of equal shape stacked, at most about
        ``max_elements`` values per batch), ``stim_index`` and ``neuron_index``
        are ``(M,)`` long tensors. A response holding NaN entries is reduced to
        its NaN-free block first (:func:`~deepSTRF.datasets._storage.complete_block`).
        Whole-dataset statistics use this to run a few large tensor ops instead
        of S x N tiny ones.
        """
        groups: dict[tuple[int, int], tuple[list[Tensor], list[int], list[int]]] = defaultdict(lambda: ([], [], []))
        for s, neurons in self._real_cells(range(self.get_S())):
            row = self.responses[s]
            for n in neurons:
                cell = row[n]
                if cell.dim() != 2:
                    continue
                if torch.isnan(cell).any():
                    cell = complete_block(cell)
                bucket = groups[tuple(cell.shape)]
                bucket[0].append(cell)
                bucket[1].append(s)
                bucket[2].append(n)
        for (R, T), (cells, stim_index, neuron_index) in groups.items():
            chunk = max(1, max_elements // max(1, R * T))
            for start in range(0, len(cells), chunk):
                stop = start + chunk
                yield (
                    torch.stack(cells[start:stop]),
                    torch.tensor(stim_index[start:stop], dtype=torch.long),
                    torch.tensor(neuron_index[start:stop], dtype=torch.long),
                )

    def smooth_responses(self, window_ms: float = 21.0) -> None:
        """Smooth every real response in place along time with a Hann window.

        Parameters
        ----------
        window_ms : float, default 21.0
            Full window width in ms; the kernel has the odd number of bins
            nearest to ``window_ms / dt`` (ties round up).

        Notes
        -----
        Deliberate change from deepSTRF 0.1.0: the kernel is normalised to unit
        sum, so the mean rate is preserved and a constant response stays
        constant away from the edges (zero padding attenuates the edge bins).
        The reference's kernel had a gain of ``(K - 1) / 2``. Sentinels are left
        untouched; NaN entries inside a real response stay NaN and do not
        spread (their neighbours are renormalised). Follows Hsu, Borst and
        Theunissen (2004).
        """
        from ..utils._smoothing import hann_kernel, hann_window_bins, smooth_last_axis

        kernel = hann_kernel(hann_window_bins(window_ms, float(self.dt)), dtype=torch.float64)
        self._map_real_cells(lambda x, nrn: smooth_last_axis(x, kernel))

    # ---------------------------------------------------------------- quality
    def compute_neuron_quality(self, max_ccmax_iters: int = 126, seed: int = 0) -> dict:
        """Write each neuron's Sahani–Linden SNR and split-half CCmax into ``nrn_meta``.

        For every real (stim, neuron) cell with ``R >= 2`` repeats and ``T >= 2``
        bins, signal power SP, noise power NP and the split-half correlation
        ``rho`` are computed; the cell's CCmax is ``sqrt(2 rho / (1 + rho))``
        when ``rho > 0``. Per neuron, SP, NP and CCmax are averaged across stims
        with weights equal to the cells' ``T`` (``metrics_paradigm.md`` §11);
        ``snr = SP / NP``.

        Parameters
        ----------
        max_ccmax_iters : int, default 126
            Half-splits per cell. All distinct splits are used when there are at
            most this many (``R <= 10`` with the default); otherwise this many
            distinct random splits drawn with ``seed``.
        seed : int, default 0
            Seed of the split sampler (results are reproducible).

        Returns
        -------
        dict
            ``{'snr': Tensor[N], 'ccmax': Tensor[N]}`` (float32); the same values
            are stored as Python floats in ``nrn_meta[n]['snr']`` and
            ``nrn_meta[n]['ccmax']``.

        Notes
        -----
        * ``snr`` is NaN for a neuron with no cell having ``R >= 2`` and
          ``T >= 2``; ``+inf`` for noiseless responses (identical repeats).
        * ``ccmax`` is 1.0 for a neuron whose cells all have ``R == 1`` (no
          ceiling can be estimated, so CCnorm = CCraw), NaN when it has repeats
          but no cell with ``rho > 0``.
        * Deliberate changes from deepSTRF 0.1.0: an undefined split correlation
          (a half-average that is constant, e.g. a silent half) is skipped
          rather than turning the neuron's CCmax into NaN; odd ``R`` drops the
          last repeat; cells are processed in batches of equal shape, never via
          a padded ``(S, N, R_max, T_max)`` tensor.
        * A real response holding NaN entries is reduced to its repeats with at
          least one value and, among those, the bins valid in all of them.
        """
        from ..metrics._reliability import cell_signal_noise_power, cell_split_half_rho

        max_ccmax_iters = _as_index(max_ccmax_iters, "max_ccmax_iters")
        if max_ccmax_iters < 1:
            raise ValueError(f"max_ccmax_iters must be >= 1, got {max_ccmax_iters}")
        N = self.N_neurons
        sp_sum = torch.zeros(N, dtype=torch.float64)
        np_sum = torch.zeros(N, dtype=torch.float64)
        power_weight = torch.zeros(N, dtype=torch.float64)
        cc_sum = torch.zeros(N, dtype=torch.float64)
        cc_weight = torch.zeros(N, dtype=torch.float64)
        has_repeats = torch.zeros(N, dtype=torch.bool)
        with torch.no_grad():
            for x, _, owner in self._cell_batches():
                _, R, T = x.shape
                if R >= 2:
                    has_repeats[owner] = True
                if R < 2 or T < 2:
                    continue
                x = x.to(torch.float32)
                sp, noise = cell_signal_noise_power(x)
                sp, noise = sp.double(), noise.double()
                sp_sum.index_add_(0, owner, T * sp)
                np_sum.index_add_(0, owner, T * noise)
                power_weight.index_add_(0, owner, torch.full_like(sp, float(T)))
                rho = cell_split_half_rho(x, max_iters=max_ccmax_iters, seed=seed).double()
                keep = rho > 0
                cc = torch.sqrt(2 * rho[keep] / (1 + rho[keep]))
                cc_sum.index_add_(0, owner[keep], T * cc)
                cc_weight.index_add_(0, owner[keep], torch.full_like(cc, float(T)))
        nan = torch.tensor(math.nan, dtype=torch.float64)
        sp_n = torch.where(power_weight > 0, sp_sum / power_weight.clamp_min(1), nan)
        np_n = torch.where(power_weight > 0, np_sum / power_weight.clamp_min(1), nan)
        snr = sp_n / np_n  # +inf when noiseless, NaN for a flat response (0 / 0)
        ccmax = torch.where(cc_weight > 0, cc_sum / cc_weight.clamp_min(1), nan)
        ccmax = torch.where(torch.isnan(ccmax) & ~has_repeats, torch.ones_like(ccmax), ccmax)
        snr32, ccmax32 = snr.float(), ccmax.float()
        for n, (a, b) in enumerate(zip(snr32.tolist(), ccmax32.tolist())):
            self.nrn_meta[n]["snr"] = a
            self.nrn_meta[n]["ccmax"] = b
        return {"snr": snr32, "ccmax": ccmax32}

    # ----------------------------------------------------------- concatenation
    def __add__(self, other: Any) -> NeuralDataset:
        if not isinstance(other, NeuralDataset):
            return NotImplemented
        from ..utils.data import concat_neural_datasets

        return concat_neural_datasets([self, other])

    def _concat_check_compat(self, other: NeuralDataset) -> None:
        """Raise ``ValueError`` if ``other`` cannot be concatenated with ``self``."""
        if float(self.dt) != float(other.dt):
            raise ValueError(
                f"cannot concatenate datasets with different bin widths: dt={self.dt} ms "
                f"({type(self).__name__}) vs dt={other.dt} ms ({type(other).__name__}); rebin one of them first"
            )

    def _concat_copy_attrs(self, source: NeuralDataset) -> None:
        """Copy modality attributes from ``source`` onto a fresh concatenation."""

    # ------------------------------------------------------------- validation
    def _expected_response_T(self, s: int) -> int | None:
        """Response length implied by ``stims[s]``, or ``None`` if the modality does not fix it."""
        return None

    def validate(self) -> None:
        """Check the storage contract; raise a specific exception naming the fault.

        Raises
        ------
        TypeError, ValueError, DatasetFormatError
            On a wrong attribute type or value, or on a stim/response that
            breaks the contract (the message names the stim and neuron).
        """
        name = type(self).__name__
        if not isinstance(self.path, str):
            raise TypeError(f"{name}.path must be a str, got {type(self.path).__name__}")
        if isinstance(self.dt, bool) or not isinstance(self.dt, (int, float)) or not self.dt > 0:
            raise ValueError(f"{name}.dt must be a number > 0 (bin width in ms), got {self.dt!r}")
        if isinstance(self.N_neurons, bool) or not isinstance(self.N_neurons, int) or self.N_neurons <= 0:
            raise ValueError(f"{name}.N_neurons must be an int > 0, got {self.N_neurons!r}")
        S = len(self.stim_meta)
        if S == 0:
            raise ValueError(f"{name} has no stims (stim_meta is empty)")
        if len(self.stims) != S or len(self.responses) != S:
            raise ValueError(
                f"{name}: len(stims)={len(self.stims)}, len(responses)={len(self.responses)} and "
                f"len(stim_meta)={S} must all be equal"
            )
        if len(self.nrn_meta) != self.N_neurons:
            raise ValueError(f"{name}: len(nrn_meta)={len(self.nrn_meta)} != N_neurons={self.N_neurons}")
        for i, meta in enumerate(self.stim_meta):
            if not isinstance(meta, dict):
                raise TypeError(f"{name}.stim_meta[{i}] must be a dict, got {type(meta).__name__}")
        for i, meta in enumerate(self.nrn_meta):
            if not isinstance(meta, dict):
                raise TypeError(f"{name}.nrn_meta[{i}] must be a dict, got {type(meta).__name__}")
        masks = self.nrn_masks
        cells_checked = self.__dict__.pop("_cells_checked_once", False)
        cells_to_record = self.__dict__.pop("_cells_to_record", None)
        for s in range(S):
            stim = self.stims[s]
            where = f"{name}.stims[{s}]"
            if not isinstance(stim, Tensor):
                raise TypeError(f"{where} must be a torch.Tensor, got {type(stim).__name__}")
            if stim.is_floating_point() and bool(torch.isnan(stim).any()):
                raise DatasetFormatError(where, "values", "NaN", "finite values (stims never hold NaN)")
            row = self.responses[s]
            if len(row) != self.N_neurons:
                raise DatasetFormatError(
                    f"{name}.responses[{s}]", "length", f"{len(row)} tensors", f"N_neurons={self.N_neurons}"
                )
            if cells_checked:
                continue
            expected_T = self._expected_response_T(s)
            real = masks[s].nonzero().flatten().tolist()
            if _cells_conform([row[n] for n in real], expected_T):
                continue
            common_T: int | None = None
            first_n = -1
            for n in real:  # something is wrong in this row: find and name the first faulty cell
                cell = row[n]
                where = f"{name}.responses[{s}][{n}]"
                if not isinstance(cell, Tensor):
                    raise TypeError(f"{where} must be a torch.Tensor, got {type(cell).__name__}")
                if cell.dim() != 2:
                    raise DatasetFormatError(where, "shape", f"shape {tuple(cell.shape)}", "a 2-D (repeats, bins) tensor")
                if not cell.is_floating_point():
                    raise DatasetFormatError(where, "dtype", str(cell.dtype), "a floating dtype")
                T = cell.shape[1]
                if common_T is None:
                    common_T, first_n = T, n
                elif T != common_T:
                    raise DatasetFormatError(
                        where, "T", f"{T} bins", f"{common_T} bins like responses[{s}][{first_n}] (one T per stim)"
                    )
                if expected_T is not None and T != expected_T:
                    raise DatasetFormatError(
                        where, "T", f"{T} bins", f"{expected_T} bins to match stims[{s}] of shape {tuple(stim.shape)}"
                    )
        if cells_to_record is not None:
            from ._cache import mark_cells_checked

            mark_cells_checked(cells_to_record)


def _cells_conform(cells: list, expected_T: int | None) -> bool:
    """Whether every cell is a 2-D floating tensor and all share one T (``expected_T`` when given).

    A bulk pre-check for :meth:`NeuralDataset.validate` (about a quarter of the
    cost of checking cell by cell on a million cells); a row that fails is
    re-checked cell by cell to name the fault.
    """
    if not cells:
        return True
    if not all(issubclass(kind, Tensor) for kind in set(map(type, cells))):
        return False
    shapes = {cell.shape for cell in cells}
    if {len(shape) for shape in shapes} != {2}:
        return False
    lengths = {shape[1] for shape in shapes}
    if len(lengths) != 1 or (expected_T is not None and lengths != {expected_T}):
        return False
    return all(dtype.is_floating_point for dtype in {cell.dtype for cell in cells})


# ---------------------------------------------------------------------- pickling helpers
_PICKLE_FORMAT = 1


def _compact(tensor: Tensor) -> Tensor:
    """``tensor`` itself if it owns exactly its storage, else a compact copy."""
    if tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size() and tensor.is_contiguous():
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


class _CacheOrigin:
    """What a dataset loaded from the processed cache remembers about it.

    The original tensor objects (to detect replaced tensors by identity) and
    the version counters of the buffers they are views of (to detect in-place
    edits: every view of a buffer shares its counter). Writes that bypass
    autograd's counters (through ``tensor.numpy()``) are not detected.
    """

    __slots__ = ("source", "stims", "responses", "mask", "bases", "versions")

    def __init__(self, source, stims, responses, mask, bases) -> None:
        self.source = source
        self.stims = stims  # list of the original stim tensors, or None if not from this file
        self.responses = responses  # list of the original rows, or None
        self.mask = mask
        self.bases = bases
        self.versions = tuple(None if b is None else b._version for b in bases)

    @classmethod
    def of(cls, payload: Any) -> _CacheOrigin | None:
        source = getattr(payload, "source", None)
        bases = getattr(payload, "bases", None)
        if source is None or bases is None:
            return None
        return cls(source, payload.stims, payload.responses, payload.mask, bases)

    def _edited(self, which: int) -> bool:
        base = self.bases[which]
        return base is not None and base._version != self.versions[which]

    def file_unchanged(self) -> bool:
        import os

        try:
            st = os.stat(self.source.path)
        except OSError:
            return False
        return (st.st_ino, st.st_size, st.st_mtime_ns) == (self.source.inode, self.source.size, self.source.mtime_ns)

    def same_stims(self, stims: list) -> bool:
        orig = self.stims
        return (
            orig is not None
            and not self._edited(0)
            and len(stims) == len(orig)
            and all(map(operator.is_, stims, orig))
        )

    def same_responses(self, responses: list) -> bool:
        orig = self.responses
        if orig is None or self._edited(1) or self._edited(2) or len(responses) != len(orig):
            return False
        return all(len(a) == len(b) and all(map(operator.is_, a, b)) for a, b in zip(responses, orig))


def _pack_tensors(tensors: list) -> Any:
    """Flat storage of ``tensors``; compact per-tensor copies if they cannot be flattened."""
    from ._storage import FlatTensors

    try:
        return FlatTensors.pack(tensors)
    except (RuntimeError, TypeError, AttributeError, ValueError):
        # e.g. tensors on several devices, sparse tensors, non-tensors
        return [_compact(t) if isinstance(t, Tensor) else t for t in tensors]


def _unpack_tensors(packed: Any) -> list:
    from ._storage import FlatTensors

    return packed.unpack() if isinstance(packed, FlatTensors) else list(packed)


def _pack_storage(ds: NeuralDataset) -> dict:
    """The ``stims``/``responses``/mask part of a dataset's pickled state."""
    import numpy as np

    origin = getattr(ds, "_cache_origin", None)
    stims_cached = resp_cached = False
    if origin is not None and origin.file_unchanged():
        stims_cached = origin.same_stims(ds.stims)
        resp_cached = origin.same_responses(ds.responses)
    packed: dict[str, Any] = {"format": _PICKLE_FORMAT, "source": None}
    if stims_cached or resp_cached:
        packed["source"] = origin.source
    packed["stims"] = "cache" if stims_cached else _pack_tensors(ds.stims)
    if resp_cached:
        packed["responses"] = "cache"
    else:
        rows = ds.responses
        packed["row_lengths"] = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        packed["responses"] = _pack_tensors([t for row in rows for t in row])
    mask = ds.__dict__.get("_mask_cache")
    if mask is None:
        packed["mask"] = None
    elif packed["source"] is not None and mask is origin.mask:
        packed["mask"] = "cache"
    else:
        packed["mask"] = (tuple(mask.shape), np.packbits(mask.numpy().reshape(-1)))
    return packed


_SPAWN_KEEP_ALIVE: Any = None


def _keep_alive_while_spawning(packed: dict) -> None:
    """Keep the flat buffers alive as long as the child process being started.

    ``torch.multiprocessing`` sends a tensor to a process started with
    ``spawn``/``forkserver`` as a file descriptor of its shared-memory copy,
    passed by number when the child starts, *after* pickling ended; a buffer
    made only for pickling would be freed (its descriptor closed) by then. Tie
    it to the ``Popen`` object of that child instead.
    """
    from multiprocessing.context import get_spawning_popen

    popen = get_spawning_popen()
    if popen is None:
        return
    global _SPAWN_KEEP_ALIVE
    if _SPAWN_KEEP_ALIVE is None:
        import weakref

        _SPAWN_KEEP_ALIVE = weakref.WeakKeyDictionary()
    try:
        _SPAWN_KEEP_ALIVE.setdefault(popen, []).append(packed)
    except TypeError:  # a Popen type without weak references: keep it on the object
        popen.__dict__.setdefault("_deepstrf_keep_alive", []).append(packed)


def _unpack_storage(ds: NeuralDataset, packed: dict) -> None:
    import gc

    import numpy as np

    if packed.get("format") != _PICKLE_FORMAT:
        raise ValueError(
            f"this pickled {type(ds).__name__} uses storage format {packed.get('format')!r}; "
            f"this deepSTRF reads format {_PICKLE_FORMAT}"
        )
    source = packed["source"]
    stims_cached = packed["stims"] == "cache"
    resp_cached = packed["responses"] == "cache"
    # Creating many tensor objects would trigger full garbage-collector passes.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        payload = None
        if source is not None:
            from ._cache import reopen

            payload = reopen(source, stims=stims_cached, responses=resp_cached)
        ds.stims = list(payload.stims) if stims_cached else _unpack_tensors(packed["stims"])
        if resp_cached:
            ds.responses = [list(row) for row in payload.responses]
        else:
            cells = _unpack_tensors(packed["responses"])
            lengths = packed["row_lengths"].tolist()
            if lengths and min(lengths) == max(lengths):
                n = lengths[0]
                ds.responses = [cells[i:i + n] for i in range(0, n * len(lengths), n)] if n else [[] for _ in lengths]
            else:
                ends = np.cumsum(lengths).tolist()
                ds.responses = [cells[e - k:e] for e, k in zip(ends, lengths)]
    finally:
        if gc_was_enabled:
            gc.enable()
    mask = packed["mask"]
    if mask is None:
        ds._mask_cache = None
    elif isinstance(mask, str):
        ds._mask_cache = payload.mask
    else:
        shape, bits = mask
        count = math.prod(shape)
        ds._mask_cache = torch.from_numpy(np.unpackbits(bits, count=count).astype(bool).reshape(shape))
    if payload is not None:
        ds._cache_origin = _CacheOrigin(
            source,
            payload.stims if stims_cached else None,
            payload.responses if resp_cached else None,
            payload.mask,
            payload.bases,
        )
