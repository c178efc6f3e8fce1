r"""pytest plugin of the harness (registered through the ``pytest11`` entry point).

A ten-line test::

    import pytest

    @pytest.mark.machine("configs/conflicts/sb16-ne2000-irq5.yaml")
    def test_ne2000_loses_irq5_to_the_sound_blaster(load_driver, iomgr):
        assert load_driver("sb16").ok
        load_driver("ne2000")
        entry, = iomgr.error_log.query()
        assert entry.error_code.name == "IO_ERR_IRQ_CONFLICT_DETECTED"

Fixtures (every one needs a machine, chosen by the ``machine`` marker, the cell of
``--harness-matrix`` / the ``matrix`` marker, or ``--harness-config``):

``harness_spec``   the :class:`~harness.config.MachineSpec`
``machine``        a launched machine whose firmware has run, paused.  Machines are kept
                   per worker and reused by the next test with the same spec when the test
                   only read it (``reset="none"``, the default); ``reset="reboot"`` re-runs
                   the firmware in the same QEMU after the test, ``reset="recreate"`` starts
                   a new QEMU.  A failed test's machine is always recreated.
``layout``         the machine's post-firmware layout snapshot (cached while it is reused)
``testbed``        :class:`~harness.testbed.Testbed`: detection done into a fresh registry,
                   an I/O manager holding the HAL's claims (one per test)
``hal`` ``registry`` ``iomgr``   its parts
``load_driver``    ``load_driver("serial", devices=None, override_conflict=False)``
``harness_cell``   the matrix cell a test is parametrised with (or None)

Markers: ``machine(config_or_inline_yaml, reset=...)``, ``matrix(file)`` (parametrise over
a matrix's cells), ``requires(machine=, accel=, models=, buses=, drivers=, kvm=)`` (skip
with the reason when the machine lacks it).

Options (each also an ini key, ``harness_config`` ...): ``--harness-config``,
``--harness-matrix`` (the run is the matrix: tests not over its cells are deselected),
``--harness-shard i/n``, ``--harness-accel``, ``--harness-keep``, ``--harness-artifacts``,
``--harness-models DIR`` / ``--harness-configs DIR`` (repeatable; folders of the user's
own device models and machine files, layered over the shipped ones).

Usage errors (markers, machine and matrix files, a missing QEMU) are gathered during
collection and end the run as pytest's usage error, before any QEMU starts, the same
with or without xdist.

On a failure the test's folder under the artifacts directory gets: ``qemu-argv.sh`` (the
exact command line, runnable), QEMU / QMP / firmware / console logs, ``layout.txt`` /
``layout.json``, ``registry.reg``, ``errorlog.json``, the main job's report and
``resourcemap.png``, and ``bundle.yaml`` (``harness repro`` replays it) when the job found
something to replay; otherwise ``NOTE.txt`` says what the folder holds.  Its path is in
the failure's report and in the session summary.  JUnit XML gets the QEMU version,
machine type, accelerator and config hash as test properties.

Every QEMU dies with its test session: machines still open at session end are shut down,
tagged survivors of this process are killed, and orphans of crashed earlier sessions
(owner pid gone) are reaped at start, with the run folders they left.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from .atomicio import write_text
from .errors import unknown_name
from .names import ACCEL_POLICIES
from .qemu.machine import close_all, run_root
from .qemu.reaper import judge_processes, owned_name, reap_orphans, reap_own, sweep_orphan_run_dirs

RESETS = ("none", "reboot", "recreate")
REQUIREMENT_KEYS = ("machine", "accel", "models", "buses", "drivers", "kvm")
#: Machines a worker keeps alive for reuse (the least recently used one goes first).
POOL_SIZE = 4
FAILURE_MARKER = ".harness-failure"
#: What a failure folder holds when it has no bundle, and why.
NOTE = "NOTE.txt"

_OPTIONS = (
    # (option, ini key, help, kind)
    ("--harness-config", "harness_config", "machine file for tests that name none (marker machine)", "string"),
    ("--harness-matrix", "harness_matrix",
     "parametrise every test that uses a machine (and names none) over this matrix's cells", "string"),
    ("--harness-shard", "harness_shard", "run only shard I of N (I/N, 1-based) of the collected tests", "string"),
    ("--harness-accel", "harness_accel", "accelerator policy for every machine: tcg, kvm or auto", "string"),
    ("--harness-keep", "harness_keep", "keep each machine's run folder (logs, sockets) for post-mortem", "bool"),
    ("--harness-artifacts", "harness_artifacts",
     "folder for the per-test failure folders (default: harness-failures under the rootdir)", "string"),
    ("--harness-models", "harness_models",
     "a folder of your own device models, layered over the shipped catalog (repeatable)", "paths"),
    ("--harness-configs", "harness_configs",
     "a folder searched for the machine and matrix files that markers and options name (repeatable)", "paths"),
)

_spec_key = pytest.StashKey["Resolved"]()
_used_key = pytest.StashKey["_Used"]()
_failure_key = pytest.StashKey[Path]()


# ---------------------------------------------------------------------------------------
# Options and markers


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "QEMU hardware harness")
    for option, ini, text, kind in _OPTIONS:
        if kind == "bool":
            group.addoption(option, action="store_true", default=None, help=text)
            parser.addini(ini, text, type="bool", default=False)
        elif kind == "paths":   # ini paths are relative to the ini file, options to the cwd
            group.addoption(option, action="append", default=None, metavar="DIR", help=text)
            parser.addini(ini, text, type="paths", default=[])
        else:
            group.addoption(option, default=None, metavar="VALUE", help=text)
            parser.addini(ini, text, default="")


def _paths(config: pytest.Config, name: str) -> list[Path]:
    """A repeatable folder option: the ini key's folders, then the command line's."""
    option = next(o for o in _OPTIONS if o[1] == name)
    given = config.getoption(option[0]) or []
    return [*map(Path, config.getini(name)),
            *(Path(config.invocation_params.dir) / Path(p).expanduser() for p in given)]


def _option(config: pytest.Config, name: str) -> Any:
    """A harness option: the command line wins over the ini key."""
    option = next(o for o in _OPTIONS if o[1] == name)
    value = config.getoption(option[0])
    return value if value is not None else (config.getini(name) or None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "machine(config, *, reset='none'): the machine the test runs on: "
                                       "a machine file (relative to the test file or the rootdir) or "
                                       "inline machine YAML; reset: none | reboot | recreate")
    config.addinivalue_line("markers", "matrix(file): parametrise the test over the cells of a matrix file")
    config.addinivalue_line("markers", "requires(machine=, accel=, models=, buses=, drivers=, kvm=): "
                                       "skip unless the test's machine has these")
    models = _paths(config, "harness_models")
    if models:
        from .packagedata import add_user_model_dirs
        add_user_model_dirs(models)
    accel = _option(config, "harness_accel")
    if accel is not None and accel not in ACCEL_POLICIES:
        raise pytest.UsageError(f"--harness-accel: {unknown_name('choice', accel, ACCEL_POLICIES, label='choose from')}")
    shard = _option(config, "harness_shard")
    if shard is not None:
        from .matrix import parse_shard
        try:
            config.stash[_shard_key] = parse_shard(shard)
        except Exception as exc:
            raise pytest.UsageError(f"--harness-shard: {exc}") from None
    # Tests of one machine belong on one worker: with -n and no --dist of the user's own
    # choosing, distribute by group (see pytest_collection_modifyitems and _Groups).
    if getattr(config.option, "dist", "no") == "load" and not _dist_given(config):
        config.option.dist = "loadgroup"


_shard_key = pytest.StashKey[tuple[int, int]]()


def _dist_given(config: pytest.Config) -> bool:
    """Whether the user chose a --dist mode (command line, addopts or PYTEST_ADDOPTS)."""
    args = [*config.invocation_params.args, *config.getini("addopts"),
            *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    return any(a == "--dist" or a.startswith("--dist=") for a in args)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Orphans of dead sessions (this uid and PID namespace only, see qemu/reaper.py).
    verdicts = judge_processes()
    killed = reap_orphans(verdicts)
    removed = sweep_orphan_run_dirs(run_root())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and (killed or removed):
        reporter.write_line(f"harness: ended {len(killed)} orphaned QEMU(s) and removed {len(removed)} "
                            "run folder(s) of dead sessions")
    if reporter is not None and session.config.option.verbose > 0:
        for proc, why in verdicts.skipped:
            reporter.write_line(f"harness: left tagged pid {proc.pid} alone: {why}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    pool = getattr(session.config, "_harness_pool", None)
    if pool is not None:
        pool.close()
    base = session.config.stash.get(_groups_base_key, None)
    if base is not None:   # files of workers that never got scheduled
        for path in base.parent.glob(base.name + ".*"):
            path.unlink(missing_ok=True)
    close_all()
    survivors = reap_own()
    if survivors:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"harness: killed {len(survivors)} QEMU process(es) left running: {survivors}",
                                yellow=True)


# ---------------------------------------------------------------------------------------
# Which machine a test runs on


@dataclass(frozen=True)
class Resolved:
    """The machine a test asked for and how it treats it."""

    spec: Any                 # MachineSpec
    key: str                  # reuse key (config hash + accelerator policy)
    label: str                # the config path or cell id, for reports
    reset: str = "none"


def _rootdir(config: pytest.Config) -> Path:
    return Path(config.rootpath)


def _find_config(text: str, item: pytest.Item) -> Path:
    from .errors import ConfigError
    from .packagedata import EXAMPLE_PREFIX, resolve_config
    if text.startswith(EXAMPLE_PREFIX):
        try:
            return resolve_config(text)
        except ConfigError as exc:
            raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
    path = Path(text)
    roots = [_rootdir(item.config), *_paths(item.config, "harness_configs")]
    for base in (Path(item.fspath).parent, *roots, Path.cwd()):
        candidate = path if path.is_absolute() else base / path
        if candidate.is_file():
            return candidate
    raise pytest.UsageError(f"{item.nodeid}: machine file {text!r} not found (looked next to the test "
                            f"file and under {', '.join(map(str, roots))})")


def _load(text: str, item: pytest.Item, accel: str | None) -> tuple[Any, str]:
    from .config import load_machine, parse_machine_text
    from .errors import ConfigError
    try:
        from .packagedata import EXAMPLE_PREFIX
        inline = "\n" in text or (":" in text and Path(text).suffix not in (".yaml", ".yml")
                                  and not text.startswith(EXAMPLE_PREFIX))
        if inline:
            return parse_machine_text(text, f"<{item.nodeid}>", accel=accel), "inline machine"
        path = _find_config(text, item)
        return load_machine(path, accel=accel), str(path.relative_to(_rootdir(item.config))
                                                     if path.is_relative_to(_rootdir(item.config)) else path)
    except ConfigError as exc:
        raise pytest.UsageError(f"{item.nodeid}: {exc}") from None


def _resolve(item: pytest.Item) -> Resolved | None:
    """The machine of ``item``: its ``machine`` marker, its matrix cell, or
    ``--harness-config``; None when it has none."""
    if _spec_key in item.stash:
        return item.stash[_spec_key]
    config = item.config
    accel = _option(config, "harness_accel")
    marker = item.get_closest_marker("machine")
    reset = "none"
    resolved = None
    if marker is not None:
        reset = marker.kwargs.get("reset", "none")
        if reset not in RESETS:
            raise pytest.UsageError(f"{item.nodeid}: machine marker: reset: "
                                    + unknown_name("value", str(reset), RESETS, label="expected one of"))
        unknown = set(marker.kwargs) - {"reset"}
        if unknown or len(marker.args) != 1 or not isinstance(marker.args[0], (str, Path)):
            raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.machine(\"path/or inline yaml\", "
                                    f"reset=\"none|reboot|recreate\")")
        spec, label = _load(str(marker.args[0]), item, accel)
        resolved = Resolved(spec, f"{spec.config_hash()}-{spec.accel}", label, reset)
    else:
        cell = _cell_of(item)
        if cell is not None:
            spec = cell.spec if accel is None else _with_accel(cell.spec, accel)
            resolved = Resolved(spec, f"{spec.config_hash()}-{spec.accel}", cell.id)
        elif _option(config, "harness_config"):
            spec, label = _load(_option(config, "harness_config"), item, accel)
            resolved = Resolved(spec, f"{spec.config_hash()}-{spec.accel}", label)
    if resolved is not None:
        item.stash[_spec_key] = resolved
    return resolved


def _with_accel(spec: Any, accel: str) -> Any:
    from dataclasses import replace
    return replace(spec, accel=accel)


def _uses_machine(item: pytest.Item) -> bool:
    return bool({"harness_spec", "machine"} & set(getattr(item, "fixturenames", ())))


# ---------------------------------------------------------------------------------------
# Matrix parametrisation, sharding, grouping, requirements


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness_cell" not in metafunc.fixturenames:
        return
    try:
        _parametrise(metafunc)
    except pytest.UsageError as exc:   # reported with the others once collection is done
        metafunc.config.stash.setdefault(_usage_key, []).append(str(exc))


def _parametrise(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("matrix")
    source = None
    from_option = False
    if marker is not None:
        if len(marker.args) != 1:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: use @pytest.mark.matrix(\"file.yaml\")")
        source = str(_find_config(str(marker.args[0]), metafunc.definition))
    elif metafunc.definition.get_closest_marker("machine") is None:
        matrix = _option(metafunc.config, "harness_matrix")
        if matrix:
            source, from_option = str(_find_config(matrix, metafunc.definition)), True
    if source is None:
        return
    from .errors import ConfigError
    from .matrix import load_matrix
    try:
        cells = load_matrix(source).cells
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    if from_option:   # these tests are the run of --harness-matrix (see _keep_matrix_cells)
        metafunc.config.stash.setdefault(_option_cells_key, set()).update(map(id, cells))
    # A cell the job is known to get wrong is a strict expected failure (it fails loudly
    # once the job is fixed).
    metafunc.parametrize("harness_cell", [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.known_issue)] if c.known_issue else [])
        for c in cells], indirect=True)


#: Usage errors found while collecting (a bad marker, machine or matrix file): reported
#: together once collection is done, before any QEMU starts.
_usage_key = pytest.StashKey[list[str]]()
_option_cells_key = pytest.StashKey[set[int]]()
#: How an xdist worker hands its usage errors to the controller (config.workeroutput).
_USAGE_OUTPUT = "harness_usage_errors"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    errors = config.stash.setdefault(_usage_key, [])
    try:
        _keep_matrix_cells(config, items)
        _apply_shard(config, items)
    except pytest.UsageError as exc:
        errors.append(str(exc))
    for item in items:   # a bad marker or machine file stops the run before any QEMU starts
        try:
            _check_requires_marker(item)
            if _uses_machine(item):
                _resolve(item)
        except pytest.UsageError as exc:
            errors.append(str(exc))
    if not errors and any(_uses_machine(item) for item in items):
        from .qemu.binary import QemuMissing, require_qemu
        try:
            require_qemu()
        except QemuMissing as exc:   # one line for the session, not one failure per test
            errors.append(str(exc))
    if errors:
        _stop_for_usage(config, items, list(dict.fromkeys(errors)))
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get(_GROUPS_FILE):
        _Groups.write(Path(workerinput[_GROUPS_FILE]).with_suffix(f".{workerinput['workerid']}.json"),
                      {item.nodeid: _group_of(item) for item in items})


def _stop_for_usage(config: pytest.Config, items: list[pytest.Item], errors: list[str]) -> None:
    """End the run with ``errors`` as pytest's usage error (exit status 4).  An xdist
    worker cannot end the run itself (the controller would report an internal error):
    it runs nothing and hands the errors to the controller, which raises them
    (pytest_testnodedown, pytest_runtestloop)."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is None:
        raise pytest.UsageError("\n".join(errors))
    workeroutput[_USAGE_OUTPUT] = errors
    items[:] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    errors = getattr(node, "workeroutput", {}).get(_USAGE_OUTPUT)
    if errors:
        found = node.config.stash.setdefault(_usage_key, [])
        found += [e for e in errors if e not in found]


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Iterator[Any]:
    result = yield
    errors = session.config.stash.get(_usage_key, None)
    if errors and getattr(session.config, "workerinput", None) is None:
        raise pytest.UsageError("\n".join(errors))
    return result


