"""A study's report, made from its records alone: ``<root>/REPORT.md`` (and REPORT.html) with one leaderboard per
verifier (mean and 95% CI over seeds, paired tests over folds against the study's baseline
entry, Holm-adjusted across entries; each entry against the floor's bars and every pair of
entries tested, and the papers' claims checked against those tests, facebench.study.findings),
what was fixed, the budget, the trials per entry, the CPU time every record says it took, and
the plots (forest per verifier, learning curves, the searches' histories). Re-running it on the
same records gives the same files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from facebench.html_page import html_page
from facebench.leaderboard import CONFIDENCE, Run, Skipped, collect, display_table, leaderboard, markdown_table, save_forest_plot
from facebench.plots import pyplot, save_figure
from facebench.results import interrupted, readable_records, write_text
from facebench.study.findings import claim_lines, floor_lines, pairwise_lines
from facebench.study.history import at_the_edge, component_value
from facebench.study.rounds import EntrySearch
from facebench.study.spec import Study


def _verifier(run: Run) -> str:
    return str((run.components.get("verifier") or {}).get("name"))


def _cost(root: Path) -> tuple[float, float, set[str]]:
    """Wall seconds and core seconds (wall x the torch threads the run had) of every run under
    ``root``, and the commits they were made at: failed records too (a search trial that
    diverged, a crash), whose time was spent all the same. A record stopped by a signal is left
    out: the run that resumed it counts that sitting's training time (``earlier_sittings_seconds``),
    which would otherwise be counted twice. Unreadable records are passed over, as the
    leaderboard passes over them."""
    wall = core = 0.0
    commits: set[str] = set()
    for _, record in readable_records(root):
        if interrupted(record):
            continue
        timings = record.get("timings") or {}
        seconds = float(timings.get("total_seconds") or 0.0) + float(timings.get("earlier_sittings_seconds") or 0.0)
        environment = record.get("environment") or {}
        threads = (environment.get("threads") or {}).get("torch_intra_op") or environment.get("cpu_count") or 1
        wall += seconds
        core += seconds * int(threads)
        commits.add(str(environment.get("git_commit")))
    return wall, core, commits


def _made_at(what: str, commits: set[str]) -> str:
    """Which commit(s) records were made at; more than one is called out."""
    return (f"{what} made at commit " + (", ".join(f"`{c}`" for c in sorted(commits)) or "(none yet)")
            + (" (more than one: not one code version)" if len(commits) > 1 else "") + ".")


def _at_chosen_settings(study: Study, runs: list[Run], chosen: dict[str, dict[str, Any]],
                        skipped: list[Skipped]) -> tuple[list[Run], list[Skipped]]:
    """The runs of the study's entries made at their chosen settings; any other (made before a
    search was widened, or while it is undecided) is skipped with the reason, so the tables
    report nothing but the settings the searches chose."""
    kept = []
    for run in runs:
        if run.method in study.entries and run.method not in chosen:
            reason = f"the search of {run.method} is not decided yet"
        elif run.method in chosen and any(component_value(run.components, k) != v for k, v in chosen[run.method].items()):
            reason = f"not at the chosen settings of {run.method} (search/chosen.json)"
        else:
            kept.append(run)
            continue
        skipped += [Skipped(path, reason) for path in run.parts or (run.path,)]
    return kept, skipped


def _undecided(found: dict[str, EntrySearch], trials: int) -> list[str]:
    """A line per entry whose search is still running: its round and what that round searches."""
    lines = []
    for entry, search in found.items():
        pending = search.pending
        if pending is None:
            continue
        first = search.rounds[0].space
        over = ", ".join(f"`{k}` over `{v}`" for k, v in pending.space.items() if first.get(k) != v)
        lines.append(f"- `{entry}`: search under way, round {pending.number}"
                     + (f" on a widened space ({over})" if over else "")
                     + f"; {search.pending_trials} of its {trials} trials have a record"
                     + (f", {len(search.table)} trials of the earlier rounds" if pending.number else ""))
    return lines


def _widening(study: Study) -> str:
    widen = study.cfg.search.get("widen") or {}
    if not int(widen.get("rounds", 0)):
        return ""
    return (f"; an entry whose best trial lies at a bound of its space is searched again ({int(widen.rounds)} more "
            f"round{'s' * (int(widen.rounds) != 1)} at most, as many trials each) with that bound moved by a factor "
            f"of {widen.factor:g}, and its choice is the best trial of all its rounds")


def _search_score(search: EntrySearch, objective: str) -> str:
    """The chosen trial's score and how many trials it was chosen from (diverged ones counted);
    for an entry searched in more than one round, also its best after the first round, the score
    every entry had the same number of trials to reach."""
    scores = search.table[objective]
    diverged = int(scores.isna().sum())
    rounds = len(search.rounds)
    first = scores[search.table["round"] == 0]
    return (f": {scores.max():.2%} `{objective}` on the search protocol, the best of {len(scores)} trials"
            + (f" in {rounds} rounds" if rounds > 1 else "") + (f", {diverged} of them diverged" if diverged else "")
            + (f"; {first.max():.2%} after the first round's {len(first)}" if rounds > 1 else ""))


def _search_note(search: EntrySearch, values: dict[str, Any]) -> str:
    """Which of the entry's settings were searched again on a widened space, and which chosen
    values still lie at a bound of the last space searched."""
    notes = []
    if search.widened:
        notes.append("searched again on a widened space: " + ", ".join(f"`{k}` over `{v}`" for k, v in search.widened.items()))
    edges = at_the_edge(values, search.space)
    if edges:
        notes.append("at the edge of the searched space: " + ", ".join(f"`{k}` at its {b}" for k, b in edges.items())
                     + "; the optimum may lie outside it")
    return f" ({'; '.join(notes)})" if notes else ""


def _mean_cell(row: pd.Series) -> str:
    ci = "n=1, no CI" if row["n_runs"] == 1 else f"{CONFIDENCE:.0%} CI {row['ci_low']:.2%} to {row['ci_high']:.2%}"
    return f"{row['mean']:.2%} ({ci})"


def summary_lines(tables: dict[str, pd.DataFrame], baseline: str) -> list[str]:
    """One table of every entry's result under each verifier (mean and CI over seeds, its paired
    test against ``baseline`` Holm-adjusted) and its flags: the study's answer at a glance, the
    table the README shows. Rows follow the first verifier's ranking."""
    order: list[str] = []
    for table in tables.values():
        order += [m for m in table["method"] if m not in order]
    columns: dict[str, list[str]] = {"entry": order}
    runs = {m: set() for m in order}
    flags = {m: set() for m in order}
    for verifier, table in tables.items():
        rows = {row["method"]: row for _, row in table.iterrows()}
        columns[verifier] = [_mean_cell(rows[m]) if m in rows else "" for m in order]
        if "t_pvalue_holm" in table:
            columns[f"{verifier} vs {baseline} (Holm p)"] = [
                "baseline" if m == baseline else "" if m not in rows or pd.isna(rows[m]["t_pvalue_holm"])
                else f"{rows[m]['delta']:+.2%} (p={rows[m]['t_pvalue_holm']:.3g})" for m in order]
        for m, row in rows.items():
            runs[m].add(f"{row['n_runs']} x {row['n_units']} folds")
            flags[m].update(f for f in str(row["flags"]).split(", ") if f)
    columns["runs"] = [", ".join(sorted(runs[m])) for m in order]
    columns["flags"] = [", ".join(sorted(flags[m])) for m in order]
    return markdown_table(pd.DataFrame(columns))


