"""The I/O manager on a live machine: every IoReportResourceUsage rule of seed 001/002, the
ResourceMap it writes, IoAssignResources, HalAssignSlotResources through the arbiter,
the driver life cycle and the claim-before-touch verifier, with real register I/O."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.config import load_machine
from harness.nt.detect import detect_hardware
from harness.nt.errorlog import ERROR_LOG_LIMIT_SIZE
from harness.nt.hal import Hal, slot_number
from harness.nt.iomgr import (DEFAULT_RESOURCE_CLASS, HAL_NAME, IoManager, RAW_SUFFIX,
                              TRANSLATED_SUFFIX)
from harness.nt.registry import DEVICE_MAP, RESOURCE_MAP, Registry, RegType
from harness.nt.resources import (CM_FULL_RESOURCE_DESCRIPTOR, CM_RESOURCE_LIST, DeviceSpecific, Interrupt, IO_RESOURCE_ALTERNATIVE,
                                  IO_RESOURCE_LIST, IO_RESOURCE_REQUIREMENTS_LIST, InterruptRequirement,
                                  Internal, Isa, Port, PortRequirement)
from harness.nt.status import NTSTATUS, IoErrorCode
from harness.nt.verifier import ClaimViolationError, call_site
from harness.drivers import ParallelDriver, PciNicDriver, SerialDriver
from harness.qemu.livebus import LiveBus
from harness.qemu.machine import Machine
from helpers import CONFIGS

COM1 = CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8), Interrupt(4, 4, -1))


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    with Machine(load_machine(CONFIGS / "machines" / "default.yaml")) as m:
        m.run_firmware()
        yield m


@pytest.fixture
def io(machine: Machine) -> Iterator[IoManager]:
    """A fresh I/O manager (and registry) over the live machine, with the HAL's claims."""
    bus = LiveBus(machine)
    hal = Hal(bus)
    registry = Registry()
    detect_hardware(bus, registry, hal)
    manager = IoManager(registry, hal)
    manager.report_hal_resources(hal.HalReportResourceUsage())
    yield manager
    registry.close()


class Probe:
    """A minimal driver whose DriverEntry runs a test-supplied body."""

    def __init__(self, name: str, body: Any) -> None:
        self.service_name = name
        self.body = body

    def DriverEntry(self, DriverObject, RegistryPath) -> NTSTATUS:
        return self.body(DriverObject, RegistryPath)


def driver(io: IoManager, name: str, devices: int = 1):
    """A loaded driver object with ``devices`` device objects."""
    made = []

    def body(d, path):
        for i in range(devices):
            made.append(io.IoCreateDevice(d, rf"\Device\{name}{i}")[1])
        return NTSTATUS.STATUS_SUCCESS
    result = io.load_driver(Probe(name, body))
    return result.driver_object, made


def report(io, d, device, lst, override=False, cls=None):
    return io.IoReportResourceUsage(cls, d, None, 0, device, lst, lst.size(), override)


def test_a_claim_is_written_raw_and_translated(io: IoManager) -> None:
    d, (dev,) = driver(io, "Ser")
    assert report(io, d, dev, COM1) == (NTSTATUS.STATUS_SUCCESS, False)
    key = rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Ser"
    assert io.registry.key_info(key).volatile
    assert io.registry.get(key, dev.name + RAW_SUFFIX) == COM1
    translated = io.registry.get(key, dev.name + TRANSLATED_SUFFIX)
    port, irq = (p for _, p in translated.partials())
    assert port == Port(0x3F8, 8) and (irq.vector, irq.level) == (0x34, 23)   # IDT vector 0x30+4, IRQL 27-4
    assert translated.size() == COM1.size()
    # Identity translations are the raw values themselves (no copy built and packed again);
    # what changes, and a list whose version the translation does not keep, is built anew.
    copy = io.translate(COM1)
    assert copy == translated and copy.descriptors[0].partials[0] is COM1.descriptors[0].partials[0]
    ports = CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8), Port(0x2F8, 8))
    assert io.translate(ports) is ports
    tailed = CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8, union_tail=b"\x01"))
    assert io.translate(tailed).descriptors[0].partials[0] == Port(0x3F8, 8)
    v2 = CM_RESOURCE_LIST((CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(0x3F8, 8), version=2),))
    assert io.translate(v2).descriptors[0].partial_resource_list.version == 1
    memory_port = CM_RESOURCE_LIST.single(Isa, 0, Port(0xD0000, 16, flags=0))   # a port in memory space
    assert io.translate(memory_port) == memory_port
    # a named class gets its own key; the HAL's own list is there too
    d2, (dev2,) = driver(io, "Par")
    report(io, d2, dev2, CM_RESOURCE_LIST.single(Isa, 0, Port(0x378, 3)), cls="PARALLEL PORTS")
    assert io.registry.key_exists(rf"{RESOURCE_MAP}\PARALLEL PORTS\Par")
    assert io.registry.key_exists(rf"{RESOURCE_MAP}\Hardware Abstraction Layer\{HAL_NAME}")


def test_the_hal_reports_device_usage_under_its_bus_type_then_internal_usage(machine: Machine) -> None:
    """§2.4 (ReactOS HalpReportResourceUsage's two passes): the kernel debugger's COM IRQ
    is device usage, in an Isa full descriptor written first; the HAL's own interrupts and
    ports, the debugger port's 8 among them, are Internal.  Without a debugger port, or
    with one whose IRQ the HAL does not know, there is no device usage to write."""
    bus = LiveBus(machine)
    plain = Hal(bus).HalReportResourceUsage()
    assert [f.interface_type for f in plain.descriptors] == [Internal]
    with_kd = Hal(bus, kd_port=0x2F8).HalReportResourceUsage()
    device, internal = with_kd.descriptors
    assert device.interface_type == Isa and [(p.level, p.vector) for p in device.partials] == [(3, 3)]
    assert 3 not in {p.level for p in internal.partials if isinstance(p, Interrupt)}
    assert (0x2F8, 8) in {(p.start, p.length) for p in internal.partials if isinstance(p, Port)}
    added = set(internal.partials) - set(plain.descriptors[0].partials)
    assert [(p.start, p.length) for p in added] == [(0x2F8, 8)]
    unknown = Hal(bus, kd_port=0x2000).HalReportResourceUsage()
    assert [f.interface_type for f in unknown.descriptors] == [Internal]
    interrupts = [p for _, p in plain.partials() if isinstance(p, Interrupt)]
    assert [p for _, p in unknown.partials() if isinstance(p, Interrupt)] == interrupts   # no IRQ for it
    registry = Registry()
    try:
        manager = IoManager(registry, Hal(bus, kd_port=0x2F8))
        manager.report_hal_resources(with_kd)
        key = rf"{RESOURCE_MAP}\Hardware Abstraction Layer\{HAL_NAME}"
        values = {v.name: v.value for v in registry.values(key)}
        raw, translated = (next(v for n, v in values.items() if n.endswith(suffix)) for suffix in (RAW_SUFFIX, TRANSLATED_SUFFIX))
        assert [f.interface_type for f in raw.descriptors] == [Isa, Internal] == [f.interface_type for f in translated.descriptors]
    finally:
        registry.close()


