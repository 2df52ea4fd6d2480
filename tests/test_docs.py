"""The README and docs/ pages stay true: their links resolve, every docs page is reachable
from the README, and the commands they show name jobs, flags and make targets that exist.

Cheap on purpose (no Ray, no MLflow run): a command's flags are checked by the job's own
``parse_args``, so a renamed or removed flag fails here, not in a user's terminal.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from sweep_fixtures import job

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]

LINK = re.compile(r"\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")
FENCE = re.compile(r"```(?:bash|sh)?\n(.*?)```", re.S)
JOB_COMMAND = re.compile(r"python (jobs/\w+\.py)((?: [^#|;&]*)?)")
MAKE_COMMAND = re.compile(r"^\s*make ([a-z][\w-]*)", re.M)


def relative_links(page: Path) -> list[str]:
    found = [a or b for a, b in LINK.findall(page.read_text())]
    return [link for link in found if not re.match(r"[a-z]+:", link)]


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors: a heading lowercased, punctuation dropped, spaces as dashes."""
    anchors = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def shown_commands(page: Path) -> list[str]:
    """Each command of the page's shell blocks, continuation lines joined, comments off."""
    commands = []
    for block in FENCE.findall(page.read_text()):
        for command in block.replace("\\\n", " ").splitlines():
            commands.append(command.split(" #")[0].strip())
    return [c for c in commands if c]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no file {target.relative_to(ROOT)}")
        elif anchor and target.suffix == ".md" and anchor not in heading_anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {target.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in relative_links(README)}
    unlinked = [p.name for p in DOCS if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_the_readme_shows_the_two_commands_and_stays_a_front_page() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
    assert len(text.splitlines()) < 150, "the README is a front page; the manual goes in docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_shown_job_commands_parse(page: Path) -> None:
    """Every ``python jobs/X.py ...`` shown parses with that job's own argument parser."""
    checked = 0
    for command in shown_commands(page):
        for script, args in JOB_COMMAND.findall(command):
            assert (ROOT / script).is_file(), f"{page.name}: {script} does not exist"
            shown = re.sub(r"<[^>]*>|(?<!\S)\.\.\.(?!\S)", "", args)  # <placeholders>, ...
            argv = shlex.split(shown.replace("$(", "(").replace(")", ""))
            try:
                job(Path(script).stem).parse_args(argv)
            except SystemExit as stop:
                pytest.fail(f"{page.name}: `{command}` does not parse (exit {stop.code})")
            checked += 1
    if page.name in ("training.md", "sweeps.md"):
        assert checked, f"{page.name} shows no job command: the pattern no longer finds them"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_shown_make_targets_exist(page: Path) -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    shown = {t for c in shown_commands(page) for t in MAKE_COMMAND.findall(c)}
    assert shown <= targets, f"{page.name} shows make targets that do not exist: {shown - targets}"
