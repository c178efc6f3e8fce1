r"""The ``\Registry`` of one modelled machine: keys, typed values, SQLite storage.

Implements the registry side of nt-semantics.md §1.10 (value types), §2.4 (what lives
under ``HARDWARE\RESOURCEMAP``) and §5.1 (the ``HARDWARE\DESCRIPTION`` tree layout):

* Keys are addressed by absolute NT paths such as
  ``\Registry\Machine\Hardware\ResourceMap\OtherDrivers\Serial``. Names compare
  case-insensitively (NT upcasing, one character at a time) and keep the case they were
  created with. Only ``\REGISTRY\MACHINE`` and ``\REGISTRY\USER`` exist at the top, which is
  what the regedit mapping (:mod:`harness.nt.regfile`) needs. Subkeys enumerate sorted
  case-insensitively; values enumerate in creation order (NT keeps a value's slot when its
  data is replaced).
* Values are stored as ``(type, exact bytes)`` — what ZwQueryValueKey would return — and
  decoded on read (:attr:`RegistryValue.value`). REG_RESOURCE_LIST,
  REG_FULL_RESOURCE_DESCRIPTOR and REG_RESOURCE_REQUIREMENTS_LIST hold the packed structures
  of :mod:`harness.nt.resources` in **the registry's layout** (:attr:`Registry.arch`, x64 by
  default, fixed when the database is created and recorded in it): one machine has one
  pointer width, so every list in its registry uses one layout, exactly as on NT.
  Raw bytes can be stored under any type, so malformed lists (§9.21) can be modelled; they
  raise a :class:`~harness.nt.errors.ResourceFormatError` only when decoded.
* Volatile keys (REG_OPTION_VOLATILE; ResourceMap keys are volatile, §1.10) are real
  rows marked volatile: :meth:`Registry.discard_volatile` is what a reboot does to them,
  and a non-volatile key cannot be created under a volatile one (as in NT).

Storage and concurrency (one registry per machine):

* An SQLite file (stdlib :mod:`sqlite3`) in WAL mode with ``synchronous=FULL``: every
  mutation is atomic (one SQL statement, which SQLite runs as its own transaction or as
  part of the caller's, or one transaction; callers can group several with
  :meth:`Registry.transaction`), so a process killed at any point — even with SIGKILL in the
  middle of a claim — leaves the old state or the new one, and a committed transaction
  survives power loss. ``:memory:`` gives a private in-memory registry for tests.
  ``sync`` says when committed data reaches the disk: ``"commit"`` (the default: at every
  commit; an fsync costs 1.5-2.5 ms here and a main job commits ~280 times), ``"close"``
  (once, at :meth:`Registry.close`) or ``"never"`` (a scratch registry, such as a test's,
  or one that is a run's output file like its other files: the main job's).  Every commit stays atomic and survives a killed process in
  all three (WAL with ``synchronous`` FULL, NORMAL or OFF); only a crash of the whole
  system can lose what was committed since the last sync.
* ``locking_mode=EXCLUSIVE`` plus a write at open makes the opening instance hold SQLite's
  exclusive file lock until :meth:`Registry.close`; a second instance (this process or
  another) gets :class:`~harness.nt.errors.RegistryLockedError` instead of sharing the file.
  The lock is an OS file lock, so it disappears with a killed process.
  :func:`unique_registry_path` names files by pid, xdist worker and a random token.
* Because no one else writes the file, an instance remembers every key it has found or
  created (id, stored name, volatility by folded path): a look-up asks SQLite only for
  path components it has not seen (none at all below a key it created itself: it knows
  every subkey of those), and a delete, ``discard_volatile`` or a rollback forgets them
  all.  :meth:`Registry.walk` reads a subtree in two queries.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import re
import sqlite3
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import (InvalidPathError, KeyHasSubkeysError, KeyNotFoundError, RegistryError,
                     RegistryFileError, RegistryLockedError, RegistryTypeError,
                     ResourceFormatError, ValueNotFoundError, VolatileParentError)
from .resources import (CM_FULL_RESOURCE_DESCRIPTOR, CM_RESOURCE_LIST, Arch,
                        IO_RESOURCE_REQUIREMENTS_LIST, describe_range, descriptor_type_name,
                        fitting_layouts, format_flags, format_option, private_copy_of,
                        share_name)
from .status import NTSTATUS


class RegType(enum.IntEnum):
    """Registry value types (§1.10)."""

    REG_NONE = 0
    REG_SZ = 1
    REG_EXPAND_SZ = 2
    REG_BINARY = 3
    REG_DWORD = 4
    REG_DWORD_BIG_ENDIAN = 5
    REG_LINK = 6
    REG_MULTI_SZ = 7
    REG_RESOURCE_LIST = 8
    REG_FULL_RESOURCE_DESCRIPTOR = 9
    REG_RESOURCE_REQUIREMENTS_LIST = 10
    REG_QWORD = 11


globals().update(RegType.__members__)

REG_OPTION_VOLATILE = 1

# Well-known keys (§2.4, §5.1). The default IoReportResourceUsage class key is "Other" in
# the DDK text and reportedly "OtherDrivers" on real systems (§2.4): the I/O manager picks.
REGISTRY_ROOT = r"\REGISTRY"
MACHINE = r"\REGISTRY\MACHINE"
USER = r"\REGISTRY\USER"
HARDWARE = MACHINE + r"\HARDWARE"
RESOURCE_MAP = HARDWARE + r"\RESOURCEMAP"
DEVICE_MAP = HARDWARE + r"\DEVICEMAP"
DESCRIPTION_SYSTEM = HARDWARE + r"\DESCRIPTION\System"
SERVICES = MACHINE + r"\SYSTEM\CurrentControlSet\Services"

_TOP_KEYS = ("MACHINE", "USER")
MAX_KEY_NAME = 255        # characters, as in NT
MAX_VALUE_NAME = 16383

_RESOURCE_TYPES = {
    RegType.REG_RESOURCE_LIST: CM_RESOURCE_LIST,
    RegType.REG_FULL_RESOURCE_DESCRIPTOR: CM_FULL_RESOURCE_DESCRIPTOR,
    RegType.REG_RESOURCE_REQUIREMENTS_LIST: IO_RESOURCE_REQUIREMENTS_LIST,
}
_STRING_TYPES = (RegType.REG_SZ, RegType.REG_EXPAND_SZ)
_NUMBER_FORMATS = {RegType.REG_DWORD: "<I", RegType.REG_DWORD_BIG_ENDIAN: ">I", RegType.REG_QWORD: "<Q"}


def fold(name: str) -> str:
    """NT-style case folding: upcase one character at a time, leaving characters whose
    upper case is not a single character (ß) alone, so lengths never change."""
    # Names a registry sees again and again are remembered; a long value name is not.
    return _fold_remembered(name) if len(name) <= MAX_KEY_NAME else _fold(name)


def _fold(name: str) -> str:
    # str.upper maps each character on its own (no context), so when no character grew
    # the whole-string upper case is the per-character one.
    upper = name.upper()
    if len(upper) == len(name):
        return upper
    return "".join(u if len(u := c.upper()) == 1 else c for c in name)


_fold_remembered = functools.lru_cache(maxsize=8192)(_fold)


# ---------------------------------------------------------------------------------------
# Value encoding


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def _from_utf16(data: bytes, what: str) -> str:
    if len(data) % 2:
        raise RegistryTypeError(f"{what}: {len(data)} bytes is not whole UTF-16 code units")
    return data.decode("utf-16-le", "surrogatepass")


def encode_value(value: Any, reg_type: int | None = None, arch: Arch = Arch.X64,
                 ) -> tuple[int, bytes]:
    """Turn a Python value into ``(type, bytes)`` as NT stores it.

    With ``reg_type`` None the type follows the value: str → REG_SZ, list/tuple of str →
    REG_MULTI_SZ, int → REG_DWORD (REG_QWORD must be asked for), bytes → REG_BINARY,
    CM_RESOURCE_LIST / CM_FULL_RESOURCE_DESCRIPTOR / IO_RESOURCE_REQUIREMENTS_LIST → the
    matching resource type packed in ``arch``. Bytes are accepted for any type and stored
    as they are.
    """
    if reg_type is None:
        reg_type = _infer_type(value)
    if isinstance(reg_type, bool) or not isinstance(reg_type, int) or not 0 <= reg_type <= 0xFFFFFFFF:
        raise RegistryTypeError(f"registry type must be a ULONG, got {reg_type!r}")
    known = RegType._value2member_map_.get(reg_type)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return reg_type, bytes(value)
    name = known.name if known is not None else f"type {reg_type}"
    if known in _STRING_TYPES and isinstance(value, str):
        if "\0" in value:
            raise RegistryTypeError(f"{name} string contains NUL")
        return reg_type, _utf16(value + "\0")
    if known is RegType.REG_LINK and isinstance(value, str):
        return reg_type, _utf16(value)  # symbolic-link targets are stored unterminated
    if known is RegType.REG_MULTI_SZ and isinstance(value, (list, tuple)):
        parts = []
        for i, s in enumerate(value):
            if not isinstance(s, str):
                raise RegistryTypeError(f"REG_MULTI_SZ item {i} is {type(s).__name__}, not str")
            if s == "" or "\0" in s:
                raise RegistryTypeError(f"REG_MULTI_SZ item {i} is empty or contains NUL "
                                        "(either would end the list)")
            parts.append(s + "\0")
        return reg_type, _utf16("".join(parts) + "\0")
    if known in _NUMBER_FORMATS and isinstance(value, int) and not isinstance(value, bool):
        try:
            return reg_type, struct.pack(_NUMBER_FORMATS[known], value)
        except struct.error:
            raise RegistryTypeError(f"{value} does not fit {name}") from None
    if known in _RESOURCE_TYPES and isinstance(value, _RESOURCE_TYPES[known]):
        return reg_type, value.pack(arch)
    raise RegistryTypeError(f"cannot store {type(value).__name__} as {name}")


def _infer_type(value: Any) -> RegType:
    if isinstance(value, str):
        return RegType.REG_SZ
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        return RegType.REG_MULTI_SZ
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 0xFFFFFFFF:
            raise RegistryTypeError(f"{value} does not fit REG_DWORD; pass REG_QWORD explicitly")
        return RegType.REG_DWORD
    if isinstance(value, (bytes, bytearray, memoryview)):
        return RegType.REG_BINARY
    for reg_type, cls in _RESOURCE_TYPES.items():
        if isinstance(value, cls):
            return reg_type
    raise RegistryTypeError(f"no registry type for {type(value).__name__}; pass one explicitly")


def decode_value(reg_type: int, data: bytes, arch: Arch = Arch.X64) -> Any:
    """The Python view of stored bytes: str, tuple of str, int, bytes or a resource
    structure. Raises RegistryTypeError (or ResourceFormatError for resource types) when
    the bytes do not fit the type."""
    known = RegType._value2member_map_.get(reg_type)
    if known in _STRING_TYPES:
        text = _from_utf16(data, known.name)
        return text[:-1] if text.endswith("\0") else text  # the terminator is optional
    if known is RegType.REG_LINK:
        return _from_utf16(data, "REG_LINK")
    if known is RegType.REG_MULTI_SZ:
        text = _from_utf16(data, "REG_MULTI_SZ")
        text = text[:-1] if text.endswith("\0\0") else text
        text = text[:-1] if text.endswith("\0") else text
        return tuple(text.split("\0")) if text else ()
    if known in (RegType.REG_DWORD, RegType.REG_DWORD_BIG_ENDIAN, RegType.REG_QWORD):
        size = 8 if known is RegType.REG_QWORD else 4
        if len(data) != size:
            raise RegistryTypeError(f"{known.name} needs {size} bytes, has {len(data)}")
        return int.from_bytes(data, "big" if known is RegType.REG_DWORD_BIG_ENDIAN else "little")
    if known in _RESOURCE_TYPES:
        return _RESOURCE_TYPES[known].unpack(data, arch)
    return bytes(data)


def type_label(reg_type: int) -> str:
    try:
        return RegType(reg_type).name
    except ValueError:
        return f"REG_TYPE_{reg_type:#x}"


@dataclass(frozen=True)
class RegistryValue:
    """One value: its name (case as created; "" is the default value), type, exact bytes,
    and the layout resource types are decoded with."""

    name: str
    type: int
    data: bytes
    arch: Arch = Arch.X64

    @property
    def value(self) -> Any:
        """Decoded view (see :func:`decode_value`)."""
        return decode_value(self.type, self.data, self.arch)

    @property
    def type_name(self) -> str:
        return type_label(self.type)


@dataclass(frozen=True)
class KeyInfo:
    """What :meth:`Registry.key_info` tells about one key."""

    path: str          # canonical path, with the stored case of every component
    name: str
    volatile: bool
    subkey_count: int
    value_count: int


# ---------------------------------------------------------------------------------------
# Paths


def split_path(path: str) -> list[str]:
    r"""``\Registry\Machine\X`` → ``["MACHINE", "X"]`` (components below \REGISTRY),
    validating the syntax. Case is kept; comparisons fold later."""
    if not isinstance(path, str):
        raise InvalidPathError(f"key path must be a str, got {type(path).__name__}")
    # A job addresses a few hundred paths thousands of times: those are remembered (an
    # invalid one raises each time: exceptions are not cached); a very long one is not.
    return list(_split_remembered(path) if len(path) <= _REMEMBERED_PATH else _split(path))


_REMEMBERED_PATH = 1024


def _split(path: str) -> tuple[str, ...]:
    if not path.startswith("\\"):
        raise InvalidPathError(f"{path!r} is not an absolute registry path (expected "
                               r"'\Registry\Machine\...')")
    parts = path[1:].split("\\")
    if fold(parts[0]) != "REGISTRY":
        raise InvalidPathError(f"{path!r} does not start with \\Registry")
    parts = parts[1:]
    for p in parts:
        if p == "":
            raise InvalidPathError(f"{path!r} has an empty key name (doubled or trailing '\\')",
                                   NTSTATUS.STATUS_OBJECT_NAME_INVALID)
        if len(p) > MAX_KEY_NAME or "\0" in p:
            raise InvalidPathError(f"key name {p[:40]!r}… is longer than {MAX_KEY_NAME} "
                                   "characters or contains NUL" if len(p) > 40 else
                                   f"key name {p!r} contains NUL",
                                   NTSTATUS.STATUS_OBJECT_NAME_INVALID)
        _check_storable(p, "key name")
    if parts and fold(parts[0]) not in _TOP_KEYS:
        raise InvalidPathError(f"{path!r}: only \\Registry\\Machine and \\Registry\\User "
                               "exist below \\Registry", NTSTATUS.STATUS_OBJECT_NAME_NOT_FOUND)
    return tuple(parts)


_split_remembered = functools.lru_cache(maxsize=4096)(_split)


def _folded_path(path: str) -> tuple[str, ...]:
    """The folded components of a path, the key of a key's row in the per-instance
    memory (validated as :func:`split_path` does; remembered as it remembers)."""
    if isinstance(path, str) and len(path) <= _REMEMBERED_PATH:
        return _folded_remembered(path)
    return _fold_parts(path)


def _fold_parts(path: str) -> tuple[str, ...]:
    return tuple(map(fold, split_path(path)))


_folded_remembered = functools.lru_cache(maxsize=4096)(_fold_parts)


def join_path(*parts: str) -> str:
    return "\\".join((REGISTRY_ROOT, *parts))


def _check_value_name(name: Any) -> str:
    if not isinstance(name, str):
        raise RegistryTypeError(f"value name must be a str, got {type(name).__name__}")
    if len(name) > MAX_VALUE_NAME:
        raise InvalidPathError(f"value name longer than {MAX_VALUE_NAME} characters",
                               NTSTATUS.STATUS_OBJECT_NAME_INVALID)
    _check_storable(name, "value name")
    return name


def _check_storable(name: str, what: str) -> None:
    """Names are SQLite text: a lone UTF-16 surrogate (possible in a UTF-16 .reg file)
    cannot be stored, so it is refused like any other invalid name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPathError(f"{what} {name!r} contains a lone UTF-16 surrogate",
                               NTSTATUS.STATUS_OBJECT_NAME_INVALID) from None


