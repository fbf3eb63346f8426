"""DeepID2's joint identification-verification signal (Sun, Chen, Wang, Tang, NIPS 2014).

The gradient on the ConvNet is d Ident + lambda * d Verif (the paper's Eq. 5 update), so the
loss here is ``id_weight * cross-entropy + lambda_ * verification``:

- identification: cross-entropy of an n-way softmax head on the DeepID2 feature f (mean over
  the batch's images);
- verification: one of the forms of :mod:`.verification` on pairs of the batch (mean over the
  pairs ``facebench.mining.batch_pairs`` draws), with the margin of :mod:`.margin` for the L1/L2 forms.

lambda_ = 0.05 is the paper's choice. The paper's sweep runs from 0 (identification only, =
DeepID) to infinity (verification only); ``lambda_ = inf`` is that limit and means exactly
``id_weight = 0, lambda_ = 1`` (either spelling gives the same loss), so one key sweeps the
whole curve: ``loss.lambda_=0,0.005,0.05,0.5,inf``.

Ensembles: with ``net_dim`` set, the feature is read as R = feature_dim / net_dim consecutive
blocks, one per ConvNet (plugins/deepid2/ensemble.py concatenates its nets' features so). Each
block gets its own softmax head, its own verification parameters and its own margin, and the
terms are summed over nets: the nets share no parameter, so each is trained by exactly its own
signal, as the paper's separately trained ConvNets are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from facebench.mining import PAIRINGS, batch_pairs, pair_distance
from facebench.validation import one_of
from facebench.components import FEATURE, BuildContext, Loss, LossOutput
from facebench.config import ConfigError
from facebench_plugins.deepid2.margin import Margin
from facebench_plugins.deepid2.verification import FORMS, cosine_terms, margin_terms


@dataclass
class MarginConfig:
    """The verification margin m of the L1/L2 forms (see plugins/deepid2/margin.py).

    mode: adaptive (the paper's: fixed between resets, reset every ``every`` pairs to the
      threshold minimising the verification error of those pairs) | fixed | learned (an
      nn.Parameter; collapses toward 0, the paper's reason for not learning it).
    initial: starting m; None = the exact best threshold of the first batch's pairs (the paper
      gives no value; this puts m on the untrained features' scale).
    every: N, pairs between resets: 200,000 in the paper.
    """

    mode: str = "adaptive"
    initial: Optional[float] = None
    every: int = 200_000


@dataclass
class JointSignalConfig:
    """DeepID2's joint identification-verification signal (shared by DeepID2 and DeepID2+).

    lambda_: weight of the verification signal (paper: 0.05; 0 = identification only, i.e.
      DeepID; inf = verification only).
    id_weight: weight of the identification signal (1; 0 with lambda_ 1 = verification only).
    verification: l2 (the paper's best) | l1 | cosine.
    pairs: balanced (every same pair of the P x K batch + as many random different pairs) | all
      (facebench.mining's pairings). The paper samples pairs of training images at random, and
      in such a stream almost all are different-identity pairs; ``balanced`` keeps the signal,
      the train pair accuracy and the margin's threshold window on a half-same sample, ``all``
      is closer to the paper's random pairs (its threshold then dominated by different pairs).
    margin: see MarginConfig.
    cosine_scale, cosine_bias: initial w and b of the cosine form (the paper gives none; w 10,
      b -5 map the [0, 1] cosines of ReLU features onto logits -5..5).
    """

    lambda_: float = 0.05
    id_weight: float = 1.0
    verification: str = "l2"
    pairs: str = one_of("balanced", *PAIRINGS)
    margin: MarginConfig = field(default_factory=MarginConfig)
    cosine_scale: float = 10.0
    cosine_bias: float = -5.0


@dataclass
class DeepID2LossConfig(JointSignalConfig):
    """DeepID2 joint signal (fields: see JointSignalConfig).

    net_dim: None for one net; an ensemble's per-net feature size (its feature is then R blocks,
      each with its own signals).
    """

    name: str = "deepid2"
    net_dim: Optional[int] = None


def signal_weights(lambda_: float, id_weight: float) -> tuple[float, float]:
    """(identification, verification) weights; lambda_ = inf is the verification-only limit."""
    if lambda_ < 0 or id_weight < 0 or math.isnan(lambda_):
        raise ConfigError(f"loss.lambda_={lambda_}, loss.id_weight={id_weight}: weights must be >= 0")
    if math.isinf(lambda_):
        return 0.0, 1.0
    if lambda_ == 0 and id_weight == 0:
        raise ConfigError("loss.lambda_=0 with loss.id_weight=0 leaves no signal to train on")
    return id_weight, lambda_


class DeepID2Loss(Loss):
    """Identification + lambda * verification on R nets' features (R = 1 for one ConvNet)."""

    batch = "pk"

    def __init__(self, feature_dim: int, num_classes: int, cfg: DeepID2LossConfig) -> None:
        super().__init__()
        if cfg.verification not in FORMS:
            raise ConfigError(f"loss.verification={cfg.verification!r}: use one of {', '.join(FORMS)}")
        if cfg.pairs not in PAIRINGS:
            raise ConfigError(f"loss.pairs={cfg.pairs!r}: use one of {', '.join(PAIRINGS)}")
        net_dim = cfg.net_dim or feature_dim
        if net_dim <= 0 or feature_dim % net_dim:
            raise ConfigError(
                f"loss.net_dim={cfg.net_dim}: the backbone's {feature_dim}-d feature is not a whole number of "
                "per-net blocks; set it to the ensemble's per-net feature size (backbone.feature_dim)"
            )
        self.nets, self.net_dim = feature_dim // net_dim, net_dim
        self.id_weight, self.ver_weight = signal_weights(cfg.lambda_, cfg.id_weight)
        self.form = cfg.verification
        self.pairing = cfg.pairs
        if self.id_weight > 0:
            bound = 1.0 / math.sqrt(net_dim)  # nn.Linear's initialisation, per net
            self.head_weight = nn.Parameter(torch.empty(self.nets, num_classes, net_dim).uniform_(-bound, bound))
            self.head_bias = nn.Parameter(torch.empty(self.nets, num_classes).uniform_(-bound, bound))
        if self.form == "cosine":
            self.cosine_scale = nn.Parameter(torch.full((self.nets,), float(cfg.cosine_scale)))
            self.cosine_bias = nn.Parameter(torch.full((self.nets,), float(cfg.cosine_bias)))
        else:
            self.margin = Margin(self.nets, cfg.margin.mode, cfg.margin.initial, cfg.margin.every)

    def split(self, feature: torch.Tensor) -> torch.Tensor:
        """(N, R * D) feature -> (R, N, D), one row per net."""
        return feature.float().view(len(feature), self.nets, self.net_dim).transpose(0, 1)

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> LossOutput:
        f = self.split(outputs[FEATURE])
        terms: dict[str, torch.Tensor] = {}
        metrics: dict[str, float] = {}
        if self.id_weight > 0:
            logits = torch.baddbmm(self.head_bias[:, None, :], f, self.head_weight.transpose(1, 2))
            ce = F.cross_entropy(logits.flatten(0, 1), labels.repeat(self.nets), reduction="none")
            terms["identification"] = self.id_weight * ce.view(self.nets, -1).mean(1).sum()
            metrics["train_id_accuracy"] = (logits.argmax(-1) == labels).float().mean().item()
        i, j, same = batch_pairs(labels, self.pairing)
        if len(same) == 0:
            raise ConfigError("DeepID2 verification needs at least two images per batch (trainer.pk_identities x pk_images)")
        fi, fj = f[:, i], f[:, j]
        if self.form == "cosine":
            per_pair, p_same = cosine_terms(fi, fj, same, self.cosine_scale, self.cosine_bias)
            called_same = p_same > 0.5
        else:
            d = pair_distance(fi, fj, self.form)
            if self.training:
                self.margin.observe(d, same)
            m = self.margin.value
            per_pair = margin_terms(d, same, m)
            called_same = d < m.detach()[:, None]
            metrics["margin"] = m.detach().mean().item()
        if self.ver_weight > 0:
            terms["verification"] = self.ver_weight * per_pair.mean(1).sum()
        metrics["train_pair_accuracy"] = (called_same == same).float().mean().item()
        return LossOutput(terms, metrics)


def build_deepid2_loss(cfg: DeepID2LossConfig, ctx: BuildContext) -> DeepID2Loss:
    return DeepID2Loss(ctx.feature_dim, ctx.num_classes, cfg)
