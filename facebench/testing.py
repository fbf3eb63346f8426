"""Checks a plugin author runs in their own tests: does my component honour facebench's contract?

``check_backbone``, ``check_loss`` and ``check_verifier`` build a registered component from its
typed config, exactly as a run does, and assert what the core relies on: output shapes, the
device outputs land on, finite gradients that reach the inputs and parameters, determinism for
one seed, and a config that survives the YAML round trip a record and a resumed run make. Every
built-in component passes them (tests/test_plugin_checks.py), so a third party's passing means
it can stand beside them::

    from facebench.testing import check_loss
    def test_my_loss():
        check_loss("myloss", {"margin": 0.3})

Each check raises AssertionError with the contract clause that failed.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from facebench.components import FEATURE, BuildContext, LossOutput
from facebench.registry import Registry, get_registry


def built_config(kind: str, name: str, overrides: Optional[dict[str, Any]] = None, registry: Optional[Registry] = None) -> Any:
    """The component's typed config with ``overrides``, after a YAML round trip (as records and
    resumed runs store it); asserts the round trip changes nothing."""
    registry = registry or get_registry()
    schema = registry.get(kind, name).schema
    cfg = OmegaConf.merge(OmegaConf.structured(schema), {**(overrides or {}), "name": name})
    again = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(OmegaConf.to_yaml(cfg)))
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg), f"{kind} {name}: config changes in a YAML round trip"
    return cfg


def _build(kind: str, name: str, overrides: Optional[dict[str, Any]], ctx: BuildContext, seed: int) -> Any:
    registry = get_registry()
    torch.manual_seed(seed)
    return registry.build(kind, built_config(kind, name, overrides, registry), ctx)


def _finite_grads(module: torch.nn.Module, what: str) -> None:
    for pname, param in module.named_parameters():
        if param.requires_grad and param.grad is not None:
            assert torch.isfinite(param.grad).all(), f"{what}: gradient of {pname} is not finite"


def check_backbone(name: str, overrides: Optional[dict[str, Any]] = None, device: str = "cpu", batch: int = 3,
                   seed: int = 0) -> None:
    """Input shape and feature_dim declared; forward gives ``{"feature": (N, feature_dim)}`` on
    ``device``; gradients reach the input and are finite; the same seed builds the same net."""
    ctx = BuildContext(device=device, seed=seed)
    net = _build("backbone", name, overrides, ctx, seed).to(device)
    channels, height, width = net.input_shape
    assert net.feature_dim > 0, f"backbone {name}: feature_dim must be positive"
    x = torch.rand(batch, channels, height, width, device=device, requires_grad=bool(net.trainable))
    net.eval()
    out = net(x)
    assert isinstance(out, dict) and FEATURE in out, f"backbone {name}: forward must return a dict with {FEATURE!r}"
    feature = out[FEATURE]
    assert tuple(feature.shape) == (batch, net.feature_dim), f"backbone {name}: feature shape {tuple(feature.shape)}"
    assert feature.device.type == torch.device(device).type, f"backbone {name}: feature on {feature.device}, not {device}"
    assert torch.isfinite(feature).all(), f"backbone {name}: non-finite features"
    twin = _build("backbone", name, overrides, ctx, seed).to(device).eval()
    assert torch.equal(twin(x)[FEATURE], feature), f"backbone {name}: the same seed built a different net"
    if net.trainable:
        net.train()
        sum(v.float().square().sum() for v in net(x).values()).backward()  # a loss may supervise any output
        assert x.grad is not None and torch.isfinite(x.grad).all(), f"backbone {name}: no finite gradient reaches the input"
        _finite_grads(net, f"backbone {name}")
        assert any(p.grad is not None for p in net.parameters()), f"backbone {name}: no parameter receives a gradient"


def check_loss(name: str, overrides: Optional[dict[str, Any]] = None, device: str = "cpu", feature_dim: int = 16,
               identities: int = 4, images: int = 4, seed: int = 0, backbone: Optional[str] = None,
               backbone_overrides: Optional[dict[str, Any]] = None) -> None:
    """On a P x K batch: named scalar terms, finite, on ``device``; their sum's gradient reaches
    the features and the loss's own parameters; the same seed gives the same terms. The batch is
    random features, or, for a loss that supervises a backbone's side outputs, what ``backbone``
    makes of random images."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(identities).repeat_interleave(images).to(device)
    if backbone is None:
        feature = torch.randn(identities * images, feature_dim, generator=generator).to(device).requires_grad_()
        made = {FEATURE: feature}
    else:
        net_ctx = BuildContext(num_classes=identities, device=device, seed=seed)
        net = _build("backbone", backbone, backbone_overrides, net_ctx, seed).to(device)
        feature = torch.rand(identities * images, *net.input_shape, generator=generator).to(device).requires_grad_()
        made = net(feature)
        feature_dim = net.feature_dim
    ctx = BuildContext(num_classes=identities, feature_dim=feature_dim, device=device, seed=seed)

    def outputs() -> tuple[Any, LossOutput]:
        loss = _build("loss", name, overrides, ctx, seed).to(device)
        out = loss(made, labels)
        assert isinstance(out, LossOutput) and out.terms, f"loss {name}: forward must return a LossOutput with named terms"
        return loss, out

    loss, out = outputs()
    assert loss.batch in ("plain", "pk"), f"loss {name}: batch must be 'plain' or 'pk', got {loss.batch!r}"
    for term, value in out.terms.items():
        assert value.dim() == 0, f"loss {name}: term {term!r} must be a scalar, got shape {tuple(value.shape)}"
        assert value.device.type == torch.device(device).type, f"loss {name}: term {term!r} on {value.device}"
        assert torch.isfinite(value), f"loss {name}: term {term!r} is {value.item()}"
    assert out.total.requires_grad, f"loss {name}: the terms carry no gradient (detached from the features)"
    out.total.backward(retain_graph=True)
    assert feature.grad is not None and torch.isfinite(feature.grad).all(), f"loss {name}: no finite gradient reaches the features"
    _finite_grads(loss, f"loss {name}")
    again = outputs()[1]
    for term, value in out.terms.items():
        assert torch.equal(again.terms[term].detach(), value.detach()), f"loss {name}: term {term!r} differs for one seed"


