"""Puzzle conditioning (refiner.model.puzzles): identities, table size, checkpoints, the sparse
update, DDP agreement and a learning check (a rule that differs per group)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.multiprocessing as mp
from puzzle_fixtures import (
    LENGTH,
    permutation_tasks,
    puzzle_model_config,
    puzzle_orchestrator,
    split,
)
from refiner_fixtures import gloo_group

from refiner.augment import AugmentationSpec
from refiner.augment.engine import augment_table
from refiner.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint
from refiner.checkpoints.restore import evaluate_checkpoint
from refiner.config.experiment import (
    build_optimizer,
    fit_puzzle_table,
    load_experiment_config,
)
from refiner.config.sections import ConfigError
from refiner.data.batches import batch_from_table, iterate_batches
from refiner.model.network import RefinerModel
from refiner.model.puzzles import UNKNOWN, PuzzleIndex
from refiner.tasks.schema import TASK_SCHEMA
from refiner.tasks.sources.arc import place_in_canvas
from refiner.train.optim import make_optimizer
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


def _train(o: UnifiedRefinerOrchestrator, batch, updates: int, batch_size: int = 32) -> None:
    assert batch["input"].shape[0] >= batch_size
    optimizer = make_optimizer(o.model, lr=3e-3, weight_decay=0.0)
    done, epoch = 0, 0
    while done < updates:
        for minibatch in iterate_batches(batch, batch_size, seed=epoch):
            o.train_step(minibatch, optimizer)
            done += 1
            if done == updates:
                return
        epoch += 1


# ----------------------------------------------------------------------------- identities


def test_same_puzzle_same_row_and_unknown_groups_get_the_reserved_row() -> None:
    tasks = permutation_tasks(groups=3, rows_per_group=4, held_out=1)
    index = PuzzleIndex.from_tasks(split(tasks, "train"), "per_puzzle")
    assert index.groups == ("g0", "g1", "g2") and index.size == 4
    ids = index.ids(["g1", "g0", "g1", "g2", "never-trained"])
    assert ids.tolist() == [2, 1, 2, 3, UNKNOWN]
    # per_puzzle ignores the augmentation index: every copy is the same puzzle
    assert index.ids(["g1", "g1"], [0, 7]).tolist() == [2, 2]
    # held-out (test) rows share their puzzle's identity with its demonstrations
    test_ids = index.ids_of_table(split(tasks, "test"))
    assert test_ids.tolist() == index.ids(["g0", "g1", "g2"]).tolist()


def test_per_augmentation_gives_every_augmented_copy_its_own_row() -> None:
    tasks = permutation_tasks(groups=3, rows_per_group=4, held_out=1)
    index = PuzzleIndex.from_tasks(split(tasks, "train"), "per_augmentation", 5)
    assert index.size == 1 + 3 * 5
    groups = [g for g in ("g0", "g1", "g2") for _ in range(5)]
    ids = index.ids(groups, [i for _ in range(3) for i in range(5)])
    assert sorted(ids.tolist()) == list(range(1, 16))  # all distinct, none reserved
    # the same (group, copy) always maps to the same row; unaugmented rows use copy 0
    assert index.ids(["g2"], [3]).tolist() == index.ids(["g2"], [3]).tolist()
    assert index.ids(["g1"]).tolist() == index.ids(["g1"], [0]).tolist()
    assert index.ids(["unseen"], [4]).tolist() == [UNKNOWN]
    with pytest.raises(ValueError, match="augmentation index 5 outside"):
        index.ids(["g0"], [5])


def test_the_table_is_sized_from_the_task_file_and_refused_unsized() -> None:
    tasks = permutation_tasks(groups=5, rows_per_group=3, held_out=1)
    config = load_experiment_config(
        overrides=["model.puzzle_embedding=per_augmentation", "orchestration.augmentation_count=7"]
    )
    assert config.model.puzzle_identities == 0  # unknown until the tasks are read
    index = fit_puzzle_table(config, split(tasks, "train"))
    assert config.model.puzzle_identities == index.size == 1 + 5 * 7
    assert RefinerModel(config.model).puzzle_embed.weight.shape == (36, config.model.d_model)

    config = load_experiment_config(overrides=["model.puzzle_embedding=per_puzzle"])
    assert fit_puzzle_table(config, split(tasks, "train")).size == 6
    assert fit_puzzle_table(load_experiment_config(), tasks) is None  # off by default
    with pytest.raises(ValueError, match="puzzle_identities must be >= 1"):
        RefinerModel(puzzle_model_config("per_puzzle", 0))
    with pytest.raises(ConfigError, match="puzzle_embedding"):
        load_experiment_config(overrides=["model.puzzle_embedding=per_task"])


# ----------------------------------------------------------------------------- the sparse update


def test_the_update_touches_only_the_batch_rows_and_keeps_no_optimizer_state() -> None:
    tasks = permutation_tasks(groups=6, rows_per_group=8, held_out=0)
    index = PuzzleIndex.from_tasks(tasks, "per_puzzle")
    o = puzzle_orchestrator(index)
    table = o.core.puzzle_embed.weight
    assert table.abs().sum() == 0  # zero-initialised, as in HRM
    assert all(p is not table for p in o.core.parameters())  # no dense optimizer sees it
    config = load_experiment_config(overrides=["training.puzzle_lr=0.05"])
    optimizer, scheduler = build_optimizer(o, config.training)
    batch = batch_from_table(split(tasks, "train"), LENGTH, puzzles=index)
    used = torch.isin(batch["puzzle_ids"], torch.tensor(index.ids(["g1", "g4"])))
    batch = {k: v[used] for k, v in batch.items()}
    batch["puzzle_ids"][0] = UNKNOWN  # one row of an unknown puzzle: runs, stays zero
    for _ in range(3):
        info = o.train_step(batch, optimizer, lr_scheduler=scheduler)
        assert not info.skipped
    touched = table.abs().sum(1) > 0
    assert touched.nonzero().squeeze(1).tolist() == index.ids(["g1", "g4"]).tolist()
    # sign-SGD: every coordinate moved by the (scheduled) LR per update, so by > 0
    assert (table[touched].abs() > 0).all()
    state_tensors = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    assert all(
        t.shape != table.shape and t.shape[0] != table.shape[0] for t in state_tensors if t.dim()
    )
    assert not hasattr(o.puzzle_optimizer, "state")  # the sparse optimizer holds no rows


def test_training_without_puzzle_ids_is_refused_but_inference_runs_unknown() -> None:
    tasks = permutation_tasks(groups=2, rows_per_group=4, held_out=0)
    index = PuzzleIndex.from_tasks(tasks, "per_puzzle")
    o = puzzle_orchestrator(index)
    batch = batch_from_table(tasks, LENGTH)  # no puzzles= : no puzzle_ids
    with pytest.raises(ValueError, match="no 'puzzle_ids'"):
        o.train_step(batch, make_optimizer(o.model))
    result = o.inference(batch["input"], puzzle_ids=o.puzzle_ids_for(["g0", "g1", "zz", "g0"] * 2))
    assert len(result["steps_taken"]) == 8
    assert o.evaluate(batch)["acc_at"]  # no ids at evaluation: every row unknown


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_restores_the_table_size_values_and_identities(tmp_path) -> None:
    tasks = permutation_tasks(groups=3, rows_per_group=8, held_out=2)
    train = split(tasks, "train")
    index = PuzzleIndex.from_tasks(train, "per_augmentation", 4)
    o = puzzle_orchestrator(index)
    batch = batch_from_table(train, LENGTH, puzzles=index)
    batch["puzzle_ids"] = torch.from_numpy(
        index.ids(train.column("group_id").to_pylist(), np.arange(train.num_rows) % 4)
    )
    _train(o, batch, updates=4, batch_size=8)
    path = save_checkpoint(tmp_path / "ckpt.pt", o)

    restored = UnifiedRefinerOrchestrator.from_checkpoint(path)
    table = o.core.puzzle_embed.weight
    assert restored.core.puzzle_embed.weight.shape == table.shape == (13, 32)
    assert torch.equal(restored.core.puzzle_embed.weight, table) and table.abs().sum() > 0
    assert restored.puzzle_index == index
    test = split(tasks, "test")
    ids = restored.puzzle_ids_for(test.column("group_id").to_pylist())
    assert ids.tolist() == index.ids_of_table(test).tolist()

    other = puzzle_orchestrator(PuzzleIndex.from_tasks(train, "per_puzzle"))  # 4 rows, not 13
    with pytest.raises(CheckpointError, match="puzzle_embed.weight"):
        load_checkpoint(path, other)


# ----------------------------------------------------------------------------- DDP

DDP_STEPS = 3


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    with gloo_group(rank, world_size, init_file):
        tasks = permutation_tasks(groups=4, rows_per_group=8, held_out=0)
        index = PuzzleIndex.from_tasks(tasks, "per_puzzle")
        o = puzzle_orchestrator(index, seed=0)  # same initial weights on both ranks
        o.model = torch.nn.parallel.DistributedDataParallel(o.model)  # as prepare_model does
        optimizer = make_optimizer(o.model, lr=1e-2)
        batch = batch_from_table(tasks, LENGTH, puzzles=index)
        # Each rank trains on different puzzles (rank 0: g0, g1; rank 1: g2, g3, fewer rows).
        mine = torch.isin(
            batch["puzzle_ids"], torch.tensor(index.ids([f"g{2 * rank}", f"g{2 * rank + 1}"]))
        )
        rows = mine.nonzero().squeeze(1)[: 16 - 4 * rank]
        for _ in range(DDP_STEPS):
            o.train_step({k: v[rows] for k, v in batch.items()}, optimizer)
        torch.save(
            {"table": o.core.puzzle_embed.weight, "weights": o.core.state_dict()},
            f"{out_dir}/rank{rank}.pt",
        )


def test_two_ddp_ranks_end_with_identical_tables_holding_both_ranks_puzzles(tmp_path) -> None:
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert torch.equal(r0["table"], r1["table"])
    touched = (r0["table"].abs().sum(1) > 0).tolist()
    assert touched == [False, True, True, True, True]  # every rank's rows, not the unknown one
    for key, value in r0["weights"].items():
        assert torch.equal(value, r1["weights"][key]), key


# ----------------------------------------------------------------------------- learning


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other tests for cores)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_conditioning_learns_a_rule_that_differs_per_puzzle(tmp_path, one_thread) -> None:
    """Four groups, each mapping symbols by its own permutation: the input alone cannot
    say which permutation applies, so only the conditioned model can learn the rules.
    Held-out rows of the same groups, evaluated in memory and from a checkpoint."""
    tasks = permutation_tasks(groups=4, rows_per_group=64, held_out=16)
    train, test = split(tasks, "train"), split(tasks, "test")
    index = PuzzleIndex.from_tasks(train, "per_puzzle")
    accuracy = {}
    for name, puzzles in (("conditioned", index), ("unconditioned", None)):
        o = puzzle_orchestrator(puzzles, seed=0)
        _train(o, batch_from_table(train, LENGTH, puzzles=puzzles), updates=200)
        curve = o.evaluate(batch_from_table(test, LENGTH, puzzles=puzzles))
        accuracy[name] = curve["token_acc_at"][-1]
        if puzzles is not None:
            save_checkpoint(tmp_path / "conditioned.pt", o)
    # unconditioned: the best guess for a symbol is the most common image over the groups
    assert accuracy["conditioned"] > accuracy["unconditioned"] + 0.3, accuracy
    # jobs/evaluate.py's path: the checkpoint's identities look the held-out rows up
    report = evaluate_checkpoint(tmp_path / "conditioned.pt", tasks, split="test")
    assert report.rows == test.num_rows
    assert report.token_acc_infer > accuracy["unconditioned"] + 0.3, report.to_dict()


# ----------------------------------------------------------------------------- augmented copies


def test_seed_by_group_makes_copy_i_one_transform_of_the_whole_puzzle() -> None:
    """Per-augmentation identities need copy i of a puzzle to be the same transform of
    every pair in every epoch: two pairs with the same input grid then get the same
    augmented input for each copy (seeded per task and epoch they do not)."""
    grid = place_in_canvas([[1, 2, 0], [3, 4, 5]], size=4).reshape(-1).tolist()
    rows = [
        {
            "task_id": f"arc/p/train/{i}",
            "task_type": "grid",
            "source": "arc-agi-1",
            "group_id": "p",
            "split": "train",
            "input": grid,
            "target": place_in_canvas([[i, 1], [2, 3]], size=4).reshape(-1).tolist(),
            "height": 4,
            "width": 4,
            "num_symbols": 10,
        }
        for i in range(2)
    ]
    tasks = pa.Table.from_pylist(rows, schema=TASK_SCHEMA)
    spec = AugmentationSpec(strategies=("paraphrase", "format_variation"), count=6)

    def inputs(seed_by_group: bool, epoch: int) -> np.ndarray:
        s = dataclasses.replace(spec, seed_by_group=seed_by_group)
        out = augment_table(tasks, s, seed=0, epoch=epoch)
        return np.asarray(out.column("input").to_pylist()).reshape(2, 6, -1)  # [task, copy, L]

    by_group = inputs(True, epoch=0)
    assert np.array_equal(by_group[0], by_group[1])  # both pairs: the same transform per copy
    assert np.array_equal(by_group, inputs(True, epoch=3))  # and the same in every epoch
    assert len({tuple(copy) for copy in by_group[0]}) > 2  # the copies differ from each other
    per_task = inputs(False, epoch=0)
    assert not np.array_equal(per_task[0, 1:], per_task[1, 1:])
    assert not np.array_equal(per_task, inputs(False, epoch=3))
