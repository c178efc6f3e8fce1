"""Safe YAML loading that remembers where every value came from.

Every configuration error must name the file, the line and the field, so mappings are
loaded as :class:`Node` objects that carry the line of each key.  Only the safe loader is
used: YAML tags that construct Python objects are refused.

PyYAML itself (~20 ms to import, most of it compiling its reader's character check) is
imported only when a text must be parsed: a command whose files all come from the cache
of parsed documents (:func:`load_files`) never loads it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, unknown_name
from .packagedata import read_cache, write_cache

if TYPE_CHECKING:
    import yaml


class Node(Mapping[str, Any]):
    """A read-only YAML mapping with the source line of each key.

    ``field`` is the dotted path of this mapping inside its file (``devices[2]``), used to
    build error messages for the values below it.
    """

    __slots__ = ("_data", "_lines", "source", "line", "field")

    def __init__(self, data: dict[str, Any], lines: dict[str, int], source: str, line: int,
                 field: str = "") -> None:
        self._data = data
        self._lines = lines
        self.source = source
        self.line = line
        self.field = field

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Node({self._data!r} @ {self.source}:{self.line})"

    def path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.field}[{key}]"
        return f"{self.field}.{key}" if self.field else key

    def line_of(self, key: str) -> int:
        return self._lines.get(key, self.line)

    def error(self, key: str | None, message: str) -> ConfigError:
        """A :class:`ConfigError` pointing at ``key`` of this mapping (or at the mapping)."""
        if key is None:
            return ConfigError(message, source=self.source, line=self.line, field=self.field or None)
        return ConfigError(message, source=self.source, line=self.line_of(key), field=self.path(key))

    def check_keys(self, allowed: set[str] | frozenset[str], required: set[str] | frozenset[str] = frozenset()) -> None:
        """Refuse unknown keys (with the closest allowed name) and missing required ones."""
        for key in self._data:
            if key not in allowed:
                raise self.error(key, unknown_name("field", key, sorted(allowed), label="expected one of", shown=None))
        for key in sorted(required):
            if key not in self._data:
                raise self.error(None, f"missing required field {key!r}")

    def child(self, key: str) -> "Node":
        value = self._data[key]
        if not isinstance(value, Node):
            raise self.error(key, f"expected a mapping, got {_kind(value)}")
        return value


class _Constructing:
    """Mappings become :class:`Node` with per-key line numbers (both loaders below)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except (ValueError, KeyError, AttributeError, TypeError, IndexError) as exc:
            import yaml
            if not isinstance(node, yaml.ScalarNode):
                raise
            # PyYAML's scalar constructors fail raw on an explicit tag that does not fit
            # the text (!!timestamp x: AttributeError, !!int x: ValueError, !!bool x:
            # KeyError, an empty !!int or !!float: IndexError).
            tag = node.tag.rsplit(":", 1)[-1]
            raise ConfigError(f"{node.value[:40]!r} is not a valid !!{tag} ({type(exc).__name__})",
                              source=self.name, line=node.start_mark.line + 1) from None  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=None)
def _loaders() -> tuple[type, type | None]:
    """(the pure-Python SafeLoader, the one whose errors the harness reports; libyaml's
    parser with the same constructors, 10-15x faster on the shipped files, or None where
    PyYAML lacks libyaml), made on first use."""
    import yaml

    class _Loader(_Constructing, yaml.SafeLoader):
        pass

    fast: type | None = None
    if getattr(yaml, "__with_libyaml__", False):
        class _FastLoader(_Constructing, yaml.CSafeLoader):  # type: ignore[misc]
            pass
        fast = _FastLoader
    for loader in (_Loader, fast):
        if loader is not None:
            loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
            loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
    return _Loader, fast


def _fast_loader() -> type | None:
    return _loaders()[1]


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> Node:
    loader.flatten_mapping(node)
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    source = loader.name
    duplicate = None
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise ConfigError(f"mapping keys must be strings, got {_kind(key)} {key!r}",
                              source=source, line=line)
        if key in data:
            duplicate = duplicate or (key, line)
            continue
        data[key] = loader.construct_object(value_node, deep=True)
        lines[key] = line
    mapping = Node(data, lines, source, node.start_mark.line + 1)
    if duplicate:
        # Reported once the document's field paths are known (devices[0].irq, not irq).
        loader.duplicates.append((mapping, *duplicate))
    return mapping


