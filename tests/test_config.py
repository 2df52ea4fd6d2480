"""Config loading: defaults, YAML round trip, unknown keys, types, cross-field checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from refiner.config.loader import apply_overrides, load_dataclass
from refiner.config.sections import ConfigError, ModelConfig, OrchestrationConfig
from refiner.data.tokenizers import VOCAB_SIZE


def test_defaults_are_the_seeds():
    c = OrchestrationConfig()
    assert (c.max_steps_train, c.max_steps_infer) == (16, 4)
    assert c.truncated_backprop and c.backprop_truncate_steps == 8
    assert c.gradient_clip_threshold == 1.0 and c.loss_smoothing_window == 3
    assert c.augmentation_count == 300
    # Label-consistent augmentation only: input-only noise is opt-in (issue 10, point 9).
    assert c.augmentation_strategies == ["paraphrase", "format_variation"]
    assert c.canvas_edit_strategies == ["replace", "patch", "append"] and c.adaptive_edit_selection
    assert ModelConfig().vocab_size == VOCAB_SIZE


def test_yaml_round_trip(tmp_path):
    c = OrchestrationConfig.from_dict(
        {
            "max_steps_train": 6,
            "backprop_truncate_steps": 3,
            "step_loss_weights": {"schedule": "explicit", "steps": [1, 0, 0, 0, 0, 2]},
        }
    )
    path = tmp_path / "orchestration.yaml"
    c.to_yaml(path)
    assert OrchestrationConfig.from_yaml(path) == c
    assert OrchestrationConfig.from_dict(c.to_dict()) == c
    m = ModelConfig(d_model=48, n_heads=3, positional="learned")
    assert ModelConfig.from_dict(m.to_dict()) == m


def test_unknown_key_names_full_path_and_suggests():
    with pytest.raises(ConfigError) as err:
        load_dataclass(OrchestrationConfig, {"step_loss_weights": {"tokn": 1.0}}, "orchestration")
    assert (
        str(err.value)
        == "orchestration.step_loss_weights.tokn: unknown key (did you mean 'token'?)"
    )
    with pytest.raises(
        ConfigError, match=r"^max_step_train: unknown key \(did you mean 'max_steps_train'\?\)"
    ):
        OrchestrationConfig.from_dict({"max_step_train": 3})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"max_steps_train": "16"}, "max_steps_train: expected an integer, got str '16'"),
        ({"truncated_backprop": 1}, "truncated_backprop: expected true/false"),
        ({"max_steps_train": True}, "max_steps_train: expected an integer, got bool"),
        ({"canvas_edit_strategies": "replace"}, "canvas_edit_strategies: expected a list"),
        ({"step_loss_weights": {"token": "a lot"}}, "step_loss_weights.token: expected a number"),
        ({"stopping": 3}, "stopping: expected a mapping"),
        ({"step_loss_weights": {"schedule": None}}, "step_loss_weights.schedule: must not be null"),
    ],
)
def test_type_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        OrchestrationConfig.from_dict(data)
    assert message in str(err.value)


def test_numbers_are_coerced_where_unambiguous():
    c = OrchestrationConfig.from_dict({"gradient_clip_threshold": 2, "edit_exploration": "1e-3"})
    assert c.gradient_clip_threshold == 2.0 and isinstance(c.gradient_clip_threshold, float)
    assert c.edit_exploration == 1e-3  # PyYAML reads 1e-3 as a string


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"backprop_truncate_steps": 17},
            "backprop_truncate_steps: must be in [1, max_steps_train=16], got 17",
        ),
        ({"max_steps_infer": 0}, "max_steps_infer: must be in [1, 256], got 0"),
        (
            {"max_steps_train": 4, "max_steps_infer": 257},
            "max_steps_infer: must be in [1, 256], got 257",
        ),
        (
            {"augmentation_strategies": ["token_noise", "paraphrse"]},
            "augmentation_strategies[1]: must be one of ['token_noise', 'position_shift', "
            "'masking', 'paraphrase', 'format_variation'], got 'paraphrse' "
            "(did you mean 'paraphrase'?)",
        ),
        (
            {"canvas_edit_strategies": ["rewrite"]},
            "canvas_edit_strategies[0]: must be one of ['replace', 'patch', 'append'], "
            "got 'rewrite'",
        ),
        ({"canvas_edit_strategies": []}, "canvas_edit_strategies: needs at least one strategy"),
        (
            {"step_loss_weights": {"halting": -0.1}},
            "step_loss_weights.halting: loss weights must be >= 0",
        ),
        (
            {"step_loss_weights": {"schedule": "explicit", "steps": [1.0] * 3}},
            "step_loss_weights.steps: has 3 weights, max_steps_train is 16",
        ),
        (
            {"step_loss_weights": {"schedule": "explicit"}},
            "step_loss_weights.steps: schedule 'explicit' needs a list",
        ),
        (
            {"step_loss_weights": {"steps": [1.0] * 16}},
            "step_loss_weights.steps: only used with schedule 'explicit'",
        ),
        (
            {"step_loss_weights": {"schedule": "cosine"}},
            "step_loss_weights.schedule: must be one of",
        ),
        ({"gradient_clip_threshold": 0}, "gradient_clip_threshold: must be > 0 or null"),
        ({"stopping": {"act_threshold": 1.5}}, "stopping.act_threshold: must be in (0, 1] or null"),
        ({"stopping": {"loss_margin_sigmas": -1}}, "stopping.loss_margin_sigmas: must be >= 0"),
        ({"stopping": {"calibration_views": 0}}, "stopping.calibration_views: must be >= 1"),
        (
            {"stopping": {"calibration_views": 4}, "augmentation_strategies": ["token_noise"]},
            "stopping.calibration_views: 4 views need a label-consistent strategy",
        ),
        ({"grokfast": {"mode": "fast"}}, "grokfast.mode: must be one of"),
        ({"patch_budget": 0}, "patch_budget: a fraction of positions in (0, 1]"),
        (
            {"canvas_edit_strategies": ["patch", "patch"]},
            "canvas_edit_strategies: lists a strategy twice",
        ),
        (
            {"edit_selection": "ucb1"},
            "edit_selection: must be one of ['epsilon_greedy', 'ucb'], got 'ucb1' "
            "(did you mean 'ucb'?)",
        ),
        (
            {
                "max_steps_train": 4,
                "max_steps_infer": 2,
                "backprop_truncate_steps": 2,
                "step_loss_weights": {"schedule": "explicit", "steps": [1, 1, 0, 0]},
            },
            "step_loss_weights.steps: the last 2 steps carry the gradient",
        ),
    ],
)
def test_cross_field_validation(data, message):
    with pytest.raises(ConfigError) as err:
        OrchestrationConfig.from_dict(data)
    assert message in str(err.value)


def test_truncation_window_only_checked_when_truncating():
    c = OrchestrationConfig.from_dict(
        {"max_steps_train": 4, "max_steps_infer": 2, "truncated_backprop": False}
    )
    assert c.gradient_window() == 4
    assert OrchestrationConfig(backprop_truncate_steps=4).gradient_window() == 4


def test_a_random_gradient_window_is_checked_against_explicit_step_weights():
    with pytest.raises(ConfigError, match="backprop_window: must be one of"):
        OrchestrationConfig.from_dict({"backprop_window": "middle"})
    explicit = {"schedule": "explicit", "steps": [1, 0, 0, 1]}
    settings = {"max_steps_train": 4, "backprop_truncate_steps": 2, "step_loss_weights": explicit}
    OrchestrationConfig.from_dict(settings)  # the last two steps weigh something
    with pytest.raises(ConfigError, match="may end at step 3, where all weigh 0"):
        OrchestrationConfig.from_dict({**settings, "backprop_window": "random"})


def test_model_config_validation():
    with pytest.raises(ConfigError, match="d_model: 100 is not divisible by n_heads=3"):
        ModelConfig(d_model=100, n_heads=3)
    with pytest.raises(ConfigError, match="positional: must be one of"):
        ModelConfig.from_dict({"positional": "alibi"})
    with pytest.raises(ConfigError, match="attention_layout: grid shapes the local attention"):
        ModelConfig(attention_layout="grid")
    with pytest.raises(ConfigError, match="attention_layout: must be one of"):
        ModelConfig.from_dict({"attention_layout": "2d", "attention_window": 1})


def test_literal_fields_are_checked_also_when_built_in_python():
    """Enum-like fields are Literal types: the loader checks them, and so does construction."""
    with pytest.raises(ConfigError, match=r"^positional: must be one of \['rope', 'learned'\]"):
        ModelConfig(positional="alibi")
    with pytest.raises(ConfigError, match=r"^canvas_edit_strategies\[1\]: .*did you mean 'patch'"):
        OrchestrationConfig(canvas_edit_strategies=["replace", "pach"])
    with pytest.raises(ConfigError, match=r"^grokfast.mode: must be one of .*got 'EMA'"):
        OrchestrationConfig.from_dict({"grokfast": {"mode": "EMA"}})
    with pytest.raises(ConfigError, match="schedule: must not be null"):
        OrchestrationConfig.from_dict({"step_loss_weights": {"schedule": None}})


def test_from_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("max_steps_train: 16\nstopping:\n  patience: -1\n")
    with pytest.raises(ConfigError, match=rf"^{path}: stopping.patience: must be >= 1 or null"):
        OrchestrationConfig.from_yaml(path)
    path.write_text("max_steps_train: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        OrchestrationConfig.from_yaml(path)


# A run config of the kind the distributed layer builds on top of the loader.
@dataclass
class TrainingSection:
    lr: float = 1e-3
    steps: int = 100
    tags: dict[str, str] = field(default_factory=dict)
    resume: str | None = None


@dataclass
class RunConfig:
    training: TrainingSection = field(default_factory=TrainingSection)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


def test_generic_loader_on_nested_run_config():
    run = load_dataclass(
        RunConfig,
        {
            "training": {"lr": 3e-4, "tags": {"team": "core"}},
            "orchestration": {"max_steps_train": 8},
        },
    )
    assert (
        run.training.lr == 3e-4
        and run.training.tags == {"team": "core"}
        and run.training.resume is None
    )
    assert run.orchestration.max_steps_train == 8 and run.model == ModelConfig()
    with pytest.raises(
        ConfigError, match=r"^training.stepz: unknown key \(did you mean 'steps'\?\)"
    ):
        load_dataclass(RunConfig, {"training": {"stepz": 3}})
    with pytest.raises(
        ConfigError,
        match=r"^orchestration.backprop_truncate_steps: must be in \[1, max_steps_train=4\]",
    ):
        load_dataclass(RunConfig, {"orchestration": {"max_steps_train": 4, "max_steps_infer": 4}})


def test_apply_overrides_parses_yaml_scalars_and_checks_paths():
    base = {"training": {"lr": 1e-3}, "orchestration": {"max_steps_train": 16}}
    out = apply_overrides(
        base,
        [
            "training.lr=3e-4",
            "orchestration.max_steps_train=8",
            "orchestration.backprop_truncate_steps=4",
            "orchestration.canvas_edit_strategies=[replace, patch]",
            "orchestration.stopping.patience=null",
            "training.resume=runs/a",
        ],
        RunConfig,
    )
    assert base["orchestration"] == {"max_steps_train": 16}  # input untouched
    run = load_dataclass(RunConfig, out)
    assert run.training.lr == 3e-4 and run.training.resume == "runs/a"
    assert run.orchestration.max_steps_train == 8 and run.orchestration.backprop_truncate_steps == 4
    assert run.orchestration.canvas_edit_strategies == ["replace", "patch"]
    assert run.orchestration.stopping.patience is None
    with pytest.raises(
        ConfigError,
        match=r"^orchestration.step_loss_weights.tokn: unknown key \(did you mean 'token'\?\)",
    ):
        apply_overrides(base, ["orchestration.step_loss_weights.tokn=2"], RunConfig)
    with pytest.raises(ConfigError, match=r"^trainng: unknown key \(did you mean 'training'\?\)"):
        apply_overrides(base, ["trainng.lr=1"], RunConfig)
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides(base, ["training.lr"], RunConfig)
    # Without a dataclass the path must already exist in the dict.
    assert apply_overrides(base, ["training.lr=0.5"])["training"]["lr"] == 0.5
    with pytest.raises(ConfigError, match=r"^training.steps: unknown key"):
        apply_overrides(base, ["training.steps=5"])


@pytest.mark.parametrize(
    "source, strategies, refused",
    [
        ("parity", ["paraphrase", "position_shift"], "position_shift"),
        ("parity", ["masking"], "masking"),
        ("sudoku", ["format_variation", "token_noise"], "token_noise"),
        ("sudoku", ["masking", "paraphrase"], None),  # a masked given keeps the target a solution
        ("parity", ["paraphrase", "format_variation"], None),  # the defaults
    ],
)
def test_input_only_noise_is_refused_where_it_makes_wrong_labels(source, strategies, refused):
    """Issue 10, point 9: input-only strategies keep the target while changing the input;
    for parity (every bit decides the answer) and sudoku (noise/shift change the puzzle)
    that makes wrong labels, so the run is refused before compute, naming the key."""
    from refiner.config.experiment import prepare_experiment

    overrides = [
        f"task.source={source}",
        "task.count=8",
        f"task.size={4 if source == 'sudoku' else 8}",
        f"orchestration.augmentation_strategies=[{', '.join(strategies)}]",
    ]
    if refused is None:
        config, _ = prepare_experiment(overrides=overrides)
        assert config.orchestration.augmentation_strategies == strategies
        return
    with pytest.raises(ConfigError) as err:
        prepare_experiment(overrides=overrides)
    i = strategies.index(refused)
    assert str(err.value).startswith(f"orchestration.augmentation_strategies[{i}]: '{refused}'")
    assert "wrong labels" in str(err.value) and source in str(err.value)
    # task.augment=false trains on the tasks as they are: nothing to refuse.
    prepare_experiment(overrides=[*overrides, "task.augment=false"])
