"""LiveBus on the qtest channel: memory reads over qtest ``read`` refused where QEMU's flat
memory map decodes nothing (as HMP ``xp`` refuses them), and the flat view (``info mtree
-f``) kept across configuration writes that leave a function as it was, read again after
one that does not.  Real QEMU (TCG); every expected value comes from QEMU itself (HMP
``xp``, ``info mtree -f``, a fresh LiveBus that reads everything anew).
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from typing import Iterator

import pytest

from harness.config import load_machine
from harness.nt.hal import Hal, slot_number
from harness.nt.resources import PCIBus
from harness.nt.status import NTSTATUS
from harness.qemu.layout import parse_mtree_flat, snapshot
from harness.qemu.livebus import LiveBus, LiveBusError
from harness.qemu.machine import Machine
from helpers import CONFIGS, machine_spec

E1000_STATUS = 0x08


@pytest.fixture(scope="module")
def pc() -> Iterator[Machine]:
    """The default machine after SeaBIOS; the tests on it only read."""
    with Machine(load_machine(CONFIGS / "machines" / "default.yaml")) as m:
        m.run_firmware()
        assert m.qtest is not None
        yield m


@contextmanager
def booted(spec) -> Iterator[tuple[Machine, LiveBus, Hal]]:
    """A machine of its own (the test writes), after SeaBIOS, with a LiveBus and a HAL on it."""
    with Machine(spec) as m:
        m.run_firmware()
        bus = LiveBus(m)
        yield m, bus, Hal(bus)


def monitor_commands(m: Machine, pattern: str) -> int:
    """How many monitor commands so far matched ``pattern`` (qmp.log)."""
    count = 0
    for line in m.qmp_log_path.read_text().splitlines():
        cmd = json.loads(line).get("cmd")
        if cmd is not None:
            text = cmd["execute"] + " " + json.dumps(cmd.get("arguments") or {})
            count += bool(re.search(pattern, text))
    return count


def xp(m: Machine, address: int, count: int, unit: str = "w") -> str:
    return m.hmp(f"xp /{count}{unit}x {address:#x}")


def xp_values(text: str) -> list[int]:
    return [int(v, 16) for line in text.splitlines() for v in line.split(":", 1)[1].split()]


def unmapped_gap(m: Machine) -> int:
    """An address in system memory that no region of QEMU's flat view decodes, checked
    with xp (QEMU refuses it)."""
    regions = sorted((r.start, r.end) for r in parse_mtree_flat(m.hmp("info mtree -f -o"))["memory"])
    gap = next(end + 1 for (_, end), (start, _) in zip(regions, regions[1:]) if start > end + 0x1000)
    assert "Cannot access memory" in xp(m, gap, 1)
    return gap


def test_memory_reads_over_qtest_are_xp_s_bytes(pc) -> None:
    bus = LiveBus(pc)
    nic0 = snapshot(pc).pci_by_id("nic0").bars[0].base
    # Without the flat map the bus asks xp (a dump of the map costs more than an xp).
    dumps, xps = monitor_commands(pc, r"info mtree -f"), monitor_commands(pc, r"xp ")
    assert bus.read_memory(0xF0001, 3) == bytes(xp_values(xp(pc, 0xF0001, 3, "b")))
    assert monitor_commands(pc, r"info mtree -f") == dumps and monitor_commands(pc, r"xp ") == xps + 2
    bus.flat_view()   # held from now on: qtest, no HMP
    exchanges, xps = pc.qtest.exchanges, monitor_commands(pc, r"xp ")
    status = bus.read_memory(nic0 + E1000_STATUS, 4)   # a device register
    bios = bus.read_memory(0xF0001, 37)                # ROM/RAM, unaligned head and tail
    assert monitor_commands(pc, r"xp ") == xps
    assert pc.qtest.exchanges - exchanges == 2
    assert int.from_bytes(status, "little") == xp_values(xp(pc, nic0 + E1000_STATUS, 1))[0]
    assert bios == bytes(xp_values(xp(pc, 0xF0001, 37, "b")))
    assert bus.read_memory(0x100, 0) == b""


def test_an_address_nothing_decodes_is_refused_as_xp_refuses_it(pc) -> None:
    gap = unmapped_gap(pc)
    with pytest.raises(LiveBusError, match="Cannot access memory"):
        LiveBus(pc).read_memory(gap, 4)                # xp's refusal
    bus = LiveBus(pc)
    bus.flat_view()
    with pytest.raises(LiveBusError, match=f"nothing decodes {gap:#x}"):
        bus.read_memory(gap, 4)                        # the flat map's, before qtest
    ram_top = max(r.end for r in bus.flat_view()["memory"] if r.name.split(" @")[0] == "pc.ram")
    if ram_top + 1 < gap:  # a read that starts in RAM and runs off its end
        assert "Cannot access memory" in xp(pc, ram_top - 3, 2)
        with pytest.raises(LiveBusError, match=f"nothing decodes {ram_top + 1:#x}"):
            bus.read_memory(ram_top - 3, 8)
    # READ_REGISTER_* on a mapping of it: refused, not answered with the unassigned bytes.
    hal = Hal(bus)
    registers = hal.MmMapIoSpace(gap, 0x1000)
    with pytest.raises(LiveBusError, match="nothing decodes"):
        hal.READ_REGISTER_ULONG(registers.register(0))
    assert pc.qtest.execute([f"read {gap:#x} 4"]) != []  # qtest alone would have answered


def test_a_bus_adopts_the_snapshot_s_monitor_reads(pc) -> None:
    adopted = LiveBus(pc)
    snapshot(pc, monitor_reads_to=adopted.adopt)
    before = monitor_commands(pc, r"info mtree|query-pci")
    windows, functions, spans = adopted.pci_root_windows(), adopted.functions(), adopted.decoded_ranges()
    assert monitor_commands(pc, r"info mtree|query-pci") == before
    fresh = LiveBus(pc)
    assert (windows, functions, spans) == (fresh.pci_root_windows(), fresh.functions(), fresh.decoded_ranges())
    assert monitor_commands(pc, r"info mtree|query-pci") > before


def test_the_flat_view_holds_while_written_functions_hold_their_configuration() -> None:
    spec = machine_spec("machine: pc\ndevices:\n  - {model: e1000, id: nic, addr: 3}\n")
    with booted(spec) as (m, bus, hal):
        first = bus.decoded_ranges()
        dumps = monitor_commands(m, r"info mtree -f")
        # Sizing writes every BAR and the command register and restores them.
        assert hal.size_bars(0, 3, 0)
        assert bus.decoded_ranges() == first == LiveBus(m).decoded_ranges()
        assert monitor_commands(m, r"info mtree -f") == dumps + 1  # only the fresh bus's
        # A BAR moved: the view is read again and shows it where QEMU maps it now.
        bar0 = int.from_bytes(bus.read_config(0, 3, 0, 0x10, 4), "little")
        size = next(b.size for b in hal.size_bars(0, 3, 0) if b.index == 0)
        moved = (bar0 & ~0xF) + 4 * size
        bus.write_config(0, 3, 0, 0x10, moved.to_bytes(4, "little"))
        spans = bus.decoded_ranges()
        assert monitor_commands(m, r"info mtree -f") == dumps + 2
        assert spans == LiveBus(m).decoded_ranges()
        assert [(s.start, s.end) for s in spans if s.function == (0, 3, 0) and s.space == "memory"] == \
            [(moved, moved + size - 1)]
        queries = monitor_commands(m, r"query-pci")
        assert bus.bar_mappings(0, 3, 0)[0] == (moved, moved + size - 1)  # query-pci asked again
        assert monitor_commands(m, r"query-pci") == queries + 1


def test_a_chipset_base_register_written_outside_the_header_counts() -> None:
    # The PIIX4 PM function (00:01.3) decodes its ACPI registers where its PMBA (0x40)
    # says: a write there moves them, and the view is read again.
    with booted(load_machine(CONFIGS / "machines" / "default.yaml")) as (m, bus, _):
        pm = next(k for k in bus.functions() if bus.read_config(*k, 0, 4) == bytes.fromhex("86801371"))
        old = int.from_bytes(bus.read_config(*pm, 0x40, 4), "little") & 0xFFC0
        def block(spans, base):  # the PM registers' spans, relative to the base
            return sorted((s.start - base, s.end - base) for s in spans
                          if s.space == "io" and s.function == pm and base <= s.start <= base + 0x3F)
        first = block(bus.decoded_ranges(), old)
        assert first
        new = 0x7000 if old != 0x7000 else 0x7100
        bus.write_config(*pm, 0x40, (new | 1).to_bytes(4, "little"))
        spans = bus.decoded_ranges()
        assert spans == LiveBus(m).decoded_ranges()
        assert block(spans, new) == first and block(spans, old) == []
        bus.write_config(*pm, 0x40, (old | 1).to_bytes(4, "little"))
        assert block(bus.decoded_ranges(), old) == first


def test_slot_assignment_where_the_firmware_put_the_card_reads_the_map_once() -> None:
    spec = machine_spec("machine: pc\ndevices:\n  - {model: e1000, id: a, addr: 3}\n  - {model: e1000, id: b, addr: 4}\n")
    with booted(spec) as (m, bus, hal):
        bus.flat_view()   # the map and query-pci, read once (the job's bus adopts the snapshot's)
        bus.functions()
        dumps, queries = monitor_commands(m, r"info mtree -f"), monitor_commands(m, r"query-pci")
        for device in (3, 4):
            status, _ = hal.HalAssignSlotResources("x", None, object(), object(), PCIBus, 0, slot_number(device))
            assert status == NTSTATUS.STATUS_SUCCESS
        # Neither is asked again: sizing restored every BAR and the assignment wrote back
        # the firmware's addresses.
        assert monitor_commands(m, r"info mtree -f") == dumps
        assert monitor_commands(m, r"query-pci") == queries


def test_read_port_buffer_reads_one_port_count_times_in_one_exchange(pc) -> None:
    from harness.nt.hal import HalError, PortAccess
    hal = Hal(LiveBus(pc))
    seen: list[PortAccess] = []
    hal.add_port_hook(seen.append)
    single = [hal.READ_PORT_UCHAR(0x3FD) for _ in range(3)]   # COM1's LSR: no read side effect
    del seen[:]
    buffer = bytearray(5)
    exchanges = pc.qtest.exchanges
    hal.READ_PORT_BUFFER_UCHAR(0x3FD, buffer, 3)
    assert pc.qtest.exchanges - exchanges == 1
    assert list(buffer[:3]) == single and buffer[3:] == bytes(2)
    assert [(a.phase, a.port, a.size) for a in seen] == [("before", 0x3FD, 1)] * 3 + [("after", 0x3FD, 1)] * 3
    words = bytearray(4)
    hal.READ_PORT_BUFFER_USHORT(0x3FC, words, 2)
    assert words == hal.READ_PORT_USHORT(0x3FC).to_bytes(2, "little") * 2
    with pytest.raises(HalError, match="do not fit"):
        hal.READ_PORT_BUFFER_ULONG(0x3FC, bytearray(7), 2)

    def refuse(access: PortAccess) -> None:
        if access.phase == "before":
            raise PermissionError("not claimed")
    hal.add_port_hook(refuse)
    exchanges = pc.qtest.exchanges
    with pytest.raises(PermissionError):
        hal.READ_PORT_BUFFER_UCHAR(0x3FD, buffer, 3)
    assert pc.qtest.exchanges == exchanges  # refused before any read reached the UART


def test_find_pci_skips_only_what_the_hal_reports_empty() -> None:
    # Function 2 of a multifunction card whose function 1 is empty, a card behind a
    # bridge, a single-function card: found as a scan of all 256 slots of each bus finds them.
    from types import SimpleNamespace

    from harness.drivers import PciNicDriver
    from harness.drivers.pci import find_pci
    from harness.nt.resources import PCIConfiguration
    spec = machine_spec("machine: pc\ndevices:\n"
                        "  - {model: rtl8139, id: a, addr: '5.0', multifunction: true}\n"
                        "  - {model: e1000, id: b, addr: '5.2'}\n"
                        "  - {model: e1000, id: c, addr: 6}\n"
                        "  - {model: pci-bridge, id: br, addr: 7}\n"
                        "  - {model: e1000, id: d, bus: br, addr: 2}\n")
    with booted(spec) as (m, _, hal):
        everything = []
        for bus in range(hal.no_buses):
            for slot in range(256):
                header = bytearray(64)
                if hal.HalGetBusData(PCIConfiguration, bus, slot, header, 64) == 64:
                    kind = PciNicDriver.IDS.get((int.from_bytes(header[0:2], "little"),
                                                 int.from_bytes(header[2:4], "little")))
                    if kind is not None:
                        everything.append((bus, slot, bytes(header), kind))
        found = find_pci(SimpleNamespace(hal=hal), PciNicDriver.IDS)
        assert sorted(found) == sorted(everything)
        assert sorted((b, s & 0x1F, s >> 5, k) for b, s, _, k in found) == \
            [(0, 5, 0, "rtl8139"), (0, 5, 2, "e1000"), (0, 6, 0, "e1000"), (1, 2, 0, "e1000")]


class _PlainBus:
    """A BusAccess with none of LiveBus's optional capabilities (each probe three calls)."""

    def __init__(self, inner: LiveBus) -> None:
        self.inner = inner

    @property
    def epoch(self) -> int:
        return self.inner.epoch

    def __getattr__(self, name: str):
        if name in ("read_port", "write_port", "read_config", "write_config", "read_memory"):
            return getattr(self.inner, name)
        raise AttributeError(name)


