"""The APIC HAL on a live q35: the firmware's MADT, the I/O APIC's redirection entries read
back two ways, HalGetInterruptVector's APIC vectors, and real interrupts from an ISA UART
and PCI NE2000s taken through the I/O APIC and the local APIC by the probe guest's CPU."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest

from harness.guests.agent import AgentBus, agent_machine
from harness.nt.apic import (IOAPIC_DEFAULT_ADDRESS, LAPIC_DEFAULT_ADDRESS, IoApic, LocalApic, Madt,
                             RedirectionEntry, SourceOverride, find_rsdp, parse_madt)
from harness.nt.hal import CLOCK_LEVEL, CMCI_LEVEL, Hal, slot_number
from harness.nt.interrupts import Latched, LevelSensitive
from harness.nt.iomgr import IoManager
from harness.nt.registry import Registry
from harness.nt.resources import BUS_DATA_TYPE, INTERFACE_TYPE
from harness.qemu.layout import snapshot
from harness.qemu.livebus import LiveBus
from harness.qemu.machine import Machine
from harness.qemu.pic import raise_counts, read_ioapic
from helpers import machine_spec, release_interrupts, uart_isr

Isa, PCIBus = INTERFACE_TYPE.Isa, INTERFACE_TYPE.PCIBus
# COM1 and COM3 share ISA IRQ 4; the NE2000s in slots 3 and 7 share PIRQH (4 + (slot+pin) & 3).
SPEC = """
name: apic
machine: q35
devices:
  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}
  - {model: isa-serial, id: com3, iobase: 0x3e8, irq: 4}
  - {model: ne2k_pci, id: ne3, addr: 3}
  - {model: ne2k_pci, id: ne7, addr: 7}
