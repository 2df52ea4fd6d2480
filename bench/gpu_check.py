"""GPU check of the fast path (issue 12): eager vs `training.compile: on`, one command.

Needs only torch, numpy, pyarrow and PyYAML (the refiner core; no Ray, no MLflow):

    PYTHONPATH=platform python3 bench/gpu_check.py --out gpu_check.json     # GPU, < 8 min
    PYTHONPATH=platform python3 bench/gpu_check.py --smoke                  # tiny, on CPU

Prints (one JSON line per result, all of them again in --out):
- the measured matmul peak (bf16 8192^3 on CUDA; fp32 on CPU);
- per shape of the issue (default d128 L64 T16 K8 b1024; sudoku d512 L81 T16 K8 b256;
  ARC d512 L900 T8 K4 b32), eager vs fast path: warm-up, step time, achieved TFLOP/s
  (FlopCounterMode count of one eager step / wall time; the fast path does the same
  math), fraction of the peak, samples/s, peak memory, and the fast/eager speed-up;
- infer-few on each shape (same weights in both variants): wall time, rows/s, mean steps,
  and whether the stopping decisions (steps taken, reasons) and final canvases agree.

Variants run side by side in one process, on one device.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch
from harness import Headline, matmul_peak, parser, sync, write_results
from torch.utils.flop_counter import FlopCounterMode

from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.tokenizers import NUM_SPECIAL
from refiner.train.fast_path import FAST_PATH_MODE
from refiner.train.optim import make_optimizer
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

# name, model sizes, batch, T (train steps), K (gradient window)
SHAPES = [
    ("default d128 L64 T16 K8", dict(d_model=128, seq_len=64, n_heads=4), 1024, 16, 8),
    ("sudoku d512 L81 T16 K8", dict(d_model=512, seq_len=81, n_heads=8), 256, 16, 8),
    ("arc d512 L900 T8 K4", dict(d_model=512, seq_len=900, n_heads=8), 32, 8, 4),
]
SMOKE_SHAPES = [
    ("smoke default", dict(d_model=32, seq_len=16, n_heads=4), 16, 4, 2),
    ("smoke local window", dict(d_model=32, seq_len=24, n_heads=4, attention_window=4), 8, 4, 2),
]
INFER_STEPS = 8  # infer-few step limit (at most T)


def main() -> None:
    p = parser(__doc__, "gpu_check")
    p.add_argument("--smoke", action="store_true", help="tiny shapes (CPU is fine)")
    p.add_argument("--device", default=None, help="default: cuda if there is one, else cpu")
    p.add_argument("--steps", type=int, default=None, help="timed train steps per variant")
    p.add_argument("--only", default=None, help="run only shapes whose name contains this")
    p.add_argument(
        "--mode", default=None, help='torch.compile mode, e.g. "max-autotune-no-cudagraphs"'
    )
    args = p.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    FAST_PATH_MODE[device.type] = args.mode
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "compile_mode": args.mode,
        "shapes": [],
    }
    emit(results, {"torch": results["torch"], "device": results["device"]})
    peak = matmul_peak(device, 256 if args.smoke else 8192, repeats=10, warmup=3)
    results["matmul_peak_tflops"] = peak / 1e12
    emit(results, {"matmul_peak_tflops": round(peak / 1e12, 6)}, args)

    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    steps = args.steps or (2 if args.smoke else 6)
    for name, sizes, batch, T, K in shapes:
        if args.only and args.only not in name:
            continue
        try:
            row = check_shape(name, sizes, batch, T, K, device, peak, steps)
        except Exception as err:  # report and go on to the next shape
            row = {"shape": name, "error": repr(err)[:500]}
        results["shapes"].append(row)
        emit(results, row, args)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def check_shape(
    name: str,
    sizes: dict,
    batch: int,
    T: int,
    K: int,
    device: torch.device,
    peak: float,
    steps: int,
) -> dict[str, Any]:
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
    L = model_config.seq_len
    g = torch.Generator().manual_seed(0)
    data = {
        "input": torch.randint(NUM_SPECIAL, NUM_SPECIAL + 10, (batch, L), generator=g).to(device),
        "target": torch.randint(NUM_SPECIAL, NUM_SPECIAL + 10, (batch, L), generator=g).to(device),
    }
    row: dict[str, Any] = {"shape": name, "batch": batch}
    trained: dict[str, UnifiedRefinerOrchestrator] = {}
    flops = None
    for variant, setting in (("eager", "off"), ("fast", "on")):
        o = UnifiedRefinerOrchestrator.from_config(
            model_config, config, seed=0, device=device, compile=setting
        )
        optimizer = make_optimizer(o.model, lr=1e-4, weight_decay=0.1)
        reset_memory(device)
        start = time.perf_counter()
        for _ in range(2):  # warm-up (compiles on the fast path)
            o.train_step(data, optimizer)
        sync(device)
        warmup = time.perf_counter() - start
        if flops is None:  # counted on eager: compiled kernels bypass the counter
            with FlopCounterMode(display=False) as counter:
                o.train_step(data, optimizer)
            flops = counter.get_total_flops()
            row["params"] = o.core.num_parameters()
            row["flops_per_step"] = flops
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            o.train_step(data, optimizer)
        sync(device)
        dt = (time.perf_counter() - start) / steps
        row[variant] = {
            "warmup_s": round(warmup, 2),
            "step_s": round(dt, 5),
            "tflops": round(flops / dt / 1e12, 6),
            "of_peak": round(flops / dt / peak, 4),
            "samples_per_s": round(batch / dt, 1),
            "peak_mem_gib": peak_memory(device),
        }
        trained[variant] = o
    row["train_speedup"] = round(row["eager"]["step_s"] / row["fast"]["step_s"], 3)

    # infer-few: the eager model's weights in both, so decisions are comparable
    trained["fast"].core.load_state_dict(trained["eager"].core.state_dict())
    runs = {}
    for variant in ("eager", "fast", "eager", "fast"):  # the second round is timed
        o = trained[variant]
        sync(device)
        start = time.perf_counter()
        r = o.inference(data["input"])
        sync(device)
        runs[variant] = (time.perf_counter() - start, r)
    (te, e), (tf, f) = runs["eager"], runs["fast"]
    row["infer"] = {
        "rows": batch,
        "eager_s": round(te, 4),
        "fast_s": round(tf, 4),
        "eager_rows_per_s": round(batch / te, 1),
        "fast_rows_per_s": round(batch / tf, 1),
        "speedup": round(te / tf, 3),
        "mean_steps": e["mean_steps"],
        "same_steps": e["steps_taken"] == f["steps_taken"],
        "same_reasons": e["stopping_reason"] == f["stopping_reason"],
        "rows_same_canvas": same_rows(e["final_canvas_ids"], f["final_canvas_ids"]),
        "reasons": e["stopping_reason_counts"],
    }
    return row


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
        write_results(
            "gpu_check",
            out=args.out,
            smoke=args.smoke,
            headline=headline(results) if not (args.smoke or args.only or args.steps) else [],
            results=results,
        )


def headline(results: dict[str, Any]) -> list[Headline]:
    """The fast path's row of BENCHMARKS.md, once every shape has run without error."""
    rows = {r["shape"].split()[0]: r for r in results["shapes"] if "error" not in r}
    if set(rows) != {"default", "sudoku", "arc"}:
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
