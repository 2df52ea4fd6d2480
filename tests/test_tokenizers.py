"""Tokenizers: encode/decode round trips, shared special tokens, padding."""

from __future__ import annotations

import numpy as np
import pytest

from refiner.data.tokenizers import (
    EOS,
    MASK,
    MAX_SYMBOLS,
    NUM_SPECIAL,
    PAD,
    SEP,
    VOCAB_SIZE,
    ByteTokenizer,
    SymbolTokenizer,
    pad_to_length,
    tokenizer_for,
)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "naïve café",
        "日本語のテキスト",
        "emoji 🧩 and tabs\tnew\nlines",
        "\x00\x7f",
    ],
)
def test_byte_tokenizer_round_trips_utf8(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.int32
    assert len(ids) == len(text.encode("utf-8"))
    assert ids.size == 0 or (ids.min() >= NUM_SPECIAL and ids.max() < VOCAB_SIZE)
    assert tok.decode(ids) == text


def test_byte_tokenizer_decode_skips_special_tokens():
    tok = ByteTokenizer()
    ids = np.concatenate([[PAD, SEP], tok.encode("ab"), [EOS, MASK, PAD]])
    assert tok.decode(ids) == "ab"


@pytest.mark.parametrize("num_symbols", [2, 10, 256])
def test_symbol_tokenizer_round_trips(num_symbols):
    tok = SymbolTokenizer(num_symbols)
    symbols = np.random.default_rng(0).integers(0, num_symbols, size=(3, 7))
    ids = tok.encode(symbols)
    assert ids.shape == symbols.shape and ids.dtype == np.int32
    assert (ids == symbols + NUM_SPECIAL).all()
    assert tok.vocab_size == NUM_SPECIAL + num_symbols
    assert (tok.decode(ids.ravel()) == symbols.ravel()).all()
    assert tok.is_content(ids).all()


def test_symbol_tokenizer_keeps_special_tokens_when_asked():
    tok = SymbolTokenizer(10)
    ids = np.array([PAD, NUM_SPECIAL + 3, EOS, MASK])
    assert tok.decode(ids).tolist() == [3]
    # Special token t decodes to -1 - t, so it cannot be mistaken for a symbol.
    assert tok.decode(ids, strip_special=False).tolist() == [-1 - PAD, 3, -1 - EOS, -1 - MASK]
    assert tok.is_content(ids).tolist() == [False, True, False, False]


def test_symbol_tokenizer_rejects_out_of_range():
    with pytest.raises(ValueError, match="symbol out of range"):
        SymbolTokenizer(10).encode([0, 10])
    with pytest.raises(ValueError, match="symbol out of range"):
        SymbolTokenizer(10).encode([-1])
    with pytest.raises(ValueError, match="num_symbols"):
        SymbolTokenizer(MAX_SYMBOLS + 1)
    with pytest.raises(ValueError, match="num_symbols"):
        SymbolTokenizer(0)


def test_special_tokens_are_shared_and_distinct():
    assert len({PAD, MASK, SEP, EOS}) == NUM_SPECIAL
    assert max(PAD, MASK, SEP, EOS) < NUM_SPECIAL
    assert ByteTokenizer().vocab_size == SymbolTokenizer(MAX_SYMBOLS).vocab_size == VOCAB_SIZE


def test_tokenizer_for_task_types():
    assert isinstance(tokenizer_for("text"), ByteTokenizer)
    grid_tok = tokenizer_for("grid", 10)
    assert isinstance(grid_tok, SymbolTokenizer) and grid_tok.num_symbols == 10
    assert tokenizer_for("sequence").num_symbols == MAX_SYMBOLS


def test_pad_to_length_stacks_and_pads():
    tok = ByteTokenizer()
    seqs = [tok.encode("abc"), tok.encode(""), tok.encode("é")]
    out = pad_to_length(seqs, 5)
    assert out.shape == (3, 5) and out.dtype == np.int32
    assert tok.decode(out[0]) == "abc" and tok.decode(out[1]) == "" and tok.decode(out[2]) == "é"
    assert (out[1] == PAD).all()
    assert (pad_to_length([[7]], 3, pad=EOS) == [[7, EOS, EOS]]).all()


def test_pad_to_length_refuses_to_truncate():
    with pytest.raises(ValueError, match="sequence 1 has 4 tokens"):
        pad_to_length([[5], [5, 5, 5, 5]], 3)
