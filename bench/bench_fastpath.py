"""Benchmark (issue 12): on CPU the fast path (or its absence) costs nothing.

Times `train_step` and `inference` of the default model with this tree's defaults
(`compile: auto`, which is eager on CPU, plus the one-transfer metrics) against the
code of a baseline git ref (before the fast path), on the same model, batch and
threads. Each variant runs in its own subprocess (two versions of the `refiner`
package cannot share one); the variants alternate round by round, so load on the
shared machine hits both, and the ratio of medians is reported.

    python bench/bench_fastpath.py [--baseline-ref 434da7d] [--rounds 4] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLATFORM = HERE.parent / "platform"


def worker(steps: int, batch: int, threads: int) -> None:
    """Run in a subprocess with the variant's platform/ first on sys.path."""
    import torch

    from refiner.config import ModelConfig, OrchestrationConfig
    from refiner.optim import make_optimizer
    from refiner.orchestrator import UnifiedRefinerOrchestrator
    from refiner.tokenizers import NUM_SPECIAL

    torch.set_num_threads(threads)
    o = UnifiedRefinerOrchestrator.from_config(
        ModelConfig(), OrchestrationConfig(), seed=0, device="cpu"
    )
    optimizer = make_optimizer(o.model, lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    L = o.core.config.seq_len
    data = {
        "input": torch.randint(NUM_SPECIAL, NUM_SPECIAL + 2, (batch, L), generator=g),
        "target": torch.randint(NUM_SPECIAL, NUM_SPECIAL + 2, (batch, L), generator=g),
    }
    o.train_step(data, optimizer)  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        o.train_step(data, optimizer)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    o.inference(data["input"], max_steps_override=16, early_stopping=False)
    infer = time.perf_counter() - start
    print(json.dumps({"step_s": statistics.median(times), "infer_s": infer}))


def run_variant(platform: Path, args: argparse.Namespace) -> dict[str, float]:
    code = (
        f"import sys; sys.path.insert(0, {str(platform)!r}); "
        f"sys.path.insert(0, {str(HERE)!r}); import bench_fastpath; "
        f"bench_fastpath.worker({args.steps}, {args.batch}, {args.threads})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the variant's platform/ comes first, nothing else
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline-ref", default="434da7d")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=4, help="timed train steps per round")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", args.baseline_ref, "platform/refiner"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        variants = {"baseline": Path(tmp) / "platform", "fast_path_auto": PLATFORM}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for r in range(args.rounds):
            for name, platform in variants.items():
                results[name].append(run_variant(platform, args))
                print(f"round {r + 1} {name}: {results[name][-1]}", flush=True)
    summary = {}
    for name, rows in results.items():
        summary[name] = {
            key: statistics.median(row[key] for row in rows) for key in ("step_s", "infer_s")
        }
    ratio = {
        key: summary["fast_path_auto"][key] / summary["baseline"][key]
        for key in ("step_s", "infer_s")
    }
    print(json.dumps({"baseline_ref": args.baseline_ref, "medians": summary}))
    print(
        f"train_step time, compile=auto / baseline: {ratio['step_s']:.3f}; "
        f"inference (16 steps) time: {ratio['infer_s']:.3f} (1.0 = no change, < 1 faster)"
    )


if __name__ == "__main__":
    main()
