"""Decoding image files into one uint8 array at a backbone's input size.

Threads, not processes: Pillow releases the GIL while it decodes and resizes, so both cores
work without pickling arrays between processes (and it stays safe inside joblib workers).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from facebench.errors import DataError

log = logging.getLogger(__name__)


#: Largest enlargement accepted from an image (after its crop) to the backbone's input: beyond it
#: a thumbnail or a 1x1 file becomes a blur that looks like a face to no one, silently.
MAX_UPSCALE = 4.0


class ImageSizeError(ValueError):
    """An image whose size does not fit its layout or is too small to enlarge to the input."""


def open_rgb(path: Path, channels: int, expect_size: Optional[tuple[int, int, str]] = None) -> Image.Image:
    """The image converted to RGB or grey; ``expect_size`` = (width, height, the rule in words)
    refuses any other size."""
    img = Image.open(path)
    if expect_size is not None and img.size != expect_size[:2]:
        size = img.size
        img.close()
        raise ImageSizeError(f"it is {size[0]}x{size[1]} pixels, but {expect_size[2]}")
    return img.convert("RGB" if channels == 3 else "L")


def as_hwc(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img, dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[:, :, None]


def load_image(
    path: Path,
    shape: tuple[int, int, int],
    crop: tuple[int, int, int, int] | None = None,
    expect_size: Optional[tuple[int, int, str]] = None,
) -> np.ndarray:
    """One image as uint8 (H, W, C): optional crop box (left, top, right, bottom), resize, RGB or grey."""
    channels, height, width = shape
    with open_rgb(path, channels, expect_size) as img:
        if crop is not None:
            img = img.crop(crop)
        if img.width * MAX_UPSCALE < width or img.height * MAX_UPSCALE < height:
            raise ImageSizeError(
                f"it is {img.width}x{img.height} pixels{' after the crop' if crop else ''}, more than "
                f"{MAX_UPSCALE:g}x smaller than the {width}x{height} input; facebench does not enlarge thumbnails"
            )
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        return as_hwc(img)


def decode_images(
    paths: list[Path],
    shape: tuple[int, int, int],
    on_bad_image: str = "fail",
    crop: tuple[int, int, int, int] | None = None,
    label: str = "images",
    load: Optional[Callable[[int], np.ndarray]] = None,
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode ``paths`` into (N, H, W, C) uint8; returns (array, kept indices, skipped messages).

    A file that cannot be read fails the load naming the file (``on_bad_image=fail``) or is
    skipped and reported (``skip``). ``load(i)``: how image i becomes its (H, W, C) array, for
    sources that warp each face (default: ``load_image`` with ``crop``).
    """
    if on_bad_image not in ("fail", "skip"):
        raise DataError(f"on_bad_image={on_bad_image!r}: use 'fail' or 'skip'")
    channels, height, width = shape
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    ok = np.ones(len(paths), dtype=bool)
    skipped: list[str] = []

    def work(i: int) -> None:
        try:
            out[i] = load(i) if load is not None else load_image(paths[i], shape, crop)
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
