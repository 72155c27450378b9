"""The PNG figures (drawn on an Agg canvas, never touching pyplot's backend)."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from deepSTRF.datasets.audio.demo import DemoDataset
from deepSTRF.datasets.video.demo import VideoDemoDataset
from deepSTRF.demo.figures import plot_stim_responses

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, min_bytes=5_000):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > min_bytes
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200


@pytest.mark.parametrize("make", [lambda: DemoDataset(n_stims=6, n_neurons=5), lambda: VideoDemoDataset(n_stims=4)])
def test_plot_stim_responses_writes_a_png(tmp_path, make):
    ds = make()
    path, shown, criterion = plot_stim_responses(ds, 1, tmp_path / "sub" / "fig.png", n_neurons=3)
    _check_png(path)
    assert 1 <= len(shown) <= 3 and all(ds.nrn_masks[1, n] for n in shown)
    assert criterion


def test_plot_stim_responses_of_a_waveform_stim(tmp_path):
    import torch

    ds = DemoDataset(n_stims=4, n_neurons=3)
    ds.stims = [torch.randn(1, stim.shape[-1] * 40) for stim in ds.stims]  # waveform-like (1, T_audio)
    path, _, _ = plot_stim_responses(ds, 0, tmp_path / "wave.png", n_neurons=2)
    _check_png(path)


def test_plot_does_not_change_the_pyplot_backend(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    plot_stim_responses(DemoDataset(n_stims=4, n_neurons=2), 0, tmp_path / "x.png", n_neurons=0)
    assert matplotlib.get_backend() == before
    _check_png(tmp_path / "x.png", min_bytes=1_000)