def _refuse_duplicates(loader: Any) -> None:
    """A key given twice in one mapping, the first in the document, at its full field path
    (the document's fields set)."""
    if loader.duplicates:
        mapping, key, line = min(loader.duplicates, key=lambda d: d[2])
        raise ConfigError(f"duplicate key {key!r} (first on line {mapping.line_of(key)})",
                          source=mapping.source, line=line, field=mapping.path(key))


#: Every number in these files fits 64 bits; a longer integer is refused before Python
#: converts it (decimal conversion of more than 4300 digits raises ValueError).
MAX_INT_CHARS = 100
#: Values in one document once aliases are expanded: a few hundred in a real file, but
#: nested aliases grow exponentially ("billion laughs").
MAX_VALUES = 100_000


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    import yaml
    if len(node.value) > MAX_INT_CHARS:
        raise ConfigError(f"integer of {len(node.value)} characters; numbers here fit 64 bits",
                          source=loader.name, line=node.start_mark.line + 1)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _set_fields(document: Any, source: str) -> None:
    """Give every nested mapping its dotted field path, for error messages; refuse a
    document that expands to more than MAX_VALUES values."""
    stack, count = [(document, "")], 0
    while stack:
        value, field = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"more than {MAX_VALUES} values once aliases are expanded",
                              source=source)
        if isinstance(value, Node):
            value.field = field
            stack.extend((value[key], value.path(key)) for key in value)
        elif isinstance(value, list):
            stack.extend((item, f"{field}[{i}]") for i, item in enumerate(value))


def load_text(text: str, source: str) -> Any:
    """Parse YAML text; syntax errors become :class:`ConfigError` with the line.

    libyaml parses first when it is there; the pure-Python loader (the same grammar: PyYAML
    is a port of libyaml) runs only when libyaml refuses the text or the text holds a
    character the Python reader refuses, so every error is reported exactly as before."""
    import yaml
    document = _load_fast(text, source)
    if document is not _REFUSED:
        _set_fields(document, source)
        return document
    loader = None
    try:
        loader = _loaders()[0](text)  # checks every character up front
        loader.name = source
        loader.duplicates = []
        document = loader.get_single_data()
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError("YAML nested too deeply", source=source) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(f"character U+{exc.character:04X} is not allowed in YAML", source=source,
                          line=text[:exc.position].count("\n") + 1) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", source=source) from None
    finally:
        if loader is not None:
            loader.dispose()
    _set_fields(document, source)
    _refuse_duplicates(loader)
    return document


class _LeftToYaml(Exception):
    """A JSON text whose YAML reading could differ from JSON's (see :func:`load_json`)."""


def _refuse_json_value(_text: str) -> Any:
    raise _LeftToYaml


def load_json(text: str, source: str) -> Any:
    """A one-line JSON text as :func:`load_text` parses it, without PyYAML (a matrix worker
    gets its cells as JSON; importing PyYAML was ~12 ms of its start-up).  JSON on one line
    is YAML flow style, so the document is the same: each mapping a :class:`Node` whose
    keys are on line 1.  Where the two readings could differ, the text goes to
    :func:`load_text`: more than one line (other line numbers), tabs, non-ASCII text
    (YAML's character check), ``\\uD800``-``\\uDFFF`` escapes (YAML decodes a surrogate pair as two
    code points, JSON as one), floats and NaN (YAML 1.1 reads ``1e5`` as a string),
    integers longer than MAX_INT_CHARS, a key given twice, and anything JSON refuses (so
    every error reads as before)."""
    if any(c in text for c in "\n\r\t") or not text.isascii() or "\\ud" in text.lower():
        return load_text(text, source)
    import json

    def mapping(pairs: list[tuple[str, Any]]) -> Node:
        data = dict(pairs)
        if len(data) != len(pairs):
            raise _LeftToYaml
        return Node(data, dict.fromkeys(data, 1), source, 1)

    def integer(digits: str) -> int:
        if len(digits) > MAX_INT_CHARS:
            raise _LeftToYaml
        return int(digits)

    try:
        document = json.loads(text, object_pairs_hook=mapping, parse_int=integer,
                              parse_float=_refuse_json_value, parse_constant=_refuse_json_value)
    except (_LeftToYaml, ValueError, RecursionError):
        return load_text(text, source)
    _set_fields(document, source)
    return document


#: Largest file a reader takes: machine files, models, matrices and bundles are a few KB.
MAX_FILE_BYTES = 1 << 20


_REFUSED = object()


