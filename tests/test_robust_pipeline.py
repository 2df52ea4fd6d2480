"""Property tests, end to end without Ray: any valid task table of any kind trains.

For every task kind (parity and generic sequences, grids of many shapes, sudoku 4/6/9,
text with ragged lengths, ARC canvases) hypothesis generates valid task tables with
varied lengths, shapes, symbol counts, splits and group sizes, and each goes through
validation -> augmentation with every combination of strategies -> batching -> a few
``train_step``s -> ``inference`` -> a checkpoint round trip. Nothing may raise; shapes
and vocabularies stay consistent. Tiny models and few examples keep it fast (marked
``fast``: ``pytest -m fast``); ``test_robust_ray.py`` runs one generated file on Ray.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from augment_tasks import base_solution, table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refiner.augment import STRATEGIES, AugmentationSpec, augment_table
from refiner.checkpoints.files import load_checkpoint, save_checkpoint
from refiner.config.experiment import ExperimentConfig, build_optimizer, build_orchestrator
from refiner.data.batches import batch_from_arrays, iterate_batches
from refiner.data.tokenizers import EOS, MASK, NUM_SPECIAL, PAD, SEP, VOCAB_SIZE, ByteTokenizer
from refiner.tasks.sources import arc
from refiner.tasks.validation import validate_table

pytestmark = pytest.mark.fast

EVERY_COMBINATION = [
    combo for r in range(len(STRATEGIES) + 1) for combo in itertools.combinations(STRATEGIES, r)
]
PROPERTY = settings(
    max_examples=5,
    deadline=None,
    derandomize=True,  # the same examples on every run (CI stays reproducible)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SPLITS = ("train", "val", "test")


# -- generators: rows of one kind (each a dict of task fields) ----------------------------


@st.composite
def layout(draw, rows: int) -> list[dict]:
    """Split and group of each row; row 0 is always a training row."""
    groups = draw(st.integers(1, rows))
    return [
        {
            "split": "train" if i == 0 else draw(st.sampled_from(SPLITS)),
            "group_id": f"g{draw(st.integers(0, groups - 1))}",
        }
        for i in range(rows)
    ]


def tokens(draw, length: int, num_symbols: int, specials=(PAD, MASK, SEP, EOS)) -> list[int]:
    """``length`` valid ids: content symbols and some of ``specials`` (numpy-drawn from a
    hypothesis seed: drawing 900 cells one by one would dominate the test's time)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    choices = np.concatenate(
        [np.array(specials, dtype=np.int64), NUM_SPECIAL + np.arange(num_symbols)]
    )
    special_share = draw(st.sampled_from((0.0, 0.2, 1.0))) if specials else 0.0
    content = rng.integers(NUM_SPECIAL, NUM_SPECIAL + num_symbols, length)
    special = rng.choice(choices[: len(specials)], length) if specials else content
    return np.where(rng.random(length) < special_share, special, content).tolist()


@st.composite
def parity_rows(draw) -> list[dict]:
    rows = []
    for i in range(draw(st.integers(1, 10))):
        bits = np.array(draw(st.lists(st.integers(0, 1), min_size=1, max_size=16)))
        rows.append(
            {
                "task_id": f"parity-{i}",
                "task_type": "sequence",
                "source": "parity",
                "input": (bits + NUM_SPECIAL).tolist(),
                "target": (np.cumsum(bits) % 2 + NUM_SPECIAL).tolist(),
                "num_symbols": 2,
            }
        )
    return rows


@st.composite
def sequence_rows(draw) -> list[dict]:
    """Generic sequences: any valid ids, specials (PAD, MASK, SEP, EOS) included."""
    num_symbols = draw(st.integers(1, 40))
    return [
        {
            "task_id": f"seq-{i}",
            "task_type": "sequence",
            "source": "synthetic",
            "input": tokens(draw, draw(st.integers(1, 20)), num_symbols),
            "target": tokens(draw, draw(st.integers(1, 20)), num_symbols),
            "num_symbols": num_symbols,
        }
        for i in range(draw(st.integers(1, 10)))
    ]


# EOS in a grid means the ARC layout (arc.place_in_canvas); stray EOS cells are refused
# by the augmentation (a deterministic error naming the row: test_deterministic_failures).
PLAIN_GRID_SPECIALS = (PAD, MASK, SEP)
GRID_SHAPES = [(1, 1), (1, 5), (4, 1), (2, 3), (3, 3), (5, 7), (8, 8), (10, 10), (3, 30)]


