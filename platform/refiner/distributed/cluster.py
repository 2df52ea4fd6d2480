"""Starting or attaching to Ray for the jobs."""

from __future__ import annotations

import os

import ray
import ray._private.auto_init_hook as _auto_init


def init_ray(address: str | None = None, min_logical_cpus: float = 0) -> str:
    """Attach to a cluster, or start a local one bound to loopback; returns which.

    An explicit ``address`` or ``RAY_ADDRESS`` (set by ``ray job submit``) attaches.
    Otherwise a private local cluster starts (never a stray one found on the machine).
    Its logical CPU count is at least ``min_logical_cpus`` so that Ray Data keeps a CPU
    slot beside the train workers: on a 2-core laptop two 1-CPU workers would otherwise
    leave the augmentation tasks no room to run.
    """
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        _no_auto_reconnect()
        return f"attached to {address}"
    cpus = max(os.cpu_count() or 1, int(-(-min_logical_cpus // 1)))
    ray.init(
        address="local",
        num_cpus=cpus,
        _node_ip_address="127.0.0.1",
        include_dashboard=True,
        dashboard_host="127.0.0.1",
    )
    _no_auto_reconnect()
    return f"local Ray on 127.0.0.1 with {cpus} logical CPUs"


def _no_auto_reconnect() -> None:
    # After a failed run, Ray Data's executor threads can outlive ``ray.shutdown()`` and
    # their next Ray call would silently start a fresh cluster and hang the exiting
    # driver. The jobs always call ``init_ray`` explicitly, so auto-init is never wanted.
    _auto_init.enable_auto_connect = False
