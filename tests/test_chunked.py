"""The chunked, memory-mapped decode cache: resuming after a crash, compacting skipped images."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebench.data import chunked
from facebench.data.chunked import cached_decode_files
from facebench.errors import DataError

SHAPE = (3, 8, 6)


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        Image.fromarray(np.full((8, 6, 3), i * 10, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_an_interrupted_decode_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _images(tmp_path / "img", 10)
    cache = tmp_path / "cache"
    real = chunked.decode_images
    calls: list[int] = []

    def crash_on_third_chunk(chunk_paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(chunk_paths))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies mid-build
        return real(chunk_paths, *args, **kwargs)

    monkeypatch.setattr(chunked, "decode_images", crash_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        cached_decode_files(cache, "t", paths, SHAPE, "fail", "t", chunk=3)
    assert list(cache.glob("*.partial.npy")) and list(cache.glob("*.progress.json"))
    assert not [p for p in cache.glob("*.json") if not p.name.endswith(".progress.json")]  # nothing looks complete

    calls.clear()
    monkeypatch.setattr(chunked, "decode_images", lambda p, *a, **k: (calls.append(len(p)), real(p, *a, **k))[1])
    images, kept, skipped = cached_decode_files(cache, "t", paths, SHAPE, "fail", "t", chunk=3)
    assert calls == [3, 1]  # chunks 3 and 4 only; chunks 1 and 2 were kept from the first attempt
    assert isinstance(images, np.memmap) and images.shape == (10, 8, 6, 3)
    assert [int(images[i, 0, 0, 0]) for i in range(10)] == [i * 10 for i in range(10)]
    assert kept.tolist() == list(range(10)) and skipped == []
    assert not list(cache.glob("*.partial.npy")) and not list(cache.glob("*.progress.json"))

    calls.clear()
    cached_decode_files(cache, "t", paths, SHAPE, "fail", "t", chunk=3)
    assert calls == []  # complete: a cache hit


def test_skipped_images_are_compacted_away(tmp_path: Path) -> None:
    paths = _images(tmp_path / "img", 5)
    paths[1].write_bytes(b"not an image")
    images, kept, skipped = cached_decode_files(tmp_path / "cache", "t", paths, SHAPE, "skip", "t")
    assert kept.tolist() == [0, 2, 3, 4] and images.shape[0] == 4
    assert [int(v) for v in images[:, 0, 0, 0]] == [0, 20, 30, 40]
    assert len(skipped) == 1 and str(paths[1]) in skipped[0]
    again, kept_again, skipped_again = cached_decode_files(tmp_path / "cache", "t", paths, SHAPE, "skip", "t")
    assert kept_again.tolist() == [0, 2, 3, 4] and skipped_again == skipped


def test_a_bad_image_fails_naming_its_path(tmp_path: Path) -> None:
    paths = _images(tmp_path / "img", 3)
    paths[2].write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(DataError, match=f"cannot decode image {paths[2]}.*on_bad_image=skip"):
        cached_decode_files(tmp_path / "cache", "t", paths, SHAPE, "fail", "t")


def test_two_simultaneous_builds_decode_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _images(tmp_path / "img", 6)
    real = chunked.decode_images
    calls: list[int] = []
    monkeypatch.setattr(chunked, "decode_images", lambda p, *a, **k: (calls.append(len(p)), real(p, *a, **k))[1])
    def build(_: int) -> tuple:
        return cached_decode_files(tmp_path / "c", "t", paths, SHAPE, "fail", "t", chunk=2)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(build, range(2)))
    assert calls == [2, 2, 2]  # the second waited for the first and found its entry
    assert all(np.array_equal(r[0], results[0][0]) for r in results)
