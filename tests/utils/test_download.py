"""Fetchers and extraction against a local HTTP emulator (127.0.0.1 only, no network)."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import platformdirs
import pytest

from deepSTRF.datasets._errors import (
    ChecksumError,
    CredentialsError,
    DatasetFormatError,
    DatasetNotFoundError,
    DownloadError,
)
from deepSTRF.utils import download as dl
from fixtures.http_emulator import (
    Emulator,
    Reply,
    file_reply,
    html_reply,
    json_reply,
    md5,
    redirect,
    sha256,
)

PAYLOAD = bytes(range(256)) * 64  # 16 KiB


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


ZIP_BYTES = _zip({"spikesandwav/a.txt": b"alpha", "spikesandwav/sub/b.txt": b"beta"})


@pytest.fixture
def server(monkeypatch, tmp_path):
    with Emulator() as emu:
        for key, value in emu.host_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        for var in ("DEEPSTRF_OFFLINE", "CRCNS_USERNAME", "CRCNS_PASSWORD"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
        yield emu


@pytest.fixture(autouse=True)
def no_wait(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(dl, "_sleep", waits.append)
    # small chunks, so that a dropped connection leaves whole chunks in the .part file
    monkeypatch.setattr(dl, "CHUNK_BYTES", 1000)
    return waits


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "NS1"


def _leftovers(folder: Path) -> list[str]:
    """Files a failed download must not leave: anything but lock files."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def _zenodo(emu: Emulator, record: int, key: str, data: bytes, checksum: str | None = None, legacy=False):
    entry = {"id": "f1", "size": len(data), "links": {"self": f"{emu.base}/api/records/{record}/files/{key}/content"}}
    if legacy:
        entry.update(filename=key, checksum=checksum or md5(data))
    else:
        entry.update(key=key, checksum=checksum or f"md5:{md5(data)}")
    emu.route("GET", f"/api/records/{record}",
              json_reply({"id": record, "doi": "10.5281/zenodo.x", "metadata": {"license": {"id": "cc-by-4.0"}},
                          "files": [entry]}, headers={"X-RateLimit-Limit": "60"}))
    emu.route("GET", f"/api/records/{record}/files/{key}/content", file_reply(data))


# --------------------------------------------------------------------------- locations


def test_data_root_resolution(monkeypatch, tmp_path):
    assert dl.data_root("NS1", tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("DEEPSTRF_DATA", str(tmp_path / "data"))
    assert dl.data_root("NS1") == tmp_path / "data" / "NS1"
    assert dl.data_root("NS1", "~/y") == Path.home() / "y"
    monkeypatch.delenv("DEEPSTRF_DATA")
    assert dl.data_root("NAT4") == Path(platformdirs.user_data_dir("deepSTRF")) / "NAT4"


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)])
def test_is_offline(monkeypatch, value, expected):
    monkeypatch.setenv("DEEPSTRF_OFFLINE", value)
    assert dl.is_offline() is expected


def test_host_url_override(monkeypatch):
    monkeypatch.delenv("DEEPSTRF_ZENODO_URL", raising=False)
    assert dl.host_url("zenodo") == "https://zenodo.org"
    monkeypatch.setenv("DEEPSTRF_ZENODO_URL", "http://127.0.0.1:9/")
    assert dl.host_url("zenodo") == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="unknown host"):
        dl.host_url("dropbox")


def test_bad_hash_format_is_a_value_error(server, dest):
    with pytest.raises(ValueError, match="sha256:<64 hex>"):
        dl.fetch_url(server.base + "/f.bin", dest, known_hash="sha256:xyz")
    assert server.log == []


# --------------------------------------------------------------------------- hosts, happy paths


def test_zenodo_download_verified_with_record_md5(server, dest):
    _zenodo(server, 8044773, "A1 single sites.zip", ZIP_BYTES)
    path = dl.fetch_zenodo(8044773, "A1 single sites.zip", dest)
    assert path == dest / "A1 single sites.zip"
    assert path.read_bytes() == ZIP_BYTES
    assert {r.path for r in server.log} == {"/api/records/8044773", "/api/records/8044773/files/A1 single sites.zip/content"}
    assert all(r.headers["user-agent"].startswith("deepSTRF/") for r in server.log)
    assert _leftovers(dest) == [".A1 single sites.zip.verified", "A1 single sites.zip"]
    # second call: sidecar says verified, no request at all
    n = len(server.log)
    assert dl.fetch_zenodo(8044773, "A1 single sites.zip", dest) == path
    assert len(server.log) == n


