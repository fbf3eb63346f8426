"""What an analysis leaves: ``analysis.json`` (merged with what earlier analyses of the run
wrote, so asking for one analysis never loses another's result), PNG plots and ``analysis.html``
in the run's folder; for several runs, the side-by-side page with the findings tested across
them. Every file is written whole (atomically); the run's own record is never touched."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from facebench.components import AnalysisResult, Finding
from facebench.plots import save_figure
from facebench.results import json_safe, write_text

ANALYSIS_FILE = "analysis.json"
SCHEMA = 1


def _finding(f: Finding) -> dict[str, Any]:
    return {"claim": f.claim, "holds": f.holds, "evidence": f.evidence}


def _verdict(holds: Any) -> str:
    return {True: "holds", False: "does not hold"}.get(holds, "cannot say")


def read_analysis(folder: Path) -> dict[str, Any]:
    path = folder / ANALYSIS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}  # a file this module did not write whole is replaced, not merged
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else {}


def reusable(document: dict[str, Any], run: Any, name: str, config: dict[str, Any]) -> bool:
    """Whether ``document`` (the run's analysis.json) already holds ``name``'s result for this
    config and these units: a side-by-side page over runs analysed before costs nothing again."""
    entry = document.get("analyses", {}).get(name)
    return (entry is not None and entry.get("config") == json_safe(config)
            and entry.get("units") == [u.name for u in run.unit_list])


def save_result(folder: Path, prefix: str, name: str, result: AnalysisResult) -> list[str]:
    files = []
    for stem, fig in result.figures.items():
        file = f"{prefix}_{name}_{stem}.png"
        save_figure(folder / file, fig)
        files.append(file)
    return files


def write_run_analysis(run: Any, results: dict[str, tuple[dict[str, Any], AnalysisResult, float]]) -> dict[str, Any]:
    """Merge ``results`` (analysis name -> its config, its result, seconds) into the run's
    analysis.json and rewrite its page; returns the merged document."""
    folder = run.run_dir
    document = read_analysis(folder)
    analyses = dict(document.get("analyses", {}))
    for name, (config, result, seconds) in results.items():
        analyses[name] = {
            "config": config,
            "units": [u.name for u in run.unit_list],
            "summary": result.summary,
            "findings": [_finding(f) for f in result.findings],
            "figures": save_result(folder, "analysis", name, result),
            "seconds": round(seconds, 1),
        }
    trainer = run.cfg.trainer
    document = {
        "schema": SCHEMA,
        "run": str(folder),
        "label": run.label,
        "trainable": run.trainable,
        "protocol": str(run.cfg.protocol.name),
        "regime": run.record.get("regime"),
        "units": [u.name for u in run.units_evaluated],
        "budget": {"steps": int(trainer.steps), "batch_size": int(trainer.batch_size)} if run.trainable else None,
        "verifier": str(run.cfg.verifier.name),
        "recorded_mean_accuracy": run.record["metrics"].get("mean_accuracy"),
        "analyses": analyses,
    }
    document = json_safe(document)
    write_text(folder / ANALYSIS_FILE, json.dumps(document, indent=2) + "\n")
    write_text(folder / "analysis.html", _page(f"Analysis of {run.label}", [document], {}))
    return document


def _scalars(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flattened leaf values of a summary, for the page's tables."""
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _scalars(v, f"{prefix}{k}.")]
    if isinstance(value, list) and len(value) > 12:
        return [(prefix.rstrip("."), f"[{len(value)} values]")]
    if isinstance(value, float):
        return [(prefix.rstrip("."), f"{value:.4g}")]
    return [(prefix.rstrip("."), str(value))]


def _findings_html(findings: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(f['claim'])}</td><td><b>{_verdict(f['holds'])}</b></td><td>{html.escape(f['evidence'])}</td></tr>"
        for f in findings)
    return f"<table><tr><th>finding</th><th>here</th><th>numbers</th></tr>{rows}</table>" if rows else ""


def _page(title: str, documents: list[dict[str, Any]], compared: dict[str, Any]) -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:auto}td,th{border:1px solid #ccc;padding:2px 6px;"
             "font-size:90%;vertical-align:top}table{border-collapse:collapse;margin:0.5em 0}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    if compared:
        parts.append("<h2>Across runs</h2>")
        for name, entry in compared.items():
            parts.append(f"<h3>{html.escape(name)}</h3>{_findings_html(entry['findings'])}")
            parts += [f"<img src='{html.escape(f)}' style='max-width:100%'>" for f in entry["figures"]]
    for doc in documents:
        budget = doc.get("budget")
        how = f"{budget['steps']} steps x {budget['batch_size']} images" if budget else "no training"
        parts.append(f"<h2>{html.escape(doc['label'])}</h2><p><code>{html.escape(doc['run'])}</code>: "
                     f"{html.escape(doc['protocol'])} ({html.escape(str(doc['regime']))}), units "
                     f"{html.escape(', '.join(doc['units']))}, {html.escape(how)}, verifier {html.escape(doc['verifier'])}.</p>")
        prefix = "" if not compared else f"{Path(doc['run']).as_posix()}/"
        for name, entry in doc["analyses"].items():
            parts.append(f"<h3>{html.escape(name)} (units {html.escape(', '.join(entry['units']))}; {entry['seconds']} s)</h3>"
                         f"{_findings_html(entry['findings'])}")
            rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _scalars(entry["summary"]))
            parts.append(f"<details><summary>numbers</summary><table>{rows}</table></details>")
            if not compared:
                parts += [f"<img src='{html.escape(prefix + f)}' style='max-width:100%'>" for f in entry["figures"]]
    return "\n".join(parts) + "\n"


def write_comparison(out: Path, documents: list[dict[str, Any]], compared: dict[str, AnalysisResult]) -> str:
    """The side-by-side page: cross-run findings and plots, then every run's findings; returns the
    markdown (compare.md), which lists every finding with its verdict and numbers."""
    out.mkdir(parents=True, exist_ok=True)
    entries = {name: {"findings": [_finding(f) for f in result.findings], "summary": result.summary,
                      "figures": save_result(out, "compare", name, result)} for name, result in compared.items()}
    write_text(out / "compare.json", json.dumps(json_safe({"runs": documents, "across_runs": entries}), indent=2) + "\n")
    write_text(out / "compare.html", _page("DeepID2+ findings, side by side", documents, entries))
    lines = ["# DeepID2+ findings, side by side", "", "| run | analysis | finding | here | numbers |", "|---|---|---|---|---|"]
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    for name, entry in entries.items():
        lines += [f"| (across runs) | {name} | {cell(f['claim'])} | {_verdict(f['holds'])} | {cell(f['evidence'])} |"
                  for f in entry["findings"]]
    for doc in documents:
        for name, entry in doc["analyses"].items():
            lines += [f"| {cell(doc['label'])} | {name} | {cell(f['claim'])} | {_verdict(f['holds'])} | {cell(f['evidence'])} |"
                      for f in entry["findings"]]
    lines += ["", "Runs: " + "; ".join(f"`{d['run']}` ({d['label']}, units analysed: "
                                       + ", ".join(sorted({u for e in d["analyses"].values() for u in e["units"]})) + ")"
                                       for d in documents), ""]
    markdown = "\n".join(lines)
    write_text(out / "compare.md", markdown)
    return markdown
