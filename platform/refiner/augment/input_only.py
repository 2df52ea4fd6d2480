"""Draws for the input-only strategies, shared by every kind (targets are never touched).

- ``token_noise``: ``k = floor(f*n + 0.5)`` draws (n = the input's content tokens, f the
  row's intensity); draw j picks content token ``floor(u*n)`` (stream
  "token_noise/position") and writes a random symbol of the task's alphabet,
  ``NUM_SPECIAL + floor(u*num_symbols)`` ("token_noise/symbol"). Positions are drawn
  with replacement, so the realised fraction is at most f (a repeat pick keeps the later
  symbol; a symbol may equal the one it replaces).
- ``masking``: the same with "masking/position", writing MASK; applied after noise.
- ``position_shift``: reach ``K = floor(f*length)`` raised to at least 1 and capped at
  ``length - 1`` (0 when f = 0 or length <= 1), offset a uniform *non-zero* integer in
  ``[-K, K]`` (stream "position_shift/offset", draw 0 for rows/sequences, draw 1 for grid
  columns): a row labelled with position_shift is shifted, also on short inputs (a 9x9
  sudoku, 8-bit parity) where ``floor(f*length)`` is 0 at the default intensity. How a
  kind applies the offset is in its module (sequences roll cyclically).

Noise and mask positions are drawn among the task's original content positions and
follow the row's layout transform, so they land on content cells of the augmented input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refiner.augment.counter_rng import integers_below, uniforms, uniforms_at
from refiner.augment.rows import RowPlan
from refiner.data.tokenizers import MASK, NUM_SPECIAL


@dataclass
class SparseEdits:
    """Token writes, in (row, draw) order: ``rows[m]`` gets ``values[m]`` at content ``choice[m]``."""

    rows: np.ndarray  # int64 [M], index into the plan's rows
    choice: np.ndarray  # int64 [M], index into that row's content positions
    values: np.ndarray  # int64 [M], token ids


def draw_edits(
    plan: RowPlan, strategy: str, content_counts: np.ndarray, alphabet: np.ndarray | None = None
) -> SparseEdits | None:
    """Noise (``alphabet`` given) or mask edits for every row; None when there are none."""
    strength = plan.strength(strategy)
    if strength is None:
        return None
    draws = np.floor(strength * content_counts + 0.5).astype(np.int64)
    total = int(draws.sum())
    if total == 0:
        return None
    # Only the draws rows use: row r gets draws 0..draws[r]-1 of each stream.
    rows = np.repeat(np.arange(len(draws)), draws)
    counters = np.arange(total) - np.repeat(np.cumsum(draws) - draws, draws)
    seeds = plan.seeds[rows]
    picks = uniforms_at(seeds, f"{strategy}/position", counters)
    choice = integers_below(picks, content_counts[rows])
    if alphabet is None:
        values = np.full(total, MASK, dtype=np.int64)
    else:
        symbols = uniforms_at(seeds, f"{strategy}/symbol", counters)
        values = NUM_SPECIAL + integers_below(symbols, alphabet[rows])
    return SparseEdits(rows, choice, values)


def noise_and_mask(
    plan: RowPlan, content_counts: np.ndarray, alphabet: np.ndarray
) -> list[SparseEdits]:
    """The edits to apply, in order: token noise, then masking."""
    edits = [
        draw_edits(plan, "token_noise", content_counts, alphabet),
        draw_edits(plan, "masking", content_counts),
    ]
    return [e for e in edits if e is not None]


def shift_offsets(plan: RowPlan, lengths: np.ndarray, axis: int = 0) -> np.ndarray | None:
    """int64 offset per row in ``[-K, K]``, ``K = floor(f*length)``; None when not enabled."""
    strength = plan.strength("position_shift")
    if strength is None:
        return None
    reach = shift_reach(strength, lengths)
    u = uniforms(plan.seeds, "position_shift/offset", axis + 1)[:, axis]
    return nonzero_offsets(u, -reach, reach)


def shift_reach(strength: np.ndarray, lengths: np.ndarray | int) -> np.ndarray:
    """int64 ``K = floor(f*length)``, at least 1 where f > 0, at most ``length - 1``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    reach = np.maximum(np.floor(strength * lengths).astype(np.int64), 1)
    reach = np.minimum(reach, lengths - 1)
    return np.where((strength > 0) & (lengths > 1), reach, 0)


def nonzero_offsets(u: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A uniform non-zero integer in ``[low, high]`` (``low <= 0 <= high``); 0 if none."""
    span = high - low
    value = low + integers_below(u, np.maximum(span, 1))
    return np.where(span > 0, value + (value >= 0), 0)


def roll_sequences(tokens: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each row's first ``lengths[r]`` tokens rolled right by ``offsets[r]`` (padding stays)."""
    columns = np.arange(tokens.shape[1])[None, :]
    source = (columns - offsets[:, None]) % np.maximum(lengths, 1)[:, None]
    source = np.where(columns < lengths[:, None], source, columns)
    return np.take_along_axis(tokens, source, axis=1)
