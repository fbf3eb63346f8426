"""What one benchmark run reports: rows with targets, the printed table, the JSON record.

The JSON record (``results/bench/bench-<UTC timestamp>.json``, written atomically) holds:

- ``schema``: ``"facebench.bench/1"``; ``started``, ``finished``: ISO-8601 UTC times;
  ``argv``: the command-line arguments; ``quick``: whether ``--quick`` reduced the run;
- ``hardware``: ``cpu_model``, ``cpus`` (usable by this process), ``cpu_count``,
  ``torch_threads``, ``torch_default_threads``, ``blas_threads``, ``blas_libraries``,
  ``thread_env`` (the OMP/OpenBLAS/MKL variables this run set), ``device``,
  ``device_name``, ``python``, ``packages``;
- ``rows``: one per comparison, each with ``workload``, ``case``, ``status`` (ok | skipped |
  failed), ``ours`` and ``baseline`` (``unit``, ``median``, ``q1``, ``q3``, ``min``, ``max``,
  ``n``, ``samples``; null when not measured), ``baseline_name``, ``ratio``, ``ratio_def``
  (what the ratio divides), ``target`` (the text, e.g. ``"<= 1.3"``), ``holds`` (true, false,
  or null when there is nothing to check), ``load`` (``loadavg_before``, ``loadavg_after``,
  ``cpus``, ``loaded``, ``cpu_share``), ``notes`` and ``details`` (workload-specific facts such as sizes,
  iterations, or the agreement of results).
"""
from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from facebench.bench.timing import Load, Stats
from facebench.atomic_io import atomic_write_bytes
from facebench.results import json_safe

SCHEMA = "facebench.bench/1"
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge}


@dataclass(frozen=True)
class Target:
    """A goal on the ratio (``on="ratio"``) or on our median itself (``on="ours"``, in ``unit``)."""

    op: str
    value: float
    on: str = "ratio"
    unit: str = ""

    def text(self) -> str:
        if self.on == "ratio":
            return f"{self.op} {self.value:g}"
        return f"ours {self.op} {self.value:g} {self.unit}".rstrip()

    def check(self, row: "Row") -> Optional[bool]:
        value = row.ratio if self.on == "ratio" else (row.ours.median if row.ours else None)
        if value is None or not math.isfinite(value):
            return None
        return bool(_OPS[self.op](value, self.value))


@dataclass
class Row:
    """One comparison of ours against a baseline (or against an absolute target)."""

    workload: str
    case: str
    ours: Optional[Stats] = None
    baseline: Optional[Stats] = None
    baseline_name: str = ""
    ratio: Optional[float] = None
    ratio_def: str = ""
    target: Optional[Target] = None
    load: Optional[Load] = None
    status: str = "ok"
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> Optional[bool]:
        return self.target.check(self) if self.target and self.status == "ok" else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "case": self.case,
            "status": self.status,
            "ours": self.ours.to_dict() if self.ours else None,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "ratio_def": self.ratio_def,
            "target": self.target.text() if self.target else None,
            "holds": self.holds,
            "load": self.load.to_dict() if self.load else None,
            "notes": self.notes,
            "details": self.details,
        }


def skipped(workload: str, case: str, reason: str, target: Optional[Target] = None) -> Row:
    """A row that says why a workload did not run (absent module, --quick, missing data)."""
    return Row(workload, case, target=target, status="skipped", notes=[reason])


def time_ratio(ours: Stats, baseline: Stats) -> float:
    """How many times longer the baseline takes than ours (> 1: ours is faster)."""
    return baseline.median / ours.median


def _value(stats: Optional[Stats]) -> str:
    if stats is None:
        return "-"
    scale, unit = 1.0, stats.unit
    if stats.unit == "s" and stats.median < 1.0:
        scale, unit = 1e3, "ms"
    m, lo, hi = (v * scale for v in (stats.median, stats.q1, stats.q3))
    digits = 0 if m >= 100 else 1 if m >= 10 else 2
    return f"{m:.{digits}f} {unit} [{lo:.{digits}f}-{hi:.{digits}f}]"


def _holds_text(row: Row) -> str:
    if row.status != "ok":
        return row.status
    return {True: "yes", False: "NO", None: "-"}[row.holds]


def _explain(row: Row) -> list[str]:
    """What the row's baseline is and what its ratio divides (the ratio's direction varies)."""
    parts = ([f"baseline: {row.baseline_name}"] if row.baseline_name else []) + (
        [f"ratio = {row.ratio_def}"] if row.ratio is not None else [])
    return ["; ".join(parts)] if parts else []


def format_table(rows: list[Row], hardware: dict[str, Any], quick: bool) -> str:
    """The printed report: hardware, one line per row, then the notes of each row."""
    head = (
        f"hardware: {hardware['cpu_model']}, {hardware['cpus']} cores, torch threads {hardware['torch_threads']}, "
        f"BLAS threads {hardware['blas_threads']}, torch CPU capability {hardware.get('torch_cpu_capability', '?')}, "
        f"BLAS core {', '.join(hardware.get('blas_core_types') or ['?'])}"
        + "".join(f", {k}={v}" for k, v in (hardware.get("kernel_env") or {}).items())
        + f", device {hardware['device']}"
        + (f" ({hardware['device_name']}) for the torch workloads; the numpy ones (jb_fit, blufr, lfw_view2, "
           "cache) run on the CPU" if hardware.get("device_name") else "")
    )
    mode = "quick (--quick: fewer repeats, some sizes reduced; see notes)" if quick else "full"
    columns = ("workload", "case", "ours", "baseline", "ratio", "target", "holds?", "load")
    table = [columns]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3g}"
        target = r.target.text() if r.target else "-"
        load = "-" if r.load is None else f"{'loaded' if r.load.loaded else 'quiet'}, cpu {r.load.cpu_share:.2f}"
        table.append((r.workload, r.case, _value(r.ours), _value(r.baseline), ratio, target, _holds_text(r), load))
    widths = [max(len(str(line[i])) for line in table) for i in range(len(columns))]
    lines = [head, f"mode: {mode}; values are median [IQR] over repeats; load: 1-minute load average above the "
             "core count = loaded, cpu = this process's CPU seconds per wall second", ""]
    for k, line in enumerate(table):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [(r, n) for r in rows for n in _explain(r) + r.notes]
    if notes:
        lines.append("")
        lines.extend(f"- {r.workload} / {r.case}: {n}" for r, n in notes)
    return "\n".join(lines)


def write_record(out_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` atomically as ``bench-<UTC timestamp>.json`` under ``out_dir``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = out_dir / f"bench-{stamp}.json"
    atomic_write_bytes(path, lambda fh: fh.write(json.dumps(json_safe(record), indent=2).encode()))
    return path
