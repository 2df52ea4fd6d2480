"""Sweep-driver callbacks: a progress line per trial result, and closing trial runs.

A trial that ASHA stops is ended by Tune without running the rest of its driver, so
its child run would stay RUNNING; the driver closes it here (FINISHED, tagged
``refiner.stopped_early``), and an errored trial's run as FAILED.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ray.tune import Callback

from refiner.sweep.outcome import describe_params
from refiner.sweep.plan import trial_run_name

# (run name, status, tags) -> None; e.g. refiner.tracking.sweeps.ChildRuns.close
RunCloser = Callable[[str, str, Mapping[str, str]], None]


class SweepProgress(Callback):
    def __init__(
        self,
        sweep_name: str,
        metric: str,
        steps: int,
        swept_keys: Sequence[str],
        close_run: RunCloser | None = None,
    ) -> None:
        self.sweep_name = sweep_name
        self.metric = metric
        self.steps = steps
        self.swept_keys = list(swept_keys)
        self.close_run = close_run

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        value = result.get(self.metric)
        shown = f"{value:.3f}" if isinstance(value, (int, float)) else "-"
        metric = f"{self.metric} {shown}  " if self.metric != "loss" else ""
        print(
            f"[sweep] {trial.trial_id}  step {int(result.get('step', 0)):>5}/{self.steps}  "
            f"loss {result.get('loss', float('nan')):.4f}  {metric}"
            # The values the report was made with: a PBT exploit decided on this report
            # has already changed the trial's config.
            f"{describe_params(result.get('config') or trial.config, self.swept_keys)}",
            flush=True,
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        step = int((trial.last_result or {}).get("step", 0))
        stopped = step < self.steps
        if stopped:
            print(f"[sweep] {trial.trial_id}  stopped by the scheduler at step {step}", flush=True)
        self._close(trial, "FINISHED", {"refiner.stopped_early": str(stopped).lower()})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(
            f"[sweep] {trial.trial_id}  FAILED (resume with --resume {self.sweep_name})", flush=True
        )
        self._close(trial, "FAILED", {})

    def _close(self, trial: Any, status: str, tags: Mapping[str, str]) -> None:
        if self.close_run is not None:
            self.close_run(trial_run_name(self.sweep_name, trial.trial_id), status, tags)
