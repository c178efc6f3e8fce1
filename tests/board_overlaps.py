"""Machine files that put a card over every range, line and channel a bare machine's board
decodes, generated from the live layout (tests/test_board_overlaps.py runs them).

A board range is a region of ``info mtree -f`` of a machine with no cards (what
``harness layout`` prints), named by the board device whose region it is
(``harness.devices.board_device_of``); its lines and channels are the board model's,
which tests/test_boards.py measures against QEMU's properties.  Each range gets a card:

* I/O ports: an ``isa-debugcon`` (one port, any base, claimed by the generic legacy
  driver) on the range's first port where the firmware still finishes with it there; where
  it finishes with none (pc, q35), an e1000e whose 0x20-port I/O BAR a step after the
  firmware moves over the range (a BAR's priority 1 beats the board's ISA devices);
* memory (pc, q35): an RTL8139 whose 256-byte memory BAR a step after the firmware moves
  onto the range (isapc has no PCI and no ISA card with a movable memory window);
* IRQ lines: an ISA NE2000 jumpered to the line; the DMA channel: an SB16 on it.

One boot takes many overlaps: each card overlaps one range (an I/O BAR a 0x20 block) and
nothing else.  Boots of their own: the ranges whose loss changes what the firmware places
(the PCI configuration ports: without them SeaBIOS configures no PCI device, so no PMBASE,
SMBus or BAR is placed); the memory BAR cards, and apart from them the I/O BAR cards (PCI
cards move where the firmware puts the board's own BARs, such as q35's AHCI ABAR, which
the memory cards aim at where the bare machine has it); and the line and channel cards (a
card on a device's ports changes what detection finds of its line: isapc's floppy
controller, its ports taken, is described without its IRQ 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config import MachineSpec, parse_machine_text
from harness.devices import BoardDevice, board_device_of, board_model
from harness.qemu.layout import Layout

#: Ports where a debug console keeps SeaBIOS from its end (measured: tests/test_board_overlaps.py
#: test_a_card_on_these_ports_stops_the_firmware; SeaBIOS's last log line, pc, measured
#: with a 4 s bound): on the RTC's data port 0x71 (pc, q35) and the APM/SMI port 0xb2 "PCI:
#: No VGA devices found"; on fw_cfg's 0x510 "No bootable device.  Retrying in 60 seconds." (the
#: harness's reboot-timeout travels through fw_cfg); on isapc's 8254 counter 0 "ATA
#: controller 1 at 1f0/3f4/0".  The second port of each pair was measured alike.  On
#: fw_cfg's DMA address port 0x518 (all three) "QEMU fw_cfg DMA interface supported":
#: SeaBIOS then waits for a DMA transfer that never completes.  On the ATA status ports
#: 0x1f7 and 0x177 (pc, isapc) "PS2 keyboard initialized": the console's read-back (0xe9)
#: has BSY set, and SeaBIOS waits its 32 s ATA timeout, past the firmware bound (the pc's
#: firmware ends at 32.2 s).  The RTC's index port 0x70 is not among them, nor isapc's 0x71:
#: SeaBIOS boots past them, and only its reboot, which the harness no longer runs when it
#: reads the log, stopped there (on 0x70 it halts: "Unimplemented shutdown status: 02",
#: test_firmware_stalls).
FIRMWARE_STOPS: dict[str, frozenset[int]] = {
    "pc": frozenset({0x71, 0xB2, 0xB3, 0x177, 0x1F7, 0x510, 0x511, 0x518}),
    "q35": frozenset({0x71, 0xB2, 0xB3, 0x510, 0x511, 0x518}),
    "isapc": frozenset({0x40, 0x177, 0x1F7, 0x510, 0x511, 0x518}),
}
#: How the firmware ends at each of those ports, as the progress watch tells it
#: (harness.qemu.progress; measured, the same on every machine type that stops there:
#: test_a_card_on_these_ports_stops_the_firmware, benchmarks/bench_firmware_stalls.py):
#: "retry" (the 60 s reboot wait of a SeaBIOS that cannot read fw_cfg), "spin" on a port
#: that never answers.
FIRMWARE_STOP_RULES: dict[int, str] = {
    0x40: "spin", 0x71: "spin", 0xB2: "spin", 0xB3: "spin", 0x177: "spin", 0x1F7: "spin",
    0x510: "retry", 0x511: "retry", 0x518: "spin",
}
#: Board devices whose loss changes what the firmware places: a boot of their own.
FIRMWARE_PLACES = frozenset({"pci-configuration"})
#: The harness's own firmware-log console (config refuses a card on its port).
FIRMWARE_LOG = "harness-fwlog"

#: Free bases for the line cards (an NE2000 decodes 0x20 ports) and the DMA card.
NE2000_BASES = (0x200, 0x240, 0x260, 0x280, 0x2a0, 0x2c0, 0x2e0, 0x300, 0x320, 0x340, 0x360)
SB16_BASE = 0x220
#: Where the moved BARs come from (PCI slots for the RTL8139s and e1000es), and the
#: e1000e's I/O BAR (0x20 ports, so moved onto the 0x20-aligned block round a port).
FIRST_SLOT = 3
IO_BAR, IO_BAR_SIZE = 2, 0x20


@dataclass(frozen=True)
class Target:
    """One thing the board decodes: a range of ``space`` ("io", "memory"), or a line
    ("irq") or channel ("dma") with ``start == end``."""
    board: BoardDevice
    space: str
    start: int
    end: int
    region: str = ""

    def describe(self) -> str:
        if self.space in ("irq", "dma"):
            return f"{self.board.label} {self.space} {self.start}"
        return f"{self.board.label} {self.space} {self.start:#x}-{self.end:#x} ({self.region})"


@dataclass(frozen=True)
class Overlap:
    """A card over ``target``: its id, its machine-file line (empty for a card over
    several targets, after its first), its after_firmware step and what it overlaps
    (``at``: the port, line, channel or BAR address)."""
    card: str
    target: Target
    device: str
    at: int
    step: str = ""


def board_targets(kind: str, layout: Layout, sci: int | None) -> tuple[list[Target], list[str]]:
    """Everything the bare ``layout`` shows the board decoding (``sci``: the ACPI SCI's
    line as the chipset routes it, read live), and the regions no board device owns (none
    but RAM and the harness's firmware log, else a finding)."""
    board = board_model(kind)
    targets: list[Target] = []
    strays: list[str] = []
    for space, ranges in (("io", layout.io), ("memory", layout.memory)):
        for r in ranges:
            device = board_device_of(board, r.owner_type, r.name)
            if device is None:
                if r.owner != FIRMWARE_LOG and not (r.kind == "ram" and r.owner is None):
                    strays.append(f"{space} {r.start:#x}-{r.end:#x} {r.name} ({r.owner_type})")
                continue
            targets.append(Target(device, space, r.start, r.end, r.name.split(" @")[0]))
    lines = {(d, "irq", n) for d in board for n in d.irqs} | {(d, "dma", n) for d in board for n in d.dmas}
    if sci is not None:
        lines.add((next(d for d in board if d.name == "acpi"), "irq", sci))
    for device in board:
        if device.pci_interrupt and device.pci is not None:
            line = layout.pci_function(device.pci.bdf).interrupt_line
            if line not in (None, 0, 0xFF):
                lines.add((device, "irq", line))
    targets += [Target(d, space, n, n) for d, space, n in sorted(lines, key=lambda t: (t[1], t[2], t[0].name))]
    return targets, strays


def port_for(kind: str, target: Target) -> int | None:
    """The port of ``target``'s range a card takes: the first where the firmware finishes."""
    return next((p for p in range(target.start, target.end + 1) if p not in FIRMWARE_STOPS[kind]), None)


def plan(kind: str, targets: list[Target]) -> tuple[list[list[Overlap]], list[Target]]:
    """The boots (each a list of overlaps) that cover ``targets``, and the targets no card
    can overlap without stopping the firmware (isapc's: it has no PCI BAR to move)."""
    ordinary: list[Overlap] = []
    apart: list[Overlap] = []
    moved: list[Overlap] = []
    left: list[Target] = []
    lines: list[Target] = []
    bars: list[Overlap] = []
    io_bars: dict[int, str] = {}   # 0x20-port block -> its card
    slot = FIRST_SLOT
    for t in targets:
        n = len(ordinary) + len(apart) + len(moved) + len(bars)
        if t.space == "io":
            port = port_for(kind, t)
            if port is None and kind != "isapc":
                # No card there lets the firmware finish: an I/O BAR moved over it after.
                block = t.start & ~(IO_BAR_SIZE - 1)
                card = io_bars.get(block)
                device = ""
                if card is None:   # one card a block (the RTC's two ports share it)
                    card = io_bars[block] = f"b{n}"
                    device = f"{{model: e1000e, id: {card}, addr: {FIRST_SLOT + len(io_bars)}}}"
                bars.append(Overlap(card, t, device, t.start, f"{{move_bar: {card}, bar: {IO_BAR}, address: {block:#x}}}"))
                continue
            if port is None:
                left.append(t)
                continue
            o = Overlap(f"p{n}", t, f"{{model: isa-debugcon, id: p{n}, iobase: {port:#x}}}", port)
            (apart if t.board.name in FIRMWARE_PLACES else ordinary).append(o)
        elif t.space == "memory":
            if kind == "isapc":
                left.append(t)
                continue
            card = f"m{n}"
            moved.append(Overlap(card, t, f"{{model: rtl8139, id: {card}, addr: {slot}}}", t.start,
                                    f"{{move_bar: {card}, bar: 1, address: {t.start:#x}}}"))
            slot += 1
        else:
            lines.append(t)
    bases = iter(NE2000_BASES)
    wired: list[Overlap] = []
    cards: dict[tuple[str, int], str] = {}   # one card a line: q35's SATA and SMBus share theirs
    for i, t in enumerate(lines):
        card = f"l{i}"
        if (t.space, t.start) in cards:
            wired.append(Overlap(cards[t.space, t.start], t, "", t.start))
            continue
        cards[t.space, t.start] = card
        if t.space == "irq":
            wired.append(Overlap(card, t, f"{{model: ne2k_isa, id: {card}, iobase: {next(bases):#x}, irq: {t.start}}}",
                                    t.start))
        else:
            wired.append(Overlap(card, t, f"{{model: sb16, id: {card}, iobase: {SB16_BASE:#x}, irq: 5, "
                                             f"dma: {t.start}, dma16: 5}}", t.start))
    return [b for b in (ordinary, wired, apart, moved, bars) if b], left


def machine(kind: str, name: str, overlaps: list[Overlap]) -> MachineSpec:
    """The machine file of one boot."""
    text = [f"name: {name}", f"machine: {kind}", "expect: conflict", "devices:"]
    text += [f"  - {o.device}" for o in overlaps if o.device]
    steps = list(dict.fromkeys(o.step for o in overlaps if o.step))
    if steps:
        text += ["after_firmware:", *(f"  - {s}" for s in steps)]
    return parse_machine_text("\n".join(text) + "\n", f"<{name}>")
