"""The HAL (harness.nt.hal) over live emulated hardware (real QEMU, TCG).

Read-only checks share one post-firmware machine per machine type (module fixtures);
anything that writes gets a machine of its own.  Expectations come from qemu-facts.md
(PIRQ routes, CMOS register A, port values), from the device catalog (BAR sizes measured
with query-pci), or from QEMU itself (query-pci, info mtree, info irq), never from the
code under test.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator

import pytest

from harness.config import load_machine
from harness.devices import load_catalog
from harness.nt.busaccess import BusAccess, DecodeMap
from harness.nt.hal import (DEVICE_DESCRIPTION, PRIMARY_VECTOR_BASE, PROFILE_LEVEL, AssignmentNotDecodedError, HalError,
                            FirstFitAllocator, Hal, PortAccess, Width8Bits, Width16Bits, slot_number)
from harness.nt.resources import (CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE, CM_RESOURCE_MEMORY_PREFETCHABLE,
                                  CM_RESOURCE_MEMORY_READ_ONLY, Cmos, CmResourceShare, Eisa, Interrupt, Internal,
                                  Isa, Memory, PCI_SLOT_NUMBER, PCIBus, PCIConfiguration, Port)
from harness.nt.status import NTSTATUS
from harness.qemu.bus import HmpPorts
from harness.qemu.layout import snapshot
from harness.qemu.livebus import LiveBus
from harness.qemu.machine import Machine
from helpers import CONFIGS, machine_spec

CATALOG = load_catalog()


@contextlib.contextmanager
def booted(spec, *, firmware: bool = True, extra_args: tuple[str, ...] = ()) -> Iterator[Machine]:
    with Machine(spec, extra_args=extra_args) as m:
        if firmware:
            m.run_firmware()
        yield m


@pytest.fixture(scope="module")
def pc() -> Iterator[tuple[Machine, LiveBus, Hal]]:
    """The default pc machine after SeaBIOS; tests on it only read."""
    with booted(load_machine(CONFIGS / "machines" / "default.yaml")) as m:
        bus = LiveBus(m)
        yield m, bus, Hal(bus)


@pytest.fixture(scope="module")
def q35() -> Iterator[tuple[Machine, LiveBus, Hal]]:
    with booted(load_machine(CONFIGS / "machines" / "q35.yaml")) as m:
        bus = LiveBus(m)
        yield m, bus, Hal(bus)


@pytest.fixture(params=["pc", "q35"])
def machine(request) -> tuple[Machine, LiveBus, Hal]:
    return request.getfixturevalue(request.param)


def naive_config(m: Machine, key: tuple[int, int, int]) -> bytes:
    ports = HmpPorts(m)
    return b"".join(ports.read_config(*key, off, 4).to_bytes(4, "little") for off in range(0, 256, 4))


def find(hal: Hal, vendor: int, device: int) -> tuple[int, int, int]:
    for key in hal.pci_functions():
        ident = hal.bus.read_config(*key, 0, 4)
        if ident == vendor.to_bytes(2, "little") + device.to_bytes(2, "little"):
            return key
    raise KeyError(f"{vendor:04x}:{device:04x}")


def slot_of(key: tuple[int, int, int]) -> int:
    return slot_number(key[1], key[2])


# ---------------------------------------------------------------------------------------
# The live bus


def test_livebus_reads_the_same_bytes_as_plain_cf8_cfc_with_fewer_round_trips(machine) -> None:
    m, _, _ = machine
    bus = LiveBus(m)  # a fresh one: count from zero
    assert isinstance(bus, BusAccess) and isinstance(bus, DecodeMap)
    functions = bus.functions()
    assert functions and all(0 <= b < 256 for b, _, _ in functions)
    got = {key: bus.read_config(*key, 0, 256) for key in functions}
    first = bus.round_trips
    assert {key: naive_config(m, key) for key in functions} == got
    naive = len(functions) * 128  # 64 dwords, an 0xCF8 write and an 0xCFC read each
    assert first < naive
    if m.spec.machine == "q35":  # ECAM: query-pci, PCIEXBAR (two dwords), one xp per function
        assert first <= 1 + 4 + len(functions)
    for key in functions:  # everything is cached now
        bus.read_config(*key, 0, 256)
    absent = [(0, d, 0) for d in range(32) if (0, d, 0) not in functions][:3]
    for key in absent:  # query-pci says nothing is there: no round trip either
        assert bus.read_config(*key, 0, 4) == b"\xff" * 4
    assert bus.round_trips == first
    assert naive_config(m, absent[0])[:4] == b"\xff" * 4


def test_livebus_cache_follows_writes_and_the_machine_running() -> None:
    with booted(machine_spec("machine: pc\ndevices:\n  - {model: e1000, id: nic, addr: 3}\n"),
                firmware=False) as m:
        bus = LiveBus(m)
        before = bus.read_config(0, 3, 0, 0x10, 8)
        assert before[:4] == bytes(4)  # the firmware has not assigned BAR0 yet
        bus.write_config(0, 3, 0, 0x3C, b"\x07")
        assert bus.read_config(0, 3, 0, 0x3C, 1) == b"\x07" == HmpPorts(m).read_config(0, 3, 0, 0x3C, 1).to_bytes(1, "little")
        epoch = bus.epoch
        m.run_firmware()
        assert bus.epoch != epoch
        bar0 = int.from_bytes(bus.read_config(0, 3, 0, 0x10, 4), "little")
        assert bar0 == snapshot(m).pci_by_id("nic").bars[0].base  # not the cached 0
        # A hand-made 0xCF8/0xCFC cycle invalidates what the bus cached.
        line = bus.read_config(0, 3, 0, 0x3C, 1)[0]
        bus.write_port(0xCF8, 0x80001800 | 0x3C, 4)
        bus.write_port(0xCFC, line ^ 0x0F, 1)
        assert bus.read_config(0, 3, 0, 0x3C, 1)[0] == line ^ 0x0F


def test_livebus_reads_memory_and_refuses_bad_ports(q35) -> None:
    m, bus, _ = q35
    assert bus.read_memory(0xB0000000, 4) == (0x29C08086).to_bytes(4, "little")  # qemu-facts §4 ECAM check
    assert bus.read_memory(0xB0000001, 3) == bus.read_memory(0xB0000000, 4)[1:]
    with pytest.raises(Exception, match="outside the 64 KiB"):
        bus.read_port(0xFFFF, 2)


def test_the_hals_port_functions_wrap_at_16_bits_as_dx_does(pc) -> None:
    """livefuzz round two: a UART at 0xfffb has its scratch register at +7, 0x10002; the
    x86 HAL's ``in al, dx`` reaches port 0x2 (the Serial driver raised a job error)."""
    _, _, hal = pc
    seen: list[int] = []
    hook = lambda access: seen.append(access.port)   # noqa: E731
    hal.add_port_hook(hook)
    try:
        mask = hal.READ_PORT_UCHAR(0x21)
        assert hal.READ_PORT_UCHAR(0x10021) == mask   # the master 8259's mask register again
        hal.WRITE_PORT_UCHAR(0x10021, mask)
        buffer = bytearray(2)
        hal.READ_PORT_BUFFER_UCHAR(0x10021, buffer, 2)
        assert buffer == bytes((mask, mask))
    finally:
        hal.remove_port_hook(hook)
    assert set(seen) == {0x21}   # the verifier sees the port the bus saw


