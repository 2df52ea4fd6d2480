"""Text (byte tokens): consistent relabellings of input and target, as one byte map per row.

What counts as consistent: a bijection on bytes applied to input and target alike keeps
every relation between them that does not depend on which byte is which (copying,
reversing, reordering words, extracting fields). Tasks that depend on letter identity
(sorting letters, counting vowels, upper-casing, an instruction written in the input)
are not invariant: leave ``paraphrase``/``format_variation`` out for such data.

- ``paraphrase``: a letter substitution. A fraction f of the 26 letters are shuffled among
  themselves (streams "paraphrase/pick"/"paraphrase/order"); the same substitution is
  applied to lower and upper case, so case is preserved.
- ``format_variation``: with probability f each component is drawn uniformly from its
  group: swapcase of ASCII letters (component 0, stream "format_variation/case"), space
  <-> newline (component 1, "format_variation/whitespace"), a permutation of the
  separators ``,;|`` (component 2, "format_variation/separators").

Only ASCII bytes change, so UTF-8 text stays valid UTF-8. Every map is a bijection, so
``inverse`` undoes it exactly.
"""

from __future__ import annotations

import numpy as np

from refiner.augment.batch import TaskGroup
from refiner.augment.counter_rng import uniforms
from refiner.augment.rows import RowPlan
from refiner.augment.sequence import apply_input_only
from refiner.augment.symmetry import (
    components_drawn,
    draw_relabelling,
    permutations_or_identity,
)
from refiner.data.tokenizers import NUM_SPECIAL

LETTERS = 26
LOWER_A = NUM_SPECIAL + ord("a")
UPPER_A = NUM_SPECIAL + ord("A")
SPACE, NEWLINE = NUM_SPECIAL + ord(" "), NUM_SPECIAL + ord("\n")
SEPARATORS = np.array([NUM_SPECIAL + ord(c) for c in ",;|"])
MAP_WIDTH = NUM_SPECIAL + 128  # ASCII; other bytes map to themselves


def augment_text(
    group: TaskGroup, plan: RowPlan, out_inputs: np.ndarray, out_targets: np.ndarray
) -> None:
    """Write the group's augmented rows into ``out_inputs``/``out_targets`` (int32 ``[N, L]``)."""
    inputs = group.inputs[plan.task]
    targets = group.targets[plan.task]
    byte_map = draw_byte_map(plan)
    if byte_map is not None:
        inputs, targets = apply_byte_map(byte_map, inputs), apply_byte_map(byte_map, targets)
    out_inputs[...] = apply_input_only(group, plan, inputs, group.input_lengths[plan.task])
    out_targets[...] = targets


def draw_byte_map(plan: RowPlan) -> np.ndarray | None:
    """int32 ``[N, MAP_WIDTH]`` token map per row, or None when both strategies are off."""
    letters, formats = plan.strength("paraphrase"), plan.strength("format_variation")
    if letters is None and formats is None:
        return None
    rows = len(plan)
    byte_map = np.broadcast_to(np.arange(MAP_WIDTH, dtype=np.int32), (rows, MAP_WIDTH)).copy()
    perm = np.broadcast_to(np.arange(LETTERS), (rows, LETTERS))
    if letters is not None:
        perm = draw_relabelling(plan.seeds, letters, np.full(rows, LETTERS), LETTERS)
    swapcase = np.zeros(rows, dtype=bool)
    if formats is not None:
        drawn = components_drawn(plan.seeds, formats, 3)
        swapcase = _swap(plan, drawn[:, 0], "format_variation/case")
        spaces = _swap(plan, drawn[:, 1], "format_variation/whitespace")
        byte_map[spaces, SPACE], byte_map[spaces, NEWLINE] = NEWLINE, SPACE
        separators = permutations_or_identity(
            plan.seeds, drawn[:, 2], "format_variation/separators", len(SEPARATORS)
        )
        byte_map[:, SEPARATORS] = SEPARATORS[separators]
    lower_to = np.where(swapcase[:, None], UPPER_A, LOWER_A) + perm
    upper_to = np.where(swapcase[:, None], LOWER_A, UPPER_A) + perm
    byte_map[:, LOWER_A : LOWER_A + LETTERS] = lower_to
    byte_map[:, UPPER_A : UPPER_A + LETTERS] = upper_to
    return byte_map


def apply_byte_map(byte_map: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Tokens mapped row by row; tokens past the map (non-ASCII bytes) unchanged."""
    inside = tokens < byte_map.shape[1]
    mapped = np.take_along_axis(byte_map, np.where(inside, tokens, 0), axis=1)
    return np.where(inside, mapped, tokens).astype(np.int32)


def invert_byte_map(byte_map: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(byte_map)
    np.put_along_axis(inverse, byte_map, np.arange(byte_map.shape[1])[None, :], axis=1)
    return inverse


def _swap(plan: RowPlan, drawn: np.ndarray, stream: str) -> np.ndarray:
    """Rows whose two-element component (identity or swap) is drawn and comes out as swap."""
    return drawn & (uniforms(plan.seeds, stream, 1)[:, 0] < 0.5)
