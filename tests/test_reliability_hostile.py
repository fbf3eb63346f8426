"""What hostile testing broke, one section per finding: each test failed before the fix."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY
from fake_lfw import make_lfw

from facebench.atomic_io import DiskFullError, atomic_write_bytes
from facebench.audit import audit_identities, audit_status
from facebench.collapse import detect_collapse, features_constant
from facebench.config import ConfigError, compose, reject_code_targets
from facebench.data.cache import cached_images
from facebench.data.celeba import CelebAConfig, CelebAData
from facebench.data.chunked import cached_decode, cached_decode_files
from facebench.data.images import decode_images
from facebench.errors import DataError
from facebench.leaderboard import record_flags
from facebench.protocols.lfw_files import ProtocolFileError, read_pairs, read_people
from facebench.results import environment
from facebench.run import execute, plan_run
from facebench.train import CheckpointError, load_checkpoint, save_checkpoint


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facebench", *args], capture_output=True, text=True, timeout=300, cwd=cwd,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )


def refused(proc: subprocess.CompletedProcess, *says: str) -> None:
    """A clean one-line refusal: exit status 2, the message, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for text in says:
        assert text in proc.stderr, (text, proc.stderr[-2000:])


# --- 1. config values are checked before anything is decoded ---------------------------------

BAD_VALUES = [
    ("trainer.lr=-1", "trainer.lr=-1.0"),
    ("seed=-5", "seed=-5"),
    ("verifier.pca_dim=0", "verifier.pca_dim=0"),
    ("verifier.pca_dim=-3", "verifier.pca_dim=-3"),
    ("trainer.batch_size=1", "trainer.batch_size=1"),
    ("trainer.batch_size=0", "trainer.batch_size=0"),
    ("features.batch_size=0", "features.batch_size=0"),
    ("protocol.folds=[11]", "protocol.folds=[11]"),
    ("trainer.optimizer=bogus", "trainer.optimizer='bogus'"),
    ("trainer.steps=-1", "trainer.steps=-1"),
]


@pytest.mark.parametrize("override,key", BAD_VALUES)
def test_bad_values_are_refused_before_any_image_is_decoded(tmp_path: Path, override: str, key: str) -> None:
    cache = tmp_path / "cache"
    cfg = compose(["+method=deepid2", *TINY, override, f"cache_dir={cache}", f"results_root={tmp_path / 'r'}"])
    with pytest.raises(ConfigError) as error:
        execute(cfg)
    assert str(error.value).startswith(key)
    assert not any(cache.glob("*.npy")), "an image was decoded before the value was checked"


def test_a_plugin_schema_declares_its_own_ranges() -> None:
    with pytest.raises(ConfigError, match=r"loss.mining='hardest_ever': not accepted; use one of semihard"):
        plan_run(compose(["+method=facenet", "loss.mining=hardest_ever"]))
    with pytest.raises(ConfigError, match=r"loss.margin=-0.1: not accepted; use a number >= 0"):
        plan_run(compose(["+method=arcface", "loss.margin=-0.1"]))


@pytest.mark.parametrize("override,key", [BAD_VALUES[0], BAD_VALUES[7], BAD_VALUES[9]])
def test_bad_values_through_the_cli(tmp_path: Path, override: str, key: str) -> None:
    proc = cli("+method=deepid2", override, f"results_root={tmp_path}", f"cache_dir={tmp_path / 'cache'}")
    refused(proc, f"facebench: error: {key}")
    assert not list(tmp_path.rglob("*.npy")) and not list(tmp_path.rglob("metrics.json"))


# --- 2. the identity audit compares the people the evaluated pairs use ----------------------


def _lfw_with_pairs_line(root: Path, old: str, new: str) -> Path:
    make_lfw(root)
    pairs = root / "pairs.txt"
    text = pairs.read_text()
    assert old in text
    pairs.write_text(text.replace(old, new))
    return root


def test_a_pair_naming_a_training_person_is_an_overlap(tmp_path: Path) -> None:
    # fold 2's mismatched pair names Alice, whom people.txt puts in fold 1 (fold 2's training people)
    root = _lfw_with_pairs_line(tmp_path / "lfw", "Dan_Delta\t1\tEve_Epsilon\t1", "Dan_Delta\t1\tAlice_Alpha\t1")
    proc = cli("+method=pixels", "data=lfw", f"data.root={root}", f"results_root={tmp_path / 'r'}",
               f"cache_dir={tmp_path / 'cache'}")
    refused(proc, "unit fold2: 1 training identities are also evaluated people (Alice_Alpha)")


