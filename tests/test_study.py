"""Studies (python -m facebench.study): search spaces declared by plugins, the sweeps a study
config makes, and a tiny study run end to end twice on the synthetic benchmark: searched,
chosen, run per seed and verifier, reported; the second sitting redoes nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import TINY, losses_study
from facebench.config import ConfigError
from facebench.errors import FacebenchError
from facebench.registry import Registry, RegistryError, get_registry
from facebench.study.runner import cores
from facebench.study.spec import merge


@dataclass
class _Cfg:
    name: str = "mine"
    margin: float = 0.5


def test_the_losses_declare_their_search_spaces() -> None:
    losses = get_registry().components["loss"]
    assert losses["arcface"].search_space == {"margin": "interval(0.1, 0.6)", "scale": "interval(16, 64)"}
    assert set(losses["deepid2"].search_space) == {"lambda_"} and losses["softmax"].search_space == {}


@pytest.mark.parametrize("space, message", [
    ({"gamma": "interval(0, 1)"}, "not a field of _Cfg"),
    ({"margin": "0.3"}, "is one value"),
    ({"margin": "interval(0.1"}, "is not a Hydra sweep"),
])
def test_a_bad_search_space_is_refused_when_the_plugin_registers(space: dict, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        Registry().add("loss", "mine", lambda cfg, ctx: None, _Cfg, search_space=space)


def test_choosing_a_group_drops_the_fixed_settings_of_the_group_it_replaces() -> None:
    fixed = ["backbone=deepid2", "backbone.batchnorm=true", "trainer.steps=5"]
    assert merge(fixed, ["backbone=pixels"]) == ["trainer.steps=5", "backbone=pixels"]
    assert merge(fixed, ["trainer.steps=9"]) == ["backbone=deepid2", "backbone.batchnorm=true", "trainer.steps=9"]


def test_the_losses_study_searches_view1_and_reports_view2() -> None:
    study = losses_study()
    assert len(study.entries) >= 8 and {"cosine", "joint_bayesian"} <= set(study.verifiers)
    search = study.search_sweep("arcface").argv
    assert "protocol=lfw_view1" in search and "label=arcface" in search and "reuse_complete=true" in search
    assert "loss.margin=interval(0.1, 0.6)" in search and any(a.startswith("trainer.lr=tag(log") for a in search)
    assert not any("lfw_view2" in a for a in search)
    assert "hydra.sweeper.max_failure_rate=1.0" in search  # a crashed trial does not end the search
    assert "objective_when_diverged=0.5" in search  # a diverged one is a trial at chance, to TPE
    final = study.final_sweeps("arcface", {"trainer.lr": 0.05, "loss.margin": 0.3})
    assert all("protocol=lfw_view2" in s.argv and "trainer.lr=0.05" in s.argv for s in final)
    # one job per (seed, fold), a fold's verifiers back to back: the second re-scores a checkpoint
    # the same sitting made
    jobs = [(s.argv[-1], s.argv[-2], s.verifier) for s in final]
    assert len(jobs) == 3 * 10 * len(study.verifiers)
    assert jobs[:3] == [("seed=0", "protocol.folds=[1]", "cosine"), ("seed=0", "protocol.folds=[1]", "joint_bayesian"),
                        ("seed=0", "protocol.folds=[2]", "cosine")]
    pixels = study.baseline_sweeps("pixels")[0].argv
    assert "backbone=pixels" in pixels and "backbone.batchnorm=true" not in pixels
    assert "protocol.folds=[1,2,3,4,5,6,7,8,9,10]" in pixels  # one job: nothing to train
    per_seed = losses_study(["study.final.folds=null"]).final_sweeps("arcface", {"trainer.lr": 0.05})
    assert [s.verifier for s in per_seed] == list(study.verifiers) and all("seed=0,1,2" in s.argv for s in per_seed)
    with pytest.raises(ConfigError, match=r"study.final.folds=\[0\]: give the 1-based folds"):
        losses_study(["study.final.folds=[0]"]).final_sweeps("arcface", {"trainer.lr": 0.05})
    # the study's trunk ends in a linear feature; the pixels floor has no trunk to set it on
    assert all("backbone.feature_relu=false" in s.argv for s in final) and "backbone.feature_relu=false" not in pixels


def test_the_papers_claims_name_entries_of_the_study() -> None:
    claims = losses_study().claims
    assert ("deepid2", "beats", "softmax") in {(c.entry, c.kind, c.other) for c in claims}
    assert {c.kind for c in claims} == {"beats", "ties"} and all(c.source for c in claims)
    with pytest.raises(ConfigError, match=r"study.report.claims\[0\].beats: 'sphereface' is not an entry"):
        losses_study(['study.report.claims=[{entry: arcface, beats: sphereface, source: "W. Liu 2017"}]'])
    with pytest.raises(ConfigError, match=r"study.report.claims\[0\]: give \{entry"):
        losses_study(['study.report.claims=[{entry: arcface, beats: softmax}]'])
    with pytest.raises(ConfigError, match="two different entries"):
        losses_study(['study.report.claims=[{entry: arcface, ties: arcface, source: x}]'])


@pytest.mark.slow
def test_a_tiny_study_runs_end_to_end_and_resumes_without_redoing_anything(tmp_path: Path) -> None:
    fixed = json.dumps([*TINY, "trainer.steps=4", "trainer.resume=true", "evaluation.curve_holdout=0.2"])
    command = [sys.executable, "-m", "facebench.study", f"study.fixed={fixed}", "study.data_root=null",
               "study.search.protocol=[]", "study.final.protocol=[]", "study.final.folds=[1,2]",
               'study.verifiers.joint_bayesian=["verifier=l2"]', f"study.root={tmp_path}", "study.search.trials=2",
               "study.search.startup_trials=1", "only=[softmax]", "study.final.seeds=[0,1]",
               'study.baselines.pixels=["backbone=pixels","verifier.pca_dim=16"]',
               f"study.report.leaderboard={tmp_path / 'published' / 'LEADERBOARD.md'}",
               f"study.report.presets.root={tmp_path / 'baselines'}", "study.report.presets.baseline=pixels",
               "workers=2"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    records = {p: json.loads(p.read_text()) for p in tmp_path.rglob("metrics.json")}
    search = [r for p, r in records.items() if "search" in p.parts]
    final = [r for p, r in records.items() if "final" in p.parts]
    assert len(search) == 2 and len(final) == 8  # 2 trials; 2 seeds x 2 folds x 2 verifiers, a job each
    chosen = json.loads((tmp_path / "search" / "chosen.json").read_text())["softmax"]
    best = max(search, key=lambda r: r["metrics"]["mean_accuracy"])
    assert chosen == {"trainer.lr": best["components"]["trainer"]["lr"]}
    assert {r["components"]["trainer"]["lr"] for r in final} == {chosen["trainer.lr"]}
    assert all(r["method"] == "softmax" for r in search + final)
    # two entries' sweeps at once (softmax and the pixels floor), each on half the cores
    share = max(1, cores() // 2)
    assert {r["environment"]["threads"]["torch_intra_op"] for r in final} == {share}
    rescored = [r for r in final if r["components"]["verifier"]["name"] == "l2"]
    # the second verifier re-scores the first one's checkpoints, learning curve included
    assert all(u["resumed_from_step"] == 4 and len(u["learning_curve"]) == 4 for r in rescored for u in r["units"])
    # ... and does not count their training time again in the study's cost
    assert all(r["timings"]["earlier_sittings_seconds"] == 0 for r in rescored)
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Verifier `cosine`" in report and "| pixels |" in report and "baseline" in report
    assert "### `cosine`: against the floor `pixels`" in report and "| softmax | " in report.split("against the floor")[1]
    for plot in ("forest-cosine.png", "learning-curves.png", "search/history.png"):
        assert (tmp_path / plot).read_bytes()[:4] == b"\x89PNG"
        assert f'<img src="{plot}"' in (tmp_path / "REPORT.html").read_text()
    page = (tmp_path / "published" / "LEADERBOARD.md").read_text()
    # each seed's one-fold records count as one run of both folds
    assert "2 x 2 folds" in report.split("## Summary")[1].split("##")[0]
    assert "core-hours" in report and "Final and baseline runs made at commit `" in report
    assert "Search trials made at commit `" in report and "(more than one" not in report
    assert "stage=report" in page and "### Verifier `cosine`" in page and "## Reproduction presets" in page
    assert "](../forest-cosine.png)" in page and "| pixels | " in page.split("## Reproduction presets")[1]

    again = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    # the one-job sweeps (8 final, 2 floor) are not even launched; the search's skip job by job
    assert "10 sweeps of one job not launched" in again.stdout and "final softmax" not in again.stdout
    assert len(list(tmp_path.rglob("metrics.json"))) == len(records)
    assert (tmp_path / "REPORT.md").read_text() == report
    assert (tmp_path / "published" / "LEADERBOARD.md").read_text() == page


def test_the_final_stage_refuses_an_unfinished_search(tmp_path: Path) -> None:
    from facebench.__main__ import main  # noqa: F401  (the CLI imports cleanly)
    from facebench.study.__main__ import main as study_main

    assert study_main([f"study.root={tmp_path}", "stage=final", "only=[arcface]"]) == 2


def test_a_chosen_value_at_a_bound_of_its_space_is_called_out() -> None:
    from facebench.study.history import at_the_edge

    space = {"trainer.lr": "tag(log, interval(0.01, 0.5))", "loss.margin": "interval(0.1, 0.6)",
             "loss.kind": "choice(a, b)"}
    # 0.43 is 96% of the way up the log interval; 0.3 is mid-way; 0.11 is 2% above 0.1
    assert at_the_edge({"trainer.lr": 0.43, "loss.margin": 0.3, "loss.kind": "a"}, space) == {
        "trainer.lr": "upper bound 0.5"}
    assert at_the_edge({"trainer.lr": 0.1, "loss.margin": 0.11}, space) == {"loss.margin": "lower bound 0.1"}
    # on a linear reading 0.02 would be at the edge of 0.01-0.5 as well; on the log scale it is 18% in
    assert at_the_edge({"trainer.lr": 0.02}, space) == {}


def test_the_presets_stage_runs_each_method_with_its_own_recipe_at_the_stated_budget() -> None:
    study = losses_study()
    sweeps = study.preset_sweeps()
    assert [s.entry for s in sweeps] == list(study.cfg.report.presets.methods)
    assert {"deepid2", "deepid2plus", "arcface", "pixels"} <= {s.entry for s in sweeps}
    arcface = next(s for s in sweeps if s.entry == "arcface").argv
    assert arcface[0] == "+method=arcface" and "trainer.steps=200" in arcface and "seed=0,1" in arcface
    assert "results_root=results/presets" in arcface and "reuse_complete=true" in arcface
    assert not any(o.startswith("backbone") for o in arcface)  # none of the study's fixed trunk
    with pytest.raises(ConfigError, match="report.presets needs a root and a list of methods"):
        losses_study(["study.report.presets.methods=[]"]).preset_sweeps()


def _searched(root: Path, entry: str, settings: list[dict[str, float]], scores: list[float]) -> None:
    """Trial records of ``entry``'s first search round under ``root``, one per setting."""
    for job, (values, score) in enumerate(zip(settings, scores)):
        folder = root / "search" / entry / "multirun" / "20261207-000000-abcdef" / f"{job}-{entry}-s0"
        folder.mkdir(parents=True)
        components: dict = {}
        for key, value in values.items():
            group, name = key.split(".")
            components.setdefault(group, {})[name] = value
        record = {"schema_version": 1, "status": "complete", "method": entry, "protocol": {"name": "lfw_view1"},
                  "regime": "unrestricted_no_outside", "units": [], "components": components,
                  "metrics": {"mean_accuracy": score}}
        (folder / "metrics.json").write_text(json.dumps(record))


