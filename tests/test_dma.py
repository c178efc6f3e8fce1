"""HalGetAdapter, HalAllocateCommonBuffer, IoAllocateAdapterChannel, IoMapTransfer: a real
floppy sector read through the 8237 into guest memory, and the stall when a second device
owns the channel (qemu-facts.md §3c)."""

from __future__ import annotations

from typing import Iterator

import pytest

from harness.config import load_machine
from harness.drivers import FloppyDriver
from harness.nt.dma import DeallocateObject, KeepObject
from harness.nt.hal import (DEVICE_DESCRIPTION, DEVICE_DESCRIPTION_VERSION1, ISA_MEMORY_LIMIT, PAGE_SIZE, Hal,
                            Width8Bits, Width16Bits)
from harness.nt.iomgr import IoManager
from harness.nt.registry import Registry
from harness.nt.status import NTSTATUS
from harness.qemu.livebus import LiveBus
from harness.qemu.machine import Machine
from helpers import CONFIGS, machine_spec

SECTORS_PER_TRACK, SECTOR = 18, 512
BOARD_FDC = {"BoardController": {"IoBaseAddress": 0x3F0, "InterruptNumber": 6, "DmaChannel": 2}}


def _sector(cylinder: int, head: int, sector: int) -> bytes:
    text = f"C{cylinder:02d}H{head}S{sector:02d} known floppy content ".encode()
    return (text * (SECTOR // len(text) + 1))[:SECTOR]


def _write_image(machine: Machine) -> None:
    """Known content in every sector of cylinder 0 of the machine's blank fd0 image."""
    with open(machine.run_dir / "fd0.img", "r+b") as image:
        for head in (0, 1):
            for sector in range(1, SECTORS_PER_TRACK + 1):
                image.seek(((0 * 2 + head) * SECTORS_PER_TRACK + sector - 1) * SECTOR)
                image.write(_sector(0, head, sector))


def _booted(spec) -> Machine:
    machine = Machine(spec)
    _write_image(machine)
    return machine


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    with _booted(machine_spec("name: dma\nmachine: pc\ndevices:\n  - {model: floppy, id: fd0, unit: 0}\n")) as m:
        m.run_firmware()
        yield m


def _io(machine: Machine) -> IoManager:
    return IoManager(Registry(":memory:"), Hal(LiveBus(machine)))


def _floppy(io: IoManager) -> FloppyDriver:
    driver = FloppyDriver(io, io.hal)
    result = io.load_driver(driver, BOARD_FDC)
    assert result.ok, driver.outcomes
    return driver


@pytest.mark.parametrize("timeout", [0.01, 0.3])
def test_a_controller_that_never_answers_is_read_a_fixed_number_of_times(machine: Machine, timeout: float) -> None:
    """livefuzz round three (seed 901228): with the board FDC moved into ACPI's ports the
    driver's wait read the main status register for a second of wall-clock time, 1,585 to
    3,990 reads a run, each a violation, and two runs' reports differed.  Nothing decodes
    0x2a4 (it reads 0xff, never ready): the same count whatever the wait's bound."""
    from harness.drivers.base import DeviceNotResponding
    from harness.drivers.isa import MSR_POLLS
    io = _io(machine)
    driver = _floppy(io)
    reads: list[int] = []
    real = driver.inb
    driver.inb = lambda port: reads.append(port) or real(port)   # type: ignore[method-assign]
    with pytest.raises(DeviceNotResponding, match="main status never showed 0x80 under mask 0xc0$"):
        driver._wait_msr(0x2A0, 0x80, 0xC0, timeout)
    assert reads == [0x2A4] * MSR_POLLS
    io.unload_driver("Floppy")


def test_a_floppy_sector_arrives_in_guest_memory_through_dma(machine: Machine) -> None:
    io = _io(machine)
    driver = _floppy(io)
    device = io.drivers["Floppy"].device_objects[0]
    config = device.device_extension["config"]
    assert driver.outcomes[0].facts["dma_read"].startswith("DMA 2: 512 bytes at 0x200000")   # DriverEntry's read
    for head, sector in ((0, 1), (0, 7), (1, 18)):
        read = driver.read_sector(device, config, head=head, sector=sector)
        assert read.complete and read.channel == 2, read.detail
        assert read.data == _sector(0, head, sector)
        # read back independently of the driver: HMP xp of the common buffer
        assert LiveBus(machine).read_memory(read.address, SECTOR) == _sector(0, head, sector)
    assert io.dma.buffers == []                          # every common buffer freed
    io.unload_driver("Floppy")


def test_adapter_limits_and_channel_ownership(machine: Machine) -> None:
    io = _io(machine)
    adapter, registers = io.hal.HalGetAdapter(DEVICE_DESCRIPTION(
        version=DEVICE_DESCRIPTION_VERSION1, dma_channel=2, dma_width=Width8Bits, maximum_length=SECTOR))
    assert registers == adapter.map_registers == 2 and adapter.boundary == 0x10000
    dma = io.dma
    assert dma.IoAllocateAdapterChannel(adapter, "fdc", 3, lambda *a: DeallocateObject, None) \
        == NTSTATUS.STATUS_INSUFFICIENT_RESOURCES
    order: list[str] = []
    assert dma.IoAllocateAdapterChannel(adapter, "first", 1, lambda d, i, m, c: order.append(d) or KeepObject,
                                        None) == NTSTATUS.STATUS_SUCCESS
    assert dma.IoAllocateAdapterChannel(adapter, "second", 1, lambda d, i, m, c: order.append(d) or DeallocateObject,
                                        None) == NTSTATUS.STATUS_SUCCESS
    assert order == ["first"] and dma.owner(adapter) == "first"      # the second waits
    dma.IoFreeAdapterChannel(adapter)
    assert order == ["first", "second"] and dma.owner(adapter) is None
    with pytest.raises(ValueError):
        dma.IoFreeAdapterChannel(adapter)


def test_common_buffers_are_page_aligned_low_and_never_cross_the_boundary(machine: Machine) -> None:
    io = _io(machine)
    dma = io.dma
    narrow, _ = io.hal.HalGetAdapter(DEVICE_DESCRIPTION(dma_channel=1, dma_width=Width8Bits, maximum_length=0x10000))
    wide, _ = io.hal.HalGetAdapter(DEVICE_DESCRIPTION(dma_channel=5, dma_width=Width16Bits, maximum_length=0x20000))
    first = dma.HalAllocateCommonBuffer(narrow, 0xF000)
    second = dma.HalAllocateCommonBuffer(narrow, 0x2000)            # would cross 64 KiB right after
    third = dma.HalAllocateCommonBuffer(wide, 0x18000)              # 16-bit: 128 KiB boundary
    for buf, boundary in ((first, 0x10000), (second, 0x10000), (third, 0x20000)):
        assert buf is not None and buf.logical_address % PAGE_SIZE == 0
        assert buf.logical_address + buf.length - 1 <= ISA_MEMORY_LIMIT
        assert buf.logical_address // boundary == (buf.logical_address + buf.length - 1) // boundary
    spans = sorted((b.logical_address, b.logical_address + b.length) for b in (first, second, third))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))      # no overlap
    assert dma.HalAllocateCommonBuffer(narrow, 0x10001) is None      # more than one transfer
    assert dma.HalAllocateCommonBuffer(narrow, 0) is None
    with pytest.raises(ValueError):
        dma.IoMapTransfer(narrow, first, 0, 0xE000, 0x2000, False)   # past the buffer's end
    for buf in (first, second, third):
        dma.HalFreeCommonBuffer(buf.adapter, buf.length, buf)


def test_a_second_device_on_the_channel_stalls_the_floppy() -> None:
    spec = load_machine(CONFIGS / "conflicts" / "dma-channel-stall.yaml")
    with _booted(spec) as machine:
        machine.run_firmware()
        io = _io(machine)
        driver = _floppy(io)                 # the claim of DMA 2 succeeds: nobody else claims it
        read = driver.outcomes[0].facts["dma_read"]
        assert "stalled: main status 0x10" in read and "DMA count 0x01ff" in read
        (entry,) = [e.to_dict() for e in io.error_log if e.to_dict()["code"] == "IO_ERR_TIMEOUT"]
        assert "stalled" in entry["message"]
        # nothing reached the common buffer the transfer was mapped to
        assert LiveBus(machine).read_memory(0x200000, SECTOR) != _sector(0, 0, 1)
