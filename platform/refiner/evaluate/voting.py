"""Evaluation as the field reports it: per-puzzle exact match, and ARC pass@k with voting.

ARC (test-time augmentation voting): each test input is refined in N views, a view being
one of the 8 dihedral transforms and a permutation of colours 1..9 (0, the background,
stays; as ``refiner.augment`` does). With one puzzle identity per augmented copy
(``per_augmentation``, as HRM/TRM) view ``i`` of a puzzle is its copy ``i``: the transform
its demonstrations got for identity ``i`` in training, refined under that identity
(``copy_views``); otherwise every view uses the puzzle's one identity (``arc_views``).
Each prediction is read off its canvas, mapped back
to the original frame with the inverse transforms, and the answers are counted: the
most-voted one is the pass@1 answer, the two most-voted distinct ones the pass@2 answers
(ties go to the answer first seen, so the untransformed view 0 wins a tie). A puzzle
passes when all its test pairs pass. A prediction that is not a readable grid casts no
vote.

Sudoku and maze: exact match per puzzle and accuracy per cell.

The model is injected: ``predict(input_ids [B, L]) -> predicted ids [B, L]`` (see
``refiner.evaluate.predictors`` for one built from an orchestrator or a checkpoint), so this works
with any inference path. Pure numpy/pyarrow: no torch, Ray or MLflow here.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from refiner.augment.inverse import grid_copy_transforms
from refiner.augment.spec import AugmentationSpec
from refiner.augment.symmetry import DIHEDRAL_ALL, apply_dihedral_2d, dihedral_inverse
from refiner.augment.tables import invert_relabel
from refiner.data.tokenizers import PAD
from refiner.tasks.sources.arc import extract_from_canvas, place_in_canvas

# predict(input_ids [B, L], group_ids [B] or None, copies [B] or None) -> predicted ids
# [B, L]; the group ids (and augmented-copy indices, None: the original) let a
# puzzle-conditioned model use each row's puzzle identity (refiner.model.puzzles).
Predict = Callable[[np.ndarray, Sequence[str] | None, np.ndarray | None], np.ndarray]
Answer = tuple[tuple[int, int], bytes]  # (shape, cells): a hashable grid
ARC_COLOURS = 10


@dataclass(frozen=True)
class View:
    """A dihedral element (0..7, see ``refiner.augment.symmetry``) and a colour map.

    ``colours[s - 1]`` is the new colour (minus one) of colour s in 1..9, the layout of
    the permutations in ``refiner.augment.tables``; None keeps the colours. ``copy``: the
    augmented copy whose puzzle identity refines this view (0, the original, unless the
    model has one identity per copy).
    """

    dihedral: int = 0
    colours: tuple[int, ...] | None = None
    copy: int = 0

    def apply(self, grid: np.ndarray) -> np.ndarray:
        out = apply_dihedral_2d(np.asarray(grid), self.dihedral)
        return out if self.colours is None else _recolour(out, np.array(self.colours))

    def invert(self, grid: np.ndarray) -> np.ndarray:
        out = np.asarray(grid)
        if self.colours is not None:
            out = _recolour(out, invert_relabel(np.array([self.colours]))[0])
        return apply_dihedral_2d(out, int(dihedral_inverse(self.dihedral)))


def arc_views(count: int, seed: int = 0, num_colours: int = ARC_COLOURS) -> list[View]:
    """``count`` views: view 0 is the identity, then the dihedral elements in turn, with
    the colours kept for the first 8 views and permuted (by ``seed``) after that."""
    if count < 1:
        raise ValueError(f"voting needs at least 1 view, got {count}")
    rng = random.Random(f"vote-views-{seed}")
    views = []
    for index in range(count):
        colours = None
        if index >= DIHEDRAL_ALL:
            perm = list(range(num_colours - 1))
            rng.shuffle(perm)
            colours = tuple(perm)
        views.append(View(index % DIHEDRAL_ALL, colours))
    return views


def copy_views(
    group_ids: Sequence[str],
    spec: AugmentationSpec,
    seed: int,
    count: int,
    num_colours: int = ARC_COLOURS,
) -> dict[str, list[View]]:
    """Per puzzle, the views of its augmented copies ``0 .. count-1`` as training made
    them (``spec`` with seed_by_group and the run's ``seed``): copy 0 is the original."""
    if count < 1:
        raise ValueError(f"voting needs at least 1 view, got {count}")
    groups = sorted(set(map(str, group_ids)))
    elements, colours = grid_copy_transforms(groups, spec, seed, count, num_colours)

    def colour_map(g: int, i: int) -> tuple[int, ...] | None:
        if colours is None or (colours[g, i] == np.arange(colours.shape[2])).all():
            return None  # kept (the original copy's identity permutation)
        return tuple(int(c) for c in colours[g, i])

    return {
        group: [View(int(elements[g, i]), colour_map(g, i), copy=i) for i in range(count)]
        for g, group in enumerate(groups)
    }


@dataclass
class VoteReport:
    """Per-puzzle pass@1/pass@2 (a puzzle passes when all its test pairs do)."""

    puzzles: int
    pairs: int
    views: int
    pass_at_1: float
    pass_at_2: float
    pair_pass_at_1: float
    pair_pass_at_2: float
    unreadable: float  # fraction of predictions that were not a grid (cast no vote)
    passed_puzzles: list[str]  # group ids that pass@2
    per_copy: bool = False  # views were the puzzles' augmented copies (copy_views)

    def metrics(self, prefix: str = "eval_") -> dict[str, float]:
        return {
            f"{prefix}pass_at_1": self.pass_at_1,
            f"{prefix}pass_at_2": self.pass_at_2,
            f"{prefix}pair_pass_at_1": self.pair_pass_at_1,
            f"{prefix}pair_pass_at_2": self.pair_pass_at_2,
            f"{prefix}vote_unreadable": self.unreadable,
        }

    def summary(self) -> str:
        return (
            f"voting over {self.views} view(s)"
            + (", each puzzle's augmented copies under their identities" if self.per_copy else "")
            + f", {self.puzzles} puzzles ({self.pairs} test pairs):"
            f" pass@1 {self.pass_at_1:.4f}, pass@2 {self.pass_at_2:.4f}"
            f" (per pair {self.pair_pass_at_1:.4f} / {self.pair_pass_at_2:.4f});"
            f" unreadable predictions {self.unreadable:.3f}"
        )


def vote_arc(
    tasks: pa.Table,
    predict: Predict,
    views: Sequence[View] | Mapping[str, Sequence[View]],
    batch_size: int = 256,
) -> VoteReport:
    """Vote over ``views`` for every row of ``tasks`` (ARC canvases, one row per test pair):
    the same views for every row, or per puzzle (group_id -> its views, all as many)."""
    if tasks.num_rows == 0:
        raise ValueError("voting: no rows to evaluate")
    groups_of_rows = [str(g) for g in tasks.column("group_id").to_pylist()]
    if isinstance(views, Mapping):
        missing = sorted(set(groups_of_rows) - set(views))
        if missing:
            raise ValueError(f"voting: no views for puzzle {missing[0]!r}")
        row_views = [list(views[g]) for g in groups_of_rows]
    else:
        row_views = [list(views)] * len(groups_of_rows)
    per_row = {len(v) for v in row_views}
    if len(per_row) != 1 or 0 in per_row:
        raise ValueError(f"voting: every puzzle needs the same number of views, got {per_row}")
    count = per_row.pop()
    sides = set(tasks.column("height").to_pylist()) | set(tasks.column("width").to_pylist())
    if len(sides) != 1 or None in sides:
        raise ValueError(f"voting: ARC rows must share one square canvas, got sides {sides}")
    size = int(sides.pop())
    inputs = [_grid(ids, size) for ids in tasks.column("input").to_pylist()]
    targets = [_key(_grid(ids, size)) for ids in tasks.column("target").to_pylist()]
    canvases = np.stack(
        [
            place_in_canvas(view.apply(grid), size).reshape(-1)
            for grid, views_of_row in zip(inputs, row_views, strict=True)
            for view in views_of_row
        ]
    )
    groups = [g for g in groups_of_rows for _ in range(count)]
    copies = np.array([view.copy for views_of_row in row_views for view in views_of_row])
    predicted = _predict_in_batches(predict, canvases, batch_size, groups, copies)
    ranked, unreadable = [], 0
    for row, views_of_row in enumerate(row_views):
        votes: Counter[Answer] = Counter()
        for v, view in enumerate(views_of_row):
            try:
                answer = view.invert(_read_grid(predicted[row * count + v]))
            except ValueError:
                unreadable += 1
                continue
            votes[_key(answer)] += 1
        ranked.append([answer for answer, _ in votes.most_common(2)])  # ties: first seen
    report = _report(tasks, targets, ranked, count, unreadable / len(canvases))
    report.per_copy = bool(copies.any())
    return report


def top_answers(votes: Sequence[Answer], k: int = 2) -> list[Answer]:
    """The ``k`` most frequent distinct answers, ties to the first seen (exposed for tests)."""
    return [answer for answer, _ in Counter(votes).most_common(k)]


@dataclass
class ExactReport:
    """Sudoku/maze: exact match per puzzle; accuracy per cell, over all cells and over the
    cells the puzzle leaves to fill (where input and target differ)."""

    puzzles: int
    exact: float
    cell_accuracy: float
    filled_cell_accuracy: float

    def metrics(self, prefix: str = "eval_") -> dict[str, float]:
        return {
            f"{prefix}puzzle_exact": self.exact,
            f"{prefix}cell_acc": self.cell_accuracy,
            f"{prefix}filled_cell_acc": self.filled_cell_accuracy,
        }

    def summary(self) -> str:
        return (
            f"{self.puzzles} puzzles: exact {self.exact:.4f}, cells {self.cell_accuracy:.4f}"
            f" (cells to fill {self.filled_cell_accuracy:.4f})"
        )


def exact_match(tasks: pa.Table, predict: Predict, batch_size: int = 256) -> ExactReport:
    """Per-puzzle exact match and per-cell accuracy of ``predict`` on every row."""
    if tasks.num_rows == 0:
        raise ValueError("exact match: no rows to evaluate")
    length = max(len(ids) for ids in tasks.column("target").to_pylist())
    inputs = _pad(tasks.column("input").to_pylist(), length)
    targets = _pad(tasks.column("target").to_pylist(), length)
    groups = tasks.column("group_id").to_pylist()
    predicted = _predict_in_batches(predict, inputs, batch_size, groups)[:, :length]
    scored = targets != PAD
    to_fill = scored & (inputs != targets)
    right = predicted == targets
    return ExactReport(
        puzzles=len(targets),
        exact=float(_all_scored_right(predicted, targets).mean()),
        cell_accuracy=float(right[scored].mean()),
        filled_cell_accuracy=float(right[to_fill].mean()) if to_fill.any() else 1.0,
    )


def exact_rows(tasks: pa.Table, predicted: np.ndarray) -> np.ndarray:
    """Per row of ``tasks``: whether ``predicted`` ([rows, at least the longest target]
    ids) gets every target cell right (PAD cells are not scored): exact_match's rule."""
    length = max(len(ids) for ids in tasks.column("target").to_pylist())
    targets = _pad(tasks.column("target").to_pylist(), length)
    return _all_scored_right(np.asarray(predicted)[:, :length], targets)


def _all_scored_right(predicted: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per row: every cell that is not PAD in ``targets`` predicted right."""
    return ((predicted == targets) | (targets == PAD)).all(axis=1)


def _report(
    tasks: pa.Table,
    targets: list[Answer],
    ranked: list[list[Answer]],
    views: int,
    unreadable: float,
) -> VoteReport:
    pass1 = [bool(r) and r[0] == t for r, t in zip(ranked, targets, strict=True)]
    pass2 = [t in r for r, t in zip(ranked, targets, strict=True)]
    puzzle_of = tasks.column("group_id").to_pylist()
    puzzles = sorted(set(puzzle_of))
    all1 = {p: True for p in puzzles}
    all2 = {p: True for p in puzzles}
    for puzzle, ok1, ok2 in zip(puzzle_of, pass1, pass2, strict=True):
        all1[puzzle] &= ok1
        all2[puzzle] &= ok2
    return VoteReport(
        puzzles=len(puzzles),
        pairs=len(targets),
        views=views,
        pass_at_1=sum(all1.values()) / len(puzzles),
        pass_at_2=sum(all2.values()) / len(puzzles),
        pair_pass_at_1=sum(pass1) / len(pass1),
        pair_pass_at_2=sum(pass2) / len(pass2),
        unreadable=unreadable,
        passed_puzzles=[p for p in puzzles if all2[p]],
    )


def _read_grid(canvas: np.ndarray) -> np.ndarray:
    """The predicted grid; ValueError when it is none or holds a symbol that is no ARC
    colour (a model may emit any id of its vocabulary)."""
    grid = extract_from_canvas(canvas)
    if grid.max() >= ARC_COLOURS:
        raise ValueError(f"symbol {int(grid.max())} is no ARC colour")
    return grid


def _recolour(grid: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Colour s in 1..len(perm) becomes 1 + perm[s - 1]; 0 (background) stays."""
    table = np.concatenate([[0], 1 + perm]).astype(grid.dtype)
    return table[grid]


def _grid(ids: Sequence[int], size: int) -> np.ndarray:
    return extract_from_canvas(np.asarray(ids)[: size * size])


def _key(grid: np.ndarray) -> Answer:
    grid = np.ascontiguousarray(grid, dtype=np.int32)
    return (grid.shape[0], grid.shape[1]), grid.tobytes()


def _pad(rows: list[list[int]], length: int) -> np.ndarray:
    out = np.full((len(rows), length), PAD, dtype=np.int64)
    for r, ids in enumerate(rows):
        out[r, : len(ids)] = ids
    return out


def _predict_in_batches(
    predict: Predict,
    inputs: np.ndarray,
    batch_size: int,
    groups: Sequence[str],
    copies: np.ndarray | None = None,
) -> np.ndarray:
    chunks = [
        np.asarray(
            predict(
                inputs[start : start + batch_size],
                groups[start : start + batch_size],
                None if copies is None else copies[start : start + batch_size],
            )
        )
        for start in range(0, len(inputs), batch_size)
    ]
    predicted = np.concatenate(chunks)
    if predicted.shape[0] != inputs.shape[0] or predicted.shape[1] < inputs.shape[1]:
        raise ValueError(
            f"predict returned shape {predicted.shape} for inputs of shape {inputs.shape}"
        )
    return predicted
