"""Run the variants of a variants file side by side (or one after another), each with a
time limit and its own log: the driver behind the GPU sessions in bench/results/gpu_h200/.

    PYTHONPATH=platform python3 bench/gpu_variants.py bench/results/gpu_h200/session3.yaml
    python bench/gpu_variants.py bench/results/gpu_h200/session5.yaml --smoke --device cpu --scale 100
    python bench/gpu_variants.py FILE --only base lr1e-3 --limit 60 --out /tmp/run

A variants file (YAML):

    script: bench/gpu_field_check.py   # what each variant runs (a variant may name its own)
    limit_s: 480                       # each variant is stopped after this (a variant may differ)
    side_by_side: true                 # all at once on the one device; false: in turn
    args: --skip sudoku --with-maze    # every variant's arguments, then the variant's own
    smoke_args: --evals 1              # added with --smoke
    updates: 1000                      # default --updates N (divided by --scale)
    schedule_follows_updates: true     # also --set training.steps=N
    log_prefix: maze_                  # logs: <out>/<log_prefix><name>.log
    summary_lines: 12                  # the last lines of each log, printed at the end
    shared: {}                         # free: a place for YAML anchors (&grid ... *grid)
    variants:
      base: ""                         # arguments, as one string or a list of strings
      lr1e-3: {args: --set training.lr=1e-3, updates: 670, limit_s: 300}

Arguments are split as a shell would (quotes kept); ``{out}`` in them is the output folder.
The device machine's $OUT is the default output folder. An unknown key stops the driver
before anything runs, naming the file and the key (exit status 2).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from harness import ROOT, describe_machine, parser, write_results

TOP_KEYS = {
    "script",
    "limit_s",
    "side_by_side",
    "args",
    "smoke_args",
    "updates",
    "schedule_follows_updates",
    "log_prefix",
    "summary_lines",
    "shared",
    "variants",
}
VARIANT_KEYS = {"args", "updates", "script", "limit_s"}


@dataclass
class Variant:
    name: str
    script: str
    args: list[str]
    limit_s: float
    updates: int | None = None


@dataclass
class VariantsFile:
    path: Path
    variants: list[Variant]
    side_by_side: bool = True
    smoke_args: list[str] = field(default_factory=list)
    schedule_follows_updates: bool = False
    log_prefix: str = ""
    summary_lines: int = 12


class VariantsError(ValueError):
    """A variants file that cannot be run; the message names the file and the key."""


def split_args(value: Any, where: str) -> list[str]:
    """Arguments given as one string or a list of strings, split as a shell would."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str | int | float) for i in items):
        raise VariantsError(f"{where}: expected a string or a list of strings")
    return [part for item in items for part in shlex.split(str(item))]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise VariantsError(f"{where}: expected a positive number, got {value!r}")
    return value


