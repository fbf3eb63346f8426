"""Sparsity (DeepID2+, Sec. 5): about half the neurons are active on an image, and each neuron
is active on about half the images. Measured on each evaluated unit's test people's images."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facebench.components import Analysis, AnalysisResult, Finding
from facebench.plots import pyplot, tex_safe


def image_rows(features: np.ndarray, neurons: int) -> tuple[np.ndarray, bool]:
    """One row per image: flip-concatenated rows (2 x ``neurons`` wide) split into the face's and
    its mirror's; returns the rows and whether they were split."""
    x = np.asarray(features)
    if x.shape[1] == 2 * neurons:
        return np.concatenate([x[:, :neurons], x[:, neurons:]]), True
    return x, False


def sparsity_report(features: np.ndarray, neurons: int) -> dict[str, float | int | bool]:
    """How sparse ReLU features are: neurons active (> 0) per image and images per neuron.

    Test features under ``features.flip=concat`` hold two images per row (a face and its
    mirror); they are split back into 2N images of ``neurons`` units, so the statistics are per
    image as in the paper. Under ``flip=sum`` a unit counts as active when it is active on either.
    """
    x, split = image_rows(features, neurons)
    active = x > 0
    per_image = active.mean(axis=1)
    per_neuron = active.mean(axis=0)
    return {
        "neurons": int(x.shape[1]),
        "images": int(x.shape[0]),
        "flip_halves_split": bool(split),
        "active_neurons_per_image_mean": float(per_image.mean()),
        "active_neurons_per_image_std": float(per_image.std()),
        "images_per_neuron_mean": float(per_neuron.mean()),
        "images_per_neuron_std": float(per_neuron.std()),
        "dead_neurons": int((per_neuron == 0).sum()),
    }


@dataclass
class SparsityConfig:
    """band: the activity rates read as "about half" (the paper reports ~50% / ~50%).
    min_share: the share of images, and separately of neurons, whose own rate must fall inside
    the band. The finding is judged on the spread, not only the means: the mean over images of
    their rates and the mean over neurons of theirs are both the mean of one activity matrix, so
    they are equal by construction; the paper's histograms are concentrated around half, which
    "most images and most neurons inside the band" (default 0.5) reads."""

    name: str = "sparsity"
    band: list[float] = field(default_factory=lambda: [0.35, 0.65])
    min_share: float = 0.5


class SparsityAnalysis(Analysis):
    def __init__(self, cfg: SparsityConfig) -> None:
        if len(cfg.band) != 2 or not 0 <= cfg.band[0] < cfg.band[1] <= 1:
            raise ValueError(f"band={list(cfg.band)}: give [low, high] with 0 <= low < high <= 1")
        if not 0 < cfg.min_share <= 1:
            raise ValueError(f"min_share={cfg.min_share}: give a share in (0, 1]")
        self.low, self.high = float(cfg.band[0]), float(cfg.band[1])
        self.min_share = float(cfg.min_share)

    def share_in_band(self, rates: np.ndarray) -> float:
        return float(((rates >= self.low) & (rates <= self.high)).mean())

    def analyse(self, run) -> AnalysisResult:  # type: ignore[no-untyped-def]
        rows = np.concatenate([m.features[run.test_index(m.unit)] for m in run.units])
        report = sparsity_report(rows, run.neurons)
        active = image_rows(rows, run.neurons)[0] > 0
        per_image, per_neuron = active.mean(axis=1), active.mean(axis=0)
        image_rate = report["active_neurons_per_image_mean"]
        images_in_band, neurons_in_band = self.share_in_band(per_image), self.share_in_band(per_neuron)
        summary = {**report, "images_in_band_share": images_in_band, "neurons_in_band_share": neurons_in_band}
        holds = self.low <= image_rate <= self.high and min(images_in_band, neurons_in_band) >= self.min_share
        finding = Finding(
            "moderately sparse: about half the neurons active per image, each neuron active on about half the images",
            bool(holds),
            f"{100 * image_rate:.1f}% of neurons active on the mean image; {100 * images_in_band:.0f}% of images "
            f"and {100 * neurons_in_band:.0f}% of neurons have a rate in the band {100 * self.low:.0f}-"
            f"{100 * self.high:.0f}% (needed: {100 * self.min_share:.0f}% each); {report['dead_neurons']} never active",
        )
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0), dpi=110)
        axes[0].hist(per_image, bins=40, range=(0, 1), color="#4477aa")
        axes[0].set(xlabel="share of neurons active on an image", ylabel="images")
        axes[1].hist(per_neuron, bins=40, range=(0, 1), color="#cc6677")
        axes[1].set(xlabel="share of images a neuron is active on", ylabel="neurons")
        for ax in axes:
            ax.axvline(0.5, color="k", lw=0.8, ls="--")
        fig.suptitle(tex_safe(f"{run.label}: activity of {run.neurons} feature neurons"), fontsize=9)
        fig.tight_layout()
        for ax in axes:
            ax.axvspan(self.low, self.high, color="0.9", zorder=0)
        return AnalysisResult(summary, {"histograms": fig}, [finding])