def test_numbered_identities_make_the_audit_not_checkable() -> None:
    audit = audit_identities(["celeba_1", "celeba_2"], ["Alice_Alpha"], False, "data", "r",
                             unnamed=["celeba_1", "celeba_2"], unnamed_reason="numbers")
    assert audit["status"] == "not checkable" and audit["why_unchecked"] == "numbers"
    partly = audit_identities(["celeba_1", "Alice_Alpha"], ["Bob_Beta"], False, "data", "r", unnamed=["celeba_1"])
    assert partly["status"] == "partly checked" and audit_status([audit, partly]) == "not checkable"
    assert audit_status([partly]) == "partly checked"
    assert record_flags({"identity_audit_status": "not checkable"}) == ("identity audit not checkable",)


# --- 3. names in protocol files stay inside the data root ------------------------------------


@pytest.mark.parametrize("name", ["../Evil", "/etc", "a/b", "..", "x\\y"])
def test_path_names_in_protocol_files_are_refused_at_their_line(tmp_path: Path, name: str) -> None:
    people = tmp_path / "people.txt"
    people.write_text(f"1\n2\nAlice_Alpha\t1\n{name}\t1\n")
    with pytest.raises(ProtocolFileError, match=rf"people.txt:4: person name .* is not a plain folder name"):
        read_people(people)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"1\t1\nAlice_Alpha\t1\t2\nAlice_Alpha\t1\t{name}\t1\n")
    with pytest.raises(ProtocolFileError, match=r"pairs.txt:3: person name"):
        read_pairs(pairs)


def test_a_path_name_through_the_cli(tmp_path: Path) -> None:
    root = make_lfw(tmp_path / "lfw")
    (tmp_path / "outside").mkdir()
    people = root / "people.txt"
    people.write_text(people.read_text().replace("Alice_Alpha\t3", "../outside\t3"))
    proc = cli("+method=pixels", "data=lfw", f"data.root={root}", f"results_root={tmp_path / 'r'}",
               f"cache_dir={tmp_path / 'cache'}")
    refused(proc, "people.txt:3: person name '../outside' is not a plain folder name")


# --- 4. no config makes Hydra or logging call code it names ----------------------------------


def test_hydra_callbacks_and_logging_factories_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "made"
    for overrides in (
        ["+hydra.callbacks.evil._target_=os.makedirs", f"+hydra.callbacks.evil.name={marker}"],
        ["hydra.job_logging.handlers.console.class=shutil.rmtree"],
        ["hydra.launcher._target_=os.makedirs"],
    ):
        with pytest.raises(ConfigError, match="is not allowed"):
            reject_code_targets(compose(overrides))
    with pytest.raises(ConfigError, match=r"'hydra.job_logging.handlers.evil.\(\)' .* is not allowed"):
        reject_code_targets({"hydra": {"job_logging": {"handlers": {"evil": {"()": "os.makedirs", "name": "x"}}}}})
    assert not marker.exists()
    for launcher in ("basic", "joblib"):  # Hydra's own launchers, chosen through their group, still work
        reject_code_targets(compose([f"hydra/launcher={launcher}"]))


def test_callbacks_on_the_cli_and_in_a_preset_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "made_by_a_callback"
    proc = cli("hydra.callbacks.evil._target_=os.makedirs", f"+hydra.callbacks.evil.name={marker}",
               f"results_root={tmp_path / 'r'}")
    refused(proc, "config key 'hydra.callbacks.evil._target_'")
    presets = tmp_path / "presets" / "method"
    presets.mkdir(parents=True)
    (presets / "evil.yaml").write_text(
        f"# @package _global_\nhydra:\n  callbacks:\n    evil:\n      _target_: os.makedirs\n      name: {marker}\n"
    )
    for how in ([f"hydra.searchpath=[file://{tmp_path / 'presets'}]"], ["-cd", str(tmp_path / "presets")]):
        proc = cli(*how, "+method=evil", f"results_root={tmp_path / 'r'}")
        refused(proc, "config key 'hydra.callbacks.evil._target_'")
    assert not marker.exists()


# --- 5. the decode cache is verified before it is trusted ------------------------------------


def _build_once(tmp_path: Path) -> tuple[Path, np.ndarray]:
    truth = np.random.default_rng(0).integers(0, 255, size=(50, 8, 6, 3), dtype=np.uint8)
    cached_images(tmp_path, {"what": "t"}, lambda: (truth, {}), "t")
    (entry,) = tmp_path.glob("*.npy")
    return entry, truth