def test_zenodo_legacy_record_shape(server, dest):
    _zenodo(server, 1, "wav.zip", ZIP_BYTES, legacy=True)
    assert dl.fetch_zenodo(1, "wav.zip", dest).read_bytes() == ZIP_BYTES


def test_registry_hash_skips_metadata_request(server, dest):
    _zenodo(server, 2, "cell_list.csv", PAYLOAD)
    dl.fetch_zenodo(2, "cell_list.csv", dest, known_hash=f"sha256:{sha256(PAYLOAD)}")
    assert [r.path for r in server.log] == ["/api/records/2/files/cell_list.csv/content"]


def test_zenodo_unknown_key(server, dest):
    _zenodo(server, 3, "a.csv", PAYLOAD)
    with pytest.raises(DownloadError, match="has no file 'b.csv'"):
        dl.fetch_zenodo(3, "b.csv", dest)


def test_figshare_computed_md5_and_redirect(server, dest):
    server.route("GET", "/v2/articles/29203457", json_reply({
        "id": 29203457, "version": 1, "files": [
            {"id": 55083911, "name": "zebf.zip", "size": len(ZIP_BYTES), "is_link_only": False,
             "download_url": f"{server.base}/ndownloader/files/55083911", "supplied_md5": "",
             "computed_md5": md5(ZIP_BYTES)},
            {"id": 7, "name": "elsewhere.zip", "is_link_only": True, "download_url": "https://example.org/x"}]}))
    server.route("GET", "/ndownloader/files/55083911", redirect("/storage/abc"))
    server.route("GET", "/storage/abc", file_reply(ZIP_BYTES))
    assert dl.fetch_figshare(29203457, "zebf.zip", dest).read_bytes() == ZIP_BYTES
    with pytest.raises(DownloadError, match="only links to 'elsewhere.zip'"):
        dl.fetch_figshare(29203457, "elsewhere.zip", dest)


def test_osf_name_and_sha256_from_api(server, dest):
    data = b"MATLAB 5.0 MAT-file" + PAYLOAD
    server.route("GET", "/osfapi/v2/files/gdwyd/", json_reply({"data": {
        "id": "abc", "type": "files",
        "attributes": {"name": "MetadataSHEnCneurons.mat", "kind": "file", "size": len(data), "guid": "gdwyd",
                       "extra": {"hashes": {"md5": md5(data), "sha256": sha256(data)}, "downloads": 3}},
        "links": {"download": f"{server.base}/osf/download/gdwyd/"}}}))
    server.route("GET", "/osf/download/gdwyd/",
                 redirect("/v1/resources/ayw2p/providers/osfstorage/f1?action=download&direct&version=1"))
    server.route("GET", "/v1/resources/ayw2p/providers/osfstorage/f1", file_reply(data))
    path = dl.fetch_osf("gdwyd", dest)
    assert path.name == "MetadataSHEnCneurons.mat" and path.read_bytes() == data
    assert '"sha256:' in (dest / ".MetadataSHEnCneurons.mat.verified").read_text()


def test_github_raw_and_404(server, dest):
    sha = "e6ab272ed228882b3b7046a14b2e1cb228ddf943"
    server.route("GET", f"/raw/monzilur/DNet/{sha}/test_data_5ms.mat", file_reply(PAYLOAD))
    path = dl.fetch_github_raw("monzilur/DNet", sha, "test_data_5ms.mat", dest)
    assert path.read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="file not found at .*HTTP 404") as err:
        dl.fetch_github_raw("monzilur/DNet", "master", "missing.mat", dest)
    assert err.value.status == 404 and err.value.retryable is False
    assert len(server.requests_to("/raw/monzilur/DNet/master/missing.mat")) == 1  # 404 is not retried
    assert not (dest / "missing.mat").exists() and not (dest / "missing.mat.part").exists()


