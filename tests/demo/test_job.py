"""The ``deepstrf demo`` job: it must recover the simulated STRFs."""

from __future__ import annotations

import json

import pytest
import torch

from deepSTRF.demo import run_demo


@pytest.fixture(scope="module")
def report():
    return run_demo(out_dir=None, seed=0, figure=False)


def test_demo_recovers_the_true_strfs(report):
    # measured over seeds 0-19: median STRF r 0.944-0.958, worst neuron >= 0.88
    med = report.medians
    assert med["strf_r"] > 0.9
    assert float(report.strf_r.min()) > 0.8
    assert report.fitted_strfs.shape == report.true_strfs.shape == (24, 16, 12)


def test_demo_predicts_the_test_stims(report):
    # seeds 0-19: median CCraw 0.79-0.84, CCnorm 0.92-0.95, CCmax 0.81-0.86
    med = report.medians
    assert med["cc_raw"] > 0.7
    assert med["cc_norm"] > 0.85
    assert 0.7 <= med["ccmax"] <= 0.9
    assert torch.isfinite(report.cc_raw).all() and torch.isfinite(report.cc_norm).all()
    # a linear model cannot beat the noise ceiling by much
    assert float((report.cc_raw - report.ccmax).max()) < 0.1


def test_demo_uses_the_splits_and_the_validation_penalty(report):
    assert {k: len(v) for k, v in report.splits.items()} == {"train": 34, "val": 7, "test": 7}
    assert not set(report.splits["train"]) & set(report.splits["test"])
    assert torch.isfinite(report.val_cc).all()
    assert report.summary.S == 48 and report.summary.N == 24
    lines = report.lines()
    assert any("median correlation" in line for line in lines)
    assert any(line.strip().startswith("demo_unit_023") for line in lines)


def test_demo_is_deterministic_and_restores_torch_threads(tmp_path):
    threads = torch.get_num_threads()
    a = run_demo(out_dir=tmp_path, seed=3, figure=False)
    assert torch.get_num_threads() == threads
    b = run_demo(out_dir=None, seed=3, figure=False)
    torch.testing.assert_close(a.strf_r, b.strf_r)
    assert a.figure_path is None and b.results_path is None
    data = json.loads(a.results_path.read_text())
    assert data["seed"] == 3 and len(data["neurons"]) == 24
    assert data["medians"]["strf_r"] == pytest.approx(a.medians["strf_r"])
    assert set(data["neurons"][0]) >= {"id", "ccmax", "lambda", "test_cc_raw", "test_cc_norm", "strf_r"}


def test_demo_rejects_a_bad_seed():
    with pytest.raises(TypeError):
        run_demo(out_dir=None, seed="0", figure=False)