def test_bar_sizing_in_one_exchange_finds_what_probing_one_register_at_a_time_finds() -> None:
    # 64-bit BARs (virtio's, the bridge's SHPC), I/O and 32-bit memory BARs, a bridge.
    spec = machine_spec("machine: pc\ndevices:\n  - {model: virtio-balloon-pci, id: vb, addr: 5}\n"
                        "  - {model: e1000, id: nic, addr: 6}\n  - {model: pci-bridge, id: br, addr: 7}\n")
    with booted(spec) as (m, bus, fast):
        slow = Hal(_PlainBus(LiveBus(m)))
        functions = bus.functions()
        before = {key: bus.read_config(*key, 0, 256) for key in functions}
        for key in functions:
            exchanges = m.qtest.exchanges
            sized = fast.size_bars(*key)
            if sized and before[key][0x0E] & 0x7F == 0:  # (a bridge's writes reset the whole cache)
                # the header, every probe at once, the command register put back (was 7 probes + 2)
                assert m.qtest.exchanges - exchanges <= 3, key
            assert sized == slow.size_bars(*key), key
        kinds = {(b.kind, b.is_64bit) for key in functions for b in fast.size_bars(*key)}
        assert {("io", False), ("memory", False), ("memory", True)} <= kinds
        assert {key: LiveBus(m).read_config(*key, 0, 256) for key in functions} == before  # all restored


