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


def plot_stopping_frontier(
    frontier: Sequence[tuple[float, float]],
    points: Mapping[str, tuple[float, float]],
    accuracy_at_limit: float,
    max_accuracy_loss: float,
    path: str | Path,
    title: str = "Stopping frontier",
) -> Path:
    """Mean steps against exact-match accuracy: the best accuracy reachable at each cost
    (a step line), named settings as points, the run-to-limit accuracy and the bound."""
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    if frontier:
        xs, ys = zip(*frontier, strict=True)
        ax.step(xs, ys, where="post", marker=".", label="frontier")
    ax.axhline(accuracy_at_limit, color="grey", linestyle="--", label="run to the limit")
    ax.axhline(
        accuracy_at_limit - max_accuracy_loss / 100,
        color="red",
        linestyle=":",
        label=f"bound (-{max_accuracy_loss:g} points)",
    )
    for label, (x, y) in points.items():
        ax.plot([x], [y], marker="o", linestyle="none", markersize=8, label=label)
    ax.set(xlabel="mean steps", ylabel="exact-match accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_pareto_front(
    points: Sequence[tuple[float, float]],
    front: Sequence[tuple[float, float]],
    names: tuple[str, str],
    path: str | Path,
    chosen: tuple[float, float] | None = None,
    title: str = "Sweep trials and their Pareto front",
) -> Path:
    """Every trial as a dot (x: first objective, y: second), the front joined in order,
    the chosen point circled."""
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    if points:
        ax.scatter(*zip(*points, strict=True), color="0.6", label="trials")
    if front:
        ax.plot(*zip(*front, strict=True), color="C3", marker="o", label="Pareto front")
    if chosen is not None:
        ax.scatter(
            [chosen[0]], [chosen[1]], s=200, facecolors="none", edgecolors="C0", label="chosen"
        )
    ax.set(xlabel=names[0], ylabel=names[1], title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
