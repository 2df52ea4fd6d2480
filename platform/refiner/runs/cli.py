"""What every job does the same way: exit statuses, bad input, SIGTERM.

A job's ``main`` is decorated with ``job_main`` and wraps the part that reads its input
in ``input_checks()``::

    @job_main
    def main(argv=None) -> int:
        args = parse_args(argv)
        with input_checks():        # bad input: "error: ..." on stderr, exit status 2
            config, tasks = prepare_experiment(...)
        init_ray(...)
        stop_on_sigterm()           # `ray job stop`: the tracked run ends KILLED, exit 143
                                    # (Ctrl-C: KILLED too, exit 130)
        run_training(...)           # a RunFailedError: "error: ...", exit status 1

No Ray and no MLflow here: the layers above mark their errors by subclassing
``BadInputError`` (e.g. ``refiner.tracking.TrackingError``) or ``RunFailedError``
(e.g. ``refiner.distributed.loop.TrainingDiverged``).
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

EXIT_FAILED = 1  # the run started and failed in a known way (e.g. training diverged)
EXIT_BAD_INPUT = 2  # refused before anything started: config, task file, storage, store


class BadInputError(Exception):
    """Base of bad-input errors that are not ``ValueError`` or ``OSError`` already."""


class RunFailedError(RuntimeError):
    """Base of known ways a started run fails: the job says why and exits with status 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``ray job stop``), raised like Ctrl-C so that open runs end KILLED."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


# ConfigError, SpaceError and TaskFileError are ValueErrors; a missing file is an OSError.
BAD_INPUT: tuple[type[BaseException], ...] = (BadInputError, ValueError, OSError)


class JobExit(Exception):
    """Ends a job with ``error: MESSAGE`` on stderr and ``code`` (raised by input_checks)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def input_checks(*extra: type[BaseException]) -> Iterator[None]:
    """Bad input raised inside (``BAD_INPUT`` or ``extra``) ends the job with status 2."""
    try:
        yield
    except (*BAD_INPUT, *extra) as err:
        raise JobExit(str(err), EXIT_BAD_INPUT) from err


def job_main(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Turn ``JobExit``, ``RunFailedError`` and SIGTERM into a message and an exit status."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        _last_signal.clear()
        try:
            return main(argv)
        except JobExit as err:
            return _fail(str(err), err.code)
        except RunFailedError as err:  # tracked runs are closed as FAILED by now
            return _fail(str(err), EXIT_FAILED)
        except KeyboardInterrupt:  # tracked runs are closed as KILLED by now
            # ray.get turns any exception raised by a signal handler while it waits into
            # a plain KeyboardInterrupt, so SIGTERM is known by what the handler recorded;
            # nothing recorded: Ctrl-C.
            signum = _last_signal[-1] if _last_signal else signal.SIGINT
            return _fail(f"stopped by {signal.Signals(signum).name}", 128 + signum)

    return run


_last_signal: list[int] = []  # set by the SIGTERM handler: the signal that stopped the job


def stop_on_sigterm() -> None:
    """SIGTERM raises ``Terminated``, so context managers close runs as KILLED.

    Call it after ``init_ray``: ``ray.init`` installs its own handler (``sys.exit``, which
    would end the run FAILED).
    """
    signal.signal(signal.SIGTERM, _terminate)


def set_overrides(sets: Sequence[str], shorthands: Mapping[str, object]) -> list[str]:
    """``--set`` overrides followed by a job's shorthand flags (``training.steps=...``).

    ``shorthands`` maps dotted config keys to flag values; None (flag not given) and
    False (a store_true flag left off) add nothing, so the config's value stays.
    """
    out = list(sets)
    for key, value in shorthands.items():
        if value is None or value is False:
            continue
        out.append(f"{key}={'true' if value is True else value}")
    return out


def add_trace_arguments(parser: argparse.ArgumentParser) -> None:
    """``--trace N`` and ``--trace-out PNG``: the canvas step by step (refiner.evaluate.canvas_pictures)."""
    parser.add_argument(
        "--trace",
        type=int,
        metavar="N",
        help="also the canvas after every step on N rows of the split: per-step counts (cells"
        " to fill right, wrong cells, exact) and a picture of the first few (--trace-out)",
    )
    parser.add_argument(
        "--trace-out", default="canvas_trace.png", help="where --trace writes its PNG"
    )


def parse_options(pairs: Sequence[str], flag: str = "--option") -> dict[str, object]:
    """``KEY=VALUE`` strings to keyword options; numbers become int or float."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}")
        options[key] = _number_or_text(value)
    return options


def _number_or_text(value: str) -> object:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _terminate(signum: int, frame: object) -> None:
    _last_signal.append(signum)
    raise Terminated(signum)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code
