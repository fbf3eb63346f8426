"""The baseline of workload ``study_job``: one study job written as a bare script.

``python -m facebench_plugins.deepid2.bench.bare_study_job --lfw ROOT --steps N`` does what
one job of the loss study does on LFW View 2 fold 1 with ``loss=softmax``: train the DeepID2
net with BatchNorm on the other folds' people (SGD, momentum 0.9, weight decay 5e-4, cosine
schedule, batches of 128 random images, random flips and shifts of up to 3 pixels), extract
flip-concatenated features of every image, fit PCA 160 + Joint Bayesian on the training
people, choose the threshold on the training folds' pairs and score fold 1's. Nothing else:
no config composition, validation, identity audit, checkpoints, progress bar, logging,
record or plot. It reads the decoded images through the same LFW loader (the same cache) so
that both sides time the job, not image decoding. It prints the fold accuracy.
"""
from __future__ import annotations

import argparse
import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from facebench.components import FEATURE, BuildContext
from facebench.data.transforms import to_float_tensor
from facebench.protocols.lfw import LfwProtocol, LfwProtocolConfig
from facebench.protocols.metrics import best_threshold
from facebench.registry import get_registry

SHAPE = (3, 55, 47)
BATCH = 128
SHIFT = 3


def _shift(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each image moved by up to SHIFT pixels each way, the edge repeated."""
    padded = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT), mode="replicate")
    dy, dx = rng.integers(0, 2 * SHIFT + 1, size=(2, len(x)))
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(x))])


def _features(net: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 512):
            x = to_float_tensor(torch.from_numpy(np.array(images[start:start + 512])).permute(0, 3, 1, 2))
            out.append(torch.cat([net(x)[FEATURE], net(x.flip(-1))[FEATURE]], dim=1).numpy())
    return np.concatenate(out)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lfw", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    protocol = LfwProtocol(LfwProtocolConfig(root=args.lfw), view=2)
    bench = protocol.load(SHAPE, args.cache, "fail")
    unit = protocol.units(bench)[0]
    train_index = bench.image_index_of(protocol.train_people(bench, unit))
    _, train_labels = np.unique(bench.faces.labels[train_index], return_inverse=True)
    images = torch.from_numpy(np.array(bench.faces.images[train_index])).permute(0, 3, 1, 2)
    labels = torch.from_numpy(train_labels)

    registry = get_registry()
    backbone_cfg = registry.get("backbone", "deepid2").schema(batchnorm=True)
    net = registry.build("backbone", backbone_cfg, BuildContext(num_classes=int(labels.max()) + 1, input_shape=SHAPE))
    loss_cfg = registry.get("loss", "softmax").schema()
    loss = registry.build("loss", loss_cfg, BuildContext(num_classes=int(labels.max()) + 1,
                                                         feature_dim=net.feature_dim, input_shape=SHAPE))
    params = [p for m in (net, loss) for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=5e-4)
    net.train()
    loss.train()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * 0.5 * (1.0 + math.cos(math.pi * step / args.steps))
        idx = torch.from_numpy(rng.choice(len(images), BATCH, replace=False))
        x = images[idx]
        flip = torch.from_numpy(rng.random(BATCH) < 0.5)
        x[flip] = x[flip].flip(-1)
        out = loss(net(_shift(to_float_tensor(x), rng)), labels[idx])
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()

    features = _features(net, bench.faces.images)
    from facebench_plugins.deepid2.joint_bayesian import JointBayesianVerifier

    verifier = JointBayesianVerifier(pca_dim=160).fit(features[train_index], bench.faces.labels[train_index])

    def scores(folds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        pairs = np.concatenate([bench.folds[k].pairs for k in folds])
        same = np.concatenate([bench.folds[k].same for k in folds])
        return verifier.score(features[pairs[:, 0]], features[pairs[:, 1]]), same

    threshold = best_threshold(*scores(unit.train))
    test_scores, test_same = scores([unit.test])
    print(f"fold accuracy {np.mean((test_scores >= threshold) == test_same):.4f}")


if __name__ == "__main__":
    main()