def test_conflict_without_override_logs_and_writes_nothing(io: IoManager) -> None:
    a, (deva,) = driver(io, "First")
    b, (devb,) = driver(io, "Second")
    report(io, a, deva, COM1)
    before = io.registry.key_exists(rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Second")
    result = report(io, b, devb, CM_RESOURCE_LIST.single(Isa, 0, Port(0x3FC, 2), Interrupt(3, 3)))
    assert result == (NTSTATUS.STATUS_CONFLICTING_ADDRESSES, True)
    assert not before and not io.registry.key_exists(rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Second")
    (entry,) = io.error_log.query(code=IoErrorCode.IO_ERR_PORT_CONFLICT_DETECTED)
    assert entry.strings == (devb.name, "First", deva.name)
    assert entry.dump_data == (0x3F8, 0, 8)   # the holder's range: Start low, high, Length
    assert entry.final_status == NTSTATUS.STATUS_CONFLICTING_ADDRESSES
    packet = entry.pack()
    assert len(packet) <= ERROR_LOG_LIMIT_SIZE and int.from_bytes(packet[0x0C:0x10], "little") == 0xC0040016
    assert int.from_bytes(packet[0x28:0x2C], "little") == 0x3F8


def test_override_writes_without_logging_and_the_overrider_may_not_touch(io: IoManager) -> None:
    a, (deva,) = driver(io, "Holder")
    b, (devb,) = driver(io, "Thief")
    report(io, a, deva, COM1)
    assert report(io, b, devb, COM1, override=True) == (NTSTATUS.STATUS_SUCCESS, True)
    assert len(io.error_log) == 0
    assert io.registry.key_exists(rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Thief")
    hal = io.hal
    with io.running(a):
        hal.READ_PORT_UCHAR(0x3FD)          # the first holder keeps its right
    with io.running(b):
        hal.READ_PORT_UCHAR(0x3FD)          # the real UART answers, but this is a violation
    (v,) = io.violations
    assert (v.kind, v.driver, v.port, v.size, v.access, v.other) == ("owned-by-other", "Thief", 0x3FD, 1, "read", "Holder")
    assert v.site and "test_iomgr.py" in v.site
    assert io.verifier.check_trace() == [v]


def test_call_site_names_the_driver_line_relative_to_the_working_directory(tmp_path, monkeypatch) -> None:
    """The site is the first frame outside harness/nt, printed relative to the current
    directory: remembered per file, so it must follow a change of directory."""
    here = Path(__file__).resolve()
    def access() -> str | None:
        return call_site()
    line = access.__code__.co_firstlineno + 1
    assert access() == f"{os.path.relpath(here)}:{line} (access)"
    monkeypatch.chdir(tmp_path)
    assert access() == f"{os.path.relpath(here, tmp_path)}:{line} (access)"
    assert access().startswith("..")


def test_repeated_call_replaces_and_count_zero_erases(io: IoManager) -> None:
    d, (dev,) = driver(io, "Rep")
    report(io, d, dev, COM1)
    smaller = CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 4))
    assert report(io, d, dev, smaller) == (NTSTATUS.STATUS_SUCCESS, False)     # no self-conflict
    assert [c.end for c in io.claims_of_driver("Rep")] == [0x3FB]
    assert report(io, d, dev, CM_RESOURCE_LIST()) == (NTSTATUS.STATUS_SUCCESS, False)
    assert io.claims_of_driver("Rep") == []
    assert not io.registry.key_exists(rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Rep")
    assert report(io, d, dev, CM_RESOURCE_LIST()) == (NTSTATUS.STATUS_SUCCESS, False)  # releasing nothing


def test_driver_and_device_lists_are_distinct_slots(io: IoManager) -> None:
    d, (dev,) = driver(io, "Both")
    common = CM_RESOURCE_LIST.single(Isa, 0, Port(0x2E8, 8))
    result = io.IoReportResourceUsage(None, d, common, common.size(), dev, COM1, COM1.size(), False)
    assert result == (NTSTATUS.STATUS_SUCCESS, False)
    key = rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Both"
    assert {v.name for v in io.registry.values(key)} == {RAW_SUFFIX, TRANSLATED_SUFFIX, dev.name + RAW_SUFFIX,
                                                         dev.name + TRANSLATED_SUFFIX}
    # the driver-wide list and a device list of the same driver do not share DeviceExclusive ports
    assert report(io, d, dev, common)[0] == NTSTATUS.STATUS_CONFLICTING_ADDRESSES


INVALID, BAD_LIST = NTSTATUS.STATUS_INVALID_PARAMETER, NTSTATUS.STATUS_UNSUCCESSFUL


@pytest.mark.parametrize("args,status", [
    ((None, None, 0, None, None, 0), INVALID),               # no driver object
    (("D", None, 0, None, None, 0), INVALID),                # neither set (§2.5: (NULL, NULL))
    (("D", COM1, 0, None, None, 0), INVALID),                # a list with size zero: no list
    (("D", None, 0, "dev", None, 8), INVALID),               # a device without a list
    # §2.1 item 6 (MSD-rrfd): "bad list -> STATUS_UNSUCCESSFUL"
    (("D", COM1, 8, None, None, 0), BAD_LIST),               # size smaller than the list
    (("D", b"\x01\x00", 2, None, None, 0), BAD_LIST),        # a truncated binary list
    (("D", None, 0, "dev", b"\x02\x00\x00\x00", 4, ), BAD_LIST),  # Count 2, no descriptors
])
def test_invalid_parameters_and_bad_lists(io: IoManager, args, status) -> None:
    d, (dev,) = driver(io, "Bad")
    drv, dlist, dsize, device, devlist, devsize = args
    result = io.IoReportResourceUsage(None, d if drv else None, dlist, dsize, dev if device else None,
                                      devlist, devsize, False)
    assert result == (status, False)
    assert io.claims_of_driver("Bad") == []


def test_reactos_compat_reports_no_conflict_and_writes_nothing() -> None:
    """§2.5's switch, §2.2: ReactOS's IoReportResourceUsage writes nothing to the registry
    and its detector, in non-silent mode, always answers "no conflict"."""
    io = IoManager(Registry(":memory:"), reactos_compat=True)
    a, (deva,) = driver(io, "First")
    b, (devb,) = driver(io, "Second")
    assert report(io, a, deva, COM1) == (NTSTATUS.STATUS_SUCCESS, False)
    assert report(io, b, devb, COM1) == (NTSTATUS.STATUS_SUCCESS, False)      # same ports, same IRQ
    assert report(io, b, devb, COM1, override=True) == (NTSTATUS.STATUS_SUCCESS, False)
    assert not io.registry.key_exists(rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}") and len(io.error_log) == 0
    assert io.claims_of_driver("First") == [] and io.claims_of_driver("Second") == []
    assert io.IoReportResourceUsage(None, a, None, 0, None, None, 0, False) == (INVALID, False)
    # The documented model on the same calls: the second claim is refused and logged.
    nt = IoManager(Registry(":memory:"))
    a, (deva,) = driver(nt, "First")
    b, (devb,) = driver(nt, "Second")
    assert report(nt, a, deva, COM1)[0] == NTSTATUS.STATUS_SUCCESS
    assert report(nt, b, devb, COM1) == (NTSTATUS.STATUS_CONFLICTING_ADDRESSES, True) and len(nt.error_log) == 2


def test_binary_lists_are_accepted(io: IoManager) -> None:
    d, (dev,) = driver(io, "Bin")
    data = COM1.pack(io.registry.arch) + b"trailing bytes the size excludes"
    assert io.IoReportResourceUsage(None, d, None, 0, dev, data, COM1.size(), False)[0] == NTSTATUS.STATUS_SUCCESS
    assert io.claims_of_driver("Bin")[0].start == 0x3F8


def test_the_hal_owns_the_pci_configuration_ports_and_the_sci(io: IoManager) -> None:
    d, (dev,) = driver(io, "Greedy")
    assert report(io, d, dev, CM_RESOURCE_LIST.single(Isa, 0, Port(0xCF8, 8)))[0] == NTSTATUS.STATUS_CONFLICTING_ADDRESSES
    assert report(io, d, dev, CM_RESOURCE_LIST.single(Isa, 0, Interrupt(9, 9)))[0] == NTSTATUS.STATUS_CONFLICTING_ADDRESSES
    assert [e.conflict.holder.owner.driver for e in io.error_log] == [HAL_NAME, HAL_NAME]


def test_io_assign_resources_takes_an_alternative_and_records_it(io: IoManager) -> None:
    a, (deva,) = driver(io, "Com1")
    report(io, a, deva, COM1)
    b, (devb,) = driver(io, "Movable")
    requirements = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, (IO_RESOURCE_LIST((
        PortRequirement(8, 8, 0x3F8, 0x3FF), PortRequirement(8, 8, 0x2E8, 0x2EF, option=IO_RESOURCE_ALTERNATIVE),
        InterruptRequirement(4, 5))),))
    status, got = io.IoAssignResources(b.registry_path, None, b, devb, requirements)
    assert status == NTSTATUS.STATUS_SUCCESS
    assert [p for _, p in got.partials()] == [Port(0x2E8, 8), Interrupt(5, 5, -1)]
    # recorded: a second device cannot receive the same range (§9.22)
    c, (devc,) = driver(io, "Late")
    status, none = io.IoAssignResources(c.registry_path, None, c, devc, IO_RESOURCE_REQUIREMENTS_LIST(
        Isa, 0, 0, (IO_RESOURCE_LIST((PortRequirement(8, 8, 0x2E8, 0x2EF),)),)))
    assert (status, none) == (NTSTATUS.STATUS_CONFLICTING_ADDRESSES, None)
    (entry,) = io.error_log.query(code=IoErrorCode.IO_ERR_PORT_RESOURCE_CONFLICT)
    assert entry.conflict.holder.owner.driver == "Movable"
    # §7: "could not get its port setting '%2' due to driver '%3'": %1 the caller's object,
    # %2 the setting, %3 the holder's driver (not its device).
    assert entry.strings == (devc.name, "0x2e8-0x2ef", "Movable")
    # NULL requirements erase the claim
    assert io.IoAssignResources(b.registry_path, None, b, devb, None) == (NTSTATUS.STATUS_SUCCESS, None)
    assert io.claims_of_driver("Movable") == []


def test_hal_assign_slot_resources_moves_a_bar_whose_place_is_claimed(io: IoManager) -> None:
    """rtl8139 (00:04.0) has BAR0 at its firmware place; an ISA claim there makes the HAL
    place and program it elsewhere, and the card answers at the new place."""
    hal = io.hal
    header = bytearray(64)
    hal.HalGetBusData(4, 0, slot_number(4), header, 64)
    firmware_bar = int.from_bytes(header[0x10:0x14], "little") & ~3
    blocker, (devx,) = driver(io, "Squatter")
    report(io, blocker, devx, CM_RESOURCE_LIST.single(Isa, 0, Port(firmware_bar, 0x10)))
    nic = PciNicDriver(io, hal)
    result = io.load_driver(nic)
    assert result.ok, [o.detail for o in nic.outcomes]
    outcome = next(o for o in nic.outcomes if o.config == "PCI 00:04.0")
    port = next(p for _, p in outcome.resources.partials() if isinstance(p, Port))
    assert port.start != firmware_bar and outcome.facts["mac"] == "52:54:00:12:34:58"
    hal.HalGetBusData(4, 0, slot_number(4), header, 64)
    assert int.from_bytes(header[0x10:0x14], "little") & ~3 == port.start
    assert io.violations == []
    io.unload_driver("PciNet")  # puts nothing back, but the claims are gone
    assert io.claims_of_driver("PciNet") == []


def _device_map(io: IoManager, key: str) -> dict[str, tuple[int, str]]:
    """DEVICEMAP\\<key> as {value name: (type, data)}; {} when the key is absent."""
    path = rf"{DEVICE_MAP}\{key}"
    if not io.registry.key_exists(path):
        return {}
    assert io.registry.key_info(path).volatile   # gone at the next boot, as in NT
    return {v.name: (v.type, v.value) for v in io.registry.values(path)}


def test_serial_driver_life_cycle_on_the_real_uarts(io: IoManager) -> None:
    """SERIALCOMM as NT4 (and the 2000+ serial sample) writes it: the device object's name
    = the bare COM name, REG_SZ.  The claims live under NT4 serial.sys's own ResourceMap
    class, "LOADED SERIAL DRIVER RESOURCES", not under SERIALCOMM
    (tests/data/realworld-devicemap/README.md)."""
    serial = SerialDriver(io, io.hal)
    result = io.load_driver(serial, {"com1": {"IoBaseAddress": 0x3F8, "InterruptNumber": 4}})
    assert result.ok and [o.device for o in serial.outcomes] == [r"\Device\Serial0", r"\Device\Serial1"]
    assert serial.outcomes[0].facts["uart"] == "16550A"
    assert _device_map(io, "SERIALCOMM") == {r"\Device\Serial0": (RegType.REG_SZ, "COM1"),
                                             r"\Device\Serial1": (RegType.REG_SZ, "COM2")}
    assert {c.start for c in io.claims_of_driver("Serial")} == {0x3F8, 0x2F8, 4, 3} and io.violations == []
    raw = io.registry.get(rf"{RESOURCE_MAP}\LOADED SERIAL DRIVER RESOURCES\Serial", r"\Device\Serial0" + RAW_SUFFIX)
    assert any(isinstance(p, DeviceSpecific) for _, p in raw.partials())   # the baud clock
    assert not io.registry.key_exists(rf"{RESOURCE_MAP}\SERIALCOMM")
    assert io.unload_driver("Serial") == [] and io.claims_of_driver("Serial") == []
    assert _device_map(io, "SERIALCOMM") == {}


def test_parallel_ports_device_map_names_the_class_device_and_its_dos_link(io: IoManager) -> None:
    """PARALLEL PORTS as NT4 writes it: parport.sys owns \\Device\\ParallelPortN and claims
    under "LOADED PARALLEL DRIVER RESOURCES"; the class driver's \\Device\\ParallelN over
    it is the value name, its link \\DosDevices\\LPT(N+1) the REG_SZ data.  The LPT number
    follows the port number, not the base: a configured port at 0x278 that does not
    answer takes no number, so the LPT at 0x378 is still port 0 and LPT1."""
    parport = ParallelDriver(io, io.hal)
    result = io.load_driver(parport, {"dead": {"IoBaseAddress": 0x278, "InterruptNumber": 5},
                                      "lpt1": {"IoBaseAddress": 0x378, "InterruptNumber": 7}})
    assert result.ok and [(o.config, o.device) for o in parport.outcomes] == [
        ("dead", None), ("lpt1", r"\Device\ParallelPort0")]
    assert _device_map(io, "PARALLEL PORTS") == {r"\Device\Parallel0": (RegType.REG_SZ, r"\DosDevices\LPT1")}
    assert io.registry.key_exists(rf"{RESOURCE_MAP}\LOADED PARALLEL DRIVER RESOURCES\Parport")
    assert io.registry.get(rf"{RESOURCE_MAP}\LOADED PARALLEL DRIVER RESOURCES\Parport",
                           r"\Device\ParallelPort0" + RAW_SUFFIX) is not None
    assert not io.registry.key_exists(rf"{RESOURCE_MAP}\PARALLEL PORTS")
    io.run_reinitialization()
    assert io.unload_driver("Parport") == [] and _device_map(io, "PARALLEL PORTS") == {}


def test_only_siblings_contesting_a_resource_start_last_mapped_first(io: IoManager) -> None:
    """A driver starts (and numbers) its devices as gathered; only siblings contesting a
    port, memory or a DMA channel (what QEMU gives the device mapped last) swap, within
    the places their group holds.  Sharing an IRQ line is no contest (both drive it)."""
    from harness.drivers.base import DeviceConfig

    def uart(name: str, base: int, irq: int = 4, dma: list[int] | None = None) -> DeviceConfig:
        return DeviceConfig(name, "Parameters", ports=[(base, 8)], irq=irq, dma=dma or [])

    configs = [uart("com1", 0x3F8), uart("com2", 0x2F8, 3), uart("com3", 0x3E8), uart("late", 0x3FF)]
    driver = SerialDriver(io, io.hal, mapping_order=["com1", "com2", "com3", "late"])
    # late (mapped last) overlaps com1 at 0x3ff: it takes com1's place, com1 late's; com2
    # and com3 keep theirs (com3 shares com1's IRQ 4: no contest).
    assert [c.name for c in driver.start_order(configs)] == ["late", "com2", "com3", "com1"]
    # A chain: a overlaps b, b overlaps c (a and c do not meet): one group of three.
    chain = [uart("a", 0x300), uart("b", 0x306), uart("c", 0x30C), uart("x", 0x2E8)]
    driver = SerialDriver(io, io.hal, mapping_order=["x", "a", "b", "c"])
    assert [c.name for c in driver.start_order(chain)] == ["c", "b", "a", "x"]
    # A DMA channel in common is a contest; the file order decides, not the gathered one.
    dmas = [uart("p", 0x300, dma=[3]), uart("q", 0x310, dma=[3]), uart("r", 0x320, dma=[1])]
    driver = SerialDriver(io, io.hal, mapping_order=["q", "r", "p"])
    assert [c.name for c in driver.start_order(dmas)] == ["p", "q", "r"]
    driver = SerialDriver(io, io.hal, mapping_order=["p", "r", "q"])
    assert [c.name for c in driver.start_order(dmas)] == ["q", "p", "r"]
    # What detection alone found (no configured name) keeps its place.
    assert [c.name for c in SerialDriver(io, io.hal).start_order(configs)] == ["com1", "com2", "com3", "late"]


def test_contesting_siblings_start_as_the_hardware_answers_else_last_mapped_first(io: IoManager) -> None:
    """Where the layout says who QEMU gives a contested range (a bridge's VGA window of
    priority 1 beats an ISA card mapped later), that device starts first whatever the
    mapping order; where it cannot tell (None), the one mapped last does.  Only contesting
    siblings move, within their places; the ranges each verdict is asked of are the
    contested ones."""
    from harness.drivers.base import DeviceConfig

    def card(name: str, base: int, dma: list[int] | None = None) -> DeviceConfig:
        return DeviceConfig(name, "Parameters", ports=[(base, 8)], irq=4, dma=dma or [])

    asked: list[tuple[str, int, int, str, str]] = []

    def prefers(winners: dict[tuple[str, int], str]):
        def verdict(kind: str, start: int, end: int, a: str, b: str) -> bool | None:
            asked.append((kind, start, end, a, b))
            winner = winners.get((kind, start))
            return None if winner is None else winner == a
        return verdict

    configs = [card("com1", 0x3F8), card("early", 0x300), card("late", 0x304)]
    # early/late meet at 0x304-0x307, and the hardware gives it to early, mapped first
    driver = SerialDriver(io, io.hal, mapping_order=["com1", "early", "late"],
                          prefers=prefers({("port", 0x304): "early"}))
    assert [c.name for c in driver.start_order(configs)] == ["com1", "early", "late"]
    assert {(k, lo, hi) for k, lo, hi, *_ in asked} == {("port", 0x304, 0x307)}
    # the layout cannot tell: the one mapped last starts first, as before
    driver = SerialDriver(io, io.hal, mapping_order=["com1", "early", "late"], prefers=prefers({}))
    assert [c.name for c in driver.start_order(configs)] == ["com1", "late", "early"]
    # a DMA channel's owner decides for it, whatever the mapping order
    dmas = [card("p", 0x300, dma=[3]), card("q", 0x310, dma=[3]), card("r", 0x320, dma=[1])]
    driver = SerialDriver(io, io.hal, mapping_order=["p", "r", "q"], prefers=prefers({("dma", 3): "p"}))
    assert [c.name for c in driver.start_order(dmas)] == ["p", "q", "r"]
    # a chain a-b-c with b winning both of its contests: b first; a and c (who never meet)
    # keep mapping order between them
    chain = [card("a", 0x300), card("b", 0x306), card("c", 0x30C)]
    driver = SerialDriver(io, io.hal, mapping_order=["a", "b", "c"],
                          prefers=prefers({("port", 0x306): "b", ("port", 0x30C): "b"}))
    assert [c.name for c in driver.start_order(chain)] == ["b", "c", "a"]


def test_a_failing_driver_that_keeps_its_claims_is_caught(io: IoManager) -> None:
    def body(d, path):
        dev = io.IoCreateDevice(d, r"\Device\Sloppy0")[1]
        report(io, d, dev, CM_RESOURCE_LIST.single(Isa, 0, Port(0x2E8, 8)))
        io.IoRegisterDriverReinitialization(d, lambda *a: None, {"config": 1})
        return NTSTATUS.STATUS_NO_SUCH_DEVICE
    result = io.load_driver(Probe("Sloppy", body))
    assert not result.ok
    assert sorted(v.kind for v in result.violations) == ["claims-left", "devices-left", "reinitialize-on-failure"]
    assert io.claims_of_driver("Sloppy") == [] and io.run_reinitialization() == 0


def test_reinitialize_runs_after_success_with_its_count(io: IoManager) -> None:
    calls = []

    def reinit(d, context, count):
        calls.append((context, count))
        if count < 2:
            io.IoRegisterDriverReinitialization(d, reinit, context)

    def body(d, path):
        io.IoRegisterDriverReinitialization(d, reinit, "cfg")
        return NTSTATUS.STATUS_SUCCESS
    assert io.load_driver(Probe("Reinit", body)).ok
    assert io.run_reinitialization() == 2 and calls == [("cfg", 1), ("cfg", 2)]


def test_reinitialize_frees_the_configuration_memory_it_was_given(io: IoManager) -> None:
    """Seed 003: DriverEntry frees its configuration memory or hands it to
    IoRegisterDriverReinitialization (only when returning success); the Reinitialize
    routine then frees it."""
    def good(d, path):
        memory = io.ExAllocatePool("configuration", {"IoBaseAddress": 0x2E8})
        io.IoRegisterDriverReinitialization(d, lambda d, ctx, n: io.ExFreePool(ctx), memory)
        return NTSTATUS.STATUS_SUCCESS
    assert io.load_driver(Probe("Tidy", good)).violations == []
    assert len(io.pool) == 1 and io.run_reinitialization() == 1 and io.pool == [] and io.violations == []

    def forgetful(d, path):
        io.IoRegisterDriverReinitialization(d, lambda d, ctx, n: None, io.ExAllocatePool("configuration"))
        return NTSTATUS.STATUS_SUCCESS
    assert io.load_driver(Probe("Forgetful", forgetful)).ok
    io.run_reinitialization()
    assert [v.kind for v in io.violations] == ["reinitialize-leak"] and io.pool == []

    def hoarder(d, path):
        io.ExAllocatePool("configuration")           # neither freed nor handed on
        return NTSTATUS.STATUS_SUCCESS
    assert [v.kind for v in io.load_driver(Probe("Hoarder", hoarder)).violations] == ["pool-left"]

    def failing(d, path):
        memory = io.ExAllocatePool("configuration")
        io.IoRegisterDriverReinitialization(d, lambda d, ctx, n: io.ExFreePool(ctx), memory)
        return NTSTATUS.STATUS_NO_SUCH_DEVICE
    result = io.load_driver(Probe("Failing", failing))
    assert sorted(v.kind for v in result.violations) == ["pool-left", "reinitialize-on-failure"]
    assert io.pool == [] and io.run_reinitialization() == 0      # never called after a failure


def test_the_parallel_driver_hands_its_configuration_to_reinitialize(io: IoManager) -> None:
    driver = ParallelDriver(io, io.hal)
    result = io.load_driver(driver, {"lpt1": {"IoBaseAddress": 0x378, "InterruptNumber": 7}})
    assert result.ok and result.violations == []
    assert [b.tag for b in io.pool] == ["configuration"] and io.pool[0].owner == "Parport"
    assert io.run_reinitialization() == 1 and io.pool == [] and io.violations == []
    assert driver.outcomes[0].facts["reinitialized"] == 1
    io.unload_driver("Parport")


def test_touching_unclaimed_ports_is_a_violation_and_strict_mode_refuses(io: IoManager) -> None:
    def body(d, path):
        io.hal.READ_PORT_UCHAR(0x2FD)   # COM2's LSR, never claimed: touch before claim
        return NTSTATUS.STATUS_SUCCESS
    result = io.load_driver(Probe("Eager", body))
    (v,) = result.violations
    assert (v.kind, v.port, v.access) == ("unclaimed", 0x2FD, "read") and "test_iomgr.py" in v.site
    io.verifier.strict = True
    with pytest.raises(ClaimViolationError, match="unclaimed"):
        with io.running(result.driver_object):
            io.hal.WRITE_PORT_UCHAR(0x2FF, 0)


def test_a_new_manager_takes_over_the_resource_map(io: IoManager) -> None:
    d, (dev,) = driver(io, "Kept")
    report(io, d, dev, COM1)
    io.registry.set_value(rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Kept", "junk.Raw", b"\x07", 8)
    again = IoManager(io.registry)
    assert any(c.owner.driver == "Kept" and c.start == 0x3F8 for c in again.arbiter.claims())
    assert len(again.unreadable) == 1 and "junk.Raw" in again.unreadable[0]
    e, (deve,) = driver(again, "Newcomer")
    assert report(again, e, deve, COM1)[0] == NTSTATUS.STATUS_CONFLICTING_ADDRESSES


# ---------------------------------------------------------------------------------------
# nt-semantics.md rules checked on the model alone (no HAL, no machine): each test names
# the section it pins.

from harness.nt.resources import (Dma, DmaRequirement, IO_RESOURCE_DEFAULT, IO_RESOURCE_PREFERRED,  # noqa: E402
                                  Memory, MemoryRequirement, CmResourceShare as S)
from harness.nt.registry import RegType  # noqa: E402

OK, CONFLICT = NTSTATUS.STATUS_SUCCESS, NTSTATUS.STATUS_CONFLICTING_ADDRESSES


@pytest.fixture
def bare() -> Iterator[IoManager]:
    """An I/O manager with no HAL (the translated list is the raw one) and no machine."""
    registry = Registry(":memory:")
    yield IoManager(registry)
    registry.close()


def one(*partials) -> CM_RESOURCE_LIST:
    return CM_RESOURCE_LIST.single(Isa, 0, *partials)


def test_resource_map_values_are_two_resource_lists_of_one_size(bare: IoManager) -> None:
    """§2.4: ``<device>.Raw`` / ``<device>.Translated`` (``.Raw`` / ``.Translated`` for a
    driver-wide list), both REG_RESOURCE_LIST, same byte size, in a volatile key."""
    d, (dev,) = driver(bare, "Types")
    payload = one(Port(0x2E8, 8), DeviceSpecific(b"\x01" * 8))
    assert bare.IoReportResourceUsage("SERIALCOMM", d, one(Port(0x2F8, 8)), 40, dev, payload,
                                      payload.size(), False) == (OK, False)
    key = rf"{RESOURCE_MAP}\SERIALCOMM\Types"
    values = {v.name: v for v in bare.registry.values(key)}
    assert set(values) == {RAW_SUFFIX, TRANSLATED_SUFFIX, dev.name + RAW_SUFFIX, dev.name + TRANSLATED_SUFFIX}
    assert {v.type for v in values.values()} == {RegType.REG_RESOURCE_LIST}
    assert len(values[dev.name + RAW_SUFFIX].data) == len(values[dev.name + TRANSLATED_SUFFIX].data) \
        == payload.size(bare.registry.arch)           # §1.3: the DeviceSpecificData payload counts
    assert bare.registry.key_info(key).volatile


def test_overlapping_ranges_inside_one_list_are_not_a_conflict(bare: IoManager) -> None:
    """§2.3: the detector compares the caller's list with *stored* lists only, and the
    slot being replaced is excluded (§2.5): a list overlapping itself is accepted, and so
    is the same list reported again."""
    d, (dev,) = driver(bare, "Self")
    twice = one(Port(0x300, 8), Port(0x304, 8), Interrupt(5, 5), Interrupt(5, 5))
    assert report(bare, d, dev, twice) == (OK, False)
    assert report(bare, d, dev, twice) == (OK, False)
    assert len(bare.error_log) == 0


def test_one_call_with_both_lists_conflicts_as_two_calls_would(bare: IoManager) -> None:
    """§9.10/§9.12: the driver-wide list and a device list are distinct slots, so their
    DeviceExclusive ports conflict whether claimed in two calls or in one; otherwise a
    device list accepted once would be refused when reported again unchanged (§2.1 item 7).
    Refused, neither list is written; with OverrideConflict both are, ConflictDetected TRUE."""
    d, (dev,) = driver(bare, "Both")
    common = one(Port(0x3F8, 8))
    assert bare.IoReportResourceUsage(None, d, common, common.size(), dev, COM1, COM1.size(), False) \
        == (CONFLICT, True)
    assert bare.claims_of_driver("Both") == []
    (entry,) = bare.error_log
    assert entry.error_code == IoErrorCode.IO_ERR_PORT_CONFLICT_DETECTED and entry.strings == (dev.name, "Both", "")
    assert bare.IoReportResourceUsage(None, d, common, common.size(), dev, COM1, COM1.size(), True) == (OK, True)
    assert len(bare.claims_of_driver("Both")) == 3
    # shareable across the two lists: Shared on both sides, or DriverExclusive (one driver, §2.5)
    for share in (S.CmResourceShareShared, S.CmResourceShareDriverExclusive):
        mine = one(Port(0x3F8, 8, share=share))
        assert bare.IoReportResourceUsage(None, d, mine, mine.size(), dev, mine, mine.size(), False) == (OK, False)


def test_zero_length_claims_follow_the_half_open_rule(bare: IoManager) -> None:
    """§9.4 through IoReportResourceUsage: Length 0 at either boundary of a held range is
    no conflict; strictly inside it is."""
    a, (deva,) = driver(bare, "Holder")
    b, (devb,) = driver(bare, "Empty")
    report(bare, a, deva, one(Port(0x3F8, 8)))
    assert report(bare, b, devb, one(Port(0x3F8, 0))) == (OK, False)
    assert report(bare, b, devb, one(Port(0x400, 0))) == (OK, False)
    assert report(bare, b, devb, one(Port(0x3FF, 0))) == (CONFLICT, True)
    assert bare.registry.get(rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Empty", devb.name + RAW_SUFFIX) \
        == one(Port(0x400, 0))                        # the refused call left the earlier claim


@pytest.mark.parametrize("held, asked, same_driver, expected", [
    (S.CmResourceShareShared, S.CmResourceShareShared, False, (OK, False)),
    (S.CmResourceShareShared, S.CmResourceShareDeviceExclusive, False, (CONFLICT, True)),
    (S.CmResourceShareUndetermined, S.CmResourceShareShared, False, (CONFLICT, True)),
    (S.CmResourceShareDriverExclusive, S.CmResourceShareDriverExclusive, True, (OK, False)),
    (S.CmResourceShareDriverExclusive, S.CmResourceShareDriverExclusive, False, (CONFLICT, True)),
    (S.CmResourceShareDeviceExclusive, S.CmResourceShareDeviceExclusive, True, (CONFLICT, True)),
])
def test_share_dispositions_give_the_documented_status(bare: IoManager, held, asked, same_driver,
                                                       expected) -> None:
    """§9.7 / §2.5 return codes: the share matrix as IoReportResourceUsage reports it."""
    a, (deva, deva2) = driver(bare, "First", devices=2)
    report(bare, a, deva, one(Memory(0xD0000, 0x4000, share=held)))
    if same_driver:
        d, dev = a, deva2
    else:
        d, (dev,) = driver(bare, "Second")
    assert report(bare, d, dev, one(Memory(0xD2000, 0x1000, share=asked))) == expected
    assert len(bare.error_log) == (expected[0] == CONFLICT)


def test_conflict_entries_for_memory_interrupt_and_dma(bare: IoManager) -> None:
    """§7 and §1.14: one *_CONFLICT_DETECTED entry per conflicting resource, ErrorCode at
    0x0C, UniqueErrorValue 0x10, FinalStatus 0x14, DumpData from 0x28 holding the holder's
    resource (memory: Start low, high, Length; IRQ: Level, Vector, Affinity; DMA: Channel,
    Port), DumpDataSize 12 or 8, strings %1 the caller's device, %2/%3 the holder."""
    a, (deva,) = driver(bare, "Holder")
    b, (devb,) = driver(bare, "Late")
    report(bare, a, deva, one(Memory(0x1_000D0000, 0x1000), Interrupt(5, 5, 1), Dma(3, 0x10)))
    result = report(bare, b, devb, one(Memory(0x1_000D0800, 0x10), Interrupt(5, 5), Dma(3), Dma(1)))
    assert result == (CONFLICT, True)
    entries = list(bare.error_log)
    assert [e.error_code for e in entries] == [IoErrorCode.IO_ERR_MEMORY_CONFLICT_DETECTED,
                                               IoErrorCode.IO_ERR_IRQ_CONFLICT_DETECTED,
                                               IoErrorCode.IO_ERR_DMA_CONFLICT_DETECTED]
    expected_dump = [(0x000D0000, 1, 0x1000), (5, 5, 1), (3, 0x10)]
    for entry, dump in zip(entries, expected_dump):
        packet = entry.pack()
        field = lambda off: int.from_bytes(packet[off:off + 4], "little")  # noqa: E731
        assert entry.dump_data == dump and entry.strings == (devb.name, "Holder", deva.name)
        assert int.from_bytes(packet[2:4], "little") == 4 * len(dump)          # DumpDataSize
        assert int.from_bytes(packet[4:6], "little") == 3                      # NumberOfStrings
        assert int.from_bytes(packet[6:8], "little") == 0x28 + 4 * len(dump)   # StringOffset
        assert (field(0x0C), field(0x10), field(0x14)) == (int(entry.error_code), 0, 0xC0000018)
        assert tuple(field(0x28 + 4 * i) for i in range(len(dump))) == dump
        assert packet[0x28 + 4 * len(dump):].decode("utf-16-le").split("\0")[:3] == list(entry.strings)


def test_io_assign_resources_edge_requirements(bare: IoManager) -> None:
    """§3.1/§3.4/§9.4/§9.6/§9.15/§9.16: a zero-length requirement is placed inside its
    window but never strictly inside a held range; Length > Max+1 and an Alignment no
    start in the window satisfies fail at once (no ReactOS-style hang); IO_RESOURCE_DEFAULT
    is ignored; a trailing PREFERRED with no alternatives is a plain requirement; an
    ALTERNATIVE is not taken when the descriptor before it fits; empty requirements erase."""
    a, (deva,) = driver(bare, "Holder")
    report(bare, a, deva, one(Port(0x3F0, 0x10), Memory(0xD0000, 0x10000)))
    b, (devb,) = driver(bare, "Asker")

    def assign(*descriptors, lists=None):
        lists = lists if lists is not None else (IO_RESOURCE_LIST(descriptors),)
        return bare.IoAssignResources(b.registry_path, None, b, devb, IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, lists))

    status, got = assign(PortRequirement(0, 1, 0x3F8, 0x40F))
    (port,) = (p for _, p in got.partials())
    assert status == OK and 0x400 <= port.start <= 0x40F and port.length == 0
    assert assign(PortRequirement(0, 1, 0x3F8, 0x3FF)) == (CONFLICT, None)   # every place strictly inside
    for impossible in (MemoryRequirement(0x2000, 1, 0, 0xFFF),          # Length > Max+1
                       PortRequirement(8, 0x1000, 0x1008, 0x1100),       # no aligned start in the window
                       PortRequirement(8, 1, 0x400, 0x300)):             # Max below Min
        status, none = assign(impossible)
        assert none is None and status in (NTSTATUS.STATUS_INSUFFICIENT_RESOURCES, CONFLICT)
    assert [c.descriptor for c in bare.claims_of_driver("Asker")] == [port]   # failures change nothing
    status, got = assign(PortRequirement(8, 8, 0x2F8, 0x2FF, option=IO_RESOURCE_DEFAULT))
    assert [p for _, p in got.partials()] == [Port(0x2F8, 8)]
    status, got = assign(MemoryRequirement(0x1000, 0x1000, 0xD0000, 0xDFFFF, option=IO_RESOURCE_PREFERRED))
    assert (status, got) == (CONFLICT, None)          # nothing to fall back to: no list
    status, got = assign(PortRequirement(8, 8, 0x2E8, 0x2EF), PortRequirement(8, 8, 0x3E8, 0x3EF,
                                                                                 option=IO_RESOURCE_ALTERNATIVE),
                         DmaRequirement(1, 1))
    assert [p for _, p in got.partials()] == [Port(0x2E8, 8), Dma(1)]
    for empty in ((), (IO_RESOURCE_LIST(()),)):       # §9.14: no lists, or List[0].Count 0
        assert assign(lists=empty) == (OK, None) and bare.claims_of_driver("Asker") == []
        assign(PortRequirement(8, 8, 0x2E8, 0x2EF))


def test_a_resource_map_left_behind_is_read_as_the_detector_reads_it() -> None:
    """§2.3 / §9.21: only values of ``class\\owner`` keys are claims; a name containing
    ".Translated" anywhere (any case) is skipped; any other value is parsed as a
    CM_RESOURCE_LIST whatever its type; values under a class key or three levels down are
    not read; a value that does not parse is listed, not fatal."""
    registry = Registry(":memory:")
    arch = registry.arch
    cls = rf"{RESOURCE_MAP}\Odd"
    registry.create_key(cls + r"\Owner\Deeper", volatile=True)
    put = lambda key, name, start, rtype=RegType.REG_RESOURCE_LIST: registry.set_value(  # noqa: E731
        key, name, one(Port(start, 8)).pack(arch), rtype)
    put(cls, "UnderTheClass.Raw", 0x100)
    put(cls + r"\Owner", "Binary", 0x2F8, RegType.REG_BINARY)
    put(cls + r"\Owner", "x.Translated.Raw", 0x3E8)
    put(cls + r"\Owner", "x.TRANSLATED", 0x2E8)
    put(cls + r"\Owner\Deeper", "deep.Raw", 0x278)
    registry.set_value(cls + r"\Owner", "cut.Raw", one(Port(0x3F8, 8)).pack(arch)[:-3], RegType.REG_RESOURCE_LIST)
    io = IoManager(registry)
    assert [(c.owner.resource_class, c.owner.driver, c.start) for c in io.arbiter.claims()] == [("Odd", "Owner", 0x2F8)]
    assert [u.split(":")[0].rsplit("\\", 1)[-1] for u in io.unreadable] == ["cut.Raw"]
    registry.close()


def test_io_assign_resources_slots_follow_the_registry_path(bare: IoManager) -> None:
    """§3.1 "one call per device with a unique RegistryPath subkey string": with no
    DeviceObject, a RegistryPath below the driver's Services key is its own slot (values
    ``<subkey>.Raw``/``.Translated``), the Services key itself the driver-wide slot; each
    keeps its assignment, and RequestedResources NULL erases only its own."""
    d, _ = driver(bare, "Multi", devices=0)
    window = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, (IO_RESOURCE_LIST((PortRequirement(8, 8, 0x300, 0x33F),)),))
    paths = (d.registry_path + r"\Dev0", d.registry_path + r"\Dev1", d.registry_path)
    starts = []
    for path in paths:
        status, got = bare.IoAssignResources(path, None, d, None, window)
        assert status == OK
        starts.append(got.descriptors[0].partials[0].start)
    assert len(set(starts)) == 3
    key = rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Multi"
    assert {v.name for v in bare.registry.values(key)} == {
        base + suffix for base in ("Dev0", "Dev1", "") for suffix in (RAW_SUFFIX, TRANSLATED_SUFFIX)}
    assert bare.IoAssignResources(paths[0], None, d, None, None) == (OK, None)
    assert sorted(c.start for c in bare.claims_of_driver("Multi")) == sorted(starts[1:])


def test_a_long_conflict_entry_is_cut_to_240_bytes_with_whole_strings(bare: IoManager) -> None:
    """§1.14/§7: an entry is at most ERROR_LOG_LIMIT_SIZE bytes; names that do not fit are
    cut on a character, each kept string still NUL-terminated and NumberOfStrings counting
    only the strings present, so a reader never runs past the packet."""
    long_name = "HolderWithAVeryLongServiceNameIndeed"
    a, (deva,) = driver(bare, long_name)
    b, (devb,) = driver(bare, "LateComerWithAnEquallyLongServiceName")
    report(bare, a, deva, one(Port(0x300, 8)))
    assert report(bare, b, devb, one(Port(0x300, 8))) == (CONFLICT, True)
    (entry,) = bare.error_log
    packet = entry.pack()
    count, offset = int.from_bytes(packet[4:6], "little"), int.from_bytes(packet[6:8], "little")
    assert len(packet) <= ERROR_LOG_LIMIT_SIZE and (len(packet) - offset) % 2 == 0
    texts = packet[offset:].decode("utf-16-le")
    assert texts.endswith("\0") and texts.count("\0") == count
    kept = texts.split("\0")[:count]
    assert count == 3 and kept[:2] == list(entry.strings[:2])
    assert kept[2] and len(kept[2]) < len(entry.strings[2]) and entry.strings[2].startswith(kept[2])


def test_re_reporting_grows_and_a_count_zero_driver_list_erases_only_the_driver_slot(bare: IoManager) -> None:
    """§2.1 items 7-8, §9.10: a repeated call replaces its slot (here with a longer list, no
    self-conflict); an empty DriverList erases the driver-wide values and leaves the device
    list's; releasing a slot never claimed is a no-op; the key goes with its last value."""
    d, (dev,) = driver(bare, "Grow")
    key = rf"{RESOURCE_MAP}\{DEFAULT_RESOURCE_CLASS}\Grow"
    assert report(bare, d, dev, one(Port(0x3F8, 8))) == (OK, False)
    assert report(bare, d, dev, one(Port(0x3F8, 8), Interrupt(4, 4), Dma(2))) == (OK, False)
    assert sorted(c.kind.value for c in bare.claims_of_driver("Grow")) == ["dma", "interrupt", "port"]
    common = one(Port(0x2E8, 8))
    assert bare.IoReportResourceUsage(None, d, common, common.size(), None, None, 0, False) == (OK, False)
    empty = CM_RESOURCE_LIST()
    assert bare.IoReportResourceUsage(None, d, empty, empty.size(), None, None, 0, False) == (OK, False)
    assert {v.name for v in bare.registry.values(key)} == {dev.name + RAW_SUFFIX, dev.name + TRANSLATED_SUFFIX}
    assert bare.IoReportResourceUsage(None, d, empty, empty.size(), None, None, 0, False) == (OK, False)
    assert report(bare, d, dev, empty) == (OK, False)
    assert not bare.registry.key_exists(key) and bare.claims_of_driver("Grow") == []
