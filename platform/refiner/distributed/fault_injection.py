"""A test hook, not configuration: a worker that raises once at a chosen update, so that
tests can watch Ray Train restart the worker group and the run resume from its last
checkpoint. Unset (every real run), there is no hook and the loop calls nothing."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

FAULT_ENV = "REFINER_TEST_FAULT_AT_STEP"


def fault_hook(rank: int, world: int, run_dir: str, seed: int) -> Callable[[int], None] | None:
    """Test hook, not configuration: ``REFINER_TEST_FAULT_AT_STEP=N`` (or ``N,seed=S``, only
    runs whose config seed is S; ``N,seed=S|R``, either seed) in the environment the
    workers start with makes the last rank raise once per run at update N. Tests set it;
    a real run never does, and then there is no hook at all (None: the loop calls nothing).

    A marker file keeps the restarted worker group from failing again at the same step.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    at, _, only_seeds = spec.partition(",seed=")
    at_step = int(at)
    if rank != world - 1 or (only_seeds and seed not in {int(s) for s in only_seeds.split("|")}):
        return None
    run_key = hashlib.sha1(run_dir.encode()).hexdigest()[:12]
    marker = Path(tempfile.gettempdir()) / f"refiner-fault-{run_key}-{at_step}"

    def inject(step: int) -> None:
        if step != at_step or marker.exists():
            return
        marker.write_text(str(os.getpid()))
        raise RuntimeError(f"injected fault at update {at_step} ({FAULT_ENV})")

    return inject
