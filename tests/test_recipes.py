"""The per-task recipes in jobs/configs: each validates, the CPU ones load their tasks,
and `--task sudoku|maze|arc` without --config picks the source's recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from refiner.checkpoints.files import save_checkpoint
from refiner.checkpoints.restore import evaluation_tasks
from refiner.config.experiment import (
    build_orchestrator,
    load_experiment_config,
    prepare_experiment,
)
from refiner.config.loader import ConfigError
from refiner.config.recipes import choose_recipe
from refiner.tasks.problems import TaskFileError
from refiner.tasks.schema import describe_tasks

CONFIGS = Path(__file__).resolve().parents[1] / "jobs" / "configs"
CPU = ("sudoku", "maze", "arc")
GPU = ("sudoku_extreme_gpu", "maze_hard_gpu", "arc_gpu")


@pytest.mark.parametrize("name", CPU + GPU)
def test_recipe_validates_with_grid_wide_attention_and_label_consistent_augmentation(name):
    config = load_experiment_config(CONFIGS / f"{name}.yaml")
    if name == "maze":  # a 2D neighbourhood, repeated: hops cover the grid
        assert config.model.attention_layout == "grid" and config.model.attention_window == 1
    else:
        assert config.model.attention_window is None
    assert set(config.orchestration.augmentation_strategies) <= {"paraphrase", "format_variation"}
    assert config.training.use_gpu == name.endswith("_gpu")
    text = (CONFIGS / f"{name}.yaml").read_text()  # each says what it reaches, or that
    assert "to be measured" in text or "Measured on" in text  # nobody has measured it yet


@pytest.mark.parametrize("name", CPU)
def test_cpu_recipe_loads_its_tasks(name):
    config, tasks = prepare_experiment(CONFIGS / f"{name}.yaml", ["task.count=40"])
    assert config.task.source == name and tasks.num_rows > 0
    assert config.model.seq_len == {"sudoku": 36, "maze": 225, "arc": 100}[name]
    assert config.model.grid_width == (15 if name == "maze" else 0)


@pytest.mark.parametrize("name", ("sudoku_extreme_gpu", "maze_hard_gpu"))
def test_gpu_recipe_without_the_downloaded_file_names_it(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskFileError, match="train.csv: no such file"):
        prepare_experiment(CONFIGS / f"{name}.yaml")


def test_task_without_config_picks_the_source_recipe_and_says_why():
    pick = lambda config, task: choose_recipe(config, task, CONFIGS)  # noqa: E731
    for source in ("sudoku", "maze", "arc", "parity"):
        recipe = pick(None, source)
        assert (recipe.path, recipe.task) == (CONFIGS / f"{source}.yaml", None)
        assert f"{source}'s own recipe" in recipe.reason and not recipe.fits_the_data
    demo = pick(None, None)  # `make run`: the parity demo, as before
    assert (demo.path, demo.task, demo.reason) == (
        CONFIGS / "parity.yaml",
        None,
        "no --task: the built-in parity demo",
    )
    general = CONFIGS / "general.yaml"  # what no recipe was written for
    for task in ("text", "data/sudoku.parquet", "my_tasks.jsonl"):
        recipe = pick(None, task)
        assert (recipe.path, recipe.task) == (general, task) and recipe.fits_the_data
        assert "no recipe written for" in recipe.reason
    mine = CONFIGS / "sudoku.yaml"  # an explicit --config wins, --task applies to it
    assert (pick(mine, "maze").path, pick(mine, "maze").task) == (mine, "maze")
    assert pick(mine, "maze").reason == "given with --config"


def test_general_recipe_attends_to_the_whole_sequence_and_sizes_to_the_data(tmp_path):
    """Short digit rows get the small width, long text rows the large one; a width given
    with --set stays; the explanation names what it was fitted from."""
    general = CONFIGS / "general.yaml"
    short, tasks = prepare_experiment(general, ["task.count=40"], task="parity", fit_to_data=True)
    assert short.model.attention_window is None and not short.task.augment
    assert short.model.d_model == 64 and short.model.seq_len == 16
    line = choose_recipe(None, "text", CONFIGS).explain(short, tasks)
    assert "rows up to 16 tokens over 2 distinct symbols: d_model 64" in line
    text, _ = prepare_experiment(general, [], task="text", fit_to_data=True)
    assert text.model.d_model == 128  # bytes: a wide alphabet
    given, _ = prepare_experiment(general, ["model.d_model=32"], task="text", fit_to_data=True)
    assert given.model.d_model == 32


def test_grid_layout_takes_its_width_from_the_task_file():
    grid = ["model.attention_layout=grid", "model.attention_window=1", "task.count=20"]
    config, _ = prepare_experiment(CONFIGS / "maze.yaml", [*grid, "task.size=9"])
    assert config.model.grid_width == 9 and config.model.seq_len == 81
    with pytest.raises(ConfigError, match="attention_layout: grid needs grid tasks; task "):
        prepare_experiment(CONFIGS / "parity.yaml", grid)  # parity: sequences, no grid
    with pytest.raises(ConfigError, match="grid_width: 7 does not match the tasks' grids"):
        prepare_experiment(CONFIGS / "maze.yaml", [*grid, "task.size=9", "model.grid_width=7"])


def test_evaluating_a_grid_model_reads_its_own_mazes_and_refuses_other_widths(tmp_path):
    """`evaluate --task maze` on the maze recipe's checkpoint draws the mazes it learned
    (the recipe's options: perfect mazes), and grids of another width are refused."""
    tiny = ["task.count=20", "task.size=7", "model.d_model=16", "model.n_heads=2"]
    config, tasks = prepare_experiment(CONFIGS / "maze.yaml", tiny)
    task_type, num_symbols = describe_tasks(tasks)
    orchestrator = build_orchestrator(config, task_type, num_symbols, "cpu")
    path = save_checkpoint(
        tmp_path / "ckpt.pt", orchestrator, extra={"experiment": config.to_dict()}
    )
    same = evaluation_tasks(path, "maze")
    assert same.column("input").to_pylist() == tasks.column("input").to_pylist()
    with pytest.raises(TaskFileError, match="a grid 9 wide; the model attends over grids 7"):
        evaluation_tasks(path, "maze", size=9)
