"""DeepID2 (Sun, Chen, Wang, Tang, NIPS 2014), the reference method.

Registers: backbone ``deepid2`` (the DeepID-family ConvNet at DeepID2's sizes: 55 x 47 RGB,
20/40/60/80 maps, conv3 locally shared in 2 x 2 blocks, 160-d), backbone ``deepid2_ensemble``
(one ConvNet per face patch), loss ``deepid2`` (joint identification-verification), verifier
``joint_bayesian`` and verifier ``deepid2_ensemble`` (patch selection, PCA + Joint Bayesian,
SVM fusion). Presets: conf/method/deepid2*.yaml (each documents itself in its comments).
"""
from __future__ import annotations

from facebench.components import BuildContext
from facebench.hookspecs import hookimpl
from facebench_plugins.deepid_net import DeepIDNet, DeepIDNetConfig
from facebench_plugins.deepid2.ensemble import DeepID2EnsembleConfig, build_ensemble
from facebench_plugins.deepid2.fusion import EnsembleVerifierConfig, PatchEnsembleVerifier
from facebench_plugins.deepid2.joint_bayesian import JointBayesianConfig, JointBayesianVerifier
from facebench_plugins.deepid2.loss import DeepID2LossConfig, build_deepid2_loss


def build_deepid2_net(cfg: DeepIDNetConfig, ctx: BuildContext) -> DeepIDNet:
    return DeepIDNet(cfg)


def build_joint_bayesian(cfg: JointBayesianConfig, ctx: BuildContext) -> JointBayesianVerifier:
    return JointBayesianVerifier(
        pca_dim=cfg.pca_dim, pca_whiten=cfg.pca_whiten, em=cfg.em, max_iter=cfg.max_iter, tol=cfg.tol,
        accelerate=cfg.accelerate, ridge=cfg.ridge,
    )


def build_ensemble_verifier(cfg: EnsembleVerifierConfig, ctx: BuildContext) -> PatchEnsembleVerifier:
    return PatchEnsembleVerifier(cfg)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("backbone", "deepid2", build_deepid2_net, DeepIDNetConfig)
    registry.add("backbone", "deepid2_ensemble", build_ensemble, DeepID2EnsembleConfig)
    registry.add("loss", "deepid2", build_deepid2_loss, DeepID2LossConfig)
    registry.add("verifier", "joint_bayesian", build_joint_bayesian, JointBayesianConfig)
    registry.add("verifier", "deepid2_ensemble", build_ensemble_verifier, EnsembleVerifierConfig)
