"""A population-based-training trial: checkpoints handed to Tune, and a peer's taken back.

PBT compares trials at their checkpoints and makes a weak trial go on from a strong
trial's checkpoint with mutated settings. Tune does that with the checkpoints a trial
reports, and restarts the trial with ``tune.get_checkpoint()`` set to the peer's. Ray
Train's ``TuneReportCallback`` forwards metrics only, so here:

- the Train run's reports (metrics and checkpoint) come back to the trial's own process
  through a queue, and the trial reports them to Tune with the checkpoint;
- a trial that starts with a Tune checkpoint (its own after a pause or resume, or a
  peer's after an exploit) starts a new Train run, a *generation*, whose storage is
  seeded with a copy of that checkpoint: the training loop restores everything from it
  (weights, optimizer, LR schedule, EMA, calibration, Grokfast state) and the data
  stream starts at its data epoch, as for any resumed run. The trial's config, with
  the mutated values, wins where it may differ (the learning rate: see the loop);
- at each checkpoint the run waits for Tune's verdict on it (``pbt_verdicts``), so that
  a generation Tune ends trains and logs nothing past the checkpoint it ended at.

The trial's MLflow child run records each generation: which trial and update its
weights came from, and the values it went on with.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import ray.train
from ray import tune
from ray.train.v2.api.callback import UserCallback
from ray.util.queue import Empty, Queue

from refiner.checkpoints.storage import CHECKPOINT_META, filesystem, persist_checkpoint
from refiner.config.experiment import ExperimentConfig
from refiner.distributed.compat import quiet_tune_checkpoint_logging
from refiner.distributed.pbt_verdicts import TrialVerdicts
from refiner.distributed.trainer import run_training
from refiner.runs.tracker import RunTracker

GENERATION_TAG = "refiner.pbt.generation"
ORIGIN_TRIAL_TAG = "refiner.pbt.restored_from_trial"
ORIGIN_STEP_TAG = "refiner.pbt.restored_from_step"


class CheckpointReportCallback(UserCallback):
    """In the Train run's controller: every report, with its checkpoint, to the trial."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        self.queue.put((dict(metrics[0]), checkpoint), block=True)


def train_population_member(
    config: ExperimentConfig,
    tasks: pa.Table,
    name: str,
    storage: str,
    tracker: RunTracker,
    swept: Mapping[str, Any],
    sweep_name: str,
) -> None:
    """Run (or continue) one PBT trial; every report reaches Tune with its checkpoint,
    and the run goes on past a checkpoint only once Tune has decided it may."""
    quiet_tune_checkpoint_logging()  # the trial's own progress lines say it
    trial_id = tune.get_context().get_trial_id()
    verdicts = TrialVerdicts.for_new_generation(sweep_name, trial_id)
    start = tune.get_checkpoint()
    run_name = name
    if start is not None:
        run_name = _seed_generation(start, storage, name, trial_id, tracker, swept, config)
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            run_training(
                config,
                tasks,
                run_name,
                storage,
                tracker,
                callbacks=[CheckpointReportCallback(queue)],
                verdicts=verdicts,
            )
        except BaseException as err:  # re-raised in the trial's thread below
            failure.append(err)

    worker = threading.Thread(target=fit, name=f"train-{run_name}", daemon=True)
    worker.start()
    while True:
        try:
            metrics, checkpoint = queue.get(block=True, timeout=1.0)
        except Empty:
            if worker.is_alive():
                continue
            break
        tune.report(metrics, checkpoint=checkpoint)
    worker.join()
    if failure:
        raise failure[0]


def _seed_generation(
    start: ray.train.Checkpoint,
    storage: str,
    name: str,
    trial_id: str,
    tracker: RunTracker,
    swept: Mapping[str, Any],
    config: ExperimentConfig,
) -> str:
    """A new Train run for this trial, its storage holding a copy of ``start``."""
    generation = _next_generation(storage, name)
    run_name = f"{name}-g{generation}"
    with start.as_directory() as directory:
        step = int(json.loads((Path(directory) / CHECKPOINT_META).read_text())["step"])
        persist_checkpoint(directory, f"{storage}/{run_name}", step, config.training.num_to_keep)
    # Tune keeps a trial's checkpoints in the folder named after the trial (trial_dirname).
    origin = Path(start.path).parent.name
    values = json.dumps({k: swept[k] for k in swept}, default=str)
    tracker.set_tags(
        {
            GENERATION_TAG: str(generation),
            ORIGIN_TRIAL_TAG: origin,
            ORIGIN_STEP_TAG: str(step),
            f"refiner.pbt.g{generation}": (
                f"{'exploited trial ' + origin if origin != trial_id else 'resumed'} at "
                f"update {step} ({start.path}); went on with {values}"
            )[:5000],
        }
    )
    print(
        f"[pbt] {trial_id} generation {generation}: weights from trial {origin} at update "
        f"{step}; values {values}",
        flush=True,
    )
    return run_name


def _next_generation(storage: str, name: str) -> int:
    fs, root = filesystem(storage)
    try:
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except (OSError, pa.ArrowException):
        entries = []
    prefix = f"{name}-g"
    taken = [
        int(e.base_name[len(prefix) :])
        for e in entries
        if e.base_name.startswith(prefix) and e.base_name[len(prefix) :].isdigit()
    ]
    return max(taken, default=0) + 1
