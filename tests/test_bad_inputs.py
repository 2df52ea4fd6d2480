"""Bad input through the training job: configs, task files, tracking, storage, checkpoints.

Every case must stop with ``error: ...`` naming the file and key/row, exit status 2,
before Ray starts and before any MLflow run (or store) exists. Most cases call the job's
``main()`` in-process (the same code path, without ~5 s of imports per case); a few run
``jobs/train.py`` as a subprocess to pin the real exit status and timing.
"""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import socket
import subprocess
import sys
import time
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import ModuleType

import pytest
import ray
import torch
from refiner_fixtures import tiny_orchestrator

from refiner.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TRAIN_JOB = ROOT / "jobs" / "train.py"
BAD_CONFIGS = ROOT / "tests" / "data" / "bad_configs"
BAD_TASKS = ROOT / "tests" / "data" / "bad_tasks"
CONFIG_EXPECTED = json.loads((BAD_CONFIGS / "expected.json").read_text())
TASK_EXPECTED = json.loads((BAD_TASKS / "expected.json").read_text())


def _load_train_job() -> ModuleType:
    spec = importlib.util.spec_from_file_location("refiner_train_job", TRAIN_JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = _load_train_job()


def run_main(*args: str) -> tuple[int, str]:
    """jobs/train.py's main() in-process: (exit status, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        status = TRAIN.main(list(args))
    return status, err.getvalue()


def assert_rejected_before_compute(status: int, stderr: str, db: Path) -> None:
    assert status == 2, stderr
    assert stderr.startswith("error: ") and "Traceback" not in stderr, stderr
    assert not db.exists(), "an MLflow store was created for a rejected run"
    assert not ray.is_initialized(), "Ray was started for a rejected run"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


# -- invalid configs (tests/data/bad_configs) -------------------------------------------


def test_config_corpus_lists_every_file():
    assert {p.name for p in BAD_CONFIGS.glob("*.yaml")} == set(CONFIG_EXPECTED)


@pytest.mark.parametrize("name", sorted(CONFIG_EXPECTED))
def test_bad_config_is_rejected_naming_file_and_key(tmp_path, name):
    path = BAD_CONFIGS / name
    db = tmp_path / "mlflow.db"
    status, stderr = run_main(
        "--config", str(path), "--tracking-uri", f"sqlite:///{db}", "--storage", str(tmp_path)
    )
    assert_rejected_before_compute(status, stderr, db)
    expected = CONFIG_EXPECTED[name]
    if expected.get("names_file", True):
        assert str(path) in stderr
    if expected["key"]:
        assert f"{expected['key']}:" in stderr
    for fragment in expected["contains"]:
        assert fragment in stderr


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("training.lr=fast", "training.lr"),
        ("training.num_workers=-1", "num_workers: must be >= 0"),
        ("orchestration.max_steps_trian=4", "did you mean 'max_steps_train'"),
        ("model", "expected key.path=value"),
    ],
)
def test_bad_override_is_rejected_naming_the_key(tmp_path, override, fragment):
    db = tmp_path / "mlflow.db"
    status, stderr = run_main("--set", override, "--tracking-uri", f"sqlite:///{db}")
    assert_rejected_before_compute(status, stderr, db)
    assert fragment in stderr


# -- malformed task files (the existing tests/data/bad_tasks corpus) --------------------


@pytest.mark.parametrize("name", sorted(TASK_EXPECTED))
def test_bad_task_file_stops_the_job(tmp_path, name):
    path = BAD_TASKS / name
    db = tmp_path / "mlflow.db"
    status, stderr = run_main("--task", str(path), "--tracking-uri", f"sqlite:///{db}")
    assert_rejected_before_compute(status, stderr, db)
    expected = TASK_EXPECTED[name]
    assert str(path) in stderr
    if expected.get("row") is not None:
        assert f"row {expected['row']}" in stderr
    if expected.get("field") is not None:
        assert repr(expected["field"]) in stderr


# -- tracking store and checkpoint storage unusable at start ----------------------------


def test_unreachable_tracking_server_fails_fast_as_a_subprocess(tmp_path):
    port = closed_port()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(TRAIN_JOB), "--tracking-uri", f"http://127.0.0.1:{port}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr
    assert f"MLflow tracking server http://127.0.0.1:{port} is unreachable" in proc.stderr
    assert "[refiner]" not in proc.stdout  # nothing started: no Ray, no run
    assert list(tmp_path.iterdir()) == []  # no outputs/, no mlflow.db
    assert elapsed < 60


def test_tracking_database_in_a_missing_folder(tmp_path):
    db = tmp_path / "nowhere" / "mlflow.db"
    status, stderr = run_main("--tracking-uri", f"sqlite:///{db}")
    assert_rejected_before_compute(status, stderr, db)
    assert f"{db.parent} does not exist" in stderr


@pytest.mark.parametrize("kind", ["file_in_the_way", "under_a_device", "under_proc"])
def test_unwritable_storage_is_rejected_before_compute(tmp_path, kind):
    if kind == "file_in_the_way":
        blocker = tmp_path / "checkpoints"
        blocker.write_text("a file where the checkpoint folder should be")
        storage = blocker / "runs"
    elif kind == "under_a_device":
        storage = Path("/dev/null/checkpoints")
    else:  # root may write anywhere on disk, but not into /proc
        storage = Path("/proc/refiner-checkpoints")
    db = tmp_path / "mlflow.db"
    status, stderr = run_main(
        "--tracking-uri", f"sqlite:///{db}", "--storage", str(storage), "--steps", "5"
    )
    assert_rejected_before_compute(status, stderr, db)
    assert f"checkpoint storage {storage} is not writable" in stderr


# -- truncated and tampered checkpoints -------------------------------------------------


class _WritesMarker:
    """Unpickling this would create a file: it stands in for arbitrary code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _checkpoint(tmp_path: Path) -> tuple[Path, object]:
    orchestrator = tiny_orchestrator()
    optimizer = torch.optim.AdamW(orchestrator.model.parameters())
    return save_checkpoint(tmp_path / "ckpt.pt", orchestrator, optimizer), orchestrator


def _swap_member(path: Path, suffix: str, data: bytes) -> None:
    """Rewrite one member of the checkpoint's zip archive (an attacker editing it in place)."""
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, content in members:
            target.writestr(info, data if info.filename.endswith(suffix) else content)


TAMPERINGS = {
    "cut_at_10_percent": lambda p, m: p.write_bytes(p.read_bytes()[: p.stat().st_size // 10]),
    "cut_before_the_last_byte": lambda p, m: p.write_bytes(p.read_bytes()[:-1]),
    "bytes_flipped_in_a_tensor": lambda p, m: _flip_bytes(p),
    "random_bytes": lambda p, m: p.write_bytes(bytes(range(256)) * 64),
    "pickle_swapped_into_the_archive": lambda p, m: _swap_member(
        p,
        "data.pkl",
        pickle.dumps(
            {"format": "refiner-checkpoint", "format_version": 1, "x": _WritesMarker(str(m))},
            protocol=2,
        ),
    ),
    "bare_pickle_with_code": lambda p, m: p.write_bytes(
        pickle.dumps(_WritesMarker(str(m)), protocol=2)
    ),
}


def _flip_bytes(path: Path) -> None:
    """Corrupt the stored bytes of the largest tensor without touching the zip's layout."""
    with zipfile.ZipFile(path) as archive:
        largest = max(archive.infolist(), key=lambda i: i.file_size)
        offset = largest.header_offset + 30 + len(largest.filename) + len(largest.extra)
    data = bytearray(path.read_bytes())
    for i in range(offset + 16, offset + 80):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_tampered_checkpoint_is_refused_naming_the_file(tmp_path, tampering):
    path, orchestrator = _checkpoint(tmp_path)
    marker = tmp_path / "code-ran"
    TAMPERINGS[tampering](path, marker)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, orchestrator)
    assert str(path) in str(caught.value)
    assert not marker.exists(), "loading a checkpoint ran code from it"
