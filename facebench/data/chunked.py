"""Decode an image set into the on-disk cache chunk by chunk, resumably.

A training set of half a million faces does not fit in RAM as one array, and decoding it
takes long enough that an interruption must not throw the work away. So the cache array is
a pre-allocated ``.npy`` file (``np.lib.format.open_memmap``, every byte reserved with
``posix_fallocate`` so a full disk is an error naming the folder, never a SIGBUS from a
memory-mapped page) that chunks are decoded into in place, and a small progress file records which chunks are complete (written atomically after
the chunk's bytes are flushed). A run that stops half-way continues from the first
incomplete chunk next time. Only when every chunk is done is the array renamed to its final
name and the metadata written, last, exactly as :func:`facebench.data.cache.cached_images`
lays out a finished entry; callers get the same read-only memory map back.

Unreadable images (``on_bad_image=skip``) leave a hole in the pre-allocated array; the
finished array is compacted to the kept images, again chunk by chunk.

Because the half-built array has one fixed name, two processes building the same entry (a
parallel sweep's first runs) would overwrite each other's progress; an exclusive lock file
(``fcntl.flock``, released by the OS even when a process dies) makes the second one wait and
then find the finished entry.
"""
from __future__ import annotations

import fcntl
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
from tqdm.auto import tqdm

from facebench.atomic_io import atomic_write_bytes, preallocate
from facebench.data.cache import cache_key, file_fingerprint, integrity, load_verified
from facebench.data.images import decode_images, load_image

log = logging.getLogger(__name__)

#: ``decode_chunk(indices) -> (images of the readable ones, their positions in indices, messages about the rest)``.
DecodeChunk = Callable[[np.ndarray], tuple[np.ndarray, list[int], list[str]]]

#: Images per chunk: about 65 MB of 112 x 96 RGB, so a chunk in flight stays small.
CHUNK = 2048


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(json.dumps(data).encode()))


def _resume(partial: Path, progress_path: Path, expected: dict[str, Any]) -> tuple[Optional[np.ndarray], dict[str, Any]]:
    """The half-built array and progress of an interrupted build of the same array, if usable.

    ``progress["skipped"]`` maps each completed chunk to the positions in it that could not
    be decoded (empty: all decoded), ``progress["messages"]`` to the reasons.
    """
    fresh: dict[str, Any] = {**expected, "skipped": {}, "messages": {}}
    if not (partial.is_file() and progress_path.is_file()):
        return None, fresh
    try:
        progress = json.loads(progress_path.read_text())
        array = np.lib.format.open_memmap(partial, mode="r+")
    except (OSError, ValueError):
        return None, fresh
    if any(progress.get(k) != v for k, v in expected.items()) or list(array.shape[1:]) != expected["item_shape"]:
        return None, fresh
    return array, progress


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _hit(final: Path, meta_path: Path, n: int, label: str) -> Optional[tuple[np.ndarray, np.ndarray, list[str]]]:
    verified = load_verified(final, meta_path, label)
    if verified is None:
        return None
    array, meta = verified
    kept = np.setdiff1d(np.arange(n), np.asarray(meta["skipped_index"], dtype=np.int64))
    return array, kept, meta["skipped"]


def _compact(partial: np.ndarray, keep: np.ndarray, dest: Path, chunk: int) -> None:
    """Copy the kept rows of ``partial`` into a new ``.npy`` at ``dest`` without loading them all."""
    out = np.lib.format.open_memmap(dest, mode="w+", dtype=np.uint8, shape=(int(keep.sum()), *partial.shape[1:]))
    preallocate(dest, "the compacted image cache")
    pos = 0
    for start in range(0, len(partial), chunk):
        rows = partial[start : start + chunk][keep[start : start + chunk]]
        out[pos : pos + len(rows)] = rows
        pos += len(rows)
    out.flush()
    del out


