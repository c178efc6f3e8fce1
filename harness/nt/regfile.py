r"""regedit text files ("Windows Registry Editor Version 5.00") to and from a :class:`Registry`.

So a ResourceMap produced by the harness can be opened on a Windows box, and a Windows
export of ``HKEY_LOCAL_MACHINE\HARDWARE`` can be loaded here (nt-semantics.md §1.10 types).

Format as regedit 5.00 writes it:

* UTF-16LE with a BOM and CRLF line ends (import also takes UTF-8, with or without BOM);
* a header line, then ``[HKEY_LOCAL_MACHINE\...]`` sections separated by blank lines;
  ``\Registry\Machine`` ↔ ``HKEY_LOCAL_MACHINE``, ``\Registry\User`` ↔ ``HKEY_USERS``;
* ``"name"=`` (``\`` and ``"`` escaped with ``\``) or ``@=`` for the default value, then
  ``"string"`` (REG_SZ), ``dword:0000000a`` (REG_DWORD), ``hex:`` (REG_BINARY) or
  ``hex(N):`` with N the type in hex (``hex(2)`` expand-sz, ``hex(7)`` multi-sz, ``hex(8)``
  resource list, ``hex(9)`` full resource descriptor, ``hex(a)`` requirements list,
  ``hex(b)`` qword…); string types in hex form are UTF-16LE bytes;
* hex lists wrap with ``,\`` once a line reaches 77 characters (regedit/Wine's limit of
  25 bytes per continuation line: 2 spaces + 25×3), continuation lines indented by two
  spaces; ``[-KEY]`` deletes a key tree and ``"name"=-`` a value (import only).

Export is exact: a REG_SZ/REG_DWORD whose bytes are not the canonical form of a string or
a 4-byte number (missing terminator, embedded line breaks or NULs, wrong size) is written in
``hex(1):``/``hex(4):`` form, so importing the file restores the same bytes.

Import reads the dialect regedit accepts, as Wine's regedit implements it
(``programs/regedit/regproc.c``, a line-by-line state machine):

* the header on line 1 (blanks before it allowed): ``Windows Registry Editor Version 5.00``
  or ``REGEDIT4``; the encoding comes from the bytes, not the header: UTF-16LE with a BOM,
  or an "ANSI" file (read as UTF-8, a UTF-8 BOM allowed, or in the Windows code page the
  caller names: ``ansi_codepage="cp1252"``, ``--ansi-codepage``, for a REGEDIT4 export of a
  machine whose names are not ASCII; no code page is guessed). In an ANSI file string types in
  hex form (``hex(1)``, ``hex(2)``, ``hex(7)``) are ANSI bytes, stored as UTF-16LE with a
  terminating NUL added when missing; in a UTF-16 file they are stored as written (Wine
  would add a missing terminator there too; the exact bytes keep export→import lossless);
* lines end at CRLF, LF or a lone CR, except a lone CR inside a quoted string, which is part
  of the string; blanks (space, tab) may precede any line and surround ``=``;
* ``;`` starts a comment line, and may follow a complete key line, value or continuation
  ``\``; blank lines and comment lines inside a hex continuation are skipped, and a file
  that ends right after ``\`` ends the value there (as Wine does);
* type prefixes are matched case-insensitively, as regedit accepts ``DWORD:``/``HEX:``
  (Wine's regproc.c compares them case-sensitively);
  ``dword:`` takes 1 to 8 hex digits; ``hex(N):`` any N up to ``ffffffff``; hex bytes are
  1 or 2+ digits up to ff separated by ``,`` (blanks before a byte allowed, not before a
  comma), a trailing comma allowed;
* strings and names unescape ``\\``, ``\"``, ``\n``, ``\r``, ``\0`` (a REG_SZ ends at
  a ``\0``, as regedit stores it) and read any other ``\c`` as ``c``;
* the key name runs to the last ``]`` of the line; ``[-KEY]`` deletes a key tree (a
  missing one is no error; values after it need a new ``[KEY]`` line); ``"name"=-``
  deletes a value.

Wine skips a line it cannot read and goes on; here such a line refuses the whole file
(:class:`~harness.nt.errors.RegFileError` naming ``file:line`` and what was expected) and
nothing is applied: the import is one transaction.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from pathlib import Path
from ..atomicio import write_bytes
from .errors import RegFileError, RegistryError, ResourceFormatError
from .resources import Arch, fitting_layouts
from .registry import (MACHINE, USER, RegType, Registry, RegistryValue, _RESOURCE_TYPES,
                       decode_value, encode_value, fold, split_path)

HEADER = "Windows Registry Editor Version 5.00"
HEX_LINE_LIMIT = 77  # characters before the trailing '\' (2 + 25 * 3)
_ROOTS = (("HKEY_LOCAL_MACHINE", MACHINE), ("HKEY_USERS", USER))


# ---------------------------------------------------------------------------------------
# Path mapping


def to_hkey(path: str) -> str:
    r"""``\REGISTRY\MACHINE\HARDWARE`` → ``HKEY_LOCAL_MACHINE\HARDWARE``."""
    parts = split_path(path)
    if not parts:
        raise RegistryError(r"\REGISTRY itself has no regedit name; export MACHINE or USER")
    for hkey, nt in _ROOTS:
        if fold(parts[0]) == fold(nt.rsplit("\\", 1)[1]):
            return "\\".join([hkey, *parts[1:]])
    raise RegistryError(f"{path} has no regedit root")  # split_path already limits roots


def from_hkey(name: str) -> str:
    r"""``HKEY_LOCAL_MACHINE\HARDWARE`` → ``\REGISTRY\MACHINE\HARDWARE`` (case-insensitive)."""
    head, _, rest = name.partition("\\")
    for hkey, nt in _ROOTS:
        if fold(head) == hkey:
            return nt + ("\\" + rest if rest else "")
    raise ValueError(f"root {head!r} is not HKEY_LOCAL_MACHINE or HKEY_USERS")


# ---------------------------------------------------------------------------------------
# Export


_NAME_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\0": "\\0", "\n": "\\n", "\r": "\\r"})


def _quote(text: str) -> str:
    """A quoted name or string, with regedit's escapes: ``\\0``, ``\\n``, ``\\r`` keep a
    NUL or a line break from ending the line (strings with them are exported in hex)."""
    return '"' + text.translate(_NAME_ESCAPES) + '"'


def _hex_form(prefix: str, data: bytes) -> list[str]:
    lines, line = [], prefix
    for i, byte in enumerate(data):
        line += f"{byte:02x}"
        if i == len(data) - 1:
            break
        line += ","
        if len(line) >= HEX_LINE_LIMIT:
            lines.append(line + "\\")
            line = "  "
    lines.append(line)
    return lines


def _one_line(text: str, what: str) -> str:
    if "\r" in text or "\n" in text:
        raise RegistryError(f"{what} {text!r} contains a line break, which the regedit "
                            "format cannot express")
    return text


def _value_lines(v: RegistryValue) -> list[str]:
    name = "@" if v.name == "" else _quote(v.name)
    if v.type == RegType.REG_SZ:
        try:
            text = decode_value(v.type, v.data)
            canonical = encode_value(text, RegType.REG_SZ)[1] == v.data
        except RegistryError:
            canonical = False
        if canonical and not any(c in text for c in "\r\n\0"):
            return [f"{name}={_quote(text)}"]
    if v.type == RegType.REG_DWORD and len(v.data) == 4:
        return [f"{name}=dword:{int.from_bytes(v.data, 'little'):08x}"]
    tag = "hex" if v.type == RegType.REG_BINARY else f"hex({v.type:x})"
    return _hex_form(f"{name}={tag}:", v.data)


def export_text(registry: Registry, path: str = MACHINE) -> str:
    """The .reg text (with CRLF line ends) for ``path`` and its subtree."""
    lines = [HEADER, ""]
    for key, values in registry.walk(path):
        if not split_path(key):
            continue  # \REGISTRY itself: walk on into MACHINE and USER
        lines.append(f"[{_one_line(to_hkey(key), 'key')}]")
        for v in values:
            lines.extend(_value_lines(v))
        lines.append("")
    return "\r\n".join(lines) + "\r\n"


def export_reg(registry: Registry, out: str | os.PathLike, path: str = MACHINE) -> None:
    """Write a .reg file as regedit does: UTF-16LE with a BOM."""
    write_bytes(out, b"\xff\xfe" + export_text(registry, path).encode("utf-16-le", "surrogatepass"))


# ---------------------------------------------------------------------------------------
# Import: the dialect regedit and Wine's regedit (programs/regedit/regproc.c) accept


@dataclass(frozen=True)
class RegOperation:
    """One parsed line: create a key, delete a key, set or delete a value."""

    line: int
    kind: str                  # "key", "delete_key", "value", "delete_value"
    path: str
    name: str = ""
    type: int = 0
    data: bytes = b""
    #: The value's bytes run to the end of the file with no line end after them: a file
    #: cut short there would read the same, so an undecodable value says so.
    ends_file: bool = False


#: How an "ANSI" file is read unless the caller names its Windows code page.
DEFAULT_ANSI = "utf-8"


def ansi_codec(name: str) -> str:
    """The Python codec of an ANSI code page name (``cp1252``, ``1252``, ``windows-1251``,
    ``utf-8``...), or ValueError saying what is accepted."""
    text = str(name).strip()
    candidate = f"cp{text}" if text.isdigit() else text
    try:
        info = codecs.lookup(candidate)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True) or \
            info.name.startswith(("utf-16", "utf-32")):
        raise ValueError(f"{name!r} is not a code page (expected e.g. cp1252, 1251, cp932 or "
                         "utf-8)")
    return info.name


@dataclass(frozen=True)
class RegText:
    """The text of a .reg file and how it was stored: ``unicode`` for UTF-16LE with a BOM
    (what regedit 5.00 writes); otherwise the file is "ANSI" (REGEDIT4's encoding, read
    as UTF-8 here, with or without a UTF-8 BOM, unless the caller named its code page)."""

    text: str
    unicode: bool
    ansi: str = DEFAULT_ANSI  # the codec of an ANSI file's hex(1)/(2)/(7) string bytes


def read_reg_bytes(raw: bytes, source: str = "<reg>", ansi: str = DEFAULT_ANSI) -> RegText:
    """Decode a .reg file: UTF-16LE with BOM, UTF-8 with BOM, or ANSI (``ansi`` names its
    code page; UTF-8 unless told)."""
    ansi = ansi_codec(ansi)
    if raw.startswith(b"\xff\xfe"):
        codec, body = "utf-16-le", raw[2:]
    elif raw.startswith(b"\xfe\xff"):
        raise RegFileError("big-endian UTF-16 is not a regedit encoding (expected UTF-16LE "
                           "with BOM or UTF-8)", source=source, line=1)
    elif raw.startswith(b"\xef\xbb\xbf"):
        codec, body = "utf-8", raw[3:]
    elif _utf16le_without_bom(raw):
        raise RegFileError("UTF-16LE text without a byte-order mark (expected UTF-16LE with "
                           "the BOM FF FE that regedit writes, or UTF-8)", source=source, line=1)
    else:
        codec, body = ansi, raw
    try:
        text = body.decode(codec, "surrogatepass" if codec == "utf-16-le" else "strict")
    except UnicodeDecodeError as e:
        line = body[:e.start].count(b"\n" if codec == "utf-8" else b"\n\0") + 1
        at = len(raw) - len(body) + e.start  # a byte offset in the file, BOM included
        appended = _ascii_tail(body) if codec == "utf-16-le" else None
        if appended is not None:
            start, tail = appended
            raise RegFileError(_ascii_in_utf16(tail), source=source,
                               line=body[:start].count(b"\n\0") + 1) from None
        if codec == "utf-16-le" and len(body) % 2:
            why = f"the file ends inside a UTF-16 code unit at byte {at} (cut short?)"
        else:
            why = f"invalid {codec.upper()} at byte {at}"
        hint = ("; a REGEDIT4 file in a Windows code page needs that code page named "
                "(--ansi-codepage, e.g. cp1252)" if body is raw and codec == DEFAULT_ANSI else "")
        raise RegFileError(f"{why} (expected UTF-16LE with BOM or UTF-8{hint})", source=source,
                           line=line) from None
    return RegText(text, codec == "utf-16-le", ansi if codec == "utf-16-le" else codec)


def _ascii_in_utf16(text: bytes) -> str:
    """The error for ASCII bytes where a UTF-16LE file goes on."""
    return (f"bytes read as UTF-16LE are ASCII text ({text[:40].decode('ascii')!r}): ANSI or "
            "UTF-8 text appended to a UTF-16LE file? Expected the whole file in one encoding")


def _is_ascii_text(data: bytes) -> bool:
    return len(data) > 1 and all(0x20 <= b < 0x7F or b in (9, 10, 13) for b in data)


def _ascii_tail(body: bytes) -> tuple[int, bytes] | None:
    """Where a UTF-16LE body turns into ASCII text after its last line end, if it does:
    (offset, the ASCII bytes)."""
    start = body.rfind(b"\n\0")
    start = 0 if start < 0 else start + 2
    return (start, body[start:]) if _is_ascii_text(body[start:]) else None


def _utf16le_without_bom(raw: bytes) -> bool:
    """A header line in UTF-16LE ("W\\0i\\0n\\0..." or "R\\0E\\0G\\0..."): ASCII
    characters each followed by a NUL, as the first few bytes of the file."""
    head = raw[:16]
    return (len(head) >= 8 and not any(head[1::2])
            and all(0x20 <= b < 0x7F for b in head[0::2]))


def decode_reg_bytes(raw: bytes, source: str = "<reg>") -> str:
    """The text of a .reg file (see :func:`read_reg_bytes`)."""
    return read_reg_bytes(raw, source).text


HEADER_4 = "REGEDIT4"
_BLANK = " \t"                      # what regedit skips around tokens (not other whitespace)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_STRING_TYPES = (RegType.REG_SZ, RegType.REG_EXPAND_SZ, RegType.REG_MULTI_SZ)
_ESCAPES = {"n": "\n", "r": "\r", "0": "\0", "\\": "\\", '"': '"'}


def _physical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) per line. Lines end at CRLF, LF or a lone CR — except a lone CR
    inside a quoted string, which is a character of the string (a value exported with a
    bare CR in it reads back). Quotes are tracked with regedit's escapes, outside comments."""
    lines, current, number = [], [], 1
    quoted = comment = key_line = started = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n" or (c == "\r" and (not quoted or text[i + 1:i + 2] == "\n")):
            lines.append((number, "".join(current)))
            current, quoted, comment, key_line, started = [], False, False, False, False
            number += 1
            i += 2 if text[i:i + 2] == "\r\n" else 1
            continue
        if not started and c not in _BLANK:
            started = True
            key_line = c == "["  # a key name has no quoted strings: a '"' in it is a character
        if not comment and not key_line:
            if quoted and c == "\\" and i + 1 < n and text[i + 1] not in "\r\n":
                current.append(text[i:i + 2])
                i += 2
                continue
            if c == '"':
                quoted = not quoted
            elif c == ";" and not quoted:
                comment = True
        current.append(c)
        i += 1
    if current or not lines:  # the last line, when the text does not end with a line break
        lines.append((number, "".join(current)))
    return lines


