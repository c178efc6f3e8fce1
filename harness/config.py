"""Machine specs: YAML under ``configs/machines/`` → frozen, validated :class:`MachineSpec`.

A machine file names the machine type, the accelerator policy and the devices to add,
each with an ``id`` and any of its model's properties::

    name: default
    machine: pc            # pc | q35 | isapc
    accel: tcg             # tcg | kvm | auto
    memory: 128            # MiB
    devices:
      - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}
      - {model: e1000, id: nic0, addr: 3}
      - {model: pci-bridge, id: br0, addr: 7}
      - {model: e1000, id: nic1, bus: br0, addr: 1}

Everything is checked here, before QEMU runs: unknown keys and models, values out of the
range QEMU accepts without aborting or truncating (irq ≥ 16, iobase > 0xffff), strings
that could inject options, duplicate ids and PCI addresses, devices the machine type
cannot hold.  Each error names file, line and field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from .actions import Action, parse_actions
from .builtin import parse_builtin
from .packagedata import resolve_config
from .devices import MACHINE_KINDS, Catalog, DeviceModel, check_value, load_catalog
from .names import ACCEL_POLICIES, BOARD_CONTROLLER_KEY, HAL_CHOICES, RESERVED_ID_PREFIX  # noqa: F401  (re-exported)
from .errors import ConfigError, HarnessError, unknown_name
from .verdict import CLEAN, VERDICTS
from .yamlio import Node, get_bool, get_int, get_list, get_str, load_files, load_text

#: SeaBIOS writes its debug log to this port whatever decodes it (measured on QEMU 7.2:
#: a pvpanic there panics the guest, an isa-debug-exit there ends QEMU with the first
#: byte, 'S').  With ``firmware_log: true`` the harness's own isa-debugcon sits there.
FIRMWARE_LOG_PORT = 0x402
#: The one ISA bus every machine kind has, as a machine file names it (QEMU's ``isa.0``).
ISA_BUS = "isa"
ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
ID_RULE = "a letter, then up to 31 letters, digits, '_' or '-'"
#: A name starts run-folder names: no leading '-' or '.', which a shell command or a
#: glob over the run root would take for an option or a hidden file.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "a letter or digit, then letters, digits, '_', '.' or '-', at most 64 in all"
_MACHINE_KEYS = frozenset({"name", "description", "machine", "accel", "memory", "devices",
                           "firmware_log", "drivers", "expect", "after_firmware", "builtin"})
_DRIVER_KEYS = frozenset({"name", "devices", "override_conflict", "claim"})
#: How a sample driver claims ports (harness.drivers.base.CLAIM_STYLES): what the device
#: decodes, or the card's whole jumper block as a retail driver does.
CLAIM_STYLES = ("decoded", "block")
_DEVICE_KEYS = frozenset({"model", "id", "bus", "addr", "multifunction", "controller", "unit", "channel",
                          "driver"})
#: The machine's own IDE buses (ide.0 ...) and the drives each takes, measured with
#: info qtree: PIIX3 and isapc's two isa-ide have two channels of two; q35's ICH9 AHCI six
#: ports of one.
BUILTIN_IDE = {"pc": (2, 2), "isapc": (2, 2), "q35": (6, 1)}
#: The controller model a drive of each bus kind may name as its 'controller'.
DRIVE_CONTROLLERS = {"floppy": "isa-fdc", "ide": "isa-ide"}
#: The generic legacy driver (harness.drivers.legacy): the claimant of every device whose
#: model names no sample driver.
GENERIC_DRIVER = "legacy"
#: ``driver: none`` on a device: nothing claims it (a machine where no driver is installed).
NO_DRIVER = "none"
#: The VGA miniport: the claimant of a device that decodes the legacy VGA memory window
#: (or is a PCI display controller, class 0x0300) and has no sample driver.
VGA_DRIVER = "vga"
VGA_WINDOW = 0xA0000
PCI_CLASS_VGA = 0x0300


@dataclass(frozen=True)
class DeviceSpec:
    """One device of a machine, with every setting resolved."""

    id: str
    model: DeviceModel
    #: Every property of the model that has a value: the configured ones, else the
    #: defaults QEMU would pick for this instance (so expectations are explicit).
    settings: Mapping[str, Any]
    #: The property names the config set itself.
    explicit: frozenset[str]
    bus: str | None = None  # id of the parent bridge / root port / floppy controller
    slot: int | None = None
    function: int = 0
    multifunction: bool = False
    unit: int | None = None  # floppy drive unit, IDE master (0) / slave (1)
    #: IDE drive on the machine's own controller: the bus number (ide.N).
    channel: int | None = None
    line: int = field(default=0, compare=False)
    #: ``driver: none`` in the machine file: no driver claims this device.
    no_driver: bool = False

    @property
    def driver(self) -> str | None:
        """The NT driver that claims this device: its model's sample driver, else the
        generic legacy driver; None for ``driver: none``, bridges (the HAL's bus handler
        programs their windows) and devices that decode nothing themselves."""
        if self.no_driver or self.model.bridge:
            return None
        if self.model.nt_driver:
            return self.model.nt_driver
        if (self.model.pci is not None and self.model.pci.class_code == PCI_CLASS_VGA) or any(
                f.kind == "memory" and f.start == VGA_WINDOW for f in self.model.fixed):
            return VGA_DRIVER
        if not (self.model.ports or self.model.fixed or self.model.irq_properties
                or self.model.dma_properties or (self.model.pci and self.model.pci.bars)):
            return None
        return GENERIC_DRIVER

    @property
    def unclaimed_reason(self) -> str:
        """Why :attr:`driver` is None (empty when a driver claims the device)."""
        if self.no_driver:
            return f"driver: none (line {self.line})"
        if self.model.bridge:
            return ("a bridge: the HAL's PCI bus handler programs its windows; no NT driver claims the "
                    "bridge's own BAR (QEMU's MSI-X table of a root port, a pci-bridge's SHPC)")
        if self.driver is None:
            return "decodes nothing itself (its controller does)"
        return ""

    def decoded_resources(self) -> list[tuple[str, int, int]]:
        return self.model.decoded_resources(self.settings)


@dataclass(frozen=True)
class DriverSpec:
    """One NT driver the main job loads, in order, with the devices it is configured for
    (their settings become its ``Parameters``) and whether it overrides conflicts."""

    name: str
    devices: tuple[str, ...]
    override_conflict: bool = False
    line: int = field(default=0, compare=False)
    claim: str = "decoded"


@dataclass(frozen=True)
class MachineSpec:
    """A validated machine file: the machine type, accelerator, memory, devices and drivers."""

    name: str
    machine: str
    accel: str
    memory_mib: int
    devices: tuple[DeviceSpec, ...]
    firmware_log: bool = True
    description: str = ""
    source: str = "<inline>"
    drivers: tuple[DriverSpec, ...] = ()
    #: The verdict a config is written to show (harness.verdict): "clean", "warning" or
    #: "conflict".
    expect: str = "clean"
    #: Steps after the firmware (harness.actions): BAR moves, config/port writes, reads.
    after_firmware: tuple[Action, ...] = ()
    #: Settings of the board's own devices (harness.builtin): name -> {property: value}.
    builtin: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))

    def device(self, device_id: str) -> DeviceSpec:
        for dev in self.devices:
            if dev.id == device_id:
                return dev
        raise KeyError(device_id)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able form that round-trips through :func:`parse_machine`."""
        devices = []
        for dev in self.devices:
            item: dict[str, Any] = {"model": dev.model.name, "id": dev.id}
            item.update({k: dev.settings[k] for k in sorted(dev.explicit)})
            if dev.no_driver:
                item["driver"] = NO_DRIVER
            if dev.bus is not None:
                item["controller" if dev.model.bus == "floppy" else "bus"] = dev.bus
            if dev.slot is not None:
                item["addr"] = f"{dev.slot:#x}.{dev.function}"
            if dev.multifunction:
                item["multifunction"] = True
            if dev.unit is not None:
                item["unit"] = dev.unit
            if dev.channel is not None:
                item["channel"] = dev.channel
            devices.append(item)
        drivers = [{"name": d.name, "devices": list(d.devices), "override_conflict": d.override_conflict,
                    **({"claim": d.claim} if d.claim != "decoded" else {})} for d in self.drivers]
        out = {"name": self.name, "description": self.description, "machine": self.machine,
               "accel": self.accel, "memory": self.memory_mib, "firmware_log": self.firmware_log,
               "devices": devices, "drivers": drivers, "expect": self.expect}
        if self.after_firmware:
            out["after_firmware"] = [a.to_dict() for a in self.after_firmware]
        if self.builtin:
            out["builtin"] = {name: dict(props) for name, props in self.builtin.items()}
        return out

    def config_hash(self) -> str:
        """A short stable hash of the resolved spec (for reports and cache keys)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


#: The HAL a job runs: ``pic`` over QEMU's HMP on the machine paused after its firmware;
#: ``apic`` over the probe guest's agent (interrupts through the I/O APIC and the local
#: APIC, taken by the guest's CPU); ``auto`` picks ``apic`` on q35 and ``pic`` elsewhere.
#: (Here, not in harness.job, so the CLI can decide before importing the NT model.)


def hal_for(spec: MachineSpec, choice: str = "auto") -> str:
    """The HAL ``choice`` means on ``spec`` (``pic`` or ``apic``)."""
    if choice not in HAL_CHOICES:
        raise HarnessError(unknown_name("HAL", choice, HAL_CHOICES, label="HALs"))
    if choice == "auto":
        return "apic" if spec.machine == "q35" else "pic"
    if choice == "apic" and spec.machine == "isapc":
        raise HarnessError(f"{spec.source}: an isapc machine has no I/O APIC; the APIC HAL cannot run on it")
    return choice


#: Machine files whose parsed documents the cache keeps besides the one just read.
MACHINE_FILES_CACHED = 64


def load_machine(path: str | Path, catalog: Catalog | None = None, *,
                 accel: str | None = None) -> MachineSpec:
    """Read and validate a machine file (or ``example:NAME``, a shipped example).
    ``accel`` overrides the file's policy."""
    path = resolve_config(path)
    document, = load_files([Path(path)], "machines", keep_others=MACHINE_FILES_CACHED)
    return parse_machine(document, str(path), catalog, accel=accel)


