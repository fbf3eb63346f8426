"""The GPU-pool launcher on a CPU machine, with fake device ids: every job sees one device of
the pool, and a device never runs two jobs at once."""
from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest
from hydra.core.utils import JobStatus

from conftest import TINY
from hydra_plugins.facebench_gpu_pool.launcher import JobProcess, device_slots, visible_devices
from test_sweeps import multirun


def test_four_jobs_on_two_devices_never_share_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    multirun(
        monkeypatch,
        "hydra/launcher=gpu_pool",
        "hydra.launcher.devices=[7,9]",
        "+method=pixels",
        "verifier.pca_dim=null",
        "device=cpu",
        *TINY,
        "seed=0,1,2,3",
        f"results_root={tmp_path}",
    )
    job_dirs = sorted(tmp_path.glob("multirun/*/*-pixels-s*"))
    assert len(job_dirs) == 4
    for job_dir in job_dirs:
        assert json.loads((job_dir / "metrics.json").read_text())["status"] == "complete"
    jobs = [json.loads((d / "gpu_pool.json").read_text()) for d in job_dirs]
    assert {j["cuda_visible_devices"] for j in jobs} == {"7", "9"}
    assert len({j["pid"] for j in jobs}) == 4  # a fresh process per job
    overlapping = [(a, b) for a, b in combinations(jobs, 2) if a["started"] < b["ended"] and b["started"] < a["ended"]]
    assert overlapping, "two devices, four jobs: some ran at the same time"
    for a, b in overlapping:
        assert a["cuda_visible_devices"] != b["cuda_visible_devices"], (a, b)


def test_pool_devices() -> None:
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "3, 5"}) == ["3", "5"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert device_slots(["7", "9"], 2) == ["7", "9", "7", "9"]
    with pytest.raises(ValueError, match="no GPU"):
        device_slots([], 1)
    with pytest.raises(ValueError, match="jobs_per_device"):
        device_slots(["0", "0"], 1)


def test_a_job_process_that_dies_is_a_failed_job(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    ret = JobProcess(5, ["seed=1"], "7", process, tmp_path / "never-written.pkl", 0.0).finish()
    assert ret.status == JobStatus.FAILED and ret.overrides == ["seed=1"]
    with pytest.raises(RuntimeError, match="job #5 on device 7 was killed by SIGKILL without a result"):
        ret.return_value