def test_choosing_for_some_entries_keeps_every_finished_search_in_chosen_json(tmp_path: Path) -> None:
    """``only=[...]`` must not shrink the study's published chosen.json (every finished search)."""
    from facebench.study.__main__ import chosen_settings
    from facebench.study.rounds import searches

    lrs = [0.02 + 0.01 * k for k in range(12)]  # inside the lr interval: no widened round is due
    _searched(tmp_path, "softmax", [{"trainer.lr": lr} for lr in lrs], [0.7 + 0.01 * (k == 5) for k in range(12)])
    _searched(tmp_path, "deepid2", [{"trainer.lr": lr, "loss.lambda_": 0.05} for lr in lrs],
              [0.6 + 0.01 * (k == 3) for k in range(12)])
    study = losses_study([f"study.root={tmp_path}"])
    searched = searches(study, list(study.entries))
    assert list(chosen_settings(study, ["softmax"], searched)) == ["softmax"]
    written = json.loads((tmp_path / "search" / "chosen.json").read_text())
    assert written == {"softmax": {"trainer.lr": lrs[5]}, "deepid2": {"trainer.lr": lrs[3], "loss.lambda_": 0.05}}
    with pytest.raises(FacebenchError, match="the search of center is not finished"):
        chosen_settings(study, ["center"], searched)


