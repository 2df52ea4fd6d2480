"""The refiner as an MLflow 3 model: logged from code with a signature, linked to its run
and step, registered, loaded in a fresh process and served over HTTP (a real sqlite
store, a real ``mlflow models serve``), answering what the evaluate path answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest
from prediction_fixtures import TRAIN_STEPS, parity_tasks, trained_checkpoint

from refiner.checkpoints.files import CheckpointError
from refiner.checkpoints.restore import evaluate_checkpoint
from refiner.infer.prediction import Predictor, prediction_inputs
from refiner.infer.serving import serving_profile
from refiner.tracking import tracked_run
from refiner.tracking.logged_model import download_model_checkpoint, log_refiner_model

NAME = "refiner-tiny"
VENV_BIN = Path(sys.executable).parent
PLATFORM = Path(__file__).resolve().parent.parent / "platform"


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("mlflow")
    checkpoint = trained_checkpoint(folder)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with tracked_run(uri, "refiner", "tiny") as run:
        run.log_metrics({"val_acc_infer": 0.25}, step=TRAIN_STEPS)
        logged = log_refiner_model(
            uri,
            run.run_id,
            checkpoint,
            TRAIN_STEPS,
            {"val_mean_steps": 4.0},
            register_name=NAME,
            profile=serving_profile(parity_tasks(256, seed=0), inputs()),
        )
    return {"uri": uri, "run_id": run.run_id, "checkpoint": checkpoint, "logged": logged}


def env(tracking_uri: str) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PYTHONPATH": os.pathsep.join([str(PLATFORM), os.environ.get("PYTHONPATH", "")]),
    }


def inputs() -> pa.Table:
    return parity_tasks(24)  # the same rows the subprocess builds


def test_logged_model_is_linked_registered_and_holds_no_pickle(registered: dict) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(registered["uri"])
    logged = registered["logged"]
    assert logged.registered_uri == f"models:/{NAME}/1" and logged.version == 1
    model = client.get_logged_model(logged.model_id)
    run = client.get_run(registered["run_id"])
    assert model.source_run_id == run.info.run_id
    assert model.experiment_id == run.info.experiment_id
    assert str(model.status) in ("READY", "LoggedModelStatus.READY")
    outputs = run.outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(logged.model_id, TRAIN_STEPS)]
    linked = {m.key: (m.value, m.step) for m in model.metrics}
    assert linked == {"val_acc_infer": (0.25, TRAIN_STEPS), "val_mean_steps": (4.0, TRAIN_STEPS)}
    assert run.info.status == "FINISHED"  # logging left the run's status alone
    version = client.get_model_version(NAME, "1")
    assert version.source == logged.model_uri  # the version is that logged model

    import mlflow

    mlflow.set_tracking_uri(registered["uri"])
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1"))
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert "artifacts/checkpoint.pt" in files and "refiner_pyfunc.py" in files, files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))], files
    mlmodel = (folder / "MLmodel").read_text()
    assert "signature:" in mlmodel and "max_steps" in mlmodel and "early_stopping" in mlmodel
    assert "saved_input_example_info" in mlmodel  # rows in the task format beside the schema
    example = json.loads((folder / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["data"][0][2] == inputs().column("input")[0].as_py()
    assert "artifacts/profile.json" in files


def test_logging_the_model_raises_no_mlflow_warning(registered: dict, recwarn) -> None:
    """MLflow warns at logging about a missing input example and untyped predict: neither."""
    with tracked_run(registered["uri"], "refiner", "tiny-again") as run:
        log_refiner_model(
            registered["uri"],
            run.run_id,
            registered["checkpoint"],
            TRAIN_STEPS,
            profile=serving_profile(parity_tasks(256, seed=0), inputs()),
        )
    mlflow_warnings = [str(w.message) for w in recwarn if "mlflow" in w.filename]
    assert not [m for m in mlflow_warnings if "input example" in m or "type hint" in m.lower()]


def test_download_model_checkpoint_gives_the_logged_file(registered: dict, tmp_path: Path) -> None:
    local = download_model_checkpoint(f"models:/{NAME}/1", registered["uri"], tmp_path)
    assert local.read_bytes() == registered["checkpoint"].read_bytes()
    with pytest.raises(CheckpointError, match="cannot download"):
        download_model_checkpoint(f"models:/{NAME}/7", registered["uri"], tmp_path)


def test_fresh_process_load_and_predict_matches_evaluate(registered: dict) -> None:
    tasks = inputs()
    script = f"""
