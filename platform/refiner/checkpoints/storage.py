"""Checkpoint storage of a run: a local folder or any pyarrow filesystem URI (s3://...).

Ray Train owns checkpoint directories for worker groups; these helpers read them (to
find where a resumed run's data stream starts) and stand in for Ray Train in local mode
(``num_workers=0``), where Ray keeps checkpoints only in memory. Pure pyarrow (no Ray):
the jobs check storage and sweep plans are read before Ray starts.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from refiner.runs.cli import BadInputError

# {"step", "epoch", "metrics", "files": {name: bytes}}: uploaded last into every checkpoint;
# a folder is complete when it holds meta.json and every file it lists, at that size.
CHECKPOINT_META = "meta.json"
DEFAULT_STORAGE = "outputs/ray_results"


class StorageError(BadInputError, RuntimeError):
    """The storage path cannot be used; the message names it."""


class StorageUnreachable(RuntimeError):
    """A checkpoint write kept failing for ``storage_retry_s``; the message names the store."""


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

    A directory without a readable ``meta.json``, or missing a file that it lists (or
    holding it at another size), is an incomplete upload and is skipped, as Ray Train
    would not resume from it either.
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
    """The update a complete checkpoint directory was written at, from its ``meta.json``.

    Raises ``ValueError`` when a file that meta.json lists is missing or of another size.
    """
    with fs.open_input_stream(f"{directory}/{CHECKPOINT_META}") as f:
        meta = json.loads(f.read())
    listed = meta.get("files", {})  # checkpoints written before sizes were recorded: {}
    if listed:
        infos = fs.get_file_info([f"{directory}/{name}" for name in listed])
        for (name, size), info in zip(listed.items(), infos, strict=True):
            if info.type != pafs.FileType.File or info.size != size:
                raise ValueError(f"{directory}: {name} is missing or incomplete")
    return int(meta["step"])


def write_checkpoint_meta(directory: str | Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` into a finished local checkpoint folder, listing the size of
    every other file in it (what ``checkpoint_step`` checks). Call it last."""
    root = Path(directory)
    files = {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != CHECKPOINT_META
    }
    (root / CHECKPOINT_META).write_text(json.dumps({**meta, "files": files}, indent=1))


def upload_checkpoint(
    local_dir: str,
    fs: pafs.FileSystem,
    destination: str,
    retry_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Copy a local checkpoint folder to ``destination`` on ``fs``, ``meta.json`` last.

    A failed attempt (object store unreachable, connection reset) is retried from the
    start with exponential backoff (1 s, 2 s, 4 s, ... at most 30 s between tries) for
    ``retry_s`` seconds; then ``StorageUnreachable`` names the destination and the last
    error. An interrupted copy has no ``meta.json`` (or one whose sizes do not match),
    so ``list_checkpoints`` never takes it for a checkpoint.
    """
    root = Path(local_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != CHECKPOINT_META)
    files.append(root / CHECKPOINT_META)
    started, delay, attempt = time.monotonic(), 1.0, 0
    while True:
        attempt += 1
        try:
            for path in files:
                target = f"{destination}/{path.relative_to(root).as_posix()}"
                fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                with fs.open_output_stream(target) as out:
                    out.write(path.read_bytes())
            return
        except (OSError, pa.ArrowException) as err:
            waited = time.monotonic() - started
            if waited + delay > retry_s:
                raise StorageUnreachable(
                    f"checkpoint storage unreachable: could not write {destination} "
                    f"({attempt} attempts over {waited:.0f} s, training.storage_retry_s="
                    f"{retry_s:g}): {_first_line(err)}"
                ) from err
            sys.stderr.write(
                f"[refiner] checkpoint write to {destination} failed ({_first_line(err)}); "
                f"retrying in {delay:.0f} s\n"
            )
            sys.stderr.flush()
            sleep(delay)
            delay = min(delay * 2, 30.0)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def latest_checkpoint_step(run_dir: str) -> int:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1][0] if checkpoints else 0


def persist_checkpoint(
    local_dir: str, run_dir: str, step: int, keep: int, retry_s: float = 0.0
) -> str:
    """Copy a checkpoint directory into the run's storage; keep the newest ``keep``.

    On a local disk the copy lands under a temporary name and is renamed, so a crash
    mid-copy leaves no directory that looks complete. Object stores cannot rename a
    folder: there the upload goes straight to its place, ``meta.json`` last (see
    ``upload_checkpoint``, which also retries for ``retry_s``).
    """
    fs, root = filesystem(run_dir)
    name = f"checkpoint_{step:09d}"
    final, partial = f"{root}/{name}", f"{root}/.{name}.partial-{os.getpid()}"
    local = isinstance(fs, pafs.LocalFileSystem)
    target = partial if local else final
    try:
        fs.create_dir(target, recursive=True)
        upload_checkpoint(local_dir, fs, target, retry_s)
    except (OSError, pa.ArrowException, StorageUnreachable) as err:  # e.g. disk full
        try:
            fs.delete_dir(target)
        except (OSError, pa.ArrowException):
            pass
        raise StorageError(f"could not write checkpoint {name} to {run_dir}: {err}") from err
    if local:
        if fs.get_file_info(final).type != pafs.FileType.NotFound:
            fs.delete_dir(final)
        fs.move(partial, final)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        fs.delete_dir(filesystem(old)[1])
    return _join(run_dir, name)


def _join(run_dir: str, name: str) -> str:
    return f"{run_dir.rstrip('/')}/{name}"
