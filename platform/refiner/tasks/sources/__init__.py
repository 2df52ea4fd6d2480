"""Built-in task sources. Each module exposes
``generate(count: int, size: int, seed: int, **options) -> pyarrow.Table`` in TASK_SCHEMA.

``load_source`` runs one by name (checking its options); ``load_tasks`` takes what a job's
``--task`` argument holds: a built-in source name or a path to a .parquet/.jsonl task file.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from refiner.tasks.io import FORMATS, read_tasks
from refiner.tasks.sources import arc, maze, parity, sudoku, text
from refiner.tasks.validation import validate_table

SOURCES: dict[str, Callable[..., pa.Table]] = {
    "parity": parity.generate,
    "sudoku": sudoku.generate,
    "arc": arc.generate,
    "text": text.generate,
    "maze": maze.generate,
}
READS_INPUT = ("text", "sudoku", "maze", "arc")  # sources whose ``input`` is a user's file/dir
DEFAULT_COUNTS = {"parity": 1000}  # the other sources default their count themselves


def source_options(name: str) -> list[str]:
    """The keyword options a source's ``generate`` accepts (beyond count/size/seed)."""
    params = inspect.signature(_source(name)).parameters.values()
    return [
        p.name
        for p in params
        if p.kind is not p.VAR_KEYWORD and p.name not in ("count", "size", "seed", "input")
    ]


def load_source(
    name: str,
    *,
    count: int | None = None,
    size: int | None = None,
    seed: int = 0,
    input: str | os.PathLike | None = None,
    **options: Any,
) -> pa.Table:
    """Generate tasks with the built-in source ``name``; None means the source's default."""
    generate = _source(name)
    if input is not None and name not in READS_INPUT:
        raise ValueError(f"source {name!r} reads no input file (only {', '.join(READS_INPUT)} do)")
    unknown = sorted(set(options) - set(source_options(name)))
    if unknown:
        known = ", ".join(source_options(name)) or "none"
        raise ValueError(f"source {name!r}: unknown option(s) {', '.join(unknown)}; known: {known}")
    kwargs: dict[str, Any] = {"seed": seed, **options}
    if count is None:
        count = DEFAULT_COUNTS.get(name)
    if count is not None:
        kwargs["count"] = count
    if size is not None:
        kwargs["size"] = size
    if input is not None:
        kwargs["input"] = input
    return validate_table(generate(**kwargs), origin=f"source {name!r}")


def load_tasks(spec: str | os.PathLike, *, count: int | None = None, **kwargs: Any) -> pa.Table:
    """Tasks from a built-in source name or a .parquet/.jsonl file (``--task SOURCE_OR_FILE``).

    For a file, ``count`` keeps its first rows and ``seed`` is ignored; other options
    (size, input, source options) belong to sources and are an error.
    """
    if isinstance(spec, str) and spec in SOURCES:
        return load_source(spec, count=count, **kwargs)
    if Path(spec).suffix.lower() not in FORMATS:
        raise ValueError(
            f"{str(spec)!r} is neither a built-in task source ({', '.join(SOURCES)})"
            f" nor a task file ({', '.join(FORMATS)})"
        )
    extra = sorted(k for k, v in kwargs.items() if v is not None and k != "seed")
    if extra:
        raise ValueError(f"options {', '.join(extra)} apply to built-in sources, not to {spec}")
    table = read_tasks(spec)
    return table if count is None else table.slice(0, count)


def _source(name: str) -> Callable[..., pa.Table]:
    if name not in SOURCES:
        raise ValueError(f"unknown task source {name!r}; built-in sources: {', '.join(SOURCES)}")
    return SOURCES[name]
