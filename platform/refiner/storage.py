"""Checkpoint storage of a run: a local folder or any pyarrow filesystem URI (s3://...).

Ray Train owns checkpoint directories for worker groups; these helpers read them (to
find where a resumed run's data stream starts) and stand in for Ray Train in local mode
(``num_workers=0``), where Ray keeps checkpoints only in memory. Pure pyarrow (no Ray):
the jobs check storage and sweep plans are read before Ray starts.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from refiner.cli import BadInputError

CHECKPOINT_META = "meta.json"  # {"step", "epoch", "metrics"}: written last into every checkpoint
DEFAULT_STORAGE = "outputs/ray_results"


class StorageError(BadInputError, RuntimeError):
    """The storage path cannot be used; the message names it."""


def resolve_storage(storage: str | None) -> str:
    """Local paths become absolute (Ray Train needs that); URIs (s3://...) pass through."""
    storage = storage or DEFAULT_STORAGE
    if "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def filesystem(uri_or_path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri_or_path:
        return pafs.FileSystem.from_uri(uri_or_path)
    return pafs.LocalFileSystem(), uri_or_path


def check_writable(storage: str) -> None:
    """Fail before any compute when checkpoints could not be written to ``storage``."""
    if "://" in storage:
        try:
            fs, path = filesystem(storage)
            fs.create_dir(path, recursive=True)
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"checkpoint storage {storage} is not usable: {err}") from None
        return
    try:
        Path(storage).mkdir(parents=True, exist_ok=True)
        probe = Path(storage) / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as err:
        raise StorageError(
            f"checkpoint storage {storage} is not writable: {err.strerror or err}"
        ) from None


def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """(step, directory) of every complete checkpoint of the run, oldest first.

    A directory without a readable ``meta.json`` is an incomplete upload and is skipped,
    as Ray Train would not resume from it either.
    """
    try:
        fs, path = filesystem(run_dir)
        entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (OSError, pa.ArrowException):
        return []
    found = []
    for entry in entries:
        if entry.type != pafs.FileType.Directory or not entry.base_name.startswith("checkpoint_"):
            continue
        try:
            found.append((checkpoint_step(fs, entry.path), _join(run_dir, entry.base_name)))
        except (OSError, ValueError, KeyError, pa.ArrowException):
            continue
    return sorted(found)


def checkpoint_step(fs: pafs.FileSystem, directory: str) -> int:
    """The update a checkpoint directory was written at, from its ``meta.json``."""
    with fs.open_input_stream(f"{directory}/{CHECKPOINT_META}") as f:
        return int(json.loads(f.read())["step"])


def latest_checkpoint_step(run_dir: str) -> int:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1][0] if checkpoints else 0


def persist_checkpoint(local_dir: str, run_dir: str, step: int, keep: int) -> str:
    """Copy a checkpoint directory into the run's storage; keep the newest ``keep``.

    The copy lands under a temporary name and is renamed, so a crash mid-copy leaves no
    directory that looks complete.
    """
    fs, root = filesystem(run_dir)
    name = f"checkpoint_{step:09d}"
    final, partial = f"{root}/{name}", f"{root}/.{name}.partial-{os.getpid()}"
    try:
        fs.create_dir(partial, recursive=True)
        pafs.copy_files(local_dir, partial, pafs.LocalFileSystem(), fs)
    except (OSError, pa.ArrowException) as err:  # e.g. disk full: drop the partial copy
        try:
            fs.delete_dir(partial)
        except (OSError, pa.ArrowException):
            pass
        raise StorageError(f"could not write checkpoint {name} to {run_dir}: {err}") from err
    if fs.get_file_info(final).type != pafs.FileType.NotFound:
        fs.delete_dir(final)
    fs.move(partial, final)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        fs.delete_dir(filesystem(old)[1])
    return _join(run_dir, name)


def _join(run_dir: str, name: str) -> str:
    return f"{run_dir.rstrip('/')}/{name}"
