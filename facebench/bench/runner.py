"""Running the benchmark suite: threads, hardware facts, the workloads, the record.

Threads are set once for the whole run, for torch and for the BLAS library numpy and scipy
call, and recorded, because on a small machine they decide the result: with two cores
shared with other processes, two OpenBLAS threads that spin-wait for each other can be many
times slower than one. The thread environment variables are also exported so that
subprocesses (the end-to-end workload) run with the same settings: OMP_NUM_THREADS (torch's
intra-op pool) as the torch threads, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS as the BLAS
threads.
"""
from __future__ import annotations

import os
import platform
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

# numpy and scipy each bundle their own OpenBLAS: both must be loaded before the thread
# limit is applied, or the one loaded later keeps its default thread count.
import numpy  # noqa: F401
import scipy.linalg  # noqa: F401
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from facebench.bench.report import SCHEMA, Row, format_table, write_record
from facebench.bench.timing import watch_load
from facebench.results import package_versions

PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "pillow")


@dataclass(frozen=True)
class BenchContext:
    """What every workload needs to know about this run."""

    quick: bool
    device: torch.device
    threads: int
    blas_threads: int
    seed: int = 0

    def sync(self) -> None:
        """Wait for queued device work, so that timings count it (a no-op on the CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def pick(self, full: int, quick: int) -> int:
        """A size or repeat count: ``quick`` under ``--quick``, else ``full``."""
        return quick if self.quick else full

    def shared_data(self) -> Optional[Path]:
        """The shared data folder ($FACEBENCH_SHARED_DATA, else ../shared/data beside the
        repository), or None when it does not exist."""
        repo = Path(__file__).resolve().parents[2]
        path = Path(os.environ.get("FACEBENCH_SHARED_DATA", repo.parent / "shared" / "data"))
        return path if path.is_dir() else None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(ctx: BenchContext, torch_default_threads: int, thread_env: dict[str, str]) -> dict[str, Any]:
    versions = package_versions(PACKAGES)
    blas = [
        {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer", "filepath")}
        for lib in threadpool_info()
    ]
    return {
        "cpu_model": cpu_model(),
        # What the kernels dispatch to: torch's CPU capability (ATEN_CPU_CAPABILITY=avx2 forces the
        # AVX2 code path), the BLAS core type (OPENBLAS_CORETYPE forces one, and slows numpy's BLAS).
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas_core_types": sorted({str(lib.get("architecture")) for lib in threadpool_info()
                                   if lib.get("internal_api") in ("openblas", "mkl", "blis")}),
        "kernel_env": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE") if k in os.environ},
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_default_threads": torch_default_threads,
        "blas_threads": ctx.blas_threads,
        "blas_libraries": blas,
        "thread_env": thread_env,
        "device": ctx.device.type,
        "device_name": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else None,
        "python": platform.python_version(),
        "packages": versions,
    }


def _run_one(name: str, run: Callable[[BenchContext], list[Row]], ctx: BenchContext) -> list[Row]:
    """The rows of one workload; a workload that raises becomes one failed row naming the error,
    so one broken workload does not hide the others' results."""
    try:
        with watch_load() as load:
            rows = run(ctx)
    except Exception as exc:  # reported in the table and the record, not swallowed
        row = Row(name, "-", status="failed", notes=[f"{type(exc).__name__}: {exc}"])
        row.details["traceback"] = traceback.format_exc()
        return [row]
    for row in rows:
        if row.load is None and row.status == "ok":
            row.load = load
    return rows


def run_suite(
    workloads: dict[str, Callable[[BenchContext], list[Row]]],
    ctx: BenchContext,
    out_dir: Path,
    argv: list[str],
    torch_default_threads: int,
    echo: Callable[[str], None] = print,
) -> tuple[list[Row], Path]:
    """Run ``workloads`` in order under the context's thread settings; print the table and
    write the record. Returns the rows and the record's path."""
    started = datetime.now(timezone.utc).isoformat()
    thread_env = {"OMP_NUM_THREADS": str(ctx.threads), "OPENBLAS_NUM_THREADS": str(ctx.blas_threads),
                  "MKL_NUM_THREADS": str(ctx.blas_threads)}
    previous = {k: os.environ.get(k) for k in thread_env}
    os.environ.update(thread_env)
    torch.set_num_threads(ctx.threads)
    rows: list[Row] = []
    try:
        with threadpool_limits(limits=ctx.blas_threads, user_api="blas"):
            info = hardware(ctx, torch_default_threads, thread_env)
            for name, run in workloads.items():
                echo(f"facebench.bench: running {name} ...")
                rows.extend(_run_one(name, run, ctx))
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        torch.set_num_threads(torch_default_threads)
    echo(format_table(rows, info, ctx.quick))
    record = {
        "schema": SCHEMA,
        "started": started,
        "finished": datetime.now(timezone.utc).isoformat(),
        "argv": argv,
        "quick": ctx.quick,
        "hardware": info,
        "rows": [r.to_dict() for r in rows],
    }
    path = write_record(out_dir, record)
    echo(f"facebench.bench: record written: {path}")
    return rows, path