def test_the_report_says_how_far_a_search_under_way_has_come(tmp_path: Path) -> None:
    from facebench.study.report import _undecided
    from facebench.study.rounds import searches

    _searched(tmp_path, "softmax", [{"trainer.lr": 0.02 + 0.01 * k} for k in range(3)], [0.7, 0.71, 0.72])
    study = losses_study([f"study.root={tmp_path}"])
    found = searches(study, ["softmax", "center"])
    assert found["softmax"].pending_trials == 3 and found["center"].pending_trials == 0
    assert _undecided(found, 12) == ["- `softmax`: search under way, round 0; 3 of its 12 trials have a record",
                                     "- `center`: search under way, round 0; 0 of its 12 trials have a record"]


def test_the_report_tables_only_records_at_the_chosen_settings() -> None:
    """A final record made before its entry's search was widened (or while it is undecided) is
    skipped with the reason, not ranked as the entry's result; floors are not entries."""
    from facebench.leaderboard import Run
    from facebench.study.report import _at_chosen_settings

    def run(method: str, lr: float) -> Run:
        return Run(path=Path(f"{method}-{lr}/metrics.json"), method=method, settings="s", protocol="lfw_view2",
                   regime="r", components={"trainer": {"lr": lr}}, units=("fold1",), units_total=10, seed=0,
                   metric="mean_accuracy", value=0.8, unit_values={"fold1": 0.8}, partial=False, roc=None)

    runs = [run("softmax", 0.1), run("softmax", 0.3), run("contrastive", 0.4), run("pixels", 0.0)]
    kept, skipped = _at_chosen_settings(losses_study(), runs, {"softmax": {"trainer.lr": 0.1}}, [])
    assert [(r.method, r.components["trainer"]["lr"]) for r in kept] == [("softmax", 0.1), ("pixels", 0.0)]
    assert [s.reason for s in skipped] == ["not at the chosen settings of softmax (search/chosen.json)",
                                           "the search of contrastive is not decided yet"]


