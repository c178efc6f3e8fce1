"""The HAL's :class:`~harness.nt.busaccess.BusAccess` over a live, paused QEMU machine.

Port accesses go over the machine's qtest channel (~30 µs each, :mod:`harness.qemu.qtest`)
or, without one, HMP (0.4-0.6 ms, qemu-facts.md §5); everything else is a QMP round trip.
Either way this class reads only what it must and never pays twice for the same value in
one phase:

* **Configuration space is cached** per function, byte by byte, until a configuration
  write to that function (or to a bridge or the host bridge, which can change what is
  reachable), a port write to 0xCF8-0xCFF, or the machine running (``epoch``).  QEMU
  changes configuration bytes only through configuration writes or a reset, and a reset
  is a QMP event, so the cache is exact.  Port reads and memory reads are never cached:
  device registers have read side effects (a UART's LSR, the NE2000 reset port).
* **query-pci** (one round trip) says which functions exist on every bus the firmware
  numbered: any other function reads as all 0xFF without asking.  It also gives bytes
  that are exactly config bytes: vendor/device (0x00), class (0x0A-0x0B), subsystem
  (0x2C, type-0 headers), InterruptLine/Pin (0x3C-0x3D), a bridge's bus numbers
  (0x18-0x1A), and every BAR that QEMU has mapped (address | type bits; a BAR QEMU does not
  list is unimplemented and reads 0).
* **q35 ECAM**: when the MCH's PCIEXBAR is enabled, one ``xp /64wx`` reads a function's
  whole 256 bytes (the output is ``ADDR: 0xWORD 0xWORD 0xWORD 0xWORD`` per 16 bytes).
  HMP has no physical-memory write, so writes always use 0xCF8/0xCFC (qemu-facts.md §4).
* **0xCF8** is written only when the address it must hold changes.

Writes to configuration space use the natural access width for each piece (see
:func:`~harness.nt.busaccess.config_write_pieces`) through 0xCFC + (offset & 3).

``round_trips`` counts every monitor command and port access this object issued.  :class:`LiveBus` also
implements :class:`~harness.nt.busaccess.DecodeMap` from ``info mtree`` (the same text
:mod:`harness.qemu.layout` parses) plus query-pci.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from contextlib import nullcontext
from typing import Any, Sequence

from ..nt.busaccess import (IO_SPACE, MEMORY_SPACE, PCI_CONFIG_SIZE, BusAccessError, DecodedSpan,
                            check_config_range, check_port_access, config_write_pieces)
from .bus import PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA, PortChannel, QtestPorts, machine_ports
from .layout import (UNASSIGNED, Layout, MtreeRegion, QomReader, _base_name, _owning_device, bar_ranges, own_ownerless,
                     parse_mtree_flat, parse_mtree_tree, refresh, walk_pci)

#: The Q35 MCH (host bridge 00:00.0) and its PCIEXBAR register (qemu-facts.md §4).
Q35_MCH_ID = (0x8086, 0x29C0)
PCIEXBAR = 0x60
_XP_LINE = re.compile(r"^\s*([0-9a-fA-F]+):((?:\s+0x[0-9a-fA-F]+)+)\s*$")
_ALL_KNOWN = (1 << PCI_CONFIG_SIZE) - 1
PCI_COMMON_HEADER = 0x40
#: The ports whose writes can remap memory: QEMU's VGA data ports, by the name of the
#: register block that decodes them in the flat view (measured on QEMU 7.2:
#: tests/test_snapreuse.py).  vga.c calls vga_update_memory_access on every sequencer
#: (0x3C5) and graphics-controller (0x3CF) data write and on VBE data writes (0x1CF,
#: 0x1D0: bank and enable), which maps or unmaps the ``vga.chain4`` alias over the legacy
#: window; cirrus_vga.c remaps its banks and MMIO from the same two data ports of its
#: ``cirrus-io`` block.  Index ports and the other registers remap nothing.  No other
#: device of the catalog maps or unmaps anything from its I/O ports (a chipset's windows
#: follow configuration registers, which the held view checks).  Each block: the width
#: QEMU splits a wider access into (a word written to 0x3C4 writes 0x3C4 and 0x3C5; one
#: written to 0x1CE is the VBE index alone), and its data ports.
REMAPPING_PORTS = {"vga": (1, (0x3C5, 0x3CF)), "cirrus-io": (1, (0x3C5, 0x3CF)), "vbe": (2, (0x1CF, 0x1D0))}
#: Monitor commands that change nothing QEMU decodes: QMP queries and QOM reads, HMP
#: ``info``, memory dumps and port reads (a read has side effects on some devices, but
#: none maps or unmaps anything).  Any other command between a snapshot and its reuse
#: (HMP ``o``, a reset, a device added, a property set) makes the next one fresh.
#: Every port of REMAPPING_PORTS: a write touching none of them needs no look at the map.
_REMAPPING_PORT_SET = frozenset(p for _, ports in REMAPPING_PORTS.values() for p in ports)
READ_ONLY_QMP = frozenset({"qom-get", "qom-list", "qom-list-types", "qom-list-properties",
                           "device-list-properties"})
READ_ONLY_HMP = frozenset({"info", "xp", "x", "i"})


class LiveBusError(BusAccessError):
    pass


class _Function:
    __slots__ = ("data", "known")

    def __init__(self) -> None:
        self.data = bytearray(b"\xff" * PCI_CONFIG_SIZE)
        self.known = 0  # bit i set: byte i of data is the device's value

    def put(self, offset: int, value: bytes) -> None:
        self.data[offset:offset + len(value)] = value
        self.known |= ((1 << len(value)) - 1) << offset

    def has(self, offset: int, length: int) -> bool:
        mask = ((1 << length) - 1) << offset
        return self.known & mask == mask


class LiveBus:
    """BusAccess (and DecodeMap) over a launched, paused :class:`~harness.qemu.machine.Machine`.

    ``use_query_pci`` / ``use_ecam`` / ``cache`` switch the optimisations off one by one
    (the benchmark compares them); with all three off every configuration dword costs an
    0xCF8 write and an 0xCFC read.
    """

    def __init__(self, machine: Any, *, use_query_pci: bool = True, use_ecam: bool = True,
                 cache: bool = True) -> None:
        self.machine = machine
        self.use_query_pci = use_query_pci
        self.use_ecam = use_ecam
        self.cache = cache
        self._monitor_round_trips = 0
        #: Port I/O: the machine's qtest channel when it has one, else HMP i/o.
        self.ports = machine_ports(machine)
        self._seen_epoch = -1
        #: Where the machine stood when a snapshot was adopted (see layout_unchanged),
        #: None once anything may have changed it, and then why.
        self._basis: _Basis | None = None
        self._basis_lost = "no layout snapshot was adopted"
        self._reset_state()

    # ------------------------------------------------------------------ bookkeeping
    @property
    def round_trips(self) -> int:
        """Monitor commands and port accesses this object made."""
        return self._monitor_round_trips + self.ports.round_trips

    def _reset_state(self, why: str = "") -> None:
        self._lose_basis(why or "the bus forgot what it had read")
        self._functions: dict[tuple[int, int, int], _Function] = {}
        self._present: set[tuple[int, int, int]] | None = None
        self._bridges: set[tuple[int, int, int]] = set()
        self._buses: set[int] = set()
        self._query_pci: list[dict[str, Any]] | None = None
        self._ecam: tuple[int, int] | None | bool = False  # False: not looked up yet
        self._cf8: int | None = None
        self._decoded: list[DecodedSpan] | None = None
        #: The flat view (``info mtree -f -o``) while it holds, and what it holds on.
        self._flat: dict[str, list[MtreeRegion]] | None = None
        self._flat_config_ports: bool | None = None  # see _config_ports_reach_host
        self._flat_held = _Held()
        self._query_pci_held = _Held()  # what query-pci's BAR addresses hold on
        self._root_windows: dict[str, list[tuple[int, int]]] | None = None
        self._written: set[tuple[int, int, int]] = set()  # query-pci no longer describes these
        self._headers_read = False  # every present function's header read along once

    def invalidate(self) -> None:
        """Forget everything cached (a new phase)."""
        self._reset_state("the bus was invalidated")

    @property
    def epoch(self) -> int:
        """Changes whenever the machine produced a QMP event (it ran, stopped, was reset)."""
        return self.machine.event_count

    def _check_epoch(self) -> None:
        epoch = self.epoch
        if epoch != self._seen_epoch:
            self._reset_state("a QMP event (the machine ran, stopped or was reset)")
            self._seen_epoch = epoch

    def _hmp(self, command_line: str, *, timeout: float | None = None) -> str:
        self._monitor_round_trips += 1
        return self.machine.hmp(command_line, timeout=timeout)

    def _qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        self._monitor_round_trips += 1
        return self.machine.qmp(command, arguments)

    # ------------------------------------------------------------------ ports
    def read_port(self, port: int, size: int = 1) -> int:
        check_port_access(port, size)
        self._check_epoch()
        return self.ports.read_port(port, size)

    def read_ports(self, accesses: Sequence[tuple[int, int]]) -> list[int]:
        """See :func:`harness.nt.busaccess.read_ports`: one port transfer."""
        for port, size in accesses:
            check_port_access(port, size)
        self._check_epoch()
        return self.ports.transfer([("in", port, size, None) for port, size in accesses])

    def post_reads(self, accesses: Sequence[tuple[int, int]]) -> None:
        """See :func:`harness.nt.busaccess.posted_reads`: inside :meth:`posted_writes`
        on the qtest channel they go out, in order, with the next access."""
        for port, size in accesses:
            check_port_access(port, size)
        self._check_epoch()
        self.ports.post([("in", port, size, None) for port, size in accesses])

    def write_port(self, port: int, value: int, size: int = 1) -> None:
        check_port_access(port, size)
        if not 0 <= value < 1 << (8 * size):
            raise LiveBusError(f"value {value:#x} does not fit in {size} byte(s)")
        self._check_epoch()
        self.ports.write_port(port, value, size)
        if port <= PCI_CONFIG_DATA + 3 and port + size > PCI_CONFIG_ADDRESS:
            # Someone drives the configuration mechanism by hand: nothing cached holds.
            self._reset_state(f"a port write to {port:#x} (the configuration mechanism, by hand)")
            self._seen_epoch = self.epoch
            if port == PCI_CONFIG_ADDRESS and size == 4:
                self._cf8 = value
        elif self._flat is not None and not _REMAPPING_PORT_SET.isdisjoint(range(port, port + size)):
            remapping = {name for r in self._flat.get("I/O", [])
                         if (name := _base_name(r)) in REMAPPING_PORTS and r.start < port + size and r.end >= port
                         and any(r.start <= piece <= r.end and piece in REMAPPING_PORTS[name][1]
                                 for piece in range(port, port + size, REMAPPING_PORTS[name][0]))}
            if remapping:
                self._drop_view(f"a port write to {port:#x} ({', '.join(sorted(remapping))}: "
                                "a VGA data port, it can remap the VGA's memory window)")

    def posted_writes(self) -> Any:
        """See :func:`harness.nt.busaccess.posted_writes`: on the qtest channel, writes in
        the block go out with the next read, QMP command or the block's end.  Not on a
        machine running a guest (its CPU would see the ports late): writes go out at once."""
        if getattr(self.machine, "boot", None) is not None:
            return nullcontext()
        return self.ports.posting()

    # ------------------------------------------------------------------ memory
    def read_memory(self, address: int, length: int) -> bytes:
        """Guest-physical bytes: over qtest ``read`` when the machine has the channel and
        this bus holds the flat memory map (:meth:`flat_view`), else HMP ``xp`` (the map is
        not read for this: a dump costs more than an ``xp``).  Either way QEMU is asked
        the same reads (each one ``address_space_read``, so a device sees the same access
        widths): a run of dwords in 16-byte lines, an unaligned head or a short tail
        alone; RAM and ROM in large pieces.  ``xp`` refuses an address nothing decodes
        ("Cannot access memory"); qtest answers it with the unassigned handler's bytes, so
        an address outside the flat map is refused here first."""
        if length < 0 or address < 0 or address + length > 1 << 64:
            raise LiveBusError(f"bad memory range {address:#x}+{length:#x}")
        self._check_epoch()
        if length == 0:
            return b""
        if not (isinstance(self.ports, QtestPorts) and self._flat is not None and self._still_holds(self._flat_held)):
            return self._xp_memory(address, length)
        chunks = self._mapped_reads(_xp_reads(address, length), address, length)
        self._monitor_round_trips += len(chunks)
        return self.ports.channel.read_memory(chunks)

    def _xp_memory(self, address: int, length: int) -> bytes:
        out = bytearray()
        while len(out) < length:
            at = address + len(out)
            left = length - len(out)
            if at % 4 == 0 and left >= 4:
                count = min(left // 4, 1024)
                out += b"".join(v.to_bytes(4, "little") for v in self._xp(at, count, "w"))
            else:
                count = min(left, 4 - at % 4 if at % 4 else left, 1024)
                out += bytes(self._xp(at, count, "b"))
        return bytes(out)

    def _mapped_reads(self, chunks: list[tuple[int, int]], address: int, length: int) -> list[tuple[int, int]]:
        """``chunks`` checked against the flat memory map (refused where nothing decodes),
        consecutive ones inside RAM or ROM merged."""
        regions = sorted((r for r in self.flat_view().get("memory", []) if not _background(r)),
                         key=lambda r: r.start)
        starts = [r.start for r in regions]
        out: list[tuple[int, int]] = []
        merge = False
        for at, size in chunks:
            plain = True  # every byte in RAM or ROM
            cursor, end = at, at + size - 1
            while cursor <= end:
                index = bisect_right(starts, cursor) - 1
                if index < 0 or regions[index].end < cursor:
                    raise LiveBusError(f"memory read {address:#x}+{length:#x}: nothing decodes {cursor:#x} "
                                       "(QEMU's flat memory map, info mtree -f; xp: Cannot access memory)")
                plain = plain and regions[index].kind in ("ram", "rom")
                cursor = regions[index].end + 1
            if plain and merge and out[-1][1] + size <= _MEMORY_READ_MAX:
                out[-1] = (out[-1][0], out[-1][1] + size)
            else:
                out.append((at, size))
            merge = plain
        return out

    def _xp(self, address: int, count: int, unit: str) -> list[int]:
        text = self._hmp(f"xp /{count}{unit}x {address:#x}")
        values: list[int] = []
        for line in text.splitlines():
            match = _XP_LINE.match(line)
            if match:
                values += [int(v, 16) for v in match.group(2).split()]
            elif line.strip():
                raise LiveBusError(f"xp {address:#x}: {line.strip()}")
        if len(values) != count:
            raise LiveBusError(f"xp /{count}{unit}x {address:#x} gave {len(values)} values: {text!r}")
        return values

    # ------------------------------------------------------------------ configuration space
    def read_config(self, bus: int, device: int, function: int, offset: int, length: int) -> bytes:
        check_config_range(bus, device, function, offset, length)
        self._check_epoch()
        key = (bus, device, function)
        if self.use_query_pci and not self._is_present(key):
            return b"\xff" * length
        fn = self._function(key)
        if not fn.has(offset, length):
            ecam = self._ecam_base() if self.use_ecam else None
            words = self._ecam_words(ecam, key, fn) if ecam is not None and bus < ecam[1] else None
            if words is not None:
                fn.put(0, b"".join(w.to_bytes(4, "little") for w in words))
            else:  # every missing dword in one port transfer
                wanted = [(key, d) for d in range(offset & ~3, offset + length, 4) if not fn.has(d, 4)]
                if not self._headers_read and self._can_recheck and self.use_query_pci:
                    # The first read of a phase brings every function's header along: the
                    # HAL's enumeration, the drivers' bus scans and BAR sizing read them all.
                    self._headers_read = True
                    wanted += [(other, d) for other in sorted(self._present or ())
                               for d in range(0, PCI_COMMON_HEADER, 4)
                               if not self._function(other).has(d, 4) and (other, d) not in wanted]
                for (where, dword), value in zip(wanted, self._config_dwords(wanted)):
                    self._functions.get(where, fn).put(dword, value.to_bytes(4, "little"))
        return bytes(fn.data[offset:offset + length])

    def _function(self, key: tuple[int, int, int]) -> _Function:
        """The cached bytes of ``key`` (what query-pci says of it to start with); a fresh,
        unkept one without the cache."""
        fn = self._functions.get(key) if self.cache else None
        if fn is None:
            fn = _Function()
            if self.cache:
                self._functions[key] = fn
            if self.use_query_pci and key not in self._written:
                self._seed_from_query_pci(key, fn)
        return fn

    def write_config(self, bus: int, device: int, function: int, offset: int, data: bytes) -> None:
        data = bytes(data)
        check_config_range(bus, device, function, offset, len(data))
        key = (bus, device, function)
        wide = self._before_writing(key, [(offset, len(data))])
        with self.ports.posting():  # every piece in one exchange, sent before this returns
            for piece, width in config_write_pieces(offset, len(data)):
                value = int.from_bytes(data[piece - offset:piece - offset + width], "little")
                self._select(bus, device, function, piece)
                self.ports.write_port(PCI_CONFIG_DATA + (piece & 3), value, width)
        self._after_writing(key, wide)

    def probe_config(self, bus: int, device: int, function: int,
                     probes: Sequence[tuple[int, int, int]]) -> list[int]:
        """See :func:`harness.nt.busaccess.probe_config`: every write, read-back and
        restore in one port transfer."""
        for offset, pattern, original in probes:
            check_config_range(bus, device, function, offset, 4)
            if offset % 4 or not (0 <= pattern < 1 << 32 and 0 <= original < 1 << 32):
                raise LiveBusError(f"bad configuration probe at {offset:#x}: {pattern:#x}, {original:#x}")
        key = (bus, device, function)
        wide = self._before_writing(key, [(offset, 4) for offset, _, _ in probes])
        ops: list[Any] = []
        for offset, pattern, original in probes:
            ops += [("out", PCI_CONFIG_ADDRESS, 4, PortChannel.config_address(*key, offset)),
                    ("out", PCI_CONFIG_DATA, 4, pattern), ("in", PCI_CONFIG_DATA, 4, None),
                    ("out", PCI_CONFIG_DATA, 4, original)]
        values = self.ports.transfer(ops)
        if probes:
            self._cf8 = PortChannel.config_address(*key, probes[-1][0])
        self._after_writing(key, wide)
        return values

    def _before_writing(self, key: tuple[int, int, int], pieces: Sequence[tuple[int, int]]) -> bool:
        """Whether writes to ``key`` are wide: to a bridge (bus numbers, windows) or the host
        bridge (PCIEXBAR), they change what every other access reaches (decided before
        writing).  For any other function, note what the kept answers hold on."""
        self._check_epoch()
        if self.use_query_pci:
            self.query_pci()
        wide = key == (0, 0, 0) or key in self._bridges or self._is_bridge_uncached(key)
        if not wide:
            for offset, length in pieces:
                self._note_write(key, offset, length)
        return wide

    def _after_writing(self, key: tuple[int, int, int], wide: bool) -> None:
        if wide:
            cf8 = self._cf8
            self._reset_state(f"a configuration write to {key[0]:02x}:{key[1]:02x}.{key[2]} "
                              "(a bridge or the host bridge: it changes what every access reaches)")
            self._cf8 = cf8
        else:
            self._functions.pop(key, None)
            self._written.add(key)
            for held in self._holds():
                held.dirty.add(key)

    def _is_bridge_uncached(self, key: tuple[int, int, int]) -> bool:
        fn = self._functions.get(key)
        if fn is not None and fn.has(0x0E, 1):
            return fn.data[0x0E] & 0x7F == 1
        if self.use_query_pci and self._present is not None:
            return key in self._bridges
        return True  # unknown: assume the worst

    def _select(self, bus: int, device: int, function: int, offset: int) -> None:
        address = PortChannel.config_address(bus, device, function, offset)
        if self._cf8 != address or not self.cache:
            self.ports.write_port(PCI_CONFIG_ADDRESS, address, 4)
            self._cf8 = address

    def _cf8_read(self, bus: int, device: int, function: int, dword: int) -> int:
        with self.ports.posting():  # the 0xCF8 write goes out with the read: one exchange
            self._select(bus, device, function, dword)
            return self.ports.read_port(PCI_CONFIG_DATA, 4)

    # ------------------------------------------------------------------ query-pci
    def query_pci(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """query-pci, asked once per phase (again after a configuration write when
        ``fresh``: BAR mappings follow the writes, presence does not)."""
        self._check_epoch()
        if self._query_pci is None or (fresh and self._written and not (
                self._can_recheck and self._still_holds(self._query_pci_held))):
            self._take_query_pci(self._qmp("query-pci"))
        elif fresh:
            self._written = set()  # every function written since holds what query-pci says
        return self._query_pci

    def _take_query_pci(self, answer: list[dict[str, Any]]) -> None:
        self._written = set()
        self._query_pci_held = _Held()
        self._query_pci = answer
        self._present = set()
        self._bridges = set()
        self._buses = set()
        for bus in answer:
            self._buses.add(bus["bus"])
            for dev in walk_pci(bus["devices"]):
                key = (dev["bus"], dev["slot"], dev["function"])
                self._present.add(key)
                if dev.get("pci_bridge") is not None:
                    self._bridges.add(key)
                    self._buses.add(dev["pci_bridge"]["bus"]["secondary"])

    def functions(self) -> list[tuple[int, int, int]]:
        """Every function QEMU lists, as (bus, device, function), in order."""
        self.query_pci()
        assert self._present is not None
        return sorted(self._present)

    def _is_present(self, key: tuple[int, int, int]) -> bool:
        self.query_pci()
        assert self._present is not None
        return key in self._present

    def _seed_from_query_pci(self, key: tuple[int, int, int], fn: _Function) -> None:
        dev = next((d for b in self.query_pci() for d in walk_pci(b["devices"])
                    if (d["bus"], d["slot"], d["function"]) == key), None)
        if dev is None:
            return
        ident = dev["id"]
        fn.put(0x00, ident["vendor"].to_bytes(2, "little") + ident["device"].to_bytes(2, "little"))
        fn.put(0x0A, dev["class_info"]["class"].to_bytes(2, "little"))
        pin = dev.get("irq_pin", 0)
        fn.put(0x3D, bytes([pin]))
        if "irq" in dev:
            fn.put(0x3C, bytes([dev["irq"] & 0xFF]))
        bridge = dev.get("pci_bridge")
        if bridge is not None:
            b = bridge["bus"]
            fn.put(0x18, bytes([b["number"], b["secondary"], b["subordinate"]]))
            bar_offsets = {0: 0x10, 1: 0x14}
        else:
            if "subsystem-vendor" in ident and "subsystem" in ident:
                fn.put(0x2C, ident["subsystem-vendor"].to_bytes(2, "little")
                       + ident["subsystem"].to_bytes(2, "little"))
            bar_offsets = {i: 0x10 + 4 * i for i in range(6)}
        listed: dict[int, dict[str, Any]] = {r["bar"]: r for r in dev.get("regions", [])}
        skip_upper = set()
        for index, offset in bar_offsets.items():
            if index in skip_upper:
                continue
            region = listed.get(index)
            if region is None:
                continue  # may be the upper half of a 64-bit BAR: left to be read
            address = region["address"]
            if address in (UNASSIGNED, -1):
                if region.get("mem_type_64"):
                    skip_upper.add(index + 1)
                continue  # programmed or not, QEMU does not say what the register holds
            if region["type"] == "io":
                fn.put(offset, (address | 1).to_bytes(4, "little"))
            else:
                low = address & 0xFFFFFFF0 | (0x8 if region.get("prefetch") else 0)
                if region.get("mem_type_64"):
                    fn.put(offset, (low | 0x4).to_bytes(4, "little"))
                    if index + 1 in bar_offsets:
                        fn.put(bar_offsets[index + 1], (address >> 32).to_bytes(4, "little"))
                    skip_upper.add(index + 1)
                else:
                    fn.put(offset, low.to_bytes(4, "little"))
        # BARs QEMU does not list are unimplemented (read 0), unless they are the upper
        # half of a listed 64-bit BAR.
        for index, offset in bar_offsets.items():
            if index not in listed and index not in skip_upper and not _upper_of_64(listed, index):
                fn.put(offset, bytes(4))

    # ------------------------------------------------------------------ ECAM
    def _ecam_words(self, ecam: tuple[int, int], key: tuple[int, int, int], fn: _Function) -> list[int] | None:
        """A function's 64 dwords through the MMCONFIG window, or None (and the window
        dropped) when it is none: PCIEXBAR is read through 0xCF8/0xCFC, and where a card
        decodes those ports the value is the card's (nothing there, or not the IDs
        query-pci gave the function)."""
        bus, device, function = key
        try:
            words = self._xp(ecam[0] + (bus << 20 | device << 15 | function << 12), 64, "w")
        except LiveBusError:
            words = None
        if words is None or (fn.has(0, 4) and words[0].to_bytes(4, "little") != bytes(fn.data[:4])):
            self._ecam = None
            return None
        return words

    def _ecam_base(self) -> tuple[int, int] | None:
        """(base, bus count) of the q35 MMCONFIG window when the MCH has it enabled."""
        if self._ecam is False:
            self._ecam = None
            host = self._cf8_read(0, 0, 0, 0) if not self.use_query_pci else next(
                (d["id"]["vendor"] | d["id"]["device"] << 16 for b in self.query_pci()
                 for d in b["devices"] if (d["bus"], d["slot"], d["function"]) == (0, 0, 0)), None)
            if host is not None and (host & 0xFFFF, host >> 16) == Q35_MCH_ID:
                low = self._cf8_read(0, 0, 0, PCIEXBAR)
                high = self._cf8_read(0, 0, 0, PCIEXBAR + 4)
                if low & 1:
                    size_mib = {0: 256, 1: 128, 2: 64}.get(low >> 1 & 3)
                    if size_mib is not None:
                        base = (high << 32 | low) & ~(size_mib * (1 << 20) - 1) & ((1 << 36) - 1)
                        self._ecam = (base, size_mib)
        return self._ecam or None

    # ------------------------------------------------------------------ the flat view
    # ``info mtree -f -o`` is the largest answer the monitor gives (~13 KB on the default
    # machine) and the HAL asks for it around every slot assignment, whose writes mostly
    # leave the function as it was (BAR sizing restores every register; a BAR assigned
    # where the firmware had it).  What QEMU decodes follows from configuration space:
    # a BAR is mapped where its register and the command register say, a chipset window
    # where its registers say.  So a view read once holds while every function written
    # since holds, in the dwords that count, the values it had when the view was read;
    # they are read back (one port transfer for all) and compared before the view is
    # used again.  The dwords that count: the 64-byte header (command, BARs, ROM, and
    # whatever a write elsewhere resets, such as a function-level or power-state reset)
    # and every dword written (a chipset's own base registers).  A write to a bridge or
    # the host bridge (windows, bus numbers, resets of a whole bus) drops the view, as
    # does anything that starts a new phase (the machine ran, a write to the 0xCF8-0xCFF
    # ports themselves).  query-pci's BAR addresses are kept the same way.  Only on the
    # qtest channel: over HMP the read-back costs more than the dump.  Of the port writes
    # only those to a VGA data port drop the view (REMAPPING_PORTS: the chain-4 switch maps
    # an alias over the legacy window, the same owner under another region name); no other
    # device of the catalog maps or unmaps anything through its I/O registers.
    @property
    def _can_recheck(self) -> bool:
        return self.cache and isinstance(self.ports, QtestPorts) and self._config_ports_reach_host()

    def _config_ports_reach_host(self) -> bool:
        """Whether 0xCF8 and 0xCFC-0xCFF are the host bridge's (the flat view held says so).
        A device decoding them (a UART jumpered to 0xCF8) takes every configuration access,
        and each extra one changes that device: then nothing is read that was not asked for."""
        if self._flat is None:
            return False
        if self._flat_config_ports is None:
            names = {_base_name(r) for r in self._flat.get("I/O", [])
                     if r.start <= PCI_CONFIG_DATA + 3 and r.end >= PCI_CONFIG_ADDRESS
                     and not (r.start == r.end == PCI_CONFIG_ADDRESS + 1)}  # 0xCF9: the chipset's reset register
            self._flat_config_ports = names == {"pci-conf-idx", "pci-conf-data"}
        return self._flat_config_ports

    def _holds(self) -> list["_Held"]:
        """What is held now on the configuration of written functions (see above)."""
        if not self._can_recheck:
            return []
        return [held for held, data in ((self._flat_held, self._flat), (self._query_pci_held, self._query_pci))
                if data is not None]

    def _drop_view(self, why: str) -> None:
        self._lose_basis(why)
        self._flat = None
        self._flat_config_ports = None
        self._decoded = None
        self._flat_held = _Held()

    def _note_write(self, key: tuple[int, int, int], offset: int, length: int) -> None:
        """Before a (non-wide) write to ``key``: note what the dwords that count hold, for
        each answer held, as they were when it was read (one port transfer for all)."""
        if not self._can_recheck:
            self._drop_view(f"a configuration write to {key[0]:02x}:{key[1]:02x}.{key[2]} "
                            "(not read back here: no qtest channel, or 0xCF8-0xCFF are not the host bridge's)")
            self._query_pci_held.stale = True  # asked again when it must be fresh
            return
        fn = self._functions.get(key)
        wanted = dict.fromkeys((*range(0, PCI_COMMON_HEADER, 4), *range(offset & ~3, offset + length, 4)))
        missing: dict[int, list[_Held]] = {}
        for held in self._holds():
            noted = held.configs.setdefault(key, {})
            for dword in wanted:
                if dword in noted:
                    continue
                if fn is not None and fn.has(dword, 4):
                    noted[dword] = int.from_bytes(fn.data[dword:dword + 4], "little")
                else:
                    missing.setdefault(dword, []).append(held)
        values = self._config_dwords([(key, dword) for dword in missing])
        for (dword, holders), value in zip(missing.items(), values):
            for held in holders:
                held.configs[key][dword] = value

    def _still_holds(self, held: "_Held") -> bool:
        """Whether every function written since ``held``'s answer was read holds the dwords
        that count as they were then.  Every kept answer with functions written since is
        checked at once (one port transfer): the flat view and query-pci are mostly
        asked about together, after the same writes."""
        dirty = [h for h in self._holds() if h.dirty]
        if held in dirty:
            where = sorted({(key, dword) for h in dirty for key in h.dirty for dword in h.configs[key]})
            now = dict(zip(where, self._config_dwords(where)))
            if self.cache:  # what was read back is what the functions hold now
                for (key, dword), value in now.items():
                    self._function(key).put(dword, value.to_bytes(4, "little"))
            for h in dirty:
                if all(now[key, dword] == value for key in h.dirty for dword, value in h.configs[key].items()):
                    h.dirty = set()
                else:
                    h.stale = True
        return not held.stale

    def _config_dwords(self, where: Sequence[tuple[tuple[int, int, int], int]]) -> list[int]:
        """Configuration dwords, each ``(function, offset)``, in one port transfer."""
        if not where:
            return []
        values = self.ports.transfer([op for key, dword in where for op in PortChannel.config_read_ops(*key, dword)])
        self._cf8 = PortChannel.config_address(*where[-1][0], where[-1][1])
        return values

    def flat_view(self) -> dict[str, list[MtreeRegion]]:
        """``info mtree -f -o`` parsed (:func:`~harness.qemu.layout.parse_mtree_flat`), read
        once and kept while it holds (see above)."""
        self._check_epoch()
        if self._flat is not None and not self._still_holds(self._flat_held):
            self._drop_view(_CHANGED)
        if self._flat is None:
            self._flat = parse_mtree_flat(self._hmp("info mtree -f -o"))
        return self._flat

    def adopt(self, flat: dict[str, list[MtreeRegion]], tree: dict[str, list[MtreeRegion]],
              query_pci: list[dict[str, Any]] | None) -> None:
        """Take what the monitor just answered someone else on this machine (the layout
        snapshot: ``info mtree -f -o`` and ``info mtree -o -D`` parsed, query-pci or None)
        instead of asking again; it holds from now on as if read here."""
        self._check_epoch()
        self._reset_state()  # the reader may have used the configuration ports too
        self._flat = flat
        self._root_windows = _root_windows(tree)
        if query_pci is not None:
            self._take_query_pci(query_pci)
        self._basis = self._basis_now()

    # ------------------------------------------------------------------ reusing a snapshot
    # A layout snapshot is what QEMU decodes (the flat and full memory trees, query-pci)
    # plus a few registers that change without changing that (PCI command words, PIRQ
    # routes, the ELCR).  The bus that adopted a snapshot's monitor answers knows when
    # they still describe the machine: the flat view it holds is the snapshot's, and it
    # is dropped by everything that can change what QEMU decodes through the bus (see
    # "the flat view" above, and REMAPPING_PORTS); what did not go through the bus
    # is seen from the machine: a QMP event, a qtest write that is not the bus's own, a
    # monitor command that is not a read (READ_ONLY_QMP, READ_ONLY_HMP; the machine
    # records every command it sends, Machine.commands).  A snapshot then needs only its registers read
    # again (harness.qemu.layout.refresh).
    def _basis_now(self) -> "_Basis | None":
        """Where the machine stands now, for :meth:`layout_unchanged`; None (with the
        reason in ``_basis_lost``) when a later comparison could not be trusted."""
        channel = getattr(self.machine, "qtest", None)
        commands = getattr(self.machine, "commands", None)
        if getattr(self.machine, "boot", None) is not None:
            self._basis_lost = "the machine runs a guest (it changes the hardware itself)"
        elif not (isinstance(self.ports, QtestPorts) and channel is not None and self.cache):
            self._basis_lost = "no qtest channel (or the bus's cache is off)"
        elif commands is None:
            self._basis_lost = "the machine keeps no record of its monitor commands"
        else:
            return _Basis(channel.writes, self.ports.writes, len(commands))
        return None

    def _lose_basis(self, why: str) -> None:
        if self._basis is not None:
            self._basis_lost = why
        self._basis = None

    def layout_unchanged(self) -> str | None:
        """None when the snapshot whose monitor answers this bus adopted (:meth:`adopt`)
        still describes what QEMU decodes; else why not (for reports)."""
        self._check_epoch()
        basis = self._basis
        if basis is None:
            return self._basis_lost
        if not (self._still_holds(self._flat_held) and self._still_holds(self._query_pci_held)):
            self._drop_view(_CHANGED)
            return self._basis_lost
        channel = self.machine.qtest
        others = (channel.writes - basis.channel_writes) - (self.ports.writes - basis.own_writes)
        if others:
            return f"{others} qtest write(s) not made through this bus"
        return _state_changing_command(self.machine.commands[basis.commands_sent:])

    def refresh(self, layout: Layout, phase: str) -> Layout:
        """:func:`harness.qemu.layout.refresh` over this bus's ports (the reads' 0xCF8
        writes are the bus's own: the snapshot stays adopted)."""
        out = refresh(layout, self.machine, phase, self.ports)
        self._cf8 = None  # the transfer moved it
        return out

    # ------------------------------------------------------------------ DecodeMap
    def pci_root_windows(self) -> dict[str, list[tuple[int, int]]]:
        """Where the host bridge forwards to PCI bus 0 (see :func:`_root_windows`)."""
        self._check_epoch()
        if self._root_windows is None:
            self._root_windows = _root_windows(parse_mtree_tree(self._hmp("info mtree -o -D")))
        return {k: list(v) for k, v in self._root_windows.items()}

    def decoded_ranges(self) -> list[DecodedSpan]:
        """Everything decoded now (``info mtree -f -o``, the view layout.snapshot reads),
        PCI functions recognised by their qdev id or, for anonymous devices, by the QOM
        ``addr`` of the owner on the bus query-pci places it."""
        flat = self.flat_view()
        if self._decoded is None:
            by_id: dict[str, tuple[int, int, int]] = {}
            anonymous: dict[int, list[tuple[int, int, int]]] = {}
            query = self.query_pci()
            for bus in query:
                for dev in walk_pci(bus["devices"]):
                    key = (dev["bus"], dev["slot"], dev["function"])
                    if dev.get("qdev_id"):
                        by_id[dev["qdev_id"]] = key
                    else:
                        anonymous.setdefault(dev["slot"] << 3 | dev["function"], []).append(key)
            # A region of a device embedded in one created with -device (qemu-xhci's
            # xhci-core) is that device's, as in the layout (_owning_device).
            devfns = self._devfns([_owning_device(r)[0] for view in ("I/O", "memory") for r in flat.get(view, [])
                                   if r.owner_kind == "dev" and r.owner_ref == "path"
                                   and _owning_device(r)[0] not in by_id])
            # A region QEMU registers with no owner inside a machine-file device's BAR (the
            # vmware-svga FIFO) is that device's, as in the layout (own_ownerless).
            bars = {kind: bar_ranges(query, kind) for kind in ("io", "memory")}
            devices = [d for d in getattr(self.machine.spec, "devices", ()) if d.model.pci is not None]
            spans = []
            for space, view in ((IO_SPACE, "I/O"), (MEMORY_SPACE, "memory")):
                regions = own_ownerless(flat.get(view, []), devices, flat=True,
                                        bars=bars["io" if view == "I/O" else "memory"])
                for region in regions:
                    if _background(region):
                        continue
                    owner = _owning_device(region)[0] if region.owner_kind == "dev" else None
                    function = None
                    if owner is not None:
                        function = by_id.get(owner)
                        if function is None and region.owner_ref == "path":
                            devfn = devfns[owner]
                            candidates = anonymous.get(devfn, []) if devfn is not None else []
                            if len(candidates) == 1:
                                function = candidates[0]
                    spans.append(DecodedSpan(space, region.start, region.end,
                                             owner or region.name, function))
            self._decoded = spans
        return list(self._decoded)

    def bar_mappings(self, bus: int, device: int, function: int) -> dict[int, tuple[int, int]]:
        """Where QEMU maps each BAR of the function now (query-pci's region addresses are
        the mapped ones: -1 while unmapped), as ``{index: (start, end)}``."""
        out: dict[int, tuple[int, int]] = {}
        for b in self.query_pci(fresh=True):
            for dev in walk_pci(b["devices"]):
                if (dev["bus"], dev["slot"], dev["function"]) == (bus, device, function):
                    for region in dev.get("regions", []):
                        if region["address"] not in (UNASSIGNED, -1):
                            out[region["bar"]] = (region["address"], region["address"] + region["size"] - 1)
        return out

    def _devfns(self, paths: list[str]) -> dict[str, int | None]:
        """The PCI devfn (QOM ``addr``) of the device at each path; None for one that is not
        a PCI device.  QOM does not change while QEMU runs, so each answer is kept for the
        machine (``static_facts``); the unknown ones are asked at once, and only for
        properties that exist (a failing QMP command costs the machine's exit check)."""
        reader = QomReader(self.machine)
        facts = reader.facts
        known: dict[str, int | None] = facts.setdefault("pci-devfn", {})
        missing = [p for p in dict.fromkeys(paths) if p not in known]
        if missing:
            pci_types = reader.pci_types()
            kinds = reader.qom_types(missing)
            pci = [p for p in missing if kinds[p] in pci_types]
            values = reader.ask([("qom-get", {"path": p, "property": "addr"}) for p in pci])
            self._monitor_round_trips += reader.asked
            known.update(dict.fromkeys(missing))
            for path, value in zip(pci, values):
                if isinstance(value, BaseException):
                    raise value
                known[path] = int(value) if isinstance(value, int) and value >= 0 else None
        return {p: known[p] for p in paths}


