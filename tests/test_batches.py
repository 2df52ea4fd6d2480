"""Task rows -> padded batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refiner.data.batches import batch_from_arrays, batch_from_table, iterate_batches
from refiner.data.tokenizers import PAD
from refiner.tasks.sources import parity


def test_ragged_rows_are_padded_with_pad():
    b = batch_from_arrays(
        [[5, 6], [7, 8, 9]], np.array([np.array([4]), np.array([4, 4, 4])], dtype=object), 4
    )
    assert b["input"].tolist() == [[5, 6, PAD, PAD], [7, 8, 9, PAD]]
    assert b["target"].tolist() == [[4, PAD, PAD, PAD], [4, 4, 4, PAD]]
    assert b["input"].dtype == torch.long


def test_rectangular_arrays_and_overflow():
    b = batch_from_arrays(np.ones((2, 3), dtype=np.int32), np.zeros((2, 3), dtype=np.int32), 5)
    assert b["input"].shape == (2, 5) and b["input"][:, 3:].eq(PAD).all()
    with pytest.raises(ValueError, match="does not fit seq_len=2"):
        batch_from_arrays(np.ones((2, 3)), np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="2 inputs but 1 targets"):
        batch_from_arrays([[1], [2]], [[1]], 2)


def test_table_to_batch():
    table = parity.generate(10, size=6, seed=0)
    b = batch_from_table(table, 8)
    assert b["input"].shape == b["target"].shape == (10, 8)
    assert b["input"][0, :6].tolist() == table.column("input")[0].as_py()


def test_iterate_batches_is_a_seeded_permutation():
    data = {"input": torch.arange(10).view(10, 1), "target": torch.arange(10).view(10, 1)}
    epoch = list(iterate_batches(data, 4, seed=1))
    assert len(epoch) == 2 and all(b["input"].shape == (4, 1) for b in epoch)
    assert [b["input"].tolist() for b in epoch] == [
        b["input"].tolist() for b in iterate_batches(data, 4, seed=1)
    ]
    rows = torch.cat([b["input"] for b in iterate_batches(data, 4, seed=1, drop_last=False)]).view(
        -1
    )
    assert sorted(rows.tolist()) == list(range(10))
    assert all(torch.equal(b["input"], b["target"]) for b in epoch)
