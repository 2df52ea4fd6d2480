"""MemoryBank: a fixed-capacity key/value store of latent summaries, read by similarity.

Keys and values are d_model vectors. The orchestrator writes the pooled (input + latent)
summary of solved training samples as keys and their pooled final latent as values; at
every refinement step the model reads the top-k entries most similar (cosine) to its own
current summary and mixes their values into the step's input (`memory_read`).

The bank is deliberately not an `nn.Module` buffer: it is per-process state (DDP would
broadcast buffers from rank 0 every forward) that checkpoints save via `state_dict()`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from refiner.config.sections import ModelConfig

READ_TEMPERATURE = 0.1  # softmax temperature over the top-k cosine similarities


def memory_read(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity read: `query` [B, D] -> (mixed values [B, D], best similarity [B]).

    An empty bank reads zeros with similarity -1.
    """
    if keys.shape[0] == 0:
        return query.new_zeros(query.shape), query.new_full(query.shape[:1], -1.0)
    sims = F.normalize(query.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T  # [B, M]
    top = sims.topk(min(top_k, keys.shape[0]), dim=-1)
    weights = torch.softmax(top.values / READ_TEMPERATURE, dim=-1)  # [B, k]
    read = torch.einsum("bk,bkd->bd", weights, values.float()[top.indices])
    return read.to(query.dtype), top.values[:, 0]


class MemoryBank:
    """Ring buffer of (key, value) vectors with read/write statistics."""

    def __init__(
        self,
        capacity: int,
        dim: int,
        top_k: int = 4,
        hit_threshold: float = 0.9,
        device: torch.device | str = "cpu",
    ) -> None:
        if capacity < 0 or dim < 1 or top_k < 1:
            raise ValueError(
                f"MemoryBank needs capacity >= 0, dim >= 1, top_k >= 1; got {capacity}, {dim}, {top_k}"
            )
        self.capacity, self.dim, self.top_k, self.hit_threshold = (
            capacity,
            dim,
            top_k,
            hit_threshold,
        )
        self.keys = torch.zeros(capacity, dim, device=device)
        self.values = torch.zeros(capacity, dim, device=device)
        self.size = 0  # filled entries
        self.next_slot = 0  # where the next write goes (oldest entry once full)
        self.reads = self.hits = self.writes = 0

    @classmethod
    def from_config(
        cls, model_config: ModelConfig, device: torch.device | str = "cpu"
    ) -> MemoryBank | None:
        """The bank a ModelConfig asks for, or None when `memory_capacity` is 0."""
        if model_config.memory_capacity == 0:
            return None
        return cls(
            model_config.memory_capacity,
            model_config.d_model,
            model_config.memory_top_k,
            model_config.memory_hit_threshold,
            device,
        )

    def to(self, device: torch.device | str) -> MemoryBank:
        self.keys, self.values = self.keys.to(device), self.values.to(device)
        return self

    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled entries (views), as the model's forward takes them."""
        return self.keys[: self.size], self.values[: self.size]

    @torch.no_grad()
    def write(self, keys: torch.Tensor, values: torch.Tensor) -> int:
        """Store rows (oldest entries are overwritten when full); non-finite rows are dropped."""
        if self.capacity == 0 or keys.shape[0] == 0:
            return 0
        finite = torch.isfinite(keys).all(-1) & torch.isfinite(values).all(-1)
        keys, values = keys[finite][-self.capacity :], values[finite][-self.capacity :]
        n = keys.shape[0]
        slots = (self.next_slot + torch.arange(n)) % self.capacity
        self.keys[slots.to(self.keys.device)] = keys.detach().to(self.keys)
        self.values[slots.to(self.values.device)] = values.detach().to(self.values)
        self.next_slot = (self.next_slot + n) % self.capacity
        self.size = min(self.capacity, self.size + n)
        self.writes += n
        return n

    def write_solved(
        self, summary: torch.Tensor, latent: torch.Tensor, solved: torch.Tensor, limit: int
    ) -> None:
        """Write up to `limit` solved rows of an unroll: summary [B, D] as keys, the pooled
        final latent [B, L, D] as values."""
        if limit == 0:
            return
        rows = solved.nonzero().squeeze(1)[:limit]
        if rows.numel():
            self.write(summary[rows].float(), latent[rows].mean(1).float())

    def record_unroll_reads(self, similarities: list[torch.Tensor | None]) -> None:
        """Count the reads of every step of an unroll (each step's best similarity [B],
        None where it read nothing) in one host transfer."""
        if self.size == 0:
            return
        reads = [s for s in similarities if s is not None]
        if reads:
            self.record_reads(torch.cat(reads))

    def record_reads(self, best_similarity: torch.Tensor) -> None:
        """Count reads and hits (best similarity >= hit_threshold) of one step."""
        self.reads += int(best_similarity.numel())
        self.hits += int((best_similarity >= self.hit_threshold).sum())

    def get_stats(self) -> dict[str, float | int]:
        return {
            "capacity": self.capacity,
            "size": self.size,
            "reads": self.reads,
            "writes": self.writes,
            "hits": self.hits,
            "hit_rate": self.hits / self.reads if self.reads else 0.0,
            "bytes": self.keys.element_size() * (self.keys.numel() + self.values.numel()),
        }

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "dim": self.dim,
            "keys": self.keys[: self.size].cpu().clone(),
            "values": self.values[: self.size].cpu().clone(),
            "next_slot": self.next_slot,
            "reads": self.reads,
            "hits": self.hits,
            "writes": self.writes,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity or state["dim"] != self.dim:
            raise ValueError(
                f"memory bank shape mismatch: saved capacity={state['capacity']} dim={state['dim']}, "
                f"this bank capacity={self.capacity} dim={self.dim}"
            )
        size = state["keys"].shape[0]
        self.keys.zero_()
        self.values.zero_()
        self.keys[:size] = state["keys"].to(self.keys)
        self.values[:size] = state["values"].to(self.values)
        self.size, self.next_slot = size, state["next_slot"]
        self.reads, self.hits, self.writes = state["reads"], state["hits"], state["writes"]
