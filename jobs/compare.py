"""Compare the trials of a sweep, reading only from MLflow.

    python jobs/compare.py --experiment refiner-sweeps          # its newest sweep
    python jobs/compare.py --parent-run RUN_ID --out outputs/compare --csv

Prints the swept params against the key metrics (final loss, acc@t at the inference
step budget, exact match of early-stopped inference, mean inference steps, and the
field's numbers where the trials logged them: puzzle_exact, cell_acc, pass_at_1/2), sorted by
the sweep's metric (best first; * marks the trial the sweep tagged best, F the Pareto
front of a two-objective sweep, listed below the table), and writes a
PNG overlaying the trials' refinement curves (and a CSV with --csv) to --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from refiner.runs.cli import BadInputError, input_checks, job_main
from refiner.tracking import resolve_tracking_uri
from refiner.tracking.compare import (
    format_front,
    format_table,
    plot_curves,
    trial_rows,
    write_csv,
)
from refiner.tracking.sweeps import load_sweep, run_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="MLflow experiment: compare its newest sweep")
    which.add_argument("--parent-run", help="the sweep's parent run id")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: ./mlflow.db)")
    p.add_argument("--out", default="outputs/compare", help="folder for the PNG (and CSV)")
    p.add_argument("--csv", action="store_true", help="also write the table as CSV")
    return p.parse_args(argv)


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    with input_checks(LookupError):  # no such sweep: "error: ...", exit status 2
        sweep = load_sweep(tracking_uri, args.experiment, args.parent_run)
        if not sweep.children:
            raise BadInputError(f"sweep run {sweep.parent.info.run_id} has no trial runs")
    metric, mode = sweep.metric
    rows = trial_rows(sweep)
    name = run_name(sweep.parent)
    print(
        f"sweep {name} (run {sweep.parent.info.run_id}): {len(rows)} trials, by {metric} ({mode})"
    )
    print(format_table(rows, metric))
    if sweep.objectives:  # a two-objective sweep: its front (the plot is on the parent run)
        print(format_front(rows, sweep.objectives))

    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_curves(rows, out / "refinement_curves.png", f"Refinement curves: {name}")
    print(f"refinement curves: {plot}")
    if args.csv:
        print(f"csv: {write_csv(rows, out / 'trials.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