@pytest.mark.parametrize("damage", ["truncate", "flip", "garble_json", "empty_json"])
def test_a_damaged_cache_entry_is_rebuilt_with_a_warning(tmp_path: Path, damage: str, caplog) -> None:
    entry, truth = _build_once(tmp_path)
    meta = entry.with_suffix(".json")
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        entry.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":
        data[-100] ^= 0x10
        entry.write_bytes(bytes(data))
    elif damage == "garble_json":
        meta.write_text(meta.read_text()[:-7])
    else:
        meta.write_text("")
    rebuilt = []
    with caplog.at_level(logging.WARNING):
        images, _ = cached_images(tmp_path, {"what": "t"}, lambda: (rebuilt.append(1) or truth, {}), "t")
    assert rebuilt == [1] and np.array_equal(images, truth)
    assert "is damaged" in caplog.text and "decoding again" in caplog.text
    images, _ = cached_images(tmp_path, {"what": "t"}, lambda: pytest.fail("an intact entry must not rebuild"), "t")
    assert np.array_equal(images, truth)


def test_a_flipped_byte_in_a_chunked_entry_is_caught(tmp_path: Path) -> None:
    truth = np.random.default_rng(1).integers(0, 255, size=(30, 4, 4, 3), dtype=np.uint8)

    def decode(index: np.ndarray) -> tuple[np.ndarray, list[int], list[str]]:
        return truth[index], list(range(len(index))), []

    cached_decode(tmp_path, {"k": 1}, 30, (4, 4, 3), decode, "t", chunk=8)
    (entry,) = tmp_path.glob("*.npy")
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0xFF
    entry.write_bytes(bytes(data))
    images, kept, _ = cached_decode(tmp_path, {"k": 1}, 30, (4, 4, 3), decode, "t", chunk=8)
    assert np.array_equal(images, truth) and len(kept) == 30


# --- 6. a full disk is a clear error ---------------------------------------------------------


