"""Events that stop or cut short the firmware, as findings with their cause.

The main job runs SeaBIOS to its end (where it gives up booting: the harness stops the
machine at that line of its log, or, without the log, at the reboot that follows, which
``-action`` turns into a pause).  A device placed where the firmware writes can end that run early,
and that is a finding about the machine, not a harness error:

* ``guest-panicked``: a pvpanic decodes a port the firmware writes (SeaBIOS's debug log
  at 0x402 above all: measured on QEMU 7.2, its first byte with bit 0 set is a panic
  event, ``firmware_log: false`` or not), and QEMU pauses the guest for good;
* ``qemu-exited``: an isa-debug-exit the firmware writes ends QEMU with status
  ``(value << 1) | 1`` (167 for SeaBIOS's first log byte, 'S');
* ``internal-error``, ``io-error``, ``watchdog``: the other states QEMU pauses itself in;
* ``shutdown``: the guest shut the machine down instead of rebooting at the end;
* ``early-reset``: the guest reset before SeaBIOS gave up booting (its log lacks the
  "No bootable device" line): e.g. with the PCI configuration ports shadowed SeaBIOS
  cannot unlock RAM and resets at once.  Needs the firmware log (``firmware_log: true``).

Each becomes a :class:`FirmwareEvent`; the cause names the configured devices that can
produce it, the ports they decode and what the firmware meant to reach there (SeaBIOS's
log port, or the board device a bare QEMU of the same type decodes at those ports).
* ``firmware-stalled``: the firmware did not finish within its bound, or the progress
  watch (:mod:`harness.qemu.progress`) saw it stop before, while a configured device
  decodes ports a board device decodes in a bare machine of the same type (SeaBIOS waits
  there for an answer: a card on fw_cfg's 0x510, the RTC or the PIT).

A firmware that never finishes with nothing in its way is not among them: no configured
device explains it (and after the bound a hung firmware and an overloaded host look
alike), so that stays an error.  So does an ``internal-error`` nothing in the machine can
have caused (:class:`EmulatorFailed`): the accelerator failed, not the machine (this
host's nested KVM stops a plain isapc there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .config import FIRMWARE_LOG_PORT, DeviceSpec, MachineSpec, on_firmware_log_port
from .errors import HarnessError
from .qemu.machine import STUCK_STATES, Machine, MachineDied, MachineStuck
from .qemu.progress import last_line
from .verify import PCI_CONFIG_PORTS

#: SeaBIOS's words when it gives up booting, before the reboot that ends a firmware run
#: whose log the harness does not watch (``firmware_log: false``).
FIRMWARE_DONE_TEXT = b"No bootable device"
#: That reboot (QMP SHUTDOWN reason).
FIRMWARE_DONE_REASON = "guest-reset"
#: QEMU types that turn a guest write into an event, and what the event is.
PANIC_DEVICES = ("pvpanic",)
EXIT_DEVICES = ("isa-debug-exit",)
WATCHDOG_DEVICES = ("ib700",)


#: The state QEMU pauses in when its accelerator fails (KVM's emulation failure), not a device.
EMULATOR_FAILURE_STATE = "internal-error"


class EmulatorFailed(HarnessError):
    """QEMU stopped the guest in :data:`EMULATOR_FAILURE_STATE` and nothing in the machine
    reaches what the firmware, the HAL or the drivers use: an error, not a finding."""


@dataclass(frozen=True)
class FirmwareEvent:
    """An event that stopped or cut short the firmware (module docstring), and its cause."""

    kind: str                    # see the module doc
    detail: str                  # what QEMU reported
    devices: tuple[str, ...]     # configured devices that caused it (may be empty)
    cause: str
    stopped: bool                # True: the machine is gone or frozen, the job ends here

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, devices=list(self.devices))

    def finding(self) -> str:
        return f"event [firmware] {self.kind}: {', '.join(self.devices) or '(no device)'}: {self.detail}"

    def describe(self) -> str:
        return f"{self.kind}: {self.detail} — {self.cause}"


def _ports(dev: DeviceSpec) -> list[tuple[int, int]]:
    return [(lo, hi) for kind, lo, hi in dev.decoded_resources() if kind == "port"]


def _ranges(dev: DeviceSpec) -> str:
    return _spans(_ports(dev))


def _of_type(spec: MachineSpec, types: tuple[str, ...]) -> list[DeviceSpec]:
    return [d for d in spec.devices if d.model.qemu_driver in types]


def _bare_board(spec: MachineSpec, devices: list[DeviceSpec]) -> Any:
    """What the board alone decodes when the firmware starts: a snapshot of a fresh QEMU
    of the same machine type without the configured devices (only run on the rare path of
    a stopped firmware, whose own machine is gone, and only when a device is elsewhere
    than on the log port), or None."""
    from .qemu.layout import snapshot
    if devices and all(on_firmware_log_port(d.decoded_resources()) for d in devices):
        return None
    try:
        with Machine(dataclasses.replace(spec, devices=(), drivers=())) as bare:
            return snapshot(bare)
    except HarnessError:
        return None


def _where(dev: DeviceSpec, board: Any, spec: MachineSpec, writer: str = "the firmware") -> str:
    """Why ``writer`` (the firmware) writes where ``dev`` sits: SeaBIOS's log port, an option
    ROM of another device that writes there, or the board device it meant to reach."""
    if on_firmware_log_port(dev.decoded_resources()):
        return (f"{FIRMWARE_LOG_PORT:#x} is SeaBIOS's debug-log port, which it writes whether or not "
                "anything listens")
    roms = [f"{other.id} ({other.model.name})" for other in _roms_over(dev, spec)]
    if roms:
        return f"the option ROM of {', '.join(dict.fromkeys(roms))} writes there while the firmware runs"
    from .devices import board_label_of, board_model
    devices = board_model(spec.machine)
    spans: dict[str, tuple[int, int]] = {}   # board device -> the span of it the device covers
    decoders = _board_decoders(spec, board)
    for lo, hi in _ports(dev):
        for r in decoders:
            if r.start <= hi and lo <= r.end:
                # named as every report names a board device (board:rtc), its type otherwise
                name = board_label_of(devices, r.owner_type, r.name, f"the board's {r.owner_type or r.owner}")
                first, last = spans.get(name, (r.start, r.end))
                spans[name] = (min(first, r.start), max(last, r.end))
    if spans:
        meant = ", ".join(f"{name} ({a:#x}-{b:#x})" if a != b else f"{name} ({a:#x})" for name, (a, b) in spans.items())
        return f"{writer} writes there to {meant}, which the device displaces"
    return f"{writer} writes there"


def stopped_by(spec: MachineSpec, machine: Any, error: MachineStuck | MachineDied, *,
               after_firmware: bool = False) -> FirmwareEvent:
    """The finding for QEMU freezing the guest (:class:`MachineStuck`) or exiting
    (:class:`MachineDied`) during :meth:`Machine.run_firmware`, or (``after_firmware``)
    while the HAL and the drivers touch the machine after it: an isa-debug-exit over the
    keyboard controller ends QEMU at the HAL's first write there.  A timeout stays an
    error: a slow host and a hung firmware look alike."""
    if isinstance(error, MachineStuck):
        if error.state == EMULATOR_FAILURE_STATE:
            _check_explained(spec, machine, after_firmware)
        return _frozen(spec, error.state, after_firmware=after_firmware)
    if after_firmware:
        return _exited(spec, machine, "after the firmware, as the HAL and the drivers touched the machine "
                       f"({str(error).splitlines()[0]})", "the HAL or a driver")
    return _exited(spec, machine)


def _check_explained(spec: MachineSpec, machine: Any, after_firmware: bool) -> None:
    """Raise :class:`EmulatorFailed` unless something in the machine may have stopped the
    guest: a configured device with a fixed memory decode or on a board device's ports, a
    built-in device moved onto another's ports, or (after the firmware) a step that wrote."""
    if (any(kind == "memory" for d in spec.devices for kind, _, _ in d.decoded_resources())
            or _over_board(spec)[1] or _builtins_over_board(spec)
            or (after_firmware and _writing_steps(spec))):
        return
    accel = getattr(machine, "accel", None) or spec.accel
    hint = "; run it under TCG (--accel tcg)" if accel == "kvm" else ""
    when = "after the firmware" if after_firmware else "during the firmware"
    raise EmulatorFailed(f"QEMU stopped the guest in state {EMULATOR_FAILURE_STATE!r} {when}, and nothing in "
                         "the machine file reaches the board (no device on its ports or with a fixed memory "
                         f"decode, no moved built-in device, no writing step): the accelerator ({accel}) failed, "
                         f"not the machine; see qemu.log{hint}")


