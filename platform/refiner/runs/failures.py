"""Failures that retrying cannot fix.

A ``DeterministicError`` says: the same input (task rows, config values) fails the same
way on every try. The Ray layer (``refiner.distributed.failure_policy``) ends a run at once
on one, with its message as the one-line reason, instead of restarting the worker group
``training.max_failures`` times to fail again. Worker deaths and other transient faults
are not marked and keep using ``max_failures``. A job reports one as a failed run
(``refiner.runs.cli``: "error: ...", exit status 1).
"""

from __future__ import annotations

from refiner.runs.cli import RunFailedError


class DeterministicError(RunFailedError):
    """A failure caused by input content; the message names the file, row and cause."""
