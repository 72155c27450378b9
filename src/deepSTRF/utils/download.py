"""Fetch and unpack the raw files of the datasets.

Every fetcher returns the local path of a *verified* file:

- against the registry hash passed as ``known_hash`` (``"sha256:<hex>"`` or
  ``"md5:<hex>"``; a bare 64/32-hex string is read as sha256/md5), else
- against the checksum the host publishes in its API (Zenodo
  ``files[].checksum``, figshare ``computed_md5``, OSF ``extra.hashes``), else
- (GitHub raw, CRCNS, plain URLs without a hash) only against the transfer's
  ``Content-Length``, an HTML-page check and the archive magic number; the
  file's sha256 is logged so that it can be pinned in the registry.

A verified file gets a small sidecar ``.<name>.verified`` (size, mtime and
digests), so later calls neither hash the file again nor touch the network. A
failed verification deletes the file and raises
:class:`~deepSTRF.datasets._errors.ChecksumError`.

Transfers stream into ``<name>.part`` (pooch's :class:`pooch.HTTPDownloader`
does the streaming and the progress bar) and are renamed into place only once
verified, under a ``filelock`` lock on ``.<name>.lock``, so that concurrent
processes download a file once. When the server advertises
``Accept-Ranges: bytes``, an interrupted transfer keeps its ``.part`` and
continues it with an HTTP ``Range`` request (within the same call on a dropped
connection, or on the next call), which matters for the 29 GB Downer 2025
archive. Connection errors, timeouts, 429 and 5xx answers are retried with
exponential backoff honouring ``Retry-After``/``X-RateLimit-Reset``; 4xx
answers are not.

Environment variables
---------------------
``DEEPSTRF_DATA``
    Root folder of the raw data (see :func:`data_root`).
``DEEPSTRF_OFFLINE=1``
    Forbid every network access; a missing file raises
    :class:`~deepSTRF.datasets._errors.DatasetNotFoundError`.
``CRCNS_USERNAME``, ``CRCNS_PASSWORD`` (or a netrc entry)
    CRCNS account (see :func:`crcns_credentials`).
``DEEPSTRF_<HOST>_URL``
    Base URL of a host, e.g. ``DEEPSTRF_ZENODO_URL`` (see :data:`HOSTS`), for
    mirrors and for tests against a local server.

Progress bars (tqdm) are drawn on stderr only when it is a terminal.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import netrc
import os
import random
import re
import shutil
import stat
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import filelock
import platformdirs
import pooch
import requests
from tqdm import tqdm

from .. import __version__
from ..datasets._errors import (
    ChecksumError,
    CredentialsError,
    DatasetFormatError,
    DatasetNotFoundError,
    DownloadError,
)

__all__ = [
    "HOSTS",
    "data_root",
    "is_offline",
    "host_url",
    "fetch_url",
    "fetch_zenodo",
    "fetch_figshare",
    "fetch_osf",
    "fetch_github_raw",
    "fetch_crcns",
    "crcns_credentials",
    "extract_zip",
    "extract_tar",
    "is_extracted",
]

logger = logging.getLogger(__name__)

#: Base URL of every host, overridable per host by the environment variable
#: ``DEEPSTRF_<KEY>_URL`` (e.g. ``DEEPSTRF_ZENODO_URL``) or by editing this dict.
HOSTS: dict[str, str] = {
    "zenodo": "https://zenodo.org",
    "figshare_api": "https://api.figshare.com/v2",
    "figshare_files": "https://ndownloader.figshare.com",
    "osf_api": "https://api.osf.io/v2",
    "osf": "https://osf.io",
    "github_raw": "https://raw.githubusercontent.com",
    "crcns": "https://portal.nersc.gov/project/crcns/download",
    "bitbucket": "https://bitbucket.org",
    "drum": "https://drum.lib.umd.edu",
}

USER_AGENT = f"deepSTRF/{__version__} (+https://pypi.org/project/deepSTRF/)"
#: (connect, read) timeouts in seconds; CRCNS/NERSC may stall before the first byte.
TIMEOUT = (30.0, 120.0)
CRCNS_TIMEOUT = (30.0, 600.0)
#: Attempts per request (first try included) on retryable failures.
MAX_ATTEMPTS = 5
#: First backoff wait in seconds (doubled at each attempt, with jitter).
BACKOFF_S = 1.0
#: Upper bound on any wait, including a server's ``Retry-After``.
MAX_WAIT_S = 60.0
#: Streaming chunk size; a dropped connection loses at most the chunk in flight.
CHUNK_BYTES = 1 << 16
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CRCNS_REGISTER = "https://crcns.org/register"
_CRCNS_HELP = (
    "CRCNS data need a (free) crcns.org account: register at " + _CRCNS_REGISTER + ", then either set the "
    "environment variables CRCNS_USERNAME and CRCNS_PASSWORD, or add the line "
    "'machine crcns.org login <user> password <password>' to ~/.netrc (or to the file named by $NETRC; "
    "make it readable by you only: chmod 600). deepSTRF uses them only to log in and never stores them."
)
_MAGIC = {
    ".zip": (b"PK\x03\x04", b"PK\x05\x06"),
    ".gz": (b"\x1f\x8b",),
    ".tgz": (b"\x1f\x8b",),
}

T = TypeVar("T")
_sleep = time.sleep  # tests replace it


# --------------------------------------------------------------------------- locations and switches


def data_root(dataset: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding a dataset's raw files.

    Parameters
    ----------
    dataset : str
        Dataset folder name, e.g. ``"NS1"``.
    path : path-like, optional
        Explicit folder; returned as is (``~`` expanded) when given.

    Returns
    -------
    pathlib.Path
        ``path``, else ``$DEEPSTRF_DATA/<dataset>``, else
        ``platformdirs.user_data_dir("deepSTRF")/<dataset>``. Not created.
    """
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("DEEPSTRF_DATA", "").strip()
    base = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("deepSTRF"))
    return base / dataset


