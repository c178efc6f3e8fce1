"""The interrupt controllers as QEMU itself reports them (HMP ``info pic`` / ``info irq``).

This is the emulator's view, beside what the CPU reads through the 8259's ports
(:meth:`harness.nt.interrupts.InterruptManager.pic_state`): ``info pic`` prints each
8259's irr/imr/isr/elcr and the I/O APIC redirection table, ``info irq`` (TCG) counts
every raise of each input line, which is how a raise that made no edge shows: the
device asked, the count did not move (qemu-facts.md §3b, §6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PIC_LINE = re.compile(r"^pic([01]):\s+irr=([0-9a-f]+)\s+imr=([0-9a-f]+)\s+isr=([0-9a-f]+).*?elcr=([0-9a-f]+)",
                       re.M)
_IOAPIC_PIN = re.compile(r"^\s*pin\s+(\d+)\s+0x([0-9a-f]{16})\b", re.M)
_SECTION = re.compile(r"^IRQ statistics for (\S+):", re.M)
_COUNT = re.compile(r"^\s*(\d+):\s*(\d+)\s*$", re.M)


@dataclass(frozen=True)
class EmulatedPic:
    """Both 8259s from ``info pic``, bit n = IRQ n (pic0 is the master)."""

    irr: int
    imr: int
    isr: int
    elcr: int


def read_pic(machine: Any) -> EmulatedPic:
    text = machine.hmp("info pic")
    regs: dict[int, tuple[int, ...]] = {}
    for match in _PIC_LINE.finditer(text):
        regs[int(match.group(1))] = tuple(int(match.group(i), 16) for i in range(2, 6))
    if set(regs) != {0, 1}:
        raise ValueError(f"info pic did not show both 8259s: {text!r}")
    master, slave = regs[0], regs[1]
    return EmulatedPic(*(master[i] | slave[i] << 8 for i in range(4)))


def read_ioapic(machine: Any) -> list[int]:
    """The I/O APIC's redirection entries as QEMU holds them (``info pic``), raw 64-bit
    values indexed by pin; empty on a machine without an I/O APIC (isapc)."""
    text = machine.hmp("info pic")
    pins = {int(pin): int(raw, 16) for pin, raw in _IOAPIC_PIN.findall(text)}
    if sorted(pins) != list(range(len(pins))):
        raise ValueError(f"info pic showed I/O APIC pins {sorted(pins)}, not 0..n-1: {text!r}")
    return [pins[i] for i in range(len(pins))]


def raise_counts(machine: Any, controller: str = "isa-i8259") -> dict[int, int]:
    """``info irq``: how often each input line of ``controller`` was raised (TCG only)."""
    text = machine.hmp("info irq")
    sections = list(_SECTION.finditer(text))
    for i, section in enumerate(sections):
        if section.group(1) == controller:
            end = sections[i + 1].start() if i + 1 < len(sections) else len(text)
            return {int(a): int(b) for a, b in _COUNT.findall(text[section.end():end])}
    return {}


__all__ = ["EmulatedPic", "raise_counts", "read_ioapic", "read_pic"]
