"""Launch plans: start a machine's QEMU before the harness has read its machine file.

A ``harness layout``/``harness run`` spends its first ~150 ms importing the harness and
reading the machine file and the device catalog, while QEMU needs about as long to start
and run SeaBIOS.  So the command line keeps, per machine file and command, the QEMU
command line that file produced last time (a *plan*, in the user's cache folder), and
starts that QEMU first thing, with the firmware running and the layout's QOM questions
(:mod:`harness.qemu.qomfacts`) already asked, then does its imports and reads the machine
file meanwhile on the other core.

The plan is only a guess.  The machine file is read and checked in full as always, and
:class:`~harness.qemu.machine.Machine` adopts the early QEMU only if the command line it
builds is exactly the one running; otherwise (a model, the harness or the environment
changed) the early QEMU is killed, its folder removed, and the machine launched afresh.
A plan is used only while the machine file's bytes are the ones it was made from.

This module imports only the standard library and the harness's import-free modules.
"""

from __future__ import annotations

import json
import os
import zlib

from ..names import cache_root, private_cache_file
from .binaryfacts import BinaryFacts
from .owner import KEEP_FILE
from .qomfacts import STATIC_COMMANDS, STATIC_QUERIES
from .spawn import Spawned, folder_token, new_run_dir, spawn_qemu

#: Stands for the run folder in a stored command line (no argument QEMU takes holds a NUL).
RUN_DIR_MARK = "\0run\0"
#: Bumped when the plan's form changes: older plans are then ignored.
PLAN_FORMAT = 2
#: Most QOM questions a plan asks ahead (a machine's reader asks a handful).
MAX_ASKED = 64
#: Most plans kept (the most recently used).
MAX_PLANS = 100


class EarlyStart:
    """A QEMU started from a plan: its run folder, the token of its owner tag, its
    command line and the process (:class:`~harness.qemu.spawn.Spawned`)."""

    __slots__ = ("run_dir", "token", "argv", "spawned")

    def __init__(self, run_dir: str, token: str, argv: "list[str]", spawned: Spawned) -> None:
        self.run_dir, self.token, self.argv, self.spawned = run_dir, token, argv, spawned

    def discard(self) -> None:
        """Kill the QEMU and remove its run folder (the command failed before a
        :class:`~harness.qemu.machine.Machine` took them over)."""
        import shutil
        self.spawned.kill()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def plan_key(config: str, command: str, options: "dict[str, object]") -> str:
    """What a plan is for: the machine file (absolute), the command and its options that
    shape the machine, and the environment that does (QEMU binary, extra models)."""
    from .. import __version__
    return json.dumps([PLAN_FORMAT, __version__, os.path.abspath(config), command, options,
                       os.environ.get("HARNESS_QEMU"), os.environ.get("HARNESS_DEVICE_MODELS"),
                       os.environ.get("HARNESS_PORT_CHANNEL")], sort_keys=True)


def start(config: str, command: str, options: "dict[str, object]", *, keep: bool = False) -> EarlyStart | None:
    """Start the QEMU of the plan for ``config`` under ``command`` with its firmware
    running, or None when there is no usable plan (never an error: a plan is a cache)."""
    if config.startswith("example:"):
        return None  # resolving the name needs the package data; not worth it here
    key = plan_key(config, command, options)
    path = _plan_path(key, create=False)
    plan = _read(path)
    if plan is None or plan.get("key") != key:
        return None
    try:
        with open(config, "rb") as f:
            if f.read().decode("utf-8", "surrogateescape") != plan["config"]:
                return None
        run_dir = new_run_dir(plan["name"])
    except (OSError, KeyError, TypeError):
        return None
    token = folder_token(run_dir) or ""   # new_run_dir tagged it for this QEMU
    try:
        os.utime(path)  # used: the last to be pruned
        if keep:
            open(os.path.join(run_dir, KEEP_FILE), "w").close()
        for name in plan["images"]:
            with open(os.path.join(run_dir, name), "wb") as f:
                f.truncate(plan["image_bytes"])
        argv = [arg.replace(RUN_DIR_MARK, run_dir) for arg in plan["argv"]]
        # The layout's QOM questions ride along (answered while SeaBIOS runs and Python
        # imports), but none the binary's cache answers (harness.qemu.binaryfacts).
        facts = BinaryFacts(argv[0])
        ask = tuple((c, a) for c, a in (*STATIC_QUERIES, *_static_questions(plan.get("ask", [])))
                    if facts.answer(c, a) is None)
        spawned = spawn_qemu(argv, token, os.path.join(run_dir, "qemu.log"), start_firmware=True,
                             qtest=plan["qtest"], ask=ask)
    except BaseException as exc:
        import shutil
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(exc, (OSError, KeyError, TypeError, ValueError, AttributeError)):
            return None
        raise
    return EarlyStart(run_dir, token, argv, spawned)


