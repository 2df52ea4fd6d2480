"""Where a run's workers are: the Ray node id of every rank, gathered inside the workers.

Rank 0 tags the run with them (``refiner.worker_nodes``): proof that DDP spanned nodes, and
which nodes a run used before one was lost.
"""

from __future__ import annotations

import ray
import torch.distributed as dist


def worker_nodes() -> list[str]:
    """The node id of each rank, in rank order (every rank must call it: a collective)."""
    here = ray.get_runtime_context().get_node_id()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [here]
    gathered: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, here)
    return [str(node) for node in gathered]
