"""The ``deepstrf demo`` job and the helpers behind the ``deepstrf`` command.

- :func:`run_demo`: ridge STRFs fitted to the embedded simulated dataset
  (:class:`deepSTRF.datasets.audio.demo.DemoDataset`), scored on its test
  split and compared with the true STRFs; writes a PNG and a JSON report.
- :mod:`deepSTRF.demo.ridge`: closed-form ridge STRFs (lagged design matrix,
  per-neuron penalty chosen on a validation split), numpy/torch only.
- :mod:`deepSTRF.demo.summary`: the dataset summary printed by ``deepstrf info``.
- :mod:`deepSTRF.demo.figures`: the PNG figures (matplotlib is imported only
  when a figure is drawn).
"""

from .job import DemoReport, run_demo
from .ridge import (
    RidgeSTRFs,
    fit_ridge_strfs,
    lagged_design,
    predict_strfs,
    strf_correlation,
    unstandardize_strfs,
)
from .summary import DatasetSummary, summarize_dataset

__all__ = [
    "run_demo",
    "DemoReport",
    "RidgeSTRFs",
    "fit_ridge_strfs",
    "lagged_design",
    "predict_strfs",
    "strf_correlation",
    "unstandardize_strfs",
    "DatasetSummary",
    "summarize_dataset",
]
