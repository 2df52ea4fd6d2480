"""The run config a training job reads (YAML), and how it becomes a training state.

```yaml
seed: 0
task:            # what to train on (TaskConfig)
model:           # RefinerModel sizes (refiner.config.sections.ModelConfig)
orchestration:   # train many / infer few (refiner.config.sections.OrchestrationConfig)
training:        # optimizer, schedule, workers, reporting, checkpoints (TrainingConfig)
```

Every key has a default, so an empty file is a valid config; unknown keys are errors
that name the key path. ``--set a.b=v`` overrides go through ``load_experiment_config``.
The module is pure Python/PyTorch (no Ray, no MLflow): the plain loop, the Ray workers
and ``jobs/evaluate.py`` all build their state here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch

from refiner.augment.batch import task_kind
from refiner.augment.budget import check_budget
from refiner.augment.engine import augment_table
from refiner.augment.spec import AugmentationSpec
from refiner.augment.strategies import label_breaking
from refiner.config.loader import (
    ConfigError,
    YamlConfig,
    apply_overrides,
    load_dataclass,
    read_yaml,
    require,
)
from refiner.config.recipe_sizes import fit_general_recipe
from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.tokenizers import NUM_SPECIAL
from refiner.model.puzzles import PuzzleIndex
from refiner.tasks.sources import SOURCES, load_tasks
from refiner.train.fast_path import CompileSetting
from refiner.train.optim import make_optimizer, warmup_cosine
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


@dataclass
class TaskConfig(YamlConfig):
    """Which tasks to train on. ``source``: a built-in source name or a task file."""

    source: str = "parity"
    count: int | None = None  # tasks from a built-in source (null: its default); a file: first N
    size: int | None = None  # sequence length / sudoku side / max ARC grid side (null: default)
    options: dict[str, Any] = field(default_factory=dict)  # further source options
    val_split: str = "val"  # held out, not augmented; "test" is used when there is no "val"
    val_max_rows: int = 512  # validation rows evaluated at each checkpoint
    augment: bool = True  # False: train on the tasks as they are (fresh order each epoch)
    augment_intensity: dict[str, float] = field(default_factory=dict)  # per strategy, [0, 1]
    augment_dedup: bool = False  # drop identical augmented rows of a grid task

    def validate(self) -> None:
        require(bool(self.source), "source: must name a built-in source or a task file")
        require(self.val_max_rows >= 1, f"val_max_rows: must be >= 1, got {self.val_max_rows}")


@dataclass
class TrainingConfig(YamlConfig):
    """Optimisation, scale-out, reporting and checkpointing."""

    steps: int = 300  # optimizer updates (all workers step together under DDP)
    batch_size: int = 64  # rows per worker per update
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    num_workers: int = 2  # Ray Train workers; 0 runs the loop in the driver process
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    # Custom Ray resources each worker asks for besides CPU/GPU, e.g. {rehearsal_worker: 1}:
    # with a node type declaring `resources: {rehearsal_worker: 1}` the workers land one per
    # such node (docs/cluster.md, "Rehearse before you rent").
    worker_resources: dict[str, float] = field(default_factory=dict)
    torch_threads: int = 1  # intra-op threads per worker (workers x threads <= cores)
    report_every: int = 10  # metrics to Ray and MLflow every N updates
    checkpoint_every: int = 100  # a full checkpoint (with validation) every N updates
    # ... and one at every data-epoch end; off for small task files whose epoch is a few
    # updates (e.g. ARC's demonstrations with few copies), where it would validate constantly
    checkpoint_at_epoch_end: bool = True
    num_to_keep: int = 2  # checkpoints kept (the latest is always kept)
    checkpoint_score: str = "val_acc_infer"  # checkpoints ranked by this metric (max)
    max_failures: int = 2  # worker-group restarts before the run fails
    # A checkpoint write that fails (object store unreachable) is retried with backoff for
    # this long; then the run fails with one error naming the storage.
    storage_retry_s: float = 120.0
    # Metrics reported while the tracking server is down wait in a bounded buffer; at the
    # end of training the buffer is retried this long, then what is left is counted.
    tracking_retry_s: float = 120.0
    shuffle_buffer_rows: int = 4096  # local shuffle of augmented rows before batching
    # The puzzle table (model.puzzle_embedding): sign-SGD on the rows a batch used, LR on
    # the dense schedule (HRM/TRM use 1e-2 and weight decay 0.1)
    puzzle_lr: float = 1e-2
    puzzle_weight_decay: float = 0.1
    # tasks per Ray Data augmentation call: raised to make rows for 8 updates at least,
    # lowered to fit augment_block_mb
    tasks_per_augment_batch: int = 32
    augment_block_mb: int = 1024  # memory one augmentation call may use (refiner.augment.budget)
    # Stop the run (FAILED, nothing saved) after this many consecutive updates skipped for
    # non-finite gradients (the NaN/Inf guard); null: keep skipping and keep going.
    max_skipped_updates: int | None = None
    # The field's metrics at checkpoints (sudoku/maze exact per puzzle and cell, ARC
    # pass@1/pass@2): ARC test inputs are refined in this many views and voted. Small by
    # default (the 8 dihedral views, colours kept); a GPU run may take 64 or more.
    vote_views: int = 8
    # The fast path (torch.compile of the step and its losses; bucketed inference):
    # auto = on for CUDA workers, off on CPU (RefinerModel.enable_fast_path).
    compile: CompileSetting = "auto"

    def validate(self) -> None:
        for name in ("steps", "batch_size", "report_every", "checkpoint_every", "num_to_keep"):
            value = getattr(self, name)
            require(value >= 1, f"{name}: must be >= 1, got {value}")
        require(self.lr > 0, f"lr: must be > 0, got {self.lr}")
        require(self.puzzle_lr > 0, f"puzzle_lr: must be > 0, got {self.puzzle_lr}")
        require(
            self.puzzle_weight_decay >= 0,
            f"puzzle_weight_decay: must be >= 0, got {self.puzzle_weight_decay}",
        )
        require(self.warmup_steps >= 0, f"warmup_steps: must be >= 0, got {self.warmup_steps}")
        require(
            0 <= self.min_lr_ratio <= 1, f"min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}"
        )
        require(self.num_workers >= 0, f"num_workers: must be >= 0, got {self.num_workers}")
        require(
            self.cpus_per_worker > 0, f"cpus_per_worker: must be > 0, got {self.cpus_per_worker}"
        )
        for name, amount in self.worker_resources.items():
            require(
                isinstance(amount, int | float) and amount > 0,
                f"worker_resources.{name}: must be a number > 0, got {amount!r}",
            )
        require(self.torch_threads >= 1, f"torch_threads: must be >= 1, got {self.torch_threads}")
        require(self.vote_views >= 1, f"vote_views: must be >= 1, got {self.vote_views}")
        require(self.max_failures >= 0, f"max_failures: must be >= 0, got {self.max_failures}")
        for name in ("storage_retry_s", "tracking_retry_s"):
            value = getattr(self, name)
            require(value >= 0, f"{name}: must be >= 0, got {value}")
        require(
            self.max_skipped_updates is None or self.max_skipped_updates >= 1,
            f"max_skipped_updates: must be >= 1 or null, got {self.max_skipped_updates}",
        )
        require(
            self.shuffle_buffer_rows >= 0,
            f"shuffle_buffer_rows: must be >= 0, got {self.shuffle_buffer_rows}",
        )
        require(
            self.tasks_per_augment_batch >= 1,
            f"tasks_per_augment_batch: must be >= 1, got {self.tasks_per_augment_batch}",
        )
        require(
            self.augment_block_mb >= 1,
            f"augment_block_mb: must be >= 1, got {self.augment_block_mb}",
        )


@dataclass
class ExperimentConfig(YamlConfig):
    seed: int = 0
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


def load_experiment_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
    origin: str | Path | None = None,
) -> ExperimentConfig:
    """YAML file (or ``base`` dict) + ``key.path=value`` overrides -> a validated config.

    Errors name the file and the key path (``--set`` errors name the override).
    """
    data: Any = dict(base or {})
    if path is not None:
        data = read_yaml(path)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    origin = str(path or origin or "config")
    try:
        data = apply_overrides(data, overrides, ExperimentConfig)
    except ConfigError as err:
        raise ConfigError(f"--set: {err}") from None
    try:
        return load_dataclass(ExperimentConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{origin}: {err}") from None


def prepare_experiment(
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    task: str | None = None,
    fit_to_data: bool = False,
) -> tuple[ExperimentConfig, pa.Table]:
    """Config file, then ``--task``, then ``--set`` overrides; load and validate the tasks.

    ``fit_to_data`` (the general recipe, ``refiner.config.recipe_sizes``): the model's width follows the
    tasks' lengths and alphabet too, unless an override gives it.

    ``task`` (``--task SOURCE_OR_FILE``) replaces the config's task source and drops its
    source-specific count/size/options, so ``--task sudoku`` means sudoku with its own
    defaults. ``model.seq_len`` follows the longest task unless the config or an
    override sets it. Everything that can be wrong with the input fails here, before
    any compute starts.
    """
    data: dict[str, Any] = {}
    if config_path is not None:
        loaded = read_yaml(config_path)
        if loaded is not None and not isinstance(loaded, Mapping):
            raise ConfigError(f"{config_path}: expected a mapping at the top level")
        data = dict(loaded or {})
    if task is not None:
        kept = {k: v for k, v in dict(data.get("task") or {}).items() if k not in _SOURCE_KEYS}
        data["task"] = {**kept, "source": task}
    config = load_experiment_config(base=data, overrides=overrides, origin=config_path)
    seq_len_given = "seq_len" in (data.get("model") or {}) or any(
        o.split("=", 1)[0].strip() == "model.seq_len" for o in overrides
    )
    origin = f"{config_path}: " if config_path is not None else ""
    try:
        tasks = load_task_table(config.task, config.seed)
    except ValueError as err:
        if config.task.source in SOURCES or _looks_like_task_file(config.task.source):
            raise  # a task-file error already names the file, row and field
        where = "--task" if task is not None else f"{origin}task.source"
        raise ConfigError(f"{where}: {err}") from None
    longest = max(
        pc.max(pc.list_value_length(tasks.column(c))).as_py() for c in ("input", "target")
    )
    if not seq_len_given:
        config.model.seq_len = int(longest)
    elif longest > config.model.seq_len:
        lengths = pc.max_element_wise(
            pc.list_value_length(tasks.column("input")),
            pc.list_value_length(tasks.column("target")),
        )
        row = int(pc.index(lengths, pa.scalar(longest, lengths.type)).as_py())
        raise ConfigError(
            f"{origin}model.seq_len: {config.model.seq_len} is shorter than task "
            f"{tasks.column('task_id')[row].as_py()!r} ({longest} tokens) in {config.task.source}; "
            f"raise it or leave it unset to follow the data"
        )
    if config.model.attention_layout == "grid":
        width = _grid_width(tasks, f"{origin}model.attention_layout")
        if config.model.grid_width not in (0, width):
            raise ConfigError(
                f"{origin}model.grid_width: {config.model.grid_width} does not match the"
                f" tasks' grids ({width} wide); leave it unset to follow the data"
            )
        config.model.grid_width = width
    if fit_to_data:
        fit_general_recipe(config.model, tasks, overrides)
    if config.task.augment:
        _refuse_label_breaking(config, tasks, origin)
    _check_target_symbols(config, tasks, origin)
    check_budget(config, origin)
    return config, tasks


def _grid_width(tasks: pa.Table, where: str) -> int:
    """The one width every task's grid has (the grid layout's local windows need it)."""
    widths = tasks.column("width")
    if widths.null_count:
        row = int(pc.index(pc.is_null(widths), pa.scalar(True)).as_py())
        raise ConfigError(
            f"{where}: grid needs grid tasks; task {tasks.column('task_id')[row].as_py()!r}"
            " has no grid width"
        )
    distinct = pc.unique(widths).to_pylist()
    if len(distinct) > 1:
        row = int(pc.index(widths, pa.scalar(distinct[1], widths.type)).as_py())
        raise ConfigError(
            f"{where}: grid needs one grid width, but the tasks have {sorted(distinct)}"
            f" (task {tasks.column('task_id')[row].as_py()!r} is {distinct[1]} wide)"
        )
    return int(distinct[0])


def _check_target_symbols(config: ExperimentConfig, tasks: pa.Table, origin: str) -> None:
    """A weighted target symbol that no task's target holds is a typo, not a no-op."""
    weighted = config.orchestration.step_loss_weights.target_symbols
    if not weighted:
        return
    held = {t - NUM_SPECIAL for t in pc.unique(pc.list_flatten(tasks.column("target"))).to_pylist()}
    for symbol in weighted:
        if int(symbol) not in held:
            raise ConfigError(
                f"{origin}orchestration.step_loss_weights.target_symbols.{symbol}: no task's"
                f" target holds symbol {symbol} (they hold {sorted(s for s in held if s >= 0)})"
            )


