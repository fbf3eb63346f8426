"""``protocol=bin``: insightface's verification sets, under facebench's one pair evaluation.

Each set's N pairs form 10 folds in file order (600 pairs for the 6,000-pair sets); unit k tests
on a set's fold k with the verifier and threshold fitted on its other nine, exactly as LFW View 2
(PairsProtocol: exact threshold, mean ± SE, ROC). Several sets can run at once
(``protocol.paths=[lfw.bin,cfp_fp.bin]``): each keeps its own folds, and the record holds one
row per set.

A .bin names no one. For fitting a verifier (PCA, Joint Bayesian) on the training folds, images
are grouped into pseudo-identities: the two images of a same pair are one person, and byte-equal
images of one fold are one image (LFW's pairs reuse images). Groups never cross folds. The
identity audit against training data cannot be made and the record says so.

Images are 112x112 in the ArcFace alignment; the central 96 columns are the 112x96 geometry of
the aligned LFW crops, resized to the backbone's input without distortion.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from facebench.components import FaceData
from facebench.data.chunked import cached_decode
from facebench.data.download import sha256_of
from facebench.data.images import decode_images, load_image
from facebench.data.recordio import ARCFACE_CROP
from facebench.errors import ConfigError
from facebench.protocols.benchmark import EvalUnit, PairFold, PairsBenchmark
from facebench.protocols.bin_file import load_bin
from facebench.protocols.metrics import evaluate_pair_folds
from facebench.protocols.pairs import PairOutcome, PairsProtocol
from facebench.validation import ranged

N_FOLDS = 10
#: Pairs in each published set (cfp_* have 7,000); insightface's builder may silently drop some.
PAIRS_BY_PREFIX = {"cfp": 7000}
DEFAULT_PAIRS = 6000
ANONYMOUS = "a verification .bin names no one, so its people cannot be compared with the training data's"


@dataclass
class BinProtocolConfig:
    """Verification sets in insightface's .bin format.

    path: one .bin (lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin, ...).
    paths: several, evaluated in one run with one row per set (used when set; else ``path``).
    expected_pairs: the pair count each file must hold; None: 7,000 for cfp_* files, 6,000 for the
      others (the published sizes). A different count is refused: a builder that skipped pairs
      shifts every later pair into another fold.
    crop: box cut from each 112x112 image before resizing (default: its central 96 columns).
    """

    name: str = "bin"
    path: Optional[str] = None
    paths: list[str] = field(default_factory=list)
    expected_pairs: Optional[int] = ranged(None, ge=N_FOLDS)
    crop: Optional[list[int]] = ranged(list(ARCFACE_CROP), ge=0, each=True)


def expected_pairs(path: Path, configured: Optional[int]) -> int:
    if configured is not None:
        return configured
    return next((n for prefix, n in PAIRS_BY_PREFIX.items() if path.name.startswith(prefix)), DEFAULT_PAIRS)


def pseudo_identities(images: list[bytes], fold_of_pair: np.ndarray, same: np.ndarray) -> np.ndarray:
    """A group label per image: same-pair images joined, byte-equal images of one fold joined."""
    parent = list(range(len(images)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        parent[root(a)] = root(b)

    first_seen: dict[tuple[int, bytes], int] = {}
    for i, data in enumerate(images):
        key = (int(fold_of_pair[i // 2]), hashlib.sha1(data).digest())
        if key in first_seen:
            join(i, first_seen[key])
        else:
            first_seen[key] = i
    for p in np.flatnonzero(same):
        join(2 * p, 2 * p + 1)
    roots = np.array([root(i) for i in range(len(images))])
    return np.unique(roots, return_inverse=True)[1]


class BinSummary:
    """One VerificationSummary per set; with one set, it is that set's summary."""

    def __init__(self, per_set: dict[str, Any]) -> None:
        self.per_set = per_set
        first = next(iter(per_set.values()))
        self.fpr, self.tpr = first.fpr, first.tpr

    def to_dict(self) -> dict[str, Any]:
        if len(self.per_set) == 1:
            return next(iter(self.per_set.values())).to_dict()
        sets = {name: {k: v for k, v in s.to_dict().items() if k != "roc"} for name, s in self.per_set.items()}
        return {"mean_accuracy": float(np.mean([s["mean_accuracy"] for s in sets.values()])), "sets": sets}

    def unit_rows(self) -> list[dict[str, Any]]:
        return [row for s in self.per_set.values() for row in s.unit_rows()]

    def fold_table(self) -> pd.DataFrame:
        return pd.concat([s.fold_table().assign(set=name) for name, s in self.per_set.items()], ignore_index=True)


