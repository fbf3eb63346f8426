"""DeepID2 (Sun, Chen, Wang, Tang, NIPS 2014), the reference method.

Registers: backbone ``deepid2`` (the DeepID-family ConvNet at DeepID2's sizes: 55 x 47 RGB,
20/40/60/80 maps, conv3 locally shared in 2 x 2 blocks, 160-d), backbone ``deepid2_ensemble``
(one ConvNet per face patch), loss ``deepid2`` (joint identification-verification), verifier
``joint_bayesian`` and verifier ``deepid2_ensemble`` (patch selection, PCA + Joint Bayesian,
SVM fusion). Presets: presets/method/deepid2*.yaml (each documents itself in its comments).
Speed workloads: bench/ (training, ensemble, Joint Bayesian, protocols, end to end).
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
    registry.add_presets(f"{__name__}.presets")
    registry.add("backbone", "deepid2", build_deepid2_net, DeepIDNetConfig)
    registry.add("backbone", "deepid2_ensemble", build_ensemble, DeepID2EnsembleConfig)
    registry.add("loss", "deepid2", build_deepid2_loss, DeepID2LossConfig,
                 search_space={"lambda_": "tag(log, interval(0.003, 1.0))"})
    registry.add("verifier", "joint_bayesian", build_joint_bayesian, JointBayesianConfig)
    registry.add("verifier", "deepid2_ensemble", build_ensemble_verifier, EnsembleVerifierConfig)
    bench = f"{__name__}.bench"
    registry.add_workload("train", f"{bench}.training", "DeepID2 training via facebench.train vs a minimal loop")
    registry.add_workload("layout", f"{bench}.layout", "the study net's training step channels-last vs NCHW")
    registry.add_workload("ensemble", f"{bench}.ensemble", "batched 8-net DeepID2 ensemble vs the nets one by one")
    registry.add_workload("jb_fit", f"{bench}.joint_bayesian", "Joint Bayesian EM fit vs the per-person loop")
    registry.add_workload("blufr", f"{bench}.blufr", "BLUFR trial scoring (VR@0.1%, DIR@1%) with Joint Bayesian")
    registry.add_workload("lfw_view2", f"{bench}.lfw_view2", "LFW View 2 from cached features vs a grid search")
    registry.add_workload("study_job", f"{bench}.study_job",
                          "one loss-study job vs a bare script; feature extraction vs training throughput")
    registry.add_workload("study_workers", f"{bench}.study_workers",
                          "two study jobs side by side on half the cores each vs one after another")
    registry.add_workload("e2e", f"{bench}.end_to_end", "python -m facebench +method=deepid2: wall time, peak memory")
