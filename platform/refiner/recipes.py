"""Which run config (recipe) a training job starts from, and why.

A recipe is a YAML file in ``jobs/configs/``. The built-in sources with a recipe of their
own (parity, sudoku, maze, arc) use it; anything else (a user's task file, the ``text``
source) gets ``general.yaml``: whole-sequence attention, no augmentation, sizes fitted
to the data's lengths and alphabet by ``fit_general_recipe``. The job prints the choice
and its reason on ``--dry-run`` and in the run's first line, so nobody trains a task file
with the parity recipe without knowing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from refiner.tokenizers import NUM_SPECIAL

if TYPE_CHECKING:  # experiment imports this module
    from refiner.experiment import ExperimentConfig

DEMO_SOURCE = "parity"  # what a run without --task trains (`make run`)
GENERAL = "general"
# d_model for short sequences over a small alphabet, and for anything larger.
SMALL_D_MODEL, LARGE_D_MODEL = 64, 128
SMALL_MAX_LENGTH, SMALL_MAX_SYMBOLS = 48, 64


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
        """The general recipe sizes its model from the tasks (``fit_general_recipe``)."""
        return self.name == GENERAL

    def prepare(self, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, pa.Table]:
        """The config and tasks (``refiner.experiment.prepare_experiment``) of this recipe."""
        from refiner.experiment import prepare_experiment

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


def fit_general_recipe(
    config: ExperimentConfig, tasks: pa.Table, overrides: Sequence[str] = ()
) -> None:
    """Set the general recipe's data-dependent sizes; a key given in ``overrides`` stays.

    Whole-sequence attention costs length^2 per layer, and a wider alphabet needs wider
    embeddings to keep its symbols apart: short rows over few symbols get the small width.
    """
    given = {o.split("=", 1)[0].strip() for o in overrides}
    small = (
        config.model.seq_len <= SMALL_MAX_LENGTH and distinct_symbols(tasks) <= SMALL_MAX_SYMBOLS
    )
    if "model.d_model" not in given:
        config.model.d_model = SMALL_D_MODEL if small else LARGE_D_MODEL
    config.model.validate()


def distinct_symbols(tasks: pa.Table) -> int:
    """How many content symbols the tasks' inputs and targets use."""
    ids = pa.chunked_array(
        [*pc.list_flatten(tasks.column("input")).chunks]
        + [*pc.list_flatten(tasks.column("target")).chunks]
    )
    unique = pc.unique(ids).to_numpy()
    return int((unique >= NUM_SPECIAL).sum())