@st.composite
def grid_rows(draw) -> list[dict]:
    """Plain grids (no sudoku/ARC convention): up to two shapes per table, any valid ids."""
    shapes = draw(st.lists(st.sampled_from(GRID_SHAPES), min_size=1, max_size=2, unique=True))
    num_symbols = draw(st.integers(1, 12))
    rows = []
    for i in range(draw(st.integers(1, 8))):
        h, w = draw(st.sampled_from(shapes))
        rows.append(
            {
                "task_id": f"grid-{i}",
                "task_type": "grid",
                "source": "synthetic",
                "input": tokens(draw, h * w, num_symbols, PLAIN_GRID_SPECIALS),
                "target": tokens(draw, h * w, num_symbols, PLAIN_GRID_SPECIALS),
                "height": h,
                "width": w,
                "num_symbols": num_symbols,
            }
        )
    return rows


@st.composite
def sudoku_rows(draw) -> list[dict]:
    rows = []
    for i in range(draw(st.integers(1, 6))):
        n = draw(st.sampled_from((4, 6, 9)))
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        solution = rng.permutation(n)[base_solution(n) - 1] + 1
        blanks = rng.random((n, n)) < draw(st.floats(0.0, 1.0))
        puzzle = np.where(blanks, 0, solution)
        rows.append(
            {
                "task_id": f"sudoku-{i}",
                "task_type": "grid",
                "source": "sudoku",
                "input": (puzzle.reshape(-1) + NUM_SPECIAL).tolist(),
                "target": (solution.reshape(-1) + NUM_SPECIAL).tolist(),
                "height": n,
                "width": n,
                "num_symbols": n + 1,
            }
        )
    return rows


TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=16)


@st.composite
def text_rows(draw) -> list[dict]:
    tok = ByteTokenizer()
    return [
        {
            "task_id": f"text-{i}",
            "task_type": "text",
            "source": "text",
            "input": tok.encode(draw(TEXT)).tolist(),
            "target": tok.encode(draw(TEXT)).tolist(),
        }
        for i in range(draw(st.integers(1, 10)))
    ]


@st.composite
def arc_rows(draw) -> list[dict]:
    size = draw(st.sampled_from((3, 5, 8, 12, 30)))
    num_symbols = 10
    rows = []
    for i in range(draw(st.integers(1, 6))):
        grids = []
        for _ in range(2):  # input and output grids may differ in shape
            h, w = draw(st.integers(1, size)), draw(st.integers(1, size))
            symbols = np.array(tokens(draw, h * w, num_symbols, specials=())) - NUM_SPECIAL
            grids.append(arc.place_in_canvas(symbols.reshape(h, w), size).reshape(-1).tolist())
        rows.append(
            {
                "task_id": f"arc-{i}",
                "task_type": "grid",
                "source": "arc-agi-1",
                "input": grids[0],
                "target": grids[1],
                "height": size,
                "width": size,
                "num_symbols": num_symbols,
            }
        )
    return rows


@st.composite
def task_table(draw, kind) -> pa.Table:
    rows = draw(kind)
    for row, where in zip(rows, draw(layout(len(rows))), strict=True):
        row.update(where)
    return table(rows)


# -- the pipeline -------------------------------------------------------------------------


def tiny_config(seq_len: int) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "model": {
                "seq_len": seq_len,
                "d_model": 16,
                "n_heads": 2,
                "n_layers": 1,
                "latent_cycles": 1,
                "mlp_ratio": 1.0,
                "memory_capacity": 8,
                "memory_top_k": 2,
            },
            "orchestration": {
                "max_steps_train": 2,
                "max_steps_infer": 2,
                "backprop_truncate_steps": 2,
                "augmentation_count": 3,
            },
            "training": {"steps": 2, "batch_size": 4, "warmup_steps": 0},
        }
    )


def check_augmented(tasks: pa.Table, rows: pa.Table, spec: AugmentationSpec, seq_len: int):
    inputs = np.asarray(rows.column("input").to_pylist())
    targets = np.asarray(rows.column("target").to_pylist())
    assert inputs.shape == targets.shape == (tasks.num_rows * spec.count, seq_len)
    limit = np.repeat(NUM_SPECIAL + tasks.column("num_symbols").to_numpy(), spec.count)
    for side in (inputs, targets):  # ids stay inside each task's vocabulary
        assert side.min() >= 0 and (side < limit[:, None]).all()
    if not set(spec.strategies) & {"paraphrase", "format_variation"}:
        # input-only strategies: every target is its task's target, exactly
        source = np.repeat(pad(tasks.column("target").to_pylist(), seq_len), spec.count, axis=0)
        assert (targets == source).all()
    return inputs, targets


