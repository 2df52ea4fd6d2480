"""Text pairs: jsonl lines ``{"input": str, "target": str}`` -> byte-tokenised task rows.

Without a file, a built-in sample is generated here (small deterministic string
transformations: reversing words, sorting letters, unit conversions, ...), so the text
path works offline with no data to fetch. ``size`` caps the bytes per side: the sample
only generates pairs that fit, while a longer pair in a user's file is an error (nothing
in a user's file is dropped silently). A ``val_fraction`` of the distinct inputs goes to
split "val", chosen by ``seed``; identical inputs always share a split.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa

from refiner.data.tokenizers import ByteTokenizer
from refiner.tasks.problems import MAX_REPORTED_PROBLEMS, Problem, TaskFileError
from refiner.tasks.schema import TASK_SCHEMA

NUM_SYMBOLS = 256
SAMPLE_COUNT = 256
PAIR_KEYS = ("input", "target")


def generate(
    count: int | None = None,
    size: int | None = None,
    seed: int = 0,
    input: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    **_: object,
) -> pa.Table:
    """Rows from the jsonl file ``input`` (its first ``count`` pairs) or the built-in sample."""
    if count is not None and count < 1:
        raise ValueError(f"text: count must be >= 1, got {count}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"text: val_fraction must be in [0, 1), got {val_fraction}")
    if input is None:
        pairs = sample_pairs(count or SAMPLE_COUNT, seed=seed, max_bytes=size)
        ids = [f"text-sample-{i:05d}" for i in range(len(pairs))]
    else:
        stem = Path(input).stem
        numbered = read_pairs(input, count=count, max_bytes=size)
        pairs = [(source, target) for source, target, _ in numbered]
        ids = [f"text/{stem}/{line}" for _, _, line in numbered]
    tok = ByteTokenizer()
    rows = len(pairs)
    return pa.table(
        {
            "task_id": ids,
            "task_type": ["text"] * rows,
            "source": ["text"] * rows,
            "group_id": ids,
            "split": _val_split([source for source, _ in pairs], val_fraction, seed),
            "input": [tok.encode(source) for source, _ in pairs],
            "target": [tok.encode(target) for _, target in pairs],
            "height": pa.nulls(rows, pa.int32()),
            "width": pa.nulls(rows, pa.int32()),
            "num_symbols": np.full(rows, NUM_SYMBOLS, dtype=np.int32),
        },
        schema=TASK_SCHEMA,
    )


def read_pairs(
    path: str | os.PathLike, count: int | None = None, max_bytes: int | None = None
) -> list[tuple[str, str, int]]:
    """(input, target, line number) for each non-blank line, or TaskFileError naming lines."""
    origin = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise TaskFileError(origin, [Problem("no such file")]) from err
    except (OSError, UnicodeDecodeError) as err:
        raise TaskFileError(origin, [Problem(f"cannot read as UTF-8 text: {err}")]) from err
    pairs: list[tuple[str, str, int]] = []
    problems: list[Problem] = []
    total = 0
    row = 0
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        if count is not None and row >= count:
            break
        found = _line_problems(raw, max_bytes)
        if isinstance(found, tuple):
            pairs.append((*found, line))
        else:
            total += len(found)
            for field, message in found:
                if len(problems) < MAX_REPORTED_PROBLEMS:
                    problems.append(Problem(message, field=field, row=row, line=line))
        row += 1
    if total:
        raise TaskFileError(origin, problems, total)
    if not pairs:
        raise TaskFileError(origin, [Problem("no rows: the file holds no text pairs")])
    return pairs


def _line_problems(
    raw: str, max_bytes: int | None
) -> tuple[str, str] | list[tuple[str | None, str]]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        return [(None, f"invalid JSON: {err.msg} (column {err.colno})")]
    if not isinstance(obj, dict):
        return [(None, f"expected a JSON object, got {type(obj).__name__}")]
    found: list[tuple[str | None, str]] = []
    for key in PAIR_KEYS:
        if key not in obj:
            found.append((key, "missing key"))
        elif not isinstance(obj[key], str):
            found.append((key, f"expected a string, got {type(obj[key]).__name__}"))
        elif obj[key] == "":
            found.append((key, "empty string"))
        elif max_bytes is not None and len(obj[key].encode("utf-8")) > max_bytes:
            found.append(
                (key, f"{len(obj[key].encode('utf-8'))} bytes, more than size={max_bytes}")
            )
    found += [
        (key, "unknown key; a text pair has only input and target")
        for key in obj
        if key not in PAIR_KEYS
    ]
    return found or (obj["input"], obj["target"])


def _val_split(inputs: list[str], val_fraction: float, seed: int) -> list[str]:
    distinct = sorted(set(inputs))
    wanted = round(len(distinct) * val_fraction)
    if wanted >= len(distinct):
        wanted = len(distinct) - 1  # training always keeps something
    val = set(random.Random(f"text-split-{seed}").sample(distinct, wanted))
    return ["val" if source in val else "train" for source in inputs]


# -- the built-in sample ------------------------------------------------------------------

# A small vocabulary written for this sample; two words with non-ASCII letters keep the
# multi-byte path of the byte tokenizer exercised.
WORDS = (
    "apple bird cloud dance earth fire green house island jump kite lemon music night "
    "ocean paper quiet river stone table under voice water yellow zebra bread chair "
    "dream field glass heart light money north plant quick sugar train wheel young "
    "café naïve"
).split()
UNITS = (("km", "m", 1000), ("kg", "g", 1000), ("h", "min", 60), ("m", "cm", 100), ("min", "s", 60))


def _reverse_words(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(WORDS, rng.randint(2, 5))
    return "reverse words: " + " ".join(words), " ".join(reversed(words))


def _sort_letters(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS) + rng.choice(WORDS)
    return "sort letters: " + word, "".join(sorted(word))


def _convert_units(rng: random.Random) -> tuple[str, str]:
    big, small, factor = rng.choice(UNITS)
    amount = rng.randint(1, 99)
    return f"convert {amount} {big} to {small}", f"{amount * factor} {small}"


def _uppercase(rng: random.Random) -> tuple[str, str]:
    words = " ".join(rng.sample(WORDS, rng.randint(1, 4)))
    return "uppercase: " + words, words.upper()


def _count_vowels(rng: random.Random) -> tuple[str, str]:
    words = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
    return "count vowels: " + words, str(sum(ch in "aeiou" for ch in words))


TRANSFORMS = (_reverse_words, _sort_letters, _convert_units, _uppercase, _count_vowels)


def sample_pairs(
    count: int = SAMPLE_COUNT, seed: int = 0, max_bytes: int | None = None
) -> list[tuple[str, str]]:
    """``count`` distinct (input, target) pairs from the built-in transformations."""
    rng = random.Random(f"text-sample-{seed}")
    pairs: dict[str, str] = {}
    for _ in range(200 * count):
        if len(pairs) == count:
            return list(pairs.items())
        source, target = rng.choice(TRANSFORMS)(rng)
        if max_bytes is not None and max(len(source.encode()), len(target.encode())) > max_bytes:
            continue
        pairs.setdefault(source, target)
    raise ValueError(
        f"text: the built-in sample cannot make {count} distinct pairs"
        + (f" of at most {max_bytes} bytes" if max_bytes is not None else "")
    )
