"""What a served model knows about the tasks it was trained on, and how it answers.

A ``ServingProfile`` is taken from the training rows when the model is logged: the task
type, the alphabet, the input lengths (or grid shapes) seen in training, whether answers
have the input's length, and an input example in the task format. The served model uses
it to refuse what it cannot read (a token outside the alphabet: a request error naming
the row and column), to cut each answer to its length or grid shape, and to say when an
input's length or shape never occurred in training (a ``warning`` on that row) instead
of answering it silently. Pure Python/pyarrow: no MLflow here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refiner.data.tokenizers import NUM_SPECIAL, PAD
from refiner.tasks.problems import MAX_REPORTED_PROBLEMS, Problem, TaskFileError
from refiner.tasks.schema import describe_tasks

EXAMPLE_ROWS = 2
EXAMPLE_COLUMNS = ("task_id", "task_type", "input", "height", "width")


@dataclass
class ServingProfile:
    task_type: str
    num_symbols: int  # ids must be < NUM_SPECIAL + num_symbols
    lengths: list[int]  # input lengths seen in training (sequences, text)
    shapes: list[list[int]]  # [height, width] seen in training (grids)
    same_length: bool  # every training target is as long as its input
    example: list[dict[str, Any]] = field(default_factory=list)  # rows in the task format

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def read(cls, path: str | Path) -> ServingProfile:
        return cls(**json.loads(Path(path).read_text()))

    def check_tokens(self, tasks: pa.Table, origin: str = "request") -> None:
        """A TaskFileError naming the rows whose input holds an id outside the alphabet."""
        limit = NUM_SPECIAL + self.num_symbols
        problems = []
        for row, ids in enumerate(tasks.column("input").to_pylist()):
            bad = [t for t in ids if not 0 <= t < limit]
            if bad:
                problems.append(
                    Problem(
                        f"token {bad[0]} is outside the model's vocabulary (ids 0..{limit - 1})",
                        field="input",
                        row=row,
                        task_id=tasks.column("task_id")[row].as_py(),
                    )
                )
        if problems:
            raise TaskFileError(origin, problems[:MAX_REPORTED_PROBLEMS], len(problems))

    def warnings(self, tasks: pa.Table) -> list[str | None]:
        """Per row: a sentence when its length (grid shape) never occurred in training."""
        heights, widths = tasks.column("height").to_pylist(), tasks.column("width").to_pylist()
        lengths = pc.list_value_length(tasks.column("input")).to_pylist()
        shapes = {tuple(s) for s in self.shapes}
        out: list[str | None] = []
        for h, w, n in zip(heights, widths, lengths, strict=True):
            if h and w and shapes:
                seen = ", ".join(f"{a}x{b}" for a, b in sorted(shapes))
                out.append(
                    None if (h, w) in shapes else f"grid {h}x{w} never seen in training ({seen})"
                )
            elif self.lengths and n not in self.lengths:
                out.append(
                    f"input length {n} never seen in training (trained on {_span(self.lengths)})"
                )
            else:
                out.append(None)
        return out


def serving_profile(train: pa.Table, held_out: pa.Table | None = None) -> ServingProfile:
    """The profile of the training rows; the example comes from held-out rows if any."""
    task_type, num_symbols = describe_tasks(train)
    inputs = pc.list_value_length(train.column("input"))
    targets = pc.list_value_length(train.column("target"))
    heights, widths = train.column("height"), train.column("width")
    shapes = sorted(
        {(h, w) for h, w in zip(heights.to_pylist(), widths.to_pylist(), strict=True) if h and w}
    )
    source = held_out if held_out is not None and held_out.num_rows else train
    example = source.slice(0, EXAMPLE_ROWS).select(list(EXAMPLE_COLUMNS)).to_pylist()
    example = [{k: v for k, v in row.items() if v is not None} for row in example]
    return ServingProfile(
        task_type=task_type,
        num_symbols=num_symbols,
        lengths=sorted(set(inputs.to_pylist())),
        shapes=[list(s) for s in shapes],
        same_length=bool(pc.all(pc.equal(inputs, targets)).as_py()),
        example=example,
    )


def answer_lengths(tasks: pa.Table, profile: ServingProfile | None) -> list[int | None]:
    """How much of each canvas is the answer: a grid's height*width; the input's length
    where the model learned same-length answers; else None (the canvas up to its padding)."""
    heights, widths = tasks.column("height").to_pylist(), tasks.column("width").to_pylist()
    lengths = pc.list_value_length(tasks.column("input")).to_pylist()
    same = profile is not None and profile.same_length
    return [
        h * w if h and w else (n if same else None)
        for h, w, n in zip(heights, widths, lengths, strict=True)
    ]


def cut_answer(canvas: list[int], length: int | None) -> list[int]:
    """The answer part of a canvas: ``length`` ids, or up to the trailing padding."""
    if length is not None:
        return canvas[:length]
    end = len(canvas)
    while end and canvas[end - 1] == PAD:
        end -= 1
    return canvas[:end]


def _span(lengths: list[int]) -> str:
    if len(lengths) == 1:
        return f"{lengths[0]} tokens"
    if lengths == list(range(lengths[0], lengths[-1] + 1)):
        return f"{lengths[0]}-{lengths[-1]} tokens"
    return ", ".join(map(str, lengths)) + " tokens"