# ---------------------------------------------------------------------------------------
# HalGetBusData / HalGetBusDataByOffset


def test_get_bus_data_present_empty_and_missing(machine) -> None:
    m, bus, hal = machine
    functions = hal.pci_functions()
    assert set(functions) == set(bus.functions())
    lay = snapshot(m)
    assert hal.no_buses == 1 + max([0] + [f.bridge.subordinate for f in lay.pci if f.bridge])
    key = next(k for k in functions if k[0] == 0 and k[1] != 0)
    buf = bytearray(256)
    assert hal.HalGetBusData(PCIConfiguration, 0, slot_of(key), buf, 256) == 256
    raw = bus.read_config(*key, 0, 256)
    assert buf[:0x3C] == raw[:0x3C] and buf[0x3D:] == raw[0x3D:]
    empty = next(d for d in range(32) if (0, d, 0) not in functions)
    buf = bytearray(b"\x00" * 256)
    assert hal.HalGetBusData(PCIConfiguration, 0, empty, buf, 256) == 2
    assert buf[:3] == b"\xff\xff\x00"
    assert hal.HalGetBusDataByOffset(PCIConfiguration, 0, empty, bytearray(8), 1, 8) == 1
    for offset in (2, 4, 63, 64, 200):
        assert hal.HalGetBusDataByOffset(PCIConfiguration, 0, empty, bytearray(8), offset, 8) == 0
    missing = hal.no_buses
    assert hal.HalGetBusData(PCIConfiguration, missing, slot_of(key), bytearray(256), 256) == 0
    assert hal.HalGetBusData(PCIConfiguration, 255, 0, bytearray(256), 256) == 0
    assert hal.HalGetBusData(Eisa, 0, 0, bytearray(4), 4) == 0  # not a bus data type of a PC


def test_get_bus_data_slot_encoding_lengths_and_offsets(pc) -> None:
    m, bus, hal = pc
    nic = snapshot(m).pci_by_id("nic0")
    slot = slot_number(nic.slot, nic.function)
    assert slot == nic.slot | nic.function << 5
    assert hal.get_bus_data(PCIConfiguration, 0, PCI_SLOT_NUMBER(nic.slot, nic.function), 0, 4) == \
        hal.get_bus_data(PCIConfiguration, 0, slot, 0, 4)
    assert slot_number(1, 3) == 0x61 and PCI_SLOT_NUMBER.from_ulong(0x61) == PCI_SLOT_NUMBER(1, 3)
    data = hal.get_bus_data(PCIConfiguration, 0, slot, 0, 64)
    assert int.from_bytes(data[:2], "little") == nic.vendor and int.from_bytes(data[2:4], "little") == nic.device
    # function 1 of a single-function device is empty; so is a slot with Reserved bits set
    assert hal.get_bus_data(PCIConfiguration, 0, slot_number(nic.slot, 1), 0, 64) == b"\xff\xff"
    assert hal.get_bus_data(PCIConfiguration, 0, slot | 0x100, 0, 64) == b"\xff\xff"
    # function 1 of the multifunction PIIX3 (00:01) is there
    assert hal.get_bus_data(PCIConfiguration, 0, slot_number(1, 1), 0, 2) == b"\x86\x80"
    buf = bytearray(300)
    assert hal.HalGetBusData(PCIConfiguration, 0, slot, buf, 300) == 256  # Length clamped
    assert hal.HalGetBusDataByOffset(PCIConfiguration, 0, slot, buf, 0xF0, 0x20) == 0x10  # reads crossing 256
    assert bytes(buf[:0x10]) == bus.read_config(0, nic.slot, 0, 0xF0, 0x10)
    assert hal.HalGetBusDataByOffset(PCIConfiguration, 0, slot, buf, 0x40, 8) == 8
    assert hal.HalGetBusDataByOffset(PCIConfiguration, 0, slot, buf, 0x3E, 4) == 4  # header into device-specific
    assert bytes(buf[:4]) == bus.read_config(0, nic.slot, 0, 0x3E, 4)
    behind = snapshot(m).pci_by_id("nic2")
    assert behind.bus == 1
    assert hal.get_bus_data(PCIConfiguration, 1, slot_number(behind.slot), 0, 4) == \
        behind.vendor.to_bytes(2, "little") + behind.device.to_bytes(2, "little")


def test_cmos_bus_data(machine) -> None:
    _, _, hal = machine
    assert hal.get_bus_data(Cmos, 0, 0x0A, 0, 1) == b"\x26"  # register A (qemu-facts intro)
    assert len(hal.get_bus_data(Cmos, 0, 0xFE, 0, 4)) == 2  # stops at location 0x100
    assert hal.get_bus_data(Cmos, 0, 0x100, 0, 4) == b""


