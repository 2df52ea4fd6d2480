"""ASHA vs running every trial to the full budget, on the same space, seed and trials.

    python bench/bench_asha.py                       # ~6-8 min on a 2-core CPU
    python bench/bench_asha.py --num-samples 12 --steps 90 --out bench/results/asha.md

Both sweeps sample the same trials (same space, same seed). Reports the total
trial-updates each spent, the ratio, and whether ASHA's best trial is the same
configuration as the full-budget best. Target: <= 40% of the compute, same best.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import ray
import yaml
from harness import Headline, parser, write_results

from refiner.config.experiment import load_task_table, prepare_experiment
from refiner.distributed.compat import init_local_on_loopback
from refiner.distributed.sweep_driver import run_sweep
from refiner.sweep.outcome import describe_params
from refiner.sweep.plan import SweepPlan
from refiner.sweep.space import load_space
from refiner.tracking import sweeps as sweep_tracking

# The tiny sweep trial the tests use (tests/tiny_runs.py holds the one definition).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_runs import TINY_SWEEP as TINY  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "jobs" / "configs" / "sweep.yaml"
SPACE = {  # the learning rate matters most at this budget; truncation rides along
    "space": {
        "training": {"lr": {"loguniform": [1.0e-4, 2.0e-2]}},
        "orchestration": {
            "truncated_backprop": {"choice": [True, False]},
            "backprop_truncate_steps": {
                "choice": [1, 2, 4, 8],
                "at_most": "orchestration.max_steps_train",
            },
        },
    }
}


def main() -> int:
    p = parser(__doc__, "asha")
    p.add_argument("--num-samples", type=int, default=6)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--grace", type=int, default=10)
    p.add_argument("--reduction-factor", type=float, default=3)
    args = p.parse_args()
    # The dashboard hosts the State API, which Ray Train's PlacementGroupCleaner needs to
    # free the resources of trials that ASHA stops; without it a sweep stalls.
    init_local_on_loopback(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1")
    work = Path(tempfile.mkdtemp(prefix="bench-asha-"))
    config, _ = prepare_experiment(BASE, [*TINY, f"training.steps={args.steps}"])
    tasks = load_task_table(config.task, config.seed)
    results = {}
    for kind in ("fifo", "asha"):
        space = dict(
            SPACE,
            sweep={
                "num_samples": args.num_samples,
                "seed": 0,
                "scheduler": {
                    "type": kind,
                    "metric": "loss",
                    "mode": "min",
                    "grace_period": args.grace,
                    "reduction_factor": args.reduction_factor,
                },
            },
        )
        path = work / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(space))
        plan = SweepPlan(
            name=f"bench-{kind}",
            space=load_space(path).to_dict(),
            space_origin=str(path),
            base=config.to_dict(),
            storage=str(work / "store"),
            tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
            experiment="bench-asha",
            out_dir=str(work / "out"),
        )
        started = time.perf_counter()
        results[kind] = (
            run_sweep(plan, tasks, tracking=sweep_tracking),
            time.perf_counter() - started,
        )
    ray.shutdown()

    fifo, fifo_s = results["fifo"]
    asha, asha_s = results["asha"]
    keys = list(SPACE["space"]["training"]) and [
        "training.lr",
        "orchestration.truncated_backprop",
        "orchestration.backprop_truncate_steps",
    ]
    same = fifo.best is not None and asha.best is not None and fifo.best.params == asha.best.params
    ratio = asha.total_steps / fifo.total_steps
    lines = [
        "# ASHA vs full budget (bench/bench_asha.py)",
        "",
        "Ray: 4 logical CPUs.",
        f"Setup: parity (256 sequences of 8 bits), d_model 16, 1 Ray Train worker (0.5 CPU) per "
        f"trial, 2 trials at once, {args.steps} updates per trial, metric `loss` (min; exact "
        f"match is still 0 for every trial at this budget), {args.num_samples} trials sampled "
        f"with seed 0 from lr loguniform [1e-4, 2e-2] x truncation on/off x K.",
        "",
        "| scheduler | trial-updates | wall s | best trial | best loss |",
        "|---|---|---|---|---|",
    ]
    for kind, (o, secs) in results.items():
        b = o.best
        lines.append(
            f"| {kind} | {o.total_steps} | {secs:.0f} | {describe_params(b.params, keys) if b else '-'} "
            f"| {b.metrics.get('loss', float('nan')):.4f} |"
            if b
            else f"| {kind} | {o.total_steps} | {secs:.0f} | - | - |"
        )
    lines += [
        "",
        f"**ASHA spent {ratio:.0%} of the full-budget trial-updates (target <= 40%); "
        f"same best configuration: {'yes' if same else 'NO'}.** Wall-time ratio "
        f"{asha_s / fifo_s:.0%} (trial start-up, ~10 s each, does not shrink with ASHA).",
        "",
        "Per trial (full budget | ASHA):",
        "",
        "| params | fifo steps | fifo loss | asha steps | asha loss |",
        "|---|---|---|---|---|",
    ]
    by_params = {describe_params(t.params, keys): t for t in asha.trials}
    for t in sorted(fifo.trials, key=lambda t: t.metrics.get("loss", 1e9)):
        d = describe_params(t.params, keys)
        a = by_params.get(d)
        lines.append(
            f"| {d} | {t.steps} | {t.metrics.get('loss', float('nan')):.4f} | "
            f"{a.steps if a else '-'} | {a.metrics.get('loss', float('nan')) if a else float('nan'):.4f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    headline = Headline(
        "ASHA vs every trial to full budget",
        5,
        "<= 40% compute, same best",
        f"{ratio:.0%} of trial-updates ({asha.total_steps} vs {fifo.total_steps}), "
        f"{'same best' if same else 'NOT the same best'}; wall {asha_s / fifo_s:.0%}",
        order=100,
    )
    write_results(
        "asha",
        out=args.out,
        headline=[headline],
        results={
            "trial_updates": {"fifo": fifo.total_steps, "asha": asha.total_steps},
            "wall_s": {"fifo": fifo_s, "asha": asha_s},
            "same_best": same,
        },
        markdown=text,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
