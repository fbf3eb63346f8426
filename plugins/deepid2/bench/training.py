"""Workload ``train``: DeepID2 training throughput through ``facebench.train.train``.

The question is what the framework costs: its batch plan (seeded per step, for exact
resumes), learning-rate schedule, finite-loss checks, progress bar and logging. So the
baseline is the loop a user would write by hand around the same net, loss, batch size and
optimizer (SGD with the trainer's lr, momentum and weight decay), drawing random batches
and flipping half of each batch as the trainer's default ``flip_augment`` does. Both sides
start from the same weights and run the same number of steps per call; every timed call
includes what a call costs (building the optimizer; ours also copies the images into RAM).

The loss is DeepID2's joint signal when the ``deepid2`` loss is registered, else the
identification-only softmax (plugins/softmax.py); the row says which.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from facebench.bench.report import Row, Target
from facebench.bench.runner import BenchContext
from facebench.bench.timing import measure, watch_load
from facebench.components import BuildContext, FaceData, Loss
from facebench.config import TrainerConfig
from facebench.data.transforms import to_float_tensor
from facebench.registry import get_registry
from facebench.train import train

#: Training identities and images of each: 4,096 images, a 512-way softmax head.
IDENTITIES = 512
IMAGES_PER_IDENTITY = 8


def faces(shape: tuple[int, int, int], seed: int, identities: int = IDENTITIES,
          per_identity: int = IMAGES_PER_IDENTITY) -> FaceData:
    """Seeded random uint8 faces held in memory (the speed of a step does not depend on content),
    identities in contiguous blocks of ``per_identity`` images."""
    channels, height, width = shape
    rng = np.random.default_rng(seed)
    n = identities * per_identity
    images = rng.integers(0, 256, size=(n, height, width, channels), dtype=np.uint8)
    labels = np.repeat(np.arange(identities), per_identity)
    return FaceData(images, labels, [f"id{k}" for k in range(identities)], [f"img{i}" for i in range(n)])


def build_loss(feature_dim: int, num_classes: int, device: str, **overrides: Any) -> tuple[Loss, str]:
    """DeepID2's loss when registered (with config ``overrides``), else softmax; built through
    the registry like a run does."""
    registry = get_registry()
    name = "deepid2" if "deepid2" in registry.names("loss") else "softmax"
    cfg = registry.get("loss", name).schema(**(overrides if name == "deepid2" else {}))
    ctx = BuildContext(num_classes=num_classes, feature_dim=feature_dim, device=device)
    return registry.build("loss", cfg, ctx), name


def sampler(batch_kind: str, cfg: TrainerConfig) -> Callable[[np.random.Generator], np.ndarray]:
    """Random batch indices as a hand-written loop draws them: plain random batches, or P
    identities x K images (identities are contiguous blocks of IMAGES_PER_IDENTITY)."""
    if batch_kind == "pk":
        def pk(rng: np.random.Generator) -> np.ndarray:
            people = rng.choice(IDENTITIES, cfg.pk_identities, replace=False)
            within = rng.permuted(np.tile(np.arange(IMAGES_PER_IDENTITY), (len(people), 1)), axis=1)[:, : cfg.pk_images]
            return (people[:, None] * IMAGES_PER_IDENTITY + within).ravel()

        return pk
    return lambda rng: rng.choice(IDENTITIES * IMAGES_PER_IDENTITY, cfg.batch_size, replace=False)


def minimal_loop(net: nn.Module, loss: Loss, data: FaceData, cfg: TrainerConfig, steps: int,
                 device: torch.device, seed: int) -> None:
    """The baseline: a plain PyTorch training loop, nothing else."""
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2)
    labels = torch.from_numpy(data.labels)
    params = [p for m in (net, loss) for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    draw = sampler(loss.batch, cfg)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = torch.from_numpy(draw(rng))
        x = images[idx]
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        x[flip] = x[flip].flip(-1)
        out = loss(net(to_float_tensor(x.to(device))), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()


def run(ctx: BenchContext) -> list[Row]:
    from facebench_plugins.deepid_net import DeepIDNet, DeepIDNetConfig

    torch.manual_seed(ctx.seed)
    template = DeepIDNet(DeepIDNetConfig())
    data = faces(template.input_shape, ctx.seed)
    loss_template, loss_name = build_loss(template.feature_dim, IDENTITIES, str(ctx.device))
    steps = ctx.pick(60, 8)
    cfg = TrainerConfig(steps=steps)
    ours_net, ours_loss = copy.deepcopy(template), copy.deepcopy(loss_template)
    base_net = copy.deepcopy(template).to(ctx.device).train()
    base_loss = copy.deepcopy(loss_template).to(ctx.device).train()
    images = steps * (cfg.pk_identities * cfg.pk_images if loss_template.batch == "pk" else cfg.batch_size)
    with watch_load() as load:
        t = measure(
            {
                "ours": lambda: train(ours_net, ours_loss, data, cfg, ctx.device, ctx.seed),
                "minimal": lambda: minimal_loop(base_net, base_loss, data, cfg, steps, ctx.device, ctx.seed),
            },
            repeats=ctx.pick(5, 3),
            warmup=1,
            sync=ctx.sync,
        )
    ours, minimal = t["ours"].rate(images, "img/s"), t["minimal"].rate(images, "img/s")
    row = Row("train", f"DeepID2 net, {loss_name} loss", ours, minimal,
              "hand-written PyTorch loop: same net, loss, batch, SGD settings and flips",
              ours.median / minimal.median, "ours / minimal images per second", Target(">=", 0.9), load,
              details={"steps_per_call": steps, "images_per_call": images, "batch": loss_template.batch,
                       "loss": loss_name, "identities": IDENTITIES, "images": len(data.images),
                       "input_shape": list(template.input_shape)})
    if loss_name != "deepid2":
        row.notes.append("the deepid2 loss is not registered: identification-only softmax used")
    if ctx.quick:
        row.notes.append(f"--quick: {steps} steps per call instead of 60")
    return [row]