def stalled(spec: MachineSpec, machine: Any, detail: str, how: str | None = None) -> FirmwareEvent | None:
    """The finding (``detail``: what did not finish) for a firmware that did not finish
    within its bound (a :class:`~harness.qemu.machine.FirmwareTimeout`; under the APIC HAL,
    the agent guest's wait on the way) or that the progress watch saw stop before it
    (:class:`~harness.qemu.machine.FirmwareStalled`; ``how`` it knew, which names SeaBIOS's
    last log line) while configured devices decode ports that a board device of a bare
    machine of the same type decodes: SeaBIOS waits there for an answer the device does
    not give (fw_cfg, the RTC, the PIT, the 8259s and 8237s; measured in
    tests/board_overlaps.py), else None.  With nothing in the firmware's way the harness
    cannot explain the stop: the error stays an error."""
    board, blockers = _over_board(spec)
    blockers += [d for d in _under_option_roms(spec) if d not in blockers]
    moved = _builtins_over_board(spec)
    if not blockers and not moved:
        return None
    cause = "; ".join([f"{d.id} decodes {_ranges(d)}: {_where(d, board, spec)}" for d in blockers] +
                      [f"the built-in {label}, moved by the machine file's builtin settings, decodes "
                       f"{_spans(ports)} over {', '.join(over)}" for label, ports, over in moved])
    if how is not None:
        cause += f"; the harness knew before the bound: {how}"
    else:
        last = _last_log_line(spec, machine)
        if last is not None:
            cause += f"; SeaBIOS's last log line: {last!r}"
    return FirmwareEvent("firmware-stalled", detail, tuple(d.id for d in blockers) + tuple(m[0] for m in moved),
                         cause, True)