def test_existing_file_without_sidecar_is_verified_not_downloaded(server, dest):
    dest.mkdir()
    (dest / "f.bin").write_bytes(PAYLOAD)
    dl.fetch_url(server.base + "/f.bin", dest, known_hash=f"md5:{md5(PAYLOAD)}")
    assert server.log == []
    # a wrong local copy is replaced by a download
    (dest / ".f.bin.verified").unlink()
    (dest / "f.bin").write_bytes(b"garbage")
    server.route("GET", "/f.bin", file_reply(PAYLOAD))
    assert dl.fetch_url(server.base + "/f.bin", dest, known_hash=f"md5:{md5(PAYLOAD)}").read_bytes() == PAYLOAD


# --------------------------------------------------------------------------- verification failures


def test_checksum_mismatch_leaves_nothing(server, dest):
    _zenodo(server, 4, "a.zip", ZIP_BYTES, checksum="md5:" + "0" * 32)
    with pytest.raises(ChecksumError) as err:
        dl.fetch_zenodo(4, "a.zip", dest)
    assert err.value.expected == "md5:" + "0" * 32
    assert err.value.actual == f"md5:{md5(ZIP_BYTES)}"
    assert "a.zip" in str(err.value)
    assert _leftovers(dest) == []


def test_registry_hash_mismatch(server, dest):
    server.route("GET", "/f.bin", file_reply(PAYLOAD))
    with pytest.raises(ChecksumError, match="sha256:"):
        dl.fetch_url(server.base + "/f.bin", dest, known_hash="sha256:" + "1" * 64)
    assert _leftovers(dest) == []


def test_html_page_instead_of_file(server, dest):
    server.route("GET", "/broken.zip", html_reply("<!DOCTYPE html><html>Not found</html>"))
    with pytest.raises(DownloadError, match="HTML page") as err:
        dl.fetch_url(server.base + "/broken.zip", dest)
    assert err.value.retryable is False
    assert len(server.log) == 1 and _leftovers(dest) == []


def test_wrong_archive_magic_without_hash(server, dest):
    server.route("GET", "/x.zip", file_reply(b"definitely not a zip"))
    with pytest.raises(DownloadError, match="not a .zip archive"):
        dl.fetch_url(server.base + "/x.zip", dest)
    assert _leftovers(dest) == []


# --------------------------------------------------------------------------- network faults


def test_dropped_connection_is_retried(server, dest, no_wait):
    server.route("GET", "/f.bin", file_reply(PAYLOAD, drop_after=1000), file_reply(PAYLOAD))
    path = dl.fetch_url(server.base + "/f.bin", dest, known_hash=f"sha256:{sha256(PAYLOAD)}")
    assert path.read_bytes() == PAYLOAD
    assert len(server.log) == 2 and "range" not in server.log[1].headers  # no ranges advertised: restart
    assert len(no_wait) == 1


def test_dropped_connection_every_time_gives_clean_error(server, dest):
    server.route("GET", "/f.bin", file_reply(PAYLOAD, drop_after=1000))
    with pytest.raises(DownloadError) as err:
        dl.fetch_url(server.base + "/f.bin", dest)
    assert err.value.retryable is True and err.value.status is None
    assert "try again later" in str(err.value) and server.base + "/f.bin" in str(err.value)
    assert len(server.log) == dl.MAX_ATTEMPTS
    assert _leftovers(dest) == []  # nothing that could pass for the file


def test_resume_with_range_within_one_call(server, dest):
    server.route("GET", "/big.bin", file_reply(PAYLOAD, ranges=True, drop_after=5000),
                 file_reply(PAYLOAD, ranges=True))
    path = dl.fetch_url(server.base + "/big.bin", dest, known_hash=f"md5:{md5(PAYLOAD)}")
    assert path.read_bytes() == PAYLOAD
    assert server.log[1].headers["range"] == "bytes=5000-"
    assert server.log[1].headers["if-range"] == f'"{md5(PAYLOAD)}"'


def test_resume_across_calls(server, dest, monkeypatch):
    monkeypatch.setattr(dl, "MAX_ATTEMPTS", 1)
    server.route("GET", "/big.bin", file_reply(PAYLOAD, ranges=True, drop_after=6000))
    with pytest.raises(DownloadError, match="gave up"):
        dl.fetch_url(server.base + "/big.bin", dest, known_hash=f"sha256:{sha256(PAYLOAD)}")
    assert not (dest / "big.bin").exists()
    assert (dest / "big.bin.part").stat().st_size == 6000  # kept to resume, never under the final name
    server.route("GET", "/big.bin", file_reply(PAYLOAD, ranges=True))
    path = dl.fetch_url(server.base + "/big.bin", dest, known_hash=f"sha256:{sha256(PAYLOAD)}")
    assert path.read_bytes() == PAYLOAD
    assert server.log[-1].headers["range"] == "bytes=6000-"
    assert _leftovers(dest) == [".big.bin.verified", "big.bin"]


