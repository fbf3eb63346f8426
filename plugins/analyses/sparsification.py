"""Sparsification (DeepID2+, Sec. 5): a trained net pruned to 1/8 of its top layers' connections
and re-trained keeps its accuracy (99.3% against 98.95% dense), while the same sparse structure
trained from scratch does worse (98.33%). Three nets per unit: the dense one the run trained,
the pruned one re-trained, and the pruned structure trained from scratch (plus the pruned net
before re-training, which costs nothing to score).

Pruning is torch's (``torch.nn.utils.prune``): a fixed mask multiplies the weight, so pruned
connections stay at zero while the rest re-train. ``criterion=magnitude`` keeps each layer's
largest weights; ``criterion=selectivity`` weighs each connection into a feature neuron by how
well that neuron separates the unit's training people (its Fisher ratio: variance of the people's
mean activations over the mean within-person variance), so connections of selective neurons are
kept first; layers that do not produce the feature are pruned by magnitude under both.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from facebench.components import Analysis, AnalysisResult, BuildContext, Finding
from facebench.train import read_checkpoint, train
from facebench.plots import pyplot, tex_safe

log = logging.getLogger("facebench.analysis")

CRITERIA = ("magnitude", "selectivity")


@dataclass
class SparsificationConfig:
    """density: share of each pruned layer's connections kept (the paper: 1/8).
    criterion: magnitude | selectivity (see the module's docstring).
    layers: module names to prune (null: the backbone's ``top_layers``; the DeepID family's are
    the locally connected conv4 and the feature layer).
    steps: training steps of the re-training and of the from-scratch training (null: the run's
    trainer.steps). max_units: how many of the run's units to prune (each costs two trainings).
    max_loss: how many points the re-trained sparse net may lose against the dense one for the
    finding to hold (the paper's sparse net gained 0.35)."""

    name: str = "sparsification"
    density: float = 0.125
    criterion: str = "magnitude"
    layers: Optional[list[str]] = None
    steps: Optional[int] = None
    max_units: int = 1
    max_loss: float = 1.0


def fisher_ratio(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per column: variance of the per-person means over the mean within-person variance."""
    people = np.unique(labels)
    means = np.stack([features[labels == p].mean(axis=0) for p in people])
    within = np.stack([features[labels == p].var(axis=0) for p in people]).mean(axis=0)
    return means.var(axis=0) / (within + 1e-8)


def keep_mask(importance: torch.Tensor, density: float) -> torch.Tensor:
    """1 for the ``density`` share of entries with the largest importance, 0 elsewhere."""
    keep = max(1, int(round(density * importance.numel())))
    flat = importance.flatten()
    mask = torch.zeros_like(flat)
    mask[torch.topk(flat, keep, sorted=False).indices] = 1.0
    return mask.view_as(importance)


def prune_layers(backbone: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    modules = dict(backbone.named_modules())
    for name, mask in masks.items():
        prune.custom_from_mask(modules[name], "weight", mask)


class SparsificationAnalysis(Analysis):
    def __init__(self, cfg: SparsificationConfig) -> None:
        if not 0 < cfg.density <= 1:
            raise ValueError(f"density={cfg.density}: give a share in (0, 1]")
        if cfg.criterion not in CRITERIA:
            raise ValueError(f"criterion={cfg.criterion!r}: use one of {', '.join(CRITERIA)}")
        if cfg.max_units < 1:
            raise ValueError(f"max_units={cfg.max_units}: give at least 1")
        self.cfg = cfg

    def _layers(self, backbone: nn.Module) -> list[str]:
        names = list(self.cfg.layers) if self.cfg.layers is not None else list(getattr(backbone, "top_layers", ()))
        modules = dict(backbone.named_modules())
        if not names:
            raise ValueError(f"{type(backbone).__name__} declares no top_layers; name the layers to prune with layers=[...]")
        bad = [n for n in names if not isinstance(getattr(modules.get(n), "weight", None), torch.Tensor)]
        if bad:
            raise ValueError(f"layers={bad}: not modules with a weight; this backbone has "
                             + ", ".join(n for n, m in modules.items() if isinstance(getattr(m, "weight", None), nn.Parameter)))
        return names

    def masks(self, run, model) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
        modules = dict(model.backbone.named_modules())
        masks = {}
        for name in self._layers(model.backbone):
            weight = modules[name].weight.detach()
            importance = weight.abs()
            if self.cfg.criterion == "selectivity" and getattr(modules[name], "out_features", None) == run.neurons:
                index = run.bench.image_index_of(model.training.faces.names)
                ratio = fisher_ratio(run.per_image(model.features[index]), run.bench.faces.labels[index])
                importance = importance * torch.from_numpy(ratio).to(importance)[:, None]
            masks[name] = keep_mask(importance, self.cfg.density)
        return masks

    def _train(self, run, model, backbone: nn.Module, loss_state: Optional[dict[str, Any]], tag: str) -> nn.Module:  # type: ignore[no-untyped-def]
        faces = model.training.faces
        ctx = BuildContext(num_classes=len(faces.names), feature_dim=backbone.feature_dim, device=str(run.plan.device),
                           seed=int(run.cfg.seed), input_shape=run.plan.shape)
        loss = run.plan.registry.build("loss", run.cfg.loss, ctx)
        if loss_state is not None:
            loss.load_state_dict(loss_state)
        trainer = run.retrain_config(self.cfg.steps)
        trainer.resume = True
        folder = run.checkpoint_dir / "sparsification" / f"{self.cfg.criterion}-{self.cfg.density:g}-{trainer.steps}"
        train(backbone, loss, faces, trainer, run.plan.device, int(run.cfg.seed), checkpoint=folder / f"{model.name}-{tag}.pt",
              label=f"{run.label}/{model.name}/sparse-{tag}")
        return backbone

    def analyse(self, run) -> AnalysisResult:  # type: ignore[no-untyped-def]
        if not run.trainable:
            raise ValueError(f"{run.label}: its backbone learns nothing; there is no trained net to sparsify")
        models = run.units[: self.cfg.max_units]
        nets: dict[str, dict[str, np.ndarray]] = {k: {} for k in ("dense", "pruned", "retrained", "scratch")}
        densities = {}
        for model in models:
            masks = self.masks(run, model)
            densities[model.name] = {k: float(m.mean()) for k, m in masks.items()}
            nets["dense"][model.name] = model.features
            pruned, _ = run.trained_backbone(model.unit)
            prune_layers(pruned, masks)
            nets["pruned"][model.name] = run.extract(pruned, run.bench.faces.images)
            log.info("%s: %s re-training the pruned net", run.label, model.name)
            loss_state = read_checkpoint(model.checkpoint)["loss"] if model.checkpoint else None
            nets["retrained"][model.name] = run.extract(self._train(run, model, pruned, loss_state, "retrained"),
                                                        run.bench.faces.images)
            log.info("%s: %s training the pruned structure from scratch", run.label, model.name)
            scratch = run.build_backbone()
            prune_layers(scratch, masks)
            nets["scratch"][model.name] = run.extract(self._train(run, model, scratch, None, "scratch"),
                                                      run.bench.faces.images)
        scored = {k: run.evaluate(v) for k, v in nets.items()}
        acc = {k: v["mean_accuracy"] for k, v in scored.items()}
        loss_points = 100 * (acc["dense"] - acc["retrained"])
        finding = Finding(
            f"a net sparsified to {self.cfg.density:g} of its top layers keeps its accuracy after re-training, and the same "
            "structure trained from scratch does worse (paper: 99.3% sparse, 98.95% dense, 98.33% from scratch)",
            loss_points <= self.cfg.max_loss and acc["retrained"] > acc["scratch"],
            ", ".join(f"{k} {100 * v:.2f}%" for k, v in acc.items()) + f" over {len(models)} unit(s)",
        )
        summary = {"density": self.cfg.density, "criterion": self.cfg.criterion,
                   "steps": int(run.retrain_config(self.cfg.steps).steps), "units": [m.name for m in models],
                   "kept_share": densities,
                   **{k: {"mean_accuracy": v["mean_accuracy"], "fold_accuracies": v["fold_accuracies"]}
                      for k, v in scored.items()}}
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.0, 2.6), dpi=110)
        ax.bar(range(len(acc)), [100 * v for v in acc.values()], color=["#4477aa", "#bbbbbb", "#228833", "#cc6677"])
        ax.set_xticks(range(len(acc)), list(acc))
        ax.set_ylim(max(0, 100 * min(acc.values()) - 5), 100)
        ax.set_ylabel("mean accuracy (%)")
        ax.set_title(tex_safe(f"{run.label}: {self.cfg.density:g} of the top layers kept ({self.cfg.criterion})"), fontsize=9)
        fig.tight_layout()
        return AnalysisResult(summary, {"accuracy": fig}, [finding])