def _rest_is_comment(rest: str) -> bool:
    """Only blanks, or blanks then a ``;`` comment, may follow a complete item."""
    rest = rest.lstrip(_BLANK)
    return not rest or rest.startswith(";")


class _Parser:
    """regproc.c's state machine, reading lines; where Wine would skip a line (after a
    message, or silently) this parser refuses the file naming ``source:line``."""

    def __init__(self, text: str, source: str, unicode: bool, ansi: str = DEFAULT_ANSI) -> None:
        self.lines = _physical_lines(text)
        self.unterminated = not text.endswith(("\n", "\r"))  # the last line has no line end
        self.source = source
        self.unicode = unicode
        self.ansi = ansi_codec(ansi)
        self.index = 0
        self.current: str | None = None
        self.ops: list[RegOperation] = []
        self.ran_out = False  # the last hex value's continuation met the end of the file

    def error(self, lineno: int, message: str) -> RegFileError:
        return RegFileError(message, source=self.source, line=lineno)

    def next_line(self) -> tuple[int, str] | None:
        if self.index >= len(self.lines):
            return None
        self.index += 1
        lineno, line = self.lines[self.index - 1]
        if "\0" in line:
            raise self.error(lineno, "NUL character in the file (regedit reads a line only up "
                                     "to it)")
        return lineno, line

    # ----------------------------------------------------------------- header
    def header(self) -> None:
        first = self.next_line()
        line = (first[1] if first else "").lstrip(_BLANK)
        if line in (HEADER, HEADER_4):
            return
        if not first or not line.strip():
            raise self.error(1, f"empty first line: expected the header '{HEADER}' or "
                                f"'{HEADER_4}' on line 1")
        if line == "REGEDIT":
            raise self.error(1, "a Windows 3.1 'REGEDIT' file (only HKEY_CLASSES_ROOT lines): "
                                f"expected '{HEADER}' or '{HEADER_4}'")
        if line.startswith("REGEDIT"):
            raise self.error(1, f"header {line[:40]!r}: regedit accepts it but imports nothing; "
                                f"expected '{HEADER}' or '{HEADER_4}'")
        raise self.error(1, f"expected the header '{HEADER}' or '{HEADER_4}', got "
                            f"{line[:60]!r}")

    # ----------------------------------------------------------------- lines
    def run(self) -> list[RegOperation]:
        self.header()
        while (item := self.next_line()) is not None:
            lineno, line = item
            body = line.lstrip(_BLANK)
            if not body or body.startswith(";"):
                continue
            if body.startswith("["):
                self.key_line(lineno, body[1:])
            elif body.startswith("@"):
                self.value(lineno, "", body[1:])
            elif body.startswith('"'):
                name, rest = self.quoted(lineno, body[1:], "value name")
                self.value(lineno, name, rest)
            else:
                raise self.error(lineno, self._unexpected_line(body))
        return self.ops

    def _unexpected_line(self, body: str) -> str:
        """What a line that is no key, value or comment is, when it looks like the work of
        joining files: a second export's header (``copy /b a.reg+b.reg``), or ANSI/UTF-8
        text appended to a UTF-16 file (each pair of its bytes read as one character)."""
        if body.lstrip("\ufeff" + _BLANK) in (HEADER, HEADER_4):
            return (f"a second file header {body.lstrip(chr(0xFEFF))!r}: two exports joined into "
                    "one file? Expected the header only on line 1 (import each file on its own)")
        pairs = body.encode("utf-16-le", "surrogatepass")
        if self.unicode and _is_ascii_text(pairs):
            return _ascii_in_utf16(pairs)
        return ("expected '[KEY]', '\"name\"=…', '@=…', a ';' comment or a blank line, got "
                f"{body[:40]!r}")

    def key_line(self, lineno: int, body: str) -> None:
        end = body.rfind("]")  # regedit: the key name ends at the last ']' of the line
        if end < 0:
            raise self.error(lineno, "expected ']' at the end of the key name")
        if body[:1] in (" ", "\t"):
            raise self.error(lineno, "a key name cannot start with a blank ('[ ' is a line "
                                     "regedit skips)")
        if not _rest_is_comment(body[end + 1:]):
            raise self.error(lineno, f"unexpected {body[end + 1:].strip()[:20]!r} after ']' "
                                     "(expected the end of the line or a ';' comment)")
        name = body[:end]
        delete = name.startswith("-")
        if delete:
            name = name[1:]
            if name[:1] not in ("H", "h"):
                raise self.error(lineno, f"[-{name[:30]}]: expected a key name starting with "
                                         "HKEY_ after '-'")
        try:
            path = from_hkey(name)
            if delete and len(split_path(path)) < 2:
                raise RegistryError("a root key cannot be deleted")
            split_path(path)
        except (ValueError, RegistryError) as e:
            printable = name.encode("utf-8", "backslashreplace").decode()  # lone surrogates
            detail = e.message if isinstance(e, RegistryError) else str(e)
            raise self.error(lineno, f"bad key [{'-' if delete else ''}{printable}]: "
                                     f"{detail}") from None
        self.ops.append(RegOperation(lineno, "delete_key" if delete else "key", path))
        self.current = None if delete else path  # regedit closes the key after [-KEY]

    def quoted(self, lineno: int, text: str, what: str) -> tuple[str, str]:
        """Unescape up to the closing quote (regedit's escapes: \\n \\r \\0 \\\\ \\"; any
        other ``\\c`` is ``c``); returns (content, text after the quote)."""
        out, i = [], 0
        while i < len(text):
            c = text[i]
            if c == "\\":
                if i + 1 >= len(text):
                    break
                out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
                i += 2
                continue
            if c == '"':
                return "".join(out), text[i + 1:]
            out.append(c)
            i += 1
        raise self.error(lineno, f"unterminated {what}: expected a closing '\"'")

    # ----------------------------------------------------------------- values
    def value(self, lineno: int, name: str, rest: str) -> None:
        rest = rest.lstrip(_BLANK)
        if not rest.startswith("="):
            raise self.error(lineno, f"expected '=' after the value name, got {rest[:20]!r}")
        data = rest[1:].strip(_BLANK)
        if self.current is None:
            raise self.error(lineno, "value line outside a key section (expected a '[KEY]' "
                                     "line first)")
        if data.startswith("-"):
            if not _rest_is_comment(data[1:]):
                raise self.error(lineno, f"unexpected {data[1:].strip()[:20]!r} after '=-' "
                                         "(expected the end of the line or a ';' comment)")
            self.ops.append(RegOperation(lineno, "delete_value", self.current, name))
            return
        lower = data.lower()  # type prefixes are matched case-insensitively (DWORD:, HEX:)
        if data.startswith('"'):
            text, after = self.quoted(lineno, data[1:], "string value")
            if not _rest_is_comment(after):
                raise self.error(lineno, f"unexpected {after.strip()[:20]!r} after the closing "
                                         "quote (expected the end of the line or a ';' comment)")
            text = text.split("\0", 1)[0]  # regedit stores the string up to a \0
            self.set(lineno, name, RegType.REG_SZ, encode_value(text, RegType.REG_SZ)[1])
        elif lower.startswith("dword:"):
            self.set(lineno, name, RegType.REG_DWORD,
                     self.dword(lineno, data[6:]).to_bytes(4, "little"))
        elif lower.startswith("hex:"):
            self.set(lineno, name, RegType.REG_BINARY, self.hex_data(lineno, data[4:]))
        elif lower.startswith("hex("):
            close = data.find("):", 4)
            digits = data[4:close] if close > 0 else ""
            if not digits or not set(digits) <= _HEX_DIGITS or int(digits, 16) > 0xFFFFFFFF:
                raise self.error(lineno, f"expected hex(N): with N a type number in hex up to "
                                         f"ffffffff, got {data[:20]!r}")
            reg_type = int(digits, 16)
            raw = self.hex_data(lineno, data[close + 2:])
            if not self.unicode and reg_type in _STRING_TYPES and raw:
                raw = self.ansi_string(lineno, raw, reg_type)
            self.set(lineno, name, reg_type, raw, ends_file=self.index == len(self.lines)
                     and (self.unterminated or self.ran_out))
        else:
            raise self.error(lineno, "expected a quoted string, dword:XXXXXXXX, hex:…, hex(N):… "
                                     f"or '-' after '=', got {data[:30]!r}")

    def set(self, lineno: int, name: str, reg_type: int, data: bytes, *,
            ends_file: bool = False) -> None:
        assert self.current is not None
        self.ops.append(RegOperation(lineno, "value", self.current, name, reg_type, data,
                                     ends_file))

    def dword(self, lineno: int, text: str) -> int:
        text = text.lstrip(_BLANK)
        digits = 0
        while digits < len(text) and text[digits] in _HEX_DIGITS:
            digits += 1
        if not text or digits > 8 or not _rest_is_comment(text[digits:]):
            raise self.error(lineno, f"expected dword:XXXXXXXX (1 to 8 hex digits), got "
                                     f"{'dword:' + text[:20]!r}")
        return int(text[:digits], 16) if digits else 0  # regedit reads 'dword: ;x' as 0

    def hex_data(self, lineno: int, text: str) -> bytes:
        """Comma-separated hex bytes; a ``\\`` continues them on the next line (blank lines
        and ';' comment lines in between are skipped; the end of the file ends the value)."""
        out = bytearray()
        first = lineno
        self.ran_out = False
        while True:
            continued = self._hex_csv(lineno, text, out)
            if not continued:
                return bytes(out)
            while True:
                item = self.next_line()
                if item is None:
                    self.ran_out = True
                    return bytes(out)  # as regedit: the value ends with the file
                lineno, line = item
                text = line.lstrip(_BLANK)
                if text and not text.startswith(";"):
                    break
            if text[0] not in _HEX_DIGITS:
                raise self.error(lineno, "expected hex bytes continuing the value of line "
                                         f"{first} after its '\\', got {text[:20]!r}")

    def _hex_csv(self, lineno: int, text: str, out: bytearray) -> bool:
        """Append the bytes of one line to ``out``; True when it ends with a continuation."""
        i, n = 0, len(text)
        while i < n:
            j = i
            while j < n and text[j] in _BLANK:
                j += 1
            k = j
            while k < n and text[k] in _HEX_DIGITS:
                k += 1
            if k == j:  # no number here: a continuation, a comment, or an error
                if text[j:j + 1] == "\\":
                    if not _rest_is_comment(text[j + 1:]):
                        raise self.error(lineno, f"unexpected {text[j + 1:].strip()[:20]!r} "
                                                 "after the continuation '\\'")
                    return True
                if text[j:j + 1] == ";":
                    return False
                raise self.error(lineno, "expected a hex byte like '0a', got "
                                         f"{text[j:j + 12].split(',')[0]!r}")
            value = int(text[j:k], 16)
            if value > 0xFF:
                raise self.error(lineno, f"expected a hex byte like '0a', got {text[j:k]!r}")
            out.append(value)
            if k < n and text[k] == ",":
                i = k + 1
                continue
            if not _rest_is_comment(text[k:]):
                raise self.error(lineno, f"expected ',' between hex bytes, got "
                                         f"{text[k:k + 12]!r}")
            return False
        return False

    def ansi_string(self, lineno: int, raw: bytes, reg_type: int) -> bytes:
        """String types in hex form in an ANSI file are ANSI bytes: stored as UTF-16LE,
        NUL-terminated (regproc.c's prepare_hex_string_data). UTF-16LE bytes there (a
        line from a 5.00 export in a REGEDIT4 file) are refused: read as ANSI they would
        store each character as a string of its own, cut at the first NUL."""
        terminator = 4 if reg_type == RegType.REG_MULTI_SZ else 2
        if (len(raw) >= 4 and len(raw) % 2 == 0 and not any(raw[1::2])
                and sum(map(bool, raw[0::2])) >= 2 and not any(raw[-terminator:])):
            raise self.error(lineno, f"{RegType(reg_type).name} data in hex form are UTF-16LE "
                                     "(every second byte 0) in an ANSI (REGEDIT4) file, where "
                                     "they are read as ANSI bytes: a line from a 'Windows "
                                     "Registry Editor Version 5.00' export? Expected the "
                                     "string's bytes in the file's code page")
        if raw[-1:] != b"\0":
            raw += b"\0"
        try:
            return raw.decode(self.ansi).encode("utf-16-le", "surrogatepass")
        except UnicodeDecodeError as e:
            raise self.error(lineno, f"string data in hex form is not valid {self.ansi.upper()} at "
                                     f"byte {e.start} (an ANSI file's strings are in its code "
                                     "page, UTF-8 unless --ansi-codepage names another)") from None


