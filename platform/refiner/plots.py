"""PNG plots for tracking: the refinement curve (acc@t) and the halting-steps histogram.

Uses matplotlib's Agg canvas directly (no pyplot, no global backend state), so it works
headless and inside worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_refinement_curve(
    acc_at: Sequence[float] | Mapping[str, Sequence[float]],
    path: str | Path,
    title: str = "Refinement curve",
    ylabel: str = "exact-match accuracy",
) -> Path:
    """acc@t against refinement step t (one line per series when given a mapping)."""
    series = acc_at if isinstance(acc_at, Mapping) else {"acc@t": acc_at}
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), list(values), marker="o", label=label)
    ax.set(xlabel="refinement step t", ylabel=ylabel, title=title, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    return _save(fig, path)


def plot_halting_histogram(
    steps_taken: Sequence[int],
    path: str | Path,
    max_steps: int | None = None,
    title: str = "Steps taken before halting",
) -> Path:
    """How many samples stopped after each number of steps."""
    top = max_steps or max(steps_taken, default=1)
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    ax.hist(list(steps_taken), bins=[b + 0.5 for b in range(top + 1)], rwidth=0.85)
    ax.set(xlabel="steps taken", ylabel="samples", title=title, xticks=range(1, top + 1))
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
