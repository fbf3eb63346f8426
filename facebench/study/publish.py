"""The project's published leaderboard (``results/LEADERBOARD.md``), made by the study's report
stage from committed records alone: the study's tables are the headline; the reproduction
presets (each method with its own network and recipe, at the budget their records state) follow,
labelled as such, and an entry whose learning curve still rose in its last quarter is listed
apart as not converged rather than ranked.

A reader must be able to check the page: it names the command that made it, and re-running that
command on the same records gives the same markdown.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from facebench.leaderboard import (NOT_CONVERGED, Run, collect, display_table, leaderboard, markdown_table,
                                   save_forest_plot)
from facebench.results import write_text
from facebench.study.spec import Study

_LINK = re.compile(r"\]\((?![a-z]+:)([^)]+)\)")


def relinked(markdown: str, prefix: str) -> str:
    """The study report's markdown as a section of a page ``prefix`` away from the study's root:
    headings one level down, relative links re-rooted."""
    demoted = re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.MULTILINE)
    return _LINK.sub(lambda m: f"]({prefix}/{m.group(1)})", demoted)


def _budget(run: Run) -> str:
    trainer = run.components.get("trainer") or {}
    steps, batch = trainer.get("steps"), trainer.get("batch_size")
    return "no training" if not steps else f"{steps} x {batch}"


def presets_section(root: Path, baseline: Optional[str], page_dir: Path, made_by: str = "") -> list[str]:
    """The reproduction presets' table from the records under ``root``, converged entries ranked,
    the others listed apart; ``made_by``: the command and settings that ran them."""
    lines = ["## Reproduction presets", "",
             "Each method with its own network, input and recipe as its preset gives them (`+method=<name>`), "
             f"records under `{root.as_posix()}`: a check that the presets run and learn, not a fair comparison "
             "(nets, inputs and embeddings differ; the study above is the comparison). The budget column is "
             "steps x images per step.", ""]
    if made_by:
        lines += [made_by, ""]
    runs, skipped = collect(root) if root.is_dir() else ([], [])
    if not runs:
        return lines + ["No complete records yet.", ""]
    budgets = {(r.method, r.settings): _budget(r) for r in runs}
    base = baseline if baseline in {r.method for r in runs} else None
    table = leaderboard(runs, base)
    shown = display_table(table)
    shown.insert(2, "budget", [budgets[key] for key in zip(table["method"], table["settings"])])
    converged = ~table["flags"].astype(str).str.contains(NOT_CONVERGED, regex=False).to_numpy()
    lines += ["### Converged at their budget", "", *markdown_table(shown[converged]), ""]
    if save_forest_plot(root / "forest.png", table[converged]):
        forest = Path(os.path.relpath(root / "forest.png", page_dir)).as_posix()
        lines += [f"![presets: means and 95% CIs]({forest})", ""]
    if (~converged).any():
        lines += ["### Not converged at their budget (listed, not ranked)", "",
                  "Validation accuracy on held-out training people rose by more than a point in the last quarter "
                  "of the budget: these numbers say the budget was short, not how good the method is.", "",
                  *markdown_table(shown[~converged]), ""]
    machines = sorted({r.machine for r in runs})
    lines += ["Preset runs made on: " + "; ".join(machines) + ".", ""]
    if skipped:
        lines += [f"Skipped preset records ({len(skipped)}): " + "; ".join(f"`{s.path}` ({s.reason})" for s in skipped), ""]
    return lines


def write_leaderboard(study: Study, report_markdown: str) -> Optional[str]:
    """``study.cfg.report.leaderboard`` (when set) from the study's report and the presets'
    records; returns the markdown."""
    target = study.cfg.report.get("leaderboard")
    if not target:
        return None
    page = Path(str(target))
    presets = study.cfg.report.get("presets") or {}
    prefix = Path(os.path.relpath(study.root, page.parent)).as_posix()
    lines = [
        "# facebench leaderboard", "",
        f"Made by `python -m facebench.study study={study.name} stage=report` from the committed records "
        "alone; re-running it on them gives this page again.", "",
        relinked(report_markdown, prefix).rstrip(), "",
    ]
    if presets.get("root"):
        made_by = ""
        if presets.get("methods"):
            made_by = (f"Run by `python -m facebench.study study={study.name} stage=presets`: "
                       + ", ".join(f"`{o}`" for o in presets.get("overrides") or []) + ".")
        lines += presets_section(Path(str(presets.root)), presets.get("baseline"), page.parent, made_by)
    text = "\n".join(lines).rstrip() + "\n"
    write_text(page, text)
    return text