def test_server_ignoring_range_restarts_cleanly(server, dest):
    def ignore_range(req):
        return Reply(200, {"Accept-Ranges": "bytes"}, PAYLOAD)

    server.route("GET", "/big.bin", file_reply(PAYLOAD, ranges=True, drop_after=3000), ignore_range)
    path = dl.fetch_url(server.base + "/big.bin", dest, known_hash=f"sha256:{sha256(PAYLOAD)}")
    assert path.read_bytes() == PAYLOAD
    assert server.log[1].headers["range"] == "bytes=3000-"


def test_503_and_429_are_retried_with_retry_after(server, dest, no_wait):
    server.route("GET", "/f.bin", lambda r: Reply(503, {"Retry-After": "2"}, b"busy"),
                 lambda r: Reply(429, {"Retry-After": "1"}, b"slow down"), file_reply(PAYLOAD))
    assert dl.fetch_url(server.base + "/f.bin", dest).read_bytes() == PAYLOAD
    assert no_wait == [2.0, 1.0]


def test_403_not_retried(server, dest):
    server.route("GET", "/f.bin", lambda r: Reply(403, {}, b"no"))
    with pytest.raises(DownloadError, match="HTTP 403.*refused access") as err:
        dl.fetch_url(server.base + "/f.bin", dest)
    assert err.value.status == 403 and len(server.log) == 1


def test_unreachable_host(monkeypatch, dest, tmp_path):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(dl, "MAX_ATTEMPTS", 2)
    with Emulator() as emu:
        url = emu.base + "/f.bin"
    with pytest.raises(DownloadError, match="ConnectionError") as err:  # server is shut down
        dl.fetch_url(url, dest)
    assert err.value.retryable is True