def parse_reg(text: str, source: str = "<reg>", *, unicode: bool = True,
              ansi: str = DEFAULT_ANSI) -> list[RegOperation]:
    """Parse .reg text into operations; every error names ``source:line`` and what was
    expected there. ``unicode`` says the text came from a UTF-16 file (see
    :class:`RegText`): in an ANSI file hex(1)/hex(2)/hex(7) data are bytes of the code
    page ``ansi``."""
    return _Parser(text, source, unicode, ansi).run()


def _setup_literal(path: str) -> bool:
    r"""A key below ``SYSTEM\<control set>\Control\SystemResources``: setup copies its
    resource values byte for byte from hivesys.inf's AddReg lines, the same bytes on every
    architecture (``ReservedResources\Isa`` is in the x86 layout on x64 Windows too), so
    they tell nothing of the layout of the machine a file comes from."""
    parts = fold(path).split("\\")
    return len(parts) >= 7 and parts[1:4] == ["REGISTRY", "MACHINE", "SYSTEM"] \
        and parts[5:7] == ["CONTROL", "SYSTEMRESOURCES"]


class _StoredResources:
    """The resource values a file leaves stored, each with the layouts it fits: a value
    the file overwrites or deletes later (or whose key it deletes) drops out. Setup's
    literal values (:func:`_setup_literal`) are kept as fitting any layout."""

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, str], tuple[RegOperation, tuple[Arch, ...]]] = {}

    def keep(self, op: RegOperation, fits: tuple[Arch, ...]) -> None:
        if _setup_literal(op.path):
            fits = tuple(Arch)
        self._by_name[(fold(op.path), fold(op.name))] = (op, fits)

    def drop_value(self, op: RegOperation) -> None:
        self._by_name.pop((fold(op.path), fold(op.name)), None)

    def drop_key(self, path: str) -> None:
        gone = fold(path)
        self._by_name = {k: v for k, v in self._by_name.items()
                         if k[0] != gone and not k[0].startswith(gone + "\\")}

    def single_layout(self) -> dict[Arch, list[RegOperation]]:
        """The values that fit one layout only, by that layout, in file order."""
        only: dict[Arch, list[RegOperation]] = {a: [] for a in Arch}
        for op, fits in sorted(self._by_name.values(), key=lambda item: item[0].line):
            if len(fits) == 1:
                only[fits[0]].append(op)
        return only


