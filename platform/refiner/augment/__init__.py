"""The augmentation engine: ~300 augmented rows per task, deterministic and vectorised.

Strategy names are the seed's vocabulary. Input-only strategies perturb the input and
leave the target exact; label-consistent ones transform input and target together.
What each strategy does per task kind is tabled in ``refiner.augment.engine``.

Public API: ``AugmentationSpec``, ``Augmenter`` (a picklable callable for Ray Data's
``map_batches(..., batch_format="numpy")``), ``augment_batch`` and ``augment_table``.
"""

from refiner.augment.engine import Augmenter, augment_batch, augment_table
from refiner.augment.spec import DEFAULT_INTENSITY, AugmentationSpec  # noqa: I001
from refiner.augment.strategies import (
    INPUT_ONLY_STRATEGIES,
    LABEL_CONSISTENT_STRATEGIES,
    STRATEGIES,
)

__all__ = [
    "DEFAULT_INTENSITY",
    "INPUT_ONLY_STRATEGIES",
    "LABEL_CONSISTENT_STRATEGIES",
    "STRATEGIES",
    "AugmentationSpec",
    "Augmenter",
    "augment_batch",
    "augment_table",
]
