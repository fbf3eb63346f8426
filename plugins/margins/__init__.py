"""Softmax variants that shape the feature with a margin or a pull to class centres.

- CosFace (Wang et al., CVPR 2018, "large margin cosine loss"): logits ``s * cos(theta_j)``
  on L2-normalised features and class weights, the target's reduced to ``s * (cos(theta_y) - m)``.
- NormFace (Wang et al., ACM MM 2017, "normalised softmax"): CosFace's logits with m = 0.
- ArcFace (Deng et al., CVPR 2019, "additive angular margin"): the target logit becomes
  ``s * cos(theta_y + m)``.
- Center loss (Wen et al., ECCV 2016): softmax plus ``lambda / 2 * ||f - c_y||^2``, the class
  centres ``c`` moved by the paper's own update rule (its Eq. 4, rate ``alpha``).

All four put their classifier in the loss, so it is thrown away at test time and the
verifier sees the backbone feature, as for DeepID's softmax.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facebench.validation import one_of, ranged
from facebench.components import FEATURE, BuildContext, Loss, LossOutput
from facebench.config import ConfigError
from facebench.hookspecs import hookimpl

#: cos(theta) is kept this far inside [-1, 1] before sqrt(1 - cos^2): the derivative of the
#: square root is infinite at 0, so an exact +-1 would turn the gradient into inf/NaN.
COS_EPS = 1e-6
ARC_FALLBACKS = ("threshold", "easy", "none")


class CosineHead(nn.Module):
    """cos(theta_j) between the L2-normalised feature and each class's L2-normalised weight."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, feature_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return F.normalize(feature.float(), dim=1) @ F.normalize(self.weight, dim=1).T


def cosface_logits(cos: torch.Tensor, labels: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """``s * cos``, with ``s * (cos_y - m)`` at each row's target class."""
    target = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
    return s * (cos - m * target)


def check_fallback(fallback: str) -> None:
    if fallback not in ARC_FALLBACKS:
        raise ConfigError(f"loss.fallback={fallback!r}: use one of {', '.join(ARC_FALLBACKS)}")


def arcface_target(cos_y: torch.Tensor, m: float, fallback: str = "threshold") -> torch.Tensor:
    """cos(theta_y + m) from cos(theta_y), with the reference implementation's guard.

    ``cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m)`` with ``sin(theta)`` from the
    clamped cosine, so the gradient stays finite at cos = +-1 and flows to the feature and the
    class weight through ``cos_y`` alone. ``theta + m`` past pi would make the target logit
    *grow* with the angle; ``fallback`` says what replaces it where ``theta > pi - m``:

    - ``threshold`` (insightface's ``easy_margin = False``, the default there and here):
      ``cos(theta) - m * sin(m)``, a CosFace-like margin that keeps the logit decreasing;
    - ``easy`` (insightface's ``easy_margin = True``): the margin only where cos(theta) > 0,
      plain ``cos(theta)`` elsewhere;
    - ``none``: ``cos(theta + m)`` everywhere, as the paper's formula reads.
    """
    check_fallback(fallback)
    c = cos_y.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS)
    sin = torch.sqrt(1.0 - c * c)
    phi = c * math.cos(m) - sin * math.sin(m)
    if fallback == "threshold":
        return torch.where(c > math.cos(math.pi - m), phi, c - m * math.sin(m))
    if fallback == "easy":
        return torch.where(c > 0, phi, c)
    return phi


def arcface_logits(cos: torch.Tensor, labels: torch.Tensor, s: float, m: float, fallback: str = "threshold") -> torch.Tensor:
    """``s * cos``, with ``s * cos(theta_y + m)`` (see :func:`arcface_target`) at each target."""
    target = F.one_hot(labels, cos.shape[1]).bool()
    cos_y = cos.gather(1, labels[:, None])
    return s * torch.where(target, arcface_target(cos_y, m, fallback), cos)


