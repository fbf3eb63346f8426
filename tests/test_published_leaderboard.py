"""The published leaderboard is what its command makes from the committed records: copy the
records (the study's and the reproduction presets') into a scratch folder, run the command
``results/LEADERBOARD.md`` names there, and compare the markdown byte for byte with the
committed page and the study's committed REPORT.md and REPORT.html."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "results" / "LEADERBOARD.md"
#: What the page's command reads: the records and the search histories (no checkpoints or plots).
RECORD_FILES = ("metrics.json", "folds.csv", "config.yaml", "roc.csv", "history.csv", "chosen.json",
                "optimization_results.yaml")


def _copy_records(source: Path, target: Path) -> int:
    copied = 0
    for path in source.rglob("*"):
        if path.is_file() and path.name in RECORD_FILES:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
            copied += 1
    return copied


@pytest.mark.slow
def test_the_committed_leaderboard_is_what_its_command_makes_from_the_committed_records(tmp_path: Path) -> None:
    page = PAGE.read_text()
    command = re.search(r"Made by `(python -m facebench\.study [^`]+)`", page)
    assert command, "results/LEADERBOARD.md must name the command that made it"
    argv = command.group(1).split()[3:]
    assert _copy_records(REPO / "results" / "studies", tmp_path / "results" / "studies") > 0
    _copy_records(REPO / "results" / "presets", tmp_path / "results" / "presets")
    # the page states the study's default data root; a local $FACEBENCH_LFW must not move it
    env = {k: v for k, v in os.environ.items() if k != "FACEBENCH_LFW"}
    made = subprocess.run([sys.executable, "-m", "facebench.study", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    assert (tmp_path / "results" / "LEADERBOARD.md").read_text() == page
    for report in ("REPORT.md", "REPORT.html"):
        study = Path("results") / "studies" / "losses" / report
        assert (tmp_path / study).read_text() == (REPO / study).read_text()


def test_the_readmes_headline_is_the_studys_summary_table() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- study:summary -->\n(.*?)\n<!-- /study:summary -->", readme, re.DOTALL)
    assert block, "README.md must hold the study's summary between <!-- study:summary --> markers"
    report = (REPO / "results" / "studies" / "losses" / "REPORT.md").read_text()
    summary = re.search(r"^## Summary\n\n(.*?)\n\n", report, re.DOTALL | re.MULTILINE)
    assert summary, "the study's REPORT.md has no summary: run its report stage"
    assert block.group(1) == summary.group(1), "copy REPORT.md's summary table into README.md's study:summary block"
