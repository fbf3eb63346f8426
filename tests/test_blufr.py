"""BLUFR: the figures against brute force, the .mat reader's errors, the protocol on a generated
LFW copy (also through a whole run), and the real config file where it is available."""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from facebench.config import compose
from facebench.errors import DataError
from facebench.protocols.blufr import BlufrProtocol, BlufrProtocolConfig, read_blufr_config
from facebench.protocols.blufr_metrics import (
    accept_rates,
    all_pair_scores,
    open_set_identification,
    thresholds_at_fars,
)
from facebench.run import execute
from facebench.verifiers import CosineVerifier
from fake_lfw import PEOPLE, make_lfw, write_blufr

SHAPE = (3, 55, 47)
NAMES = list(PEOPLE)
TRIALS = [(NAMES[:2], NAMES[2:]), (NAMES[4:], NAMES[:4])]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def test_all_pair_scores_match_brute_force_over_many_blocks() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 9, size=57)
    x = rng.normal(size=(57, 5))
    genuine, impostor = all_pair_scores(_cosine, x, labels, block_elements=100)  # ~2 rows per block
    full = _cosine(x, x)
    pairs = list(combinations(range(57), 2))
    want_gen = sorted(np.float32(full[i, j]) for i, j in pairs if labels[i] == labels[j])
    want_imp = sorted(np.float32(full[i, j]) for i, j in pairs if labels[i] != labels[j])
    assert np.array_equal(np.sort(genuine), want_gen) and np.array_equal(np.sort(impostor), want_imp)


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        all_pair_scores(lambda a, b: np.full((len(a), len(b)), np.nan), np.zeros((4, 2)), np.array([0, 0, 1, 1]))


def test_threshold_accepts_at_most_far_impostors_and_tar_is_the_largest_such() -> None:
    rng = np.random.default_rng(1)
    impostor = rng.normal(size=20_000).astype(np.float32)
    genuine = (rng.normal(size=3_000) + 2).astype(np.float32)
    fars = np.array([1e-4, 1e-3, 1e-2, 0.5, 1.0])
    thresholds = thresholds_at_fars(impostor.copy(), fars)
    tar = accept_rates(genuine, thresholds)
    for far, t, r in zip(fars, thresholds, tar):
        accepted = (impostor > t).sum()
        assert accepted <= far * len(impostor)
        if np.isfinite(t):  # a lower threshold (the next impostor score down) would exceed the FAR
            assert (impostor >= t).sum() > far * len(impostor)
        assert r == pytest.approx((genuine > t).mean())
    assert thresholds[-1] == -np.inf and tar[-1] == 1.0


def test_open_set_identification_by_hand() -> None:
    gallery_labels = np.array([1, 2, 3])
    probe_labels = np.array([1, 2, 3, 1, 8, 9])
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # genuine, correct, strong
            [0.1, 0.3, 0.2],  # genuine, correct, weak (below the threshold)
            [0.8, 0.0, 0.1],  # genuine, wrong identity at rank 1
            [0.7, 0.0, 0.0],  # genuine, correct
            [0.0, 0.5, 0.0],  # impostor, best 0.5
            [0.0, 0.0, 0.4],  # impostor, best 0.4
        ]
    )
    rate, threshold, n_gen, n_imp = open_set_identification(scores, probe_labels, gallery_labels, far=0.0)
    assert (threshold, n_gen, n_imp) == (pytest.approx(0.5), 4, 2)
    assert rate == pytest.approx(2 / 4)
    rate, threshold, _, _ = open_set_identification(scores, probe_labels, gallery_labels, far=0.5)
    assert threshold == pytest.approx(0.4) and rate == pytest.approx(2 / 4)


def test_a_mat_without_the_blufr_variables_names_file_and_variable(tmp_path: Path) -> None:
    path = tmp_path / "other.mat"
    scipy.io.savemat(path, {"imageList": np.array([["a_0001.jpg"]], dtype=object), "something": np.ones(3)})
    with pytest.raises(DataError) as err:
        read_blufr_config(path)
    assert str(path) in str(err.value) and "'labels' is missing" in str(err.value) and "something" in str(err.value)


def test_not_a_mat_file_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "blufr_lfw_config.mat"
    bad.write_text("not matlab")
    with pytest.raises(DataError, match=f"{bad}: not a readable MATLAB .mat file"):
        read_blufr_config(bad)
    with pytest.raises(DataError, match="protocol.config_file"):
        read_blufr_config(tmp_path / "absent.mat")


