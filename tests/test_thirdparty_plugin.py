"""A third party's loss, published as its own package, runs through the Hydra app with a
type-checked override — exactly the path the README's plugin example describes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import shutil
from pathlib import Path

import pytest

from conftest import REPO, TINY

EXAMPLE = REPO / "examples" / "pull_loss"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("pkg")
    shutil.copytree(EXAMPLE, src, dirs_exist_ok=True)  # build from a copy: no build/ left in the repo
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


def run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "facebench", *args], capture_output=True, text=True, env=env, timeout=600)


def test_installed_loss_runs_with_typed_override(installed_plugin: Path, tmp_path: Path) -> None:
    proc = run(installed_plugin, "+method=deepid", "loss=pull", "loss.pull_weight=3.0", *TINY, f"results_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record_path,) = tmp_path.glob("*/metrics.json")
    record = json.loads(record_path.read_text())
    assert record["components"]["loss"] == {"name": "pull", "pull_weight": 3.0}
    assert record["units"][0]["final_train_metrics"]["pull_weight"] == 3.0
    assert "pull" in record["units"][0]["final_train_metrics"]


def test_string_for_the_plugins_float_field_is_refused(installed_plugin: Path, tmp_path: Path) -> None:
    proc = run(installed_plugin, "+method=deepid", "loss=pull", "loss.pull_weight=strong", f"results_root={tmp_path}")
    assert proc.returncode != 0
    assert "loss.pull_weight" in proc.stderr and "strong" in proc.stderr
    assert not list(tmp_path.glob("*/metrics.json"))


def test_plugin_listing_names_the_provider(installed_plugin: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed_plugin)}
    out = subprocess.run([sys.executable, "-m", "facebench.plugins"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0
    line = next(l for l in out.stdout.splitlines() if l.strip().startswith("pull "))
    assert "facebench-example-loss:example_loss" in line


def test_the_plugin_ships_a_preset_and_passes_the_contract_checks(installed_plugin: Path, tmp_path: Path) -> None:
    """Installed from outside the repository: its `+method=pull` preset composes and runs, and
    its loss and verifier pass facebench.testing's checks, with no change to facebench."""
    proc = run(installed_plugin, "+method=pull", *TINY, f"results_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record_path,) = tmp_path.glob("*/metrics.json")
    record = json.loads(record_path.read_text())
    assert record["method"] == "pull" and record["components"]["verifier"]["name"] == "angle"
    assert record["components"]["loss"]["pull_weight"] == 0.05 and record["components"]["trainer"]["steps"] == 6
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed_plugin), os.environ.get("PYTHONPATH", "")])}
    checks = "from facebench.testing import check_loss, check_verifier; check_loss('pull'); check_verifier('angle'); print('passed')"
    out = subprocess.run([sys.executable, "-c", checks], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "passed" in out.stdout, out.stderr[-3000:]


def test_the_plugin_guide_points_at_the_tested_example() -> None:
    guide = (REPO / "docs" / "PLUGINS.md").read_text()
    for path in ("examples/pull_loss/pyproject.toml", "examples/pull_loss/facebench_example_loss/__init__.py",
                 "examples/pull_loss/facebench_example_loss/presets/method/pull.yaml"):
        assert path in guide and (REPO / path).is_file()
