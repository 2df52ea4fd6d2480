"""The refiner's MLflow ``pyfunc`` model, logged as *model code* (never pickled).

``refiner.tracking.logged_model.log_refiner_model`` passes this file's path as ``python_model``:
MLflow stores the file itself and, on load, runs it and takes the model given to
``set_model``. Nothing is cloudpickled, and the checkpoint artifact is read with
``torch.load(weights_only=True)``, so loading a model runs no code but this file and
the installed ``refiner`` package.

predict(model_input, params): model_input is a table of tasks (a pandas DataFrame in
the task format; only ``input`` is required; a list of token-id lists is the frame
``{"input": lists}``); params
``max_steps`` and ``early_stopping`` (default: the model's own settings). Returns a
DataFrame with the columns of ``refiner.infer.prediction.PREDICTION_SCHEMA``, ``prediction``
cut to the answer (``refiner.infer.serving``), and ``warning`` (null, or why the row's length
or grid shape is outside what the model trained on). A request the model cannot read
(a token outside its alphabet, an input longer than its canvas, a malformed column)
is an HTTP 400 whose message names the row and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from refiner.checkpoints.files import CheckpointError
from refiner.infer.prediction import Predictor, decode_canvas, prediction_inputs
from refiner.infer.serving import ServingProfile, answer_lengths, cut_answer
from refiner.tracking.logged_model import CHECKPOINT_ARTIFACT, PROFILE_ARTIFACT

_DECODE_COLUMNS = ["task_type", "num_symbols", "height", "width"]


class RequestError(MlflowException):
    """A bad request: served as HTTP 400 with this message and no stack trace.

    The scoring server prefixes a predict error's message with the whole request; the
    message here stays what we wrote, so a client reads which row and column are wrong.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)
        self._own = message

    @property
    def message(self) -> str:
        return self._own

    @message.setter
    def message(self, _value: str) -> None:
        pass


class RefinerPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.predictor = Predictor.from_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT])
        profile = context.artifacts.get(PROFILE_ARTIFACT)
        self.profile = ServingProfile.read(profile) if profile and Path(profile).is_file() else None

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        params = params or {}
        max_steps = params.get("max_steps")
        early_stopping = params.get("early_stopping")
        try:
            tasks = self._tasks(model_input)
            if self.profile is not None:
                self.profile.check_tokens(tasks)
            predictions = self.predictor.predict(
                tasks,
                max_steps=int(max_steps) if max_steps is not None else None,
                early_stopping=bool(early_stopping) if early_stopping is not None else None,
            )
        except (CheckpointError, ValueError, TypeError, pa.ArrowException) as err:
            raise RequestError(str(err)) from None
        frame = predictions.to_pandas()
        answers = [
            cut_answer([int(t) for t in canvas], n)
            for canvas, n in zip(
                frame["prediction"], answer_lengths(tasks, self.profile), strict=True
            )
        ]
        frame["prediction"] = answers
        frame["decoded"] = [
            decode_canvas(a, row["task_type"], row["num_symbols"], row["height"], row["width"])
            for a, row in zip(answers, tasks.select(_DECODE_COLUMNS).to_pylist(), strict=True)
        ]
        warnings = self.profile.warnings(tasks) if self.profile else [None] * len(answers)
        frame["warning"] = pd.Series(warnings, dtype=object)
        return frame

    def _tasks(self, model_input: Any) -> pa.Table:
        # MLflow's schema enforcement hands over a DataFrame (records, a column dict of
        # token-id lists, or a DataFrame); list columns arrive as numpy arrays.
        frame = pd.DataFrame(model_input).copy()
        for name in ("input", "target"):
            if name in frame.columns:
                frame[name] = frame[name].map(_ids)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return prediction_inputs(table, self.predictor.default_task_type, origin="request")


def _ids(value: Any) -> list[int] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return [int(v) for v in np.asarray(value).ravel()]


mlflow.models.set_model(RefinerPyfunc())
