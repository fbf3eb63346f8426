"""The CelebA dataset on a generated copy: both layouts, landmark alignment, declared names."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebench.data.align import TEMPLATE_112x96
from facebench.data.celeba import CelebAConfig, CelebAData
from facebench.errors import DataError

SHAPE = (3, 112, 96)


def _celeba(root: Path, official: bool = False, landmarks: bool = True) -> Path:
    """3 identities x 2 images of 178x218 with bright dots at each image's landmarks."""
    img_dir = root / ("Img" if official else ".") / "img_align_celeba"
    anno = root / ("Anno" if official else ".")
    img_dir.mkdir(parents=True)
    anno.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ident_lines, mark_lines = [], ["6", "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"]
    yy, xx = np.mgrid[0:218, 0:178]
    for i in range(6):
        name = f"{i + 1:06d}.jpg"
        angle, scale = rng.uniform(-0.3, 0.3), rng.uniform(1.0, 1.3)
        c, s = np.cos(angle), np.sin(angle)
        points = TEMPLATE_112x96 @ (scale * np.array([[c, -s], [s, c]])).T + [40, 50]
        image = np.zeros((218, 178))
        for x, y in points:
            image += 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).convert("RGB").save(img_dir / name, quality=95)
        ident_lines.append(f"{name} {100 + i // 2}")
        mark_lines.append(name + " " + " ".join(str(round(v)) for v in points.ravel()))
    (anno / "identity_CelebA.txt").write_text("\n".join(ident_lines) + "\n")
    if landmarks:
        (anno / "list_landmarks_align_celeba.txt").write_text("\n".join(mark_lines) + "\n")
    return root


@pytest.mark.parametrize("official", [False, True])
def test_aligned_faces_have_their_landmarks_on_the_template(tmp_path: Path, official: bool) -> None:
    root = _celeba(tmp_path / "celeba", official=official)
    faces = CelebAData(CelebAConfig(root=str(root))).load(SHAPE, str(tmp_path / "cache"), "fail")
    assert faces.names == ["celeba_100", "celeba_101", "celeba_102"] and faces.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert faces.info["aligned"] and faces.images.shape == (6, 112, 96, 3)
    for x, y in TEMPLATE_112x96:  # landmarks were rounded to whole pixels in the file: allow a pixel
        assert faces.images[:, int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2].max(axis=(1, 2, 3)).min() > 150


def test_without_landmarks_a_fixed_box_is_cropped(tmp_path: Path) -> None:
    root = _celeba(tmp_path / "celeba", landmarks=False)
    faces = CelebAData(CelebAConfig(root=str(root))).load((1, 55, 47), str(tmp_path / "cache"), "fail")
    assert not faces.info["aligned"] and faces.images.shape == (6, 55, 47, 1)


def test_declared_names_and_min_images(tmp_path: Path) -> None:
    root = _celeba(tmp_path / "celeba")
    (root / "identity_CelebA.txt").write_text((root / "identity_CelebA.txt").read_text().replace("000006.jpg 102", "000006.jpg 103"))
    names = tmp_path / "names.txt"
    names.write_text("100 Some Person\n101 Another_Person\n")
    faces = CelebAData(CelebAConfig(root=str(root), names_file=str(names), min_images_per_identity=2)).load(
        SHAPE, str(tmp_path / "cache"), "fail"
    )
    assert faces.names == ["Some Person", "Another_Person"] and len(faces.images) == 4


def test_not_a_celeba_folder_and_missing_landmarks(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a CelebA folder"):
        CelebAData(CelebAConfig(root=str(tmp_path))).check()
    root = _celeba(tmp_path / "celeba")
    marks = root / "list_landmarks_align_celeba.txt"
    marks.write_text("\n".join(marks.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match="no landmarks for 1 images, e.g. 000006.jpg"):
        CelebAData(CelebAConfig(root=str(root))).load(SHAPE, str(tmp_path / "cache"), "fail")
