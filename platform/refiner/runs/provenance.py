"""Where a run came from: the code version, the user, the command line, the tasks read.

Pure Python (no Ray, no MLflow): the tracking layer turns these into run tags and an
MLflow dataset input. Everything here is best effort and never raises: a value that
cannot be known is ``"unknown"``.

The code version comes from git, asked about the folder that holds this package (not
the working directory). Where there is no git (not installed, or a copy without
``.git``: ``ray job submit`` uploads the working dir without it, and ``py_modules``
ships the package alone), ``REFINER_GIT_COMMIT`` (and ``REFINER_GIT_DIRTY``) set by
whoever submits are used instead, e.g.::

    ray job submit --runtime-env-json \\
      '{"env_vars": {"REFINER_GIT_COMMIT": "'"$(git rev-parse HEAD)"'"}}' ...

Nothing can run on the submitting machine before Ray starts the job, so without that
variable a submitted run records ``unknown``.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shlex
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

UNKNOWN = "unknown"
COMMIT_ENV = "REFINER_GIT_COMMIT"
DIRTY_ENV = "REFINER_GIT_DIRTY"
_PACKAGE_DIR = Path(__file__).resolve().parent
_MAX_COMMAND = 4000  # MLflow tag values hold up to 8000 characters


def git_state(folder: str | os.PathLike | None = None) -> tuple[str, str]:
    """``(commit, dirty)`` of the checkout holding ``folder``; dirty is true/false/unknown.

    Dirty means tracked files differ from the commit (untracked files are ignored: a
    stray output file is not a code change).
    """
    folder = Path(folder or _PACKAGE_DIR)
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return os.environ.get(COMMIT_ENV) or UNKNOWN, os.environ.get(DIRTY_ENV) or UNKNOWN
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    dirty = UNKNOWN if status is None else str(bool(status)).lower()
    return commit, dirty


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git binary, a hung filesystem
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no passwd entry in some containers
        return UNKNOWN


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, as a shell would take it back."""
    line = shlex.join(["python", *(sys.argv if argv is None else argv)])
    return line if len(line) <= _MAX_COMMAND else line[: _MAX_COMMAND - 3] + "..."


def run_provenance(argv: list[str] | None = None) -> dict[str, str]:
    """The tags every training run and sweep run carries (computed by the driver)."""
    commit, dirty = git_state()
    return {
        "refiner.git_commit": commit,
        "refiner.git_dirty": dirty,
        "refiner.user": current_user(),
        "refiner.command": command_line(argv),
        "refiner.host": socket.gethostname() or UNKNOWN,
    }


def table_digest(table: pa.Table) -> str:
    """A fingerprint of a table's schema and every value (16 hex digits of SHA-256)."""
    digest = hashlib.sha256(table.schema.serialize().to_pybytes())
    for batch in table.combine_chunks().to_batches():
        digest.update(batch.serialize())
    return digest.hexdigest()[:16]


@dataclass
class TaskDataset:
    """What a run read: the dataset input of its tracking run."""

    name: str
    digest: str
    source: str  # an absolute file path or URI, or "builtin:<source>"
    num_rows: int
    splits: dict[str, int] = field(default_factory=dict)
    task_types: dict[str, int] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # a built-in source's settings

    @property
    def is_file(self) -> bool:
        return not self.source.startswith("builtin:")


def describe_task_dataset(
    source: str, tasks: pa.Table, options: dict[str, object] | None = None
) -> TaskDataset:
    """The dataset record of ``tasks`` as loaded from ``source`` (a file or a built-in)."""
    from refiner.tasks.sources import SOURCES  # the registry is core, but not light

    builtin = source in SOURCES
    if builtin:
        location, name = f"builtin:{source}", source
    elif "://" in source:
        location, name = source, Path(source).name
    else:
        location, name = str(Path(source).expanduser().resolve()), Path(source).name
    return TaskDataset(
        name=name,
        digest=table_digest(tasks),
        source=location,
        num_rows=tasks.num_rows,
        splits=_counts(tasks, "split"),
        task_types=_counts(tasks, "task_type"),
        options={k: str(v) for k, v in (options or {}).items() if v is not None} if builtin else {},
    )


def _counts(tasks: pa.Table, column: str) -> dict[str, int]:
    if column not in tasks.column_names:
        return {}
    return dict(sorted(Counter(tasks.column(column).to_pylist()).items()))
