"""Starting or attaching to Ray for the jobs, and what a multi-node cluster asks of storage.

``check_storage_shared``: on a cluster of several nodes a local checkpoint path is a
different, unshared folder on each node: checkpoints Ray Train writes on a worker node
would not be where the driver (or a resumed run) looks. Refused before any compute.
"""

from __future__ import annotations

import logging
import os

import ray

from refiner.checkpoints.storage import StorageError
from refiner.distributed.compat import (
    disable_auto_init,
    init_local_on_loopback,
    session_logs_dir,
)
from refiner.distributed.console import (
    quiet_driver_console,
    quiet_runtime_env,
    quiet_token_auth_notice,
)
from refiner.runs.plan import local_ray_cpus

# A local --storage path that IS shared (an NFS/EFS/Lustre mount at the same path on every
# node): say so with this variable set to 1 on the driver.
SHARED_STORAGE_ENV = "REFINER_SHARED_STORAGE"

FALLBACK_LOGS = "outputs/logs"


def session_logs() -> str:
    """Where this driver's Ray session keeps its logs (a local folder when unknown)."""
    return session_logs_dir() or FALLBACK_LOGS


def init_ray(address: str | None = None, min_logical_cpus: float = 0) -> str:
    """Attach to a cluster, or start a local one bound to loopback; returns which.

    An explicit ``address`` or ``RAY_ADDRESS`` (set by ``ray job submit``) attaches.
    Otherwise a private local cluster starts (never a stray one found on the machine).
    Its logical CPU count is at least ``min_logical_cpus`` so that Ray Data keeps a CPU
    slot beside the train workers: on a 2-core laptop two 1-CPU workers would otherwise
    leave the augmentation tasks no room to run.

    Ray's INFO chatter stays out of the console (``refiner.distributed.console``).
    """
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        disable_auto_init()
        quiet_driver_console()
        return f"attached to {address}"
    cpus = local_ray_cpus(min_logical_cpus)
    quiet_token_auth_notice()  # Ray's default (token auth on) is no news to the user
    context = init_local_on_loopback(
        num_cpus=cpus,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
        runtime_env=quiet_runtime_env(),
    )
    disable_auto_init()
    quiet_driver_console()
    dashboard = f", dashboard http://{context.dashboard_url}" if context.dashboard_url else ""
    return f"local Ray on 127.0.0.1 with {cpus} logical CPUs{dashboard}"


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
