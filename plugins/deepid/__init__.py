"""DeepID (Sun, Wang, Tang, CVPR 2014): the DeepID ConvNet trained by identification alone.

The paper's nets take 39x31 (rectangular) or 31x31 patches; the preset uses one 39x31
full-face patch, RGB. The same class with 55x47 input is DeepID2's net (plugins/deepid2).
"""
from __future__ import annotations

from dataclasses import dataclass

from facebench.components import BuildContext
from facebench.hookspecs import hookimpl
from facebench_plugins.deepid_net import DeepIDNet, DeepIDNetConfig


@dataclass
class DeepIDConfig(DeepIDNetConfig):
    """DeepID's ConvNet: as DeepID2's but on a 39x31 patch (the paper's rectangular patch size)."""

    name: str = "deepid"
    height: int = 39
    width: int = 31


def build_deepid_net(cfg: DeepIDNetConfig, ctx: BuildContext) -> DeepIDNet:
    return DeepIDNet(cfg)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add_presets(f"{__name__}.presets")
    registry.add("backbone", "deepid", build_deepid_net, DeepIDConfig)
