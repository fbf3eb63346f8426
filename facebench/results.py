"""The result record: one directory per run, complete or marked failed, never half-written.

Layout of a run directory::

    metrics.json   the record (schema_version, status, method, components, protocol, regime,
                   per-unit results, summary metrics, timings, environment) — written LAST,
                   atomically; a directory without it is not a result
    config.yaml    the resolved config
    folds.csv      one row per evaluated fold / trial
    roc.csv        pooled ROC points (fpr, tpr, threshold)
    roc.png        the ROC curve
(``write_artifacts`` writes the three beside the record.)
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import threading
import uuid
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from facebench.atomic_io import atomic_write_bytes
from facebench.errors import FacebenchError

SCHEMA_VERSION = 1
RECORD_FILE = "metrics.json"
STATUSES = ("complete", "partial", "failed")
PACKAGES = ("facebench", "torch", "numpy", "scikit-learn", "scipy", "hydra-core", "omegaconf", "pluggy", "timm", "pandas")


class RecordError(FacebenchError):
    """A record that is not a valid facebench result (the message names the file)."""


def new_run_dir(results_root: str | Path, method: str) -> Path:
    """A fresh directory under ``results_root`` that no other run can be given."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(results_root) / f"{stamp}-{method}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays converted, non-finite floats (which JSON
    cannot hold) as null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, Optional[str]]:
    """Installed version of each package (None where it is not installed)."""
    versions: dict[str, Optional[str]] = {}
    for pkg in packages:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def environment() -> dict[str, Any]:
    versions = package_versions()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git_commit": git_commit(),
        "threads": thread_settings(),
    }


#: Environment variables that set thread counts or BLAS kernels (results move in the last digits).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                    "ATEN_CPU_CAPABILITY", "CUBLAS_WORKSPACE_CONFIG")


def thread_settings() -> dict[str, Any]:
    """The thread counts and kernel choices a run's numbers depend on: torch's intra- and
    inter-op threads and CPU capability, each BLAS/OpenMP library's threads, and the variables
    that set them."""
    import torch
    from threadpoolctl import threadpool_info

    return {
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "libraries": [
            {k: info.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
            for info in threadpool_info()
        ],
        "variables": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }


def git_commit(source: Optional[Path] = None) -> Optional[str]:
    """The commit of the code a record was made with, ``-dirty`` when tracked code differs from it.

    Changes under the repository's ``results/`` do not count: a study rewrites its own tracked
    outputs there (the search's chosen settings, its plots) while it runs, and marking every later
    record dirty for that would hide the one difference that matters, edited code or config.
    """
    here = source or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results"],
            cwd=here, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``metrics.json`` atomically; call it after every other file of the run is in place."""
    if record.get("status") not in STATUSES:
        raise ValueError(f"record status must be one of {STATUSES}")
    record = {"schema_version": SCHEMA_VERSION, **record}
    path = run_dir / RECORD_FILE
    write_text(path, json.dumps(json_safe(record), indent=2, sort_keys=False) + "\n")
    return path


def write_artifacts(run_dir: Path, summary: Any, metrics: dict[str, Any], title: str) -> None:
    """The run's tables and plot beside its record, each written whole: ``folds.csv`` (the
    protocol's per-unit table), ``roc.csv`` (the record's ROC points) and ``roc.png``."""
    write_text(run_dir / "folds.csv", summary.fold_table().to_csv(index=False))
    roc = metrics.get("roc")
    if roc:
        import pandas as pd

        points = pd.DataFrame({"fpr": roc["fpr"], "tpr": roc["tpr"], "threshold": roc["thresholds"]})
        write_text(run_dir / "roc.csv", points.to_csv(index=False))
        save_roc_plot(run_dir / "roc.png", np.asarray(summary.fpr), np.asarray(summary.tpr), title)


def finished(record: dict[str, Any]) -> bool:
    """A record a result may be read from: complete, or partial (the folds ``protocol.folds``
    chose), and no error."""
    return record.get("status") in ("complete", "partial") and not record.get("error")


def readable_records(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every record under ``root`` that reads, with its path; unreadable ones are passed over
    (the leaderboard lists them, a resume must not stop on them)."""
    for path in root.rglob(RECORD_FILE):
        try:
            record = read_record(path)
        except RecordError:
            continue
        yield path, record


def finished_records(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every record under ``root`` a result may be read from, with its path."""
    return ((path, record) for path, record in readable_records(root) if finished(record))


def _failed_by(record: dict[str, Any], error: str) -> bool:
    return record.get("status") == "failed" and str(record.get("error") or "").startswith(f"{error}:")


def diverged(record: dict[str, Any]) -> bool:
    """A failed record whose training diverged (facebench.train.TrainingDiverged): in a search,
    a setting that was tried and has no score, not a run that broke."""
    return _failed_by(record, "TrainingDiverged")


def interrupted(record: dict[str, Any]) -> bool:
    """A failed record of a training stopped by a signal (facebench.train.TrainingInterrupted):
    it resumes from its checkpoint, and the record that finishes it carries this sitting's
    training time."""
    return _failed_by(record, "TrainingInterrupted")


REQUIRED = ("schema_version", "status", "method", "protocol", "regime", "metrics", "units")


def read_record(path: str | Path) -> dict[str, Any]:
    """Load and validate a record; raises RecordError naming the file and what is wrong."""
    path = Path(path)
    try:
        # UTF-8 as write_record writes it, whatever the locale. ValueError covers bad JSON, bad
        # UTF-8 and integers too long to convert; RecursionError, nesting too deep to parse.
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise RecordError(f"{path}: not a readable JSON record ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{path}: a record must be a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise RecordError(f"{path}: missing keys {missing}")
    if data["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"{path}: schema_version {data['schema_version']!r}, this facebench reads {SCHEMA_VERSION}")
    if data["status"] not in STATUSES:
        raise RecordError(f"{path}: status {data['status']!r} is not one of {STATUSES}")
    if not isinstance(data["metrics"], dict) or not isinstance(data["units"], list):
        raise RecordError(f"{path}: 'metrics' must be an object and 'units' a list")
    return data


#: Matplotlib is not thread-safe (its mathtext parser, which renders the log axis' tick labels,
#: fails when two threads use it at once), and runs may execute in threads of one process.
_PLOT_LOCK = threading.Lock()


def save_roc_plot(path: Path, fpr: np.ndarray, tpr: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with _PLOT_LOCK:
        fig, ax = plt.subplots(figsize=(4.5, 4.0), dpi=120)
        ax.plot(fpr, tpr, lw=1.5)
        ax.set_xscale("log")
        ax.set_xlim(1e-3, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp.png")
        try:
            fig.savefig(tmp)
        finally:
            plt.close(fig)
    os.replace(tmp, path)