def test_bus_data_offsets_at_the_end_of_config_space_and_cmos_buses(pc) -> None:
    """§4.3/§4.4 corners: Offset+Length clamped to 256 (MODEL), Offset >= 256 reads and writes
    nothing; an empty slot at Offset 1 fills exactly one byte (0xFF) and leaves the rest of
    the buffer alone; Cmos ignores BusNumber (RX-busemul passes bus 0)."""
    m, _, hal = pc
    nic = snapshot(m).pci_by_id("nic0")
    slot = slot_number(nic.slot, nic.function)
    buf = bytearray(b"\x11" * 8)
    assert hal.HalGetBusDataByOffset(PCIConfiguration, 0, slot, buf, 0xFF, 8) == 1
    assert bytes(buf[1:]) == b"\x11" * 7
    for offset in (0x100, 0x12C):
        assert hal.HalGetBusDataByOffset(PCIConfiguration, 0, slot, buf, offset, 8) == 0
        assert hal.HalSetBusDataByOffset(PCIConfiguration, 0, slot, b"\0" * 8, offset, 8) == 0
    empty = next(d for d in range(32) if (0, d, 0) not in hal.pci_functions())
    buf = bytearray(b"\x11" * 8)
    assert hal.HalGetBusDataByOffset(PCIConfiguration, 0, slot_number(empty), buf, 1, 8) == 1
    assert bytes(buf) == b"\xff" + b"\x11" * 7
    assert hal.get_bus_data(Cmos, 1, 0x0A, 0, 1) == hal.get_bus_data(Cmos, 0, 0x0A, 0, 1) == b"\x26"


def test_set_bus_data_writes_through() -> None:
    spec = machine_spec("machine: pc\ndevices:\n  - {model: rtl8139, id: nic, addr: 4}\n")
    with booted(spec) as m:
        bus = LiveBus(m)
        hal = Hal(bus)
        slot = slot_number(4)
        assert hal.HalSetBusDataByOffset(PCIConfiguration, 0, slot, b"\x10", 0x0C, 1) == 1  # cache line size
        assert HmpPorts(m).read_config(0, 4, 0, 0x0C, 4) & 0xFF == 0x10
        header = bytearray(64)
        assert hal.HalGetBusData(PCIConfiguration, 0, slot, header, 64) == 64
        header[0x0C] = 0x08
        assert hal.HalSetBusData(PCIConfiguration, 0, slot, header, 64) == 64
        assert hal.get_bus_data(PCIConfiguration, 0, slot, 0x0C, 1) == b"\x08"
        assert HmpPorts(m).read_config(0, 4, 0, 0x0C, 4) & 0xFF == 0x08
        assert hal.HalSetBusDataByOffset(PCIConfiguration, 0, slot, b"\x00" * 8, 0xFC, 8) == 4  # clamped at 256
        assert hal.HalSetBusData(PCIConfiguration, 0, slot_number(9), header, 64) == 0  # empty slot
        assert hal.HalSetBusData(PCIConfiguration, hal.no_buses, slot, header, 64) == 0  # no such bus
        assert hal.HalSetBusDataByOffset(Cmos, 0, 0x7E, b"\x5a", 0, 1) == 1
        assert hal.get_bus_data(Cmos, 0, 0x7E, 0, 1) == b"\x5a"
        ports = HmpPorts(m)
        ports.write_port(0x70, 0x7E)
        assert ports.read_port(0x71) == 0x5A


# ---------------------------------------------------------------------------------------
# HalTranslateBusAddress


def test_translate_isa_and_internal(pc) -> None:
    _, _, hal = pc
    assert hal.HalTranslateBusAddress(Isa, 0, 0x3F8, 1) == (True, 1, 0x3F8)
    assert hal.HalTranslateBusAddress(Isa, 0, 0xA0000, 0) == (True, 0, 0xA0000)
    assert hal.HalTranslateBusAddress(Isa, 0, 0xFFFFFF, 0)
    assert not hal.HalTranslateBusAddress(Isa, 0, 0x1000000, 0)  # ISA has 24 address lines
    assert hal.HalTranslateBusAddress(Internal, 0, 0x1000000, 0) == (True, 0, 0x1000000)
    assert not hal.HalTranslateBusAddress(Isa, 0, 0x10000, 1)  # past the 64 KiB port space
    assert hal.HalTranslateBusAddress(Isa, 0, 0xFFF8, 1)  # only the start is checked (§9.5)
    refused = hal.HalTranslateBusAddress(Isa, 0, 0x3F8, 2)  # AddressSpace must be 0 or 1
    assert refused == (False, 2, 0) and not refused
    assert not hal.HalTranslateBusAddress(Isa, 1, 0x3F8, 1)  # there is one ISA bus
    assert not hal.HalTranslateBusAddress(Eisa, 0, 0x3F8, 1)


def test_translate_pci_follows_the_table(pc) -> None:
    """§4.1: one handler per PCI bus 0..NoBuses-1, I/O 0-0xFFFF and memory 0-0xFFFFFFFF,
    identity; only the start is checked; no handler, FALSE."""
    m, bus, hal = pc
    assert hal.pci_translation == "table"
    lay = snapshot(m)
    front = lay.pci_by_id("nic0")
    for number in range(hal.no_buses):
        assert hal.HalTranslateBusAddress(PCIBus, number, front.bars[0].base, 0 if front.bars[0].kind != "io" else 1)
        assert hal.HalTranslateBusAddress(PCIBus, number, 0xFFFF, 1) == (True, 1, 0xFFFF)
        assert not hal.HalTranslateBusAddress(PCIBus, number, 0x10000, 1)
        assert hal.HalTranslateBusAddress(PCIBus, number, 0xFFFFFFFF, 0) == (True, 0, 0xFFFFFFFF)
        assert not hal.HalTranslateBusAddress(PCIBus, number, 0x100000000, 0)  # no memory above 4 GiB
    assert not hal.HalTranslateBusAddress(PCIBus, hal.no_buses, 0x3F8, 1)
    with pytest.raises(ValueError, match="pci_translation"):
        Hal(bus, pci_translation="bridges")


