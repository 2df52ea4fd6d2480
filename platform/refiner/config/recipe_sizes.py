"""The general recipe's sizes, taken from the tasks: a model for data no recipe was written for.

Kept apart from ``refiner.config.recipes`` (which prepares runs through ``refiner.config.experiment``) so
that ``refiner.config.experiment`` can apply them without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from refiner.config.sections import ModelConfig
from refiner.data.tokenizers import NUM_SPECIAL

# d_model for short sequences over a small alphabet, and for anything larger.
SMALL_D_MODEL, LARGE_D_MODEL = 64, 128
SMALL_MAX_LENGTH, SMALL_MAX_SYMBOLS = 48, 64


def fit_general_recipe(model: ModelConfig, tasks: pa.Table, overrides: Sequence[str] = ()) -> None:
    """Set the general recipe's data-dependent sizes; a key given in ``overrides`` stays.

    Whole-sequence attention costs length^2 per layer, and a wider alphabet needs wider
    embeddings to keep its symbols apart: short rows over few symbols get the small width.
    """
    given = {o.split("=", 1)[0].strip() for o in overrides}
    small = model.seq_len <= SMALL_MAX_LENGTH and distinct_symbols(tasks) <= SMALL_MAX_SYMBOLS
    if "model.d_model" not in given:
        model.d_model = SMALL_D_MODEL if small else LARGE_D_MODEL
    model.validate()


def distinct_symbols(tasks: pa.Table) -> int:
    """How many content symbols the tasks' inputs and targets use."""
    ids = pa.chunked_array(
        [*pc.list_flatten(tasks.column("input")).chunks]
        + [*pc.list_flatten(tasks.column("target")).chunks]
    )
    unique = pc.unique(ids).to_numpy()
    return int((unique >= NUM_SPECIAL).sum())
