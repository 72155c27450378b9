"""Auditory datasets: the ``AudioNeuralDataset`` base class and every loader."""

from .audio_dataset import AudioNeuralDataset
from .crcns_aa1 import CRCNSAA1Dataset, download_aa1
from .crcns_aa2 import CRCNSAA2Dataset, download_aa2
from .crcns_aa4 import AA4_ANIMAL_IDS, CRCNSAA4Dataset, download_aa4
from .espejo import EspejoDataset, download_espejo, download_espejo_nat_waveforms
from .le_2025 import Le2025Dataset, download_le_2025
from .nat4 import NAT4Dataset, download_nat4
from .ns1_drc import NS1Dataset, download_ns1
from .wingert2026 import Wingert2026Dataset, download_wingert2026
from .alice_eeg import AliceEEGDataset, download_alice_eeg
from .demo import DemoDataset

__all__ = [
    "AudioNeuralDataset",
    "DemoDataset",
    "NS1Dataset",
    "download_ns1",
    "NAT4Dataset",
    "download_nat4",
    "CRCNSAA1Dataset",
    "download_aa1",
    "CRCNSAA2Dataset",
    "download_aa2",
    "CRCNSAA4Dataset",
    "download_aa4",
    "AA4_ANIMAL_IDS",
    "EspejoDataset",
    "download_espejo",
    "download_espejo_nat_waveforms",
    "Le2025Dataset",
    "download_le_2025",
    "Wingert2026Dataset",
    "download_wingert2026",
    "AliceEEGDataset",
    "download_alice_eeg",
]
