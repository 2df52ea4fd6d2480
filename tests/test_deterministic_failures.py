"""Deterministic failures are not retried: one ``error:`` line, exit 1, MLflow FAILED.

The trigger is a task file that validation accepts but the augmentation cannot use: a
task that claims the built-in ``parity`` source while holding a third symbol. Every
augmentation call on it fails the same way, so restarting the worker group
(``training.max_failures``) could only fail again.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import ray
from mlflow import MlflowClient
from ray.exceptions import RayTaskError
from ray.train import FailureConfig
from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
from ray.train.v2._internal.execution.failure_handling import FailureDecision
from ray.train.v2.api.exceptions import WorkerGroupError
from test_train_job_bad_input import run_in_process
from train_fixtures import run_train_job, set_args

from refiner.augment import STRATEGIES, AugmentationSpec
from refiner.augment.diagnose import explain_augmentation_failure
from refiner.config.sections import ConfigError
from refiner.distributed.failure_policy import FailFastPolicy, deterministic_cause, reason
from refiner.runs.failures import DeterministicError
from refiner.tasks.io import read_tasks

BAD_ROW = 17
TINY = [
    "model.d_model=16",
    "model.n_heads=2",
    "model.n_layers=1",
    "orchestration.max_steps_train=2",
    "orchestration.max_steps_infer=2",
    "orchestration.backprop_truncate_steps=2",
    "orchestration.augmentation_count=4",
    "training.batch_size=8",
    "training.steps=10",
    "training.report_every=5",
    "training.warmup_steps=0",
    "training.cpus_per_worker=0.5",
]


def write_parity_with_a_third_symbol(path: Path, rows: int = 40) -> Path:
    rng = random.Random(0)
    with open(path, "w") as handle:
        for i in range(rows):
            bits = [4 + rng.randrange(2) for _ in range(6)]
            target = list(np.cumsum(np.array(bits) - 4) % 2 + 4)
            if i == BAD_ROW:
                bits[2] = 6  # not a bit: fine for validation (num_symbols=3), not for parity
            row = {
                "task_id": f"p{i}",
                "task_type": "sequence",
                "source": "parity",
                "input": bits,
                "target": [int(t) for t in target],
                "num_symbols": 3,
            }
            handle.write(json.dumps(row) + "\n")
    return path


def expected_fragments(path: Path) -> list[str]:
    return [str(path), f"row {BAD_ROW}", "'p17'", "no strategy", "holds tokens other than the bits"]


def failed_run(db: Path):
    client = MlflowClient(f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("refiner").experiment_id])
    return run


def assert_one_error_line(stderr: str, path: Path) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    for fragment in expected_fragments(path):
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# -- the pieces, without a cluster ---------------------------------------------------


def test_the_failing_row_and_cause_are_named(tmp_path):
    path = write_parity_with_a_third_symbol(tmp_path / "p.jsonl")
    tasks = read_tasks(path)
    batch = {c: tasks.column(c).to_numpy(zero_copy_only=False) for c in tasks.column_names}
    spec = AugmentationSpec(STRATEGIES, count=4)
    error = explain_augmentation_failure(
        ValueError("chunk failed"), batch, spec, 0, 0, None, str(path), np.arange(tasks.num_rows)
    )
    assert isinstance(error, DeterministicError)
    for fragment in expected_fragments(path):
        assert fragment in str(error)


def _wrapped(error: BaseException) -> WorkerGroupError:
    """How Ray Train hands a worker's exception to its failure policy."""
    return WorkerGroupError("rank 1 failed", {1: UserExceptionWithTraceback(error, "Traceback")})


@pytest.mark.parametrize(
    "error",
    [
        DeterministicError("tasks.jsonl: row 3: bad"),
        ConfigError("model.seq_len: too short"),
        RayTaskError(
            "MapBatches", "Traceback ...", DeterministicError("row 3")
        ).as_instanceof_cause(),
    ],
    ids=["marked", "config", "ray-task-wrapped"],
)
def test_deterministic_worker_errors_are_raised_at_once(error):
    policy = FailFastPolicy(FailureConfig(max_failures=5))
    assert policy.make_decision(_wrapped(error)) == FailureDecision.RAISE
    cause = deterministic_cause(_wrapped(error))
    assert cause is not None and "\n" not in reason(cause)


def test_transient_worker_errors_keep_their_retries():
    policy = FailFastPolicy(FailureConfig(max_failures=2))
    transient = _wrapped(RuntimeError("connection reset by peer"))
    assert deterministic_cause(transient) is None
    decisions = [policy.make_decision(transient) for _ in range(3)]
    assert decisions == [FailureDecision.RETRY, FailureDecision.RETRY, FailureDecision.RAISE]


def test_a_traceback_that_survived_only_as_text_is_recognised():
    text = "Traceback ...\nrefiner.runs.failures.DeterministicError: tasks.jsonl: row 3: bad\n"
    cause = deterministic_cause(_wrapped(RuntimeError(text)))
    assert cause is not None and reason(cause) == "tasks.jsonl: row 3: bad"


# -- the job -------------------------------------------------------------------------


@pytest.fixture
def ray_started_in_process():
    """The job starts a local Ray in this process; later tests must not find it running."""
    yield
    ray.shutdown()


@pytest.mark.ray
def test_local_mode_run_fails_once_with_one_error_line(tmp_path, capsys, ray_started_in_process):
    path = write_parity_with_a_third_symbol(tmp_path / "p.jsonl")
    done = run_in_process(
        tmp_path, capsys, "--task", str(path), "--num-workers", "0", *set_args(TINY)
    )
    assert done.returncode == 1, done.stderr[-3000:]
    line = assert_one_error_line(done.stderr, path)
    run = failed_run(tmp_path / "mlflow.db")
    assert run.info.status == "FAILED"
    assert run.data.tags["refiner.stopped"] == "deterministic_failure"
    assert run.data.tags["refiner.failure"] == line.removeprefix("error: ")


@pytest.mark.slow
@pytest.mark.ray
def test_two_worker_run_is_not_retried(tmp_path):
    path = write_parity_with_a_third_symbol(tmp_path / "p.jsonl")
    done = run_train_job(
        tmp_path,
        "--task",
        str(path),
        "--num-workers",
        "2",
        *set_args([*TINY, "training.max_failures=2"]),
        timeout=600,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    line = assert_one_error_line(done.stderr, path)
    # One worker group, one attempt: rank 0 says where it starts once per worker-group
    # start (Ray Train's own "Attempting to start" line is kept off the console now).
    assert done.stdout.count("starting at update 0") == 1
    assert "resumed at update" not in done.stdout
    run = failed_run(tmp_path / "mlflow.db")
    assert run.info.status == "FAILED"
    assert run.data.tags["refiner.failure"] == line.removeprefix("error: ")
