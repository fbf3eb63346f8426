"""LFW protocol file parsers: the real files parse to the official sizes; broken ones fail at the line."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from facebench.protocols.lfw_files import (
    ProtocolFileError,
    lfw_image_relpath,
    read_lfw_names,
    read_pairs,
    read_people,
)


def _lfw_dir() -> Path:
    """The shared LFW folder: $FACEBENCH_SHARED_DATA/lfw, else ../shared/data/lfw beside the checkout."""
    root = os.environ.get("FACEBENCH_SHARED_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return base / "lfw"


LFW = _lfw_dir()
needs_lfw = pytest.mark.skipif(
    not (LFW / "pairs.txt").is_file(),
    reason=f"real LFW protocol files not found at {LFW} (set FACEBENCH_SHARED_DATA to the shared data folder)",
)


@pytest.fixture(scope="module")
def view2():
    return read_pairs(LFW / "pairs.txt"), read_people(LFW / "people.txt")


@pytest.mark.lfw
@needs_lfw
def test_view2_pairs_sizes_and_order(view2):
    pairs, _ = view2
    assert len(pairs) == 10
    for k, fold in enumerate(pairs):
        assert len(fold) == 600
        assert all(p.same for p in fold[:300]) and not any(p.same for p in fold[300:])
        assert fold[0].line == 2 + 600 * k  # the header is line 1
    first = pairs[0][0]
    assert (first.name1, first.n1, first.name2, first.n2) == ("Abel_Pacheco", 1, "Abel_Pacheco", 4)


@pytest.mark.lfw
@needs_lfw
def test_view1_pairs_sizes():
    for name, n in (("pairsDevTrain.txt", 1100), ("pairsDevTest.txt", 500)):
        (fold,) = read_pairs(LFW / name)
        assert len(fold) == 2 * n
        assert sum(p.same for p in fold[:n]) == n and not any(p.same for p in fold[n:])


@pytest.mark.lfw
@needs_lfw
def test_people_folds_agree_with_names_and_pairs(view2):
    pairs, people = view2
    names = {p.name: p.n_images for p in read_lfw_names(LFW / "lfw-names.txt")}
    assert len(names) == 5749 and sum(names.values()) == 13233
    assert len(people) == 10
    assert [len(f) for f in people] == [601, 555, 552, 560, 567, 527, 597, 601, 580, 609]
    assert all(names[p.name] == p.n_images for fold in people for p in fold)
    assert sum(len(f) for f in people) == len(names)  # every LFW person in exactly one fold
    fold_of = {p.name: k for k, fold in enumerate(people) for p in fold}
    # Both people of every pair belong to the people.txt fold of the pair's own fold, and every
    # image number exists: this is what makes the no-outside-data regime (train on the other
    # 9 folds' people) well defined.
    for k, fold in enumerate(pairs):
        for p in fold:
            assert fold_of[p.name1] == k and fold_of[p.name2] == k, p
            assert p.n1 <= names[p.name1] and p.n2 <= names[p.name2], p


@pytest.mark.lfw
@needs_lfw
def test_view1_people_are_disjoint_and_cover_their_pairs():
    (train,) = read_people(LFW / "peopleDevTrain.txt")
    (test,) = read_people(LFW / "peopleDevTest.txt")
    assert (len(train), len(test)) == (4038, 1711)
    train_names, test_names = {p.name for p in train}, {p.name for p in test}
    assert not train_names & test_names
    for pairs_file, people in (("pairsDevTrain.txt", train_names), ("pairsDevTest.txt", test_names)):
        (fold,) = read_pairs(LFW / pairs_file)
        assert all(p.name1 in people and p.name2 in people for p in fold)


def test_image_relpath():
    assert lfw_image_relpath("Abel_Pacheco", 4) == "Abel_Pacheco/Abel_Pacheco_0004.jpg"


# --- malformed files -------------------------------------------------------------------------

# A well-formed View-2-style file: 2 folds of 2 matched + 2 mismatched pairs.
GOOD_PAIRS = [
    "2\t2",  # line 1
    "Ann\t1\t2",  # 2  fold 1 matched
    "Bob\t1\t3",  # 3
    "Ann\t1\tBob\t2",  # 4  fold 1 mismatched
    "Cid\t1\tDee\t1",  # 5
    "Eve\t1\t2",  # 6  fold 2 matched
    "Fay\t2\t3",  # 7
    "Eve\t1\tFay\t1",  # 8  fold 2 mismatched
    "Gus\t1\tHal\t1",  # 9
]


def _write(tmp_path: Path, lines: list[str], name: str = "pairs.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _with(line: int, text: str | None) -> list[str]:
    """GOOD_PAIRS with 1-based ``line`` replaced (or removed with None)."""
    lines = list(GOOD_PAIRS)
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    return lines


def test_good_fixture_parses(tmp_path):
    folds = read_pairs(_write(tmp_path, GOOD_PAIRS))
    assert [[(p.name1, p.n1, p.name2, p.n2, p.same, p.line) for p in f] for f in folds] == [
        [("Ann", 1, "Ann", 2, True, 2), ("Bob", 1, "Bob", 3, True, 3),
         ("Ann", 1, "Bob", 2, False, 4), ("Cid", 1, "Dee", 1, False, 5)],
        [("Eve", 1, "Eve", 2, True, 6), ("Fay", 2, "Fay", 3, True, 7),
         ("Eve", 1, "Fay", 1, False, 8), ("Gus", 1, "Hal", 1, False, 9)],
    ]


def test_any_whitespace_and_trailing_blank_lines_are_accepted(tmp_path):
    lines = [ln.replace("\t", "  ") for ln in GOOD_PAIRS] + ["", "   "]
    assert len(read_pairs(_write(tmp_path, lines))) == 2


@pytest.mark.parametrize(
    ("lines", "line", "says"),
    [
        (_with(1, "2\t2\t7"), 1, "header has 3 fields"),
        (_with(1, "two\t2"), 1, "number of folds must be an integer"),
        (_with(3, "Bob\t1"), 3, "2 fields"),
        (_with(3, "Bob\t1\tx"), 3, "second image number must be an integer >= 1, got 'x'"),
        (_with(3, "Bob\t0\t3"), 3, "first image number must be an integer >= 1, got '0'"),
        (_with(7, "Fay\t2\tGus\t3"), 7, "mismatched pair (4 fields) inside the matched block"),
        (_with(9, "Gus\t1\t2"), 9, "matched pair (3 fields) inside the mismatched block"),
        (_with(8, "Eve\t1\tEve\t2"), 8, "mismatched pair of the same person"),
        (_with(6, "Eve\t2\t2"), 6, "matched pair of image 2 with itself"),
        (_with(5, ""), 5, "0 fields"),
        (GOOD_PAIRS[:-2], 8, "the file ends before pair 1 of the mismatched block of fold 2"),
        (GOOD_PAIRS + ["Ivy\t1\t2"], 10, "unexpected content after the last expected record"),
    ],
)
def test_malformed_pairs_name_file_and_line(tmp_path, lines, line, says):
    path = _write(tmp_path, lines)
    with pytest.raises(ProtocolFileError) as err:
        read_pairs(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: ")
    assert says in message
    assert (err.value.path, err.value.line) == (str(path), line)


def test_view1_header_means_one_fold(tmp_path):
    lines = ["2", "Ann\t1\t2", "Bob\t1\t3", "Ann\t1\tBob\t2", "Cid\t1\tDee\t1"]
    (fold,) = read_pairs(_write(tmp_path, lines))
    assert [p.same for p in fold] == [True, True, False, False]


def test_people_layouts(tmp_path):
    view2 = _write(tmp_path, ["2", "1", "Ann\t2", "2", "Bob\t3", "Cid\t1"], "people.txt")
    assert [[(p.name, p.n_images, p.line) for p in f] for f in read_people(view2)] == [
        [("Ann", 2, 3)], [("Bob", 3, 5), ("Cid", 1, 6)]
    ]
    view1 = _write(tmp_path, ["2", "Ann\t2", "Bob\t3"], "peopleDevTrain.txt")
    assert [[p.name for p in f] for f in read_people(view1)] == [["Ann", "Bob"]]


@pytest.mark.parametrize(
    ("lines", "line", "says"),
    [
        (["2", "1", "Ann\t2", "2", "Bob\t3"], 6, "the file ends before person 2 of fold 2"),
        (["2", "1", "Ann\t2", "Bob\t3", "Cid\t1"], 4, "where the count line of fold 2 was expected"),
        (["2", "1", "Ann\t2", "1", "Ann\t2"], 5, "'Ann' is already listed on line 3"),
        (["2", "1", "Ann\ttwo", "1", "Bob\t2"], 3, "number of images must be an integer"),
        (["1", "Ann\t2", "Bob\t3"], 3, "unexpected content after the last expected record"),
    ],
)
def test_malformed_people_name_file_and_line(tmp_path, lines, line, says):
    path = _write(tmp_path, lines, "people.txt")
    with pytest.raises(ProtocolFileError) as err:
        read_people(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert says in str(err.value)


def test_error_survives_pickling(tmp_path):
    # Errors raised in worker processes (joblib launcher) are pickled back to the parent.
    err = ProtocolFileError(tmp_path / "pairs.txt", 3, "bad", "Fix it.")
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.line) == (str(err), 3)