def test_the_study_cost_counts_every_run_that_spent_compute_once(tmp_path: Path) -> None:
    """A diverged trial's time was spent; an interrupted sitting's is carried by the run that
    resumed it (earlier_sittings_seconds), so counting its own record too would count it twice."""
    from facebench.results import write_record
    from facebench.study.report import _cost

    def record(name: str, status: str, seconds: dict, threads: int, commit: str, error: str | None = None) -> None:
        body = {"status": status, "method": "softmax", "protocol": {"name": "lfw_view1"}, "regime": "r",
                "metrics": {}, "units": [], "timings": seconds,
                "environment": {"git_commit": commit, "threads": {"torch_intra_op": threads}}}
        if error:
            body["error"] = error
        (tmp_path / name).mkdir()
        write_record(tmp_path / name, body)

    record("done", "complete", {"total_seconds": 100.0, "earlier_sittings_seconds": 30.0}, 2, "aaa")
    record("diverged", "failed", {"total_seconds": 40.0}, 1, "bbb", "TrainingDiverged: loss became nan")
    record("stopped", "failed", {"total_seconds": 30.0}, 1, "ccc", "TrainingInterrupted: SIGTERM received")
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "metrics.json").write_text("{")
    assert _cost(tmp_path) == (170.0, 300.0, {"aaa", "bbb"})
