"""What a study run over several sittings and an optimising sweeper need from a run: complete
records are reused, not redone; a run can return its objective as a number; interval sweeps pass
the config checks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY
from facebench.__main__ import check_code_targets, objective_value
from facebench.config import compose
from facebench.run import config_key, execute


def test_a_complete_record_is_reused_and_a_changed_config_runs(tmp_path: Path) -> None:
    overrides = ["+method=pixels", *TINY, f"results_root={tmp_path}", "reuse_complete=true"]
    first = execute(compose(overrides), tmp_path / "a")
    again = execute(compose(overrides), tmp_path / "b")
    assert again["reused"] and again["run_dir"] == first["run_dir"] and not (tmp_path / "b").exists()
    other = execute(compose([*overrides, "seed=1"]), tmp_path / "c")
    assert not other.get("reused") and other["config_key"] != first["config_key"]
    assert config_key(compose(overrides)) == config_key(compose([*overrides, f"results_root={tmp_path}/x"]))


def test_a_sweep_run_twice_runs_each_job_once(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "facebench", "-m", "+method=pixels", *TINY, "seed=0,1", f"results_root={tmp_path}",
            "reuse_complete=true", f"hydra.sweep.dir={tmp_path}/sweep"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(args[:-1] + [f"hydra.sweep.dir={tmp_path}/again"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("complete record reused") == 2
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("metrics.json")]
    assert len(records) == 2 and not any(p.is_dir() for p in (tmp_path / "again").glob("*-pixels-*"))


def test_the_objective_is_returned_as_a_number() -> None:
    cfg = compose(["objective=mean_accuracy"])
    assert objective_value(cfg, {"metrics": {"mean_accuracy": 0.81}}) == pytest.approx(0.81)
    assert objective_value(cfg, {"status": "failed", "metrics": {}}) is None  # a failed trial, for the sweeper
    record = {"metrics": {}}
    assert objective_value(compose([]), record) is record


def test_a_diverged_trial_is_scored_as_chance_where_asked_and_keeps_its_configs_key() -> None:
    """TPE told "failed" learns nothing of the settings that diverge; told the accuracy of chance,
    it learns they make a useless net. A crash stays a failure; the setting changes no record's key."""
    diverged = {"status": "failed", "error": "TrainingDiverged: loss term 'identification' became nan", "metrics": {}}
    crashed = {"status": "failed", "error": "RuntimeError: boom", "metrics": {}}
    scored = compose(["objective=mean_accuracy", "objective_when_diverged=0.5"])
    assert objective_value(scored, diverged) == 0.5 and objective_value(scored, crashed) is None
    assert objective_value(compose(["objective=mean_accuracy"]), diverged) is None
    assert objective_value(scored, {"status": "complete", "metrics": {"mean_accuracy": 0.9}}) == pytest.approx(0.9)
    assert config_key(scored) == config_key(compose(["objective=mean_accuracy"]))


def test_an_optimising_sweep_goes_on_past_a_diverged_trial_and_a_grid_sweep_fails_on_one(tmp_path: Path) -> None:
    """Optuna is told a diverged trial failed and asks the next one; the sweep succeeds, counting
    it apart. (A NaN objective stopped the whole search: hydra-optuna-sweeper 1.3.0 hands the
    NaN back to Optuna with the failure, which Optuna refuses.)"""
    common = [sys.executable, "-m", "facebench", "-m", "+method=deepid", *TINY, "trainer.optimizer=sgd",
              f"results_root={tmp_path}"]
    search = subprocess.run([*common, f"hydra.sweep.dir={tmp_path}/search", "objective=mean_accuracy",
                             "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.seed=0",
                             "hydra.sweeper.max_failure_rate=1.0", "trainer.lr=choice(0.01, 100000000.0)"],
                            capture_output=True, text=True, timeout=300)
    assert search.returncode == 0, search.stderr[-2000:]
    assert "4 runs, 1 complete, 3 diverged" in search.stdout
    records = [json.loads(p.read_text()) for p in (tmp_path / "search").rglob("metrics.json")]
    assert sorted(r["status"] for r in records) == ["complete", "failed", "failed", "failed"]
    grid = subprocess.run([*common, f"hydra.sweep.dir={tmp_path}/grid", "trainer.lr=100000000.0"],
                          capture_output=True, text=True, timeout=300)
    assert grid.returncode == 1 and "1 runs, 1 failed" in grid.stdout and "TrainingDiverged" in grid.stderr


def test_interval_sweeps_pass_the_code_target_check() -> None:
    check_code_targets(["trainer.lr=interval(0.0001,0.1)", "loss.margin=tag(log,interval(0.1,0.5))"])


def test_a_learning_curve_is_measured_on_held_out_training_people(tmp_path: Path) -> None:
    from facebench.convergence import still_improving
    from facebench.learning_curve import best_threshold_accuracy
    from facebench.leaderboard import record_flags
    import numpy as np

    assert best_threshold_accuracy(np.array([0.9, 0.8, 0.2, 0.1]), np.array([True, True, False, False])) == 1.0
    assert best_threshold_accuracy(np.array([0.1, 0.9]), np.array([True, False])) == 0.5
    curve = [{"fraction": f, "val_accuracy": a} for f, a in ((0.25, 0.6), (0.5, 0.7), (0.75, 0.75), (1.0, 0.8))]
    assert still_improving(curve) and not still_improving(curve[:3] + [{"fraction": 1.0, "val_accuracy": 0.755}])
    record = execute(compose(["+method=deepid", *TINY, "trainer.steps=8", "evaluation.curve_holdout=0.3",
                              "evaluation.curve_pairs=40", f"results_root={tmp_path}"]), tmp_path / "run")
    row = record["units"][0]
    points = row["learning_curve"]
    assert [p["step"] for p in points] == [2, 4, 6, 8] and [p["fraction"] for p in points] == [0.25, 0.5, 0.75, 1.0]
    assert all(0.0 <= p["val_accuracy"] <= 1.0 and 0.0 <= p["val_auc"] <= 1.0 for p in points)
    assert row["train_identities"] == 24 - round(0.3 * 24)  # the curve's people train no network
    assert ("still improving in its last quarter" in record_flags(record)) == row["still_improving"]
    plain = execute(compose(["+method=deepid", *TINY, "trainer.steps=8", f"results_root={tmp_path}"]), tmp_path / "plain")
    assert "learning_curve" not in plain["units"][0]


def test_a_folds_model_and_score_do_not_depend_on_the_other_folds_of_its_job(tmp_path: Path) -> None:
    """A study's final runs train one fold per job; the leaderboard joins them as if one job had
    trained every fold, which holds only if a fold's training starts from the same state either way."""
    base = [*TINY, "evaluation.curve_holdout=0.2"]
    both = execute(compose([*base, "protocol.folds=[1,2]", f"results_root={tmp_path}/a"]), tmp_path / "a" / "run")
    alone = execute(compose([*base, "protocol.folds=[2]", f"results_root={tmp_path}/b"]), tmp_path / "b" / "run")
    [second] = [u for u in both["units"] if u["name"] == alone["units"][0]["name"]]
    assert second["name"] != both["units"][0]["name"] and alone["units"][0]["train_steps"] == 6
    for key in ("accuracy", "threshold", "final_train_metrics", "learning_curve"):
        assert second[key] == alone["units"][0][key]
