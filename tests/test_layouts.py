"""LFW layout detection on generated copies of every official layout, and the crop box flowing
into decoding and the cache key."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebench.data.layouts import ALIGNED, DEFAULT_250_CROP, ORIGINAL, detect_layout
from facebench.errors import DataError
from facebench.protocols.lfw import LfwProtocol, LfwProtocolConfig
from fake_lfw import make_lfw

SHAPE = (3, 55, 47)


@pytest.mark.parametrize("variant", ["lfw", "lfw_funneled", "lfw-deepfunneled"])
def test_250x250_layouts_get_the_default_crop(tmp_path: Path, variant: str) -> None:
    make_lfw(tmp_path, variant, (250, 250))
    layout = detect_layout(tmp_path)
    assert (layout.variant, layout.kind, layout.crop) == (variant, ORIGINAL, DEFAULT_250_CROP)
    assert layout.images_dir == tmp_path / variant and layout.protocol_dir == tmp_path


def test_aligned_layout_is_used_whole(tmp_path: Path) -> None:
    make_lfw(tmp_path, "lfw-112X96", (96, 112))
    layout = detect_layout(tmp_path)
    assert (layout.variant, layout.kind, layout.crop) == ("lfw-112X96", ALIGNED, None)


def test_aligned_crops_are_preferred_when_several_layouts_exist(tmp_path: Path) -> None:
    make_lfw(tmp_path, "lfw-deepfunneled", (250, 250))
    make_lfw(tmp_path, "lfw-112X96", (96, 112))
    assert detect_layout(tmp_path).variant == "lfw-112X96"
    assert detect_layout(tmp_path, variant="lfw-deepfunneled").kind == ORIGINAL


def test_sklearn_cache_layout_from_data_home_and_from_lfw_home(tmp_path: Path) -> None:
    make_lfw(tmp_path, "lfw_home/lfw_funneled", (250, 250))
    layout = detect_layout(tmp_path)
    assert layout.variant == "lfw_home/lfw_funneled" and layout.kind == ORIGINAL
    assert layout.protocol_dir == tmp_path / "lfw_home"
    inner = detect_layout(tmp_path / "lfw_home")
    assert inner.variant == "lfw_funneled" and inner.protocol_dir == tmp_path / "lfw_home"


def test_person_folders_directly_under_the_root_are_told_apart_by_image_size(tmp_path: Path) -> None:
    make_lfw(tmp_path, "x", (250, 250))
    layout = detect_layout(tmp_path / "x")
    assert layout.variant == "." and layout.kind == ORIGINAL and layout.protocol_dir == tmp_path


def test_crop_override_and_bad_crop(tmp_path: Path) -> None:
    make_lfw(tmp_path, "lfw", (250, 250))
    assert detect_layout(tmp_path, crop=[0, 0, 250, 250]).crop == (0, 0, 250, 250)
    with pytest.raises(DataError, match=r"protocol.crop=\[10, 10, 5, 50\].*left < right"):
        detect_layout(tmp_path, crop=[10, 10, 5, 50])


def test_no_layout_names_the_accepted_ones(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="Accepted layouts: lfw-112X96/.*lfw_home"):
        detect_layout(tmp_path)


def _white_box_on_black(path: Path, box: tuple[int, int, int, int]) -> None:
    arr = np.zeros((250, 250, 3), dtype=np.uint8)
    left, top, right, bottom = box
    arr[top:bottom, left:right] = 255
    Image.fromarray(arr).save(path, quality=95)


def test_crop_box_reaches_decoding_and_the_cache_key(tmp_path: Path) -> None:
    root = make_lfw(tmp_path / "data", "lfw-deepfunneled", (250, 250))
    for path in (root / "lfw-deepfunneled").rglob("*.jpg"):
        _white_box_on_black(path, DEFAULT_250_CROP)
    cache = str(tmp_path / "cache")
    bench = LfwProtocol(LfwProtocolConfig(name="lfw_view2", root=str(root)), view=2).load(SHAPE, cache, "fail")
    assert bench.info["crop"] == list(DEFAULT_250_CROP) and bench.info["layout"] == ORIGINAL
    # the default box is exactly the white area: the decoded faces are white (JPEG edges aside)
    assert np.asarray(bench.faces.images)[:, 2:-2, 2:-2].min() > 200
    whole = LfwProtocol(LfwProtocolConfig(name="lfw_view2", root=str(root), crop=[0, 0, 250, 250]), view=2)
    bench_whole = whole.load(SHAPE, cache, "fail")
    assert np.asarray(bench_whole.faces.images)[:, 0, 0].max() < 50  # corners of the whole image are black
    assert len(list(Path(cache).glob("*.npy"))) == 2  # two crops, two cache entries
