"""Searchers and two-objective sweeps without starting Ray: the Optuna searcher honours the
space's constraints and continues (not restarts) after a save and restore; the Pareto
front, its hypervolume and the rule that picks a point; the new space fields' checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from refiner.config.experiment import ExperimentConfig
from refiner.distributed.optuna_search import optuna_searcher
from refiner.sweep.outcome import TrialSummary
from refiner.sweep.pareto import choose, hypervolume, pareto_front, write_front_artifacts
from refiner.sweep.space import SpaceError, load_space, parse_space

ROOT = Path(__file__).resolve().parent.parent
BASE = ExperimentConfig().to_dict()


def optuna_space(**sweep: object) -> dict:
    return {
        "sweep": {"seed": 3, "search": {"type": "optuna", "n_startup_trials": 2}, **sweep},
        "space": {
            "training.lr": {"loguniform": [1e-4, 1e-2]},
            "orchestration.max_steps_train": {"choice": [4, 8]},
            "orchestration.backprop_truncate_steps": {
                "choice": [2, 4, 8],
                "at_most": "orchestration.max_steps_train",
            },
            "orchestration.canvas_edit_strategies": {"choice": [["replace"], ["replace", "patch"]]},
        },
    }


def run_trials(searcher, ids: list[str], score) -> list[dict]:
    """Suggest, report one result and complete each trial, as Tune would."""
    configs = []
    for trial_id in ids:
        config = searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, {"step": 10, "loss": 1.0})  # no validation yet
        searcher.on_trial_result(trial_id, {"step": 20, "val_token_acc_infer": score(config)})
        searcher.on_trial_complete(trial_id, {"step": 25, "loss": 0.5})  # last report: no metric
        configs.append(config)
    return configs


def test_optuna_proposals_honour_the_space() -> None:
    space = parse_space(optuna_space(), "x.yaml")
    searcher = optuna_searcher(space, BASE)
    configs = run_trials(searcher, [f"t{i}" for i in range(12)], lambda c: c["training.lr"])
    for config in configs:
        assert set(config) == set(space.params)  # only the space's keys reach the trial
        t, k = (
            config["orchestration.max_steps_train"],
            config["orchestration.backprop_truncate_steps"],
        )
        assert k <= t
        assert config["orchestration.canvas_edit_strategies"] in (["replace"], ["replace", "patch"])
        assert 1e-4 <= config["training.lr"] <= 1e-2
    study = searcher._ot_study
    # Every trial was scored by its last validation, though the final report had none.
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 12
    assert study.best_value == max(c["training.lr"] for c in configs)


def test_optuna_searcher_continues_after_restore(tmp_path: Path) -> None:
    space = parse_space(optuna_space(), "x.yaml")
    first = optuna_searcher(space, BASE)
    before = run_trials(first, ["a", "b", "c"], lambda c: c["training.lr"])
    first.save(str(tmp_path / "searcher.pkl"))  # what Tune writes beside the experiment

    restored = optuna_searcher(space, BASE)
    restored.restore(str(tmp_path / "searcher.pkl"))
    after = run_trials(restored, ["d"], lambda c: c["training.lr"])
    assert len(restored._ot_study.trials) == 4
    # A restarted search with the same seed repeats the first proposal; a restored one goes on.
    fresh = optuna_searcher(space, BASE).suggest("a")
    assert fresh == before[0] and after[0] not in before


def test_two_objective_searcher_gets_both_values() -> None:
    data = optuna_space(objectives={"val_acc_infer": "max", "val_mean_steps": "min"})
    searcher = optuna_searcher(parse_space(data, "x.yaml"), BASE)
    searcher.suggest("t0")
    searcher.on_trial_result("t0", {"val_acc_infer": 0.5, "val_mean_steps": 3.0})
    searcher.on_trial_complete("t0", {"step": 30})
    assert searcher._ot_study.trials[0].values == [0.5, 3.0]


def trial(i: int, acc: float, steps: float, status: str = "done") -> TrialSummary:
    metrics = {"val_acc_infer": acc, "val_mean_steps": steps, "step": 10}
    return TrialSummary(f"t{i}", f"s-t{i}", {"training.lr": 0.001 * i}, metrics, status)


OBJECTIVES = {"val_acc_infer": "max", "val_mean_steps": "min"}
TRIALS = [
    trial(0, 0.90, 4.0),
    trial(1, 0.897, 2.5),  # within 0.005 of the best, fewer steps
    trial(2, 0.80, 1.5),
    trial(3, 0.85, 3.0),  # dominated by t1
    trial(4, 0.99, 1.0, status="error"),  # errored: never on the front
]


def test_pareto_front_and_choice(tmp_path: Path) -> None:
    front = pareto_front(TRIALS, OBJECTIVES)
    assert [t.trial_id for t in front] == ["t0", "t1", "t2"]
    picked = choose(front, OBJECTIVES, within=0.005)
    assert picked is not None and picked.trial.trial_id == "t1"
    assert "lowest val_mean_steps (2.5)" in picked.reason and "within 0.005" in picked.reason
    exact = choose(front, OBJECTIVES, within=0.0)
    assert exact is not None and exact.trial.trial_id == "t0"
    files = write_front_artifacts(TRIALS, front, OBJECTIVES, ["training.lr"], tmp_path, front[1])
    table = files[0].read_text().splitlines()
    assert table[0] == "trial_id,run_name,val_acc_infer,val_mean_steps,training.lr"
    assert len(table) == 4 and files[1].stat().st_size > 1000


def test_hypervolume() -> None:
    # Reference (0.7 accuracy, 5 steps): t0 0.2 x 1.0, t1 adds 0.197 x 1.5, t2 adds 0.1 x 1.0.
    area = hypervolume(TRIALS, OBJECTIVES, (0.7, 5.0))
    assert area == pytest.approx(0.2 * 1.0 + 0.197 * 1.5 + 0.1 * 1.0)
    assert hypervolume(TRIALS[:1], OBJECTIVES, (0.7, 5.0)) < area


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (
            {"search": {"type": "bayes"}},
            r"sweep.search.type: must be one of \['random', 'optuna'\]",
        ),
        ({"search": {"type": "optuna", "sampler": "cma"}}, "sweep.search.sampler: must be one of"),
        ({"search": {"tpye": "optuna"}}, r"sweep.search.tpye: unknown key .*'type'"),
        ({"search": {"n_startup_trials": -1}}, "n_startup_trials: must be >= 0"),
        ({"objectives": {"val_acc_infer": "max"}}, "objectives: name exactly 2 metrics"),
        (
            {"objectives": {"val_acc_infer": "up", "val_mean_steps": "min"}},
            "objectives.val_acc_infer: must be 'max' or 'min'",
        ),
        (
            {
                "objectives": {"val_acc_infer": "max", "val_mean_steps": "min"},
                "scheduler": {"metric": "loss", "mode": "min"},
            },
            "sweep.scheduler.metric: with objectives the scheduler ranks by one of them",
        ),
        ({"choose_within": 0.5}, "choose_within: applies to a sweep with objectives"),
    ],
)
def test_bad_search_settings_are_named(tmp_path: Path, sweep: dict, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"sweep": sweep, "space": {"training.lr": {"choice": [0.1]}}}))
    with pytest.raises(SpaceError, match=message) as err:
        load_space(path)
    assert str(err.value).startswith(f"{path}: sweep.")


def test_grid_under_optuna_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    data = {"sweep": {"search": {"type": "optuna"}}, "space": {"seed": {"grid": [0, 1]}}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpaceError, match=r"space.yaml: space.seed: grid is not searched by"):
        load_space(path)


def test_objectives_set_the_scheduler_metric() -> None:
    space = load_space(ROOT / "tune_spaces" / "pareto.yaml")
    assert space.settings.objectives == OBJECTIVES
    assert (space.settings.scheduler.metric, space.settings.scheduler.mode) == (
        "val_acc_infer",
        "max",
    )
    assert parse_space(space.to_dict(), "again").settings == space.settings  # --resume


def pbt_space(space: dict, **scheduler: object) -> dict:
    return {
        "sweep": {"scheduler": {"type": "pbt", "metric": "loss", "mode": "min", **scheduler}},
        "space": space,
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            pbt_space({"model.d_model": {"choice": [16, 32]}, "training.lr": {"choice": [0.1]}}),
            r"space.yaml: space.model.d_model: PBT cannot change it during a run",
        ),
        (
            pbt_space({"task.size": {"choice": [4, 6]}}),
            r"space.task.size: PBT cannot change it during a run",
        ),
        (
            pbt_space(
                {
                    "orchestration.truncated_backprop": {"choice": [True]},
                    "orchestration.backprop_truncate_steps": {
                        "choice": [1, 2],
                        "at_most": "orchestration.grokfast.window",
                    },
                    "orchestration.grokfast.window": {"choice": [4, 8]},
                }
            ),
            "backprop_truncate_steps.at_most: PBT mutates keys one by one",
        ),
        (
            {
                **pbt_space({"training.lr": {"choice": [0.1]}}),
                "sweep": {"search": {"type": "optuna"}, "scheduler": {"type": "pbt"}},
            },
            "sweep.scheduler.type: pbt draws its first population at random",
        ),
        (
            pbt_space({"training.lr": {"choice": [0.1]}}, quantile_fraction=0.8),
            "quantile_fraction: must be in",
        ),
    ],
)
def test_pbt_refuses_what_it_cannot_mutate(tmp_path: Path, data: dict, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpaceError, match=message):
        load_space(path)


def test_pbt_interval_must_land_on_checkpoints(tmp_path: Path) -> None:
    from refiner.config.sections import ConfigError
    from refiner.sweep.plan import plan_sweep

    path = tmp_path / "space.yaml"
    path.write_text(
        yaml.safe_dump(pbt_space({"training.lr": {"choice": [0.1]}}, perturbation_interval=30))
    )
    with pytest.raises(
        ConfigError,
        match=r"perturbation_interval: 30 is not a multiple of "
        r"training.checkpoint_every=20",
    ):
        plan_sweep(
            path,
            ROOT / "jobs" / "configs" / "sweep.yaml",
            tracking_uri="x",
            experiment="x",
            storage=str(tmp_path),
        )


def test_shipped_pbt_space_mutates_only_mutable_keys() -> None:
    space = load_space(ROOT / "tune_spaces" / "pbt.yaml")
    assert space.settings.scheduler.type == "pbt" and space.params


def test_pbt_mutations_stay_among_the_choices() -> None:
    # Tune's own explore step, run many times on the shipped PBT space: choices move to a
    # neighbour or are redrawn (a string schedule scaled by 1.2 raised TypeError mid-sweep),
    # numbers are scaled or redrawn.
    import random

    from ray.tune.schedulers.pbt import _explore

    from refiner.distributed.search import scheduler

    space = load_space(ROOT / "tune_spaces" / "pbt.yaml")
    made = scheduler(space.settings.scheduler, 120, 20, space, BASE)
    choices = {k: set(s.values) for k, s in space.params.items() if s.kind == "choice"}
    window = space.params["orchestration.backprop_truncate_steps"]
    allowed = window.allowed(BASE["orchestration"]["max_steps_train"])
    choices["orchestration.backprop_truncate_steps"] = set(allowed)
    config = {
        "training.lr": 1e-3,
        "orchestration.truncated_backprop": True,
        "orchestration.backprop_truncate_steps": 4,
        "orchestration.step_loss_weights.schedule": "linear",
    }
    random.seed(0)
    for _ in range(200):
        config, _ops = _explore(
            config, made._hyperparam_mutations, 0.25, made._perturbation_factors, None
        )
        for key, allowed in choices.items():
            assert config[key] in allowed, (key, config[key])
        assert config["training.lr"] > 0


def pb2_space(space: dict, **scheduler: object) -> dict:
    return pbt_space(space, **{"type": "pb2", **scheduler})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            pb2_space({"model.n_layers": {"uniform": [1, 2]}}),
            r"space.yaml: space.model.n_layers: PB2 cannot change it during a run",
        ),
        (
            pb2_space(
                {
                    "training.lr": {"loguniform": [1e-4, 1e-2]},
                    "orchestration.step_loss_weights.schedule": {"choice": ["uniform", "linear"]},
                }
            ),
            r"space.orchestration.step_loss_weights.schedule: PB2 needs \[low, high\] bounds "
            r"to explore \(uniform or loguniform\), got choice",
        ),
        (
            pb2_space({"training.lr": {"grid": [1e-3, 1e-2]}}),
            r"space.training.lr: PB2 needs \[low, high\] bounds",
        ),
        (
            {
                **pb2_space({"training.lr": {"uniform": [1e-4, 1e-2]}}),
                "sweep": {"search": {"type": "optuna"}, "scheduler": {"type": "pb2"}},
            },
            "sweep.scheduler.type: pb2 draws its first population at random",
        ),
        (
            pb2_space({"training.lr": {"uniform": [1e-4, 1e-2]}}, type="pb3"),
            r"type: must be one of \['asha', 'fifo', 'pbt', 'pb2'\], got 'pb3'",
        ),
    ],
)
def test_pb2_refuses_keys_without_bounds_or_that_cannot_change(
    tmp_path: Path, data: dict, message: str
) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpaceError, match=message):
        load_space(path)


def test_pb2_scheduler_gets_the_spaces_bounds() -> None:
    from ray.tune.schedulers.pb2 import PB2

    from refiner.distributed.search import scheduler

    space = load_space(ROOT / "tune_spaces" / "pb2.yaml")
    made = scheduler(space.settings.scheduler, 120, 20, space, BASE)
    assert isinstance(made, PB2)
    assert made._hyperparam_bounds == {k: list(s.values) for k, s in space.params.items()}
    assert made._perturbation_interval == space.settings.scheduler.perturbation_interval


def test_restored_optimizer_follows_the_configs_learning_rate() -> None:
    # A PBT exploit restores a peer's optimizer (its rate) under a mutated config rate.
    import torch

    from refiner.distributed.worker_checkpoints import follow_config_lr
    from refiner.train.optim import warmup_cosine

    def make(lr: float):
        weight = torch.nn.Parameter(torch.ones(2))
        optimizer = torch.optim.AdamW([weight], lr=lr)
        return weight, optimizer, warmup_cosine(optimizer, 2, 20)

    weight, peer_opt, peer_sched = make(1e-2)
    for _ in range(5):
        weight.sum().backward()
        peer_opt.step()
        peer_sched.step()
    _, mine, my_sched = make(1e-3)
    mine.load_state_dict(peer_opt.state_dict())
    my_sched.load_state_dict(peer_sched.state_dict())
    assert mine.param_groups[0]["lr"] == pytest.approx(peer_opt.param_groups[0]["lr"])
    follow_config_lr(mine, my_sched, 1e-3)
    factor = peer_opt.param_groups[0]["lr"] / 1e-2
    assert mine.param_groups[0]["lr"] == pytest.approx(1e-3 * factor)
    my_sched.step()  # the schedule goes on from the new base rate
    peer_sched.step()
    assert mine.param_groups[0]["lr"] == pytest.approx(peer_opt.param_groups[0]["lr"] / 10)


class _Controller:
    """The calls Tune's PBT makes on its controller in an asynchronous exploit."""

    search_alg = None

    def __init__(self, trials: list) -> None:
        self.trials = trials
        self.paused: list = []

    def get_trials(self) -> list:
        return self.trials

    def pause_trial(self, trial, should_checkpoint: bool = True) -> None:
        self.paused.append(trial)


