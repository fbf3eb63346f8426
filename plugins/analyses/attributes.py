"""Attribute selectivity (DeepID2+, Sec. 5): single neurons also separate attributes (gender,
race, age, hair). Needs labels: ``analysis=[attributes] analysis.attributes.file=...`` with a
CelebA ``list_attr_celeba.txt`` or the LFW attribute file (facebench.data.attributes)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from omegaconf import MISSING

from facebench.components import Analysis, AnalysisResult, Finding
from facebench.data.attributes import read_attributes
from facebench.plots import pyplot, tex_safe
from facebench_plugins.analyses.single_neuron import balanced_sample, selectivity


@dataclass
class AttributesConfig:
    """file: the attribute label file. format: auto | celeba | lfw. attributes: the attributes to
    test (null: all). min_images: an attribute with fewer images on either side is skipped.
    strong: held-out accuracy counted as a strongly selective neuron (the paper: up to 97%)."""

    name: str = "attributes"
    file: str = MISSING
    format: str = "auto"
    attributes: Optional[list[str]] = None
    min_images: int = 20
    strong: float = 0.9
    seed: int = 0


class AttributesAnalysis(Analysis):
    def __init__(self, cfg: AttributesConfig) -> None:
        self.cfg = cfg

    def analyse(self, run) -> AnalysisResult:  # type: ignore[no-untyped-def]
        table = read_attributes(Path(self.cfg.file), self.cfg.format)
        wanted = list(self.cfg.attributes) if self.cfg.attributes is not None else table.names
        unknown = [a for a in wanted if a not in table.names]
        if unknown:
            raise ValueError(f"attributes={unknown}: not in {table.path} (it has {', '.join(table.names[:8])}, ...)")
        position = {Path(key).stem: i for i, key in enumerate(run.bench.faces.keys)}
        if len(position) < len(run.bench.faces.keys):
            raise ValueError(f"the images of {run.cfg.protocol.name} repeat file names across folders, and attribute "
                             "labels are matched by file name")
        matched = [(position[s], row) for row, s in enumerate(table.stems) if s in position]
        if not matched:
            raise ValueError(f"{table.path}: none of its {len(table.stems)} images is an image of this benchmark "
                             "(matched by file name)")
        images = np.array([m[0] for m in matched])
        values = table.values[[m[1] for m in matched]]
        model = run.units[0]
        x_all = run.per_image(model.features[images])
        rng = np.random.default_rng(self.cfg.seed)
        found: dict[str, Any] = {}
        for name in wanted:
            has = values[:, table.names.index(name)] > 0
            if min(has.sum(), (~has).sum()) < self.cfg.min_images:
                found[name] = {"skipped": f"{int(has.sum())} with, {int((~has).sum())} without"}
                continue
            index, positive = balanced_sample(np.flatnonzero(has), np.flatnonzero(~has), rng)
            result = selectivity(x_all[index], positive, rng)
            found[name] = {"images": int(len(index)), "best_neuron": result.best_neuron,
                           "best_accuracy": result.best_accuracy,
                           "median_neuron_accuracy": float(np.median(result.per_neuron))}
        scored = {k: v for k, v in found.items() if "best_accuracy" in v}
        summary = {"file": table.path, "images_matched": int(len(images)), "unit": model.name, "attributes": found}
        if not scored:
            return AnalysisResult(summary, {}, [Finding("single neurons are selective for attributes", None,
                                                        "no attribute had enough images on both sides")])
        top = sorted(scored.items(), key=lambda kv: -kv[1]["best_accuracy"])
        finding = Finding(
            "single neurons are selective for attributes (paper: up to 97% for gender, race, age)",
            top[0][1]["best_accuracy"] >= self.cfg.strong,
            "best: " + ", ".join(f"{k} {100 * v['best_accuracy']:.1f}%" for k, v in top[:5]),
        )
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.0, 0.22 * len(top) + 1.0), dpi=110)
        ax.barh(range(len(top)), [100 * v["best_accuracy"] for _, v in top], color="#4477aa")
        ax.set_yticks(range(len(top)), [tex_safe(k) for k, _ in top], fontsize=6)
        ax.invert_yaxis()
        ax.set_xlim(50, 100)
        ax.set_xlabel("best single neuron, held-out accuracy (%)")
        ax.set_title(tex_safe(f"{run.label}: attribute selectivity"), fontsize=9)
        fig.tight_layout()
        return AnalysisResult(summary, {"attributes": fig}, [finding])
