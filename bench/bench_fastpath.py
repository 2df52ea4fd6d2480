"""Benchmark (issue 12): on CPU the fast path (or its absence) costs nothing.

Times `train_step` and `inference` of the default model with this tree's defaults
(`compile: auto`, which is eager on CPU, plus the one-transfer metrics) against the
code of a baseline git ref (before the fast path), on the same model, batch and
threads. Each variant lives in its own subprocess (two versions of the `refiner`
package cannot share one process); the two alternate call by call (one train_step in
one, then one in the other, the order flipping every round), so load on the shared
machine hits both alike, and the median of the paired time ratios is reported.

    python bench/bench_fastpath.py [--baseline-ref 434da7d] [--rounds 12] [--infer-rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Headline, parser, write_results

HERE = Path(__file__).resolve().parent
PLATFORM = HERE.parent / "platform"


def worker(batch: int, threads: int) -> None:
    """Run in a subprocess with the variant's platform/ first on sys.path: builds the
    default model, then answers each stdin line ("step" or "infer") with its seconds."""
    import torch

    from refiner.config.sections import ModelConfig, OrchestrationConfig
    from refiner.data.tokenizers import NUM_SPECIAL
    from refiner.train.optim import make_optimizer
    from refiner.train.orchestrator import UnifiedRefinerOrchestrator

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
    print("ready", flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        if line.strip() == "step":
            o.train_step(data, optimizer)
        else:
            o.inference(data["input"], max_steps_override=16, early_stopping=False)
        print(time.perf_counter() - start, flush=True)


class Variant:
    """A worker subprocess running one version of the refiner package."""

    def __init__(self, platform: Path, args: argparse.Namespace) -> None:
        code = (
            f"import sys; sys.path.insert(0, {str(platform)!r}); "
            f"sys.path.insert(0, {str(HERE)!r}); import bench_fastpath; "
            f"bench_fastpath.worker({args.batch}, {args.threads})"
        )
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the variant's platform/ comes first, nothing else
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"worker for {platform} failed to start")

    def time(self, what: str) -> float:
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main() -> None:
    p = parser(__doc__, "fastpath")
    p.add_argument("--baseline-ref", default="434da7d")
    p.add_argument("--rounds", type=int, default=12, help="paired train steps")
    p.add_argument("--infer-rounds", type=int, default=4, help="paired inference calls")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", args.baseline_ref, "platform/refiner"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        base = Variant(Path(tmp) / "platform", args)
        fast = Variant(PLATFORM, args)
        ratios: dict[str, list[float]] = {"step": [], "infer": []}
        times: dict[str, list[float]] = {"baseline": [], "fast_path_auto": []}
        for what, rounds in (("step", args.rounds), ("infer", args.infer_rounds)):
            for r in range(rounds):
                # alternate which goes first, so drift in load favours neither
                pair = (base, fast) if r % 2 == 0 else (fast, base)
                t = {id(v): v.time(what) for v in pair}
                ratios[what].append(t[id(fast)] / t[id(base)])
                if what == "step":
                    times["baseline"].append(t[id(base)])
                    times["fast_path_auto"].append(t[id(fast)])
                print(f"{what} {r + 1}: fast/base {ratios[what][-1]:.3f}", flush=True)
        base.close()
        fast.close()
    medians = {name: statistics.median(v) for name, v in times.items()}
    print(json.dumps({"baseline_ref": args.baseline_ref, "median_step_s": medians}))
    print(
        "median of paired ratios (compile=auto / baseline; 1.0 = no change, < 1 faster): "
        f"train_step {statistics.median(ratios['step']):.3f}, "
        f"inference 16 steps {statistics.median(ratios['infer']):.3f}"
    )
    step, infer = statistics.median(ratios["step"]), statistics.median(ratios["infer"])
    headline = Headline(
        "CPU cost of the fast-path change, compile=auto",
        12,
        "no regression",
        f"train_step {step:.3f}x, inference {infer:.3f}x the baseline time (median of paired "
        f"ratios, `python bench/bench_fastpath.py`)",
        order=130,
    )
    write_results(
        "fastpath",
        out=args.out,
        headline=[headline],
        results={"baseline_ref": args.baseline_ref, "ratios": ratios, "step_s": times},
    )


if __name__ == "__main__":
    main()