def _check_file(path: str, create: bool) -> bool:
    """Whether ``path`` holds a database to open; refuse what a reader must not touch: a
    missing or empty file when ``create`` is false (opening would make it a database).
    (Only stat: opening and closing the file here would drop this process's SQLite locks
    on it.  A file that is not SQLite is refused by SQLite itself, unwritten.)"""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        if not create:
            raise RegistryFileError(f"registry file {path} does not exist",
                                    NTSTATUS.STATUS_OBJECT_NAME_NOT_FOUND) from None
        return False
    except OSError as e:
        raise RegistryFileError(f"cannot read registry file {path}: {e.strerror}") from None
    if size == 0 and not create:
        raise RegistryFileError(f"registry file {path} is empty: not a registry database")
    return size > 0


def unique_registry_path(directory: str | os.PathLike | None = None, *,
                         machine: str = "machine") -> Path:
    """A registry file path no other run, xdist worker or machine will pick:
    ``<dir>/<machine>-<pid>-<worker>-<random>.sqlite`` (dir defaults to the temp dir)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", machine) or "machine"
    if directory is None:
        import tempfile  # (only here: with random, ~1 ms of every process that opens a registry)
        directory = tempfile.gettempdir()
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    return base / f"{safe}-{os.getpid()}-{worker}-{os.urandom(6).hex()}.sqlite"


# ---------------------------------------------------------------------------------------
# The registry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    id       INTEGER PRIMARY KEY,
    parent   INTEGER REFERENCES keys(id) ON DELETE CASCADE,
    name     TEXT NOT NULL,
    folded   TEXT NOT NULL,
    volatile INTEGER NOT NULL DEFAULT 0,
    UNIQUE (parent, folded)
);
CREATE TABLE IF NOT EXISTS reg_values (
    key_id INTEGER NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    folded TEXT NOT NULL,
    type   INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (key_id, folded)
);
"""
#: When committed data reaches the disk (see the module docstring) -> SQLite's synchronous.
SYNC_MODES = {"commit": "FULL", "close": "NORMAL", "never": "OFF"}
#: What every row must hold (SQLite keeps any type in any column; a damaged page may too).
_ROW_TYPES = {
    "meta": "typeof(name)='text' AND typeof(value)='text'",
    "keys": "typeof(id)='integer' AND (parent IS NULL OR typeof(parent)='integer') AND "
            "typeof(name)='text' AND typeof(folded)='text' AND typeof(volatile)='integer'",
    "reg_values": "typeof(key_id)='integer' AND typeof(name)='text' AND typeof(folded)='text' AND "
                  "typeof(type)='integer' AND typeof(data)='blob'",
}
_MAGIC = "harness-nt-registry"
#: The empty in-memory registry of each (process, layout): its connection, the keys it
#: knows and those whose children it knows (Registry._copy_empty); its connection is only
#: read, under the lock, from any thread.
_EMPTY: dict[tuple[int, Any], tuple[sqlite3.Connection, dict[Any, Any], set[int]]] = {}
_EMPTY_LOCK = threading.Lock()
_SCHEMA_VERSION = "1"
_ROOT_ID = 1