def file_layout(ops: list[RegOperation]) -> Arch | None:
    """The layout of the machine a file comes from, as :func:`_vote_on_layout` reads it:
    the one most of the resource values it leaves stored fit when only one layout fits
    them; None when none tells, or as many fit one as the other."""
    stored = _StoredResources()
    for op in ops:
        if op.kind == "delete_key":
            stored.drop_key(op.path)
        elif op.kind != "key":
            kind = _RESOURCE_TYPES.get(op.type) if op.kind == "value" else None
            fits = fitting_layouts(op.data, kind) if kind is not None else ()
            if fits:
                stored.keep(op, fits)
            else:
                stored.drop_value(op)
    counts = {a: len(v) for a, v in stored.single_layout().items()}
    best = max(counts, key=counts.__getitem__)
    return best if sum(n == counts[best] for n in counts.values()) == 1 and counts[best] else None


def _vote_on_layout(stored: _StoredResources, arch: Arch, source: str) -> None:
    r"""Refuse the file unless the values it leaves stored show it comes from a machine of
    ``arch``, the registry's layout.

    Windows keeps values of the other layout: an x64 SYSTEM hive holds
    ``Control\SystemResources\ReservedResources\Isa`` in the x86 layout, as setup ships it
    (tests/data/realworld-resources/README.md).  So a file's layout is the one most of its
    values that fit only one layout fit; a value that fits only the minority layout is
    stored unchanged, as Windows has it.  A file whose values fit only the other layout (or
    as many the one as the other) is refused at the first such value, naming the layout.
    Only what is left stored votes (not a value overwritten or deleted later in the file),
    so exporting what was imported and importing that again gives the same verdict."""
    only = stored.single_layout()
    own = len(only[arch])
    for other in Arch:
        foreign = only[other]
        if other is arch or not foreign or own > len(foreign):
            continue
        first = foreign[0]
        raise _not_valid(first, arch, source, _format_error(first, arch),
                         f"; it decodes in the {other.value} layout, as do {len(foreign)} of "
                         f"the {len(foreign) + own} values here that fit one layout only "
                         f"({own} fit {arch.value}): exported from an {other.value} machine? "
                         f"import it into an {other.value} registry")