def curves(runs: list[Run]) -> pd.DataFrame:
    """Mean validation accuracy at each budget fraction, per entry, over its runs' units."""
    rows = []
    for run in runs:
        for curve in run.curves:
            for point in curve:
                rows.append({"entry": run.method, "fraction": point["fraction"], "val_accuracy": point["val_accuracy"]})
    frame = pd.DataFrame(rows, columns=["entry", "fraction", "val_accuracy"])
    return frame.groupby(["entry", "fraction"], as_index=False)["val_accuracy"].mean()


def save_curves_plot(path: Path, table: pd.DataFrame) -> bool:
    if table.empty:
        return False
    fig, ax = pyplot().subplots(figsize=(5.5, 4.0), dpi=110)
    for entry, part in table.groupby("entry"):
        ax.plot(part["fraction"], part["val_accuracy"], "o-", lw=1.2, ms=3, label=str(entry))
    ax.set(xlabel="fraction of the training budget", ylabel="validation accuracy (held-out training people)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(path, fig)
    return True


def write_report(study: Study, chosen: dict[str, dict[str, Any]], searched: dict[str, EntrySearch]) -> str:
    """REPORT.md and its plots under the study's root (``searched``: every entry's search rounds);
    returns the markdown."""
    runs, skipped = [], []
    for part in ("final", "baselines"):
        found, missed = collect(study.root / part) if (study.root / part).is_dir() else ([], [])
        runs += found
        skipped += missed
    runs, skipped = _at_chosen_settings(study, runs, chosen, skipped)
    baseline = str(study.cfg.report.baseline)
    search_wall, search_core, search_commits = _cost(study.root / "search")
    final_costs = [_cost(study.root / p) for p in ("final", "baselines") if (study.root / p).is_dir()]
    final_wall = sum(c[0] for c in final_costs)
    final_core = sum(c[1] for c in final_costs)
    commits: set[str] = set().union(*(c[2] for c in final_costs))
    lines = [
        f"# Study `{study.name}`", "",
        "Made by `python -m facebench.study study=" + study.name + " stage=report` from the records under "
        f"`{study.root}`; every number below comes from them.", "",
        "Fixed for every entry: " + ", ".join(f"`{o}`" for o in study.fixed) + ".", "",
        f"Search: {int(study.cfg.search.trials)} TPE trials per entry (seed {int(study.cfg.search.seed)}) on "
        + ", ".join(f"`{o}`" for o in study.cfg.search.protocol) + f", maximising `{study.cfg.search.objective}` "
        f"scored by `{next(iter(study.verifiers))}`; learning rate `{study.cfg.lr}` plus each loss's declared space"
        + _widening(study) + ".", "",
        f"Final runs: seeds {list(study.cfg.final.seeds)} on " + ", ".join(f"`{o}`" for o in study.cfg.final.protocol)
        + f"; paired tests against `{baseline}` over folds, Holm-adjusted across entries.", "",
        f"Compute in the records (each run's wall time x the torch threads it ran on; diverged and crashed runs "
        f"included): searches "
        f"{search_core / 3600:.1f} core-hours ({search_wall / 3600:.1f} h of runs), final and baseline runs "
        f"{final_core / 3600:.1f} core-hours ({final_wall / 3600:.1f} h of runs).", "",
        _made_at("Search trials", search_commits), _made_at("Final and baseline runs", commits), "",
        "## Chosen settings", "",
        *[f"- `{entry}`: " + ", ".join(f"`{k}={v}`" for k, v in values.items())
          + _search_score(searched[entry], str(study.cfg.search.objective)) + _search_note(searched[entry], values)
          for entry, values in chosen.items()],
        *_undecided(searched, int(study.cfg.search.trials)), "",
    ]
    tables = {}
    for verifier, overrides in study.verifiers.items():
        name = [o.split("=", 1)[1] for o in overrides if o.startswith("verifier=")][-1]
        mine = [r for r in runs if _verifier(r) == name]
        if mine:
            known = {r.method for r in mine}
            tables[verifier] = (mine, leaderboard(mine, baseline if baseline in known else None))
    lines += ["## Summary", "", *(summary_lines({v: t for v, (_, t) in tables.items()}, baseline) if tables
                                   else ["No complete records yet."]), ""]
    for verifier in study.verifiers:
        if verifier not in tables:
            lines += [f"## Verifier `{verifier}`", "", "No complete records yet.", ""]
            continue
        mine, table = tables[verifier]
        plot = f"forest-{verifier}.png"
        has_plot = save_forest_plot(study.root / plot, table)
        lines += [f"## Verifier `{verifier}`", "", *markdown_table(display_table(table)), ""]
        if has_plot:
            lines += [f"![{verifier}: means and 95% CIs]({plot})", ""]
        floor = study.cfg.report.get("floor")
        against = floor_lines(table, str(floor), (study.cfg.report.get("bars") or {}).get(verifier) or {}) if floor else []
        if against:
            lines += [f"### `{verifier}`: against the floor `{floor}`", "", *against]
        entries = [r for r in mine if r.method in study.entries]
        told = pairwise_lines(entries)
        if told:
            lines += [f"### `{verifier}`: which entries are told apart", "", *told]
        claimed = claim_lines(entries, study.claims)
        if claimed:
            lines += [f"### `{verifier}`: the papers' claims", "", *claimed]
    curve_table = curves([r for r in runs if r.method in study.entries])
    if save_curves_plot(study.root / "learning-curves.png", curve_table):
        lines += ["## Learning curves", "", "![learning curves](learning-curves.png)", ""]
    if (study.root / "search" / "history.png").is_file():
        lines += ["## Searches", "", "![search histories](search/history.png)", ""]
    if skipped:
        listed = sorted(skipped, key=lambda s: str(s.path))
        lines += [f"## Skipped records ({len(skipped)})", "", *[f"- `{s.path}`: {s.reason}" for s in listed], ""]
    text = "\n".join(lines)
    write_text(study.root / "REPORT.md", text)
    write_text(study.root / "REPORT.html", as_html(text, f"facebench study {study.name}"))
    return text


def as_html(markdown: str, title: str) -> str:
    """The report as a page a browser shows with its plots: tables and images rendered, any raw
    HTML in it shown as text (cells come from records and configs)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return html_page(title, body)
