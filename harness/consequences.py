"""What a shared interrupt line really does on the emulated hardware.

After the drivers have connected their ISRs, :func:`exercise_shared_interrupts` makes
every device on a vector with more than one interrupt object request an interrupt, one
after the other, before the "CPU" looks; reads QEMU's raise count of the line after each
request (``info irq``); lets the harness take the interrupts the PIC presents, in NT's
chained-dispatch order; and finally asks each ISR once more whether its device is still
waiting.  On an edge-triggered ISA line a request made while another device holds the
line makes no edge (qemu-facts.md §3b): that interrupt is lost at the PIC, and only
NT's full traversal of a latched chain serves it.  PCI INTx lines routed to one IRQ are
level-triggered and ORed by the chipset: nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .nt.interrupts import KINTERRUPT, TakenInterrupt
from .nt.iomgr import IoManager


@dataclass
class SharedLine:
    """One exercised vector: who asked, what reached the PIC, who was served."""

    irq: int
    vector: int
    mode: str
    devices: list[str]
    raised: dict[str, int] = field(default_factory=dict)   # device -> line raises its request caused
    taken: list[TakenInterrupt] = field(default_factory=list)
    left_pending: list[str] = field(default_factory=list)  # still asking after the CPU was done
    input_name: str = "IRQ"             # what ``irq`` numbers: an 8259 IRQ, or an I/O APIC GSI

    @property
    def no_edge(self) -> list[str]:
        """Devices whose request did not raise the line (edge lines only matter)."""
        return [d for d, n in self.raised.items() if n == 0] if self.mode == "Latched" else []

    @property
    def lost(self) -> bool:
        return bool(self.no_edge or self.left_pending)

    def describe(self) -> str:
        controller = "I/O APIC" if self.input_name == "GSI" else "PIC"
        parts = [f"{len(self.devices)} requests on {self.input_name} {self.irq} ({self.mode}) made "
                 f"{sum(self.raised.values())} raise(s) at the {controller}; {len(self.taken)} interrupt(s) taken, "
                 f"{sum(1 for t in self.taken if t.spurious)} spurious"]
        if self.no_edge:
            parts.append(f"{', '.join(self.no_edge)} asked while the line was already high: no edge, the "
                         f"interrupt never reached the {controller} (no wired-OR, the last writer wins)")
            if not self.left_pending:
                parts.append("NT's full traversal of a latched chain served it inside another device's interrupt")
        if self.left_pending:
            parts.append(f"{', '.join(self.left_pending)} still waiting for service after the CPU was done: "
                         "lost until the device is touched again")
        return "; ".join(parts)


def _driver_call(io: IoManager, interrupt: KINTERRUPT, method: str) -> Any:
    device = interrupt.service_context
    driver = device.driver_object.driver
    with io.running(device.driver_object):
        return getattr(driver, method)(device)


def exercise_shared_interrupts(io: IoManager, machine: Any) -> list[SharedLine]:
    """Exercise every vector with more than one connected interrupt object (module doc)."""
    if io.interrupts is None:
        return []
    out = []
    for vector, chain in sorted(io.interrupts.vectors.items()):
        if len(chain) < 2:
            continue
        from .qemu.pic import raise_counts  # (only a shared line is counted: most machines have none)
        controller = io.interrupts.controller.qemu_name
        line = SharedLine(chain[0].irq, vector, chain[0].mode_name, [i.name for i in chain],
                          input_name="GSI" if controller == "ioapic" else "IRQ")
        count = raise_counts(machine, controller).get(line.irq, 0)
        for interrupt in chain:
            _driver_call(io, interrupt, "raise_interrupt")
            now = raise_counts(machine, controller).get(line.irq, 0)
            line.raised[interrupt.name] = now - count
            count = now
        line.taken = io.interrupts.take_interrupts()
        for interrupt in chain:
            device = interrupt.service_context
            with io.running(device.driver_object):
                if device.driver_object.driver.isr(interrupt, device):
                    line.left_pending.append(interrupt.name)
            _driver_call(io, interrupt, "quiet_interrupt")
        out.append(line)
    return out


__all__ = ["SharedLine", "exercise_shared_interrupts"]
