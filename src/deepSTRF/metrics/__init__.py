"""NaN-aware evaluation metrics and losses for encoding models.

Responses are ``(B, N, R, T)`` (stim × neuron × repeat × bin, NaN where there
is no data, as produced by ``neural_collate``), predictions ``(B, N, 1, T)``.
Formulas, conventions, references and the deliberate differences from
deepSTRF 0.1.0 are in ``docs/metrics_paradigm.md``.

- prediction quality: :func:`corrcoef`, :func:`fve`,
  :func:`normalized_corrcoef`, :func:`coherence`
- data reliability: :func:`signal_power`, :func:`noise_power`, :func:`snr`,
  :func:`compute_CCmax`, :func:`compute_TTRC`
- losses (keep gradients): :func:`mse_loss`, :func:`poisson_loss`
- low-level kernels on complete ``(M, R, T)`` cells, shared with
  ``NeuralDataset.compute_neuron_quality``: :func:`cell_signal_noise_power`,
  :func:`cell_split_half_rho`, :func:`cell_trial_to_trial_rho`,
  :func:`split_half_masks`, :func:`spearman_brown_ccmax`,
  :func:`length_weighted_mean`, :func:`padded_cell_stats`
"""

from ._reliability import (
    cell_signal_noise_power,
    cell_split_half_rho,
    cell_trial_to_trial_rho,
    length_weighted_mean,
    padded_cell_stats,
    spearman_brown_ccmax,
    split_half_masks,
)
from .losses import mse_loss, poisson_loss
from .performance import (
    coherence,
    compute_CCmax,
    compute_TTRC,
    corrcoef,
    fve,
    noise_power,
    normalized_corrcoef,
    signal_power,
    snr,
)

__all__ = [
    "corrcoef",
    "fve",
    "signal_power",
    "noise_power",
    "snr",
    "normalized_corrcoef",
    "compute_CCmax",
    "compute_TTRC",
    "coherence",
    "mse_loss",
    "poisson_loss",
    "cell_signal_noise_power",
    "cell_split_half_rho",
    "cell_trial_to_trial_rho",
    "split_half_masks",
    "spearman_brown_ccmax",
    "length_weighted_mean",
    "padded_cell_stats",
]