def _over_board(spec: MachineSpec) -> tuple[Any, list[DeviceSpec]]:
    """A bare machine's board layout and the configured devices that decode ports a board
    device decodes there (none: no board read)."""
    with_ports = [d for d in spec.devices if _ports(d)]
    board = _bare_board(spec, with_ports) if with_ports else None
    if board is None:
        return None, []
    decoders = _board_decoders(spec, board)
    return board, [d for d in with_ports
                   if any(r.start <= hi and lo <= r.end for lo, hi in _ports(d) for r in decoders)]


def _under_option_roms(spec: MachineSpec) -> list[DeviceSpec]:
    """The configured devices on ports another device's option ROM writes while the
    firmware runs (a model's ``firmware_writes``: sgabios waits on COM1's line status, and
    a pvpanic at 0x3fd never says the transmitter is empty: livefuzz round five)."""
    return [d for d in spec.devices if _roms_over(d, spec)]


def _roms_over(dev: DeviceSpec, spec: MachineSpec) -> list[DeviceSpec]:
    """The other devices of ``spec`` whose option ROM writes on ``dev``'s ports."""
    return [other for other in spec.devices if other is not dev and any(
        lo <= run.start + run.length - 1 and run.start <= hi
        for run in other.model.firmware_writes for lo, hi in _ports(dev))]


def _board_decoders(spec: MachineSpec, board: Any) -> list[Any]:
    """The I/O regions of a bare machine's layout that a board device decodes: by owner,
    or, where QEMU gives none (pc's PIIX IDE ports, 0x80, 0xf0), by the board model's name."""
    from .devices import board_device_of, board_model
    devices = board_model(spec.machine)
    return [r for r in (board.io if board is not None else ())
            if r.owner or board_device_of(devices, r.owner_type, r.name) is not None]


