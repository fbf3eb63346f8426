"""insightface's training sets (MXNet RecordIO: train.rec, train.idx, property) read without mxnet.

The format (dmlc-core's recordio and mxnet.recordio, as ../shared/design/FORMATS.md states it):
``.idx`` is text, ``key<TAB>byte offset`` per record. In ``.rec`` each part of a record is a
little-endian u32 magic ``0xCED7230A``, a u32 whose top 3 bits flag the part (0 whole, 1 first,
2 middle, 3 last) and whose low 29 bits are its length, the payload and zero padding to 4 bytes;
a writer splits a payload at each aligned copy of the magic's bytes and drops them, so a reader
joins the parts with those 4 bytes put back. A payload is a 24-byte header (u32 flag, f32
label, u64 id, u64 id2), ``flag`` float32 labels when flag > 0 (the class is the first), then
the encoded image.

insightface's sets start with record 0 (flag 2, labels [a, b]): image records are keys 1..a-1
and identity records a..b-1, each holding the [start, end) image keys of one class. Those
ranges are float32, exact only up to 2**24; beyond that, or where record 0 has no ranges, every
record's header is scanned instead. Identities are named ``recordio_<class>``: such a set names
no one, so the identity audit reports that it cannot check it.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Optional

import numpy as np

from facebench.components import Dataset, FaceData
from facebench.data.cache import file_fingerprint
from facebench.data.chunked import cached_decode
from facebench.data.images import decode_images, load_image
from facebench.errors import DataError
from facebench.validation import ranged

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_MASK = (1 << 29) - 1
HEADER = struct.Struct("<IfQQ")
#: float32 holds every integer up to here exactly; record 0's key ranges are trusted only below.
EXACT_FLOAT_INTEGERS = 2**24
#: The central 96 columns of insightface's 112x112 ArcFace alignment: the 112x96 geometry of the
#: aligned LFW crops (its 5-point template is theirs shifted 8 pixels right).
ARCFACE_CROP = (8, 0, 104, 112)


@dataclass
class RecordHeader:
    flag: int
    labels: tuple[float, ...]
    id: int
    id2: int

    @property
    def label(self) -> float:
        """The class: the first of a label vector, else the scalar label."""
        return self.labels[0]


def read_index(path: Path) -> dict[int, int]:
    """``train.idx``: record key -> byte offset of its first part."""
    offsets = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) != 2 or not all(f.strip().isdigit() for f in fields):
            raise DataError(f"{path}:{lineno}: expected 'key<TAB>byte offset', got {line.strip()[:80]!r}")
        offsets[int(fields[0])] = int(fields[1])
    if not offsets:
        raise DataError(f"{path}: the index lists no record")
    return offsets


class RecordFile:
    """Random access to the records of a ``.rec`` through its ``.idx``; positional reads, so
    threads may read at once."""

    def __init__(self, rec: Path, idx: Path) -> None:
        self.path = rec
        self.offsets = read_index(idx)
        self.size = rec.stat().st_size
        self._fd = os.open(rec, os.O_RDONLY)

    def close(self) -> None:
        os.close(self._fd)

    def _read(self, pos: int, n: int, key: int) -> bytes:
        data = os.pread(self._fd, n, pos)
        if len(data) != n:
            raise DataError(f"{self.path}: record {key} runs past the end of the file at byte {pos}: truncated?")
        return data

    def payload(self, key: int) -> bytes:
        """Record ``key``'s payload, its parts joined."""
        if key not in self.offsets:
            raise DataError(f"{self.path}: no record {key} in the index")
        pos, parts = self.offsets[key], []
        while True:
            magic, lrec = struct.unpack("<II", self._read(pos, 8, key))
            if magic != MAGIC:
                raise DataError(f"{self.path}: record {key}: no RecordIO magic at byte {pos} (found {magic:#010x}); "
                                "the .idx does not belong to this .rec, or the file is damaged")
            flag, length = lrec >> 29, lrec & LENGTH_MASK
            parts.append(self._read(pos + 8, length, key))
            pos += 8 + length + (-length % 4)
            if flag in (0, 3):
                if flag == 3 and len(parts) == 1:
                    raise DataError(f"{self.path}: record {key} starts with a last part")
                return MAGIC_BYTES.join(parts)
            if flag not in (1, 2):
                raise DataError(f"{self.path}: record {key}: part flag {flag} is not 0-3")

    def header(self, key: int) -> tuple[RecordHeader, bytes]:
        """Record ``key``'s header and the bytes after it (the encoded image)."""
        data = self.payload(key)
        if len(data) < HEADER.size:
            raise DataError(f"{self.path}: record {key} is {len(data)} bytes, shorter than its 24-byte header")
        flag, label, id_, id2 = HEADER.unpack_from(data)
        body = HEADER.size
        if flag > 0:
            end = body + 4 * flag
            if len(data) < end:
                raise DataError(f"{self.path}: record {key} announces {flag} labels but is too short for them")
            labels = tuple(float(v) for v in np.frombuffer(data[body:end], dtype="<f4"))
            body = end
        else:
            labels = (float(label),)
        return RecordHeader(flag, labels, id_, id2), data[body:]


