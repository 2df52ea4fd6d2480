"""What a training worker prints: rank 0's progress line every report."""

from __future__ import annotations

import sys
from typing import Any

from refiner.evaluate.evaluation import EvaluationReport


def print_progress(metrics: dict[str, Any], total: int, report: EvaluationReport | None) -> None:
    line = (
        f"[refiner] update {metrics['step']:>6}/{total}  epoch {metrics['epoch']}  "
        f"loss {metrics.get('loss', float('nan')):.4f}  "
        f"acc@1 {metrics.get('acc_at_1', 0):.3f}  "
        f"acc@T {metrics.get(_last_acc_key(metrics), 0):.3f}  "
        f"grad {metrics.get('grad_norm', float('nan')):.2f}  "
        f"{metrics['samples_per_s']:.0f} samples/s (all workers)  "
        f"data wait {metrics['data_wait_frac']:.1%}"
    )
    if report is not None:
        line += f"  | val acc@infer {report.acc_infer:.3f} in {report.mean_steps:.2f} steps"
    say(line)


def say(line: str) -> None:
    # Not print(): Ray Train workers patch it to log *and* echo, so every line came twice.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _last_acc_key(metrics: dict[str, Any]) -> str:
    steps = [int(k.rsplit("_", 1)[1]) for k in metrics if k.startswith("acc_at_")]
    return f"acc_at_{max(steps)}" if steps else "acc_at_1"