def test_concurrent_fetches_download_once(server, dest):
    server.route("GET", "/f.bin", file_reply(PAYLOAD, delay=0.3))
    results, errors = [], []

    def fetch():
        try:
            results.append(dl.fetch_url(server.base + "/f.bin", dest, known_hash=f"md5:{md5(PAYLOAD)}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    assert len(server.requests_to("/f.bin")) == 1


# --------------------------------------------------------------------------- offline


def test_offline_missing_file_makes_no_request(server, dest, monkeypatch):
    _zenodo(server, 5, "a.zip", ZIP_BYTES)
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="DEEPSTRF_OFFLINE") as err:
        dl.fetch_zenodo(5, "a.zip", dest)
    assert err.value.missing == ["a.zip"] and "zenodo.org/records/5" in str(err.value)
    with pytest.raises(DatasetNotFoundError):
        dl.fetch_crcns("aa-1/crcns-aa1.zip", dest)
    with pytest.raises(DatasetNotFoundError, match="filename="):
        dl.fetch_osf("gdwyd", dest)
    assert isinstance(err.value, FileNotFoundError)
    assert server.log == []


def test_offline_uses_verified_local_file(server, dest, monkeypatch):
    _zenodo(server, 6, "a.zip", ZIP_BYTES)
    dl.fetch_zenodo(6, "a.zip", dest)
    n = len(server.log)
    monkeypatch.setenv("DEEPSTRF_OFFLINE", "1")
    assert dl.fetch_zenodo(6, "a.zip", dest).read_bytes() == ZIP_BYTES
    assert len(server.log) == n


# --------------------------------------------------------------------------- CRCNS

LOGIN_PAGE = ('<html><body><p>Invalid user name or password</p><form method="post" action="index.php">'
              '<input name="username"><input type="password" name="password"><input type="submit" name="submit" '
              'value="Login"></form></body></html>')


def _crcns(emu: Emulator, files: dict[str, bytes], user="alice", password="s3cret!pw"):
    def handle(req):
        form = req.form()
        if req.method != "POST" or form.get("username") != user or form.get("password") != password:
            return Reply(200, {"Content-Type": "text/html"}, LOGIN_PAGE.encode())
        fn = form.get("fn", "")
        if fn in files:
            return Reply(200, {"Content-Type": "application/octet-stream"}, files[fn])
        if fn == "aa-1":
            return Reply(200, {"Content-Type": "text/html"}, b"<html>Contents of aa-1: crcns-aa1.zip (17)</html>")
        return Reply(200, {"Content-Type": "text/html"}, b"<html>Error</html>")

    for fn in [*files, "aa-1", "aa-9/none.zip", "index.php"]:
        emu.route("POST", f"/project/crcns/download/{fn}", handle)


def test_crcns_missing_credentials(server, dest):
    _crcns(server, {"aa-1/crcns-aa1.zip": ZIP_BYTES})
    with pytest.raises(CredentialsError) as err:
        dl.fetch_crcns("aa-1/crcns-aa1.zip", dest)
    msg = str(err.value)
    assert "https://crcns.org/register" in msg and "CRCNS_USERNAME" in msg and "netrc" in msg
    assert isinstance(err.value, PermissionError)
    assert server.log == []


def test_crcns_login_page_means_rejected_credentials(server, dest, monkeypatch):
    _crcns(server, {"aa-1/crcns-aa1.zip": ZIP_BYTES})
    monkeypatch.setenv("CRCNS_USERNAME", "alice")
    monkeypatch.setenv("CRCNS_PASSWORD", "wrong-pw-123")
    with pytest.raises(CredentialsError, match="rejected the credentials from the environment") as err:
        dl.fetch_crcns("aa-1/crcns-aa1.zip", dest)
    assert "wrong-pw-123" not in str(err.value) and "register" in str(err.value)
    assert len(server.log) == 1 and _leftovers(dest) == []


def test_crcns_401(server, dest, monkeypatch):
    server.route("POST", "/project/crcns/download/aa-1/crcns-aa1.zip", lambda r: Reply(401, {}, b""))
    monkeypatch.setenv("CRCNS_USERNAME", "alice")
    monkeypatch.setenv("CRCNS_PASSWORD", "pw")
    with pytest.raises(CredentialsError, match="HTTP 401"):
        dl.fetch_crcns("aa-1/crcns-aa1.zip", dest)


def test_crcns_success_with_env_credentials(server, dest, monkeypatch):
    _crcns(server, {"aa-1/crcns-aa1.zip": ZIP_BYTES})
    monkeypatch.setenv("CRCNS_USERNAME", "alice")
    monkeypatch.setenv("CRCNS_PASSWORD", "s3cret!pw")
    path = dl.fetch_crcns("aa-1/crcns-aa1.zip", dest)
    assert path == dest / "crcns-aa1.zip" and path.read_bytes() == ZIP_BYTES
    (req,) = server.log
    assert req.method == "POST" and req.form() == {"username": "alice", "password": "s3cret!pw",
                                                   "fn": "aa-1/crcns-aa1.zip", "submit": "Login"}
    assert "s3cret" not in req.path and "authorization" not in req.headers


def test_crcns_netrc_and_env_precedence(server, dest, monkeypatch, tmp_path):
    _crcns(server, {"aa-2/crcns-aa2-docs.tar.gz": b"\x1f\x8b" + PAYLOAD})
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine crcns.org login alice password s3cret!pw\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert dl.crcns_credentials()[2].endswith("entry for crcns.org")
    dl.fetch_crcns("aa-2/crcns-aa2-docs.tar.gz", dest)
    assert server.log[-1].form()["username"] == "alice"
    monkeypatch.setenv("CRCNS_USERNAME", "bob")
    monkeypatch.setenv("CRCNS_PASSWORD", "x")
    assert dl.crcns_credentials() == ("bob", "x", "the environment variables CRCNS_USERNAME/CRCNS_PASSWORD")
    monkeypatch.delenv("CRCNS_PASSWORD")
    with pytest.raises(CredentialsError, match="CRCNS_PASSWORD is not set"):
        dl.crcns_credentials()


def test_crcns_error_pages(server, dest, monkeypatch):
    _crcns(server, {})
    monkeypatch.setenv("CRCNS_USERNAME", "alice")
    monkeypatch.setenv("CRCNS_PASSWORD", "s3cret!pw")
    with pytest.raises(DownloadError, match="error page"):
        dl.fetch_crcns("aa-9/none.zip", dest)
    assert _leftovers(dest) == []


# --------------------------------------------------------------------------- archives


def _tar(tmp_path: Path, add) -> Path:
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        add(tf)
    return path


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes = b"x", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if info.isfile() else None)


