"""Counter-based randomness: every draw is a pure function of (seed, task, epoch, index).

No generator state is carried from row to row, so a row comes out the same on any
worker, in any order and in any batch split. The recipe:

    task_key  = splitmix64(seed ^ blake2b64(task_id))        # blake2b: stable, unlike hash()
    epoch_key = splitmix64(task_key ^ splitmix64(epoch))
    row_seed  = splitmix64(epoch_key ^ splitmix64(index))
    draw j of stream s = splitmix64(splitmix64(row_seed ^ key(s)) + j * GOLDEN)  (j = 0, 1, ...)

A stream is a named purpose ("paraphrase/order", ...), so each strategy's draws stay
the same whatever else is enabled, and a row using the first k draws of a stream gets
the same values however many draws its batch needed. Uniforms are the top 53 bits.

The ``*_scalar`` twins use Python integers, for the per-row reference implementation;
tests check that both give identical bits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_U64_GOLDEN = np.uint64(GOLDEN)
_U64_MIX1 = np.uint64(_MIX1)
_U64_MIX2 = np.uint64(_MIX2)
_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11))
_TO_UNIT = 2.0**-53


def _mix_inplace(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, in place on a uint64 array (wrapping arithmetic)."""
    z ^= z >> _SHIFTS[0]
    z *= _U64_MIX1
    z ^= z >> _SHIFTS[1]
    z *= _U64_MIX2
    z ^= z >> _SHIFTS[2]
    return z


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 of every element of a uint64 array (a new array)."""
    z = np.asarray(x, dtype=np.uint64) + _U64_GOLDEN
    return _mix_inplace(z)


def splitmix64_scalar(x: int) -> int:
    z = (x + GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & MASK64
    return z ^ (z >> 31)


def stable_hash64(text: str) -> int:
    """A 64-bit hash of a string that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


_STREAM_KEYS: dict[str, int] = {}


def stream_key(name: str) -> int:
    key = _STREAM_KEYS.get(name)
    if key is None:
        key = _STREAM_KEYS[name] = stable_hash64("refiner.augment/" + name)
    return key


def task_hashes(task_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """uint64 hash per task id (one blake2b per task, not per row)."""
    return np.fromiter(
        (stable_hash64(str(t)) for t in task_ids), dtype=np.uint64, count=len(task_ids)
    )


def row_seeds(seed: int, hashes: np.ndarray, epochs: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """uint64 ``[tasks, len(indices)]``: the seed of row ``indices[j]`` of task i in ``epochs[i]``."""
    seed64 = np.uint64(seed & MASK64)
    task_key = splitmix64(hashes ^ seed64)
    epochs64 = (np.asarray(epochs, dtype=np.int64).astype(np.uint64)).reshape(-1)
    epoch_key = splitmix64(task_key ^ splitmix64(epochs64))
    index_key = splitmix64(np.asarray(indices, dtype=np.int64).astype(np.uint64))
    return splitmix64(epoch_key[:, None] ^ index_key[None, :])


def group_copy_seeds(seed: int, group_ids: Sequence[str] | np.ndarray, count: int) -> np.ndarray:
    """uint64 ``[len(group_ids), count]``: the seed of copy ``i`` of every task of a group,
    the same in every epoch (``AugmentationSpec.seed_by_group``)."""
    return row_seeds(
        seed, task_hashes(group_ids), np.zeros(len(group_ids), np.int64), np.arange(count)
    )


def row_seed_scalar(seed: int, task_id: str, epoch: int, index: int) -> int:
    task_key = splitmix64_scalar((seed & MASK64) ^ stable_hash64(task_id))
    epoch_key = splitmix64_scalar(task_key ^ splitmix64_scalar(epoch & MASK64))
    return splitmix64_scalar(epoch_key ^ splitmix64_scalar(index & MASK64))


def random_bits(seeds: np.ndarray, stream: str, k: int) -> np.ndarray:
    """uint64 ``[N, k]``: draws 0..k-1 of ``stream`` for each row seed."""
    base = splitmix64(seeds ^ np.uint64(stream_key(stream)))
    steps = (np.arange(k, dtype=np.uint64) + np.uint64(1)) * _U64_GOLDEN  # wraps mod 2**64
    z = base[:, None] + steps[None, :]
    return _mix_inplace(z)


def uniforms(seeds: np.ndarray, stream: str, k: int) -> np.ndarray:
    """float64 ``[N, k]`` in [0, 1): draws 0..k-1 of ``stream`` for each row seed."""
    bits = random_bits(seeds, stream, k)
    bits >>= _SHIFTS[3]
    return bits.astype(np.float64) * _TO_UNIT


def uniforms_at(seeds: np.ndarray, stream: str, draws: np.ndarray) -> np.ndarray:
    """float64 per entry: draw ``draws[m]`` of ``stream`` for row seed ``seeds[m]``.

    The same values as ``uniforms(seeds, stream, k)[:, j]``, computed only where needed
    (rows drawing different numbers of values).
    """
    z = splitmix64(seeds ^ np.uint64(stream_key(stream)))
    z += (draws.astype(np.uint64) + np.uint64(1)) * _U64_GOLDEN
    _mix_inplace(z)
    z >>= _SHIFTS[3]
    return z.astype(np.float64) * _TO_UNIT


def uniforms_scalar(seed: int, stream: str, k: int) -> list[float]:
    base = splitmix64_scalar(seed ^ stream_key(stream))
    return [(splitmix64_scalar((base + j * GOLDEN) & MASK64) >> 11) * _TO_UNIT for j in range(k)]


def integers_below(u: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """floor(u * n) as int64: a uniform integer in [0, n) from a uniform in [0, 1)."""
    return np.floor(u * n).astype(np.int64)
