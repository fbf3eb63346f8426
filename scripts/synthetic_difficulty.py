"""How hard is the synthetic benchmark? Raw pixels versus features learned on the training set.

The synthetic data is only useful if it separates methods: raw pixels must sit far from 100%
(target roughly 60-75%), while a model trained on the synthetic training identities must do
clearly better (target > 80%), proving identity is present but buried under nuisance. This
script measures both on the 10-fold benchmark with the project's own preprocessing (resize to
3 x 55 x 47) and threshold rule (exact best accuracy on the training folds):

* raw pixels -> PCA (fitted on the training folds) -> cosine;
* PCA + LDA fitted on the training set -> the same PCA + cosine protocol;
* a small convnet trained with softmax on the training set for a few epochs, its
  penultimate layer as the feature -> the same protocol.

Run:  .venv/bin/python scripts/synthetic_difficulty.py [--epochs 2] [--seed 0]
(about 4 CPU-minutes, most of it the convnet; --epochs 0 skips it)
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from torch import nn

from facebench.data.synthetic import make_training_set
from facebench.protocols.synthetic import make_pairs_benchmark
from facebench.data.transforms import to_float_tensor, to_shape
from facebench.protocols.benchmark import PairsBenchmark
from facebench.protocols.metrics import accuracy, best_threshold

SHAPE = (3, 55, 47)


def pixels(images: np.ndarray) -> np.ndarray:
    """The project's preprocessing, flattened: what a 'raw pixels' backbone sees."""
    return to_shape(images, SHAPE).reshape(len(images), -1).astype(np.float32) / 255.0


def evaluate(bench: PairsBenchmark, features: np.ndarray, pca_dim: int = 64) -> np.ndarray:
    """Per-fold accuracy: PCA fitted on the training folds' people, cosine, best train threshold."""
    accs = []
    for unit in bench.units:
        train_idx = bench.image_index_of(bench.people_of(unit.train))
        pca = PCA(n_components=pca_dim, svd_solver="randomized", iterated_power=2, random_state=0).fit(features[train_idx])
        z = pca.transform(features)
        z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

        def scores(fold_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
            pairs = np.concatenate([bench.folds[k].pairs for k in fold_ids])
            same = np.concatenate([bench.folds[k].same for k in fold_ids])
            return np.einsum("ij,ij->i", z[pairs[:, 0]], z[pairs[:, 1]]), same

        threshold = best_threshold(*scores(unit.train))
        accs.append(accuracy(*scores([unit.test]), threshold))
    return np.asarray(accs)


class SmallNet(nn.Module):
    """A deliberately small convnet: if it beats pixels clearly, identity is learnable."""

    def __init__(self, n_classes: int, dim: int = 128) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 96), block(96, 128), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(128 * 3 * 2, dim), nn.BatchNorm1d(dim), nn.ReLU())
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x))


def train_convnet(images: np.ndarray, labels: np.ndarray, epochs: int, seed: int) -> SmallNet:
    """Brief softmax training with flips: the point is a lower bound, not a good model."""
    torch.manual_seed(seed)
    x = to_float_tensor(torch.from_numpy(to_shape(images, SHAPE)).permute(0, 3, 1, 2))
    y = torch.from_numpy(labels)
    net = SmallNet(int(labels.max()) + 1)
    opt = torch.optim.AdamW(list(net.parameters()), lr=2e-3, weight_decay=5e-4)
    start = time.time()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x))
        correct = 0
        for i in range(0, len(x), 128):
            idx = order[i : i + 128]
            xb = x[idx]
            flip = torch.rand(len(idx)) < 0.5
            xb[flip] = xb[flip].flip(-1)
            logits = net.head(net(xb))
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
        print(f"  epoch {epoch + 1}: loss {loss.item():.3f}, train acc {correct / len(x):.3f}, {time.time() - start:.0f}s")
    return net


@torch.no_grad()
def embed(net: SmallNet, images: np.ndarray) -> np.ndarray:
    net.eval()
    x = to_float_tensor(torch.from_numpy(to_shape(images, SHAPE)).permute(0, 3, 1, 2))
    return torch.cat([net(x[i : i + 512]) for i in range(0, len(x), 512)]).numpy()


def report(name: str, accs: np.ndarray, since: float) -> None:
    mean, se = 100 * accs.mean(), 100 * accs.std(ddof=1) / np.sqrt(len(accs))
    print(f"{name:<36s} {mean:5.1f}% +- {se:.1f} (SE)  [{time.time() - since:.0f}s]  folds {np.round(100 * accs, 1).tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ids", type=int, default=400, help="training identities")
    parser.add_argument("--per-id", type=int, default=16, help="training images per identity")
    parser.add_argument("--epochs", type=int, default=2, help="convnet training epochs (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(2)

    t0 = time.process_time()
    bench = make_pairs_benchmark(seed=args.seed)
    t1 = time.process_time()
    train = make_training_set(args.ids, args.per_id, seed=args.seed)
    t2 = time.process_time()
    print(f"rendered benchmark: {len(bench.faces.images)} images in {t1 - t0:.1f}s CPU; "
          f"training set: {len(train.images)} images in {t2 - t1:.1f}s CPU")

    t = time.time()
    bench_px = pixels(bench.faces.images)
    report("raw pixels, PCA-64, cosine", evaluate(bench, bench_px, 64), t)

    t = time.time()
    train_px = pixels(train.images)
    pca = PCA(n_components=200, svd_solver="randomized", iterated_power=2, random_state=0).fit(train_px)
    lda = LinearDiscriminantAnalysis().fit(pca.transform(train_px), train.labels)
    report("PCA-200 + LDA (train set), cosine", evaluate(bench, lda.transform(pca.transform(bench_px)), 64), t)

    if args.epochs > 0:
        print(f"training a small convnet for {args.epochs} epochs on {len(train.images)} images ...")
        t = time.time()
        net = train_convnet(train.images, train.labels, args.epochs, args.seed)
        report("small convnet (train set), cosine", evaluate(bench, embed(net, bench.faces.images), 64), t)


if __name__ == "__main__":
    main()
