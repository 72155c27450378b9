"""The ``deepstrf`` command.

::

    deepstrf list                                   the dataset catalogue
    deepstrf download NAME [--root DIR]             fetch a dataset's raw files
    deepstrf info NAME [--root DIR]                 load a dataset and summarise it
    deepstrf plot NAME [--stim K] [--out FILE]      one stim + raster/PSTH of its best neurons (PNG)
    deepstrf demo [--out DIR] [--seed N]            ridge STRFs on the embedded simulated dataset

``-o KEY=VALUE`` (repeatable) passes an argument to the dataset class
(``info``, ``plot``) or to the download function (``download``), e.g.
``deepstrf info nat4 -o area=PEG``. Errors a user can fix (unknown dataset,
missing data, bad index, loader not in this version) are reported as one line
on stderr with exit code 1 and no traceback (``--traceback`` shows it).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

#: Exceptions that mean "the user can fix this": reported in one line.
_USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    IndexError,
    OSError,
    ImportError,
    NotImplementedError,
)

_LIST_COLUMNS = (
    # header, getter, max width
    ("name", lambda e: e.name, 12),
    ("species", lambda e: e.species, 15),
    ("area", lambda e: e.area, 16),
    ("signal", lambda e: e.signal, 18),
    ("S", lambda e: e.real_data["S"], 14),
    ("N", lambda e: e.real_data["N"], 14),
    ("raw size", lambda e: e.raw_size, 16),
    ("licence", lambda e: e.licence, 16),
    ("citation", lambda e: e.citation, 24),
)


class UserError(Exception):
    """An error caused by the command line (reported in one line, exit code 1)."""


# ---------------------------------------------------------------- helpers
def _parse_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``['area=PEG', 'n_stims=10']`` -> ``{'area': 'PEG', 'n_stims': 10}`` (Python literals when they parse)."""
    options: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise UserError(f"-o expects KEY=VALUE with KEY a Python identifier, got {pair!r}")
        try:
            value: Any = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        options[key] = value
    return options


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


@contextlib.contextmanager
def _single_thread(enabled: bool) -> Iterator[None]:
    """One torch thread for the tiny embedded datasets (fastest, robust to a busy machine)."""
    if not enabled:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _wrap_table(headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int]) -> list[str]:
    """Plain-text table whose cells wrap inside their column."""
    used = [
        min(limit, max([len(h)] + [len(str(r[i])) for r in rows])) for i, (h, limit) in enumerate(zip(headers, widths))
    ]

    def render(cells: Sequence[str]) -> list[str]:
        wrapped = [textwrap.wrap(str(c), w, break_long_words=True) or [""] for c, w in zip(cells, used)]
        height = max(len(w) for w in wrapped)
        return [
            "  ".join((w[k] if k < len(w) else "").ljust(width) for w, width in zip(wrapped, used)).rstrip()
            for k in range(height)
        ]

    out = render(headers)
    out.append("  ".join("-" * w for w in used))
    for row in rows:
        out += render(row)
    return out


def _instantiate(entry: Any, root: str | None, options: dict[str, Any]) -> Any:
    """Build the dataset of a catalogue entry (embedded ones need no path)."""
    from .datasets.catalogue import load_class

    cls = load_class(entry.name)
    if entry.is_embedded:
        return cls(**options)
    if root is not None:
        options = {"path": root, **options}
    return cls(**options)


def _card_lines(entry: Any) -> list[str]:
    real = entry.real_data
    dois = ", ".join(f"doi:{p.doi}" for p in entry.papers if p.doi)
    cite = f"{entry.citation} ({dois})" if dois else ""
    lines = [
        f"{entry.name}: {entry.title}",
        f"  class        {entry.class_path}",
        f"  species      {entry.species}: {entry.preparation}",
        f"  brain area   {entry.brain_area}",
        f"  signal       {entry.signal_detail}",
        (
            f"  real data    S {real['S']}; N {real['N']}; F {real['F']}; dt {real['dt_ms']} ms; R {real['R']}; "
            f"missing {real['missing']}"
        ),
        f"  raw size     {entry.raw_size} ({entry.raw_size_detail})",
        f"  licence      {entry.licence}",
    ]
    if cite:
        lines.append(f"  cite         {cite}")
    if entry.is_embedded:
        lines.append("  download     none: generated in memory")
    else:
        lines.append(f"  download     deepstrf download {entry.name} [--root DIR]"
                     + (f"  (needs a {entry.credentials})" if entry.credentials else ""))
    return lines