"""
COM1, COM3 = 0x3F8, 0x3E8


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Machine, AgentBus]]:
    with agent_machine(machine_spec(SPEC, "apic")) as pair:
        yield pair


@pytest.fixture
def io(live) -> Iterator[IoManager]:
    """A fresh APIC HAL and I/O manager on the shared machine; everything quiet afterwards."""
    machine, bus = live
    manager = IoManager(Registry(":memory:"), Hal(bus, interrupt_model="auto"))
    assert manager.hal.interrupt_model == "apic" and manager.interrupts is not None
    yield manager
    for base in _ne_bases(machine):
        bus.write_port(base + 0xF, 0)
        bus.write_port(base + 7, 0xFF)
    release_interrupts(manager, bus, (COM1, COM3))


_layouts: dict[int, object] = {}


def _layout(machine: Machine):
    """The layout once per machine (the probe guest, the OS here, moves no BAR)."""
    if id(machine) not in _layouts:
        _layouts[id(machine)] = snapshot(machine, "post-os")
    return _layouts[id(machine)]


def _ne_bases(machine: Machine) -> list[int]:
    return [_layout(machine).pci_by_id(n).bars[0].base for n in ("ne3", "ne7")]


def _ne_key(machine: Machine, name: str) -> tuple[int, int, int]:
    f = _layout(machine).pci_by_id(name)
    return f.bus, f.slot, f.function


def _raise_ne(bus: AgentBus, base: int) -> None:
    """A zero-length remote DMA completes at once: ISR bit 6, INTx asserted until acked."""
    bus.write_port(base + 0xF, 0x40)
    bus.write_port(base + 0xA, 0)
    bus.write_port(base + 0xB, 0)
    bus.write_port(base, 0x0A)


def _ne_isr(bus: AgentBus, base: int, log: list[str], *, ack: bool = True):
    def isr(interrupt, context) -> bool:
        pending = bus.read_port(base + 7) & 0x40
        log.append(f"{base:#x}:{'yes' if pending else 'no'}")
        if pending and ack:
            bus.write_port(base + 7, 0x40)
        return bool(pending)
    return isr


def _uart_raise(bus: AgentBus, base: int) -> None:
    bus.write_port(base + 4, 0x08)  # OUT2 (QEMU's 16550 ignores it, a real one gates the IRQ)
    bus.write_port(base + 1, 0x02)  # IER = transmitter empty: pending at once


# ---------------------------------------------------------------------------------------
# What the live machine says (measured on this QEMU; kept as tests)


def test_the_madt_lists_one_ioapic_and_qemus_overrides(live) -> None:
    machine, bus = live
    hal = Hal(bus, interrupt_model="auto")
    madt = hal.madt
    assert madt is not None and madt.pcat_compat
    assert madt.local_apic == LAPIC_DEFAULT_ADDRESS
    assert [(i.address, i.gsi_base) for i in madt.ioapics] == [(IOAPIC_DEFAULT_ADDRESS, 0)]
    # QEMU 7.2's MADT: IRQ 0 arrives at GSI 2 (edge, conforming); the PCI link IRQs
    # 5, 9, 10, 11 are level, active high.
    assert madt.isa_route(0).gsi == 2 and not madt.isa_route(0).level
    for irq in (5, 9, 10, 11):
        route = madt.isa_route(irq)
        assert (route.gsi, route.level, route.active_low) == (irq, True, False)
    for irq in (1, 3, 4, 7, 12, 14, 15):
        route = madt.isa_route(irq)
        assert (route.gsi, route.level, route.active_low) == (irq, False, False)
    assert madt.isa_irq_of(2) == 0 and madt.isa_irq_of(20) is None
    # The same tables where SeaBIOS's reboot wiped the RSDP from the F segment (a firmware
    # run without the log ends there): found through the RSDT at the top of RAM.
    with Machine(machine_spec("machine: q35\nfirmware_log: false\ndevices: []\n")) as paused:
        paused.run_firmware()
        assert paused.firmware_end == "reboot" and find_rsdp(LiveBus(paused)) is None
        again = Hal(LiveBus(paused), interrupt_model="auto").madt
        assert again is not None and dataclasses.replace(again, address=0) == dataclasses.replace(madt, address=0)


def test_redirection_entries_read_through_mmio_agree_with_qemus_info_pic(live) -> None:
    machine, bus = live
    ioapic = IoApic(bus)
    assert ioapic.pins == 24
    entries = [e.raw for e in ioapic.entries()]
    assert entries == read_ioapic(machine)
    # Written through the CPU's window, read back by QEMU (and the other way round).
    probe = RedirectionEntry.build(0x9A, level=True, active_low=True, masked=True, destination=0)
    saved = ioapic.entry(20)
    ioapic.set_entry(20, probe)
    try:
        assert read_ioapic(machine)[20] == probe.raw == ioapic.entry(20).raw
        assert (probe.vector, probe.level, probe.active_low, probe.masked) == (0x9A, True, True, True)
        # QEMU decodes the entry the way RedirectionEntry does.
        line = next(x for x in machine.hmp("info pic").splitlines() if x.strip().startswith("pin 20 "))
        assert "vec=154" in line and "active-lo" in line and "level" in line and "masked" in line
        assert "fixed" in line and "physical" in line
    finally:
        ioapic.set_entry(20, saved)
    assert read_ioapic(machine) == entries


def test_the_firmware_leaves_every_entry_masked_and_a_paused_machine_reads_them_over_hmp() -> None:
    with Machine(machine_spec("machine: pc\ndevices: []\n")) as m:
        m.run_firmware()
        hal = Hal(LiveBus(m), interrupt_model="auto", ioapic_reader=lambda: read_ioapic(m))
        assert hal.interrupt_model == "apic"  # pc has an I/O APIC too
        entries = hal.ioapic_entries()
        assert entries is not None and len(entries) == 24
        assert all(e.masked and e.vector == 0 for e in entries)
    with Machine(machine_spec("machine: isapc\ndevices: []\n")) as m:
        m.run_firmware()
        assert Hal(LiveBus(m), interrupt_model="auto").interrupt_model == "pic"  # no MADT, no I/O APIC
        assert read_ioapic(m) == []


# ---------------------------------------------------------------------------------------
# HalGetInterruptVector on the APIC HAL


def test_apic_vectors_follow_the_madt_and_the_pci_routing(live) -> None:
    machine, bus = live
    hal = Hal(bus, interrupt_model="apic", processors=2)
    v4 = hal.HalGetInterruptVector(Isa, 0, 4, 4)
    assert v4.vector and v4.irql == v4.vector >> 4 and CMCI_LEVEL <= v4.irql < CLOCK_LEVEL and v4.affinity == 3
    assert hal.apic_lines[v4.vector].gsi == 4 and not hal.apic_lines[v4.vector].level
    clock = hal.HalGetInterruptVector(Isa, 0, 0, 0)
    assert hal.apic_lines[clock.vector].gsi == 2 and hal.apic_lines[clock.vector].isa_irq == 0
    assert not hal.HalGetInterruptVector(Isa, 0, 2, 2)  # the cascade input has no device
    # PCI: the line HalGetBusData reports is the GSI (PIRQ E-H -> 20-23 for slots 3 and 7).
    lines = {}
    for name in ("ne3", "ne7"):
        b, slot, fn = _ne_key(machine, name)
        lines[name] = hal.get_bus_data(BUS_DATA_TYPE.PCIConfiguration, b, slot_number(slot, fn), 0x3C, 1)[0]
    assert lines["ne3"] == lines["ne7"] == 16 + hal.pci_interrupt_route(*_ne_key(machine, "ne3")).link
    pci = hal.HalGetInterruptVector(PCIBus, 0, lines["ne3"], 0)
    assert pci.vector not in (v4.vector, clock.vector)
    assert hal.apic_lines[pci.vector].level and hal.apic_lines[pci.vector].gsi == lines["ne3"]
    assert hal.HalGetInterruptVector(PCIBus, 0, lines["ne7"], 0) == pci  # same GSI, same vector
    assert hal.HalGetInterruptVector(Isa, 0, lines["ne3"], 0) == pci     # a level >= 16 is a GSI
    assert not hal.HalGetInterruptVector(Isa, 0, 24, 24)


def test_a_vector_already_in_the_redirection_entry_is_reused(io, live) -> None:
    machine, bus = live
    v = io.hal.HalGetInterruptVector(Isa, 0, 4, 4)
    status, interrupt = io.IoConnectInterrupt(uart_isr(bus, COM1, []), None, None, v.vector, v.irql, v.irql,
                                              Latched, True, v.affinity, False)
    assert status == 0 and read_ioapic(machine)[4] & 0xFF == v.vector
    # A second HAL on the same machine, with no vectors of its own yet: the vector another
    # input's live entry holds is not free, and GSI 4 gets back the one its entry holds.
    other = Hal(bus, interrupt_model="apic")
    assert other.HalGetInterruptVector(Isa, 0, 3, 3).vector != v.vector
    assert other.HalGetInterruptVector(Isa, 0, 4, 4).vector == v.vector


# ---------------------------------------------------------------------------------------
# Real interrupts through the I/O APIC and the local APIC


def test_a_uart_interrupt_arrives_through_the_ioapic_edge(io, live) -> None:
    machine, bus = live
    v = io.hal.HalGetInterruptVector(Isa, 0, 4, 4)
    log: list[str] = []
    status, interrupt = io.IoConnectInterrupt(uart_isr(bus, COM1, log), None, None, v.vector, v.irql, v.irql,
                                              Latched, False, v.affinity, False)
    assert status == 0 and interrupt.line == 4
    entry = RedirectionEntry(read_ioapic(machine)[4])
    assert (entry.vector, entry.level, entry.masked, entry.destination) == (v.vector, False, False, 0)
    before = raise_counts(machine, "ioapic").get(4, 0)
    _uart_raise(bus, COM1)
    taken = io.interrupts.take_interrupts()
    assert [(t.irq, t.vector, t.handled) for t in taken] == [(4, v.vector, True)]
    assert raise_counts(machine, "ioapic").get(4, 0) > before
    lapic = LocalApic(bus)
    assert lapic.isr() == 0 and lapic.irr() == 0  # the EOI was written
    assert not lapic.tmr() >> v.vector & 1        # edge: the EOI does not go to the I/O APIC
    io.IoDisconnectInterrupt(interrupt)
    assert RedirectionEntry(read_ioapic(machine)[4]).masked
    _uart_raise(bus, COM1)
    assert io.interrupts.take_interrupts() == []  # masked at the I/O APIC: nothing arrives
    bus.write_port(COM1 + 1, 0)
    bus.read_port(COM1 + 2)


def _pci_vector(io: IoManager, machine: Machine):
    """The NE2000s' ports, their shared GSI (PIRQ E-H: 16 + link) and its vector."""
    line = 16 + io.hal.pci_interrupt_route(*_ne_key(machine, "ne3")).link
    return (*_ne_bases(machine), line, io.hal.HalGetInterruptVector(PCIBus, 0, line, line))


