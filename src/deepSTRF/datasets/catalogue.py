"""The dataset catalogue: one record per dataset class, read from ``catalogue.json``.

The registry is data (``catalogue.json`` next to this module): for every
dataset its command-line name, class and module, papers and DOIs, species,
brain area, signal, the sizes of the real data (``S``, ``N``, ``F``, ``dt``),
raw download size, licence, download function and whether an account is
needed. Facts come from the project's per-dataset specifications; what those
could not settle reads "not established".

Loader modules are imported lazily, only by :func:`load_class` /
:func:`load_download`, so browsing the catalogue is cheap and works for
datasets whose loader is not part of this version.

``docs/datasets.md`` is generated from the registry by :func:`render_markdown`::

    python -m deepSTRF.datasets.catalogue --write-docs    # regenerate
    python -m deepSTRF.datasets.catalogue --check         # exit 1 if stale

Examples
--------
>>> from deepSTRF.datasets.catalogue import get_entry, list_datasets
>>> "ns1" in list_datasets()
True
>>> get_entry("NS1").class_name
'NS1Dataset'
"""

from __future__ import annotations

import argparse
import difflib
import functools
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "DatasetEntry",
    "Paper",
    "Source",
    "LoaderNotAvailableError",
    "list_datasets",
    "entries",
    "get_entry",
    "is_available",
    "load_class",
    "load_download",
    "render_markdown",
    "write_docs",
    "default_docs_path",
]

_REGISTRY_FILE = "catalogue.json"
_REQUIRED = (
    "name", "aliases", "title", "class", "module", "modality", "species", "area", "brain_area", "preparation",
    "signal", "signal_detail", "real_data", "raw_size", "raw_size_detail", "licence", "licence_detail", "citation",
    "papers", "sources", "download", "download_kwargs", "credentials", "notes",
)
_REAL_DATA_KEYS = ("S", "N", "F", "dt_ms", "T", "R", "missing")


class LoaderNotAvailableError(NotImplementedError):
    """The catalogue knows the dataset but this version of deepSTRF has no loader for it."""


@dataclass(frozen=True)
class Paper:
    """A publication to cite: free-text reference and its DOI (may be empty)."""

    ref: str
    doi: str = ""

    @property
    def url(self) -> str:
        """``https://doi.org/<doi>`` (empty without a DOI)."""
        return f"https://doi.org/{self.doi}" if self.doi else ""


@dataclass(frozen=True)
class Source:
    """Where the raw files live: host, identifier there, DOI and landing page."""

    host: str
    id: str
    url: str = ""
    doi: str = ""


@dataclass(frozen=True)
class DatasetEntry:
    """One catalogue record (see ``catalogue.json`` for the values).

    Attributes
    ----------
    name : str
        Command-line name (``deepstrf info NAME``), lower case.
    aliases : tuple of str
        Other accepted names.
    title : str
        One-line description.
    class_name, module : str
        The dataset class and the module defining it.
    modality : str
        ``'audio'`` or ``'video'``.
    species, area, signal : str
        Short forms for tables; ``brain_area``, ``preparation`` and
        ``signal_detail`` are the long forms.
    real_data : dict of str to str
        Sizes on the real data as stated by the sources: ``S``, ``N``, ``F``,
        ``dt_ms``, ``T``, ``R``, ``missing``.
    raw_size, raw_size_detail : str
        Download size.
    licence, licence_detail : str
    citation : str
        Short citation (``'Harper et al. 2016'``).
    papers : tuple of Paper
    sources : tuple of Source
    download : str or None
        Dotted path of the download function (None: nothing to download).
    download_kwargs : dict
        Extra arguments the download function needs by default (e.g.
        ``{'area': 'A1'}`` for NAT4).
    credentials : str or None
        What account is needed to download (None: public).
    notes : tuple of str
    """

    name: str
    aliases: tuple[str, ...]
    title: str
    class_name: str
    module: str
    modality: str
    species: str
    area: str
    brain_area: str
    preparation: str
    signal: str
    signal_detail: str
    real_data: Mapping[str, str]
    raw_size: str
    raw_size_detail: str
    licence: str
    licence_detail: str
    citation: str
    papers: tuple[Paper, ...]
    sources: tuple[Source, ...]
    download: str | None
    download_kwargs: Mapping[str, Any] = field(default_factory=dict)
    credentials: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def class_path(self) -> str:
        """``'<module>.<class>'``."""
        return f"{self.module}.{self.class_name}"

    @property
    def is_embedded(self) -> bool:
        """True for the simulated datasets generated in memory (nothing to download)."""
        return self.download is None

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-able data (the ``catalogue.json`` layout)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "title": self.title,
            "class": self.class_name,
            "module": self.module,
            "modality": self.modality,
            "species": self.species,
            "area": self.area,
            "brain_area": self.brain_area,
            "preparation": self.preparation,
            "signal": self.signal,
            "signal_detail": self.signal_detail,
            "real_data": dict(self.real_data),
            "raw_size": self.raw_size,
            "raw_size_detail": self.raw_size_detail,
            "licence": self.licence,
            "licence_detail": self.licence_detail,
            "citation": self.citation,
            "papers": [{"ref": p.ref, "doi": p.doi} for p in self.papers],
            "sources": [{"host": s.host, "id": s.id, "url": s.url, "doi": s.doi} for s in self.sources],
            "download": self.download,
            "download_kwargs": dict(self.download_kwargs),
            "credentials": self.credentials,
            "notes": list(self.notes),
        }


