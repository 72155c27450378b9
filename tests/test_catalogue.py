"""The dataset catalogue (registry as data) and the generated docs/datasets.md."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from deepSTRF.datasets import catalogue
from deepSTRF.datasets.catalogue import (
    LoaderNotAvailableError,
    entries,
    get_entry,
    is_available,
    list_datasets,
    load_class,
    load_download,
    render_markdown,
)

REPO = Path(__file__).resolve().parents[1]

# Every dataset the issue names, with the class and module the API reference gives.
EXPECTED = {
    "ns1": ("NS1Dataset", "deepSTRF.datasets.audio.ns1_drc"),
    "nat4": ("NAT4Dataset", "deepSTRF.datasets.audio.nat4"),
    "aa1": ("CRCNSAA1Dataset", "deepSTRF.datasets.audio.crcns_aa1"),
    "aa2": ("CRCNSAA2Dataset", "deepSTRF.datasets.audio.crcns_aa2"),
    "aa4": ("CRCNSAA4Dataset", "deepSTRF.datasets.audio.crcns_aa4"),
    "ac1": ("CRCNSAC1Dataset", "deepSTRF.datasets.audio.crcns_ac1"),
    "espejo": ("EspejoDataset", "deepSTRF.datasets.audio.espejo"),
    "downer2025": ("Downer2025Dataset", "deepSTRF.datasets.audio.downer2025"),
    "wingert2026": ("Wingert2026Dataset", "deepSTRF.datasets.audio.wingert2026"),
    "le2025": ("Le2025Dataset", "deepSTRF.datasets.audio.le_2025"),
    "alice-eeg": ("AliceEEGDataset", "deepSTRF.datasets.audio.alice_eeg"),
    "demo": ("DemoDataset", "deepSTRF.datasets.audio.demo"),
    "video-demo": ("VideoDemoDataset", "deepSTRF.datasets.video.demo"),
}
CRCNS = {"aa1", "aa2", "aa4", "ac1"}


def test_every_dataset_is_catalogued_with_its_class_and_module():
    assert list_datasets() == list(EXPECTED)
    for name, (cls, module) in EXPECTED.items():
        entry = get_entry(name)
        assert (entry.class_name, entry.module) == (cls, module)
        assert entry.class_path == f"{module}.{cls}"
    assert list_datasets(include_embedded=False) == list(EXPECTED)[:-2]
    assert list_datasets(modality="video") == ["video-demo"]


def test_entries_are_complete():
    for e in entries():
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", e.name), e.name
        for field in ("title", "species", "area", "brain_area", "signal", "signal_detail", "raw_size", "licence",
                      "citation", "preparation"):
            assert getattr(e, field).strip(), (e.name, field)
        assert all(value.strip() for value in e.real_data.values()), e.name
        assert e.modality in {"audio", "video"}
        if e.is_embedded:
            assert e.species == "simulated" and not e.papers and e.credentials is None
            continue
        assert e.papers and e.sources, e.name
        assert all(re.fullmatch(r"10\.\d{4,9}/\S+", p.doi) for p in e.papers), e.name
        assert e.download.startswith(e.module + ".download_"), e.name
        assert (e.credentials is not None) == (e.name in CRCNS), e.name
        if e.credentials:
            assert "CRCNS_USERNAME" in e.credentials and "netrc" in e.credentials


def test_facts_match_the_dataset_specifications():
    # spot checks against /work/shared/datasets/*.md
    assert get_entry("ns1").real_data["S"] == "20" and get_entry("ns1").real_data["N"] == "119"
    assert get_entry("ns1").real_data["F"] == "34" and get_entry("ns1").real_data["dt_ms"] == "5"
    assert get_entry("nat4").real_data["S"] == "593"
    assert get_entry("aa1").real_data["N"] == "100" and get_entry("aa2").real_data["S"] == "117"
    assert get_entry("downer2025").real_data["N"] == "1718"
    assert get_entry("downer2025").licence == "CC BY 4.0"
    assert get_entry("alice-eeg").real_data["S"] == "12"
    assert get_entry("ns1").licence == "not established"
    assert get_entry("wingert2026").licence == "not established"
    assert {p.doi for p in get_entry("ns1").papers} >= {"10.1371/journal.pcbi.1005113"}
    assert get_entry("le2025").sources[0].doi == "10.6084/m9.figshare.29203457"
    assert get_entry("nat4").download_kwargs == {"area": "A1"}


@pytest.mark.parametrize("alias, name", [("NS1", "ns1"), ("crcns-aa1", "aa1"), ("CRCNS_AA4", "aa4"),
                                         ("alice_eeg", "alice-eeg"), (" Demo ", "demo"), ("wehr", "ac1")])
def test_get_entry_accepts_aliases_and_any_case(alias, name):
    assert get_entry(alias).name == name


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError) as info:
        get_entry("nat5")
    message = str(info.value)
    assert "'nat5'" in message and "did you mean 'nat4'" in message
    for name in EXPECTED:
        assert name in message
    with pytest.raises(TypeError):
        get_entry(4)


def test_load_class_of_the_embedded_datasets():
    from deepSTRF.datasets.audio.demo import DemoDataset
    from deepSTRF.datasets.video.demo import VideoDemoDataset

    assert load_class("demo") is DemoDataset
    assert load_class("video-demo") is VideoDemoDataset
    assert load_download("demo") is None
    assert is_available("demo") and is_available("video-demo")


def _patched_registry(monkeypatch, **changes):
    fake = dataclasses.replace(get_entry("ns1"), name="fake", aliases=(), **changes)
    records, lookup = catalogue._registry()
    monkeypatch.setattr(catalogue, "_registry", lambda: ((*records, fake), {**lookup, "fake": fake}))
    return fake


def test_a_loader_missing_from_this_version_is_a_clear_not_implemented_error(monkeypatch):
    _patched_registry(monkeypatch, module="deepSTRF.datasets.audio.no_such_loader",
                      download="deepSTRF.datasets.audio.no_such_loader.download_fake")
    assert not is_available("fake")
    for load in (load_class, load_download):
        with pytest.raises(LoaderNotAvailableError) as info:
            load("fake")
        assert isinstance(info.value, NotImplementedError)
        assert "the fake loader is not available in this version" in str(info.value)


def test_a_module_without_the_class_is_not_available(monkeypatch):
    _patched_registry(monkeypatch, module="deepSTRF.datasets.audio.demo", class_name="NoSuchDataset")
    with pytest.raises(LoaderNotAvailableError, match="has no class 'NoSuchDataset'"):
        load_class("fake")


def test_a_missing_optional_dependency_is_an_import_error(monkeypatch):
    _patched_registry(monkeypatch, module="deepSTRF.datasets.audio.fake_eeg")

    def fake_import(name, package=None):
        raise ModuleNotFoundError("No module named 'mne'", name="mne")

    monkeypatch.setattr(catalogue.importlib, "import_module", fake_import)
    with pytest.raises(ImportError, match="needs the package 'mne'") as info:
        load_class("fake")
    assert not isinstance(info.value, NotImplementedError)


def test_registry_is_data_shipped_with_the_package():
    raw = json.loads(resources.files("deepSTRF.datasets").joinpath("catalogue.json").read_text(encoding="utf-8"))
    assert [d["name"] for d in raw["datasets"]] == list(EXPECTED)
    for record, entry in zip(raw["datasets"], entries()):
        assert entry.as_dict()["class"] == record["class"]
        assert entry.as_dict()["real_data"] == record["real_data"]
    assert "catalogue.json" in (REPO / "pyproject.toml").read_text()


def test_docs_datasets_md_is_the_rendering_of_the_registry():
    docs = REPO / "docs" / "datasets.md"
    assert docs.read_text(encoding="utf-8") == render_markdown(), (
        "docs/datasets.md is stale: run python -m deepSTRF.datasets.catalogue --write-docs"
    )


def test_rendering_has_one_card_per_dataset():
    text = render_markdown()
    for e in entries():
        assert f'<a id="{e.name}"></a>' in text
        assert f"## {e.title} (`{e.name}`)" in text
        assert f"`{e.class_path}`" in text
        for paper in e.papers:
            assert f"https://doi.org/{paper.doi}" in text
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_write_docs_command(tmp_path):
    target = tmp_path / "datasets.md"
    cmd = [sys.executable, "-m", "deepSTRF.datasets.catalogue"]
    out = subprocess.run([*cmd, "--write-docs", str(target)], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert target.read_text(encoding="utf-8") == render_markdown()
    target.write_text("stale\n", encoding="utf-8")
    assert catalogue.main(["--check", str(target)]) == 1
    catalogue.write_docs(target)
    assert catalogue.main(["--check", str(target)]) == 0
    with pytest.raises(FileNotFoundError):
        catalogue.write_docs(tmp_path / "missing" / "datasets.md")


def test_every_available_loader_has_a_guide_card():
    """docs/datasets.md links loaders/<name>.md for every real dataset whose loader ships."""
    from pathlib import Path

    from deepSTRF.datasets.catalogue import get_entry, is_available, list_datasets

    docs = Path(__file__).resolve().parents[1] / "docs"
    for name in list_datasets():
        entry = get_entry(name)
        if entry.download is not None and is_available(name):
            assert (docs / "loaders" / f"{name}.md").is_file(), f"docs/loaders/{name}.md is missing"
