"""VGG-Face (Parkhi, Vedaldi, Zisserman, BMVC 2015): softmax pre-training, then a triplet-loss
projection learned on top of the frozen features, in one run.

The paper trains a VGG-16 as an identity classifier, then freezes it and learns a linear
projection of its L2-normalised 4096-d descriptor to 1024 dimensions with a triplet loss; the
projected descriptor is the face representation. Here that is split between two components,
because the test-time feature must be the projection and only a backbone's output reaches
the verifier:

- backbone ``vggface`` is the whole VGG-Face model: any registered backbone (``base``, default
  the DeepID2 net), the identity classifier on its feature and the projection. Its
  outputs: ``base``, the wrapped net's feature; ``logits``, the classifier's; and ``feature`` =
  normalise(W normalise(base)) with ``base`` *detached*, so the projection can never move the
  net under it (the paper's frozen features). The classifier sits in the backbone rather than
  in the loss because its input width is the base's, which a loss cannot know (the build
  context carries the test-time feature's width, the projection's); it is unused at test time.
- loss ``vggface`` switches stage at ``switch_fraction`` of the run: before, cross-entropy on
  ``logits``; from then on, FaceNet's triplet loss on ``feature``. Only the parameters of the
  active stage receive gradients (the optimiser skips parameters without one, so the frozen
  net is not even decayed).

Departures, kept simple: the projected descriptor is L2-normalised too, so FaceNet's margin
(0.2) applies; both stages draw P x K batches (a loss declares one batch kind per run, and the
triplet stage needs them); the base net stays in training mode in stage 2 (nets with batch
norm keep updating its running statistics; DeepID-family nets have none by default).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from facebench.components import FEATURE, Backbone, BuildContext, Loss, LossOutput
from facebench.config import ConfigError
from facebench.hookspecs import hookimpl
from facebench_plugins.facenet import TripletLoss

BASE = "base"
LOGITS = "logits"


@dataclass
class VggFaceBackboneConfig:
    """A backbone with VGG-Face's triplet projection on top.

    base: the registered backbone to wrap; the paper's is VGG-16 (``base: timm`` with
      ``base_config: {model: vgg16}`` comes closest), the default is the DeepID2 net.
    base_config: overrides of the base's own config, checked against its schema when built
      (new keys from the command line need a plus: ``+backbone.base_config.feature_dim=256``).
    proj_dim: the projection's output, the test-time feature; the paper projects 4096 -> 1024,
      here 128 by default, below the base's width as in the paper.
    """

    name: str = "vggface"
    base: str = "deepid2"
    base_config: dict[str, Any] = field(default_factory=dict)
    proj_dim: int = 128


class VggFaceBackbone(Backbone):
    """base net -> (classifier: ``logits``) and (frozen -> projection: ``feature``)."""

    def __init__(self, base: Backbone, num_classes: int, proj_dim: int) -> None:
        super().__init__()
        self.base = base
        self.input_shape = base.input_shape
        self.feature_dim = proj_dim
        # No classifier when built without a training set (the run's shape-only build).
        self.classifier = nn.Linear(base.feature_dim, num_classes) if num_classes else None
        self.projection = nn.Linear(base.feature_dim, proj_dim, bias=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.base(x))
        out[BASE] = out.pop(FEATURE)
        if self.classifier is not None:
            out[LOGITS] = self.classifier(out[BASE])
        frozen = F.normalize(out[BASE].detach().float(), dim=1)
        out[FEATURE] = F.normalize(self.projection(frozen), dim=1)
        return out


def build_vggface_backbone(cfg: VggFaceBackboneConfig, ctx: BuildContext) -> VggFaceBackbone:
    from facebench.registry import get_registry

    if cfg.base == "vggface":
        raise ConfigError("backbone.base=vggface: the wrapper needs another backbone to wrap")
    component = get_registry().get("backbone", cfg.base)
    try:
        base_cfg = OmegaConf.merge(OmegaConf.structured(component.schema), {**cfg.base_config, "name": cfg.base})
    except OmegaConfBaseException as exc:
        raise ConfigError(f"backbone.base_config does not fit backbone {cfg.base!r}: {exc}") from exc
    return VggFaceBackbone(component.factory(base_cfg, ctx), ctx.num_classes, cfg.proj_dim)


@dataclass
class VggFaceLossConfig:
    """VGG-Face's two stages: softmax on the base feature, then the triplet loss on the projection.

    Needs backbone ``vggface`` (its ``logits`` and projected ``feature`` outputs).

    total_steps: the run's optimiser steps (the preset sets ``${trainer.steps}``).
    switch_fraction: the share of total_steps trained by softmax before the switch; the paper
      trains each stage to convergence, 0.5 splits a fixed budget evenly.
    alpha, mining, fallback: the triplet stage, as loss ``triplet`` (FaceNet's alpha 0.2,
      semi-hard mining by default; the paper takes margin-violating negatives).
    """

    name: str = "vggface"
    total_steps: int = 1000
    switch_fraction: float = 0.5
    alpha: float = 0.2
    mining: str = "semihard"
    fallback: str = "easiest"


class VggFaceLoss(Loss):
    """Counts its own training steps (a buffer, so a resumed run switches at the same step)."""

    batch = "pk"

    def __init__(self, switch_step: int, triplet: TripletLoss) -> None:
        super().__init__()
        self.triplet = triplet
        self.switch_step = switch_step
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:
        if LOGITS not in outputs or BASE not in outputs:
            raise ConfigError("loss=vggface needs backbone=vggface (its classifier logits and projected feature)")
        stage = 1 if int(self.step) < self.switch_step else 2
        if self.training:
            self.step += 1
        if stage == 1:
            logits = outputs[LOGITS]
            acc = (logits.argmax(1) == labels).float().mean().item()
            return LossOutput({"identification": F.cross_entropy(logits, labels)}, {"stage": 1.0, "train_accuracy": acc})
        loss, metrics = self.triplet.triplet_terms(outputs[FEATURE].float(), labels)
        return LossOutput({"triplet": loss}, {"stage": 2.0, **metrics})


def build_vggface_loss(cfg: VggFaceLossConfig, ctx: BuildContext) -> VggFaceLoss:
    if not 0.0 <= cfg.switch_fraction <= 1.0:
        raise ConfigError(f"loss.switch_fraction={cfg.switch_fraction}: use a fraction in [0, 1]")
    triplet = TripletLoss(cfg.alpha, cfg.mining, cfg.fallback)
    return VggFaceLoss(round(cfg.switch_fraction * cfg.total_steps), triplet)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add_presets(f"{__name__}.presets")
    registry.add("backbone", "vggface", build_vggface_backbone, VggFaceBackboneConfig)
    registry.add("loss", "vggface", build_vggface_loss, VggFaceLossConfig)
