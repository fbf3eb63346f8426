"""Readers of face attribute label files, matched to a benchmark's images by file name.

- CelebA ``list_attr_celeba.txt``: a count line, a line of the 40 attribute names, then one
  line per image: its file name and one value per attribute (1 or -1).
- The LFW attribute file (Kumar et al.'s ``lfw_attributes.txt``): comment lines starting with
  ``#``, the last of which names the columns (``person``, ``imagenum``, then 73 attributes);
  then one tab-separated line per image: the person's name (with spaces), the image number and
  a real-valued score per attribute (positive: has it).

Values are only parsed as numbers; an error names the file, the line and what was expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facebench.config import ConfigError

FORMATS = ("auto", "celeba", "lfw")


@dataclass
class AttributeTable:
    """``values[i, j] > 0``: the image whose file stem is ``stems[i]`` has attribute ``names[j]``."""

    names: list[str]
    stems: list[str]
    values: np.ndarray
    path: str


def _numbers(fields: list[str], path: Path, line: int, expected: int) -> list[float]:
    if len(fields) != expected:
        raise ConfigError(f"{path}:{line}: expected {expected} attribute values, found {len(fields)}")
    try:
        return [float(v) for v in fields]
    except ValueError:
        bad = next(v for v in fields if not _is_number(v))
        raise ConfigError(f"{path}:{line}: {bad!r} is not a number") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_celeba_attributes(path: Path) -> AttributeTable:
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise ConfigError(f"{path}:1: a CelebA attribute file starts with the image count, then the attribute names")
    names = lines[1].split()
    stems, rows = [], []
    for number, text in enumerate(lines[2:], start=3):
        fields = text.split()
        if not fields:
            continue
        rows.append(_numbers(fields[1:], path, number, len(names)))
        stems.append(Path(fields[0]).stem)
    if len(rows) != int(lines[0]):
        raise ConfigError(f"{path}:1: announces {int(lines[0])} images, the file lists {len(rows)}")
    return AttributeTable(names, stems, np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names)), str(path))


def read_lfw_attributes(path: Path) -> AttributeTable:
    header: list[str] = []
    stems, rows = [], []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.startswith("#"):
            columns = [c.strip() for c in text.lstrip("#").split("\t") if c.strip()]
            if columns[:2] == ["person", "imagenum"]:
                header = columns[2:]
            continue
        if not text.strip():
            continue
        if not header:
            raise ConfigError(f"{path}:{number}: no '#\tperson\timagenum\t...' header line before the first image")
        fields = text.split("\t")
        if len(fields) < 2 or not fields[1].strip().isdigit():
            raise ConfigError(f"{path}:{number}: expected a person's name, an image number and {len(header)} values")
        rows.append(_numbers(fields[2:], path, number, len(header)))
        person = fields[0].strip().replace(" ", "_")
        stems.append(f"{person}_{int(fields[1]):04d}")
    if not header:
        raise ConfigError(f"{path}: no '#\tperson\timagenum\t...' header line; is this the LFW attribute file?")
    return AttributeTable(header, stems, np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header)), str(path))


def read_attributes(path: str | Path, fmt: str = "auto") -> AttributeTable:
    """The attribute table at ``path``; ``fmt=auto`` tells the two formats by their first line."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise ConfigError(f"{path}: no such attribute file")
    if fmt == "auto":
        with path.open(encoding="utf-8") as fh:
            first = fh.readline()
        fmt = "lfw" if first.startswith("#") else "celeba"
    return read_lfw_attributes(path) if fmt == "lfw" else read_celeba_attributes(path)
