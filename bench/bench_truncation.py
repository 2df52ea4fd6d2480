"""Benchmark 3: what truncated backprop saves. T=16 unroll, K in {1, 4, 8, 16}.

Activation memory = bytes of the distinct tensors autograd saves for backward during
one train_step's forward (counted with torch.autograd.graph.saved_tensors_hooks,
parameters excluded). That is what stays alive until backward, i.e. the activation
part of peak memory; CPU has no max_memory_allocated. Step time: median of interleaved
rounds (K variants take turns, so machine noise hits them alike).

    python bench/bench_truncation.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import torch
from harness import Headline, interleaved, parser, write_results

from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.tokenizers import NUM_SPECIAL
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

T = 16
WINDOWS = (1, 4, 8, 16)
HERE = Path(__file__).resolve().parent
# The default model (d=128, L=64, 2 layers x 2 cycles), without the memory bank.
DEFAULT_MODEL = ModelConfig(memory_capacity=0)


class SavedTensorBytes(torch.autograd.graph.saved_tensors_hooks):
    """Counts the distinct storages autograd saves for backward (parameters excluded)."""

    def __init__(self, exclude: list[torch.Tensor]) -> None:
        self.excluded = {p.untyped_storage().data_ptr() for p in exclude}
        self.storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in self.excluded:
                self.storages[storage.data_ptr()] = storage.nbytes()
            return t

        super().__init__(pack, lambda t: t)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def make(
    k: int, model_config: ModelConfig
) -> tuple[UnifiedRefinerOrchestrator, torch.optim.Optimizer]:
    torch.manual_seed(0)
    config = OrchestrationConfig(
        max_steps_train=T,
        truncated_backprop=k < T,
        backprop_truncate_steps=k,
        canvas_edit_strategies=["replace"],
    )
    o = UnifiedRefinerOrchestrator.from_config(model_config, config)
    return o, torch.optim.AdamW(o.core.parameters(), lr=1e-4)


def make_batch(batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shape = (batch_size, seq_len)
    return {
        "input": torch.randint(NUM_SPECIAL, NUM_SPECIAL + 2, shape, generator=gen),
        "target": torch.randint(NUM_SPECIAL, NUM_SPECIAL + 2, shape, generator=gen),
    }


def peak_rss_growth(k: int, batch_size: int, threads: int) -> int:
    """Peak RSS growth (bytes) over one train_step with window K, in a fresh process.

    Linux: the peak (VmHWM) is reset through /proc/self/clear_refs right before the step
    (getrusage's ru_maxrss would carry over the parent's peak through fork + exec)."""
    code = (
        "import torch; import bench_truncation as b; "
        f"torch.set_num_threads({threads}); "
        f"o, opt = b.make({k}, b.DEFAULT_MODEL); "
        f"batch = b.make_batch({batch_size}, b.DEFAULT_MODEL.seq_len); "
        "o.train_step({key: v[:1] for key, v in batch.items()}, opt); "  # optimizer state exists now
        "open('/proc/self/clear_refs', 'w').write('5'); before = b.vm_hwm(); "
        "o.train_step(batch, opt); "
        "print(b.vm_hwm() - before)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


def vm_hwm() -> int:
    """This process's peak resident set size in bytes (Linux)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def main() -> None:
    p = parser(__doc__, "truncation")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model_config = DEFAULT_MODEL
    batch = make_batch(args.batch_size, model_config.seq_len)
    runs = {k: make(k, model_config) for k in WINDOWS}
    memory = {}
    for k, (o, opt) in runs.items():
        counter = SavedTensorBytes(list(o.core.parameters()))
        with counter:
            o.train_step(batch, opt)  # also a warm-up
        memory[k] = counter.total
    steps = {k: (lambda o=o, opt=opt: o.train_step(batch, opt)) for k, (o, opt) in runs.items()}
    times = interleaved(steps, args.rounds)
    rss = {k: peak_rss_growth(k, args.batch_size, args.threads) for k in WINDOWS}

    print(
        f"T={T}, batch={args.batch_size}x{model_config.seq_len}, d_model={model_config.d_model}, "
        f"{model_config.n_layers} layers x {model_config.latent_cycles} cycles, "
        f"threads={args.threads}, {args.rounds} interleaved rounds"
    )
    print(
        f"{'K':>3} {'activation MiB':>15} {'vs K=16':>8} {'peak RSS +MiB':>14} {'vs K=16':>8} "
        f"{'step s (median)':>16} {'vs K=16':>8}"
    )
    full_mem, full_time = memory[T], statistics.median(times[T])
    for k in WINDOWS:
        t = statistics.median(times[k])
        print(
            f"{k:>3} {memory[k] / 2**20:>15.1f} {memory[k] / full_mem:>8.1%} "
            f"{rss[k] / 2**20:>14.1f} {rss[k] / rss[T]:>8.1%} {t:>16.3f} {t / full_time:>8.1%}"
        )
    ratio = memory[4] / full_mem
    verdict = "PASS" if ratio <= 0.4 else "FAIL"
    print(f"K=4 activation memory = {ratio:.1%} of full backprop (target <= 40%): {verdict}")
    write_results(
        "truncation",
        out=args.out,
        headline=[
            Headline(
                "truncation K=4 vs full backprop, T=16",
                3,
                "<= 40% activation memory",
                f"{ratio:.1%}",
                order=50,
            )
        ],
        results={
            "activation_bytes": memory,
            "peak_rss_growth_bytes": rss,
            "step_s": times,
            "batch_size": args.batch_size,
            "threads": args.threads,
        },
    )


if __name__ == "__main__":
    main()
