"""G DeepID-family ConvNets of one geometry as one module with stacked parameters.

DeepID2 trains one ConvNet per face patch (200 in the paper). Running them as G separate
modules costs G small kernel launches per layer and G optimiser walks; here the G nets are one
module, one set of stacked parameters and one optimiser walk. Where the layers run on the
stacked batch (a GPU; ``runs_net_by_net`` says why not on the CPU):

- conv3 (locally shared) and conv4 (locally connected): :class:`BatchedLocal`, one batched
  matmul over (net, output position);
- the DeepID2 layer: one batched matmul over nets (:class:`BatchedLinear`), on every device;
- conv1, conv2 (and conv3 when unshared): :class:`StackedConv2d`, whose weight is a grouped
  convolution's, (G*O, C, kh, kw), but which runs one convolution per net. On the CPU,
  PyTorch's grouped convolution backward took 80% of a stacked training step (torch profiler,
  4 nets, batch 128), and a grouped fwd+bwd of conv1 for 8 nets took about twice as long as
  8 plain ones;
- BatchNorm (the ``batchnorm`` variant): :class:`StackedBatchNorm2d`, a BatchNorm over G*O
  channels that normalises each net's block of the batch with that net's statistics.

On the CPU the convolutional trunk runs net by net instead, each stacked layer's
``forward_net`` on its net's block, and only the DeepID2 layer's inputs are stacked.

Activations travel net-major, (G*N, C, H, W): net g's batch is rows [g*N, (g+1)*N), each a
contiguous block that a per-net convolution reads without a copy. Every stacked tensor is the
G per-net tensors of :class:`DeepIDNet` stacked (a new leading axis) or concatenated (along the
first axis), under the same state-dict keys, so ``load_nets`` and ``net(g)``
convert exactly in both directions: the tests check that the stacked forward equals running
each :class:`DeepIDNet` on its own.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from facebench.nn.local import LocallyConnected2d, block_kernels, local_matmul
from facebench_plugins.deepid_net import DeepIDNet, DeepIDNetConfig


class BatchedLocal(nn.Module):
    """G locally connected / locally shared layers (stride 1, no padding) in one batched matmul.

    ``weight`` (G, R, C*kh*kw, O) and ``bias`` (G, R, O) stack the G layers'
    :class:`LocallyConnected2d` parameters (rows ordered channel, kernel row, kernel column, as
    there); the sharing grid and its matmul layout are theirs.
    """

    def __init__(self, layers: list[LocallyConnected2d]) -> None:
        super().__init__()
        first = layers[0]
        if first.stride != (1, 1) or first.padding != (0, 0):
            raise ValueError("BatchedLocal supports stride 1 without padding (the DeepID-family layers)")
        self.count = len(layers)
        self.in_channels = first.in_channels
        self.kernel_size, self.layout, self.uniform = first.kernel_size, first.layout, first.uniform
        self.register_buffer("region_index", first.region_index.clone(), persistent=False)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._local(x, self.weight, self.bias, self.count)

    def forward_net(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Net g's layer on net g's batch."""
        return self._local(x, self.weight[g : g + 1], self.bias[g : g + 1], 1)

    def _local(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, count: int) -> torch.Tensor:
        region_index = None if self.uniform else self.region_index
        weight, bias = block_kernels(weight, bias, self.in_channels, region_index)
        return local_matmul(x, weight, bias, self.kernel_size, (1, 1), self.layout, count)


class BatchedLinear(nn.Module):
    """G linear maps: (G, N, I) -> (G, N, O) with ``weight`` (G, O, I) and ``bias`` (G, O)."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias[:, None, :], x, self.weight.transpose(1, 2))


class _NetBlocks:
    """The stacked forward of a layer that runs net by net anyway: its ``forward_net(x, g)`` on each
    of the ``count`` nets' blocks of the batch, concatenated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.forward_net(part, g) for g, part in enumerate(x.chunk(self.count))])