_CHANGED = "a configuration write changed a function's header or a register written"


class _Basis:
    """Where the machine stood when a snapshot was adopted (its QMP events are the bus's
    epoch): the qtest channel's writes and this bus's own, the monitor commands sent."""

    __slots__ = ("channel_writes", "own_writes", "commands_sent")

    def __init__(self, channel_writes: int, own_writes: int, commands_sent: int) -> None:
        self.channel_writes, self.own_writes, self.commands_sent = channel_writes, own_writes, commands_sent


def _state_changing_command(commands: "Sequence[tuple[str, dict[str, Any] | None]]") -> str | None:
    """The first of ``commands`` (the machine's :attr:`~harness.qemu.machine.Machine.commands`
    since the snapshot) that is not a read, as a reason; None when there is none."""
    for command, arguments in commands:
        command_line = str((arguments or {}).get("command-line", "")) if command == "human-monitor-command" else ""
        if command == "human-monitor-command":
            if command_line.split(" ", 1)[0] not in READ_ONLY_HMP:
                return f"the monitor command {command_line!r}"
        elif not (command.startswith("query-") or command in READ_ONLY_QMP):
            return f"the QMP command {command!r}"
    return None


class _Held:
    """What a monitor answer that is kept (the flat view, query-pci) holds on: for every
    function written since it was read, the configuration dwords that count as they were
    then (``configs``: function -> offset -> value), and the functions written since it
    was last checked (``dirty``)."""

    __slots__ = ("configs", "dirty", "stale")

    def __init__(self) -> None:
        self.configs: dict[tuple[int, int, int], dict[int, int]] = {}
        self.dirty: set[tuple[int, int, int]] = set()
        self.stale = False  # a function written since no longer holds: the answer is gone


