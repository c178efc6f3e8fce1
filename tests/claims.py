r"""A stream of resource claims into a registry file, for the crash-consistency test.

Run as ``python tests/claims.py REGISTRY FIRST``: writes claims FIRST, FIRST+1, ... and
prints ``b N`` before claim N and ``d N`` once it is committed, until it is killed (or a
bound is reached).  ``tests/test_durability.py`` kills it with SIGKILL at random points.

Each claim is what the I/O manager records for one device: a ``<device>.Raw`` and a
``<device>.Translated`` REG_RESOURCE_LIST under
``\REGISTRY\MACHINE\HARDWARE\RESOURCEMAP\<class>\<driver>``.  :func:`report_claim` is the
one write step: when ``harness.nt.iomgr`` lands it becomes a call of
``IoManager.IoReportResourceUsage`` and the test checks the real routine unchanged.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.nt.registry import RESOURCE_MAP, Registry  # noqa: E402
from harness.nt.resources import (CM_RESOURCE_LIST, Internal, Interrupt, Isa, Port,  # noqa: E402
                                  CmResourceShareDeviceExclusive)

#: A child stops by itself after this long (every wait in the harness has a bound).
CHILD_LIMIT_S = 60.0


@dataclass(frozen=True)
class Claim:
    index: int

    @property
    def key(self) -> str:
        return rf"{RESOURCE_MAP}\Class{self.index % 3}\Driver{self.index % 5}"

    @property
    def device(self) -> str:
        return rf"\Device\Chaos{self.index}"

    def lists(self) -> tuple[CM_RESOURCE_LIST, CM_RESOURCE_LIST]:
        """(raw, translated): an ISA port range and IRQ, and their HAL translation."""
        port = Port(0x100 + (self.index * 8) % 0xF000, 8, share=CmResourceShareDeviceExclusive)
        irq = self.index % 16
        return (CM_RESOURCE_LIST.single(Isa, 0, port, Interrupt(irq, irq)),
                CM_RESOURCE_LIST.single(Internal, 0, port, Interrupt(irq, 0x30 + irq)))


def report_claim(registry: Registry, claim: Claim) -> None:
    """The write step: both halves of a claim in one transaction (IoReportResourceUsage)."""
    raw, translated = claim.lists()
    with registry.transaction():
        registry.create_key(claim.key, volatile=True)
        registry.set_value(claim.key, claim.device + ".Raw", raw)
        registry.set_value(claim.key, claim.device + ".Translated", translated)


def main(path: str, first: int) -> None:
    deadline = time.monotonic() + CHILD_LIMIT_S
    with Registry(path) as registry:
        index = first
        while time.monotonic() < deadline:
            sys.stdout.write(f"b {index}\n")
            sys.stdout.flush()
            report_claim(registry, Claim(index))
            sys.stdout.write(f"d {index}\n")
            sys.stdout.flush()
            index += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
