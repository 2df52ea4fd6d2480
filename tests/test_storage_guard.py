"""The multi-node storage guard's decision (no Ray started): which --storage is refused.

The rehearsal (tests/rehearsal/test_rehearsal_happy.py) proves it on a real 3-node cluster
through ``ray job submit``; here each case of the rule, in milliseconds.
"""

from __future__ import annotations

import pytest

from refiner.checkpoints.storage import StorageError
from refiner.config.experiment import TrainingConfig
from refiner.distributed.cluster import SHARED_STORAGE_ENV, check_storage_shared


def test_a_local_path_on_several_nodes_is_refused_naming_what_works(monkeypatch):
    monkeypatch.delenv(SHARED_STORAGE_ENV, raising=False)
    with pytest.raises(StorageError) as refused:
        check_storage_shared("/home/ray/ckpt", nodes=3)
    message = str(refused.value)
    assert message.startswith("--storage /home/ray/ckpt is a local path")
    assert "3 nodes" in message and "s3://" in message and f"{SHARED_STORAGE_ENV}=1" in message


@pytest.mark.parametrize("storage", ["s3://bucket/ckpt", "gs://bucket/ckpt"])
def test_object_storage_passes_on_any_cluster(storage, monkeypatch):
    monkeypatch.delenv(SHARED_STORAGE_ENV, raising=False)
    check_storage_shared(storage, nodes=5)


def test_a_local_path_passes_on_one_node_or_when_declared_shared(monkeypatch):
    monkeypatch.delenv(SHARED_STORAGE_ENV, raising=False)
    check_storage_shared("/tmp/ckpt", nodes=1)
    monkeypatch.setenv(SHARED_STORAGE_ENV, "1")
    check_storage_shared("/mnt/nfs/ckpt", nodes=4)


def test_worker_resources_must_be_positive_numbers():
    TrainingConfig(worker_resources={"rehearsal_worker": 1}).validate()
    with pytest.raises(ValueError, match="worker_resources.gpu_node: must be a number > 0"):
        TrainingConfig(worker_resources={"gpu_node": 0}).validate()
