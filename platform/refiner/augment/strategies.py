"""Strategy names (the seed's vocabulary) and the task kinds the engine tells apart.

Input-only strategies perturb the input and leave the target exact; label-consistent
ones transform input and target together, so the pair stays correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

InputOnlyStrategy = Literal["token_noise", "position_shift", "masking"]
LabelConsistentStrategy = Literal["paraphrase", "format_variation"]
AugmentationStrategy = Literal[InputOnlyStrategy, LabelConsistentStrategy]

INPUT_ONLY_STRATEGIES: tuple[str, ...] = get_args(InputOnlyStrategy)
LABEL_CONSISTENT_STRATEGIES: tuple[LabelConsistentStrategy, ...] = get_args(LabelConsistentStrategy)
STRATEGIES: tuple[str, ...] = get_args(AugmentationStrategy)

# Task kinds: how a row is augmented. Derived from task_type and source (see batch.py).
SUDOKU, GRID, PARITY, SEQUENCE, TEXT = "sudoku", "grid", "parity", "sequence", "text"
KINDS = (SUDOKU, GRID, PARITY, SEQUENCE, TEXT)

# Which strategies do something for a kind; the others are no-ops and are not recorded.
APPLICABLE: dict[str, tuple[str, ...]] = {
    SUDOKU: STRATEGIES,
    GRID: STRATEGIES,
    PARITY: INPUT_ONLY_STRATEGIES + ("paraphrase",),
    SEQUENCE: INPUT_ONLY_STRATEGIES,
    TEXT: STRATEGIES,
}

# Input-only strategies that make wrong labels for a kind (the kept target no longer
# answers the perturbed input), refused by ``label_breaking``. Parity: every input bit
# decides the target, so a flipped, masked or moved bit changes the answer. Sudoku: a
# changed or moved given makes another puzzle; a masked given leaves the target a
# solution of the puzzle, so masking stays allowed.
LABEL_BREAKING: dict[str, tuple[str, ...]] = {
    PARITY: INPUT_ONLY_STRATEGIES,
    SUDOKU: ("token_noise", "position_shift"),
}


def label_breaking(strategies: Sequence[str], kind: str) -> list[str]:
    """The strategies among ``strategies`` that make wrong labels for tasks of ``kind``."""
    return [s for s in strategies if s in LABEL_BREAKING.get(kind, ())]
