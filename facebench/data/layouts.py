"""The official LFW image layouts, told apart from a root folder alone.

LFW circulates in several layouts and a user should only have to say where the folder is:

* ``lfw-112X96/`` — faces already aligned by a 5-point similarity transform and cropped to
  96 x 112 (SphereFace/CosFace era, the copy in ../shared/data/lfw). Used as it is.
* ``lfw/``, ``lfw_funneled/``, ``lfw-deepfunneled/`` — the official 250 x 250 images
  (original, funneled, deep-funneled). The face fills only the middle of the frame, so a
  crop box is applied before resizing (see :data:`DEFAULT_250_CROP`).
* scikit-learn's cache, ``lfw_home/lfw_funneled`` (or ``lfw_home/lfw``) with ``pairs.txt``
  etc. in ``lfw_home/`` — what ``sklearn.datasets.fetch_lfw_pairs`` leaves in its data home.

The root may be the folder holding one of these (with the protocol files beside it), the
image folder itself, or scikit-learn's data home. Detection decodes nothing: it reads the
header of one image to tell the layouts apart by size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from PIL import Image

from facebench.errors import DataError

ALIGNED = "aligned_112x96"
ORIGINAL = "original_250x250"

#: Crop box (left, top, right, bottom) on a 250 x 250 LFW image: a 110 x 128 (w x h) box
#: around the face, the 96 x 112 alignment template mapped onto the LFW frame. LFW centres
#: each face's Viola-Jones detection, enlarged 2.2x, in the 250 x 250 frame, with the eyes
#: about 40 px apart on a line near y = 117; the template (eyes 35 px apart on y = 51.7 of
#: 112) scaled by 1.14 and centred on column 125 spans x = 70..180 and y = 58..186, brow to
#: chin. Its aspect (0.86) is that of the 96 x 112 and 47 x 55 inputs, so resizing does not
#: distort the face. It is an approximate, fixed reading, not a per-image alignment
#: (scikit-learn's default box, (78, 70, 172, 195), is tighter); set ``crop`` to change it.
DEFAULT_250_CROP: tuple[int, int, int, int] = (70, 58, 180, 186)

#: Image folders tried under a root, in order (aligned crops first: the DeepID-family presets
#: are sized for them). Which layout a folder holds is read from one image's size, not from
#: its name, so a renamed folder is still recognised.
VARIANTS = ("lfw-112X96", "lfw-deepfunneled", "lfw_funneled", "lfw", "lfw_home/lfw_funneled", "lfw_home/lfw")
PROTOCOL_FILE = "pairs.txt"
ACCEPTED = (
    "lfw-112X96/ (96x112 aligned crops), lfw/, lfw_funneled/ or lfw-deepfunneled/ (250x250 originals) "
    "with pairs.txt, people.txt etc. beside the image folder, or scikit-learn's lfw_home/ "
    "(lfw_home/lfw_funneled + lfw_home/pairs.txt)"
)


@dataclass(frozen=True)
class LfwLayout:
    """Where the images and the protocol files are, and how an image becomes a face.

    ``crop`` is the box (left, top, right, bottom) cut from every image before it is resized
    to a backbone's input; None uses the whole image (the aligned 96 x 112 crops).
    """

    images_dir: Path
    protocol_dir: Path
    variant: str
    kind: str
    crop: Optional[tuple[int, int, int, int]]

    def image(self, relpath: str) -> Path:
        return self.images_dir / relpath

    def protocol_file(self, name: str) -> Path:
        path = self.protocol_dir / name
        if not path.is_file():
            raise DataError(
                f"LFW protocol file {path} not found. Put the official {name} beside the image folder "
                f"(in {self.protocol_dir})."
            )
        return path

    def describe(self) -> dict:
        """JSON-safe summary for records."""
        return {
            "root": str(self.images_dir),
            "variant": self.variant,
            "layout": self.kind,
            "crop": list(self.crop) if self.crop else None,
        }


def check_crop(crop: Optional[Sequence[int]], key: str) -> Optional[tuple[int, int, int, int]]:
    """A crop box from config as a tuple, refused unless it is four integers with left < right, top < bottom."""
    if crop is None:
        return None
    box = tuple(int(v) for v in crop)
    if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]) or min(box) < 0:
        raise DataError(
            f"{key}={list(crop)}: a crop box is [left, top, right, bottom] in pixels with left < right and "
            f"top < bottom, e.g. {list(DEFAULT_250_CROP)} for 250x250 LFW images"
        )
    return box  # type: ignore[return-value]


def _first_person_image(path: Path) -> Optional[Path]:
    """One ``<Name>/<Name>_NNNN.jpg`` under ``path``, or None when it holds no person folders."""
    for child in path.iterdir():
        if child.is_dir():
            hit = next(child.glob(f"{child.name}_*.jpg"), None)
            if hit is not None:
                return hit
    return None


def _kind_of(images: Path, sample: Path) -> str:
    """The layout of an image folder, from the size of one of its images.

    250 x 250 are LFW's originals (cropped with the default box); 96 x 112 the aligned crops;
    any other size is taken to be a face crop already and is used whole.
    """
    try:
        with Image.open(sample) as img:
            width, height = img.size
    except OSError as exc:
        raise DataError(f"cannot read {sample} to tell which LFW layout {images} is: {exc}") from exc
    if (width, height) == (250, 250):
        return ORIGINAL
    if (width, height) == (96, 112):
        return ALIGNED
    return f"crops_{height}x{width}"


def _protocol_dir(root: Path, images: Path) -> Path:
    for candidate in (root, images.parent):
        if (candidate / PROTOCOL_FILE).is_file():
            return candidate
    return root


def detect_layout(
    root: Path, variant: Optional[str] = None, crop: Optional[Sequence[int]] = None, key: str = "protocol.crop"
) -> LfwLayout:
    """Find the image folder, its layout and the protocol files under ``root``.

    ``variant`` names the image folder under ``root`` (None: tried in :data:`VARIANTS` order,
    then ``root`` itself). ``crop`` overrides the layout's box (None: :data:`DEFAULT_250_CROP`
    for 250 x 250 images, no crop for the aligned ones).
    """
    box = check_crop(crop, key)
    candidates = [variant] if variant else list(VARIANTS)
    found: list[tuple[Path, str]] = [(root / name, name) for name in candidates if (root / name).is_dir()]
    if variant is None:
        found.append((root, "."))
    for images, name in found:
        sample = _first_person_image(images)
        if sample is None:
            continue
        kind = _kind_of(images, sample)
        if box is None and kind == ORIGINAL:
            box = DEFAULT_250_CROP
        return LfwLayout(images, _protocol_dir(root, images), name, kind, box)
    raise DataError(
        f"{root}: no LFW image folder found (looked for {', '.join(candidates)} and for person folders "
        f"<Name>/<Name>_0001.jpg directly under the root). Accepted layouts: {ACCEPTED}."
    )
