"""Rank 0's tracker during training: survives a tracking-server outage and a replay.

Two faults meet here, both on the way from the training loop to the MLflow run:

- **The server goes down mid-run.** Metric points and tags wait in a bounded buffer;
  while the server is away (a 2 s ``/health`` probe says so) the loop is not held up,
  and the buffer is retried with exponential backoff (1 s, 2 s, ... at most 30 s) at the
  next reports. Artifacts logged meanwhile (calibration tables, plots: files in temporary
  folders) wait as copies. ``flush`` at the end of training retries for
  ``training.tracking_retry_s``; what still could not be sent (or was pushed out of a
  full buffer) is counted and named in its return value, which the run's summary and the
  tag ``refiner.tracking.lost`` carry. Nothing is dropped silently.
- **A restarted worker group replays updates.** Ray Train resumes from the last
  checkpoint, so the updates between it and the failure are trained and reported again.
  Before its first write, this tracker reads the last step the run's history holds for
  each metric key and never sends a point at or below it: what the killed attempt
  recorded stays, the replay adds nothing twice. (A point that was buffered and lost
  with the killed process is not in the history, so the replay records it.)

The marks are re-read after any failed write: a batch whose answer was lost may have
been stored all the same.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunTag
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from refiner.tracking import MlflowTracker, _scalar

BUFFER_POINTS = 200_000  # about 40 MB of Metric objects: days of reports at any rate
_MAX_DELAY_S = 30.0
_PROBE_TIMEOUT_S = 2.0


class BufferedTracker(MlflowTracker):
    """An ``MlflowTracker`` whose metrics and tags are buffered and deduplicated by step."""

    def __init__(self, tracking_uri: str, run_id: str, capacity: int = BUFFER_POINTS) -> None:
        super().__init__(tracking_uri, run_id)
        self._points: deque[Metric] = deque()
        self._capacity = capacity
        self._tags: dict[str, str] = {}
        self._artifacts: list[tuple[str, str | None]] = []  # copies made during an outage
        self._holding: str | None = None  # the folder holding those copies
        self._marks: dict[str, int] | None = None  # key -> last step in the run's history
        self._retry_at = 0.0
        self._delay = 1.0
        self._down_since: float | None = None
        self.overflowed: Counter[str] = Counter()
        self.replayed = 0  # points not sent: the history already had that key at that step
        self.delivered_late = 0
        self.outage_s = 0.0

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            number = _scalar(value)
            if number is None:
                continue
            if len(self._points) >= self._capacity:
                self.overflowed[self._points.popleft().key] += 1
            self._points.append(Metric(key, number, now, int(step)))
        self._try_send()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._tags.update({k: str(v) for k, v in tags.items()})
        self._try_send()

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        """Sent at once when the server is there; during an outage a copy waits with
        the metrics (the loop's files live in temporary folders)."""
        if self._down_since is None and self._reachable():
            try:
                super().log_artifact(local_path, artifact_path)
                return
            except Exception as err:  # noqa: BLE001  (any failure of the server)
                self._failed(err)
        if self._holding is None:
            self._holding = tempfile.mkdtemp(prefix="refiner-tracking-")
        copy = Path(self._holding) / f"{len(self._artifacts)}" / Path(local_path).name
        copy.parent.mkdir()
        if os.path.isdir(local_path):
            shutil.copytree(local_path, copy)
        else:
            shutil.copy2(local_path, copy)
        self._artifacts.append((str(copy), artifact_path))

    def flush(self, timeout_s: float) -> dict[str, Any]:
        """Retry what is buffered for up to ``timeout_s``; what was not recorded, named."""
        deadline = time.monotonic() + timeout_s
        while self._pending() and time.monotonic() < deadline:
            if not self._try_send():
                time.sleep(max(0.0, min(self._retry_at, deadline) - time.monotonic()))
        lost = Counter(p.key for p in self._points) + self.overflowed
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

    # -- sending ---------------------------------------------------------------------

    def _pending(self) -> bool:
        return bool(self._points or self._tags or self._artifacts)

    def _try_send(self) -> bool:
        """One attempt, unless backing off; True when nothing is left to send."""
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
            if self._tags:
                tags = dict(self._tags)
                self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
                for key in tags:
                    self._tags.pop(key, None)
            while self._artifacts:
                path, where = self._artifacts[0]
                super().log_artifact(path, where)
                self._artifacts.pop(0)
            if self._holding is not None:
                shutil.rmtree(self._holding, ignore_errors=True)
                self._holding = None
        except Exception as err:  # noqa: BLE001  (any failure of the server: keep and retry)
            self._failed(err)
            return False
        self._recovered()
        return True

    def _send_points(self) -> None:
        assert self._marks is not None
        while self._points:
            batch: list[Metric] = []
            while self._points and len(batch) < MAX_METRICS_PER_BATCH:
                point = self._points.popleft()
                if point.step <= self._marks.get(point.key, -1):
                    self.replayed += 1
                    continue
                batch.append(point)
            if not batch:
                continue
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception:
                self._points.extendleft(reversed(batch))  # in order, at the front again
                raise
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
        """A quick look before a write: MLflow's own HTTP retries would hold the training
        loop for minutes. Non-HTTP stores (SQLite) are always tried."""
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