import json, mlflow
from prediction_fixtures import parity_tasks
frame = parity_tasks(24).select(["task_id", "input", "target"]).to_pandas()
model = mlflow.pyfunc.load_model("models:/{NAME}/1")
out = {{}}
for label, params in (("default", None), ("short", {{"max_steps": 2, "early_stopping": False}})):
    p = model.predict(frame, params=params)
    out[label] = {{c: [x.tolist() if hasattr(x, "tolist") else x for x in p[c]] for c in p.columns}}
print("RESULT", json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parent,
        env=env(registered["uri"]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])

    report = evaluate_checkpoint(registered["checkpoint"], tasks, split=None)
    default = result["default"]
    assert default["steps_taken"] == report.steps_taken
    correct = sum(default["correct"]) / len(default["correct"])
    assert correct == pytest.approx(report.acc_infer)
    expected = Predictor.from_checkpoint(registered["checkpoint"]).predict(
        prediction_inputs(tasks), max_steps=2, early_stopping=False
    )
    assert result["short"]["prediction"] == expected.column("prediction").to_pylist()
    assert result["short"]["steps_taken"] == [2] * 24
    assert set(result["short"]["stopping_reason"]) == {"max_steps"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise AssertionError(f"{url}: HTTP {err.code}: {err.read()[:2000]!r}") from None


@pytest.mark.slow
def test_served_model_answers_http_like_evaluate(registered: dict, tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(
        [
            str(VENV_BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{NAME}/1",
            "--env-manager",
            "local",
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-w",
            "1",
        ],
        env=env(registered["uri"]),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # one process group: the server and its workers die together
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(1)

        tasks = inputs()
        records = [
            {"task_id": r["task_id"], "input": r["input"], "target": r["target"]}
            for r in tasks.to_pylist()
        ]
        answer = post(f"{base}/invocations", {"dataframe_records": records})
        rows = answer["predictions"]
        report = evaluate_checkpoint(registered["checkpoint"], tasks, split=None)
        assert [r["task_id"] for r in rows] == tasks.column("task_id").to_pylist()
        assert [r["steps_taken"] for r in rows] == report.steps_taken
        assert sum(r["correct"] for r in rows) / len(rows) == pytest.approx(report.acc_infer)
        reasons = {}
        for r in rows:
            reasons[r["stopping_reason"]] = reasons.get(r["stopping_reason"], 0) + 1
        assert reasons == report.stopping_reasons

        # Bare token-id lists, with predict-time params.
        lists = {
            "dataframe_records": [{"input": [4, 5, 4, 5]}, {"input": [5, 5, 4]}],
            "params": {"max_steps": 2},
        }
        short = post(f"{base}/invocations", lists)["predictions"]
        assert [r["steps_taken"] <= 2 for r in short] == [True, True]
        assert [r["task_id"] for r in short] == ["row-0", "row-1"]
        # Answers are cut to the input; a length never trained on says so.
        assert [len(r["prediction"]) for r in short] == [4, 3]
        assert all("never seen in training" in r["warning"] for r in short)
        assert all(r["warning"] is None for r in rows)  # the trained length

        # Bad requests: HTTP 400 naming the row and column, never a stack trace.
        too_long = [4, 5] * 20
        for body, expected in (
            ({"dataframe_records": [{"input": [4, 5]}, {"input": [4, 5, 999]}]}, "row 1"),
            ({"dataframe_records": [{"input": [4, 5]}, {"input": too_long}]}, "row 1"),
            ({"dataframe_records": [{"inputs": [4, 5]}]}, "input"),
        ):
            status, error = post_error(f"{base}/invocations", body)
            assert 400 <= status < 500, (status, error)
            assert "stack_trace" not in error and "Traceback" not in error["message"], error
            assert expected in error["message"] and "input" in error["message"], error
    finally:
        stop_group(server)
        log.close()


def post_error(url: str, body: dict) -> tuple[int, dict]:
    """The status and JSON body of a request that must fail."""
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raise AssertionError(f"{url}: accepted {body}: {response.read()[:500]!r}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 20)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