def test_out_of_range_indices_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.mat"
    write_blufr(path, TRIALS)
    mat = scipy.io.loadmat(path)
    mat["trainIndex"][0, 0] = np.array([[0.0], [1.0]])  # 0 is not a MATLAB index
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(DataError, match=r"trainIndex\{1\} holds indices outside 1..14"):
        read_blufr_config(path)


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    root = make_lfw(tmp_path / "lfw")
    write_blufr(root / "blufr_lfw_config.mat", TRIALS)
    return root


def test_protocol_on_a_generated_copy(fake_root: Path, tmp_path: Path) -> None:
    protocol = BlufrProtocol(BlufrProtocolConfig(root=str(fake_root)))
    protocol.check()
    bench = protocol.load(SHAPE, str(tmp_path / "cache"), "fail")
    assert [u.name for u in bench.units] == ["trial1", "trial2"]
    unit = bench.units[0]
    assert protocol.train_people(bench, unit) == sorted(NAMES[:2])
    assert protocol.test_people(bench, unit) == sorted(NAMES[2:])
    features = np.asarray(bench.faces.images, dtype=np.float32).reshape(len(bench.faces.images), -1)
    outcomes = [protocol.evaluate_unit(bench, u, features, CosineVerifier(pca_dim=4)) for u in bench.units]
    summary = protocol.summarize(outcomes)
    metrics = json.loads(json.dumps(summary.to_dict()))
    units = json.loads(json.dumps(summary.unit_rows()))
    assert {u["name"] for u in units} == {"trial1", "trial2"}
    assert metrics["vr_far"] == 1e-3 and metrics["dir_far"] == 1e-2 and metrics["dir_rank"] == 1
    vrs = [u["vr"] for u in units]
    assert metrics["vr_mean"] == pytest.approx(np.mean(vrs))
    assert metrics["vr_mean_minus_std"] == pytest.approx(np.mean(vrs) - np.std(vrs, ddof=1))
    assert len(summary.fold_table()) == 2 and len(summary.fpr) == len(summary.tpr) == len(metrics["roc"]["fpr"])
    assert "VR@FAR=0.1%" in protocol.headline(metrics, 2)
    assert [u.name for u in BlufrProtocol(BlufrProtocolConfig(root=str(fake_root), trials=[2])).units(bench)] == ["trial2"]


def test_a_trial_training_on_its_test_people_is_refused(tmp_path: Path) -> None:
    root = make_lfw(tmp_path / "lfw")
    write_blufr(root / "blufr_lfw_config.mat", [(NAMES[:3], NAMES[2:])])
    with pytest.raises(DataError, match="trial 1 trains on 1 of its test people \\(Carol_Gamma\\)"):
        BlufrProtocol(BlufrProtocolConfig(root=str(root))).load(SHAPE, str(tmp_path / "cache"), "fail")


def test_a_whole_run_with_protocol_blufr(fake_root: Path, tmp_path: Path) -> None:
    cfg = compose(["+method=pixels", "data=lfw", f"data.root={fake_root}", "protocol=blufr", "verifier.pca_dim=4",
                   f"results_root={tmp_path / 'results'}"])
    record = execute(cfg, tmp_path / "run")
    assert record["status"] == "complete" and record["regime"] == "unrestricted_no_outside"
    assert [u["name"] for u in record["units"]] == ["trial1", "trial2"]
    assert {"vr", "dir", "n_impostor", "fit_images"} <= set(record["units"][0])
    assert record["primary_metric"] == "vr_mean_minus_std" and "vr_mean_minus_std" in record["metrics"]
    assert (tmp_path / "run" / "roc.csv").is_file() and (tmp_path / "run" / "folds.csv").is_file()


@pytest.mark.lfw
def test_the_real_blufr_config(lfw_root: Path) -> None:
    config = read_blufr_config(lfw_root / "blufr_lfw_config.mat")
    assert len(config.images) == 13233 and len(config.train) == 10
    for train, test, gallery, probe in zip(config.train, config.test, config.gallery, config.probe):
        assert not set(config.labels[train]) & set(config.labels[test])
        assert set(gallery) | set(probe) == set(test) and len(gallery) == 1000
