"""The guest bus agent, MmMapIoSpace / MmUnmapIoSpace and READ/WRITE_REGISTER_* on a live
machine: an e1000's register BAR read and written from the guest CPU's side."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from harness.drivers import PciNicDriver
from harness.guests.agent import AGENT_PORTS, AgentBus, AgentError, agent_channel, agent_machine
from harness.nt.hal import Hal, HalError
from harness.nt.iomgr import IoManager
from harness.nt.registry import Registry
from harness.qemu.livebus import LiveBus
from harness.qemu.machine import AGENT_ID, Machine
from helpers import machine_spec

SPEC = machine_spec("""
name: mapping
machine: pc
devices:
  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}
  - {model: e1000, id: nic0, addr: 3}
""", "mapping")
SCRATCH = 0x3F8 + 7
RAM = 0x380000                     # guest RAM nobody uses (the probe lives at 1 MiB)


@pytest.fixture(scope="module")
def agent() -> Iterator[tuple[Machine, AgentBus]]:
    with agent_machine(SPEC) as pair:
        yield pair


def test_the_agent_uart_is_the_harness_s_and_clear_of_the_machine(agent) -> None:
    machine, _ = agent
    port, irq = agent_channel(SPEC)
    assert irq not in (4, 10, 11) and not 0x3F8 <= port <= 0x3FF
    owners = [line for line in machine.hmp("info mtree -f -o").splitlines() if f"dev id={AGENT_ID}" in line]
    assert owners and f"{port:016x}-{port + 7:016x}" in owners[0]      # all 8 ports, nobody else's


def test_the_agent_uart_keeps_clear_of_an_io_bar_a_step_moves() -> None:
    """livefuzz round three (seed 900144; configs/conflicts/io-bar-moved-over-the-agent-port-q35):
    an ES1370's 256-byte I/O BAR moved to 0x200 after the drivers covered the agent's
    0x2e0 and cut the harness off from the guest; a memory BAR moved there does not count."""
    head = "machine: q35\ndevices:\n  - {model: ES1370, id: snd0}\n  - {model: e1000, id: nic0}\n"
    assert agent_channel(machine_spec(head))[0] == AGENT_PORTS[0]
    moved = head + "after_firmware:\n  - {move_bar: snd0, bar: 0, address: 0x200, phase: post-drivers}\n"
    assert agent_channel(machine_spec(moved))[0] == AGENT_PORTS[1]
    memory = head + "after_firmware:\n  - {move_bar: nic0, bar: 0, address: 0x0}\n"
    assert agent_channel(machine_spec(memory))[0] == AGENT_PORTS[0]


@pytest.mark.parametrize("serials, index", [
    ((), 0), (("",), 1), (("", "index: 1"), 2),       # the second is numbered 1 by its order, and says so
    (("index: 2", ""), 0),                                # the second is numbered 1 by its order
    (("", "", "", ""), 0),                                # all four taken: 0, whose defaults the agent overrides
])
def test_the_agent_uart_takes_a_serial_index_no_com_port_has(serials: tuple[str, ...], index: int) -> None:
    """livefuzz round three (seed 900794; configs/conflicts/four-com-ports-beside-the-agent-q35):
    beside four COM ports the agent's isa-serial was QEMU's fifth and QEMU exited."""
    from harness.qemu.machine import _agent_serial_index
    lines = "".join(f"  - {{model: isa-serial, id: com{n}, iobase: {0x100 + 8 * n:#x}{', ' + extra if extra else ''}}}\n"
                    for n, extra in enumerate(serials))
    assert _agent_serial_index(machine_spec(f"machine: q35\ndevices:\n{lines or '  - {model: e1000, id: nic0}'}\n")) == index


def test_agent_port_and_memory_accesses_are_the_cpu_s(agent) -> None:
    machine, bus = agent
    live = LiveBus(machine)
    bus.write_port(SCRATCH, 0xA5)
    assert live.read_port(SCRATCH) == 0xA5                             # HMP sees the agent's write
    live.write_port(SCRATCH, 0x3C)
    assert bus.read_port(SCRATCH) == 0x3C
    bus.write_memory(RAM + 1, b"\x11\x22\x33\x44\x55\x66\x77")        # byte, word, dword pieces
    assert live.read_memory(RAM + 1, 7) == b"\x11\x22\x33\x44\x55\x66\x77"
    assert bus.read_memory(RAM + 1, 7) == live.read_memory(RAM + 1, 7)
    assert bus.read_config(0, 3, 0, 0, 4) == live.read_config(0, 3, 0, 0, 4) == b"\x86\x80\x0e\x10"
    start = time.monotonic()
    for _ in range(50):
        bus.read_port(SCRATCH)
    assert (time.monotonic() - start) / 50 < 0.05                      # a round trip is ~2 ms
    with pytest.raises(AgentError):
        bus.read_memory(0xFFFFFFFE, 4)                                 # past the agent's 4 GiB


def test_mmmapiospace_rules(agent) -> None:
    machine, bus = agent
    hal = Hal(bus)
    assert hal.MmMapIoSpace(RAM, 0) is None and hal.MmMapIoSpace(0xFFFFF000, 0x2000) is None
    a = hal.MmMapIoSpace(RAM + 0x10, 0x20)
    b = hal.MmMapIoSpace(RAM + 0x10, 0x20)
    assert a.virtual_address != b.virtual_address and a.virtual_address % 0x1000 == 0x10
    hal.WRITE_REGISTER_ULONG(a.register(4), 0xCAFEF00D)
    assert hal.READ_REGISTER_ULONG(b.register(4)) == 0xCAFEF00D        # two views of one range
    assert hal.READ_REGISTER_USHORT(a.register(6)) == 0xCAFE and hal.READ_REGISTER_UCHAR(a.register(4)) == 0x0D
    with pytest.raises(HalError, match="outside every MmMapIoSpace mapping"):
        hal.READ_REGISTER_ULONG(a.virtual_address + 0x1E)              # runs past the mapping's end
    with pytest.raises(HalError, match="outside every MmMapIoSpace mapping"):
        hal.READ_REGISTER_ULONG(RAM + 0x14)                            # a physical address is not mapped
    with pytest.raises(HalError, match="mapped with length"):
        hal.MmUnmapIoSpace(a, 0x10)
    hal.MmUnmapIoSpace(a, 0x20)
    with pytest.raises(HalError):
        hal.READ_REGISTER_ULONG(a.register(4))                         # gone
    with pytest.raises(HalError, match="no mapping starts there"):
        hal.MmUnmapIoSpace(a, 0x20)
    hal.MmUnmapIoSpace(b.virtual_address, 0x20)


def test_write_register_needs_a_bus_that_writes_memory(agent) -> None:
    machine, _ = agent
    hal = Hal(LiveBus(machine))
    mapping = hal.MmMapIoSpace(RAM, 8)
    assert hal.READ_REGISTER_ULONG(mapping.register(0)) == int.from_bytes(LiveBus(machine).read_memory(RAM, 4), "little")
    with pytest.raises(HalError, match="cannot write memory"):
        hal.WRITE_REGISTER_ULONG(mapping.register(0), 1)


def test_the_e1000_driver_maps_its_register_bar_reads_and_writes(agent) -> None:
    machine, bus = agent
    hal = Hal(bus)
    io = IoManager(Registry(":memory:"), hal)
    driver = PciNicDriver(io, hal)
    assert io.load_driver(driver, {}).ok
    (outcome,) = driver.outcomes
    device = io.drivers["PciNet"].device_objects[0]
    registers = device.device_extension["registers"]
    bar = next(r for r in machine.qmp("query-pci")[0]["devices"] if r["slot"] == 3)["regions"][0]
    assert registers.physical_address == bar["address"] and registers.length == bar["size"]
    # the MAC the driver read is what QEMU's e1000 holds (RAL0/RAH0 read by HMP xp)
    ral = LiveBus(machine).read_memory(bar["address"] + 0x5400, 6)
    assert outcome.facts["mac"] == ":".join(f"{b:02x}" for b in ral)
    assert outcome.facts["register_write"] == "read back"
    io.unload_driver("PciNet")
    assert hal.mappings == {}                                          # unmapped on Unload
