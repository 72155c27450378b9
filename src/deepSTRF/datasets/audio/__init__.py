"""Auditory datasets: the ``AudioNeuralDataset`` base class and every loader.

Loaders are imported on first use (PEP 562), so ``import deepSTRF.datasets``
does not pay for scipy, h5py or pandas until a dataset that needs them is
touched: ``from deepSTRF.datasets.audio import NS1Dataset`` imports only the
NS1 module.
"""

from __future__ import annotations

import importlib
from typing import Any

from .audio_dataset import AudioNeuralDataset

#: public name -> submodule that defines it
_LAZY = {
    "DemoDataset": "demo",
    "NS1Dataset": "ns1_drc",
    "download_ns1": "ns1_drc",
    "NAT4Dataset": "nat4",
    "download_nat4": "nat4",
    "CRCNSAA1Dataset": "crcns_aa1",
    "download_aa1": "crcns_aa1",
    "CRCNSAA2Dataset": "crcns_aa2",
    "download_aa2": "crcns_aa2",
    "CRCNSAA4Dataset": "crcns_aa4",
    "download_aa4": "crcns_aa4",
    "AA4_ANIMAL_IDS": "crcns_aa4",
    "EspejoDataset": "espejo",
    "download_espejo": "espejo",
    "download_espejo_nat_waveforms": "espejo",
    "Le2025Dataset": "le_2025",
    "download_le_2025": "le_2025",
    "Wingert2026Dataset": "wingert2026",
    "download_wingert2026": "wingert2026",
    "CRCNSAC1Dataset": "crcns_ac1",
    "download_ac1": "crcns_ac1",
    "WEHR_VALID_NEURONS": "crcns_ac1",
    "WEHR_NEURONS_SPLIT_NATURAL": "crcns_ac1",
    "RepeatGating": "crcns_ac1",
    "Downer2025Dataset": "downer2025",
    "download_downer2025": "downer2025",
    "AliceEEGDataset": "alice_eeg",
    "download_alice_eeg": "alice_eeg",
}

__all__ = ["AudioNeuralDataset", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
