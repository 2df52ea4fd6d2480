"""Where a train step's time goes (issue 30): torch.profiler over a few warm updates and
inference calls, for `bench/gpu_check.py --profile`; and the default shape's batch
ceiling (`--ceiling`).

The breakdown splits the profiled window's wall time into:
- matmul/attention: on CUDA, the device kernels whose names are GEMM or attention
  kernels (cuBLAS nvjet/xmma/cutlass, flash/fmha/cudnn SDPA, inductor's mm templates);
  on CPU, the self time of aten's matmul and attention ops;
- optimizer: everything under `Optimizer.step` (the profiler's own annotation; on
  CUDA the kernels it launched, on CPU its ops);
- other kernels: the remaining device kernels (elementwise, reductions, norms, copies;
  what inductor fuses into triton_* kernels) or, on CPU, the remaining ops' self time;
- host gaps: the wall time the device sat idle (no kernel running: launch overhead,
  Python, host syncs); on CPU, the wall time outside any profiled op.

Only the standard library and torch (no Ray, MLflow): runs on the lent GPU machines.
"""

from __future__ import annotations

import gc
import gzip
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from harness import sync
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

# device kernels doing GEMMs or attention (cuBLAS, CUTLASS, flash/mem-efficient/cuDNN SDPA,
# inductor's triton mm templates under max-autotune)
MATMUL_KERNEL = re.compile(
    r"gemm|nvjet|xmma|cutlass|cublas|flash|fmha|attention|attn|sdpa|triton_tem|splitk",
    re.IGNORECASE,
)
MATMUL_OPS = re.compile(r"^aten::(mm|addmm|bmm|baddbmm|_scaled_dot_product|_flash|_efficient)")
TOP_OPS = 15
CALL = "gpu_profile call: "  # our ranges (inductor's own are named "## ... ##")


def profile_calls(
    steps: dict[str, Callable[[], Any]],
    device: torch.device,
    trace_path: Path | None,
) -> dict[str, Any]:
    """Profile each named call once (in order, already warm), export one chrome trace
    (gzipped) to ``trace_path``, and return the breakdown per call and the top ops."""
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    walls: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    sync(device)
    with profile(activities=activities) as prof:
        for name, call in steps.items():
            with torch.profiler.record_function(CALL + name):
                start = time.perf_counter()
                call()
                sync(device)
                walls[name] = time.perf_counter() - start
    events = list(prof.events())
    for event in events:  # each call's window, as the profiler timed it
        if event.name.startswith(CALL):
            windows[event.name[len(CALL) :]] = (event.time_range.start, event.time_range.end)
    result: dict[str, Any] = {"device": device.type, "calls": {}}
    for name, (start_us, end_us) in windows.items():
        inside = [e for e in events if start_us <= e.time_range.start < end_us]
        result["calls"][name] = breakdown(inside, end_us - start_us, device)
        result["calls"][name]["wall_s"] = round(walls[name], 5)
    result["top_ops"] = top_ops(prof, device)
    if trace_path is not None:
        result["trace"] = str(export_trace(prof, trace_path))
    return result


def breakdown(events: list, window_us: float, device: torch.device) -> dict[str, float]:
    """Shares of the window's wall time: matmul/attention, optimizer, other, host gaps."""
    window_us = max(window_us, 1e-9)
    if device.type == "cuda":
        kernels = [e for e in events if e.device_type == DeviceType.CUDA]
        total = sum(k.self_device_time_total for k in kernels)
        matmul = sum(k.self_device_time_total for k in kernels if MATMUL_KERNEL.search(k.name))
        optimizer = sum(e.device_time_total for e in events if _is_optimizer(e))
        busy = _union([(k.time_range.start, k.time_range.end) for k in kernels])
    else:
        ops = [e for e in events if e.device_type == DeviceType.CPU and not _annotation(e)]
        total = sum(e.self_cpu_time_total for e in ops)
        matmul = sum(e.self_cpu_time_total for e in ops if MATMUL_OPS.match(e.name))
        optimizer = sum(e.cpu_time_total for e in events if _is_optimizer(e))
        busy = total
    other = max(total - matmul - optimizer, 0.0)
    return {
        "matmul_attention": round(matmul / window_us, 4),
        "optimizer": round(optimizer / window_us, 4),
        "other_kernels": round(other / window_us, 4),
        "host_gaps": round(max(window_us - busy, 0.0) / window_us, 4),
    }