def _refuse_label_breaking(config: ExperimentConfig, tasks: pa.Table, origin: str) -> None:
    """Input-only strategies that would make wrong labels for these tasks are an error."""
    strategies: list[str] = list(config.orchestration.augmentation_strategies)
    pairs = pc.unique(
        pc.binary_join_element_wise(tasks.column("task_type"), tasks.column("source"), "\0")
    ).to_pylist()
    for pair in pairs:
        task_type, source = pair.split("\0", 1)
        kind = task_kind(task_type, source)
        bad = label_breaking(strategies, kind)
        if bad:
            i = strategies.index(bad[0])
            raise ConfigError(
                f"{origin}orchestration.augmentation_strategies[{i}]: {bad[0]!r} keeps the "
                f"target of a {kind} task while changing its input, which makes wrong labels "
                f"there; remove it (refused for {kind}: {', '.join(bad)})"
            )


_SOURCE_KEYS = ("count", "size", "options")
CALIBRATION_EPOCH = 1_000_003  # far past any training epoch: views of their own


def _looks_like_task_file(source: str) -> bool:
    return Path(source).suffix.lower() in (".parquet", ".pq", ".jsonl", ".ndjson")


def load_task_table(task: TaskConfig, seed: int) -> pa.Table:
    """The tasks of a TaskConfig: a built-in source's output or a validated task file."""
    if task.source in SOURCES:
        options = {k: v for k, v in task.options.items()}
        if task.size is not None:
            options["size"] = task.size
        return load_tasks(task.source, count=task.count, seed=seed, **options)
    if task.options or task.size is not None:
        raise ConfigError(
            f"task.options/task.size apply to built-in sources ({', '.join(SOURCES)}), "
            f"not to the task file {task.source}"
        )
    return load_tasks(task.source, count=task.count)


