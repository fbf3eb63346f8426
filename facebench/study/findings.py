"""What a study's final records answer, in the terms its question is asked in.

A leaderboard tests every entry against one baseline; the study's question is wider: which
losses no test tells apart. So every pair of entries is compared (paired t-test over the folds
both were scored on, each side's per-fold accuracy first averaged over its seeds), with Holm's
adjustment over all pairs of one verifier. And before any of it is read as a result, every entry
is held to the study's bars against the no-training floor scored the same way (``report.bars``):
an entry below one is a bug to look for (its learning curve, its search history), which the
report says next to the number. Last, what the papers claim (``report.claims``: one entry beats
another, or two are as good as each other) is checked against the same pairwise tests, so the
comparison with the literature is read off the records rather than written by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from facebench.leaderboard import Run, holm, markdown_table, paired_test, seed_averaged_units

#: Holm-adjusted p-values at or above this say "not told apart".
ALPHA = 0.05


def per_fold_means(runs: list[Run]) -> dict[str, pd.Series]:
    """Each entry's accuracy per unit (fold), averaged over its runs (seeds)."""
    grouped: dict[str, list[Run]] = {}
    for run in runs:
        grouped.setdefault(run.method, []).append(run)
    return {method: seed_averaged_units(members) for method, members in grouped.items()}


def pairwise(runs: list[Run]) -> pd.DataFrame:
    """One row per pair of entries (``a`` has the higher mean over the common folds): the mean
    difference, the paired t-test and its Holm-adjusted p-value over all pairs."""
    means = per_fold_means(runs)
    rows = []
    for first, second in combinations(sorted(means), 2):
        common = means[first].index.intersection(means[second].index)
        a, b = means[first][common], means[second][common]
        if a.mean() < b.mean():
            first, second, a, b = second, first, b, a
        test = paired_test(a, b)
        rows.append({"a": first, "b": second, "folds": len(common), "delta": test["delta"],
                     "t_pvalue": test.get("t_pvalue", np.nan)})
    table = pd.DataFrame(rows, columns=["a", "b", "folds", "delta", "t_pvalue"])
    table["holm"] = np.nan
    tested = table["t_pvalue"].notna()
    if tested.any():
        table.loc[tested, "holm"] = holm(table.loc[tested, "t_pvalue"].to_numpy())
    return table


def pair_row(pairs: pd.DataFrame, first: str, second: str) -> Optional[pd.Series]:
    """The row of ``pairwise``'s table that compares the two entries, in either order; None if none."""
    row = pairs[((pairs["a"] == first) & (pairs["b"] == second)) | ((pairs["a"] == second) & (pairs["b"] == first))]
    return row.iloc[0] if len(row) else None


def told_apart(pairs: pd.DataFrame, first: str, second: str) -> bool:
    row = pair_row(pairs, first, second)
    return row is not None and bool(row["holm"] < ALPHA)


def pairwise_lines(runs: list[Run]) -> list[str]:
    """The matrix of Holm-adjusted p-values (entries by mean, best first) and what it says in words."""
    means = per_fold_means(runs)
    if len(means) < 2:
        return []
    order = sorted(means, key=lambda m: -means[m].mean())
    pairs = pairwise(runs)
    cells = {}
    for row in pairs.itertuples():
        text = "-" if np.isnan(row.holm) else f"{row.holm:.2g}" + (" *" if row.holm < ALPHA else "")
        cells[(row.a, row.b)] = cells[(row.b, row.a)] = text
    matrix = pd.DataFrame([[("" if r == c else cells.get((r, c), "-")) for c in order] for r in order],
                          index=order, columns=order)
    matrix.index.name = "entry"
    best = order[0]
    tied = [m for m in order[1:] if not told_apart(pairs, best, m)]
    below = [m for m in order[1:] if m not in tied]
    folds = int(pairs["folds"].max())
    lines = [
        f"Every pair of entries, paired over the {folds} folds both were scored on (per-fold accuracy averaged "
        f"over seeds), t-test with Holm's adjustment over the {len(pairs)} pair{'s' * (len(pairs) != 1)}; "
        f"`*`: Holm p < {ALPHA}.", "",
        *markdown_table(matrix.reset_index()), "",
        f"- Not told apart from the best entry (`{best}`, {means[best].mean():.2%}): "
        + (", ".join(f"`{m}` ({means[m].mean():.2%})" for m in tied) if tied else "none") + ".",
        f"- Below it with Holm p < {ALPHA}: " + (", ".join(f"`{m}` ({means[m].mean():.2%})" for m in below) or "none") + ".",
        "",
    ]
    return lines


