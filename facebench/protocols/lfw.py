"""LFW View 1 and View 2 as pair benchmarks over the official protocol files."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from facebench.data.download import PROTOCOL_FILES, sha256_of
from facebench.data.layouts import LfwLayout
from facebench.data.lfw import find_layout, load_people
from facebench.errors import DataError
from facebench.validation import ranged
from facebench.protocols.benchmark import EvalUnit, PairFold, PairsBenchmark
from facebench.protocols.lfw_files import PairRecord, PeopleRecord, lfw_image_relpath, read_pairs, read_people
from facebench.protocols.pairs import PairsProtocol, check_fold_numbers

log = logging.getLogger(__name__)

#: The official protocol files' SHA-256 (facebench.data.download pins them for downloads).
OFFICIAL_SHA256 = {remote.name: remote.sha256 for remote in PROTOCOL_FILES}


@dataclass
class LfwProtocolConfig:
    """LFW pair protocol.

    root: the LFW folder (pairs.txt, people.txt and the person folders, directly or in a known
      variant folder). None: data.root when training on LFW itself (data=lfw), else $FACEBENCH_LFW,
      else the data home (LFW is downloaded there when missing; facebench.data.download).
    variant: image folder under root (e.g. lfw-112X96, lfw-deepfunneled); None: detected.
    crop: [left, top, right, bottom] box cut from each image before resizing; None: the
      layout's default (facebench.data.layouts.DEFAULT_250_CROP for the 250x250 originals,
      none for the aligned 96x112 crops). [0, 0, 250, 250] uses whole 250x250 images.
    folds: 1-based test folds to evaluate (View 2: 1..10); None: all. Fewer folds give a
      partial result, recorded as such.
    """

    name: str = "lfw_view2"
    root: Optional[str] = None
    variant: Optional[str] = None
    crop: Optional[list[int]] = None
    folds: Optional[list[int]] = ranged(None, ge=1, each=True)


def _pair_index(records: list[PairRecord], key_index: dict[str, int], path: Path, images_dir: Path) -> np.ndarray:
    out = np.empty((len(records), 2), dtype=np.int64)
    for i, r in enumerate(records):
        for j, (name, number) in enumerate(((r.name1, r.n1), (r.name2, r.n2))):
            key = lfw_image_relpath(name, number)
            if key not in key_index:
                raise DataError(
                    f"{path}:{r.line}: image {key} is not among the images of the protocol's people under "
                    f"{images_dir}. Check that the image folder is complete and matches this pairs file."
                )
            out[i, j] = key_index[key]
    return out


class LfwProtocol(PairsProtocol):
    family = "lfw"

    def __init__(self, cfg: LfwProtocolConfig, view: int) -> None:
        self.cfg = cfg
        self.view = view
        self.name = cfg.name

    def _files(self) -> tuple[LfwLayout, list[tuple[Path, list[PairRecord]]], list[tuple[Path, list[PeopleRecord]]]]:
        layout = find_layout(self.cfg.root, self.cfg.variant, self.cfg.crop, "protocol")
        if self.view == 2:
            pair_files, people_files = ["pairs.txt"], ["people.txt"]
        else:
            pair_files = ["pairsDevTrain.txt", "pairsDevTest.txt"]
            people_files = ["peopleDevTrain.txt", "peopleDevTest.txt"]
        pair_folds = [(layout.protocol_file(f), fold) for f in pair_files for fold in read_pairs(layout.protocol_file(f))]
        people_folds = [(layout.protocol_file(f), fold) for f in people_files for fold in read_people(layout.protocol_file(f))]
        return layout, pair_folds, people_folds

    def check(self) -> None:
        """Parse the protocol files and make sure every image they name exists (no decoding)."""
        layout, pair_folds, people_folds = self._files()
        if self.view == 2:
            check_fold_numbers(self.cfg.folds, len(pair_folds), "protocol.folds")
        for path, records in pair_folds:
            for r in records:
                for name, number in ((r.name1, r.n1), (r.name2, r.n2)):
                    if not layout.image(lfw_image_relpath(name, number)).is_file():
                        raise DataError(
                            f"{path}:{r.line}: image {lfw_image_relpath(name, number)} does not exist under "
                            f"{layout.images_dir}. Check that the image folder is complete and matches this pairs file."
                        )
        for path, people in people_folds:
            for r in people:
                last = lfw_image_relpath(r.name, r.n_images)
                if not layout.image(last).is_file():
                    raise DataError(
                        f"{path}:{r.line}: {r.name} is listed with {r.n_images} images, but {last} does not exist "
                        f"under {layout.images_dir}. Check that the image folder is complete and matches this people file."
                    )

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> PairsBenchmark:
        layout, pair_folds, people_folds = self._files()
        if len(pair_folds) != len(people_folds):
            raise DataError(
                f"{layout.protocol_dir}: {len(pair_folds)} pair folds but {len(people_folds)} people folds; "
                "the pairs and people files do not belong together"
            )
        people = {(r.name, r.n_images) for _, fold in people_folds for r in fold}
        faces = load_people(layout, sorted(people), shape, cache_dir, on_bad_image)
        key_index = {k: i for i, k in enumerate(faces.keys)}
        folds = []
        for k, ((path, records), (_, fold_people)) in enumerate(zip(pair_folds, people_folds)):
            folds.append(
                PairFold(
                    name=f"fold{k + 1}" if self.view == 2 else ("dev_train", "dev_test")[k],
                    pairs=_pair_index(records, key_index, path, layout.images_dir),
                    same=np.array([r.same for r in records]),
                    people=sorted({r.name for r in fold_people}),
                )
            )
        if self.view == 2:
            units = [EvalUnit(f"fold{k + 1}", k, [j for j in range(len(folds)) if j != k]) for k in range(len(folds))]
        else:
            units = [EvalUnit("view1", 1, [0])]
        files = sorted({path for path, _ in pair_folds} | {path for path, _ in people_folds})
        digests = {path.name: sha256_of(path) for path in files}
        info = {
            **layout.describe(),
            "view": self.view,
            "protocol_files_sha256": digests,
            "protocol_files_official": all(OFFICIAL_SHA256.get(name) == digest for name, digest in digests.items()),
        }
        if not info["protocol_files_official"]:
            log.warning(
                "%s: the protocol files differ from the official LFW files (%s); the record says so",
                self.name, ", ".join(n for n, d in digests.items() if OFFICIAL_SHA256.get(n) != d),
            )
        return PairsBenchmark(name=self.name, faces=faces, folds=folds, units=units, info=info)
