"""IoConnectInterrupt / IoDisconnectInterrupt and interrupt dispatch on a live machine:
COM1 and COM3 on edge IRQ 4, two PCI NE2000s whose INTx reach IRQ 11."""

from __future__ import annotations

from typing import Iterator

import pytest

from harness.consequences import exercise_shared_interrupts
from harness.drivers import Ne2000Driver, SerialDriver
from harness.nt.hal import Hal
from harness.nt.interrupts import Latched, LevelSensitive
from harness.nt.iomgr import IoManager
from harness.nt.registry import Registry
from harness.nt.status import NTSTATUS
from harness.qemu.livebus import LiveBus
from harness.qemu.machine import Machine
from harness.qemu.pic import raise_counts, read_pic
from helpers import machine_spec, release_interrupts, uart_isr

SPEC = """
name: irqs
machine: pc
devices:
  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}
  - {model: isa-serial, id: com3, iobase: 0x3e8, irq: 4}
  - {model: ne2k_pci, id: pcine0, addr: 3}
  - {model: ne2k_pci, id: pcine1, addr: 4}
"""
COM1, COM3, IRQ4 = 0x3F8, 0x3E8, 4
VECTOR4, IRQL4 = 0x34, 23                     # the PIC HAL's 0x30 + IRQ, 27 - IRQ


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    with Machine(machine_spec(SPEC, "irqs")) as m:
        m.run_firmware()
        yield m


@pytest.fixture
def io(machine: Machine) -> Iterator[IoManager]:
    """A fresh HAL and I/O manager on the shared machine; every UART quiet afterwards."""
    bus = LiveBus(machine)
    manager = IoManager(Registry(":memory:"), Hal(bus))
    yield manager
    release_interrupts(manager, bus, (COM1, COM3))


def _uart_irq(io: IoManager, base: int) -> None:
    io.hal.bus.write_port(base + 1, 0x02)     # IER = transmitter empty: pending at once


def _serial_isr(io: IoManager, base: int, log: list[str]):
    return uart_isr(io.hal.bus, base, log)


def _connect(io: IoManager, isr, *, share: bool = True, mode: int = Latched, vector: int = VECTOR4,
             irql: int = IRQL4, sync: int = IRQL4, affinity: int = 1):
    return io.IoConnectInterrupt(isr, None, None, vector, irql, sync, mode, share, affinity, False)


def test_vector_and_irql_are_halgetinterruptvector_s(io: IoManager) -> None:
    v = io.hal.HalGetInterruptVector(1, 0, IRQ4, IRQ4)
    assert (v.vector, v.irql, v.affinity) == (VECTOR4, IRQL4, 1)


def test_connect_rules(io: IoManager, machine: Machine) -> None:
    log: list[str] = []
    status, first = _connect(io, _serial_isr(io, COM1, log), share=False)
    assert status == NTSTATUS.STATUS_SUCCESS and first is not None
    # the line is enabled at the 8259: unmasked, and edge for a Latched object
    assert not read_pic(machine).imr >> IRQ4 & 1 and not read_pic(machine).elcr >> IRQ4 & 1
    assert io.interrupts.pic_state().imr == read_pic(machine).imr      # the CPU's view is QEMU's
    invalid = NTSTATUS.STATUS_INVALID_PARAMETER
    assert _connect(io, _serial_isr(io, COM3, log), share=True) == (invalid, None)    # first is not shared
    assert _connect(io, _serial_isr(io, COM3, log), share=False) == (invalid, None)
    assert _connect(io, lambda i, c: False, vector=0x35, irql=22, sync=21) == (invalid, None)  # sync < irql
    assert _connect(io, lambda i, c: False, vector=0x35, irql=22, sync=22, affinity=0b10) == (invalid, None)
    assert _connect(io, lambda i, c: False, vector=0x32, irql=25, sync=25) == (invalid, None)  # the cascade
    io.IoDisconnectInterrupt(first)
    assert read_pic(machine).imr >> IRQ4 & 1                           # masked again
    with pytest.raises(ValueError):
        io.IoDisconnectInterrupt(first)
    status, shared = _connect(io, _serial_isr(io, COM1, log), share=True)
    assert status == NTSTATUS.STATUS_SUCCESS
    assert _connect(io, _serial_isr(io, COM3, log), share=True, mode=LevelSensitive) == (invalid, None)
    assert _connect(io, _serial_isr(io, COM3, log), share=True)[0] == NTSTATUS.STATUS_SUCCESS