def check_verifier(name: str, overrides: Optional[dict[str, Any]] = None, dim: int = 24, people: int = 12,
                   images: int = 5, seed: int = 0, features: Optional[np.ndarray] = None) -> None:
    """Fitted on identity-clustered features: ``score`` gives one finite score per aligned pair,
    ``score_matrix`` the all-pairs matrix agreeing with it, same people score higher on average,
    fitting twice gives the same scores, and ``state`` / ``load_state`` reproduce them."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(people), images)
    if features is None:
        centres = rng.normal(size=(people, dim))
        features = np.maximum(centres[labels] + 0.3 * rng.normal(size=(len(labels), dim)), 0.0)  # ReLU-like
    ctx = BuildContext(seed=seed)
    verifier = _build("verifier", name, overrides, ctx, seed).fit(features, labels)
    a, b = features[::2][:20], features[1::2][:20]
    scores = np.asarray(verifier.score(a, b))
    assert scores.shape == (len(a),) and np.isfinite(scores).all(), f"verifier {name}: score gives shape {scores.shape}"
    matrix = np.asarray(verifier.score_matrix(a, b))
    assert matrix.shape == (len(a), len(b)), f"verifier {name}: score_matrix gives shape {matrix.shape}"
    assert np.allclose(np.diag(matrix), scores, rtol=1e-6, atol=1e-6), f"verifier {name}: score_matrix disagrees with score"
    same = labels[::2][:20, None] == labels[1::2][:20][None, :]
    assert matrix[same].mean() > matrix[~same].mean(), f"verifier {name}: same people do not score higher on average"
    twin = _build("verifier", name, overrides, ctx, seed).fit(features, labels)
    assert np.allclose(twin.score(a, b), scores), f"verifier {name}: fitting twice gives other scores"
    fresh = _build("verifier", name, overrides, ctx, seed).load_state(verifier.state())
    assert np.allclose(fresh.score(a, b), scores), f"verifier {name}: state()/load_state() do not reproduce the scores"
