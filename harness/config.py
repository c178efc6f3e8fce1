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
from typing import Any, Mapping

from .devices import MACHINE_KINDS, Catalog, DeviceModel, check_value, load_catalog
from .errors import ConfigError
from .yamlio import Node, get_bool, get_int, get_list, get_str, load_file, load_text

ACCEL_POLICIES = ("tcg", "kvm", "auto")
#: Prefix of the ids the harness gives its own chardevs and devices.
RESERVED_ID_PREFIX = "harness"
#: The one ISA bus every machine kind has, as a machine file names it (QEMU's ``isa.0``).
ISA_BUS = "isa"
ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
ID_RULE = "a letter, then up to 31 letters, digits, '_' or '-'"
#: A name starts run-folder names: no leading '-' or '.', which a shell command or a
#: glob over the run root would take for an option or a hidden file.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "a letter or digit, then letters, digits, '_', '.' or '-', at most 64 in all"
_MACHINE_KEYS = frozenset({"name", "description", "machine", "accel", "memory", "devices",
                           "firmware_log", "drivers", "expect"})
_DRIVER_KEYS = frozenset({"name", "devices", "override_conflict"})
_DEVICE_KEYS = frozenset({"model", "id", "bus", "addr", "multifunction", "controller", "unit"})


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
    unit: int | None = None  # floppy drive unit
    line: int = field(default=0, compare=False)

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


@dataclass(frozen=True)
class MachineSpec:
    name: str
    machine: str
    accel: str
    memory_mib: int
    devices: tuple[DeviceSpec, ...]
    firmware_log: bool = True
    description: str = ""
    source: str = "<inline>"
    drivers: tuple[DriverSpec, ...] = ()
    #: What a conflict config is written to show: "conflict" (the main job must report
    #: one) or "clean".
    expect: str = "clean"

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
            if dev.bus is not None:
                item["controller" if dev.model.bus == "floppy" else "bus"] = dev.bus
            if dev.slot is not None:
                item["addr"] = f"{dev.slot:#x}.{dev.function}"
            if dev.multifunction:
                item["multifunction"] = True
            if dev.unit is not None:
                item["unit"] = dev.unit
            devices.append(item)
        drivers = [{"name": d.name, "devices": list(d.devices), "override_conflict": d.override_conflict}
                   for d in self.drivers]
        return {"name": self.name, "description": self.description, "machine": self.machine,
                "accel": self.accel, "memory": self.memory_mib, "firmware_log": self.firmware_log,
                "devices": devices, "drivers": drivers, "expect": self.expect}

    def config_hash(self) -> str:
        """A short stable hash of the resolved spec (for reports and cache keys)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def load_machine(path: str | Path, catalog: Catalog | None = None, *,
                 accel: str | None = None) -> MachineSpec:
    """Read and validate a machine file.  ``accel`` overrides the file's policy."""
    return parse_machine(load_file(path), str(path), catalog, accel=accel)


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
            raise ConfigError(f"accelerator {accel!r} is not one of {', '.join(ACCEL_POLICIES)}",
                              field="accel")
        policy = accel
    devices = _parse_devices(doc, machine, catalog)
    drivers = _parse_drivers(doc, devices, catalog)
    return MachineSpec(
        name=_name(doc, source),
        machine=machine,
        accel=policy,
        memory_mib=get_int(doc, "memory", lo=16, hi=16384, default=128),
        devices=devices,
        firmware_log=get_bool(doc, "firmware_log", default=True),
        description=get_str(doc, "description", default=""),
        source=source,
        drivers=drivers,
        expect=get_str(doc, "expect", choices=("clean", "conflict"), default="clean"),
    )