def _root_windows(tree: dict[str, list[MtreeRegion]]) -> dict[str, list[tuple[int, int]]]:
    """Where the host bridge forwards to PCI bus 0, from ``info mtree -o -D``: the I/O
    space's root region; in system memory the enabled ``pci`` region (QEMU 7.2 maps the
    whole PCI memory space at priority -1) or, failing that, every enabled alias into it."""
    io_tree, mem_tree = tree.get("I/O", []), tree.get("memory", [])
    io = [(r.start, r.end) for r in io_tree[:1]]
    enabled: list[MtreeRegion] = []
    stack: list[bool] = []  # whether each open ancestor is enabled
    for region in mem_tree:
        del stack[region.depth - mem_tree[0].depth:]
        on = not region.disabled and all(stack)
        stack.append(on)
        if on:
            enabled.append(region)
    top = mem_tree[0].depth if mem_tree else 0
    memory = [(r.start, r.end) for r in enabled if r.depth == top + 1 and not r.alias and r.name == "pci"]
    if not memory:
        memory = [(r.start, r.end) for r in enabled if r.alias and re.search(r"@pci\b", r.name)]
    return {IO_SPACE: io, MEMORY_SPACE: sorted(memory)}


def _background(region: MtreeRegion) -> bool:
    """The I/O space's or PCI memory space's own region, showing where no device decodes."""
    return region.owner_kind == "obj" and _base_name(region) in ("io", "pci")


#: The most one qtest ``read`` of RAM or ROM asks for (its answer is twice as long, in hex).
_MEMORY_READ_MAX = 0x10000


def _xp_reads(address: int, length: int) -> list[tuple[int, int]]:
    """The reads HMP ``xp`` makes for ``length`` bytes at ``address`` as :meth:`LiveBus.read_memory`
    asks for them: an unaligned head (bytes, one read), whole dwords in lines of 16
    bytes, a tail of 1-3 bytes (one read)."""
    out: list[tuple[int, int]] = []
    at, end = address, address + length
    if at % 4 and at < end:
        size = min(end - at, 4 - at % 4)
        out.append((at, size))
        at += size
    while end - at >= 4:
        size = min((end - at) & ~3, 16)
        out.append((at, size))
        at += size
    if at < end:
        out.append((at, end - at))
    return out


def _upper_of_64(listed: dict[int, dict[str, Any]], index: int) -> bool:
    below = listed.get(index - 1)
    return below is not None and bool(below.get("mem_type_64"))


__all__ = ["LiveBus", "LiveBusError"]