def _keep_matrix_cells(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --harness-matrix the run is the matrix: only the tests parametrised over its
    cells run (the CI command a matrix emits must run its cells whatever else the project
    holds), and a matrix that parametrises nothing is an error."""
    matrix = _option(config, "harness_matrix")
    if not matrix:
        return
    ours = config.stash.get(_option_cells_key, set())
    keep = [item for item in items if id(_cell_of(item)) in ours]
    if not keep and not config.stash.get(_usage_key, None):
        raise pytest.UsageError(
            f"--harness-matrix {matrix}: no test takes its cells; a test gets them when it uses the "
            f"machine (or harness_spec) fixture and names no machine (no machine marker)")
    drop = [item for item in items if id(_cell_of(item)) not in ours]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _group_of(item: pytest.Item) -> str:
    """The xdist group of a test: its own xdist_group marks, else its harness machine
    (tests of one machine share the worker's machine), else its module (module-scoped
    fixtures stay shared, as with --dist loadscope)."""
    named = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")})
    if named:
        return "group-" + "_".join(named)
    resolved = _resolve(item) if _uses_machine(item) else None
    if resolved is not None:
        return f"machine-{resolved.key}"
    cell = _cell_of(item)
    if cell is not None:   # a cell's own machine (the main job on it, say): cells spread out
        return f"cell-{cell.id}"
    return "module-" + item.nodeid.split("::")[0]


def _cell_of(item: pytest.Item) -> Any:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("harness_cell") if callspec is not None else None


# pytest-xdist's loadgroup finds a test's group in a suffix it appends to the nodeid on
# the worker; pytest 9.2's structured node ids ignore that assignment, so every test
# would be scheduled alone (pytest-xdist#1386).  Instead each worker writes the group of
# every test it collected to a file, and the controller schedules by those groups.
_GROUPS_FILE = "harness_groups_file"
_groups_base_key = pytest.StashKey[Path]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    if node.config.getoption("dist") == "loadgroup":
        base = _Groups.base(node.workerinput["testrunuid"])
        node.config.stash[_groups_base_key] = base
        node.workerinput[_GROUPS_FILE] = str(base)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadgroup":
        return None
    return _Groups.scheduler(config, log)


class _Groups:
    @staticmethod
    def base(testrunuid: str) -> Path:
        # Named after the controller, so the sweep removes what a killed session left.
        return run_root() / owned_name(f"xdist-groups-{testrunuid}")

    @staticmethod
    def write(path: Path, groups: dict[str, str]) -> None:
        write_text(path, json.dumps(groups))

    @staticmethod
    def scheduler(config: pytest.Config, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling

        class HarnessGroupScheduling(LoadScopeScheduling):
            """loadscope with the scopes the workers wrote (see _Groups)."""

            _groups: dict[str, str] | None = None

            def _split_scope(self, nodeid: str) -> str:
                # Called once every worker has collected (and so written its file).
                if self._groups is None:
                    self._groups = {}
                    base = config.stash.get(_groups_base_key, None)
                    for path in base.parent.glob(base.name + ".*.json") if base else ():
                        self._groups.update(json.loads(path.read_text()))
                        path.unlink(missing_ok=True)
                return self._groups.get(nodeid) or super()._split_scope(nodeid)

        return HarnessGroupScheduling(config, log)


def _apply_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _shard_key not in config.stash:
        return
    index, count = config.stash[_shard_key]
    from .matrix import shard
    cells = {cell.id: cell for cell in map(_cell_of, items) if cell is not None}
    chosen_cells = {c.id for c in shard(sorted(cells.values(), key=lambda c: c.id), index, count)}
    keep, drop = [], []
    for item in items:
        cell = _cell_of(item)
        if cell is not None:
            mine = cell.id in chosen_cells
        else:
            mine = zlib.crc32(item.nodeid.encode()) % count == index - 1
        (keep if mine else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _check_requires_marker(item: pytest.Item) -> None:
    marker = item.get_closest_marker("requires")
    if marker is None:
        return
    unknown = sorted(set(marker.kwargs) - set(REQUIREMENT_KEYS))
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: requires(): "
                                + unknown_name("keyword", unknown[0], REQUIREMENT_KEYS, label="keywords"))
    if marker.args:
        raise pytest.UsageError(f"{item.nodeid}: requires() takes keywords {', '.join(REQUIREMENT_KEYS)}; "
                                f"got {marker.args}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("requires")
    if marker is None:
        return
    resolved = _resolve(item)
    reason = missing_requirement(resolved.spec if resolved else None, **marker.kwargs)
    if reason:
        # Reported at the test's own line, as pytest's skipif marker does.
        raise pytest.skip.Exception(reason, _use_item_location=True)


def missing_requirement(spec: Any, *, machine: Any = None, accel: str | None = None, models: Any = (),
                        buses: Any = (), drivers: Any = (), kvm: bool = False) -> str | None:
    """Why ``spec`` does not meet a ``requires`` marker, or None when it does."""
    from .qemu.accel import AccelUnavailable, kvm_usable, resolve_accel
    if kvm and not kvm_usable():
        return "requires KVM: /dev/kvm is missing or not read/write for this user"
    if spec is None:
        if machine or accel or models or buses or drivers:
            return "requires a machine, and the test has none (marker machine, --harness-config or a matrix)"
        return None
    as_set = (lambda v: {v} if isinstance(v, str) else set(v))
    if machine and spec.machine not in as_set(machine):
        return f"requires machine {' or '.join(sorted(as_set(machine)))}; {spec.name} is {spec.machine}"
    if accel:
        try:
            used = resolve_accel(spec.accel)
        except AccelUnavailable as exc:
            return f"requires accel {accel}: {exc}"
        if used != accel:
            return f"requires accel {accel}; {spec.name} runs under {used}"
    have_models = {d.model.name for d in spec.devices}
    if as_set(models) - have_models:
        return f"requires device model(s) {', '.join(sorted(as_set(models) - have_models))} in {spec.name}"
    have_buses = {d.model.bus for d in spec.devices}
    if as_set(buses) - have_buses:
        return f"requires {', '.join(sorted(as_set(buses) - have_buses))} device(s) in {spec.name}"
    have_drivers = {d.name for d in spec.drivers}
    if as_set(drivers) - have_drivers:
        return f"requires driver(s) {', '.join(sorted(as_set(drivers) - have_drivers))} for {spec.name}'s devices"
    return None


# ---------------------------------------------------------------------------------------
# The machine pool and the fixtures


class _Pool:
    """This worker's machines, by reuse key, least recently used first."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.entries: dict[str, "_Entry"] = {}

    def get(self, resolved: Resolved) -> "_Entry":
        from .qemu.actions import run_firmware_and_steps
        from .qemu.machine import Machine
        entry = self.entries.pop(resolved.key, None)
        if entry is not None and not entry.healthy():
            entry.close()
            entry = None
        if entry is None:
            while len(self.entries) >= POOL_SIZE:
                self.entries.pop(next(iter(self.entries))).close()
            machine = Machine(resolved.spec, keep=self.keep)
            entry = _Entry(machine)
            try:
                from .qemu.layout import read_static_facts
                machine.launch()
                machine.start_firmware()
                read_static_facts(machine)  # QOM does not change: asked while SeaBIOS runs
                run_firmware_and_steps(machine)  # and the file's post-firmware steps
            except BaseException:
                entry.close()
                raise
        self.entries[resolved.key] = entry
        return entry

    def after_test(self, resolved: Resolved, entry: "_Entry", failed: bool) -> None:
        if failed or resolved.reset == "recreate" or not entry.healthy():
            self.entries.pop(resolved.key, None)
            entry.close()
        elif resolved.reset == "reboot":
            from .qemu.actions import run_firmware_and_steps
            try:
                run_firmware_and_steps(entry.machine)
                entry.layout = None
            except Exception:
                self.entries.pop(resolved.key, None)
                entry.close()

    def close(self) -> None:
        for entry in self.entries.values():
            entry.close()
        self.entries.clear()


@dataclass
class _Entry:
    machine: Any
    layout: Any = None

    def healthy(self) -> bool:
        m = self.machine
        return m.running and m.phase == "post-firmware"

    def close(self) -> None:
        try:
            self.machine.close()
        except Exception:
            pass


@dataclass
class _Used:
    """What a test's fixtures created, for its failure folder."""

    resolved: Resolved
    entry: _Entry
    testbed: Any = None
    notes: list[str] = field(default_factory=list)


def _pool(config: pytest.Config) -> _Pool:
    pool = getattr(config, "_harness_pool", None)
    if pool is None:
        pool = config._harness_pool = _Pool(bool(_option(config, "harness_keep")))
    return pool


@pytest.fixture
def harness_cell(request: pytest.FixtureRequest) -> Any:
    """The matrix cell this test is parametrised with (marker matrix, --harness-matrix), or None."""
    return getattr(request, "param", None)


@pytest.fixture
def harness_spec(request: pytest.FixtureRequest, harness_cell: Any) -> Any:
    resolved = _resolve(request.node)
    if resolved is None:
        pytest.fail("this test needs a machine: @pytest.mark.machine(\"configs/machines/x.yaml\"), "
                    "--harness-config FILE or --harness-matrix FILE", pytrace=False)
    return resolved.spec


@pytest.fixture
def machine(request: pytest.FixtureRequest, harness_spec: Any) -> Iterator[Any]:
    resolved = _resolve(request.node)
    pool = _pool(request.config)
    entry = pool.get(resolved)
    m = entry.machine
    request.node.stash[_used_key] = _Used(resolved, entry)
    props = request.node.user_properties
    props += [("qemu_version", m.qemu_version), ("machine_type", m.spec.machine), ("accel", m.accel_used),
              ("config", resolved.label), ("config_hash", m.spec.config_hash())]
    yield m
    failed = any(getattr(request.node, f"rep_{when}", None) is not None and getattr(request.node, f"rep_{when}").failed
                 for when in ("setup", "call"))
    pool.after_test(resolved, entry, failed)


@pytest.fixture
def layout(machine: Any, request: pytest.FixtureRequest) -> Any:
    """The machine's post-firmware layout (one snapshot while the machine is reused)."""
    return _firmware_layout(machine, request)


def _firmware_layout(machine: Any, request: pytest.FixtureRequest) -> Any:
    from .qemu.layout import snapshot
    entry = request.node.stash[_used_key].entry
    if entry.layout is None:
        entry.layout = snapshot(machine, "post-firmware")
    return entry.layout


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Any]:
    """A fresh registry file in the test's own temporary folder."""
    from .nt.registry import Registry
    reg = Registry(tmp_path / "registry.sqlite", sync="never")  # a test's scratch registry
    yield reg
    reg.close()