@contextmanager
def tiny_disk(where: Path, size: str) -> Iterator[Path]:
    """A real full-able filesystem: a tmpfs of ``size`` mounted at ``where`` (needs root)."""
    where.mkdir(parents=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a small tmpfs here to fill ({proc.stderr.strip() or 'mount failed'}; needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_while_the_memory_mapped_cache_is_built_is_an_error_not_sigbus(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", "1m") as disk:
        script = (
            "import numpy as np\n"
            "from facebench.data.chunked import cached_decode\n"
            "def decode(i):\n"
            "    return np.full((len(i), 64, 64, 3), 7, np.uint8), list(range(len(i))), []\n"
            f"cached_decode({str(disk)!r}, {{'k': 1}}, 400, (64, 64, 3), decode, 'big', chunk=100)\n"
        )
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-1500:])  # -7 would be SIGBUS
    assert "DiskFullError: no space left on the device holding" in proc.stderr and "FACEBENCH_CACHE" in proc.stderr


def test_a_full_disk_while_a_checkpoint_is_saved_says_so(tmp_path: Path) -> None:
    net = torch.nn.Linear(300, 300)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with tiny_disk(tmp_path / "disk", "256k") as disk:
        with pytest.raises(DiskFullError, match="no space left on the device holding .* checkpoint unit.pt"):
            save_checkpoint(disk / "unit.pt", 1, net, torch.nn.Identity(), opt)
        assert not list(disk.iterdir()), "a torn checkpoint was left behind"


def test_a_full_disk_through_the_cli(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", "1m") as disk:
        proc = cli("+method=pixels", *TINY, f"cache_dir={disk}", f"results_root={tmp_path / 'r'}")
    refused(proc, "facebench: error: no space left on the device holding", "cache_dir")
    (record,) = (tmp_path / "r").rglob("metrics.json")
    assert json.loads(record.read_text())["status"] == "failed"


# --- 7. a collapsed training is marked ---------------------------------------------------------


def test_collapse_signs() -> None:
    assert features_constant(np.ones((10, 4))) and not features_constant(np.eye(4))
    collapsed = {"name": "fold1", "train_steps": 100, "train_identities": 1000, "accuracy": 0.5,
                 "final_train_metrics": {"identification": 6.9, "train_accuracy": 0.0}}
    weak = {**collapsed, "accuracy": 0.62, "final_train_metrics": {"identification": 5.0, "train_accuracy": 0.05}}
    untrained = {**collapsed, "train_steps": 0}
    report = detect_collapse([collapsed, weak, untrained])
    assert report["collapsed"] and report["collapsed_units"] == ["fold1"]
    assert any("ln(1000)" in s for s in report["signs"]["fold1"])
    assert not detect_collapse([weak])["collapsed"]
    assert not detect_collapse([{**collapsed, "final_train_metrics": {}}])["collapsed"]  # at chance alone: weak
    assert detect_collapse([{"name": "u", "train_steps": 5, "features_constant": True}])["collapsed"]
    assert record_flags({"collapse": report}) == ("collapsed",)


def test_a_collapsed_run_is_marked_in_its_record(tmp_path: Path) -> None:
    # a learning rate 100x too large, kept finite by clipping: the softmax never leaves chance
    cfg = compose(["+method=deepid", *TINY, "trainer.steps=40", "trainer.lr=5", "trainer.grad_clip=1000",
                   f"cache_dir={tmp_path / 'cache'}", f"results_root={tmp_path / 'r'}"])
    record = execute(cfg, tmp_path / "run")
    assert record["status"] == "complete" and record["collapse"]["collapsed"], record["collapse"]
    assert "COLLAPSED" in record["headline"]


# --- 8. real training data is never scored on the synthetic benchmark -----------------------


def test_outside_data_without_a_protocol_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "person").mkdir()
    with pytest.raises(ConfigError, match=r"data=imagefolder is real training data.*protocol=lfw_view2 protocol.root="):
        plan_run(compose(["data=imagefolder", f"data.root={tmp_path}"]))


# --- 9. CelebA: in the wild, wrong sizes, subsets, headers -----------------------------------


def _celeba(root: Path, wild: bool = False, size: tuple[int, int] = (178, 218), n: int = 4) -> Path:
    folder = root / "Img" / ("img_celeba" if wild else "img_align_celeba")
    folder.mkdir(parents=True)
    (root / "Anno").mkdir()
    marks = []
    for i in range(n):
        w, h = (size[0] + 40 * i, size[1] + 30 * i) if wild else size
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(folder / f"{i + 1:06d}.jpg")
        marks.append(f"{i + 1:06d}.jpg " + " ".join(str(v) for v in (70, 110, 108, 110, 90, 130, 72, 150, 106, 150)))
    (root / "Anno" / "identity_CelebA.txt").write_text("".join(f"{i + 1:06d}.jpg {1 + i // 2}\n" for i in range(n)))
    landmark_file = "list_landmarks_celeba.txt" if wild else "list_landmarks_align_celeba.txt"
    (root / "Anno" / landmark_file).write_text(f"{n}\nlefteye_x ...\n" + "\n".join(marks) + "\n")
    return root


def test_celeba_in_the_wild_is_aligned_from_its_landmarks(tmp_path: Path) -> None:
    root = _celeba(tmp_path / "c", wild=True)
    faces = CelebAData(CelebAConfig(root=str(root))).load((3, 55, 47), str(tmp_path / "cache"), "fail")
    assert faces.info["in_the_wild"] and faces.info["aligned"] and faces.images.shape == (4, 55, 47, 3)
    (root / "Anno" / "list_landmarks_celeba.txt").unlink()
    with pytest.raises(DataError, match="in-the-wild photos are aligned from their landmarks.*list_landmarks_celeba.txt"):
        CelebAData(CelebAConfig(root=str(root))).check()


@pytest.mark.parametrize("align", [True, False])
def test_a_photo_of_another_size_in_img_align_celeba_is_refused(tmp_path: Path, align: bool) -> None:
    root = _celeba(tmp_path / "c")
    Image.fromarray(np.zeros((400, 300, 3), np.uint8)).save(root / "Img" / "img_align_celeba" / "000003.jpg")
    if not align:
        (root / "Anno" / "list_landmarks_align_celeba.txt").unlink()
    with pytest.raises(DataError, match=r"000003.jpg: it is 300x400 pixels, but img_align_celeba images are 178x218"):
        CelebAData(CelebAConfig(root=str(root), align=align)).load((3, 55, 47), str(tmp_path / "cache"), "fail")


def test_a_celeba_subset_and_a_header_line_are_accepted(tmp_path: Path) -> None:
    root = _celeba(tmp_path / "c")
    ids = root / "Anno" / "identity_CelebA.txt"
    ids.write_text("image_id identity\n" + ids.read_text() + "000099.jpg 7\n000100.jpg 7\n")
    faces = CelebAData(CelebAConfig(root=str(root))).load((3, 55, 47), str(tmp_path / "cache"), "fail")
    assert len(faces.images) == 4 and faces.info["images_listed"] == 6 and faces.info["images_missing"] == 2
    ids.write_text(ids.read_text() + "000101.jpg seven\n")
    with pytest.raises(DataError, match=r"identity_CelebA.txt:8: the identity of 000101.jpg is 'seven'"):
        CelebAData(CelebAConfig(root=str(root))).load((3, 55, 47), str(tmp_path / "cache"), "fail")


# --- 10. files respect the umask ----------------------------------------------------------------


def test_records_caches_and_checkpoints_respect_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        atomic_write_bytes(tmp_path / "a.json", lambda fh: fh.write(b"{}"))
        cached_images(tmp_path / "cache", {"k": 1}, lambda: (np.zeros((2, 2, 2, 3), np.uint8), {}), "t")
        net = torch.nn.Linear(2, 2)
        save_checkpoint(tmp_path / "c.pt", 1, net, torch.nn.Identity(), torch.optim.SGD(net.parameters(), lr=0.1))
    finally:
        os.umask(old)
    for path in [tmp_path / "a.json", tmp_path / "c.pt", *(tmp_path / "cache").iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o664, path


# --- 11. the smaller ones ------------------------------------------------------------------------


def test_a_tiny_image_is_not_upscaled(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(DataError, match=r"dot.png: it is 1x1 pixels, more than 4x smaller than the 47x55 input"):
        decode_images([tmp_path / "dot.png"], (3, 55, 47))


def test_an_image_fixed_after_a_skip_is_decoded_again(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    Image.new("RGB", (47, 55), (200, 10, 10)).save(good)
    bad = tmp_path / "b.png"
    data = good.read_bytes()
    bad.write_bytes(b"\0" * len(data))
    stamp = os.stat(good)
    os.utime(bad, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    _, kept, skipped = cached_decode_files(tmp_path / "cache", "t", [good, bad], (3, 55, 47), "skip", "t")
    assert list(kept) == [0] and len(skipped) == 1
    bad.write_bytes(data)  # restored with the same size and modification time (as rsync -t would)
    os.utime(bad, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    images, kept, skipped = cached_decode_files(tmp_path / "cache", "t", [good, bad], (3, 55, 47), "skip", "t")
    assert list(kept) == [0, 1] and not skipped and images[1, 0, 0, 0] > 150


def test_a_people_count_above_the_images_on_disk_names_the_line(tmp_path: Path) -> None:
    root = make_lfw(tmp_path / "lfw")
    people = root / "people.txt"
    people.write_text(people.read_text().replace("Bob_Beta\t2", "Bob_Beta\t5"))
    with pytest.raises(DataError, match=r"people.txt:4: Bob_Beta is listed with 5 images, but Bob_Beta/Bob_Beta_0005.jpg"):
        plan_run(compose(["+method=pixels", "data=lfw", f"data.root={root}"]))


def test_protocol_file_checksums_are_recorded_and_unofficial_files_flagged(tmp_path: Path) -> None:
    root = make_lfw(tmp_path / "lfw")
    record = execute(compose(["+method=pixels", "data=lfw", f"data.root={root}", f"cache_dir={tmp_path / 'c'}",
                              f"results_root={tmp_path / 'r'}"]), tmp_path / "run")
    digests = record["benchmark"]["protocol_files_sha256"]
    assert set(digests) == {"pairs.txt", "people.txt"} and len(digests["pairs.txt"]) == 64
    assert record["benchmark"]["protocol_files_official"] is False
    assert "unofficial protocol files" in record_flags(record)


def test_thread_counts_are_recorded() -> None:
    threads = environment()["threads"]
    assert threads["torch_intra_op"] == torch.get_num_threads() and threads["torch_cpu_capability"]
    assert any(lib["internal_api"] for lib in threads["libraries"])


def test_an_unwritable_results_or_cache_folder_names_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = cli(f"results_root={blocker / 'results'}", "validate_only=true")
    refused(proc, f"results_root={blocker / 'results'} cannot be written", "FACEBENCH_RESULTS")
    with pytest.raises(ConfigError, match=r"cache_dir=.* cannot be written .*FACEBENCH_CACHE"):
        plan_run(compose([f"cache_dir={blocker / 'cache'}"]))


def test_a_wrong_shape_state_on_resume_is_explained(tmp_path: Path) -> None:
    small, large = torch.nn.Linear(2, 3), torch.nn.Linear(2, 4)
    save_checkpoint(tmp_path / "u.pt", 3, small, torch.nn.Identity(), torch.optim.SGD(small.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match=r"does not fit this run's model .*size mismatch.*trainer.resume=false"):
        load_checkpoint(tmp_path / "u.pt", large, torch.nn.Identity(), torch.optim.SGD(large.parameters(), lr=0.1))
    shutil.rmtree(tmp_path)
