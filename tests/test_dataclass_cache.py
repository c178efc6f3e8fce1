"""The cache of compiled dataclass methods (harness.dataclass_cache): a class made from the
cache behaves exactly as one @dataclass compiles, the cache answers only for the same
source, and a cache that does not load, or that others could have written, is no cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Classes of every kind of generated method, and a fingerprint of how they behave.
FINGERPRINT = r'''
import dataclasses, inspect, json, sys
from dataclasses import dataclass, field, InitVar
if sys.argv[1] == "cache":
    import harness.dataclass_cache as cache
    cache.install()

@dataclass(frozen=True)
class Range:
    start: int
    end: int = 0
    tags: tuple = ()
    note: str = field(default="", compare=False)

@dataclass(order=True)
class Ordered:
    key: int
    items: list = field(default_factory=list)

@dataclass(kw_only=True, slots=True)
class Options:
    name: str
    count: int = 3

@dataclass(eq=False, repr=False)
class Plain:
    value: int

@dataclass
class Derived:
    base: int
    scale: InitVar[int] = 2
    total: int = field(init=False, default=0)
    def __post_init__(self, scale):
        self.total = self.base * scale

def attempt(fn):
    try:
        return repr(fn())
    except Exception as exc:
        return type(exc).__name__ + ": " + str(exc)

r = Range(1, 2, ("a",), note="x")
out = {
    "repr": [repr(r), repr(Ordered(1)), repr(Options(name="n")), repr(Derived(3))],
    "eq": [r == Range(1, 2, ("a",), note="y"), r == Range(1, 3), Ordered(1) == Ordered(1, []),
           Plain(1) == Plain(1)],
    "hash": [hash(r) == hash(Range(1, 2, ("a",))), Ordered.__hash__ is None],
    "order": [Ordered(1) < Ordered(2), sorted([Ordered(3), Ordered(1)])[0].key],
    "frozen": attempt(lambda: setattr(r, "start", 5)),
    "delete": attempt(lambda: delattr(r, "end")),
    "kw_only": attempt(lambda: Options("n")),
    "slots": [Options.__slots__, attempt(lambda: setattr(Options(name="n"), "other", 1))],
    "missing": attempt(lambda: Range()),
    "derived": [Derived(3).total, Derived(3, 4).total],
    "signatures": [str(inspect.signature(c)) for c in (Range, Ordered, Options, Plain, Derived)],
    "defaults": [Ordered(1).items is not Ordered(1).items],
    "match_args": [Range.__match_args__, Derived.__match_args__],
}
if sys.argv[1] == "cache":
    out["compiled"] = cache.compiled()
print(json.dumps(out))
'''


def _run(mode: str, cache_dir: Path) -> dict:
    env = dict(os.environ, HARNESS_CACHE_DIR=str(cache_dir), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", FINGERPRINT, mode], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _cache_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "parsed").glob("dataclass-code-*.pickle"))


def test_classes_from_the_cache_behave_as_compiled_ones(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    plain = _run("plain", cache_dir)
    first = _run("cache", cache_dir)     # compiles and stores
    second = _run("cache", cache_dir)    # from the cache
    assert first.pop("compiled") > 0
    assert second.pop("compiled") == 0
    assert first == plain and second == plain
    assert len(_cache_files(cache_dir)) == 1


def test_a_cache_that_does_not_load_is_compiled_again_and_rewritten(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    plain = _run("plain", cache_dir)
    _run("cache", cache_dir)
    (path,) = _cache_files(cache_dir)
    path.write_bytes(b"not a pickle")
    again = _run("cache", cache_dir)
    assert again.pop("compiled") > 0 and again == plain
    after = _run("cache", cache_dir)
    assert after.pop("compiled") == 0   # rewritten whole


def test_an_entry_that_does_not_load_is_compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle
    cache_dir = tmp_path / "cache"
    plain = _run("plain", cache_dir)
    _run("cache", cache_dir)
    (path,) = _cache_files(cache_dir)
    entries = pickle.loads(path.read_bytes())
    path.write_bytes(pickle.dumps({key: b"\x00garbage" for key in entries}))
    again = _run("cache", cache_dir)
    assert again.pop("compiled") == len(entries) and again == plain


def test_a_cache_others_could_write_is_not_read(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    _run("cache", cache_dir)
    (path,) = _cache_files(cache_dir)
    path.chmod(0o666)
    assert _run("cache", cache_dir)["compiled"] > 0


def test_install_keeps_someone_elses_exec_and_uninstall_restores_the_builtin(tmp_path: Path) -> None:
    """In a fresh interpreter (this one may have it installed by another test's CLI run)."""
    probe = """
import dataclasses
from harness import dataclass_cache
assert "exec" not in vars(dataclasses)
dataclasses.exec = exec   # someone else's
dataclass_cache.install()
assert dataclasses.exec is exec
del dataclasses.exec
dataclass_cache.install()
assert vars(dataclasses)["exec"] is dataclass_cache._cached_exec
@dataclasses.dataclass(frozen=True)
class Point:
    x: int
assert Point(1) == Point(1) and hash(Point(1)) == hash(Point(1))
dataclass_cache.uninstall()
assert "exec" not in vars(dataclasses)
print("ok")
"""
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_the_harness_program_installs_it_after_help_and_a_caller_of_main_keeps_its_own(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    env = dict(os.environ, HARNESS_CACHE_DIR=str(cache_dir), PYTHONPATH=str(REPO))

    def program(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, cwd=REPO,
                       capture_output=True, timeout=120, check=True)
    program("--help")
    assert _cache_files(cache_dir) == []      # --help never loads it
    program("run", "--help")
    assert _cache_files(cache_dir) == []
    program("models", "isa-serial")
    assert len(_cache_files(cache_dir)) == 1  # a command does, and keeps what it compiled
    probe = ("import dataclasses\nfrom harness import cli\ncli.main(['models', 'isa-serial'])\n"
             "print('exec' in vars(dataclasses))")
    called = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert called.stdout.strip().splitlines()[-1] == "False"   # main() in a caller's process
