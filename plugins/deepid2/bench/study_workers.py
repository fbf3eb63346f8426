"""Workload ``study_workers``: the study's entries side by side (``python -m facebench.study
workers=2``) against one after another.

The question ``workers`` answers: on this machine's cores, do two training jobs that each get
half of them finish sooner than the same two jobs one after another with all of them? Both
sides run the same two jobs (:mod:`facebench_plugins.deepid2.bench.train_job`, the study's net
and batch, each a process of its own) with the environments the study's runner gives its sweeps
(:func:`facebench.study.runner.sweep_environment`): ours two at once with ``workers=2``, the
baseline one after the other with ``workers=1``. The ratio is the baseline's wall time over
ours (> 1: side by side finishes the study sooner). A CPU question: skipped on a GPU and on a
single core.
"""
from __future__ import annotations

import subprocess
import sys

from facebench.bench.report import Row, Target, skipped, time_ratio
from facebench.bench.runner import BenchContext
from facebench.bench.timing import measure, watch_load
from facebench.study.runner import THREAD_COUNT_VARIABLES, cores, sweep_environment
from facebench_plugins.deepid2.bench.end_to_end import last_error

CASE = "two study jobs side by side (workers=2) vs one after another"
TIMEOUT = 1800


def _environment(workers: int) -> dict[str, str]:
    """The runner's environment for one of ``workers`` sweeps; one worker gets every core
    explicitly (the bench's own ``--threads`` must not shrink the baseline)."""
    if workers > 1:
        return sweep_environment(workers)
    return {**sweep_environment(1), **{name: str(cores()) for name in THREAD_COUNT_VARIABLES}}


def _start(steps: int, seed: int, workers: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "facebench_plugins.deepid2.bench.train_job", "--steps", str(steps),
               "--seed", str(seed)]
    return subprocess.Popen(command, env=_environment(workers), stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"train_job exited with {proc.returncode}: {last_error(err)}")


def run(ctx: BenchContext) -> list[Row]:
    target = Target(">=", 1.1)
    if ctx.device.type != "cpu":
        return [skipped("study_workers", CASE, "a CPU question: on a GPU the study's sweeps share the device", target)]
    if cores() < 2:
        return [skipped("study_workers", CASE, "needs 2 or more cores", target)]
    steps = ctx.pick(100, 15)

    def side_by_side() -> None:
        for proc in [_start(steps, seed, 2) for seed in (0, 1)]:
            _finish(proc)

    def one_after_another() -> None:
        for seed in (0, 1):
            _finish(_start(steps, seed, 1))

    with watch_load() as load:
        t = measure({"ours": side_by_side, "baseline": one_after_another}, repeats=ctx.pick(2, 1), warmup=0)
    share = max(1, cores() // 2)
    return [Row("study_workers", CASE, t["ours"], t["baseline"],
                f"the same two jobs one after another, each on all {cores()} cores",
                time_ratio(t["ours"], t["baseline"]), "baseline / ours wall time", target, load,
                notes=[f"each job: a process training the study's net (softmax, batch 128) for {steps} steps on "
                       f"random faces; side by side each on {share} thread(s)"],
                details={"steps": steps, "cores": cores(), "threads_side_by_side": share})]
