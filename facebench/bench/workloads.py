"""The workloads of ``python -m facebench.bench``, by name, in the order they run: the core's,
then those plugins register (the core measures no method itself).

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


#: The core's own workloads; plugins add theirs with ``registry.add_workload`` (the DeepID2
#: plugin: training, the ensemble, Joint Bayesian, the protocols scored with it, end to end).
CORE_WORKLOADS = (
    Workload("local", "facebench.bench.local_layer", "LocallyConnected2d fwd+bwd vs Conv2d and broadcast"),
    Workload("cache", "facebench.bench.data_cache", "second load of LFW from the decoded cache vs the first"),
)


def all_workloads() -> dict[str, Workload]:
    """The core's workloads, then every plugin's, in registration order."""
    from facebench.registry import get_registry

    found = {w.name: w for w in CORE_WORKLOADS}
    for w in get_registry().workloads:
        if w.name in found:
            raise ValueError(f"workload {w.name!r} is registered twice ({w.module} and {found[w.name].module})")
        found[w.name] = Workload(w.name, w.module, w.summary)
    return found


WORKLOADS: dict[str, Workload] = all_workloads()


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