def late_trial_sequence(made, checkpoint_dir: Path) -> tuple[list, object, object]:
    """The leader reaches its first two perturbations before the other trial has a score
    (its Train workers came up first), so Tune never marks it a top trial; then the late
    trial, behind it, reaches its first. Returns (paused trials, late trial, leader's
    checkpoint)."""
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult
    from ray.tune.experiment import Trial

    config = {"training.lr": 1e-3}
    leader, late = (Trial("__fake", config=dict(config), stub=True) for _ in range(2))
    controller = _Controller([leader, late])
    for t in (leader, late):
        t.set_status(Trial.RUNNING)
        made.on_trial_add(controller, t)
    made._log_config = False  # Tune's policy log goes in a trial folder stubs do not have
    interval = made._perturbation_interval
    checkpoint = Checkpoint.from_directory(str(checkpoint_dir))

    def report(trial: Trial, step: int, loss: float) -> None:
        made.on_trial_result(controller, trial, {"step": step, "loss": loss})

    report(leader, interval, 2.0)
    leader.run_metadata.checkpoint_manager.register_checkpoint(
        _TrainingResult(checkpoint=checkpoint, metrics={"step": 2 * interval})
    )
    report(leader, 2 * interval, 1.5)
    report(late, interval, 3.0)
    return controller.paused, late, checkpoint


