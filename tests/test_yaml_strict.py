"""Strict YAML: a key given twice is an error naming the file, the line and the key.

Covers the loader itself and the three kinds of file that go through it: run configs
(``load_experiment_config``/``prepare_experiment``), search spaces (``load_space``) and
sweep configs; ``--set`` values too. The job-level check (exit 2, no Ray, no MLflow)
is in ``test_bad_inputs.py`` (``tests/data/bad_configs/duplicate_*.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from refiner.config.experiment import ExperimentConfig, load_experiment_config, prepare_experiment
from refiner.config.loader import ConfigError, apply_overrides
from refiner.config.yaml_io import DuplicateKeyError, load_strict
from refiner.sweep.space import load_space

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("seed: 0\nseed: 1\n", "seed", 2, 1),
        ("training:\n  lr: 0.1\n  steps: 3\n  lr: 0.2\n", "lr", 4, 2),
        ("a: {x: 1, x: 2}\n", "x", 1, 1),
        ("- {k: 1}\n- k: 2\n  j: 3\n  k: 4\n", "k", 4, 2),
        ("1: a\n1: b\n", 1, 2, 1),
    ],
)
def test_duplicate_keys_are_refused_with_lines(text: str, key, line: int, first: int) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        load_strict(text)
    assert (caught.value.key, caught.value.line, caught.value.first_line) == (key, line, first)
    assert f"duplicate key {key!r}" in str(caught.value)


def test_what_stays_allowed() -> None:
    # Equal keys in different mappings, merge keys, and plain safe_load results.
    text = (
        "base: &b {lr: 0.1, steps: 3}\n"
        "one: {<<: *b, lr: 0.2}\n"
        "two:\n  <<: *b\n  steps: 5\n"
        "list: [1, 2]\n"
    )
    assert load_strict(text) == {
        "base": {"lr": 0.1, "steps": 3},
        "one": {"lr": 0.2, "steps": 3},
        "two": {"lr": 0.1, "steps": 5},
        "list": [1, 2],
    }


def test_run_config_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  d_model: 32\n  n_heads: 2\n  d_model: 64\n")
    with pytest.raises(ConfigError) as caught:
        load_experiment_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "line 4: duplicate key 'd_model' (first given at line 2)" in message
    with pytest.raises(ConfigError, match="duplicate key 'd_model'"):
        prepare_experiment(path)


def test_search_space_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "space:\n"
        "  training:\n"
        "    lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
        "  orchestration:\n"
        "    max_steps_train: {grid: [8, 12]}\n"
        "  training:\n"
        "    batch_size: {choice: [16, 32]}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "line 6: duplicate key 'training' (first given at line 2)" in str(caught.value)


def test_sampler_with_a_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("space:\n  training:\n    lr: {choice: [0.1], choice: [0.2]}\n")
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'choice'"):
        load_space(path)


def test_shipped_yaml_files_have_no_duplicates() -> None:
    files = [*ROOT.glob("tune_spaces/*.yaml"), *ROOT.glob("jobs/configs/*.yaml")]
    assert files
    for path in files:
        load_strict(path.read_text())  # raises on a duplicate


def test_override_value_with_a_duplicate_key() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'steps'"):
        apply_overrides({}, ["training={steps: 1, steps: 2}"], ExperimentConfig)
