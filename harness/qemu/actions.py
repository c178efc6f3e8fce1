"""Carry out the steps after the firmware (:mod:`harness.actions`) on a paused machine.

Every step goes through the monitor as a user would type it: ``o``/``i`` for ports,
0xCF8/0xCFC (configuration mechanism #1) for PCI configuration space, ``xp`` for memory.
The commands each step sent are recorded, so a report shows exactly what was done.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..actions import Action, ActionRecord
from ..errors import HarnessError
from ..nt.busaccess import BusAccessError
from .bus import PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA, HmpPorts
from .livebus import LiveBus


class ActionError(HarnessError):
    pass


class _Recorder:
    """Port access through a LiveBus (so its configuration cache is dropped on the
    0xCF8 write) that writes down each monitor command."""

    def __init__(self, bus: LiveBus) -> None:
        self.bus = bus
        self.commands: list[str] = []

    def write(self, port: int, value: int, size: int) -> None:
        self.commands.append(f"o /{_LETTER[size]} {port:#x} {value:#x}")
        self.bus.write_port(port, value, size)

    def read(self, port: int, size: int) -> int:
        value = self.bus.read_port(port, size)
        self.commands.append(f"i /{_LETTER[size]} {port:#x}  -> {value:#x}")
        return value

    def write_config(self, bdf: tuple[int, int, int], offset: int, value: int, size: int) -> None:
        self.write(PCI_CONFIG_ADDRESS, HmpPorts.config_address(*bdf, offset), 4)
        self.write(PCI_CONFIG_DATA + (offset & 3), value, size)


_LETTER = {1: "b", 2: "h", 4: "w"}


def pci_address_of(machine: Any, target: str, action: Action) -> tuple[int, int, int]:
    """The bus address of a step's PCI target (a device id, looked up in query-pci)."""
    if action.bdf is not None:
        return action.bdf
    for fn in _walk(machine.qmp("query-pci")):
        if fn.get("qdev_id") == target:
            return fn["bus"], fn["slot"], fn["function"]
    raise ActionError(f"line {action.line}: {target!r} is not in query-pci (was it realized?)")


def _walk(buses: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for bus in buses:
        for fn in bus.get("devices", []):
            yield fn
            bridge = fn.get("pci_bridge")
            if bridge and bridge.get("devices") is not None:
                yield from _walk([{"devices": bridge["devices"]}])


def run_firmware_and_steps(machine: Any) -> list[ActionRecord]:
    """Run the firmware, then the machine file's post-firmware steps: the state every
    user of a booted machine (main job, layout command, pytest fixtures) starts from."""
    machine.run_firmware()
    return run_actions(machine, machine.spec.after_firmware, "post-firmware")


def run_actions(machine: Any, actions: Iterable[Action], phase: str, bus: LiveBus | None = None) -> list[ActionRecord]:
    """Do the steps of ``phase`` in order on the paused ``machine``; ``bus``: the LiveBus
    the NT side uses, if it already has one (its cache must see the writes)."""
    bus = bus if bus is not None else LiveBus(machine)
    return [do_action(machine, action, bus) for action in actions if action.phase == phase]


def do_action(machine: Any, action: Action, bus: LiveBus) -> ActionRecord:
    """Do one step now, whatever its phase, and record what it sent and read."""
    rec = _Recorder(bus)
    record = ActionRecord(action, rec.commands)
    if action.kind == "port_write":
        rec.write(action.port, action.value, action.size)
    elif action.kind == "port_read":
        record.read = rec.read(action.port, action.size)
    elif action.kind == "memory_write":
        write = getattr(bus, "write_memory", None)
        if write is None:
            raise ActionError(f"line {action.line}: {action.describe()}: HMP cannot write guest memory; "
                              "memory writes need the probe guest's agent (the APIC HAL: harness run --hal apic, "
                              "the default on q35)")
        write(action.address, action.value.to_bytes(action.size, "little"))
        rec.commands.append(f"agent: write /{_LETTER[action.size]} {action.address:#x} {action.value:#x}")
    elif action.kind == "memory_read":
        try:
            data = bus.read_memory(action.address, action.size)
        except BusAccessError as exc:
            # nothing decodes the address (QEMU's xp refuses it): what the step found, as a
            # read that does not give what it expects is, not a job that cannot go on
            rec.commands.append(f"xp /1{_LETTER[action.size]}x {action.address:#x}  -> refused")
            record.ok = False
            record.problem = f"the read was refused: {exc}"
            return record
        record.read = int.from_bytes(data, "little")
        rec.commands.append(f"xp /1{_LETTER[action.size]}x {action.address:#x}  -> {record.read:#x}")
    else:
        try:
            bdf = pci_address_of(machine, action.target, action)
        except ActionError:
            # validated, so created: behind a bridge the firmware never numbered (the PCI
            # configuration ports taken), QEMU shows no bus it sits on (livefuzz)
            record.ok = False
            record.problem = (f"{action.target!r} is on no PCI bus QEMU reports (query-pci): behind a bridge "
                              "the firmware never gave a bus number?")
            return record
        if action.kind == "move_bar":
            rec.write_config(bdf, action.offset, action.address & 0xFFFFFFFF, 4)
            if action.bar_64bit:
                rec.write_config(bdf, action.offset + 4, action.address >> 32, 4)
        else:
            rec.write_config(bdf, action.offset, action.value, action.size)
    if action.expect is not None and record.read is not None:
        mask = action.mask if action.mask is not None else (1 << 8 * action.size) - 1
        if record.read & mask != action.expect:
            record.ok = False
            record.problem = f"read {record.read:#x}, expected {action.expect:#x} under mask {mask:#x}"
    return record
