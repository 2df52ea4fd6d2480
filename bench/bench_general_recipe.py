"""The general recipe against the parity recipe on tasks no recipe was written for.

    python bench/bench_general_recipe.py --steps 400 --kinds reverse sort shift

For each generated kind (bench/seq2seq_tasks.py: reversal, sorting, cyclic shift) it runs
the product as a user would: ``jobs/train.py --task FILE`` (the general recipe, chosen
by itself) and ``jobs/train.py --config jobs/configs/parity.yaml --task FILE`` (what a
task file got before the general recipe existed), the same number of updates each, then
``jobs/evaluate.py`` on the run's last checkpoint over the *test* rows, which neither
training nor checkpoint choice saw (nothing here is chosen on them). Prints one table and
writes it to bench/results/general_recipe.md (beside its .json: bench/harness.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import RESULTS, parser, write_results

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def train_and_test(task: Path, recipe: list[str], steps: int, scratch: Path, name: str) -> dict:
    started = time.perf_counter()
    out = run(
        [PY, "jobs/train.py", "--task", str(task), *recipe, "--steps", str(steps),
         "--run-name", name, "--storage", str(scratch / "ray"),
         "--tracking-uri", f"sqlite:///{scratch}/mlflow.db",
         "--set", f"training.checkpoint_every={steps}"]
    )  # fmt: skip
    wall = time.perf_counter() - started
    first = out.splitlines()[0]
    checkpoint = sorted(p.parent for p in (scratch / "ray" / name).glob("checkpoint_*/*.pt"))[-1]
    report = run(
        [PY, "jobs/evaluate.py", "--checkpoint", str(checkpoint), "--task", str(task),
         "--split", "test"]
    )  # fmt: skip
    acc = float(re.search(r"accuracy \(infer-few[^:]*: ([0-9.]+)", report).group(1))
    rows = int(re.search(r"\((\d+) rows\)", report).group(1))
    return {"acc": acc, "rows": rows, "wall": wall, "first": first}


def main() -> None:
    p = parser(__doc__, "general_recipe")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--kinds", nargs="+", default=["reverse", "sort", "shift"])
    p.add_argument("--count", type=int, default=1200)
    p.add_argument("--recipes", nargs="+", default=["general", "parity"])
    args = p.parse_args()
    recipes = {"general (chosen)": [], "parity (before)": ["--config", "jobs/configs/parity.yaml"]}
    recipes = {k: v for k, v in recipes.items() if k.split()[0] in args.recipes}
    lines = [
        "| task | recipe | test rows | test exact | train+eval wall s |",
        "|---|---|---|---|---|",
    ]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-general-") as tmp:
        scratch = Path(tmp)
        for kind in args.kinds:
            task = scratch / f"{kind}.parquet"
            run([PY, "bench/seq2seq_tasks.py", "--kind", kind, "--count", str(args.count),
                 "--out", str(task)])  # fmt: skip
            for label, recipe in recipes.items():
                name = f"{kind}-{label.split()[0]}"
                r = train_and_test(task, recipe, args.steps, scratch, name)
                print(f"{kind} / {label}: {r['first']}", flush=True)
                rows.append({"task": kind, "recipe": label, **r})
                lines.append(
                    f"| {kind} | {label} | {r['rows']} | {100 * r['acc']:.1f}% | {r['wall']:.0f} |"
                )
                print(lines[-1], flush=True)
    print("\n".join(lines))
    write_results(
        "general_recipe",
        out=args.out if args.out is not None else RESULTS / "general_recipe.md",
        results={"rows": rows},
        markdown="# The general recipe on tasks no recipe was written for\n\n" + "\n".join(lines),
    )


if __name__ == "__main__":
    main()