def test_a_pci_interrupt_is_level_and_shared_on_one_vector(io, live) -> None:
    machine, bus = live
    b3, b7, line, v = _pci_vector(io, machine)
    log: list[str] = []
    objs = []
    for base in (b3, b7):
        status, interrupt = io.IoConnectInterrupt(_ne_isr(bus, base, log), None, None, v.vector, v.irql, v.irql,
                                                  LevelSensitive, True, v.affinity, False, name=hex(base))
        assert status == 0
        objs.append(interrupt)
    entry = RedirectionEntry(read_ioapic(machine)[line])
    assert (entry.vector, entry.level, entry.masked) == (v.vector, True, False)
    log.clear()
    _raise_ne(bus, b3)
    _raise_ne(bus, b7)
    taken = io.interrupts.take_interrupts()
    # Level chain: the first ISR that claims ends the dispatch; the line is still asserted
    # by the other device, so the EOI delivers the vector again and the second is served.
    assert [t.handled for t in taken] == [True, True] and {t.vector for t in taken} == {v.vector}
    assert taken[0].calls == [(hex(b3), True)] and taken[1].calls == [(hex(b3), False), (hex(b7), True)]
    assert all(i.claimed == 1 for i in objs)
    assert not RedirectionEntry(read_ioapic(machine)[line]).remote_irr


