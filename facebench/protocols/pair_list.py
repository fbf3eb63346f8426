"""``protocol=pair_list``: any folder of aligned faces with a pairs file, under the one pair evaluation.

Two pairs-file layouts are read (told apart by the first line):
- three fields a line, ``image1 image2 same`` (same: 1 or 0), paths relative to the image folder;
- two lines a pair, ``image label`` each, as CALFW's and CPLFW's pairs files have it: a pair is
  the same person when its label is not 0.
Pairs form 10 folds in file order, as in LFW View 2; unit k tests on fold k with the verifier and
threshold fitted on the other nine. A person is named by the image's folder when the path has
one, else by the file name without its trailing ``_NNNN`` number (``Abel_Pacheco_0001.jpg`` ->
``Abel_Pacheco``); the folds must be person-disjoint (a verifier fitted on the training folds
would otherwise have seen a test person), which is checked. Paths may not leave the folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np

from facebench.components import FaceData
from facebench.data.chunked import cached_decode_files
from facebench.errors import ConfigError, DataError
from facebench.protocols.benchmark import EvalUnit, PairFold, PairsBenchmark
from facebench.protocols.pairs import PairsProtocol, check_fold_numbers
from facebench.validation import ranged

N_FOLDS = 10
_NUMBERED = re.compile(r"^(.*?)_\d+$")


@dataclass
class PairListConfig:
    """A folder of aligned face images and a pairs file.

    root: the image folder. pairs: the pairs file (relative to root, or absolute).
    crop: [left, top, right, bottom] box cut before resizing to the backbone's input (None: the
      whole image, which must then have the input's aspect: 112x96 crops for the DeepID nets).
    folds: 1-based test folds to evaluate (None: all 10).
    """

    name: str = "pair_list"
    root: Optional[str] = None
    pairs: str = "pairs.txt"
    crop: Optional[list[int]] = ranged(None, ge=0, each=True)
    folds: Optional[list[int]] = ranged(None, ge=1, each=True)


def person_of(relpath: str) -> str:
    path = PurePosixPath(relpath)
    if len(path.parts) > 1:
        return path.parts[-2]
    match = _NUMBERED.match(path.stem)
    return match.group(1) if match else path.stem


def read_pair_list(path: Path) -> list[tuple[str, str, bool, int]]:
    """(image1, image2, same, line of the pair) from either layout, with file:line errors."""
    lines = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(f"{path}: no pairs")
    pairs = []
    if len(lines[0][1]) == 3:
        for n, fields in lines:
            if len(fields) != 3 or fields[2] not in ("0", "1"):
                raise DataError(f"{path}:{n}: expected 'image1 image2 same' with same 1 or 0, got {' '.join(fields)[:80]!r}")
            pairs.append((fields[0], fields[1], fields[2] == "1", n))
        return pairs
    if len(lines) % 2:
        raise DataError(f"{path}:{lines[-1][0]}: an odd number of 'image label' lines; each pair is two lines")
    for (n1, a), (n2, b) in zip(lines[::2], lines[1::2]):
        for n, fields in ((n1, a), (n2, b)):
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise DataError(f"{path}:{n}: expected 'image label' (CALFW/CPLFW layout), got {' '.join(fields)[:80]!r}")
        if (a[1] == "0") != (b[1] == "0"):
            raise DataError(f"{path}:{n1}-{n2}: the two lines of a pair disagree on whether it is a match")
        pairs.append((a[0], b[0], a[1] != "0", n1))
    return pairs


class PairListProtocol(PairsProtocol):
    """A user's or a published pairs file over an image folder."""

    family = None

    def __init__(self, cfg: PairListConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name

    def _files(self) -> tuple[Path, Path, list[tuple[str, str, bool, int]]]:
        if not self.cfg.root:
            raise ConfigError("protocol=pair_list needs protocol.root=/path/to/images (and protocol.pairs=FILE)")
        root = Path(self.cfg.root).expanduser()
        pairs_path = Path(self.cfg.pairs).expanduser()
        pairs_path = pairs_path if pairs_path.is_absolute() else root / pairs_path
        if not root.is_dir() or not pairs_path.is_file():
            raise ConfigError(f"protocol.root={root} / protocol.pairs={pairs_path}: not found")
        pairs = read_pair_list(pairs_path)
        if len(pairs) < N_FOLDS or len(pairs) % N_FOLDS:
            raise DataError(f"{pairs_path}: {len(pairs)} pairs do not split into {N_FOLDS} equal folds")
        resolved_root = root.resolve()
        for a, b, _, line in pairs:
            for rel in (a, b):
                target = (root / rel).resolve()
                if PurePosixPath(rel).is_absolute() or resolved_root not in target.parents:
                    raise DataError(f"{pairs_path}:{line}: image {rel!r} is outside {root}; paths stay inside the folder")
                if not target.is_file():
                    raise DataError(f"{pairs_path}:{line}: image {rel} does not exist under {root}")
        return root, pairs_path, pairs

    def check(self) -> None:
        _, _, pairs = self._files()
        check_fold_numbers(self.cfg.folds, N_FOLDS, "protocol.folds")
        per_fold = len(pairs) // N_FOLDS
        fold_of: dict[str, int] = {}
        for i, (a, b, _, line) in enumerate(pairs):
            for person in (person_of(a), person_of(b)):
                if fold_of.setdefault(person, i // per_fold) != i // per_fold:
                    raise DataError(
                        f"{self.cfg.pairs}:{line}: {person} appears in folds {fold_of[person] + 1} and {i // per_fold + 1}; "
                        "the folds must be person-disjoint (a verifier fitted on the training folds would have seen "
                        "the test person)"
                    )

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> PairsBenchmark:
        self.check()
        root, pairs_path, pairs = self._files()
        images = sorted({rel for a, b, _, _ in pairs for rel in (a, b)})
        position = {rel: i for i, rel in enumerate(images)}
        names = sorted({person_of(rel) for rel in images})
        label_of = {name: k for k, name in enumerate(names)}
        crop = tuple(self.cfg.crop) if self.cfg.crop else None
        array, kept, skipped = cached_decode_files(cache_dir, "pair_list", [root / rel for rel in images], shape,
                                                   "fail", "pair_list", crop=crop)
        faces = FaceData(array, np.array([label_of[person_of(rel)] for rel in images], dtype=np.int64), names, images)
        per_fold = len(pairs) // N_FOLDS
        folds = []
        for k in range(N_FOLDS):
            chunk = pairs[k * per_fold : (k + 1) * per_fold]
            index = np.array([[position[a], position[b]] for a, b, _, _ in chunk])
            people = sorted({person_of(rel) for a, b, _, _ in chunk for rel in (a, b)})
            folds.append(PairFold(f"fold{k + 1}", index, np.array([s for _, _, s, _ in chunk]), people))
        units = [EvalUnit(f"fold{k + 1}", k, [j for j in range(N_FOLDS) if j != k]) for k in range(N_FOLDS)]
        info = {"root": str(root), "pairs": str(pairs_path), "n_pairs": len(pairs)}
        return PairsBenchmark(self.name, faces, folds, units, info=info)
