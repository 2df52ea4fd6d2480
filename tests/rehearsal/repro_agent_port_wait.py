"""Minimal reproduction: Ray 2.60's raylet aborts when its dashboard agent starts in > 15 s.

A slow machine is imitated by a ``sitecustomize`` that delays the dashboard agent's start
by 20 s (only that process: ``.../ray/dashboard/agent.py``). Then a plain ``ray start
--head`` fails ("The current node timed out during startup"), and the same start through
``tests/rehearsal/ray_start.py`` (which writes the agent's port file, the port being
fixed) comes up; checked 2026-12-03. (The rehearsal's worker nodes that failed this way
had "Check failed: ... Timed out waiting for file .../dashboard_agent_listen_port_<node
id>" in their ``raylet.out``; the line is printed here when the head's logs hold it.)
Each head is stopped by its process group afterwards.

    .venv/bin/python tests/rehearsal/repro_agent_port_wait.py     # about 2 minutes
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from cluster import HeadNode  # noqa: E402
from ray_head import LocalHead  # noqa: E402

SLOW_AGENT = """import sys, time
if sys.argv and sys.argv[0].endswith("dashboard/agent.py"):
    time.sleep(20)  # longer than the raylet's fixed 15 s wait for the agent's port
"""


class PlainHead(HeadNode):
    """The rehearsal's head (up once its raylet is registered), started by plain `ray`."""

    def command(self) -> list[str]:
        return LocalHead.command(self)


def attempt(head: LocalHead) -> str:
    try:
        head.start(timeout_s=120)
        return "up"
    except (RuntimeError, TimeoutError) as err:
        logs = head.temp_dir.glob("session_2*/logs/raylet.*")
        reason = {
            line.split("Check failed:")[1].strip()[:160]
            for log in logs
            for line in log.read_text(errors="replace").splitlines()
            if "Check failed" in line
        }
        return f"failed: {str(err).splitlines()[-1][:120]} | raylet: {reason}"
    finally:
        head.stop()


def main() -> int:
    slow = Path(tempfile.mkdtemp(prefix="slow-agent-"))
    (slow / "sitecustomize.py").write_text(SLOW_AGENT)
    env = {"PYTHONPATH": f"{slow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    plain = attempt(PlainHead(num_cpus=1, env=env))
    wrapped = attempt(HeadNode(num_cpus=1, env=env))  # through ray_start.py
    print(f"plain `ray start`:            {plain}")
    print(f"through tests/rehearsal/ray_start.py: {wrapped}")
    return 0 if plain != "up" and wrapped == "up" else 1


if __name__ == "__main__":
    sys.exit(main())
