"""``ray start`` whose raylet does not die waiting 15 s for its dashboard agent.

Ray 2.60's raylet, while it starts, waits for its dashboard agent to write the agent's
HTTP port to ``<session dir>/dashboard_agent_listen_port_<node id>``, for 15 s, fixed in
C++ (``NodeManager::WaitForDashboardAgentPorts``), then aborts ("Check failed: ... Timed
out waiting for file .../dashboard_agent_listen_port_..."). ``ray start`` never hands the
raylet that port, even when it was given one (``--dashboard-agent-listen-port``), so it
always waits. On this shared 2-core machine under load (load average 30-60) the agent's
Python imports take longer than that; the raylet aborts and ``ray start`` reports only
"The current node timed out during startup" 30 s later (``raylet.out`` of the node's
session says why). Seen starting worker nodes, first and again after a node was killed.

The port is fixed here (every rehearsal node gets ``--dashboard-agent-listen-port``), so
this wrapper writes that file itself, with Ray's own ``persist_port``, just before the
raylet starts; the agent, once up, binds the same port and writes the same file. Then it
runs Ray's own CLI unchanged:

    python tests/rehearsal/ray_start.py start --address=... --block ...
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import ray._private.services as services
from ray._raylet import DASHBOARD_AGENT_LISTEN_PORT_NAME, persist_port
from ray.scripts.scripts import main

_start_raylet = services.start_raylet


def start_raylet_with_agent_port(*args: Any, **kwargs: Any) -> Any:
    bound = inspect.signature(_start_raylet).bind(*args, **kwargs).arguments
    port = bound.get("dashboard_agent_listen_port")
    if port:  # a fixed port: nothing for the raylet to wait for
        persist_port(bound["session_dir"], bound["node_id"], DASHBOARD_AGENT_LISTEN_PORT_NAME, port)
    return _start_raylet(*args, **kwargs)


services.start_raylet = start_raylet_with_agent_port  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main())