@pytest.fixture
def testbed(machine: Any, registry: Any, request: pytest.FixtureRequest) -> Any:
    """Detection done into ``registry``, an I/O manager with the HAL's claims."""
    from .testbed import Testbed
    bed = Testbed(machine, registry, firmware_layout=_firmware_layout(machine, request))
    request.node.stash[_used_key].testbed = bed
    return bed


@pytest.fixture
def hal(testbed: Any) -> Any:
    return testbed.hal


@pytest.fixture
def iomgr(testbed: Any) -> Any:
    return testbed.io


@pytest.fixture
def load_driver(testbed: Any) -> Any:
    """``load_driver(name, devices=None, *, override_conflict=False) -> LoadResult``"""
    return testbed.load_driver


@pytest.fixture
def harness_verify():
    """Reconcile a machine's views: ``harness_verify(spec_or_path, guest="probe")`` returns a
    :class:`harness.verify.Reconciliation`; ``.assert_explained()`` fails the test with the
    table when a difference has no explanation."""
    from .config import MachineSpec, load_machine
    from .verify import verify

    def run(machine, *, guest: str = "probe", registry=None):
        spec = machine if isinstance(machine, MachineSpec) else load_machine(machine)
        return verify(spec, guest=guest, registry=registry)

    return run


# ---------------------------------------------------------------------------------------
# Failure folders and the summary


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
    used = item.stash.get(_used_key, None)
    if used is None or report.when not in ("setup", "call") or not report.failed or _failure_key in item.stash:
        return
    try:
        folder = write_failure_folder(item, used)
    except Exception as exc:   # the failure itself must still be reported
        report.sections.append(("harness", f"could not write the failure folder: {exc!r}"))
        return
    item.stash[_failure_key] = folder
    report.user_properties.append(("harness_failure_folder", str(folder)))
    report.sections.append(("harness", f"failure files: {folder}\n"
                                       f"replay: harness repro {folder / 'bundle.yaml'}"
                            if (folder / "bundle.yaml").exists() else f"failure files: {folder}"))


