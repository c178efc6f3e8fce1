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
a 4-byte number (missing terminator, embedded line breaks, wrong size) is written in
``hex(1):``/``hex(4):`` form, so importing the file restores the same bytes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from ..atomicio import write_bytes
from .errors import RegFileError, RegistryError, ResourceFormatError
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


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    name = "@" if v.name == "" else _quote(_one_line(v.name, "value name"))
    if v.type == RegType.REG_SZ:
        try:
            text = decode_value(v.type, v.data)
            canonical = encode_value(text, RegType.REG_SZ)[1] == v.data
        except RegistryError:
            canonical = False
        if canonical and not any(c in text for c in "\r\n"):
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
# Import


@dataclass(frozen=True)
class RegOperation:
    """One parsed line: create a key, delete a key, set or delete a value."""

    line: int
    kind: str                  # "key", "delete_key", "value", "delete_value"
    path: str
    name: str = ""
    type: int = 0
    data: bytes = b""


def decode_reg_bytes(raw: bytes, source: str = "<reg>") -> str:
    """Decode a .reg file: UTF-16LE with BOM, or UTF-8 with or without BOM."""
    if raw.startswith(b"\xff\xfe"):
        codec, body = "utf-16-le", raw[2:]
    elif raw.startswith(b"\xfe\xff"):
        raise RegFileError("big-endian UTF-16 is not a regedit encoding (expected UTF-16LE "
                           "with BOM or UTF-8)", source=source, line=1)
    elif raw.startswith(b"\xef\xbb\xbf"):
        codec, body = "utf-8", raw[3:]
    else:
        codec, body = "utf-8", raw
    try:
        return body.decode(codec, "surrogatepass" if codec == "utf-16-le" else "strict")
    except UnicodeDecodeError as e:
        line = body[:e.start].count(b"\n" if codec == "utf-8" else b"\n\0") + 1
        raise RegFileError(f"invalid {codec.upper()} at byte {e.start} (expected UTF-16LE "
                           "with BOM or UTF-8)", source=source, line=line) from None


_LINE_SPLIT = re.compile(r"\r\n|\n|\r")
_HEX_PREFIX = re.compile(r"hex(?:\(([0-9A-Fa-f]{1,8})\))?:", re.ASCII)
_DWORD = re.compile(r"dword:([0-9A-Fa-f]{1,8})\s*$", re.ASCII)
_BYTE = re.compile(r"[0-9A-Fa-f]{1,2}", re.ASCII)


def _parse_quoted(text: str, pos: int, lineno: int, source: str, what: str) -> tuple[str, int]:
    """Parse ``"..."`` starting at text[pos] == '"'; returns (content, index after)."""
    out, i = [], pos + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '\\"':
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise RegFileError(f"unterminated {what}: expected a closing '\"'", source=source,
                       line=lineno)


def _parse_hex(body: str, lineno: int, source: str) -> bytes:
    body = body.strip()
    if not body:
        return b""
    items = [item.strip() for item in body.split(",")]
    if len(items) > 1 and items[-1] == "":
        items.pop()  # tolerate one trailing comma
    out = bytearray()
    for item in items:
        if not _BYTE.fullmatch(item):
            raise RegFileError(f"expected a hex byte like '0a', got {item!r}", source=source,
                               line=lineno)
        out.append(int(item, 16))
    return bytes(out)


