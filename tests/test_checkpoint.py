"""Checkpoints: exact resume, atomic writes, clear errors, no code execution on load."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from refiner_fixtures import parity_batch, tiny_config, tiny_orchestrator, weights

from refiner.checkpoints.files import (
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_configs,
    load_checkpoint,
    save_checkpoint,
)
from refiner.checkpoints.upgrades import UPGRADES
from refiner.train.optim import make_optimizer, warmup_cosine
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


def _setup(seed: int = 0):
    """Everything stateful on: dropout (torch RNG), exploration, Grokfast, memory, LR schedule."""
    config = tiny_config(
        grokfast={"mode": "ema", "alpha": 0.9}, edit_exploration=0.5, memory_writes_per_step=4
    )
    o = tiny_orchestrator(config, seed=seed, dropout=0.1)
    optimizer = make_optimizer(o.model, lr=3e-3)
    scheduler = warmup_cosine(optimizer, warmup_steps=2, total_steps=8)
    return o, optimizer, scheduler


def _train(o, optimizer, scheduler, steps: range) -> list[float]:
    return [
        o.train_step(parity_batch(16, seed=i), optimizer, lr_scheduler=scheduler).loss
        for i in steps
    ]


def test_resume_equals_straight_run(tmp_path):
    N, M = 3, 3
    straight = _setup()
    straight_losses = _train(*straight, range(N + M))

    first = _setup()
    _train(*first, range(N))
    path = save_checkpoint(tmp_path / "ckpt.pt", *first, extra={"epoch": 2, "note": "mid"})
    # Disturb every RNG the run uses, then resume into brand-new objects.
    torch.manual_seed(1234)
    resumed = _setup(seed=99)
    extra = load_checkpoint(path, *resumed)
    assert extra == {"epoch": 2, "note": "mid"}
    resumed_losses = _train(*resumed, range(N, N + M))

    assert resumed_losses == straight_losses[N:]
    for key, value in weights(straight[0]).items():
        assert torch.equal(value, weights(resumed[0])[key]), key
    s, r = straight[0], resumed[0]
    assert s.step_count == r.step_count == N + M
    assert list(s.loss_history) == list(r.loss_history)
    assert list(s.grad_norm_history) == list(r.grad_norm_history)
    assert s.edit_selector.performance() == r.edit_selector.performance()
    assert s.memory_bank.get_stats() == r.memory_bank.get_stats()
    assert straight[2].state_dict() == resumed[2].state_dict()


def test_atomic_write_leaves_only_the_checkpoint(tmp_path):
    o, optimizer, scheduler = _setup()
    save_checkpoint(tmp_path / "a" / "ckpt.pt", o, optimizer, scheduler)
    assert os.listdir(tmp_path / "a") == ["ckpt.pt"]
    model_config, config = checkpoint_configs(tmp_path / "a" / "ckpt.pt")
    assert model_config == o.core.config and config == o.config


def test_refuses_to_save_non_finite_weights(tmp_path):
    o, _, _ = _setup()
    with torch.no_grad():
        o.core.blocks[0].mlp.down.weight[0, 0] = float("inf")
    with pytest.raises(
        CheckpointError, match=r"model weight 'blocks.0.mlp.down.weight' has non-finite values"
    ):
        save_checkpoint(tmp_path / "ckpt.pt", o)
    assert not (tmp_path / "ckpt.pt").exists()


def test_refuses_extra_that_would_not_load_safely(tmp_path):
    o, _, _ = _setup()
    with pytest.raises(CheckpointError, match=r"extra.when: set cannot be stored"):
        save_checkpoint(tmp_path / "ckpt.pt", o, extra={"when": {1, 2}})
    assert list(tmp_path.iterdir()) == []


def test_truncated_file(tmp_path):
    o, optimizer, _ = _setup()
    path = save_checkpoint(tmp_path / "ckpt.pt", o, optimizer)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt checkpoint"):
        load_checkpoint(path, o)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(path, o)


def test_wrong_format_version_and_foreign_files(tmp_path):
    o, _, _ = _setup()
    path = save_checkpoint(tmp_path / "ckpt.pt", o)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError,
        match=rf"format version {FORMAT_VERSION + 1}; this code reads version {FORMAT_VERSION}",
    ):
        load_checkpoint(path, o)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a refiner checkpoint"):
        load_checkpoint(path, o)
    path.write_text("model: yes\n")
    with pytest.raises(CheckpointError, match="not a checkpoint file"):
        load_checkpoint(path, o)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt", o)


def test_mismatched_model_shapes_name_the_weight(tmp_path):
    small, _, _ = _setup()
    path = save_checkpoint(tmp_path / "ckpt.pt", small)
    bigger = tiny_orchestrator(tiny_config(), mlp_ratio=4.0)
    with pytest.raises(
        CheckpointError,
        match=r"'blocks.0.mlp.gate_up.weight' has shape \(128, 32\) in the checkpoint, \(256, 32\) in this model",
    ):
        load_checkpoint(path, bigger)
    no_memory = tiny_orchestrator(tiny_config(), memory_capacity=0)
    with pytest.raises(
        CheckpointError, match="checkpoint has model weight 'memory_gate' this model lacks"
    ):
        load_checkpoint(path, no_memory)


def test_missing_optimizer_state_is_an_error(tmp_path):
    o, optimizer, _ = _setup()
    path = save_checkpoint(tmp_path / "ckpt.pt", o)
    with pytest.raises(CheckpointError, match="has no optimizer state"):
        load_checkpoint(path, o, optimizer)


class _Exploit:
    """Unpickling this creates a marker file: stands in for arbitrary code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_pickled_code_is_refused(tmp_path, container):
    o, _, _ = _setup()
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {
        "format": "refiner-checkpoint",
        "format_version": FORMAT_VERSION,
        "x": _Exploit(str(marker)),
    }
    if container == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # the protocol torch.load reads
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path, o)
    assert not marker.exists()


