"""Fetching LFW into the data home, without the network: the fetch function is replaced in
every test, and urlopen is made to fail so that nothing here can reach a server."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from urllib.error import URLError

import pytest

from facebench.data import download
from facebench.data.download import ChecksumError, Remote, ensure_lfw
from facebench.data.layouts import ORIGINAL, detect_layout
from facebench.data.lfw import resolve_root
from facebench.errors import DataError
from fake_lfw import make_lfw


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(download, "urlopen", refuse)
    monkeypatch.setenv("FACEBENCH_DATA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACEBENCH_LFW", raising=False)
    monkeypatch.delenv("FACEBENCH_OFFLINE", raising=False)


def _offline(url: str, dest: Path, desc: str) -> None:
    raise URLError("[Errno -3] Temporary failure in name resolution")


def test_offline_error_says_where_to_put_lfw_and_which_layouts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(download, "fetch", _offline)
    with pytest.raises(DataError) as err:
        resolve_root(None, "protocol.root")
    text = str(err.value)
    assert str(tmp_path / "home" / "lfw") in text and "cannot be downloaded" in text
    assert "name resolution" in text and "lfw-112X96/" in text and "lfw_home" in text and "$FACEBENCH_LFW" in text
    assert not list((tmp_path / "home" / "lfw").glob("*.part"))


def test_offline_switch_never_calls_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(download, "fetch", lambda *a: calls.append(a))
    monkeypatch.setenv("FACEBENCH_OFFLINE", "1")
    with pytest.raises(DataError, match="FACEBENCH_OFFLINE is set"):
        ensure_lfw()
    assert calls == []


def test_checksum_mismatch_deletes_the_file_and_says_what_came(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def wrong(url: str, dest: Path, desc: str) -> None:
        dest.write_bytes(b"<html>mirror error page</html>")

    monkeypatch.setattr(download, "fetch", wrong)
    remote = Remote("pairs.txt", ("https://mirror.invalid/a", "https://mirror.invalid/b"), "0" * 64)
    with pytest.raises(ChecksumError) as err:
        download.download(remote, tmp_path)
    got = hashlib.sha256(b"<html>mirror error page</html>").hexdigest()
    assert "pairs.txt" in str(err.value) and got in str(err.value) and "0" * 64 in str(err.value)
    assert "mirror.invalid/a" in str(err.value) and "mirror.invalid/b" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_mirror_falls_back_to_the_next(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    good = b"10\t300\n"

    def serve(url: str, dest: Path, desc: str) -> None:
        if "first" in url:
            raise URLError("connection refused")
        dest.write_bytes(good)

    monkeypatch.setattr(download, "fetch", serve)
    remote = Remote("pairs.txt", ("https://first.invalid/x", "https://second.invalid/x"), hashlib.sha256(good).hexdigest())
    assert download.download(remote, tmp_path).read_bytes() == good


def test_missing_lfw_is_fetched_into_the_data_home_and_detected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = make_lfw(tmp_path / "source", "lfw_funneled", (250, 250))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(source / "lfw_funneled", arcname="lfw_funneled")
    served = {"lfw-funneled.tgz": archive.getvalue()}
    for name in ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt", "people.txt", "peopleDevTrain.txt", "peopleDevTest.txt"):
        served[name] = (source / name).read_bytes()

    def remote(name: str) -> Remote:
        return Remote(name, (f"https://files.invalid/{name}",), hashlib.sha256(served[name]).hexdigest())

    monkeypatch.setattr(download, "PROTOCOL_FILES", tuple(remote(n) for n in served if n.endswith(".txt")))
    monkeypatch.setattr(download, "IMAGES", remote("lfw-funneled.tgz"))
    fetched = []

    def serve(url: str, dest: Path, desc: str) -> None:
        fetched.append(desc)
        dest.write_bytes(served[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(download, "fetch", serve)
    home = resolve_root(None, "protocol.root")
    assert home == tmp_path / "home" / "lfw" and len(fetched) == 7
    layout = detect_layout(home)
    assert layout.variant == "lfw_funneled" and layout.kind == ORIGINAL and layout.protocol_dir == home
    assert not (home / "lfw-funneled.tgz").exists()
    assert ensure_lfw() == home and len(fetched) == 7  # complete now: nothing fetched again
