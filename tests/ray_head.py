"""A private Ray head for tests: loopback only, its own ports and temp dir, torn down alone.

``ray stop`` would kill every Ray process on the machine (other people's clusters too).
Instead the head runs as ``ray start --head --block`` in its own process session; teardown
signals that session, then kills by PID whatever still runs from this head's temp dir.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# The venv's bin first: its `ray` CLI, and the `python` a submitted job's entrypoint
# runs, must be this interpreter's even when the venv is not activated (`make test`).
VENV_BIN = str(Path(sys.executable).parent)


def with_venv_path(env: dict[str, str]) -> dict[str, str]:
    return {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"}


TOKEN_AUTH = {"RAY_AUTH_MODE": "token"}  # new clusters use token auth; the CLI must too


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class LocalHead:
    num_cpus: int = 3
    env: dict[str, str] = field(default_factory=dict)  # extra env for the head's processes
    extra_args: list[str] = field(default_factory=list)  # more `ray start` options
    temp_dir: Path = field(init=False)
    ports: dict[str, int] = field(init=False)
    process: subprocess.Popen | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # Short: Ray's unix socket paths live under the temp dir (about 100 characters max).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rjt-", dir="/tmp"))
        names = (
            "port",
            "dashboard-port",
            "ray-client-server-port",
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
        self.ports = {name: free_port() for name in names}
        # Worker ports: a random window below the kernel's ephemeral range (where the
        # ports above came from) and above Ray's default 10002-19999 of other clusters.
        while True:
            low = random.randrange(20000, 29000)
            if not any(low <= p <= low + 400 for p in self.ports.values()):
                break
        self.ports |= {"min-worker-port": low, "max-worker-port": low + 400}

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard-port']}"

    def client_env(self) -> dict[str, str]:
        return with_venv_path({**os.environ, **TOKEN_AUTH, "RAY_ADDRESS": self.dashboard})

    def auth_token(self) -> str:
        """The token the head uses (Ray's lookup order: env var, token file, ~/.ray)."""
        if os.environ.get("RAY_AUTH_TOKEN"):
            return os.environ["RAY_AUTH_TOKEN"]
        path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
        return Path(path).read_text().strip()

    def command(self) -> list[str]:
        return [
            os.path.join(VENV_BIN, "ray"),
            "start",
            "--head",
            "--block",
            f"--num-cpus={self.num_cpus}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
            *(f"--{name}={port}" for name, port in self.ports.items()),
            *self.extra_args,
        ]

    def ready(self) -> bool:
        return self._dashboard_ready()

    def start(self, timeout_s: float = 90) -> None:
        env = with_venv_path({**os.environ, **TOKEN_AUTH, **self.env})
        env.pop("RAY_ADDRESS", None)
        self.process = subprocess.Popen(
            self.command(),
            env=env,
            stdout=open(self.temp_dir / "ray-start.log", "wb"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_until_ready(timeout_s)
        except BaseException:  # a failed or interrupted start leaves nothing behind either
            self.stop()
            raise

    def _wait_until_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited: {self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"Ray node not up after {timeout_s} s: {self.log_tail()}")

    def _dashboard_ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2):
                return True
        except OSError as err:  # 401 without a token still means the server is up
            return getattr(err, "code", None) in (401, 403)

    def log_tail(self, chars: int = 3000) -> str:
        path = self.temp_dir / "ray-start.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> list[int]:
        """Stop this head only; returns the PIDs that had to be killed one by one."""
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=8)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        stragglers = self.own_processes()
        for pid in stragglers:  # workers/drivers that left the session
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self.own_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return stragglers

    def own_processes(self) -> list[int]:
        """PIDs whose command line or working directory lies in this head's temp dir."""
        marker = str(self.temp_dir)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if marker in cmdline or cwd.startswith(marker):
                found.append(int(entry.name))
        return found

    def busy_ports(self) -> list[int]:
        fixed = [p for n, p in self.ports.items() if not n.endswith("worker-port")]
        return [p for p in fixed if port_in_use(p)]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session: the group id is the head's PID
    except ProcessLookupError:
        pass