def _builtins_over_board(spec: MachineSpec) -> list[tuple[str, list[tuple[int, int]], list[str]]]:
    """The built-in devices the file's ``builtin`` settings moved onto ports another board
    device decodes (livefuzz: pc's FDC at 0x516 covers fw_cfg's DMA port 0x518 and the
    firmware spins): (label, its ports, the board regions under them)."""
    from .builtin import BUILTIN_DEVICES, apply_settings
    from .devices import board_model
    moving = [BUILTIN_DEVICES[name].qemu_type for name, settings in spec.builtin.items()
              if any(BUILTIN_DEVICES[name].properties[p].kind == "port" for p in settings)]
    if not moving:
        return []
    # the board as QEMU builds it unconfigured: what the moved device lands on
    board = _bare_board(dataclasses.replace(spec, builtin={}), [])
    if board is None:
        return []
    out = []
    for part in board_model(spec.machine):
        if part.qemu_type not in moving:
            continue
        ports = [(lo, hi) for kind, lo, hi in apply_settings(part.qemu_type, part.decoded_resources(), spec.builtin)
                 if kind == "port"]
        over = sorted({f"{r.name} ({r.start:#x}-{r.end:#x})" for r in board.io for lo, hi in ports
                       if r.owner and r.owner_type != part.qemu_type and r.start <= hi and lo <= r.end})
        if over:
            out.append((part.label, ports, over))
    return out


def _spans(ports: list[tuple[int, int]]) -> str:
    return ", ".join(f"{lo:#x}" if lo == hi else f"{lo:#x}-{hi:#x}" for lo, hi in ports)


def _last_log_line(spec: MachineSpec, machine: Any) -> str | None:
    try:
        return last_line(machine.firmware_log.read_bytes()) if spec.firmware_log else None
    except OSError:
        return None


def stopped_during_boot(spec: MachineSpec, machine: Any) -> FirmwareEvent | None:
    """After a guest boot that never answered (the APIC HAL's agent guest): the finding
    when QEMU exited or froze meanwhile, or the guest reset or shut down before its agent
    ran (a card on the PCI configuration ports resets SeaBIOS at once), else None.  With
    no agent there is no bus: the job ends there (``stopped``)."""
    if machine.returncode is not None:
        return _exited(spec, machine)
    try:
        state = machine.status()
    except HarnessError:
        return None
    if state in STUCK_STATES:
        return _frozen(spec, state)
    if machine.events("SHUTDOWN"):
        event = cut_short(spec, machine)
        return dataclasses.replace(event, stopped=True) if event is not None else None
    return None


def stopped_under_agent(spec: MachineSpec, machine: Any, error: Exception) -> FirmwareEvent | None:
    """Under the APIC HAL, after the firmware: the finding when the agent guest stopped
    answering (``error``) because QEMU exited or paused it for good as the HAL and the
    drivers touched the machine (a pvpanic over the ELCR at 0x4d1 panics at the HAL's
    write there, livefuzz), as :func:`stopped_by` finds it under the PIC HAL; else None
    (the error stands); a reset or shutdown of the guest then is a `shutdown` event."""
    if machine.returncode is not None:
        return stopped_by(spec, machine, MachineDied(str(error)), after_firmware=True)
    try:
        state = machine.status()
    except HarnessError:
        return None
    if state in STUCK_STATES:
        frozen = _frozen(spec, state, after_firmware=True)
        steps = _writing_steps(spec)
        return dataclasses.replace(frozen, cause="; ".join([frozen.cause, *steps])) if steps else frozen
    stops = machine.events("SHUTDOWN")
    if state != "shutdown" or not stops:
        return None
    # The guest reset or shut down (-action pauses QEMU there): with a card over the 8259's
    # mask port the agent guest takes an interrupt it never masked and resets (livefuzz).
    reason = stops[-1].get("data", {}).get("reason", "?")
    board, over = _over_board(spec)
    causes = [f"{d.id} decodes {_ranges(d)}: {_where(d, board, spec, 'the HAL or a driver')}" for d in over]
    causes += _writing_steps(spec)
    cause = "; ".join(causes) or "no configured device sits on a board device's ports, and no step wrote; see qmp.log"
    return FirmwareEvent("shutdown", f"the guest stopped the machine ({reason}) after the firmware, as the HAL "
                         "and the drivers touched the machine", tuple(d.id for d in over), cause, True)


def _writing_steps(spec: MachineSpec) -> list[str]:
    """The machine file's steps that write (what may have stopped the guest besides the HAL)."""
    return [f"the machine file's step {a.describe()}" for a in spec.after_firmware
            if a.kind in ("port_write", "memory_write", "pci_write", "set_command")]


