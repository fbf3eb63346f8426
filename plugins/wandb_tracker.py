"""Weights & Biases tracker (``tracker=wandb``): training curves, final metrics, the per-fold
table and the ROC of each run, grouped per Hydra sweep.

Tracking is a convenience on top of the local record, never a condition for it: every call
into wandb is guarded, so an unreachable server or a missing login costs a warning, not the
run. Offline mode (the default when neither the config nor ``WANDB_MODE`` says otherwise)
writes a run directory beside the record that ``wandb sync`` can upload later.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from facebench.hookspecs import hookimpl
from facebench.components import Tracker

log = logging.getLogger("facebench")

#: Most ROC points logged: W&B plots tables of a few thousand rows comfortably.
MAX_ROC_POINTS = 1000


@dataclass
class WandbTrackerConfig:
    """Where and how runs are logged to W&B.

    project / entity: the W&B project and its owner (entity None: the account's default).
    mode: online | offline | disabled; None: ``WANDB_MODE`` if set, else offline, so nothing
      leaves the machine unless asked for.
    group: the W&B run group; None: the Hydra sweep directory's name in a multirun (the seeds
      and settings of one sweep land in one group), no group for a single run.
    tags: W&B tags of the run.
    """

    name: str = "wandb"
    project: str = "facebench"
    entity: Optional[str] = None
    mode: Optional[str] = None
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)


def sweep_group() -> Optional[str]:
    """The Hydra sweep directory's name when this process runs a multirun job, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None


def summary_scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The record's metrics as flat scalars for ``run.summary``; curves and per-fold rows go
    to their own table and plot instead of bloating the summary."""
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
    for point in metrics.get("tar_at_far", []):
        out[f"tar@far={point['far']:g}"] = point["tar"]
    return out


def thin_roc(fpr: np.ndarray, tpr: np.ndarray, max_points: int = MAX_ROC_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``max_points`` ROC points, log-spaced in FPR so the low-FAR end that face
    verification is read at keeps its detail."""
    if len(fpr) <= max_points or not np.any(fpr > 0):
        return fpr, tpr
    grid = np.geomspace(fpr[fpr > 0].min(), 1.0, max_points)
    idx = np.unique(np.concatenate([[0], np.searchsorted(fpr, grid, side="right") - 1, [len(fpr) - 1]]))
    return fpr[idx], tpr[idx]


class WandbTracker(Tracker):
    """One W&B run per facebench run. A failing call is a warning and is skipped; after a failed
    start nothing more is sent to W&B for this run."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.run: Any = None
        self._step_axes: set[str] = set()

    def _guard(self, action: str, call: Callable[[], None]) -> None:
        if self.run is None:
            return
        try:
            call()
        except Exception as exc:  # a tracker must never fail the run
            log.warning("W&B %s failed (%s: %s); the local record is unaffected", action, type(exc).__name__, exc)

    def start(self, config: dict[str, Any], run_dir: Path) -> None:
        mode = self.cfg.mode or os.environ.get("WANDB_MODE") or "offline"
        try:
            import wandb

            self.run = wandb.init(
                project=self.cfg.project,
                entity=self.cfg.entity,
                mode=mode,
                group=self.cfg.group or sweep_group(),
                tags=list(self.cfg.tags),
                name=Path(run_dir).name,
                config=config,
                dir=str(run_dir),
                reinit="create_new",
            )
        except Exception as exc:  # e.g. no network in online mode, no login
            self.run = None
            log.warning(
                "W&B upload failed: wandb.init (mode %s) raised %s: %s; the run continues and its local record "
                "is written as usual",
                mode,
                type(exc).__name__,
                exc,
            )

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Each training unit restarts its step count, and W&B drops steps that go backwards,
        so every ``unit/`` prefix gets its own step axis (``unit/step``) instead of W&B's step."""

        def call() -> None:
            prefixes = {k.split("/", 1)[0] for k in metrics if "/" in k}
            for prefix in sorted(prefixes - self._step_axes):
                self.run.define_metric(f"{prefix}/step")
                self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
            self._step_axes |= prefixes
            self.run.log({**metrics, **{f"{p}/step": step for p in prefixes}})

        self._guard("log", call)

    def summary(self, metrics: dict[str, Any]) -> None:
        self._guard("summary", lambda: self.run.summary.update(summary_scalars(metrics)))

    def table(self, name: str, table: pd.DataFrame) -> None:
        def call() -> None:
            import wandb

            self.run.log({name: wandb.Table(dataframe=table)})

        self._guard("table", call)

    def roc(self, fpr: np.ndarray, tpr: np.ndarray) -> None:
        def call() -> None:
            import wandb

            x, y = thin_roc(np.asarray(fpr), np.asarray(tpr))
            points = wandb.Table(columns=["fpr", "tpr"], data=np.column_stack([x, y]).tolist())
            self.run.log({"roc": wandb.plot.line(points, "fpr", "tpr", title="ROC (pooled over folds)")})

        self._guard("roc", call)

    def finish(self, status: str) -> None:
        """``run.finish`` can return before wandb-core has written the offline transaction log
        (measured with wandb 0.31: the file still held 7 bytes); ``wandb.teardown`` waits for
        it, so the W&B run directory is complete when facebench reports the run done."""

        def call() -> None:
            import wandb

            self.run.finish(exit_code=0 if status == "complete" else 1)
            wandb.teardown()

        self._guard("finish", call)
        self.run = None
        self._step_axes = set()


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("tracker", "wandb", lambda c, ctx: WandbTracker(c), WandbTrackerConfig)
