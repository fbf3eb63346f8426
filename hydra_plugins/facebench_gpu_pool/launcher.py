"""``hydra/launcher=gpu_pool``: each job of a sweep in a fresh process on one GPU of a pool.

A job is a new ``python -m hydra_plugins.facebench_gpu_pool.worker`` process whose
CUDA_VISIBLE_DEVICES names one device of the pool, so CUDA in that process sees exactly that
GPU (as ``cuda:0``) from its first import on, and nothing (a CUDA context, torch threads, RNG
state, an open tracker) carries over from one job to the next. At most ``jobs_per_device``
jobs hold a device at once; the next job starts on whichever device frees first.

A job whose task raises comes back as a failed JobReturn, and so does a process that ends
without a result (killed, out of memory, a crash in native code), with its exit status; the
other jobs run to the end either way. Hydra's basic sweeper re-raises the first failure once
the batch is done (facebench's task returns a failed record instead, see facebench.sweeps).
"""
# No `from __future__ import annotations`: Hydra's plugin scan executes this module before it
# is in sys.modules, where dataclasses cannot resolve string annotations.

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)

WORKER = "hydra_plugins.facebench_gpu_pool.worker"
#: How often finished jobs are looked for; jobs last seconds to hours.
POLL_SECONDS = 0.2


def visible_devices(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The GPUs this process may hand out: the entries of CUDA_VISIBLE_DEVICES when it is set
    (they are what a child must be given to see the same GPU), else 0..N-1 as torch counts them."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def device_slots(devices: Sequence[str], jobs_per_device: int) -> list[str]:
    """One entry per job that may run at once, devices interleaved so that jobs spread over the
    GPUs before any GPU takes a second one."""
    if not devices:
        raise ValueError(
            "gpu_pool: no GPU to run on (none visible); set hydra.launcher.devices=[...] to the devices to use"
        )
    if len(set(devices)) != len(devices):
        raise ValueError(
            f"gpu_pool: hydra.launcher.devices={list(devices)} names a device twice; "
            "set hydra.launcher.jobs_per_device to run several jobs on one device"
        )
    if jobs_per_device < 1:
        raise ValueError(f"gpu_pool: hydra.launcher.jobs_per_device={jobs_per_device}: use 1 or more")
    return [d for _ in range(jobs_per_device) for d in devices]


@dataclass
class JobProcess:
    """A running job: its worker process and where its result will be."""

    idx: int
    overrides: Sequence[str]
    device: str
    process: subprocess.Popen
    result: Path
    started: float

    def finish(self) -> JobReturn:
        """The job's JobReturn once its process has ended: the one the worker wrote, else a
        failed one that says how the process ended."""
        code = self.process.wait()
        try:
            ret = cloudpickle.loads(self.result.read_bytes())
        except Exception as exc:  # no result file (the process died) or one that does not load
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            ret = JobReturn(overrides=list(self.overrides), status=JobStatus.FAILED)
            ret.return_value = RuntimeError(
                f"job #{self.idx} on device {self.device} {how} without a result ({type(exc).__name__}); "
                "see the job's log and stderr above"
            )
        seconds = time.monotonic() - self.started
        if ret.status == JobStatus.FAILED:
            log.error(f"#{self.idx} failed on device {self.device} after {seconds:.1f} s: {ret._return_value}")
        else:
            log.info(f"#{self.idx} finished on device {self.device} in {seconds:.1f} s")
        return ret


def start_job(batch: Path, position: int, idx: int, overrides: Sequence[str], device: str, scratch: Path) -> JobProcess:
    """Start the worker for job ``position`` of ``batch`` with ``device`` as its only GPU."""
    result = scratch / f"result-{position}.pkl"
    process = subprocess.Popen(
        [sys.executable, "-m", WORKER, str(batch), str(position), str(result)],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": device},
    )
    log.info(f"\t#{idx} on device {device}: {' '.join(filter_overrides(overrides))}")
    return JobProcess(idx, overrides, device, process, result, time.monotonic())


class GpuPoolLauncher(Launcher):
    def __init__(self, devices: Optional[Sequence[str]] = None, jobs_per_device: int = 1) -> None:
        self.devices = [str(d) for d in devices] if devices is not None else None
        self.jobs_per_device = jobs_per_device
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        free = deque(device_slots(self.devices if self.devices is not None else visible_devices(), self.jobs_per_device))
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(
            f"GPU pool: {len(job_overrides)} jobs on devices {sorted(set(free))}, "
            f"{self.jobs_per_device} per device at a time"
        )
        pending = deque(enumerate(job_overrides))
        running: dict[int, JobProcess] = {}
        returns: dict[int, JobReturn] = {}
        with tempfile.TemporaryDirectory(prefix="facebench-gpu-pool-") as tmp:
            scratch = Path(tmp)
            batch = scratch / "batch.pkl"
            batch.write_bytes(
                cloudpickle.dumps(
                    {
                        "hydra_context": self.hydra_context,
                        "config": self.config,
                        "task_function": self.task_function,
                        "singleton_state": Singleton.get_state(),
                        "job_overrides": [list(o) for o in job_overrides],
                        "initial_job_idx": initial_job_idx,
                    }
                )
            )
            try:
                while pending or running:
                    while pending and free:
                        position, overrides = pending.popleft()
                        running[position] = start_job(
                            batch, position, initial_job_idx + position, overrides, free.popleft(), scratch
                        )
                    time.sleep(POLL_SECONDS)
                    for position, job in list(running.items()):
                        if job.process.poll() is not None:
                            returns[position] = running.pop(position).finish()
                            free.append(job.device)
            except BaseException:
                # Ctrl-C reached the jobs too; anything else must not leave them running unseen.
                for job in running.values():
                    job.process.terminate()
                for job in running.values():
                    job.process.wait()
                raise
        failed = [r for r in returns.values() if r.status == JobStatus.FAILED]
        if failed:
            log.error(f"GPU pool: {len(failed)} of {len(returns)} jobs failed")
        return [returns[i] for i in range(len(job_overrides))]
