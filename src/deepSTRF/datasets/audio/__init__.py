"""Auditory datasets: the ``AudioNeuralDataset`` base class and every loader."""

from .audio_dataset import AudioNeuralDataset
from .espejo import EspejoDataset, download_espejo, download_espejo_nat_waveforms
from .le_2025 import Le2025Dataset, download_le_2025
from .demo import DemoDataset

__all__ = [
    "AudioNeuralDataset",
    "DemoDataset",
    "EspejoDataset",
    "download_espejo",
    "download_espejo_nat_waveforms",
    "Le2025Dataset",
    "download_le_2025",
]
