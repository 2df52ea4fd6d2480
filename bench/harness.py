"""The bench harness: what every ``bench/*.py`` script shares.

- ``parser(__doc__, "name")``: an argument parser with ``--out`` (the results file);
- ``machine()`` / ``describe_machine()``: CPU, cores, RAM, GPU and library versions;
- ``timed``, ``interleaved``, ``paired_ratios``, ``matmul_peak``, ``sync``: timing, with
  variants run side by side so that load on a shared machine hits all of them;
- ``Headline`` and ``write_results``: each run writes ``bench/results/<name>.json`` (command,
  machine, date, its headline rows, its numbers) and, when it has one, a markdown report
  beside it. ``bench/headline.py`` builds BENCHMARKS.md's headline table from those files.

Scripts run as ``python bench/x.py`` (this folder is then on sys.path) and on a bare GPU
machine as ``PYTHONPATH=platform python3 bench/x.py``: so only the standard library is
imported here, and torch only inside the functions that time it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
VERSIONED = ("numpy", "torch", "pyarrow", "ray", "mlflow")  # reported when installed


def parser(doc: str | None, name: str, out_help: str | None = None) -> argparse.ArgumentParser:
    """The script's parser: its docstring as help, and ``--out`` for its results file."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=out_help
        or f"results file, .json or .md (a .md gets its .json beside it; default: "
        f"bench/results/{name}.json)",
    )
    return p


def command_line(argv: Sequence[str] | None = None) -> str:
    """This run's command as a user would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = sys.argv[0]
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", shown, *args])


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --- the machine -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, hypervisor, RAM, GPU (if torch sees one), Python and libraries."""
    facts: dict[str, Any] = {"cpu": platform.processor() or platform.machine()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key == "Model name":
                facts["cpu"] = value.strip()
            elif key == "Hypervisor vendor":
                facts["hypervisor"] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    facts["cores"] = os.cpu_count()
    facts["ram_gib"] = _ram_gib()
    facts["gpu"] = _gpu()
    facts["python"] = platform.python_version()
    for package in VERSIONED:
        try:
            facts[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return facts


def describe_machine(facts: dict[str, Any] | None = None) -> str:
    """One line: ``AMD EPYC ..., 2 cores (KVM), 23 GiB RAM, no GPU; Python 3.11.7, torch ...``."""
    m = facts or machine()
    hyper = f" ({m['hypervisor']})" if m.get("hypervisor") else ""
    ram = f", {m['ram_gib']} GiB RAM" if m.get("ram_gib") else ""
    libraries = ", ".join(f"{p} {m[p]}" for p in VERSIONED if p in m)
    return (
        f"{m['cpu']}, {m['cores']} cores{hyper}{ram}, {m.get('gpu') or 'no GPU'}; "
        f"Python {m['python']}" + (f", {libraries}" if libraries else "")
    )


def _ram_gib() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])  # MemTotal is the first line
        return round(kib / 2**20)
    except (OSError, ValueError, IndexError):
        return None


def _gpu() -> str | None:
    torch = sys.modules.get("torch")  # only if the script uses torch: no import for this
    if torch is None or not torch.cuda.is_available():
        return None
    return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"


# --- timing ----------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()``'s result and its wall time in seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def interleaved(variants: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    """Seconds of each variant, ``reps`` times, in turn (a, b, a, b, ...)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            times[name].append(timed(fn)[1])
    return times


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Ratios of times taken side by side (rep i of one over rep i of the other)."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    return statistics.median(paired_ratios(numerator, denominator))


def sync(device: Any) -> None:
    """Wait for the GPU's queued work (nothing to wait for on CPU)."""
    if getattr(device, "type", device) == "cuda":
        import torch

        torch.cuda.synchronize()


def matmul_peak(device: Any = "cpu", n: int = 2048, repeats: int = 5, warmup: int = 1) -> float:
    """This device's matmul peak in FLOP/s: the best of ``repeats`` n^3 products, bf16 on
    CUDA and fp32 on CPU (the dtypes the project trains in there)."""
    import torch

    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(warmup):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


# --- results files ---------------------------------------------------------------------


@dataclass
class Headline:
    """One row of BENCHMARKS.md's headline table. ``order`` places it in the table (rows
    sort by it; leave gaps of 10 so that rows can go between)."""

    benchmark: str
    issue: int
    target: str
    result: str
    order: int
    date: str = ""  # the run's, filled in by write_results


@dataclass
class ResultsFile:
    name: str
    command: str
    machine: str
    date: str
    headline: list[Headline] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


KEYS = {"name", "command", "machine", "date", "headline", "results"}
HEADLINE_KEYS = {"benchmark", "issue", "target", "result", "order", "date"}


def read_results(path: Path) -> ResultsFile:
    """A results file, checked: an unknown or missing key is an error naming file and key."""
    data = json.loads(Path(path).read_text())
    _check_keys(data, KEYS, {"name", "command", "machine", "date"}, str(path))
    rows = []
    for i, row in enumerate(data.get("headline", [])):
        where = f"{path}: headline[{i}]"
        _check_keys(row, HEADLINE_KEYS, HEADLINE_KEYS - {"date"}, where)
        rows.append(Headline(**{**row, "date": row.get("date") or data["date"]}))
    return ResultsFile(
        name=data["name"],
        command=data["command"],
        machine=data["machine"],
        date=data["date"],
        headline=rows,
        results=data.get("results", {}),
    )


def _check_keys(data: Any, allowed: set[str], required: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {sorted(allowed)})")
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}")


def results_paths(
    name: str, out: Path | str | None, smoke: bool = False
) -> tuple[Path, Path | None]:
    """Where a run's JSON (and markdown, if any) go: ``--out``, else bench/results/<name>
    (a smoke run's: a scratch folder, so that it never replaces a real result)."""
    if out is None:
        folder = Path(tempfile.gettempdir()) / "refiner-bench" if smoke else RESULTS
        return folder / f"{name}.json", folder / f"{name}.md"
    out = Path(out)
    if out.suffix == ".md":
        return out.with_suffix(".json"), out
    return out, None


def write_results(
    name: str,
    *,
    out: Path | str | None = None,
    headline: Sequence[Headline] = (),
    results: dict[str, Any] | None = None,
    markdown: str | None = None,
    command: str | None = None,
    facts: dict[str, Any] | None = None,
    smoke: bool = False,
) -> Path:
    """Write this run's results file (and its markdown report, when given one, with the
    command, machine and date under its title). Returns the JSON file's path."""
    date = now()
    described = describe_machine(facts)
    command = command or command_line()
    rows = [Headline(**{**asdict(h), "date": h.date or date}) for h in headline]
    record = ResultsFile(name, command, described, date, rows, results or {})
    json_path, md_path = results_paths(name, out, smoke)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record.to_dict(), indent=1, default=str) + "\n")
    if markdown is not None and md_path is not None:
        title, _, body = markdown.partition("\n")
        header = f"\n\n- Command: `{command}`\n- Machine: {described}\n- Date: {date}\n"
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(title + header + body.rstrip("\n") + "\n")
    print(f"results: {json_path}" + (f", {md_path}" if markdown and md_path else ""))
    return json_path
