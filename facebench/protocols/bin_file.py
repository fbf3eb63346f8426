"""insightface's verification sets (.bin: lfw, cfp_fp, cfp_ff, agedb_30, calfw, cplfw), read safely.

A .bin is a pickle of ``(bins, issame)``: 2N encoded images (pair i is ``bins[2i]``,
``bins[2i+1]``) and N booleans, in the order of the set's pairs file. Unpickling runs whatever a
file asks for, so nothing here unpickles freely: the opcodes are scanned first and any global
other than numpy's array reconstruction (which the newer files, written from cv2 arrays, need;
``ALLOWED_GLOBALS``) or any opcode that builds or calls an object by other means is refused before loading starts;
the loader itself resolves no other global either. The old Python 2 files hold the JPEG bytes as
``str`` and load with ``encoding="bytes"``. The result is checked: the pair count, every image a
JPEG or PNG (bytes or a 1-D uint8 array).
"""
from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import DataError

#: The globals the newer .bin files need (numpy arrays pickled by numpy 1.x or 2.x; Python 3
#: writing protocol 2 spells bytes as ``_codecs.encode(text, "latin1")``, a pure function), and
#: no other.
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),  # arrays under pickle protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
})
#: Opcodes that build or call objects without naming a global this scan can check.
REFUSED_OPCODES = frozenset({"INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"})
IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG")
#: Image bytes above this are refused (a 112x112 JPEG is a few kB).
MAX_IMAGE_BYTES = 1 << 22


class BinFileError(DataError):
    """A .bin that is not a verification set, or that asks for code to run."""


def scan_opcodes(data: bytes, path: Path) -> None:
    """Refuse, before anything is loaded, every global outside ``ALLOWED_GLOBALS`` and every
    opcode that could build an object another way. A STACK_GLOBAL's module and name are the two
    strings pushed (or fetched from the memo) just before it; anything else there is refused."""
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # what each opcode left on top of the stack: a string, or None
    try:
        for opcode, arg, pos in pickletools.genops(data):
            name = opcode.name
            if name in REFUSED_OPCODES:
                raise BinFileError(f"{path}: refused: pickle opcode {name} at byte {pos}; a verification .bin "
                                   "holds images and booleans only")
            if name == "GLOBAL":
                _check_global(*str(arg).split(" ", 1), path=path, pos=pos)
                pushed.append(None)
            elif name == "STACK_GLOBAL":
                if len(pushed) < 2 or not all(isinstance(v, str) for v in pushed[-2:]):
                    raise BinFileError(f"{path}: refused: a STACK_GLOBAL at byte {pos} whose name is not a literal")
                _check_global(pushed[-2], pushed[-1], path=path, pos=pos)
                pushed[-2:] = [None]
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                pushed.append(str(arg))
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = pushed[-1] if pushed else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                pushed.append(memo.get(int(arg)))
            else:
                pushed.append(None)
    except ValueError as exc:  # pickletools on a truncated or non-pickle file
        raise BinFileError(f"{path}: not a pickle ({exc})") from exc


def _check_global(module: str, name: str, *, path: Path, pos: int) -> None:
    if (module, name) not in ALLOWED_GLOBALS:
        raise BinFileError(f"{path}: refused: the file asks for {module}.{name} (byte {pos}); a verification .bin "
                           "may reference numpy's array reconstruction only (ALLOWED_GLOBALS), and nothing was loaded")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _image_bytes(item: Any, i: int, path: Path) -> bytes:
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 1:
            raise BinFileError(f"{path}: image {i} is an array of {item.dtype} {item.shape}, not 1-D uint8 bytes")
        item = item.tobytes()
    if not isinstance(item, (bytes, bytearray)):
        raise BinFileError(f"{path}: image {i} is a {type(item).__name__}, not encoded image bytes")
    if len(item) > MAX_IMAGE_BYTES or not bytes(item[:4]).startswith(IMAGE_MAGIC):
        raise BinFileError(f"{path}: image {i} is not a JPEG or PNG ({len(item)} bytes starting {bytes(item[:4])!r})")
    return bytes(item)


def load_bin(path: str | Path, expected_pairs: int) -> tuple[list[bytes], np.ndarray]:
    """(2N encoded images, N same-person booleans) of a verification .bin, checked."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BinFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    scan_opcodes(data, path)
    try:
        content = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # anything a malformed pickle raises: refused, never half-loaded
        raise BinFileError(f"{path}: cannot load as a verification .bin ({type(exc).__name__}: {exc})") from exc
    if not (isinstance(content, (tuple, list)) and len(content) == 2):
        raise BinFileError(f"{path}: expected a pair (images, issame), got a {type(content).__name__}")
    bins, issame = content
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple, np.ndarray)):
        raise BinFileError(f"{path}: expected (list of images, list of booleans)")
    same = np.asarray(issame)
    if same.dtype != bool and not (same.dtype.kind in "iu" and set(np.unique(same).tolist()) <= {0, 1}):
        raise BinFileError(f"{path}: issame holds {same.dtype} values, not booleans")
    if len(same) != expected_pairs or len(bins) != 2 * len(same):
        raise BinFileError(
            f"{path}: {len(same)} pairs and {len(bins)} images, expected {expected_pairs} pairs and twice as many images "
            "(insightface's builder skips pairs whose images are missing, which shifts every later pair's fold); "
            "set protocol.expected_pairs if this set really has another size"
        )
    return [_image_bytes(item, i, path) for i, item in enumerate(bins)], same.astype(bool)
