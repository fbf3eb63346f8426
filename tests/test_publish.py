"""The published leaderboard: the study's report as its headline (links still pointing at the
study's files), the reproduction presets after it with non-converged entries listed apart, and
the committed page equal to what its command makes from the committed records."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facebench.results import write_record
from facebench.leaderboard import NOT_CONVERGED
from facebench.study.publish import presets_section, relinked
from test_leaderboard import record


def test_the_study_report_becomes_a_section_whose_links_still_resolve() -> None:
    report = "# Study `losses`\n\n## Verifier `cosine`\n\n![cosine](forest-cosine.png) [web](https://x.org/a.png)\n"
    section = relinked(report, "studies/losses")
    assert section.startswith("## Study `losses`") and "\n### Verifier `cosine`" in section
    assert "](studies/losses/forest-cosine.png)" in section and "](https://x.org/a.png)" in section


def test_presets_that_had_not_converged_are_listed_apart_not_ranked(tmp_path: Path) -> None:
    root = tmp_path / "presets"
    for method, improving, steps in (("A", False, 600), ("B", True, 200)):
        for seed in (0, 1):
            acc = np.linspace(0.8, 0.9, 10) + 0.01 * seed + (0.05 + 0.002 * np.arange(10) ** 1.3 if method == "B" else 0.0)
            rec = record(method, seed, acc)
            rec["components"]["trainer"] = {"steps": steps, "batch_size": 64}
            rise = 0.03 if improving else 0.0
            rec["units"][0]["learning_curve"] = [{"fraction": f, "val_accuracy": a} for f, a in
                                                 ((0.25, 0.7), (0.5, 0.75), (0.75, 0.8), (1.0, 0.8 + rise))]
            run = root / f"{method}-s{seed}"
            run.mkdir(parents=True)
            write_record(run, rec)
    text = "\n".join(presets_section(root, "A", tmp_path))
    ranked, apart = text.split("### Not converged")
    assert "| A |" in ranked and "| B |" not in ranked and "| 600 x 64 |" in ranked
    assert "| B |" in apart and NOT_CONVERGED in apart and "| 200 x 64 |" in apart
    assert (root / "forest.png").read_bytes()[:4] == b"\x89PNG"


def test_no_preset_records_says_so(tmp_path: Path) -> None:
    assert "No complete records yet." in presets_section(tmp_path / "none", "deepid2", tmp_path)


def test_the_report_page_renders_tables_and_plots_and_shows_markup_from_records_as_text() -> None:
    from facebench.study.report import as_html

    page = as_html("# Study\n\n| method | flags |\n|---|---|\n| <script>alert(1)</script> | ok |\n\n"
                   "![learning curves](learning-curves.png)\n", "facebench study <x>")
    assert "<table>" in page and '<img src="learning-curves.png" alt="learning curves"' in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "<title>facebench study &lt;x&gt;</title>" in page
