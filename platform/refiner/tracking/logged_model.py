"""A refiner checkpoint as an MLflow 3 logged model: ``pyfunc`` flavour, signature, registry.

``log_refiner_model`` is what training and sweeps call for the checkpoint they keep as
best: the model is linked to its run and to the run's metrics at the checkpoint's step
(MLflow's logged-model outputs), and optionally registered under a name, so that

    mlflow.pyfunc.load_model("models:/NAME/1").predict(tasks_dataframe)
    mlflow models serve -m models:/NAME/1 --env-manager local

both work. Loading is safe: the model is logged from code (``refiner_pyfunc.py``, no
cloudpickle) and its checkpoint artifact loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, ParamSchema, ParamSpec, Schema

from refiner.checkpoints.files import CHECKPOINT_FILE, CheckpointError, read_checkpoint
from refiner.infer.serving import ServingProfile

MODEL_CODE = Path(__file__).with_name("refiner_pyfunc.py")
CHECKPOINT_ARTIFACT = "checkpoint"  # the key of the checkpoint in the model's artifacts
PROFILE_ARTIFACT = "profile"  # refiner.infer.serving.ServingProfile of the training rows (json)
MODEL_NAME = "refiner"  # the logged model's name inside its run
MLFLOW_SCHEMES = ("models:/", "runs:/")
# Written out so that logging never spends a subprocess inferring them (and never
# guesses wrong); the project itself must be installed where the model is served.
PIP_REQUIREMENTS = ["mlflow", "torch", "numpy", "pandas", "pyarrow"]

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec(Array(DataType.long), "input"),
            ColSpec(Array(DataType.long), "target", required=False),
            ColSpec(DataType.string, "task_id", required=False),
            ColSpec(DataType.string, "task_type", required=False),
            ColSpec(DataType.long, "height", required=False),
            ColSpec(DataType.long, "width", required=False),
            ColSpec(DataType.long, "num_symbols", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec(DataType.string, "task_id"),
            ColSpec(Array(DataType.long), "prediction"),
            ColSpec(DataType.string, "decoded"),
            ColSpec(DataType.long, "steps_taken"),
            ColSpec(DataType.string, "stopping_reason"),
            ColSpec(DataType.double, "score"),
            ColSpec(DataType.boolean, "correct", required=False),
            ColSpec(DataType.string, "warning", required=False),
        ]
    ),
    params=ParamSchema(
        [
            ParamSpec("max_steps", DataType.long, None),  # None: the model's max_steps_infer
            ParamSpec("early_stopping", DataType.boolean, None),  # None: the model's setting
        ]
    ),
)


@dataclass(frozen=True)
class LoggedRefinerModel:
    model_id: str
    model_uri: str  # models:/<model_id>
    registered_uri: str | None  # models:/NAME/VERSION when registered
    version: int | None


def log_refiner_model(
    tracking_uri: str,
    run_id: str,
    checkpoint_path: str | Path,
    step: int,
    metrics: Mapping[str, float] | None = None,
    register_name: str | None = None,
    profile: ServingProfile | None = None,
) -> LoggedRefinerModel:
    """Log ``checkpoint_path`` as the run's pyfunc model at ``step``; register it if named.

    Metrics the run already logged at ``step`` are linked to the model by MLflow;
    ``metrics`` (e.g. the checkpoint's validation results) are logged at ``step`` and
    linked too. The run's status is left as it is (no run is started or ended).
    ``profile`` (the training rows' ``ServingProfile``) goes with the model: the served
    model checks requests and cuts answers with it, and its example rows become the
    model's input example.
    """
    checkpoint = Path(checkpoint_path)
    if checkpoint.is_dir():
        checkpoint = checkpoint / CHECKPOINT_FILE
    read_checkpoint(checkpoint)  # refuse a corrupt or unsafe file before anything is logged
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    # Created here, in the run's experiment: left to itself, Model.log would put the
    # model in whatever experiment is active in this process (the default one).
    model = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags={"refiner.kind": "refiner-model", "refiner.step": str(step)},
        params=dict(run.data.params),
    )
    with tempfile.TemporaryDirectory(prefix="refiner-model-") as scratch:
        # The artifact is always named checkpoint.pt, whatever the source file was called.
        staged = Path(scratch) / CHECKPOINT_FILE
        shutil.copyfile(checkpoint, staged)
        artifacts = {CHECKPOINT_ARTIFACT: str(staged)}
        example = None
        if profile is not None:
            (Path(scratch) / "profile.json").write_text(profile.to_json())
            artifacts[PROFILE_ARTIFACT] = str(Path(scratch) / "profile.json")
            example = pd.DataFrame(profile.example) if profile.example else None
        info = Model.log(
            artifact_path=None,
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            step=int(step),
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            signature=SIGNATURE,
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=register_name,
            model_id=model.model_id,
        )
    if metrics:
        client.log_batch(
            run_id,
            metrics=[
                Metric(key, float(value), _now_ms(), int(step), model_id=info.model_id)
                for key, value in metrics.items()
            ],
        )
    version = info.registered_model_version
    return LoggedRefinerModel(
        model_id=info.model_id,
        model_uri=info.model_uri,
        registered_uri=f"models:/{register_name}/{version}" if register_name else None,
        version=int(version) if version is not None else None,
    )


def download_model_checkpoint(uri: str, tracking_uri: str, dst: str | Path) -> Path:
    """A local checkpoint.pt for ``models:/...`` or ``runs:/...``: a refiner pyfunc model
    (its checkpoint artifact) or a plain checkpoint folder/file registered as before."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except Exception as err:  # MLflow raises several types for a bad URI or store
        raise CheckpointError(f"{uri}: cannot download from {tracking_uri}: {err}") from None
    if local.is_file():
        return local
    for candidate in (
        local / "artifacts" / CHECKPOINT_FILE,  # a pyfunc model's artifacts
        local / CHECKPOINT_FILE,  # a registered checkpoint folder
    ):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{uri}: holds no {CHECKPOINT_FILE} (is it a refiner model?)")


def _now_ms() -> int:
    return int(time.time() * 1000)


def is_mlflow_uri(value: str | os.PathLike) -> bool:
    return str(value).startswith(MLFLOW_SCHEMES)


def fetch_model_checkpoint(model: str, tracking_uri: str | None, scratch: str | Path) -> Path:
    """A local checkpoint.pt for ``--model``: an MLflow ``models:/``/``runs:/`` URI
    (downloaded to ``scratch``), a checkpoint file or a checkpoint folder. An unreachable
    tracking store is a CheckpointError (bad input), like a missing file."""
    from refiner.checkpoints.restore import local_checkpoint_file
    from refiner.tracking import TrackingError, check_tracking_store, resolve_tracking_uri

    if not is_mlflow_uri(model):
        return local_checkpoint_file(model)
    uri = resolve_tracking_uri(tracking_uri)
    try:
        check_tracking_store(uri)
    except TrackingError as err:
        raise CheckpointError(str(err)) from None
    return download_model_checkpoint(model, uri, scratch)
