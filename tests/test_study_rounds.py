"""A search whose best trial lies at a bound of its space is searched again past that bound
(facebench.study.rounds): the widened space, when another round is due, and the choice over
every round."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from facebench.config import ConfigError
from facebench.study import rounds
from facebench.study.report import _search_note, _search_score
from facebench.study.rounds import entry_search, widen

SPACE = {"trainer.lr": "tag(log, interval(0.01, 0.5))", "loss.margin": "interval(0.3, 1.6)"}
SEARCH = OmegaConf.create({"objective": "mean_accuracy", "trials": 3, "widen": {"rounds": 1, "factor": 4}})


def test_a_bound_is_moved_by_the_factor_and_the_interval_keeps_its_scale() -> None:
    wider = widen(SPACE, {"trainer.lr": "upper bound 0.5", "loss.margin": "lower bound 0.3"}, 4)
    assert wider == {"trainer.lr": "tag(log, interval(0.01, 2))", "loss.margin": "interval(0.075, 1.6)"}
    assert widen(SPACE, {}, 4) == SPACE
    with pytest.raises(ConfigError, match="widen.factor=1"):
        widen(SPACE, {"trainer.lr": "upper bound 0.5"}, 1)


def _fake_records(monkeypatch: pytest.MonkeyPatch, by_root: dict[Path, list[tuple[float, float, float]]]) -> None:
    """Each root's complete trials as (lr, margin, accuracy), in place of records on disk."""

    def trials(root: Path, keys: list[str], objective: str) -> pd.DataFrame:
        rows = [{"trial": i, "trainer.lr": lr, "loss.margin": m, objective: acc, "seconds": 1.0, "config_key": "k",
                 "path": str(root / str(i))} for i, (lr, m, acc) in enumerate(by_root.get(root, []))]
        return pd.DataFrame(rows, columns=["trial", *keys, objective, "seconds", "config_key", "path"])

    monkeypatch.setattr(rounds, "trials", trials)


def test_a_best_trial_at_a_bound_asks_for_a_round_on_the_widened_space(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    first = [(0.02, 1.0, 0.70), (0.45, 0.8, 0.79), (0.1, 0.5, 0.75)]  # best lr 0.45: at the upper bound
    _fake_records(monkeypatch, {tmp_path: first})
    search = entry_search(tmp_path, SPACE, SEARCH)
    assert search.pending is not None and search.pending.number == 1
    assert search.pending.root == tmp_path / "round-1"
    assert search.pending.space == {**SPACE, "trainer.lr": "tag(log, interval(0.01, 2))"}
    assert len(search.table) == 3

    # the second round's trials complete: the choice is the best of both rounds, numbered on
    _fake_records(monkeypatch, {tmp_path: first, tmp_path / "round-1": [(0.9, 0.8, 0.83), (1.9, 0.8, float("nan")),
                                                                        (0.3, 0.9, 0.77)]})
    search = entry_search(tmp_path, SPACE, SEARCH)
    assert search.pending is None and list(search.table["trial"]) == [0, 1, 2, 3, 4, 5]
    assert list(search.table["round"]) == [0, 0, 0, 1, 1, 1]
    assert search.widened == {"trainer.lr": "tag(log, interval(0.01, 2))"}
    # the report's line: the choice's score, what it was chosen from, where it was searched
    assert _search_score(search, "mean_accuracy") == (": 83.00% `mean_accuracy` on the search protocol, the best of 6 "
                                                      "trials in 2 rounds, 1 of them diverged; 79.00% after the first "
                                                      "round's 3")
    assert _search_note(search, {"trainer.lr": 0.9, "loss.margin": 0.8}) == (
        " (searched again on a widened space: `trainer.lr` over `tag(log, interval(0.01, 2))`)")


def test_no_round_is_added_inside_the_space_or_past_the_rounds_allowed(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    inside = [(0.02, 1.0, 0.70), (0.1, 0.8, 0.79), (0.2, 0.5, 0.75)]
    _fake_records(monkeypatch, {tmp_path: inside})
    search = entry_search(tmp_path, SPACE, SEARCH)
    assert search.pending is None and search.widened == {} and len(search.rounds) == 1

    at_bound = [(0.02, 1.0, 0.70), (0.45, 0.8, 0.79), (0.2, 0.5, 0.75)]
    _fake_records(monkeypatch, {tmp_path: at_bound})
    never = OmegaConf.create({"objective": "mean_accuracy", "trials": 3})  # no widen: the first round decides
    assert entry_search(tmp_path, SPACE, never).pending is None
    # still at the (new) bound after the last round allowed: decided, and the report says where it lies
    _fake_records(monkeypatch, {tmp_path: at_bound, tmp_path / "round-1": [(1.9, 0.8, 0.85)] * 3})
    search = entry_search(tmp_path, SPACE, SEARCH)
    assert search.pending is None and len(search.rounds) == 2


def test_an_unfinished_first_round_is_the_pending_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_records(monkeypatch, {tmp_path: [(0.45, 0.8, 0.79)]})
    search = entry_search(tmp_path, SPACE, SEARCH)
    assert search.pending is not None and search.pending.number == 0 and search.pending.root == tmp_path
    assert search.table.empty


def test_a_diverged_trial_counts_with_no_score_and_an_interrupted_one_does_not(tmp_path: Path) -> None:
    """A setting that diverges was tried (the round must not wait for it forever); one stopped by
    a signal is resumed by the next sitting, so it is not a trial yet."""
    import json
    import math

    from facebench.study.history import best, trials

    def record(job: str, status: str, lr: float, accuracy: float | None = None, error: str | None = None) -> None:
        folder = tmp_path / "multirun" / "20261207-000000-abcdef" / job
        folder.mkdir(parents=True)
        body = {"schema_version": 1, "status": status, "method": "contrastive", "protocol": {"name": "lfw_view1"},
                "regime": "unrestricted_no_outside", "units": [], "components": {"trainer": {"lr": lr}},
                "metrics": {} if accuracy is None else {"mean_accuracy": accuracy}}
        (folder / "metrics.json").write_text(json.dumps({**body, **({"error": error} if error else {})}))

    record("0-contrastive-s0", "complete", 0.1, 0.75)
    record("1-contrastive-s0", "failed", 1.9, error="TrainingDiverged: contrastive/view1: loss became NaN")
    record("2-contrastive-s0", "failed", 0.4, error="TrainingInterrupted: contrastive/view1: SIGTERM received")
    table = trials(tmp_path, ["trainer.lr"], "mean_accuracy")
    assert list(table["trial"]) == [0, 1] and math.isnan(table["mean_accuracy"][1])
    assert best(table, ["trainer.lr"], "mean_accuracy") == {"trainer.lr": 0.1}


def test_a_round_that_ran_and_stays_short_of_its_trials_stops_the_search(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    """Every trial of a round failing in a way that leaves no trial (a broken config) must end the
    search stage with the folder to read, not relaunch the round for ever."""
    from facebench.errors import FacebenchError
    from facebench.study import __main__ as study_main
    from conftest import losses_study

    _fake_records(monkeypatch, {})  # no trial ever completes
    launched = []

    class Runner:
        def run(self, chains: list) -> None:
            launched.append([sweep.entry for chain in chains for sweep in chain])

    losses = losses_study([f"study.root={tmp_path}"])
    with pytest.raises(FacebenchError, match=r"a search round ran and still has fewer than 12 trials.*contrastive"):
        study_main.run_searches(losses, ["contrastive"], Runner(), dry_run=False)
    assert launched == [["contrastive"]]