class Registry:
    r"""One machine's registry. ``Registry(":memory:")`` for tests,
    ``Registry(path)`` for a file (created unless ``create=False``).

    ``arch`` is the layout of resource values; for an existing file it must match the
    recorded one (None accepts it). ``sync``: see the module docstring. Use as a context
    manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike = ":memory:", *, arch: Arch | str | None = None,
                 create: bool = True, timeout: float = 0.5, sync: str = "commit") -> None:
        self.path = str(path)
        self._depth = 0
        #: Keys found or created, by their folded path below \REGISTRY: (id, stored name,
        #: volatile).  Only this instance writes the file (its exclusive lock), so an entry
        #: goes stale only by this instance's deletes and rollbacks, which empty it.
        self._keys: dict[tuple[str, ...], tuple[int, str, bool]] = {}
        #: Ids of keys this instance created: every subkey they have is in ``_keys`` (they
        #: began with none), so a name missing there is missing in the file, unasked.
        self._all_children_known: set[int] = set()
        if sync not in SYNC_MODES:
            raise RegistryError(f"sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        self.sync = sync
        in_memory = self.path == ":memory:"
        existing = not in_memory and _check_file(self.path, create)
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise RegistryFileError(f"cannot open registry file {self.path}: {e}") from None
        self._db.text_factory = self._decode_text
        try:
            self._configure(in_memory, existing)
            self.arch = self._copy_empty(arch) if in_memory else self._initialise(arch)
        except BaseException:
            self._db.close()
            raise

    # -- opening ---------------------------------------------------------------------------
    def _configure(self, in_memory: bool, existing: bool) -> None:
        try:
            self._db.execute("PRAGMA foreign_keys=ON")
            if not in_memory:
                # Exclusive: hold the file lock from the first write until close.
                self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
                if existing:  # the first access (under the lock), before anything is written
                    self._check_database()
                if self.sync != "commit":
                    # Nothing is committed yet: switching a new file to WAL needs no fsync.
                    self._db.execute("PRAGMA synchronous=OFF")
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise RegistryFileError(f"{self.path}: cannot switch to WAL (got {mode})")
                self._db.execute(f"PRAGMA synchronous={SYNC_MODES[self.sync]}")
        except sqlite3.OperationalError as e:
            raise self._map_open_error(e) from None
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:  # (a message may quote damaged bytes)
            raise RegistryFileError(f"{self.path} is not a registry database: {e}") from None

    def _decode_text(self, data: bytes) -> str:
        """Key and value names as stored (UTF-8); a damaged record is the file's error."""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise RegistryFileError(f"{self.path} is damaged: a stored name is not UTF-8 "
                                    f"({data[:24]!r})") from None

    def _check_database(self) -> None:
        """Refuse a damaged file, or an SQLite file that is not a registry, at open (with
        SQLite's integrity_check, row types, folded names), not at some later read."""
        try:
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            missing = {"meta", "keys", "reg_values"} - tables
            if missing:
                raise RegistryFileError(f"{self.path} is an SQLite file but not a harness registry "
                                        f"(no table {', '.join(sorted(missing))})")
            problems = [r[0] for r in self._db.execute("PRAGMA integrity_check(5)")]
            if problems == ["ok"]:  # whole pages can still hold rows of the wrong types
                problems = [f"{n} row(s) of {table} with a field of the wrong type"
                            for table, check in _ROW_TYPES.items()
                            for (n,) in self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE NOT ({check})")
                            if n] or ["ok"]
            if problems == ["ok"]:  # lookups go by the folded name: it must be the name's
                problems = [f"{table} row {rowid} holds the name {name[:40]!r} folded as {folded[:40]!r}"
                            for table in ("keys", "reg_values")
                            for rowid, name, folded in self._db.execute(f"SELECT rowid, name, folded FROM {table}")
                            if fold(name) != folded or (table == "keys" and ("\\" in name or not name))][:5] or ["ok"]
        except sqlite3.OperationalError as e:
            raise self._map_open_error(e) from None
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:  # (a message may quote damaged bytes)
            raise RegistryFileError(f"{self.path} is damaged or not a registry database: {e}") from None
        if problems != ["ok"]:
            raise RegistryFileError(f"{self.path} is damaged (SQLite integrity_check: {'; '.join(problems)})")

    def _map_open_error(self, e: sqlite3.Error) -> RegistryError:
        if "locked" in str(e) or "busy" in str(e):
            return RegistryLockedError(f"registry file {self.path} is in use by another live "
                                       "registry instance")
        return RegistryFileError(f"cannot use registry file {self.path}: {e}")

    def _initialise(self, arch: Arch | str | None) -> Arch:
        try:
            with self.transaction():  # a write: takes and keeps the exclusive lock
                tables = {r[0] for r in self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")}
                if tables and "meta" not in tables:
                    raise RegistryFileError(f"{self.path} is an SQLite file but not a "
                                            "harness registry")
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)  # (executescript would COMMIT first)
                meta = dict(self._db.execute("SELECT name, value FROM meta"))
                if not meta:
                    chosen = Arch.parse(arch) if arch is not None else Arch.X64
                    self._db.executemany("INSERT INTO meta VALUES (?, ?)", [
                        ("magic", _MAGIC), ("schema", _SCHEMA_VERSION), ("arch", chosen.value)])
                    self._db.execute("INSERT INTO keys (id, parent, name, folded) "
                                     "VALUES (?, NULL, 'REGISTRY', 'REGISTRY')", (_ROOT_ID,))
                    self._all_children_known.add(_ROOT_ID)
                    for top in _TOP_KEYS:
                        cur = self._db.execute("INSERT INTO keys (parent, name, folded) VALUES (?,?,?)",
                                               (_ROOT_ID, top, top))
                        self._keys[(top,)] = (cur.lastrowid, top, False)
                        self._all_children_known.add(cur.lastrowid)
                    return chosen
                if meta.get("magic") != _MAGIC or meta.get("schema") != _SCHEMA_VERSION:
                    raise RegistryFileError(f"{self.path}: not a harness registry of schema "
                                            f"{_SCHEMA_VERSION} (meta {meta})")
                try:
                    stored = Arch.parse(meta.get("arch"))
                except (ValueError, KeyError, TypeError, ResourceFormatError):
                    raise RegistryFileError(f"{self.path}: damaged meta table (arch {meta.get('arch')!r})") from None
                if arch is not None and Arch.parse(arch) is not stored:
                    raise RegistryFileError(f"{self.path} stores {stored.value} resource "
                                            f"lists, not {Arch.parse(arch).value}")
                return stored
        except sqlite3.OperationalError as e:
            raise self._map_open_error(e) from None
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:  # (a message may quote damaged bytes)
            raise RegistryFileError(f"{self.path} is not a registry database: {e}") from None

    def _copy_empty(self, arch: Arch | str | None) -> Arch:
        """An in-memory registry as :meth:`_initialise` makes it, copied (SQLite's online
        backup) from the first one this process made for that layout: open, first write
        and close 332 -> 175 µs, and every matrix cell opens one (issue 21's tenth round;
        the copy's schema is read again at its first statement).  What is copied is that
        empty registry alone, never a later write."""
        chosen = Arch.parse(arch) if arch is not None else Arch.X64
        key = (os.getpid(), chosen)   # a forked child makes its own (no connection crosses a fork)
        with _EMPTY_LOCK:
            empty = _EMPTY.get(key)
            if empty is None:
                self._initialise(chosen)
                copy = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                self._db.backup(copy)
                _EMPTY[key] = (copy, dict(self._keys), set(self._all_children_known))
                return chosen
            empty[0].backup(self._db)
        self._keys.update(empty[1])
        self._all_children_known.update(empty[2])
        return chosen

    def close(self) -> None:
        """Release the file (and its lock). Idempotent."""
        if self._db is not None:
            try:
                if self.sync == "close" and self.path != ":memory:" and not self.in_transaction:
                    # Everything committed reaches the disk now (the WAL, then the database).
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
                self._db = None  # type: ignore[assignment]
                self._forget_keys()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the registry as it is now to a new file ``path`` (SQLite's online backup),
        which :class:`Registry` opens like any other: how an in-memory registry that turns
        out to matter is kept.  ``path`` must not exist yet."""
        target = Path(path)
        if self.in_transaction:
            raise RegistryError("cannot save a registry in the middle of a transaction")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise RegistryFileError(f"cannot write registry file {target}: {e.strerror}") from None
        os.close(fd)
        try:
            with contextlib.closing(sqlite3.connect(target)) as copy:
                self._conn.backup(copy)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self.path!r}, arch={self.arch.value!r})"

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RegistryError("registry is closed")
        return self._db

    # -- transactions ----------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator["Registry"]:
        """Group mutations atomically: all of them or none, also across a crash. Nests
        (inner blocks are savepoints: an exception inside rolls back only that block if
        the caller catches it)."""
        db = self._conn
        depth = self._depth
        db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT sp{depth}")
        self._depth += 1
        try:
            yield self
        except BaseException:
            self._depth = depth
            self._forget_keys()  # it may hold keys the rollback removes
            if depth == 0:
                db.execute("ROLLBACK")
            else:
                db.execute(f"ROLLBACK TO sp{depth}")
                db.execute(f"RELEASE sp{depth}")
            raise
        self._depth = depth
        try:
            db.execute("COMMIT" if depth == 0 else f"RELEASE sp{depth}")
        except BaseException:
            self._forget_keys()  # a failed commit may have rolled back
            raise

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def _forget_keys(self) -> None:
        """Drop what this instance remembers of keys (after a delete or a rollback)."""
        self._keys.clear()
        self._all_children_known.clear()

    # -- keys ------------------------------------------------------------------------------
    def _lookup(self, parts: Sequence[str]) -> list[tuple[int, str, bool]] | None:
        """Rows (id, stored name, volatile) from the root down, or None if a part is missing."""
        db = self._conn
        rows = [(_ROOT_ID, "REGISTRY", False)]
        folded = tuple(map(fold, parts))
        for i in range(len(folded)):
            prefix = folded[:i + 1]
            row = self._keys.get(prefix)
            if row is None:
                if rows[-1][0] in self._all_children_known:
                    return None
                found = db.execute("SELECT id, name, volatile FROM keys WHERE parent=? AND folded=?",
                                   (rows[-1][0], folded[i])).fetchone()
                if found is None:
                    return None
                row = self._keys[prefix] = (found[0], found[1], bool(found[2]))
            rows.append(row)
        return rows

    def _key_id(self, path: str) -> int:
        row = self._keys.get(_folded_path(path))  # (emptied when the registry closes)
        if row is not None:
            return row[0]
        rows = self._lookup(split_path(path))
        if rows is None:
            raise KeyNotFoundError(f"key {path} does not exist")
        return rows[-1][0]

    def key_exists(self, path: str) -> bool:
        return self._lookup(split_path(path)) is not None

    def canonical_path(self, path: str) -> str:
        """The path with every component in the case it was created with."""
        rows = self._lookup(split_path(path))
        if rows is None:
            raise KeyNotFoundError(f"key {path} does not exist")
        return join_path(*(name for _, name, _ in rows[1:]))

    def create_key(self, path: str, *, volatile: bool = False) -> str:
        """Create ``path`` and any missing parents (opening whatever exists, like
        ZwCreateKey's REG_OPENED_EXISTING_KEY). Returns the canonical path."""
        parts = split_path(path)
        folded = _folded_path(path)
        db = self._conn
        # Find the first missing component (asking SQLite only where this instance does
        # not know the answer); every component below it is missing too.
        parent, names, parent_volatile = _ROOT_ID, [], False
        for i, part in enumerate(parts):
            row = self._keys.get(folded[:i + 1])
            if row is None and parent not in self._all_children_known:
                found = db.execute("SELECT id, name, volatile FROM keys WHERE parent=? AND folded=?",
                                   (parent, folded[i])).fetchone()
                if found is not None:
                    row = self._keys[folded[:i + 1]] = (found[0], found[1], bool(found[2]))
            if row is None:
                break
            parent, parent_volatile = row[0], row[2]
            names.append(row[1])
        else:
            return join_path(*names)
        if parent_volatile and not volatile:
            raise VolatileParentError(f"cannot create non-volatile key {parts[i]!r} under "
                                      f"volatile {join_path(*names)}")
        # One missing key is one INSERT, atomic by itself; several are one transaction.
        with self.transaction() if i + 1 < len(parts) else contextlib.nullcontext():
            for j in range(i, len(parts)):
                cur = db.execute("INSERT INTO keys (parent, name, folded, volatile) VALUES (?,?,?,?)",
                                 (parent, parts[j], folded[j], int(volatile)))
                parent = cur.lastrowid
                self._keys[folded[:j + 1]] = (parent, parts[j], volatile)
                self._all_children_known.add(parent)
                names.append(parts[j])
        return join_path(*names)

    def key_info(self, path: str) -> KeyInfo:
        rows = self._lookup(split_path(path))
        if rows is None:
            raise KeyNotFoundError(f"key {path} does not exist")
        key_id, name, volatile = rows[-1]
        (subkeys,) = self._conn.execute("SELECT COUNT(*) FROM keys WHERE parent=?",
                                        (key_id,)).fetchone()
        (nvalues,) = self._conn.execute("SELECT COUNT(*) FROM reg_values WHERE key_id=?",
                                        (key_id,)).fetchone()
        return KeyInfo(join_path(*(n for _, n, _ in rows[1:])), name, volatile, subkeys, nvalues)

    def subkeys(self, path: str) -> list[str]:
        """Names of the direct subkeys, sorted case-insensitively (as NT enumerates)."""
        key_id = self._key_id(path)
        return [r[0] for r in self._conn.execute(
            "SELECT name FROM keys WHERE parent=? ORDER BY folded", (key_id,))]

    def delete_key(self, path: str, *, recursive: bool = False) -> None:
        """Delete a key with its values; subkeys too when ``recursive`` (else a key with
        subkeys raises KeyHasSubkeysError, as ZwDeleteKey refuses)."""
        parts = split_path(path)
        if len(parts) <= 1:
            raise KeyHasSubkeysError(f"{path} is a root key and cannot be deleted",
                                     NTSTATUS.STATUS_CANNOT_DELETE)
        with self.transaction():
            key_id = self._key_id(path)
            if not recursive and self._conn.execute(
                    "SELECT 1 FROM keys WHERE parent=? LIMIT 1", (key_id,)).fetchone():
                raise KeyHasSubkeysError(f"key {path} has subkeys")
            self._conn.execute("DELETE FROM keys WHERE id=?", (key_id,))  # cascades
            self._forget_keys()

    def discard_volatile(self) -> int:
        """Drop every volatile key (what a reboot does). Returns how many keys went."""
        with self.transaction():
            before = self._conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0]
            self._conn.execute("DELETE FROM keys WHERE volatile=1")
            self._forget_keys()
            after = self._conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0]
        return before - after

    # -- values ----------------------------------------------------------------------------
    def set_value(self, path: str, name: str, value: Any, reg_type: int | None = None) -> None:
        """Create or replace a value under an existing key (see :func:`encode_value` for
        how Python values map to types). A replaced value keeps its name's case and slot."""
        name = _check_value_name(name)
        reg_type, data = encode_value(value, reg_type, self.arch)
        key_id = self._key_id(path)
        # One statement: atomic by itself (its own transaction, or part of the caller's).
        self._conn.execute(
            "INSERT INTO reg_values (key_id, name, folded, type, data) VALUES (?,?,?,?,?) "
            "ON CONFLICT (key_id, folded) DO UPDATE SET type=excluded.type, "
            "data=excluded.data", (key_id, name, fold(name), reg_type, data))

    def get_value(self, path: str, name: str) -> RegistryValue:
        key_id = self._key_id(path)
        row = self._conn.execute("SELECT name, type, data FROM reg_values WHERE key_id=? AND "
                                 "folded=?", (key_id, fold(_check_value_name(name)))).fetchone()
        if row is None:
            raise ValueNotFoundError(f"value {name!r} does not exist under {path}")
        return RegistryValue(row[0], row[1], bytes(row[2]), self.arch)

    _MISSING = object()

    def get(self, path: str, name: str, default: Any = _MISSING) -> Any:
        """Decoded value; ``default`` (if given) when the key or value is missing."""
        try:
            return self.get_value(path, name).value
        except (KeyNotFoundError, ValueNotFoundError):
            if default is Registry._MISSING:
                raise
            return default

    def values(self, path: str) -> list[RegistryValue]:
        """Every value of a key, in creation order."""
        key_id = self._key_id(path)
        return [RegistryValue(n, t, bytes(d), self.arch) for n, t, d in self._conn.execute(
            "SELECT name, type, data FROM reg_values WHERE key_id=? ORDER BY rowid", (key_id,))]

    def delete_value(self, path: str, name: str, *, missing_ok: bool = False) -> None:
        key_id = self._key_id(path)
        cur = self._conn.execute("DELETE FROM reg_values WHERE key_id=? AND folded=?",
                                 (key_id, fold(_check_value_name(name))))
        if cur.rowcount == 0 and not missing_ok:
            raise ValueNotFoundError(f"value {name!r} does not exist under {path}")

    def walk(self, path: str = REGISTRY_ROOT) -> Iterator[tuple[str, list[RegistryValue]]]:
        """Pre-order (key path, values) for ``path`` and everything below it; subkeys in
        enumeration order. Paths are canonical. The subtree is read when the iteration
        starts (two queries, not two per key)."""
        for key, _volatile, values in self._walk(path):
            yield key, values

    _SUBTREE = ("WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL "
                "SELECT keys.id FROM keys JOIN sub ON keys.parent = sub.id) ")

    def _walk(self, path: str) -> Iterator[tuple[str, bool, list[RegistryValue]]]:
        """:meth:`walk` with each key's volatility."""
        rows = self._lookup(split_path(path))
        if rows is None:
            raise KeyNotFoundError(f"key {path} does not exist")
        start, _, start_volatile = rows[-1]
        db = self._conn
        children: dict[int, list[tuple[str, int, str, bool]]] = {}
        for key_id, parent, name, folded, volatile in db.execute(
                self._SUBTREE + "SELECT keys.id, keys.parent, keys.name, keys.folded, keys.volatile "
                "FROM keys JOIN sub ON keys.id = sub.id", (start,)):
            children.setdefault(parent, []).append((folded, key_id, name, bool(volatile)))
        values: dict[int, list[RegistryValue]] = {}
        for key_id, name, reg_type, data in db.execute(
                self._SUBTREE + "SELECT v.key_id, v.name, v.type, v.data FROM reg_values v "
                "JOIN sub ON v.key_id = sub.id ORDER BY v.rowid", (start,)):
            values.setdefault(key_id, []).append(RegistryValue(name, reg_type, bytes(data), self.arch))
        # The enumeration order of subkeys: by folded name (SQLite's BINARY order of UTF-8
        # text is code point order, as Python's).
        stack = [(join_path(*(name for _, name, _ in rows[1:])), start, start_volatile)]
        while stack:
            key, key_id, volatile = stack.pop()
            yield key, volatile, values.get(key_id, [])
            stack.extend((f"{key}\\{name}", child, vol)
                         for _, child, name, vol in sorted(children.get(key_id, ()), reverse=True))


