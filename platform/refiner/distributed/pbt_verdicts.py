"""Tune's decision on a PBT trial's checkpoint, for the trial's Train run to wait on.

PBT decides at a trial's checkpoint whether it goes on, or stops to take over a peer's
checkpoint (or pauses to make room). Tune acts on that by ending the trial's process,
seconds later; meanwhile the Train run would have trained on and logged the updates
after the checkpoint into the trial's MLflow run, and the next generation, resuming
there, could not log those steps again (a resumed run skips the steps its history
has). So at each checkpoint rank 0 waits for the verdict: the scheduler posts one for
every report of a trial (``post``), the run waits for its checkpoint's (``wait_for``).

The verdicts live in one small actor per sweep, named after it, owned by the sweep
driver.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import ray

from refiner.distributed.worker_console import say

# The scheduler's verdict comes a Train poll (2 s) and a Tune round after the report;
# a much longer wait means the driver is stuck, and going on is what Tune would do.
VERDICT_WAIT_S = 120.0
# A stopped run's process ends with its trial's; this only bounds a wait that never should.
STOPPED_RUN_WAIT_S = 600.0


def verdicts_actor_name(sweep_name: str) -> str:
    return f"refiner-pbt-verdicts-{sweep_name}"


@ray.remote(num_cpus=0)
class _Verdicts:
    """(trial id, update) -> go on or not; async, so that waits do not block posts."""

    def __init__(self) -> None:
        self._verdicts: dict[tuple[str, int], bool] = {}
        self._posted: dict[tuple[str, int], asyncio.Event] = {}

    def _event(self, key: tuple[str, int]) -> asyncio.Event:
        return self._posted.setdefault(key, asyncio.Event())

    async def post(self, trial_id: str, step: int, go_on: bool) -> None:
        self._verdicts[(trial_id, step)] = go_on
        self._event((trial_id, step)).set()

    async def forget(self, trial_id: str) -> None:
        """A new generation of the trial: its steps may repeat the last one's."""
        for key in [k for k in self._posted if k[0] == trial_id]:
            self._posted.pop(key)
            self._verdicts.pop(key, None)

    async def wait_for(self, trial_id: str, step: int, timeout: float) -> bool | None:
        try:
            await asyncio.wait_for(self._event((trial_id, step)).wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return self._verdicts[(trial_id, step)]


def open_verdicts(sweep_name: str) -> ray.actor.ActorHandle:
    """The sweep's verdicts actor (the driver's scheduler creates it)."""
    return _Verdicts.options(  # type: ignore[attr-defined]
        name=verdicts_actor_name(sweep_name), get_if_exists=True
    ).remote()


@dataclass(frozen=True)
class TrialVerdicts:
    """One trial's side, shipped to its Train workers (``WorkerJob.verdicts``)."""

    sweep_name: str
    trial_id: str

    def _actor(self) -> ray.actor.ActorHandle:
        return ray.get_actor(verdicts_actor_name(self.sweep_name))

    @classmethod
    def for_new_generation(cls, sweep_name: str, trial_id: str) -> TrialVerdicts | None:
        """The trial's verdicts, cleared for a new generation; None where the sweep's
        scheduler posts none (a PBT sweep started before verdicts, resumed now): its run
        goes on without waiting, as it did then."""
        verdicts = cls(sweep_name, trial_id)
        try:
            actor = verdicts._actor()
        except ValueError:  # no actor of that name
            say(f"[pbt] {trial_id}: this sweep's scheduler posts no verdicts; not waiting")
            return None
        ray.get(actor.forget.remote(trial_id))
        return verdicts

    def goes_on_after(self, step: int) -> bool:
        """Rank 0, after reporting the checkpoint at ``step``: does Tune go on with it?
        No verdict in time (a stuck driver): yes, as without waiting."""
        verdict = ray.get(self._actor().wait_for.remote(self.trial_id, step, VERDICT_WAIT_S))
        return verdict is not False


def stop_here(trial_id: str, step: int) -> None:
    """Rank 0 of a run Tune is ending: train and log nothing more until the process goes."""
    say(
        f"[pbt] {trial_id}: Tune ends this generation at update {step} (exploit or pause); "
        "no more updates here"
    )
    time.sleep(STOPPED_RUN_WAIT_S)
    raise RuntimeError(
        f"trial {trial_id}: Tune ended this generation at update {step}, but its process "
        f"was still running {STOPPED_RUN_WAIT_S:.0f} s later"
    )