def test_an_interrupt_no_isr_claims_is_spurious(io: IoManager) -> None:
    calls = []
    status, interrupt = _connect(io, lambda i, c: calls.append(c) or False, share=False)
    assert status == NTSTATUS.STATUS_SUCCESS
    _uart_irq(io, COM1)
    taken = io.interrupts.take_interrupts()
    assert [t.irq for t in taken] == [IRQ4] and taken[0].spurious and io.interrupts.spurious == 1
    assert "no ISR" in taken[0].reason and len(calls) == 1
    assert io.interrupts.take_interrupts() == []                       # edge: taken once


def test_the_isr_runs_before_ioconnectinterrupt_returns(io: IoManager) -> None:
    """Seed 003: a pending interrupt reaches a new ISR at once, even during DriverEntry."""
    _uart_irq(io, COM1)                       # COM1 asks before anything is connected
    log: list[str] = []
    status, interrupt = _connect(io, _serial_isr(io, COM1, log), share=False)
    assert status == NTSTATUS.STATUS_SUCCESS and interrupt.claimed == 1 and log == ["0x3f8:0x02"]


def test_two_isa_devices_on_an_edge_line_lose_an_interrupt(io: IoManager, machine: Machine) -> None:
    driver = SerialDriver(io, io.hal)
    result = io.load_driver(driver, {"com1": {"IoBaseAddress": COM1, "InterruptNumber": IRQ4},
                                     "com3": {"IoBaseAddress": COM3, "InterruptNumber": IRQ4}})
    assert result.ok and [o.facts["interrupt"].endswith("Latched shared: taken") for o in driver.outcomes] == [True, True]
    (line,) = exercise_shared_interrupts(io, machine)
    assert line.irq == IRQ4 and line.mode == "Latched"
    # COM3 asked while COM1 held the line: QEMU counted no raise for it
    assert list(line.raised.values()) == [1, 0] and line.no_edge == [line.devices[1]] and line.lost
    # one interrupt; NT's latched traversal served both ports in it, then a clean pass
    (taken,) = line.taken
    assert [ok for _, ok in taken.calls] == [True, True, False, False] and taken.passes == 2
    assert line.left_pending == []
    io.unload_driver("Serial")


def test_level_mode_on_isa_loses_the_request_for_good(io: IoManager, machine: Machine) -> None:
    """ELCR level mode (what a LevelSensitive connect sets): COM1's service lowers the line
    although COM3 still asserts it; the level rule stops at the first claim; COM3 waits."""
    log: list[str] = []
    assert _connect(io, _serial_isr(io, COM1, log), mode=LevelSensitive)[0] == NTSTATUS.STATUS_SUCCESS
    assert _connect(io, _serial_isr(io, COM3, log), mode=LevelSensitive)[0] == NTSTATUS.STATUS_SUCCESS
    assert read_pic(machine).elcr >> IRQ4 & 1
    _uart_irq(io, COM3)
    _uart_irq(io, COM1)
    taken = io.interrupts.take_interrupts()
    assert len(taken) == 1 and taken[0].calls == [(taken[0].calls[0][0], True)]
    assert not read_pic(machine).irr >> IRQ4 & 1                       # the line is low ...
    assert io.hal.bus.read_port(COM3 + 2) & 0x0F == 0x02               # ... and COM3 still asks


def test_pci_intx_on_one_irq_is_shared_correctly(io: IoManager, machine: Machine) -> None:
    driver = Ne2000Driver(io, io.hal)
    assert io.load_driver(driver, {}).ok
    assert all(o.facts["interrupt"] == "vector 0x3b IRQL 16 LevelSensitive shared: taken" for o in driver.outcomes)
    before = raise_counts(machine).get(11, 0)
    (line,) = exercise_shared_interrupts(io, machine)
    assert line.irq == 11 and line.mode == "LevelSensitive" and not line.lost
    assert raise_counts(machine).get(11, 0) - before == sum(line.raised.values()) == 1  # one raise, ORed
    assert len(line.taken) == 2 and all(t.handled for t in line.taken)              # both served
    assert [[ok for _, ok in t.calls] for t in line.taken] == [[True], [False, True]]
    io.unload_driver("Ne2000")
