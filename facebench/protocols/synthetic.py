"""The embedded offline benchmark: LFW View 2's shape on procedurally generated people."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from facebench.components import FaceData
from facebench.data.cache import cached_images
from facebench.data.synthetic import make_pairs_benchmark
from facebench.data.transforms import to_shape
from facebench.protocols.benchmark import EvalUnit, PairFold, PairsBenchmark
from facebench.protocols.pairs import PairsProtocol, check_fold_numbers
from facebench.validation import ranged

#: Bump when the generator's output changes, so old cached renders are not reused.
GENERATOR_VERSION = 2


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
