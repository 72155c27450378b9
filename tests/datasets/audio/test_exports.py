"""Every public audio name is importable from deepSTRF.datasets.audio, lazily."""

import importlib
import subprocess
import sys

import deepSTRF.datasets.audio as audio


def test_every_exported_name_resolves_to_its_module():
    for name in audio.__all__:
        value = getattr(audio, name)
        module = audio._LAZY.get(name)
        if module is not None:
            assert value is getattr(importlib.import_module(f"deepSTRF.datasets.audio.{module}"), name)
    assert set(audio.__all__) <= set(dir(audio))


def test_importing_the_package_does_not_import_the_loaders():
    code = "import sys, deepSTRF.datasets; print(any(m.startswith('deepSTRF.datasets.audio.ns1') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_name_raises_attribute_error():
    try:
        audio.NoSuchDataset  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchDataset" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