def test_a_level_line_nobody_services_is_a_storm_not_a_hang(io, live) -> None:
    machine, bus = live
    b3, _, line, v = _pci_vector(io, machine)
    log: list[str] = []
    status, interrupt = io.IoConnectInterrupt(_ne_isr(bus, b3, log, ack=False), None, None, v.vector, v.irql,
                                              v.irql, LevelSensitive, False, v.affinity, False)
    _raise_ne(bus, b3)
    taken = io.interrupts.take_interrupts(limit=8)
    assert len(taken) == 8 and "storm" in taken[-1].reason and all(t.handled for t in taken)
    bus.write_port(b3 + 7, 0x40)  # the device stops asking: the next EOI ends it
    assert len(io.interrupts.take_interrupts()) <= 1
    assert io.interrupts.take_interrupts() == []


def test_two_uarts_on_one_edge_gsi_lose_an_edge_and_the_latched_chain_serves_both(io, live) -> None:
    machine, bus = live
    v = io.hal.HalGetInterruptVector(Isa, 0, 4, 4)
    log: list[str] = []
    for base in (COM1, COM3):
        status, _ = io.IoConnectInterrupt(uart_isr(bus, base, log), None, None, v.vector, v.irql, v.irql,
                                          Latched, True, v.affinity, False, name=hex(base))
        assert status == 0
    log.clear()
    before = raise_counts(machine, "ioapic").get(4, 0)
    _uart_raise(bus, COM1)
    _uart_raise(bus, COM3)   # the line is already high: no edge reaches the I/O APIC
    assert raise_counts(machine, "ioapic").get(4, 0) - before == 1
    taken = io.interrupts.take_interrupts()
    assert len(taken) == 1 and taken[0].handled and taken[0].passes >= 2
    assert {entry.split(":")[0] for entry in log if not entry.endswith("0x01")} == {hex(COM1), hex(COM3)}


def test_connect_rules_on_the_apic_hal(io, live) -> None:
    machine, bus = live
    v = io.hal.HalGetInterruptVector(Isa, 0, 4, 4)
    isr = uart_isr(bus, COM1, [])
    bad = (0x30 + 4, v.vector + 1 if v.vector + 1 not in io.hal.apic_lines else 0x21)
    for vector in bad:   # the PIC HAL's vector, or one never handed out: not a device vector
        assert io.IoConnectInterrupt(isr, None, None, vector, v.irql, v.irql, Latched, True, 1, False)[1] is None
    assert io.IoConnectInterrupt(isr, None, None, v.vector, v.irql, v.irql, Latched, False, 1, False)[0] == 0
    # exclusive already: neither a second exclusive nor a shared one nor another mode
    for share, mode in ((False, Latched), (True, Latched), (True, LevelSensitive)):
        assert io.IoConnectInterrupt(isr, None, None, v.vector, v.irql, v.irql, mode, share, 1, False)[1] is None