def load_variants(path: Path | str) -> VariantsFile:
    """Read and check a variants file (no process is started)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise VariantsError(f"{path}: cannot read: {err}") from err
    if not isinstance(data, dict):
        raise VariantsError(f"{path}: expected a mapping with a 'variants' key")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise VariantsError(f"{path}: unknown key {unknown[0]!r} (known: {sorted(TOP_KEYS)})")
    if not isinstance(data.get("variants"), dict) or not data["variants"]:
        raise VariantsError(f"{path}: 'variants' must map names to arguments")
    script = str(data.get("script", "bench/gpu_field_check.py"))
    limit = _number(data.get("limit_s", 480), f"{path}: limit_s")
    common = split_args(data.get("args"), f"{path}: args")
    default_updates = data.get("updates")
    variants = []
    for name, spec in data["variants"].items():
        where = f"{path}: variants.{name}"
        if not isinstance(spec, dict):
            spec = {"args": spec}
        unknown = sorted(set(spec) - VARIANT_KEYS)
        if unknown:
            raise VariantsError(
                f"{where}: unknown key {unknown[0]!r} (known: {sorted(VARIANT_KEYS)})"
            )
        updates = spec.get("updates", default_updates)
        variants.append(
            Variant(
                name=str(name),
                script=str(spec.get("script", script)),
                args=common + split_args(spec.get("args"), f"{where}.args"),
                limit_s=_number(spec.get("limit_s", limit), f"{where}.limit_s"),
                updates=None if updates is None else int(_number(updates, f"{where}.updates")),
            )
        )
    return VariantsFile(
        path=path,
        variants=variants,
        side_by_side=bool(data.get("side_by_side", True)),
        smoke_args=split_args(data.get("smoke_args"), f"{path}: smoke_args"),
        schedule_follows_updates=bool(data.get("schedule_follows_updates", False)),
        log_prefix=str(data.get("log_prefix", "")),
        summary_lines=int(data.get("summary_lines", 12)),
    )


def command(
    spec: VariantsFile, v: Variant, out: Path, smoke: bool, device: str | None, scale: float
) -> list[str]:
    """The variant's command line: script, shared and own arguments, then the driver's."""
    args = [a.replace("{out}", str(out)) for a in v.args]
    if smoke:
        args += spec.smoke_args
    if device:
        args += ["--device", device]
    if v.updates is not None:
        updates = max(1, int(v.updates / scale))
        args += ["--updates", str(updates)]
        if spec.schedule_follows_updates:
            args += ["--set", f"training.steps={updates}"]
    return [sys.executable, v.script, *args]


@dataclass
class Running:
    variant: Variant
    argv: list[str]
    process: subprocess.Popen
    log: Path
    started: float
    status: str = "running"
    wall_s: float = 0.0


def start(argv: list[str], log: Path, v: Variant) -> Running:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "platform"), env.get("PYTHONPATH", "")) if p
    )
    with open(log, "w") as f:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Running(v, argv, process, log, time.monotonic())


def wait_all(running: list[Running], limit_override: float | None) -> None:
    """Poll until every run ends or passes its limit (then SIGTERM, SIGKILL 10 s later)."""
    while any(r.status == "running" for r in running):
        for r in running:
            if r.status != "running":
                continue
            elapsed = time.monotonic() - r.started
            code = r.process.poll()
            if code is not None:
                r.status, r.wall_s = ("ok" if code == 0 else f"exit {code}"), elapsed
            elif elapsed > (limit_override or r.variant.limit_s):
                os.killpg(r.process.pid, signal.SIGTERM)
                try:
                    r.process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(r.process.pid, signal.SIGKILL)
                    r.process.wait()
                r.status, r.wall_s = "stopped at the limit", elapsed
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "variants", "summary file (default: <output folder>/variants.json)")
    p.add_argument("variants_file", type=Path)
    p.add_argument("--smoke", action="store_true", help="add the file's smoke_args")
    p.add_argument("--device", help="passed to every variant (e.g. cpu)")
    p.add_argument("--scale", type=float, default=1.0, help="divide every variant's updates")
    p.add_argument("--limit", type=float, help="seconds, instead of the file's limits")
    p.add_argument("--only", nargs="+", help="run only these variants")
    p.add_argument(
        "--logs", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")), help="log folder"
    )
    args = p.parse_args(argv)
    try:
        spec = load_variants(args.variants_file)
        unknown = sorted(set(args.only or []) - {v.name for v in spec.variants})
        if unknown:
            raise VariantsError(f"{args.variants_file}: no variant {unknown[0]!r}")
    except VariantsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    chosen = [v for v in spec.variants if not args.only or v.name in args.only]
    args.logs.mkdir(parents=True, exist_ok=True)
    (args.logs / "machine.txt").write_text(describe_machine() + "\n")
    print(f"{len(chosen)} variants of {spec.path}, logs in {args.logs}", flush=True)
    running: list[Running] = []
    for v in chosen:
        argv_v = command(spec, v, args.logs, args.smoke, args.device, args.scale)
        log = args.logs / f"{spec.log_prefix}{v.name}.log"
        print(f"  {v.name}: {shlex.join(argv_v[1:])}", flush=True)
        running.append(start(argv_v, log, v))
        if not spec.side_by_side:
            wait_all(running[-1:], args.limit)
    wait_all(running, args.limit)
    for r in running:
        tail = r.log.read_text(errors="replace").splitlines()[-spec.summary_lines :]
        print(f"== {r.variant.name}: {r.status}, {r.wall_s:.0f} s, {r.log}")
        print("\n".join(tail))
    write_results(
        "variants",
        out=args.out or args.logs / "variants.json",
        results={
            "variants_file": str(spec.path),
            "runs": [
                {
                    "name": r.variant.name,
                    "command": shlex.join(r.argv[1:]),
                    "status": r.status,
                    "wall_s": round(r.wall_s, 1),
                    "log": r.log.name,
                }
                for r in running
            ],
        },
    )
    return 0 if all(r.status == "ok" for r in running) else 1


if __name__ == "__main__":
    sys.exit(main())
