"""GPU check of the fast path (issues 12 and 30): eager vs `training.compile: on` and the
levers on it, one command.

Needs only torch, numpy, pyarrow and PyYAML (the refiner core; no Ray, no MLflow):

    PYTHONPATH=platform python3 bench/gpu_check.py --out gpu_check.json     # GPU, < 8 min
    PYTHONPATH=platform python3 bench/gpu_check.py --smoke                  # tiny, on CPU
    ... --variants eager,fast,fused,cudagraphs,pad64 --profile --ceiling    # issue 30

Prints (one JSON line per result, all of them again in --out):
- the measured matmul peak (bf16 8192^3 on CUDA; fp32 on CPU);
- per shape of the issue (default d128 L64 T16 K8 b1024; sudoku d512 L81 T16 K8 b256;
  ARC d512 L900 T8 K4 b32), per variant (`--variants`, VARIANTS below; default eager and
  fast): warm-up, step time, achieved TFLOP/s (FlopCounterMode count of one eager step
  of the unpadded shape / wall time: the useful work, so a padded variant's extra
  FLOPs do not count), fraction of the peak, samples/s, peak memory, speed-up over eager;
- infer-few per variant on the eager variant's weights (when the shapes match): wall
  time, rows/s, mean steps, and whether the stopping decisions (steps taken, reasons)
  and final canvases agree with eager;
- `--profile`: torch.profiler over 3 warm updates and one inference call of the first
  compiled variant (bench/gpu_profile.py): time shares (matmul/attention, optimizer,
  other kernels, host gaps), the top ops by self device time, a chrome trace per shape
  in `--trace-dir`;
- `--ceiling`: the default shape's fraction of peak at doubling batch sizes until out
  of memory (caught, reported), `--ceiling-cap` or `--ceiling-budget` seconds.

Variants run one after another in one process, on one device (dynamo's caches reset
between them, so each compiles afresh and none runs out of recompiles).
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from gpu_profile import batch_ceiling, print_profile, profile_calls
from harness import Headline, matmul_peak, parser, sync, write_results
from torch.utils.flop_counter import FlopCounterMode

from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.tokenizers import NUM_SPECIAL, VOCAB_SIZE
from refiner.train.fast_path import FAST_PATH_MODE
from refiner.train.optim import make_optimizer
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

# name, model sizes, batch, T (train steps), K (gradient window)
SHAPES = [
    ("default d128 L64 T16 K8", dict(d_model=128, seq_len=64, n_heads=4), 1024, 16, 8),
    ("sudoku d512 L81 T16 K8", dict(d_model=512, seq_len=81, n_heads=8), 256, 16, 8),
    ("arc d512 L900 T8 K4", dict(d_model=512, seq_len=900, n_heads=8), 32, 8, 4),
]
# one per shape above, in the same order (--only sudoku picks the second in a smoke run)
SMOKE_SHAPES = [
    ("smoke default", dict(d_model=32, seq_len=16, n_heads=4), 16, 4, 2),
    ("smoke local window", dict(d_model=32, seq_len=24, n_heads=4, attention_window=4), 8, 4, 2),
    ("smoke arc", dict(d_model=32, seq_len=36, n_heads=4), 4, 4, 2),
]
INFER_STEPS = 8  # infer-few step limit (at most T)
CEILING_CAP = 32768  # largest batch the ceiling tries (smoke: 64)


@dataclass(frozen=True)
class Variant:
    """One way of running the same shape: a lever on the fast path, or eager."""

    compile: str  # training.compile: "off" (eager) or "on"
    mode: str | None = None  # torch.compile mode (None: --mode)
    fused: bool | None = None  # fused AdamW (None: torch's default)
    pad: int = 1  # seq_len and vocabulary rounded up to a multiple of this

    def sizes(self, sizes: dict) -> dict:
        """The model's sizes with this variant's padding (a speed probe: real padded runs
        would also need the pad positions kept out of attention and the loss)."""
        if self.pad == 1:
            return sizes
        up = lambda n: -(-n // self.pad) * self.pad  # noqa: E731
        return {**sizes, "seq_len": up(sizes["seq_len"]), "vocab_size": up(VOCAB_SIZE)}


VARIANTS = {
    "eager": Variant("off"),
    "fast": Variant("on"),
    "fused": Variant("on", fused=True),  # fused AdamW: one optimizer kernel
    "cudagraphs": Variant("on", mode="reduce-overhead"),  # CUDA graphs for the unroll
    "autotune": Variant("on", mode="max-autotune-no-cudagraphs"),  # GEMM autotuning
    "pad8": Variant("on", pad=8),  # tensor-core friendly sizes (81 -> 88, 260 -> 264)
    "pad64": Variant("on", pad=64),  # (81 -> 128, 900 -> 960, 260 -> 320)
}


def main() -> None:
    p = parser(__doc__, "gpu_check")
    p.add_argument("--smoke", action="store_true", help="tiny shapes (CPU is fine)")
    p.add_argument("--device", default=None, help="default: cuda if there is one, else cpu")
    p.add_argument("--steps", type=int, default=None, help="timed train steps per variant")
    p.add_argument("--only", default=None, help="run only shapes whose name contains this")
    p.add_argument(
        "--mode", default=None, help='torch.compile mode, e.g. "max-autotune-no-cudagraphs"'
    )
    p.add_argument(
        "--variants",
        default="eager,fast",
        help=f"comma-separated, in order, of: {', '.join(VARIANTS)}",
    )
    p.add_argument("--profile", action="store_true", help="profile the first compiled variant")
    p.add_argument(
        "--trace-dir",
        type=Path,
        default=Path(os.environ.get("OUT") or Path(tempfile.gettempdir()) / "refiner-bench"),
        help="chrome traces of --profile (default: $OUT, else a scratch folder)",
    )
    p.add_argument("--ceiling", action="store_true", help="the default shape's batch ceiling")
    p.add_argument("--ceiling-cap", type=int, default=None, help=f"default {CEILING_CAP}")
    p.add_argument(
        "--ceiling-batches",
        default=None,
        help="comma-separated batch sizes to try (default: doubling from twice the shape's)",
    )
    p.add_argument("--ceiling-budget", type=float, default=150.0, help="seconds")
    args = p.parse_args()
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        p.error(f"--variants: unknown {unknown} (known: {', '.join(VARIANTS)})")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "compile_mode": args.mode,
        "variants": chosen,
        "shapes": [],
    }
    emit(results, {"torch": results["torch"], "device": results["device"]})
    peak = matmul_peak(device, 256 if args.smoke else 8192, repeats=10, warmup=3)
    results["matmul_peak_tflops"] = peak / 1e12
    emit(results, {"matmul_peak_tflops": round(peak / 1e12, 6)}, args)

    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    steps = args.steps or (2 if args.smoke else 6)
    for (name, sizes, batch, T, K), (full_name, *_) in zip(shapes, SHAPES, strict=True):
        if args.only and args.only not in name and args.only not in full_name:
            continue
        row: dict[str, Any] = {"shape": name, "batch": batch}
        results["shapes"].append(row)  # filled variant by variant, saved after each
        try:
            check_shape(row, sizes, T, K, device, peak, steps, chosen, args, results)
        except Exception as err:  # report and go on to the next shape
            row["error"] = repr(err)[:500]
        emit(results, row, args)
        free(device)
    if args.ceiling:
        name, sizes, batch, T, K = shapes[0]
        cap = args.ceiling_cap or (64 if args.smoke else CEILING_CAP)
        batches = [batch * 2**i for i in range(1, 16) if batch * 2**i <= cap]
        if args.ceiling_batches:  # each size compiles afresh: a few chosen ones save minutes
            batches = [int(b) for b in args.ceiling_batches.split(",") if int(b) <= cap]
        flops = count_flops(sizes, batch, T, K, device) / batch  # linear in the batch
        mode = VARIANTS["fast"].mode or args.mode

        def build(b: int) -> Any:
            o, optimizer, data = setup(sizes, b, T, K, device, replace(VARIANTS["fast"], mode=mode))
            return lambda: update(o, data, optimizer)

        rows = batch_ceiling(build, batches, flops, peak, device, args.ceiling_budget)
        results["ceiling"] = {"shape": name, "variant": "fast", "rows": rows}
        emit(results, {"ceiling": results["ceiling"]}, args)


def setup(
    sizes: dict, batch: int, T: int, K: int, device: torch.device, variant: Variant
) -> tuple[UnifiedRefinerOrchestrator, torch.optim.Optimizer, dict[str, torch.Tensor]]:
    """A fresh orchestrator (seed 0), its optimizer and one random batch, per the variant."""
    sizes = variant.sizes(sizes)
    model_config = ModelConfig(memory_capacity=0, n_layers=2, latent_cycles=2, **sizes)
    config = OrchestrationConfig.from_dict(
        {
            "max_steps_train": T,
            "max_steps_infer": min(INFER_STEPS, T),
            "backprop_truncate_steps": K,
            "canvas_edit_strategies": ["replace"],
            "adaptive_edit_selection": False,
        }
    )
    FAST_PATH_MODE[device.type] = variant.mode
    o = UnifiedRefinerOrchestrator.from_config(
        model_config, config, seed=0, device=device, compile=variant.compile
    )
    optimizer = make_optimizer(o.model, lr=1e-4, weight_decay=0.1, fused=variant.fused)
    L = model_config.seq_len
    g = torch.Generator().manual_seed(0)
    data = {
        key: torch.randint(NUM_SPECIAL, NUM_SPECIAL + 10, (batch, L), generator=g).to(device)
        for key in ("input", "target")
    }
    return o, optimizer, data


def update(
    o: UnifiedRefinerOrchestrator, data: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer
) -> Any:
    """One training update. A new step for CUDA graphs (`reduce-overhead`): the previous
    update's graph outputs may be overwritten (a no-op for every other variant)."""
    torch.compiler.cudagraph_mark_step_begin()
    return o.train_step(data, optimizer)


