"""Tune's PBT and PB2 with three changes a refiner sweep needs.

- A bottom trial always finds its top peer's checkpoint. Asynchronous PBT scores a trial
  only at its own perturbations, and forgets a top trial's checkpoint when, at its last
  one, it had no scored peer to be compared with. Trials start seconds apart (each brings
  up its own Train workers), so in a small population the first can run a whole interval
  ahead: when the second reaches its perturbation in the bottom half, Tune finds nothing
  to clone and skips the exploit ("[pbt]: no checkpoint for trial ..."). Every trial
  reports a checkpoint at each perturbation (the interval is a multiple of
  checkpoint_every), so the peer's latest reported checkpoint is taken: the state its
  score was measured on, or newer.
- No exploit, and no pause, at a trial's last update: its run has nothing left to train,
  so taking over a peer's final checkpoint would only make it a copy of that peer (and
  its MLflow run would end on the peer's numbers).
- No pause for fair share when the whole population runs at once. Tune pauses a trial
  at its perturbation whenever another waits (so that a population larger than the
  cluster takes turns); but the trial that waits is usually one restarting after its
  exploit, with its own resources free for it, and the pause costs the paused trial a
  new Train run (workers, data stream) and a generation in its MLflow run for nothing.
- Every decision on a trial's report goes to the sweep's verdicts actor, where the
  trial's Train run waits for it at each checkpoint (``pbt_verdicts``).
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.schedulers.pb2 import PB2

from refiner.distributed.pbt_verdicts import open_verdicts


class _RefinerPopulation:
    verdicts_for: str | None = None  # the sweep's name; None: nobody waits for verdicts
    final_step: int | None = None  # a trial's last update (training.steps)
    _verdicts: Any = None  # the verdicts actor, made in the driver (never pickled)
    _at_final_step = False  # the report being decided on is the trial's last
    all_run_at_once = False  # the population fits the cluster and the concurrency limit
    _trial_state: dict[Trial, Any]

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]
        if self.verdicts_for is not None and self._verdicts is None:  # before trials start
            self._verdicts = open_verdicts(self.verdicts_for)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        step = int(result.get("step", -1))
        self._at_final_step = self.final_step is not None and step >= self.final_step
        decision = super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
        if decision == TrialScheduler.PAUSE and (self._at_final_step or self.all_run_at_once):
            # At its last update it ends in seconds, freeing its place; when all run at
            # once, whoever waits has a place already.
            decision = TrialScheduler.CONTINUE
        if self._verdicts is not None and step >= 0:
            go_on = decision == TrialScheduler.CONTINUE and trial.status != Trial.PAUSED
            self._verdicts.post.remote(trial.trial_id, step, go_on)
        return decision

    def _checkpoint_or_exploit(
        self,
        trial: Trial,
        tune_controller: Any,
        upper_quantile: list[Trial],
        lower_quantile: list[Trial],
    ) -> None:
        if self._at_final_step:
            lower_quantile = [t for t in lower_quantile if t is not trial]
        if trial in lower_quantile:
            for peer in upper_quantile:
                state = self._trial_state[peer]
                if state.last_checkpoint is None and peer.checkpoint is not None:
                    state.last_checkpoint = peer.checkpoint
        super()._checkpoint_or_exploit(  # type: ignore[misc]
            trial, tune_controller, upper_quantile, lower_quantile
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_verdicts": None}


class RefinerPBT(_RefinerPopulation, PopulationBasedTraining):
    """Tune's PBT with the changes above."""


class RefinerPB2(_RefinerPopulation, PB2):
    """Tune's PB2 with the changes above."""
