"""Multirun jobs that stay apart and a sweep that reports its failures.

Hydra 1.3's launchers already run every job of a batch when one raises, but the basic
sweeper then re-raises the first failure: the sweep exits with one traceback, names no other
failed job and skips ``on_multirun_end``. facebench instead ends a failed job inside the task
(``facebench.__main__.task``): it makes sure the job's run directory holds a record with
status ``failed`` and the error, logs the error and returns that record, so Hydra sees a
finished job. :class:`SweepSummary` (registered in ``conf/config.yaml`` under
``hydra.callbacks``) then reads every record under the sweep directory, prints which runs
completed and which failed with their error, and exits with status 1 if any failed. In an
optimising sweep (``objective`` set) a training that diverged is not a failure of the sweep: the
optimiser asked for a setting that diverges and was told the trial failed (``objective_value``);
the summary counts such trials apart and the sweep succeeds.
"""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from facebench.labels import run_label
from facebench.results import RECORD_FILE, RecordError, diverged, read_record, write_record

log = logging.getLogger("facebench")

#: Launchers that run several jobs at once on this machine; each of their jobs gets one torch
#: thread, so that N jobs on N cores do not each start N threads and thrash.
LOCAL_PARALLEL_LAUNCHERS = (
    "hydra_plugins.hydra_joblib_launcher.",
    "hydra_plugins.facebench_gpu_pool.",
)


def isolate_job(hydra_cfg: Any) -> None:
    """Per-job process settings of a multirun job (seeding is per run already, in ``execute``)."""
    target = str(OmegaConf.select(hydra_cfg, "launcher._target_", default=""))
    if target.startswith(LOCAL_PARALLEL_LAUNCHERS):
        import torch

        torch.set_num_threads(1)


def record_failure(cfg: DictConfig, run_dir: Path, exc: BaseException, show_traceback: bool) -> dict[str, Any]:
    """The failed record of a multirun job, written here unless ``execute`` wrote it already
    (errors found before a run starts, such as a bad config value, leave none)."""
    error = f"{type(exc).__name__}: {exc}"
    log.error("job failed: %s", error, exc_info=exc if show_traceback else None)
    path = run_dir / RECORD_FILE
    if path.is_file():
        try:
            return read_record(path)
        except RecordError:
            pass
    record = {
        "status": "failed",
        "method": run_label(cfg),
        "protocol": {"name": OmegaConf.select(cfg, "protocol.name", default=None, throw_on_resolution_failure=False)},
        "regime": OmegaConf.select(cfg, "regime", default=None, throw_on_resolution_failure=False),
        "seed": OmegaConf.select(cfg, "seed", default=None, throw_on_resolution_failure=False),
        "metrics": {},
        "units": [],
        "error": error,
        "run_dir": str(run_dir),
    }
    write_record(run_dir, record)
    return record


def drop_empty_job_dir(job_dir: Path) -> None:
    """Remove a run folder that holds only Hydra's own files (a run skipped by reuse_complete), so
    it is not listed as a run without a record."""
    if all(p.name == ".hydra" or p.suffix == ".log" for p in job_dir.iterdir()):
        shutil.rmtree(job_dir, ignore_errors=True)


def _job_overrides(job_dir: Path, output_subdir: Any) -> list[str]:
    path = job_dir / str(output_subdir) / "overrides.yaml" if output_subdir else None
    return [str(o) for o in OmegaConf.load(path)] if path and path.is_file() else []


class SweepSummary(Callback):
    """Prints, after a multirun, how its runs ended; exit status 1 when any run failed (a
    diverged trial of an optimising sweep is tried, not failed)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        records: list[tuple[Path, dict[str, Any]]] = []
        for path in sorted(sweep_dir.rglob(RECORD_FILE)):
            try:
                records.append((path.parent, read_record(path)))
            except RecordError as exc:
                records.append((path.parent, {"status": "failed", "error": str(exc)}))
        if not records:
            return
        optimising = bool(OmegaConf.select(config, "objective", default=None))
        outcome = {d: "diverged" if optimising and diverged(r) else r["status"] for d, r in records}
        counts = {s: sum(o == s for o in outcome.values()) for s in ("complete", "partial", "diverged", "failed")}
        print(
            f"facebench: sweep {sweep_dir}: {len(records)} runs, "
            + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
            + (" (diverged: settings the optimiser tried, told to it as failed trials)" if counts["diverged"] else "")
        )
        failed = [(d, r) for d, r in records if outcome[d] == "failed"]
        if not failed:
            return
        subdir = OmegaConf.select(config, "hydra.output_subdir", default=None)
        overrides = {d: _job_overrides(d, subdir) for d, _ in records}
        common = set.intersection(*(set(o) for o in overrides.values()))
        for job_dir, record in failed:
            own = " ".join(o for o in overrides[job_dir] if o not in common)
            where = job_dir.relative_to(sweep_dir)
            print(f"facebench: failed: {where}{f' ({own})' if own else ''}: {record.get('error')}", file=sys.stderr)
        sys.exit(1)

