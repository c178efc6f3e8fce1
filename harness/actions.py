"""Steps after the firmware: what an OS or a driver does to the machine once SeaBIOS is done.

A machine file (and so a repro bundle, whose ``machine`` is one) may list them under
``after_firmware``; each is one register access a user can read, with its phase::

    after_firmware:
      - {move_bar: nic0, bar: 0, address: 0xa0000}          # HalAssignSlotResources-style
      - {pci_write: nic0, offset: 0x04, size: 2, value: 0x0}  # the command register
      - {set_command: 00:03.0, value: 0x3}                   # I/O + memory decode on
      - {port_write: 0x3f9, value: 0x0f}                     # HMP 'o'
      - {port_read: 0x3fd, expect: 0x60}                     # HMP 'i', checked
      - {memory_read: 0xa0000, size: 4, expect: 0xffffffff}  # HMP 'xp', checked
      - {memory_write: 0x7000000, size: 4, value: 0x1}       # the guest agent (APIC HAL)
      - {move_bar: nic0, bar: 1, address: 0xd000, phase: post-drivers}

``phase``: ``post-firmware`` (the default: before NT's detection, the HAL and the drivers
see the machine, as if the OS loader had done it) or ``post-drivers`` (after the drivers
loaded, before the final snapshot).  The layout, the claims and the checks are taken after
them.  A PCI target is a device id of the file or a bus address ``BB:SS.F`` (a built-in
function such as the IDE controller).  HMP cannot write guest-physical memory (QEMU 7.2
has no such command): ``memory_write`` goes through the probe guest's agent, so it needs
the APIC HAL's job (``harness run --hal apic``, the default on q35); elsewhere it stops the
job with that said.

Everything is validated here, with file, line and field: offsets and sizes, that a value
fits, a BAR exists on the model, its address is aligned to the BAR's size and in range.
This module is data; :mod:`harness.qemu.actions` carries the steps out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from .yamlio import Node, get_int, get_list, get_str

ACTION_KINDS = ("move_bar", "pci_write", "set_command", "port_write", "port_read", "memory_read",
                "memory_write")
ACTION_PHASES = ("post-firmware", "post-drivers")
#: The phase of a step written among a bundle's (or a test bed's) driver loads and claims:
#: it happens where it stands in that list.
IN_ORDER = "in-order"
_PCI_ACTIONS = ("move_bar", "pci_write", "set_command")
_KEYS = {
    "move_bar": {"bar", "address"},
    "pci_write": {"offset", "size", "value"},
    "set_command": {"value"},
    "port_write": {"size", "value"},
    "port_read": {"size", "expect", "mask"},
    "memory_read": {"size", "expect", "mask"},
    "memory_write": {"size", "value"},
}
_REQUIRED = {"move_bar": {"bar", "address"}, "pci_write": {"offset", "value"}, "set_command": {"value"},
             "port_write": {"value"}, "port_read": set(), "memory_read": set(), "memory_write": {"value"}}
_BDF_RE = re.compile(r"([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])")
PCI_COMMAND = 0x04
PCI_BAR0 = 0x10


@dataclass(frozen=True)
class Action:
    """One step after the firmware."""

    kind: str                       # one of ACTION_KINDS
    phase: str                      # one of ACTION_PHASES
    target: str | None = None       # PCI: a device id of the machine, or "BB:SS.F"
    bar: int | None = None
    offset: int | None = None       # PCI configuration offset (pci_write)
    port: int | None = None
    address: int | None = None      # move_bar's new base, memory_read's address
    size: int = 1
    value: int | None = None        # written value
    expect: int | None = None       # port_read / memory_read: the value required
    mask: int | None = None
    #: move_bar: the BAR's size and kind from the device's model (alignment, 64-bit).
    bar_size: int | None = field(default=None, compare=False)
    bar_64bit: bool = field(default=False, compare=False)
    line: int = field(default=0, compare=False)

    @property
    def bdf(self) -> tuple[int, int, int] | None:
        match = _BDF_RE.fullmatch(self.target or "")
        return (int(match.group(1), 16), int(match.group(2), 16), int(match.group(3))) if match else None

    def describe(self) -> str:
        """One readable line, as a user would write it down."""
        if self.kind == "move_bar":
            text = f"move {self.target} BAR{self.bar} to {self.address:#x}"
        elif self.kind == "pci_write":
            text = f"write {self.value:#0{2 + 2 * self.size}x} to {self.target} config {self.offset:#04x} ({self.size} byte(s))"
        elif self.kind == "set_command":
            text = f"set {self.target}'s command register to {self.value:#06x}"
        elif self.kind == "port_write":
            text = f"o /{_LETTER[self.size]} {self.port:#x} {self.value:#x}"
        elif self.kind == "port_read":
            text = f"i /{_LETTER[self.size]} {self.port:#x}"
        elif self.kind == "memory_write":
            text = f"write {self.value:#x} to memory {self.address:#x} ({self.size} byte(s), through the guest agent)"
        else:
            text = f"xp /1{_LETTER[self.size]}x {self.address:#x}"
        if self.expect is not None:
            text += f", expect {self.expect:#x}" + (f" under mask {self.mask:#x}" if self.mask is not None else "")
        return f"[{self.phase}] {text}"

    def to_dict(self) -> dict[str, Any]:
        """The machine-file form (round-trips through :func:`parse_actions`)."""
        head: Any = self.target if self.kind in _PCI_ACTIONS else (
            self.port if self.kind.startswith("port") else self.address)
        out: dict[str, Any] = {self.kind: head}
        for key in sorted(_KEYS[self.kind]):
            value = {"bar": self.bar, "address": self.address, "offset": self.offset, "size": self.size,
                     "value": self.value, "expect": self.expect, "mask": self.mask}[key]
            if value is not None and not (key == "size" and self.kind in ("move_bar", "set_command")):
                out[key] = value
        if self.phase != IN_ORDER:
            out["phase"] = self.phase
        return out


_LETTER = {1: "b", 2: "h", 4: "w"}


def parse_actions(doc: Node, devices: Sequence[Any], machine: str, key: str = "after_firmware") -> tuple[Action, ...]:
    """The ``after_firmware`` list of a machine file, each step checked against the
    machine's devices (``devices``: its DeviceSpecs)."""
    if key not in doc:
        return ()
    by_id = {d.id: d for d in devices}
    out = []
    for index, item in enumerate(get_list(doc, key)):
        if not isinstance(item, Node):
            raise doc.error(key, f"step {index} must be a mapping such as {{port_write: 0x80, value: 1}}")
        kinds = [k for k in ACTION_KINDS if k in item]
        if len(kinds) != 1:
            raise doc.error(key, f"step {index} (line {item.line}) must name exactly one action of "
                                 f"{', '.join(ACTION_KINDS)}; it has {', '.join(kinds) or 'none'}")
        kind = kinds[0]
        item.check_keys(_KEYS[kind] | {kind, "phase"}, _REQUIRED[kind] | {kind})
        phase = get_str(item, "phase", choices=ACTION_PHASES, default="post-firmware")
        out.append(_parse_one(item, kind, phase, by_id, machine))
    return tuple(out)


