"""The leaderboard against statistics computed directly with scipy on hand-made records, and
its handling of records that must not count."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from facebench import leaderboard as lb
from facebench.results import write_record

FOLDS = [f"fold{i:02d}" for i in range(1, 11)]
SEEDS = (0, 1, 2)
XSS = "<script>alert(1)</script>"


def accuracies(method: str, seed: int) -> np.ndarray:
    """Known per-fold accuracies: B beats A by a margin that differs per fold (no tied
    differences, so scipy computes the Wilcoxon p-value exactly, not by permutation)."""
    base = 0.80 + 0.01 * np.arange(10) + 0.003 * seed
    return base + (0.015 + 0.0013 * np.arange(10) ** 1.5 if method == "B" else 0.0)


def record(method: str, seed: int, acc: np.ndarray, folds: list[str] = FOLDS, **extra) -> dict:
    return {
        "status": "partial" if len(folds) < 10 else "complete",
        "method": method,
        "components": {"loss": {"name": method.lower()[:8], "margin": 0.5}, "data": {"name": "synthetic", "root": None}},
        "protocol": {"name": "synthetic", "seed": 1234, "folds": None, "units_evaluated": folds, "units_total": 10},
        "regime": "unrestricted_labeled_outside",
        "seed": seed,
        "metrics": {
            "mean_accuracy": float(acc.mean()),
            "roc": {"fpr": [0.0, 0.01, 0.1, 1.0], "tpr": [0.0, 0.3, 0.7, 1.0], "thresholds": [None, 0.9, 0.5, 0.0]},
        },
        "units": [{"name": f, "accuracy": float(a)} for f, a in zip(folds, acc)],
        "primary_metric": "mean_accuracy",
        **extra,
    }


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    for method in ("A", "B"):
        for seed in SEEDS:
            run = results / "multirun" / f"{method}-s{seed}"
            run.mkdir(parents=True)
            write_record(run, record(method, seed, accuracies(method, seed)))
    odd = {
        "xss": record(XSS, 0, accuracies("B", 0)),
        "partial": record("B", 0, accuracies("B", 0)[:3], folds=FOLDS[:3]),
        "failed": {**record("A", 9, accuracies("A", 9)), "status": "failed", "error": "RuntimeError: boom"},
    }
    for name, rec in odd.items():
        (results / name).mkdir()
        write_record(results / name, rec)
    (results / "broken").mkdir()
    (results / "broken" / "metrics.json").write_text('{"status": "complete", ')
    (results / "killed").mkdir()
    (results / "killed" / "config.yaml").write_text("method: A\n")
    return results


def by_method(table: pd.DataFrame, method: str, n_units: int = 10) -> pd.Series:
    rows = table[(table["method"] == method) & (table["n_units"] == n_units)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_ci_and_paired_tests_equal_scipy(root: Path) -> None:
    runs, _ = lb.collect(root)
    table = lb.leaderboard(runs, baseline="A")
    per_run = {m: np.array([accuracies(m, s).mean() for s in SEEDS]) for m in ("A", "B")}
    for method, values in per_run.items():
        row = by_method(table, method)
        low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
        assert (row["n_runs"], row["n_units"]) == (3, 10)
        assert row["mean"] == pytest.approx(values.mean())
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    unit_means = {m: np.mean([accuracies(m, s) for s in SEEDS], axis=0) for m in ("A", "B")}
    t = stats.ttest_rel(unit_means["B"], unit_means["A"])
    w = stats.wilcoxon(unit_means["B"], unit_means["A"])
    b = by_method(table, "B")
    assert (b["t_statistic"], b["t_pvalue"]) == pytest.approx((t.statistic, t.pvalue))
    assert (b["wilcoxon_statistic"], b["wilcoxon_pvalue"]) == pytest.approx((w.statistic, w.pvalue))
    assert b["delta"] == pytest.approx((unit_means["B"] - unit_means["A"]).mean())
    assert by_method(table, "A")["test_note"] == "baseline"
    # the 3-fold partial run is its own group and is not paired with 10-fold baselines
    partial = by_method(table, "B", n_units=3)
    assert partial["partial"] and partial["test_note"] == "no baseline run on these units"


def test_unusable_records_are_skipped_and_listed(root: Path) -> None:
    runs, skipped = lb.collect(root)
    assert len(runs) == 8
    reasons = {s.path.relative_to(root).parts[0]: s.reason for s in skipped}
    assert set(reasons) == {"broken", "failed", "killed"}
    assert reasons["broken"].startswith("broken record")
    assert "status failed" in reasons["failed"] and "boom" in reasons["failed"]
    assert "without metrics.json" in reasons["killed"]


def test_rerun_of_a_seed_supersedes_the_older_record(tmp_path: Path) -> None:
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        write_record(tmp_path / name, record("A", 0, accuracies("A", 0)))
    runs, skipped = lb.collect(tmp_path)
    assert len(runs) == 1 and len(skipped) == 1 and "superseded" in skipped[0].reason


def test_cli_writes_escaped_html_markdown_and_csv(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    md = tmp_path / "LEADERBOARD.md"
    assert lb.main(["--root", str(root), "--baseline", "A", "--markdown", str(md)]) == 0
    out = root / "leaderboard"
    page = (out / "index.html").read_text()
    assert XSS not in page and html.escape(XSS) in page
    assert (out / "roc.png").stat().st_size > 0 and 'src="roc.png"' in page
    text = md.read_text()
    assert text == (out / "leaderboard.md").read_text()
    assert XSS not in text and "n=1, no CI" in text and "paired t-test" in text and "Wilcoxon signed-rank" in text
    assert f"Made by `python -m facebench.leaderboard --root {root} --baseline A --markdown {md}`" in text
    assert "Runs made on: device ?" in text  # the hand-made records name no machine, and the page says so
    csv = pd.read_csv(out / "leaderboard.csv")
    assert set(csv["method"]) == {"A", "B", XSS} and len(csv) == 4
    printed = capsys.readouterr().out
    assert "skipped" in printed and "broken" in printed


def test_holm_adjusts_the_paired_tests_of_one_family(root: Path) -> None:
    assert lb.holm(np.array([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    assert lb.holm(np.array([0.5, 0.001])) == pytest.approx([0.5, 0.002])
    runs, _ = lb.collect(root)
    table = lb.leaderboard(runs, baseline="A")
    family = table[(table["n_units"] == 10) & table["t_pvalue"].notna()]
    assert list(family["t_pvalue_holm"]) == pytest.approx(list(lb.holm(family["t_pvalue"].to_numpy())))
    cells = [lb._test_cells(row)[0] for _, row in family.iterrows()]
    assert all("Holm p=" in c for c in cells)


def test_the_page_shows_a_forest_plot(root: Path) -> None:
    assert lb.main(["--root", str(root), "--baseline", "A"]) == 0
    out = root / "leaderboard"
    assert (out / "forest.png").stat().st_size > 0 and 'src="forest.png"' in (out / "index.html").read_text()


def test_an_entry_of_one_run_stays_on_the_forest_plot(tmp_path: Path) -> None:
    """A floor that cannot vary (raw pixels: one run) or an entry whose seeds are still to come
    has no interval, and is drawn anyway: the plot is what a reader compares entries against."""
    runs = []
    for method in ("A", "B"):
        folder = tmp_path / method
        folder.mkdir()
        write_record(folder, record(method, 0, accuracies(method, 0)))
        runs += lb.collect(folder)[0]
    table = lb.leaderboard(runs)
    assert table["ci_low"].isna().all()
    assert lb.save_forest_plot(tmp_path / "forest.png", table) and (tmp_path / "forest.png").stat().st_size > 0
    assert not lb.save_forest_plot(tmp_path / "none.png", table.iloc[0:0])


def test_convergence_is_judged_on_the_entrys_curve_averaged_over_its_folds_and_seeds(tmp_path: Path) -> None:
    """One fold's curve on 500 pairs moves by a point or two by chance: a fold that rose 2
    points in the last quarter while the others stayed flat does not flag the entry."""
    def curve(last: float) -> list[dict]:
        return [{"fraction": f, "val_accuracy": a} for f, a in ((0.25, 0.7), (0.5, 0.78), (0.75, 0.8), (1.0, last))]

    for method, lasts in (("flat", (0.82, 0.8, 0.795)), ("rising", (0.82, 0.815, 0.81))):
        for seed, last in enumerate(lasts):
            rec = record(method, seed, accuracies("A", seed))
            rec["units"][0]["learning_curve"] = curve(last)
            for unit in rec["units"][1:]:
                unit["learning_curve"] = curve(last)
            run = tmp_path / f"{method}-s{seed}"
            run.mkdir()
            write_record(run, rec)
    runs, _ = lb.collect(tmp_path)
    first = next(r for r in runs if r.method == "flat" and r.seed == 0)
    assert lb.NOT_CONVERGED in first.flags  # that run alone rose 2 points
    flags = dict(zip(lb.leaderboard(runs)["method"], lb.leaderboard(runs)["flags"]))
    assert lb.NOT_CONVERGED not in flags["flat"]  # the entry's mean rose 0.5 points
    assert lb.NOT_CONVERGED in flags["rising"]  # 1.5 points on average


def test_a_run_made_one_fold_per_job_counts_as_the_run_its_folds_make(tmp_path: Path) -> None:
    """A study's final runs are one job per (seed, fold): each seed's ten one-fold records join
    into one 10-fold run, with the same row (mean, CI, paired test) as ten-fold records give."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    for method in ("A", "B"):
        for seed in SEEDS:
            acc = accuracies(method, seed)
            write_record(whole / f"{method}-s{seed}", record(method, seed, acc))
            for k, fold in enumerate(FOLDS):
                curve = [{"fraction": 1.0, "val_accuracy": 0.8}]
                rec = record(method, seed, acc[k:k + 1], folds=[fold])
                rec["units"][0]["learning_curve"] = curve
                write_record(split / f"{method}-s{seed}-{fold}", rec)
    runs, skipped = lb.collect(split)
    assert len(runs) == 6 and not skipped
    joined = next(r for r in runs if r.method == "B" and r.seed == 1)
    assert joined.units == tuple(FOLDS) and not joined.partial and len(joined.parts) == 10
    assert joined.value == pytest.approx(accuracies("B", 1).mean()) and len(joined.curves) == 10
    columns = ["method", "n_runs", "n_units", "partial", "mean", "ci_low", "ci_high", "t_pvalue", "wilcoxon_pvalue"]
    expected = lb.leaderboard(lb.collect(whole)[0], baseline="A")[columns]
    pd.testing.assert_frame_equal(lb.leaderboard(runs, baseline="A")[columns], expected)
    # a seed with some folds still to come is a partial run of the folds it has
    for fold in FOLDS[3:]:
        (split / f"A-s2-{fold}" / "metrics.json").unlink()
    part = next(r for r in lb.collect(split)[0] if r.method == "A" and r.seed == 2)
    assert part.units == tuple(FOLDS[:3]) and part.partial


def test_records_of_overlapping_folds_are_not_joined(root: Path) -> None:
    """The fixture's 3-fold record of B seed 0 overlaps its 10-fold record: both stay runs."""
    runs, _ = lb.collect(root)
    assert sorted(len(r.units) for r in runs if r.method == "B" and r.seed == 0) == [3, 10]
    assert not any(r.parts for r in runs)
