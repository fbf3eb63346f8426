"""The leaderboard: every result record under a root, grouped across seeds, with confidence
intervals and paired tests against a baseline (``python -m facebench.leaderboard``).

What counts, and why:

- A run counts when its record reads (``facebench.results.read_record``), its status is
  ``complete`` or ``partial``, it carries no error, and its primary metric and a per-unit value
  for every evaluated unit are present. Everything else (broken JSON, ``failed`` runs, records
  with an error, run directories without ``metrics.json``) is skipped and listed with the reason.
- A ``partial`` run (a subset of folds chosen with ``protocol.folds``) counts, but only in a
  group with the same evaluated units: units are part of the group key, so a 3-fold mean is
  never averaged with, or tested against, a 10-fold one.
- One seed's records of disjoint units (a run made one fold per job, ``protocol.folds=[k]``, as
  a study's final runs are) count as the one run they make together: its units are theirs, its
  value the mean of their per-unit values (joined only where each record's primary metric is that
  mean), its flags theirs with convergence judged on their curves together. Its ROC is not
  rebuilt (the parts keep only down-sampled curves), so it is left out of the ROC overlay.
- A group is one method, protocol (name and settings), regime, set of evaluated units and
  settings (a hash of the components' config; the run seed is not in it, so seeds pool).
  Re-running one seed does not add evidence: of several records with the same seed in a group
  only the newest counts, the others are listed as superseded.
- A row's flags say what a reader must know before trusting it (``record_flags``): a training
  that collapsed, an identity audit that could not (fully) be made, unofficial protocol files.
  Flagged runs still count; the flag travels with the number.
- Mean and 95% CI are over per-run values of the primary metric (t distribution, n-1 degrees
  of freedom); one run gives no CI.
- The test against ``--baseline`` pairs units (folds, trials): each side's per-unit values are
  first averaged over its seeds, then a paired t-test (``scipy.stats.ttest_rel``) and, from
  ``MIN_WILCOXON_UNITS`` units on, a Wilcoxon signed-rank test. Only groups with the same
  protocol, regime and units are paired. The t-tests' p-values are also given Holm-adjusted
  over the entries compared on one protocol, regime and set of units (many entries against one
  baseline: some p < 0.05 arise by chance).
"""
from __future__ import annotations

import argparse
import hashlib
import html
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy import stats

from facebench.convergence import mean_curve, still_improving
from facebench.html_page import html_page
from facebench.plots import pyplot, save_figure, tex_safe
from facebench.results import RECORD_FILE, RecordError, read_record, write_text

CONFIDENCE = 0.95
#: Below this many paired units the Wilcoxon test cannot reach p < 0.05 and is not reported.
MIN_WILCOXON_UNITS = 6
#: Config keys that say where data lives or how a run was driven, not what it measured.
IGNORED_KEYS = frozenset({"root", "resume", "checkpoint_every", "log_every"})
#: Protocol keys that name or select units; units are compared through the unit names instead.
UNIT_KEYS = frozenset({"name", "folds", "units_evaluated", "units_total"})
#: Files or folders that mark a run directory (written before the record).
RUN_MARKERS = ("config.yaml", ".hydra")
#: The flag of a record whose learning curve still rose in the last quarter of its budget.
NOT_CONVERGED = "still improving in its last quarter"
GROUP_KEY = ["method", "settings", "protocol", "regime", "units"]
TABLE_COLUMNS = GROUP_KEY + [
    "differs", "metric", "n_runs", "n_units", "units_total", "partial", "seeds", "mean", "ci_low", "ci_high", "flags"
]


class Unusable(Exception):
    """A record that exists but must not count; the message says why."""


@dataclass
class Run:
    """One counted record, reduced to what grouping and statistics need."""

    path: Path
    method: str
    settings: str
    components: dict[str, Any]
    protocol: str
    regime: str
    units: tuple[str, ...]
    units_total: Optional[int]
    seed: Any
    metric: str
    value: float
    unit_values: dict[str, float]
    partial: bool
    roc: Optional[tuple[np.ndarray, np.ndarray]]
    machine: str = "unknown machine"
    flags: tuple[str, ...] = ()
    #: Each unit's learning curve (facebench.learning_curve), where the run measured one.
    curves: tuple[list[dict[str, float]], ...] = ()
    #: The records a run made one part (fold) per job was joined from; empty: one record.
    parts: tuple[Path, ...] = ()