def _is_optimizer(event: Any) -> bool:
    return event.device_type == DeviceType.CPU and event.name.startswith("Optimizer.step")


def _annotation(event: Any) -> bool:
    """Profiler ranges that wrap ops rather than do work (their self time is Python)."""
    name = getattr(event, "name", None) or event.key  # an event, or an average of them
    return name.startswith((CALL, "## ", "Optimizer.", "ProfilerStep"))


def _union(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by possibly overlapping intervals (kernels on several streams)."""
    covered, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        covered += stop - max(start, end)
        end = stop
    return covered


def top_ops(prof: Any, device: torch.device, count: int = TOP_OPS) -> list[dict[str, Any]]:
    """The ops (on CUDA: device kernels) with the most self time, over every profiled call."""
    averages = prof.key_averages()
    if device.type == "cuda":
        rows = [a for a in averages if a.device_type == DeviceType.CUDA]
        time_of = lambda a: a.self_device_time_total  # noqa: E731
    else:
        rows = [a for a in averages if not _annotation(a)]
        time_of = lambda a: a.self_cpu_time_total  # noqa: E731
    total = max(sum(time_of(a) for a in rows), 1e-9)
    rows.sort(key=time_of, reverse=True)
    return [
        {
            "op": a.key[:90],
            "calls": a.count,
            "self_ms": round(time_of(a) / 1e3, 3),
            "share": round(time_of(a) / total, 4),
        }
        for a in rows[:count]
    ]


def export_trace(prof: Any, path: Path) -> Path:
    """The chrome trace (chrome://tracing, ui.perfetto.dev), gzipped: a few updates of a
    16-step unroll make tens of MB of JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix("")  # name.json.gz -> name.json
    prof.export_chrome_trace(str(raw))
    with open(raw, "rb") as source, gzip.open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    raw.unlink()
    return path


def print_profile(shape: str, report: dict[str, Any]) -> None:
    """The profile as a few readable lines (the JSON line has it all)."""
    print(f"profile of {shape}:", flush=True)
    for name, parts in report["calls"].items():
        shares = ", ".join(f"{k} {v:.1%}" for k, v in parts.items() if k != "wall_s")
        print(f"  {name} ({parts['wall_s'] * 1e3:.1f} ms): {shares}")
    where = "device" if report.get("device") == "cuda" else "CPU"
    print(f"  top ops by self {where} time:")
    for op in report["top_ops"]:
        print(f"    {op['share']:6.1%} {op['self_ms']:9.2f} ms {op['calls']:6d}x  {op['op']}")
    if report.get("trace"):
        print(f"  trace: {report['trace']}", flush=True)


def batch_ceiling(
    build: Callable[[int], Callable[[], Any]],
    batches: list[int],
    flops_per_row: float,
    peak: float,
    device: torch.device,
    budget_s: float,
    steps: int = 3,
) -> list[dict[str, Any]]:
    """Fraction of peak at each batch size until one runs out of memory (caught and
    reported), the list ends, or ``budget_s`` has passed. ``build(batch)`` returns one
    training update's call (warm-up included here: 2 updates)."""
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for batch in batches:
        if time.perf_counter() - started > budget_s:
            rows.append({"batch": batch, "stopped": f"time budget {budget_s:.0f} s spent"})
            break
        row: dict[str, Any] = {"batch": batch}
        try:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            update = build(batch)
            mark = time.perf_counter()
            for _ in range(2):
                update()
            sync(device)
            row["warmup_s"] = round(time.perf_counter() - mark, 2)
            mark = time.perf_counter()
            for _ in range(steps):
                update()
            sync(device)
            dt = (time.perf_counter() - mark) / steps
            row.update(
                step_s=round(dt, 5),
                of_peak=round(flops_per_row * batch / dt / peak, 4),
                samples_per_s=round(batch / dt, 1),
            )
            if device.type == "cuda":
                row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        except torch.OutOfMemoryError as err:
            row["out_of_memory"] = str(err).splitlines()[0][:200]
        finally:
            update = None  # type: ignore[assignment]  # free the model before the next size
            torch._dynamo.reset()  # its compiled graphs too (and their recompile budget)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        print(f"ceiling: {row}", flush=True)
        if "out_of_memory" in row:
            break
    return rows
