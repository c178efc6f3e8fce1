"""The ``harness`` command line.

Each subcommand lives in its own module under :mod:`harness.commands` and exposes
``register(subparsers)``; this module only assembles them and turns library errors into
one readable line and a non-zero exit status.

Only the chosen command's module is imported (with it the NT model, the QEMU layer and
whatever else that command needs); ``harness --help`` imports none of them, so the one-line
help of every command lives here, in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from .errors import HarnessError, unknown_name

#: Subcommands in the order ``harness --help`` lists them: name -> (module, one-line help).
COMMANDS = {
    "run": ("harness.commands.run",
            "boot a machine, load its NT drivers and check every claim against the hardware"),
    "layout": ("harness.commands.layout", "boot a machine and print its layout snapshot"),
    "registry": ("harness.commands.registry", "dump or import a machine's registry database"),
    "reap": ("harness.commands.reap", "kill QEMUs whose harness process is gone, remove their run folders"),
    "verify": ("harness.commands.verify", "compare model, QEMU decode and guest views of a machine"),
    "repro": ("harness.commands.repro", "replay a conflict repro bundle on a fresh machine (or shrink it)"),
    "pnp": ("harness.commands.pnp", "assign resources to every device by PnP logical configurations"),
    "matrix": ("harness.commands.matrix", "list, shard, emit CI jobs for, run or merge a test matrix"),
    "models": ("harness.commands.models", "list the device models, or show one"),
    "examples": ("harness.commands.examples",
                 "list the shipped example machines and matrices (usable as example:NAME)"),
}

#: Commands that start QEMU before they import anything heavy (harness.qemu.launchplan):
#: they call :func:`qemu_started` once QEMU is on its way.
EARLY_QEMU = frozenset({"run", "layout"})


def qemu_started(args: argparse.Namespace) -> None:
    """What an :data:`EARLY_QEMU` command calls once its QEMU is on its way, before it
    imports the model: in the program's own process, the dataclass code cache (installed
    before the parser for every other command)."""
    if getattr(args, "own_process", False):
        from .dataclass_cache import install
        install()


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, sized to the terminal as argparse sizes it, without
    importing shutil for that: argparse makes a formatter for every option it adds (to
    check its metavar), and shutil (with bz2 and lzma) is ~2 ms before QEMU can start."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = _terminal_columns() - 2  # as argparse.HelpFormatter does
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: ``$COLUMNS``, else the width of the
    terminal on standard output, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help is formatted by :class:`_HelpFormatter` (so are its
    subcommands': add_subparsers makes them of the parser's own class)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _check_value(self, action: argparse.Action, value: object) -> None:
        # a value that is none of an option's choices (a HAL, a guest, a command) is said
        # as every unknown name is (argparse: "invalid choice", with no closest name)
        if action.choices is not None and value not in action.choices:
            what = "command" if isinstance(action, argparse._SubParsersAction) else "choice"
            raise argparse.ArgumentError(action, unknown_name(what, str(value), map(str, action.choices),
                                                              label="choose from"))


def _top_level(chosen: str | None) -> argparse.ArgumentParser:
    """With ``chosen`` None: the parser of every command as a placeholder (a name and its
    help line, options passed through), which answers ``--help`` and a missing or unknown
    command.  Else the parser of ``chosen`` alone, its module registered: nothing it
    prints names another command (the top-level usage says COMMAND), and each placeholder
    is an ArgumentParser more to build before QEMU can start."""
    parser = _Parser(prog="harness", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_line) in COMMANDS.items():
        if name == chosen:
            importlib.import_module(module_name).register(subparsers)
            # Every command reads the catalog.
            subparsers.choices[name].add_argument(
                "--models", action="append", default=[], metavar="DIR",
                help="a folder of your own device models, layered over the shipped catalog "
                     "(repeatable; also $HARNESS_DEVICE_MODELS)")
        elif chosen is None:
            subparsers.add_parser(name, help=help_line, add_help=False)
    return parser


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (default ``sys.argv[1:]``): the command it names is found
    with placeholders first (top-level options, ``--help`` and a missing or unknown command
    are answered there), then only that command's module is imported."""
    chosen = _named_command(sys.argv[1:] if argv is None else argv)
    if chosen is None:  # --help, a missing or unknown command: the placeholders answer
        chosen = _top_level(None).parse_known_args(argv)[0].command
    return _top_level(chosen)


def _named_command(argv: list[str]) -> str | None:
    """The command ``argv`` names, when it plainly does: its first word after the only
    top-level option that takes no part in choosing (``-v``), so the common case builds
    one parser, not two (argparse's set-up is a few ms before QEMU can start)."""
    for arg in argv:
        if arg not in ("-v", "--verbose"):
            return arg if arg in COMMANDS else None
    return None


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


#: Exit status when the reader of standard output went away (``harness models | head``):
#: what a shell reports for a program SIGPIPE ended, which Python ignores.
EXIT_OUTPUT_CLOSED = 128 + signal.SIGPIPE


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll says POLLERR), so a
    broken pipe came from there and not from a socket or file of the command's own."""
    import select
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (a captured stdout)
        return False


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so the flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None, *, own_process: bool = False) -> int:
    """Run one command; its exit status.  ``own_process``: this process is the ``harness``
    program's own (:func:`entry`), so process-wide speed-ups may be installed (the
    dataclass code cache); a caller's process, such as a test's, is left as it is."""
    words = sys.argv[1:] if argv is None else argv
    if own_process and not {"-h", "--help"} & set(words) and _named_command(words) not in EARLY_QEMU:
        # Before the parser: a command's module may import the model as it is loaded.
        from .dataclass_cache import install
        install()  # its classes' methods compiled once, not at each start (not for --help)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.own_process = own_process  # (for qemu_started)
    # SIGTERM (kill, CI cancelling a job) and SIGHUP (a closed terminal) end a command
    # like Ctrl-C: every QEMU is shut down and every run folder removed on the way out.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    try:
        if args.models:
            from .packagedata import add_user_model_dirs
            add_user_model_dirs(args.models)
        return int(args.func(args) or 0)
    except (HarnessError, OSError) as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            # The reader of the output went away (a pager quit, `| head`): nothing to
            # say, and no one left to say it to.  Machines were closed on the way out.
            _silence_stdout()
            return EXIT_OUTPUT_CLOSED
        # Refused input or an environment the command cannot use (a file it cannot read
        # or write): a usage error, never 1 (which means "found a problem").
        if args.verbose:
            raise
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The ``harness`` program: :func:`main`, then a quick exit.

    Once the command has returned, every machine is closed and every output file written;
    the exit handlers still run (they close whatever an error left open), but the
    interpreter's tear-down of the ~300 modules a command imports (35-170 ms measured,
    longer than some commands' own work) is skipped when no other thread has work left.
    ``main`` itself, which tests and callers use in-process, returns normally."""
    code = main(own_process=True)
    import atexit
    import threading
    atexit._run_exitfuncs()
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if any(not t.daemon for t in others):
        sys.exit(code)  # a thread that must finish: the normal way out waits for it
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = EXIT_OUTPUT_CLOSED
    except ValueError:
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    entry()
