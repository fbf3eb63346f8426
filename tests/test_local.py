"""LocallyConnected2d against independent references: nn.Conv2d, per-position loops, the
broadcast baseline, and numerical gradients."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from facebench.bench.naive_local import broadcast_locally_connected
from facebench.nn.local import LocallyConnected2d, block_sizes, split_sizes

D = torch.float64


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    # Not torch.testing.assert_close: its first call imports torch.distributed (seconds).
    assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-9, atol=1e-12), (a - b).abs().max()


def loop_reference(x: torch.Tensor, layer: LocallyConnected2d, region_of) -> torch.Tensor:
    """Output position by position: the patch at (i, j) times the kernel of region_of(i, j)."""
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    xp = F.pad(x, (pw, pw, ph, ph))
    ho, wo = layer.out_size
    out = x.new_zeros(x.shape[0], layer.out_channels, ho, wo)
    for i in range(ho):
        for j in range(wo):
            r = region_of(i, j)
            patch = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw].reshape(x.shape[0], -1)
            out[:, :, i, j] = patch @ layer.weight[r] + (layer.bias[r] if layer.bias is not None else 0)
    return out


@pytest.mark.parametrize(
    "kernel, stride, padding",
    [(3, 1, 0), (3, 2, 1), ((2, 3), (2, 1), (0, 2))],
)
def test_one_region_is_conv2d(kernel, stride, padding):
    torch.manual_seed(0)
    lc = LocallyConnected2d(3, 5, (9, 8), kernel, stride=stride, padding=padding, regions=(1, 1)).to(D)
    conv = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding).to(D)
    with torch.no_grad():
        lc.weight.copy_(conv.weight.reshape(5, -1).T[None])
        lc.bias.copy_(conv.bias[None])
    x = torch.randn(4, 3, 9, 8, dtype=D)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = lc(x1), conv(x2)
    assert_close(y1, y2)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    assert_close(x1.grad, x2.grad)
    assert_close(lc.weight.grad[0], conv.weight.grad.reshape(5, -1).T)
    assert_close(lc.bias.grad[0], conv.bias.grad)


def test_init_matches_conv2d_bound():
    torch.manual_seed(0)
    lc = LocallyConnected2d(20, 30, (10, 10), 3)
    bound = 1 / math.sqrt(20 * 9)
    assert lc.weight.abs().max() <= bound and lc.weight.abs().max() > 0.99 * bound
    assert lc.bias.abs().max() <= bound


def test_unshared_equals_position_loop():
    torch.manual_seed(0)
    lc = LocallyConnected2d(2, 3, (6, 5), 2, stride=(2, 1), padding=1).to(D)
    assert lc.num_regions == lc.out_size[0] * lc.out_size[1]
    x = torch.randn(3, 2, 6, 5, dtype=D)
    wo = lc.out_size[1]
    assert_close(lc(x), loop_reference(x, lc, lambda i, j: i * wo + j))


@pytest.mark.parametrize(
    "kwargs, out_size, grid, region_of",
    [
        # DeepID2 conv3 geometry (12x10 in, 10x8 out), both readings of "2x2 regions".
        ({"block": 2}, (10, 8), (5, 4), lambda i, j: (i // 2) * 4 + j // 2),
        ({"regions": (2, 2)}, (10, 8), (2, 2), lambda i, j: (i // 5) * 2 + j // 4),
        # Uneven 5x3 map: blocks of 2 leave a short last block; quadrants put the larger part first.
        ({"block": 2}, (5, 3), (3, 2), lambda i, j: (i // 2) * 2 + j // 2),
        ({"regions": (2, 2)}, (5, 3), (2, 2), lambda i, j: (0 if i < 3 else 1) * 2 + (0 if j < 2 else 1)),
    ],
)
def test_shared_readings(kwargs, out_size, grid, region_of):
    torch.manual_seed(0)
    in_size = (out_size[0] + 2, out_size[1] + 2)
    lc = LocallyConnected2d(2, 3, in_size, 3, **kwargs).to(D)
    assert lc.out_size == out_size and lc.grid == grid
    assert lc.num_regions == grid[0] * grid[1]
    x = torch.randn(2, 2, *in_size, dtype=D)
    assert_close(lc(x), loop_reference(x, lc, region_of))


def test_split_rules():
    assert split_sizes(10, 4) == [3, 3, 2, 2]
    assert block_sizes(7, 3) == [3, 3, 1]
    with pytest.raises(ValueError):
        split_sizes(3, 4)


@pytest.mark.parametrize("kwargs", [{}, {"block": 2}, {"regions": (2, 1)}])
def test_gradcheck(kwargs):
    torch.manual_seed(0)
    lc = LocallyConnected2d(2, 2, (4, 3), 2, stride=1, padding=(1, 0), **kwargs).to(D)
    x = torch.randn(2, 2, 4, 3, dtype=D, requires_grad=True)
    w = lc.weight.detach().clone().requires_grad_()
    b = lc.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: functional_call(lc, {"weight": w, "bias": b}, (x,)), (x, w, b))


@pytest.mark.parametrize("kwargs", [{}, {"block": 2}, {"regions": (1, 1), "bias": False}])
def test_broadcast_baseline_agrees(kwargs):
    torch.manual_seed(0)
    lc = LocallyConnected2d(3, 4, (7, 6), 3, stride=2, padding=1, **kwargs).to(D)
    x = torch.randn(2, 3, 7, 6, dtype=D)
    naive = broadcast_locally_connected(
        x, lc.position_weight(), lc.position_bias(), lc.kernel_size, lc.stride, lc.padding, lc.out_size
    )
    assert_close(lc(x), naive)


def test_output_may_be_modified_in_place():
    lc = LocallyConnected2d(2, 3, (4, 4), 2)
    x = torch.randn(2, 2, 4, 4, requires_grad=True)
    y = torch.relu_(lc(x))
    y.sum().backward()
    assert x.grad is not None and lc.weight.grad is not None


def test_rejects_wrong_input_and_ambiguous_sharing():
    lc = LocallyConnected2d(2, 3, (4, 4), 2)
    with pytest.raises(ValueError, match="expects"):
        lc(torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match="not both"):
        LocallyConnected2d(2, 3, (4, 4), 2, regions=(1, 1), block=2)
    with pytest.raises(ValueError, match="empty output"):
        LocallyConnected2d(2, 3, (2, 2), 3)


@pytest.mark.parametrize(
    "in_size, stride, kwargs",
    [((5, 5), 1, {"block": 2}), ((5, 5), 1, {"regions": (2, 2)}), ((7, 7), 2, {"block": 1}), ((5, 7), 1, {"block": (2, 3)})],
)
def test_gradcheck_equal_regions(in_size, stride, kwargs):
    """Equal rectangles take the one-matmul-per-region path; uneven ones are tested above."""
    torch.manual_seed(0)
    lc = LocallyConnected2d(2, 3, in_size, 2, stride=stride, **kwargs).to(D)
    assert lc.uniform and lc.num_regions > 1
    x = torch.randn(3, 2, *in_size, dtype=D, requires_grad=True)
    w = lc.weight.detach().clone().requires_grad_()
    b = lc.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: functional_call(lc, {"weight": w, "bias": b}, (x,)), (x, w, b))
    naive = broadcast_locally_connected(
        x, lc.position_weight(), lc.position_bias(), lc.kernel_size, lc.stride, lc.padding, lc.out_size
    )
    assert_close(lc(x), naive)


@pytest.mark.parametrize("grad_layout", [torch.contiguous_format, torch.channels_last])
def test_stacked_layers_with_either_gradient_layout(grad_layout):
    """The output is written channels-last and the input gradient comes back in another layout:
    a layer fed by another (as DeepID2's conv4 by conv3), and gradients arriving in either
    memory layout, still give the per-position loop's values and gradients."""
    torch.manual_seed(0)
    first = LocallyConnected2d(2, 3, (5, 5), 2, block=2).to(D)
    second = LocallyConnected2d(3, 4, first.out_size, 2).to(D)
    x = torch.randn(3, 2, 5, 5, dtype=D, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    assert first.uniform
    y = second(torch.relu(first(x)))
    blocks = lambda i, j: (i // 2) * 2 + j // 2  # noqa: E731 - first's 2x2 blocks over a 4x4 map
    y_ref = loop_reference(torch.relu(loop_reference(x_ref, first, blocks)), second, lambda i, j: i * 3 + j)
    assert_close(y, y_ref)
    g = torch.randn_like(y_ref).contiguous(memory_format=grad_layout)
    grads = torch.autograd.grad(y, [x, first.weight, second.weight], g)
    grads_ref = torch.autograd.grad(y_ref, [x_ref, first.weight, second.weight], g)
    for got, want in zip(grads, grads_ref):
        assert_close(got, want)