def test_translate_pci_decoded_uses_bridge_windows(pc) -> None:
    m, bus, _ = pc
    hal = Hal(bus, pci_translation="decoded")
    lay = snapshot(m)
    bridge = lay.pci_by_id("br0").bridge
    behind, front = lay.pci_by_id("nic2"), lay.pci_by_id("nic0")
    for bar in behind.bars:
        space = 1 if bar.kind == "io" else 0
        assert hal.HalTranslateBusAddress(PCIBus, 1, bar.base, space) == (True, space, bar.base)
    for bar in front.bars:  # bus 0 addresses are outside the bridge's windows
        space = 1 if bar.kind == "io" else 0
        assert hal.HalTranslateBusAddress(PCIBus, 0, bar.base, space)
        assert not hal.HalTranslateBusAddress(PCIBus, 1, bar.base, space)
    assert hal.HalTranslateBusAddress(PCIBus, 1, bridge.io.limit, 1)
    assert not hal.HalTranslateBusAddress(PCIBus, 1, bridge.io.limit + 1, 1)
    assert hal.HalTranslateBusAddress(PCIBus, 1, bridge.memory.base, 0)
    assert not hal.HalTranslateBusAddress(PCIBus, 1, bridge.memory.base - 1, 0)
    assert not hal.HalTranslateBusAddress(PCIBus, hal.no_buses, front.bars[0].base, 0)
    assert hal.HalTranslateBusAddress(PCIBus, 0, 0x3F8, 1)  # bus 0 forwards the whole port space
    # QEMU's root bus is forwarded all 64 bits of memory (info mtree: pci 0-2^64-1), so
    # a 64-bit BAR above 4 GiB translates; the table stops at 4 GiB.
    high = 1 << 32
    assert any(lo <= high <= hi for lo, hi in bus.pci_root_windows()["memory"])
    assert hal.HalTranslateBusAddress(PCIBus, 0, high, 0) == (True, 0, high)
    assert not Hal(bus).HalTranslateBusAddress(PCIBus, 0, high, 0)


# ---------------------------------------------------------------------------------------
# HalGetInterruptVector


def test_pic_vectors() -> None:
    from harness.nt.recorded import ReplayBus  # no machine needed for ISA vectors
    hal = Hal(ReplayBus({"format": "harness-bus-transcript", "version": 1, "calls": []}))
    for irq in (0, 1, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14, 15):
        assert hal.HalGetInterruptVector(Isa, 0, irq, irq) == (0x30 + irq, 27 - irq, 1)
    assert (PRIMARY_VECTOR_BASE, PROFILE_LEVEL) == (0x30, 27)
    assert hal.HalGetInterruptVector(Isa, 0, 4, 0).vector == 0x34  # Level is the IRQ; Vector ignored
    assert hal.HalGetInterruptVector(Internal, 0, 3, 3).vector == 0x33
    # §4.2: "IRQ > 23 -> 0. Otherwise: PIC (PC/AT) HAL: vector = 0x30 + IRQ; IRQL = 27 - IRQ"
    # -- IRQ 16-23 map too (they have no 8259 input: IoConnectInterrupt refuses them).
    for irq in range(16, 24):
        assert hal.HalGetInterruptVector(Isa, 0, irq, irq) == (0x30 + irq, 27 - irq, 1)
    for irq in (2, 24, 255):
        assert hal.HalGetInterruptVector(Isa, 0, irq, irq) == (0, 0, 0)
    assert not hal.HalGetInterruptVector(Isa, 1, 4, 4)
    assert not hal.HalGetInterruptVector(Eisa, 0, 4, 4)
    kd = Hal(hal.bus, kd_port=0x3F8, processors=2)
    assert not kd.HalGetInterruptVector(Isa, 0, 4, 4)
    assert kd.HalGetInterruptVector(Isa, 0, 3, 3) == (0x33, 24, 0b11)


def test_apic_vectors_are_distinct_and_stable() -> None:
    from harness.nt.apic import Madt
    from harness.nt.recorded import ReplayBus
    no_overrides = Madt(0, 0xFEE00000, True, ())
    hal = Hal(ReplayBus({"format": "harness-bus-transcript", "version": 1, "calls": []}),
              interrupt_model="apic", processors=4, madt=no_overrides)
    seen = {}
    for gsi in (1, 3, 4, 5, 9, 10, 11, 14, 16, 19, 20, 23):
        v = hal.HalGetInterruptVector(Isa, 0, gsi, gsi)
        assert v.vector and v.irql == v.vector >> 4 and 5 <= v.irql <= 12 and v.affinity == 0xF
        seen[gsi] = v.vector
    assert len(set(seen.values())) == len(seen)
    assert all(hal.HalGetInterruptVector(Isa, 0, g, g).vector == v for g, v in seen.items())
    assert not hal.HalGetInterruptVector(Isa, 0, 24, 24) and not hal.HalGetInterruptVector(Isa, 0, 2, 2)


def test_pci_lines_match_the_firmware_and_give_vectors(machine) -> None:
    m, bus, hal = machine
    lay = snapshot(m)
    with_pin = [f for f in lay.pci if f.interrupt_pin]
    assert with_pin
    for f in with_pin:
        header = hal.get_bus_data(PCIConfiguration, f.bus, slot_number(f.slot, f.function), 0, 64)
        # SeaBIOS wrote 0x3C with the same swizzle and the same PIRQ routes; the HAL
        # computed its line from the PIRQ registers.
        assert header[0x3C] == f.interrupt_line, f.bdf
        v = hal.HalGetInterruptVector(PCIBus, f.bus, header[0x3C], header[0x3C])
        assert v == (0x30 + f.interrupt_line, 27 - f.interrupt_line, 1)
    assert not hal.HalGetInterruptVector(PCIBus, 0, 0, 0)  # PCI level 0: no interrupt
    assert not hal.HalGetInterruptVector(PCIBus, hal.no_buses, 10, 10)
    # The PIRQ routes are the firmware's (qemu-facts §4).
    routes = {0x60: 10, 0x61: 10, 0x62: 11, 0x63: 11}
    for f in with_pin:
        route = hal.pci_interrupt_route(f.bus, f.slot, f.function)
        if route is not None:
            assert route.irq == {**routes, 0x68: 10, 0x69: 10, 0x6A: 11, 0x6B: 11}[route.register]