def augmentation_spec(config: ExperimentConfig) -> AugmentationSpec:
    """The run's augmentation: the seed's strategies and count, or none at all."""
    if not config.task.augment:
        return AugmentationSpec(strategies=(), count=1)
    return AugmentationSpec(
        strategies=tuple(config.orchestration.augmentation_strategies),
        count=config.orchestration.augmentation_count,
        intensity=dict(config.task.augment_intensity),
        dedup=config.task.augment_dedup,
        # per-augmentation puzzle identities: copy i must be one transform of the puzzle
        seed_by_group=config.model.puzzle_embedding == "per_augmentation",
    )


def calibration_rows(config: ExperimentConfig, held_out: pa.Table) -> pa.Table:
    """The rows halting is calibrated on: the held-out rows, or with
    orchestration.stopping.calibration_views = N each of them in N views made by the run's
    label-consistent strategies (so every view's target is still the right answer)."""
    views = config.orchestration.stopping.calibration_views
    if views == 1 or held_out.num_rows == 0:
        return held_out
    spec = dataclasses.replace(
        augmentation_spec(config),
        strategies=config.orchestration.calibration_strategies(),
        count=views,
    )
    # an epoch of its own: the views are not copies the training stream also drew
    return augment_table(
        held_out, spec, config.seed, epoch=CALIBRATION_EPOCH, pad_to=config.model.seq_len
    )