@pytest.mark.parametrize("kind", ["pbt", "pb2"])
def test_a_late_bottom_trial_exploits_the_leaders_latest_checkpoint(
    tmp_path: Path, kind: str
) -> None:
    from refiner.distributed.search import scheduler

    space = load_space(ROOT / "tune_spaces" / f"{kind}.yaml")
    settings = space.settings.scheduler
    settings = type(settings)(**{**vars(settings), "metric": "loss", "mode": "min"})
    made = scheduler(settings, 120, 20, space, BASE)
    paused, late, checkpoint = late_trial_sequence(made, tmp_path)
    assert paused == [late]  # the exploit: the late trial goes on from the leader's
    assert late.checkpoint.path == checkpoint.path

    # Tune's own scheduler (the subclass's base) skips that exploit: what the subclass mends.
    plain = scheduler(settings, 120, 20, space, BASE)
    plain.__class__ = plain.__class__.__bases__[-1]
    paused, late, _ = late_trial_sequence(plain, tmp_path)
    assert paused == [] and late.checkpoint is None


@pytest.mark.parametrize("kind", ["pbt", "pb2"])
def test_no_exploit_at_a_trials_last_update(tmp_path: Path, kind: str) -> None:
    # The same reports, but the late trial's first perturbation is its last update: its
    # run has nothing left to train, and a copy of the leader's final checkpoint would
    # only end it on the leader's numbers.
    from refiner.distributed.search import scheduler

    space = load_space(ROOT / "tune_spaces" / f"{kind}.yaml")
    settings = space.settings.scheduler
    settings = type(settings)(**{**vars(settings), "metric": "loss", "mode": "min"})
    interval = scheduler(settings, 120, 20, space, BASE)._perturbation_interval
    made = scheduler(settings, interval, 20, space, BASE)
    paused, late, _ = late_trial_sequence(made, tmp_path)
    assert paused == [] and late.checkpoint is None


