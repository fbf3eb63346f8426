"""A stand-alone training job for workload ``study_workers``:
``python -m facebench_plugins.deepid2.bench.train_job --steps N --seed S`` trains the loss
study's net (DeepID2 with BatchNorm, 3 x 55 x 47, softmax, batches of 128, flips and shifts)
through ``facebench.train`` on seeded random faces, with whatever threads its environment
gives it. A process of its own, as a study's sweep is, so that the thread settings under test
are the ones torch starts with.
"""
from __future__ import annotations

import argparse
from typing import Optional

import torch

from facebench.components import BuildContext
from facebench.config import TrainerConfig
from facebench.registry import get_registry
from facebench.train import train
from facebench_plugins.deepid2.bench.training import IDENTITIES, faces

SHAPE = (3, 55, 47)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    registry = get_registry()
    net = registry.build("backbone", registry.get("backbone", "deepid2").schema(batchnorm=True),
                         BuildContext(num_classes=IDENTITIES, input_shape=SHAPE))
    loss = registry.build("loss", registry.get("loss", "softmax").schema(),
                          BuildContext(num_classes=IDENTITIES, feature_dim=net.feature_dim, input_shape=SHAPE))
    cfg = TrainerConfig(steps=args.steps, batch_size=128, lr=0.05, shift_augment=3, flip_augment=True, log_every=0)
    train(net, loss, faces(SHAPE, args.seed), cfg, torch.device("cpu"), args.seed)


if __name__ == "__main__":
    main()
