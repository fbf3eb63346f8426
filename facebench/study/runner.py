"""Running a study's sweeps: each entry's sweeps in order (a later verifier re-scores the
checkpoints the first one's sweep left), ``workers`` entries at once.

Why several at once: one training job of the study's small net uses two cores poorly (torch's
intra-op threads wait on each other at every layer), so on a machine's cores, jobs that each
get their share of the cores finish more work per hour than jobs that each get all of them,
one after another (``python -m facebench.bench --only study_workers`` measures the ratio). A
Hydra launcher parallelises the jobs of one sweep; an entry's final sweep is only as many jobs
as it has seeds, so the study runs whole entries side by side instead.

Stopping: SIGTERM to the study is passed on to every running sweep (a terminal's Ctrl-C reaches
them itself, as the whole foreground group gets it); their trainings save a checkpoint at the
end of the step, the study starts nothing more and exits saying so, and the same command
continues.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from facebench.errors import FacebenchError
from facebench.study.spec import Sweep

#: The variables that set a process's compute threads (torch, OpenMP, the BLAS libraries).
THREAD_COUNT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cores() -> int:
    """The cores this process may run on (its affinity where the OS says, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def sweep_environment(workers: int, base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment of one of ``workers`` sweeps run at once: its share of the cores as every
    library's thread count. One worker keeps the environment as it is (all cores)."""
    env = dict(os.environ if base is None else base)
    if workers > 1:
        share = str(max(1, cores() // workers))
        env.update({name: share for name in THREAD_COUNT_VARIABLES})
    return env


class SweepRunner:
    """Runs chains of sweeps (each chain in order, ``workers`` chains at once) as subprocesses."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise FacebenchError(f"study workers={workers}: give 1 or more (how many entries run at once)")
        self.workers = workers
        self.environment = sweep_environment(workers)
        self._running: set[subprocess.Popen[Any]] = set()
        self._lock = threading.Lock()
        self._stopped: Optional[int] = None

    def _forward(self, signum: int, frame: Any) -> None:
        self._stopped = signum
        if signum == signal.SIGTERM:
            with self._lock:
                for proc in self._running:
                    proc.send_signal(signum)

    def _call(self, sweep: Sweep, label: str) -> None:
        print(f"facebench.study: {label}: {' '.join(sweep.command()[1:])}", flush=True)
        began = time.monotonic()
        with self._lock:
            if self._stopped is not None:
                raise FacebenchError(f"{label}: not started, the study was stopped")
            proc = subprocess.Popen(sweep.command(), env=self.environment)
            self._running.add(proc)
        try:
            code = proc.wait()
        finally:
            with self._lock:
                self._running.discard(proc)
        if code != 0:
            raise FacebenchError(f"{label} failed (exit {code}); its jobs' records say why")
        print(f"facebench.study: {label}: done in {time.monotonic() - began:.0f} s", flush=True)

    def run(self, chains: list[list[Sweep]]) -> None:
        """Every chain to its end, or to its first failed sweep; then raises naming each failure
        (a failed entry does not stop the others: a study runs for hours)."""
        total = sum(len(chain) for chain in chains)
        counter = iter(range(1, total + 1))
        failures: list[str] = []

        def run_chain(chain: list[Sweep]) -> None:
            for sweep in chain:
                label = f"[{next(counter)}/{total}] {sweep.stage} {sweep.entry} ({sweep.verifier})"
                try:
                    self._call(sweep, label)
                except FacebenchError as exc:
                    failures.append(str(exc))
                    return

        main_thread = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, self._forward) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
        try:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                list(pool.map(run_chain, chains))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self._stopped is not None:
            raise FacebenchError(
                f"stopped by {signal.Signals(self._stopped).name}; running trainings saved checkpoints. "
                "Run the same command again: complete runs are kept and skipped, cut-short ones resume."
            )
        if failures:
            raise FacebenchError("; ".join(failures) + ". Fix the cause and run the same command again: complete "
                                 "runs are kept and skipped.")
