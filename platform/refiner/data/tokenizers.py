"""Tokenizers sharing one vocabulary layout.

Every token id space starts with the same special tokens, followed by "content" ids.
The symbol tokenizer (grids, sequences) maps symbol ``s`` to ``NUM_SPECIAL + s``; the
byte tokenizer maps byte ``b`` to ``NUM_SPECIAL + b``. Both therefore fit in
``VOCAB_SIZE = NUM_SPECIAL + 256`` ids, so one model can read every task type.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD = 0  # empty cell / past the end; a legitimate prediction ("nothing here")
MASK = 1  # an input position hidden by the `masking` augmentation
SEP = 2  # separates segments (e.g. demonstration pairs) inside one sequence
EOS = 3  # end of a variable-length answer
SPECIAL_TOKENS = {"PAD": PAD, "MASK": MASK, "SEP": SEP, "EOS": EOS}
NUM_SPECIAL = len(SPECIAL_TOKENS)
MAX_SYMBOLS = 256
VOCAB_SIZE = NUM_SPECIAL + MAX_SYMBOLS


class SymbolTokenizer:
    """Symbols ``0..num_symbols-1`` (grid colours, sudoku digits, bits) <-> token ids."""

    def __init__(self, num_symbols: int) -> None:
        if not 1 <= num_symbols <= MAX_SYMBOLS:
            raise ValueError(f"num_symbols must be in [1, {MAX_SYMBOLS}], got {num_symbols}")
        self.num_symbols = num_symbols
        self.vocab_size = NUM_SPECIAL + num_symbols

    def encode(self, symbols: Sequence[int] | np.ndarray) -> np.ndarray:
        arr = np.asarray(symbols, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_symbols):
            raise ValueError(
                f"symbol out of range [0, {self.num_symbols}): "
                f"min={int(arr.min())}, max={int(arr.max())}"
            )
        return (arr + NUM_SPECIAL).astype(np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray, strip_special: bool = True) -> np.ndarray:
        """Token ids -> symbols. Special tokens are dropped (or kept as -1-id when not)."""
        arr = np.asarray(ids, dtype=np.int64)
        symbols = arr - NUM_SPECIAL
        if strip_special:
            return symbols[arr >= NUM_SPECIAL].astype(np.int32)
        return np.where(arr >= NUM_SPECIAL, symbols, -1 - arr).astype(np.int32)

    def is_content(self, ids: np.ndarray) -> np.ndarray:
        return (ids >= NUM_SPECIAL) & (ids < self.vocab_size)


class ByteTokenizer:
    """UTF-8 text <-> token ids, one id per byte."""

    vocab_size = VOCAB_SIZE

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) + NUM_SPECIAL

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        arr = np.asarray(ids, dtype=np.int64)
        content = arr[(arr >= NUM_SPECIAL) & (arr < VOCAB_SIZE)] - NUM_SPECIAL
        return content.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def tokenizer_for(
    task_type: str, num_symbols: int | None = None
) -> SymbolTokenizer | ByteTokenizer:
    """The tokenizer a task type uses: bytes for text, symbols otherwise."""
    if task_type == "text":
        return ByteTokenizer()
    return SymbolTokenizer(num_symbols or MAX_SYMBOLS)


def pad_to_length(
    seqs: Sequence[Sequence[int] | np.ndarray], length: int, pad: int = PAD
) -> np.ndarray:
    """Stack variable-length id sequences into an int32 ``[len(seqs), length]`` array.

    Raises if a sequence is longer than ``length`` (silently truncating an answer would
    corrupt its label).
    """
    out = np.full((len(seqs), length), pad, dtype=np.int32)
    for i, seq in enumerate(seqs):
        n = len(seq)
        if n > length:
            raise ValueError(f"sequence {i} has {n} tokens, longer than the padded length {length}")
        out[i, :n] = seq
    return out
