"""Exceptions shared by every layer of the harness.

Every error the harness raises on purpose derives from :class:`HarnessError`, so a CLI or
a test can tell "the library refused this input" from "the library has a bug".
"""

from __future__ import annotations


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
        # Lone surrogates (YAML "\ud800" escapes) would make the message unprintable.
        return f"{where}: {self.message}".encode("utf-8", "backslashreplace").decode()