def parse_machine_text(text: str, source: str = "<inline>", catalog: Catalog | None = None, *,
                       accel: str | None = None) -> MachineSpec:
    return parse_machine(load_text(text, source), source, catalog, accel=accel)


def parse_machine(doc: Any, source: str, catalog: Catalog | None = None, *,
                  accel: str | None = None) -> MachineSpec:
    catalog = catalog if catalog is not None else load_catalog()
    if not isinstance(doc, Node):
        raise ConfigError("a machine file must be a YAML mapping", source=source)
    doc.check_keys(_MACHINE_KEYS, {"machine"})
    machine = get_str(doc, "machine", choices=MACHINE_KINDS)
    policy = get_str(doc, "accel", choices=ACCEL_POLICIES, default="tcg")
    if accel is not None:
        if accel not in ACCEL_POLICIES:
            raise ConfigError(unknown_name("accelerator", accel, ACCEL_POLICIES), field="accel")
        policy = accel
    devices = _parse_devices(doc, machine, catalog)
    drivers = _parse_drivers(doc, devices, catalog)
    firmware_log = get_bool(doc, "firmware_log", default=True)
    if firmware_log:
        _keep_firmware_log_port_free(doc, devices)
    return MachineSpec(
        name=_name(doc, source),
        machine=machine,
        accel=policy,
        memory_mib=get_int(doc, "memory", lo=16, hi=16384, default=128, decimal=True),
        devices=devices,
        firmware_log=firmware_log,
        description=get_str(doc, "description", default=""),
        source=source,
        drivers=drivers,
        expect=get_str(doc, "expect", choices=VERDICTS, default=CLEAN),
        after_firmware=parse_actions(doc, devices, machine),
        builtin=parse_builtin(doc, machine),
    )


