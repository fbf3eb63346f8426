"""Repeated timing: warm-up, interleaved repeats, median and spread, machine load.

Why interleaved: on a shared machine the load drifts during a run. Timing ours and the
baseline in alternation (A B A B ...) exposes both to the same drift, so their ratio is
fairer than timing all of A and then all of B. Why the median and the inter-quartile range:
a single slow repeat (a page fault, another process waking up) moves the mean but not the
median, and the IQR says how much the repeats disagree without being set by one outlier.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Median and spread of repeated measurements of one quantity (seconds, or images/s)."""

    unit: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def q1(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def q3(self) -> float:
        return float(np.percentile(self.samples, 75))

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "median": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "min": min(self.samples),
            "max": max(self.samples),
            "n": len(self.samples),
            "samples": list(self.samples),
        }

    def rate(self, amount: float, unit: str) -> "Stats":
        """``amount`` per sample second (e.g. images per second) for every sample."""
        return Stats(unit, tuple(amount / s for s in self.samples))


@dataclass
class Load:
    """The 1-minute load average before and after a measurement, against the CPU count, and
    the CPU this process got.

    ``loaded`` is set when either reading exceeds the number of CPUs this process may use:
    more runnable processes than cores (this bench's own threads included) means someone
    waited for a CPU during the measurement, and timings are then slower and noisier than
    on a quiet machine. ``cpu_share`` is this process's CPU seconds per wall second over the
    block (children excluded): about the thread count on a quiet machine, far less when other
    processes take the cores, which tells how much a loaded timing is inflated.
    """

    before: float
    after: float = float("nan")
    cpus: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    cpu_share: float = float("nan")

    @property
    def loaded(self) -> bool:
        return max(self.before, self.after) > self.cpus

    def to_dict(self) -> dict[str, Any]:
        return {"loadavg_before": self.before, "loadavg_after": self.after, "cpus": self.cpus,
                "loaded": self.loaded, "cpu_share": self.cpu_share}


@contextmanager
def watch_load() -> Iterator[Load]:
    """A :class:`Load` whose ``after`` and ``cpu_share`` are filled in when the block ends."""
    load = Load(before=os.getloadavg()[0])
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield load
    finally:
        load.after = os.getloadavg()[0]
        load.cpu_share = (time.process_time() - cpu) / max(time.perf_counter() - wall, 1e-9)


def measure(
    cases: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, Stats]:
    """Seconds per call of every case: ``warmup`` untimed calls each, then ``repeats``
    interleaved timed rounds. ``sync`` waits for queued device work (CUDA) before the clock
    is read, so asynchronous kernels are counted where they run."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
            sync()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            samples[name].append(time.perf_counter() - start)
    return {name: Stats("s", tuple(values)) for name, values in samples.items()}
