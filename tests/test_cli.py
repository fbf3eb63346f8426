"""End-to-end through the real command line: exit codes and messages a user sees."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import TINY


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facebench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_unknown_component_exits_nonzero_naming_closest() -> None:
    proc = cli("+method=deepid", "loss=sofmax")
    assert proc.returncode == 2
    assert "unknown loss 'sofmax'" in proc.stderr and "Did you mean 'softmax'?" in proc.stderr


def test_missing_lfw_root_fails_fast(tmp_path: Path) -> None:
    proc = cli("+method=deepid", "data=lfw", f"data.root={tmp_path / 'nowhere'}", f"results_root={tmp_path}")
    assert proc.returncode == 2
    assert "data.root=" in proc.stderr and "no such directory" in proc.stderr
    assert not list(tmp_path.glob("*/metrics.json"))


def test_default_pixels_run_writes_a_complete_record(tmp_path: Path) -> None:
    proc = cli("+method=pixels", *TINY, f"results_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "accuracy" in proc.stdout and "record:" in proc.stdout
    (record_path,) = tmp_path.glob("*/metrics.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "complete" and record["method"] == "pixels"
    assert record["regime"] == "unrestricted_labeled_outside"
    assert len(record["units"]) == 10
    for name in ("config.yaml", "folds.csv", "roc.csv", "roc.png"):
        assert (record_path.parent / name).is_file(), name
    # a second identical run decodes nothing: the log says the cache was hit
    again = cli("+method=pixels", *TINY, f"results_root={tmp_path}")
    assert again.returncode == 0
    assert "cache hit" in again.stdout + again.stderr
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2
