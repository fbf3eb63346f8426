"""``evaluation.verifier_holdout``: the paper's split of people between the network and the verifier."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY
from fake_lfw import make_lfw
from facebench.components import FaceData
from facebench.config import ConfigError, compose
from facebench.protocols.benchmark import EvalUnit, PairFold, PairsBenchmark
from facebench.protocols.pairs import PairsProtocol
from facebench.run import checkpoint_key, execute, plan_run, without_people
from facebench.splits import hold_out_people

pytestmark = pytest.mark.usefixtures("one_thread")


def _faces(counts: list[int]) -> FaceData:
    labels = np.repeat(np.arange(len(counts)), counts)
    names = [f"p{k:02d}" for k in range(len(counts))]
    return FaceData(np.zeros((len(labels), 1, 2, 2), np.uint8), labels, names, [f"k{i}" for i in range(len(labels))])


def _held(faces: FaceData, share: float, seed: int, where: str = "fold1") -> list[str]:
    held = hold_out_people(np.bincount(faces.labels), share, np.random.default_rng(seed), "evaluation.verifier_holdout", where)
    return sorted(faces.names[k] for k in held)


def test_held_out_people_have_two_images_and_leave_the_training_faces() -> None:
    faces = _faces([1, 3, 2, 1, 4, 2, 2, 5, 1, 3, 2, 2])  # 9 people with 2+ images
    held = _held(faces, 0.34, seed=0)
    train = without_people(faces, held)
    counts = dict(zip(faces.names, np.bincount(faces.labels)))
    assert len(held) == 3 and all(counts[p] >= 2 for p in held)
    assert set(train.names) == set(faces.names) - set(held)
    assert len(train.images) == len(faces.images) - sum(counts[p] for p in held)
    assert _held(faces, 0.34, seed=0) == held
    assert _held(faces, 0.34, seed=1) != held


def test_too_small_a_share_is_refused_with_the_key() -> None:
    with pytest.raises(ConfigError, match=r"evaluation.verifier_holdout=0.1 holds out 1 of the 6 people with 2\+ images of fold3"):
        _held(_faces([2] * 6), 0.1, seed=0, where="fold3")


def test_verifier_is_fitted_on_the_given_people_only() -> None:
    faces = _faces([2] * 6)
    folds = [PairFold("fold1", np.array([[0, 1], [0, 2]]), np.array([True, False]), ["p00", "p01", "p02"]),
             PairFold("fold2", np.array([[6, 7], [6, 8]]), np.array([True, False]), ["p03", "p04", "p05"])]
    bench = PairsBenchmark("b", faces, folds, [EvalUnit("fold2", 1, [0])], {})

    class Spy:
        def fit(self, x: np.ndarray, labels: np.ndarray) -> None:
            self.fitted = sorted({faces.names[k] for k in labels})

        def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return -np.abs(a - b).sum(axis=1)

    features = np.random.default_rng(0).normal(size=(12, 3))
    spy = Spy()
    PairsProtocol().evaluate_unit(bench, bench.units[0], features, spy, fit_people=["p01", "p02"])
    assert spy.fitted == ["p01", "p02"]
    with pytest.raises(ValueError, match="fit people must be training people"):
        PairsProtocol().evaluate_unit(bench, bench.units[0], features, Spy(), fit_people=["p03"])


def test_refused_before_any_work_without_per_split_training() -> None:
    with pytest.raises(ConfigError, match="evaluation.verifier_holdout=0.3 needs a pair protocol with per-split training"):
        plan_run(compose(["+method=deepid", *TINY, "evaluation.verifier_holdout=0.3"]))
    with pytest.raises(ConfigError, match=r"evaluation.verifier_holdout=1.0: not accepted; use a number >= 0 and < 1"):
        plan_run(compose(["+method=deepid", *TINY, "evaluation.verifier_holdout=1.0"]))


def test_lfw_run_trains_without_the_held_out_people(tmp_path) -> None:
    people = {f"Person_{k:02d}": 2 + k % 3 for k in range(16)}  # 8 people per fold, 2-4 images each
    root = make_lfw(tmp_path / "lfw", people=people)
    overrides = ["+method=deepid", "data=lfw", f"data.root={root}", "trainer.steps=2", "trainer.pk_identities=4",
                 "trainer.pk_images=2", "verifier.pca_dim=null", "device=cpu", f"results_root={tmp_path}"]
    held = compose([*overrides, "evaluation.verifier_holdout=0.5"])
    assert checkpoint_key(held) != checkpoint_key(compose(overrides))
    record = execute(held, tmp_path / "run")
    assert record["status"] == "complete"
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for unit in stored["units"]:
        assert unit["verifier_people"] == 4 and unit["train_identities"] == 4


def test_a_share_that_misfits_a_later_split_is_refused_before_any_split_trains(tmp_path) -> None:
    # Split fold1 trains on the second half (8 people with 2+ images), fold2 on the first half
    # (one person with 2 images): 0.5 fits fold1 only.
    people = {f"Person_{k:02d}": (2 if k in (0, 1) else 1) if k < 8 else 3 for k in range(16)}
    people["Person_01"] = 1
    root = make_lfw(tmp_path / "lfw", people=people)
    cfg = compose(["+method=deepid", "data=lfw", f"data.root={root}", "trainer.steps=2", "trainer.pk_identities=4",
                   "trainer.pk_images=2", "trainer.checkpoint_every=1", "verifier.pca_dim=null", "device=cpu",
                   f"results_root={tmp_path}", "evaluation.verifier_holdout=0.5"])
    with pytest.raises(ConfigError, match=r"evaluation.verifier_holdout=0.5 holds out \d of the \d+ people with 2\+ images of the training people of fold2"):
        execute(cfg, tmp_path / "run")
    assert not list((tmp_path / "checkpoints").glob("*/*.pt")), "a split trained before the share was checked"
