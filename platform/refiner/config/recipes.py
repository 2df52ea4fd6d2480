"""Which run config (recipe) a training job starts from, and why.

A recipe is a YAML file in ``jobs/configs/``. The built-in sources with a recipe of their
own (parity, sudoku, maze, arc) use it; anything else (a user's task file, the ``text``
source) gets ``general.yaml``: whole-sequence attention, no augmentation, sizes fitted
to the data's lengths and alphabet by ``refiner.config.recipe_sizes``. The job prints the choice
and its reason on ``--dry-run`` and in the run's first line, so nobody trains a task file
with the parity recipe without knowing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from refiner.config.recipe_sizes import distinct_symbols

if TYPE_CHECKING:  # experiment imports this module
    from refiner.config.experiment import ExperimentConfig

DEMO_SOURCE = "parity"  # what a run without --task trains (`make run`)
GENERAL = "general"


@dataclass(frozen=True)
class Recipe:
    """The config file a run reads, the ``--task`` to apply on top of it, and why."""

    path: Path
    task: str | None
    reason: str

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def fits_the_data(self) -> bool:
        """The general recipe sizes its model from the tasks (``refiner.config.recipe_sizes``)."""
        return self.name == GENERAL

    def prepare(self, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, pa.Table]:
        """The config and tasks (``refiner.config.experiment.prepare_experiment``) of this recipe."""
        from refiner.config.experiment import prepare_experiment

        return prepare_experiment(
            self.path, overrides, task=self.task, fit_to_data=self.fits_the_data
        )

    def explain(self, config: ExperimentConfig, tasks: pa.Table) -> str:
        """One line: which recipe, why, and (general recipe) the sizes it took from the data."""
        line = f"recipe {self.name} ({self.path}): {self.reason}"
        if not self.fits_the_data:
            return line
        return (
            f"{line}; rows up to {config.model.seq_len} tokens over {distinct_symbols(tasks)}"
            f" distinct symbols: d_model {config.model.d_model}, {config.model.n_layers} layers"
        )


def choose_recipe(config: str | Path | None, task: str | None, configs_dir: str | Path) -> Recipe:
    """An explicit ``--config`` wins; else the ``--task`` source's own recipe; else (a task
    file or a source without one) the general recipe; no ``--task`` at all: parity's."""
    configs_dir = Path(configs_dir)
    if config is not None:
        return Recipe(Path(config), task, "given with --config")
    source = task or DEMO_SOURCE
    own = configs_dir / f"{source}.yaml"
    if own.is_file() and source != GENERAL and not _is_file_path(source):
        why = "no --task: the built-in parity demo" if task is None else f"{source}'s own recipe"
        return Recipe(own, None, why)
    what = "the text source" if source == "text" else f"{source!r}"
    return Recipe(
        configs_dir / f"{GENERAL}.yaml",
        task,
        f"no recipe written for {what}: whole-sequence attention, no augmentation,"
        " sizes fitted to the data",
    )


def _is_file_path(source: str) -> bool:
    return Path(source).suffix != "" or "/" in source