def infer(o: UnifiedRefinerOrchestrator, data: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Infer-few on the batch's inputs, as a new step for CUDA graphs (see `update`)."""
    torch.compiler.cudagraph_mark_step_begin()
    return o.inference(data["input"])


def count_flops(sizes: dict, batch: int, T: int, K: int, device: torch.device) -> int:
    """FLOPs of one eager update of the unpadded shape (compiled kernels bypass the counter)."""
    o, optimizer, data = setup(sizes, batch, T, K, device, VARIANTS["eager"])
    with FlopCounterMode(display=False) as counter:
        o.train_step(data, optimizer)
    return counter.get_total_flops()


def check_shape(
    row: dict[str, Any],
    sizes: dict,
    T: int,
    K: int,
    device: torch.device,
    peak: float,
    steps: int,
    variants: list[str],
    args: Any,
    results: dict[str, Any],
) -> None:
    """Fill `row` (its shape's name and batch) with every variant's measurements, writing
    the results file after each (a run stopped at its time limit keeps the variants done)."""
    name, batch = row["shape"], row["batch"]
    flops = count_flops(sizes, batch, T, K, device)
    row["flops_per_step"] = flops
    reference: dict[str, Any] | None = None  # eager's weights and inference result
    compiled = [v for v in variants if VARIANTS[v].compile == "on"]
    profiled_variant = (compiled or variants)[0] if args.profile else None
    for variant_name in variants:
        variant = VARIANTS[variant_name]
        if variant.mode is None:
            variant = replace(variant, mode=args.mode)
        try:
            o, optimizer, data = setup(sizes, batch, T, K, device, variant)
            row["params"] = row.get("params") or o.core.num_parameters()
            reset_memory(device)
            start = time.perf_counter()
            for _ in range(2):  # warm-up (compiles on the fast path)
                update(o, data, optimizer)
            sync(device)
            warmup = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(steps):
                update(o, data, optimizer)
            sync(device)
            dt = (time.perf_counter() - start) / steps
            timing: dict[str, Any] = {
                "warmup_s": round(warmup, 2),
                "step_s": round(dt, 5),
                "tflops": round(flops / dt / 1e12, 6),
                "of_peak": round(flops / dt / peak, 4),
                "samples_per_s": round(batch / dt, 1),
                "peak_mem_gib": peak_memory(device),
            }
            if variant.pad > 1:
                timing["padded_sizes"] = variant.sizes(sizes)
            if reference is None and variant_name == "eager":
                reference = {"state": o.core.state_dict()}
            infer = infer_check(o, data, batch, device, reference, variant_name)
            if infer is not None:
                timing["infer"] = infer
            if variant_name == profiled_variant:
                trace = args.trace_dir / f"trace_{name.split()[0]}_{variant_name}.json.gz"
                report = profile_variant(o, optimizer, data, device, trace)
                report["variant"] = variant_name
                row["profile"] = report
                print_profile(f"{name} ({variant_name})", report)
        except Exception as err:  # one lever failing leaves the others measured
            timing = {"error": repr(err)[:500]}
        row[variant_name] = timing
        o = optimizer = None  # type: ignore[assignment]
        free(device)
        save(results, args)
        print(f"{name}, {variant_name}: {json.dumps(timing)[:400]}", flush=True)
    if "eager" in row and "fast" in row and "step_s" in row["fast"] and "step_s" in row["eager"]:
        row["train_speedup"] = round(row["eager"]["step_s"] / row["fast"]["step_s"], 3)
        if "infer" in row["fast"]:
            row["infer"] = row["fast"]["infer"]  # the issue-12 key: fast vs eager
    for variant_name in variants:
        timing = row[variant_name]
        if variant_name != "eager" and "step_s" in timing and "step_s" in row.get("eager", {}):
            timing["speedup"] = round(row["eager"]["step_s"] / timing["step_s"], 3)


def profile_variant(
    o: UnifiedRefinerOrchestrator,
    optimizer: torch.optim.Optimizer,
    data: dict[str, torch.Tensor],
    device: torch.device,
    trace: Path,
) -> dict[str, Any]:
    """3 warm updates and one infer-few call under torch.profiler (bench/gpu_profile.py)."""

    def one_update() -> Any:
        return update(o, data, optimizer)

    calls = {f"train {i + 1}": one_update for i in range(3)}
    calls["inference"] = lambda: infer(o, data)
    return profile_calls(calls, device, trace)


def infer_check(
    o: UnifiedRefinerOrchestrator,
    data: dict[str, torch.Tensor],
    batch: int,
    device: torch.device,
    reference: dict[str, Any] | None,
    variant_name: str,
) -> dict[str, Any] | None:
    """Infer-few timed (second of two calls) on the eager variant's weights; compared with
    eager's result. None for a variant whose shapes differ from eager's (padding)."""
    if reference is None:
        return None
    try:
        o.core.load_state_dict(reference["state"])
    except RuntimeError:  # padded shapes: eager's weights do not fit
        return None
    timings = []
    for _ in range(2):  # the first call compiles the inference buckets
        sync(device)
        start = time.perf_counter()
        result = infer(o, data)
        sync(device)
        timings.append(time.perf_counter() - start)
    seconds = timings[-1]
    if variant_name == "eager":
        reference["infer"], reference["infer_s"] = result, seconds
    eager, eager_s = reference.get("infer", result), reference.get("infer_s", seconds)
    return {
        "rows": batch,
        "eager_s": round(eager_s, 4),
        "fast_s": round(seconds, 4),
        "eager_rows_per_s": round(batch / eager_s, 1),
        "fast_rows_per_s": round(batch / seconds, 1),
        "speedup": round(eager_s / seconds, 3),
        "mean_steps": result["mean_steps"],
        "same_steps": eager["steps_taken"] == result["steps_taken"],
        "same_reasons": eager["stopping_reason"] == result["stopping_reason"],
        "rows_same_canvas": same_rows(eager["final_canvas_ids"], result["final_canvas_ids"]),
        "reasons": result["stopping_reason_counts"],
    }


def free(device: torch.device) -> None:
    """Drop compiled graphs and cached memory between variants."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def same_rows(a: list, b: list) -> float:
    """The fraction of rows two inference results agree on exactly."""
    return sum(x == y for x, y in zip(a, b, strict=True)) / max(len(a), 1)


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def emit(results: dict[str, Any], line: dict[str, Any], args: Any = None) -> None:
    """Print one result; with ``args``, write every result so far (a run cut short by its
    time limit keeps what it measured)."""
    print(json.dumps(line), flush=True)
    if args is not None:
        save(results, args)


def save(results: dict[str, Any], args: Any) -> None:
    """Write every result so far to the results file."""
    write_results(
        "gpu_check",
        out=args.out,
        smoke=args.smoke,
        headline=headline(results) if not (args.smoke or args.only or args.steps) else [],
        results=results,
    )


def headline(results: dict[str, Any]) -> list[Headline]:
    """The fast path's row of BENCHMARKS.md, once every shape has run without error."""
    rows = {r["shape"].split()[0]: r for r in results["shapes"] if "train_speedup" in r}
    if set(rows) != {"default", "sudoku", "arc"} or any("infer" not in r for r in rows.values()):
        return []
    arc, sudoku, default = rows["arc"], rows["sudoku"], rows["default"]
    return [
        Headline(
            f"fast path vs eager on GPU (#12), {results['device']}",
            12,
            ">= 35% of bf16 peak (sudoku, ARC); default >= 3x samples/s; infer >= 2x rows/s",
            f"ARC **{arc['fast']['of_peak']:.1%}**, sudoku **{sudoku['fast']['of_peak']:.1%}** of "
            f"the measured {results['matmul_peak_tflops']:.0f} TFLOP/s (eager "
            f"{arc['eager']['of_peak']:.1%} / {sudoku['eager']['of_peak']:.1%}); default "
            f"{default['train_speedup']:.2f}x samples/s; infer {arc['infer']['speedup']:.2f}x "
            f"(ARC), {sudoku['infer']['speedup']:.2f}x (sudoku), "
            f"{default['infer']['speedup']:.2f}x (default)",
            order=120,
        )
    ]


if __name__ == "__main__":
    main()
