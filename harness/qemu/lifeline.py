"""Tie a child process's life to its parent's, with no window in between.

The parent-death signal (PR_SET_PDEATHSIG) only helps once it is armed: a parent that
dies between fork and the arming leaves the child orphaned (a QEMU started with ``-S``
then waits forever).  So the arming is followed by a check that the parent is still the
one that started us; if it is not, the child exits instead of going on.

Run as a script between fork and QEMU's exec::

    python -I -S lifeline.py PARENT_PID PROGRAM ARGS...

it arms the signal, checks its parent and execs PROGRAM (the signal survives exec).  It
imports only the standard library (``-I -S``: no site-packages), yet costs ~15 ms of
start-up, so the build also makes a C program of the same (``_lifeline``, next to this
file), which :func:`command` uses when it is there (~1 ms).  The matrix workers call
:func:`die_with_parent` themselves.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
#: Exit status of a child whose parent was already gone (nothing was started).
ORPHANED_EXIT = 125


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when ``parent`` dies; exit at once if it already has."""
    import ctypes  # not at import: the CLI imports this module before it starts QEMU
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # re-parented: the parent died before the signal was armed
        os._exit(ORPHANED_EXIT)


#: The compiled lifeline (harness/qemu/_lifeline.c), built by setup.py.
PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lifeline")


def command(parent: int, *, compiled: bool | None = None) -> list[str]:
    """The argv prefix that runs the next arguments under a lifeline: the compiled one
    if it was built (``compiled``: None = whichever there is, False = this script)."""
    if compiled is not False and os.access(PROGRAM, os.X_OK):
        return [PROGRAM, str(parent)]
    if compiled:
        raise FileNotFoundError(f"the compiled lifeline {PROGRAM} was not built (pip install / make setup builds it)")
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(parent)]


def _main(argv: list[str]) -> None:
    die_with_parent(int(argv[1]))
    try:
        os.execvp(argv[2], argv[2:])
    except OSError as exc:
        print(f"lifeline: cannot run {argv[2]}: {exc}", file=sys.stderr)
        os._exit(127)


if __name__ == "__main__":
    _main(sys.argv)
