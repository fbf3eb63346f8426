"""Parsers for the official LFW protocol files, strict enough to catch a corrupted copy.

An LFW number is only comparable to published ones when the folds are exactly the official
ones, so a truncated download or a hand-edited pairs file must fail loudly, at the line where
it goes wrong, instead of quietly shifting every later pair into the wrong fold or class.
Fields are separated by tabs in the official files; any run of whitespace is accepted.
Whitespace-only lines at the very end of a file are tolerated (an editor's extra newline);
anywhere else they are errors, because a blank line inside a block shifts all later lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from facebench.errors import DataError

_NUMBER = re.compile(r"[0-9]+")
_MAX_DIGITS = 9
#: Characters that would make a name reach outside its own folder under the data root.
_PATH_CHARACTERS = ("/", "\\", "\0")


class ProtocolFileError(DataError, ValueError):
    """A protocol file that does not follow the official layout.

    The message reads ``"<path>:<line>: <what is wrong>. <how to fix>"`` so editors and
    terminals can jump to the line.
    """

    def __init__(self, path: str | Path, line: int, problem: str, fix: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}:{line}: {problem}. {fix}")

    def __reduce__(self):
        # Rebuild from the parts: the default would call __init__ with the message only,
        # which breaks sending the error between processes (joblib, multiprocessing).
        return (type(self), (self.path, self.line, self.problem, self.fix))


@dataclass(frozen=True)
class PairRecord:
    """One pair of images: ``name1``'s image ``n1`` and ``name2``'s image ``n2`` (1-based).

    For a matched pair ``name2 == name1``. ``line`` is the 1-based line in the source file.
    """

    name1: str
    n1: int
    name2: str
    n2: int
    same: bool
    line: int


@dataclass(frozen=True)
class PeopleRecord:
    """One person with the number of images LFW has of them, and the source line."""

    name: str
    n_images: int
    line: int


def lfw_image_relpath(name: str, number: int) -> str:
    """Path of an LFW image relative to the dataset root, e.g. ``Abel_Pacheco/Abel_Pacheco_0001.jpg``."""
    return f"{name}/{name}_{number:04d}.jpg"


class _Lines:
    """The file's lines as whitespace-split fields, with a cursor and error helpers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        raw = self.path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise ProtocolFileError(
                self.path, line, f"not valid UTF-8 text ({e.reason})",
                "The file is probably not an LFW protocol file or is corrupted; download it again.",
            ) from None
        # Split on "\n" only (str.splitlines also breaks at form feeds and other separators,
        # which would shift the line numbers away from what an editor shows); a "\r" of a
        # CRLF file is whitespace and vanishes with the field splitting.
        lines = text.split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        self.fields = [ln.split() for ln in lines]
        self.pos = 0  # index of the next unread line; its line number is pos + 1

    def error(self, line: int, problem: str, fix: str) -> ProtocolFileError:
        return ProtocolFileError(self.path, line, problem, fix)

    def next(self, what: str, promised_by: str) -> tuple[int, list[str]]:
        """The next line's number and fields; a precise error where the file ends too early."""
        lineno = self.pos + 1
        if self.pos >= len(self.fields):
            raise self.error(
                lineno, f"the file ends before {what}; {promised_by}",
                "Restore the missing lines (download the file again) or correct the counts.",
            )
        self.pos += 1
        return lineno, self.fields[lineno - 1]

    def count(self, token: str, lineno: int, what: str, minimum: int) -> int:
        """A non-negative decimal integer field that must be at least ``minimum``.

        At most ``_MAX_DIGITS`` digits: no LFW count comes close, and Python refuses to convert
        integers of thousands of digits (a ValueError instead of this file's error).
        """
        if not _NUMBER.fullmatch(token) or len(token) > _MAX_DIGITS or int(token) < minimum:
            limit = f" of at most {_MAX_DIGITS} digits" if len(token) > _MAX_DIGITS else ""
            shown = token if len(token) <= 40 else f"{token[:40]}... ({len(token)} characters)"
            raise self.error(
                lineno, f"{what} must be an integer >= {minimum}{limit}, got {shown!r}",
                "Fix the field; LFW files hold plain decimal numbers only.",
            )
        return int(token)

    def name(self, token: str, lineno: int) -> str:
        """A person's name, which becomes a folder under the data root: one plain path component."""
        if token in (".", "..") or any(c in token for c in _PATH_CHARACTERS):
            raise self.error(
                lineno, f"person name {token!r} is not a plain folder name (it is '.' or '..', or holds a path "
                "separator or NUL)",
                "LFW names are single folder names such as Abel_Pacheco; fix the name (images are never read from "
                "outside the data root).",
            )
        return token

    def finish(self) -> None:
        """Refuse lines after the last expected record: the counts and the content disagree."""
        if self.pos < len(self.fields):
            lineno = self.pos + 1
            raise self.error(
                lineno, f"unexpected content after the last expected record: {' '.join(self.fields[lineno - 1])!r}",
                "The header counts promise fewer lines than the file holds; "
                "correct the counts or remove the extra lines.",
            )


