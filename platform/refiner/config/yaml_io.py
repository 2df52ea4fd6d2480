"""Strict YAML reading: a key given twice in one mapping is an error, not "last one wins".

PyYAML's ``safe_load`` silently keeps the last of two equal keys, so ``seed: 0`` followed
by ``seed: 1`` (a typo-level mistake) would run with seed 1 and say nothing. Every YAML
the platform reads (run configs, search spaces, sweep configs, ``--set`` values) goes
through ``load_strict``.
"""

from __future__ import annotations

from typing import IO, Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    """A mapping holds the same key twice; the message names the key and both lines."""

    def __init__(self, key: Any, line: int, first_line: int) -> None:
        self.key, self.line, self.first_line = key, line, first_line
        super().__init__(f"line {line}: duplicate key {key!r} (first given at line {first_line})")


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose mappings refuse duplicate keys (lines are 1-based)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may repeat
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(key, line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
        return super().construct_mapping(node, deep=deep)


def load_strict(stream: str | bytes | IO[str] | IO[bytes]) -> Any:
    """``yaml.safe_load`` that raises ``DuplicateKeyError`` for a key given twice."""
    return yaml.load(stream, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
