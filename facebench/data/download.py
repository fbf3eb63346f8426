"""Fetching LFW into the data home when no copy is configured.

A first run should not need a manual download, but a benchmark must never run on a corrupted
or different copy: every file is pinned by its SHA-256 and a mismatch is an error, never a
warning. The images are the funneled 250 x 250 set (``lfw-funneled.tgz``) from the figshare
mirror scikit-learn uses; the protocol files come from the same mirror where it has them and
from the LFW site otherwise. On a machine without network access the same call fails once,
saying where to put the files and which layouts are accepted.

``FACEBENCH_DATA_HOME`` moves the data home (default ``~/facebench_data``);
``FACEBENCH_OFFLINE=1`` forbids any network access (downloads fail with the offline error).
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.request import urlopen

from tqdm.auto import tqdm

from facebench.data.layouts import ACCEPTED, detect_layout
from facebench.errors import DataError

log = logging.getLogger(__name__)

HOME_ENV = "FACEBENCH_DATA_HOME"
OFFLINE_ENV = "FACEBENCH_OFFLINE"
TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Remote:
    """One file to fetch: its name in the data home, mirrors tried in order, its SHA-256."""

    name: str
    urls: tuple[str, ...]
    sha256: str


_FIGSHARE = "https://ndownloader.figshare.com/files/"
_LFW_SITE = "http://vis-www.cs.umass.edu/lfw/"

#: Protocol files (checksums of the official files, as scikit-learn pins the pairs files).
PROTOCOL_FILES = (
    Remote("pairs.txt", (_FIGSHARE + "5976006", _LFW_SITE + "pairs.txt"),
           "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592"),
    Remote("pairsDevTrain.txt", (_FIGSHARE + "5976012", _LFW_SITE + "pairsDevTrain.txt"),
           "1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa"),
    Remote("pairsDevTest.txt", (_FIGSHARE + "5976009", _LFW_SITE + "pairsDevTest.txt"),
           "7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c"),
    Remote("people.txt", (_LFW_SITE + "people.txt",),
           "bc8fa2b7f25c895cf7efb6de4f4fc27ca8b8d1cfa63350ad8b96eae2b198d365"),
    Remote("peopleDevTrain.txt", (_LFW_SITE + "peopleDevTrain.txt",),
           "2e58df13ba4cc143189336e001cc2c195f1dfa5b29a6475c02857be353c2a2fa"),
    Remote("peopleDevTest.txt", (_LFW_SITE + "peopleDevTest.txt",),
           "c3ed1f90499473401542101a56c14c1d82396bb8218c67a356d7460601047555"),
)
#: The images: 243 MB, extracting to ``lfw_funneled/<Name>/<Name>_NNNN.jpg``.
IMAGES = Remote("lfw-funneled.tgz", (_FIGSHARE + "5976015", _LFW_SITE + "lfw-funneled.tgz"),
                "b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a")


class ChecksumError(DataError):
    """A downloaded file whose SHA-256 is not the pinned one."""


def data_home() -> Path:
    return Path(os.environ.get(HOME_ENV, "~/facebench_data")).expanduser()


def fetch(url: str, dest: Path, desc: str) -> None:
    """Stream ``url`` into ``dest`` with a progress bar (the only function here that touches the network)."""
    with urlopen(url, timeout=TIMEOUT_SECONDS) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def offline_error(home: Path, reason: str) -> DataError:
    needed = ", ".join(r.name for r in PROTOCOL_FILES)
    return DataError(
        f"LFW is not in {home} and cannot be downloaded ({reason}). Put a copy there yourself, or point "
        f"data.root / protocol.root (or $FACEBENCH_LFW) at one. It needs {needed} and the images; accepted "
        f"layouts: {ACCEPTED}. The funneled images are {IMAGES.name} from {IMAGES.urls[0]} (extract it in {home})."
    )


def download(remote: Remote, home: Path) -> Path:
    """Fetch ``remote`` into ``home`` and verify it; mirrors are tried in order.

    A file whose checksum does not match is deleted and the next mirror tried; when none
    delivers the pinned file the error says what was expected and what came.
    """
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise offline_error(home, f"{OFFLINE_ENV} is set")
    home.mkdir(parents=True, exist_ok=True)
    dest = home / remote.name
    part = home / f"{remote.name}.part"
    problems = []
    for url in remote.urls:
        try:
            fetch(url, part, remote.name)
        except (OSError, http.client.HTTPException) as exc:
            part.unlink(missing_ok=True)
            problems.append(f"{url}: {exc}")
            continue
        got = sha256_of(part)
        if got == remote.sha256:
            part.replace(dest)
            return dest
        part.unlink()
        problems.append(f"{url}: SHA-256 {got}, expected {remote.sha256}")
    if any("SHA-256" in p for p in problems):
        raise ChecksumError(
            f"downloaded {remote.name} does not match its pinned checksum, so it was deleted "
            f"({'; '.join(problems)}). The mirror may be serving a different file; put the official "
            f"{remote.name} in {home} yourself."
        )
    raise offline_error(home, "; ".join(problems))


def _has_images(home: Path) -> bool:
    try:
        detect_layout(home)
    except DataError:
        return False
    return True


def ensure_lfw(home: Optional[Path] = None) -> Path:
    """The LFW folder in the data home, downloading what is missing (protocol files, images)."""
    home = home or data_home() / "lfw"
    missing = [r for r in PROTOCOL_FILES if not (home / r.name).is_file()]
    images = not (home.is_dir() and _has_images(home))
    if not missing and not images:
        return home
    log.info("LFW: fetching %s into %s", ", ".join([r.name for r in missing] + ([IMAGES.name] if images else [])), home)
    for remote in missing:
        download(remote, home)
    if images:
        archive = download(IMAGES, home)
        with tarfile.open(archive) as tar:
            tar.extractall(home, filter="data")
        archive.unlink()
    return home