def test_the_summary_lists_each_exploit() -> None:
    from types import SimpleNamespace

    from refiner.distributed.pbt import generation_note, population_history
    from refiner.sweep.outcome import SweepOutcome, format_summary

    went_on = '; checkpoint /store/x/checkpoint_000001; went on with {"training.lr": 0.002}'
    tags = {  # a trial's run after two exploits and a resume between them
        "refiner.pbt.generation": "3",
        "refiner.pbt.g3": generation_note("ab_00002", "ab_00001", 80, 100) + went_on,
        "refiner.pbt.g3.went_back": "20",
        "refiner.pbt.g1": generation_note("ab_00000", "ab_00001", 40, 60) + went_on,
        "refiner.pbt.g1.went_back": "20",
        "refiner.pbt.g2": generation_note("ab_00001", "ab_00001", 60, 60) + went_on,
        "refiner.pbt.g2.went_back": "0",
    }
    history = population_history({"ab_00001": tags, "ab_00000": {}})
    assert history.exploits == [
        "ab_00001 generation 1: exploited trial ab_00000 at update 40, leaving update 60",
        "ab_00001 generation 3: exploited trial ab_00002 at update 80, leaving update 100",
    ]
    assert history.went_back == 40

    trial = TrialSummary("ab_00001", "s-ab_00001", {}, {"loss": 1.0, "step": 120}, "done")
    outcome = SweepOutcome(
        "s", "loss", "min", [trial], trial, "p", exploits=history.exploits, went_back=40
    )
    plan = SimpleNamespace(name="s", storage="/x", experiment="e", tracking_uri="sqlite:///m")
    summary = format_summary(outcome, [], plan)  # type: ignore[arg-type]
    lines = history.exploits
    assert "population: 2 exploit(s)\n  " + lines[0] + "\n  " + lines[1] in summary
    assert "updates trained: 160 (the final steps add up to 120" in summary


