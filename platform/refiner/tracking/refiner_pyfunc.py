"""The refiner's MLflow ``pyfunc`` model, logged as *model code* (never pickled).

``refiner.tracking.model.log_refiner_model`` passes this file's path as ``python_model``:
MLflow stores the file itself and, on load, runs it and takes the model given to
``set_model``. Nothing is cloudpickled, and the checkpoint artifact is read with
``torch.load(weights_only=True)``, so loading a model runs no code but this file and
the installed ``refiner`` package.

predict(model_input, params): model_input is a table of tasks (a pandas DataFrame in
the task format; only ``input`` is required; a list of token-id lists is the frame
``{"input": lists}``); params
``max_steps`` and ``early_stopping`` (default: the model's own settings). Returns a
DataFrame with the columns of ``refiner.prediction.PREDICTION_SCHEMA``.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa

from refiner.prediction import Predictor, prediction_inputs
from refiner.tracking.model import CHECKPOINT_ARTIFACT


class RefinerPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.predictor = Predictor.from_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT])

    # No type hints on predict: MLflow would read them as a second, conflicting schema.
    def predict(self, context, model_input, params=None):
        params = params or {}
        max_steps = params.get("max_steps")
        early_stopping = params.get("early_stopping")
        tasks = self._tasks(model_input)
        predictions = self.predictor.predict(
            tasks,
            max_steps=int(max_steps) if max_steps is not None else None,
            early_stopping=bool(early_stopping) if early_stopping is not None else None,
        )
        return predictions.to_pandas()

    def _tasks(self, model_input: Any) -> pa.Table:
        # MLflow's schema enforcement hands over a DataFrame (records, a column dict of
        # token-id lists, or a DataFrame); list columns arrive as numpy arrays.
        frame = pd.DataFrame(model_input).copy()
        for name in ("input", "target"):
            if name in frame.columns:
                frame[name] = frame[name].map(_ids)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return prediction_inputs(table, self.predictor.default_task_type)


def _ids(value: Any) -> list[int] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return [int(v) for v in np.asarray(value).ravel()]


mlflow.models.set_model(RefinerPyfunc())
