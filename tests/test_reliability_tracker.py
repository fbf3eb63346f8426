"""Tracker failures never cost the local record: W&B unreachable in online mode, or any tracker
whose every call raises, and the run still finishes, writes its complete record and says
what failed.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import TINY
from facebench.config import compose
from facebench.registry import get_registry
from facebench.run import execute
from facebench.components import Tracker

#: No training and no PCA: the cheapest complete run (the record is what these tests are about).
PIXELS = ["+method=pixels", *TINY, "device=cpu", "verifier.pca_dim=null"]


pytestmark = pytest.mark.usefixtures("one_thread")


def complete_record(run_dir: Path) -> dict:
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "complete" and "error" not in record and record["metrics"]["mean_accuracy"] > 0
    return record


def test_wandb_unreachable_online_keeps_the_record_and_says_the_upload_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import wandb

    def unreachable(**kwargs: Any) -> None:
        raise wandb.errors.CommError("failed to connect to api.wandb.ai: network is unreachable")

    monkeypatch.setattr(wandb, "init", unreachable)
    monkeypatch.setenv("WANDB_MODE", "online")
    with caplog.at_level(logging.WARNING, logger="facebench"):
        execute(compose([*PIXELS, "tracker=wandb", "tracker.mode=online", f"results_root={tmp_path}"]), tmp_path / "run")
    complete_record(tmp_path / "run")
    assert "W&B upload failed" in caplog.text and "network is unreachable" in caplog.text
    assert not (tmp_path / "run" / "wandb").exists()


@dataclass
class ExplodingConfig:
    name: str = "exploding"


class ExplodingTracker(Tracker):
    """A third-party tracker that guards nothing: every call raises."""

    calls: list[str] = []

    def _boom(self, what: str) -> None:
        ExplodingTracker.calls.append(what)
        raise ConnectionError(f"{what}: tracking server down")

    def start(self, config: dict[str, Any], run_dir: Path) -> None:
        self._boom("start")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._boom("log")

    def summary(self, metrics: dict[str, Any]) -> None:
        self._boom("summary")

    def table(self, name: str, table: Any) -> None:
        self._boom("table")

    def roc(self, fpr: Any, tpr: Any) -> None:
        self._boom("roc")

    def finish(self, status: str) -> None:
        self._boom("finish")


@pytest.fixture()
def exploding() -> Iterator[None]:
    registry = get_registry()
    registry.add("tracker", "exploding", lambda c, ctx: ExplodingTracker(), ExplodingConfig)
    registry.store_configs()
    ExplodingTracker.calls = []
    yield
    del registry.components["tracker"]["exploding"]


def test_a_tracker_that_raises_everywhere_never_fails_the_run(
    exploding: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = ["+method=deepid", *TINY, "device=cpu", "trainer.steps=2", "trainer.log_every=1", "trainer.batch_size=8",
                 "tracker=exploding", f"results_root={tmp_path}"]
    with caplog.at_level(logging.WARNING, logger="facebench"):
        execute(compose(overrides), tmp_path / "run")
    complete_record(tmp_path / "run")
    assert set(ExplodingTracker.calls) == {"start", "log", "summary", "table", "roc", "finish"}
    for what in ("start", "log", "finish"):
        assert f"tracker ExplodingTracker: {what} failed (ConnectionError: {what}: tracking server down); " \
               "the local record is unaffected" in caplog.text
