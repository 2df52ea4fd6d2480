"""Read the four-column puzzle CSVs the field publishes (Sudoku-Extreme, Maze-Hard).

Layout: a header ``source,question,answer,rating``, then one puzzle per line with
``question`` and ``answer`` as fixed-length strings over a small alphabet (81 characters
for sudoku, 900 for a 30×30 maze) and an integer ``rating``. Each reader (``sudoku_csv``,
``maze``) gives the alphabet; problems are collected and reported by file and line, as
every task file is (``TaskFileError``), so a bad file never turns into a half-read table.
"""

from __future__ import annotations

import csv
import os
import random
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from refiner.tasks.problems import MAX_REPORTED_PROBLEMS, Problem, TaskFileError

HEADER = ("source", "question", "answer", "rating")


@dataclass(frozen=True)
class CsvPuzzle:
    """One line of the CSV, its strings already checked against the alphabet."""

    line: int  # 1-based line in the file (the header is line 1)
    source: str
    question: str
    answer: str
    rating: int


# A row check returns problems as (field, message); an empty list means the row is good.
RowCheck = Callable[[str, str], list[tuple[str, str]]]


def read_puzzle_csv(
    path: str | os.PathLike,
    length: int,
    question_chars: str,
    answer_chars: str,
    check: RowCheck | None = None,
    min_rating: int | None = None,
    count: int | None = None,
    seed: int = 0,
) -> list[CsvPuzzle]:
    """The puzzles of ``path`` with ``rating >= min_rating``; ``count`` of them sampled by seed.

    Every line's layout is validated (a bad line anywhere is an error, not a skipped row);
    ``check`` (e.g. "the answer solves the question"), which may be slow, runs on the kept
    puzzles only. The sample keeps file order. Raises TaskFileError naming file, line, field.
    """
    origin = str(path)
    if count is not None and count < 1:
        raise ValueError(f"{origin}: count must be >= 1, got {count}")
    # Pass 1 keeps only the line numbers of good rows: Sudoku-Extreme's train.csv has
    # millions of lines, and a run usually samples a thousand of them.
    kept = array("q")
    problems: list[Problem] = []
    total = 0
    with _reading(origin):
        for row, (line, fields) in enumerate(_records(path, origin)):
            found, puzzle = _parse(fields, line, length, question_chars, answer_chars)
            if found:
                total += len(found)
                for field, message in found:
                    if len(problems) < MAX_REPORTED_PROBLEMS:
                        problems.append(Problem(message, field=field, row=row, line=line))
            elif puzzle is not None and (min_rating is None or puzzle.rating >= min_rating):
                kept.append(line)
    if total:
        raise TaskFileError(origin, problems, total)
    if not kept:
        wanted = f" with rating >= {min_rating}" if min_rating is not None else ""
        raise TaskFileError(origin, [Problem(f"no puzzles{wanted} in the file")])
    if count is not None and count < len(kept):
        picked = random.Random(f"csv-sample-{seed}").sample(range(len(kept)), count)
        kept = array("q", sorted(kept[i] for i in picked))
    # Pass 2 reads the chosen lines again (already validated).
    wanted_lines = set(kept)
    puzzles: list[CsvPuzzle] = []
    with _reading(origin):
        for line, fields in _records(path, origin):
            if line in wanted_lines:
                puzzle = _parse(fields, line, length, question_chars, answer_chars)[1]
                assert puzzle is not None  # pass 1 validated every kept line
                puzzles.append(puzzle)
    if check is not None:
        for puzzle in puzzles:
            for field, message in check(puzzle.question, puzzle.answer):
                total += 1
                if len(problems) < MAX_REPORTED_PROBLEMS:
                    problems.append(Problem(message, field=field, line=puzzle.line))
        if total:
            raise TaskFileError(origin, problems, total)
    return puzzles


@contextmanager
def _reading(origin: str) -> Iterator[None]:
    """File-level read errors as TaskFileError naming the file."""
    try:
        yield
    except FileNotFoundError as err:
        raise TaskFileError(origin, [Problem("no such file")]) from err
    except (OSError, UnicodeDecodeError) as err:
        raise TaskFileError(origin, [Problem(f"cannot read as UTF-8 text: {err}")]) from err


def _records(path: str | os.PathLike, origin: str) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, fields) of each non-blank data line, after checking the header."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader([handle.readline()]), None)
        if header is None or tuple(h.strip() for h in header) != HEADER:
            raise TaskFileError(
                origin, [Problem(f"expected the header {','.join(HEADER)}, got {header}", line=1)]
            )
        for line, raw in enumerate(handle, start=2):
            if raw.strip():
                yield line, next(csv.reader([raw]))


def _parse(
    fields: list[str],
    line: int,
    length: int,
    question_chars: str,
    answer_chars: str,
) -> tuple[list[tuple[str | None, str]], CsvPuzzle | None]:
    if len(fields) != len(HEADER):
        return [
            (None, f"expected {len(HEADER)} fields ({','.join(HEADER)}), got {len(fields)}")
        ], None
    source, question, answer, rating_text = fields
    found: list[tuple[str | None, str]] = []
    for name, value, chars in (
        ("question", question, question_chars),
        ("answer", answer, answer_chars),
    ):
        if len(value) != length:
            found.append((name, f"expected {length} characters, got {len(value)}"))
            continue
        bad = sorted(set(value) - set(chars))
        if bad:
            allowed = ", ".join(repr(c) for c in chars)
            found.append(
                (name, f"unexpected character(s) {', '.join(map(repr, bad))}; allowed: {allowed}")
            )
    try:
        rating = int(rating_text.strip())
    except ValueError:
        found.append(("rating", f"expected an integer, got {rating_text!r}"))
        rating = 0
    if found:
        return found, None
    return [], CsvPuzzle(line, source, question, answer, rating)