def _format_error(op: RegOperation, arch: Arch) -> str:
    try:
        decode_value(op.type, op.data, arch)
    except ResourceFormatError as e:  # e.message: RegFileError adds the status
        return e.message
    raise AssertionError("value decodes")  # pragma: no cover - callers pass misfits only


def _not_valid(op: RegOperation, arch: Arch, source: str, why: str, hint: str) -> RegFileError:
    return RegFileError(f"value {op.name!r} is not a valid {RegType(op.type).name} in the "
                        f"registry's {arch.value} layout: {why}{hint}", source=source, line=op.line)


def apply_operations(registry: Registry, ops: list[RegOperation], *, source: str = "<reg>",
                     volatile: bool = False, validate: bool = True) -> int:
    """Apply parsed operations in one transaction (all or nothing). With ``validate``,
    resource-typed values must decode in the registry's layout, or in the other layout
    when the file is shown to come from a machine of the registry's (see
    :func:`_vote_on_layout`). Returns values written."""
    written = 0
    stored = _StoredResources()
    with registry.transaction():
        for op in ops:
            try:
                if op.kind == "key":
                    registry.create_key(op.path, volatile=volatile)
                elif op.kind == "delete_key":
                    if registry.key_exists(op.path):
                        registry.delete_key(op.path, recursive=True)
                    stored.drop_key(op.path)
                elif op.kind == "delete_value":
                    registry.delete_value(op.path, op.name, missing_ok=True)
                    stored.drop_value(op)
                else:
                    if validate and op.type in _RESOURCE_TYPES:
                        fits = fitting_layouts(op.data, _RESOURCE_TYPES[op.type])
                        if not fits:
                            raise _not_valid(op, registry.arch, source,
                                             _format_error(op, registry.arch),
                                             "; the file ends inside this value: cut short?"
                                             if op.ends_file else "")
                        stored.keep(op, fits)
                    else:
                        stored.drop_value(op)
                    registry.set_value(op.path, op.name, op.data, op.type)
                    written += 1
            except RegistryError as e:
                if isinstance(e, RegFileError):
                    raise
                raise RegFileError(e.message, source=source, line=op.line) from None
        _vote_on_layout(stored, registry.arch, source)
    return written


