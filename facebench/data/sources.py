"""Training-data sources: the synthetic training set and LFW's own training folds.

A source with a ``family`` is the training side of that family's protocols: training on it
means one model per evaluated split, on that split's training people only
(unrestricted_no_outside). A source without one is outside data, trained on once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from facebench.components import Dataset, FaceData
from facebench.data.cache import cached_images
from facebench.data.lfw import detect_layout, resolve_root
from facebench.data.synthetic import make_training_set
from facebench.data.transforms import to_shape
from facebench.data.synthetic import GENERATOR_VERSION


@dataclass
class SyntheticDataConfig:
    """Synthetic training identities (names disjoint from the synthetic benchmark's people)."""

    name: str = "synthetic"
    identities: int = 400
    images_per_identity: int = 16
    seed: int = 99


class SyntheticData(Dataset):
    #: Made-up faces: the synthetic benchmark is the only protocol that fits them, and the only
    #: training data it fits (see ``facebench.run.check_pairing``).
    synthetic = True

    def __init__(self, cfg: SyntheticDataConfig) -> None:
        self.cfg = cfg

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> FaceData:
        c = self.cfg

        def build() -> tuple[np.ndarray, dict]:
            faces = make_training_set(c.identities, c.images_per_identity, c.seed)
            return to_shape(faces.images, shape), {"labels": faces.labels.tolist(), "names": faces.names, "keys": faces.keys}

        key = {"what": "synthetic-train", "version": GENERATOR_VERSION, "ids": c.identities, "per": c.images_per_identity, "seed": c.seed, "shape": list(shape)}
        images, meta = cached_images(cache_dir, key, build, "synthetic training set")
        return FaceData(images, np.asarray(meta["labels"], dtype=np.int64), meta["names"], meta["keys"])


@dataclass
class LfwDataConfig:
    """Train on LFW itself: per evaluated fold, only the people of the other folds.

    root: the LFW folder; None: $FACEBENCH_LFW. The protocol (lfw_view2 by default) reads the
    same root unless protocol.root is set.
    variant: image folder under root; None: detected.
    """

    name: str = "lfw"
    root: Optional[str] = None
    variant: Optional[str] = None


class LfwTrainingFolds(Dataset):
    family = "lfw"

    def __init__(self, cfg: LfwDataConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        detect_layout(resolve_root(self.cfg.root, "data.root"), self.cfg.variant)

    def protocol_defaults(self) -> dict[str, Any]:
        """The LFW protocol reads the same copy of LFW unless ``protocol.root`` says otherwise."""
        return {"root": self.cfg.root}
