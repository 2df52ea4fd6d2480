"""MemoryBank: ring-buffer writes, similarity reads, statistics, state."""

from __future__ import annotations

import torch

from refiner.config.sections import ModelConfig
from refiner.model.memory import MemoryBank, memory_read


def test_read_returns_the_nearest_entry_and_its_similarity():
    keys = torch.eye(4)
    values = torch.arange(16.0).view(4, 4)
    query = torch.tensor([[0.0, 0.0, 2.0, 0.1]])
    read, best = memory_read(query, keys, values, top_k=1)
    assert torch.allclose(read, values[2:3])
    assert best.item() > 0.99
    read2, _ = memory_read(query, keys, values, top_k=4)  # a softmax mix dominated by entry 2
    assert torch.allclose(read2, values[2:3], atol=0.5)


def test_empty_read_is_zero():
    read, best = memory_read(torch.ones(3, 4), torch.zeros(0, 4), torch.zeros(0, 4), top_k=2)
    assert torch.equal(read, torch.zeros(3, 4)) and torch.equal(best, torch.full((3,), -1.0))


def test_ring_buffer_overwrites_oldest_and_drops_non_finite():
    bank = MemoryBank(capacity=3, dim=2)
    bank.write(torch.tensor([[1.0, 0], [2, 0]]), torch.tensor([[1.0, 1], [2, 2]]))
    bank.write(torch.tensor([[3.0, 0], [float("nan"), 0], [4, 0]]), torch.ones(3, 2))
    keys, _ = bank.snapshot()
    assert sorted(keys[:, 0].tolist()) == [
        2.0,
        3.0,
        4.0,
    ]  # 1 was the oldest; the NaN row never lands
    stats = bank.get_stats()
    assert stats["size"] == 3 and stats["writes"] == 4 and stats["capacity"] == 3
    assert stats["bytes"] == 2 * 3 * 2 * 4


def test_hit_rate_counts_reads_above_threshold():
    bank = MemoryBank(capacity=4, dim=2, hit_threshold=0.9)
    bank.record_reads(torch.tensor([0.95, 0.5, 0.91, -1.0]))
    assert bank.get_stats()["hit_rate"] == 0.5 and bank.get_stats()["reads"] == 4


def test_state_round_trip():
    bank = MemoryBank(capacity=5, dim=3)
    bank.write(torch.randn(7, 3), torch.randn(7, 3))
    bank.record_reads(torch.tensor([0.99]))
    other = MemoryBank(capacity=5, dim=3)
    other.load_state_dict(bank.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(bank.snapshot(), other.snapshot(), strict=True))
    assert other.get_stats() == bank.get_stats() and other.next_slot == bank.next_slot


def test_from_config():
    assert MemoryBank.from_config(ModelConfig(memory_capacity=0)) is None
    bank = MemoryBank.from_config(
        ModelConfig(d_model=32, n_heads=2, memory_capacity=10, memory_top_k=3)
    )
    assert (bank.capacity, bank.dim, bank.top_k) == (10, 32, 3)