def parse_reg(text: str, source: str = "<reg>") -> list[RegOperation]:
    """Parse .reg text into operations; every error names ``source:line`` and what was
    expected there."""
    lines = _LINE_SPLIT.split(text)
    ops: list[RegOperation] = []
    i, seen_header, current = 0, False, None
    while i < len(lines):
        lineno, line = i + 1, lines[i]
        i += 1
        stripped = line.strip()
        if not seen_header:
            if stripped == "":
                continue
            if stripped == "REGEDIT4":
                raise RegFileError("REGEDIT4 (ANSI) files are not supported; expected "
                                   f"'{HEADER}'", source=source, line=lineno)
            if stripped != HEADER:
                raise RegFileError(f"expected the header '{HEADER}', got {stripped[:60]!r}",
                                   source=source, line=lineno)
            seen_header = True
            continue
        if stripped == "" or stripped.startswith(";"):
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                raise RegFileError("expected ']' at the end of the key line", source=source,
                                   line=lineno)
            name = stripped[1:-1]
            delete = name.startswith("-")
            try:
                path = from_hkey(name[1:] if delete else name)
                split_path(path)
            except (ValueError, RegistryError) as e:
                printable = name.encode("utf-8", "backslashreplace").decode()  # lone surrogates
                raise RegFileError(f"bad key [{printable}]: {e}", source=source,
                                   line=lineno) from None
            if delete:
                ops.append(RegOperation(lineno, "delete_key", path))
                current = None
            else:
                ops.append(RegOperation(lineno, "key", path))
                current = path
            continue
        if stripped[0] not in '@"':
            raise RegFileError("expected '[KEY]', '\"name\"=…', '@=…' or a ';' comment, got "
                               f"{stripped[:40]!r}", source=source, line=lineno)
        if current is None:
            raise RegFileError("value line outside a key section (expected a '[KEY]' line "
                               "first)", source=source, line=lineno)
        if stripped[0] == "@":
            name, pos = "", 1
        else:
            name, pos = _parse_quoted(stripped, 0, lineno, source, "value name")
        rest = stripped[pos:].lstrip()
        if not rest.startswith("="):
            raise RegFileError(f"expected '=' after the value name, got {rest[:20]!r}",
                               source=source, line=lineno)
        data_text = rest[1:].lstrip()
        if data_text == "-":
            ops.append(RegOperation(lineno, "delete_value", current, name))
            continue
        if data_text.startswith('"'):
            value, end = _parse_quoted(data_text, 0, lineno, source, "string value")
            if data_text[end:].strip():
                raise RegFileError(f"unexpected {data_text[end:].strip()[:20]!r} after the "
                                   "closing quote", source=source, line=lineno)
            if "\0" in value:  # regedit writes such data as hex(1):
                raise RegFileError("NUL inside a quoted string value", source=source, line=lineno)
            ops.append(RegOperation(lineno, "value", current, name, RegType.REG_SZ,
                                    encode_value(value, RegType.REG_SZ)[1]))
            continue
        if m := _DWORD.match(data_text):
            ops.append(RegOperation(lineno, "value", current, name, RegType.REG_DWORD,
                                    int(m.group(1), 16).to_bytes(4, "little")))
            continue
        if m := _HEX_PREFIX.match(data_text):
            reg_type = RegType.REG_BINARY if m.group(1) is None else int(m.group(1), 16)
            body = data_text[m.end():]
            while body.rstrip().endswith("\\"):  # continuation line
                body = body.rstrip()[:-1]
                if i >= len(lines) or not lines[i].strip():
                    where = "file ends" if i >= len(lines) else "blank line"
                    raise RegFileError(f"{where} inside a hex continuation (expected another "
                                       "line of hex bytes after '\\')", source=source,
                                       line=lineno)
                body += lines[i].strip()
                i += 1
            ops.append(RegOperation(lineno, "value", current, name, reg_type,
                                    _parse_hex(body, lineno, source)))
            continue
        raise RegFileError("expected a quoted string, dword:XXXXXXXX, hex:…, hex(N):… or '-' "
                           f"after '=', got {data_text[:30]!r}", source=source, line=lineno)
    if not seen_header:
        raise RegFileError(f"empty file: expected the header '{HEADER}'", source=source, line=1)
    return ops


def apply_operations(registry: Registry, ops: list[RegOperation], *, source: str = "<reg>",
                     volatile: bool = False, validate: bool = True) -> int:
    """Apply parsed operations in one transaction (all or nothing). With ``validate``,
    resource-typed values must decode in the registry's layout. Returns values written."""
    written = 0
    with registry.transaction():
        for op in ops:
            try:
                if op.kind == "key":
                    registry.create_key(op.path, volatile=volatile)
                elif op.kind == "delete_key":
                    if registry.key_exists(op.path):
                        registry.delete_key(op.path, recursive=True)
                elif op.kind == "delete_value":
                    registry.delete_value(op.path, op.name, missing_ok=True)
                else:
                    if validate and op.type in _RESOURCE_TYPES:
                        decode_value(op.type, op.data, registry.arch)
                    registry.set_value(op.path, op.name, op.data, op.type)
                    written += 1
            except ResourceFormatError as e:
                raise RegFileError(f"value {op.name!r} is not a valid {RegType(op.type).name} "
                                   f"in the registry's {registry.arch.value} layout: {e}",
                                   source=source, line=op.line) from None
            except RegistryError as e:
                if isinstance(e, RegFileError):
                    raise
                raise RegFileError(str(e), source=source, line=op.line) from None
    return written


def import_text(registry: Registry, text: str, *, source: str = "<reg>", volatile: bool = False,
                validate: bool = True) -> int:
    return apply_operations(registry, parse_reg(text, source), source=source,
                            volatile=volatile, validate=validate)


def import_reg(registry: Registry, file: str | os.PathLike, *, volatile: bool = False,
               validate: bool = True) -> int:
    """Load a .reg file (UTF-16LE with BOM or UTF-8) into ``registry`` atomically."""
    source = str(file)
    try:
        raw = Path(file).read_bytes()
    except OSError as e:
        raise RegFileError(f"cannot read: {e.strerror}", source=source) from None
    return import_text(registry, decode_reg_bytes(raw, source), source=source,
                       volatile=volatile, validate=validate)


__all__ = ["HEADER", "to_hkey", "from_hkey", "export_text", "export_reg", "parse_reg",
           "apply_operations", "import_text", "import_reg", "decode_reg_bytes", "RegOperation"]