IRQ_LINE = re.compile(r"^\s*(\d+):\s+(\d+)\s*$")


def irq_counts(m: Machine) -> dict[str, dict[int, int]]:
    """``info irq`` (TCG): raises per line, for the I/O APIC and the 8259 pair."""
    out: dict[str, dict[int, int]] = {}
    current = None
    for line in m.hmp("info irq").splitlines():
        head = re.match(r"IRQ statistics for (\S+):", line)
        if head:
            current = out.setdefault("ioapic" if "ioapic" in head.group(1) else "pic", {})
            continue
        match = IRQ_LINE.match(line)
        if match and current is not None:
            current[int(match.group(1))] = int(match.group(2))
    return out


def raise_ne2k(m: Machine, io_base: int) -> dict[str, set[int]]:
    """Make an ne2k_pci assert INTx (a zero-length remote DMA, qemu-facts §2), return the
    lines that rose, then acknowledge it (clearing ISR drops the line)."""
    ports = HmpPorts(m)
    before = irq_counts(m)
    ports.write_port(io_base + 0xF, 0x40)   # IMR: remote DMA complete
    ports.write_port(io_base + 0xA, 0)
    ports.write_port(io_base + 0xB, 0)
    ports.write_port(io_base, 0x0A)         # start, remote read of 0 bytes
    after = irq_counts(m)
    ports.write_port(io_base + 0x7, 0xFF)   # acknowledge
    return {kind: {n for n, c in after.get(kind, {}).items() if c > before.get(kind, {}).get(n, 0)}
            for kind in ("ioapic", "pic")}


PIRQ_PC = """
machine: pc
devices:
  - {model: pci-bridge, id: br0, addr: 7}
  - {model: ne2k_pci, id: ne, bus: br0, addr: 2}
"""
PIRQ_Q35 = """
machine: q35
devices:
  - {model: pcie-root-port, id: rp0, addr: 8}
  - {model: ne2k_pci, id: ne, bus: rp0, addr: 0}
  - {model: ne2k_pci, id: ne25, addr: 0x19}
"""


def test_pci_interrupt_follows_the_pirq_register_pc() -> None:
    with booted(machine_spec(PIRQ_PC)) as m:
        bus = LiveBus(m)
        hal = Hal(bus)
        apic = Hal(bus, interrupt_model="apic")
        ne = snapshot(m).pci_by_id("ne")
        key, base = (ne.bus, ne.slot, ne.function), ne.bars[0].base
        route = hal.pci_interrupt_route(*key)
        # behind the slot-7 bridge at slot 2: INTA -> INTC on bus 0 slot 7 -> PIRQ (2+7-1)&3
        assert (route.root_slot, route.root_pin, route.link) == (7, 3, 0)
        line = hal.get_bus_data(PCIConfiguration, *key[:1], slot_of(key), 0x3C, 1)[0]
        rose = raise_ne2k(m, base)
        assert rose["pic"] == {line} == {route.irq}
        assert apic.get_bus_data(PCIConfiguration, key[0], slot_of(key), 0x3C, 1)[0] == line  # PIIX3: ISA IRQs only
        old = hal.HalGetInterruptVector(PCIBus, key[0], line, line)
        # Re-route the link to IRQ 5 through HalSetBusData on the PIIX3, ask again.
        assert hal.HalSetBusDataByOffset(PCIConfiguration, 0, slot_number(1, 0), b"\x05", route.register, 1) == 1
        new_line = hal.get_bus_data(PCIConfiguration, key[0], slot_of(key), 0x3C, 1)[0]
        assert new_line == 5 and HmpPorts(m).read_config(*key, 0x3C, 1) == line  # 0x3C itself is only a hint
        new = hal.HalGetInterruptVector(PCIBus, key[0], new_line, new_line)
        assert new == (0x35, 22, 1) and new != old
        assert raise_ne2k(m, base)["pic"] == {5}
        # Disable the link: the line becomes 0xFF, which connects nowhere.
        hal.HalSetBusDataByOffset(PCIConfiguration, 0, slot_number(1, 0), b"\x80", route.register, 1)
        assert hal.get_bus_data(PCIConfiguration, key[0], slot_of(key), 0x3C, 1) == b"\xff"
        assert not hal.HalGetInterruptVector(PCIBus, key[0], 0xFF, 0xFF)
        assert raise_ne2k(m, base)["pic"] == set()


def test_pci_interrupt_follows_the_pirq_register_q35() -> None:
    with booted(machine_spec(PIRQ_Q35)) as m:
        bus = LiveBus(m)
        pic, apic = Hal(bus), Hal(bus, interrupt_model="apic")
        lay = snapshot(m)
        for name in ("ne", "ne25"):
            ne = lay.pci_by_id(name)
            key, base = (ne.bus, ne.slot, ne.function), ne.bars[0].base
            line = pic.get_bus_data(PCIConfiguration, key[0], slot_of(key), 0x3C, 1)[0]
            gsi = apic.get_bus_data(PCIConfiguration, key[0], slot_of(key), 0x3C, 1)[0]
            rose = raise_ne2k(m, base)
            assert rose["pic"] == {line} and gsi in rose["ioapic"] and gsi >= 16, (name, rose)
        ne = lay.pci_by_id("ne")
        key, base = (ne.bus, ne.slot, ne.function), ne.bars[0].base
        route = pic.pci_interrupt_route(*key)
        assert route.chipset == "ich9" and route.link >= 4  # slots <= 24 use PIRQ E-H
        assert pic.pci_interrupt_route(0, 0x19, 0).link == 0  # D25IR default 0x3210: INTA -> PIRQA
        assert pic.HalSetBusDataByOffset(PCIConfiguration, 0, slot_number(0x1F), b"\x05", route.register, 1) == 1
        assert pic.get_bus_data(PCIConfiguration, key[0], slot_of(key), 0x3C, 1) == b"\x05"
        assert pic.HalGetInterruptVector(PCIBus, key[0], 5, 5).vector == 0x35
        rose = raise_ne2k(m, base)
        assert rose["pic"] == {5} and route.gsi in rose["ioapic"]
        # Under the APIC model the line does not move: PIRQx is wired to GSI 16+x.
        assert apic.get_bus_data(PCIConfiguration, key[0], slot_of(key), 0x3C, 1)[0] == route.gsi == 16 + route.link


