"""A search's history read back from its records: every trial's values and score, the best
trial, and a plot of the search.

The records are the truth: a trial is a run whose complete record lies under the entry's
search folder, its number the Hydra job number its folder starts with (hydra-optuna-sweeper
numbers trials as jobs, and a search resumed in a later sitting re-asks the same seeded trials,
so numbers agree across sittings). Nothing is read from the sweeper's own files.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from facebench.config import ConfigError
from facebench.plots import pyplot, save_figure
from facebench.results import RECORD_FILE, RecordError, diverged, finished, read_record

_JOB = re.compile(r"^(\d+)-")


def component_value(components: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` ("trainer.lr") of a record's components; None where absent."""
    node: Any = components or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def trials(root: Path, keys: list[str], objective: str) -> pd.DataFrame:
    """One row per trial under ``root``: ``trial``, each of ``keys``, ``objective`` (the record's
    metric; NaN for a trial whose training diverged), ``seconds`` and ``path``; a trial's newest
    record if it was run twice. An interrupted trial is not one yet: the next sitting resumes it."""
    rows = []
    for path in sorted(root.glob(f"multirun/*/*/{RECORD_FILE}")):
        match = _JOB.match(path.parent.name)
        if not match:
            continue
        try:
            record = read_record(path)
        except RecordError:
            continue
        if finished(record):
            value = (record.get("metrics") or {}).get(objective)
        elif diverged(record):
            value = math.nan  # a trial whose settings diverge: tried, and no score
        else:
            continue  # interrupted (resumed by the next sitting) or broken: not a trial yet
        rows.append({
            "trial": int(match.group(1)),
            **{key: component_value(record.get("components"), key) for key in keys},
            objective: value,
            "seconds": (record.get("timings") or {}).get("total_seconds"),
            "config_key": record.get("config_key"),
            "path": str(path.parent),
        })
    table = pd.DataFrame(rows, columns=["trial", *keys, objective, "seconds", "config_key", "path"])
    return table.drop_duplicates("trial", keep="last").sort_values("trial").reset_index(drop=True)


def best(table: pd.DataFrame, keys: list[str], objective: str) -> dict[str, Any]:
    """The values of the best trial (the highest objective; the earliest of equals)."""
    scored = table.dropna(subset=[objective])
    if scored.empty:
        raise ValueError("no trial has a score")
    row = scored.loc[scored[objective].idxmax()]
    return {key: _plain(row[key]) for key in keys}


#: How close to a bound of its interval (as a share of the interval, on the log scale for a
#: ``tag(log, ...)`` one) a chosen value must lie to be called at the edge of its space.
EDGE_SHARE = 0.05


def parse_interval(key: str, expression: str) -> tuple[float, float, list[str]]:
    """(low, high, tags) of a Hydra sweep expression ``interval(...)``, tagged or not; an
    expression of another kind (a choice, a range) is a ConfigError naming ``key``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    sweep = OverridesParser.create().parse_override(f"{key}={expression}").value()
    if not isinstance(sweep, IntervalSweep):
        raise ConfigError(f"{key}={expression}: not an interval(low, high) sweep")
    return float(sweep.start), float(sweep.end), sorted(sweep.tags)


def at_the_edge(chosen: dict[str, Any], space: dict[str, str]) -> dict[str, str]:
    """The chosen values that lie at a bound of their searched interval, each with the bound
    (``{"trainer.lr": "upper bound 0.5"}``): a best value there says the optimum may lie
    outside what was searched, so the entry may be under-tuned rather than worse."""
    found = {}
    for key, expression in space.items():
        value = chosen.get(key)
        if not isinstance(value, (int, float)) or "interval(" not in expression:
            continue
        start, end, tags = parse_interval(key, expression)
        lo, hi, v = start, end, float(value)
        if "log" in tags:
            lo, hi, v = math.log(lo), math.log(hi), math.log(v)
        share = (v - lo) / (hi - lo)
        if share <= EDGE_SHARE:
            found[key] = f"lower bound {start:g}"
        elif share >= 1 - EDGE_SHARE:
            found[key] = f"upper bound {end:g}"
    return found


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (exact: repr of a float round-trips)."""
    return value.item() if hasattr(value, "item") else value


def write_history(root: Path, table: pd.DataFrame) -> None:
    """history.csv beside the entry's runs (the CSV the search plot is drawn from)."""
    from facebench.results import write_text

    write_text(root / "history.csv", table.drop(columns=["path"]).to_csv(index=False))


def save_plot(path: Path, histories: dict[str, pd.DataFrame], objective: str) -> None:
    """One panel per entry: each trial's score and the best so far, a cross at the foot for each
    trial that diverged, a dotted line where a round on a widened space (facebench.study.rounds)
    begins."""
    n = len(histories)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = pyplot().subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for ax, (entry, table) in zip(axes.ravel(), histories.items()):
        scored = table.dropna(subset=[objective])
        ax.plot(scored["trial"], scored[objective], "o", ms=4, label="trial")
        ax.plot(scored["trial"], scored[objective].cummax(), "-", lw=1.2, label="best so far")
        diverged = table[table[objective].isna()]
        if len(diverged):  # tried, no score: marked along the panel's foot
            ax.plot(diverged["trial"], [0.03] * len(diverged), "x", color="tab:red", ms=4, label="diverged",
                    transform=ax.get_xaxis_transform())
        for start in scored.groupby("round")["trial"].min().iloc[1:] if "round" in scored else []:
            ax.axvline(start - 0.5, ls=":", color="grey", lw=1)
        ax.set_title(entry, fontsize=9)
        ax.set_xlabel("trial", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel(objective, fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(path, fig)


def write_chosen(path: Path, chosen: dict[str, dict[str, Any]]) -> None:
    from facebench.results import write_text

    write_text(path, json.dumps(chosen, indent=2, sort_keys=True) + "\n")
