"""The workloads of ``python -m facebench.bench``, by name, in the order they run.

Each workload module is imported only when its workload is selected, so ``--only`` of one
workload neither pays for nor depends on the others' imports (some measure plugins that
other developers may be changing).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from facebench.bench.report import Row
from facebench.bench.runner import BenchContext


@dataclass(frozen=True)
class Workload:
    name: str
    module: str
    summary: str

    def __call__(self, ctx: BenchContext) -> list[Row]:
        """Import the workload's module and run it (an import error fails this workload only)."""
        run: Callable[[BenchContext], list[Row]] = importlib.import_module(self.module).run
        return run(ctx)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("local", "facebench.bench.local_layer", "LocallyConnected2d fwd+bwd vs Conv2d and broadcast"),
        Workload("train", "facebench.bench.training", "DeepID2 training via facebench.train vs a minimal loop"),
        Workload("ensemble", "facebench.bench.ensemble", "batched 8-net DeepID2 ensemble vs the nets one by one"),
        Workload("jb_fit", "facebench.bench.joint_bayesian", "Joint Bayesian EM fit vs the per-person loop"),
        Workload("blufr", "facebench.bench.blufr", "BLUFR trial scoring (VR@0.1%, DIR@1%) with Joint Bayesian"),
        Workload("lfw_view2", "facebench.bench.lfw_view2", "LFW View 2 from cached features vs a grid search"),
        Workload("cache", "facebench.bench.data_cache", "second load of LFW from the decoded cache vs the first"),
        Workload("e2e", "facebench.bench.end_to_end", "python -m facebench +method=deepid2: wall time, peak memory"),
    )
}


class UnknownWorkload(ValueError):
    """``--only`` named a workload that does not exist."""


def select(only: str | None) -> dict[str, Workload]:
    """The workloads ``--only NAME[,NAME]`` picks (all when None), in suite order."""
    if not only:
        return dict(WORKLOADS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise UnknownWorkload(
            f"--only {only!r}: unknown workload {', '.join(repr(n) for n in unknown) or '(none given)'}; "
            f"choose from {', '.join(WORKLOADS)}"
        )
    return {n: w for n, w in WORKLOADS.items() if n in names}
