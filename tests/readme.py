"""README.md's code blocks, as the README tests read them (tests/test_examples_and_readme.py).

A block is a fenced code block. Its language tag says how it runs: ``sh`` (also ``bash``,
``shell``) through bash, ``python`` (also ``py``) through the test suite's Python; a block with no
tag (a file listing) is text and never runs; any other tag is an error, so that a new block cannot
slip past the tests by its spelling.

An HTML comment on the line right before the opening fence marks a block that cannot run as it
is, with the reason after the colon:

* ``<!-- not run: needs tastytrade credentials -->`` -- skipped (the reason is required);
* ``<!-- runs until stopped -->`` -- serves or streams until Ctrl-C: it is run until it has
  printed its first line, then stopped.

Any other comment there is an error.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Final

README: Final = Path(__file__).resolve().parent.parent / "README.md"
#: language tag -> how the block runs ("" for text that never runs)
LANGUAGES: Final = {
    "sh": "sh",
    "bash": "sh",
    "shell": "sh",
    "python": "python",
    "py": "python",
    "": "",
    "text": "",
}
NOT_RUN: Final = "not run"
UNTIL_STOPPED: Final = "runs until stopped"
_FENCE = re.compile(r"^\s*```(\S*)\s*$")  # indented too (in a list item)
_MARK = re.compile(r"^<!--\s*(?P<kind>[^:]*?)\s*(?::\s*(?P<reason>.*?))?\s*-->$")


class ReadmeError(ValueError):
    """A block the tests cannot classify (unknown language tag or marker)."""


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, how it runs, and its marker."""

    line: int  # 1-based line of the opening fence
    heading: str  # the nearest heading above it
    lang: str  # "sh", "python" or "" (text)
    code: str
    mark: str | None = None  # NOT_RUN, UNTIL_STOPPED or None
    reason: str = ""

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.heading})"


def blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README (or of ``text``), in order.

    Raises:
        ReadmeError: an unknown language tag, an unknown marker, a ``not run`` marker without a
            reason, or a fence that is never closed.
    """
    lines = (README.read_text() if text is None else text).splitlines()
    found: list[Block] = []
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            i += 1
            continue
        tag = fence.group(1)
        if tag not in LANGUAGES:
            raise ReadmeError(f"line {i + 1}: unknown language tag {tag!r}: use one of {LANGUAGES}")
        mark, reason = None, ""
        before = lines[i - 1].strip() if i else ""
        if before.startswith("<!--"):
            m = _MARK.match(before)
            if m is None or m.group("kind") not in (NOT_RUN, UNTIL_STOPPED):
                raise ReadmeError(
                    f"line {i}: unknown block marker {before!r}: use "
                    f"'<!-- {NOT_RUN}: REASON -->' or '<!-- {UNTIL_STOPPED} -->'"
                )
            mark, reason = m.group("kind"), m.group("reason") or ""
            if mark == NOT_RUN and not reason:
                raise ReadmeError(
                    f"line {i}: say why the block is not run: '<!-- not run: WHY -->'"
                )
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ReadmeError(f"line {i + 1}: the code block is never closed")
        code = textwrap.dedent("\n".join(lines[i + 1 : end]) + "\n")
        found.append(Block(i + 1, heading, LANGUAGES[tag], code, mark, reason))
        i = end + 1
    return found


def block_under(heading: str, lang: str = "python") -> Block:
    """The one ``lang`` block in the section ``heading``."""
    (block,) = [b for b in blocks() if b.heading == heading and b.lang == lang]
    return block
