"""CelebA (Liu, Luo, Wang, Tang, ICCV 2015) as outside training data: 202,599 images of 10,177
identities, the public relative of DeepID2's CelebFaces+.

Layouts: torchvision's (``root/img_align_celeba/``, ``root/identity_CelebA.txt``,
``root/list_landmarks_align_celeba.txt``) or the official download's (``root/Img/img_align_celeba/``
and the text files in ``root/Anno/``). With the landmark file, every face is warped by its five
landmarks onto the 96 x 112 template of the aligned LFW crops (facebench.data.align), so
training and test faces share one geometry; without it a fixed box is cropped. Every aligned
image must be CelebA's 178 x 218: an in-the-wild photo put in that folder would otherwise be
cropped into background.

The in-the-wild distribution (``Img/img_celeba/``, photos of any size) is used when the aligned
folder is absent: each photo is warped from its own five landmarks in the official
``list_landmarks_celeba.txt`` (its bounding boxes are not needed). Without that file it is
refused, since no fixed box fits photos of arbitrary framing.

A subset of the images (a partial download) is accepted: the identity file's images that are
on disk are used, and the record counts the ones that are not.

CelebA names its identities by number only, so the name-based identity-overlap audit cannot
recognise an LFW person in it; ``names_file`` declares names for the numbers where a mapping
is available.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from facebench.components import Dataset, FaceData
from facebench.data.align import TEMPLATE_112x96, align_face
from facebench.data.cache import file_fingerprint
from facebench.data.chunked import cached_decode, cached_decode_files
from facebench.data.images import as_hwc, decode_images, open_rgb
from facebench.errors import DataError

IDENTITY_FILE = "identity_CelebA.txt"
LANDMARK_FILE = "list_landmarks_align_celeba.txt"
IMAGE_DIR = "img_align_celeba"
WILD_IMAGE_DIR = "img_celeba"
WILD_LANDMARK_FILE = "list_landmarks_celeba.txt"
#: Every img_align_celeba image is this size (width, height).
ALIGNED_SIZE = (178, 218)
#: Box (left, top, right, bottom) on a 178 x 218 img_align_celeba image used without landmarks:
#: the 96 x 112 template mapped by the similarity that takes it onto CelebA's approximate mean
#: aligned landmarks (eyes near (69, 111) and (107, 112), mouth corners near (71, 152) and
#: (105, 152)); 100 x 117 pixels, the aspect of the 96 x 112 crops.
CELEBA_BOX = (38, 57, 138, 174)

log = logging.getLogger(__name__)


@dataclass
class CelebAConfig:
    """CelebA as outside training data.

    root: the CelebA folder (img_align_celeba/ with identity_CelebA.txt beside it, or the
      official Img/ and Anno/ folders).
    align: warp each face by its 5 landmarks onto the 96x112 LFW template when
      list_landmarks_align_celeba.txt is present (false: always crop CELEBA_BOX).
    min_images_per_identity: identities with fewer images are left out.
    names_file: optional text file of '<identity number> <name>' lines naming CelebA's
      identities for the identity-overlap audit; None: identities are named celeba_<number>.
    """

    name: str = "celeba"
    root: Optional[str] = None
    align: bool = True
    min_images_per_identity: int = 1
    names_file: Optional[str] = None


def _find(root: Path, name: str, subdirs: tuple[str, ...]) -> Optional[Path]:
    for sub in subdirs:
        path = root / sub / name
        if path.exists():
            return path
    return None


def _rows(path: Path, fields: int, skip: int = 0) -> list[list[str]]:
    """Whitespace-split lines with exactly ``fields`` fields after ``skip`` header lines."""
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if lineno <= skip or not line.strip():
            continue
        parts = line.split()
        if len(parts) != fields:
            raise DataError(f"{path}:{lineno}: expected {fields} fields, got {len(parts)}: {line.strip()!r}")
        rows.append(parts)
    return rows


def read_identities(path: Path) -> dict[str, int]:
    """``identity_CelebA.txt``: image file name -> identity number. A first line whose identity is
    not a number is a column header (some redistributions add one) and is skipped."""
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected '<image file> <identity number>', got {line.strip()!r}")
        file, ident = parts
        if not ident.isdigit():
            if lineno == 1:
                continue
            raise DataError(f"{path}:{lineno}: the identity of {file} is {ident!r}, not a number")
        out[file] = int(ident)
    return out


def read_landmarks(path: Path) -> dict[str, np.ndarray]:
    """``list_landmarks_align_celeba.txt`` (a count line, a header line, then file + 10 numbers): file -> (5, 2)."""
    try:
        return {r[0]: np.array(r[1:], dtype=np.float64).reshape(5, 2) for r in _rows(path, 11, skip=2)}
    except ValueError as exc:
        raise DataError(f"{path}: landmark coordinates must be numbers ({exc})") from exc


def read_names(path: Path) -> dict[int, str]:
    out = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{path}:{lineno}: expected '<identity number> <name>', got {line.strip()!r}")
        out[int(parts[0])] = parts[1].strip()
    return out


class CelebAData(Dataset):
    """CelebA identities, aligned to the LFW template (outside data: no family)."""

    family = None

    def __init__(self, cfg: CelebAConfig) -> None:
        self.cfg = cfg

    def _files(self) -> tuple[Path, Path, Optional[Path], bool]:
        """(image folder, identity file, landmark file or None, whether the images are in the wild)."""
        if not self.cfg.root:
            raise DataError("data.root is not set: point it at the CelebA folder (img_align_celeba/, identity_CelebA.txt)")
        root = Path(self.cfg.root).expanduser()
        identities = _find(root, IDENTITY_FILE, (".", "Anno"))
        images = _find(root, IMAGE_DIR, (".", "Img"))
        wild = _find(root, WILD_IMAGE_DIR, (".", "Img")) if images is None else None
        if identities is None or (images is None and wild is None):
            raise DataError(
                f"data.root={self.cfg.root}: not a CelebA folder; expected {IMAGE_DIR}/ (or the in-the-wild "
                f"{WILD_IMAGE_DIR}/) and {IDENTITY_FILE} in it (or under Img/ and Anno/)"
            )
        if wild is not None:
            landmarks = _find(root, WILD_LANDMARK_FILE, (".", "Anno"))
            if landmarks is None or not self.cfg.align:
                raise DataError(
                    f"{wild}: CelebA's in-the-wild photos are aligned from their landmarks, and "
                    + (f"{WILD_LANDMARK_FILE} is not beside them (put the official Anno/{WILD_LANDMARK_FILE} there)"
                       if landmarks is None else "data.align=false asks for a fixed box, which fits only img_align_celeba")
                    + f"; or use the aligned distribution ({IMAGE_DIR}/)."
                )
            return wild, identities, landmarks, True
        landmarks = _find(root, LANDMARK_FILE, (".", "Anno")) if self.cfg.align else None
        return images, identities, landmarks, False

    def check(self) -> None:
        self._files()

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> FaceData:
        images_dir, identity_file, landmark_file, wild = self._files()
        by_file = read_identities(identity_file)
        present = {f for f in by_file if (images_dir / f).is_file()}
        if not present:
            raise DataError(f"none of the {len(by_file)} images listed in {identity_file} is in {images_dir}")
        missing = len(by_file) - len(present)
        if missing:
            log.warning("CelebA: %d of the %d images listed in %s are not in %s; using the %d that are",
                        missing, len(by_file), identity_file, images_dir, len(present))
        numbers, counts = np.unique([by_file[f] for f in present], return_counts=True)
        wanted = set(numbers[counts >= self.cfg.min_images_per_identity].tolist())
        files = sorted(f for f in present if by_file[f] in wanted)
        if not files:
            raise DataError(
                f"{identity_file}: no identity has min_images_per_identity={self.cfg.min_images_per_identity} images "
                f"among the {len(present)} on disk"
            )
        paths = [images_dir / f for f in files]
        idents = sorted(wanted)
        label_of = {ident: k for k, ident in enumerate(idents)}
        labels = np.array([label_of[by_file[f]] for f in files], dtype=np.int64)
        expect = None if wild else (
            *ALIGNED_SIZE,
            f"{IMAGE_DIR} images are {ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]} (in-the-wild photos belong in Img/{WILD_IMAGE_DIR})",
        )
        if landmark_file is None:
            images, kept, skipped = cached_decode_files(
                cache_dir, "celeba", paths, shape, on_bad_image, "CelebA", crop=CELEBA_BOX, expect_size=expect
            )
        else:
            images, kept, skipped = self._decode_aligned(paths, files, landmark_file, shape, cache_dir, on_bad_image, expect)
        declared = read_names(Path(self.cfg.names_file)) if self.cfg.names_file else {}
        names = [declared.get(ident, f"celeba_{ident}") for ident in idents]
        unnamed = [name for ident, name in zip(idents, names) if ident not in declared]
        info = {
            "root": str(images_dir),
            "aligned": landmark_file is not None,
            "in_the_wild": wild,
            "images_listed": len(by_file),
            "images_missing": missing,
            "skipped_images": skipped,
        }
        if unnamed:
            info["unnamed_identities"] = unnamed
            info["why_unnamed"] = (
                f"CelebA names its identities by number; {len(unnamed)} of {len(names)} have no name "
                + ("in data.names_file" if self.cfg.names_file else "(set data.names_file to map numbers to names)")
            )
        return FaceData(images=images, labels=labels[kept], names=names, keys=[files[i] for i in kept], info=info)

    def _decode_aligned(
        self,
        paths: list[Path],
        files: list[str],
        landmark_file: Path,
        shape: tuple[int, int, int],
        cache_dir: str,
        on_bad_image: str,
        expect_size: Optional[tuple[int, int, str]],
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Decode each image at its own size (that of its landmarks) and warp the face onto the template."""
        landmarks = read_landmarks(landmark_file)
        absent = [f for f in files if f not in landmarks]
        if absent:
            raise DataError(f"{landmark_file} has no landmarks for {len(absent)} images, e.g. {absent[0]}")
        points = np.stack([landmarks[f] for f in files])
        channels, out_h, out_w = shape

        def decode_chunk(index: np.ndarray) -> tuple[np.ndarray, list[int], list[str]]:
            def warp(j: int) -> np.ndarray:
                with open_rgb(paths[index[j]], channels, expect_size) as img:
                    return align_face(as_hwc(img), points[index[j]], shape)

            return decode_images([paths[i] for i in index], shape, on_bad_image, label="CelebA", load=warp)

        key = {
            "what": "celeba-aligned",
            "files": file_fingerprint(paths),
            "landmarks": file_fingerprint([landmark_file]),
            "template": TEMPLATE_112x96.tolist(),
            "shape": list(shape),
            "expect_size": list(expect_size[:2]) if expect_size else None,
            "on_bad": on_bad_image,
        }
        return cached_decode(cache_dir, key, len(paths), (out_h, out_w, channels), decode_chunk, "CelebA (aligned)")
