"""refiner.runs.cli: the exit statuses and messages every job shares, SIGTERM included."""

from __future__ import annotations

import os
import signal

import pytest

from refiner.checkpoints.storage import StorageError
from refiner.config.sections import ConfigError
from refiner.runs.cli import (
    BadInputError,
    input_checks,
    job_main,
    parse_options,
    set_overrides,
    stop_on_sigterm,
)


def job_raising(error: BaseException, checked: bool = True):
    @job_main
    def main(argv: list[str] | None = None) -> int:
        if checked:
            with input_checks():
                raise error
        raise error

    return main


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("cfg.yaml: training.lr: expected a number"),
        StorageError("checkpoint storage /x is not writable"),
        BadInputError("sweep run 1 has no trial runs"),
        FileNotFoundError("no sweep 'x'"),
    ],
)
def test_bad_input_is_exit_2_with_the_message(error, capsys) -> None:
    assert job_raising(error)([]) == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def test_tracking_and_ray_layer_errors_map_without_core_importing_them(capsys) -> None:
    from refiner.distributed.loop import TrainingDiverged
    from refiner.tracking import TrackingError

    assert job_raising(TrackingError("MLflow server unreachable"))([]) == 2
    assert job_raising(TrainingDiverged("20 updates skipped"), checked=False)([]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: MLflow server unreachable",
        "error: 20 updates skipped",
    ]


def test_errors_outside_the_checks_are_not_swallowed() -> None:
    with pytest.raises(ValueError):  # a bug after the input checks keeps its traceback
        job_raising(ValueError("bug"), checked=False)([])
    with pytest.raises(KeyError):  # not bad input, even inside the checks
        job_raising(KeyError("bug"))([])
    with pytest.raises(RuntimeError):
        job_raising(RuntimeError("bug"))([])


def test_sigterm_ends_the_job_cleanly_and_closes_context_managers(capsys) -> None:
    closed = []

    @job_main
    def main(argv: list[str] | None = None) -> int:
        stop_on_sigterm()
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises before this returns
        except KeyboardInterrupt:  # what tracked_run catches to end a run KILLED
            closed.append("KILLED")
            raise
        return 0

    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main([]) == 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert closed == ["KILLED"]
    assert capsys.readouterr().err == "error: stopped by SIGTERM\n"


def test_sigterm_that_ray_get_turns_into_keyboard_interrupt_still_exits_143(capsys) -> None:
    @job_main
    def main(argv: list[str] | None = None) -> int:
        stop_on_sigterm()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # what ray.get raises in place of Terminated
        return 0

    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main([]) == 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert capsys.readouterr().err == "error: stopped by SIGTERM\n"


def test_ctrl_c_exits_130_without_a_traceback(capsys) -> None:
    assert job_raising(KeyboardInterrupt(), checked=False)([]) == 130
    assert capsys.readouterr().err == "error: stopped by SIGINT\n"


def test_set_overrides_and_options() -> None:
    shorthands = {"training.num_workers": 0, "training.use_gpu": False, "seed": None}
    assert set_overrides(["a=1"], shorthands) == ["a=1", "training.num_workers=0"]
    assert set_overrides([], {"training.use_gpu": True}) == ["training.use_gpu=true"]
    assert parse_options(["n=3", "p=0.5", "v=arc-agi-2"]) == {"n": 3, "p": 0.5, "v": "arc-agi-2"}
    with pytest.raises(ValueError, match="--option expects KEY=VALUE, got 'oops'"):
        parse_options(["oops"])
