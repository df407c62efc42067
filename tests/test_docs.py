"""The documentation's Python examples run: every ```python block of the pages under docs/, in order,
one page at a time in a fresh temporary folder, so a page's blocks share their variables and the
examples make their own small data (docs/development.md, "The code examples are tested").

Markers, MyST comments on the line just before a block (invisible on the site):
    % test: skip          the block is not run
    % test: write PATH    the block is written to PATH in the temporary folder instead of run
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(
    r"^(?:% test: (?P<marker>skip|write (?P<path>\S+))\n)?```python\n(?P<code>.*?)^```[ \t]*$", re.M | re.S
)
MARKER = re.compile(r"^% test:.*$", re.M)


@dataclass
class Block:
    line: int  # of the block's first line of code in its page
    code: str
    skip: bool = False
    write: str | None = None


def blocks(text: str) -> list[Block]:
    """The ```python blocks of a page with their markers."""
    found = []
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start("code")) + 1
        marker = m.group("marker") or ""
        found.append(Block(line, m.group("code"), skip=marker == "skip", write=m.group("path")))
    return found


def pages() -> list[Path]:
    """The pages built into the site (HARDENING.md is included, not a page; _build is output)."""
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts and p.name != "HARDENING.md")


PAGES = [p for p in pages() if blocks(p.read_text())]


def test_blocks_and_markers_are_found():
    text = "% test: skip\n```python\nx = 1\n```\n\n% test: write pkg/m.py\n```python\ny = 2\n```\n```python\nz\n```\n"
    found = blocks(text)
    assert [(b.skip, b.write, b.code, b.line) for b in found] == [
        (True, None, "x = 1\n", 3),
        (False, "pkg/m.py", "y = 2\n", 8),
        (False, None, "z\n", 11),
    ]


def test_every_marker_belongs_to_a_block():
    """A marker with a typo, or a blank line between it and its block, would silently run or skip
    the block: each `% test:` line must be one the runner reads."""
    for page in pages():
        text = page.read_text()
        used = {m.start() for m in BLOCK.finditer(text) if m.group("marker")}
        stray = [m.group(0) for m in MARKER.finditer(text) if m.start() not in used]
        assert not stray, f"{page.relative_to(DOCS)}: markers not right above a ```python block: {stray}"


def test_the_guides_have_examples():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    guides = {p.relative_to(DOCS).as_posix() for p in (DOCS / "guides").glob("*.md")}
    assert guides and guides <= names, f"guides without a Python example: {sorted(guides - names)}"


@pytest.fixture
def clean_registry():
    """Models registered by a page's examples (mypkg.models) are forgotten after it, and so are
    the modules imported from its temporary folder."""
    from aekit.models import registry

    def forget_mypkg():  # another test's mypkg (tests/models) may be imported already
        for name in [m for m in sys.modules if m.split(".")[0] == "mypkg"]:
            del sys.modules[name]

    saved = {name: dict(getattr(registry, name)) for name in ("_REGISTRY", "_DESCRIPTIONS")}
    forget_mypkg()
    yield
    for name, value in saved.items():
        getattr(registry, name).clear()
        getattr(registry, name).update(value)
    forget_mypkg()


@pytest.mark.e2e
@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_examples_run(page: Path, tmp_path: Path, monkeypatch, clean_registry):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {"__name__": "__main__"}
    name = str(page.relative_to(DOCS.parent))
    for block in blocks(page.read_text()):
        if block.skip:
            continue
        if block.write:
            target = tmp_path / block.write
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code)
            continue
        # blank lines first, so that a traceback names the page's own line numbers
        exec(compile("\n" * (block.line - 1) + block.code, name, "exec"), namespace)