def _load_fast(text: str, source: str) -> Any:
    import yaml
    fast = _fast_loader()
    if fast is None or yaml.reader.Reader.NON_PRINTABLE.search(text):
        return _REFUSED
    loader = fast(text)
    loader.name = source
    loader.duplicates = []
    try:
        document = loader.get_single_data()
        # a key given twice: the Python loader reports it, as every other error
        return _REFUSED if loader.duplicates else document
    except (yaml.YAMLError, ConfigError, RecursionError, ValueError, TypeError, KeyError, AttributeError):
        return _REFUSED  # the Python loader says what is wrong, with the line
    finally:
        loader.dispose()


def load_file(path: str | Path) -> Any:
    path = Path(path)
    return _parse_bytes(_read_bytes(path), path)


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", source=str(path)) from None
    return data


def load_files(paths: list[Path], cache: str, *, keep_others: int = 0) -> list[Any]:
    """:func:`load_file` of each path, in order, through a cache of parsed documents named
    ``cache`` in the user's cache folder (a folder of device models is ~70 files and ~25 ms
    of parsing; the cache answers in ~1 ms).  A document is taken from the cache only for
    the same path and the same bytes; anything else is parsed (and its errors reported) as
    by :func:`load_file`.  The cache is the user's own: a file others can write, or one that
    does not load, is ignored and rewritten.  The cache holds ``paths``' documents and, with
    ``keep_others``, up to that many others it held before (newest first)."""
    import hashlib
    entries = [(path, _read_bytes(path)) for path in paths]
    keys = [f"{path}\0{hashlib.sha1(data).hexdigest()}" for path, data in entries]
    cached = read_cache(cache)
    documents = [cached[key] if key in cached else _parse_bytes(data, path)
                 for key, (path, data) in zip(keys, entries)]
    if any(key not in cached for key in keys) or len(cached) > len(keys) + keep_others:
        fresh = dict(zip(keys, documents))
        others = [(k, v) for k, v in reversed(cached.items()) if k not in fresh][:keep_others]
        write_cache(cache, {**dict(reversed(others)), **fresh})  # oldest first, as read back
    return documents


def _parse_bytes(data: bytes, path: Path) -> Any:
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"file is larger than {MAX_FILE_BYTES} bytes; these files are a few KB",
                          source=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", source=str(path)) from None
    return load_text(text, str(path))


def _kind(value: Any) -> str:
    if isinstance(value, Node):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


# Typed accessors: each checks one field and raises a located error.

def get_int(node: Node, key: str, *, lo: int | None = None, hi: int | None = None,
            default: Any = ..., decimal: bool = False) -> Any:
    """``node[key]`` as an integer in ``lo..hi``; ``decimal``: a count or an index (MiB,
    a BAR number, a unit), said in decimal in the error as it is written, not as an address."""
    if key not in node:
        if default is ...:
            raise node.error(None, f"missing required field {key!r}")
        return default
    value = node[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise node.error(key, f"expected an integer, got {_kind(value)} {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        shown = str(value) if decimal else f"{value:#x}"
        raise node.error(key, f"{shown} is out of range; expected {_range_text(lo, hi, decimal)}")
    return value


def get_str(node: Node, key: str, *, choices: tuple[str, ...] | None = None, default: Any = ...) -> Any:
    if key not in node:
        if default is ...:
            raise node.error(None, f"missing required field {key!r}")
        return default
    value = node[key]
    if not isinstance(value, str):
        raise node.error(key, f"expected a string, got {_kind(value)} {value!r}")
    if choices is not None and value not in choices:
        raise node.error(key, unknown_name("value", value, choices, label="expected one of", shown=None))
    return value


def get_bool(node: Node, key: str, *, default: bool) -> bool:
    if key not in node:
        return default
    value = node[key]
    if not isinstance(value, bool):
        raise node.error(key, f"expected true or false, got {_kind(value)} {value!r}")
    return value


def get_list(node: Node, key: str, *, default: Any = ...) -> Any:
    if key not in node:
        if default is ...:
            raise node.error(None, f"missing required field {key!r}")
        return default
    value = node[key]
    if not isinstance(value, list):
        raise node.error(key, f"expected a list, got {_kind(value)}")
    return value


def _range_text(lo: int | None, hi: int | None, decimal: bool = False) -> str:
    fmt = "d" if decimal else "#x"
    if lo is not None and hi is not None:
        return f"{lo:{fmt}}..{hi:{fmt}}"
    if lo is not None:
        return f">= {lo:{fmt}}"
    return f"<= {hi:{fmt}}"