class StackedConv2d(_NetBlocks, nn.Module):
    """G convolutions (stride 1, no padding) on net-major batches, one per net.

    ``weight`` (G*O, C, kh, kw) and ``bias`` (G*O) are laid out as a grouped convolution's.
    """

    def __init__(self, layers: list[nn.Conv2d]) -> None:
        super().__init__()
        if any(layer.stride != (1, 1) or layer.padding != (0, 0) for layer in layers):
            raise ValueError("StackedConv2d supports stride 1 without padding (the DeepID-family layers)")
        self.count = len(layers)
        self.weight = nn.Parameter(torch.cat([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.cat([layer.bias.detach() for layer in layers]))

    def forward_net(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Net g's convolution of net g's batch."""
        return F.conv2d(x, self.weight.chunk(self.count)[g], self.bias.chunk(self.count)[g])


class StackedBatchNorm2d(_NetBlocks, nn.BatchNorm2d):
    """G BatchNorm2d layers over net-major batches: net g's rows use channels [g*O, (g+1)*O)."""

    def __init__(self, num_features: int, count: int) -> None:
        super().__init__(num_features * count)
        self.count = count

    def forward_net(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Net g's BatchNorm of net g's batch; the stacked batch is counted once, with net 0's block."""
        if self.training and g == 0:
            self.num_batches_tracked.add_(1)
        # Buffer and parameter chunks are views: batch_norm updates net g's running statistics in place.
        c = self.count
        return F.batch_norm(x, self.running_mean.chunk(c)[g], self.running_var.chunk(c)[g], self.weight.chunk(c)[g],
                            self.bias.chunk(c)[g], self.training, self.momentum, self.eps)


#: Stacked layers that can run one net's block on its own (``forward_net``).
NET_BY_NET = (StackedConv2d, StackedBatchNorm2d, BatchedLocal)


def runs_net_by_net(device: torch.device) -> bool:
    """Whether the convolutional trunk runs net by net on ``device`` (the CPU) or on the stacked batch.

    Why: on the CPU the trunk is memory-bound, and one net's conv1 output (batch 128,
    20 x 52 x 44 float32: 23 MB) fits a 32 MB L3 cache where a stacked group's (3 to 5 times
    that) does not. Measured on 2 cores, 8 nets, 10 training steps (torch profiler): ReLU,
    pooling, gradient fills, concatenations and the batched local matmuls over stacked
    activations made the stacked step 8.3 s of CPU time against 6.9 s for the 8 nets one after
    another; net by net it is 6.4 s, and ``python -m facebench.bench --only ensemble`` went from
    0.82x to 1.07x the sequential nets' images per second. On a GPU the stacked batch saves a
    kernel launch per net and layer, which is what stacking is for there.
    """
    return device.type == "cpu"


def _net_pass(stage: nn.Sequential, x: torch.Tensor, g: int) -> torch.Tensor:
    """Net g's pass through a stacked stage on its own block of the stacked batch."""
    for layer in stage:
        x = layer.forward_net(x, g) if isinstance(layer, NET_BY_NET) else layer(x)
    return x


def _norm(module: nn.Module, count: int) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d):
        return StackedBatchNorm2d(module.num_features, count)
    if isinstance(module, nn.BatchNorm1d):
        return nn.BatchNorm1d(module.num_features * count)
    return nn.Identity()


def _stacked_layer(layers: list[nn.Module]) -> nn.Module:
    """The stacked counterpart of the same layer of G nets (parameter-free layers are shared)."""
    layer = layers[0]
    if isinstance(layer, nn.Conv2d):
        return StackedConv2d(layers)  # type: ignore[arg-type]
    if isinstance(layer, LocallyConnected2d):
        return BatchedLocal(layers)  # type: ignore[arg-type]
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _norm(layer, len(layers))
    return copy.deepcopy(layer)


class StackedDeepIDNet(nn.Module):
    """G :class:`DeepIDNet` s of one config (``side_dim`` 0) as one module.

    ``forward`` takes net-major (G*N, C, H, W) — net g's input is rows [g*N, (g+1)*N) — and
    returns the (N, G, feature_dim) features.
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
        self.fc_act = nets[0].fc_act  # the lone net's choice (ReLU or linear), stateless
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

    def _net_joint(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Net g's (N, fc_in) input to its DeepID2 layer: pool3 and conv4, flattened."""
        pool3 = _net_pass(self.stage3, _net_pass(self.stage2, _net_pass(self.stage1, x, g), g), g)
        return torch.cat([pool3.flatten(1), _net_pass(self.conv4, pool3, g).flatten(1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.count
        # The batch size is never read as a number, so a traced graph (ONNX) keeps it symbolic.
        if runs_net_by_net(x.device):
            joint = torch.stack([self._net_joint(part, k) for k, part in enumerate(x.unflatten(0, (g, -1)).unbind(0))])
        else:
            pool3 = self.stage3(self.stage2(self.stage1(x)))
            c4 = self.conv4(pool3)
            joint = torch.cat([pool3.flatten(1).unflatten(0, (g, -1)), c4.flatten(1).unflatten(0, (g, -1))], dim=2)
        f = self.fc(joint).transpose(0, 1).flatten(1)
        return self.fc_act(self.fc_norm(f)).unflatten(1, (g, self.feature_dim))