def fit_puzzle_table(config: ExperimentConfig, train_tasks: pa.Table) -> PuzzleIndex | None:
    """The puzzle identities of the training rows (None with model.puzzle_embedding off);
    sets model.puzzle_identities to the table size they need (1 reserved + identities)."""
    mode = config.model.puzzle_embedding
    if mode == "off":
        return None
    count = config.orchestration.augmentation_count if config.task.augment else 1
    index = PuzzleIndex.from_tasks(train_tasks, mode, count, augmentation_spec(config), config.seed)
    config.model.puzzle_identities = index.size
    return index


def build_orchestrator(
    config: ExperimentConfig,
    task_type: str = "sequence",
    num_symbols: int | None = None,
    device: torch.device | str | None = None,
    wrap_model: Any = None,
    puzzles: PuzzleIndex | None = None,
) -> UnifiedRefinerOrchestrator:
    """Model + memory bank + orchestrator, seeded from the config (see
    ``UnifiedRefinerOrchestrator.from_config``).

    ``wrap_model`` (e.g. Ray Train's ``prepare_model``) wraps the model for DDP; it is
    applied before the orchestrator is built so that training goes through the wrapper.
    ``puzzles``: the identities from ``fit_puzzle_table`` (with a puzzle embedding).
    """
    orchestrator = UnifiedRefinerOrchestrator.from_config(
        config.model,
        config.orchestration,
        task_type=task_type,
        num_symbols=num_symbols,
        device=device,
        seed=config.seed,
        wrap_model=wrap_model,
        compile=config.training.compile,
    )
    orchestrator.puzzle_index = puzzles
    return orchestrator


def build_optimizer(
    orchestrator: UnifiedRefinerOrchestrator, training: TrainingConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = make_optimizer(
        orchestrator.model, lr=training.lr, weight_decay=training.weight_decay
    )
    if orchestrator.puzzle_optimizer is not None:
        orchestrator.puzzle_optimizer.lr = training.puzzle_lr
        orchestrator.puzzle_optimizer.weight_decay = training.puzzle_weight_decay
    scheduler = warmup_cosine(
        optimizer, training.warmup_steps, training.steps, min_ratio=training.min_lr_ratio
    )
    return optimizer, scheduler