def _entry_from_json(raw: Mapping[str, Any], position: int) -> DatasetEntry:
    where = f"{_REGISTRY_FILE} dataset #{position} ({raw.get('name', '?')!r})"
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise ValueError(f"{where} lacks the key(s) {missing}")
    real = raw["real_data"]
    if not isinstance(real, Mapping) or any(key not in real for key in _REAL_DATA_KEYS):
        raise ValueError(f"{where}: real_data must hold the keys {list(_REAL_DATA_KEYS)}, got {real!r}")
    return DatasetEntry(
        name=str(raw["name"]),
        aliases=tuple(str(a) for a in raw["aliases"]),
        title=str(raw["title"]),
        class_name=str(raw["class"]),
        module=str(raw["module"]),
        modality=str(raw["modality"]),
        species=str(raw["species"]),
        area=str(raw["area"]),
        brain_area=str(raw["brain_area"]),
        preparation=str(raw["preparation"]),
        signal=str(raw["signal"]),
        signal_detail=str(raw["signal_detail"]),
        real_data={key: str(real[key]) for key in _REAL_DATA_KEYS},
        raw_size=str(raw["raw_size"]),
        raw_size_detail=str(raw["raw_size_detail"]),
        licence=str(raw["licence"]),
        licence_detail=str(raw["licence_detail"]),
        citation=str(raw["citation"]),
        papers=tuple(Paper(ref=str(p["ref"]), doi=str(p.get("doi") or "")) for p in raw["papers"]),
        sources=tuple(
            Source(host=str(s["host"]), id=str(s["id"]), url=str(s.get("url") or ""), doi=str(s.get("doi") or ""))
            for s in raw["sources"]
        ),
        download=None if raw["download"] is None else str(raw["download"]),
        download_kwargs=dict(raw["download_kwargs"]),
        credentials=None if raw["credentials"] is None else str(raw["credentials"]),
        notes=tuple(str(n) for n in raw["notes"]),
    )


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


