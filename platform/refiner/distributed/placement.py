"""Where a run's workers are, and whether its checkpoint storage can reach them all.

- ``worker_nodes``: the Ray node id of every rank, gathered inside the workers (a run tag,
  ``refiner.worker_nodes``: proof that DDP spanned nodes, and which nodes a killed run used).
- ``check_storage_shared``: on a cluster of several nodes a local checkpoint path is a
  different, unshared folder on each node: Ray Train's checkpoints written on a worker node
  would not be where the driver (or a resumed run) looks. Refused before any compute.
"""

from __future__ import annotations

import os

import ray
import torch.distributed as dist

from refiner.storage import StorageError

# A local --storage path that IS shared (an NFS/EFS/Lustre mount at the same path on every
# node): say so with this variable set to 1 on the driver.
SHARED_STORAGE_ENV = "REFINER_SHARED_STORAGE"


def worker_nodes() -> list[str]:
    """The node id of each rank, in rank order (every rank must call it: a collective)."""
    here = ray.get_runtime_context().get_node_id()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [here]
    gathered: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, here)
    return [str(node) for node in gathered]


def alive_node_count() -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def check_storage_shared(storage: str, nodes: int | None = None) -> None:
    """Refuse a local checkpoint path on a multi-node cluster (unless declared shared)."""
    if "://" in storage or os.environ.get(SHARED_STORAGE_ENV) == "1":
        return
    nodes = alive_node_count() if nodes is None else nodes
    if nodes <= 1:
        return
    raise StorageError(
        f"--storage {storage} is a local path, and this Ray cluster has {nodes} nodes: each "
        "node would write its checkpoints to its own disk, where the driver and a resumed run "
        "cannot read them. Use object storage (--storage s3://BUCKET/prefix, or gs://...), "
        f"or a path mounted at the same place on every node (NFS, EFS) and set "
        f"{SHARED_STORAGE_ENV}=1 in the job's environment."
    )