def parse_step(item: Node, devices: Sequence[Any], machine: str) -> Action:
    """One step of a bundle's ``steps`` list (or a test bed's ``act``): an action with no
    phase of its own, done where it stands among the driver loads and claims."""
    kinds = [k for k in ACTION_KINDS if k in item]
    if len(kinds) != 1:
        raise item.error(None, f"a step names exactly one action of {', '.join(ACTION_KINDS)}")
    kind = kinds[0]
    item.check_keys(_KEYS[kind] | {kind}, _REQUIRED[kind] | {kind})
    return _parse_one(item, kind, IN_ORDER, {d.id: d for d in devices}, machine)


def is_action(item: Any) -> bool:
    return isinstance(item, Node) and any(k in item for k in ACTION_KINDS)


def _size(item: Node) -> int:
    size = get_int(item, "size", default=1)
    if size not in (1, 2, 4):
        raise item.error("size", f"expected 1, 2 or 4 (bytes), got {size}")
    return size


def _expect(item: Node, size: int) -> tuple[int | None, int | None]:
    top = (1 << 8 * size) - 1
    return (get_int(item, "expect", lo=0, hi=top, default=None), get_int(item, "mask", lo=0, hi=top, default=None))


def _parse_one(item: Node, kind: str, phase: str, by_id: dict[str, Any], machine: str) -> Action:
    if kind in ("port_write", "port_read"):
        size = _size(item)
        port = get_int(item, kind, lo=0, hi=0x10000 - size)
        if port % size:
            raise item.error(kind, f"port {port:#x} is not aligned to the access size {size}")
        if kind == "port_write":
            return Action(kind, phase, port=port, size=size,
                          value=get_int(item, "value", lo=0, hi=(1 << 8 * size) - 1), line=item.line)
        expect, mask = _expect(item, size)
        return Action(kind, phase, port=port, size=size, expect=expect, mask=mask, line=item.line)
    if kind == "memory_read":
        size = _size(item)
        address = get_int(item, kind, lo=0, hi=(1 << 64) - size)
        expect, mask = _expect(item, size)
        return Action(kind, phase, address=address, size=size, expect=expect, mask=mask, line=item.line)
    if kind == "memory_write":
        # HMP cannot write memory: the probe guest's agent does it (the APIC HAL's job),
        # and it reaches the low 4 GiB; isapc cannot run that guest's HAL.
        if machine == "isapc":
            raise item.error(kind, "memory writes go through the guest agent of the APIC HAL, which isapc cannot run")
        size = _size(item)
        address = get_int(item, kind, lo=0, hi=(1 << 32) - size)
        if address % size:
            raise item.error(kind, f"address {address:#x} is not aligned to the access size {size}")
        return Action(kind, phase, address=address, size=size,
                      value=get_int(item, "value", lo=0, hi=(1 << 8 * size) - 1), line=item.line)

    # PCI configuration steps
    if machine == "isapc":
        raise item.error(kind, "isapc has no PCI bus")
    target = item[kind]
    if not isinstance(target, str):
        raise item.error(kind, f"expected a PCI device id of this file or a bus address such as '00:03.0', got {target!r} (quote a bus address: YAML reads 00:03.0 unquoted as a number)")
    dev = by_id.get(target)
    if dev is None and not _BDF_RE.fullmatch(target):
        raise item.error(kind, f"{target!r} is neither a device id of this file nor a bus address BB:SS.F")
    if dev is not None and dev.model.pci is None:
        raise item.error(kind, f"{target!r} is a {dev.model.name}, not a PCI device")
    if kind == "set_command":
        return Action(kind, phase, target, offset=PCI_COMMAND, size=2,
                      value=get_int(item, "value", lo=0, hi=0xFFFF), line=item.line)
    if kind == "pci_write":
        size = _size(item)
        offset = get_int(item, "offset", lo=0, hi=0x100 - size)
        if offset % size:
            raise item.error("offset", f"offset {offset:#x} is not aligned to the access size {size}")
        if offset < 0x04:
            raise item.error("offset", "the vendor and device ids (offsets 0-3) are read-only")
        return Action(kind, phase, target, offset=offset, size=size,
                      value=get_int(item, "value", lo=0, hi=(1 << 8 * size) - 1), line=item.line)
    # move_bar
    bar_index = get_int(item, "bar", lo=0, hi=5, decimal=True)
    bar = None
    if dev is not None:
        bars = {b.index: b for b in dev.model.pci.bars}
        bar = bars.get(bar_index)
        if bar is None:
            raise item.error("bar", f"{dev.model.name} has no BAR{bar_index} (it has "
                                    f"{', '.join(f'BAR{i}' for i in sorted(bars)) or 'none'})")
    limit = 0xFFFF if bar is not None and bar.kind == "io" else (
        (1 << 64) - 1 if bar is not None and bar.is_64bit else 0xFFFFFFFF)
    address = get_int(item, "address", lo=0, hi=limit)
    if bar is not None and address % bar.size:
        raise item.error("address", f"{address:#x} is not aligned to BAR{bar_index}'s size {bar.size:#x} "
                                    "(the low address bits of a BAR are read-only)")
    if bar is None and address & 0xF:
        raise item.error("address", f"{address:#x}: a BAR address is at least 16-byte aligned")
    return Action(kind, phase, target, bar=bar_index, offset=PCI_BAR0 + 4 * bar_index, size=4,
                  address=address, bar_size=bar.size if bar else None,
                  bar_64bit=bool(bar and bar.is_64bit), line=item.line)


@dataclass
class ActionRecord:
    """What one step did: the monitor commands it sent and what it read."""

    action: Action
    commands: list[str]
    read: int | None = None
    ok: bool = True
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.action.describe(), "line": self.action.line, "commands": self.commands,
                "read": self.read, "ok": self.ok, "problem": self.problem}
