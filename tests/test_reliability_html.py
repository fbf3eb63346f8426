"""The leaderboard page escapes everything that came from a record, a config or a file name.

Records are written by whoever ran an experiment (a method name is free text in a config) and
run directories can be named anything, so the page is parsed back and must hold no element
or attribute that the template itself does not write: an injected ``<script>`` or
``onerror=`` would show up as one.
"""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from facebench import leaderboard as lb
from facebench.results import write_record

SCRIPT = '"><script>alert("method")</script>'
IMG = "<img src=x onerror=alert(1)>"
#: The images the page itself shows (written by the leaderboard beside it).
OWN_IMAGES = ("roc.png", "forest.png")
#: Elements the template writes; anything else in the page was injected.
TEMPLATE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "code", "table", "thead",
                 "tbody", "tr", "th", "td", "ul", "li", "img"}


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def injected(page: str) -> list[str]:
    parser = Elements()
    parser.feed(page)
    found = [tag for tag, _ in parser.tags if tag not in TEMPLATE_TAGS]
    found += [f"{tag} {name}" for tag, attrs in parser.tags for name, _ in attrs if name.startswith("on")]
    found += [f"img src={dict(attrs).get('src')}" for tag, attrs in parser.tags if tag == "img" and dict(attrs).get("src") not in OWN_IMAGES]
    return found


def record(method: str, margin: str, seed: int, **extra: object) -> dict:
    folds = ["fold1", "fold2"]
    return {
        "status": "complete",
        "method": method,
        "components": {"loss": {"name": IMG, "margin": margin}},
        "protocol": {"name": f"synthetic{IMG}", "units_evaluated": folds, "units_total": 2},
        "regime": f"regime{SCRIPT}",
        "seed": seed,
        "metrics": {"mean_accuracy": 0.9, "roc": {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.8, 1.0], "thresholds": [None, 0.5, 0.0]}},
        "units": [{"name": f, "accuracy": 0.9 - 0.01 * i - 0.001 * seed} for i, f in enumerate(folds)],
        "primary_metric": "mean_accuracy",
        **extra,
    }


@pytest.fixture()
def hostile_root(tmp_path: Path) -> Path:
    """Counted runs of a method named like markup with two settings that differ by a config
    value carrying markup, a failed run whose error does too, and a run directory named like
    markup that holds no record."""
    root = tmp_path / "results"
    for seed in (0, 1):
        for margin in ("0.5", SCRIPT):
            run = root / f"{IMG}-s{seed}-{len(margin)}"
            run.mkdir(parents=True)
            write_record(run, record(SCRIPT, margin, seed))
        baseline = root / f"base-s{seed}"
        baseline.mkdir()
        write_record(baseline, record("baseline", "0.5", seed))
    failed = root / f"failed{IMG}"
    failed.mkdir()
    write_record(failed, {**record(SCRIPT, "0.5", 7), "status": "failed", "error": f"RuntimeError: {SCRIPT}"})
    (root / IMG).mkdir()
    (root / IMG / "config.yaml").write_text(f"method: '{IMG}'\n")
    return root


def test_page_and_markdown_hold_no_injected_markup(hostile_root: Path) -> None:
    assert lb.main(["--root", str(hostile_root)]) == 0
    page = (hostile_root / "leaderboard" / "index.html").read_text()
    assert injected(page) == []
    assert "&lt;script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page  # shown, as text
    assert "without metrics.json" in page and "status failed" in page  # the skips are listed, escaped
    markdown = (hostile_root / "leaderboard" / "leaderboard.md").read_text()
    assert "<script" not in markdown and "<img" not in markdown


def test_the_check_finds_markup() -> None:
    assert injected(f"<p>{SCRIPT}</p><p>{IMG}</p>") == ["script", "img onerror", "img src=x"]


def test_a_baseline_named_like_markup_is_escaped_in_the_header(hostile_root: Path) -> None:
    assert lb.main(["--root", str(hostile_root), "--baseline", SCRIPT]) == 0
    assert injected((hostile_root / "leaderboard" / "index.html").read_text()) == []
