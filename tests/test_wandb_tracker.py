"""The W&B tracker and the leaderboard's W&B output, offline: what they write, that a failing
W&B never fails a run, and that the API key is written nowhere."""
from __future__ import annotations

import json
import logging
import struct
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from facebench import leaderboard as lb
from facebench.registry import ENTRY_POINT_GROUP, Registry
from facebench.results import write_record
from facebench_plugins import wandb_tracker

API_KEY = "secret-test-key"
ACCURACY = 0.987654321


@pytest.fixture()
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline W&B with every W&B folder inside tmp_path and an API key in the environment."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    return tmp_path


def tracker() -> wandb_tracker.WandbTracker:
    """Built the way the registry builds it (without loading every plugin and torch)."""
    registry = Registry()
    wandb_tracker.facebench_register(registry)
    return registry.build("tracker", OmegaConf.structured(wandb_tracker.WandbTrackerConfig(tags=["test"])), None)


def test_registered_as_tracker_wandb() -> None:
    (ep,) = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "wandb"]
    assert ep.load() is wandb_tracker and isinstance(tracker(), wandb_tracker.WandbTracker)


def summary_of(run_file: Path) -> dict:
    """Final summary values from an offline run's transaction log (a LevelDB-style log of
    protobuf records: 32 KiB blocks, 7-byte chunk headers, after a 7-byte W&B header); wandb
    0.31 writes no wandb-summary.json offline."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunk, summary = 7, 32768, b"", {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record.FromString(chunk)
            chunk = b""
            for item in record.summary.update:
                summary["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
    return summary


def files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_offline_run_holds_the_final_metrics_and_no_api_key(offline: Path) -> None:
    run_dir = offline / "results" / "run"
    run_dir.mkdir(parents=True)
    t = tracker()
    t.start({"method": "deepid2", "seed": 0, "loss": {"name": "deepid2", "margin": 1.0}}, run_dir)
    for step in (3, 6):
        t.log({"fold01/softmax": 1.0 / step, "fold01/verification_margin": 0.1 * step}, step)
    t.log({"fold02/softmax": 0.9}, 3)  # a new unit restarts its step count
    t.table("folds", pd.DataFrame({"fold": ["fold01", "fold02"], "accuracy": [0.98, 0.99]}))
    t.roc(np.linspace(0.0, 1.0, 3000), np.linspace(0.0, 1.0, 3000) ** 0.3)
    t.summary({"mean_accuracy": ACCURACY, "tar_at_far": [{"far": 0.001, "tar": 0.5}], "roc": {"fpr": [0.0]}})
    t.finish("complete")
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    (run_file,) = wandb_run.glob("run-*.wandb")
    summary = summary_of(run_file)
    assert summary["mean_accuracy"] == ACCURACY and summary["tar@far=0.001"] == 0.5
    assert summary["fold01/verification_margin"] == pytest.approx(0.6) and summary["fold02/step"] == 3
    assert summary["folds/_type"] == summary["roc_table/_type"] == "table-file"
    assert summary["folds/nrows"] == 2 and summary["roc_table/nrows"] <= 1002  # ROC thinned for W&B
    assert files_containing(offline, API_KEY) == []


def test_failing_wandb_init_does_not_fail_the_run(
    offline: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import wandb

    def unreachable(**kwargs):
        raise wandb.errors.CommError("network is unreachable")

    monkeypatch.setattr(wandb, "init", unreachable)
    t = tracker()
    with caplog.at_level(logging.WARNING, logger="facebench"):
        t.start({"method": "x"}, offline)
        t.log({"fold01/softmax": 1.0}, 1)
        t.summary({"mean_accuracy": 0.5})
        t.finish("complete")
    assert "W&B upload failed" in caplog.text and "network is unreachable" in caplog.text


def test_leaderboard_logs_its_table_offline(offline: Path) -> None:
    root = offline / "results"
    for seed in (0, 1):
        (root / f"s{seed}").mkdir(parents=True)
        write_record(
            root / f"s{seed}",
            {
                "status": "complete",
                "method": "m",
                "protocol": {"name": "synthetic", "units_evaluated": ["f1", "f2"]},
                "regime": "unrestricted_labeled_outside",
                "seed": seed,
                "metrics": {"mean_accuracy": 0.9},
                "units": [{"name": "f1", "accuracy": 0.9}, {"name": "f2", "accuracy": 0.9}],
                "primary_metric": "mean_accuracy",
            },
        )
    assert lb.main(["--root", str(root), "--wandb"]) == 0
    (table,) = (root / "leaderboard" / "wandb").glob("offline-run-*/files/media/table/leaderboard*.table.json")
    logged = json.loads(table.read_text())
    assert logged["columns"][0] == "method" and logged["data"][0][0] == "m"
    assert files_containing(offline, API_KEY) == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # wandb-workspaces' pydantic v1 validators
def test_report_is_constructed_without_saving() -> None:
    pytest.importorskip("wandb_workspaces", reason="W&B Reports need the 'reports' extra (wandb-workspaces)")
    report = lb.build_report("| method |\n|---|\n| m |\n", "mean_accuracy", project="facebench", entity="someone")
    assert report.title == "facebench leaderboard" and report.entity == "someone"
    assert len(report.blocks) == 2 and report.blocks[0].text.startswith("| method |")
