"""Decode once, reuse forever: a content-keyed on-disk cache of decoded image arrays.

The key covers the file list (with sizes, modification and change times and modes, so an
edited, replaced or re-permitted file is decoded again) and the preprocessing, so two runs that
would decode the same bytes share one array. Arrays are written to a temporary name and
renamed, and the metadata file is written last: an interrupted build leaves nothing that looks
complete.

An entry is data from an earlier run, so it is verified before it is used: the metadata must
parse, the array must be a plain uint8 ``.npy`` of the recorded shape, and each chunk of rows
must match the CRC-32 recorded when it was written (zlib, over both cores: about 25 ms per
100 MB). A damaged entry is deleted and rebuilt with a warning, never trusted, never a
traceback on every later run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from facebench.atomic_io import atomic_write_bytes

log = logging.getLogger(__name__)

#: Rows per checksummed chunk of a cache array.
CHECK_ROWS = 2048


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def file_fingerprint(paths: list[Path]) -> str:
    """A digest of names, sizes, modification and change times and modes: cheap to compute,
    changes when any file's content or readability does (a restore that keeps the size and
    modification time still changes the change time)."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_mode:o}\n".encode())
    return h.hexdigest()


def chunk_checksums(array: np.ndarray, rows: int = CHECK_ROWS) -> list[int]:
    """CRC-32 of each block of ``rows`` rows (zlib releases the GIL: blocks run in parallel)."""
    starts = range(0, len(array), rows)
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda s: zlib.crc32(np.ascontiguousarray(array[s : s + rows]).data), starts))


def integrity(array: np.ndarray) -> dict[str, Any]:
    """What an entry's metadata records so a later load can verify the array."""
    return {"shape": list(array.shape), "check_rows": CHECK_ROWS, "crc32": chunk_checksums(array)}


def load_verified(arr_path: Path, meta_path: Path, label: str) -> Optional[tuple[np.ndarray, dict[str, Any]]]:
    """``(read-only memory map, metadata)`` of an intact entry; None, after deleting the entry
    and saying why, when anything about it does not hold."""
    if not (arr_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("crc32"), list):
            raise ValueError("its metadata has no checksums")
        array = np.load(arr_path, mmap_mode="r", allow_pickle=False)
        if array.dtype != np.uint8 or list(array.shape) != meta.get("shape"):
            raise ValueError(f"array {array.dtype} {list(array.shape)}, metadata says uint8 {meta.get('shape')}")
        if chunk_checksums(array, int(meta.get("check_rows", CHECK_ROWS))) != meta["crc32"]:
            raise ValueError("its bytes do not match the checksums recorded when it was written")
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        log.warning("%s: the decoded-image cache entry %s is damaged (%s); deleting it and decoding again",
                    label, arr_path, exc)
        arr_path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        return None
    log.info("%s: decoded-image cache hit, verified, not decoding again (%s)", label, arr_path)
    return array, meta


def write_npy(fh: Any, array: np.ndarray) -> None:
    """``array`` as a ``.npy`` through plain writes (``np.save`` writes real files with
    ``tofile``, whose failure on a full disk carries no errno to tell it from other errors)."""
    np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(array))
    fh.write(memoryview(np.ascontiguousarray(array)).cast("B"))


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
    hit = load_verified(arr_path, meta_path, label)
    if hit is not None:
        return hit
    start = time.perf_counter()
    array, meta = build()
    array = np.ascontiguousarray(array, dtype=np.uint8)
    meta = {**meta, **integrity(array), "seconds": round(time.perf_counter() - start, 3)}
    atomic_write_bytes(arr_path, lambda fh: write_npy(fh, array), what="cache array")
    atomic_write_bytes(meta_path, lambda fh: fh.write(json.dumps(meta).encode()), what="cache metadata")
    log.info("%s: decoded %d images in %.1f s; cached at %s", label, len(array), meta["seconds"], arr_path)
    return np.load(arr_path, mmap_mode="r", allow_pickle=False), meta
