r"""Every decoder of a machine and its NT claimant.

Board devices (:func:`harness.devices.board_model`) are resolved against the live machine
(:func:`resolve_board`: the chipset registers that place the ACPI PM block, the SMBus,
the bus-master IDE BAR are read through the HAL as the firmware left them) and handed to
their claimants (:func:`board_parameters`); the machine file's devices without a sample
driver go to the generic legacy driver (:func:`legacy_parameters`).  Setup writes each
claimant's ``Parameters`` from these, the driver claims from them before it touches the
device.  :func:`claimant_lines` then says, for every device, board devices included,
which NT component holds its resources in the ResourceMap, or why nothing does.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

from .builtin import apply_settings
from .config import DeviceSpec, MachineSpec
from .devices import BoardDevice, BoardPci, board_model
from .drivers import DRIVERS
from .drivers.legacy import BOARD_DRIVERS, pack_probe, resource_parameters, resources_of
from .nt.arbiter import Claim, ResourceKind
from .nt.hal import Hal
from .nt.iomgr import HAL_NAME, IoManager
from .nt.resources import INTERFACE_TYPE, PCIBus
from .qemu.layout import Layout, ShadowedRange

Decoded = list[tuple[str, int, int]]


@dataclass(frozen=True)
class ResolvedBoardDevice:
    device: BoardDevice
    decoded: tuple[tuple[str, int, int], ...]


def pci_config_reader(hal: Hal, pci: BoardPci) -> Callable[[int, int], int | None] | None:
    """A reader of the configuration space of the built-in function at ``pci``'s address,
    None when that address holds no function with its IDs.  Found by address, never by
    IDs alone: a user device may be the same chip (q35's 00:1f.2 and a user ich9-ahci)."""
    if (0, pci.slot, pci.function) not in hal.pci_functions():
        return None
    ident = hal.bus.read_config(0, pci.slot, pci.function, 0, 4)
    if (int.from_bytes(ident[:2], "little"), int.from_bytes(ident[2:], "little")) != pci.ids:
        return None
    return lambda offset, size: int.from_bytes(hal.bus.read_config(0, pci.slot, pci.function, offset, size),
                                               "little")


def resolve_board(machine: str, hal: Hal,
                  builtin: Mapping[str, Mapping[str, int]] = MappingProxyType({}),
                  layout: Layout | None = None) -> list[ResolvedBoardDevice]:
    """The board devices of ``machine`` with what each decodes now, under the machine
    file's ``builtin`` settings (a moved floppy controller claims where it decodes).
    With ``layout`` (QEMU's map now), a range a chipset register places counts only where
    QEMU maps a region of the device over it (shadowed or not): the registers are read
    through 0xCF8/0xCFC, and where a card decodes those ports it answers for them (q35's
    ACPI claimed a PM block at 0xff80 from a debug console's 0xe9 bytes)."""
    out = []
    for device in board_model(machine):
        reader = pci_config_reader(hal, device.pci) if device.pci is not None and hal.no_buses else None
        decoded = apply_settings(device.qemu_type, device.decoded_resources(reader), builtin)
        if layout is not None and reader is not None:
            fixed = {(f.kind, f.start, f.start + f.length - 1) for f in device.fixed}
            decoded = [r for r in decoded if r[0] not in ("port", "memory") or r in fixed
                       or _mapped_there(device, r, layout)]
        out.append(ResolvedBoardDevice(device, tuple(decoded)))
    return out


def _mapped_there(device: BoardDevice, resource: tuple[str, int, int], layout: Layout) -> bool:
    kind, first, last = resource
    space = "io" if kind == "port" else "memory"
    return any(r.start <= last and first <= r.end and device.matches(r.owner_type, r.name)
               for r in (*(layout.io if space == "io" else layout.memory),
                         *(s for s in layout.shadowed if s.space == space)))


def board_parameters(board: Iterable[ResolvedBoardDevice], claimant: str) -> dict[str, Any]:
    """The Parameters of board claimant ``claimant``: one subkey per device it claims."""
    return {r.device.name: resource_parameters(resources_of(
                r.decoded, PCIBus if r.device.bars else INTERFACE_TYPE.Isa,
                level_sensitive_shared=r.device.pci_interrupt))
            for r in board if r.device.claimant == claimant and r.decoded}


def board_device_gathered(board: Iterable[ResolvedBoardDevice], service: str, key: str) -> BoardDevice | None:
    """The board device whose Parameters subkey under ``service`` is ``key``, as
    :func:`board_parameters` writes them: what a board claimant gathered under that name is
    the board device's, whatever ids the machine file gives its own devices."""
    for r in board:
        claimant = r.device.claimant
        if claimant in BOARD_DRIVERS and BOARD_DRIVERS[claimant].service_name == service and r.device.name == key:
            return r.device
    return None


def legacy_parameters(devices: Sequence[DeviceSpec], layout: Layout,
                      also: Sequence[tuple[str, int, int]] = ()) -> dict[str, Any]:
    """The generic legacy driver's Parameters: per device, what its model decodes with its
    settings (ISA) or what its BARs and interrupt line are where the firmware put them
    (PCI, bus-relative as HalGetBusData gives them), and its model's probe.  ``also``:
    ranges the driver claims beside them (the VGA miniport's access ranges), for a PCI
    device only where its fixed ranges reach the CPU: a VGA behind a bridge whose VGA
    enable the firmware left off (a second display; SeaBIOS sets it for the primary
    only) answers at its BARs alone, and claiming the legacy block for it would refuse
    the display that does answer there."""
    out: dict[str, Any] = {}
    for dev in devices:
        model = dev.model
        if model.pci is not None:
            decoded = device_decoded(dev, layout)
            if not decoded or dev.id not in {f.qdev_id for f in layout.pci}:
                continue   # (on no bus QEMU reports: no bus scan finds it)
            fn = layout.pci_by_id(dev.id)
            beside = also if forwarded_legacy(dev, fn, layout) else ()
            out[dev.id] = resource_parameters(resources_of([*decoded, *beside], PCIBus, fn.bus,
                                                           level_sensitive_shared=True))
            continue
        probe_base = dev.settings.get(model.probe_base) if model.probe_base else None
        out[dev.id] = resource_parameters(resources_of([*dev.decoded_resources(), *also], INTERFACE_TYPE.Isa),
                                          pack_probe(model.probe), probe_base)
    return out


def device_decoded(dev: DeviceSpec, layout: Layout) -> Decoded:
    """What a machine-file device decodes: its model's ranges with its settings, and for a
    PCI device its assigned BARs and interrupt line in ``layout`` (empty if not there)."""
    if dev.model.pci is None:
        return dev.decoded_resources()
    try:
        fn = layout.pci_by_id(dev.id)
    except KeyError:
        # on no bus QEMU reports (behind a bridge the firmware never numbered): no BARs, but
        # the ports QEMU registers for it itself (a PIIX IDE's compatibility channels) still
        # decode where the flat view shows them (livefuzz round five, seed 5001013)
        return _shown(dev, layout)
    return pci_decoded(fn) + forwarded_legacy(dev, fn, layout)


def forwarded_legacy(dev: DeviceSpec, fn: Any, layout: Layout) -> Decoded:
    """The fixed ports and memory a machine-file PCI device decodes beside its BARs (a
    VGA's legacy ports and window), as its model says, where the CPU reaches them: behind
    a bridge only what the bridges forward (a VGA's 0x3b0-0x3bb, 0x3c0-0x3df and
    0xa0000-0xbffff under the VGA enable; never the Bochs VBE ports 0x1ce-0x1d1), which
    is where the flat view shows the device."""
    if fn.bus == 0:
        return [r for r in dev.decoded_resources() if r[0] in ("port", "memory")]
    # clipped to what is shown: a cirrus decodes 0x3b0-0x3df whole, but the bridges pass
    # on neither 0x3bc-0x3bf nor anything else between the VGA blocks (livefuzz)
    return _shown(dev, layout)


def _shown(dev: DeviceSpec, layout: Layout) -> Decoded:
    """The fixed ports and memory of ``dev``'s model where the flat view shows ``dev``."""
    fixed = [r for r in dev.decoded_resources() if r[0] in ("port", "memory")]
    shown = {"port": [(r.start, r.end) for r in layout.io if r.owner == dev.id],
             "memory": [(r.start, r.end) for r in layout.memory if r.owner == dev.id]}
    return [(kind, max(lo, a), min(hi, b)) for kind, lo, hi in fixed for a, b in shown[kind]
            if a <= hi and lo <= b]


def pci_decoded(fn: Any) -> Decoded:
    """A PCI function's assigned BARs and routed interrupt line (a layout PciFunction)."""
    decoded: Decoded = [("port" if bar.kind == "io" else "memory", bar.base, bar.end)
                        for bar in fn.bars if bar.base is not None and bar.kind != "rom"]
    if fn.interrupt_pin and fn.interrupt_line not in (None, 0, 0xFF):
        decoded.append(("irq", fn.interrupt_line, fn.interrupt_line))
    return decoded


# ---------------------------------------------------------------------------------------
# The report: every device and its claimant


#: A ClaimantLine's status when its claimant holds every range the device decodes.
CLAIMED = "claimed"


@dataclass(frozen=True)
class ClaimantLine:
    """One device (a built-in one by its :attr:`BoardDevice.label`) and who claims it."""

    device: str
    claimant: str | None     # the NT service holding its claims (None: nothing claims it)
    status: str              # "claimed", "refused" or "unclaimed"
    detail: str

    def describe(self) -> str:
        if self.status == "unclaimed":
            return f"{self.device}: unclaimed — {self.detail}"
        return f"{self.device}: {self.status} by {self.claimant}" + (f" — {self.detail}" if self.detail else "")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def service_of(claimant: str, hal_name: str = HAL_NAME) -> str:
    """The NT service name under which claimant ``claimant`` holds its claims (the HAL's:
    ``hal_name``, the name of the HAL that runs, IoManager.hal_name)."""
    if claimant == "hal":
        return hal_name
    if claimant in BOARD_DRIVERS:
        return BOARD_DRIVERS[claimant].service_name
    return DRIVERS[claimant].service_name


_KINDS = {"port": ResourceKind.PORT, "memory": ResourceKind.MEMORY, "irq": ResourceKind.INTERRUPT,
          "dma": ResourceKind.DMA}


def _covered(claims: list[Claim], kind: str, first: int, last: int) -> bool:
    wanted = _KINDS[kind]
    return _covered_spans([(c.start, c.end) for c in claims if c.kind is wanted and not c.empty], first, last)


def _covered_spans(spans: list[tuple[int, int]], first: int, last: int) -> bool:
    """Whether the (start, end) spans together cover first..last."""
    spans = sorted(spans)
    cursor = first
    for start, end in spans:
        if start <= cursor <= end:
            cursor = end + 1
        if cursor > last:
            return True
    return cursor > last


def _fate(io: IoManager, service: str, name: str) -> str:
    """What the driver said about the device it gathered as ``name``, if anything."""
    driver_object = io.drivers.get(service)
    outcomes = getattr(getattr(driver_object, "driver", None), "outcomes", [])
    for outcome in outcomes:
        if outcome.config == name and not outcome.started:
            return f"{outcome.status.name}" + (f": {outcome.detail}" if outcome.detail else "")
    return ""


def _line(io: IoManager, held: Mapping[str, list[Claim]], device: str, claimant: str | None, reason: str,
          decoded: Iterable[tuple[str, int, int]], config_name: str, hidden_by: Sequence[str] = ()) -> ClaimantLine:
    if claimant is None:
        return ClaimantLine(device, None, "unclaimed", reason)
    service = service_of(claimant, io.hal_name)
    if service not in io.drivers and claimant != "hal":
        return ClaimantLine(device, None, "unclaimed", f"its driver {service} was not loaded "
                                                        "(the machine file's drivers list leaves it out)")
    claims = held.get(service, [])
    ranges = [r for r in decoded if r[0] in ("port", "memory")] or list(decoded)
    if not ranges:   # a floppy drive: what its driver claims is its controller
        if any(not c.empty for c in claims):
            return ClaimantLine(device, service, CLAIMED, "decodes nothing itself; its controller is claimed")
        return ClaimantLine(device, service, "unclaimed", f"{service} holds no claim for its controller")
    missing = [r for r in ranges if not _covered(claims, *r)]
    fate = _fate(io, service, config_name) if claimant != "hal" else ""
    if not missing:
        holders = ", ".join(sorted({c.owner.device or c.owner.driver for c in claims
                                    if any(c.start <= r[2] and r[1] <= c.end for r in ranges)}))
        if fate:   # covered by another device of its driver (two cards at one base): not its claim
            return ClaimantLine(device, service, "refused", f"{service} holds what it decodes for {holders} "
                                                            f"only, not for it ({fate})")
        if hidden_by:   # the same, found in the hardware: a sibling answers wherever it decodes
            return ClaimantLine(device, service, "unclaimed", f"{service} holds what it decodes for {holders} "
                                                              f"only: {', '.join(hidden_by)} answers there instead")
        return ClaimantLine(device, service, CLAIMED, holders if claimant != "hal" else "")
    shown = ", ".join(f"{k} {a:#x}-{b:#x}" if k in ("port", "memory") else f"{k} {a}" for k, a, b in missing)
    return ClaimantLine(device, service, "refused" if fate else "unclaimed",
                        f"{service} holds no claim on {shown}" + (f" ({fate})" if fate else ""))


def claimant_lines(io: IoManager, spec: MachineSpec, board: Sequence[ResolvedBoardDevice],
                   layout: Layout) -> list[ClaimantLine]:
    """Every device of the machine, the board's first, with its NT claimant's claim."""
    held: dict[str, list[Claim]] = {}  # each service's claims, in the arbiter's order
    for claim in io.arbiter.claims():
        held.setdefault(claim.owner.driver, []).append(claim)
    service = {d.id: service_of(d.driver, io.hal_name) for d in spec.devices if d.driver}

    def won_by_sibling(claimant: str | None, decoded: Iterable[tuple[str, int, int]],
                       lost: list[ShadowedRange]) -> list[str]:
        """The devices of the same claimant that take every range this one decodes (two
        controllers at one base: the driver's one claim there is theirs), else []."""
        if claimant is None or not lost:
            return []
        mine = service_of(claimant, io.hal_name)
        winners = set()
        for s in lost:   # by the winning region: an owner-less one may bear a device's id
            devices = s.device_winners(layout, service)
            if len(devices) != len(s.hidden_by) or any(service[w] != mine for w in devices):
                return []
            winners.update(devices)
        spans = [("port" if s.space == "io" else "memory", s.start, s.end) for s in lost]
        for kind, first, last in decoded:
            if kind in ("port", "memory") and not _covered_spans(
                    [(a, b) for k, a, b in spans if k == kind], first, last):
                return []
        return sorted(winners)

    out = []
    for r in board:
        lost = [s for s in layout.shadowed if r.device.matches(s.owner_type, s.name)]
        out.append(_line(io, held, r.device.label, r.device.claimant, r.device.reason, r.decoded,
                         r.device.name, won_by_sibling(r.device.claimant, r.decoded, lost)))
    for dev in spec.devices:
        decoded = device_decoded(dev, layout)
        lost = [s for s in layout.shadowed if s.owner == dev.id]
        out.append(_line(io, held, dev.id, dev.driver, dev.unclaimed_reason, decoded, dev.id,
                         won_by_sibling(dev.driver, decoded, lost)))
    return out
