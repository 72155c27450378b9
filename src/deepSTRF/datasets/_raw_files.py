"""The "raw files present, else download if asked, else say how to get them" step every loader starts with."""

from __future__ import annotations

import os
from collections.abc import Callable

from ._errors import DatasetNotFoundError

__all__ = ["require_raw_files"]


def require_raw_files(
    dataset: str,
    root: str | os.PathLike[str],
    find_missing: Callable[[], list[str]],
    *,
    download: bool,
    fetch: Callable[[], object],
    layout: str | None,
    fix: str | Callable[[], str],
) -> None:
    """Check a dataset's raw files; fetch them when asked; raise if some are still missing.

    Parameters
    ----------
    dataset : str
        Dataset name shown in the error, e.g. ``"NS1"``.
    root : path-like
        Dataset folder shown in the error.
    find_missing : callable () -> list of str
        The required paths (relative to ``root``) that are absent; called
        once, and once more after ``fetch``.
    download : bool
        Call ``fetch`` when something is missing.
    fetch : callable
        Downloads what is missing (its return value is ignored).
    layout : str or None
        The expected on-disk layout, shown in the error.
    fix : str or callable () -> str
        The exact call or step that obtains the files; a callable is evaluated
        only when the error is raised (after the download attempt).

    Raises
    ------
    DatasetNotFoundError
        Files are still missing (listing them, ``layout`` and ``fix``).
    """
    missing = find_missing()
    if missing and download:
        fetch()
        missing = find_missing()
    if missing:
        raise DatasetNotFoundError(dataset, str(root), missing, layout, fix() if callable(fix) else fix)