def floor_lines(table: pd.DataFrame, floor: str, bars: Mapping[str, Any]) -> list[str]:
    """Each entry's mean against the floor's under one verifier, and which of ``bars``
    (``min_accuracy``; ``min_margin`` over the floor, and above it in any case) it misses;
    nothing while either side has no record."""
    floor_rows = table[table["method"] == floor]
    if floor_rows.empty or (table["method"] == floor).all():
        return []
    floor_mean = float(floor_rows["mean"].iloc[0])
    min_accuracy = bars.get("min_accuracy")
    min_margin = bars.get("min_margin")
    rows = []
    for row in table[table["method"] != floor].itertuples():
        margin = row.mean - floor_mean
        missed = []
        if min_accuracy is not None and row.mean < float(min_accuracy):
            missed.append(f"below {float(min_accuracy):.0%}")
        if min_margin is not None and (margin < float(min_margin) or margin <= 0):
            missed.append(f"less than {float(min_margin) * 100:.0f} points above `{floor}`" if float(min_margin) > 0
                          else f"not above `{floor}`")
        rows.append({"entry": row.method, "mean": f"{row.mean:.2%}", f"minus {floor}": f"{margin * 100:+.2f} points",
                     "bars": "missed: " + "; ".join(missed) + " (a bug to look for, not a result)" if missed else "met"})
    wanted = []
    if min_accuracy is not None:
        wanted.append(f"at least {float(min_accuracy):.0%}")
    if min_margin is not None:
        wanted.append((f"at least {float(min_margin) * 100:.0f} points above" if float(min_margin) > 0 else "above")
                      + f" `{floor}` ({floor_mean:.2%})")
    return [f"Bars every entry must clear here: {' and '.join(wanted)}.", "",
            *markdown_table(pd.DataFrame(rows)), ""]


@dataclass(frozen=True)
class Claim:
    """A paper's claim about two entries: ``entry`` beats ``other`` (``kind`` "beats") or no
    test tells them apart (``kind`` "ties"), and who claims it (``source``)."""

    entry: str
    kind: str
    other: str
    source: str


def claim_lines(runs: list[Run], claims: list[Claim]) -> list[str]:
    """Each claim against this study's pairwise tests (Holm over all pairs): holds, not shown
    (no test tells the two apart, for a claim that one beats the other), or contradicted."""
    pairs = pairwise(runs)
    rows = []
    for claim in claims:
        row = pair_row(pairs, claim.entry, claim.other)
        if row is None:  # an entry with no record yet
            continue
        ahead = str(row["a"])
        delta = float(row["delta"]) if ahead == claim.entry else -float(row["delta"])
        apart = bool(row["holm"] < ALPHA)
        if claim.kind == "beats":
            verdict = ("holds" if ahead == claim.entry else f"contradicted: `{claim.other}` ahead") if apart \
                else "not shown: no test tells them apart here"
        else:
            verdict = f"contradicted: `{ahead}` ahead" if apart else "holds: no test tells them apart"
        holm_p = "-" if np.isnan(row["holm"]) else f"{row['holm']:.2g}"
        rows.append({"claim": f"`{claim.entry}` {claim.kind} `{claim.other}`", "source": claim.source,
                     "difference": f"{delta * 100:+.2f} points", "Holm p": holm_p, "here": verdict})
    if not rows:
        return []
    return [f"What the papers claim, against the tests above (difference: the claim's first entry minus its "
            f"second, over common folds; a claim that one entry beats another holds where Holm p < {ALPHA} "
            f"with it ahead).", "", *markdown_table(pd.DataFrame(rows)), ""]
