"""The field's formats: insightface RecordIO training sets, verification .bin files (both
variants, a hostile one), pair lists; written here by tests/format_writers.py."""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY, shared_data
from format_writers import encode_jpeg, frame, pack_record, write_bin, write_rec
from facebench.config import ConfigError, compose
from facebench.data.recordio import EXACT_FLOAT_INTEGERS, RecordFile, RecordIOData, RecordIODataConfig, image_labels
from facebench.errors import DataError
from facebench.protocols.bin_file import BinFileError, load_bin
from facebench.protocols.pair_list import person_of, read_pair_list
from facebench.run import execute, plan_run

pytestmark = pytest.mark.usefixtures("one_thread")


def faces(n_classes: int = 4, per_class: int = 3, size: int = 112, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(seed)
    images, classes = [], []
    for c in range(n_classes):
        base = rng.integers(40, 200, size=3)
        for _ in range(per_class):
            images.append(np.clip(base + rng.normal(0, 15, size=(size, size, 3)), 0, 255).astype(np.uint8))
            classes.append(c)
    return images, classes


# --- RecordIO ---------------------------------------------------------------------------------


def test_framing_round_trips_a_payload_split_at_the_magic(tmp_path: Path) -> None:
    magic = struct.pack("<I", 0xCED7230A)
    payload = b"abcd" + magic + b"efgh" + magic + b"ij"  # two aligned copies: three parts
    framed = frame(payload)
    assert framed.count(magic) == 3  # each part's own magic; the payload's copies were dropped
    (tmp_path / "x.rec").write_bytes(framed)
    (tmp_path / "x.idx").write_text("7\t0\n")
    records = RecordFile(tmp_path / "x.rec", tmp_path / "x.idx")
    assert records.payload(7) == payload
    records.close()


@pytest.mark.parametrize("with_header", [True, False])
def test_a_recordio_set_loads_with_its_classes(tmp_path: Path, with_header: bool) -> None:
    images, classes = faces()
    root = write_rec(tmp_path / "set", images, classes, with_header=with_header, plant_magic=True)
    records = RecordFile(root / "train.rec", root / "train.idx")
    keys, found = image_labels(records)
    records.close()
    assert sorted(found) == sorted(classes) and len(keys) == len(images)
    data = RecordIOData(RecordIODataConfig(root=str(root))).load((3, 55, 47), str(tmp_path / "cache"), "fail")
    assert data.images.shape == (12, 55, 47, 3) and np.bincount(data.labels).tolist() == [3, 3, 3, 3]
    assert data.names == [f"recordio_{c}" for c in range(4)] and data.info["unnamed_identities"] == data.names
    # the class's colour survives: images of one class are alike, of two classes not
    means = np.array([data.images[data.labels == c].mean(axis=(0, 1, 2)) for c in range(4)])
    assert np.abs(means[0] - means[1]).max() > 5


def test_ranges_beyond_float_precision_are_not_trusted(tmp_path: Path) -> None:
    images, classes = faces(n_classes=2, per_class=2)
    root = write_rec(tmp_path / "set", images, classes, with_header=False)
    rec = (root / "train.rec").read_bytes()
    head = frame(pack_record(2, 0, [float(EXACT_FLOAT_INTEGERS + 8), float(EXACT_FLOAT_INTEGERS + 10)]))
    (root / "train.rec").write_bytes(head + rec)
    lines = (root / "train.idx").read_text().split()
    index = ["0\t0"] + [f"{k}\t{int(o) + len(head)}" for k, o in zip(lines[::2], lines[1::2])]
    (root / "train.idx").write_text("\n".join(index) + "\n")
    records = RecordFile(root / "train.rec", root / "train.idx")
    keys, found = image_labels(records)  # scanned, not read off record 0's inexact ranges
    records.close()
    assert keys == [1, 2, 3, 4] and sorted(found) == [0, 0, 1, 1]


def test_a_damaged_rec_names_the_record(tmp_path: Path) -> None:
    images, classes = faces(n_classes=2, per_class=2)
    root = write_rec(tmp_path / "set", images, classes)
    (root / "train.idx").write_text("0\t0\n1\t3\n")
    records = RecordFile(root / "train.rec", root / "train.idx")
    with pytest.raises(DataError, match=r"train.rec: record 1: no RecordIO magic at byte 3"):
        records.payload(1)
    records.close()
    (root / "train.idx").write_text("0\t0\nkey\t12\n")
    with pytest.raises(DataError, match=r"train.idx:2: expected 'key<TAB>byte offset'"):
        RecordFile(root / "train.rec", root / "train.idx")


# --- verification .bin ------------------------------------------------------------------------


@pytest.mark.parametrize("old_style", [False, True])
def test_both_bin_variants_load(tmp_path: Path, old_style: bool) -> None:
    images, _ = faces(n_classes=2, per_class=2, size=112)
    encoded = [encode_jpeg(im) for im in images]
    path = write_bin(tmp_path / "lfw.bin", encoded, [True, False], old_style=old_style)
    loaded, same = load_bin(path, 2)
    assert loaded == encoded and same.tolist() == [True, False]
    with pytest.raises(BinFileError, match=r"2 pairs and 4 images, expected 6000 pairs"):
        load_bin(path, 6000)


class PlantsAFile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.makedirs, (str(self.target),))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_hostile_bin_is_refused_before_anything_runs(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "created_by_the_file"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([PlantsAFile(marker)] * 2, [True]), protocol=protocol))
    with pytest.raises(BinFileError, match=r"refused: .*os.makedirs|refused: pickle opcode"):
        load_bin(path, 1)
    assert not marker.exists()


