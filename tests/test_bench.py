"""``python -m facebench.bench``: its command line, table and record, and its baselines.

No test asserts a timing or a ratio: those depend on the machine and its load and live only
in the bench's own output.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.bench.__main__ import main
from facebench_plugins.deepid2.bench.blufr import straightforward_trial
from facebench_plugins.deepid2.bench.end_to_end import PEAK_WRAPPER, peak_gb
from facebench.bench.report import Row
from facebench.bench.runner import BenchContext, run_suite
from facebench.bench.timing import Stats
from facebench.bench.workloads import WORKLOADS, UnknownWorkload, select
from facebench.components import FaceData
from facebench.protocols.blufr import BlufrBenchmark, BlufrProtocol, BlufrProtocolConfig, BlufrTrial

ROW_FIELDS = {"workload", "case", "status", "ours", "baseline", "baseline_name", "ratio", "ratio_def", "target",
              "holds", "load", "notes", "details"}
STATS_FIELDS = {"unit", "median", "q1", "q3", "min", "max", "n", "samples"}
HARDWARE_FIELDS = {"cpu_model", "cpus", "cpu_count", "torch_threads", "torch_default_threads", "blas_threads",
                   "blas_libraries", "thread_env", "device", "device_name", "python", "packages"}


def test_quick_run_prints_a_table_and_writes_a_valid_record(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # cache: the cheapest measured workload; e2e: skipped under --quick, so a skipped row too.
    assert main(["--quick", "--only", "cache,e2e", "--threads", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for text in ("hardware:", "torch threads 1", "BLAS threads 1", "device cpu", "workload", "baseline", "ratio",
                 "target", "holds?", "mode: quick", "record written"):
        assert text in out, text
    (path,) = tmp_path.glob("bench-*.json")
    record = json.loads(path.read_text())
    assert record["schema"] == "facebench.bench/1" and record["quick"] is True
    assert record["argv"][:3] == ["--quick", "--only", "cache,e2e"]
    assert HARDWARE_FIELDS <= set(record["hardware"])
    assert record["hardware"]["torch_threads"] == 1 and record["hardware"]["blas_threads"] == 1
    assert record["hardware"]["thread_env"]["OPENBLAS_NUM_THREADS"] == "1"
    cache, *e2e = record["rows"]
    assert all(set(row) == ROW_FIELDS for row in record["rows"])
    assert cache["workload"] == "cache" and cache["status"] == "ok"
    assert set(cache["ours"]) == STATS_FIELDS and set(cache["baseline"]) == STATS_FIELDS
    assert cache["ours"]["n"] == len(cache["ours"]["samples"]) >= 1
    assert cache["ratio"] > 0 and cache["target"] == ">= 20" and isinstance(cache["holds"], bool)
    assert set(cache["load"]) == {"loadavg_before", "loadavg_after", "cpus", "loaded", "cpu_share"}
    assert any("--quick" in note for note in cache["notes"])
    assert [r["status"] for r in e2e] == ["skipped", "skipped"] and all(r["holds"] is None for r in e2e)


def test_unknown_workload_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--only", "local,nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown workload 'nope'" in err and all(name in err for name in WORKLOADS)
    assert not list(tmp_path.iterdir())


def test_cuda_without_cuda_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--device", "cuda", "--only", "local", "--out", str(tmp_path)]) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_select_keeps_suite_order_and_refuses_empty_names() -> None:
    assert list(select("cache, local")) == ["local", "cache"]
    assert list(select(None)) == list(WORKLOADS)
    with pytest.raises(UnknownWorkload, match="none given"):
        select(",")


def test_a_failing_workload_becomes_a_failed_row_and_the_others_still_run(tmp_path: Path) -> None:
    def broken(ctx: BenchContext) -> list[Row]:
        raise RuntimeError("boom")

    def fine(ctx: BenchContext) -> list[Row]:
        return [Row("fine", "case", Stats("s", (1.0, 2.0, 3.0)))]

    ctx = BenchContext(quick=True, device=torch.device("cpu"), threads=1, blas_threads=1)
    rows, path = run_suite({"broken": broken, "fine": fine}, ctx, tmp_path, [], torch.get_num_threads(), lambda _: None)
    assert [r.status for r in rows] == ["failed", "ok"]
    assert "RuntimeError: boom" in rows[0].notes[0]
    record = json.loads(path.read_text())
    assert record["rows"][1]["ours"]["median"] == 2.0 and record["rows"][1]["load"]["cpus"] >= 1


def test_stats_median_and_quartiles() -> None:
    stats = Stats("s", (4.0, 1.0, 3.0, 2.0, 100.0))
    assert stats.median == 3.0 and stats.q1 == 2.0 and stats.q3 == 4.0
    assert stats.rate(10.0, "img/s").samples == (2.5, 10.0, 10 / 3, 5.0, 0.1)


def test_blufr_baseline_reads_the_same_figures_as_the_protocol() -> None:
    """The straightforward baseline must measure what ours measures, or its time means nothing."""
    from facebench_plugins.deepid2.joint_bayesian import JointBayesianVerifier

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(120), rng.integers(1, 8, size=120))
    features = rng.normal(size=(120, 6))[labels] + 0.7 * rng.normal(size=(len(labels), 6))
    people = np.arange(120)
    train = np.flatnonzero(labels < 40)
    test = np.flatnonzero(labels >= 40)
    first = np.searchsorted(labels, people[40:100])
    trial = BlufrTrial("t", train, test, first, np.setdiff1d(test, first))
    faces = FaceData(np.zeros((len(labels), 1, 1, 1), np.uint8), labels, [str(p) for p in people],
                     [str(i) for i in range(len(labels))])
    ours = BlufrProtocol(BlufrProtocolConfig()).evaluate_unit(BlufrBenchmark("b", faces, [trial]), trial, features,
                                                             JointBayesianVerifier())
    base = straightforward_trial(JointBayesianVerifier(), features, labels, trial)
    assert base["vr"] == pytest.approx(ours.vr, abs=2e-3) and base["dir"] == pytest.approx(ours.dir)


def test_end_to_end_peak_memory_is_the_runs_own_not_the_benchs() -> None:
    """A child's ru_maxrss counts the process it was forked from: the bench, holding 400 MB here,
    must not be charged to a run that needs a few tens of MB."""
    held = np.ones(400_000_000, dtype=np.uint8)  # touched pages: resident
    small = [sys.executable, "-c", "import sys; sys.exit(3)"]
    proc = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *small], capture_output=True, text=True)
    assert proc.returncode == 3, "the wrapper passes on the run's exit status"
    assert peak_gb(proc.stderr) < 0.2
    big = [sys.executable, "-c", "import numpy as np; np.ones(300_000_000, np.uint8)"]
    assert 0.3 < peak_gb(subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *big], capture_output=True,
                                        text=True).stderr) < 0.6
    assert held.sum() == 400_000_000