# ---------------------------------------------------------------------------------------
# Readable tree print


def _decoded_in_a_layout(v: RegistryValue) -> tuple[Any, str]:
    r"""The value decoded, and for resource types the layout used with a note when it is
    not the registry's: Windows keeps a few values in the other layout (an x64 hive's
    ``SystemResources\ReservedResources\Isa`` is x86), and the import takes them."""
    try:
        return v.value, v.arch.value
    except ResourceFormatError:
        fits = fitting_layouts(v.data, _RESOURCE_TYPES[RegType(v.type)])
        if not fits:
            raise
        return (decode_value(v.type, v.data, fits[0]),
                f"{fits[0].value} layout, not this registry's {v.arch.value}")


def _value_lines(v: RegistryValue) -> list[str]:
    label = f"{v.name or '(Default)'} : {v.type_name}"
    try:
        decoded, layout = _decoded_in_a_layout(v)
    except (RegistryTypeError, ResourceFormatError) as e:
        return [f"{label} <undecodable: {e}>", *_hex_lines(v.data)]
    if isinstance(decoded, CM_RESOURCE_LIST):
        lines = [f"{label} ({len(v.data)} bytes, {layout}, {decoded.count} full "
                 "descriptor(s))"]
        for i, full in enumerate(decoded.descriptors):
            lines += ["    " + s for s in _full_lines(full, f"List[{i}] ")]
        return lines
    if isinstance(decoded, CM_FULL_RESOURCE_DESCRIPTOR):
        return [f"{label} ({len(v.data)} bytes, {layout})",
                *("    " + s for s in _full_lines(decoded, ""))]
    if isinstance(decoded, IO_RESOURCE_REQUIREMENTS_LIST):
        reserved = (" reserved " + " ".join(f"{r:#x}" for r in decoded.reserved)
                    if any(decoded.reserved) else "")
        lines = [f"{label} ({len(v.data)} bytes) {decoded.interface_type.name} bus "
                 f"{decoded.bus_number} slot {decoded.slot_number:#x}{reserved}, "
                 f"{decoded.alternative_lists} alternative list(s)"]
        for i, lst in enumerate(decoded.lists):
            lines.append(f"    List[{i}] (version {lst.version}.{lst.revision})")
            for j, d in enumerate(lst.descriptors):
                lines.append("        " + _row(d, describe_range(d)) + f"  {format_option(d.option)}")
                if j and private_copy_of(d, lst.descriptors[j - 1], v.arch):
                    lines.append(f"            (a copy of the union of Descriptors[{j - 1}], the "
                                 "rule XP's PCI driver follows: the tail is its end)")
        if decoded.slack:
            what = "zero" if not any(decoded.slack) else decoded.slack.hex(" ")
            lines.append(f"    {len(decoded.slack)} bytes after the lists, inside ListSize: {what}")
        return lines
    if isinstance(decoded, str):
        return [f'{label} "{decoded}"']
    if isinstance(decoded, tuple):
        return [f"{label} [{', '.join(repr(s) for s in decoded)}]"]
    if isinstance(decoded, int):
        return [f"{label} {decoded:#x} ({decoded})"]
    return [f"{label} ({len(decoded)} bytes)", *_hex_lines(decoded)]