def save(config: str, command: str, options: "dict[str, object]", machine: object) -> None:
    """Keep ``machine``'s command line (a :class:`~harness.qemu.machine.Machine` built from
    ``config``) as the plan for the next run of ``command``; quietly nothing if the cache
    cannot be written."""
    from .machine import DRIVE_IMAGE_BYTES, drive_images
    from .qtest import qtest_wanted
    run_dir = str(machine.run_dir)  # type: ignore[attr-defined]
    spec = machine.spec  # type: ignore[attr-defined]
    argv = list(machine.argv)  # type: ignore[attr-defined]
    if any(RUN_DIR_MARK in arg for arg in argv):
        return
    try:
        with open(config, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
        key = plan_key(config, command, options)
        # Only what a plan may ask (the rule start() reads it with), so an unchanged plan compares equal.
        asked = [[c, a] for c, a in _static_questions([[c, a] for c, a in machine.static_questions])  # type: ignore[attr-defined]
                 if (c, a) not in STATIC_QUERIES]
        plan = {"key": key, "config": text, "name": spec.name, "qtest": qtest_wanted(), "ask": asked,
                "argv": [arg.replace(run_dir, RUN_DIR_MARK) for arg in argv],
                "images": drive_images(spec),
                "image_bytes": DRIVE_IMAGE_BYTES}
        path = _plan_path(key, create=True)
        if _read(path) == json.loads(json.dumps(plan)):
            return  # unchanged (the usual case once a machine file has its plan)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(plan, f)
        os.replace(tmp, path)
        _prune(os.path.dirname(path))
    except (OSError, ValueError):
        pass


def _prune(folder: str) -> None:
    """Keep the :data:`MAX_PLANS` most recently used plans (machine files made in temporary
    folders, by tests or generators, would otherwise leave one plan each forever)."""
    plans = []
    for name in os.listdir(folder):
        if name.endswith(".json"):
            try:
                plans.append((os.stat(os.path.join(folder, name)).st_mtime, name))
            except OSError:
                continue
    for _, name in sorted(plans, reverse=True)[MAX_PLANS:]:
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def _plan_path(key: str, *, create: bool) -> str:
    root = cache_root()
    folder = os.path.join(root, "launch-plans")
    if create:
        os.makedirs(root, mode=0o700, exist_ok=True)  # private, as user_cache_dir makes it
        os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, f"{zlib.crc32(key.encode()):08x}.json")


def _static_questions(items: object) -> "list[tuple[str, dict]]":
    """The plan's QOM questions, each of a command that only reads the QOM tree
    (qomfacts.STATIC_COMMANDS) with string or boolean arguments; anything else is dropped
    (a plan's questions go to QEMU's monitor)."""
    out: list[tuple[str, dict]] = []
    for item in items if isinstance(items, list) else []:
        if (isinstance(item, list) and len(item) == 2 and item[0] in STATIC_COMMANDS and isinstance(item[1], dict)
                and all(isinstance(k, str) and isinstance(v, (str, bool)) for k, v in item[1].items())):
            out.append((item[0], item[1]))
    return out[:MAX_ASKED]


def _read(path: str) -> "dict | None":
    """The plan at ``path`` if it is privately this user's (names.private_cache_file), else None."""
    if not private_cache_file(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            plan = json.load(f)
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) else None