@dataclass
class Skipped:
    path: Path
    reason: str


def _without(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    return value


def config_label(config: Any) -> str:
    """A short stable hash of a config: equal settings give equal labels on any machine."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_run(path: Path) -> Run:
    """Read one record; raises RecordError (unreadable) or Unusable (must not count)."""
    rec = read_record(path)
    if rec["status"] == "failed":
        raise Unusable(f"status failed: {rec.get('error') or 'no error recorded'}")
    if rec.get("error"):
        raise Unusable(f"status {rec['status']} but the run recorded an error: {rec['error']}")
    metric = rec.get("primary_metric")
    if not metric or not _finite(rec["metrics"].get(metric)):
        raise Unusable(f"primary metric {metric!r} missing or not a finite number")
    protocol = rec["protocol"] if isinstance(rec["protocol"], dict) else {"name": rec["protocol"]}
    unit_key = metric.removeprefix("mean_")
    rows = {row.get("name"): row.get(unit_key) for row in rec["units"] if isinstance(row, dict)}
    units = tuple(sorted(protocol.get("units_evaluated") or rows))
    missing = [u for u in units if not _finite(rows.get(u))]
    if not units or missing:
        raise Unusable(f"no finite per-unit {unit_key!r} for units {missing or 'any'}")
    params = _without({k: v for k, v in protocol.items() if k not in UNIT_KEYS}, IGNORED_KEYS)
    has_params = any(v is not None for v in params.values())
    components = _without(rec.get("components") or {}, IGNORED_KEYS)
    roc = rec["metrics"].get("roc") or {}
    curve = None
    if roc.get("fpr") and roc.get("tpr"):
        curve = (np.asarray(roc["fpr"], dtype=float), np.asarray(roc["tpr"], dtype=float))
    return Run(
        path=path,
        method=str(rec["method"]),
        settings=config_label(components),
        components=components,
        protocol=str(protocol.get("name")) + (f"@{config_label(params)}" if has_params else ""),
        regime=str(rec["regime"]),
        units=units,
        units_total=protocol.get("units_total"),
        seed=rec.get("seed"),
        metric=metric,
        value=float(rec["metrics"][metric]),
        unit_values={u: float(rows[u]) for u in units},
        partial=rec["status"] == "partial",
        roc=curve,
        machine=_machine(rec),
        flags=record_flags(rec),
        curves=tuple(_curves(rec)),
    )


def record_flags(rec: dict[str, Any]) -> tuple[str, ...]:
    """What a reader must know before trusting a record's number: a collapsed training, a
    learning curve still rising at the end of the budget, an identity audit that could not
    (fully) be made, protocol files other than the official ones."""
    flags = []
    collapse = rec.get("collapse") if isinstance(rec.get("collapse"), dict) else {}
    if collapse.get("collapsed"):
        flags.append("collapsed")
    audit = rec.get("identity_audit_status")
    if audit in ("not checkable", "partly checked"):
        flags.append(f"identity audit {audit}")
    if still_improving(mean_curve(_curves(rec))):
        flags.append(NOT_CONVERGED)
    bench = rec.get("benchmark") if isinstance(rec.get("benchmark"), dict) else {}
    if bench.get("protocol_files_official") is False:
        flags.append("unofficial protocol files")
    return tuple(flags)


def _curves(rec: dict[str, Any]) -> list[list[dict[str, float]]]:
    return [u["learning_curve"] for u in rec.get("units", []) if isinstance(u, dict) and u.get("learning_curve")]


def _machine(rec: dict[str, Any]) -> str:
    """Where a record was made, as its environment block says (device, OS, CPUs, torch)."""
    env = rec.get("environment") if isinstance(rec.get("environment"), dict) else {}
    packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
    return (f"device {rec.get('device', '?')}, {env.get('platform', '?')}, {env.get('cpu_count', '?')} CPUs, "
            f"torch {packages.get('torch', '?')}")


def collect(root: Path, exclude: Optional[Path] = None) -> tuple[list[Run], list[Skipped]]:
    """Every record under ``root`` as a counted run or a skip with its reason; run directories
    (``config.yaml`` or ``.hydra/`` present) without a record are listed as skipped too. A run
    directory is a leaf: what lies below it (a W&B run's ``files/config.yaml``) is not a run."""
    runs: list[Run] = []
    skipped: list[Skipped] = []
    exclude = exclude.resolve() if exclude else None
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        has_marker = any(m in filenames or m in dirnames for m in RUN_MARKERS)
        leaf = has_marker or RECORD_FILE in filenames
        dirnames[:] = [] if leaf else sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() != exclude)
        if RECORD_FILE in filenames:
            try:
                runs.append(load_run(here / RECORD_FILE))
            except RecordError as exc:
                skipped.append(Skipped(here / RECORD_FILE, f"broken record: {exc}"))
            except Unusable as exc:
                skipped.append(Skipped(here / RECORD_FILE, str(exc)))
        elif has_marker:
            skipped.append(Skipped(here, f"run directory without {RECORD_FILE} (running, killed or failed before the record)"))
    runs, skipped = _drop_repeated_seeds(runs, skipped)
    return _join_parts(runs), skipped


def _drop_repeated_seeds(runs: list[Run], skipped: list[Skipped]) -> tuple[list[Run], list[Skipped]]:
    newest: dict[tuple, Run] = {}
    for run in sorted(runs, key=lambda r: r.path.stat().st_mtime):
        key = (run.method, run.settings, run.protocol, run.regime, run.units, run.seed)
        if run.seed is None:
            key += (run.path,)
        if key in newest:
            skipped.append(Skipped(newest[key].path, f"superseded by {run.path} (same settings and seed {run.seed})"))
        newest[key] = run
    return list(newest.values()), skipped


def _join_parts(runs: list[Run]) -> list[Run]:
    """Each seed's records of disjoint units of one method, settings, protocol and regime as one
    run; records whose units overlap, or whose primary metric is not the mean of their per-unit
    values, stay as they are."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        key = (run.method, run.settings, run.protocol, run.regime, run.seed)
        groups.setdefault(key if run.seed is not None else key + (run.path,), []).append(run)
    joined = []
    for parts in groups.values():
        units = [u for r in parts for u in r.units]
        means = all(math.isclose(r.value, float(np.mean(list(r.unit_values.values()))), abs_tol=1e-9) for r in parts)
        joined += [_joined(parts)] if len(parts) > 1 and len(units) == len(set(units)) and means else parts
    return joined


def _joined(parts: list[Run]) -> Run:
    parts = sorted(parts, key=lambda r: r.units)
    values = {u: v for r in parts for u, v in r.unit_values.items()}
    units = tuple(sorted(values))
    total = parts[0].units_total
    curves = tuple(c for r in parts for c in r.curves)
    flags = {f for r in parts for f in r.flags if f != NOT_CONVERGED}
    if still_improving(mean_curve(list(curves))):
        flags.add(NOT_CONVERGED)
    first = parts[0]
    return Run(
        path=first.path, method=first.method, settings=first.settings, components=first.components,
        protocol=first.protocol, regime=first.regime, units=units, units_total=total, seed=first.seed,
        metric=first.metric, value=float(np.mean([values[u] for u in units])), unit_values=values,
        partial=len(units) < total if total else any(r.partial for r in parts), roc=None,
        machine="; ".join(sorted({r.machine for r in parts})), flags=tuple(sorted(flags)), curves=curves,
        parts=tuple(r.path for r in parts),
    )


def _differences(runs: list[Run]) -> dict[tuple[str, str], str]:
    """Per (method, settings label), the component keys whose values differ among a method's settings
    (e.g. ``loss.margin=0.5``), so a sweep's rows say what was swept."""
    out: dict[tuple[str, str], str] = {}
    for method, same_method in pd.DataFrame({"run": runs, "method": [r.method for r in runs]}).groupby("method"):
        flat = pd.json_normalize([r.components for r in same_method["run"]]).astype(str)
        flat.index = [r.settings for r in same_method["run"]]
        flat = flat[~flat.index.duplicated()]
        varying = [c for c in flat.columns if flat[c].nunique() > 1]
        for label, row in flat.iterrows():
            out[(method, label)] = ", ".join(f"{c}={row[c]}" for c in varying)
    return out


def _ci(values: np.ndarray) -> tuple[float, float]:
    if len(values) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * stats.sem(values)
    return float(values.mean() - half), float(values.mean() + half)


def seed_averaged_units(members: list[Run]) -> pd.Series:
    """Per-unit values averaged over a group's runs: the pairing unit of every paired test. Seeds
    are repeats of one unit, not more units, so a test over (unit, seed) pairs would overstate n."""
    return pd.DataFrame([r.unit_values for r in members]).mean()


def paired_test(group: pd.Series, base: pd.Series) -> dict[str, Any]:
    """Mean difference and paired t-test (Wilcoxon too from ``MIN_WILCOXON_UNITS`` units) of two
    per-unit series; a ``test_note`` instead where no test can be made."""
    diff = group - base
    out: dict[str, Any] = {"delta": float(diff.mean())}
    if len(diff) < 2:
        return {**out, "test_note": "one unit: no paired test"}
    if np.allclose(diff, 0):
        return {**out, "test_note": "identical per-unit values: no test"}
    t = stats.ttest_rel(group, base)
    out.update(t_statistic=float(t.statistic), t_df=int(t.df), t_pvalue=float(t.pvalue))
    if len(diff) >= MIN_WILCOXON_UNITS:
        w = stats.wilcoxon(group, base)
        out.update(wilcoxon_statistic=float(w.statistic), wilcoxon_pvalue=float(w.pvalue))
    return out


def leaderboard(runs: list[Run], baseline: Optional[str] = None) -> pd.DataFrame:
    """One row per group: mean and CI of the primary metric over runs, and the paired test
    against ``baseline`` over the group's units (per-unit values averaged over seeds)."""
    differs = _differences(runs)
    frame = pd.DataFrame(
        {
            "run": runs,
            **{k: [getattr(r, k) for r in runs] for k in ("method", "settings", "protocol", "regime", "units")},
        }
    )
    rows, unit_means = [], {}
    for key, part in frame.groupby(GROUP_KEY, sort=False):
        members: list[Run] = list(part["run"])
        values = np.array([r.value for r in members])
        low, high = _ci(values)
        unit_means[key] = seed_averaged_units(members)[list(key[-1])]
        rows.append(
            {
                **dict(zip(GROUP_KEY, key)),
                "differs": differs[key[:2]],
                "metric": members[0].metric,
                "n_runs": len(members),
                "n_units": len(key[-1]),
                "units_total": members[0].units_total,
                "partial": any(r.partial for r in members),
                "seeds": " ".join(str(r.seed) for r in members),
                "mean": float(values.mean()),
                "ci_low": low,
                "ci_high": high,
                "flags": ", ".join(sorted(_group_flags(members))),
            }
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if baseline:
        table["baseline"] = baseline
        tests = []
        for key, row in zip(unit_means, rows):
            bases = [k for k in unit_means if k[0] == baseline and k[2:] == key[2:]]
            if row["method"] == baseline:
                tests.append({"test_note": "baseline"})
            elif len(bases) != 1:
                reason = "no baseline run on these units" if not bases else f"{len(bases)} baseline settings on these units"
                tests.append({"test_note": reason})
            else:
                tests.append(paired_test(unit_means[key], unit_means[bases[0]]))
        table = pd.concat([table, pd.DataFrame(tests, index=table.index)], axis=1)
        table["t_pvalue_holm"] = _holm_by_family(table)
    table = table.sort_values(["protocol", "regime", "n_units", "mean"], ascending=[True, True, False, False])
    table["units"] = table["units"].map(" ".join)
    return table.reset_index(drop=True)


def _group_flags(members: list[Run]) -> set[str]:
    """The members' flags, except that convergence is judged on the group's curve averaged over
    every member's units (facebench.convergence: one fold's curve is too noisy to judge alone)."""
    flags = {f for r in members for f in r.flags if f != NOT_CONVERGED}
    if still_improving(mean_curve([c for r in members for c in r.curves])):
        flags.add(NOT_CONVERGED)
    return flags


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of ``pvalues`` (one family of tests): controls the chance of
    any false rejection among them, without assuming the tests independent."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    steps = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


def _holm_by_family(table: pd.DataFrame) -> pd.Series:
    """Holm-adjusted t-test p-values, each family being the entries compared with the baseline
    on one protocol, regime and set of units."""
    adjusted = pd.Series(np.nan, index=table.index)
    if "t_pvalue" not in table:
        return adjusted
    tested = table[table["t_pvalue"].notna()]
    for _, family in tested.groupby(["protocol", "regime", "units"]):
        adjusted[family.index] = holm(family["t_pvalue"].to_numpy())
    return adjusted


def _test_cells(row: pd.Series) -> tuple[str, str]:
    """The paired t-test and Wilcoxon cells of one row (or why there is no test)."""
    note = row.get("test_note")
    if isinstance(note, str):
        return note, ""
    t = f"t({int(row['t_df'])})={row['t_statistic']:.3g}, p={row['t_pvalue']:.3g}"
    if pd.notna(row.get("t_pvalue_holm")):
        t += f", Holm p={row['t_pvalue_holm']:.3g}"
    if pd.isna(row.get("wilcoxon_pvalue")):
        return t, f"not run (n<{MIN_WILCOXON_UNITS} units)"
    return t, f"W={row['wilcoxon_statistic']:.3g}, p={row['wilcoxon_pvalue']:.3g}"


def _units_cell(n: int, total: Any, partial: bool) -> str:
    if not partial:
        return str(n)
    return f"{n} of {int(total)} (partial)" if pd.notna(total) else f"{n} (partial)"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as the strings people read (markdown, HTML, terminal)."""
    shown = pd.DataFrame(
        {
            "method": table["method"],
            "settings": [f"{s} ({d})" if d else s for s, d in zip(table["settings"], table["differs"])],
            "protocol": table["protocol"],
            "regime": table["regime"],
            "runs": table["n_runs"].astype(str),
            "units": [_units_cell(*v) for v in zip(table["n_units"], table["units_total"], table["partial"])],
            "metric": table["metric"],
            "mean": table["mean"].map("{:.4f}".format),
            f"{CONFIDENCE:.0%} CI (t, runs)": [
                "n=1, no CI" if n == 1 else f"[{lo:.4f}, {hi:.4f}]"
                for n, lo, hi in zip(table["n_runs"], table["ci_low"], table["ci_high"])
            ],
            "flags": table["flags"],
        }
    )
    if "baseline" in table:
        base = table["baseline"].iloc[0]
        shown[f"Δ vs {base} (per unit)"] = [
            "" if pd.isna(d) else f"{d:+.4f}" for d in table.get("delta", pd.Series(index=table.index, dtype=float))
        ]
        cells = [_test_cells(row) for _, row in table.iterrows()]
        shown["paired t-test"] = [t for t, _ in cells]
        shown["Wilcoxon signed-rank"] = [w for _, w in cells]
    return shown


def markdown_cell(text: Any) -> str:
    """A GitHub table cell; HTML-escaped too, since markdown renders inline HTML."""
    return html.escape(str(text)).replace("|", "\\|").replace("\n", " ")


def markdown_table(shown: pd.DataFrame) -> list[str]:
    """``shown`` as the lines of a GitHub table."""
    return ["| " + " | ".join(markdown_cell(c) for c in shown.columns) + " |", "|" + "---|" * len(shown.columns),
            *("| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in shown.itertuples(index=False))]


def to_markdown(
    shown: pd.DataFrame, skipped: list[Skipped], root: Path, command: Optional[str] = None, machines: tuple[str, ...] = ()
) -> str:
    """The leaderboard page. ``command`` and ``machines`` say how the page and the runs behind it
    were made."""
    cell = markdown_cell

    lines = [
        "# facebench leaderboard",
        "",
        f"Records under `{cell(root)}`. Mean and {CONFIDENCE:.0%} confidence interval over runs (seeds), "
        "t distribution with n-1 degrees of freedom; paired tests over units with per-unit values "
        "averaged over seeds.",
        "",
    ]
    if command:
        lines += [f"Made by `{cell(command)}`.", ""]
    if machines:
        lines += ["Runs made on: " + "; ".join(cell(m) for m in machines) + ".", ""]
    lines += markdown_table(shown)
    if skipped:
        lines += ["", f"## Skipped ({len(skipped)})", ""]
        lines += [f"- `{cell(s.path)}`: {cell(s.reason)}" for s in skipped]
    return "\n".join(lines) + "\n"


def to_html(shown: pd.DataFrame, skipped: list[Skipped], root: Path, roc_png: Optional[str],
            forest_png: Optional[str] = None) -> str:
    """A static page; every string from a record, config or file name (cells and column headers,
    which carry the baseline's method name) goes through html.escape."""
    escaped = shown.map(lambda v: html.escape(str(v))).rename(columns=lambda c: html.escape(str(c)))
    table = escaped.to_html(index=False, escape=False, border=0)
    skips = "".join(f"<li><code>{html.escape(str(s.path))}</code>: {html.escape(s.reason)}</li>" for s in skipped)
    image = f'<h2>ROC curves (mean over runs)</h2><img src="{roc_png}" alt="ROC curves">' if roc_png else ""
    if forest_png:
        image = f'<h2>Means and confidence intervals</h2><img src="{forest_png}" alt="forest plot">' + image
    return html_page("facebench leaderboard", f"""<h1>facebench leaderboard</h1>
<p>Records under <code>{html.escape(str(root))}</code>. Mean and {CONFIDENCE:.0%} confidence interval over
runs (seeds), t distribution with n-1 degrees of freedom; paired tests over units with per-unit values
averaged over seeds.</p>
{table}
{image}
<h2>Skipped ({len(skipped)})</h2><ul>{skips}</ul>
""")


def save_forest_plot(path: Path, table: pd.DataFrame) -> bool:
    """Each entry's mean and confidence interval over seeds, one panel per protocol, regime and
    set of units, best at the top: which entries' intervals overlap is what a reader looks for.
    An entry of one run (a deterministic floor such as raw pixels, or seeds still to come) is a
    hollow point with no interval, so the floor stays in view. Returns False for an empty table."""
    if table.empty:
        return False
    plt = pyplot()
    panels = list(table.groupby(["protocol", "regime", "units"], sort=True))
    height = max(2.5, 0.35 * max(len(p) for _, p in panels) + 1.2)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), height), dpi=110, squeeze=False)
    for ax, ((protocol, regime, _), part) in zip(axes[0], panels):
        part = part.sort_values("mean").reset_index(drop=True)
        spread = part["ci_low"].notna()
        y = np.arange(len(part))
        if spread.any():
            ax.errorbar(part["mean"][spread], y[spread], fmt="o", capsize=3, lw=1.2, color="C0",
                        xerr=[(part["mean"] - part["ci_low"])[spread], (part["ci_high"] - part["mean"])[spread]])
        if (~spread).any():
            ax.plot(part["mean"][~spread], y[~spread], "o", mfc="none", color="C0")
        labels = [f"{m} ({d})" if d else m for m, d in zip(part["method"], part["differs"])]
        labels = [label + ("" if ci else " (1 run)") for label, ci in zip(labels, spread)]
        ax.set_yticks(y, [tex_safe(label) for label in labels], fontsize=8)
        ax.set_xlabel(f"{part['metric'].iloc[0]} (mean, {CONFIDENCE:.0%} CI over seeds)")
        ax.set_title(tex_safe(f"{protocol} ({regime})"), fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(path, fig)
    return True


def save_roc_overlay(path: Path, runs: list[Run]) -> bool:
    """One panel per protocol and regime, one curve per group (TPR averaged over its runs on a
    common log FPR grid). Returns False when no record holds a ROC."""
    curves = [r for r in runs if r.roc is not None]
    if not curves:
        return False
    plt = pyplot()
    panels = sorted({(r.protocol, r.regime) for r in curves})
    grid = np.geomspace(1e-3, 1.0, 200)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.2), dpi=110, squeeze=False)
    for ax, (protocol, regime) in zip(axes[0], panels):
        groups: dict[tuple[str, str, tuple[str, ...]], list[np.ndarray]] = {}
        for r in curves:
            if (r.protocol, r.regime) == (protocol, regime):
                groups.setdefault((r.method, r.settings, r.units), []).append(np.interp(grid, *r.roc))
        for (method, settings, units), tprs in sorted(groups.items()):
            label = tex_safe(f"{method} [{settings}] {len(units)} units, n={len(tprs)}")
            ax.plot(grid, np.mean(tprs, axis=0), lw=1.4, label=label)
        ax.set_xscale("log")
        ax.set(xlim=(1e-3, 1.0), ylim=(0.0, 1.0), xlabel="false accept rate", ylabel="true accept rate")
        ax.set_title(tex_safe(f"{protocol} ({regime})"), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(path, fig)
    return True


def write_outputs(
    runs: list[Run],
    skipped: list[Skipped],
    table: pd.DataFrame,
    root: Path,
    out: Path,
    markdown: Optional[Path],
    command: Optional[str] = None,
) -> str:
    """leaderboard.csv, leaderboard.md, index.html, roc.png and forest.png under ``out`` (and the markdown
    also at ``markdown``), each written atomically. Returns the markdown."""
    shown = display_table(table)
    text = to_markdown(shown, skipped, root, command, tuple(sorted({r.machine for r in runs})))
    write_text(out / "leaderboard.csv", table.to_csv(index=False))
    write_text(out / "leaderboard.md", text)
    if markdown:
        write_text(markdown, text)
    has_roc = save_roc_overlay(out / "roc.png", runs)
    has_forest = save_forest_plot(out / "forest.png", table)
    write_text(out / "index.html", to_html(shown, skipped, root, "roc.png" if has_roc else None,
                                           "forest.png" if has_forest else None))
    return text


def build_report(markdown: str, metric: str, project: str, entity: Optional[str] = None) -> Any:
    """A W&B Report (``wandb-workspaces``, extra ``reports``): the leaderboard text and a bar
    plot of the metric per method over the project's runs. Constructed only; the caller saves
    it. Without ``entity`` the account's default entity is looked up, which needs the network."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as exc:
        raise ImportError("a W&B Report needs the 'reports' extra: pip install 'facebench[reports]'") from exc

    runset = wr.Runset(entity=entity or "", project=project, name="facebench runs")
    plot = wr.BarPlot(
        title=f"{metric} per method (mean ± stderr over runs)",
        metrics=[metric],
        groupby=wr.Config("method"),
        groupby_aggfunc="mean",
        groupby_rangefunc="stderr",
    )
    blocks = [wr.MarkdownBlock(text=markdown), wr.PanelGrid(runsets=[runset], panels=[plot])]
    extra = {"entity": entity} if entity else {}
    return wr.Report(project=project, title="facebench leaderboard", blocks=blocks, **extra)


def log_to_wandb(table: pd.DataFrame, markdown: str, out: Path, project: str, entity: Optional[str]) -> None:
    """Log the leaderboard as a W&B Table, in ``WANDB_MODE`` (offline when unset, so nothing is
    uploaded unasked); online, also save a W&B Report built with :func:`build_report`."""
    import wandb

    mode = os.environ.get("WANDB_MODE") or "offline"
    run = wandb.init(
        project=project, entity=entity, mode=mode, job_type="leaderboard", name="leaderboard", dir=str(out), reinit="create_new"
    )
    try:
        run.log({"leaderboard": wandb.Table(dataframe=table)})
    finally:
        run.finish()
        wandb.teardown()
    if mode == "online" and len(table):
        report = build_report(markdown, str(table["metric"].iloc[0]), project, entity)
        report.save()
        print(f"W&B report: {report.url}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facebench.leaderboard", description="Group result records across seeds and compare methods."
    )
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("FACEBENCH_RESULTS", "results")),
                        help="results root to scan for metrics.json (default: $FACEBENCH_RESULTS or results)")
    parser.add_argument("--baseline", help="method to test every other method against (paired over units)")
    parser.add_argument("--out", type=Path, help="output folder (default: ROOT/leaderboard)")
    parser.add_argument("--markdown", type=Path, help="also write the markdown table here, e.g. results/LEADERBOARD.md")
    parser.add_argument("--wandb", action="store_true", help="log the table to W&B (mode from WANDB_MODE, default offline)")
    parser.add_argument("--wandb-project", default="facebench")
    parser.add_argument("--wandb-entity")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"--root {args.root}: no such directory")
    out = args.out or args.root / "leaderboard"
    runs, skipped = collect(args.root, exclude=out)
    methods = sorted({r.method for r in runs})
    if args.baseline and args.baseline not in methods:
        parser.error(f"--baseline {args.baseline}: no counted run of that method; methods: {', '.join(methods) or 'none'}")
    table = leaderboard(runs, args.baseline)
    command = shlex.join(["python", "-m", "facebench.leaderboard", *(sys.argv[1:] if argv is None else argv)])
    markdown = write_outputs(runs, skipped, table, args.root, out, args.markdown, command)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 60):
        print(display_table(table).to_string(index=False) if len(table) else "no counted runs")
    for s in skipped:
        print(f"skipped {s.path}: {s.reason}")
    print(f"leaderboard written to {out}" + (f" and {args.markdown}" if args.markdown else ""))
    if args.wandb:
        try:
            log_to_wandb(table, markdown, out, args.wandb_project, args.wandb_entity)
        except Exception as exc:  # the local leaderboard is already written; say what failed
            print(f"facebench: W&B logging failed ({type(exc).__name__}: {exc}); local files are complete", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
