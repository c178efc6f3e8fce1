"""Exceptions shared by every layer of the harness.

Every error the harness raises on purpose derives from :class:`HarnessError`, so a CLI or
a test can tell "the library refused this input" from "the library has a bug".
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # (typing is not imported on the way to QEMU's start or --help)
if TYPE_CHECKING:
    from typing import Iterable

#: A quoted value of the input longer than this is shown cut (its start and its length):
#: an error repeating a 5000-character id or name whole is one unreadable line.
QUOTED_SHOWN = 80
#: A whole quoted literal, not the text between two: its quotes hug it, the outer sides do not.
_LONG_QUOTED = re.compile(r"(?<![\w'])'(?=\S)([^'\n]{%d,})(?<=\S)'(?!\w)" % (QUOTED_SHOWN + 1))


#: The ``source`` of an error in a command's options rather than in a file.
COMMAND_LINE = "the command line"

#: How many known names an "unknown name" error lists before it only counts them.
NAMES_SHOWN = 12


def closest_names(name: str, known: Iterable[str], most: int = 3, cutoff: float = 0.6) -> list[str]:
    """The known names closest to ``name`` (difflib's ratio, best first, ties in ``known``'s
    order).  Names that are paths (``machines/default``) are compared by their last parts:
    a shared folder makes no two names alike, and a name typed without it still matches."""
    import difflib  # only on an error's way
    matcher = difflib.SequenceMatcher(b=name.rsplit("/", 1)[-1])
    scored = []
    for candidate in dict.fromkeys(known):
        matcher.set_seq1(candidate.rsplit("/", 1)[-1])
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff and matcher.ratio() >= cutoff:
            scored.append((matcher.ratio(), candidate))
    return [c for _, c in sorted(scored, key=lambda s: -s[0])[:most]]


def unknown_name(what: str, name: str, known: Iterable[str], *, listed_by: str | None = None,
                 label: str | None = None, shown: int | None = NAMES_SHOWN) -> str:
    """The one message for a name that is none of ``known`` (a device model, an example, a
    driver, a matrix axis or value, a field): ``unknown WHAT 'NAME'``, the closest known names
    (``did you mean``), then where the others are: the command that lists them
    (``listed_by``), else the names themselves (``label``, default ``WHATs``): the first
    ``shown`` of them and how many there are (None: all, where no command lists them)."""
    names = list(dict.fromkeys(known))
    close = closest_names(name, names)
    text = f"unknown {what} {name!r}"
    if close:
        quoted = [repr(c) for c in close]
        text += f" (did you mean {' or '.join(filter(None, (', '.join(quoted[:-1]), quoted[-1])))}?)"
    if listed_by:
        return text + f"; '{listed_by}' lists all {len(names)}"
    cut = names if shown is None else names[:shown]
    listed = ", ".join(cut) + (f", ... ({len(names)} in all)" if len(cut) < len(names) else "")
    return text + f"; {label or what + 's'}: {listed or '(none)'}"


class HarnessError(Exception):
    """Base class of every error the harness raises deliberately."""


class ConfigError(HarnessError):
    """A configuration file or value is invalid.

    ``source`` names the file (or ``<inline>``), ``line`` is 1-based when known, and
    ``field`` is a dotted path such as ``devices[2].iobase``.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f": {self.field}"
        message = _LONG_QUOTED.sub(lambda m: f"'{m[1][:QUOTED_SHOWN - 20]}...' ({len(m[1])} characters)",
                                   self.message)
        # Lone surrogates (YAML "\ud800" escapes) would make the message unprintable.
        return f"{where}: {message}".encode("utf-8", "backslashreplace").decode()
