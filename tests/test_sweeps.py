"""Multiruns through the real entry point, in this process: the basic launcher and joblib
run every job of a 2 x 2 grid to a complete record, and a failed job neither stops the others
nor goes unreported."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY
from facebench.__main__ import main

#: 2 seeds x 2 flip modes of the no-training floor (without PCA, so a job takes a second or two).
GRID = ["+method=pixels", "verifier.pca_dim=null", "device=cpu", *TINY, "seed=0,1", "features.flip=none,sum"]


def multirun(monkeypatch: pytest.MonkeyPatch, *overrides: str) -> None:
    monkeypatch.setattr(sys, "argv", ["facebench", "-m", *overrides])
    main()


def records(results_root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(results_root.glob("multirun/*/*/metrics.json"))]


def assert_complete_grid(results_root: Path) -> None:
    found = records(results_root)
    assert [r["status"] for r in found] == ["complete"] * 4
    assert {(r["seed"], r["components"]["features"]["flip"]) for r in found} == {
        (0, "none"), (0, "sum"), (1, "none"), (1, "sum")
    }


def test_basic_launcher_runs_the_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    multirun(monkeypatch, *GRID, f"results_root={tmp_path}")
    assert_complete_grid(tmp_path)
    assert "4 runs, 4 complete" in capsys.readouterr().out


def test_joblib_runs_the_grid_two_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    multirun(monkeypatch, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *GRID, f"results_root={tmp_path}")
    assert_complete_grid(tmp_path)


def test_a_failed_job_is_reported_and_the_others_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # features.flip=bogus composes (it is a string) and fails when its job starts
    grid = [o for o in GRID if not o.startswith(("seed=", "features.flip="))] + ["features.flip=none,bogus,sum"]
    with pytest.raises(SystemExit) as stop:
        multirun(monkeypatch, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *grid, f"results_root={tmp_path}")
    assert stop.value.code == 1
    found = records(tmp_path)
    assert [r["status"] for r in found] == ["complete", "failed", "complete"]
    assert "ConfigError: features.flip='bogus'" in found[1]["error"]
    out, err = capsys.readouterr()
    assert "3 runs, 2 complete, 1 failed" in out
    assert "failed: 1-pixels-s0 (features.flip=bogus): ConfigError: features.flip='bogus': not accepted; use one of" in err


def test_slurm_gpu_preset_asks_for_one_gpu_per_job() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is the `slurm` extra")
    from facebench.config import compose

    launcher = compose(["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu"]).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.partition) == (1, 1, "gpu")