def test_from_checkpoint_rebuilds_the_refiner_and_its_task_type(tmp_path):
    """from_checkpoint: same weights and answers; inference() without a task type uses
    the edit history of the task type the model was trained on, also after reloading."""
    config = tiny_config(canvas_edit_strategies=["replace", "patch"], edit_exploration=0.0)
    o = tiny_orchestrator(config)
    optimizer = make_optimizer(o.model, lr=3e-3)
    for i in range(3):
        o.train_step(parity_batch(16, seed=i), optimizer, task_type="grid")
    assert o.task_type == "grid" and o.get_training_stats()["task_type"] == "grid"
    o.edit_selector.record("grid", "patch", 100.0)  # grid learned: patch is best by far
    path = save_checkpoint(tmp_path / "ckpt.pt", o, optimizer)

    loaded = UnifiedRefinerOrchestrator.from_checkpoint(path, num_symbols=2)
    assert not loaded.training and loaded.task_type == "grid"
    assert all(torch.equal(v, weights(loaded)[k]) for k, v in weights(o).items())
    ids = parity_batch(6, seed=7)["input"]
    o.eval()
    expected = o.inference(ids, task_type="grid", early_stopping=False)
    for refiner in (o, loaded):
        result = refiner.inference(ids, early_stopping=False)
        assert result["edit_strategy_use"] == expected["edit_strategy_use"]
        assert result["final_canvas_ids"] == expected["final_canvas_ids"]
    # The grid history, not the empty "sequence" one (which takes the first listed).
    assert expected["edit_strategy_use"] == {"patch": config.max_steps_infer}
    assert o.inference(ids, task_type="sequence")["edit_strategy_use"] == {
        "replace": config.max_steps_infer
    }
    assert loaded.decode([3, 4]) == o.decode([3, 4])


def _rewrite_state(path, change) -> None:
    """Edit a saved file's orchestrator state as an older (or newer) version wrote it."""
    payload = torch.load(path, weights_only=True)
    change(payload["orchestrator"])
    torch.save(payload, path)


def test_a_checkpoint_from_before_versioned_states_loads_upgraded(tmp_path):
    o, optimizer, scheduler = _setup()
    _train(o, optimizer, scheduler, range(2))
    path = save_checkpoint(tmp_path / "old.pt", o, optimizer, scheduler)

    def as_first_written(state) -> None:  # the four keys later versions added, no version
        for key in ("state_version", "calibration", "task_type", "puzzle_index", "weight_average"):
            del state[key]

    _rewrite_state(path, as_first_written)
    loaded = UnifiedRefinerOrchestrator.from_checkpoint(path, task_type="sequence")
    assert loaded.step_count == 2 and loaded.calibration is None and loaded.task_type is None
    for key, value in weights(o).items():
        assert torch.equal(value, weights(loaded)[key]), key
    state = loaded.state_dict()
    assert state["state_version"] == UPGRADES[-1].version
    assert [u.version for u in UPGRADES] == list(range(1, len(UPGRADES) + 1))


def test_a_state_newer_than_this_code_is_refused_naming_the_file(tmp_path):
    o, _, _ = _setup()
    path = save_checkpoint(tmp_path / "new.pt", o)
    _rewrite_state(path, lambda state: state.update(state_version=UPGRADES[-1].version + 1))
    with pytest.raises(
        CheckpointError, match=r"new\.pt: orchestrator state version \d+; this code reads up to"
    ):
        UnifiedRefinerOrchestrator.from_checkpoint(path)
