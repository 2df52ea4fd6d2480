"""Text: jsonl pairs to byte tokens, errors naming file and line, the built-in sample."""

from __future__ import annotations

import json

import pytest

from refiner.data.tokenizers import ByteTokenizer
from refiner.tasks.io import TaskFileError, validate_table
from refiner.tasks.sources import text


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pair(source, target):
    return json.dumps({"input": source, "target": target}, ensure_ascii=False)


def test_file_pairs_become_byte_rows(tmp_path):
    path = write_lines(tmp_path / "pairs.jsonl", [pair("abc", "cba"), "", pair("naïve ☃", "ok")])
    table = text.generate(input=path, val_fraction=0)
    validate_table(table)
    tok = ByteTokenizer()
    decoded = [
        (tok.decode(i), tok.decode(t))
        for i, t in zip(
            table.column("input").to_pylist(), table.column("target").to_pylist(), strict=True
        )
    ]
    assert decoded == [("abc", "cba"), ("naïve ☃", "ok")]
    assert table.column("task_id").to_pylist() == ["text/pairs/1", "text/pairs/3"]
    assert set(table.column("task_type").to_pylist()) == {"text"}
    assert set(table.column("num_symbols").to_pylist()) == {256}
    assert table.column("height").null_count == 2


def test_count_takes_the_first_pairs(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [pair(f"in{i}", f"out{i}") for i in range(10)])
    table = text.generate(count=4, input=path)
    assert table.num_rows == 4
    assert ByteTokenizer().decode(table.column("input")[3].as_py()) == "in3"


def test_val_split_is_seeded_and_keeps_identical_inputs_together(tmp_path):
    lines = [pair(f"in{i % 20}", f"out{i}") for i in range(60)]
    path = write_lines(tmp_path / "p.jsonl", lines)
    a = text.generate(input=path, seed=1, val_fraction=0.25)
    assert (
        a.column("split").to_pylist()
        == text.generate(input=path, seed=1, val_fraction=0.25)["split"].to_pylist()
    )
    split_of = {}
    for source, split in zip(
        a.column("input").to_pylist(), a.column("split").to_pylist(), strict=True
    ):
        split_of.setdefault(tuple(source), set()).add(split)
    assert all(len(s) == 1 for s in split_of.values())
    assert sum("val" in s for s in split_of.values()) == 5


@pytest.mark.parametrize(
    "line,field,message",
    [
        ('{"input": "a"}', "target", "missing key"),
        ('{"input": "a", "target": 3}', "target", "expected a string, got int"),
        ('{"input": "", "target": "b"}', "input", "empty string"),
        ('{"input": "a", "target": "b", "extra": 1}', "extra", "unknown key"),
        ('{"input": "a", "target": "b"', None, "invalid JSON"),
        ('["a", "b"]', None, "expected a JSON object"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, line, field, message):
    path = write_lines(tmp_path / "bad.jsonl", [pair("x", "y"), "", line])
    with pytest.raises(TaskFileError) as caught:
        text.generate(input=path)
    err = str(caught.value)
    assert str(path) in err and "line 3" in err and "row 1" in err and message in err
    if field:
        assert f"field {field!r}" in err


def test_all_bad_lines_are_reported_together(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", ['{"input": 1}', pair("ok", "ok"), "nope"])
    with pytest.raises(TaskFileError) as caught:
        text.generate(input=path)
    assert caught.value.total == 3
    assert {p.line for p in caught.value.problems} == {1, 3}


def test_size_bounds_a_users_pairs(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [pair("short", "s"), pair("much too long", "s")])
    with pytest.raises(TaskFileError, match=r"line 2.*field 'input': 13 bytes, more than size=8"):
        text.generate(input=path, size=8)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(TaskFileError, match="no such file"):
        text.generate(input=tmp_path / "none.jsonl")
    with pytest.raises(TaskFileError, match="no text pairs"):
        text.generate(input=write_lines(tmp_path / "e.jsonl", ["", "  "]))


def test_builtin_sample_works_offline_and_is_deterministic():
    table = text.generate()
    validate_table(table)
    assert table.num_rows == text.SAMPLE_COUNT >= 200
    assert table.equals(text.generate())
    tok = ByteTokenizer()
    sources = [tok.decode(x) for x in table.column("input").to_pylist()]
    assert len(set(sources)) == len(sources)
    assert {"train", "val"} == set(table.column("split").to_pylist())
    pairs = dict(text.sample_pairs(300))
    factors = {(big, small): factor for big, small, factor in text.UNITS}
    for source, target in pairs.items():
        if source.startswith("convert "):
            _, amount, big, _, small = source.split()
            assert target == f"{int(amount) * factors[big, small]} {small}"
        if source.startswith("reverse words: "):
            assert target.split() == source.removeprefix("reverse words: ").split()[::-1]
        if source.startswith("sort letters: "):
            assert target == "".join(sorted(source.removeprefix("sort letters: ")))


def test_builtin_sample_respects_size_and_count():
    table = text.generate(count=30, size=24)
    assert table.num_rows == 30
    assert max(len(x) for x in table.column("input").to_pylist()) <= 24
    with pytest.raises(ValueError, match="cannot make 10 distinct pairs of at most 3 bytes"):
        text.sample_pairs(10, max_bytes=3)