def read_pairs(path: str | Path) -> list[list[PairRecord]]:
    """Folds of pairs from an LFW pairs file, matched pairs first in each fold, in file order.

    View 2 ``pairs.txt`` starts with ``n_folds<TAB>n_per_class`` (``10\\t300``); View 1
    ``pairsDevTrain.txt``/``pairsDevTest.txt`` start with ``n_per_class`` alone and form one
    fold. Each fold is ``n_per_class`` matched lines ``name n1 n2`` followed by
    ``n_per_class`` mismatched lines ``name1 n1 name2 n2``. File order is part of the
    protocol (it defines the folds), so it is kept.
    """
    f = _Lines(path)
    header_line, header = f.next("the header", "a pairs file starts with 'n_folds<TAB>n_per_class' or 'n_per_class'")
    if len(header) not in (1, 2):
        raise f.error(
            header_line, f"the header has {len(header)} fields, expected 1 or 2",
            "Use 'n_folds<TAB>n_per_class' (View 2 pairs.txt: '10\\t300') "
            "or 'n_per_class' (View 1: '1100' or '500').",
        )
    n_folds = f.count(header[0], header_line, "the number of folds", 1) if len(header) == 2 else 1
    n_per_class = f.count(header[-1], header_line, "the number of pairs per class", 1)
    promise = f"the header on line {header_line} promises {n_folds} fold(s) of {n_per_class} matched + {n_per_class} mismatched pairs"

    folds: list[list[PairRecord]] = []
    for k in range(n_folds):
        fold: list[PairRecord] = []
        for same, n_fields, layout in ((True, 3, "name n1 n2"), (False, 4, "name1 n1 name2 n2")):
            block = f"the {'matched' if same else 'mismatched'} block of fold {k + 1}"
            for i in range(n_per_class):
                lineno, fields = f.next(f"pair {i + 1} of {block}", promise)
                if len(fields) != n_fields:
                    hint = {
                        (True, 4): "a mismatched pair (4 fields) inside the matched block",
                        (False, 3): "a matched pair (3 fields) inside the mismatched block",
                    }.get((same, len(fields)), f"{len(fields)} fields")
                    raise f.error(
                        lineno, f"{hint}: pair {i + 1} of {block} must be '{layout}'",
                        f"Each fold lists its {n_per_class} matched pairs, then its {n_per_class} "
                        "mismatched pairs; check the line and the header counts.",
                    )
                if same:
                    name1 = name2 = f.name(fields[0], lineno)
                    n1 = f.count(fields[1], lineno, "the first image number", 1)
                    n2 = f.count(fields[2], lineno, "the second image number", 1)
                    if n1 == n2:
                        raise f.error(
                            lineno, f"a matched pair of image {n1} with itself",
                            "A matched pair needs two different images of the person.",
                        )
                else:
                    name1, name2 = f.name(fields[0], lineno), f.name(fields[2], lineno)
                    n1 = f.count(fields[1], lineno, "the first image number", 1)
                    n2 = f.count(fields[3], lineno, "the second image number", 1)
                    if name1 == name2:
                        raise f.error(
                            lineno, f"a mismatched pair of the same person {name1!r}",
                            "Mismatched pairs must name two different people.",
                        )
                fold.append(PairRecord(name1, n1, name2, n2, same, lineno))
        folds.append(fold)
    f.finish()
    return folds


