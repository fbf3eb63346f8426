"""``python -m facebench.bench``: fixed, seeded speed workloads against in-process baselines.

Prints a table (ours, baseline, ratio, target, whether it holds, machine load) with the
hardware it ran on and writes a JSON record under ``results/bench/`` (``$FACEBENCH_RESULTS/bench``
when set; see :mod:`facebench.bench.report` for its fields). Speed claims live here, in the
output of a run, never in tests: they depend on the machine and on what else it is doing.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import torch

from facebench.bench.runner import BenchContext, run_suite
from facebench.bench.workloads import WORKLOADS, UnknownWorkload, select


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m facebench.bench",
        description="Speed benchmarks of facebench against baselines measured in the same process.",
        epilog="workloads (in the order they run):\n" + "\n".join(f"  {w.name:<10} {w.summary}" for w in WORKLOADS.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true",
                   help="about a minute on a quiet machine: fewer repeats, some sizes reduced (noted per row)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where torch workloads run (default: cpu)")
    p.add_argument("--only", metavar="NAME[,NAME]", help="run only these workloads")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's default, recorded)")
    p.add_argument("--blas-threads", type=int, metavar="N",
                   help="OpenBLAS threads for numpy and scipy (default: --threads); subprocesses get "
                        "OMP_NUM_THREADS=--threads and OPENBLAS/MKL_NUM_THREADS=--blas-threads")
    p.add_argument("--seed", type=int, default=0, help="seed of every generated input (default: 0)")
    p.add_argument("--out", type=Path, help="record directory (default: $FACEBENCH_RESULTS/bench, else results/bench)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Run the selected workloads; returns the exit status (2 for a usage error, 1 when a
    workload failed, 0 otherwise: a target that does not hold is a result, not an error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    try:
        workloads = select(args.only)
    except UnknownWorkload as exc:
        print(f"facebench.bench: error: {exc}", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("facebench.bench: error: --device cuda: CUDA is not available on this machine (no GPU, or a CPU-only "
              "torch build); run without --device or with --device cpu", file=sys.stderr)
        return 2
    for flag, value in (("--threads", args.threads), ("--blas-threads", args.blas_threads)):
        if value is not None and value < 1:
            print(f"facebench.bench: error: {flag} {value}: give a positive number of threads", file=sys.stderr)
            return 2
    default_threads = torch.get_num_threads()
    threads = args.threads or default_threads
    ctx = BenchContext(quick=args.quick, device=torch.device(args.device), threads=threads,
                       blas_threads=args.blas_threads or threads, seed=args.seed)
    out = args.out or Path(os.environ.get("FACEBENCH_RESULTS", "results")) / "bench"
    rows, _ = run_suite(dict(workloads), ctx, out, argv, default_threads)
    return 1 if any(r.status == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
