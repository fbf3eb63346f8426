"""The embedded offline benchmark: LFW View 2's shape on procedurally generated people."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from facebench.components import FaceData
from facebench.data.cache import cached_images
from facebench.data.synthetic import GENERATOR_VERSION, identity_names, render_faces, seeded_stream
from facebench.data.transforms import to_shape
from facebench.protocols.benchmark import EvalUnit, PairFold, PairsBenchmark
from facebench.protocols.pairs import PairsProtocol, check_fold_numbers
from facebench.validation import ranged


@dataclass
class SyntheticProtocolConfig:
    """Synthetic 10-fold pair benchmark (people disjoint from the synthetic training set).

    people_per_fold x [images_min, images_max] images each; pairs_per_class matched and as many
    mismatched pairs per fold, as in LFW View 2. folds: 1-based test folds (None: all).
    """

    name: str = "synthetic"
    seed: int = ranged(1234, ge=0)
    n_folds: int = ranged(10, ge=2)
    people_per_fold: int = ranged(40, ge=2)
    images_min: int = ranged(6, ge=2)
    images_max: int = ranged(10, ge=2)
    pairs_per_class: int = ranged(300, ge=1)
    folds: Optional[list[int]] = ranged(None, ge=1, each=True)


class SyntheticProtocol(PairsProtocol):
    family = "synthetic"
    synthetic = True

    def __init__(self, cfg: SyntheticProtocolConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name

    def check(self) -> None:
        check_fold_numbers(self.cfg.folds, self.cfg.n_folds, "protocol.folds")

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> PairsBenchmark:
        c = self.cfg
        params = dict(
            n_folds=c.n_folds,
            people_per_fold=c.people_per_fold,
            images_per_person=(c.images_min, c.images_max),
            pairs_per_class=c.pairs_per_class,
            seed=c.seed,
        )

        def build() -> tuple[np.ndarray, dict]:
            bench = make_pairs_benchmark(**params)
            meta = {
                "labels": bench.faces.labels.tolist(),
                "names": bench.faces.names,
                "keys": bench.faces.keys,
                "folds": [
                    {"name": f.name, "pairs": f.pairs.tolist(), "same": f.same.tolist(), "people": f.people}
                    for f in bench.folds
                ],
                "units": [{"name": u.name, "test": u.test, "train": u.train} for u in bench.units],
                "info": bench.info,
            }
            return to_shape(bench.faces.images, shape), meta

        key = {"what": "synthetic-benchmark", "version": GENERATOR_VERSION, **params, "shape": list(shape)}
        images, meta = cached_images(cache_dir, key, build, "synthetic benchmark")
        faces = FaceData(images, np.asarray(meta["labels"], dtype=np.int64), meta["names"], meta["keys"])
        folds = [PairFold(f["name"], np.asarray(f["pairs"]), np.asarray(f["same"]), f["people"]) for f in meta["folds"]]
        units = [EvalUnit(u["name"], u["test"], u["train"]) for u in meta["units"]]
        return PairsBenchmark(self.name, faces, folds, units, info=meta["info"])


def _sample_pairs(labels: np.ndarray, same: bool, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct unordered pairs of local image indices, same or different label."""
    i, j = np.triu_indices(len(labels), 1)
    keep = (labels[i] == labels[j]) == same
    i, j = i[keep], j[keep]
    pick = np.sort(rng.choice(len(i), size=k, replace=False))
    return np.stack([i[pick], j[pick]], axis=1)


def _feasible_pairs(labels: np.ndarray) -> tuple[int, int]:
    """How many distinct matched and mismatched pairs a fold's images allow."""
    counts = np.bincount(labels)
    n = len(labels)
    matched = int((counts * (counts - 1) // 2).sum())
    return matched, n * (n - 1) // 2 - matched


def make_pairs_benchmark(
    *,
    n_folds: int = 10,
    people_per_fold: int = 40,
    images_per_person: tuple[int, int] = (6, 10),
    pairs_per_class: int = 300,
    seed: int,
    prefix: str = "synth",
) -> PairsBenchmark:
    """An LFW-View-2-shaped benchmark on synthetic people.

    People are split into identity-disjoint folds; each fold holds ``pairs_per_class`` matched
    pairs (two different images of one of its people) followed by as many mismatched pairs
    (images of two of its people). Unit k tests on fold k and fits on all the others. If some
    fold cannot supply that many distinct pairs, every fold gets the largest count all folds
    can supply (with a warning), so folds stay equally weighted; a fold that can supply none
    is an error.
    """
    lo, hi = int(images_per_person[0]), int(images_per_person[1])
    if n_folds < 2:
        raise ValueError("make_pairs_benchmark: need at least 2 folds (one to test, one to fit)")
    if people_per_fold < 2:
        raise ValueError("make_pairs_benchmark: a fold needs at least 2 people for mismatched pairs")
    if not 1 <= lo <= hi:
        raise ValueError(f"make_pairs_benchmark: images_per_person must satisfy 1 <= min <= max, got {images_per_person}")
    if pairs_per_class < 1:
        raise ValueError("make_pairs_benchmark: pairs_per_class must be positive")
    rng = seeded_stream(seed, "protocol", prefix)
    names = identity_names(prefix, n_folds * people_per_fold)
    counts = rng.integers(lo, hi + 1, size=len(names))
    fold_of_person = np.repeat(np.arange(n_folds), people_per_fold)
    labels = np.repeat(np.arange(len(names)), counts)
    fold_of_image = fold_of_person[labels]

    feasible = [_feasible_pairs(labels[fold_of_image == f] - f * people_per_fold) for f in range(n_folds)]
    k = min(pairs_per_class, *(min(m, x) for m, x in feasible))
    if k < 1:
        raise ValueError(
            f"make_pairs_benchmark: some fold has no possible matched pair (images per person {images_per_person}); "
            "use at least 2 images per person"
        )
    if k < pairs_per_class:
        warnings.warn(
            f"make_pairs_benchmark: only {k} distinct pairs per class fit in every fold "
            f"({people_per_fold} people x {images_per_person} images); asked for {pairs_per_class}, using {k}",
            stacklevel=2,
        )

    faces = render_faces(names, counts.tolist(), seed)
    folds = []
    for f in range(n_folds):
        index = np.flatnonzero(fold_of_image == f)
        local = labels[index]
        matched = index[_sample_pairs(local, True, k, rng)]
        mismatched = index[_sample_pairs(local, False, k, rng)]
        folds.append(
            PairFold(
                name=f"fold{f + 1}",
                pairs=np.concatenate([matched, mismatched]),
                same=np.repeat([True, False], k),
                people=names[f * people_per_fold : (f + 1) * people_per_fold],
            )
        )
    units = [EvalUnit(name=f"fold{f + 1}", test=f, train=[g for g in range(n_folds) if g != f]) for f in range(n_folds)]
    info = {
        "source": "synthetic",
        "seed": int(seed),
        "pairs_per_class": k,
        "pairs_per_class_requested": int(pairs_per_class),
        "people_per_fold": int(people_per_fold),
        "images_per_person": [lo, hi],
    }
    return PairsBenchmark(name=prefix, faces=faces, folds=folds, units=units, info=info)