def _read_person(f: _Lines, what: str, promise: str) -> PeopleRecord:
    lineno, fields = f.next(what, promise)
    if len(fields) != 2:
        raise f.error(
            lineno, f"{len(fields)} fields where {what} ('name<TAB>n_images') was expected",
            "Check the line and the count line of its block.",
        )
    return PeopleRecord(f.name(fields[0], lineno), f.count(fields[1], lineno, "the number of images", 1), lineno)


def _read_people_block(f: _Lines, fold: int, count_line: int, n_people: int) -> list[PeopleRecord]:
    promise = f"line {count_line} promises {n_people} people in fold {fold}"
    return [_read_person(f, f"person {i + 1} of fold {fold}", promise) for i in range(n_people)]


def _refuse_duplicates(f: _Lines, people: list[PeopleRecord]) -> None:
    first_seen: dict[str, int] = {}
    for p in people:
        if p.name in first_seen:
            raise f.error(
                p.line, f"{p.name!r} is already listed on line {first_seen[p.name]}",
                "Each person is listed once (in exactly one fold); remove the duplicate.",
            )
        first_seen[p.name] = p.line


def read_people(path: str | Path) -> list[list[PeopleRecord]]:
    """Folds of people from ``people.txt`` (View 2) or ``peopleDevTrain/DevTest.txt`` (View 1).

    ``people.txt`` starts with the number of folds, then each fold is a count line followed by
    that many ``name<TAB>n_images`` lines; the View 1 files are a count line and the people,
    one fold. The two layouts are told apart by the second line: a lone number there is a
    fold's count line. A person listed twice is refused, since the folds of people must be
    disjoint for the no-outside-data regime to mean anything.
    """
    f = _Lines(path)
    first_line, first = f.next("the first line", "a people file starts with a count")
    if len(first) != 1:
        raise f.error(
            first_line, f"the first line has {len(first)} fields, expected a single count",
            "people.txt starts with the number of folds ('10'); "
            "peopleDevTrain/DevTest.txt with the number of people.",
        )
    if len(f.fields) > 1 and len(f.fields[1]) == 1:
        n_folds = f.count(first[0], first_line, "the number of folds", 1)
        folds = []
        for k in range(1, n_folds + 1):
            count_line, fields = f.next(f"the count line of fold {k}", f"line {first_line} promises {n_folds} folds")
            if len(fields) != 1:
                raise f.error(
                    count_line, f"{len(fields)} fields where the count line of fold {k} was expected",
                    "Each fold starts with a line holding only its number of people; "
                    "check the previous fold's count.",
                )
            n_people = f.count(fields[0], count_line, f"the number of people of fold {k}", 1)
            folds.append(_read_people_block(f, k, count_line, n_people))
    else:
        folds = [_read_people_block(f, 1, first_line, f.count(first[0], first_line, "the number of people", 1))]
    _refuse_duplicates(f, [p for fold in folds for p in fold])
    f.finish()
    return folds


def read_lfw_names(path: str | Path) -> list[PeopleRecord]:
    """Every LFW person with their image count, from ``lfw-names.txt`` (``name<TAB>count`` lines, no header)."""
    f = _Lines(path)
    people = [_read_person(f, f"person {i + 1}", "the file lists one person per line") for i in range(len(f.fields))]
    _refuse_duplicates(f, people)
    return people
