"""Exceptions shared by every layer of the harness.

Every error the harness raises on purpose derives from :class:`HarnessError`, so a CLI or
a test can tell "the library refused this input" from "the library has a bug".
"""

from __future__ import annotations

import re

#: A quoted value of the input longer than this is shown cut (its start and its length):
#: an error repeating a 5000-character id or name whole is one unreadable line.
QUOTED_SHOWN = 80
#: A whole quoted literal, not the text between two: its quotes hug it, the outer sides do not.
_LONG_QUOTED = re.compile(r"(?<![\w'])'(?=\S)([^'\n]{%d,})(?<=\S)'(?!\w)" % (QUOTED_SHOWN + 1))


#: The ``source`` of an error in a command's options rather than in a file.
COMMAND_LINE = "the command line"


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
