"""Tiny generated LFW copies in any layout, with protocol files and a BLUFR config, for tests
that must not depend on the real data (and must be fast)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

#: name -> number of images; names look like LFW's.
PEOPLE = {
    "Alice_Alpha": 3,
    "Bob_Beta": 2,
    "Carol_Gamma": 3,
    "Dan_Delta": 2,
    "Eve_Epsilon": 2,
    "Frank_Zeta": 2,
}


def face(size: tuple[int, int], seed: int) -> Image.Image:
    """A noisy RGB image whose colour depends on ``seed``."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    arr = np.clip(base + rng.normal(0, 20, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def write_images(images_dir: Path, size: tuple[int, int], people: dict[str, int] = PEOPLE) -> None:
    for k, (name, count) in enumerate(people.items()):
        (images_dir / name).mkdir(parents=True, exist_ok=True)
        for n in range(1, count + 1):
            face(size, 100 * k + n).save(images_dir / name / f"{name}_{n:04d}.jpg", quality=90)


def write_protocol_files(proto_dir: Path, people: dict[str, int] = PEOPLE) -> None:
    """View 1 (dev train/test) and View 2 (2 folds) files over ``people``, split in halves."""
    proto_dir.mkdir(parents=True, exist_ok=True)
    names = list(people)
    train, test = names[: len(names) // 2], names[len(names) // 2 :]

    def people_block(group: list[str]) -> list[str]:
        return [str(len(group))] + [f"{n}\t{people[n]}" for n in group]

    def pairs_block(group: list[str]) -> list[str]:
        matched = [f"{group[0]}\t1\t2"]
        mismatched = [f"{group[0]}\t1\t{group[1]}\t1"]
        return matched + mismatched

    (proto_dir / "peopleDevTrain.txt").write_text("\n".join(people_block(train)) + "\n")
    (proto_dir / "peopleDevTest.txt").write_text("\n".join(people_block(test)) + "\n")
    (proto_dir / "pairsDevTrain.txt").write_text("\n".join(["1"] + pairs_block(train)) + "\n")
    (proto_dir / "pairsDevTest.txt").write_text("\n".join(["1"] + pairs_block(test)) + "\n")
    (proto_dir / "people.txt").write_text("\n".join(["2"] + people_block(train) + people_block(test)) + "\n")
    (proto_dir / "pairs.txt").write_text("\n".join(["2\t1"] + pairs_block(train) + pairs_block(test)) + "\n")


def make_lfw(
    root: Path, variant: str = "lfw-112X96", size: tuple[int, int] = (96, 112), people: dict[str, int] = PEOPLE
) -> Path:
    """``root/<variant>/`` images and the protocol files beside it (in ``root`` or, for
    scikit-learn's ``lfw_home/...``, in ``lfw_home``); returns ``root``."""
    images = root / variant
    write_images(images, size, people)
    write_protocol_files(images.parent, people)
    return root


def image_list(people: dict[str, int] = PEOPLE) -> tuple[list[str], np.ndarray]:
    files, labels = [], []
    for k, (name, count) in enumerate(people.items()):
        for n in range(1, count + 1):
            files.append(f"{name}_{n:04d}.jpg")
            labels.append(k + 1)
    return files, np.asarray(labels)


def _cell(arrays: list[np.ndarray]) -> np.ndarray:
    cell = np.empty((len(arrays), 1), dtype=object)
    for i, a in enumerate(arrays):
        cell[i, 0] = np.asarray(a, dtype=np.float64).reshape(-1, 1)
    return cell


def write_blufr(path: Path, trials: list[tuple[list[str], list[str]]], people: dict[str, int] = PEOPLE) -> None:
    """A BLUFR config: per trial (train people, test people); the gallery is the first image
    of every other test person, the probes the remaining test images (1-based indices)."""
    files, labels = image_list(people)
    names = [f.rsplit("_", 1)[0] for f in files]
    train_ix, test_ix, gal_ix, prob_ix = [], [], [], []
    for train_people, test_people in trials:
        train = [i + 1 for i, n in enumerate(names) if n in train_people]
        test = [i + 1 for i, n in enumerate(names) if n in test_people]
        in_gallery = set(test_people[::2])
        gallery = [i + 1 for i, n in enumerate(names) if n in in_gallery and files[i].endswith("_0001.jpg")]
        probe = [i for i in test if i not in gallery]
        train_ix.append(train), test_ix.append(test), gal_ix.append(gallery), prob_ix.append(probe)
    image_cell = np.empty((len(files), 1), dtype=object)
    for i, f in enumerate(files):
        image_cell[i, 0] = np.array([f])
    scipy.io.savemat(
        path,
        {
            "imageList": image_cell,
            "labels": labels.reshape(-1, 1).astype(np.float64),
            "trainIndex": _cell(train_ix),
            "testIndex": _cell(test_ix),
            "galIndex": _cell(gal_ix),
            "probIndex": _cell(prob_ix),
        },
    )
