"""What a run is called: its preset and every component chosen on top of it.

A sweep over losses on one preset (``+method=deepid2 loss=normface,arcface``) must give job
folders, console lines, records and leaderboard rows that can be told apart, so the label is
the preset's name followed by the component groups set on the command line:
``deepid2[loss=normface]``. Settings of a component (``loss.margin=0.3``) are not part of the
label; the leaderboard's settings column shows them.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from facebench.config import split_override

#: The groups a method preset pins; choosing another one changes what the method is.
COMPONENT_GROUPS = ("backbone", "loss", "verifier")


def method_label(method: str, overrides: Sequence[str], label: Optional[str] = None) -> str:
    """``method`` with the component groups ``overrides`` choose, in command-line order; or
    ``label`` when the run was given one (a study names each of its entries)."""
    if label:
        return str(label)
    chosen = []
    for override in overrides:
        key, value = split_override(override)
        if "=" in str(override) and key in COMPONENT_GROUPS:
            chosen.append(f"{key}={value}")
    return f"{method}[{','.join(chosen)}]" if chosen else str(method)


def run_label(cfg: Any) -> str:
    """The label of the run ``cfg`` describes: from Hydra's record of the overrides inside a
    Hydra app, from the composed config's ``hydra`` node otherwise (the compose API)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        overrides: Sequence[str] = list(HydraConfig.get().overrides.task)
    elif "hydra" in cfg:
        overrides = list(cfg.hydra.overrides.task)
    else:
        overrides = []
    return method_label(cfg.method, overrides, cfg.get("label"))
