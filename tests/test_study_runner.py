"""The study's sweep runner: entries side by side, each on its share of the cores, each entry's
sweeps in order; a failed entry does not stop the others; SIGTERM reaches every running sweep."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from facebench.errors import FacebenchError
from facebench.study import runner
from facebench.study.runner import SweepRunner, sweep_environment
from facebench.study.spec import Sweep

#: A stand-in sweep: logs its start, its thread variable and its end to a JSON-lines file.
CHILD = textwrap.dedent("""
    import json, os, sys, time
    log, name, seconds, code = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    def note(event):
        with open(log, "a") as fh:
            fh.write(json.dumps({"name": name, "event": event, "t": time.time(),
                                 "threads": os.environ.get("OMP_NUM_THREADS")}) + "\\n")
    note("start")
    time.sleep(seconds)
    note("end")
    sys.exit(code)
""")


class FakeSweep(Sweep):
    def command(self) -> list[str]:
        return [sys.executable, "-c", CHILD, *self.argv]


def _sweep(log: Path, name: str, seconds: float = 0.5, code: int = 0) -> FakeSweep:
    return FakeSweep("final", name, "cosine", log.parent, [str(log), name, str(seconds), str(code)])


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_entries_run_side_by_side_on_their_share_of_the_cores_and_in_order_within(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "cores", lambda: 4)
    log = tmp_path / "log.jsonl"
    SweepRunner(2).run([[_sweep(log, "a1"), _sweep(log, "a2")], [_sweep(log, "b1", 1.0)]])
    events = {(e["name"], e["event"]): e for e in _events(log)}
    assert {e["threads"] for e in events.values()} == {"2"}
    assert events["a1", "end"]["t"] <= events["a2", "start"]["t"]  # an entry's sweeps in order
    assert events["b1", "start"]["t"] < events["a1", "end"]["t"]  # the other entry beside it


def test_one_worker_keeps_the_environment_and_runs_one_sweep_at_a_time(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert sweep_environment(1)["OMP_NUM_THREADS"] == "7"
    log = tmp_path / "log.jsonl"
    SweepRunner(1).run([[_sweep(log, "a", 0.2)], [_sweep(log, "b", 0.2)]])
    names = [(e["name"], e["event"]) for e in _events(log)]
    assert names == [("a", "start"), ("a", "end"), ("b", "start"), ("b", "end")]


def test_a_failed_sweep_ends_its_entry_only_and_is_named(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    with pytest.raises(FacebenchError, match=r"\[1/3\] final bad \(cosine\) failed \(exit 3\)"):
        SweepRunner(1).run([[_sweep(log, "bad", 0.1, code=3), _sweep(log, "bad-next")], [_sweep(log, "good", 0.1)]])
    started = {e["name"] for e in _events(log) if e["event"] == "start"}
    assert started == {"bad", "good"}


def test_no_workers_is_refused() -> None:
    with pytest.raises(FacebenchError, match="workers=0"):
        SweepRunner(0)


def test_sigterm_reaches_every_running_sweep_and_nothing_more_starts(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from facebench.errors import FacebenchError
        from facebench.study.runner import SweepRunner
        from test_study_runner import _sweep
        log = Path({str(log)!r})
        try:
            SweepRunner(2).run([[_sweep(log, "a", 60), _sweep(log, "a-next")], [_sweep(log, "b", 60)]])
        except FacebenchError as exc:
            print(exc)
            sys.exit(2)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (log.is_file() and len(_events(log)) >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "stopped by SIGTERM" in out
    events = _events(log)
    assert {e["name"] for e in events} == {"a", "b"}  # a-next never started
    assert all(e["event"] == "start" for e in events)  # both killed by the forwarded signal mid-sleep
