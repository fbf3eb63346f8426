"""Results are never half-written: a run directory counts only through a complete
``metrics.json`` (written last, by rename), a failed write leaves nothing the leaderboard reads
as a result and is reported, and concurrent runs into one results root never clobber each other.
"""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from threadpoolctl import threadpool_limits
import yaml

from conftest import TINY
from facebench import leaderboard as lb
from facebench import results
from facebench.config import compose
from facebench.errors import FacebenchError
from facebench.results import RecordError, new_run_dir
from facebench.run import execute

#: No training and no PCA: the cheapest complete run (the record is what these tests are about).
PIXELS = ["+method=pixels", *TINY, "device=cpu", "verifier.pca_dim=null"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One thread for torch and BLAS: on two loaded cores, competing threads make a tiny run's
    PCA take minutes instead of seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def no_space(path: Any) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def assert_no_result(root: Path, run_dir: Path) -> None:
    """No record, no temporary left behind, and the leaderboard lists the directory as skipped."""
    assert not (run_dir / "metrics.json").exists()
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".metrics.json")] == []
    runs, skipped = lb.collect(root)
    assert runs == []
    assert [(s.path, "without metrics.json" in s.reason) for s in skipped] == [(run_dir, True)]


def test_no_space_at_the_rename_leaves_no_record_and_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).name == "metrics.json":
            raise no_space(dst)
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    run_dir = tmp_path / "run"
    with pytest.raises(RecordError) as err:
        execute(compose([*PIXELS, f"results_root={tmp_path}"]), run_dir)
    assert isinstance(err.value, FacebenchError)  # the command line prints it without a traceback
    message = str(err.value)
    assert str(run_dir / "metrics.json") in message and "No space left on device" in message and "does not count" in message
    assert (run_dir / "folds.csv").is_file()  # everything else was written; without the record it is no result
    assert_no_result(tmp_path, run_dir)


def test_a_torn_record_write_never_becomes_metrics_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills half-way through the record's bytes: the temporary file is removed and
    ``metrics.json`` never exists, torn or whole."""
    real = results.atomic_write_bytes

    def torn(path: Path, write: Callable[[Any], None], suffix: str = "") -> None:
        if path.name != "metrics.json":
            return real(path, write, suffix)

        def half(fh: Any) -> None:
            buf = io.BytesIO()
            write(buf)
            fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise no_space(path)

        return real(path, half, suffix)

    monkeypatch.setattr(results, "atomic_write_bytes", torn)
    run_dir = tmp_path / "run"
    with pytest.raises(RecordError, match="No space left on device"):
        execute(compose([*PIXELS, f"results_root={tmp_path}"]), run_dir)
    assert_no_result(tmp_path, run_dir)


def test_a_failed_run_whose_record_cannot_be_written_reports_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The run's error is what the user must see; the failed write is logged beside it."""
    from facebench import run as run_module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("feature extraction exploded")

    real_replace = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).name == "metrics.json":
            raise no_space(dst)
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(run_module, "extract_features", broken)
    monkeypatch.setattr(os, "replace", replace)
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.ERROR, logger="facebench"):
        with pytest.raises(RuntimeError, match="feature extraction exploded"):
            execute(compose([*PIXELS, f"results_root={tmp_path}"]), run_dir)
    assert f"could not write the failed record to {run_dir / 'metrics.json'}" in caplog.text
    assert_no_result(tmp_path, run_dir)


def test_four_concurrent_runs_into_one_root_never_clobber_each_other(tmp_path: Path) -> None:
    """Four runs at once in threads of one process (the harder case: shared interpreter state,
    such as matplotlib's, on top of a shared results root), each given no run directory: four
    directories, four complete records, each matching its own config."""
    configs = [compose([*PIXELS, f"seed={seed}", f"results_root={tmp_path}"]) for seed in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(configs))

    def run(cfg: Any) -> None:
        try:
            barrier.wait()
            execute(cfg)
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(cfg,)) for cfg in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    records = sorted(tmp_path.glob("*/metrics.json"))
    assert len(records) == 4 and len({p.parent for p in records}) == 4
    seeds = set()
    for path in records:
        record = results.read_record(path)
        config = yaml.safe_load((path.parent / "config.yaml").read_text())
        assert record["status"] == "complete" and record["run_dir"] == str(path.parent)
        assert record["seed"] == config["seed"]
        seeds.add(record["seed"])
    assert seeds == {0, 1, 2, 3}
    runs, skipped = lb.collect(tmp_path)
    assert len(runs) == 4 and skipped == []


def test_a_run_directory_is_never_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if two runs drew the same random suffix in the same second, the second is refused
    instead of writing into the first one's directory."""
    monkeypatch.setattr(results.uuid, "uuid4", lambda: uuid.UUID(int=0))
    first = new_run_dir(tmp_path, "m")
    (first / "metrics.json").write_text(json.dumps({"mine": True}))
    with pytest.raises(FileExistsError):
        while True:  # the timestamp has one-second resolution: collide within the same second
            new_run_dir(tmp_path, "m")
    assert json.loads((first / "metrics.json").read_text()) == {"mine": True}


def test_a_record_is_dirty_for_edited_code_and_not_for_a_studys_own_outputs(tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "pkg").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "chosen.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()

    (tmp_path / "results" / "chosen.json").write_text('{"softmax": {}}\n')
    assert results.git_commit(tmp_path / "pkg") == head
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert results.git_commit(tmp_path / "pkg") == head + "-dirty"
