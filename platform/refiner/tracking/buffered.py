"""Rank 0's tracker during training: survives a tracking-server outage and a replay.

Two faults meet here, both on the way from the training loop to the MLflow run:

- **The server goes down mid-run.** The training loop only appends to a bounded buffer;
  a sender thread writes it to MLflow. The loop never waits on the network: a write
  caught by the outage sits in MLflow's own HTTP retries (minutes) on the sender, not on
  the loop (measured: a loop that wrote itself stalled at its first report after the
  server went away). While the server is away (a 2 s ``/health`` probe says so) the
  sender retries with exponential backoff (1 s, 2 s, ... at most 30 s). Artifacts
  (calibration tables, plots: files in temporary folders) are queued as copies.
  ``flush`` at the end of training waits for the sender for
  ``training.tracking_retry_s``; what still could not be sent (or was pushed out of a
  full buffer) is counted and named in its return value, which the run's summary and the
  tag ``refiner.tracking.lost`` carry. Nothing is dropped silently.
- **A restarted worker group replays updates.** Ray Train resumes from the last
  checkpoint, so the updates between it and the failure are trained and reported again.
  Before its first write, this tracker reads the last step the run's history holds for
  each metric key and never sends a point at or below it: what the killed attempt
  recorded stays, the replay adds nothing twice. (A point that was buffered and lost
  with the killed process is not in the history, so the replay records it.) The replay
  starts after the checkpoint, so the checkpoint's own report is never replayed: before
  a checkpoint the loop ``settle``s, waiting a few seconds for the sender (not at all
  while the server is away).

The marks are re-read after any failed write: a batch whose answer was lost may have
been stored all the same.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunTag
from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
)
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from refiner.tracking import MlflowTracker, _scalar

BUFFER_POINTS = 200_000  # about 40 MB of Metric objects: days of reports at any rate
_MAX_DELAY_S = 30.0
_PROBE_TIMEOUT_S = 2.0
# While training, one MLflow call gives up within about a minute (one retry, 30 s per
# attempt) instead of MLflow's default of minutes: this tracker keeps and retries itself.
_FAIL_FAST_HTTP = {
    MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "1",
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name: "1",
    MLFLOW_HTTP_REQUEST_TIMEOUT.name: "30",
}


@contextmanager
def fail_fast_http() -> Iterator[None]:
    """MLflow's HTTP calls in this process fail fast while the block runs (its settings
    are read from the environment at each call). For rank 0's training process, whose
    MLflow calls are this tracker's and the system-metrics monitor's: neither must hold
    the training loop, or the end of training, in MLflow's own retries."""
    saved = {name: os.environ.get(name) for name in _FAIL_FAST_HTTP}
    os.environ.update(_FAIL_FAST_HTTP)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class BufferedTracker(MlflowTracker):
    """An ``MlflowTracker`` whose metrics, tags and artifacts are queued, sent by a thread
    of their own, and deduplicated by step."""

    def __init__(self, tracking_uri: str, run_id: str, capacity: int = BUFFER_POINTS) -> None:
        super().__init__(tracking_uri, run_id)
        self._capacity = capacity
        # Shared with the sender thread, under _lock:
        self._lock = threading.Lock()
        self._points: deque[Metric] = deque()
        self._tags: dict[str, str] = {}
        self._artifacts: list[tuple[str, str | None]] = []  # copies waiting to be sent
        self._in_flight: list[Metric] = []  # taken from _points, not yet confirmed
        self.overflowed: Counter[str] = Counter()
        self._holding: str | None = None  # the folder holding those copies
        self._copies = 0
        # The sender thread's own:
        self._marks: dict[str, int] | None = None  # key -> last step in the run's history
        self._retry_at = 0.0
        self._delay = 1.0
        self._down_since: float | None = None
        self.replayed = 0  # points not sent: the history already had that key at that step
        self.delivered_late = 0
        self.outage_s = 0.0
        self._wake = threading.Event()
        self._idle = threading.Event()  # set while nothing is pending or in flight
        self._idle.set()
        self._closed = False  # set by flush: the sender stops until the next log call
        self._sender: threading.Thread | None = None

    # -- the training loop's side: append and return ------------------------------------

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        with self._lock:
            for key, value in metrics.items():
                number = _scalar(value)
                if number is None:
                    continue
                if len(self._points) >= self._capacity:
                    self.overflowed[self._points.popleft().key] += 1
                self._points.append(Metric(key, number, now, int(step)))
        self._kick()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        with self._lock:
            self._tags.update({k: str(v) for k, v in tags.items()})
        self._kick()

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        """A copy is queued (the loop's files live in temporary folders)."""
        with self._lock:
            if self._holding is None:
                self._holding = tempfile.mkdtemp(prefix="refiner-tracking-")
            self._copies += 1
            copy = Path(self._holding) / f"{self._copies}" / Path(local_path).name
        copy.parent.mkdir(parents=True)
        if os.path.isdir(local_path):
            shutil.copytree(local_path, copy)
        else:
            shutil.copy2(local_path, copy)
        with self._lock:
            self._artifacts.append((str(copy), artifact_path))
        self._kick()

    @property
    def pending_points(self) -> int:
        """Metric points not yet confirmed recorded (buffered or being sent)."""
        with self._lock:
            return len(self._points) + len(self._in_flight)

    def flush(self, timeout_s: float) -> dict[str, Any]:
        """Wait up to ``timeout_s`` for the sender, then stop it (until a next log call):
        what was not recorded is named. A write still stuck in MLflow's retries at the
        deadline counts as not recorded."""
        self._kick()
        self._idle.wait(timeout_s)
        with self._lock:
            self._closed = True
            self._wake.set()
            if not self._pending() and self._holding is not None:
                shutil.rmtree(self._holding, ignore_errors=True)
                self._holding = None
            lost = Counter(p.key for p in [*self._points, *self._in_flight]) + self.overflowed
            return {
                "lost_points": sum(lost.values()),
                "lost_keys": sorted(lost),
                "lost_tags": sorted(self._tags),
                "lost_artifacts": [
                    f"{where or '.'}/{Path(path).name}" for path, where in self._artifacts
                ],
                "delivered_late": self.delivered_late,
                "outage_s": round(self.outage_s + self._outage_so_far(), 1),
                "replayed_points_not_logged": self.replayed,
            }

    def settle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the sender to record what is pending, unless the
        server is away. The loop calls it before a checkpoint, so that a checkpoint's own
        report is in the history before the checkpoint exists: a process killed right
        after it is resumed past that step and would never report it again."""
        if self._down_since is not None:
            return False
        self._kick()
        return self._idle.wait(timeout_s)

    def _kick(self) -> None:
        with self._lock:
            self._closed = False
            self._idle.clear()
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(
                    target=self._send_forever, name="refiner-mlflow-sender", daemon=True
                )
                self._sender.start()
        self._wake.set()

    # -- the sender thread -----------------------------------------------------------

    def _send_forever(self) -> None:
        """Send whatever is pending; back off while the server is away; sleep when idle.
        A daemon: a process that ends does not wait for it (flush is the wait)."""
        while not self._closed:
            self._wake.clear()
            if self._try_send():
                with self._lock:
                    if not self._pending():
                        self._idle.set()
                self._wake.wait()
            else:
                self._wake.wait(max(0.0, self._retry_at - time.monotonic()))

    def _pending(self) -> bool:
        return bool(self._points or self._tags or self._artifacts or self._in_flight)

    def _try_send(self) -> bool:
        """One attempt, unless backing off; True when nothing is left to send."""
        with self._lock:
            if not self._pending():
                return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            if not self._reachable():
                raise ConnectionError(f"{self.tracking_uri}/health does not answer")
            if self._marks is None:
                self._marks = self._history_marks()
            self._send_points()
            with self._lock:
                tags = dict(self._tags)
            if tags:
                self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
                with self._lock:
                    for key, value in tags.items():
                        if self._tags.get(key) == value:  # not changed meanwhile
                            del self._tags[key]
            while True:
                with self._lock:
                    if not self._artifacts:
                        break
                    path, where = self._artifacts[0]
                super().log_artifact(path, where)
                with self._lock:
                    self._artifacts.pop(0)
                shutil.rmtree(Path(path).parent, ignore_errors=True)
        except Exception as err:  # noqa: BLE001  (any failure of the server: keep and retry)
            self._failed(err)
            return False
        self._recovered()
        return True

    def _send_points(self) -> None:
        assert self._marks is not None
        while True:
            with self._lock:
                batch: list[Metric] = []
                while self._points and len(batch) < MAX_METRICS_PER_BATCH:
                    point = self._points.popleft()
                    if point.step <= self._marks.get(point.key, -1):
                        self.replayed += 1
                        continue
                    batch.append(point)
                if not batch and not self._points:
                    return
                self._in_flight = batch
            if not batch:
                continue
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception:
                with self._lock:  # in order, at the front again
                    self._points.extendleft(reversed(batch))
                    self._in_flight = []
                raise
            with self._lock:
                self._in_flight = []
            for point in batch:
                self._marks[point.key] = max(point.step, self._marks.get(point.key, -1))
            if self._down_since is not None:
                self.delivered_late += len(batch)

    def _history_marks(self) -> dict[str, int]:
        """The last step the run's history holds for each metric key (public API only:
        the run's keys, then each key's history)."""
        keys = self.client.get_run(self.run_id).data.metrics
        return {
            key: max(m.step for m in self.client.get_metric_history(self.run_id, key))
            for key in keys
        }

    def _reachable(self) -> bool:
        """A quick look before a write: a write to a server that is away sits in MLflow's
        own HTTP retries for minutes. Non-HTTP stores (SQLite) are always tried."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return True
        try:
            url = self.tracking_uri.rstrip("/") + "/health"
            with urllib.request.urlopen(url, timeout=_PROBE_TIMEOUT_S) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _failed(self, err: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            _say(
                f"[refiner] MLflow {self.tracking_uri} unreachable ({_first_line(err)}); "
                "training goes on, metrics are kept and retried"
            )
        self._marks = None  # a lost answer may hide a stored batch: read the marks again
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, _MAX_DELAY_S)

    def _recovered(self) -> None:
        self._delay, self._retry_at = 1.0, 0.0
        if self._down_since is not None:
            outage = self._outage_so_far()
            self.outage_s += outage
            self._down_since = None
            _say(
                f"[refiner] MLflow reachable again after {outage:.0f} s; "
                f"{self.delivered_late} buffered metric points recorded"
            )

    def _outage_so_far(self) -> float:
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
