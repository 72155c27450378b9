"""Visual datasets: the ``VideoNeuralDataset`` base class and the simulated demo."""

from .demo import VideoDemoDataset
from .video_dataset import VideoNeuralDataset

__all__ = ["VideoNeuralDataset", "VideoDemoDataset"]
