"""Datasets of sensory neural responses behind one API (:class:`NeuralDataset`)."""

from ._errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from .audio import AudioNeuralDataset
from .neural_dataset import NeuralDataset
from .video import VideoNeuralDataset

__all__ = [
    "NeuralDataset",
    "AudioNeuralDataset",
    "VideoNeuralDataset",
    "DatasetNotFoundError",
    "ChecksumError",
    "DatasetFormatError",
]