def failure_folder(item: pytest.Item) -> Path:
    root = _option(item.config, "harness_artifacts")
    root = Path(root) if root else _rootdir(item.config) / "harness-failures"
    if not root.is_absolute():
        root = _rootdir(item.config) / root
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid).strip("_")
    if len(name) > 100:
        name = name[:80] + "-" + hashlib.sha256(item.nodeid.encode()).hexdigest()[:12]
    return root / name


def write_failure_folder(item: pytest.Item, used: _Used) -> Path:
    from .job import collect, prepare_out_dir, write_outputs
    from .qemu.layout import format_text, snapshot
    from .repro import write_bundle
    folder = prepare_out_dir(failure_folder(item))
    write_text(folder / FAILURE_MARKER, item.nodeid + "\n")
    m = used.entry.machine
    # The run folder goes when the machine closes: the script uses the copies kept here.
    argv = " \\\n    ".join(shlex.quote(a.replace(str(m.run_dir), str(folder))) for a in m.argv)
    write_text(folder / "qemu-argv.sh",
        "#!/bin/sh\n# The test's QEMU, paused before the firmware like the harness starts it: type 'cont'\n"
        f"# at the (qemu) prompt to run it.  Files it writes go to this folder.\n"
        f"exec {argv} \\\n    -monitor stdio\n")
    (folder / "qemu-argv.sh").chmod(0o755)
    for path in Path(m.run_dir).iterdir():
        if path.is_file() and not path.name.startswith(".") and path.suffix in (".log", ".out", ".img"):
            shutil.copy2(path, folder / path.name)
    if not (m.running and m.phase == "post-firmware"):
        write_text(folder / NOTE, "The machine was no longer running; only QEMU's command line and logs are here.\n")
        return folder
    bed = used.testbed
    if bed is None:
        layout = snapshot(m, m.phase)
        (folder / NOTE).write_text(
            "This test used the machine (or layout) fixture only: no NT driver was loaded, so there is no\n"
            "main-job report, registry or repro bundle.  Here: qemu-argv.sh (the exact QEMU, runnable),\n"
            "QEMU / QMP / firmware logs and layout.txt / layout.json (what the hardware decodes).\n")
    else:   # the job's analysis takes the snapshot itself
        result = collect(bed, folder)
        layout = result.layout
        write_outputs(result, bed.io)
        write_text(folder / "errorlog.json", json.dumps([e.to_dict() for e in bed.io.error_log], indent=1) + "\n")
        if result.clean:   # nothing about resources went wrong: a bundle would replay nothing
            write_text(folder / NOTE,
                "The machine's main job found nothing (no conflict, mismatch, violation or hardware\n"
                "collision): the test failed on an assertion of its own.  No repro bundle: it would\n"
                "have nothing to reproduce.  Here: report.txt / report.html, registry.reg,\n"
                "errorlog.json, layout.txt / layout.json, qemu-argv.sh and QEMU's logs.\n")
        else:
            write_bundle(result, bed.steps, title=item.nodeid)
    write_text(folder / "layout.json", layout.to_json())
    write_text(folder / "layout.txt", format_text(layout))
    return folder


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    folders = [(r.nodeid, dict(r.user_properties)["harness_failure_folder"])
               for r in terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", [])
               if "harness_failure_folder" in dict(getattr(r, "user_properties", ()))]
    if folders:
        terminalreporter.section("harness failure folders")
        for nodeid, folder in folders:
            terminalreporter.write_line(f"{nodeid}\n    {folder}")
