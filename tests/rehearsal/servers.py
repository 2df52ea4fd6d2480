"""The servers a cloud cluster talks to, started locally: an S3 store and an MLflow server.

- ``S3Server``: moto's standalone server (``python -m moto.server``), a real HTTP server
  speaking the S3 API; boto3, pyarrow's S3 filesystem and MLflow's S3 artifact store reach
  it through ``AWS_ENDPOINT_URL`` exactly as they would reach AWS. One bucket is created.
- ``MlflowServer``: ``mlflow server`` with a SQLite backend and artifacts proxied to
  ``s3://BUCKET/artifacts`` on that S3 server; clients need only its ``http://`` URI.

Each runs in its own process session and is stopped by its process group id (never a
broad ``pkill``). ``suspend()``/``resume()`` freeze and thaw a server (SIGSTOP/SIGCONT):
connections hang as to a host that stopped answering, and its state survives (moto keeps
objects in memory; a restart would lose them). ``MlflowServer.stop()`` then ``start()``
again restarts it on the same port and database: an outage a client sees as refused
connections.

    with rehearsal_servers() as (s3, mlflow_server):
        env = {**os.environ, **s3.client_env()}
        ... --storage s3://{s3.bucket}/checkpoints --tracking-uri {mlflow_server.uri}
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # run as a script: tests/ holds ray_head
    sys.path.insert(0, str(TESTS))

from ray_head import VENV_BIN, free_port  # noqa: E402

# moto accepts any credentials; these are what every client of the rehearsal uses.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "rehearsal",
    "AWS_SECRET_ACCESS_KEY": "rehearsal-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServerProcess:
    """One server as a process session: started, waited for, frozen, stopped by PID."""

    name = "server"
    process: subprocess.Popen | None = None
    log_path: Path

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 180) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is up"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: stopped as one, alone
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"{self.name} not up after {timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()  # a frozen process cannot act on SIGTERM
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        _signal_group(self.process.pid, signal.SIGKILL)  # children that outlived the leader

    def suspend(self) -> None:
        """Freeze the server: it accepts connections but answers nothing until resume()."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} is down"
        _signal_group(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@dataclass
class S3Server(ServerProcess):
    """moto's S3 server on 127.0.0.1 with ``bucket`` created."""

    bucket: str = "rehearsal"
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rh-s3-")))
    port: int = field(default_factory=free_port)
    name = "S3 server (moto)"

    def __post_init__(self) -> None:
        self.log_path = self.work_dir / "moto.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """What a client needs to reach this store for ``s3://`` URIs (pyarrow, boto3, MLflow)."""
        return {
            **S3_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,  # boto3 and pyarrow 26 honour it
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,  # MLflow's S3 artifact repository
        }

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **S3_CREDENTIALS}

    def ready(self) -> bool:
        try:  # moto answers its own dashboard path; any HTTP answer means it listens
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                return True
        except OSError as err:
            return getattr(err, "code", None) is not None

    def start(self, timeout_s: float = 180) -> None:
        super().start(timeout_s)
        self.client().create_bucket(Bucket=self.bucket)

    def client(self):  # noqa: ANN201 (boto3 has no stubs here)
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in the bucket."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)


@dataclass
class MlflowServer(ServerProcess):
    """``mlflow server``: SQLite backend in ``work_dir``, artifacts proxied to the S3 server."""

    s3: S3Server | None = None
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rh-mlflow-")))
    port: int = field(default_factory=free_port)
    name = "MLflow server"

    def __post_init__(self) -> None:
        assert self.s3 is not None, "MlflowServer needs the S3Server for its artifacts"
        self.log_path = self.work_dir / "server.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend_uri(self) -> str:
        return f"sqlite:///{self.work_dir / 'mlflow.db'}"

    @property
    def artifacts_destination(self) -> str:
        assert self.s3 is not None
        return f"s3://{self.s3.bucket}/artifacts"

    def command(self) -> list[str]:
        return [
            os.path.join(VENV_BIN, "mlflow"),
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            self.artifacts_destination,
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def environment(self) -> dict[str, str]:
        assert self.s3 is not None
        env = {**os.environ, **self.s3.client_env()}
        env.pop("MLFLOW_TRACKING_URI", None)
        return env

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)


@contextmanager
def rehearsal_servers(bucket: str = "rehearsal") -> Iterator[tuple[S3Server, MlflowServer]]:
    """Both servers up for the block, stopped by PID and their folders removed after."""
    s3 = S3Server(bucket=bucket)
    mlflow_server = MlflowServer(s3=s3)
    try:
        s3.start()
        mlflow_server.start()
        yield s3, mlflow_server
    finally:
        mlflow_server.close()
        s3.close()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session: the group id is the leader's PID
    except ProcessLookupError:
        pass
