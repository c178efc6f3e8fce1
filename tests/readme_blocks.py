"""The README's fenced blocks, with the marks that say how a test runs them.

A block runs by its language unless the HTML comment line right above it says otherwise:

* ``sh``: each line is a command run with ``sh -c`` in a scratch folder; it must exit 0,
  or 1 when its trailing comment says ``exit 1``;
* ``python``: run in one namespace shared by the README's Python blocks, in order;
* ``yaml``: a machine file, validated;
* ``<!-- readme-test: skip: WHY -->``: not run here, for the reason given (which names
  where it is covered);
* ``<!-- readme-test: fragment: WHY -->``: only parsed (a piece of a larger whole);
* ``<!-- readme-test: file PATH; run COMMAND; ... -->``: written to PATH (relative to
  the scratch folder) and/or commands run before the block's own.

Blocks under the heading "Use it in your project" are run by tests/test_user_project.py
in a fresh venv with the installed wheel; the others by tests/test_readme.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from helpers import REPO

USER_SECTION = "Use it in your project"
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    line: int              # 1-based line of the opening fence
    lang: str
    text: str
    section: str
    skip: str = ""
    fragment: str = ""
    file: str = ""
    before: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"


def blocks(path: Path = REPO / "README.md") -> list[Block]:
    lines = path.read_text().splitlines()
    out: list[Block] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        fence = _FENCE.match(line)
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        block = Block(i + 1, fence.group(1), "\n".join(lines[i + 1:end]) + "\n", section)
        mark = _MARK.match(lines[i - 1]) if i else None
        if mark:
            _apply(block, mark.group(1))
        out.append(block)
        i = end + 1
    return out


def _apply(block: Block, text: str) -> None:
    for part in (p.strip() for p in text.split("; ")):
        word, _, rest = part.partition(" ")
        if word in ("skip:", "fragment:"):
            setattr(block, word[:-1], text.split(":", 1)[1].strip() or "?")
            return
        if word == "file":
            block.file = rest
        elif word == "run":
            block.before.append(rest)
        else:
            raise ValueError(f"{block.where}: unknown readme-test mark {part!r}")


def commands(block: Block) -> list[tuple[str, int]]:
    """(command, expected exit status) of each command line of an sh block."""
    out = []
    for line in block.text.splitlines():
        command, _, comment = line.partition("  #")
        if command.strip():
            out.append((command.strip(), 1 if re.search(r"\bexit 1\b", comment) else 0))
    return out
