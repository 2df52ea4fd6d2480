"""Every use of a private Ray API, in one place (checked against Ray 2.60).

Ray keeps no compatibility promise for these names: when Ray is upgraded, this module is
the list of things to check again. Each shim says why it exists and what it reaches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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


def quiet_tune_checkpoint_logging() -> None:
    """Ray Tune's "Checkpoint successfully created at: ..." INFO line: keep WARNING and up.

    Why: a PBT trial reports every Train checkpoint to Tune (``tune.report(...,
    checkpoint=...)``), and each report printed that line on the sweep's console. It is
    logged by ``ray.train._internal.storage`` (Ray 2.60, the function trainable's storage).
    """
    from ray.train._internal import storage as tune_storage

    logging.getLogger(tune_storage.__name__).setLevel(logging.WARNING)


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


def filter_worker_lines(keep_out: Callable[[str], bool], keep: Callable[[list[str]], None]) -> None:
    """Lines that Ray's workers print and the driver would echo: those ``keep_out`` picks
    go to ``keep`` instead of the console; every other line is printed as Ray prints it.

    Why: some of Ray's own C++ notices about its own actors reach the driver's console
    through ``log_to_driver`` (not through Python logging, so no logging filter sees
    them). The echo is the handler ``"ray_print_logs"`` of
    ``ray._private.ray_logging.global_worker_stdstream_dispatcher`` (Ray 2.60); a batch
    is a dict whose ``"lines"`` are the process's lines. Installed once per driver.
    """
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    with dispatcher._lock:
        for i, (name, handler) in enumerate(dispatcher.handlers):
            if name != "ray_print_logs" or getattr(handler, "_refiner_filtered", False):
                continue

            def filtered(data: dict, shown: Callable = handler) -> None:
                lines = data.get("lines") or []
                out = [line for line in lines if keep_out(line)]
                if out:
                    keep(out)
                    data = {**data, "lines": [line for line in lines if not keep_out(line)]}
                    if not data["lines"]:
                        return
                shown(data)

            filtered._refiner_filtered = True  # type: ignore[attr-defined]
            dispatcher.handlers[i] = (name, filtered)


def checkpoint_destination(checkpoint_dir_name: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path) where Ray Train keeps this run's checkpoint of that name.

    Why: a ``checkpoint_upload_fn`` of ``ray.train.report`` must write where Ray Train
    would; the run's storage is reached through ``TrainContext.get_storage()``, a
    DeveloperAPI (Ray 2.60: ``storage_filesystem``, ``build_checkpoint_path_from_name``).
    """
    storage = ray.train.get_context().get_storage()
    return storage.storage_filesystem, storage.build_checkpoint_path_from_name(checkpoint_dir_name)
