"""A multi-node Ray cluster on this machine: a head and worker nodes, each its own ``ray start``.

Every node is a separate ``ray start --block`` process session bound to 127.0.0.1, with
its own raylet, object store, temp dir (its "local disk") and free ports, so that several
engineers' clusters and CI can share one machine. Each worker node carries two custom
resources: ``rehearsal_worker: 1`` (a train worker asking for it can only land on a worker
node, one per node, the way a GPU run lands on GPU nodes) and ``rehearsal_node_<i>: 1``
(to find or pin the node). Nodes are stopped or killed by their process ids, one at a time
if need be (``kill_node``: SIGKILL of the node's whole process group, as a spot
reclaim); never ``ray stop``.

By hand, a cluster with the S3 and MLflow servers, left running until Ctrl-C:

    .venv/bin/python tests/rehearsal/cluster.py up      # prints the addresses and env
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # run as a script: tests/ holds ray_head
    sys.path.insert(0, str(TESTS))

from ray_head import TOKEN_AUTH, VENV_BIN, LocalHead  # noqa: E402

# `ray start` through a wrapper that spares the raylet Ray 2.60's fixed 15 s wait for its
# dashboard agent (it aborted on this loaded machine): ray_start.py says how.
RAY_START = [os.path.join(VENV_BIN, "python"), str(Path(__file__).with_name("ray_start.py"))]
NODE_START_TIMEOUT_S = 180  # how long the harness waits for a node to be listed alive

WORKER_RESOURCE = "rehearsal_worker"  # one per worker node: a train worker asks for 1

# Small object stores: three nodes on a shared 2-core CI machine (Ray's default is 30% of RAM).
OBJECT_STORE_BYTES = 200 * 1024 * 1024


def node_resource(index: int) -> str:
    return f"rehearsal_node_{index}"


@dataclass
class HeadNode(LocalHead):
    """The head, up only once its own raylet is registered (an alive node in the State API).

    Its dashboard answers before that; ``ray start`` still exits if the registration
    misses the 30 s window, and worker nodes would then join a dead head.
    """

    def command(self) -> list[str]:
        return [*RAY_START, *super().command()[1:]]  # [ray, start, --head, ...]

    def ready(self) -> bool:
        return self._dashboard_ready() and bool(alive_nodes(self.dashboard, self.auth_token()))


@dataclass
class WorkerNode(LocalHead):
    """``ray start --address=HEAD --block``: a worker node with its own ports and temp dir."""

    head_address: str = ""
    index: int = 1
    dashboard_url: str = ""
    token: str = ""
    # ids a killed predecessor still holds: the GCS lists a dead node alive for a while
    stale_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        super().__post_init__()
        for head_only in ("port", "dashboard-port", "ray-client-server-port"):
            self.ports.pop(head_only)

    def command(self) -> list[str]:
        resources = {WORKER_RESOURCE: 1, node_resource(self.index): 1}
        return [
            *RAY_START,
            "start",
            f"--address={self.head_address}",
            "--block",
            f"--num-cpus={self.num_cpus}",
            "--node-ip-address=127.0.0.1",
            f"--resources={json.dumps(resources)}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
            *(f"--{name}={port}" for name, port in self.ports.items()),
            *self.extra_args,
        ]

    def ready(self) -> bool:
        """Up when the head lists an alive node holding this node's resource."""
        return self.node_id() is not None

    def node_id(self) -> str | None:
        for node in alive_nodes(self.dashboard_url, self.token):
            if node_resource(self.index) in node.get("resources_total", {}):
                if node["node_id"] not in self.stale_ids:
                    return node["node_id"]
        return None

    def kill(self) -> list[int]:
        """SIGKILL the node's raylet and everything on it at once (a lost spot instance)."""
        victims = self.own_processes()
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait(timeout=10)
        return victims


