"""Every use of a private Ray API, in one place (checked against Ray 2.60).

Ray keeps no compatibility promise for these names: when Ray is upgraded, this module is
the list of things to check again. Each shim says why it exists and what it reaches.
"""

from __future__ import annotations

import logging
from typing import Any

import ray


def init_local_on_loopback(**kwargs: Any) -> Any:
    """``ray.init(address="local", ...)`` with the node bound to 127.0.0.1.

    Why: a private local cluster must not listen on the machine's public interfaces.
    ``_node_ip_address`` is the only ``ray.init`` argument for that (Ray 2.60; the CLI's
    ``ray start --node-ip-address`` has no public Python equivalent).
    """
    return ray.init(address="local", _node_ip_address="127.0.0.1", **kwargs)


def disable_auto_init() -> None:
    """Stop a Ray call after ``ray.shutdown()`` from silently starting a new cluster.

    Why: after a failed run, Ray Data's executor threads can outlive ``ray.shutdown()``
    and their next Ray call would start a fresh cluster and hang the exiting driver. The
    switch is ``ray._private.auto_init_hook.enable_auto_connect`` (Ray 2.60); the public
    ``RAY_ENABLE_AUTO_CONNECT`` variable is read once at import, too late for a job.
    """
    import ray._private.auto_init_hook as auto_init

    auto_init.enable_auto_connect = False


def quiet_train_report_logging() -> None:
    """Ray Train V2 logs every report's full metrics dict at INFO; keep WARNING and up.

    Why: the train loop prints one progress line per report itself. The logger is named
    after the file of ``ray.train.v2._internal.execution.context`` (Ray 2.60, Train V2).
    """
    from ray.train.v2._internal.execution import context as train_context

    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def ray_data_default_logging() -> dict[str, Any]:
    """A copy of Ray Data's default logging config (what ``RAY_DATA_LOGGING_CONFIG`` replaces).

    Why: a quiet console keeps Ray Data's file log and only raises its console level;
    the default lives in ``ray.data._internal.logging.DEFAULT_CONFIG`` (Ray 2.60).
    """
    import copy

    from ray.data._internal import logging as data_logging

    return copy.deepcopy(data_logging.DEFAULT_CONFIG)


def session_logs_dir() -> str | None:
    """This process's Ray session log folder (``/tmp/ray/session_*/logs``), if connected.

    Why: Ray has no public API for it; ``ray._private.worker._global_node`` (Ray 2.60).
    """
    import os

    node = ray._private.worker._global_node
    return None if node is None else os.path.join(node.get_session_dir_path(), "logs")


def checkpoint_destination(checkpoint_dir_name: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path) where Ray Train keeps this run's checkpoint of that name.

    Why: a ``checkpoint_upload_fn`` of ``ray.train.report`` must write where Ray Train
    would; the run's storage is reached through ``TrainContext.get_storage()``, a
    DeveloperAPI (Ray 2.60: ``storage_filesystem``, ``build_checkpoint_path_from_name``).
    """
    storage = ray.train.get_context().get_storage()
    return storage.storage_filesystem, storage.build_checkpoint_path_from_name(checkpoint_dir_name)
