"""Sequences: prefix parity (a known label function) and generic sequences (none).

Parity ``paraphrase`` flips input bits with probability f/2 each (stream
"paraphrase/flip"; f = 1 gives a uniformly random input). Flipping input bit j flips
every target bit i >= j, so the target becomes ``target xor prefix_xor(flips)``: still
the prefix parity of the new input. Generic sequences have no label-consistent
transform: ``paraphrase``/``format_variation`` are no-ops there and are not recorded.
Input-only strategies: noise, then masking, then a cyclic roll of the input.
"""

from __future__ import annotations

import numpy as np

from refiner.augment.batch import TaskGroup
from refiner.augment.counter_rng import uniforms
from refiner.augment.input_only import noise_and_mask, roll_sequences, shift_offsets
from refiner.augment.rows import RowPlan
from refiner.augment.strategies import PARITY
from refiner.data.tokenizers import NUM_SPECIAL

PARITY_SYMBOLS = 2


def augment_sequences(
    group: TaskGroup, plan: RowPlan, out_inputs: np.ndarray, out_targets: np.ndarray
) -> None:
    """Write the group's augmented rows into ``out_inputs``/``out_targets`` (int32 ``[N, L]``)."""
    inputs = group.inputs[plan.task]
    targets = group.targets[plan.task]
    lengths = group.input_lengths[plan.task]
    if group.kind == PARITY:
        _check_parity(group)
        flips = parity_flips(plan, lengths, inputs.shape[1])
        if flips is not None:
            inputs, targets = apply_parity_flips(inputs, targets, flips)
    out_inputs[...] = apply_input_only(group, plan, inputs, lengths)
    out_targets[...] = targets


def parity_flips(plan: RowPlan, lengths: np.ndarray, width: int) -> np.ndarray | None:
    """int32 ``[N, width]`` 0/1 flip masks, or None when paraphrase is off."""
    strength = plan.strength("paraphrase")
    if strength is None:
        return None
    flips = uniforms(plan.seeds, "paraphrase/flip", width) < (strength / 2)[:, None]
    flips &= np.arange(width)[None, :] < lengths[:, None]
    return flips.astype(np.int32)


def apply_parity_flips(
    inputs: np.ndarray, targets: np.ndarray, flips: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flip input bits and every later target bit (an involution: also its own inverse)."""
    return inputs ^ flips, targets ^ (np.cumsum(flips, axis=1, dtype=np.int32) & 1)


def apply_input_only(
    group: TaskGroup, plan: RowPlan, inputs: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Noise and masking at content positions, then the cyclic shift."""
    content, counts = group.content_positions()
    row_counts = counts[plan.task]
    for edits in noise_and_mask(plan, row_counts, group.num_symbols[plan.task]):
        positions = content[plan.task[edits.rows], edits.choice]
        inputs[edits.rows, positions] = edits.values  # inputs is a per-row copy
    offsets = shift_offsets(plan, lengths)
    if offsets is not None:
        inputs = roll_sequences(inputs, lengths, offsets)
    return inputs


def _check_parity(group: TaskGroup) -> None:
    width = group.inputs.shape[1]
    inside = np.arange(width)[None, :] < group.input_lengths[:, None]
    for name, tokens in (("input", group.inputs), ("target", group.targets)):
        bits = tokens - NUM_SPECIAL
        bad = np.flatnonzero((inside & ((bits < 0) | (bits >= PARITY_SYMBOLS))).any(axis=1))
        if bad.size:
            raise ValueError(
                f"augment: parity task {group.task_ids[bad[0]]!r}: {name} holds tokens other"
                f" than the bits {NUM_SPECIAL} and {NUM_SPECIAL + 1}"
            )
