"""Halting calibrated on held-out data: choose the stopping settings per model.

A fixed ACT threshold does not carry over from one model (or task) to the next, and
patience on the canvas score stops samples whose canvas is still being fixed. So the
settings are measured instead of guessed:

1. `record_pass` runs labelled validation rows once to the step limit (no early stop,
   no batch compaction) and records per sample and step the halting probability, the
   canvas score, whether the step's edit changed the canvas and whether the canvas is
   exactly right: a `StoppingTrace` of [N, T] arrays.
2. `simulate` replays `refiner.infer.halting.StoppingRule` on those arrays: for any settings
   it gives the steps and stopping reason each sample would get in inference.
3. `calibrate` searches ACT threshold, quality threshold, patience (off, length, signal)
   and step limit for the fewest mean steps whose accuracy is at most
   `max_accuracy_loss` points below running every sample to the limit. The bound holds
   on the calibration rows by construction; measure on rows it did not see.

The chosen `StoppingSettings` and where they came from travel in a `CalibrationResult`
(both live with the stopping rule in refiner.infer.halting, which inference reads without
this module); `calibrate_orchestrator` is the one-call entry point for training,
evaluation and prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from refiner.config.sections import PATIENCE_SIGNALS, PatienceSignal, StoppingConfig
from refiner.data.tokenizers import PAD
from refiner.infer.halting import CONTINUE, STOP_REASONS, CalibrationResult, StoppingSettings

# The settings live in refiner.infer.halting; callers of calibration find them here too.
from refiner.infer.halting import describe_stopping as describe_stopping
from refiner.infer.halting import stopping_in_use as stopping_in_use
from refiner.infer.inference import refine_step
from refiner.model.edits import canvas_score
from refiner.model.puzzles import BATCH_KEY
from refiner.train.interface import Orchestrator

# Fixed, readable grids: thresholds chosen from data quantiles would fit the
# calibration rows more tightly and carry over to new rows less well.
ACT_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
QUALITY_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
_NEVER = np.iinfo(np.int32).max  # "this signal never fires" as a first-hit step


@dataclass
class StoppingTrace:
    """One recorded pass: [N, T] arrays, step t = column t-1."""

    halt_prob: np.ndarray  # float32: sigmoid of the halting logit
    score: np.ndarray  # float32: canvas score (predicted P(canvas exactly right))
    canvas_changed: np.ndarray  # bool: this step's edit changed the canvas
    exact: np.ndarray  # bool: the canvas after this step equals the target

    def __post_init__(self) -> None:
        shapes = {a.shape for a in (self.halt_prob, self.score, self.canvas_changed, self.exact)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"trace arrays must share one [N, T] shape, got {shapes}")

    @property
    def rows(self) -> int:
        return self.exact.shape[0]

    @property
    def steps(self) -> int:
        return self.exact.shape[1]

    def accuracy_at(self) -> list[float]:
        """Exact-match accuracy after each step when every sample runs on."""
        return self.exact.mean(0).tolist()


# ---------------------------------------------------------------------- recording


@torch.no_grad()
def record_pass(
    orchestrator: Orchestrator,
    batch: Mapping[str, torch.Tensor],
    max_steps: int | None = None,
    task_type: str = "sequence",
    batch_size: int = 1024,
    ignore_pad: bool = False,
) -> StoppingTrace:
    """Run labelled rows to `max_steps` (default config.max_steps_infer) and record them.

    Steps the way `orchestrator.inference` does (same edits, autocast and memory
    snapshot) but keeps every row to the end. "Exact" compares every position, as
    inference accuracy and the halting head's target do; `ignore_pad` skips positions
    whose target is PAD. Changes no state (memory read counters included)."""
    inputs, target = batch["input"], batch["target"]
    if inputs.dim() != 2 or inputs.shape != target.shape:
        raise ValueError(
            f"batch input and target must both be [B, L]; got {tuple(inputs.shape)} and {tuple(target.shape)}"
        )
    if inputs.shape[0] == 0:
        raise ValueError("calibration needs at least one labelled row")
    T = max_steps if max_steps is not None else orchestrator.config.max_steps_infer
    if T < 1:
        raise ValueError(f"max_steps must be >= 1, got {T}")
    core, device = orchestrator.core, orchestrator.device
    memory = orchestrator.memory_bank.snapshot() if orchestrator.memory_bank is not None else None
    was_training = core.training
    core.eval()
    puzzles = batch.get(BATCH_KEY)  # a conditioned model's identities, as inference gets them
    parts: list[list[torch.Tensor]] = []
    try:
        with orchestrator.autocast_context(), orchestrator.exploring(False):
            for start in range(0, inputs.shape[0], batch_size):
                ids = inputs[start : start + batch_size].to(device, torch.long)
                want = target[start : start + batch_size].to(device, torch.long)
                rows_puzzles = (
                    None if puzzles is None else puzzles[start : start + batch_size].to(device)
                )
                parts.append(
                    _record_rows(
                        orchestrator, ids, want, rows_puzzles, T, memory, task_type, ignore_pad
                    )
                )
    finally:
        core.train(was_training)
    halt, score, changed, exact = (torch.cat(p).cpu().numpy() for p in zip(*parts, strict=True))
    return StoppingTrace(halt, score, changed, exact)


def _record_rows(
    orchestrator: Orchestrator,
    ids: torch.Tensor,
    target: torch.Tensor,
    puzzle_ids: torch.Tensor | None,
    steps: int,
    memory: Any,
    task_type: str,
    ignore_pad: bool,
) -> list[torch.Tensor]:
    core = orchestrator.core
    x = core.embed_input(ids, puzzle_ids)
    state = core.initial_state(ids)
    canvas, quality, latent = state.canvas, state.canvas_quality, state.latent
    scored = target != PAD if ignore_pad else torch.ones_like(target, dtype=torch.bool)
    columns: list[list[torch.Tensor]] = [[], [], [], []]
    for t in range(steps):
        out, _, canvas, quality, changed = refine_step(
            orchestrator, t, x, canvas, quality, latent, memory, task_type
        )
        latent = out.latent
        for column, value in zip(
            columns,
            (
                torch.sigmoid(out.halt_logit.float()),
                canvas_score(quality),
                changed,
                ((canvas == target) | ~scored).all(-1),
            ),
            strict=True,
        ):
            column.append(value)
    return [torch.stack(c, dim=1) for c in columns]


# ---------------------------------------------------------------------- simulation


def stale_steps(trace: StoppingTrace, signal: str, min_improvement: float = 1e-3) -> np.ndarray:
    """[N, T] stale-step counts exactly as StoppingRule keeps them (float32 arithmetic)."""
    if signal not in PATIENCE_SIGNALS:
        raise ValueError(f"unknown patience signal {signal!r}; known: {list(PATIENCE_SIGNALS)}")
    N, T = trace.exact.shape
    best = np.full(N, -1.0, dtype=np.float32)
    stale = np.zeros(N, dtype=np.int64)
    out = np.zeros((N, T), dtype=np.int64)
    gain = np.float32(min_improvement)
    for t in range(T):
        score = trace.score[:, t].astype(np.float32)
        improved = score >= best + gain
        if signal == "canvas":
            improved = trace.canvas_changed[:, t]
        stale = np.where(improved, 0, stale + 1)
        best = np.maximum(best, score)
        out[:, t] = stale
    return out


def simulate(trace: StoppingTrace, settings: StoppingSettings) -> tuple[np.ndarray, np.ndarray]:
    """Steps taken [N] (1-based) and reason codes [N] (indices into STOP_REASONS) that
    inference with `settings` would give the recorded rows."""
    T = settings.max_steps
    if T > trace.steps:
        raise ValueError(f"settings run {T} steps but the trace recorded {trace.steps}")
    N = trace.rows
    codes = np.full((N, T), CONTINUE, dtype=np.int64)
    codes[:, T - 1] = STOP_REASONS.index("max_steps")
    hits = []  # lowest priority first, as in StoppingRule
    if settings.patience is not None:
        stale = stale_steps(trace, settings.patience_signal, settings.min_improvement)
        hits.append(("patience", stale[:, :T] >= settings.patience))
    if settings.quality_threshold is not None:
        hits.append(
            ("quality_threshold", _at_least(trace.score[:, :T], settings.quality_threshold))
        )
    if settings.act_threshold is not None:
        hits.append(("act_confidence", _at_least(trace.halt_prob[:, :T], settings.act_threshold)))
    for reason, hit in hits:
        codes = np.where(hit, STOP_REASONS.index(reason), codes)
    stop = (codes >= 0).argmax(1)  # the last column always stops
    return stop + 1, codes[np.arange(N), stop]


def simulated_accuracy(trace: StoppingTrace, settings: StoppingSettings) -> tuple[float, float]:
    """(exact-match accuracy, mean steps) of `settings` on the recorded rows."""
    steps, _ = simulate(trace, settings)
    return float(trace.exact[np.arange(trace.rows), steps - 1].mean()), float(steps.mean())


def _at_least(values: np.ndarray, threshold: float) -> np.ndarray:
    # torch compares a float32 tensor with a Python float in float32: do the same
    return values.astype(np.float32) >= np.float32(threshold)


# ---------------------------------------------------------------------- calibration


def calibrate(
    trace: StoppingTrace,
    max_accuracy_loss: float = 0.5,
    max_steps: int | None = None,
    min_improvement: float = 1e-3,
    act_grid: Sequence[float] = ACT_GRID,
    quality_grid: Sequence[float] = QUALITY_GRID,
    patience_signals: Sequence[PatienceSignal] = ("score", "canvas"),
    update: int | None = None,
    config: StoppingConfig | None = None,
    margin_sigmas: float = 0.0,
) -> CalibrationResult:
    """The settings with the fewest mean steps whose accuracy on `trace` is at most
    `max_accuracy_loss` points below running every row to `max_steps` (default: all
    recorded steps), with `margin_sigmas` standard errors to spare: L rows lost count
    as L + margin_sigmas * sqrt(L) (a Poisson upper bound), against the selection bias
    of picking the best of many settings on the same rows. Searches every combination of: ACT threshold (off or `act_grid`),
    quality threshold (off or `quality_grid`), patience (off, or 1..limit-1 steps on
    each signal) and step limit 1..max_steps. Ties go to higher accuracy, then to the
    simpler setting. `config` (the user's settings) is simulated too, for the record."""
    T = trace.steps if max_steps is None else max_steps
    if not 1 <= T <= trace.steps:
        raise ValueError(f"max_steps must be in [1, {trace.steps}] (recorded steps), got {T}")
    if not 0 <= max_accuracy_loss <= 100:
        raise ValueError(f"max_accuracy_loss must be in [0, 100] points, got {max_accuracy_loss}")
    N = trace.rows
    exact = trace.exact[:, :T]
    exact_cells = np.nonzero(exact)

    acts: list[float | None] = [None, *act_grid]
    qualities: list[float | None] = [None, *quality_grid]
    patiences: list[tuple[int | None, PatienceSignal]] = [(None, "score")]
    first_act = np.stack([_first_hit(trace.halt_prob[:, :T], a) for a in acts])  # [A, N]
    first_quality = np.stack([_first_hit(trace.score[:, :T], q) for q in qualities])  # [Q, N]
    first_patience = [np.full(N, _NEVER, dtype=np.int32)]
    for signal in patience_signals:
        stale = stale_steps(trace, signal, min_improvement)[:, :T]
        for p in range(1, T):
            patiences.append((p, signal))
            first_patience.append(_first_true(stale >= p))

    mean_steps = np.empty((len(patiences), len(acts), len(qualities), T))
    accuracy = np.empty_like(mean_steps)
    for i, fp in enumerate(first_patience):
        for a, fa in enumerate(first_act):
            first = np.minimum(np.minimum(fa, fp)[None, :], first_quality)  # [Q, N]
            mean_steps[i, a], accuracy[i, a] = _cost_and_accuracy(first, exact, *exact_cells)

    accuracy_at_limit = float(trace.exact[:, T - 1].mean())
    lost = np.clip(N * (accuracy_at_limit - accuracy), 0, None)  # rows, per setting
    allowed = N * max_accuracy_loss / 100 + 1e-6  # 1e-6: float rounding only
    complexity = (
        np.array([p is not None for p, _ in patiences])[:, None, None, None]
        + np.array([a is not None for a in acts])[None, :, None, None]
        + np.array([q is not None for q in qualities])[None, None, :, None]
    )
    flat = np.lexsort(
        (
            np.broadcast_to(complexity, mean_steps.shape).ravel(),
            -accuracy.ravel(),
            mean_steps.ravel(),
        )
    )
    feasible = (lost + margin_sigmas * np.sqrt(lost)).ravel()[flat] <= allowed
    i, a, q, limit = np.unravel_index(flat[feasible.argmax()], mean_steps.shape)

    def settings_at(i: int, a: int, q: int, limit: int) -> StoppingSettings:
        patience, signal = patiences[i]
        return StoppingSettings(
            acts[a], qualities[q], patience, signal, int(limit) + 1, min_improvement
        )

    chosen = settings_at(i, a, q, limit)
    # the frontier: in order of mean steps (then accuracy), each new accuracy high
    ordered = accuracy.ravel()[flat]
    before = np.concatenate([[-1.0], np.maximum.accumulate(ordered)[:-1]])
    frontier = []
    for index in flat[ordered > before + 1e-12]:
        row = settings_at(*np.unravel_index(index, mean_steps.shape)).to_dict()
        acc = float(accuracy.ravel()[index])
        row.update(
            mean_steps=float(mean_steps.ravel()[index]),
            accuracy=acc,
            accuracy_loss=100 * (accuracy_at_limit - acc),
        )
        frontier.append(row)
    config_point = None
    if config is not None:
        own = StoppingSettings.from_config(config, T)
        acc, steps = simulated_accuracy(trace, own)
        config_point = {**own.to_dict(), "mean_steps": steps, "accuracy": acc}
    return CalibrationResult(
        settings=chosen,
        update=update,
        rows=N,
        max_steps=T,
        max_accuracy_loss=float(max_accuracy_loss),
        accuracy_at_limit=accuracy_at_limit,
        accuracy=float(accuracy[i, a, q, limit]),
        mean_steps=float(mean_steps[i, a, q, limit]),
        accuracy_at=trace.accuracy_at()[:T],
        frontier=frontier,
        config_point=config_point,
        margin_sigmas=float(margin_sigmas),
    )


def _cost_and_accuracy(
    first: np.ndarray, exact: np.ndarray, rows: np.ndarray, steps_exact: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean steps and accuracy [C, T] for C first-signal vectors `first` [C, N] (stop
    index, or _NEVER) under each step limit 1..T; exact [N, T], whose True cells are at
    (rows, steps_exact).

    Without materialising [C, N, T]: rows are bucketed by their first-hit index k (T for
    never), G[c, k, l] = rows of bucket k exact after step l+1. A limit l+1 stops bucket
    k < l+1 at k (exact: G[k, k]) and every later bucket at l (exact: G[k, l])."""
    C, N = first.shape
    T = exact.shape[1]
    # integer counting (bincount), no BLAS: exact, and no thread pool to contend for
    bucket = np.arange(C)[:, None] * (T + 1) + np.minimum(first, T)  # [C, N]
    counts = np.bincount(bucket.ravel(), minlength=C * (T + 1)).reshape(C, T + 1)
    G = np.bincount((bucket[:, rows] * T + steps_exact).ravel(), minlength=C * (T + 1) * T).reshape(
        C, T + 1, T
    )
    k = np.arange(T)
    tail_counts = counts[:, ::-1].cumsum(1)[:, ::-1][:, :T]  # rows with k >= l
    head_steps = np.concatenate(
        [np.zeros((C, 1), np.int64), ((k + 1) * counts[:, :T]).cumsum(1)[:, :-1]], 1
    )  # sum over k < l of (k + 1) * count_k
    steps = head_steps + (k + 1) * tail_counts
    diagonal = G[:, k, k]  # [C, T]
    head_correct = np.concatenate([np.zeros((C, 1), np.int64), diagonal.cumsum(1)[:, :-1]], 1)
    later = np.arange(T + 1)[:, None] >= k[None, :]  # [T+1, T]: bucket k at or after l
    tail_correct = (G * later).sum(1)
    return steps / N, (head_correct + tail_correct) / N


def _first_hit(values: np.ndarray, threshold: float | None) -> np.ndarray:
    if threshold is None:
        return np.full(values.shape[0], _NEVER, dtype=np.int32)
    return _first_true(_at_least(values, threshold))


def _first_true(hit: np.ndarray) -> np.ndarray:
    """Index of the first True per row, or _NEVER."""
    return np.where(hit.any(1), hit.argmax(1), _NEVER).astype(np.int32)


# ---------------------------------------------------------------------- orchestrator


def calibrate_orchestrator(
    orchestrator: Orchestrator,
    batch: Mapping[str, torch.Tensor],
    task_type: str = "sequence",
    max_steps: int | None = None,
    max_accuracy_loss: float | None = None,
    batch_size: int = 1024,
    apply: bool = True,
) -> CalibrationResult:
    """Calibrate on a labelled batch ({"input", "target"} [N, L], e.g. from
    refiner.data.batches.batch_from_table on the validation split) and, with `apply`, make
    inference use the result (`orchestrator.calibration`, saved with checkpoints).

    The step limit is searched up to `max_steps` (default config.max_steps_infer, the
    user's ceiling); the bound defaults to config.stopping.max_accuracy_loss."""
    stopping = orchestrator.config.stopping
    limit = max_steps if max_steps is not None else orchestrator.config.max_steps_infer
    trace = record_pass(orchestrator, batch, limit, task_type, batch_size)
    result = calibrate(
        trace,
        stopping.max_accuracy_loss if max_accuracy_loss is None else max_accuracy_loss,
        limit,
        stopping.min_improvement,
        update=orchestrator.step_count,
        config=stopping,
        margin_sigmas=stopping.loss_margin_sigmas,
    )
    if apply:
        orchestrator.calibration = result
    return result


def plot_frontier(result: CalibrationResult, path: str | Path) -> Path:
    """Steps-vs-accuracy frontier on the calibration rows, the chosen point, the config's
    own settings and the accuracy bound (PNG)."""
    from refiner.evaluate.plots import plot_stopping_frontier

    points = {"calibrated": (result.mean_steps, result.accuracy)}
    if result.config_point is not None:
        points["config settings"] = (
            result.config_point["mean_steps"],
            result.config_point["accuracy"],
        )
    return plot_stopping_frontier(
        [(r["mean_steps"], r["accuracy"]) for r in result.frontier],
        points,
        result.accuracy_at_limit,
        result.max_accuracy_loss,
        path,
        title=f"Stopping frontier ({result.origin})",
    )


def frontier_table(result: CalibrationResult) -> dict[str, list[Any]]:
    """The frontier as columns (for an MLflow table or a DataFrame)."""
    keys = list(result.frontier[0]) if result.frontier else []
    return {k: [row[k] for row in result.frontier] for k in keys}
