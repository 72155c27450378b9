"""The ``deepstrf`` command, driven as a subprocess."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepSTRF.cli", *args], capture_output=True, text=True, timeout=300)


def test_demo_runs_and_prints_a_summary():
    out = run_cli("demo")
    assert out.returncode == 0, out.stderr
    assert "DemoDataset(N_neurons=24" in out.stdout
    assert "CCmax" in out.stdout and "SNR" in out.stdout
    assert "missing pairs" in out.stdout


def test_unknown_command_fails_with_usage():
    out = run_cli("frobnicate")
    assert out.returncode != 0
    assert "invalid choice" in out.stderr


def test_help_lists_demo():
    out = run_cli("--help")
    assert out.returncode == 0 and "demo" in out.stdout
