"""De-duplication of augmented rows: drop a row whose (input, target) equals an earlier row
of the same task, keeping order. Rows are hashed (vectorised), equal hashes are then
compared in full, so a hash collision never drops a distinct row."""

from __future__ import annotations

import numpy as np

from refiner.augment.counter_rng import splitmix64

_WEIGHTS_SEED = 0x5EED_D00D


def _row_hashes(tokens: np.ndarray) -> np.ndarray:
    """uint64 per row: a random-weight linear hash of the row's tokens (mod 2**64)."""
    weights = splitmix64(np.arange(tokens.shape[1], dtype=np.uint64) + np.uint64(_WEIGHTS_SEED))
    weights |= np.uint64(1)
    return (tokens.astype(np.uint64) * weights[None, :]).sum(axis=1, dtype=np.uint64)


def first_occurrences(task: np.ndarray, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """bool per row: True unless an earlier row of the same task has the same pair."""
    key = splitmix64(_row_hashes(inputs) ^ splitmix64(task.astype(np.uint64)))
    key = splitmix64(key ^ _row_hashes(targets))
    order = np.argsort(key, kind="stable")  # equal keys stay in row order
    sorted_keys = key[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first_of_run = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
    keep = np.ones(len(order), dtype=bool)
    repeats = order[~starts]
    firsts = first_of_run[~starts]
    same = (
        (task[repeats] == task[firsts])
        & (inputs[repeats] == inputs[firsts]).all(axis=1)
        & (targets[repeats] == targets[firsts]).all(axis=1)
    )
    keep[repeats[same]] = False
    return keep