def test_extract_zip_once_with_marker(tmp_path):
    archive = tmp_path / "spikesandwav.zip"
    archive.write_bytes(ZIP_BYTES)
    out = dl.extract_zip(archive)
    assert out == tmp_path
    assert (tmp_path / "spikesandwav/sub/b.txt").read_bytes() == b"beta"
    assert dl.is_extracted(archive)
    (tmp_path / "spikesandwav/a.txt").unlink()
    dl.extract_zip(archive)  # marker says done: not re-extracted
    assert not (tmp_path / "spikesandwav/a.txt").exists()
    os.utime(archive, ns=(1, 1))  # a different archive file: extracted again
    dl.extract_zip(archive)
    assert (tmp_path / "spikesandwav/a.txt").exists()


def test_interrupted_extraction_is_redone(tmp_path):
    archive = tmp_path / "spikesandwav.zip"
    archive.write_bytes(ZIP_BYTES)
    (tmp_path / "spikesandwav").mkdir()  # what a crash mid-extraction leaves: an anchor folder, no marker
    (tmp_path / "spikesandwav/a.txt").write_bytes(b"trunc")
    (tmp_path / ".spikesandwav.zip.extracting").mkdir()
    assert not dl.is_extracted(archive)
    dl.extract_zip(archive)
    assert (tmp_path / "spikesandwav/a.txt").read_bytes() == b"alpha"
    assert not (tmp_path / ".spikesandwav.zip.extracting").exists()


def test_extract_strip_components(tmp_path):
    archive = _tar(tmp_path, lambda tf: [_tar_add(tf, "crcns/aa2/all_cells/c1.txt", b"c1"),
                                         _tar_add(tf, "crcns/aa2/README", b"r")])
    dl.extract_tar(archive, tmp_path / "AA2", strip_components=2)
    assert (tmp_path / "AA2/all_cells/c1.txt").read_bytes() == b"c1"
    assert (tmp_path / "AA2/README").read_bytes() == b"r"


def test_zip_with_dotdot_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip({"ok.txt": b"fine", "../evil.txt": b"pwned"}))
    with pytest.raises(DatasetFormatError, match=r"member '\.\./evil\.txt'"):
        dl.extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "out").iterdir()) == [] or _leftovers(tmp_path / "out") == []
    assert not dl.is_extracted(archive, tmp_path / "out")


@pytest.mark.parametrize("member", [
    dict(name="/etc/evil"),
    dict(name="a/../../evil"),
    dict(name="link", type=tarfile.SYMTYPE, linkname="../../outside"),
    dict(name="abs_link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
])
def test_tar_escapes_are_refused(tmp_path, member):
    name = member.pop("name")
    archive = _tar(tmp_path, lambda tf: [_tar_add(tf, "ok.txt"), _tar_add(tf, name, **member)])
    with pytest.raises(DatasetFormatError, match="member"):
        dl.extract_tar(archive, tmp_path / "out")
    assert _leftovers(tmp_path / "out") == []
    assert not (tmp_path / "evil").exists()


def test_tar_link_then_file_through_it_is_refused(tmp_path):
    def add(tf):
        _tar_add(tf, "d", type=tarfile.SYMTYPE, linkname=".")  # harmless link inside...
        _tar_add(tf, "escape", type=tarfile.SYMTYPE, linkname="d/../..")  # ...then one escaping through it

    archive = _tar(tmp_path, add)
    with pytest.raises(DatasetFormatError, match="'escape'"):
        dl.extract_tar(archive, tmp_path / "out")


def test_corrupt_archive(tmp_path):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(ZIP_BYTES[:40])
    with pytest.raises(DatasetFormatError, match="truncated or corrupt"):
        dl.extract_zip(archive, tmp_path / "out")
    missing = tmp_path / "none.tar.gz"
    with pytest.raises(DatasetNotFoundError):
        dl.extract_tar(missing)
