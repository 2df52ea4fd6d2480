"""A straightforward per-row implementation of the engine's transforms (benchmark baseline).

One Python iteration per augmented row, numpy on that row's small arrays, the scalar
twin of the counter-based RNG; per-task preparation (decoding, grid geometry) happens
once per task, as any sensible implementation would. It is written independently of the
vectorised modules (sharing only ``counter_rng`` and the documented semantics), so the
tests' "engine == reference" checks compare two implementations of one specification.
A test oracle (and the baseline of ``bench/bench_augment.py``), so it lives in tests/,
not in the package.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from refiner.augment.counter_rng import row_seed_scalar, uniforms_scalar
from refiner.augment.spec import AugmentationSpec
from refiner.augment.strategies import APPLICABLE, INPUT_ONLY_STRATEGIES, STRATEGIES
from refiner.augment.symmetry import apply_dihedral_2d
from refiner.data.tokenizers import EOS, MASK, NUM_SPECIAL, PAD


def reference_augment_table(
    table: pa.Table, spec: AugmentationSpec, seed: int, epoch: int = 0, pad_to: int | None = None
) -> dict[str, np.ndarray]:
    """The engine's output columns, computed row by row."""
    tasks = table.to_pylist()
    inputs, targets, meta = (
        [],
        [],
        {
            name: []
            for name in (
                "task",
                "aug_index",
                "aug_seed",
                "aug_epoch",
                "aug_strategies",
                "aug_intensity",
            )
        },
    )
    for position, task in enumerate(tasks):
        kind = _kind(task)
        prepared = _PREPARE[kind](task)
        task_epoch = task.get("epoch", epoch)
        task_epoch = epoch if task_epoch is None else int(task_epoch)
        applied = [s for s in STRATEGIES if spec.enabled(s) and s in APPLICABLE[kind]]
        seen = set()
        for index in range(spec.count):
            row_seed = row_seed_scalar(seed, task["task_id"], task_epoch, index)
            augmented = not (spec.include_original and index == 0)
            strength = _strengths(spec, row_seed, augmented)
            row_input, row_target = _AUGMENT[kind](prepared, row_seed, strength)
            if spec.dedup and kind in ("grid", "sudoku"):
                key = (row_input.tobytes(), row_target.tobytes())
                if key in seen:
                    continue
                seen.add(key)
            inputs.append(row_input)
            targets.append(row_target)
            meta["task"].append(position)
            meta["aug_index"].append(index)
            meta["aug_seed"].append(row_seed)
            meta["aug_epoch"].append(task_epoch)
            meta["aug_strategies"].append(",".join(applied) if augmented else "")
            meta["aug_intensity"].append(
                [strength.get(s, 0.0) if s in applied else 0.0 for s in STRATEGIES]
            )
    length = pad_to or max(max(len(r) for r in inputs), max(len(r) for r in targets))
    out = {}
    for name in table.column_names:
        if name not in ("input", "target"):
            column = table.column(name).to_numpy(zero_copy_only=False)
            out[name] = column[np.array(meta["task"], dtype=np.int64)]
    out["input"] = _pad(inputs, length)
    out["target"] = _pad(targets, length)
    out["aug_index"] = np.array(meta["aug_index"], dtype=np.int32)
    out["aug_seed"] = np.array(meta["aug_seed"], dtype=np.uint64).view(np.int64)
    out["aug_epoch"] = np.array(meta["aug_epoch"], dtype=np.int32)
    out["aug_strategies"] = np.array(meta["aug_strategies"], dtype=object)
    out["aug_intensity"] = np.array(meta["aug_intensity"], dtype=np.float32).reshape(
        -1, len(STRATEGIES)
    )
    return out