def test_a_bin_whose_images_are_not_images_is_refused(tmp_path: Path) -> None:
    path = write_bin(tmp_path / "x.bin", [b"GIF89a...", b"\xff\xd8ok"], [True])
    with pytest.raises(BinFileError, match=r"image 0 is not a JPEG or PNG"):
        load_bin(path, 1)


def test_a_run_on_two_bin_sets_reports_each(tmp_path: Path) -> None:
    images, classes = faces(n_classes=20, per_class=2, size=112, seed=3)
    encoded = [encode_jpeg(im) for im in images]
    same_pairs = [(2 * c, 2 * c + 1) for c in range(20)]
    other_pairs = [(2 * c, 2 * ((c + 1) % 20) + 1) for c in range(20)]
    pairs = [p for k in range(10) for p in same_pairs[2 * k:2 * k + 2] + other_pairs[2 * k:2 * k + 2]]
    flat = [encoded[i] for p in pairs for i in p]
    issame = [classes[a] == classes[b] for a, b in pairs]
    for name in ("set_a", "set_b"):
        write_bin(tmp_path / f"{name}.bin", flat, issame)
    cfg = compose(["+method=pixels", *(o for o in TINY if not o.startswith("protocol.")), "protocol=bin",
                   f"protocol.paths=[{tmp_path / 'set_a.bin'},{tmp_path / 'set_b.bin'}]", "protocol.expected_pairs=40",
                   "verifier.pca_dim=null", f"results_root={tmp_path / 'r'}", f"cache_dir={tmp_path / 'c'}"])
    record = execute(cfg, tmp_path / "run")
    assert set(record["metrics"]["sets"]) == {"set_a", "set_b"} and len(record["units"]) == 20
    assert record["metrics"]["sets"]["set_a"]["mean_accuracy"] > 0.9  # colour tells the classes apart
    assert record["identity_audit_status"] == "not checkable" and "names no one" in record["identity_audit"][0]["why_unchecked"]
    assert "set_a" in record["headline"] and "set_b" in record["headline"]


# --- pair lists -------------------------------------------------------------------------------


def test_pair_list_layouts_and_names(tmp_path: Path) -> None:
    three = tmp_path / "three.txt"
    three.write_text("a/1.jpg a/2.jpg 1\na/1.jpg b/1.jpg 0\n")
    assert read_pair_list(three) == [("a/1.jpg", "a/2.jpg", True, 1), ("a/1.jpg", "b/1.jpg", False, 2)]
    calfw = tmp_path / "calfw.txt"
    calfw.write_text("Abel_Pacheco_0001.jpg 1\nAbel_Pacheco_0004.jpg 1\nAbel_Pacheco_0001.jpg 0\nAkhmed_Zakayev_0001.jpg 0\n")
    assert [p[2] for p in read_pair_list(calfw)] == [True, False]
    assert person_of("Abel_Pacheco_0004.jpg") == "Abel_Pacheco" and person_of("x/Abel_Pacheco_0004.jpg") == "x"
    calfw.write_text("Abel_Pacheco_0001.jpg 1\nAbel_Pacheco_0004.jpg 0\n")
    with pytest.raises(DataError, match=r"calfw.txt:1-2: the two lines of a pair disagree"):
        read_pair_list(calfw)


