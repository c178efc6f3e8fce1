"""pytest plugin of the harness (registered through the ``pytest11`` entry point).

Guarantees that no QEMU outlives a test session: machines still open at session end are
shut down, tagged survivors of this process are killed, and orphans of crashed earlier
sessions (owner pid gone) are reaped at start, with the run folders they left.
"""

from __future__ import annotations

import pytest

from .qemu.machine import close_all, run_root
from .qemu.reaper import reap_orphans, reap_own, sweep_orphan_run_dirs


def pytest_sessionstart(session: pytest.Session) -> None:
    reap_orphans()
    sweep_orphan_run_dirs(run_root())


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    close_all()
    survivors = reap_own()
    if survivors:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"harness: killed {len(survivors)} QEMU process(es) left running: {survivors}",
                                yellow=True)


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
