"""Workload ``e2e``: the default offline run, ``python -m facebench +method=deepid2``, end to end.

A subprocess, as a user starts it, with a fresh cache and results directory (so the
synthetic data is generated and decoded as on a first run, and the user's own results are
left alone) and the thread settings of this bench. Measured: wall time (target <= 90 s on
2 cores) and peak resident memory (target < 2 GB). The peak is the run's
``ru_maxrss`` as seen by a small wrapper process that starts it (``PEAK_WRAPPER``), not by
the bench itself: a child's ``ru_maxrss`` includes the memory of the process it was forked
from, so a bench holding gigabytes from earlier workloads would be charged to the run
(measured: 5.4 GB reported for a run whose own peak, under ``/usr/bin/time -v``, was 1.8 GB).
Skipped under ``--quick``. Until the ``deepid2`` preset exists, the ``deepid`` preset runs
and the row says so.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from importlib import resources

from facebench.bench.report import Row, Target, skipped
from facebench.bench.runner import BenchContext
from facebench.bench.timing import Stats, watch_load
from facebench.config import CONFIG_MODULE

WALL_LIMIT = 90.0
MEMORY_LIMIT_GB = 2.0
TIMEOUT = 1800
PEAK_MARKER = "facebench-bench-peak-rss="
#: Runs the command given after it, then reports on stderr the peak resident set of that
#: command (the largest of its waited-for descendants: only the run itself here).
PEAK_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    f"print('{PEAK_MARKER}' + str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss), file=sys.stderr); "
    "sys.exit(code)"
)


def peak_gb(stderr: str) -> float:
    """The wrapper's report in GB (``ru_maxrss`` is in kB on Linux, in bytes on macOS)."""
    found = re.findall(rf"^{PEAK_MARKER}(\d+)$", stderr, flags=re.MULTILINE)
    if not found:
        raise RuntimeError("the end-to-end run's wrapper reported no peak memory")
    return int(found[-1]) * (1 if sys.platform == "darwin" else 1024) / 1e9


def preset() -> str:
    """deepid2 when a registered plugin ships its method preset, else deepid."""
    from facebench.registry import get_registry

    packages = [CONFIG_MODULE, *(p.package for p in get_registry().preset_packages)]
    found = any(resources.files(package).joinpath("method", "deepid2.yaml").is_file() for package in packages)
    return "deepid2" if found else "deepid"


def last_error(stderr: str) -> str:
    """The line of a failed run's stderr that names the error (the last exception or
    ``facebench: error:`` line), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"(facebench: error:|[\w.]+(Error|Exception|Interrupt)\b)", line)]
    return (errors or lines or ["(no output on stderr)"])[-1]


def run(ctx: BenchContext) -> list[Row]:
    method = preset()
    wall_case, memory_case = f"+method={method}: wall", f"+method={method}: peak memory"
    if ctx.quick:
        reason = "skipped under --quick (a full training run)"
        return [skipped("e2e", wall_case, reason, Target("<=", WALL_LIMIT, on="ours", unit="s")),
                skipped("e2e", memory_case, reason, Target("<", MEMORY_LIMIT_GB, on="ours", unit="GB"))]
    with tempfile.TemporaryDirectory(prefix="facebench-bench-e2e-") as tmp:
        env = {**os.environ, "FACEBENCH_CACHE": f"{tmp}/cache", "FACEBENCH_RESULTS": f"{tmp}/results",
               "WANDB_MODE": "disabled"}
        command = [sys.executable, "-m", "facebench", f"+method={method}", f"device={ctx.device.type}"]
        with watch_load() as load:
            began = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *command], env=env, capture_output=True,
                                  text=True, timeout=TIMEOUT)
            wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} exited with {proc.returncode} after {wall:.0f} s: "
                           f"{last_error(re.sub(rf'^{PEAK_MARKER}.*$', '', proc.stderr, flags=re.MULTILINE))}")
    details = {"command": command[1:], "stdout_tail": proc.stdout[-500:], "fresh_cache": True}
    notes = [] if method == "deepid2" else ["the deepid2 method preset is not installed yet: +method=deepid ran instead"]
    wall_row = Row("e2e", wall_case, Stats("s", (wall,)), ratio_def="-",
                   target=Target("<=", WALL_LIMIT, on="ours", unit="s"), load=load,
                   notes=notes + ["timed once, fresh cache"], details=details)
    memory = Row("e2e", memory_case, Stats("GB", (peak_gb(proc.stderr),)), ratio_def="-",
                 target=Target("<", MEMORY_LIMIT_GB, on="ours", unit="GB"), load=load, notes=list(notes),
                 details=details)
    return [wall_row, memory]