@dataclass
class RehearsalCluster:
    """A head plus ``workers`` worker nodes; ``env`` goes to every node's ``ray start``."""

    workers: int = 2
    head_cpus: int = 2
    worker_cpus: int = 2
    env: dict[str, str] = field(default_factory=dict)
    head: HeadNode = field(init=False)
    nodes: list[WorkerNode] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.head = self._new_head()

    def _new_head(self) -> HeadNode:
        return HeadNode(
            num_cpus=self.head_cpus,
            env=self.env,
            extra_args=[f"--object-store-memory={OBJECT_STORE_BYTES}"],
        )

    @property
    def address(self) -> str:
        """The GCS address worker nodes join (``ray start --address``)."""
        return f"127.0.0.1:{self.head.ports['port']}"

    @property
    def dashboard(self) -> str:
        return self.head.dashboard

    def start(self) -> None:
        try:
            for attempt in range(3):  # a head that missed its registration window exits
                try:
                    self.head.start(NODE_START_TIMEOUT_S)
                    break
                except (RuntimeError, TimeoutError):
                    if attempt == 2:
                        raise
                    self.head = self._new_head()
            for index in range(1, self.workers + 1):
                self.add_node(index)
        except BaseException:
            self.stop()
            raise

    def add_node(self, index: int, tries: int = 5) -> WorkerNode:
        """Start worker node ``index`` (again, after a kill: a fresh node, a new node id).

        Retried: on a loaded machine a node can miss ``ray start``'s registration window
        ("The current node timed out during startup"; Ray 2.60 hard-codes 30 s in
        ``ray/_private/node.py``, although the message suggests RAY_raylet_start_wait_time_s).
        The cause seen here, a raylet aborting after 15 s without its dashboard agent's
        port, is avoided by ray_start.py.
        """
        for attempt in range(1, tries + 1):
            assert self.head.process is not None and self.head.process.poll() is None, (
                f"the Ray head exited:\n{self.head.log_tail()}"
            )
            node = WorkerNode(
                num_cpus=self.worker_cpus,
                env=self.env,
                head_address=self.address,
                index=index,
                dashboard_url=self.dashboard,
                token=self.head.auth_token(),
                stale_ids=frozenset(n.node_id() or "" for n in self.nodes if n.index == index),
            )
            _avoid_worker_port_overlap(node, [self.head, *self.nodes])
            try:
                node.start(NODE_START_TIMEOUT_S)
            except (RuntimeError, TimeoutError):
                if attempt == tries:
                    raise
                continue
            for old in [n for n in self.nodes if n.index == index]:
                old.stop()  # a killed predecessor: its stragglers and temp dir
            self.nodes = [n for n in self.nodes if n.index != index] + [node]
            return node
        raise AssertionError("unreachable")

    def node(self, index: int) -> WorkerNode:
        return next(n for n in self.nodes if n.index == index)

    def kill_node(self, index: int) -> list[int]:
        return self.node(index).kill()

    def alive_node_ids(self) -> list[str]:
        return [n["node_id"] for n in alive_nodes(self.dashboard, self.head.auth_token())]

    def client_env(self) -> dict[str, str]:
        """``ray job`` CLI env: token auth and RAY_ADDRESS (the dashboard)."""
        return self.head.client_env()

    def stop(self) -> list[int]:
        """Workers first, then the head; each by its PIDs. Returns the stragglers killed."""
        stragglers: list[int] = []
        for node in reversed(self.nodes):
            stragglers += node.stop()
        stragglers += self.head.stop()
        return stragglers

    def own_processes(self) -> list[int]:
        return [pid for n in [self.head, *self.nodes] for pid in n.own_processes()]


def alive_nodes(dashboard: str, token: str) -> list[dict]:
    """The cluster's alive nodes from the State API (what ``ray list nodes`` shows)."""
    request = urllib.request.Request(
        f"{dashboard}/api/v0/nodes?limit=100&detail=1",
        headers={"authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = json.loads(response.read())
    except OSError:
        return []
    nodes = payload.get("data", {}).get("result", {}).get("result", [])
    return [n for n in nodes if n.get("state") == "ALIVE"]


def _avoid_worker_port_overlap(node: LocalHead, others: list[LocalHead]) -> None:
    """Give ``node`` a worker-port window that no other node of the cluster uses."""
    taken = [(o.ports["min-worker-port"], o.ports["max-worker-port"]) for o in others]
    fixed = {p for o in [node, *others] for n, p in o.ports.items() if not n.endswith("er-port")}
    while True:
        low = random.randrange(20000, 29000)
        high = low + 400
        clash = any(low <= hi and lo <= high for lo, hi in taken)
        if not clash and not any(low <= p <= high for p in fixed):
            node.ports |= {"min-worker-port": low, "max-worker-port": high}
            return


def up(workers: int) -> int:
    """Stand the cluster and both servers up, print how to reach them, wait for Ctrl-C."""
    from servers import rehearsal_servers

    with rehearsal_servers() as (s3, mlflow_server):
        cluster = RehearsalCluster(workers=workers, env={"MLFLOW_TRACKING_URI": mlflow_server.uri})
        cluster.start()
        try:
            exports = {
                **TOKEN_AUTH,
                "RAY_ADDRESS": cluster.dashboard,
                "MLFLOW_TRACKING_URI": mlflow_server.uri,
                **s3.client_env(),
            }
            print(f"Ray head     {cluster.address} (dashboard {cluster.dashboard})")
            for node in cluster.nodes:
                print(f"worker node  {node.index}: {node.node_id()} (temp dir {node.temp_dir})")
            print(f"S3 (moto)    {s3.endpoint}, bucket s3://{s3.bucket}")
            print(
                f"MLflow       {mlflow_server.uri} (artifacts {mlflow_server.artifacts_destination})"
            )
            print("\n# in another shell:")
            for key, value in exports.items():
                print(f"export {key}={value}")
            env_vars = json.dumps({"env_vars": s3.client_env(), "py_modules": ["platform/refiner"]})
            print(
                f"\nray job submit --working-dir . --runtime-env-json '{env_vars}' -- \\\n"
                f"    python jobs/train.py --storage s3://{s3.bucket}/checkpoints "
                f"--set 'training.worker_resources={{{WORKER_RESOURCE}: 1}}'"
            )
            print("\nCtrl-C stops everything.", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping", flush=True)
        finally:
            stragglers = cluster.stop()
            print(f"cluster stopped ({len(stragglers)} stragglers killed by PID)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up"])
    parser.add_argument("--workers", type=int, default=2, help="worker nodes besides the head")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    return up(args.workers)


if __name__ == "__main__":
    sys.exit(main())
