"""Search-space files: the shipped ones are valid, bad ones fail naming file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.tune.search.variant_generator import generate_variants

from refiner.config.experiment import ExperimentConfig, prepare_experiment
from refiner.distributed.search import param_space
from refiner.sweep.combinations import validate_combinations
from refiner.sweep.space import SpaceError, load_space, parse_space

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "tune_spaces").glob("*.yaml"))
BASE = ROOT / "jobs" / "configs" / "sweep.yaml"


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def check(tmp_path: Path, space: dict, base: dict | None = None) -> None:
    path = write(tmp_path, {"space": space})
    try:
        loaded = load_space(path)
        validate_combinations(loaded, base if base is not None else ExperimentConfig().to_dict())
    except SpaceError as err:
        assert str(err).startswith(f"{path}: space"), err  # every rejection names the file
        raise


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_shipped_spaces_are_valid(path: Path) -> None:
    config, _ = prepare_experiment(BASE)
    space = load_space(path)
    assert space.params
    assert validate_combinations(space, config.to_dict()) >= 1


def test_shipped_space_names() -> None:
    assert {p.name for p in SPACES} >= {
        "truncation.yaml",
        "step_weights.yaml",
        "edit_strategies.yaml",
        "default.yaml",
    }


def test_truncation_window_never_exceeds_unroll() -> None:
    space = load_space(ROOT / "tune_spaces" / "truncation.yaml")
    seen = set()
    for seed in range(10):
        for _, config in generate_variants(param_space(space, seed=seed), random_state=seed):
            t = config["orchestration.max_steps_train"]
            k = config["orchestration.backprop_truncate_steps"]
            assert k <= t
            seen.add((t, k))
    assert (16, 16) in seen and (8, 16) not in seen


def test_same_seed_same_trials() -> None:
    space = load_space(ROOT / "tune_spaces" / "default.yaml")

    def draw() -> list:
        return [c for _, c in generate_variants(param_space(space, seed=3), random_state=3)]

    assert draw() == draw()


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpaceError) as err:
        check(tmp_path, {"orchestration": {"backprop_truncate_step": {"choice": [1, 2]}}})
    message = str(err.value)
    assert "space.yaml" in message
    assert "space.orchestration.backprop_truncate_step: unknown key" in message
    assert "backprop_truncate_steps" in message  # the did-you-mean hint


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="modle: unknown key"):
        check(tmp_path, {"modle": {"d_model": {"choice": [16]}}})


def test_wrong_sampler_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpaceError) as err:
        check(tmp_path, {"training": {"lr": {"choise": [0.1, 0.2]}}})
    assert "space.training.lr: wrong sampler 'choise' (did you mean 'choice'?)" in str(err.value)


def test_plain_value_in_space_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=r"space.training.lr: expected a sampler.*fixed"):
        check(tmp_path, {"training": {"lr": 0.1}})


@pytest.mark.parametrize(
    ("sampler", "message"),
    [
        ({"uniform": [0.5, 0.1]}, "uniform needs low < high"),
        ({"loguniform": [0.0, 0.1]}, "loguniform needs low > 0"),
        ({"uniform": [0.1]}, r"needs \[low, high\]"),
        ({"randint": [1.5, 4]}, "randint needs integer bounds"),
        ({"choice": []}, "non-empty list"),
        ({"choice": [1], "grid": [2]}, "wrong sampler"),
    ],
)
def test_bad_bounds(tmp_path: Path, sampler: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message) as err:
        check(tmp_path, {"training": {"lr": sampler}})
    assert "space.training.lr" in str(err.value)


def test_bad_value_type_is_an_impossible_combination(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=r"impossible combination.*training.steps='many'"):
        check(tmp_path, {"training": {"steps": {"choice": [10, "many"]}}})


def test_impossible_combination_names_keys_and_values(tmp_path: Path) -> None:
    space = {
        "orchestration": {
            "max_steps_train": {"grid": [8, 16]},
            "backprop_truncate_steps": {"choice": [2, 12]},
        }
    }
    with pytest.raises(SpaceError) as err:
        check(tmp_path, space)
    message = str(err.value)
    assert "space.yaml: space: impossible combination" in message
    assert "orchestration.max_steps_train=8" in message
    assert "orchestration.backprop_truncate_steps=12" in message
    assert "backprop_truncate_steps: must be in [1, max_steps_train=8]" in message


def test_constraint_without_any_allowed_value(tmp_path: Path) -> None:
    space = {
        "orchestration": {
            "max_steps_train": {"grid": [8]},
            "backprop_truncate_steps": {"choice": [16], "at_most": "orchestration.max_steps_train"},
        }
    }
    with pytest.raises(
        SpaceError, match=r"no choice in \[16\] is <= orchestration.max_steps_train = 8"
    ):
        check(tmp_path, space)


def test_constraint_must_name_a_config_key(tmp_path: Path) -> None:
    space = {
        "orchestration": {"backprop_truncate_steps": {"choice": [1], "at_most": "orchestration.T"}}
    }
    with pytest.raises(SpaceError, match=r"at_most: orchestration.T: unknown key"):
        check(tmp_path, space)


def test_unconstrained_k_above_t_is_reported(tmp_path: Path) -> None:
    space = {
        "orchestration": {
            "truncated_backprop": {"choice": [True]},
            "max_steps_train": {"grid": [8]},
            "backprop_truncate_steps": {"choice": [4, 16]},
        }
    }
    with pytest.raises(SpaceError, match="backprop_truncate_steps=16"):
        check(tmp_path, space)


def test_bad_scheduler_settings(tmp_path: Path) -> None:
    data = {
        "sweep": {"scheduler": {"type": "hyperband"}},
        "space": {"training": {"lr": {"choice": [0.1]}}},
    }
    with pytest.raises(SpaceError, match=r"space.yaml: sweep.scheduler.type: must be one of"):
        load_space(write(tmp_path, data))


def test_dotted_keys_and_fixed_values(tmp_path: Path) -> None:
    data = {
        "fixed": {"orchestration.max_steps_infer": 2},
        "space": {
            "orchestration.step_loss_weights": {"schedule": {"choice": ["uniform", "linear"]}}
        },
    }
    space = parse_space(data, "x.yaml")
    assert list(space.params) == ["orchestration.step_loss_weights.schedule"]
    assert space.fixed == {"orchestration.max_steps_infer": 2}
    assert parse_space(space.to_dict(), "x.yaml").params == space.params  # round trip (--resume)
