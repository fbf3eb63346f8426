"""Interrupting training: SIGINT/SIGTERM stop at a step boundary with a checkpoint, the command
line says so without a traceback and exits 128 + signal, and ``trainer.resume=true`` ends
exactly where the uninterrupted run ends.

Tolerance: none. Batches are a pure function of (seed, step) and a checkpoint holds only
states the uninterrupted run also passed through, so on the CPU with one thread the resumed
weights are bit-identical (``torch.equal``) and the records' metrics equal to the last digit
(compared with ``==``; a difference of any size would mean a step applied twice or skipped).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import torch
from threadpoolctl import threadpool_limits
from omegaconf import OmegaConf

from conftest import TINY
from facebench import leaderboard as lb
from facebench.components import BuildContext, FaceData
from facebench.config import compose
from facebench.run import checkpoint_key, execute, plan_run
from facebench.train import TrainingInterrupted, train

STEPS = 24
#: A run long enough to be caught mid-training, checkpointing every step, on one CPU thread.
RUN = [*TINY, f"trainer.steps={STEPS}", "trainer.batch_size=8", "trainer.checkpoint_every=1", "trainer.log_every=1", "device=cpu"]


@pytest.fixture(autouse=True)
def interactive_sigint() -> Iterator[None]:
    """Ctrl-C as in a terminal. A job started in the background by a non-interactive shell (or
    under nohup) inherits SIGINT ignored, and the trainer rightly leaves an ignored SIGINT
    alone; these tests are about the interactive case, so they set Python's default handler."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _default_sigint() -> None:
    """In the CLI child before exec: SIGINT at its default, so Python installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread for the whole module: results depend on the thread count (reductions
    split differently), so every run compared here, the subprocesses included
    (OMP_NUM_THREADS=1), uses the same; one thread is also far faster than two fighting over
    two loaded cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


class Fit:
    """Fresh, identically initialised model pairs on the tiny synthetic training set."""

    def __init__(self, steps: int = 8, checkpoint_every: int = 2) -> None:
        self.cfg = compose([*TINY, "device=cpu", "trainer.batch_size=8", "trainer.log_every=1",
                            f"trainer.steps={steps}", f"trainer.checkpoint_every={checkpoint_every}"])
        self.plan = plan_run(self.cfg)
        self.faces: FaceData = self.plan.dataset.load(self.plan.shape, self.cfg.cache_dir, "fail")

    def run(self, checkpoint: Path, resume: bool = False, on_log: Optional[Callable[[int, dict], None]] = None) -> tuple[Any, Any, Any]:
        torch.manual_seed(0)
        ctx = BuildContext(num_classes=len(self.faces.names), device="cpu", seed=0, input_shape=self.plan.shape)
        backbone = self.plan.registry.build("backbone", self.cfg.backbone, ctx)
        ctx = BuildContext(num_classes=len(self.faces.names), feature_dim=backbone.feature_dim, device="cpu", seed=0,
                           input_shape=self.plan.shape)
        loss = self.plan.registry.build("loss", self.cfg.loss, ctx)
        trainer = OmegaConf.to_object(self.cfg.trainer)
        trainer.resume = resume
        stats = train(backbone, loss, self.faces, trainer, torch.device("cpu"), 0, checkpoint=checkpoint, on_log=on_log)
        return backbone, loss, stats


@pytest.fixture(scope="module")
def fit() -> Fit:
    return Fit()


@pytest.fixture(scope="module")
def reference(fit: Fit, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """Weights and last logged metrics of the uninterrupted run."""
    backbone, loss, stats = fit.run(tmp_path_factory.mktemp("ref") / "model.pt")
    state = {**{f"b.{k}": v.clone() for k, v in backbone.state_dict().items()},
             **{f"l.{k}": v.clone() for k, v in loss.state_dict().items()}}
    return state, stats.last_metrics


def assert_same_weights(backbone: Any, loss: Any, reference: dict) -> None:
    state = {**{f"b.{k}": v for k, v in backbone.state_dict().items()}, **{f"l.{k}": v for k, v in loss.state_dict().items()}}
    assert state.keys() == reference.keys()
    differ = [k for k in state if not torch.equal(state[k], reference[k])]
    assert not differ, f"resumed weights differ from the uninterrupted run's in {differ[:5]}"


def send_at(step: int, *signals: int) -> Callable[[int, dict], None]:
    def on_log(done: int, metrics: dict) -> None:
        if done == step:
            for s in signals:
                signal.raise_signal(s)

    return on_log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_after_the_step_and_resume_is_exact(fit: Fit, reference: tuple, tmp_path: Path, signum: int) -> None:
    checkpoint = tmp_path / "model.pt"
    with pytest.raises(TrainingInterrupted) as stopped:
        fit.run(checkpoint, on_log=send_at(3, signum))
    assert stopped.value.signum == signum
    message = str(stopped.value)
    assert f"{signal.Signals(signum).name} received" in message and "after step 3/8" in message
    assert str(checkpoint) in message and "trainer.resume=true" in message
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 3  # step 3 is not a periodic checkpoint (every 2)
    assert saved["seconds"] > 0  # the time spent so far travels with the checkpoint
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    backbone, loss, stats = fit.run(checkpoint, resume=True)
    assert stats.resumed_from == 3 and stats.steps == 5
    assert stats.earlier_seconds == saved["seconds"]
    assert_same_weights(backbone, loss, reference[0])
    assert stats.last_metrics == reference[1]


def test_second_sigint_stops_at_once_and_keeps_the_boundary_checkpoint(fit: Fit, reference: tuple, tmp_path: Path) -> None:
    """The second Ctrl-C lands mid-step (here inside the logging of step 5, before its
    checkpoint): that state is not saved; the periodic checkpoint of step 4 is what resumes."""
    checkpoint = tmp_path / "model.pt"
    with pytest.raises(TrainingInterrupted, match=r"stopped at once after 5/8 steps .*checkpoint \(step 4\)"):
        fit.run(checkpoint, on_log=send_at(5, signal.SIGINT, signal.SIGINT))
    assert torch.load(checkpoint, weights_only=True)["step"] == 4
    backbone, loss, stats = fit.run(checkpoint, resume=True)
    assert stats.resumed_from == 4
    assert_same_weights(backbone, loss, reference[0])


def cli(results: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "facebench", "+method=deepid", *RUN, f"results_root={results}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_default_sigint,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (rc {proc.returncode}) before its first checkpoint:\n{out[-2000:]}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint at {path} after {timeout} s")
        time.sleep(0.05)


def test_cli_sigint_exits_cleanly_and_resume_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    """Ctrl-C through the real command line once the first checkpoint exists, then
    ``trainer.resume=true`` on the same results root, against an uninterrupted run made
    in-process while the command starts (SIGTERM's path differs only in the exit status,
    covered above)."""
    cfg = compose(["+method=deepid", *RUN])
    root = tmp_path / "interrupted"
    checkpoint = root / "checkpoints" / checkpoint_key(cfg) / "model.pt"
    proc = cli(root)
    reference = execute(compose(["+method=deepid", *RUN, f"results_root={tmp_path / 'reference'}"]), tmp_path / "reference" / "run")
    wait_for(checkpoint, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err
    assert "facebench: interrupted: deepid/model: SIGINT received; stopped after step" in err
    assert f"checkpoint saved to {checkpoint}" in err and "trainer.resume=true" in err
    (record_path,) = root.glob("*/metrics.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "failed" and record["error"].startswith("TrainingInterrupted")
    runs, skipped = lb.collect(root)
    assert runs == [] and [k.path for k in skipped] == [record_path]

    stopped_at = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < stopped_at < STEPS
    resumed = execute(compose(["+method=deepid", *RUN, f"results_root={root}", "trainer.resume=true"]), root / "resumed")
    unit = resumed["units"][0]
    assert resumed["status"] == "complete" and unit["resumed_from_step"] == stopped_at
    # the interrupted sitting's training time is counted in the result's cost
    assert unit["earlier_sittings_train_seconds"] > 0
    assert resumed["timings"]["earlier_sittings_seconds"] == unit["earlier_sittings_train_seconds"]
    assert unit["train_steps"] == STEPS - stopped_at
    written = [json.loads((Path(r["run_dir"]) / "metrics.json").read_text()) for r in (resumed, reference)]
    assert written[0]["units"][0]["final_train_metrics"] == written[1]["units"][0]["final_train_metrics"]
    assert written[0]["metrics"] == written[1]["metrics"]


def test_sigterm_in_a_sweep_ends_the_sweep_and_starts_no_further_job(tmp_path: Path) -> None:
    """A scheduler's SIGTERM to ``python -m facebench -m`` checkpoints the running job and ends
    the sweep there with 143: Hydra's launcher would otherwise start the next seed's job."""
    root = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "facebench", "-m", "+method=deepid", *RUN, f"results_root={root}", "seed=0,1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 240
    while not list(root.glob("checkpoints/*/model.pt")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 240 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in out + err
    assert "SIGTERM received" in err and "the sweep stops with" in err
    (job_dir,) = [p for p in root.glob("multirun/*/*") if p.is_dir()]
    assert job_dir.name.startswith("0-") and json.loads((job_dir / "metrics.json").read_text())["status"] == "failed"
    assert len(list(root.glob("checkpoints/*"))) == 1  # the second seed never started
