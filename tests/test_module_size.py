"""Every module of the package stays small: at most MAX_MODULE_LINES lines.

A module that grows past it is split by concern (README, "Where to change what"), not
given an exemption; an exemption names the module and the reason, and goes once the
module is split.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_layers import PACKAGE, ROOT, package_files

MAX_MODULE_LINES = 450

EXEMPT: dict[str, str] = {}  # module path -> why it may be longer (none today)


def lines_over(path: Path, source: str | None = None) -> int:
    """How many lines `path` (or `source`) has past the limit (0: within it)."""
    text = path.read_text() if source is None else source
    return max(0, len(text.splitlines()) - MAX_MODULE_LINES)


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_at_most_450_lines(path: Path) -> None:
    name = str(path.relative_to(ROOT))
    if name in EXEMPT:
        pytest.skip(f"{name}: {EXEMPT[name]}")
    over = lines_over(path)
    assert over == 0, f"{name} is {over} lines over {MAX_MODULE_LINES}: split it by concern"


def test_the_exemptions_name_real_modules_still_over_the_limit() -> None:
    """An exemption that is no longer needed (the module was split or removed) goes."""
    for name in EXEMPT:
        path = ROOT / name
        assert path.exists(), f"exempt module {name} does not exist"
        assert lines_over(path) > 0, f"{name} is within {MAX_MODULE_LINES} lines: drop it"


def test_the_check_catches_a_long_module() -> None:
    path = PACKAGE / "model" / "network.py"
    assert lines_over(path, "x = 1\n" * (MAX_MODULE_LINES + 3)) == 3
    assert lines_over(path, "x = 1\n" * MAX_MODULE_LINES) == 0