@functools.lru_cache(maxsize=1)
def _registry() -> tuple[tuple[DatasetEntry, ...], dict[str, DatasetEntry]]:
    text = resources.files(__package__).joinpath(_REGISTRY_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    records = tuple(_entry_from_json(raw, i) for i, raw in enumerate(data["datasets"]))
    lookup: dict[str, DatasetEntry] = {}
    for entry in records:
        for key in (entry.name, *entry.aliases):
            norm = _normalise(key)
            if norm in lookup and lookup[norm] is not entry:
                raise ValueError(f"{_REGISTRY_FILE}: the name {key!r} is used by {lookup[norm].name!r} and {entry.name!r}")
            lookup[norm] = entry
    return records, lookup


def entries() -> tuple[DatasetEntry, ...]:
    """Every catalogue record, in catalogue order (real datasets first, then the demos)."""
    return _registry()[0]


def list_datasets(modality: str | None = None, include_embedded: bool = True) -> list[str]:
    """Names of the catalogued datasets.

    Parameters
    ----------
    modality : {'audio', 'video'}, optional
        Keep only this modality.
    include_embedded : bool, default True
        Include the simulated demo datasets.

    Returns
    -------
    list of str
        Command-line names, in catalogue order.
    """
    return [
        e.name
        for e in entries()
        if (modality is None or e.modality == modality) and (include_embedded or not e.is_embedded)
    ]


def get_entry(name: str) -> DatasetEntry:
    """The record of one dataset.

    Parameters
    ----------
    name : str
        Name or alias, case-insensitive; ``-`` and ``_`` are interchangeable
        (``'NS1'``, ``'crcns-aa1'``, ``'alice_eeg'``).

    Returns
    -------
    DatasetEntry

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    records, lookup = _registry()
    entry = lookup.get(_normalise(name))
    if entry is None:
        names = [e.name for e in records]
        close = difflib.get_close_matches(_normalise(name), list(lookup), n=1)
        hint = f" (did you mean {lookup[close[0]].name!r}?)" if close else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; valid names: {', '.join(names)}")
    return entry


def is_available(name: str) -> bool:
    """Whether this version of deepSTRF ships the loader module of ``name``.

    Only the module's parent packages are imported (``importlib.util.find_spec``);
    a parent package that fails to import counts as "not available".
    """
    entry = get_entry(name)
    try:
        return importlib.util.find_spec(entry.module) is not None
    except Exception:  # noqa: BLE001 - a broken or missing parent package: the loader cannot be used
        return False


def _import_attr(entry: DatasetEntry, module: str, attr: str, what: str) -> Any:
    """Import ``module.attr``; a missing loader module becomes :class:`LoaderNotAvailableError`."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == module or module.startswith(exc.name + ".")):
            raise LoaderNotAvailableError(
                f"the {entry.name} loader is not available in this version of deepSTRF "
                f"({module} is not part of it yet)"
            ) from None
        raise ImportError(
            f"the {entry.name} loader needs the package {exc.name!r}, which is not installed: pip install {exc.name}"
        ) from exc
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise LoaderNotAvailableError(
            f"the {entry.name} loader is not available in this version of deepSTRF ({module} has no {what} {attr!r})"
        ) from None


def load_class(name: str) -> type:
    """Import and return the dataset class of ``name``.

    Raises
    ------
    ValueError
        Unknown name.
    LoaderNotAvailableError
        (a ``NotImplementedError``) the loader module is not part of this version.
    ImportError
        The loader needs an optional package that is not installed.
    """
    entry = get_entry(name)
    return _import_attr(entry, entry.module, entry.class_name, "class")


def load_download(name: str) -> Callable[..., Any] | None:
    """Import and return the download function of ``name`` (None for the embedded datasets).

    Raises
    ------
    ValueError, LoaderNotAvailableError, ImportError
        As :func:`load_class`.
    """
    entry = get_entry(name)
    if entry.download is None:
        return None
    module, _, attr = entry.download.rpartition(".")
    return _import_attr(entry, module, attr, "function")


# ------------------------------------------------------------------ markdown
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _doi_link(doi: str) -> str:
    return f"[{doi}](https://doi.org/{doi})" if doi else ""


def _card(entry: DatasetEntry) -> list[str]:
    real = entry.real_data
    if entry.download is None:
        download = "nothing to download: generated in memory (`deepstrf info " + entry.name + "` works offline)"
    else:
        func = entry.download.rpartition(".")[2]
        args = ", ".join(f"{k}={v!r}" for k, v in entry.download_kwargs.items())
        call = f"{func}({args + ', ' if args else ''}dest=DIR)"
        download = f"`{call}` or `deepstrf download {entry.name} --root DIR`"
    sources = "; ".join(
        " ".join(part for part in (
            f"{s.host} {s.id}",
            f"(DOI {_doi_link(s.doi)})" if s.doi else "",
            f"<{s.url}>" if s.url else "",
        ) if part)
        for s in entry.sources
    ) or "none (embedded)"
    rows = [
        ("class", f"`{entry.class_path}`"),
        ("modality", entry.modality),
        ("species", f"{entry.species}: {entry.preparation}"),
        ("brain area", entry.brain_area),
        ("signal", entry.signal_detail),
        ("S (stims)", real["S"]),
        ("N (neurons)", real["N"]),
        ("F", real["F"]),
        ("dt (ms)", real["dt_ms"]),
        ("T", real["T"]),
        ("repeats R", real["R"]),
        ("missing pairs", real["missing"]),
        ("raw size", f"{entry.raw_size} ({entry.raw_size_detail})"),
        ("licence", f"{entry.licence}: {entry.licence_detail}" if entry.licence_detail else entry.licence),
        ("data", sources),
        ("download", download),
        ("credentials", entry.credentials or "none"),
    ]
    lines = [f'<a id="{entry.name}"></a>', "", f"## {entry.title} (`{entry.name}`)", ""]
    if entry.aliases:
        lines += ["Also accepted: " + ", ".join(f"`{a}`" for a in entry.aliases) + ".", ""]
    lines += ["| field | value |", "| --- | --- |"]
    lines += [f"| {key} | {_cell(value)} |" for key, value in rows]
    lines.append("")
    if entry.papers:
        lines += ["Cite:", ""]
        lines += [f"- {p.ref}. DOI {_doi_link(p.doi)}" if p.doi else f"- {p.ref}" for p in entry.papers]
        lines.append("")
    if entry.download is not None:
        lines += [
            f"Loader guide (constructor knobs, quirks, deliberate differences from the reference): "
            f"[loaders/{entry.name}.md](loaders/{entry.name}.md).",
            "",
        ]
    if entry.notes:
        lines += ["Notes:", ""]
        lines += [f"- {note}" for note in entry.notes]
        lines.append("")
    return lines


def render_markdown(records: Sequence[DatasetEntry] | None = None) -> str:
    """The text of ``docs/datasets.md``: a summary table and one card per dataset.

    Parameters
    ----------
    records : sequence of DatasetEntry, optional
        Defaults to the whole catalogue.

    Returns
    -------
    str
        Markdown ending with one newline; deterministic for a given registry.
    """
    records = list(entries() if records is None else records)
    lines = [
        "# Datasets",
        "",
        "<!-- Generated from src/deepSTRF/datasets/catalogue.json by",
        "     `python -m deepSTRF.datasets.catalogue --write-docs`. Do not edit by hand:",
        "     edit the JSON and regenerate (a test fails when this file is stale). -->",
        "",
        "One card per dataset known to deepSTRF. Sizes describe the real data as",
        "published (as stated by the publishers or measured on the reference",
        "implementation, deepSTRF 0.1.0); \"not established\" marks what the sources",
        "could not settle. `deepstrf list` prints the table below, `deepstrf info NAME`",
        "loads a dataset and summarises it, `deepstrf download NAME` fetches it.",
        "",
        "| name | class | species | area | signal | S | N | raw size | licence | cite |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in records:
        cells = (
            f"[`{e.name}`](#{e.name})", f"`{e.class_name}`", e.species, e.area, e.signal,
            e.real_data["S"], e.real_data["N"], e.raw_size, e.licence, e.citation,
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    for e in records:
        lines += _card(e)
    return "\n".join(lines).rstrip("\n") + "\n"


def default_docs_path() -> Path:
    """``docs/datasets.md`` of the source checkout this module lives in."""
    return Path(__file__).resolve().parents[3] / "docs" / "datasets.md"


def write_docs(path: str | Path | None = None) -> Path:
    """Write :func:`render_markdown` to ``path`` (default :func:`default_docs_path`); returns the path."""
    target = Path(path) if path is not None else default_docs_path()
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"{target.parent} does not exist: pass the path of docs/datasets.md explicitly (--write-docs PATH)"
        )
    target.write_text(render_markdown(), encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deepSTRF.datasets.catalogue``: print, write or check ``docs/datasets.md``."""
    parser = argparse.ArgumentParser(
        prog="python -m deepSTRF.datasets.catalogue",
        description="Render the dataset catalogue as Markdown (docs/datasets.md).",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write-docs", nargs="?", const="", metavar="PATH",
                       help="write the Markdown to PATH (default: docs/datasets.md of this checkout)")
    group.add_argument("--check", nargs="?", const="", metavar="PATH",
                       help="exit 1 if PATH (default: docs/datasets.md) differs from the rendering")
    args = parser.parse_args(argv)
    try:
        if args.write_docs is not None:
            print(f"wrote {write_docs(args.write_docs or None)}")
            return 0
        if args.check is not None:
            target = Path(args.check) if args.check else default_docs_path()
            current = target.read_text(encoding="utf-8") if target.is_file() else None
            if current != render_markdown():
                print(f"{target} is out of date: run python -m deepSTRF.datasets.catalogue --write-docs",
                      file=sys.stderr)
                return 1
            print(f"{target} is up to date")
            return 0
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render_markdown())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
