"""What is wrong with a task file, said so that a user can fix it in one go: each
`Problem` names the row (and file line), task_id and field; `TaskFileError` lists the
first MAX_REPORTED_PROBLEMS of them with the total. Every reader and validator reports
through these."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

MAX_REPORTED_PROBLEMS = 10


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a task file; ``row`` is 0-based, ``line`` 1-based (jsonl)."""

    message: str
    field: str | None = None
    row: int | None = None
    task_id: str | None = None
    line: int | None = None

    def describe(self) -> str:
        where = []
        if self.row is not None:
            details = [f"line {self.line}"] if self.line is not None else []
            if self.task_id is not None:
                details.append(f"task_id {self.task_id!r}")
            where.append(f"row {self.row}" + (f" ({', '.join(details)})" if details else ""))
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return ", ".join(where) + (": " if where else "") + self.message


class TaskFileError(ValueError):
    """A task file or table breaks the format; ``problems`` lists what was found."""

    def __init__(self, origin: str, problems: Sequence[Problem], total: int | None = None) -> None:
        self.origin = origin
        self.problems = list(problems)
        self.total = total if total is not None else len(self.problems)
        super().__init__(self._message())

    def _message(self) -> str:
        if self.total == 1 and len(self.problems) == 1:
            return f"{self.origin}: {self.problems[0].describe()}"
        lines = [f"{self.origin}: {self.total} problems"]
        lines += [f"  {p.describe()}" for p in self.problems]
        if self.total > len(self.problems):
            lines.append(f"  ... and {self.total - len(self.problems)} more")
        return "\n".join(lines)


class ProblemCollector:
    """Gathers row problems from vectorised checks, keeping only what will be reported."""

    def __init__(
        self, task_ids: pa.Array, lines: np.ndarray | None, rows: np.ndarray | None
    ) -> None:
        self.task_ids = task_ids  # names rows in messages; replaced once normalised
        self._lines = lines
        self._rows = rows
        self.problems: list[Problem] = []
        self.total = 0

    def add_rows(self, rows: np.ndarray, field: str, message: Callable[[int], str]) -> None:
        """Report ``message(row)`` for every row index in ``rows`` (sorted ascending)."""
        rows = np.asarray(rows)
        self.total += len(rows)
        for row in rows[:MAX_REPORTED_PROBLEMS].tolist():
            self.problems.append(self.problem(row, field, message(row)))

    def problem(self, row: int, field: str | None, message: str) -> Problem:
        task_id = None
        if self.task_ids is not None and pa.types.is_string(self.task_ids.type):
            task_id = self.task_ids[row].as_py()
        line = int(self._lines[row]) if self._lines is not None else None
        file_row = int(self._rows[row]) if self._rows is not None else row
        return Problem(message, field=field, row=file_row, task_id=task_id, line=line)

    def raise_if_any(self, origin: str) -> None:
        if self.total:
            first = sorted(self.problems, key=lambda p: (p.row, p.field or ""))
            raise TaskFileError(origin, first[:MAX_REPORTED_PROBLEMS], self.total)