def _full_lines(full: CM_FULL_RESOURCE_DESCRIPTOR, prefix: str) -> list[str]:
    prl = full.partial_resource_list
    lines = [f"{prefix}{full.interface_type.name} bus {full.bus_number} "
             f"(version {prl.version}.{prl.revision}, {prl.count} partial(s))"]
    for d in prl.descriptors:
        lines.append("    " + _row(d, describe_range(d)))
    return lines


def _row(d: Any, what: str) -> str:
    return (f"{descriptor_type_name(d):<14} {what:<38} {share_name(d.share):<16} "
            f"{format_flags(d.type, d.flags, short=True)}").rstrip()


def _hex_lines(data: bytes) -> list[str]:
    return [f"    {i:04x}: {data[i:i + 16].hex(' ')}" for i in range(0, len(data), 16)]


def format_tree(registry: Registry, path: str = REGISTRY_ROOT) -> str:
    """Print a subtree like a registry viewer: each key, then its values indented, with
    resource lists decoded into type / range / share / flags rows."""
    out = []
    for key, volatile, values in registry._walk(path):
        out.append(key + ("  [volatile]" if volatile else ""))
        for v in values:
            out.extend("    " + line for line in _value_lines(v))
    return "\n".join(out) + "\n"


__all__ = ["RegType", *RegType.__members__, "REG_OPTION_VOLATILE", "Registry",
           "RegistryValue", "KeyInfo", "encode_value", "decode_value", "fold", "split_path",
           "join_path", "unique_registry_path", "format_tree", "type_label", "REGISTRY_ROOT",
           "MACHINE", "USER", "HARDWARE", "RESOURCE_MAP", "DEVICE_MAP", "DESCRIPTION_SYSTEM",
           "SERVICES"]
