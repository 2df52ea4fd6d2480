"""Ray Data calls the Augmenter directly: map_batches(Augmenter(...), batch_format="numpy")."""

from __future__ import annotations

import numpy as np
import pytest
from augment_tasks import mixed_table

from refiner.augment import AugmentationSpec, Augmenter, augment_table

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_map_batches_matches_augment_table(local_ray):
    tasks = mixed_table()
    spec = AugmentationSpec(count=5)
    dataset = ray.data.from_arrow(tasks).map_batches(
        Augmenter(spec, seed=3, epoch=1, pad_to=900), batch_format="numpy", batch_size=4
    )
    rows = dataset.take_all()
    assert len(rows) == tasks.num_rows * spec.count
    expected = augment_table(tasks, spec, seed=3, epoch=1, pad_to=900).to_pylist()
    by_key = {(r["task_id"], r["aug_index"]): r for r in expected}
    for row in rows:
        want = by_key[(row["task_id"], int(row["aug_index"]))]
        np.testing.assert_array_equal(np.asarray(row["input"]), want["input"])
        np.testing.assert_array_equal(np.asarray(row["target"]), want["target"])
        assert int(row["aug_seed"]) == want["aug_seed"]
        assert int(row["aug_epoch"]) == want["aug_epoch"] == 1
        assert row["aug_strategies"] == want["aug_strategies"]
        np.testing.assert_allclose(np.asarray(row["aug_intensity"]), want["aug_intensity"])