def test_the_apic_hal_needs_a_cpu_to_take_interrupts() -> None:
    with Machine(machine_spec("machine: q35\ndevices: []\n")) as m:
        m.run_firmware()
        hal = Hal(LiveBus(m), interrupt_model="apic")
        io = IoManager(Registry(":memory:"), hal)
        assert io.interrupts is None  # HMP cannot open an interrupt window nor write the EOI
        status, obj = io.IoConnectInterrupt(lambda i, c: True, None, None, 0xC0, 12, 12, Latched, False, 1, False)
        assert obj is None and status.name == "STATUS_NOT_SUPPORTED"


def test_parse_madt_refuses_broken_tables() -> None:
    header = b"APIC" + (44).to_bytes(4, "little") + bytes(28)
    body = (0xFEE00000).to_bytes(4, "little") + (1).to_bytes(4, "little")
    madt = parse_madt(header + body)
    assert madt == Madt(0, 0xFEE00000, True, ())
    entry = bytes([2, 10, 0, 0]) + (2).to_bytes(4, "little") + (0x0D).to_bytes(2, "little")
    assert parse_madt(header + body + entry).overrides == (SourceOverride(0, 2, 0x0D),)
    route = parse_madt(header + body + entry).isa_route(0)
    assert (route.gsi, route.level, route.active_low) == (2, True, False)
    with pytest.raises(ValueError, match="length 0"):
        parse_madt(header + body + bytes([1, 0]))
    with pytest.raises(ValueError, match="not an APIC table"):
        parse_madt(b"FACP" + bytes(50))
    with pytest.raises(ValueError, match="not a deliverable vector"):
        RedirectionEntry.build(0x0F, level=False)


def test_pc_runs_the_apic_hal_with_piix3_intx_on_the_isa_irq_gsi() -> None:
    """pc has an I/O APIC too: the UART arrives at GSI 4, and the PIIX3 routes a PCI
    INTx only to the ISA IRQ its PIRQ register names, which is that IRQ's GSI (level)."""
    spec = machine_spec("machine: pc\ndevices:\n  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}\n"
                        "  - {model: ne2k_pci, id: ne, addr: 3}\n", "apic-pc")
    with agent_machine(spec) as (machine, bus):
        io = IoManager(Registry(":memory:"), Hal(bus, interrupt_model="auto"))
        assert io.hal.interrupt_model == "apic" and io.interrupts is not None
        ne = snapshot(machine, "post-os").pci_by_id("ne")
        route = io.hal.pci_interrupt_route(ne.bus, ne.slot, ne.function)
        assert route.chipset == "piix3" and route.gsi == route.irq < 16
        line = io.hal.get_bus_data(BUS_DATA_TYPE.PCIConfiguration, 0, slot_number(ne.slot), 0x3C, 1)[0]
        assert line == route.irq
        log: list[str] = []
        got = {}
        for name, level, mode, isr in ((4, 4, Latched, uart_isr(bus, COM1, log)),
                                       ("ne", line, LevelSensitive, _ne_isr(bus, ne.bars[0].base, log))):
            iface = Isa if name == 4 else PCIBus
            v = io.hal.HalGetInterruptVector(iface, 0, level, level)
            status, interrupt = io.IoConnectInterrupt(isr, None, None, v.vector, v.irql, v.irql, mode, True,
                                                      v.affinity, False, name=str(name))
            assert status == 0
            got[name] = (v.vector, interrupt)
        assert io.hal.apic_lines[got["ne"][0]].gsi == route.irq
        _uart_raise(bus, COM1)
        _raise_ne(bus, ne.bars[0].base)
        taken = io.interrupts.take_interrupts()
        assert sorted(t.vector for t in taken if t.handled) == sorted(v for v, _ in got.values())
        assert all(i.claimed == 1 for _, i in got.values())
        entry = RedirectionEntry(read_ioapic(machine)[route.irq])
        assert entry.level and entry.vector == got["ne"][0] and not entry.masked
        release_interrupts(io, bus, (COM1,))


def test_the_apic_hal_says_why_it_cannot_read_the_madt() -> None:
    from harness.nt.hal import HalError
    from harness.nt.recorded import ReplayBus
    empty = ReplayBus({"format": "harness-bus-transcript", "version": 1, "calls": []})
    with pytest.raises(HalError, match="MADT cannot be read"):
        Hal(empty, interrupt_model="auto")
    with pytest.raises(ValueError, match="interrupt_model must be one of"):
        Hal(empty, interrupt_model="x2apic")
