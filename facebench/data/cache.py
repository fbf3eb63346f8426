"""Decode once, reuse forever: a content-keyed on-disk cache of decoded image arrays.

The key covers the file list (with sizes and modification times, so an edited file is
re-decoded) and the preprocessing, so two runs that would decode the same bytes share one
array. Arrays are written to a temporary name and renamed, and the metadata file is written
last: an interrupted build leaves nothing that looks complete.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def file_fingerprint(paths: list[Path]) -> str:
    """A digest of names, sizes and mtimes: cheap to compute, changes when any file does."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def atomic_write_bytes(path: Path, write: Callable[[Any], None], suffix: str = "") -> None:
    """Write through ``write(fileobj)`` into a temp file beside ``path``, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix + ".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_images(
    cache_dir: str | Path,
    key_parts: dict[str, Any],
    build: Callable[[], tuple[np.ndarray, dict[str, Any]]],
    label: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(array, meta)`` from the cache, building and storing it on a miss.

    ``build`` returns the uint8 array and JSON-safe metadata (e.g. skipped files). The array
    comes back memory-mapped read-only, so a large set is paged in as training touches it.
    """
    root = Path(cache_dir).expanduser()
    key = cache_key(key_parts)
    arr_path, meta_path = root / f"{key}.npy", root / f"{key}.json"
    if meta_path.exists() and arr_path.exists():
        meta = json.loads(meta_path.read_text())
        log.info("%s: decoded-image cache hit, not decoding again (%s)", label, arr_path)
        return np.load(arr_path, mmap_mode="r", allow_pickle=False), meta
    start = time.perf_counter()
    array, meta = build()
    meta = {**meta, "shape": list(array.shape), "seconds": round(time.perf_counter() - start, 3)}
    atomic_write_bytes(arr_path, lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False))
    atomic_write_bytes(meta_path, lambda fh: fh.write(json.dumps(meta).encode()))
    log.info("%s: decoded %d images in %.1f s; cached at %s", label, len(array), meta["seconds"], arr_path)
    return np.load(arr_path, mmap_mode="r", allow_pickle=False), meta
