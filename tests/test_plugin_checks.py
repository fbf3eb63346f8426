"""Every built-in component passes the checks third parties run (facebench.testing), and the
checks catch what they promise to catch."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from facebench.components import LossOutput
from facebench.registry import get_registry
from facebench.testing import check_backbone, check_loss, check_verifier

REGISTRY = get_registry()
#: Settings a component needs to run outside a whole experiment (none for most).
LOSS_SETTINGS: dict[str, dict[str, Any]] = {
    "deepid2plus": {"backbone": "deepid2plus"},  # supervises the backbone's stage outputs
    "vggface": {"backbone": "vggface"},  # needs the wrapper's logits and base feature
}
VERIFIER_SETTINGS: dict[str, dict[str, Any]] = {
    "deepid2_ensemble": {"pca_dim": 8, "block_dim": 3, "select": 2, "sets": 2, "pairs": 200},  # 24-d = 4 patches
}


@pytest.mark.parametrize("name", REGISTRY.names("backbone"))
def test_every_backbone_passes(name: str) -> None:
    check_backbone(name)


@pytest.mark.parametrize("name", REGISTRY.names("loss"))
def test_every_loss_passes(name: str) -> None:
    check_loss(name, **LOSS_SETTINGS.get(name, {}))


@pytest.mark.parametrize("name", REGISTRY.names("verifier"))
def test_every_verifier_passes(name: str) -> None:
    check_verifier(name, VERIFIER_SETTINGS.get(name))


def test_a_loss_that_breaks_the_contract_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    softmax = REGISTRY.get("loss", "softmax")
    real = softmax.factory

    def detached(cfg: Any, ctx: Any) -> Any:
        loss = real(cfg, ctx)
        forward = loss.forward

        def wrapped(outputs: dict, labels: torch.Tensor) -> LossOutput:
            out = forward(outputs, labels)
            return LossOutput({k: v.detach() * 0 + v.detach() for k, v in out.terms.items()}, out.metrics)

        loss.forward = wrapped
        return loss

    monkeypatch.setattr(softmax, "factory", detached)
    with pytest.raises(AssertionError, match="the terms carry no gradient"):
        check_loss("softmax")


def test_a_backbone_with_the_wrong_feature_size_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = REGISTRY.get("backbone", "pixels")
    real = pixels.factory

    def lying(cfg: Any, ctx: Any) -> Any:
        net = real(cfg, ctx)
        net.feature_dim += 1
        return net

    monkeypatch.setattr(pixels, "factory", lying)
    with pytest.raises(AssertionError, match="feature shape"):
        check_backbone("pixels")