def is_offline() -> bool:
    """``True`` when ``DEEPSTRF_OFFLINE`` is set to ``1``/``true``/``yes``/``on``: no network access at all."""
    return os.environ.get("DEEPSTRF_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def host_url(host: str) -> str:
    """Base URL of ``host`` (a key of :data:`HOSTS`), honouring ``DEEPSTRF_<HOST>_URL``."""
    if host not in HOSTS:
        raise ValueError(f"unknown host {host!r}; known hosts: {sorted(HOSTS)}")
    env = os.environ.get(f"DEEPSTRF_{host.upper()}_URL", "").strip()
    return (env or HOSTS[host]).rstrip("/")


def _progress(**kwargs: Any) -> tqdm:
    # disable=None: tqdm draws only when its stream (stderr) is a terminal.
    kwargs.setdefault("leave", False)
    return tqdm(disable=None, dynamic_ncols=True, **kwargs)


# --------------------------------------------------------------------------- hashes and sidecars


def _parse_hash(known_hash: str | None, what: str = "known_hash") -> tuple[str, str] | None:
    if known_hash is None:
        return None
    text = str(known_hash).strip().lower()
    if ":" in text:
        alg, digest = text.split(":", 1)
    else:
        alg, digest = {64: "sha256", 32: "md5"}.get(len(text), "?"), text
    lengths = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
    if alg not in lengths or not re.fullmatch(rf"[0-9a-f]{{{lengths[alg]}}}", digest):
        raise ValueError(f"{what}={known_hash!r} is not a checksum; expected 'sha256:<64 hex>' or 'md5:<32 hex>'")
    return alg, digest


def _hash_file(path: Path, algorithms: set[str]) -> dict[str, str]:
    hashers = {alg: hashlib.new(alg) for alg in algorithms}
    with open(path, "rb") as fh, _progress(total=path.stat().st_size, unit="B", unit_scale=True,
                                           desc=f"verifying {path.name}") as bar:
        while chunk := fh.read(1 << 22):
            for h in hashers.values():
                h.update(chunk)
            bar.update(len(chunk))
    return {alg: h.hexdigest() for alg, h in hashers.items()}


def _sidecar(target: Path) -> Path:
    return target.with_name(f".{target.name}.verified")


def _write_sidecar(target: Path, digests: dict[str, str], checked: tuple[str, str] | None, url: str | None) -> None:
    st = target.stat()
    doc = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "digests": digests,
           "checked_against": f"{checked[0]}:{checked[1]}" if checked else None, "url": url}
    tmp = target.with_name(f".{target.name}.verified.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, _sidecar(target))


def _verified(target: Path, expected: tuple[str, str] | None) -> bool | None:
    """``True``/``False`` when the sidecar settles it, ``None`` when there is no valid sidecar."""
    try:
        doc = json.loads(_sidecar(target).read_text())
        st = target.stat()
        if doc["size"] != st.st_size or doc["mtime_ns"] != st.st_mtime_ns:
            return None
        digests = dict(doc["digests"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if expected is None:
        return True
    alg, digest = expected
    if alg not in digests:  # registry switched algorithm: hash once more, remember it
        digests.update(_hash_file(target, {alg}))
        _write_sidecar(target, digests, expected, doc.get("url"))
    return digests[alg] == digest


def _drop(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise OSError(errno.ENOSPC, f"not enough free disk space in {folder}: the download needs {needed:,} "
                      f"bytes and {free:,} are free; free some space or choose another folder "
                      "(path= argument or DEEPSTRF_DATA)", str(folder))


# --------------------------------------------------------------------------- transfers


class _HTMLInsteadOfFile(Exception):
    def __init__(self, url: str, status: int) -> None:
        super().__init__(url, status)
        self.url, self.status = url, status


class _ShortBody(Exception):
    """The connection closed before Content-Length bytes arrived."""


class _NoAuth(requests.auth.AuthBase):
    """Keeps requests from adding netrc credentials as an Authorization header."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


class _PartFile:
    """The ``.part`` file of one download: hashes what is written and handles resume.

    pooch's downloader writes into it like into a file object.
    """

    def __init__(self, target: Path, url: str, expected: tuple[str, str] | None) -> None:
        self.path = target.with_name(target.name + ".part")
        self.info = target.with_name(f".{target.name}.part.json")
        self.url = url
        self.expected = f"{expected[0]}:{expected[1]}" if expected else None
        self.algorithms = {"sha256"} | ({expected[0]} if expected else set())
        self.validator: str | None = None
        self.resumable = False
        self.total: int | None = None
        self._hashers = {alg: hashlib.new(alg) for alg in self.algorithms}
        previous = self._previous_info()
        if previous is not None and self.path.is_file() and self.path.stat().st_size > 0:
            self.validator = previous.get("validator")
            self.resumable = True
            self._fh = open(self.path, "r+b")
            while chunk := self._fh.read(CHUNK_BYTES):
                for h in self._hashers.values():
                    h.update(chunk)
            self.offset = self._fh.tell()
            logger.info("resuming %s at byte %d", self.path.name, self.offset)
        else:
            _drop(self.info)
            self._fh = open(self.path, "wb")
            self.offset = 0

    def _previous_info(self) -> dict | None:
        try:
            doc = json.loads(self.info.read_text())
        except (OSError, ValueError):
            return None
        return doc if doc.get("url") == self.url and doc.get("expected") == self.expected else None

    def request_headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        return headers

    def on_response(self, resp: requests.Response, *, html_ok: bool = False) -> None:
        """Inspect a response before its body is read (status, ranges, type, size)."""
        if resp.is_redirect or resp.status_code >= 400:
            return
        ranges = resp.headers.get("Accept-Ranges", "").strip().lower() == "bytes"
        if self.offset:
            match = re.match(r"\s*bytes\s+(\d+)-", resp.headers.get("Content-Range", ""))
            if resp.status_code == 206 and match and int(match.group(1)) == self.offset:
                ranges = True
            else:  # the server sent the whole file (or something else): start over
                logger.info("server ignored the range request for %s; restarting", self.url)
                self.restart()
        etag = resp.headers.get("ETag", "")
        self.validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
        self.resumable = ranges
        if ranges:
            self.info.write_text(json.dumps({"url": self.url, "expected": self.expected,
                                             "validator": self.validator}))
        if not html_ok and "text/html" in resp.headers.get("Content-Type", "").lower():
            resp.close()
            raise _HTMLInsteadOfFile(resp.url, resp.status_code)
        length = resp.headers.get("Content-Length")
        self.total = None
        if length is not None and length.isdigit():
            self.total = self.offset + int(length)
            try:
                _check_free_space(self.path.parent, int(length))
            except OSError:
                resp.close()
                raise

    def write(self, chunk: bytes) -> int:
        self._fh.write(chunk)
        for h in self._hashers.values():
            h.update(chunk)
        self.offset += len(chunk)
        return len(chunk)

    def flush(self) -> None:
        self._fh.flush()

    def restart(self) -> None:
        self._fh.seek(0)
        self._fh.truncate()
        self._hashers = {alg: hashlib.new(alg) for alg in self.algorithms}
        self.offset = 0
        self.total = None

    def before_retry(self, status: int | None) -> None:
        if status == 416:  # our range is not satisfiable: the remote file changed
            self.resumable = False
        if not self.resumable:
            self.restart()

    def check_complete(self) -> None:
        if self.total is not None and self.offset < self.total:
            raise _ShortBody(f"connection closed after {self.offset:,} of {self.total:,} bytes")

    def close(self) -> None:
        self._fh.close()

    def digests(self) -> dict[str, str]:
        return {alg: h.hexdigest() for alg, h in self._hashers.items()}

    def discard(self) -> None:
        self.close()
        _drop(self.path, self.info)


def _http_get(url: str, part: _PartFile, bar: tqdm) -> None:
    """One GET attempt streaming into ``part`` (pooch does the streaming and the progress bar)."""

    def inspect(resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        part.on_response(resp)
        return resp

    downloader = pooch.HTTPDownloader(progressbar=bar, chunk_size=CHUNK_BYTES, headers=part.request_headers(),
                                      timeout=TIMEOUT, hooks={"response": inspect})
    downloader(url, part, None)
    part.check_complete()


def _wait_hint(resp: requests.Response | None) -> float | None:
    if resp is None:
        return None
    retry_after = resp.headers.get("Retry-After")
    if retry_after:
        try:
            return float(retry_after)
        except ValueError:
            try:
                return parsedate_to_datetime(retry_after).timestamp() - time.time()
            except (TypeError, ValueError):
                pass
    reset = resp.headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return float(reset) - time.time()
        except ValueError:
            pass
    return None


def _classify(exc: BaseException) -> tuple[bool, int | None, str, float | None]:
    """(retryable, status, reason, wait hint) of a failed attempt; re-raise what is not a transfer error."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        resp = exc.response
        status = resp.status_code
        return (status in _RETRY_STATUS or status >= 500 or status == 416), status, resp.reason or "", _wait_hint(resp)
    if isinstance(exc, _ShortBody):
        return True, None, str(exc), None
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return True, None, f"{type(exc).__name__}: {exc}", None
    raise exc


def _error_for(url: str, retryable: bool, status: int | None, reason: str, attempts: int) -> DownloadError:
    if status in (404, 410):
        msg = (f"file not found at {url} (HTTP {status}). Retrying will not help: the URL or the registry "
               "entry is wrong, or the host removed the file.")
    else:
        what = f"HTTP {status} {reason}".strip() if status else reason
        msg = f"download of {url} failed: {what}"
        if retryable:
            msg += f" (gave up after {attempts} attempts). This looks temporary (network or server trouble): try again later."
        elif status in (401, 403):
            msg += (". The host refused access; retrying will not help. If the file opens in a browser, "
                    "download it by hand into the dataset folder.")
        else:
            msg += ". Retrying will not help."
    return DownloadError(msg, url=url, status=status, retryable=retryable)


def _with_retries(op: Callable[[], T], url: str, before_retry: Callable[[int | None], None] | None = None) -> T:
    """Run ``op`` and retry retryable failures with backoff; raise :class:`DownloadError` otherwise."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return op()
        except _HTMLInsteadOfFile as exc:
            raise DownloadError(
                f"{exc.url} answered with an HTML page (HTTP {exc.status}) instead of the file: the host may "
                "have changed its links or be blocking automated downloads. Open the URL in a browser; if "
                "the file is there, download it by hand into the dataset folder.",
                url=url, status=exc.status, retryable=False) from None
        except Exception as exc:  # _classify re-raises what is not a transfer failure
            retryable, status, reason, hint = _classify(exc)
            if not retryable or attempt == MAX_ATTEMPTS:
                raise _error_for(url, retryable, status, reason, attempt) from exc
            wait = hint if hint is not None else BACKOFF_S * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
            wait = min(max(wait, 0.0), MAX_WAIT_S)
            logger.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", url,
                           f"HTTP {status}" if status else reason, wait, attempt + 1, MAX_ATTEMPTS)
            _sleep(wait)
            if before_retry is not None:
                before_retry(status)
    raise AssertionError("unreachable")  # pragma: no cover


def _get_json(url: str) -> dict:
    """GET a JSON document (host metadata) with the retry policy."""

    def op() -> dict:
        resp = requests.get(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"}, timeout=TIMEOUT)
        resp.raise_for_status()
        if "text/html" in resp.headers.get("Content-Type", "").lower():
            raise _HTMLInsteadOfFile(url, resp.status_code)
        return resp.json()

    try:
        doc = _with_retries(op, url)
    except requests.JSONDecodeError as exc:
        raise DownloadError(f"{url} did not answer with JSON ({exc}); the host API may have changed.",
                            url=url, retryable=False) from exc
    if not isinstance(doc, dict):
        raise DownloadError(f"{url} answered with JSON that is not an object", url=url, retryable=False)
    return doc


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip()[:15].lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _check_content(path: Path, name: str, url: str, magic_check: bool) -> None:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not name.lower().endswith((".html", ".htm")) and _looks_like_html(head):
        raise DownloadError(f"{url} sent an HTML page instead of {name}: the link may be broken or the host may "
                            "block automated downloads. Open it in a browser, or download the file by hand.",
                            url=url, retryable=False)
    if magic_check:
        suffix = PurePosixPath(name.lower()).suffix
        magics = _MAGIC.get(suffix)
        if magics and not head.startswith(magics):
            raise DownloadError(f"{url} sent something that is not a {suffix} archive (it starts with "
                                f"{head[:8]!r}); the download is unusable.", url=url, retryable=False)


@dataclass
class _Remote:
    """Where a file comes from and the checksum its host publishes (``None`` if none)."""

    url: str
    expected: tuple[str, str] | None = None
    size: int | None = None
    transfer: Callable[[str, _PartFile, tqdm], None] = field(default=_http_get)


def _download(remote: _Remote, target: Path, expected: tuple[str, str] | None) -> Path:
    part = _PartFile(target, remote.url, expected)
    if remote.size is not None:
        _check_free_space(target.parent, remote.size - part.offset)
    # pooch tests the bar's truth value, which tqdm defines by total > 0; pooch sets the real total.
    bar = _progress(total=remote.size or 1, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name)
    try:
        _with_retries(lambda: remote.transfer(remote.url, part, bar), remote.url, part.before_retry)
        part.close()
        digests = part.digests()
        _check_content(part.path, target.name, remote.url, magic_check=expected is None)
        if expected is not None:
            alg, digest = expected
            if digests[alg] != digest:
                part.discard()
                raise ChecksumError(str(target), f"{alg}:{digest}", f"{alg}:{digests[alg]}",
                                    fix=f"Call again to download a fresh copy from {remote.url}; if the mismatch "
                                    "persists the remote file changed: please report it to the deepSTRF developers.")
        else:
            logger.info("downloaded %s from %s without a known checksum; its sha256 is %s",
                        target.name, remote.url, digests["sha256"])
        os.replace(part.path, target)
        _drop(part.info)
        _write_sidecar(target, digests, expected, remote.url)
        return target
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt) or (isinstance(exc, DownloadError) and exc.retryable)
        if part.resumable and interrupted and part.offset > 0:
            part.close()
            logger.warning("kept the partial download %s (%d bytes); the next call resumes it",
                           part.path, part.offset)
        else:
            part.discard()
        raise
    finally:
        bar.close()


def _fetch(dest_dir: str | os.PathLike[str], fname: str, known_hash: str | None,
           resolve: Callable[[], _Remote], source: str) -> Path:
    """Shared path of every fetcher: fast check, offline rule, lock, download, verification."""
    if not fname or fname in {".", ".."} or "/" in fname or "\\" in fname:
        raise ValueError(f"file name {fname!r} must be a plain name without folders")
    expected = _parse_hash(known_hash)
    dest_dir = Path(dest_dir).expanduser()
    target = dest_dir / fname
    if target.is_file() and _verified(target, expected):
        return target
    if is_offline():
        if target.is_file():
            return _accept_local(target, expected, None)
        raise DatasetNotFoundError(
            dest_dir.name, str(dest_dir), [fname],
            fix=f"DEEPSTRF_OFFLINE is set, so nothing is downloaded. Unset it and call again with download=True, "
                f"or fetch {source} by hand and save it as {target}.")
    dest_dir.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(dest_dir / f".{fname}.lock")):
        remote: _Remote | None = None
        if target.is_file():  # maybe another process finished it while we waited, or a copy by hand
            state = _verified(target, expected)
            if state:
                return target
            if state is None:
                if expected is None:
                    remote = resolve()
                checked = _accept_local(target, expected or remote.expected, remote.url if remote else None,
                                        delete_on_mismatch=False)
                if checked is not None:
                    return checked
            logger.warning("%s does not match its checksum; downloading it again", target)
            _drop(target, _sidecar(target))
        remote = remote or resolve()
        return _download(remote, target, expected or remote.expected)


def _accept_local(target: Path, expected: tuple[str, str] | None, url: str | None,
                  delete_on_mismatch: bool = True) -> Path | None:
    """Verify a file found on disk without a sidecar; record the result."""
    if expected is None:
        if is_offline():
            logger.warning("%s cannot be verified offline (no checksum known yet); using it as is", target)
            return target
        _write_sidecar(target, _hash_file(target, {"sha256"}), None, url)
        return target
    digests = _hash_file(target, {"sha256", expected[0]})
    if digests[expected[0]] == expected[1]:
        _write_sidecar(target, digests, expected, url)
        return target
    if not delete_on_mismatch:
        return None
    _drop(target, _sidecar(target))
    raise ChecksumError(str(target), f"{expected[0]}:{expected[1]}", f"{expected[0]}:{digests[expected[0]]}",
                        fix="Unset DEEPSTRF_OFFLINE and call again with download=True to fetch a good copy.")


# --------------------------------------------------------------------------- public fetchers


def fetch_url(url: str, dest_dir: str | os.PathLike[str], fname: str | None = None,
              known_hash: str | None = None) -> Path:
    """Download a file from a plain HTTP(S) URL (redirects followed).

    Parameters
    ----------
    url : str
        The file's URL.
    dest_dir : path-like
        Folder the file goes to (created if needed).
    fname : str, optional
        Local file name; default: the last component of the URL path.
    known_hash : str, optional
        ``"sha256:<hex>"`` or ``"md5:<hex>"``. Without it the file is only
        checked for completeness, HTML and archive magic.

    Returns
    -------
    pathlib.Path
        ``dest_dir/fname``, verified.

    Raises
    ------
    DatasetNotFoundError
        The file is missing and ``DEEPSTRF_OFFLINE`` is set (no request made).
    ChecksumError
        The downloaded bytes do not match ``known_hash`` (nothing is kept).
    DownloadError
        Network or HTTP failure, with ``url``, ``status`` and ``retryable``.
    """
    if fname is None:
        fname = unquote(PurePosixPath(urlsplit(url).path).name)
        if not fname:
            raise ValueError(f"cannot infer a file name from {url!r}; pass fname=")
    return _fetch(dest_dir, fname, known_hash, lambda: _Remote(url), url)


def fetch_zenodo(record: int | str, filename: str, dest_dir: str | os.PathLike[str],
                 known_hash: str | None = None) -> Path:
    """Download one file of a Zenodo record.

    Parameters
    ----------
    record : int or str
        Zenodo record id of the *version* (e.g. ``8044773``).
    filename : str
        The file's key in the record; also the local name.
    dest_dir : path-like
        Destination folder.
    known_hash : str, optional
        Registry checksum. Without it, the md5 published in the record's
        ``files[].checksum`` is read from ``<zenodo>/api/records/<record>``
        (one extra request) and used.

    Returns
    -------
    pathlib.Path
        The verified local file.
    """
    base = host_url("zenodo")
    url = f"{base}/api/records/{record}/files/{quote(filename)}/content"

    def resolve() -> _Remote:
        if known_hash is not None:
            return _Remote(url)
        meta = _get_json(f"{base}/api/records/{record}")
        files = meta.get("files") or []
        if isinstance(files, dict):  # some API versions nest the list under "entries"
            files = files.get("entries") or []
            files = list(files.values()) if isinstance(files, dict) else files
        for entry in files:
            if filename in (entry.get("key"), entry.get("filename")):
                checksum = entry.get("checksum")
                expected = _parse_hash(checksum, f"Zenodo checksum of {filename}") if checksum else None
                return _Remote(url, expected, entry.get("size") or entry.get("filesize"))
        names = sorted(str(e.get("key") or e.get("filename")) for e in files)
        raise DownloadError(f"Zenodo record {record} has no file {filename!r}; it has {names}",
                            url=url, status=None, retryable=False)

    return _fetch(dest_dir, filename, known_hash, resolve, f"{filename} from https://zenodo.org/records/{record}")


def fetch_figshare(article_id: int | str, filename: str, dest_dir: str | os.PathLike[str],
                   known_hash: str | None = None, *, file_id: int | None = None,
                   version: int | None = None) -> Path:
    """Download one file of a figshare article.

    Parameters
    ----------
    article_id : int or str
        figshare article id.
    filename : str
        The file's name in the article; also the local name.
    dest_dir : path-like
        Destination folder.
    known_hash : str, optional
        Registry checksum; without it figshare's ``computed_md5`` is used.
    file_id : int, optional
        figshare file id. With ``known_hash`` it spares the article request.
    version : int, optional
        Article version to read (default: latest).

    Returns
    -------
    pathlib.Path
        The verified local file.
    """
    api, files_base = host_url("figshare_api"), host_url("figshare_files")

    def resolve() -> _Remote:
        if known_hash is not None and file_id is not None:
            return _Remote(f"{files_base}/files/{file_id}")
        meta_url = f"{api}/articles/{article_id}" + (f"/versions/{version}" if version is not None else "")
        meta = _get_json(meta_url)
        for entry in meta.get("files") or []:
            if entry.get("name") == filename or (file_id is not None and entry.get("id") == file_id):
                if entry.get("is_link_only"):
                    raise DownloadError(f"figshare article {article_id} only links to {filename!r}, hosted at "
                                        f"{entry.get('download_url')}; fetch it from there.",
                                        url=meta_url, retryable=False)
                md5 = entry.get("computed_md5") or entry.get("supplied_md5")
                return _Remote(f"{files_base}/files/{entry['id']}", ("md5", md5.lower()) if md5 else None,
                               entry.get("size"))
        names = sorted(str(e.get("name")) for e in meta.get("files") or [])
        raise DownloadError(f"figshare article {article_id} has no file {filename!r}; it has {names}",
                            url=meta_url, retryable=False)

    return _fetch(dest_dir, filename, known_hash, resolve,
                  f"{filename} from https://figshare.com/articles/dataset/{article_id}")


def fetch_osf(guid: str, dest_dir: str | os.PathLike[str], filename: str | None = None,
              known_hash: str | None = None) -> Path:
    """Download one OSF file by its GUID.

    Parameters
    ----------
    guid : str
        The file's OSF GUID (5 characters, e.g. ``"gdwyd"``).
    dest_dir : path-like
        Destination folder.
    filename : str, optional
        Local name; default: the name OSF reports (costs one API request, and
        is impossible offline).
    known_hash : str, optional
        Registry checksum; without it OSF's sha256 (else md5) from
        ``data.attributes.extra.hashes`` is used.

    Returns
    -------
    pathlib.Path
        The verified local file.
    """
    api, base = host_url("osf_api"), host_url("osf")
    meta_url = f"{api}/files/{guid}/"
    cached: dict[str, Any] = {}

    def metadata() -> dict:
        if "doc" not in cached:
            data = _get_json(meta_url).get("data") or {}
            if not isinstance(data, dict) or not data.get("attributes"):
                raise DownloadError(f"{meta_url} holds no file attributes; is {guid!r} a file GUID?",
                                    url=meta_url, retryable=False)
            cached["doc"] = data
        return cached["doc"]

    if filename is None:
        if is_offline():
            raise DatasetNotFoundError(Path(dest_dir).name, str(dest_dir), [f"OSF file {guid}"],
                                       fix="pass filename= so that the file can be found offline")
        filename = str(metadata()["attributes"].get("name") or "")

    def resolve() -> _Remote:
        if known_hash is not None:
            return _Remote(f"{base}/download/{guid}/")
        data = metadata()
        attrs = data["attributes"]
        hashes = (attrs.get("extra") or {}).get("hashes") or {}
        expected = None
        for alg in ("sha256", "md5"):
            if hashes.get(alg):
                expected = _parse_hash(f"{alg}:{hashes[alg]}", f"OSF {alg} of {guid}")
                break
        link = (data.get("links") or {}).get("download") or f"{base}/download/{guid}/"
        return _Remote(link, expected, attrs.get("size"))

    return _fetch(dest_dir, filename, known_hash, resolve, f"{filename} from https://osf.io/{guid}/")


def fetch_github_raw(repo: str, ref: str, path: str, dest_dir: str | os.PathLike[str],
                     known_hash: str | None = None) -> Path:
    """Download one file from a GitHub repository (``raw.githubusercontent.com``).

    Parameters
    ----------
    repo : str
        ``"owner/name"``.
    ref : str
        Commit id (preferred: immutable) or branch/tag.
    path : str
        Path of the file in the repository; its last component is the local name.
    dest_dir : path-like
        Destination folder.
    known_hash : str, optional
        Registry checksum (GitHub publishes none for raw files).

    Returns
    -------
    pathlib.Path
        The local file.
    """
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ValueError(f"repo={repo!r} must look like 'owner/name'")
    url = f"{host_url('github_raw')}/{repo}/{quote(ref)}/{quote(path.lstrip('/'))}"
    return _fetch(dest_dir, PurePosixPath(path).name, known_hash, lambda: _Remote(url), url)


def crcns_credentials() -> tuple[str, str, str]:
    """CRCNS login from the environment or netrc.

    Returns
    -------
    (username, password, source) : tuple of str
        ``source`` says where they came from (for messages; never the password).

    Raises
    ------
    CredentialsError
        Neither ``CRCNS_USERNAME``/``CRCNS_PASSWORD`` nor a netrc entry for
        ``crcns.org`` (or the CRCNS download host) exists; the message says
        how to register and set them.
    """
    user = os.environ.get("CRCNS_USERNAME", "")
    password = os.environ.get("CRCNS_PASSWORD", "")
    if user and password:
        return user, password, "the environment variables CRCNS_USERNAME/CRCNS_PASSWORD"
    if user or password:
        missing = "CRCNS_PASSWORD" if user else "CRCNS_USERNAME"
        raise CredentialsError(f"{missing} is not set although its partner is. " + _CRCNS_HELP)
    netrc_file = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
    if netrc_file.is_file():
        try:
            entries = netrc.netrc(str(netrc_file))
        except (netrc.NetrcParseError, OSError) as exc:
            reason = getattr(exc, "msg", None) or exc.__class__.__name__
            raise CredentialsError(f"cannot read {netrc_file}: {reason}. " + _CRCNS_HELP) from None
        for machine in ("crcns.org", urlsplit(host_url("crcns")).hostname or ""):
            auth = entries.authenticators(machine)
            if auth and auth[0] and auth[2]:
                return auth[0], auth[2], f"the {netrc_file} entry for {machine}"
    raise CredentialsError("no CRCNS credentials found. " + _CRCNS_HELP)


def _crcns_post(url: str, part: _PartFile, bar: tqdm, *, fn: str, username: str, password: str,
                source: str) -> None:
    """One CRCNS attempt: a form POST; failures come back as HTML pages, often with HTTP 200."""
    form = {"username": username, "password": password, "fn": fn, "submit": "Login"}
    with requests.post(url, data=form, headers=part.request_headers(), timeout=CRCNS_TIMEOUT, stream=True,
                       auth=_NoAuth()) as resp:
        if resp.status_code in (401, 403):
            raise CredentialsError(f"CRCNS rejected the credentials from {source} (HTTP {resp.status_code}). "
                                   "Check them by logging in at https://crcns.org. " + _CRCNS_HELP)
        resp.raise_for_status()
        part.on_response(resp, html_ok=True)
        chunks = resp.iter_content(CHUNK_BYTES)
        first = next((c for c in chunks if c), b"")
        if "text/html" in resp.headers.get("Content-Type", "").lower() or first.lstrip()[:1] == b"<":
            body = first
            for chunk in chunks:
                body += chunk
                if len(body) > 1 << 18:
                    break
            text = body.decode("utf-8", "replace").lower()
            if ("<form" in text and "password" in text) or "invalid user" in text:
                raise CredentialsError(f"CRCNS rejected the credentials from {source} (it answered with its "
                                       "login page). Check them by logging in at https://crcns.org. " + _CRCNS_HELP)
            if "contents of" in text:
                kind = "is a folder on CRCNS, not a file"
            else:
                kind = "was answered with an error page by CRCNS (no such file?)"
            raise DownloadError(f"{fn!r} {kind}; check the dataset path (e.g. 'aa-1/crcns-aa1.zip').",
                                url=url, status=resp.status_code, retryable=False)
        bar.total = part.total
        bar.update(part.write(first))
        for chunk in chunks:
            if chunk:
                bar.update(part.write(chunk))
    part.check_complete()


def fetch_crcns(dataset_path: str, dest_dir: str | os.PathLike[str], known_hash: str | None = None) -> Path:
    """Download one CRCNS file (account needed; see :func:`crcns_credentials`).

    Parameters
    ----------
    dataset_path : str
        Path under the CRCNS download root, e.g. ``"aa-1/crcns-aa1.zip"``.
    dest_dir : path-like
        Destination folder.
    known_hash : str, optional
        Registry checksum (CRCNS publishes none; pin one after a first
        download).

    Returns
    -------
    pathlib.Path
        The local file.

    Raises
    ------
    CredentialsError
        No credentials, or CRCNS rejected them (detected from its login page,
        since it answers HTTP 200). Credentials are sent only in the POST body
        to the CRCNS host and never appear in URLs, logs or messages.
    """
    fn = dataset_path.strip("/")
    if not fn or ".." in fn.split("/"):
        raise ValueError(f"dataset_path={dataset_path!r} must look like 'aa-1/crcns-aa1.zip'")
    url = f"{host_url('crcns')}/{quote(fn)}"

    def resolve() -> _Remote:
        username, password, source = crcns_credentials()

        def transfer(u: str, part: _PartFile, bar: tqdm) -> None:
            _crcns_post(u, part, bar, fn=fn, username=username, password=password, source=source)

        return _Remote(url, transfer=transfer)

    return _fetch(dest_dir, PurePosixPath(fn).name, known_hash, resolve,
                  f"{fn} from CRCNS (https://crcns.org; needs an account: {_CRCNS_REGISTER})")


# --------------------------------------------------------------------------- archives


def _marker(archive: Path, dest: Path) -> Path:
    return dest / f".{archive.name}.extracted"


def is_extracted(archive: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``archive`` was fully extracted into ``dest`` (its marker exists and matches).

    The marker records the archive's size and mtime; it is written last, so an
    interrupted extraction reads as not extracted. If the archive was deleted
    after extraction, the marker alone counts.
    """
    archive = Path(archive)
    dest = Path(dest) if dest is not None else archive.parent
    try:
        doc = json.loads(_marker(archive, dest).read_text())
    except (OSError, ValueError):
        return False
    try:
        st = archive.stat()
    except FileNotFoundError:
        return True
    return doc.get("size") == st.st_size and doc.get("mtime_ns") == st.st_mtime_ns


def _refuse(archive: Path, member: str, found: str, dest: Path) -> DatasetFormatError:
    return DatasetFormatError(str(archive), f"member {member!r}", found,
                              f"paths inside {dest}; the archive is unsafe and was not extracted")


def _member_path(archive: Path, name: str, strip: int, root: Path, dest: Path) -> str | None:
    """Relative path of a member after ``strip`` components, or ``None`` to skip it; refuse escapes."""
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise _refuse(archive, name, "an absolute path", dest)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(archive, name, "a '..' component", dest)
    parts = parts[strip:]
    if not parts:
        return None
    rel = "/".join(parts)
    if not (root / rel).resolve().is_relative_to(root.resolve()):
        raise _refuse(archive, name, "a path leading outside the destination through a link", dest)
    return rel


def _check_link(archive: Path, name: str, rel: str, target: str, root: Path, dest: Path) -> None:
    if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
        raise _refuse(archive, name, f"a link to the absolute path {target!r}", dest)
    where = ((root / rel).parent / target).resolve()
    if not where.is_relative_to(root.resolve()):
        raise _refuse(archive, name, f"a link to {target!r}, outside the destination", dest)


def _unzip(archive: Path, root: Path, strip: int, dest: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        plan = []
        for info in zf.infolist():
            rel = _member_path(archive, info.filename, strip, root, dest)
            if rel is not None:
                plan.append((info, rel))
        with _progress(total=sum(i.file_size for i, _ in plan), unit="B", unit_scale=True,
                       desc=f"extracting {archive.name}") as bar:
            for info, rel in plan:
                out = root / rel
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                if stat.S_ISLNK(info.external_attr >> 16):
                    link = zf.read(info).decode("utf-8")
                    _check_link(archive, info.filename, rel, link, root, dest)
                    os.symlink(link, out)
                    continue
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK_BYTES)
                bar.update(info.file_size)
    return len(plan)


def _untar(archive: Path, root: Path, strip: int, dest: Path) -> int:
    count = 0
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive, "r:*") as tf, _progress(unit=" files", desc=f"extracting {archive.name}") as bar:
        for member in tf:  # one pass: check each member, then extract it
            rel = _member_path(archive, member.name, strip, root, dest)
            if rel is None:
                continue
            if member.issym():
                _check_link(archive, member.name, rel, member.linkname.replace("\\", "/"), root, dest)
            elif member.islnk():
                link = _member_path(archive, member.linkname, strip, root, dest)
                if link is None:
                    raise _refuse(archive, member.name, f"a hard link to {member.linkname!r}, stripped away", dest)
                member.linkname = link
            elif not (member.isfile() or member.isdir()):
                logger.warning("%s: skipping special member %r", archive.name, member.name)
                continue
            member.name = rel
            try:
                # no attributes on folders: a read-only folder mode would block its own members
                tf.extract(member, root, set_attrs=not member.isdir(), **extra)
            except tarfile.FilterError as exc:
                raise _refuse(archive, rel, str(exc), dest) from exc
            count += 1
            bar.update()
    return count


def _extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str] | None, strip: int,
             unpack: Callable[[Path, Path, int, Path], int]) -> Path:
    archive = Path(archive)
    dest = Path(dest) if dest is not None else archive.parent
    if not isinstance(strip, int) or strip < 0:
        raise ValueError(f"strip_components must be an int >= 0, got {strip!r}")
    if is_extracted(archive, dest):
        return dest
    if not archive.is_file():
        raise DatasetNotFoundError(dest.name, str(archive.parent), [archive.name],
                                   fix="download the archive first (download=True)")
    dest.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(dest / f".{archive.name}.extract.lock")):
        if is_extracted(archive, dest):
            return dest
        tmp = dest / f".{archive.name}.extracting"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            try:
                count = unpack(archive, tmp, strip, dest)
            except (zipfile.BadZipFile, tarfile.ReadError, EOFError, zlib.error) as exc:
                raise DatasetFormatError(str(archive), "archive", f"a truncated or corrupt archive ({exc})",
                                         "a readable archive: delete it and download it again") from exc
            entries = sorted(os.listdir(tmp))
            for name in entries:
                if name == archive.name or name.startswith(f".{archive.name}."):
                    raise _refuse(archive, name, "a name that would overwrite the archive or its markers", dest)
            for name in entries:  # move into place; a leftover from an interrupted run is replaced
                final = dest / name
                if final.is_dir() and not final.is_symlink():
                    shutil.rmtree(final)
                elif final.exists() or final.is_symlink():
                    final.unlink()
                os.replace(tmp / name, final)
            tmp.rmdir()
            st = archive.stat()
            marker = _marker(archive, dest)
            marker_tmp = marker.with_name(marker.name + ".tmp")
            marker_tmp.write_text(json.dumps({"archive": archive.name, "size": st.st_size,
                                              "mtime_ns": st.st_mtime_ns, "members": count, "entries": entries}))
            os.replace(marker_tmp, marker)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def extract_zip(archive: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None, *,
                strip_components: int = 0) -> Path:
    """Safely extract a zip archive once.

    Parameters
    ----------
    archive : path-like
        The zip file.
    dest : path-like, optional
        Destination folder (default: the archive's folder).
    strip_components : int, default 0
        Leading path components removed from every member (members left
        empty are skipped), like ``tar --strip-components``.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    DatasetFormatError
        A member has an absolute path, a ``..`` component or a link leading
        outside ``dest`` (nothing is extracted), or the archive is corrupt.

    Notes
    -----
    Members are extracted into a hidden sibling folder, moved into ``dest``,
    and a marker ``.<archive>.extracted`` is written last: an interrupted
    extraction is redone on the next call, a finished one is skipped without
    reading the archive.
    """
    return _extract(archive, dest, strip_components, _unzip)


def extract_tar(archive: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None, *,
                strip_components: int = 0) -> Path:
    """Safely extract a tar archive (any compression tarfile reads) once.

    Same contract as :func:`extract_zip`; symbolic and hard links must stay
    inside ``dest``, special files (devices, FIFOs) are skipped, and
    Python's ``filter="data"`` is applied on top where available.
    """
    return _extract(archive, dest, strip_components, _untar)
