"""Where LFW's images and protocol files are under a user's root, and loading its people.

The layouts a root may hold are described in :mod:`facebench.data.layouts`. With no root
configured (neither the config key nor $FACEBENCH_LFW), LFW is looked for in the data home
and fetched there when missing (:mod:`facebench.data.download`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from facebench.components import FaceData
from facebench.data.chunked import cached_decode_files
from facebench.data.download import ensure_lfw
from facebench.data.layouts import ACCEPTED, LfwLayout, detect_layout
from facebench.errors import DataError

ENV_VAR = "FACEBENCH_LFW"


def resolve_root(root: Optional[str], key: str) -> Path:
    """The LFW root from config, else $FACEBENCH_LFW, else the data home (downloading LFW there when missing)."""
    value = root or os.environ.get(ENV_VAR)
    if not value:
        return ensure_lfw()
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(
            f"{key}={value}: no such directory. Point it at the LFW folder (holding pairs.txt); accepted layouts: "
            f"{ACCEPTED}."
        )
    return path


def find_layout(root: Optional[str], variant: Optional[str], crop: Optional[Sequence[int]], key: str) -> LfwLayout:
    """The LFW layout under the configured root (``key`` names the config key for messages, e.g. ``protocol``)."""
    return detect_layout(resolve_root(root, f"{key}.root"), variant, crop, f"{key}.crop")


def load_people(
    layout: LfwLayout,
    people: list[tuple[str, int]],
    shape: tuple[int, int, int],
    cache_dir: str,
    on_bad_image: str = "fail",
) -> FaceData:
    """Decode every image of ``people`` (name, count) once, through the cache."""
    names = sorted({name for name, _ in people})
    counts = dict(people)
    keys, labels = [], []
    for label, name in enumerate(names):
        for n in range(1, counts[name] + 1):
            keys.append(f"{name}/{name}_{n:04d}.jpg")
            labels.append(label)
    paths = [layout.image(k) for k in keys]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} LFW images listed by the people files are missing, e.g. {missing[0]}. "
            f"Check that {layout.images_dir} is a complete LFW image folder."
        )

    array, kept, skipped = cached_decode_files(cache_dir, "lfw", paths, shape, on_bad_image, "LFW", crop=layout.crop)
    return FaceData(
        images=array,
        labels=np.asarray(labels, dtype=np.int64)[kept],
        names=names,
        keys=[keys[i] for i in kept],
        info={**layout.describe(), "skipped_images": skipped},
    )