def _pad(rows: list[np.ndarray], length: int) -> np.ndarray:
    out = np.full((len(rows), length), PAD, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _kind(task: dict) -> str:
    if task["task_type"] == "grid":
        return "sudoku" if task.get("source") == "sudoku" else "grid"
    if task["task_type"] == "sequence":
        return "parity" if task.get("source") == "parity" else "sequence"
    return "text"


def _strengths(spec: AugmentationSpec, row_seed: int, augmented: bool) -> dict[str, float]:
    strength = {}
    for name in spec.strategies:
        value = spec.intensity[name]
        if name in INPUT_ONLY_STRATEGIES:
            value = uniforms_scalar(row_seed, f"intensity/{name}", 1)[0] * value
        strength[name] = value if augmented else 0.0
    return strength


def _floor(u: float, n: float) -> int:
    return math.floor(u * n)


# ---- draws shared by the kinds ----------------------------------------------------------


def _relabelling(row_seed: int, fraction: float, alphabet: int) -> list[int]:
    order = uniforms_scalar(row_seed, "paraphrase/order", alphabet)
    picks = uniforms_scalar(row_seed, "paraphrase/pick", alphabet)
    chosen = [i for i in range(alphabet) if picks[i] < fraction]
    perm = list(range(alphabet))
    for place, image in zip(chosen, sorted(chosen, key=lambda i: order[i]), strict=True):
        perm[place] = image
    return perm


def _drawn(row_seed: int, probability: float, components: int) -> list[bool]:
    return [
        u < probability for u in uniforms_scalar(row_seed, "format_variation/apply", components)
    ]


def _shuffled(row_seed: int, stream: str, size: int) -> list[int]:
    keys = uniforms_scalar(row_seed, stream, size)
    return sorted(range(size), key=lambda i: keys[i])


def _edits(
    row_seed: int, strength: dict, content: np.ndarray, alphabet: int
) -> list[tuple[int, int]]:
    """(source position, token) writes: noise first, then masking."""
    writes = []
    for name in ("token_noise", "masking"):
        if name not in strength:
            continue
        n = len(content)
        k = math.floor(strength[name] * n + 0.5)
        if k == 0:
            continue
        picks = uniforms_scalar(row_seed, f"{name}/position", k)
        if name == "token_noise":
            symbols = uniforms_scalar(row_seed, "token_noise/symbol", k)
            tokens = [NUM_SPECIAL + _floor(u, alphabet) for u in symbols]
        else:
            tokens = [MASK] * k
        writes.extend((int(content[_floor(u, n)]), t) for u, t in zip(picks, tokens, strict=True))
    return writes


def _shift(row_seed: int, strength: dict, length: int, axis: int = 0) -> int:
    reach = _reach(strength["position_shift"], length)
    u = uniforms_scalar(row_seed, "position_shift/offset", 2)[axis]
    return _nonzero(u, -reach, reach)


def _reach(f: float, length: int) -> int:
    """floor(f*length), at least 1 when f > 0 (a labelled shift moves), at most length - 1."""
    if f <= 0 or length <= 1:
        return 0
    return min(max(math.floor(f * length), 1), length - 1)


def _nonzero(u: float, low: int, high: int) -> int:
    """The non-zero integers of [low, high] in order, the one at floor(u * count)."""
    choices = [v for v in range(low, high + 1) if v != 0]
    return choices[_floor(u, len(choices))] if choices else 0


# ---- sequences and text -------------------------------------------------------------------


def _prepare_sequence(task: dict) -> dict:
    tokens = np.asarray(task["input"], dtype=np.int32)
    return {
        "kind": _kind(task),
        "input": tokens,
        "target": np.asarray(task["target"], dtype=np.int32),
        "content": np.flatnonzero(tokens >= NUM_SPECIAL),
        "alphabet": int(task.get("num_symbols") or 256),
    }


def _input_only_sequence(
    prepared: dict, row_seed: int, strength: dict, tokens: np.ndarray
) -> np.ndarray:
    for position, token in _edits(row_seed, strength, prepared["content"], prepared["alphabet"]):
        tokens[position] = token
    if "position_shift" in strength:
        tokens = np.roll(tokens, _shift(row_seed, strength, len(tokens)))
    return tokens


def _augment_sequence(prepared: dict, row_seed: int, strength: dict):
    source, target = prepared["input"].copy(), prepared["target"].copy()
    if prepared["kind"] == "parity" and "paraphrase" in strength:
        flips = np.array(
            [
                u < strength["paraphrase"] / 2
                for u in uniforms_scalar(row_seed, "paraphrase/flip", len(source))
            ],
            dtype=np.int32,
        )
        source ^= flips
        target ^= np.cumsum(flips) % 2
    return _input_only_sequence(prepared, row_seed, strength, source), target


def _augment_text(prepared: dict, row_seed: int, strength: dict):
    byte_map = np.arange(NUM_SPECIAL + 256)
    lower, upper = NUM_SPECIAL + ord("a"), NUM_SPECIAL + ord("A")
    perm = list(range(26))
    if "paraphrase" in strength:
        perm = _relabelling(row_seed, strength["paraphrase"], 26)
    swapcase = False
    if "format_variation" in strength:
        drawn = _drawn(row_seed, strength["format_variation"], 3)
        swapcase = drawn[0] and uniforms_scalar(row_seed, "format_variation/case", 1)[0] < 0.5
        if drawn[1] and uniforms_scalar(row_seed, "format_variation/whitespace", 1)[0] < 0.5:
            space, newline = NUM_SPECIAL + ord(" "), NUM_SPECIAL + ord("\n")
            byte_map[space], byte_map[newline] = newline, space
        separators = [NUM_SPECIAL + ord(c) for c in ",;|"]
        order = _shuffled(row_seed, "format_variation/separators", 3) if drawn[2] else [0, 1, 2]
        for k in range(3):
            byte_map[separators[k]] = separators[order[k]]
    for i in range(26):
        byte_map[lower + i] = (upper if swapcase else lower) + perm[i]
        byte_map[upper + i] = (lower if swapcase else upper) + perm[i]
    source = byte_map[prepared["input"]].astype(np.int32)
    target = byte_map[prepared["target"]].astype(np.int32)
    return _input_only_sequence(prepared, row_seed, strength, source), target


# ---- sudoku --------------------------------------------------------------------------------


def _prepare_sudoku(task: dict) -> dict:
    n = int(task["height"])
    box_rows = max(d for d in range(1, int(n**0.5) + 1) if n % d == 0)
    puzzle = np.asarray(task["input"], dtype=np.int32).reshape(n, n)
    return {
        "n": n,
        "box": (box_rows, n // box_rows),
        "input": puzzle,
        "target": np.asarray(task["target"], dtype=np.int32).reshape(n, n),
        "content": np.flatnonzero(puzzle.reshape(-1) >= NUM_SPECIAL),
        "alphabet": int(task.get("num_symbols") or 256),
    }


def _augment_sudoku(prepared: dict, row_seed: int, strength: dict):
    n, (box_rows, box_cols) = prepared["n"], prepared["box"]
    row_map, col_map, transpose = list(range(n)), list(range(n)), False
    if "format_variation" in strength:
        drawn = _drawn(row_seed, strength["format_variation"], 5)
        bands = (
            _shuffled(row_seed, "format_variation/bands", n // box_rows)
            if drawn[0]
            else range(n // box_rows)
        )
        stacks = (
            _shuffled(row_seed, "format_variation/stacks", n // box_cols)
            if drawn[1]
            else range(n // box_cols)
        )
        row_keys = uniforms_scalar(row_seed, "format_variation/rows", n)
        col_keys = uniforms_scalar(row_seed, "format_variation/cols", n)
        row_map = [
            bands[b] * box_rows
            + (
                sorted(range(box_rows), key=lambda p, b=b: row_keys[b * box_rows + p])[q]
                if drawn[2]
                else q
            )
            for b in range(n // box_rows)
            for q in range(box_rows)
        ]
        col_map = [
            stacks[s] * box_cols
            + (
                sorted(range(box_cols), key=lambda p, s=s: col_keys[s * box_cols + p])[q]
                if drawn[3]
                else q
            )
            for s in range(n // box_cols)
            for q in range(box_cols)
        ]
        transpose = (
            drawn[4]
            and uniforms_scalar(row_seed, "format_variation/transpose", 1)[0] < 0.5
            and box_rows == box_cols
        )
    where = np.arange(n * n).reshape(n, n)[np.ix_(row_map, col_map)]
    puzzle = prepared["input"][np.ix_(row_map, col_map)]
    solution = prepared["target"][np.ix_(row_map, col_map)]
    if transpose:
        where, puzzle, solution = where.T, puzzle.T, solution.T
    if "paraphrase" in strength:
        perm = _relabelling(row_seed, strength["paraphrase"], n)
        table = np.arange(NUM_SPECIAL + n + 1)
        table[NUM_SPECIAL + 1 :] = NUM_SPECIAL + 1 + np.array(perm)
        puzzle, solution = table[puzzle], table[solution]
    puzzle = puzzle.copy()
    landing = np.empty(n * n, dtype=np.int64)
    landing[where.reshape(-1)] = np.arange(n * n)
    flat = puzzle.reshape(-1)
    for position, token in _edits(row_seed, strength, prepared["content"], prepared["alphabet"]):
        flat[landing[position]] = token
    if "position_shift" in strength:
        shift = (_shift(row_seed, strength, n, 0), _shift(row_seed, strength, n, 1))
        puzzle = np.roll(puzzle, shift, axis=(0, 1))
    return puzzle.reshape(-1).astype(np.int32), solution.reshape(-1).astype(np.int32)


# ---- other grids ---------------------------------------------------------------------------


def _prepare_grid(task: dict) -> dict:
    height, width = int(task["height"]), int(task["width"])
    canvases = [
        np.asarray(task[name], dtype=np.int32).reshape(height, width)
        for name in ("input", "target")
    ]
    marked = any((c == EOS).any() for c in canvases)
    boxes = []
    for canvas in canvases:
        cells = np.argwhere((canvas != PAD) & (canvas != EOS))
        boxes.append((cells.min(0), cells.max(0)) if len(cells) else None)
    present = [b for b in boxes if b is not None]
    top = min(int(b[0][0]) for b in present) if present else 0
    left = min(int(b[0][1]) for b in present) if present else 0
    bottom = max(int(b[1][0]) for b in present) if present else -1
    right = max(int(b[1][1]) for b in present) if present else -1
    sizes = []
    for box in boxes:
        if not marked:
            sizes.append((bottom - top + 1, right - left + 1))
        else:
            sizes.append((int(box[1][0]) - top + 1, int(box[1][1]) - left + 1) if box else (0, 0))
    return {
        "height": height,
        "width": width,
        "canvases": canvases,
        "marked": marked,
        "top": top,
        "left": left,
        "sizes": sizes,
        "content": np.flatnonzero(canvases[0].reshape(-1) >= NUM_SPECIAL),
        "alphabet": int(task.get("num_symbols") or 256),
    }


def _place(
    block: np.ndarray, y: int, x: int, height: int, width: int, marked: bool, fill
) -> np.ndarray:
    canvas = np.full((height, width), fill, dtype=np.int64)
    h, w = block.shape
    canvas[y : y + h, x : x + w] = block
    if marked and fill == PAD:
        if y + h < height:
            canvas[y + h, x : x + w] = EOS
        if x + w < width:
            canvas[y : y + h, x + w] = EOS
    return canvas


def _augment_grid(prepared: dict, row_seed: int, strength: dict):
    height, width, marked = prepared["height"], prepared["width"], prepared["marked"]
    top, left = prepared["top"], prepared["left"]
    element, translate = 0, False
    if "format_variation" in strength:
        drawn = _drawn(row_seed, strength["format_variation"], 2)
        if drawn[0]:
            elements = 8 if height == width else 4
            element = _floor(uniforms_scalar(row_seed, "format_variation/dihedral", 1)[0], elements)
        translate = drawn[1]
    table = np.arange(NUM_SPECIAL + 256)
    if "paraphrase" in strength and prepared["alphabet"] > 1:
        perm = _relabelling(row_seed, strength["paraphrase"], prepared["alphabet"] - 1)
        table[NUM_SPECIAL + 1 : NUM_SPECIAL + prepared["alphabet"]] = (
            NUM_SPECIAL + 1 + np.array(perm)
        )
    blocks, where_blocks = [], []
    for canvas, (h, w) in zip(prepared["canvases"], prepared["sizes"], strict=True):
        index = np.arange(height * width).reshape(height, width)
        blocks.append(table[apply_dihedral_2d(canvas[top : top + h, left : left + w], element)])
        where_blocks.append(apply_dihedral_2d(index[top : top + h, left : left + w], element))
    span_h = max(b.shape[0] for b in blocks)
    span_w = max(b.shape[1] for b in blocks)
    if translate:
        u = uniforms_scalar(row_seed, "format_variation/translate", 2)
        y, x = _floor(u[0], height - span_h + 1), _floor(u[1], width - span_w + 1)
    elif marked:
        y, x = min(top, height - span_h), min(left, width - span_w)
    else:  # where the whole-canvas transform takes the block
        y, x = (left, top) if element & 4 else (top, left)
        if element & 1:
            y = height - y - span_h
        if element & 2:
            x = width - x - span_w
    target = _place(blocks[1], y, x, height, width, marked, PAD)
    corner, rolls = [y, x], [0, 0]
    if "position_shift" in strength:
        corner, rolls = _input_shift(row_seed, strength, (y, x), blocks[0].shape, (height, width))
    source = _place(blocks[0], corner[0], corner[1], height, width, marked, PAD)
    landing = _place(where_blocks[0], corner[0], corner[1], height, width, False, -1).reshape(-1)
    position_of = np.full(height * width, -1, dtype=np.int64)
    position_of[landing[landing >= 0]] = np.flatnonzero(landing >= 0)
    flat = source.reshape(-1)
    for position, token in _edits(row_seed, strength, prepared["content"], prepared["alphabet"]):
        flat[position_of[position]] = token
    source = np.roll(source, rolls, axis=(0, 1))
    return source.reshape(-1).astype(np.int32), target.reshape(-1).astype(np.int32)


def _input_shift(row_seed: int, strength: dict, corner, extent, sides):
    """The input's corner after a translation, and the rolls for axes its block spans."""
    corner, rolls = list(corner), [0, 0]
    for axis in (0, 1):
        side = sides[axis]
        reach = _reach(strength["position_shift"], side)
        u = uniforms_scalar(row_seed, "position_shift/offset", 2)[axis]
        if extent[axis] == side:
            rolls[axis] = _nonzero(u, -reach, reach)
        else:
            low = max(-corner[axis], -reach)
            high = min(side - corner[axis] - extent[axis], reach)
            corner[axis] += _nonzero(u, low, high)
    return corner, rolls


_PREPARE = {
    "sudoku": _prepare_sudoku,
    "grid": _prepare_grid,
    "parity": _prepare_sequence,
    "sequence": _prepare_sequence,
    "text": _prepare_sequence,
}
_AUGMENT = {
    "sudoku": _augment_sudoku,
    "grid": _augment_grid,
    "parity": _augment_sequence,
    "sequence": _augment_sequence,
    "text": _augment_text,
}
