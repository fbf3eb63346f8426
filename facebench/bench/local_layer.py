"""Workload ``local``: LocallyConnected2d forward+backward at DeepID2's conv3 and conv4 sizes.

Two comparisons per size. Against ``nn.Conv2d`` of the same shape (same input, channels,
kernel): a convolution does the same multiply-adds with one shared kernel through the
tuned library path, so it is the speed a locally connected layer can hope for (target: ours
at most 1.3x its time). Against the broadcast-multiply formulation
(:mod:`facebench.bench.naive_local`, target: at least 20x slower than ours). Gradients are
taken with ``torch.autograd.grad`` with a fixed output gradient, for the input and every
parameter, so nothing accumulates between repeats.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from facebench.bench.naive_local import broadcast_locally_connected
from facebench.bench.report import Row, Target, time_ratio
from facebench.bench.runner import BenchContext
from facebench.bench.timing import measure, watch_load
from facebench.nn.local import LocallyConnected2d

#: DeepID2's batch. Kept under --quick too: the broadcast baseline's per-image cost depends
#: on the batch (at conv4's size it is 4x closer to ours at batch 32 than at 128), so a
#: smaller batch would not measure the target's ratio; --quick times it once instead.
BATCH = 128


@dataclass(frozen=True)
class Shape:
    """One DeepID2 layer: (C, H, W) -> O channels with a k x k kernel; ``block`` = shared 2x2."""

    name: str
    channels: int
    out_channels: int
    size: tuple[int, int]
    kernel: int
    block: Optional[int]

    def describe(self) -> str:
        sharing = f"locally shared in {self.block}x{self.block} blocks" if self.block else "unshared"
        return f"{self.channels}@{self.size[0]}x{self.size[1]} -> {self.out_channels}, k={self.kernel}, {sharing}"


SHAPES = (
    Shape("conv4", 60, 80, (5, 4), 2, None),
    Shape("conv3", 40, 60, (12, 10), 3, 2),
)


def _step(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, params: list[torch.Tensor]
) -> Callable[[], None]:
    """Forward, then the gradients of every input and parameter for a fixed output gradient."""
    grad_out = torch.randn_like(forward(x))

    def run() -> None:
        torch.autograd.grad(forward(x), [x, *params], grad_out)

    return run


def _cases(
    shape: Shape, batch: int, ctx: BenchContext, names: tuple[str, str]
) -> dict[str, Callable[[], None]]:
    """The named fwd+bwd calls (ours, conv2d, broadcast) on one seeded input."""
    gen = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(batch, shape.channels, *shape.size, generator=gen).to(ctx.device).requires_grad_()
    local = LocallyConnected2d(shape.channels, shape.out_channels, shape.size, shape.kernel, block=shape.block)
    local = local.to(ctx.device)
    conv = nn.Conv2d(shape.channels, shape.out_channels, shape.kernel).to(ctx.device)

    def broadcast(inp: torch.Tensor) -> torch.Tensor:
        return broadcast_locally_connected(inp, local.position_weight(), local.position_bias(), local.kernel_size,
                                           local.stride, local.padding, local.out_size)

    modules = {"ours": (local, local), "conv2d": (conv, conv), "broadcast": (broadcast, local)}
    return {name: _step(modules[name][0], x, list(modules[name][1].parameters())) for name in names}


def run(ctx: BenchContext) -> list[Row]:
    rows = []
    for shape in SHAPES:
        with watch_load() as load:
            t = measure(_cases(shape, BATCH, ctx, ("ours", "conv2d")), ctx.pick(20, 5), ctx.pick(3, 1), ctx.sync)
        details = {"shape": shape.describe(), "batch": BATCH}
        rows.append(
            Row("local", f"{shape.name} vs Conv2d", t["ours"], t["conv2d"], "nn.Conv2d of the same shape, fwd+bwd",
                t["ours"].median / t["conv2d"].median, "ours / Conv2d time", Target("<=", 1.3), load, details=details)
        )
        with watch_load() as load:
            t = measure(_cases(shape, BATCH, ctx, ("ours", "broadcast")), ctx.pick(5, 1), 1, ctx.sync)
        rows.append(
            Row("local", f"{shape.name} vs broadcast", t["ours"], t["broadcast"],
                "broadcast multiply-and-sum (facebench.bench.naive_local), fwd+bwd",
                time_ratio(t["ours"], t["broadcast"]), "broadcast / ours time", Target(">=", 20), load,
                notes=["--quick: timed once (after one warm-up call)"] if ctx.quick else [], details=details)
        )
    return rows
