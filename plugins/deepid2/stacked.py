"""G DeepID-family ConvNets of one geometry as one module with stacked parameters.

DeepID2 trains one ConvNet per face patch (200 in the paper). Running them as G separate
modules costs G small kernel launches per layer and G optimiser walks; here the G nets are one
module whose every layer computes all nets at once:

- conv1, conv2 (and conv3 when unshared): one grouped ``nn.Conv2d`` (``groups=G``); net g owns
  output channels [g*O, (g+1)*O);
- conv3 (locally shared) and conv4 (locally connected): :class:`BatchedLocal`, one batched matmul
  over (net, output position);
- the DeepID2 layer: one batched matmul over nets;
- BatchNorm (the ``batchnorm`` variant): one BatchNorm over G*O channels, which normalises each
  net's channels exactly as the net's own BatchNorm would.

Activations travel as (N, G*C, H, W): net g's channels are the g-th block. Every stacked tensor
is the G per-net tensors of :class:`DeepIDNet` stacked (a new leading axis) or concatenated
(along the channel axis), under the same state-dict keys, so ``StackedDeepIDNet.from_nets`` and
``net(g)`` convert exactly in both directions: the tests check that the stacked forward equals
running each :class:`DeepIDNet` on its own.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from facebench.nn.local import LocallyConnected2d
from facebench_plugins.deepid_net import DeepIDNet, DeepIDNetConfig


class BatchedLocal(nn.Module):
    """G locally connected / locally shared layers (stride 1, no padding) in one batched matmul.

    ``weight`` (G, R, C*kh*kw, O) and ``bias`` (G, R, O) stack the G layers'
    :class:`LocallyConnected2d` parameters (rows ordered channel, kernel row, kernel column, as
    there); the sharing grid (``region_index``: the region of every output position) is theirs.
    """

    def __init__(self, layers: list[LocallyConnected2d]) -> None:
        super().__init__()
        first = layers[0]
        if first.stride != (1, 1) or first.padding != (0, 0):
            raise ValueError("BatchedLocal supports stride 1 without padding (the DeepID-family layers)")
        self.count = len(layers)
        self.in_channels, self.out_channels = first.in_channels, first.out_channels
        self.in_size, self.kernel_size, self.out_size = first.in_size, first.kernel_size, first.out_size
        self.shared = first.shared
        self.register_buffer("region_index", first.region_index.clone(), persistent=False)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        g, c, o = self.count, self.in_channels, self.out_channels
        (h, w), (kh, kw), (ho, wo) = self.in_size, self.kernel_size, self.out_size
        # (N, G, C, Ho, Wo, kh, kw) windows -> one copy into (G*L, N, C*kh*kw).
        patches = x.view(n, g, c, h, w).unfold(3, kh, 1).unfold(4, kw, 1)
        patches = patches.permute(1, 3, 4, 0, 2, 5, 6).reshape(g * ho * wo, n, c * kh * kw)
        weight, bias = self.weight, self.bias
        if self.shared:
            weight, bias = weight.index_select(1, self.region_index), bias.index_select(1, self.region_index)
        out = torch.baddbmm(bias.reshape(-1, 1, o), patches, weight.reshape(-1, c * kh * kw, o))
        return out.view(g, ho, wo, n, o).permute(3, 0, 4, 1, 2).reshape(n, g * o, ho, wo)


class BatchedLinear(nn.Module):
    """G linear maps: (N, G, I) -> (N, G, O) with ``weight`` (G, O, I) and ``bias`` (G, O)."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.baddbmm(self.bias[:, None, :], x.transpose(0, 1), self.weight.transpose(1, 2))
        return out.transpose(0, 1)


def _grouped(conv: nn.Conv2d, count: int) -> nn.Conv2d:
    return nn.Conv2d(conv.in_channels * count, conv.out_channels * count, conv.kernel_size, groups=count)


def _norm(module: nn.Module, count: int) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(module.num_features * count)
    if isinstance(module, nn.BatchNorm1d):
        return nn.BatchNorm1d(module.num_features * count)
    return nn.Identity()


def _stacked_layer(layers: list[nn.Module]) -> nn.Module:
    """The stacked counterpart of the same layer of G nets (parameter-free layers are shared)."""
    layer = layers[0]
    if isinstance(layer, nn.Conv2d):
        return _grouped(layer, len(layers))
    if isinstance(layer, LocallyConnected2d):
        return BatchedLocal(layers)  # type: ignore[arg-type]
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _norm(layer, len(layers))
    return copy.deepcopy(layer)


class StackedDeepIDNet(nn.Module):
    """G :class:`DeepIDNet` s of one config (``side_dim`` 0) as one module.

    ``forward`` takes (N, G*C, H, W) — net g's input is channels [g*C, (g+1)*C) — and returns
    the (N, G, feature_dim) features.
    """

    def __init__(self, cfg: DeepIDNetConfig, count: int) -> None:
        super().__init__()
        if cfg.side_dim:
            raise ValueError("a stacked DeepID net has no side outputs (backbone.side_dim must be 0)")
        nets = [DeepIDNet(cfg) for _ in range(count)]  # each initialised as a lone net would be
        self.cfg = copy.deepcopy(cfg)
        self.count = count
        self.feature_dim = cfg.feature_dim
        for stage in ("stage1", "stage2", "stage3", "conv4"):
            layers = zip(*(getattr(net, stage) for net in nets))
            setattr(self, stage, nn.Sequential(*(_stacked_layer(list(same)) for same in layers)))
        self.fc = BatchedLinear([net.fc for net in nets])
        self.fc_norm = _stacked_layer([net.fc_norm for net in nets])
        self.load_nets(nets)

    def load_nets(self, nets: list[DeepIDNet]) -> None:
        """Make net g of this module equal to ``nets[g]`` (parameters and BatchNorm statistics)."""
        states = [net.state_dict() for net in nets]
        stacked = {}
        for key, target in self.state_dict().items():
            parts = [state[key] for state in states]
            if target.dim() == 0:
                stacked[key] = parts[0]
            elif target.dim() == parts[0].dim() + 1:
                stacked[key] = torch.stack(parts)
            else:
                stacked[key] = torch.cat(parts)
        self.load_state_dict(stacked)

    def net(self, g: int) -> DeepIDNet:
        """A standalone :class:`DeepIDNet` holding a copy of net g's parameters."""
        ref = next(self.parameters())
        single = DeepIDNet(self.cfg).to(device=ref.device, dtype=ref.dtype)
        state = {}
        for key, part in single.state_dict().items():
            whole = self.state_dict()[key]
            if whole.dim() == 0:
                state[key] = whole.clone()
            elif whole.dim() == part.dim() + 1:
                state[key] = whole[g].clone()
            else:
                state[key] = whole.view(self.count, *part.shape)[g].clone()
        single.load_state_dict(state)
        return single

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, g = len(x), self.count
        pool3 = self.stage3(self.stage2(self.stage1(x)))
        c4 = self.conv4(pool3)
        joint = torch.cat([pool3.reshape(n, g, -1), c4.reshape(n, g, -1)], dim=2)
        f = self.fc(joint).reshape(n, g * self.feature_dim)
        return torch.relu(self.fc_norm(f)).view(n, g, self.feature_dim)
