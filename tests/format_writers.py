"""Writers for insightface's formats, following the published layouts (../shared/design/FORMATS.md),
so tests can make .rec/.idx sets and verification .bin files of any shape without mxnet."""
from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

MAGIC = struct.pack("<I", 0xCED7230A)


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def pack_record(flag: int, label: float, labels: list[float] | None = None, image: bytes = b"", id_: int = 0) -> bytes:
    """A record's payload: the 24-byte header, the label vector when flag > 0, the image."""
    header = struct.pack("<IfQQ", flag, 0.0 if flag else label, id_, 0)
    vector = np.asarray(labels or [], dtype="<f4").tobytes() if flag else b""
    return header + vector + image


def frame(payload: bytes) -> bytes:
    """dmlc-core's framing: split at every 4-byte-aligned copy of the magic (dropping it), each
    part as magic, (cflag << 29 | length), data, zero padding to 4 bytes."""
    parts, start, pos = [], 0, 0
    while pos + 4 <= len(payload):
        if payload[pos:pos + 4] == MAGIC:
            parts.append(payload[start:pos])
            start = pos + 4
        pos += 4
    parts.append(payload[start:])
    out = b""
    for i, part in enumerate(parts):
        cflag = 0 if len(parts) == 1 else 1 if i == 0 else 3 if i == len(parts) - 1 else 2
        out += MAGIC + struct.pack("<I", cflag << 29 | len(part)) + part + b"\0" * (-len(part) % 4)
    return out


def write_rec(folder: Path, images: list[np.ndarray], classes: list[int], with_header: bool = True,
              plant_magic: bool = False) -> Path:
    """An insightface training set: record 0 and identity records (``with_header``) or bare image
    records; ``plant_magic`` puts the magic's bytes, 4-byte aligned, inside the first image's
    payload so that record is written in several parts."""
    folder.mkdir(parents=True, exist_ok=True)
    order = np.argsort(classes, kind="stable")
    payloads: list[bytes] = []
    n_classes = max(classes) + 1
    image_keys = []
    for rank, i in enumerate(order):
        data = encode_jpeg(images[i])
        if plant_magic and rank == 0:
            data = data + b"\0" * (-(len(data) + 24) % 4) + MAGIC + b"\0" * 4 + MAGIC  # JPEG readers stop at EOI
        image_keys.append(len(payloads) + 1)
        payloads.append(pack_record(0, float(classes[i]), image=data, id_=rank))
    records = []
    if with_header:
        first_identity = len(payloads) + 1
        records.append(pack_record(2, 0, [first_identity, first_identity + n_classes]))
        sorted_classes = np.asarray(classes)[order]
        records.extend(payloads)
        for c in range(n_classes):
            members = np.flatnonzero(sorted_classes == c) + 1
            records.append(pack_record(2, 0, [int(members[0]), int(members[-1]) + 1]))
        keys = list(range(len(records)))
    else:
        records = payloads
        keys = list(range(1, len(records) + 1))
    rec, index = b"", []
    for key, payload in zip(keys, records):
        index.append(f"{key}\t{len(rec)}")
        rec += frame(payload)
    (folder / "train.rec").write_bytes(rec)
    (folder / "train.idx").write_text("\n".join(index) + "\n")
    h, w = images[0].shape[:2]
    (folder / "property").write_text(f"{n_classes},{h},{w}")
    return folder


def write_bin(path: Path, images: list[bytes], issame: list[bool], old_style: bool = False) -> Path:
    """A verification .bin: the newer layout (1-D uint8 arrays, pickle protocol 4), or the old
    Python 2 one (byte strings as SHORT_BINSTRING / BINSTRING, protocol 2), hand-assembled."""
    if not old_style:
        path.write_bytes(pickle.dumps(([np.frombuffer(b, dtype=np.uint8) for b in images], list(issame)), protocol=4))
        return path
    out = bytearray(b"\x80\x02]q\x00(")
    for data in images:
        out += (b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<I", len(data))) + data
    out += b"e]q\x01("
    for s in issame:
        out += b"\x88" if s else b"\x89"
    out += b"e\x86q\x02."
    path.write_bytes(bytes(out))
    return path