def pad(rows: list[list[int]], seq_len: int) -> np.ndarray:
    out = np.zeros((len(rows), seq_len), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def run_pipeline(tasks: pa.Table, tmp_path) -> None:
    tasks = validate_table(tasks, "generated")
    seq_len = int(
        max(pc.max(pc.list_value_length(tasks.column(c))).as_py() for c in ("input", "target"))
    )
    train = tasks.filter(pc.equal(tasks.column("split"), "train"))
    held_out = tasks.filter(pc.not_equal(tasks.column("split"), "train"))
    assert train.num_rows >= 1
    for combo in EVERY_COMBINATION:
        spec = AugmentationSpec(strategies=combo, count=3)
        check_augmented(train, augment_table(train, spec, seed=7, pad_to=seq_len), spec, seq_len)

    config = tiny_config(seq_len)
    spec = AugmentationSpec(strategies=STRATEGIES, count=3, dedup=True)
    rows = augment_table(train, spec, seed=1, pad_to=seq_len)
    task_type = Counter(tasks.column("task_type").to_pylist()).most_common(1)[0][0]
    num_symbols = int(pc.max(tasks.column("num_symbols")).as_py())
    orchestrator = build_orchestrator(config, task_type, num_symbols)
    optimizer, scheduler = build_optimizer(orchestrator, config.training)
    batch = batch_from_arrays(
        rows.column("input").to_pylist(), rows.column("target").to_pylist(), seq_len
    )
    batch_size = min(config.training.batch_size, batch["input"].shape[0])
    for minibatch in itertools.islice(iterate_batches(batch, batch_size, seed=0), 2):
        info = orchestrator.train_step(
            minibatch, optimizer, task_type=task_type, lr_scheduler=scheduler
        )
        assert len(info.acc_at) == config.orchestration.max_steps_train
        assert np.isfinite(info.loss)

    probe = held_out if held_out.num_rows else train
    probe_ids = torch.from_numpy(pad(probe.column("input").to_pylist(), seq_len))
    orchestrator.eval()
    result = orchestrator.inference(probe_ids, max_steps_override=2, task_type=task_type)
    canvases = np.asarray(result["final_canvas_ids"])
    assert canvases.shape == (probe.num_rows, seq_len)
    assert canvases.min() >= 0 and canvases.max() < VOCAB_SIZE
    assert all(1 <= s <= 2 for s in result["steps_taken"])

    path = save_checkpoint(tmp_path / "checkpoint.pt", orchestrator, optimizer, scheduler)
    restored = build_orchestrator(config, task_type, num_symbols)
    optimizer2, scheduler2 = build_optimizer(restored, config.training)
    load_checkpoint(path, restored, optimizer2, scheduler2)
    restored.eval()
    again = restored.inference(probe_ids, max_steps_override=2, task_type=task_type)
    assert np.array_equal(np.asarray(again["final_canvas_ids"]), canvases)
    assert restored.step_count == orchestrator.step_count


KINDS = {
    "parity": parity_rows(),
    "sequence": sequence_rows(),
    "grid": grid_rows(),
    "sudoku": sudoku_rows(),
    "text": text_rows(),
    "arc": arc_rows(),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_any_valid_table_goes_through_the_whole_pipeline(kind, tmp_path_factory):
    @PROPERTY
    @given(tasks=task_table(KINDS[kind]))
    def check(tasks: pa.Table) -> None:
        run_pipeline(tasks, tmp_path_factory.mktemp(kind))

    check()


@PROPERTY
@given(
    parts=st.lists(st.sampled_from(sorted(KINDS)), min_size=2, max_size=3, unique=True),
    data=st.data(),
)
def test_mixed_kinds_in_one_table(parts, data, tmp_path_factory):
    rows = []
    for kind in parts:
        for row in data.draw(KINDS[kind]):
            row["task_id"] = f"{kind}/{row['task_id']}"
            rows.append(row)
    for row, where in zip(rows, data.draw(layout(len(rows))), strict=True):
        row.update(where)
    run_pipeline(table(rows), tmp_path_factory.mktemp("mixed"))
