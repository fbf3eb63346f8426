"""The image-folder dataset: formats, filtering, malformed folders and images, and the
identity-overlap refusal when its people are LFW people."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data
from facebench.audit import IdentityOverlapError
from facebench.config import compose
from facebench.data.imagefolder import ImageFolderConfig, ImageFolderData
from facebench.errors import DataError
from facebench.run import execute
from fake_lfw import make_lfw

SHAPE = (1, 55, 47)


def _write(path: Path, value: int, size: tuple[int, int] = (92, 112)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0]), value, dtype=np.uint8)).save(path)


def _folder(root: Path) -> Path:
    _write(root / "s1" / "1.pgm", 10)
    _write(root / "s1" / "2.pgm", 20)
    _write(root / "s2" / "a.png", 30)
    _write(root / "s2" / "b.jpg", 40)
    _write(root / "s3" / "only.jpg", 50)
    (root / "s2" / "notes.txt").write_text("not an image")
    return root


def _load(root: Path, cache: Path, on_bad: str = "fail", **cfg) -> object:  # type: ignore[no-untyped-def]
    return ImageFolderData(ImageFolderConfig(root=str(root), **cfg)).load(SHAPE, str(cache), on_bad)


def test_loads_pgm_png_jpeg_per_identity(tmp_path: Path) -> None:
    faces = _load(_folder(tmp_path / "set"), tmp_path / "cache")
    assert faces.names == ["s1", "s2", "s3"] and faces.labels.tolist() == [0, 0, 1, 1, 2]
    assert faces.keys[0] == "s1/1.pgm" and faces.images.shape == (5, 55, 47, 1)
    assert [int(v) for v in faces.images[:, 20, 20, 0]] == [10, 20, 30, 40, 50]


def test_min_images_per_identity_leaves_out_small_identities(tmp_path: Path) -> None:
    faces = _load(_folder(tmp_path / "set"), tmp_path / "cache", min_images_per_identity=2)
    assert faces.names == ["s1", "s2"] and faces.info["identities_below_min"] == 1


def test_a_folder_without_images_is_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "set")
    (root / "s4").mkdir()
    (root / "s4" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=f"identity folder {root / 's4'} holds no image file"):
        ImageFolderData(ImageFolderConfig(root=str(root))).check()


def test_corrupt_jpeg_fails_with_its_path_or_is_skipped(tmp_path: Path) -> None:
    root = _folder(tmp_path / "set")
    bad = root / "s2" / "b.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    with pytest.raises(DataError, match=f"cannot decode image {bad}"):
        _load(root, tmp_path / "cache")
    faces = _load(root, tmp_path / "cache", on_bad="skip")
    assert faces.keys == ["s1/1.pgm", "s1/2.pgm", "s2/a.png", "s3/only.jpg"] and faces.labels.tolist() == [0, 0, 1, 2]
    assert len(faces.info["skipped_images"]) == 1 and str(bad) in faces.info["skipped_images"][0]


def test_an_identity_with_no_readable_image_is_named_even_when_skipping(tmp_path: Path) -> None:
    root = _folder(tmp_path / "set")
    (root / "s3" / "only.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"identity folder {root / 's3'} has no readable image"):
        _load(root, tmp_path / "cache", on_bad="skip")


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.root is not set"):
        ImageFolderData(ImageFolderConfig()).check()
    with pytest.raises(DataError, match="no such directory"):
        ImageFolderData(ImageFolderConfig(root=str(tmp_path / "nope"))).check()


def test_a_folder_holding_lfw_people_is_refused_naming_them(tmp_path: Path) -> None:
    lfw = make_lfw(tmp_path / "lfw")
    train = _folder(tmp_path / "train")
    for name in ("Bob_Beta", "Eve_Epsilon"):  # LFW people copied into the training set
        shutil.copytree(lfw / "lfw-112X96" / name, train / name.replace("_", " "))
    cfg = compose(["+method=pixels", "data=imagefolder", f"data.root={train}", "protocol=lfw_view2",
                   f"protocol.root={lfw}", "verifier.pca_dim=4", f"results_root={tmp_path / 'results'}"])
    with pytest.raises(IdentityOverlapError, match="2 training identities are also evaluated people \\(Bob Beta, Eve Epsilon\\)"):
        execute(cfg, tmp_path / "run")


@pytest.mark.lfw
def test_att_faces_load_as_40_identities(tmp_path: Path) -> None:
    root = shared_data() / "att_faces"
    if not root.is_dir():
        pytest.skip(f"AT&T faces not found at {root}")
    faces = ImageFolderData(ImageFolderConfig(root=str(root))).load(SHAPE, str(tmp_path / "cache"), "fail")
    assert len(faces.names) == 40 and len(faces.images) == 400 and faces.images.shape[1:] == (55, 47, 1)
