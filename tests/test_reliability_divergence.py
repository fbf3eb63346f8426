"""Divergence: a NaN or infinite loss term, or weights that overflow while the loss still looks
finite, stop the run naming the step and the term (or parameter); the checkpoint on disk stays
the last good one; the record is marked failed and the leaderboard never counts it.

The failures are injected by test-only loss plugins registered in-process, so they happen at a
known step instead of whenever a huge learning rate happens to overflow.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import torch
from threadpoolctl import threadpool_limits
import torch.nn.functional as F
from torch import nn

from conftest import TINY
from facebench import leaderboard as lb
from facebench.components import BuildContext, LossOutput
from facebench.config import compose
from facebench.registry import get_registry
from facebench.run import checkpoint_key, execute
from facebench.train import TrainingDiverged

RUN = [*TINY, "device=cpu", "trainer.steps=6", "trainer.batch_size=8", "trainer.log_every=1", "trainer.checkpoint_every=2"]


@dataclass
class PoisonConfig:
    """A softmax head whose loss term ``poisoned`` goes bad at the 1-based step ``at``.

    mode: nan (the term itself is NaN) or overflow (the term is finite, 0, but its gradient
      is infinite, so the step's update turns the weights non-finite).
    """

    name: str = "poison"
    at: int = 5
    mode: str = "nan"


class PoisonLoss(nn.Module):
    batch = "plain"

    def __init__(self, cfg: PoisonConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = nn.Linear(ctx.feature_dim, ctx.num_classes)
        self.calls = 0

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:
        self.calls += 1
        term = F.cross_entropy(self.head(outputs["feature"]), labels)
        if self.calls == self.cfg.at:
            if self.cfg.mode == "nan":
                term = term * float("nan")
            else:  # sqrt at 0: value 0, derivative infinite
                w = self.head.bias[:1]
                term = term + torch.sqrt(w - w.detach()).sum()
        return LossOutput({"poisoned": term})


@pytest.fixture(scope="module", autouse=True)
def poison_registered() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    registry = get_registry()
    registry.add("loss", "poison", PoisonLoss, PoisonConfig)
    registry.store_configs()
    with threadpool_limits(1):
        yield
    del registry.components["loss"]["poison"]  # other test modules see the real registry
    torch.set_num_threads(before)


def run_poisoned(root: Path, *overrides: str) -> tuple[pytest.ExceptionInfo, Path, Path]:
    cfg = compose(["+method=deepid", "loss=poison", *RUN, f"results_root={root}", *overrides])
    with pytest.raises(TrainingDiverged) as diverged:
        execute(cfg, root / "run")
    return diverged, root / "run", root / "checkpoints" / checkpoint_key(cfg) / "model.pt"


def assert_finite_checkpoint_at(path: Path, step: int) -> None:
    state = torch.load(path, weights_only=True)
    assert state["step"] == step
    for part in ("backbone", "loss"):
        for name, tensor in state[part].items():
            assert torch.isfinite(tensor).all(), f"{part}.{name} in the kept checkpoint is not finite"


def test_nan_loss_stops_naming_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    diverged, run_dir, checkpoint = run_poisoned(tmp_path, "loss.at=5")
    message = str(diverged.value)
    assert "loss term 'poisoned' became nan at step 5/6" in message
    assert f"the last good checkpoint (step 4) is kept at {checkpoint}" in message
    assert_finite_checkpoint_at(checkpoint, 4)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("TrainingDiverged: ")
    assert "step 5/6" in record["error"]


def test_weights_overflowing_under_a_finite_loss_never_reach_a_checkpoint(tmp_path: Path) -> None:
    """Step 4's loss is finite but its update makes the weights infinite; step 4 is a
    checkpoint step, and without the weight check the file would hold that broken state."""
    diverged, _, checkpoint = run_poisoned(tmp_path, "loss.at=4", "loss.mode=overflow")
    message = str(diverged.value)
    assert "loss.head.bias became NaN or infinite in step 4/6 although every loss term was finite" in message
    assert "the last good checkpoint (step 2)" in message
    assert_finite_checkpoint_at(checkpoint, 2)


def test_no_checkpoint_yet_is_said_plainly(tmp_path: Path) -> None:
    diverged, _, checkpoint = run_poisoned(tmp_path, "loss.at=1")
    assert "at step 1/6" in str(diverged.value) and "no checkpoint was written yet" in str(diverged.value)
    assert not checkpoint.exists()


def test_leaderboard_lists_a_diverged_run_as_skipped_and_never_counts_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, run_dir, _ = run_poisoned(tmp_path, "loss.at=3")
    assert lb.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no counted runs" in out
    assert f"skipped {run_dir / 'metrics.json'}: status failed: TrainingDiverged: " in out
    runs, skipped = lb.collect(tmp_path)
    assert runs == [] and len(skipped) == 1