def _parse_drivers(doc: Node, devices: tuple[DeviceSpec, ...], catalog: Catalog) -> tuple[DriverSpec, ...]:
    """The ``drivers`` list (a name, or a mapping with ``name``, ``devices`` and
    ``override_conflict``); when absent, every driver the devices need, in reverse device
    order: QEMU maps devices in file order and gives a contested port, IRQ line or DMA
    channel to the device mapped last, so its driver starts first and the shadowed
    device's driver meets that claim before it touches a register (an NT conflict, not a
    device that does not answer).  Each driver's own devices stay in file order (a driver
    starts the sibling QEMU gives a contested resource first itself: NtDriver.start_order)."""
    known = [*catalog.nt_drivers, GENERIC_DRIVER, VGA_DRIVER]
    if "drivers" not in doc:
        order = list(dict.fromkeys(d.driver for d in reversed(devices) if d.driver))
        return tuple(DriverSpec(name, tuple(d.id for d in devices if d.driver == name))
                     for name in order)
    out: list[DriverSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(get_list(doc, "drivers")):
        node, line = (item, item.line) if isinstance(item, Node) else (doc, doc.line_of("drivers"))
        claim = "decoded"
        if isinstance(item, str):
            name, wanted, override = item, None, False
        elif isinstance(item, Node):
            item.check_keys(_DRIVER_KEYS, {"name"})
            name = get_str(item, "name")
            wanted = get_list(item, "devices", default=None)
            override = get_bool(item, "override_conflict", default=False)
            claim = get_str(item, "claim", choices=CLAIM_STYLES, default="decoded")
        else:
            raise doc.error("drivers", f"item {index} must be a driver name or a mapping with 'name'")
        if name not in known:
            raise node.error("name" if isinstance(item, Node) else "drivers", unknown_name("driver", name, known))
        if name in seen:
            raise node.error("name" if isinstance(item, Node) else "drivers",
                             f"driver {name!r} is listed twice (first on line {seen[name]})")
        seen[name] = line
        mine = [d.id for d in devices if d.driver == name]
        if wanted is None:
            chosen = tuple(mine)
        else:
            for dev_id in wanted:
                if dev_id not in mine:
                    raise item.error("devices", f"{dev_id!r} is not a device of this machine that "
                                                f"{name} drives (those are: {', '.join(mine) or 'none'})")
            chosen = tuple(wanted)
        if claim == "block" and name in (GENERIC_DRIVER, VGA_DRIVER):
            raise item.error("claim", f"{GENERIC_DRIVER} claims what each device decodes; "
                                      "'claim: block' is for sample drivers")
        out.append(DriverSpec(name, chosen, override, line, claim))
    return tuple(out)


def _name(doc: Node, source: str) -> str:
    default = "inline" if source.startswith("<") else Path(source).stem
    name = get_str(doc, "name", default=default)
    if not NAME_RE.fullmatch(name):
        raise doc.error("name", f"{name!r} is not a valid machine name: {NAME_RULE}")
    return name


def _parse_devices(doc: Node, machine: str, catalog: Catalog) -> tuple[DeviceSpec, ...]:
    items = get_list(doc, "devices", default=[])
    seen_ids: dict[str, tuple[str, str, int]] = {}
    instances: dict[str, int] = {}
    out: list[DeviceSpec] = []
    for index, item in enumerate(items):
        if not isinstance(item, Node):
            raise doc.error("devices", f"item {index} must be a mapping with at least 'model' and 'id'")
        model = catalog.lookup(get_str(item, "model"), item, "model")
        allowed = _DEVICE_KEYS | set(model.properties)
        item.check_keys(allowed, {"model", "id"})
        dev_id = get_str(item, "id")
        if not ID_RE.fullmatch(dev_id):
            raise item.error("id", f"{dev_id!r} is not a valid id: {ID_RULE}")
        if dev_id.lower().startswith(RESERVED_ID_PREFIX):
            raise item.error("id", f"ids starting with {RESERVED_ID_PREFIX!r} are reserved for "
                                   "the harness's own chardevs and devices")
        # Case-blind: each id names a registry key (Services\<driver>\Parameters\<id>),
        # and registry keys are case-insensitive, so 'COM3' would overwrite 'com3''s settings.
        if dev_id.lower() in seen_ids:   # the first may come from another file (a matrix's base)
            first_id, first_source, first_line = seen_ids[dev_id.lower()]
            first = f"line {first_line}" if first_source == item.source else f"{first_source}:{first_line}"
            if first_id == dev_id:
                raise item.error("id", f"duplicate id {dev_id!r} (first on {first})")
            raise item.error("id", f"id {dev_id!r} differs from {first_id!r} (on {first}) only in case: "
                                   "it names the same registry key (Parameters\\<id>; keys are case-insensitive)")
        seen_ids[dev_id.lower()] = (dev_id, item.source, item.line)
        if machine not in model.machines:
            raise item.error("model", f"{model.name} is not available on machine type {machine!r} "
                                      f"(supported: {', '.join(model.machines)})")
        instance = instances.get(model.name, 0)
        instances[model.name] = instance + 1
        chosen = model.instance_property
        if chosen is not None and chosen in item:
            # QEMU's 'index' picks the port's defaults (COM2 is index 1), not the count.
            check_value(item, chosen, model.properties[chosen], item[chosen])
            instance = item[chosen]
        elif chosen is not None and instance not in model.properties[chosen].choices:
            # QEMU numbers them in -device order and refuses one numbered past the last
            # ("Max. supported number of parallel ports is 3"; livefuzz round three)
            highest = max(model.properties[chosen].choices)
            raise item.error("model", f"this is {model.name} number {instance + 1}: QEMU gives it {chosen} {instance} "
                                      f"and takes {chosen} 0-{highest} only; give it an explicit {chosen!r} "
                                      f"of 0-{highest} (it then takes that one's default base and IRQ)")
        settings = dict(model.defaults_for(instance))
        explicit = set()
        for prop, spec in model.properties.items():
            if prop in item:
                check_value(item, prop, spec, item[prop])
                settings[prop] = item[prop]
                explicit.add(prop)
        slot, function = _parse_addr(item) if "addr" in item else (None, 0)
        if model.bus in ("pci", "pcie") or model.bridge:
            pass
        elif "addr" in item or "multifunction" in item:
            raise item.error("addr" if "addr" in item else "multifunction",
                             f"{model.name} is not a PCI device")
        bus = get_str(item, "bus", default=None)
        controller = get_str(item, "controller", default=None)
        if model.bus in DRIVE_CONTROLLERS:
            if bus is not None:
                raise item.error("bus", f"a {model.bus} drive names its 'controller', not a bus")
            bus = controller
        elif controller is not None:
            raise item.error("controller", "only floppy and IDE drives have a controller")
        no_driver = False
        if "driver" in item:
            no_driver = get_str(item, "driver", choices=(NO_DRIVER,)) == NO_DRIVER
        unit = get_int(item, "unit", lo=0, hi=1, default=None, decimal=True)
        if unit is not None and model.bus not in DRIVE_CONTROLLERS:
            raise item.error("unit", "only floppy and IDE drives have a unit")
        channel = _parse_channel(item, machine, model, controller, unit)
        out.append(DeviceSpec(
            id=dev_id, model=model, settings=MappingProxyType(settings),
            explicit=frozenset(explicit), bus=bus, slot=slot, function=function,
            multifunction=get_bool(item, "multifunction", default=False), unit=unit,
            channel=channel, line=item.line, no_driver=no_driver))
    for dev, item in zip(out, items):
        if dev.driver == "floppy" and dev.id.lower() == BOARD_CONTROLLER_KEY.lower():
            raise item.error("id", f"{dev.id!r} is the Floppy driver's Parameters subkey for the board's "
                                   "own controller: give this controller another id")
    _check_topology(doc, machine, out, items)
    place_pci_functions(machine, out, items)
    _check_drive_places(machine, out, items)
    _check_graphic_consoles(out, items)
    _check_one_per_machine(out, items)
    return tuple(out)


def _check_graphic_consoles(devices: list[DeviceSpec], items: list[Node]) -> None:
    """QEMU numbers graphic consoles in command-line (file) order, and a device that must
    be console 0 (a primary qxl-vga) stops QEMU at launch behind another display: say so
    here, at its line (measured in tests/test_device_models.py)."""
    first: DeviceSpec | None = None
    for dev, item in zip(devices, items):
        if dev.model.graphic_console == "first" and first is not None:
            raise item.error("model", f"{dev.model.name} {dev.id!r} must be the first display device of the "
                                      f"machine (QEMU's console 0), but {first.model.name} {first.id!r} comes "
                                      f"before it: list {dev.id!r} first")
        if dev.model.graphic_console != "none" and first is None:
            first = dev


def _keep_firmware_log_port_free(doc: Node, devices: tuple[DeviceSpec, ...]) -> None:
    """Refuse a device on the firmware-log port while the harness listens there: the
    harness's debugcon would lose the log to it, and the firmware's log bytes would hit
    the device (README: "The firmware-log port")."""
    items = get_list(doc, "devices", default=[])
    for dev, item in zip(devices, items):
        clash = on_firmware_log_port(dev.decoded_resources())
        if clash is not None:
            lo, hi = clash
            placed = [p for p in sorted(dev.explicit) if dev.model.properties[p].kind == "port"]
            raise item.error(placed[0] if placed else "model",
                             f"{dev.model.name} {dev.id!r} decodes {lo:#x}-{hi:#x}, which holds port "
                             f"{FIRMWARE_LOG_PORT:#x}, the harness's firmware-log port (SeaBIOS writes "
                             "its debug log there); move the device, or set 'firmware_log: false' to "
                             "give the port to it (the firmware then writes its log to the device)")


def on_firmware_log_port(resources: list[tuple[str, int, int]]) -> tuple[int, int] | None:
    """The port range among ``resources`` (as ``decoded_resources`` lists them) that
    holds :data:`FIRMWARE_LOG_PORT`, or None."""
    return next(((lo, hi) for kind, lo, hi in resources if kind == "port" and lo <= FIRMWARE_LOG_PORT <= hi), None)


def _check_one_per_machine(devices: list[DeviceSpec], items: list[Node]) -> None:
    """QEMU exits at launch on a second device of what it takes one of per machine (the
    models' ``one_per_machine``): say so here, at the second one's line."""
    first: dict[str, tuple[DeviceSpec, Node]] = {}
    for dev, item in zip(devices, items):
        kind = dev.model.one_per_machine
        if kind is None:
            continue
        if kind in first:
            other, where = first[kind]
            raise item.error("model", f"QEMU takes one {kind} device per machine: {other.id!r} "
                                      f"({other.model.name}, line {where.line}) is one already")
        first[kind] = (dev, item)


def _check_drive_places(machine: str, devices: list[DeviceSpec], items: list[Node]) -> None:
    """Two drives in one place, or more drives on a bus than it takes, would stop QEMU at
    launch: say so here, at the drive's line.  A bus is a controller of the file or the
    board's own (IDE channel, floppy controller); each takes two drives, q35's AHCI ports
    one.  A drive without a unit takes the first free one when QEMU reaches it, in file
    order, as QEMU does; a later explicit unit can then find it taken."""
    taken: dict[tuple[str, Any], dict[int, str]] = {}
    for dev, item in zip(devices, items):
        if dev.model.bus not in DRIVE_CONTROLLERS:
            continue
        here = taken.setdefault((dev.model.bus, dev.bus if dev.bus is not None else ("board", dev.channel)), {})
        units = BUILTIN_IDE[machine][1] if dev.model.bus == "ide" and dev.bus is None else 2
        where = dev.bus if dev.bus is not None else (
            f"ide.{dev.channel}" if dev.model.bus == "ide" else "the built-in floppy controller")
        if dev.unit is not None and dev.unit in here:
            raise item.error("unit", f"unit {dev.unit} of {where} is already {here[dev.unit]!r}")
        free = [u for u in range(units) if u not in here]
        if not free:
            raise item.error("model", f"{where} takes {units} drive(s): {', '.join(here.values())} already sit there")
        here[dev.unit if dev.unit is not None else free[0]] = dev.id


def _parse_channel(item: Node, machine: str, model: DeviceModel, controller: str | None,
                   unit: int | None) -> int | None:
    """The built-in IDE bus an IDE drive sits on (None for one on an isa-ide of the file)."""
    if model.bus != "ide":
        if "channel" in item:
            raise item.error("channel", "only IDE drives have a channel")
        return None
    if controller is not None:
        if "channel" in item:
            raise item.error("channel", "a drive on an isa-ide has no channel: the isa-ide is one")
        return None
    channels, units = BUILTIN_IDE[machine]
    channel = get_int(item, "channel", lo=0, hi=channels - 1, default=0, decimal=True)
    if unit is not None and unit >= units:
        raise item.error("unit", f"{machine}'s built-in IDE buses take one drive each (unit 0)")
    return channel


def _parse_addr(item: Node) -> tuple[int, int]:
    value = item["addr"]
    if isinstance(value, int) and not isinstance(value, bool):
        slot, function = value, 0
    elif isinstance(value, str) and re.fullmatch(r"(0x)?[0-9a-fA-F]{1,2}(\.[0-7])?", value):
        slot_text, _, fn_text = value.partition(".")
        slot, function = int(slot_text, 16), int(fn_text or "0")
    else:
        raise item.error("addr", f"expected a PCI slot such as 3, '0x1f' or '9.1', got {value!r}")
    if not 0 <= slot <= 31:
        raise item.error("addr", f"PCI slot {slot} out of range 0..31")
    return slot, function


#: The board's own PCI functions on bus 0 (slot, function) -> (what, multifunction slot),
#: measured in tests/test_config.py::test_board_pci_functions_are_measured: QEMU refuses
#: a -device on them, and a function > 0 beside a single-function function 0.
BOARD_PCI_FUNCTIONS: Mapping[str, Mapping[tuple[int, int], tuple[str, bool]]] = {
    "pc": {(0, 0): ("i440FX host bridge", False), (1, 0): ("PIIX3 ISA bridge", True),
           (1, 1): ("PIIX3 IDE", True), (1, 3): ("PIIX4 power management", True)},
    "q35": {(0, 0): ("MCH host bridge", False), (0x1F, 0): ("ICH9 LPC bridge", True),
            (0x1F, 2): ("ICH9 AHCI", True), (0x1F, 3): ("ICH9 SMBus", True)},
}


def place_pci_functions(machine: str, devices: Sequence[DeviceSpec],
                        items: Sequence[Node] | None = None) -> dict[str, tuple[int, int]]:
    """Each PCI device's (slot, function) on its bus as QEMU 7.2 places it, devices created
    in file order after the board's own; a device without ``addr`` gets the lowest slot
    whose function 0 is free (pci_bus_devfn_available).  Refused, naming the file, line and
    field (with ``items``, else HarnessError), what QEMU refuses or hides from every PCI scan:
    a taken address, a function > 0 beside a single-function function 0 (either order), a
    function > 0 of a slot with no function 0 (SeaBIOS and NT skip the slot, measured: its
    BARs stay unassigned), a slot other than 0 behind a PCIe root port (its config reads
    return all ones, measured: pcie_has_upstream_port)."""
    taken: dict[tuple[str | None, int, int], str] = {
        (None, slot, fn): f"the board's {what}" for (slot, fn), (what, _) in BOARD_PCI_FUNCTIONS.get(machine, {}).items()}
    single: dict[tuple[str | None, int], str] = {
        (None, slot): f"the board's {what}" for (slot, fn), (what, multi) in BOARD_PCI_FUNCTIONS.get(machine, {}).items()
        if fn == 0 and not multi}
    bridges = {d.id: d.model.bridge for d in devices if d.model.bridge}
    placed: dict[str, tuple[int, int]] = {}
    where: dict[tuple[str | None, int], int] = {}

    def refuse(index: int, field: str, message: str) -> HarnessError:
        if items is not None:
            return items[index].error(field, message)
        return HarnessError(f"{devices[index].id}: {message}")

    for index, dev in enumerate(devices):
        if dev.model.bus not in ("pci", "pcie") and not dev.model.bridge:
            continue
        bus_name = dev.bus or "pci.0"
        if dev.slot is None:
            free = [s for s in range(32) if (dev.bus, s, 0) not in taken]
            if not free:
                raise refuse(index, "model", f"no free PCI slot left on bus {bus_name} for {dev.id!r}")
            slot, function = free[0], 0
        else:
            slot, function = dev.slot, dev.function
        field = "addr" if dev.slot is not None else "model"
        if (dev.bus, slot, function) in taken:
            raise refuse(index, field, f"PCI address {slot:#x}.{function} on bus {bus_name} is already "
                                       f"used by {taken[dev.bus, slot, function]}")
        if bridges.get(dev.bus) == "pcie-root-port" and slot != 0:
            raise refuse(index, field, f"a PCIe root port has one device, at slot 0: QEMU hides slot "
                                       f"{slot:#x} behind {dev.bus!r} (its configuration reads return all ones)")
        if function > 0 and (dev.bus, slot) in single:
            raise refuse(index, field, f"function {function} of slot {slot:#x} on bus {bus_name}: function 0 "
                                       f"there is {single[dev.bus, slot]}, a single-function device "
                                       "(give it 'multifunction: true')")
        if function == 0 and not dev.multifunction:
            others = [owner for (b, s, f), owner in taken.items() if (b, s) == (dev.bus, slot) and f > 0]
            if others:
                raise refuse(index, field, f"slot {slot:#x} on bus {bus_name} already holds {others[0]} at a "
                                           "function > 0, so function 0 needs 'multifunction: true'")
            single[dev.bus, slot] = repr(dev.id)
        taken[dev.bus, slot, function] = repr(dev.id) + ("" if dev.slot is not None else
                                                         " (it has no addr: QEMU gave it the lowest free slot)")
        placed[dev.id] = (slot, function)
        where.setdefault((dev.bus, slot), index)
    for (bus, slot), index in where.items():
        if (bus, slot, 0) not in taken:
            raise refuse(index, "addr", f"slot {slot:#x} on bus {bus or 'pci.0'} has no function 0: a PCI scan "
                                        "(SeaBIOS, NT) skips the slot, so nothing would find this function")
    return placed


def _check_topology(doc: Node, machine: str, devices: list[DeviceSpec], items: list[Node]) -> None:
    by_id = {d.id: (d, items[i]) for i, d in enumerate(devices)}
    for dev, item in ((d, items[i]) for i, d in enumerate(devices)):
        if dev.model.bus in ("pci", "pcie"):
            if machine == "isapc":
                raise item.error("model", "isapc has no PCI bus")
            if dev.bus is not None and dev.model.root_bus_only:
                raise item.error("bus", f"QEMU takes a {dev.model.name} only on the root bus, not behind a bridge")
            if dev.bus is not None:
                parent = by_id.get(dev.bus)
                if parent is None or not parent[0].model.bridge:
                    raise item.error("bus", f"{dev.bus!r} is not the id of a pci-bridge or "
                                            "pcie-root-port defined earlier in this file")
                if devices.index(parent[0]) > devices.index(dev):
                    raise item.error("bus", f"bridge {dev.bus!r} must be listed before the devices behind it")
        if dev.model.bus == "isa" and dev.bus not in (None, ISA_BUS):
            raise item.error("bus", f"{dev.bus[:80]!r} is not a bus of this machine: an ISA device "
                                    f"sits on the board's ISA bus ({ISA_BUS!r}, or leave 'bus' out)")
        wanted = DRIVE_CONTROLLERS.get(dev.model.bus)
        if wanted is not None and dev.bus is not None:
            parent = by_id.get(dev.bus)
            if parent is None or parent[0].model.qemu_driver != wanted:
                raise item.error("controller", f"{dev.bus!r} is not the id of an {wanted} in this file")
        if dev.model.bus == "floppy" and dev.bus is None and machine == "q35":
            raise item.error("model", "q35 has no built-in floppy controller; add an isa-fdc "
                                      "and name it as 'controller'")
