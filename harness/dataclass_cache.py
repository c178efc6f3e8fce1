"""Compiled dataclass methods kept from one run to the next (start-up time).

``@dataclass`` writes the methods of each class it makes (``__init__``, ``__repr__``,
``__eq__``, and for a frozen class ``__hash__``, ``__setattr__``, ``__delattr__``) as
Python source and compiles it with ``exec`` while the class is created.  The NT model,
the QEMU layer and the job define ~110 dataclasses: ~570 compilations, ~48 ms of the
~100 ms a matrix runner spends importing them (benchmarks/RESULTS-overhead.md, eighth
round), paid again by every command that imports the model.

That source depends only on the class's definition, so :func:`install` makes the
``exec`` the dataclasses module calls run a code object compiled once and kept in the
user's private cache (:func:`harness.packagedata.read_cache`), keyed by a digest of the
source text, in a file named by the interpreter's bytecode magic.  Only the dataclasses
module's own ``exec`` is replaced (a module global, which Python looks up before the
builtin); a source not in the cache, or an entry that does not load, is compiled as
before, so a class is always exactly what ``@dataclass`` makes of it.  The cache is
written once, at exit, when something new was compiled.

Only the harness's own processes install it, before they import the model: the
``harness`` program (:func:`harness.cli.entry`, before its parser, which loads the chosen
command's module; not when help is asked) and the matrix workers it spawns (forked ones
inherit it).  A user's process that imports the harness (a pytest run, a script calling
:func:`harness.cli.main` or :func:`harness.matrix.run_cells`) keeps its dataclasses
module as it is.
"""

from __future__ import annotations

import builtins
import hashlib
import marshal
import sys

#: Entries kept beyond those the last process used (the harness's other versions' classes).
KEEP_UNUSED = 2000

_state: dict[str, dict[bytes, bytes]] = {}   # "stored": the cache as read; "fresh": compiled here
_used: set[bytes] = set()
_SOURCE_FILE = "<string>"   # what dataclasses' own exec compiles its source as


def _cache_name() -> str:
    from importlib.util import MAGIC_NUMBER
    return f"dataclass-code-{sys.implementation.cache_tag}-{MAGIC_NUMBER.hex()}"


def install() -> None:
    """Have ``@dataclass`` take its methods' code from the cache from now on (idempotent;
    classes made before keep what they have).  Nothing happens when the dataclasses
    module already has an ``exec`` of its own (someone else's)."""
    import dataclasses
    current = vars(dataclasses).get("exec")
    if current is _cached_exec or current is not None:
        return
    dataclasses.exec = _cached_exec  # type: ignore[attr-defined]
    import atexit
    atexit.register(save)


def uninstall() -> None:
    """Give the dataclasses module back the builtin ``exec`` (tests)."""
    import dataclasses
    if vars(dataclasses).get("exec") is _cached_exec:
        del dataclasses.exec  # type: ignore[attr-defined]


def _stored() -> dict[bytes, bytes]:
    if "stored" not in _state:
        from .packagedata import read_cache
        _state["stored"] = read_cache(_cache_name())
        _state["fresh"] = {}
    return _state["stored"]


def _cached_exec(source: object, globals: dict | None = None, locals: dict | None = None, /) -> None:
    if not isinstance(source, str):   # a code object (or bytes): nothing to compile here
        return builtins.exec(source, globals, locals)  # type: ignore[arg-type]
    key = hashlib.sha1(source.encode()).digest()
    _used.add(key)
    stored = _stored()
    blob = stored.get(key) or _state["fresh"].get(key)
    code = None
    if blob is not None:
        try:
            code = marshal.loads(blob)
        except (EOFError, ValueError, TypeError):
            code = None
    if code is None:
        # dont_inherit: this module's ``from __future__ import annotations`` would make the
        # methods' annotations strings, which dataclasses' own exec does not.
        code = compile(source, _SOURCE_FILE, "exec", dont_inherit=True)
        _state["fresh"][key] = marshal.dumps(code)
    builtins.exec(code, globals, locals)
    return None


def compiled() -> int:
    """How many sources this process compiled (not found in the cache): tests, benchmarks."""
    return len(_state.get("fresh", {}))


def save() -> None:
    """Write the cache if this process compiled anything new (registered at exit)."""
    fresh = _state.get("fresh")
    if not fresh:
        return
    from .packagedata import write_cache
    stored = _state["stored"]
    unused = [k for k in stored if k not in _used][-KEEP_UNUSED:]
    write_cache(_cache_name(), {**{k: stored[k] for k in unused},
                                **{k: v for k, v in stored.items() if k in _used}, **fresh})
    _state["stored"] = {**stored, **fresh}
    _state["fresh"] = {}
