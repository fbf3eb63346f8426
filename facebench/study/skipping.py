"""Which of a study's sweeps need not be launched: a sweep of one job whose complete record
already exists.

Why: the final runs are one job per (seed, fold, verifier), 60 sweeps an entry, and a study is
run again in every sitting until it is done. Each job would skip itself (``reuse_complete``), but
only after its process has started and imported the stack, about 5-10 seconds here: by the last
sittings, most of an hour spent launching jobs that do nothing. Composing the job's config in
this process and looking its key up among the finished records costs a fraction of a second.
Sweeps of several jobs (a search, a sweep over seeds) are launched as before and skip job by job.
"""
from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from facebench.config import compose
from facebench.results import finished_records
from facebench.run import config_key
from facebench.study.spec import Sweep


def one_job_key(sweep: Sweep) -> str | None:
    """The config key of the sweep's one job; None for a sweep of several jobs."""
    overrides = OverridesParser.create().parse_overrides(sweep.argv)
    if any(o.is_sweep_override() for o in overrides):
        return None
    return config_key(compose(sweep.argv))


def pending(chains: list[list[Sweep]]) -> tuple[list[list[Sweep]], list[Sweep]]:
    """The chains less their sweeps whose one job has a finished record under the sweep's
    results root, and those sweeps."""
    finished: dict[Path, set[str]] = {}
    kept, done = [], []
    for chain in chains:
        left = []
        for sweep in chain:
            key = one_job_key(sweep)
            if key is not None and sweep.results_root not in finished:
                finished[sweep.results_root] = {str(r.get("config_key")) for _, r in finished_records(sweep.results_root)}
            if key is not None and key in finished[sweep.results_root]:
                done.append(sweep)
            else:
                left.append(sweep)
        kept.append(left)
    return kept, done