def image_labels(records: RecordFile) -> tuple[list[int], list[int]]:
    """(image keys, their classes): from record 0's identity ranges where it has them and they are
    exact, else by scanning every record's header."""
    head, _ = records.header(0) if 0 in records.offsets else (None, b"")
    if head is not None and head.flag > 0 and len(head.labels) >= 2 and max(head.labels[:2]) < EXACT_FLOAT_INTEGERS:
        first_identity, end = int(head.labels[0]), int(head.labels[1])
        keys, classes = [], []
        for cls, ident in enumerate(range(first_identity, end)):
            span, _ = records.header(ident)
            start, stop = int(span.labels[0]), int(span.labels[1])
            keys.extend(range(start, stop))
            classes.extend([cls] * (stop - start))
        return keys, classes
    keys, classes = [], []
    for key in sorted(records.offsets):
        if key == 0 and head is not None and head.flag > 0:
            continue
        header, image = records.header(key)
        if header.flag > 0 and not image:  # an identity record
            continue
        keys.append(key)
        classes.append(int(header.label))
    return keys, classes


@dataclass
class RecordIODataConfig:
    """An insightface training set in MXNet RecordIO (``data=recordio data.root=DIR``).

    root: the folder holding train.rec, train.idx and property (num_classes,height,width).
    crop: [left, top, right, bottom] box cut from each image before resizing to the backbone's
      input; default the central 96 columns of the 112x112 ArcFace alignment (the 112x96
      geometry of the aligned LFW crops, so nothing is distorted). None: whole images.
    min_images_per_identity: identities with fewer images are left out.
    """

    name: str = "recordio"
    root: Optional[str] = None
    crop: Optional[list[int]] = ranged(list(ARCFACE_CROP), ge=0, each=True)
    min_images_per_identity: int = ranged(1, ge=1)


class RecordIOData(Dataset):
    """A RecordIO training set, decoded once through the chunked, resumable cache."""

    def __init__(self, cfg: RecordIODataConfig) -> None:
        self.cfg = cfg

    def _files(self) -> tuple[Path, Path, tuple[int, int, int]]:
        if not self.cfg.root:
            raise DataError("data.root is not set: point it at the folder holding train.rec, train.idx and property")
        root = Path(self.cfg.root).expanduser()
        rec, idx, prop = root / "train.rec", root / "train.idx", root / "property"
        missing = [p.name for p in (rec, idx, prop) if not p.is_file()]
        if missing:
            raise DataError(f"data.root={root}: {', '.join(missing)} missing; a RecordIO set is train.rec, train.idx "
                            "and property (num_classes,height,width)")
        fields = prop.read_text().strip().split(",")
        if len(fields) != 3 or not all(f.strip().isdigit() for f in fields):
            raise DataError(f"{prop}:1: expected 'num_classes,height,width', got {prop.read_text().strip()[:60]!r}")
        classes, height, width = (int(f) for f in fields)
        return rec, idx, (classes, height, width)

    def check(self) -> None:
        self._files()

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> FaceData:
        rec, idx, (n_classes, height, width) = self._files()
        records = RecordFile(rec, idx)
        try:
            keys, classes = image_labels(records)
            if not keys:
                raise DataError(f"{rec}: no image record")
            labels = np.asarray(classes, dtype=np.int64)
            counts = np.bincount(labels)
            keep = np.flatnonzero(counts[labels] >= self.cfg.min_images_per_identity)
            keys = [keys[i] for i in keep]
            present, labels = np.unique(labels[keep], return_inverse=True)
            crop = tuple(self.cfg.crop) if self.cfg.crop else None
            expect = (width, height, f"the images of this set are {width}x{height} (its property file)")
            where = [Path(f"{rec}#{key}") for key in keys]

            def decode_chunk(index: np.ndarray) -> tuple[np.ndarray, list[int], list[str]]:
                def load(j: int) -> np.ndarray:
                    return load_image(BytesIO(records.header(keys[index[j]])[1]), shape, crop, expect)

                return decode_images([where[i] for i in index], shape, on_bad_image, label="RecordIO", load=load)

            key = {"what": "recordio", "files": file_fingerprint([rec, idx]), "shape": list(shape),
                   "crop": list(crop) if crop else None, "min_images": self.cfg.min_images_per_identity,
                   "on_bad": on_bad_image}
            images, kept, skipped = cached_decode(cache_dir, key, len(keys), (shape[1], shape[2], shape[0]),
                                                  decode_chunk, "RecordIO")
        finally:
            records.close()
        names = [f"recordio_{int(c)}" for c in present]
        return FaceData(
            images=images,
            labels=np.asarray(labels, dtype=np.int64)[kept],
            names=names,
            keys=[f"{rec.name}#{keys[i]}" for i in kept],
            info={
                "root": str(rec.parent), "classes_in_property": n_classes, "skipped_images": skipped,
                "unnamed_identities": names,
                "why_unnamed": "a RecordIO set names its identities by class number only",
            },
        )
