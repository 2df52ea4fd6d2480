"""Submitting jobs to the rehearsal cluster the way docs/cluster.md tells a user to.

``ray job submit --working-dir . --runtime-env-json '{"py_modules": ["platform/refiner"],
"env_vars": {...}}' -- python jobs/train.py ...`` with ``RAY_AUTH_MODE=token``; job
status from the dashboard's REST API; the driver process found by its command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cluster import WORKER_RESOURCE, RehearsalCluster
from ray_head import VENV_BIN
from servers import MlflowServer, S3Server

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"FAILED", "STOPPED", "SUCCEEDED"}
# Each train worker takes a worker node's one `rehearsal_worker`: one worker per node.
ONE_WORKER_PER_NODE = f"training.worker_resources={{{WORKER_RESOURCE}: 1}}"


@dataclass
class Rehearsal:
    """The cluster and its servers, shared by every scenario of a pytest session."""

    cluster: RehearsalCluster
    s3: S3Server
    mlflow_server: MlflowServer

    @property
    def bucket(self) -> str:
        return self.s3.bucket

    def storage(self, prefix: str = "checkpoints") -> str:
        return f"s3://{self.s3.bucket}/{prefix}"

    def runtime_env(self, **env_vars: str) -> str:
        """The job's runtime env: this checkout's package, the S3 endpoint, a stop grace."""
        return json.dumps(
            {
                "py_modules": ["platform/refiner"],
                "env_vars": {
                    "RAY_JOB_STOP_WAIT_TIME_S": "30",  # the driver ends its MLflow run
                    **self.s3.client_env(),
                    **env_vars,
                },
            }
        )

    def ray_cli(self, *args: str, timeout: float = 180, check: bool = True) -> str:
        proc = subprocess.run(
            [os.path.join(VENV_BIN, "ray"), *args],
            cwd=ROOT,
            env=self.cluster.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert proc.returncode == 0, f"ray {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def submit(self, submission_id: str, entrypoint: list[str], **env_vars: str) -> None:
        """``ray job submit --no-wait`` (the CLI shell-quotes each entrypoint word)."""
        self.ray_cli(
            "job", "submit", "--address", self.cluster.dashboard,
            "--submission-id", submission_id, "--working-dir", ".",
            "--runtime-env-json", self.runtime_env(**env_vars), "--no-wait",
            "--", *entrypoint,
        )  # fmt: skip

    def job(self, submission_id: str) -> dict:
        """The job's record from the dashboard's REST API (status, message, ...)."""
        request = urllib.request.Request(
            f"{self.cluster.dashboard}/api/jobs/{submission_id}",
            headers={"authorization": f"Bearer {self.cluster.head.auth_token()}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait(self, submission_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(submission_id)
            if job["status"] in TERMINAL:
                return job
            time.sleep(2)
        raise TimeoutError(
            f"job {submission_id} not done after {timeout} s:\n{self.logs(submission_id)[-3000:]}"
        )

    def logs(self, submission_id: str) -> str:
        return self.ray_cli("job", "logs", "--address", self.cluster.dashboard, submission_id)

    def stop_job(self, submission_id: str) -> None:
        self.ray_cli("job", "stop", "--address", self.cluster.dashboard, submission_id)

    def driver_pids(self, marker: str) -> list[int]:
        """PIDs of job drivers (on the head) whose command line holds ``marker``."""
        found = []
        for pid in self.cluster.head.own_processes():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            # the python process itself, not the shell the job supervisor runs it through
            if os.path.basename(argv[0]).startswith("python") and "jobs/train.py" in argv:
                if marker in " ".join(argv):
                    found.append(pid)
        return found

    def mlflow(self):  # noqa: ANN201 (an MlflowClient of the tracking server)
        from mlflow import MlflowClient

        return MlflowClient(self.mlflow_server.uri)

    def runs_named(self, run_name: str, experiment: str = "refiner") -> list:
        client = self.mlflow()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        return client.search_runs([found.experiment_id], f"tags.`mlflow.runName` = '{run_name}'")


def train_command(run_name: str, storage: str, *args: str) -> list[str]:
    """``python jobs/train.py`` as a user submits it: no --tracking-uri (the head exports
    MLFLOW_TRACKING_URI to its drivers, as cluster.yaml does)."""
    return ["python", "jobs/train.py", "--run-name", run_name, "--storage", storage, *args]


def checkpoint_steps(rehearsal, name: str, prefix: str = "checkpoints") -> list[int]:
    """Updates of run ``name``'s checkpoints in S3 so far (read from each one's meta.json);
    ``prefix``: the bucket folder its ``--storage`` names."""
    client = rehearsal.s3.client()
    steps = []
    for key in rehearsal.s3.keys(f"{prefix}/{name}/"):
        if key.endswith("/meta.json"):
            body = client.get_object(Bucket=rehearsal.bucket, Key=key)["Body"].read()
            steps.append(int(json.loads(body)["step"]))
    return sorted(steps)


def wait_for_checkpoint_after(
    rehearsal, submission_id: str, step: int, *, name: str, timeout: float = 600
) -> int:
    """The newest complete checkpoint's update, once one newer than ``step`` is in S3."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = checkpoint_steps(rehearsal, name)
        if steps and steps[-1] > step:
            return steps[-1]
        status = rehearsal.job(submission_id)["status"]
        assert status in {"PENDING", "RUNNING"}, rehearsal.logs(submission_id)[-4000:]
        time.sleep(1)
    raise TimeoutError(rehearsal.logs(submission_id)[-4000:])
