"""Auditory datasets: the ``AudioNeuralDataset`` base class and every loader."""

from .audio_dataset import AudioNeuralDataset

__all__ = ["AudioNeuralDataset"]
