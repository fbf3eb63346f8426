"""Corrupt or unreadable images, end to end: ``on_bad_image=fail`` stops the run naming the
file; ``skip`` leaves it out and the record says how many and which, on the training side
(``training_data``) and on the benchmark side (``benchmark``), so a number measured on fewer
images than the data holds never looks like one measured on all of them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from fake_lfw import make_lfw
from facebench.config import compose
from facebench.errors import DataError
from facebench.run import execute

#: No training and no PCA: the cheapest complete run (TINY's synthetic data sizes left out:
#: the training data here is an image folder).
PIXELS = ["+method=pixels", *(o for o in TINY if not o.startswith("data.")), "device=cpu", "verifier.pca_dim=null"]


pytestmark = pytest.mark.usefixtures("one_thread")


def image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)).save(path, quality=90)


@pytest.fixture()
def folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Four identities of three images; one file is not an image, one JPEG is cut short."""
    root = tmp_path / "faces"
    for k in range(4):
        (root / f"person{k}").mkdir(parents=True)
        for n in range(3):
            image(root / f"person{k}" / f"{n}.jpg", 10 * k + n)
    garbage = root / "person1" / "9_garbage.jpg"
    garbage.write_bytes(b"this is not a JPEG")
    cut = root / "person2" / "9_cut.jpg"
    image(cut, 99)
    cut.write_bytes(cut.read_bytes()[:200])
    return root, [garbage, cut]


def outside(root: Path, tmp_path: Path) -> list[str]:
    """The image folder as outside training data, scored on a generated LFW copy."""
    lfw = make_lfw(tmp_path / "lfw")
    return [*(o for o in PIXELS if not o.startswith("protocol.")), "data=imagefolder", f"data.root={root}",
            "protocol=lfw_view2", f"protocol.root={lfw}", f"results_root={tmp_path}"]


def test_fail_stops_the_run_naming_the_file(folder: tuple[Path, list[Path]], tmp_path: Path) -> None:
    root, bad = folder
    with pytest.raises(DataError) as err:
        execute(compose(outside(root, tmp_path)), tmp_path / "run")
    message = str(err.value)
    assert any(f"cannot decode image {p}" in message for p in bad) and "on_bad_image=skip" in message
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("DataError: cannot decode image")


def test_skip_counts_the_skipped_training_images_in_the_record(folder: tuple[Path, list[Path]], tmp_path: Path) -> None:
    root, bad = folder
    cfg = compose([*outside(root, tmp_path), "on_bad_image=skip"])
    execute(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "complete"
    data = record["training_data"]
    assert data["images"] == 12 and data["images_skipped"] == 2
    assert sorted(m.split(": ", 1)[0] for m in data["skipped_examples"]) == sorted(str(p) for p in bad)
    assert record["benchmark"]["images_skipped"] == 0


@pytest.fixture()
def lfw_with_a_broken_image(tmp_path: Path) -> tuple[Path, Path]:
    """A generated LFW copy whose Alice_Alpha_0003.jpg (in no pair, but a training image of
    fold 2) is not an image."""
    root = make_lfw(tmp_path / "lfw")
    broken = root / "lfw-112X96" / "Alice_Alpha" / "Alice_Alpha_0003.jpg"
    broken.write_bytes(b"\x00" * 64)
    return root, broken


def test_benchmark_images_skipped_reach_the_record(lfw_with_a_broken_image: tuple[Path, Path], tmp_path: Path) -> None:
    root, broken = lfw_with_a_broken_image
    overrides = ["+method=pixels", "verifier.pca_dim=null", "device=cpu", "data=lfw", f"data.root={root}",
                 f"results_root={tmp_path}"]
    with pytest.raises(DataError, match=f"cannot decode image {broken}"):
        execute(compose(overrides), tmp_path / "failed")
    execute(compose([*overrides, "on_bad_image=skip"]), tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "complete"
    assert record["benchmark"]["images_skipped"] == 1
    assert record["benchmark"]["skipped_examples"][0].startswith(f"{broken}: ")
    fold2 = next(u for u in record["units"] if u["name"] == "fold2")
    assert fold2["train_images"] == 7  # Alice's 3 images, Bob's 2, Carol's 3, less the broken one