class BinProtocol(PairsProtocol):
    """Verification .bin sets as pair benchmarks (outside training data only: they name no one)."""

    family = None

    def __init__(self, cfg: BinProtocolConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name

    def files(self) -> list[Path]:
        chosen = list(self.cfg.paths) or ([self.cfg.path] if self.cfg.path else [])
        if not chosen:
            raise ConfigError("protocol=bin needs protocol.path=FILE.bin (or protocol.paths=[a.bin,b.bin])")
        paths = [Path(p).expanduser() for p in chosen]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ConfigError(f"protocol.path(s): {', '.join(missing)} not found")
        stems = [p.stem for p in paths]
        if len(set(stems)) != len(stems):
            raise ConfigError(f"protocol.paths: two files named {stems}; the sets are told apart by file name")
        return paths

    def check(self) -> None:
        self.files()

    def units(self, bench: PairsBenchmark) -> list[EvalUnit]:
        return bench.units

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> PairsBenchmark:
        all_images: list[bytes] = []
        names: list[str] = []
        labels: list[np.ndarray] = []
        folds: list[PairFold] = []
        units: list[EvalUnit] = []
        paths = self.files()
        for path in paths:
            images, same = load_bin(path, expected_pairs(path, self.cfg.expected_pairs))
            n_pairs = len(same)
            fold_of_pair = np.arange(n_pairs) * N_FOLDS // n_pairs
            groups = pseudo_identities(images, fold_of_pair, same)
            offset, label_offset = len(all_images), len(names)
            names.extend(f"{path.stem}#{g}" for g in range(groups.max() + 1))
            labels.append(groups + label_offset)
            first_fold = len(folds)
            for k in range(N_FOLDS):
                pairs = np.flatnonzero(fold_of_pair == k)
                index = np.stack([2 * pairs, 2 * pairs + 1], axis=1) + offset
                people = sorted({names[label_offset + g] for g in groups[index.ravel() - offset]})
                folds.append(PairFold(f"{path.stem}/fold{k + 1}", index, same[pairs], people))
            for k in range(N_FOLDS):
                train = [first_fold + j for j in range(N_FOLDS) if j != k]
                units.append(EvalUnit(f"{path.stem}/fold{k + 1}", first_fold + k, train))
            all_images.extend(images)
        faces = self._decode(all_images, np.concatenate(labels), names, shape, cache_dir, on_bad_image)
        info = {"sets": [p.name for p in paths], "anonymous_people": ANONYMOUS,
                "files_sha256": {p.name: sha256_of(p) for p in paths}}
        return PairsBenchmark(name=self.name, faces=faces, folds=folds, units=units, info=info)

    def _decode(self, images: list[bytes], labels: np.ndarray, names: list[str], shape: tuple[int, int, int],
                cache_dir: str, on_bad_image: str) -> FaceData:
        crop = tuple(self.cfg.crop) if self.cfg.crop else None
        expect = (112, 112, "verification .bin images are 112x112 (the ArcFace alignment)") if crop else None
        where = [Path(f"image {i}") for i in range(len(images))]

        def decode_chunk(index: np.ndarray) -> tuple[np.ndarray, list[int], list[str]]:
            def load(j: int) -> np.ndarray:
                return load_image(BytesIO(images[index[j]]), shape, crop, expect)

            return decode_images([where[i] for i in index], shape, "fail", label="bin", load=load)

        digest = hashlib.sha256(b"".join(hashlib.sha1(b).digest() for b in images)).hexdigest()
        key = {"what": "bin", "images": digest, "shape": list(shape), "crop": list(crop) if crop else None}
        array, kept, _ = cached_decode(cache_dir, key, len(images), (shape[1], shape[2], shape[0]), decode_chunk, "bin")
        keys = [f"image{i}" for i in range(len(images))]
        return FaceData(array, labels[kept], names, [keys[i] for i in kept])

    def summarize(self, outcomes: list[PairOutcome]) -> BinSummary:
        per_set: dict[str, list[PairOutcome]] = {}
        for o in outcomes:
            per_set.setdefault(o.name.split("/")[0], []).append(o)
        return BinSummary({
            name: evaluate_pair_folds([(o.name, o.train_scores, o.train_same, o.test_scores, o.test_same) for o in group])
            for name, group in per_set.items()
        })

    def headline(self, metrics: dict[str, Any], n_units: int) -> str:
        if "sets" not in metrics:
            return super().headline(metrics, n_units)
        rows = [f"{name} {100 * m['mean_accuracy']:.2f}% ± {100 * (m.get('se_accuracy') or 0):.2f}"
                for name, m in metrics["sets"].items()]
        return f"mean accuracy {100 * metrics['mean_accuracy']:.2f}% over {len(rows)} sets: " + "; ".join(rows)
