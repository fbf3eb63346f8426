"""The DeepID-family backbone: the paper's shapes, DeepID2+ side outputs, config errors, and
that it trains."""
from __future__ import annotations

import pytest
import torch

from facebench_plugins.deepid_net import DeepIDNet, DeepIDNetConfig


@pytest.mark.parametrize("channels", [3, 1])
def test_deepid2_shapes(channels):
    net = DeepIDNet(DeepIDNetConfig(channels=channels))
    assert net.input_shape == (channels, 55, 47) and net.feature_dim == 160
    # pool3 60@5x4 + conv4 80@4x3 feed the DeepID2 layer.
    assert net.fc.in_features == 60 * 5 * 4 + 80 * 4 * 3 == 2160
    out = net(torch.randn(2, channels, 55, 47))
    assert set(out) == {"feature"} and out["feature"].shape == (2, 160)
    assert (out["feature"] >= 0).all()


@pytest.mark.parametrize("sharing", ["blocks", "quadrants", "none"])
def test_conv3_sharing_options_build_and_run(sharing):
    net = DeepIDNet(DeepIDNetConfig(conv3_sharing=sharing, height=39, width=31))
    assert net(torch.randn(2, 3, 39, 31))["feature"].shape == (2, 160)


def test_deepid2plus_side_outputs():
    cfg = DeepIDNetConfig(widths=[16, 16, 16, 16], feature_dim=32, side_dim=24)
    out = DeepIDNet(cfg)(torch.randn(2, 3, 55, 47))
    assert set(out) == {"feature", "stage1", "stage2", "stage3"}
    assert out["feature"].shape == (2, 32)
    assert all(out[f"stage{i}"].shape == (2, 24) for i in (1, 2, 3))


def test_too_small_input_names_the_keys():
    with pytest.raises(ValueError, match="backbone.height"):
        DeepIDNet(DeepIDNetConfig(height=20, width=20))


def test_sgd_steps_reduce_a_toy_loss():
    torch.manual_seed(0)
    cfg = DeepIDNetConfig(channels=1, height=31, width=31, widths=[8, 8, 8, 8], feature_dim=16, batchnorm=True)
    net = DeepIDNet(cfg)
    head = torch.nn.Linear(net.feature_dim, 4)
    params = [*net.parameters(), *head.parameters()]
    x, y = torch.randn(16, 1, 31, 31), torch.arange(16) % 4
    losses = []
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(head(net(x)["feature"]), y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():  # plain SGD by hand: torch.optim's first use imports torch._dynamo (seconds)
            for p, g in zip(params, grads):
                p -= 0.05 * g
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_feature_relu_false_leaves_the_feature_linear_and_the_parameters_unchanged(batchnorm):
    """A linear feature (the margin losses' embedding) is the same net without the last ReLU:
    same parameters, so a checkpoint loads either way, and negative units survive."""
    small = dict(channels=1, height=31, width=31, widths=[8, 8, 8, 8], feature_dim=16, batchnorm=batchnorm)
    torch.manual_seed(0)
    relu = DeepIDNet(DeepIDNetConfig(**small)).eval()
    linear = DeepIDNet(DeepIDNetConfig(**small, feature_relu=False)).eval()
    linear.load_state_dict(relu.state_dict())
    x = torch.randn(8, 1, 31, 31)
    f_relu, f_linear = relu(x)["feature"], linear(x)["feature"]
    assert (f_linear < 0).any() and (f_relu >= 0).all()
    torch.testing.assert_close(f_relu, torch.relu(f_linear))


def test_a_stacked_net_keeps_a_linear_feature_linear():
    from facebench_plugins.deepid2.stacked import StackedDeepIDNet

    torch.manual_seed(0)
    cfg = DeepIDNetConfig(channels=1, height=31, width=31, widths=[8, 8, 8, 8], feature_dim=16, batchnorm=True,
                          feature_relu=False)
    stacked = StackedDeepIDNet(cfg, 2).eval()
    x = torch.randn(2 * 4, 1, 31, 31)
    feature = stacked(x)
    for g in range(2):
        torch.testing.assert_close(feature[:, g], stacked.net(g).eval()(x[g * 4 : (g + 1) * 4])["feature"])
    assert (feature < 0).any()


@pytest.mark.parametrize("sharing", ["blocks", "none"])
def test_the_channels_last_layout_computes_what_nchw_does(sharing):
    """On a CPU the net runs channels-last from its input (DeepIDNet.layout, for speed: bench row
    ``layout``); features and gradients are those of the NCHW net up to float rounding."""
    class NCHWNet(DeepIDNet):
        def layout(self, x):
            return x

    cfg = DeepIDNetConfig(batchnorm=True, feature_relu=False, side_dim=8, conv3_sharing=sharing)
    torch.manual_seed(0)
    ours, nchw = DeepIDNet(cfg), NCHWNet(cfg)
    nchw.load_state_dict(ours.state_dict())
    x = torch.rand(6, 3, 55, 47)
    assert ours.layout(x).is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(
        memory_format=torch.channels_last)
    a, b = ours(x), nchw(x)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)
    sum(v.square().sum() for v in a.values()).backward()
    sum(v.square().sum() for v in b.values()).backward()
    largest = max(q.grad.abs().max() for q in nchw.parameters())
    for (name, p), q in zip(ours.named_parameters(), nchw.parameters()):
        # against the largest gradient of the net: a conv bias before BatchNorm has a gradient
        # of zero but for rounding, which no relative tolerance can compare
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5 * largest, msg=name)