@pytest.mark.parametrize("all_run_at_once", [False, True])
def test_no_fair_share_pause_when_the_population_runs_at_once(all_run_at_once: bool) -> None:
    # A top trial reaches its perturbation while its peer waits (restarting after an
    # exploit). Tune pauses the top trial so that the peer may take its place; when
    # the whole population fits at once the peer has a place, and the pause would only
    # restart the top trial's Train run.
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from refiner.distributed.search import scheduler

    space = load_space(ROOT / "tune_spaces" / "pbt.yaml")
    settings = space.settings.scheduler
    settings = type(settings)(**{**vars(settings), "metric": "loss", "mode": "min"})
    made = scheduler(settings, 120, 20, space, BASE, all_run_at_once=all_run_at_once)
    top, waiting = (Trial("__fake", config={"training.lr": 1e-3}, stub=True) for _ in range(2))
    controller = _Controller([top, waiting])
    for t in (top, waiting):
        made.on_trial_add(controller, t)
    top.set_status(Trial.RUNNING)
    waiting.set_status(Trial.PENDING)
    made._log_config = False
    interval = made._perturbation_interval
    decision = made.on_trial_result(controller, top, {"step": interval, "loss": 1.0})
    expected = TrialScheduler.CONTINUE if all_run_at_once else TrialScheduler.PAUSE
    assert decision == expected and controller.paused == []


def test_progress_shows_the_values_a_report_was_made_with(capsys) -> None:
    from types import SimpleNamespace

    from refiner.distributed.sweep_progress import SweepProgress

    progress = SweepProgress("s", "loss", 120, ["training.lr"])
    # Tune's scheduler decides before the callbacks: an exploit has changed the config.
    trial = SimpleNamespace(trial_id="ab_00001", config={"training.lr": 0.0028})
    result = {"step": 80, "loss": 5.9, "config": {"training.lr": 0.000318}}
    progress.on_trial_result(0, [], trial, result)
    assert "lr=0.000318" in capsys.readouterr().out
