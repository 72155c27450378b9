"""Exception classes raised by deepSTRF.

Each subclasses the builtin exception a user would already catch, so
``except FileNotFoundError`` keeps working around a missing dataset and
``except ValueError`` around a malformed file.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "DeepSTRFError",
    "DatasetNotFoundError",
    "ChecksumError",
    "DatasetFormatError",
    "DownloadError",
    "CredentialsError",
    "CacheError",
]


class DeepSTRFError(Exception):
    """Base class of every exception raised on purpose by deepSTRF."""


class DatasetNotFoundError(DeepSTRFError, FileNotFoundError):
    """Raw files of a dataset are missing.

    Parameters
    ----------
    dataset : str
        Dataset name, e.g. ``"NS1"``.
    root : str
        Folder that was searched.
    missing : iterable of str
        Paths (relative to ``root``) that were expected but not found.
    layout : str, optional
        A short description of the expected on-disk layout.
    fix : str, optional
        The exact call or step that obtains the files.
    """

    def __init__(
        self,
        dataset: str,
        root: str,
        missing: Iterable[str],
        layout: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.root = str(root)
        self.missing = [str(m) for m in missing]
        self.layout = layout
        self.fix = fix
        shown = self.missing[:10]
        more = len(self.missing) - len(shown)
        lines = [f"{dataset}: {len(self.missing)} required file(s) missing under {self.root!r}:"]
        lines += [f"  - {m}" for m in shown]
        if more > 0:
            lines.append(f"  ... and {more} more")
        if layout:
            lines.append("Expected layout:")
            lines += ["  " + ln for ln in layout.strip().splitlines()]
        if fix:
            lines.append(f"To get them: {fix}")
        super().__init__("\n".join(lines))

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno/filename
        return self.args[0]


class ChecksumError(DeepSTRFError, OSError):
    """A downloaded or cached file does not have the expected hash.

    The offending file has already been deleted when this is raised.
    """

    def __init__(self, path: str, expected: str, actual: str, fix: str | None = None) -> None:
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        msg = (
            f"checksum mismatch for {self.path!r}: expected {expected}, got {actual}. "
            "The corrupt file was deleted. "
        )
        msg += fix or "Download it again; if the mismatch persists the remote file changed, please report it."
        super().__init__(msg)

    def __str__(self) -> str:
        return self.args[0]


class DatasetFormatError(DeepSTRFError, ValueError):
    """A file exists but does not hold the expected fields or shapes.

    Parameters
    ----------
    path : str
        The file (or object) at fault.
    field : str
        The field, key or variable that was inspected.
    found : str
        What was found.
    expected : str
        What was expected.
    """

    def __init__(self, path: str, field: str, found: str, expected: str) -> None:
        self.path = str(path)
        self.field = field
        self.found = found
        self.expected = expected
        super().__init__(f"{self.path}: field {field!r} has {found}, expected {expected}")


class DownloadError(DeepSTRFError, ConnectionError):
    """A network transfer failed (URL unreachable, HTTP error, connection dropped).

    Parameters
    ----------
    message : str
        What failed and what to do about it.
    url : str, optional
        The URL that failed.
    status : int, optional
        The HTTP status code, ``None`` when no response came (connection
        refused or dropped, timeout).
    retryable : bool, optional
        Whether trying again later may succeed (network trouble, 429, 5xx),
        as opposed to a permanent answer (404, 403, wrong content).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self.retryable = retryable
        super().__init__(message)

    def __str__(self) -> str:
        return self.args[0]


class CredentialsError(DeepSTRFError, PermissionError):
    """A host that needs an account (CRCNS) refused or lacked credentials."""


class CacheError(DeepSTRFError, OSError):
    """The processed-data cache could not be written or read."""