def test_a_pair_list_run_and_its_checks(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    lines = []
    for k in range(10):  # fold k: people p{2k}, p{2k+1}, two images each
        for p in (2 * k, 2 * k + 1):
            (root / f"p{p}").mkdir(parents=True)
            for n in (1, 2):
                Image.fromarray(np.full((112, 96, 3), 10 * p % 250, np.uint8)).save(root / f"p{p}" / f"{n}.png")
        lines += [f"p{2 * k}/1.png p{2 * k}/2.png 1", f"p{2 * k}/1.png p{2 * k + 1}/1.png 0"]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    overrides = ["+method=pixels", *(o for o in TINY if not o.startswith("protocol.")), "protocol=pair_list",
                 f"protocol.root={root}", "verifier.pca_dim=null", f"results_root={tmp_path / 'r'}",
                 f"cache_dir={tmp_path / 'c'}"]
    record = execute(compose(overrides), tmp_path / "run")
    assert record["status"] == "complete" and len(record["units"]) == 10
    (root / "pairs.txt").write_text("\n".join(lines[:-1] + ["p19/1.png p0/1.png 0"]) + "\n")
    with pytest.raises(DataError, match=r"pairs.txt:20: p0 appears in folds 1 and 10"):
        plan_run(compose(overrides))
    Image.fromarray(np.zeros((112, 96, 3), np.uint8)).save(tmp_path / "outside.png")
    (root / "pairs.txt").write_text("\n".join(lines[:-1] + ["p19/1.png ../outside.png 0"]) + "\n")
    with pytest.raises(DataError, match=r"pairs.txt:20: image '../outside.png' is outside"):
        plan_run(compose(overrides))


# --- the real LFW: a .bin of it scores as View 2 does; a .rec of AT&T faces trains ----------


def _lfw_bin(path: Path, lfw: Path, fmt: str) -> Path:
    """LFW View 2 (pairs.txt order) as a .bin of 112x112 images: the 112x96 crops padded 8 px
    each side, so the default centre crop gives them back."""
    from facebench.protocols.lfw_files import lfw_image_relpath, read_pairs

    def encode(name: str, number: int) -> bytes:
        face = np.asarray(Image.open(lfw / "lfw-112X96" / lfw_image_relpath(name, number)).convert("RGB"))
        padded = np.pad(face, ((0, 0), (8, 8), (0, 0)), mode="edge")
        buf = __import__("io").BytesIO()
        Image.fromarray(padded).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        return buf.getvalue()

    images, same = [], []
    for fold in read_pairs(lfw / "pairs.txt"):
        for r in fold:
            images += [encode(r.name1, r.n1), encode(r.name2, r.n2)]
            same.append(r.same)
    return write_bin(path, images, same)


@pytest.mark.lfw
def test_an_lfw_bin_scores_as_lfw_view2(tmp_path: Path, lfw_root: Path) -> None:
    path = _lfw_bin(tmp_path / "lfw.bin", lfw_root, "PNG")
    common = ["+method=pixels", "verifier.pca_dim=null", f"results_root={tmp_path / 'r'}"]  # the session's cache
    view2 = execute(compose([*common, "data=lfw", f"data.root={lfw_root}"]), tmp_path / "view2")
    as_bin = execute(compose([*common, "protocol=bin", f"protocol.path={path}"]), tmp_path / "bin")
    a, b = view2["metrics"]["mean_accuracy"], as_bin["metrics"]["mean_accuracy"]
    assert abs(a - b) < 0.005, (a, b)


@pytest.mark.lfw
def test_training_from_a_rec_evaluated_on_a_bin(tmp_path: Path, lfw_root: Path) -> None:
    att = shared_data() / "att_faces"
    if not att.is_dir():
        pytest.skip(f"AT&T faces are not in {att}")
    images, classes = [], []
    for k, person in enumerate(sorted(p for p in att.iterdir() if p.is_dir())):
        for f in sorted(person.glob("*.pgm")):
            face = np.asarray(Image.open(f).convert("RGB"))  # 112 x 92
            images.append(np.pad(face, ((0, 0), (10, 10), (0, 0)), mode="edge"))
            classes.append(k)
    root = write_rec(tmp_path / "att_rec", images, classes)
    bin_path = _lfw_bin(tmp_path / "lfw.bin", lfw_root, "JPEG")
    cfg = compose(["+method=deepid", "data=recordio", f"data.root={root}", "protocol=bin", f"protocol.path={bin_path}",
                   "trainer.steps=20", "trainer.batch_size=64", f"results_root={tmp_path / 'r'}"])
    record = execute(cfg, tmp_path / "run")
    assert record["status"] == "complete" and record["training_data"]["identities"] == 40
    assert record["training_data"]["images"] == 400 and len(record["units"]) == 10
    assert 0.5 < record["metrics"]["mean_accuracy"] <= 1.0