# ---------------------------------------------------------------- commands
def _cmd_list(args: argparse.Namespace) -> int:
    from .datasets.catalogue import entries, is_available

    records = entries()
    if args.json:
        import json

        print(json.dumps([dict(e.as_dict(), available=is_available(e.name)) for e in records], indent=2))
        return 0
    headers = [h for h, _, _ in _LIST_COLUMNS]
    widths = [w for _, _, w in _LIST_COLUMNS]
    rows = [[get(e) for _, get, _ in _LIST_COLUMNS] for e in records]
    print("\n".join(_wrap_table(headers, rows, widths)))
    missing = [e.name for e in records if not is_available(e.name)]
    embedded = [e.name for e in records if e.is_embedded]
    print()
    print(f"{len(records)} datasets ({', '.join(embedded)}: simulated, embedded, no download). "
          "S and N are those of the real data as published.")
    if missing:
        print(f"Loader not in this version yet: {', '.join(missing)}.")
    print("Details: deepstrf info NAME, or the cards in docs/datasets.md.")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .datasets.catalogue import get_entry, load_download

    entry = get_entry(args.name)
    if entry.is_embedded:
        print(f"{entry.name}: nothing to download (the {entry.class_name} data are generated in memory by deepSTRF)")
        return 0
    func = load_download(entry.name)
    kwargs = dict(entry.download_kwargs)
    kwargs.update(_parse_options(args.option))
    if args.root is not None:
        params = inspect.signature(func).parameters
        target = next((p for p in ("dest", "root", "path") if p in params), None)
        if target is None:
            raise UserError(f"{entry.download} takes no destination folder; run it without --root")
        kwargs[target] = args.root
    result = func(**kwargs)
    print(f"{entry.name}: raw files ready in {result}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .datasets.catalogue import get_entry
    from .demo.summary import summarize_dataset

    entry = get_entry(args.name)
    print("\n".join(_card_lines(entry)))
    with _single_thread(entry.is_embedded):
        ds = _instantiate(entry, args.root, _parse_options(args.option))
        summary = summarize_dataset(ds, quality=not args.no_quality)
    where = "generated in memory" if entry.is_embedded else f"loaded from {getattr(ds, 'path', args.root)}"
    print()
    print(f"{entry.name}, {where}:")
    print("\n".join("  " + line for line in summary.lines()))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .datasets.catalogue import get_entry
    from .demo.figures import plot_stim_responses

    entry = get_entry(args.name)
    if args.neurons < 0:
        raise UserError(f"--neurons must be >= 0, got {args.neurons}")
    with _single_thread(entry.is_embedded):
        ds = _instantiate(entry, args.root, _parse_options(args.option))
        S = ds.get_S()
        if not 0 <= args.stim < S:
            raise UserError(f"--stim {args.stim} is out of range: {entry.name} has {S} stims (0..{S - 1})")
        out = Path(args.out) if args.out else Path(f"deepstrf_{entry.name}_stim{args.stim}.png")
        path, shown, criterion = plot_stim_responses(ds, args.stim, out, n_neurons=args.neurons)
    name = ds.stim_meta[args.stim].get("name", "") if args.stim < len(ds.stim_meta) else ""
    neurons = ", ".join(str(n) for n in shown) or "none"
    print(f"wrote {path} (stim {args.stim} {name!r}; neurons {neurons}, ranked by {criterion})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(out_dir=args.out, seed=args.seed, figure=not args.no_figure)
    print("\n".join(report.lines()))
    return 0


# ---------------------------------------------------------------- parser
def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="deepstrf",
        description="Public sensory neural-response datasets behind one PyTorch API.",
        epilog="Run 'deepstrf COMMAND --help' for the options of a command. Dataset cards: docs/datasets.md.",
    )
    parser.add_argument("--version", action="version", version=f"deepSTRF {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def option_arg(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                       help=f"argument passed to {what} (repeatable; VALUE read as a Python literal when possible)")

    p = commands.add_parser("list", help="print the dataset catalogue",
                            description="Print every dataset deepSTRF knows: species, area, signal, S and N of "
                                        "the real data, download size, licence, citation.")
    p.add_argument("--json", action="store_true", help="print the catalogue records as JSON")
    p.set_defaults(handler=_cmd_list)

    p = commands.add_parser("download", help="fetch the raw files of a dataset",
                            description="Fetch (and verify, and unpack) the raw files of a dataset with its "
                                        "download function. CRCNS datasets need an account: set CRCNS_USERNAME "
                                        "and CRCNS_PASSWORD or a netrc entry.")
    p.add_argument("name", help="dataset name (see 'deepstrf list')")
    p.add_argument("--root", metavar="DIR", help="folder for the files (default: the deepSTRF data root, "
                                                 "$DEEPSTRF_DATA/<dataset>)")
    option_arg(p, "the download function, e.g. -o area=PEG for nat4")
    p.set_defaults(handler=_cmd_download)

    p = commands.add_parser("info", help="load a dataset and summarise it",
                            description="Print the catalogue card of a dataset, load it and print S, N, the "
                                        "repeat and duration distributions, the missing-pair fraction and the "
                                        "SNR / CCmax quantiles.")
    p.add_argument("name", help="dataset name (see 'deepstrf list')")
    p.add_argument("--root", metavar="DIR", help="folder holding the raw files (passed as path=DIR)")
    p.add_argument("--no-quality", action="store_true", help="skip SNR / CCmax (slow on the largest datasets)")
    option_arg(p, "the dataset class, e.g. -o area=PEG")
    p.set_defaults(handler=_cmd_info)

    p = commands.add_parser("plot", help="draw one stim and the raster/PSTH of its best neurons (PNG)",
                            description="Write a PNG of one stim (spectrogram, waveform or video pixels over "
                                        "time) and the raster + PSTH of the neurons most reliable on it "
                                        "(split-half CCmax on that stim).")
    p.add_argument("name", help="dataset name (see 'deepstrf list')")
    p.add_argument("--stim", type=int, default=0, metavar="K", help="stim index, 0 <= K < S (default 0)")
    p.add_argument("--out", metavar="FILE", help="PNG to write (default deepstrf_NAME_stimK.png)")
    p.add_argument("--neurons", type=int, default=4, metavar="N", help="number of neurons to draw (default 4)")
    p.add_argument("--root", metavar="DIR", help="folder holding the raw files (passed as path=DIR)")
    option_arg(p, "the dataset class")
    p.set_defaults(handler=_cmd_plot)

    p = commands.add_parser("demo", help="fit ridge STRFs to the embedded simulated dataset (no download)",
                            description="Build the embedded simulated dataset, compute neuron quality, "
                                        "standardise the stims on the train split, fit a ridge STRF per neuron "
                                        "(penalty chosen on the val split), report test CCraw / CCnorm and the "
                                        "recovery of the true STRFs, and write a figure and a JSON report.")
    p.add_argument("--out", metavar="DIR", default="deepstrf_demo",
                   help="folder for deepstrf_demo.png and deepstrf_demo.json (default ./deepstrf_demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated dataset (default 0)")
    p.add_argument("--no-figure", action="store_true", help="skip the figure (no matplotlib needed)")
    p.set_defaults(handler=_cmd_demo)
    return parser


def _error_message(args: argparse.Namespace, exc: BaseException) -> str:
    from .datasets._errors import DatasetNotFoundError

    message = _first_line(exc)
    if isinstance(exc, DatasetNotFoundError) and getattr(args, "name", None):
        if args.command == "download":
            from .utils.download import is_offline

            if is_offline():
                message = message.rstrip(":. ") + "; downloads are disabled because DEEPSTRF_OFFLINE is set"
        else:
            root = f" --root {args.root}" if getattr(args, "root", None) else ""
            message = message.rstrip(":. ") + f"; get them with: deepstrf download {args.name}{root}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deepstrf`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0 on success, 1 on an error the user can fix (one line on
        stderr), 2 on a command-line syntax error (argparse), 130 on Ctrl-C.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (UserError, *_USER_ERRORS) as exc:
        if args.traceback:
            raise
        print(f"deepstrf {args.command}: error: {_error_message(args, exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deepstrf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
