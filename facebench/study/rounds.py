"""An entry's search as rounds: the first on the space the study and the loss declare, and, where
its best trial lies at a bound of that space, another of the same size on the space widened past
that bound.

Why: a best value at a bound says the optimum may lie outside what was searched, so the entry
may be under-tuned rather than worse, and a comparison that ranks it there is unfair to it. The
rule is applied to every entry alike (``search.widen.rounds`` more rounds at most, each bound
moved by ``search.widen.factor``: an upper bound multiplied, a lower one divided, so positive
settings stay positive); the choice is the best trial of all of an entry's rounds, and the
report says which entries were searched again and on what. The extra rounds cost those entries
more trials than the others; it buys what the first search could not reach.

Each round is its own Optuna search (seeded as the first) under ``search/<entry>/round-<n>``;
the records are the truth, as for the first round (facebench.study.history).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from facebench.config import ConfigError
from facebench.study.history import at_the_edge, best, parse_interval, trials

if TYPE_CHECKING:
    from facebench.study.spec import Study


@dataclass(frozen=True)
class Round:
    """One search of an entry: its number (0: the first), where its records go, its space."""

    number: int
    root: Path
    space: dict[str, str]


@dataclass(frozen=True)
class EntrySearch:
    """An entry's rounds as far as its records go. ``pending`` is the round still to run (its
    records incomplete), None once the search is decided; ``table`` holds every complete trial
    of the finished rounds (``round`` column; ``trial`` numbered on across rounds);
    ``pending_trials`` counts the pending round's trials with a record so far."""

    rounds: list[Round]
    table: pd.DataFrame
    pending: Round | None
    pending_trials: int = 0

    @property
    def space(self) -> dict[str, str]:
        """The space of the last round: where the choice's edges are judged."""
        return self.rounds[-1].space

    @property
    def widened(self) -> dict[str, str]:
        """Each key whose interval differs from the first round's, with its last interval."""
        first = self.rounds[0].space
        return {k: v for k, v in self.space.items() if first.get(k) != v}


def widen(space: dict[str, str], edges: dict[str, str], factor: float) -> dict[str, str]:
    """``space`` with each interval in ``edges`` ("upper bound 0.5") moved past that bound by
    ``factor`` (upper x factor, lower / factor); the interval keeps its tags (log stays log)."""
    if factor <= 1:
        raise ConfigError(f"study.search.widen.factor={factor}: give a number above 1")
    out = dict(space)
    for key, where in edges.items():
        low, high, tags = parse_interval(key, space[key])
        if where.startswith("upper"):
            high *= factor
        else:
            low /= factor
        interval = f"interval({low:g}, {high:g})"
        out[key] = f"tag({', '.join(tags)}, {interval})" if tags else interval
    return out


def round_root(entry_root: Path, number: int) -> Path:
    return entry_root if number == 0 else entry_root / f"round-{number}"


def entry_search(entry_root: Path, space: dict[str, str], search: Any) -> EntrySearch:
    """Read an entry's rounds back from its records (``search``: the study's ``search`` node)."""
    objective, wanted = str(search.objective), int(search.trials)
    widening = search.get("widen") or {}
    most = int(widening.get("rounds", 0))
    keys = list(space)
    rounds: list[Round] = []
    tables: list[pd.DataFrame] = []
    while True:
        current = Round(len(rounds), round_root(entry_root, len(rounds)), space)
        rounds.append(current)
        table = trials(current.root, keys, objective).head(wanted)
        if len(table) < wanted:
            return EntrySearch(rounds, _joined(tables, keys, objective), current, len(table))
        tables.append(table.assign(round=current.number, trial=table["trial"] + current.number * wanted))
        edges = at_the_edge(best(_joined(tables, keys, objective), keys, objective), space)
        if not edges or current.number >= most:
            return EntrySearch(rounds, _joined(tables, keys, objective), None)
        space = widen(space, edges, float(widening.get("factor", 4)))


def _joined(tables: list[pd.DataFrame], keys: list[str], objective: str) -> pd.DataFrame:
    columns = ["round", "trial", *keys, objective, "seconds", "config_key", "path"]
    if not tables:
        return pd.DataFrame(columns=columns)
    return pd.concat(tables, ignore_index=True)[columns]


def searches(study: "Study", entries: list[str]) -> dict[str, EntrySearch]:
    """Each of ``entries``' search rounds as far as its records go."""
    return {e: entry_search(study.search_root(e), study.spaces[e], study.cfg.search) for e in entries}