def test_the_first_configuration_read_brings_every_header_along(pc) -> None:
    from harness.qemu.bus import HmpPorts
    bus = LiveBus(pc)
    bus.flat_view()   # it shows 0xCF8/0xCFC are the host bridge's: reading along is harmless
    functions = bus.functions()
    assert len(functions) > 3
    exchanges = pc.qtest.exchanges
    bus.read_config(*functions[-1], 0x0C, 4)
    assert pc.qtest.exchanges - exchanges == 1
    headers = {key: bus.read_config(*key, 0, 64) for key in functions}
    assert pc.qtest.exchanges - exchanges == 1  # every header came with the first read
    hmp = HmpPorts(pc)
    assert headers == {key: b"".join(hmp.read_config(*key, d, 4).to_bytes(4, "little") for d in range(0, 64, 4))
                       for key in functions}
    bus.read_config(*functions[0], 0x40, 4)  # beyond the header: asked for
    assert pc.qtest.exchanges - exchanges == 2


def test_with_the_configuration_ports_taken_only_what_is_asked_for_is_read() -> None:
    # A UART jumpered to 0xCF8 takes every configuration access and changes with each:
    # no header is read along, no read-back checks a kept answer.
    spec = machine_spec("machine: pc\ndevices:\n  - {model: isa-serial, id: evil, iobase: 0xcf8, irq: 4}\n"
                        "  - {model: e1000, id: nic, addr: 3}\n")
    with Machine(spec) as m:  # paused before the firmware: the UART decodes 0xCF8 from the start
        bus = LiveBus(m)
        bus.flat_view()
        commands = m.qtest.commands
        bus.read_config(0, 3, 0, 0x3C, 4)
        assert m.qtest.commands - commands == 2    # the 0xCF8 write and the 0xCFC read, no more
        dumps = monitor_commands(m, r"info mtree -f")
        bus.write_config(0, 3, 0, 0x3C, b"\x0b")
        bus.decoded_ranges()
        assert monitor_commands(m, r"info mtree -f") == dumps + 1   # read again, not re-checked