def _parse_drivers(doc: Node, devices: tuple[DeviceSpec, ...], catalog: Catalog) -> tuple[DriverSpec, ...]:
    """The ``drivers`` list (a name, or a mapping with ``name``, ``devices`` and
    ``override_conflict``); when absent, every driver the devices need, in device order."""
    known = catalog.nt_drivers
    if "drivers" not in doc:
        order = list(dict.fromkeys(d.model.nt_driver for d in devices if d.model.nt_driver))
        return tuple(DriverSpec(name, tuple(d.id for d in devices if d.model.nt_driver == name))
                     for name in order)
    out: list[DriverSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(get_list(doc, "drivers")):
        node, line = (item, item.line) if isinstance(item, Node) else (doc, doc.line_of("drivers"))
        if isinstance(item, str):
            name, wanted, override = item, None, False
        elif isinstance(item, Node):
            item.check_keys(_DRIVER_KEYS, {"name"})
            name = get_str(item, "name")
            wanted = get_list(item, "devices", default=None)
            override = get_bool(item, "override_conflict", default=False)
        else:
            raise doc.error("drivers", f"item {index} must be a driver name or a mapping with 'name'")
        if name not in known:
            import difflib
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise node.error("name" if isinstance(item, Node) else "drivers",
                             f"unknown driver {name!r}{hint}; drivers: {', '.join(known)}")
        if name in seen:
            raise node.error("name" if isinstance(item, Node) else "drivers",
                             f"driver {name!r} is listed twice (first on line {seen[name]})")
        seen[name] = line
        mine = [d.id for d in devices if d.model.nt_driver == name]
        if wanted is None:
            chosen = tuple(mine)
        else:
            for dev_id in wanted:
                if dev_id not in mine:
                    raise item.error("devices", f"{dev_id!r} is not a device of this machine that "
                                                f"{name} drives (those are: {', '.join(mine) or 'none'})")
            chosen = tuple(wanted)
        out.append(DriverSpec(name, chosen, override, line))
    return tuple(out)


def _name(doc: Node, source: str) -> str:
    default = "inline" if source.startswith("<") else Path(source).stem
    name = get_str(doc, "name", default=default)
    if not NAME_RE.fullmatch(name):
        raise doc.error("name", f"{name!r} is not a valid machine name: {NAME_RULE}")
    return name


def _parse_devices(doc: Node, machine: str, catalog: Catalog) -> tuple[DeviceSpec, ...]:
    items = get_list(doc, "devices", default=[])
    seen_ids: dict[str, int] = {}
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
        if dev_id in seen_ids:
            raise item.error("id", f"duplicate id {dev_id!r} (first on line {seen_ids[dev_id]})")
        seen_ids[dev_id] = item.line
        if machine not in model.machines:
            raise item.error("model", f"{model.name} is not available on machine type {machine!r} "
                                      f"(supported: {', '.join(model.machines)})")
        instance = instances.get(model.name, 0)
        instances[model.name] = instance + 1
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
        if model.bus == "floppy":
            if bus is not None:
                raise item.error("bus", "a floppy drive names its 'controller', not a bus")
            bus = controller
        elif controller is not None:
            raise item.error("controller", "only floppy drives have a controller")
        unit = get_int(item, "unit", lo=0, hi=1, default=None)
        if unit is not None and model.bus != "floppy":
            raise item.error("unit", "only floppy drives have a unit")
        out.append(DeviceSpec(
            id=dev_id, model=model, settings=MappingProxyType(settings),
            explicit=frozenset(explicit), bus=bus, slot=slot, function=function,
            multifunction=get_bool(item, "multifunction", default=False), unit=unit,
            line=item.line))
    _check_topology(doc, machine, out, items)
    return tuple(out)


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


def _check_topology(doc: Node, machine: str, devices: list[DeviceSpec], items: list[Node]) -> None:
    by_id = {d.id: (d, items[i]) for i, d in enumerate(devices)}
    used_addrs: dict[tuple[str | None, int, int], str] = {}
    for dev, item in ((d, items[i]) for i, d in enumerate(devices)):
        if dev.model.bus in ("pci", "pcie"):
            if machine == "isapc":
                raise item.error("model", "isapc has no PCI bus")
            if dev.bus is not None:
                parent = by_id.get(dev.bus)
                if parent is None or not parent[0].model.bridge:
                    raise item.error("bus", f"{dev.bus!r} is not the id of a pci-bridge or "
                                            "pcie-root-port defined earlier in this file")
                if devices.index(parent[0]) > devices.index(dev):
                    raise item.error("bus", f"bridge {dev.bus!r} must be listed before the devices behind it")
            if dev.slot is not None:
                key = (dev.bus, dev.slot, dev.function)
                if key in used_addrs:
                    raise item.error("addr", f"PCI address {dev.slot:#x}.{dev.function} on bus "
                                             f"{dev.bus or 'pci.0'} is already used by {used_addrs[key]!r}")
                used_addrs[key] = dev.id
        if dev.model.bus == "isa" and dev.bus not in (None, ISA_BUS):
            raise item.error("bus", f"{dev.bus[:80]!r} is not a bus of this machine: an ISA device "
                                    f"sits on the board's ISA bus ({ISA_BUS!r}, or leave 'bus' out)")
        if dev.model.bus == "floppy" and dev.bus is not None:
            parent = by_id.get(dev.bus)
            if parent is None or parent[0].model.qemu_driver != "isa-fdc":
                raise item.error("controller", f"{dev.bus!r} is not the id of an isa-fdc in this file")
        if dev.model.bus == "floppy" and dev.bus is None and machine == "q35":
            raise item.error("model", "q35 has no built-in floppy controller; add an isa-fdc "
                                      "and name it as 'controller'")