def cached_decode(
    cache_dir: str | Path,
    key_parts: dict[str, Any],
    n: int,
    item_shape: tuple[int, int, int],
    decode_chunk: DecodeChunk,
    label: str,
    chunk: int = CHUNK,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images, kept indices, skip messages)`` for ``n`` images of ``item_shape`` (H, W, C).

    Served from the cache when complete; otherwise decoded with ``decode_chunk`` into a
    memory-mapped file, resuming an interrupted build. ``images`` is a read-only memory map
    holding the kept images in order; ``kept`` indexes them among the ``n``.
    """
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(key_parts)
    final, meta_path = root / f"{key}.npy", root / f"{key}.json"
    hit = _hit(final, meta_path, n, label)
    if hit is not None:
        return hit
    with _exclusive(root / f"{key}.lock"):
        return _hit(final, meta_path, n, label) or _build(root, key, n, item_shape, decode_chunk, label, chunk)


def _build(
    root: Path, key: str, n: int, item_shape: tuple[int, int, int], decode_chunk: DecodeChunk, label: str, chunk: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode (or finish decoding) the entry ``key``; the caller holds its lock."""
    final, meta_path = root / f"{key}.npy", root / f"{key}.json"
    partial_path, progress_path = root / f"{key}.partial.npy", root / f"{key}.progress.json"
    start_time = time.perf_counter()
    n_chunks = -(-n // chunk)
    out, progress = _resume(partial_path, progress_path, {"n": n, "item_shape": list(item_shape), "chunk": chunk})
    if out is None:
        out = np.lib.format.open_memmap(partial_path, mode="w+", dtype=np.uint8, shape=(n, *item_shape))
        preallocate(partial_path, "the image cache")
    else:
        done = len(progress["skipped"])
        log.info("%s: resuming an interrupted decode, %d of %d chunks already done", label, done, n_chunks)
    todo = [c for c in range(n_chunks) if str(c) not in progress["skipped"]]
    done_images = n - sum(min(chunk, n - c * chunk) for c in todo)
    with tqdm(total=n, initial=done_images, desc=f"decode {label}", unit="img", disable=None) as bar:
        for c in todo:
            index = np.arange(c * chunk, min(n, (c + 1) * chunk))
            images, kept, messages = decode_chunk(index)
            out[index[kept]] = images
            out.flush()
            progress["skipped"][str(c)] = sorted(set(range(len(index))) - set(kept))
            progress["messages"][str(c)] = messages
            _write_json(progress_path, progress)
            bar.update(len(index))

    skipped_index = sorted(int(c) * chunk + i for c, local in progress["skipped"].items() for i in local)
    messages = [m for c in sorted(progress["messages"], key=int) for m in progress["messages"][c]]
    if skipped_index:
        keep = np.ones(n, dtype=bool)
        keep[skipped_index] = False
        tmp = root / f"{key}.compact.npy"
        _compact(out, keep, tmp, chunk)
        del out
        tmp.replace(final)
        partial_path.unlink()
    else:
        del out
        partial_path.replace(final)
    seconds = round(time.perf_counter() - start_time, 3)
    meta = {
        **integrity(np.load(final, mmap_mode="r", allow_pickle=False)),
        "skipped_index": skipped_index,
        "skipped": messages,
        "seconds": seconds,
    }
    _write_json(meta_path, meta)
    progress_path.unlink(missing_ok=True)
    log.info("%s: decoded %d images in %.1f s; cached at %s", label, n, seconds, final)
    kept_index = np.setdiff1d(np.arange(n), np.asarray(skipped_index, dtype=np.int64))
    return np.load(final, mmap_mode="r", allow_pickle=False), kept_index, messages


def cached_decode_files(
    cache_dir: str | Path,
    what: str,
    paths: list[Path],
    shape: tuple[int, int, int],
    on_bad_image: str,
    label: str,
    crop: Optional[tuple[int, int, int, int]] = None,
    chunk: int = CHUNK,
    expect_size: Optional[tuple[int, int, str]] = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`cached_decode` of image files, each cropped (optional box) and resized to ``shape`` (C, H, W).

    The key covers the files (names, sizes, times, modes), the shape, the crop box, the size the
    layout requires (``expect_size``: width, height, why) and the bad-image policy, so any of
    them changing decodes afresh.
    """
    channels, height, width = shape
    key = {
        "what": what,
        "format": "chunked-2",
        "files": file_fingerprint(paths),
        "shape": list(shape),
        "crop": list(crop) if crop else None,
        "expect_size": list(expect_size[:2]) if expect_size else None,
        "on_bad": on_bad_image,
    }

    def decode_chunk(index: np.ndarray) -> tuple[np.ndarray, list[int], list[str]]:
        return decode_images(
            [paths[i] for i in index], shape, on_bad_image, crop=crop, label=label,
            load=(lambda j: load_image(paths[index[j]], shape, crop, expect_size)) if expect_size else None,
        )

    return cached_decode(cache_dir, key, len(paths), (height, width, channels), decode_chunk, label, chunk)
