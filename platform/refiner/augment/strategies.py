"""Strategy names (the seed's vocabulary) and the task kinds the engine tells apart.

Input-only strategies perturb the input and leave the target exact; label-consistent
ones transform input and target together, so the pair stays correct.
"""

from __future__ import annotations

INPUT_ONLY_STRATEGIES = ("token_noise", "position_shift", "masking")
LABEL_CONSISTENT_STRATEGIES = ("paraphrase", "format_variation")
STRATEGIES = INPUT_ONLY_STRATEGIES + LABEL_CONSISTENT_STRATEGIES

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
