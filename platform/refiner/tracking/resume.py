"""Resuming a run (same run name) with a changed config: refused, or recorded on the run.

MLflow params are write-once, so a resumed run whose config changed would keep showing
the old values. ``check_resume`` compares the config with the params of the run that
the name would reopen, before anything starts; the job refuses the changes (exit
status 2) unless ``--allow-config-change``, in which case the changes become the tag
``refiner.config_changes`` (JSON: ``{key: [was, now]}``) of the resumed run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

from refiner.runs.cli import BadInputError
from refiner.runs.tracker import flatten
from refiner.tracking import find_run

CHANGES_TAG = "refiner.config_changes"
_MISSING = None  # a key the old (or the new) config does not have


class ConfigChangedError(BadInputError, ValueError):
    """A resumed run's config differs from the one it was started with."""


def config_changes(
    tracking_uri: str, experiment: str, run_name: str, config: Mapping[str, Any]
) -> dict[str, tuple[str | None, str | None]]:
    """``{dotted key: (logged value, new value)}`` against the run ``run_name`` would reopen.

    Empty when there is no such run (or it has no params yet). Reads only: a SQLite store
    that does not exist yet is not created.
    """
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[10:]).exists():
        return {}
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        return {}
    run = find_run(client, found.experiment_id, run_name)
    if run is None or not run.data.params:
        return {}
    old = run.data.params
    new = {k: str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in flatten(config).items()}
    return {
        key: (old.get(key, _MISSING), new.get(key, _MISSING))
        for key in sorted(old.keys() | new.keys())
        if old.get(key, _MISSING) != new.get(key, _MISSING)
    }


def check_resume(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    config: Mapping[str, Any],
    allow_change: bool = False,
) -> dict[str, str]:
    """The tags a resumed run gets; raises ``ConfigChangedError`` listing changed keys.

    Returns ``{CHANGES_TAG: json}`` when changes are allowed, else ``{}``.
    """
    changes = config_changes(tracking_uri, experiment, run_name, config)
    if not changes:
        return {}
    if not allow_change:
        listed = "; ".join(
            f"{k}: {_show(was)} -> {_show(now)}" for k, (was, now) in changes.items()
        )
        raise ConfigChangedError(
            f"run {run_name!r} in experiment {experiment!r} exists with a different config "
            f"({len(changes)} key(s) changed: {listed}); resume it with the same config, "
            "choose another --run-name, or pass --allow-config-change to record the changes"
        )
    recorded = json.dumps({k: [was, now] for k, (was, now) in changes.items()})
    if len(recorded) > MAX_TAG_VAL_LENGTH:  # too long for a tag: the keys alone
        recorded = json.dumps(sorted(changes))[:MAX_TAG_VAL_LENGTH]
    return {CHANGES_TAG: recorded}


def _show(value: str | None) -> str:
    return "(unset)" if value is None else value
