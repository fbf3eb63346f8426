"""The study's findings from records: every pair of entries tested over common folds with
Holm's adjustment, and every entry held to the bars against the no-training floor."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from facebench.leaderboard import Run, holm, leaderboard
from facebench.study.findings import Claim, claim_lines, floor_lines, pairwise, pairwise_lines

FOLDS = [f"fold{i}" for i in range(1, 11)]


def _run(method: str, seed: int, values: np.ndarray) -> Run:
    return Run(path=Path(f"{method}-{seed}"), method=method, settings="s", components={}, protocol="lfw_view2",
               regime="unrestricted_no_outside", units=tuple(FOLDS), units_total=10, seed=seed,
               metric="mean_accuracy", value=float(values.mean()), unit_values=dict(zip(FOLDS, map(float, values))),
               partial=False, roc=None)


def _study() -> list[Run]:
    rng = np.random.default_rng(0)
    base = 0.80 + rng.normal(0, 0.01, 10)
    runs = []
    for seed in range(3):
        noise = rng.normal(0, 0.01, (3, 10))
        runs += [_run("best", seed, base + 0.03 + noise[0]), _run("close", seed, base + 0.029 + noise[1]),
                 _run("low", seed, base - 0.05 + noise[2])]
    return runs


def test_every_pair_is_tested_on_seed_averaged_folds_with_holm_over_all_pairs() -> None:
    runs = _study()
    pairs = pairwise(runs).set_index(["a", "b"])
    assert len(pairs) == 3 and (pairs["delta"] > 0).all()  # the higher mean is always `a`
    means = {m: pd.DataFrame([r.unit_values for r in runs if r.method == m]).mean() for m in ("best", "low")}
    expected = stats.ttest_rel(means["best"], means["low"]).pvalue
    assert pairs.loc[("best", "low"), "t_pvalue"] == expected
    assert np.allclose(pairs["holm"], holm(pairs["t_pvalue"].to_numpy()))
    text = "\n".join(pairwise_lines(runs))
    assert "Not told apart from the best entry (`best`" in text and "`close`" in text.split("Below it")[0]
    assert "`low`" in text.split("Below it")[1] and "over the 3 pairs" in text


def test_an_entry_below_a_bar_is_named_as_a_bug_to_look_for() -> None:
    rng = np.random.default_rng(1)
    runs = [_run(m, s, v + rng.normal(0, 0.003, 10)) for s in range(3)
            for m, v in (("pixels", np.full(10, 0.65)), ("good", np.full(10, 0.80)), ("weak", np.full(10, 0.70)))]
    table = leaderboard(runs)
    text = "\n".join(floor_lines(table, "pixels", {"min_accuracy": 0.75, "min_margin": 0.08}))
    good = next(line for line in text.splitlines() if line.startswith("| good"))
    weak = next(line for line in text.splitlines() if line.startswith("| weak"))
    assert good.endswith("| met |") and "| +14.9" in good
    assert "missed: below 75%; less than 8 points above `pixels`" in weak and "a bug to look for" in weak
    under_jb = "\n".join(floor_lines(table, "pixels", {"min_margin": 0.0}))
    assert "Bars every entry must clear here: above `pixels`" in under_jb
    assert next(line for line in under_jb.splitlines() if line.startswith("| weak")).endswith("| met |")
    assert "| pixels | 6" in (below := "\n".join(floor_lines(table, "weak", {"min_margin": 0.0}))) and "missed: not above `weak`" in below
    assert floor_lines(table[table["method"] != "pixels"], "pixels", {}) == []
    assert floor_lines(table[table["method"] == "pixels"], "pixels", {}) == []


def test_each_papers_claim_is_read_off_the_pairwise_tests() -> None:
    runs = _study()
    claims = [Claim("best", "beats", "low", "paper A"), Claim("low", "beats", "best", "paper B"),
              Claim("close", "beats", "best", "paper C"), Claim("close", "ties", "best", "paper D"),
              Claim("low", "ties", "close", "paper E"), Claim("best", "beats", "absent", "paper F")]
    rows = {line.split("|")[1].strip(): line for line in claim_lines(runs, claims) if line.startswith("| `")}
    assert rows["`best` beats `low`"].endswith("| holds |") and "paper A" in rows["`best` beats `low`"]
    assert "contradicted: `best` ahead" in rows["`low` beats `best`"] and "| -" in rows["`low` beats `best`"]
    assert "not shown: no test tells them apart here" in rows["`close` beats `best`"]
    assert "holds: no test tells them apart" in rows["`close` ties `best`"]
    assert "contradicted: `close` ahead" in rows["`low` ties `close`"]
    assert len(rows) == 5  # a claim about an entry with no record yet waits for it
    assert claim_lines(runs, []) == []


def test_the_summary_puts_each_entrys_verifiers_side_by_side_with_its_holm_test() -> None:
    from facebench.study.report import summary_lines

    runs = _study()
    cosine = leaderboard(runs, "low")
    jb = leaderboard([r for r in runs if r.method != "close"], "low")
    lines = summary_lines({"cosine": cosine, "jb": jb}, "low")
    assert lines[0] == "| entry | cosine | cosine vs low (Holm p) | jb | jb vs low (Holm p) | runs | flags |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines[2:]}
    assert list(rows) == ["best", "close", "low"]  # the first verifier's ranking
    best = cosine.set_index("method").loc["best"]
    assert rows["best"][1] == f"{best['mean']:.2%} (95% CI {best['ci_low']:.2%} to {best['ci_high']:.2%})"
    assert rows["best"][2] == f"{best['delta']:+.2%} (p={best['t_pvalue_holm']:.3g})"
    assert rows["low"][2] == "baseline" and rows["close"][3] == "" and rows["best"][5] == "3 x 10 folds"
