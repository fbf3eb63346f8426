"""Identity selectivity (DeepID2+, Sec. 5): single neurons tell one identity from the rest with up
to 97% accuracy, far above any single feature of high-dimensional LBP.

For each of the benchmark's people with the most images (on LFW: George_W_Bush, Colin_Powell,
Tony_Blair, Donald_Rumsfeld, Gerhard_Schroeder), every neuron's one-vs-rest accuracy on a
balanced set (the person's images and as many of other people's), its threshold chosen on one
half and scored on the other. Each person is scored with a unit's network that did not train
on them where the run has one (the record says which).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from facebench.components import Analysis, AnalysisResult, Finding
from facebench.plots import pyplot, tex_safe
from facebench_plugins.analyses.single_neuron import balanced_sample, selectivity


@dataclass
class SelectivityConfig:
    """identities: the people to test (null: the ``top`` people with the most images).
    strong: the held-out accuracy that counts as a strongly selective neuron (the paper's best
    reach 97%). margin: points by which learned neurons must beat every no-training baseline's
    best single dimension, for every person, for the cross-run finding to hold."""

    name: str = "selectivity"
    identities: Optional[list[str]] = None
    top: int = 5
    strong: float = 0.9
    margin: float = 5.0
    seed: int = 0


def most_pictured(names: list[str], labels: np.ndarray, top: int) -> list[str]:
    counts = np.bincount(labels, minlength=len(names))
    order = sorted(range(len(names)), key=lambda k: (-counts[k], names[k]))
    return [names[k] for k in order[:top]]


class SelectivityAnalysis(Analysis):
    def __init__(self, cfg: SelectivityConfig) -> None:
        if cfg.top < 1:
            raise ValueError(f"top={cfg.top}: give at least 1")
        self.cfg = cfg

    def _people(self, run) -> list[str]:  # type: ignore[no-untyped-def]
        faces = run.bench.faces
        if self.cfg.identities is None:
            return most_pictured(faces.names, faces.labels, self.cfg.top)
        unknown = [p for p in self.cfg.identities if p not in set(faces.names)]
        if unknown:
            raise ValueError(f"identities={unknown}: not people of this benchmark ({run.cfg.protocol.name})")
        return list(self.cfg.identities)

    def analyse(self, run) -> AnalysisResult:  # type: ignore[no-untyped-def]
        faces = run.bench.faces
        rng = np.random.default_rng(self.cfg.seed)
        people, figure_rows = {}, []
        for person in self._people(run):
            label = faces.names.index(person)
            unseen = [m for m in run.units if person not in set(m.training.faces.names)]
            model = (unseen or run.units)[0]
            index, positive = balanced_sample(np.flatnonzero(faces.labels == label),
                                              np.flatnonzero(faces.labels != label), rng)
            x = run.per_image(model.features[index])
            found = selectivity(x, positive, rng)
            people[person] = {
                "images": int(positive.sum()),
                "unit": model.name,
                "trained_on_person": not unseen,
                "best_neuron": found.best_neuron,
                "best_accuracy": found.best_accuracy,
                "neurons_above_80": int((found.per_neuron >= 0.8).sum()),
                "median_neuron_accuracy": float(np.median(found.per_neuron)),
                "excitatory_neuron": found.excitatory,
                "inhibitory_neuron": found.inhibitory,
            }
            figure_rows.append((person, x, positive, found))
        best = max(p["best_accuracy"] for p in people.values())
        finding = Finding(
            "single neurons are selective for identities (paper: up to 97% one-vs-rest)",
            best >= self.cfg.strong,
            "best single neuron per person: " + ", ".join(f"{p} {100 * v['best_accuracy']:.1f}%" for p, v in people.items())
            + f" (strong: >= {100 * self.cfg.strong:.0f}%)",
        )
        return AnalysisResult({"people": people, "neurons": int(figure_rows[0][1].shape[1])},
                              {"neurons": self._figure(run.label, figure_rows)}, [finding])

    @staticmethod
    def _figure(label: str, rows: list[tuple[str, np.ndarray, np.ndarray, Any]]) -> Any:
        plt = pyplot()
        fig, axes = plt.subplots(len(rows), 3, figsize=(10.0, 2.0 * len(rows)), dpi=100, squeeze=False)
        for (person, x, positive, found), (ax_acc, ax_exc, ax_inh) in zip(rows, axes):
            ax_acc.hist(100 * found.per_neuron, bins=30, color="#888888")
            ax_acc.axvline(100 * found.best_accuracy, color="#cc3311", lw=1.2)
            ax_acc.set_ylabel(tex_safe(person), fontsize=8)
            for ax, neuron, kind in ((ax_exc, found.excitatory, "most excitatory"), (ax_inh, found.inhibitory, "most inhibitory")):
                values = x[:, neuron]
                bins = np.linspace(values.min(), values.max() + 1e-9, 30)
                ax.hist(values[positive], bins=bins, alpha=0.6, color="#4477aa", label="this person")
                ax.hist(values[~positive], bins=bins, alpha=0.6, color="#cc6677", label="others")
                ax.set_title(f"{kind}: neuron {neuron}", fontsize=8)
        axes[0, 0].set_title("held-out accuracy of each neuron (%)", fontsize=8)
        axes[0, 1].legend(fontsize=7)
        fig.suptitle(tex_safe(f"{label}: identity selectivity"), fontsize=9)
        fig.tight_layout()
        return fig

    def compare(self, summaries: dict[str, dict[str, Any]], baselines: set[str]) -> AnalysisResult:
        learned = {k: v for k, v in summaries.items() if k not in baselines}
        floors = {k: v for k, v in summaries.items() if k in baselines}
        people = sorted({p for s in summaries.values() for p in s["people"]})
        table = {run: {p: s["people"].get(p, {}).get("best_accuracy") for p in people} for run, s in summaries.items()}
        findings = []
        if learned and floors:
            gaps = [100 * (table[run][p] - max(table[b][p] for b in floors)) for run in learned for p in people]
            findings.append(Finding(
                "single learned neurons are far above any single feature of no-training baselines",
                min(gaps) >= self.cfg.margin,
                f"smallest lead of a learned run's best neuron over the best baseline dimension: {min(gaps):+.1f} points "
                f"(largest {max(gaps):+.1f}; required {self.cfg.margin:g}) over {len(people)} people",
            ))
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(8.0, 3.2), dpi=110)
        width = 0.8 / max(len(table), 1)
        for i, (run, row) in enumerate(table.items()):
            ax.bar(np.arange(len(people)) + i * width, [100 * row[p] for p in people], width, label=tex_safe(run))
        ax.set_xticks(np.arange(len(people)) + 0.4 - width / 2, [tex_safe(p) for p in people], fontsize=7)
        ax.set_ylabel("best single neuron, held-out (%)")
        ax.set_ylim(50, 100)
        ax.legend(fontsize=7)
        fig.tight_layout()
        return AnalysisResult({"best_accuracy": table}, {"selectivity": fig}, findings)