# ---------------------------------------------------------------------------------------
# HalGetAdapter


def test_get_adapter_channels_and_limits(machine) -> None:
    m, _, hal = machine
    lay = snapshot(m)
    for channel in (0, 1, 2, 3, 5, 6, 7):
        width = Width16Bits if channel > 4 else Width8Bits
        adapter, registers = hal.HalGetAdapter(DEVICE_DESCRIPTION(dma_channel=channel, dma_width=width,
                                                                  maximum_length=0x10000))
        assert adapter is not None and registers == 16
        assert adapter.width16 == (channel > 4) and adapter.maximum_physical_address == 0xFFFFFF
        assert adapter.maximum_transfer == adapter.boundary == (0x20000 if channel > 4 else 0x10000)
        for port in (adapter.address_port, adapter.count_port, adapter.page_port):
            owner = lay.owner_at(port)
            assert owner is not None and owner.owner_type == "i8257", (channel, hex(port), owner)
    assert hal.HalGetAdapter(DEVICE_DESCRIPTION(dma_channel=4, dma_width=Width16Bits)) == (None, 0)
    assert hal.HalGetAdapter(DEVICE_DESCRIPTION(dma_channel=2, dma_width=Width16Bits)) == (None, 0)
    assert hal.HalGetAdapter(DEVICE_DESCRIPTION(dma_channel=5, dma_width=Width8Bits)) == (None, 0)
    assert hal.HalGetAdapter(DEVICE_DESCRIPTION(dma_channel=8)) == (None, 0)
    assert hal.HalGetAdapter(DEVICE_DESCRIPTION(version=3, dma_channel=1)) == (None, 0)
    small, registers = hal.HalGetAdapter(DEVICE_DESCRIPTION(dma_channel=1, maximum_length=0x1000))
    assert registers == 2 and small.map_registers == 2
    master, registers = hal.HalGetAdapter(DEVICE_DESCRIPTION(master=True, scatter_gather=True, dma32_bit_addresses=True,
                                                             interface_type=PCIBus, maximum_length=0x8000))
    assert master.dma_channel is None and master.maximum_physical_address == 0xFFFFFFFF and registers == 9


# ---------------------------------------------------------------------------------------
# HalAssignSlotResources


def _catalog_bars(model: str) -> dict[int, tuple[str, int]]:
    return {b.index: (b.kind, b.size) for b in CATALOG[model].pci.bars}


def test_size_bars_io_32_64_and_rom(tmp_path: Path) -> None:
    rom = tmp_path / "option.rom"
    rom.write_bytes(bytes(range(256)) * 20)  # 5120 bytes, no 0x55AA signature: never run
    extra = ("-device", "pci-testdev,id=td,membar=64M,addr=0x9",
             "-device", f"e1000,id=romnic,addr=0xa,romfile={rom}")
    with booted(machine_spec("machine: pc\n"), extra_args=extra) as m:
        lay = snapshot(m)
        hal = Hal(LiveBus(m))
        for qdev in ("td", "romnic"):
            f = lay.pci_by_id(qdev)
            sized = {b.index: b for b in hal.size_bars(f.bus, f.slot, f.function)}
            assert {i: (b.kind, b.size, b.is_64bit, b.prefetchable) for i, b in sized.items()} == \
                {b.index: (b.kind, b.size, b.is_64bit, b.prefetchable) for b in f.bars}
            after = snapshot(m).pci_by_id(qdev)
            assert after.bars == f.bars and after.command == f.command  # sizing left it as it was
        td = {b.index: b for b in lay.pci_by_id("td").bars}
        assert td[2].size == 64 << 20 and td[2].is_64bit and td[2].prefetchable
        assert {0: td[0].kind, 1: td[1].kind} == {0: "memory", 1: "io"}
        assert {i: (b.kind, b.size) for i, b in td.items() if i < 2} == _catalog_bars("pci-testdev")
        romnic = {b.index: b for b in lay.pci_by_id("romnic").bars}
        assert romnic[6].kind == "rom" and romnic[6].size == 8192  # 5120 bytes rounded to a power of two
        status, resources = hal.HalAssignSlotResources("\\Registry\\Machine\\System\\td", None, object(), object(),
                                                       PCIBus, 0, slot_number(9))
        assert status == NTSTATUS.STATUS_SUCCESS
        td_parts = [p for _, p in resources.partials()]
        assert [type(p) for p in td_parts] == [Memory, Port, Memory]
        assert td_parts[2].length == 64 << 20 and td_parts[2].flags & CM_RESOURCE_MEMORY_PREFETCHABLE
        assert td_parts[2].start % td_parts[2].length == 0
        assert parts_of(hal, 9) == [p.start for p in td_parts]
        status, resources = hal.HalAssignSlotResources("\\Registry\\Machine\\System\\romnic", None, object(),
                                                       object(), PCIBus, 0, slot_number(0xA))
        assert status == NTSTATUS.STATUS_SUCCESS
        parts = [p for _, p in resources.partials()]
        rom_part = parts[2]
        assert isinstance(rom_part, Memory) and rom_part.flags == CM_RESOURCE_MEMORY_READ_ONLY
        assert rom_part.length == 8192
        cfg = int.from_bytes(hal.bus.read_config(0, 0xA, 0, 0x30, 4), "little")
        assert cfg & ~0x7FF == rom_part.start and cfg & 1 == 0  # programmed, left disabled
        decoded = snapshot(m).pci_by_id("td")
        assert [b.base for b in sorted(decoded.bars, key=lambda b: b.index)] == [p.start for p in td_parts]


