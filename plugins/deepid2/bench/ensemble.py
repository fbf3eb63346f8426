"""Workload ``ensemble``: the batched 8-patch DeepID2 ensemble vs its 8 nets one after another.

Ours is the ``deepid2_ensemble`` backbone (plugins/deepid2/ensemble.py: nets of one input
geometry stacked into one module) with the DeepID2 loss per net (``net_dim``), trained for S
steps through ``facebench.train.train``. The baseline trains the same 8 nets (the
ensemble's own initial weights, ``patch_net``) one after another, each for S steps through
the same trainer, on the same faces and batches, each cropping its patch from the aligned
face with the ensemble's own ``crop_patch``, so both sides do the same cropping, resizing
and per-net loss work. Throughput counts an image once per step however many nets see it:
images/s = S x batch / seconds for all 8 nets.

The training set is small (1,024 faces) because each of the baseline's 8 ``train`` calls
copies it into RAM, as 8 separate runs would, and a large set would make that copy, not the
nets, the difference.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from facebench.bench.report import Row, Target, skipped
from facebench.bench.runner import BenchContext
from facebench.bench.timing import measure, watch_load
from facebench_plugins.deepid2.bench.training import build_loss, faces
from facebench.components import Backbone
from facebench.config import TrainerConfig
from facebench.train import train

IDENTITIES = 256
IMAGES_PER_IDENTITY = 4


class PatchNet(Backbone):
    """One patch's ConvNet behind the ensemble's crop: takes the aligned face like the ensemble."""

    def __init__(self, net: nn.Module, patch: Any, input_shape: tuple[int, int, int],
                 crop: Callable[[torch.Tensor, Any], torch.Tensor]) -> None:
        super().__init__()
        self.net, self.patch, self.crop = net, patch, crop
        self.input_shape, self.feature_dim = input_shape, net.feature_dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(self.crop(x, self.patch))


def run(ctx: BenchContext) -> list[Row]:
    case = "8 patch nets: batched vs one after another"
    try:
        from facebench_plugins.deepid2.ensemble import DeepID2Ensemble, DeepID2EnsembleConfig, crop_patch
    except ImportError as exc:
        return [skipped("ensemble", case, f"not available: plugins/deepid2/ensemble.py cannot be imported ({exc})",
                        Target(">=", 1.5))]
    ensemble = DeepID2Ensemble(DeepID2EnsembleConfig())
    n_nets = len(ensemble.patches)
    loss, loss_name = build_loss(ensemble.feature_dim, IDENTITIES, str(ctx.device), net_dim=ensemble.net_dim)
    if loss_name != "deepid2":
        return [skipped("ensemble", case, "not available: the deepid2 loss (one signal per net) is not registered",
                        Target(">=", 1.5))]
    nets = [PatchNet(ensemble.patch_net(i), patch, ensemble.input_shape, crop_patch)
            for i, patch in enumerate(ensemble.patches)]
    losses = [build_loss(net.feature_dim, IDENTITIES, str(ctx.device))[0] for net in nets]
    data = faces(ensemble.input_shape, ctx.seed, IDENTITIES, IMAGES_PER_IDENTITY)
    steps = ctx.pick(20, 3)
    cfg = TrainerConfig(steps=steps)
    batch = cfg.pk_identities * cfg.pk_images if loss.batch == "pk" else cfg.batch_size

    def one_after_another() -> None:
        for net, net_loss in zip(nets, losses):
            train(net, net_loss, data, cfg, ctx.device, ctx.seed)

    def batched() -> None:
        train(ensemble, loss, data, cfg, ctx.device, ctx.seed)

    with watch_load() as load:
        t = measure({"ours": batched, "sequential": one_after_another}, ctx.pick(5, 2), 1, ctx.sync)
    ours, sequential = t["ours"].rate(steps * batch, "img/s"), t["sequential"].rate(steps * batch, "img/s")
    row = Row("ensemble", case, ours, sequential,
              f"the same {n_nets} nets trained one after another, same trainer and batches",
              ours.median / sequential.median, "ours / sequential images per second", Target(">=", 1.5), load,
              details={"nets": n_nets, "patches": [p.name for p in ensemble.patches], "steps_per_call": steps,
                       "batch": batch, "identities": IDENTITIES, "images": len(data.images),
                       "input_shape": list(ensemble.input_shape)})
    if ctx.quick:
        row.notes.append(f"--quick: {steps} steps per net and call instead of 20")
    return [row]
