"""What a sweep is before Ray starts: the plan (space, base config, where things go) and
the resources one trial takes.

``plan_sweep`` checks everything a sweep reads (the space, the base config, the tasks,
the combinations the space can draw) so that bad input stops before Ray starts and
before any MLflow run exists. The ``SweepPlan`` is written next to Tune's experiment
folder, so ``--resume NAME`` needs nothing else. Pure Python (pyarrow for storage).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from refiner.checkpoints.storage import filesystem, resolve_storage
from refiner.config.experiment import ExperimentConfig, TrainingConfig, prepare_experiment
from refiner.config.sections import ConfigError
from refiner.sweep.combinations import validate_combinations
from refiner.sweep.settings import SweepSettings
from refiner.sweep.space import SearchSpace, load_space, parse_space

PLAN_FILE = "refiner_sweep.json"
DATA_CPUS = 1.0  # per running trial, for its Ray Data augmentation tasks


@dataclass
class SweepPlan:
    name: str
    space: dict[str, Any]  # SearchSpace.to_dict() (parse_space reads it back)
    space_origin: str
    base: dict[str, Any]  # the resolved run config (ExperimentConfig.to_dict())
    storage: str
    tracking_uri: str
    experiment: str
    register_name: str | None = None
    out_dir: str = "outputs/sweeps"

    @property
    def experiment_path(self) -> str:
        return f"{self.storage}/{self.name}"

    @property
    def trials_storage(self) -> str:
        """The trials' Train runs live beside (not inside) Tune's experiment folder."""
        return f"{self.storage}/{self.name}.trials"

    def search_space(self) -> SearchSpace:
        return parse_space(self.space, self.space_origin)

    def config(self) -> ExperimentConfig:
        return ExperimentConfig.from_dict(self.base)

    def save(self) -> None:
        fs, path = filesystem(self.experiment_path)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{PLAN_FILE}") as f:
            f.write(json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, storage: str | None, name: str) -> SweepPlan:
        fs, path = filesystem(f"{resolve_storage(storage)}/{name}/{PLAN_FILE}")
        try:
            with fs.open_input_stream(path) as f:
                return cls(**json.loads(f.read()))
        except (OSError, FileNotFoundError):
            raise FileNotFoundError(
                f"no sweep {name!r} in {resolve_storage(storage)} (missing {PLAN_FILE})"
            ) from None


def plan_sweep(
    space_path: str | Path,
    config_path: str | Path,
    overrides: Sequence[str] = (),
    *,
    tracking_uri: str,
    experiment: str,
    task: str | None = None,
    num_samples: int | None = None,
    steps: int | None = None,
    metric: str | None = None,
    mode: str | None = None,
    name: str | None = None,
    storage: str | None = None,
    register_name: str | None = None,
    out_dir: str | Path = "outputs/sweeps",
) -> SweepPlan:
    """Check everything a sweep reads; raises ConfigError naming file and key path.

    The base config is the config file, then the space's fixed values, then
    ``overrides`` (the user's ``--set`` wins), then ``steps``.
    """
    space = load_space(space_path)
    if num_samples is not None:
        if num_samples < 1:
            raise ConfigError(f"--num-samples: must be >= 1, got {num_samples}")
        space.settings.num_samples = num_samples
    if metric:
        space.settings.scheduler.metric = metric
    if mode:
        space.settings.scheduler.mode = mode
    objectives = space.settings.objectives
    if objectives and space.settings.scheduler.metric not in objectives:
        raise ConfigError(
            f"--metric: {space_path} has objectives {list(objectives)}; the scheduler ranks "
            f"by one of them, got {space.settings.scheduler.metric!r}"
        )
    merged = [f"{k}={json.dumps(v)}" for k, v in space.fixed.items()] + list(overrides)
    if steps is not None:
        merged.append(f"training.steps={steps}")
    config, _ = prepare_experiment(config_path, merged, task=task)
    check_trial_training(config.training)
    check_pbt_interval(space, config.training, str(space_path))
    validate_combinations(space, config.to_dict())
    return SweepPlan(
        name=name or f"{Path(space_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}",
        space=space.to_dict(),
        space_origin=str(space_path),
        base=config.to_dict(),
        storage=resolve_storage(storage),
        tracking_uri=tracking_uri,
        experiment=experiment,
        register_name=register_name,
        out_dir=str(Path(out_dir).resolve()),
    )


def check_pbt_interval(space: SearchSpace, training: TrainingConfig, origin: str) -> None:
    """PBT/PB2 compare and exploit trials at checkpoints: the interval must land on them."""
    sched = space.settings.scheduler
    if not sched.population or sched.perturbation_interval is None:
        return
    if sched.perturbation_interval % training.checkpoint_every:
        raise ConfigError(
            f"{origin}: sweep.scheduler.perturbation_interval: {sched.perturbation_interval} "
            f"is not a multiple of training.checkpoint_every={training.checkpoint_every} "
            "(an exploit restores the peer's checkpoint at that update)"
        )


def trial_run_name(sweep_name: str, trial_id: str) -> str:
    """Stable across ``Tuner.restore`` (trial ids are kept), hence resumable."""
    return f"{sweep_name}-{trial_id}"


def check_trial_training(training: TrainingConfig) -> None:
    """Under Tune, Ray Train's in-process mode (num_workers=0) has no train context."""
    if training.num_workers < 1:
        raise ConfigError(
            "training.num_workers: a sweep trial needs >= 1 Ray Train worker (0 would train "
            "inside the Tune trial process, where Ray Train refuses to run); use 1 worker "
            "with a fractional training.cpus_per_worker on small machines"
        )


def trial_cpus(settings: SweepSettings, training: TrainingConfig) -> float:
    """The trial driver only waits for its Train run: a small CPU share unless told."""
    return settings.cpus_per_trial if settings.cpus_per_trial is not None else 0.25


def trial_footprint(settings: SweepSettings, training: TrainingConfig) -> float:
    return trial_cpus(settings, training) + training.num_workers * training.cpus_per_worker


def local_cluster_cpus(settings: SweepSettings, training: TrainingConfig) -> float:
    """A local cluster gets logical room for two trials at once, each with a data CPU."""
    return 2 * (trial_footprint(settings, training) + DATA_CPUS)


def max_concurrent(settings: SweepSettings, training: TrainingConfig, cluster_cpus: float) -> int:
    """As many trials as the CPUs hold at once, each with a CPU for its Ray Data tasks.

    Ray Data (2.60) shares the CPUs that nothing has reserved among the running datasets;
    a trial whose share falls below one CPU never gets its augmentation task scheduled
    and stalls, so every trial counts one data CPU besides its driver and workers.
    """
    if settings.max_concurrent_trials is not None:
        return settings.max_concurrent_trials
    per_trial = trial_footprint(settings, training) + DATA_CPUS
    return max(1, math.floor(cluster_cpus / per_trial + 1e-9))


def describe_start(plan: SweepPlan, resume: bool) -> str:
    """The line a sweep job prints before its first trial."""
    space, training = plan.search_space(), plan.config().training
    search = space.settings.search
    searcher = "random" if search.type == "random" else f"optuna ({search.sampler})"
    goal = (
        "objectives " + ", ".join(f"{m} {d}" for m, d in space.settings.objectives.items())
        if space.settings.objectives
        else f"{space.settings.scheduler.metric} {space.settings.scheduler.mode}"
    )
    return (
        f"{'resuming' if resume else 'starting'} {plan.name!r}: space {plan.space_origin} "
        f"({', '.join(space.params)}), {space.settings.num_samples} sample(s), "
        f"{training.steps} updates per trial on {plan.config().task.source}, "
        f"scheduler {space.settings.scheduler.type}, search {searcher}, {goal}; "
        f"MLflow {plan.tracking_uri} "
        f"(experiment {plan.experiment!r})"
    )
