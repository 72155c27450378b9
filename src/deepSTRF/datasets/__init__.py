"""Datasets of sensory neural responses behind one API (:class:`NeuralDataset`)."""

from ._errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from .audio import AudioNeuralDataset
from .neural_dataset import NeuralDataset

__all__ = [
    "NeuralDataset",
    "AudioNeuralDataset",
    "DatasetNotFoundError",
    "ChecksumError",
    "DatasetFormatError",
]
