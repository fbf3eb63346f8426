"""Core components shipped with facebench, registered like any plugin: the cosine and L2
verifiers, the LFW and synthetic protocols and data sources, and the null tracker."""
from __future__ import annotations

from dataclasses import dataclass

from facebench.components import BuildContext
from facebench.data.sources import LfwDataConfig, LfwTrainingFolds, SyntheticData, SyntheticDataConfig
from facebench.hookspecs import hookimpl
from facebench.protocols.lfw import LfwProtocol, LfwProtocolConfig
from facebench.protocols.synthetic import SyntheticProtocol, SyntheticProtocolConfig
from facebench.components import Tracker
from facebench.verifiers import CosineVerifier, L2Verifier, VerifierConfig


@dataclass
class L2VerifierConfig(VerifierConfig):
    name: str = "l2"


@dataclass
class LfwView1Config(LfwProtocolConfig):
    """LFW View 1 (development): fit on pairsDevTrain/peopleDevTrain, test on pairsDevTest.
    The protocol for model selection and tuning; View 2 is for final reporting only."""

    name: str = "lfw_view1"


@dataclass
class NoTrackerConfig:
    name: str = "none"


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("verifier", "cosine", lambda c, ctx: CosineVerifier(c.pca_dim, c.pca_whiten), VerifierConfig)
    registry.add("verifier", "l2", lambda c, ctx: L2Verifier(c.pca_dim, c.pca_whiten), L2VerifierConfig)
    registry.add("protocol", "synthetic", lambda c, ctx: SyntheticProtocol(c), SyntheticProtocolConfig)
    registry.add("protocol", "lfw_view2", lambda c, ctx: LfwProtocol(c, view=2), LfwProtocolConfig)
    registry.add("protocol", "lfw_view1", lambda c, ctx: LfwProtocol(c, view=1), LfwView1Config)
    registry.add("dataset", "synthetic", lambda c, ctx: SyntheticData(c), SyntheticDataConfig)
    registry.add("dataset", "lfw", lambda c, ctx: LfwTrainingFolds(c), LfwDataConfig, default_protocol="lfw_view2")
    registry.add("tracker", "none", lambda c, ctx: Tracker(), NoTrackerConfig)
