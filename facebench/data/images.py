"""Decoding image files into one uint8 array at a backbone's input size.

Threads, not processes: Pillow releases the GIL while it decodes and resizes, so both cores
work without pickling arrays between processes (and it stays safe inside joblib workers).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from facebench.errors import DataError

log = logging.getLogger(__name__)


def load_image(path: Path, shape: tuple[int, int, int], crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """One image as uint8 (H, W, C): optional crop box (left, top, right, bottom), resize, RGB or grey."""
    channels, height, width = shape
    with Image.open(path) as img:
        img = img.convert("RGB" if channels == 3 else "L")
        if crop is not None:
            img = img.crop(crop)
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[:, :, None]


def decode_images(
    paths: list[Path],
    shape: tuple[int, int, int],
    on_bad_image: str = "fail",
    crop: tuple[int, int, int, int] | None = None,
    label: str = "images",
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode ``paths`` into (N, H, W, C) uint8; returns (array, kept indices, skipped messages).

    A file that cannot be read fails the load naming the file (``on_bad_image=fail``) or is
    skipped and reported (``skip``).
    """
    if on_bad_image not in ("fail", "skip"):
        raise DataError(f"on_bad_image={on_bad_image!r}: use 'fail' or 'skip'")
    channels, height, width = shape
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    ok = np.ones(len(paths), dtype=bool)
    skipped: list[str] = []

    def work(i: int) -> None:
        try:
            out[i] = load_image(paths[i], shape, crop)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            if on_bad_image == "fail":
                raise DataError(
                    f"cannot decode image {paths[i]}: {exc}. Replace the file, or set on_bad_image=skip to skip it"
                ) from exc
            ok[i] = False
            skipped.append(f"{paths[i]}: {exc}")

    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        for _ in tqdm(pool.map(work, range(len(paths))), total=len(paths), desc=f"decode {label}", mininterval=2.0, disable=None):
            pass
    kept = np.flatnonzero(ok)
    if skipped:
        log.warning("%s: skipped %d unreadable images (on_bad_image=skip), first: %s", label, len(skipped), skipped[0])
    return (out if ok.all() else out[kept]), kept.tolist(), skipped
