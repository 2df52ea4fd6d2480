"""What the driver ships to every training worker (``train_loop_config["job"]``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from refiner.distributed.data import StreamPlan
from refiner.distributed.pbt_verdicts import TrialVerdicts
from refiner.model.puzzles import PuzzleIndex
from refiner.runs.tracker import NullTracker, RunTracker


@dataclass
class WorkerJob:
    """Everything a worker needs, shipped in ``train_loop_config["job"]``."""

    config: dict[str, Any]  # ExperimentConfig.to_dict()
    plan: StreamPlan
    task_type: str
    num_symbols: int | None
    run_dir: str  # where Ray Train keeps this run's checkpoints
    tracker: RunTracker = field(default_factory=NullTracker)
    has_validation: bool = True
    local_mode: bool = False  # num_workers=0: Ray keeps no checkpoints, we persist them
    field_rows: pa.Table | None = None  # held-out benchmark rows (sudoku/maze/ARC), see predictors
    puzzles: PuzzleIndex | None = None  # puzzle identities (model.puzzle_embedding)
    picture_rows: pa.Table | None = None  # held-out rows drawn at checkpoints (canvas_pictures)
    verdicts: TrialVerdicts | None = None  # PBT: wait at each checkpoint for Tune's verdict
