"""Property tests: random ragged datasets and random select/reset sequences.

An independent, deliberately naive model of the selection rules (the oracle)
is compared with the dataset after every call: ``len``, every item, the masks
and ``get_nrn_meta`` must agree.
"""

from __future__ import annotations

import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.ragged import RaggedDataset


@st.composite
def ragged_datasets(draw):
    S = draw(st.integers(1, 6))
    N = draw(st.integers(1, 6))
    repeats = draw(st.lists(st.lists(st.integers(0, 3), min_size=N, max_size=N), min_size=S, max_size=S))
    durations = draw(st.lists(st.integers(1, 5), min_size=S, max_size=S))
    areas = draw(st.lists(st.sampled_from(["A1", "PEG", "MGB"]), min_size=N, max_size=N))
    kinds = draw(st.lists(st.sampled_from(["song", "noise"]), min_size=S, max_size=S))
    return RaggedDataset(
        repeats,
        durations,
        F=2,
        stim_meta=[{"kind": k} for k in kinds],
        nrn_meta=[{"area": a} for a in areas],
    )


class Oracle:
    """Selection semantics written as plainly as possible."""

    def __init__(self, repeats, nrn_meta, stim_meta):
        self.real = [[r > 0 for r in row] for row in repeats]
        self.nrn_meta, self.stim_meta = nrn_meta, stim_meta
        self.S, self.N = len(repeats), len(repeats[0])
        self.pop = None  # None = everybody, else explicit list (may be empty)
        self.stims = None

    def neurons(self):
        base = list(range(self.N)) if self.pop is None else self.pop
        if self.stims is None:
            return base
        return [n for n in base if any(self.real[s][n] for s in self.stims)]

    def visible_stims(self):
        sel = self.neurons()
        out = [s for s in range(self.S) if any(self.real[s][n] for n in sel)]
        if self.stims is not None:
            out = [s for s in out if s in self.stims]
        return out


def _apply(ds, oracle, op):
    kind, arg = op
    if kind == "neuron":
        n = arg % ds.get_N()
        ds.select_neuron(n)
        oracle.pop = [n]
    elif kind == "population":
        pop = [a % ds.get_N() for a in arg]
        ds.select_population(pop)
        oracle.pop = pop
    elif kind == "nrn_attr":
        ds.select_pop_by_nrn_attr("area", arg)
        oracle.pop = [n for n in range(oracle.N) if oracle.nrn_meta[n]["area"] == arg]
    elif kind == "stim_attr_pop":
        ds.select_pop_by_stim_attr("kind", arg)
        stims = [s for s in range(oracle.S) if oracle.stim_meta[s]["kind"] == arg]
        oracle.pop = [n for n in range(oracle.N) if any(oracle.real[s][n] for s in stims)]
    elif kind == "stims":
        stims = [a % ds.get_S() for a in arg]
        ds.select_stims(stims)
        oracle.stims = stims
    elif kind == "stims_attr":
        ds.select_stims_by_attr("kind", arg)
        oracle.stims = [s for s in range(oracle.S) if oracle.stim_meta[s]["kind"] == arg]
    elif kind == "reset_pop":
        ds.reset_pop_selection()
        oracle.pop = None
    else:
        ds.reset_stim_selection()
        oracle.stims = None


operations = st.lists(
    st.one_of(
        st.tuples(st.just("neuron"), st.integers(0, 20)),
        st.tuples(st.just("population"), st.lists(st.integers(0, 20), max_size=5)),
        st.tuples(st.just("nrn_attr"), st.sampled_from(["A1", "PEG", "MGB", "none"])),
        st.tuples(st.just("stim_attr_pop"), st.sampled_from(["song", "noise", "none"])),
        st.tuples(st.just("stims"), st.lists(st.integers(0, 20), max_size=5)),
        st.tuples(st.just("stims_attr"), st.sampled_from(["song", "noise", "none"])),
        st.tuples(st.just("reset_pop"), st.none()),
        st.tuples(st.just("reset_stims"), st.none()),
    ),
    max_size=8,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ds=ragged_datasets(), ops=operations)
def test_selection_sequences_keep_len_items_masks_and_meta_consistent(ds, ops):
    repeats = [[ds.responses[s][n].shape[0] if ds.nrn_masks[s, n] else 0 for n in range(ds.get_N())]
               for s in range(ds.get_S())]
    oracle = Oracle(repeats, ds.nrn_meta, ds.stim_meta)
    assert torch.equal(ds.nrn_masks, torch.tensor(oracle.real, dtype=torch.bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for op in ops:
            _apply(ds, oracle, op)
            neurons, stims = oracle.neurons(), oracle.visible_stims()
            assert len(ds) == len(stims)
            assert ds.get_nrn_meta() == [ds.nrn_meta[n] for n in neurons]
            for i, s in enumerate(stims):
                item = ds[i]
                assert item["stim_meta"] is ds.stim_meta[s]
                assert len(item["responses"]) == len(neurons)
                assert all(a is ds.responses[s][n] for a, n in zip(item["responses"], neurons))
                assert item["valid_mask"].tolist() == [oracle.real[s][n] for n in neurons]
            if stims:
                batch = ds[:]
                assert len(batch["stims"]) == len(stims)
