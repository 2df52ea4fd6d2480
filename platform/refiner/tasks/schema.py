"""The task format: one row = one task (an input/target pair).

| column       | type          | required | meaning                                                  |
|--------------|---------------|----------|----------------------------------------------------------|
| task_id      | string        | yes      | unique within a file                                     |
| task_type    | string        | yes      | one of TASK_TYPES                                        |
| input        | list<int32>   | yes      | token ids (see refiner.data.tokenizers), non-empty            |
| target       | list<int32>   | yes      | token ids, non-empty                                     |
| source       | string        | no ("")  | generator or benchmark: parity, sudoku, arc-agi-1, ...   |
| group_id     | string        | no (=id) | tasks that belong together (the pairs of one ARC puzzle) |
| split        | string        | no       | one of SPLITS, default "train"                           |
| height       | int32, null   | grids    | grid rows; len(input) == len(target) == height * width   |
| width        | int32, null   | grids    | grid columns                                             |
| num_symbols  | int32         | no       | alphabet size: ids must be < NUM_SPECIAL + num_symbols   |

Token ids are shared by all task types: ids below NUM_SPECIAL are special tokens (PAD,
MASK, SEP, EOS), content symbol ``s`` is ``NUM_SPECIAL + s`` (bytes for text).
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from refiner.data.tokenizers import MAX_SYMBOLS

TASK_TYPES = ("sequence", "grid", "text")
GRID_TASK_TYPES = ("grid",)
SPLITS = ("train", "val", "test")

TASK_SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("task_type", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("input", pa.list_(pa.int32()), nullable=False),
        pa.field("target", pa.list_(pa.int32()), nullable=False),
        pa.field("height", pa.int32(), nullable=True),
        pa.field("width", pa.int32(), nullable=True),
        pa.field("num_symbols", pa.int32(), nullable=False),
    ]
)
# Inputs to predict on: the same columns, the target optional (null where unknown).
UNLABELLED_SCHEMA = TASK_SCHEMA.set(
    TASK_SCHEMA.get_field_index("target"), TASK_SCHEMA.field("target").with_nullable(True)
)
REQUIRED_COLUMNS = ("task_id", "task_type", "input", "target")
DEFAULT_NUM_SYMBOLS = MAX_SYMBOLS


def describe_tasks(tasks: pa.Table) -> tuple[str, int]:
    """A run's task type (the most common one) and its alphabet size."""
    types = Counter(tasks.column("task_type").to_pylist())
    task_type = types.most_common(1)[0][0]
    return task_type, int(pc.max(tasks.column("num_symbols")).as_py())


def split_validation(tasks: pa.Table, val_split: str) -> tuple[pa.Table, pa.Table]:
    """(train rows, held-out rows): ``val_split`` if present, else "test", else none."""
    splits = tasks.column("split").to_numpy(zero_copy_only=False)
    train = tasks.filter(pa.array(splits == "train"))
    for name in (val_split, "test"):
        held_out = splits == name
        if held_out.any():
            return train, tasks.filter(pa.array(held_out))
    return train, tasks.slice(0, 0)