class MarginSoftmaxLoss(Loss):
    """Cross-entropy over margin-adjusted cosine logits; ``logits(cos, labels)`` applies the margin.

    Train accuracy is measured on the plain cosines (no margin), as the verifier would rank.
    """

    batch = "plain"

    def __init__(self, feature_dim: int, num_classes: int, logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.head = CosineHead(feature_dim, num_classes)
        self.logits = logits

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:
        cos = self.head(outputs[FEATURE])
        ce = F.cross_entropy(self.logits(cos, labels), labels)
        with torch.no_grad():
            metrics = {
                "train_accuracy": (cos.argmax(1) == labels).float().mean().item(),
                "cos_target": cos.gather(1, labels[:, None]).mean().item(),
            }
        return LossOutput({"identification": ce}, metrics)


@dataclass
class CosFaceConfig:
    """CosFace, large margin cosine loss (Wang et al. 2018).

    scale: s, the radius of the normalised logits; 64 as in the CosFace paper's experiments.
    margin: m, subtracted from the target cosine; 0.35 as in the CosFace paper.
    """

    name: str = "cosface"
    scale: float = ranged(64.0, gt=0)
    margin: float = ranged(0.35, ge=0)


@dataclass
class NormFaceConfig:
    """NormFace, normalised softmax (Wang, Xiang, Cheng, Yuille 2017): CosFace's logits with no
    margin, ``s * cos(theta_j)``.

    scale: s. The paper shows that normalised logits need a large enough s for the loss to go
      down and fixes it (or learns it) per setting; it gives no one value for every net, so the
      default is 30, the scale of this project's margin presets, and a study tunes it.
    """

    name: str = "normface"
    scale: float = ranged(30.0, gt=0)


@dataclass
class ArcFaceConfig:
    """ArcFace, additive angular margin loss (Deng et al. 2019).

    scale: s; 64 as in the ArcFace paper. margin: m in radians; 0.5 as in the ArcFace paper.
    fallback: what replaces cos(theta + m) where theta + m would pass pi — threshold (default,
      the reference insightface implementation's easy_margin=False), easy (easy_margin=True)
      or none (the bare formula); see ``arcface_target``.
    """

    name: str = "arcface"
    scale: float = ranged(64.0, gt=0)
    margin: float = ranged(0.5, ge=0, lt=3.1416)
    fallback: str = one_of("threshold", *ARC_FALLBACKS)


@dataclass
class CenterLossConfig:
    """Center loss (Wen, Zhang, Li, Qiao 2016): softmax + lambda/2 * ||f - c_y||^2.

    weight: lambda; 0.003 as in the paper's face experiments. Both terms are averaged over the
      batch (the paper sums both), which keeps their ratio.
    alpha: the centres' own rate in the paper's update rule (Eq. 4); 0.5 as in the paper.
      The centres are buffers, not parameters: the optimiser (its momentum, weight decay and
      schedule) never touches them, and they are saved in checkpoints.
    """

    name: str = "center"
    weight: float = ranged(0.003, ge=0)
    alpha: float = ranged(0.5, gt=0, le=1)


class CenterLoss(Loss):
    """Softmax head (an ordinary linear layer, as in the paper) plus the pull to class centres.

    Wen et al.'s Eq. 4, per step: ``delta_c_j = sum_{i: y_i = j} (c_j - f_i) / (1 + n_j)`` and
    ``c_j <- c_j - alpha * delta_c_j``, with ``n_j`` the batch's images of class j; computed after
    the loss, from the features this step saw (detached), in training mode only.
    """

    batch = "plain"

    def __init__(self, feature_dim: int, num_classes: int, weight: float, alpha: float) -> None:
        super().__init__()
        self.head = nn.Linear(feature_dim, num_classes)
        self.weight = weight
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_classes, feature_dim))

    @torch.no_grad()
    def update_centers(self, feature: torch.Tensor, labels: torch.Tensor) -> None:
        """One application of the paper's Eq. 4 to the classes present in the batch."""
        diff = torch.zeros_like(self.centers).index_add_(0, labels, self.centers[labels] - feature.float())
        count = torch.zeros(len(self.centers), device=labels.device).index_add_(0, labels, torch.ones_like(labels, dtype=torch.float))
        self.centers -= self.alpha * diff / (1.0 + count)[:, None]

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:
        feature = outputs[FEATURE]
        logits = self.head(feature)
        ce = F.cross_entropy(logits, labels)
        sq = (feature.float() - self.centers[labels]).pow(2).sum(1)
        center = 0.5 * self.weight * sq.mean()
        metrics = {
            "train_accuracy": (logits.argmax(1) == labels).float().mean().item(),
            "center_distance": sq.detach().sqrt().mean().item(),
        }
        if self.training:
            self.update_centers(feature.detach(), labels)
        return LossOutput({"identification": ce, "center": center}, metrics)


def build_cosface(cfg: CosFaceConfig, ctx: BuildContext) -> MarginSoftmaxLoss:
    return MarginSoftmaxLoss(ctx.feature_dim, ctx.num_classes, partial(cosface_logits, s=cfg.scale, m=cfg.margin))


def build_normface(cfg: NormFaceConfig, ctx: BuildContext) -> MarginSoftmaxLoss:
    return MarginSoftmaxLoss(ctx.feature_dim, ctx.num_classes, partial(cosface_logits, s=cfg.scale, m=0.0))


def build_arcface(cfg: ArcFaceConfig, ctx: BuildContext) -> MarginSoftmaxLoss:
    check_fallback(cfg.fallback)
    logits = partial(arcface_logits, s=cfg.scale, m=cfg.margin, fallback=cfg.fallback)
    return MarginSoftmaxLoss(ctx.feature_dim, ctx.num_classes, logits)


def build_center(cfg: CenterLossConfig, ctx: BuildContext) -> CenterLoss:
    return CenterLoss(ctx.feature_dim, ctx.num_classes, cfg.weight, cfg.alpha)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add_presets(f"{__name__}.presets")
    registry.add("loss", "normface", build_normface, NormFaceConfig, search_space={"scale": "interval(8, 64)"})
    registry.add("loss", "cosface", build_cosface, CosFaceConfig,
                 search_space={"margin": "interval(0.1, 0.5)", "scale": "interval(16, 64)"})
    registry.add("loss", "arcface", build_arcface, ArcFaceConfig,
                 search_space={"margin": "interval(0.1, 0.6)", "scale": "interval(16, 64)"})
    registry.add("loss", "center", build_center, CenterLossConfig,
                 search_space={"weight": "tag(log, interval(0.0003, 0.1))"})