def _frozen(spec: MachineSpec, state: str, *, after_firmware: bool = False) -> FirmwareEvent:
    writer, when = ("the HAL or a driver", " after the firmware, as the HAL and the drivers touched the machine") \
        if after_firmware else ("the firmware", "")
    if state == "guest-panicked":
        panics = _of_type(spec, PANIC_DEVICES)
        board = _bare_board(spec, panics)
        cause = "; ".join(f"pvpanic {d.id} decodes {_ranges(d)}: {_where(d, board, spec, writer)}, and a value "
                          "with bit 0 set there is a panic event" for d in panics) or \
            "the guest reported a panic and no configured device explains it"
        return FirmwareEvent(state, f"QEMU paused the guest for good (GUEST_PANICKED){when}",
                             tuple(d.id for d in panics), cause, True)
    dogs = _of_type(spec, WATCHDOG_DEVICES) if state == "watchdog" else []
    return FirmwareEvent(state, f"QEMU paused the guest for good in state {state!r}{when}",
                         tuple(d.id for d in dogs),
                         "; ".join(f"watchdog {d.id} fired" for d in dogs)
                         or "QEMU stopped the guest; see qemu.log and qmp.log", True)


def _exited(spec: MachineSpec, machine: Any, when: str = "during the firmware",
            writer: str = "the firmware") -> FirmwareEvent:
    status = machine.returncode
    exits = _of_type(spec, EXIT_DEVICES)
    detail = f"QEMU exited with status {status} {when}"
    if status is not None and status > 0 and status & 1 and exits:
        value = status >> 1
        shown = f"{value:#x}" + (f" ({chr(value)!r})" if 0x20 <= value < 0x7F else "")
        board = _bare_board(spec, exits)
        cause = "; ".join(f"isa-debug-exit {d.id} decodes {_ranges(d)}: {_where(d, board, spec, writer)}; {writer} "
                          f"wrote {shown}, and QEMU exits with (value << 1) | 1" for d in exits)
        return FirmwareEvent("qemu-exited", detail, tuple(d.id for d in exits), cause, True)
    return FirmwareEvent("qemu-exited", detail, (), "no configured device explains it; see qemu.log", True)


def cut_short(spec: MachineSpec, machine: Any) -> FirmwareEvent | None:
    """After a firmware run that ended in a pause: the finding when it was not SeaBIOS's
    end (a shutdown, or a reset before it gave up booting), else None."""
    if machine.firmware_end == "log":
        return None  # the harness saw SeaBIOS give up booting; a reset or shutdown would have come first
    stops = machine.events("SHUTDOWN")
    reason = stops[0].get("data", {}).get("reason", "?") if stops else "?"
    if reason != FIRMWARE_DONE_REASON:
        return FirmwareEvent("shutdown", f"the guest shut the machine down ({reason}) during the firmware",
                             (), "the firmware never ends that way on its own; see firmware.log", False)
    if not spec.firmware_log:
        return None  # without its log an early reset looks like the final one
    try:
        log = machine.firmware_log.read_bytes()
    except OSError:
        return None
    if FIRMWARE_DONE_TEXT in log:
        return None
    last = last_line(log) or "(nothing)"
    blockers = [d for d in spec.devices
                if any(lo <= PCI_CONFIG_PORTS[1] and PCI_CONFIG_PORTS[0] <= hi for lo, hi in _ports(d))]
    cause = f"SeaBIOS's last log line: {last!r}"
    if blockers and spec.machine != "isapc":
        cause += "; " + ", ".join(f"{d.id} ({_ranges(d)})" for d in blockers) + \
            f" decode(s) the PCI configuration ports {PCI_CONFIG_PORTS[0]:#x}-{PCI_CONFIG_PORTS[1]:#x}"
    return FirmwareEvent("early-reset", "the guest reset before the firmware finished (no "
                         f"{FIRMWARE_DONE_TEXT.decode()!r} in its log)",
                         tuple(d.id for d in blockers), cause, False)


__all__ = ["FirmwareEvent", "cut_short", "stalled", "stopped_by", "stopped_during_boot", "stopped_under_agent"]
