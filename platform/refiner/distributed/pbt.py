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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import ray.train
from ray import tune
from ray.train.v2.api.callback import UserCallback
from ray.util.queue import Empty, Queue

from refiner.checkpoints.storage import (
    CHECKPOINT_META,
    filesystem,
    list_checkpoints,
    persist_checkpoint,
)
from refiner.config.experiment import ExperimentConfig
from refiner.distributed.compat import quiet_tune_checkpoint_logging
from refiner.distributed.pbt_verdicts import TrialVerdicts
from refiner.distributed.trainer import run_training
from refiner.runs.tracker import RunTracker

GENERATION_TAG = "refiner.pbt.generation"
ORIGIN_TRIAL_TAG = "refiner.pbt.restored_from_trial"
ORIGIN_STEP_TAG = "refiner.pbt.restored_from_step"
GENERATION_NOTE_PREFIX = "refiner.pbt.g"  # + generation: where its weights came from, in words
# + generation: how many updates the trial went back (the update it had reached minus
# the restored checkpoint's); an exploit goes on from the peer's latest checkpoint,
# which may be behind the trial (or ahead: then negative)
WENT_BACK_SUFFIX = ".went_back"


def generation_note(origin: str, trial_id: str, step: int, left_at: int | None) -> str:
    """Where a generation's weights came from: a peer (an exploit) or the trial itself."""
    note = f"{'exploited trial ' + origin if origin != trial_id else 'resumed'} at update {step}"
    return note if left_at is None else f"{note}, leaving update {left_at}"


@dataclass(frozen=True)
class PopulationHistory:
    """What a sweep's trial runs record of their exploits."""

    exploits: list[str]  # one line per exploit, by trial, oldest first
    went_back: int  # updates trained again (exploits and resumes), beyond the final steps


def population_history(tags_by_trial: Mapping[str, Mapping[str, str]]) -> PopulationHistory:
    """Read back from each trial's run tags (trial id -> tags) what ``_seed_generation``
    recorded."""
    lines, went_back = [], 0
    for trial_id, tags in tags_by_trial.items():
        generations = sorted(
            int(key[len(GENERATION_NOTE_PREFIX) :])
            for key in tags
            if key.startswith(GENERATION_NOTE_PREFIX)
            and key[len(GENERATION_NOTE_PREFIX) :].isdigit()
        )
        for g in generations:
            note = tags[f"{GENERATION_NOTE_PREFIX}{g}"].split("; ", 1)[0]
            went_back += int(tags.get(f"{GENERATION_NOTE_PREFIX}{g}{WENT_BACK_SUFFIX}", 0))
            if note.startswith("exploited"):
                lines.append(f"{trial_id} generation {g}: {note}")
    return PopulationHistory(lines, went_back)


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
    run_name = _generation_run(name, generation)
    # Where the trial's previous Train run stopped: at the checkpoint Tune decided on.
    reached = list_checkpoints(f"{storage}/{_generation_run(name, generation - 1)}")
    left_at = reached[-1][0] if reached else None
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
            f"{GENERATION_NOTE_PREFIX}{generation}": (
                f"{generation_note(origin, trial_id, step, left_at)}; checkpoint {start.path}; "
                f"went on with {values}"
            )[:5000],
            f"{GENERATION_NOTE_PREFIX}{generation}{WENT_BACK_SUFFIX}": str(
                0 if left_at is None else left_at - step
            ),
        }
    )
    print(
        f"[pbt] {trial_id} generation {generation}: weights from trial {origin} at update "
        f"{step}; values {values}",
        flush=True,
    )
    return run_name


def _generation_run(name: str, generation: int) -> str:
    """A trial's Train run per generation: its first run has the trial's name."""
    return name if generation == 0 else f"{name}-g{generation}"


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
