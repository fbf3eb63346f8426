"""Outside training data in the most common layout: one folder per identity.

``root/<identity>/<image>``, any format Pillow can open (JPEG, PNG, PGM as in the AT&T faces,
...). The folder name is the identity's name, which the identity-overlap audit compares with
the benchmark's people, so a folder named like an LFW person is caught before it is reported
on. Training on such a set is the unrestricted_labeled_outside regime.

Decoding goes through the chunked, resumable on-disk cache (facebench.data.chunked), so a
set of hundreds of thousands of images is decoded once and memory-mapped, never held in RAM.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from facebench.components import Dataset, FaceData
from facebench.data.chunked import cached_decode_files
from facebench.data.layouts import check_crop
from facebench.errors import DataError


@dataclass
class ImageFolderConfig:
    """One sub-folder per identity under root; the folder name is the identity's name.

    root: the folder holding the identity folders (required).
    min_images_per_identity: identities with fewer image files are left out (1: keep all; 2 or
      more for losses that need pairs of the same person).
    crop: [left, top, right, bottom] box cut from each image before resizing to the backbone's
      input; None: the whole image (faces already cropped, e.g. the 112x96 crops).
    """

    name: str = "imagefolder"
    root: Optional[str] = None
    min_images_per_identity: int = 1
    crop: Optional[list[int]] = None


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """File extensions of every format Pillow can open (not the save-only ones)."""
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def scan_identities(root: Path) -> list[tuple[str, list[Path]]]:
    """(identity, image files) for every identity folder, sorted; hidden entries ignored.

    A folder without a single file Pillow could open is an error naming it: a silently empty
    identity would shift the class count and hide a broken copy.
    """
    extensions = image_extensions()
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in extensions
        )
        if not files:
            raise DataError(
                f"identity folder {folder} holds no image file Pillow can read; remove the folder or add its images"
            )
        out.append((folder.name, files))
    if not out:
        raise DataError(f"{root}: no identity folders; an image folder dataset is root/<identity>/<image files>")
    return out


class ImageFolderData(Dataset):
    """Identity-labelled faces from an image folder tree (outside data: no family)."""

    family = None

    def __init__(self, cfg: ImageFolderConfig) -> None:
        self.cfg = cfg

    def _root(self) -> Path:
        if not self.cfg.root:
            raise DataError("data.root is not set: point it at the folder holding one sub-folder per identity")
        root = Path(self.cfg.root).expanduser()
        if not root.is_dir():
            raise DataError(f"data.root={self.cfg.root}: no such directory")
        return root

    def check(self) -> None:
        """List the identities and refuse empty folders before anything is decoded."""
        check_crop(self.cfg.crop, "data.crop")
        scan_identities(self._root())

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> FaceData:
        root = self._root()
        identities = scan_identities(root)
        kept_ids = [(name, files) for name, files in identities if len(files) >= self.cfg.min_images_per_identity]
        if not kept_ids:
            raise DataError(
                f"{root}: no identity has min_images_per_identity={self.cfg.min_images_per_identity} images"
            )
        paths = [f for _, files in kept_ids for f in files]
        labels = np.repeat(np.arange(len(kept_ids)), [len(files) for _, files in kept_ids])
        crop = check_crop(self.cfg.crop, "data.crop")
        images, kept, skipped = cached_decode_files(
            cache_dir, "imagefolder", paths, shape, on_bad_image, f"image folder {root.name}", crop
        )
        labels = labels[kept]
        empty = np.flatnonzero(np.bincount(labels, minlength=len(kept_ids)) == 0)
        if len(empty):
            folder = root / kept_ids[empty[0]][0]
            raise DataError(
                f"identity folder {folder} has no readable image (all were skipped as unreadable, e.g. "
                f"{next(m for m in skipped if m.startswith(str(folder) + os.sep))}); fix or remove the folder"
            )
        return FaceData(
            images=images,
            labels=labels.astype(np.int64),
            names=[name for name, _ in kept_ids],
            keys=[str(paths[i].relative_to(root)) for i in kept],
            info={
                "root": str(root),
                "identities_below_min": len(identities) - len(kept_ids),
                "skipped_images": skipped,
            },
        )