def parts_of(hal: Hal, slot: int) -> list[int]:
    """BAR bases as the device's registers hold them now."""
    cfg = hal.bus.read_config(0, slot, 0, 0x10, 24)
    words = [int.from_bytes(cfg[i:i + 4], "little") for i in range(0, 24, 4)]
    return [words[0] & ~0xF, words[1] & ~0x3, (words[2] & ~0xF) | words[3] << 32]


def _check_decoded(m: Machine, qdev: str, resources) -> None:
    """An independent look (layout.snapshot): QEMU maps every assigned range and the flat
    view gives it to the device."""
    lay = snapshot(m)
    f = lay.pci_by_id(qdev)
    ranges = [p for _, p in resources.partials() if isinstance(p, (Port, Memory))]
    mapped = sorted((b.kind == "io", b.base, b.size) for b in f.bars if b.kind != "rom")
    assert sorted((isinstance(p, Port), p.start, p.length) for p in ranges) == mapped
    for p in ranges:
        space = "io" if isinstance(p, Port) else "memory"
        owner = lay.owner_at(p.start, space)
        assert owner is not None and owner.owner == qdev, (hex(p.start), owner)
    assert f.command & 0x3 == 0x3


def test_assign_an_unassigned_device_before_the_firmware() -> None:
    with booted(machine_spec("machine: pc\ndevices:\n  - {model: e1000, id: nic, addr: 3}\n"),
                firmware=False) as m:
        before = snapshot(m).pci_by_id("nic")
        assert all(b.base is None for b in before.bars) and before.command == 0
        hal = Hal(LiveBus(m))
        status, resources = hal.HalAssignSlotResources("\\Registry\\Machine\\System\\e1000", "Net", object(),
                                                       object(), PCIBus, 0, slot_number(3))
        assert status == NTSTATUS.STATUS_SUCCESS
        full = resources.descriptors[0]
        assert (full.interface_type, full.bus_number) == (PCIBus, 0)
        parts = list(full.partials)
        assert [(type(p), p.length) for p in parts] == [(Memory, 0x20000), (Port, 0x40)]  # no interrupt: PIRQs off
        assert _catalog_bars("e1000") == {0: ("memory", 0x20000), 1: ("io", 0x40)}
        for p in parts:
            assert p.start % p.length == 0 and p.share == CmResourceShare.CmResourceShareDeviceExclusive
        assert parts[1].start >= 0x1000
        _check_decoded(m, "nic", resources)


def test_reassign_moves_the_device_and_qemu_follows(machine) -> None:
    m0, _, _ = machine
    spec = machine_spec(f"machine: {m0.spec.machine}\ndevices:\n  - {{model: e1000, id: nic, addr: 3}}\n"
                        "  - {model: rtl8139, id: other, addr: 4}\n")
    with booted(spec) as m:
        old = snapshot(m).pci_by_id("nic")
        avoid = [("io" if b.kind == "io" else "memory", b.base, b.end) for b in old.bars]
        hal = Hal(LiveBus(m), allocator=FirstFitAllocator(avoid=avoid))
        status, resources = hal.HalAssignSlotResources("\\Registry\\Machine\\System\\e1000", None, object(), object(),
                                                       PCIBus, 0, slot_number(3))
        assert status == NTSTATUS.STATUS_SUCCESS
        parts = [p for _, p in resources.partials()]
        assert {p.start for p in parts if isinstance(p, (Port, Memory))}.isdisjoint({b.base for b in old.bars})
        irq = [p for p in parts if isinstance(p, Interrupt)]
        assert len(irq) == 1 and irq[0].level == irq[0].vector == old.interrupt_line
        assert irq[0].share == CmResourceShare.CmResourceShareShared
        assert irq[0].flags == CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE
        _check_decoded(m, "nic", resources)
        lay = snapshot(m)
        for b in old.bars:  # nothing answers at the old addresses any more
            hit = lay.owner_at(b.base, "io" if b.kind == "io" else "memory")
            assert hit is None or hit.owner != "nic"
        # A second device cannot be given what the first one holds (§9.22).
        status, second = hal.HalAssignSlotResources("\\Registry\\Machine\\System\\rtl", None, object(), object(),
                                                    PCIBus, 0, slot_number(4))
        assert status == NTSTATUS.STATUS_SUCCESS
        mine = [(p.start, p.start + p.length - 1) for p in parts if isinstance(p, Memory)]
        theirs = [(p.start, p.start + p.length - 1) for _, p in second.partials() if isinstance(p, Memory)]
        assert all(a_hi < b_lo or b_hi < a_lo for a_lo, a_hi in mine for b_lo, b_hi in theirs)
        _check_decoded(m, "other", second)


def test_assign_behind_a_bridge_stays_inside_its_windows() -> None:
    spec = load_machine(CONFIGS / "machines" / "default.yaml")
    with booted(spec) as m:
        hal = Hal(LiveBus(m))
        lay = snapshot(m)
        nic2, bridge = lay.pci_by_id("nic2"), lay.pci_by_id("br0").bridge
        status, resources = hal.HalAssignSlotResources("\\Registry\\Machine\\System\\e1000", None, object(), object(),
                                                       PCIBus, nic2.bus, slot_number(nic2.slot))
        assert status == NTSTATUS.STATUS_SUCCESS
        for _, p in resources.partials():
            if isinstance(p, Port):
                assert bridge.io.base <= p.start and p.start + p.length - 1 <= bridge.io.limit
            elif isinstance(p, Memory):
                assert bridge.memory.base <= p.start and p.start + p.length - 1 <= bridge.memory.limit
        _check_decoded(m, "nic2", resources)


