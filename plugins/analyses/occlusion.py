"""Occlusion robustness (DeepID2+, Sec. 6): test faces occluded at test time — blocks growing from
the bottom, from the top, and random blocks — from 0% to 70% of the face; the verifier is fitted
on unoccluded training faces, as a deployed system would be. Pixels and LBP runs analysed the
same way are the floors."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facebench.components import Analysis, AnalysisResult, Finding
from facebench.plots import pyplot, tex_safe

log = logging.getLogger("facebench.analysis")

PATTERNS = ("bottom", "top", "random")
FILLS = ("black", "mean")


def occlude(images: np.ndarray, pattern: str, level: float, rng: np.random.Generator, fill: np.ndarray) -> np.ndarray:
    """Copies of uint8 (N, H, W, C) ``images`` with ``level`` of each face's area set to ``fill``:
    the bottom or top rows, or one block at a random place per image (as square as fits)."""
    out = np.array(images, copy=True)
    n, h, w = out.shape[:3]
    if level <= 0:
        return out
    if pattern in ("bottom", "top"):
        rows = min(h, int(round(level * h)))
        if pattern == "bottom":
            out[:, h - rows:] = fill
        else:
            out[:, :rows] = fill
        return out
    area = level * h * w
    side = math.sqrt(area)
    if side > min(h, w):  # wider than the face is narrow: span that side, stretch the other
        bh, bw = (h, min(w, round(area / h))) if h < w else (min(h, round(area / w)), w)
    else:
        bh = bw = max(1, round(side))
    tops = rng.integers(0, h - bh + 1, n)
    lefts = rng.integers(0, w - bw + 1, n)
    for i in range(n):
        out[i, tops[i]:tops[i] + bh, lefts[i]:lefts[i] + bw] = fill
    return out


@dataclass
class OcclusionConfig:
    """patterns: bottom | top | random. levels: shares of the face occluded (0 is the unoccluded
    baseline). fill: what covers the occluded part — black, or the mean colour of the benchmark's
    images (the paper does not state its fill). graceful_level, graceful_drop: the finding that
    accuracy degrades gracefully holds when no pattern loses more than graceful_drop points up to
    graceful_level occlusion."""

    name: str = "occlusion"
    patterns: list[str] = field(default_factory=lambda: list(PATTERNS))
    levels: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    fill: str = "black"
    graceful_level: float = 0.2
    graceful_drop: float = 5.0
    seed: int = 0


class OcclusionAnalysis(Analysis):
    def __init__(self, cfg: OcclusionConfig) -> None:
        bad = [p for p in cfg.patterns if p not in PATTERNS]
        if bad:
            raise ValueError(f"patterns={bad}: use {', '.join(PATTERNS)}")
        if cfg.fill not in FILLS:
            raise ValueError(f"fill={cfg.fill!r}: use one of {', '.join(FILLS)}")
        if not cfg.levels or any(not 0 <= v <= 1 for v in cfg.levels):
            raise ValueError(f"levels={list(cfg.levels)}: give shares between 0 and 1")
        self.cfg = cfg

    def analyse(self, run) -> AnalysisResult:  # type: ignore[no-untyped-def]
        images = run.bench.faces.images
        fill = np.zeros(images.shape[-1], np.uint8) if self.cfg.fill == "black" else \
            images.reshape(-1, images.shape[-1]).mean(axis=0).round().astype(np.uint8)
        levels = sorted(float(v) for v in self.cfg.levels)
        curves: dict[str, list[float]] = {}
        auc: dict[str, list[float]] = {}
        for p, pattern in enumerate(self.cfg.patterns):
            curves[pattern], auc[pattern] = [], []
            for k, level in enumerate(levels):
                features = {}
                for model in run.units:
                    test = run.test_index(model.unit)
                    f = model.features.copy()
                    rng = np.random.default_rng([self.cfg.seed, p, k])
                    if level > 0:
                        f[test] = run.extract(model.backbone, occlude(images[test], pattern, level, rng, fill))
                    features[model.name] = f
                scored = run.evaluate(features)
                curves[pattern].append(scored["mean_accuracy"])
                auc[pattern].append(scored["auc"])
                log.info("%s: occlusion %s %.0f%%: accuracy %.2f%%", run.label, pattern, 100 * level,
                         100 * curves[pattern][-1])
        start = {p: c[levels.index(min(levels))] for p, c in curves.items()}
        within = [v for v in levels if v <= self.cfg.graceful_level]
        drops = {p: max(100 * (start[p] - curves[p][levels.index(v)]) for v in within) for p in curves}
        finding = Finding(
            "robust to occlusion: accuracy degrades gracefully as more of the face is covered",
            max(drops.values()) <= self.cfg.graceful_drop,
            "largest drop up to " + f"{100 * self.cfg.graceful_level:.0f}% occluded: "
            + ", ".join(f"{p} {d:.1f} points" for p, d in drops.items())
            + f" (allowed {self.cfg.graceful_drop:g}); at {100 * levels[-1]:.0f}%: "
            + ", ".join(f"{p} {100 * c[-1]:.1f}%" for p, c in curves.items()),
        )
        # AUC beside accuracy: the threshold is chosen on unoccluded training pairs, so accuracy also
        # measures how far occlusion shifts the scores; AUC says whether the pairs still separate.
        summary = {"levels": levels, "fill": self.cfg.fill, "accuracy": curves, "auc": auc,
                   "verifier": str(run.cfg.verifier.name)}
        return AnalysisResult(summary, {"curves": self._figure({run.label: summary}, run.label)}, [finding])

    @staticmethod
    def _figure(summaries: dict[str, dict[str, Any]], title: str) -> Any:
        plt = pyplot()
        patterns = sorted({p for s in summaries.values() for p in s["accuracy"]}, key=lambda p: PATTERNS.index(p))
        fig, axes = plt.subplots(1, len(patterns), figsize=(3.6 * len(patterns), 3.2), dpi=110, sharey=True, squeeze=False)
        for ax, pattern in zip(axes[0], patterns):
            for run, s in summaries.items():
                if pattern in s["accuracy"]:
                    x = [100 * v for v in s["levels"]]
                    line, = ax.plot(x, [100 * a for a in s["accuracy"][pattern]], "o-", ms=3, label=tex_safe(run))
                    if pattern in s.get("auc", {}):
                        ax.plot(x, [100 * a for a in s["auc"][pattern]], "--", lw=1, color=line.get_color())
            ax.set(xlabel=f"face occluded from the {pattern} (%)" if pattern != "random" else "face occluded by a random block (%)")
            ax.axhline(50, color="k", lw=0.6, ls=":")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel("accuracy % (solid), AUC x 100 (dashed)")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle(tex_safe(title), fontsize=9)
        fig.tight_layout()
        return fig

    def compare(self, summaries: dict[str, dict[str, Any]], baselines: set[str]) -> AnalysisResult:
        learned = [r for r in summaries if r not in baselines]
        floors = [r for r in summaries if r in baselines]
        findings = []
        if learned and floors:
            leads = []
            for run in learned:
                for pattern, curve in summaries[run]["accuracy"].items():
                    for k, value in enumerate(curve):
                        best_floor = max(summaries[b]["accuracy"][pattern][k] for b in floors
                                         if pattern in summaries[b]["accuracy"])
                        leads.append((100 * (value - best_floor), run, pattern, summaries[run]["levels"][k]))
            worst = min(leads)
            findings.append(Finding(
                "learned features stay above the no-training floors (pixels, LBP) at every occlusion level",
                worst[0] > 0,
                f"smallest lead {worst[0]:+.1f} points ({worst[1]}, {worst[2]}, {100 * worst[3]:.0f}% occluded)",
            ))
        return AnalysisResult({}, {"occlusion": self._figure(summaries, "accuracy under occlusion")}, findings)