def import_text(registry: Registry, text: str, *, source: str = "<reg>", volatile: bool = False,
                validate: bool = True, unicode: bool = True, ansi: str = DEFAULT_ANSI) -> int:
    """Parse and apply .reg text atomically (``unicode``, ``ansi``: see :func:`parse_reg`)."""
    return apply_operations(registry, parse_reg(text, source, unicode=unicode, ansi=ansi),
                            source=source, volatile=volatile, validate=validate)


def read_reg_file(file: str | os.PathLike, *, ansi_codepage: str = DEFAULT_ANSI
                  ) -> list[RegOperation]:
    """The operations of a .reg file (UTF-16LE with BOM, UTF-8, or ANSI in
    ``ansi_codepage``), parsed and not applied."""
    source = str(file)
    try:
        raw = Path(file).read_bytes()
    except OSError as e:
        raise RegFileError(f"cannot read: {e.strerror}", source=source) from None
    decoded = read_reg_bytes(raw, source, ansi_codepage)
    return parse_reg(decoded.text, source, unicode=decoded.unicode, ansi=decoded.ansi)


def import_reg(registry: Registry, file: str | os.PathLike, *, volatile: bool = False,
               validate: bool = True, ansi_codepage: str = DEFAULT_ANSI) -> int:
    """Load a .reg file (see :func:`read_reg_file`) into ``registry`` atomically."""
    return apply_operations(registry, read_reg_file(file, ansi_codepage=ansi_codepage),
                            source=str(file), volatile=volatile, validate=validate)


__all__ = ["HEADER", "HEADER_4", "to_hkey", "from_hkey", "export_text", "export_reg", "parse_reg",
           "apply_operations", "import_text", "import_reg", "decode_reg_bytes", "read_reg_bytes",
           "RegText", "RegOperation", "DEFAULT_ANSI", "ansi_codec", "read_reg_file",
           "file_layout"]