def test_assign_statuses(pc) -> None:
    m, bus, hal = pc
    args = ("\\Registry\\Machine\\System\\x", None, object(), object())
    assert hal.HalAssignSlotResources(*args, Isa, 0, 0) == (NTSTATUS.STATUS_NOT_SUPPORTED, None)
    assert hal.HalAssignSlotResources(*args, Eisa, 0, 0) == (NTSTATUS.STATUS_NOT_FOUND, None)
    assert hal.HalAssignSlotResources(*args, PCIBus, hal.no_buses, 3) == (NTSTATUS.STATUS_NOT_FOUND, None)
    empty = next(d for d in range(32) if (0, d, 0) not in hal.pci_functions())
    assert hal.HalAssignSlotResources(*args, PCIBus, 0, empty) == (NTSTATUS.STATUS_NO_SUCH_DEVICE, None)
    assert hal.HalAssignSlotResources(*args, PCIBus, 0, slot_number(3, 1)) == (NTSTATUS.STATUS_NO_SUCH_DEVICE, None)
    # Nowhere to go: the allocator fails and the device is left exactly as it was.
    nic = snapshot(m).pci_by_id("nic0")
    before = naive_config(m, (0, nic.slot, 0))
    full = FirstFitAllocator(avoid=[("io", 0, 0xFFFF), ("memory", 0, (1 << 64) - 1)])
    stuck = Hal(bus, allocator=full)
    assert stuck.HalAssignSlotResources(*args, PCIBus, 0, slot_number(nic.slot)) == \
        (NTSTATUS.STATUS_INSUFFICIENT_RESOURCES, None)
    assert naive_config(m, (0, nic.slot, 0)) == before


def test_assignment_that_qemu_does_not_decode_is_reported() -> None:
    # An allocator whose answer QEMU cannot decode as given must not pass silently: a
    # BAR under the local APIC's MSI window (priority 4096 beats a BAR's 1), a BAR base
    # that is not aligned to its size (the register drops the low bits).
    class Liar:
        def IoAssignResources(self, *args):
            from harness.nt.resources import CM_RESOURCE_LIST
            return NTSTATUS.STATUS_SUCCESS, CM_RESOURCE_LIST.single(PCIBus, 0, Memory(0xFEC00000, 0x1000))
    with booted(machine_spec("machine: pc\ndevices:\n  - {model: pci-testdev, id: td, addr: 9}\n")) as m:
        hal = Hal(LiveBus(m), allocator=Liar())
        with pytest.raises(Exception, match="allocator returned 1 ranges for 2 BARs"):
            hal.HalAssignSlotResources("x", None, object(), object(), PCIBus, 0, slot_number(9))

        class HalfLiar:
            def IoAssignResources(self, *args):
                from harness.nt.resources import CM_RESOURCE_LIST
                return NTSTATUS.STATUS_SUCCESS, CM_RESOURCE_LIST.single(
                    PCIBus, 0, Memory(0xFEE00000, 0x1000), Port(0x5000, 0x100))
        hal = Hal(LiveBus(m), allocator=HalfLiar())
        with pytest.raises(AssignmentNotDecodedError, match="also decoded by .*lapic"):
            hal.HalAssignSlotResources("x", None, object(), object(), PCIBus, 0, slot_number(9))

        class Unaligned:
            def IoAssignResources(self, *args):
                from harness.nt.resources import CM_RESOURCE_LIST
                return NTSTATUS.STATUS_SUCCESS, CM_RESOURCE_LIST.single(
                    PCIBus, 0, Memory(0xFEB00800, 0x1000), Port(0x5000, 0x100))
        hal = Hal(LiveBus(m), allocator=Unaligned())
        with pytest.raises(AssignmentNotDecodedError, match="BAR0 memory 0xfeb00800-0xfeb017ff: the platform maps it 0xfeb00000"):
            hal.HalAssignSlotResources("x", None, object(), object(), PCIBus, 0, slot_number(9))


# ---------------------------------------------------------------------------------------
# READ_PORT_* / WRITE_PORT_* and their hooks


def test_port_routines_pass_through_hooks(pc) -> None:
    _, _, base = pc
    hal = Hal(base.bus)
    seen: list[PortAccess] = []
    hal.add_port_hook(seen.append)
    assert hal.READ_PORT_UCHAR(0x3FD) == 0x60  # COM1 LSR (qemu-facts §2)
    assert hal.READ_PORT_USHORT(0x3FC) == 0x6008  # byte-wide device read as a word
    assert [(a.phase, a.kind, a.port, a.size, a.value) for a in seen] == [
        ("before", "read", 0x3FD, 1, None), ("after", "read", 0x3FD, 1, 0x60),
        ("before", "read", 0x3FC, 2, None), ("after", "read", 0x3FC, 2, 0x6008)]

    def refuse_scratch(access: PortAccess) -> None:
        if access.kind == "write" and access.port == 0x3FF:
            raise PermissionError("not claimed")
    hal.WRITE_PORT_UCHAR(0x3FF, 0x5A)
    hal.add_port_hook(refuse_scratch)
    with pytest.raises(PermissionError):
        hal.WRITE_PORT_UCHAR(0x3FF, 0xA5)
    assert hal.READ_PORT_UCHAR(0x3FF) == 0x5A  # the refused write never reached the UART
    hal.remove_port_hook(refuse_scratch)
    hal.WRITE_PORT_ULONG(0xCF8, 0x80000000)
    assert hal.READ_PORT_ULONG(0xCFC) == 0x12378086  # the i440FX host bridge
    with pytest.raises(HalError, match="does not fit"):
        hal.WRITE_PORT_UCHAR(0x3FF, 0x100)


def test_nt_side_never_imports_qemu() -> None:
    nt = Path(__file__).resolve().parent.parent / "harness" / "nt"
    for path in nt.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(harness\.qemu|\.\.qemu|qemu)\b", text, re.M), path.name


def test_recorded_transcript_matches_the_live_machine() -> None:
    """The committed transcript is what today's default machine answers (else re-record:
    ``PYTHONPATH=.:tests .venv/bin/python tests/test_hal_recorded.py --record``)."""
    from harness.nt.recorded import RecordingBus, ReplayBus
    from test_hal_recorded import TRANSCRIPT, hal_session
    with booted(load_machine(CONFIGS / "machines" / "default.yaml")) as m:
        recorder = RecordingBus(LiveBus(m))
        live = hal_session(Hal(recorder))
    replay = ReplayBus.load(TRANSCRIPT)
    assert hal_session(Hal(replay)) == live
    assert replay.remaining == 0 and len(recorder.calls) == replay.replayed
