r"""A stream of resource claims into a registry file, for the crash-consistency test.

Run as ``python tests/claims.py REGISTRY FIRST``: writes claims FIRST, FIRST+1, ... and
prints ``b N`` before claim N and ``d N`` once it is committed, until it is killed (or a
bound is reached).  ``tests/test_durability.py`` kills it with SIGKILL at random points.

Each claim is what the I/O manager records for one device: a ``<device>.Raw`` and a
``<device>.Translated`` REG_RESOURCE_LIST under
``\REGISTRY\MACHINE\HARDWARE\RESOURCEMAP\<class>\<driver>``.  :func:`report_claim` is the
one write step, and it is the real ``IoManager.IoReportResourceUsage`` (with
OverrideConflict, so a claim is always written; without a HAL the translated list is
the raw one).  Each restarted child opens a new I/O manager, which takes over the
ResourceMap the killed one left.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.nt.iomgr import DeviceObject, DriverObject, IoManager  # noqa: E402
from harness.nt.registry import RESOURCE_MAP, Registry  # noqa: E402
from harness.nt.resources import (CM_RESOURCE_LIST, Interrupt, Isa, Port,  # noqa: E402
                                  CmResourceShareDeviceExclusive, CmResourceShareShared)
from harness.nt.status import NTSTATUS  # noqa: E402

#: A child stops by itself after this long (every wait in the harness has a bound).
CHILD_LIMIT_S = 60.0


@dataclass(frozen=True)
class Claim:
    index: int

    @property
    def key(self) -> str:
        return rf"{RESOURCE_MAP}\{self.resource_class}\{self.driver}"

    @property
    def device(self) -> str:
        return rf"\Device\Chaos{self.index}"

    @property
    def resource_class(self) -> str:
        return f"Class{self.index % 3}"

    @property
    def driver(self) -> str:
        return f"Driver{self.index % 5}"

    def lists(self) -> tuple[CM_RESOURCE_LIST, CM_RESOURCE_LIST]:
        """(raw, translated): an ISA port range and a shared IRQ; with no HAL to
        translate them the I/O manager stores the raw list as the translated one."""
        port = Port(0x100 + (self.index * 8) % 0xF000, 8, share=CmResourceShareDeviceExclusive)
        irq = self.index % 16
        raw = CM_RESOURCE_LIST.single(Isa, 0, port, Interrupt(irq, irq, share=CmResourceShareShared))
        return raw, raw


def report_claim(io: IoManager, claim: Claim) -> None:
    """The write step: IoReportResourceUsage of the claim's list for its device."""
    driver = DriverObject(claim.driver, io.service_key(claim.driver))
    device = DeviceObject(claim.device, driver)
    raw, _ = claim.lists()
    status, _ = io.IoReportResourceUsage(claim.resource_class, driver, None, 0, device, raw,
                                         raw.size(io.registry.arch), True)
    if status != NTSTATUS.STATUS_SUCCESS:
        raise SystemExit(f"IoReportResourceUsage({claim.device}) returned {status.name}")


def main(path: str, first: int) -> None:
    deadline = time.monotonic() + CHILD_LIMIT_S
    with Registry(path) as registry:
        io = IoManager(registry)
        index = first
        while time.monotonic() < deadline:
            sys.stdout.write(f"b {index}\n")
            sys.stdout.flush()
            report_claim(io, Claim(index))
            sys.stdout.write(f"d {index}\n")
            sys.stdout.flush()
            index += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
