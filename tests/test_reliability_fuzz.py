"""Fuzzing the readers of files facebench did not write itself (LFW's pairs and people files,
BLUFR's ``.mat`` config) and of its own records, which a crash or a full disk may have
damaged: any input either parses or raises the reader's documented error with a message —
``ProtocolFileError`` ("<path>:<line>: ..."), ``DataError`` naming the file, ``RecordError``
naming the file — never another exception and never a hang.

Inputs are bounded (a few KB) so each example takes milliseconds; the Hypothesis deadline
catches slow paths and a SIGALRM limit turns a real hang into a failure instead of a stuck
test run. The database is off so a run leaves nothing in the repository; a failure prints the
example to reproduce it.
"""
from __future__ import annotations

import io
import json
import signal
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fake_lfw import PEOPLE, write_blufr, write_protocol_files
from facebench.errors import DataError
from facebench.protocols.blufr import read_blufr_config
from facebench.protocols.lfw_files import ProtocolFileError, read_lfw_names, read_pairs, read_people
from facebench.results import RecordError, read_record

FUZZ = settings(
    max_examples=250,
    deadline=timedelta(seconds=5),  # generous: the machine running the suite may be loaded
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HANG_SECONDS = 20


@contextmanager
def no_hang(seconds: int = HANG_SECONDS) -> Iterator[None]:
    def stuck(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the reader did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def parses_or_refuses(reader: Callable[[Path], Any], path: Path, data: bytes, error: type[Exception]) -> Any:
    """Run ``reader`` on ``data``; the only exception allowed is ``error``, naming the file."""
    path.write_bytes(data)
    try:
        with no_hang():
            return reader(path)
    except error as exc:
        assert str(path) in str(exc), f"{error.__name__} without the file's path: {exc}"
        return None


# --- LFW protocol files --------------------------------------------------------------------


def _valid_texts() -> dict[str, str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_protocol_files(Path(d))
        texts = {p.name: p.read_text() for p in Path(d).iterdir()}
    texts["lfw-names.txt"] = "".join(f"{name}\t{n}\n" for name, n in PEOPLE.items())
    return texts


VALID = _valid_texts()
TOKENS = st.one_of(
    st.sampled_from(["0", "1", "2", "3", "10", "300", "-1", "01", "1.5", "1e3", "٣", "Alice_Alpha", "Bob_Beta", "x" * 300,
                     "..", ".", "../Alice_Alpha", "/etc", "Alice_Alpha/..", "a\\b"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.integers(min_value=0, max_value=10**6).map(str),
    st.just("9" * 5000),  # longer than Python converts to int by default
)
SEPARATORS = st.sampled_from(["\t", " ", "  ", "\t\t", "\r", "\x0c", "\u00a0", "\u2028"])
LINE = st.lists(TOKENS, max_size=5).flatmap(lambda ts: SEPARATORS.map(lambda sep: sep.join(ts)))
TEXT_FILES = st.lists(LINE, max_size=30).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    """A valid file with a few lines deleted, duplicated, replaced or blanked: deep in the parser."""
    lines = VALID[name].split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        op = draw(st.sampled_from(["delete", "duplicate", "replace", "blank", "token"]))
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif op == "replace":
            lines[i:i + 1] = [draw(LINE)]
        elif op == "blank":
            lines.insert(i, draw(st.sampled_from(["", " ", "\t", "\r"])))
        elif lines:
            fields = lines[i].split("\t")
            fields[draw(st.integers(0, len(fields) - 1))] = draw(TOKENS)
            lines[i] = "\t".join(fields)
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def any_protocol_file(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2000), TEXT_FILES, mutated(name))


@FUZZ
@given(data=any_protocol_file("pairs.txt"))
@example(data=b"10\t" + b"9" * 5000)
@example(data=b"\xff\xfe1\n")
def test_pairs_parser(scratch: Path, data: bytes) -> None:
    folds = parses_or_refuses(read_pairs, scratch / "pairs.txt", data, ProtocolFileError)
    if folds is not None:
        assert all(r.n1 >= 1 and r.n2 >= 1 and (r.name1 == r.name2) == r.same for fold in folds for r in fold)
        assert all(plain_name(n) for fold in folds for r in fold for n in (r.name1, r.name2))


@FUZZ
@given(data=any_protocol_file("pairsDevTrain.txt"))
def test_view1_pairs_parser(scratch: Path, data: bytes) -> None:
    parses_or_refuses(read_pairs, scratch / "pairsDevTrain.txt", data, ProtocolFileError)


@FUZZ
@given(data=any_protocol_file("people.txt"))
@example(data=b"1\n" + b"9" * 5000 + b"\n")
def test_people_parser(scratch: Path, data: bytes) -> None:
    folds = parses_or_refuses(read_people, scratch / "people.txt", data, ProtocolFileError)
    if folds is not None:
        names = [p.name for fold in folds for p in fold]
        assert len(names) == len(set(names)) and all(p.n_images >= 1 for fold in folds for p in fold)
        assert all(plain_name(n) for n in names)


def plain_name(name: str) -> bool:
    """What the parsers promise about a name: one path component inside the data root."""
    return name not in (".", "..") and not any(c in name for c in "/\\\0")


PATH_NAMES = st.one_of(
    st.sampled_from(["..", ".", "/", "/etc/passwd", "../../x"]),
    st.tuples(st.text(max_size=6), st.sampled_from(["/", "\\", "\0"]), st.text(max_size=6)).map("".join),
)


@FUZZ
@given(name=PATH_NAMES, which=st.integers(0, 100), kind=st.sampled_from(["pairs.txt", "people.txt"]))
def test_a_path_bearing_name_is_refused_at_its_line(scratch: Path, name: str, which: int, kind: str) -> None:
    """Any name that is not a plain folder name, put in place of any name of a valid file."""
    lines = VALID[kind].splitlines()
    named = [i for i, line in enumerate(lines) if len(line.split()) >= 2 and not line.split()[0].isdigit()]
    i = named[which % len(named)]
    fields = lines[i].split("\t")
    fields[0] = name
    lines[i] = "\t".join(fields)
    path = scratch / kind
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
    reader = read_pairs if kind == "pairs.txt" else read_people
    with pytest.raises(ProtocolFileError) as err:
        reader(path)
    if name.strip() and name.split() == [name]:  # a name that stays one field is refused as a name
        assert f"{path}:{i + 1}: person name" in str(err.value)


@FUZZ
@given(data=any_protocol_file("lfw-names.txt"))
def test_lfw_names_parser(scratch: Path, data: bytes) -> None:
    parses_or_refuses(read_lfw_names, scratch / "lfw-names.txt", data, ProtocolFileError)


def test_protocol_errors_point_at_a_line(tmp_path: Path) -> None:
    """The documented message shape: ``<path>:<line>: <problem>. <fix>``."""
    path = tmp_path / "pairs.txt"
    path.write_text("1\t1\nAlice_Alpha\t1\n")
    with pytest.raises(ProtocolFileError) as err:
        read_pairs(path)
    assert str(err.value).startswith(f"{path}:2: ") and err.value.line == 2


# --- BLUFR .mat ----------------------------------------------------------------------------

MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024".ljust(116, b" ")
VARIABLES = ("imageList", "labels", "trainIndex", "testIndex", "galIndex", "probIndex")


def _valid_mat() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "blufr.mat"
        names = list(PEOPLE)
        write_blufr(path, [(names[:3], names[3:]), (names[3:], names[:3])])
        return path.read_bytes()


VALID_MAT = _valid_mat()

NUMBERS = st.one_of(
    st.integers(-5, 40).map(float),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1.5, 1e300, 0.0]),
)


def _cell(items: list[Any]) -> np.ndarray:
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell


LEAVES = st.one_of(
    st.lists(NUMBERS, max_size=8).map(lambda v: np.asarray(v, dtype=np.float64).reshape(-1, 1)),
    st.lists(st.integers(-3, 20), max_size=8).map(lambda v: np.asarray(v, dtype=np.int32)),
    st.text(max_size=20).map(lambda s: np.array([s])),
    st.sampled_from(["Alice_Alpha_0001.jpg", "Bob_Beta_0002.jpg", "x.jpg", ""]).map(lambda s: np.array([s])),
    st.just(np.zeros((0, 0))),
    st.just(np.zeros((2, 3, 2))),
)
MAT_VALUES = st.one_of(
    LEAVES,
    st.lists(LEAVES, max_size=5).map(_cell),
    st.lists(st.lists(LEAVES, max_size=3).map(_cell), max_size=3).map(_cell),
    st.dictionaries(st.sampled_from(["a", "b"]), LEAVES, max_size=2),  # a MATLAB struct
)


@st.composite
def mat_files(draw: st.DrawFn) -> bytes:
    """A well-formed .mat whose BLUFR variables (some missing) hold arbitrary contents."""
    names = draw(st.lists(st.sampled_from(VARIABLES), unique=True, min_size=4, max_size=6))
    buf = io.BytesIO()
    scipy.io.savemat(buf, {name: draw(MAT_VALUES) for name in names})
    return buf.getvalue()


@st.composite
def damaged_mat(draw: st.DrawFn) -> bytes:
    """The valid config with bytes flipped, cut or inserted (headers, tags, compressed data)."""
    data = bytearray(VALID_MAT)
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
            if not data:
                break
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


BLUFR_INPUTS = st.one_of(
    st.binary(max_size=2000),
    st.binary(max_size=1000).map(lambda b: MAT_HEADER + b"\x00\x01IM" + b),
    mat_files(),
    damaged_mat(),
)


@settings(FUZZ, max_examples=120)  # each example forks a child to parse the file first (facebench.protocols.blufr)
@given(data=BLUFR_INPUTS)
@example(data=VALID_MAT)
def test_blufr_reader(scratch: Path, data: bytes) -> None:
    config = parses_or_refuses(read_blufr_config, scratch / "blufr_lfw_config.mat", data, DataError)
    if config is not None:
        n = len(config.images)
        for index in (*config.train, *config.test, *config.gallery, *config.probe):
            assert index.dtype == np.int64 and (index.size == 0 or (index.min() >= 0 and index.max() < n))


def test_blufr_reader_reads_the_valid_config(tmp_path: Path) -> None:
    """The fuzz target is meaningful: the unmutated file parses, with 0-based indices."""
    path = tmp_path / "blufr_lfw_config.mat"
    path.write_bytes(VALID_MAT)
    config = read_blufr_config(path)
    assert len(config.images) == sum(PEOPLE.values()) and len(config.train) == 2
    assert config.test[0].min() >= 0


# --- result records ------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
REQUIRED = ("schema_version", "status", "method", "protocol", "regime", "metrics", "units")


@st.composite
def record_like(draw: st.DrawFn) -> bytes:
    """Objects with most required keys, holding plausible or arbitrary values."""
    keys = draw(st.lists(st.sampled_from(REQUIRED), unique=True, min_size=5))
    plausible = {"schema_version": 1, "status": "complete", "method": "m", "protocol": {"name": "p"},
                 "regime": "r", "metrics": {}, "units": []}
    obj = {k: draw(st.one_of(st.just(plausible[k]), JSON)) for k in keys}
    return json.dumps(obj, allow_nan=True).encode()


RECORD_INPUTS = st.one_of(
    st.binary(max_size=2000),
    JSON.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    record_like(),
    st.text(max_size=200).map(lambda s: s.encode("utf-16")),
)


@FUZZ
@given(data=RECORD_INPUTS)
@example(data=b"[" * 100_000)  # nesting deeper than the parser recurses
@example(data=b"1" * 5000)  # an integer longer than Python converts by default
@example(data=b"\xef\xbb\xbf{}")  # a byte-order mark
def test_record_reader(scratch: Path, data: bytes) -> None:
    record = parses_or_refuses(read_record, scratch / "metrics.json", data, RecordError)
    if record is not None:
        assert record["status"] in ("complete", "partial", "failed") and isinstance(record["metrics"], dict)
