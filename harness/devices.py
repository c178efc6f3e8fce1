"""The device catalog: one YAML file per emulated device kind under ``device_models/``.

A device model says which QEMU driver to create and with which properties, which
resources the device decodes relative to its settings (a 16550 decodes 8 ports from its
base; an SB16 an interleaved set), which settings the real card offers (its jumpers,
later the alternatives of an IO_RESOURCE_REQUIREMENTS_LIST) and how to prove the device
is present by its registers.  The catalog is data; nothing here talks to QEMU.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from .errors import ConfigError, unknown_name
from .packagedata import MODELS_ENV, shipped_dir, user_model_dirs
from .yamlio import Node, get_bool, get_int, get_list, get_str, load_files

MACHINE_KINDS = ("pc", "q35", "isapc")
BUS_KINDS = ("isa", "pci", "pcie", "floppy", "ide")
#: "bmc": the harness adds an ipmi-bmc-sim for the device (one BMC serves one interface).
BACKENDS = ("none", "chardev", "audiodev", "drive", "bmc", "canbus", "memdev")
GRAPHIC_CONSOLE = ("none", "creates", "first")
#: Bridge kinds (a conventional PCI secondary bus; a PCI Express link with one slot) and
#: the properties QEMU's own bridges of each kind take for their chassis number.
BRIDGE_CHASSIS: dict[str | None, tuple[str, ...]] = {"pci-bridge": ("chassis_nr",),
                                                     "pcie-root-port": ("chassis", "slot")}
#: Kinds of settable property, with the values QEMU accepts without aborting or
#: silently truncating (qemu-facts.md §2 "Property validation").
PROPERTY_KINDS: Mapping[str, tuple[int, int] | None] = MappingProxyType({
    "port": (0, 0xFFFF),
    "irq": (0, 15),
    "dma": (0, 7),
    "int": (-(2**63), 2**64 - 1),
    "str": None,
    "bool": None,
    # QEMU's instance number of a COM/LPT port (isa-serial/isa-parallel 'index'): it picks
    # the port's default base and IRQ; 4 and above are refused by QEMU.
    "index": (0, 3),
})
RESOURCE_KINDS = ("port", "memory", "irq", "dma")
#: QEMU 7.2 places a device's port run at base + offset cut to 16 bits (isa_register_ioport
#: takes a uint16_t start) and clips a run past 0xffff at the end of the I/O space:
#: measured, an isa-applesmc at 0xfff4 has its error port (+0x1e) at 0x12 and an isa-serial
#: at 0xfffc decodes 0xfffc-0xffff (tests/test_livefuzz.py).
ISA_PORT_START_MASK = 0xFFFF
#: Handshakes the probe guest (guest_images/probe/probe.c) knows; a model without one is
#: only checked for "does any of its ports answer".
GUEST_PROBES = ("uart", "lpt", "ne2000", "sb16", "fdc", "ide")


def default_catalog_dirs() -> tuple[Path, ...]:
    """The shipped catalog, then the user's folders from ``$HARNESS_DEVICE_MODELS``."""
    return (shipped_dir("device_models"), *user_model_dirs())


@dataclass(frozen=True)
class PropertySpec:
    """One property a device model accepts in a machine file: its name, kind and allowed values."""

    name: str
    kind: str
    choices: tuple[Any, ...] = ()
    #: True for properties that place the device (iobase, irq, dma): they take part in
    #: resource assignment and their choices are the card's jumper settings.
    setting: bool = False
    #: The value that leaves the line unconnected (QEMU's IPMI interfaces wire no IRQ
    #: for irq 0); None: every value is a line.
    unwired: int | None = None
    #: The highest value QEMU takes without failing (None: the kind's bound) and why, as
    #: the model file says it (adlib's iobase: QEMU aborts above 0x380).
    maximum: int | None = None
    maximum_why: str = ""


@dataclass(frozen=True)
class PortDecode:
    """Ports ``base + offset .. base + offset + length - 1``; ``base`` is a property name."""
    base: str
    offset: int
    length: int
    #: Property holding the length instead of a fixed one (isa-debug-exit's iosize).
    length_property: str | None = None


@dataclass(frozen=True)
class FixedRange:
    """A port or memory range, or an ISA IRQ line (length 1), a model decodes at a fixed
    place, whatever its settings."""

    kind: str  # "port", "memory" or "irq"
    start: int
    length: int


@dataclass(frozen=True)
class ProbeStep:
    """One register access, offset relative to the probe base property."""
    op: str  # "read" or "write"
    offset: int
    size: int = 1
    value: int | None = None  # written value, or the expected read value
    mask: int = 0xFF


@dataclass(frozen=True)
class Bar:
    """One BAR of a PCI model (index, I/O or memory, size), as the model file declares it."""

    index: int  # 0-5, or 6 for the expansion ROM
    kind: str  # "io" or "memory"
    size: int
    is_64bit: bool = False
    prefetchable: bool = False


@dataclass(frozen=True)
class PciIdentity:
    """What a PCI model shows in configuration space: IDs, class, interrupt pin and BARs."""

    vendor: int
    device: int
    class_code: int  # base class << 8 | subclass, as query-pci reports it
    interrupt_pin: int  # 0 none, 1 INTA .. 4 INTD
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class DeviceModel:
    """One device model of the catalog (a file under device_models/), validated."""

    name: str
    description: str
    qemu_driver: str
    bus: str
    machines: tuple[str, ...]
    backend: str
    properties: Mapping[str, PropertySpec]
    instance_defaults: tuple[Mapping[str, Any], ...]
    always: Mapping[str, Any]
    ports: tuple[PortDecode, ...]
    fixed: tuple[FixedRange, ...]
    irq_properties: tuple[str, ...]
    dma_properties: tuple[str, ...]
    probe_base: str | None
    probe: tuple[ProbeStep, ...]
    #: The probe guest's handshake for this kind (one of GUEST_PROBES), if it has one.
    guest_probe: str | None
    pci: PciIdentity | None
    bridge: str | None  # None, "pci-bridge" or "pcie-root-port"
    #: The sample NT driver (harness/drivers) that drives this model, if any.
    nt_driver: str | None = None
    source: str = field(compare=False, default="")
    #: Names of the regions QEMU registers with no owner device (the IPMI interfaces):
    #: info mtree -f cannot attribute them, so they are matched by name.
    ownerless_regions: tuple[str, ...] = ()
    #: The property (of kind "index") whose value picks the instance defaults, as QEMU's
    #: isa-serial 'index' picks COM1..COM4; unset, the instance counter picks them.
    instance_property: str | None = None
    #: Other chips of the same physical card that QEMU emulates as separate device models
    #: (the SB16's OPL is the adlib model): a retail driver's claim of the card's whole
    #: block covers them.
    companions: tuple[str, ...] = ()
    #: Ports the device's option ROM writes while the firmware runs, though the device
    #: decodes nothing there (sgabios drives COM1): what a device over them meets.
    firmware_writes: tuple[FixedRange, ...] = ()
    #: Whether QEMU gives the device a graphic console: "none", "creates" one, or "first"
    #: (it must be console 0, the first display of the command line, as a primary qxl-vga).
    graphic_console: str = "none"
    #: The bridge's properties that get its per-machine chassis number (hot-plug needs
    #: one unique per bridge); by default what its kind takes (see BRIDGE_CHASSIS).
    chassis_properties: tuple[str, ...] = ()
    #: The link properties that take a ``canbus`` backend's bus (kvaser_pci has one,
    #: the two-channel cards canbus0 and canbus1): QEMU refuses the card unconnected.
    canbus_properties: tuple[str, ...] = ()
    #: Models of one group of which QEMU takes one per machine (its balloon: "Only one
    #: balloon device is supported"); None: no such limit.
    one_per_machine: str | None = None
    #: The size of a ``memdev`` backend's RAM (an ivshmem-plain's shared memory, its BAR2).
    memdev_size: int | None = None
    #: QEMU takes it only on the root bus, never behind a bridge ("virtio-iommu-pci must be
    #: plugged on the root bus").
    root_bus_only: bool = False
    #: QEMU picks the register a port reaches by its place in an aligned block of this many
    #: ports (``port & 7``), not by its offset from iobase: at a base off that alignment
    #: the registers answer at the block's start + N (measured for isa-parallel, isa-fdc).
    register_block: int | None = None

    @property
    def settings(self) -> tuple[PropertySpec, ...]:
        return tuple(p for p in self.properties.values() if p.setting)

    def defaults_for(self, instance: int) -> Mapping[str, Any]:
        """QEMU's default settings for the ``instance``-th device of this kind (0-based)."""
        if not self.instance_defaults:
            return {}
        return self.instance_defaults[min(instance, len(self.instance_defaults) - 1)]

    def decoded_resources(self, settings: Mapping[str, Any]) -> list[tuple[str, int, int]]:
        """The (kind, first, last) ranges the device decodes with ``settings``.

        Port ranges are split exactly as the device registers them, so interleaved
        layouts (SB16, GUS) compare range by range with QEMU's flat view.
        """
        out: list[tuple[str, int, int]] = []
        for decode in self.ports:
            base = settings.get(decode.base)
            if base is None:
                continue
            length = decode.length
            if decode.length_property is not None:
                length = int(settings.get(decode.length_property, decode.length))
            start = (int(base) + decode.offset) & ISA_PORT_START_MASK
            out.append(("port", start, min(start + length - 1, ISA_PORT_START_MASK)))
        for fixed in self.fixed:
            out.append((fixed.kind, fixed.start, fixed.start + fixed.length - 1))
        for prop in self.irq_properties:
            if self.wires_irq(prop, settings.get(prop)):
                out.append(("irq", int(settings[prop]), int(settings[prop])))
        for prop in self.dma_properties:
            if settings.get(prop) is not None and int(settings[prop]) >= 0:
                out.append(("dma", int(settings[prop]), int(settings[prop])))
        return out


    def wires_irq(self, prop: str, value: Any) -> bool:
        """Whether ``value`` of the irq property ``prop`` connects a line (not unset,
        negative, or the property's ``unwired`` value)."""
        spec = self.properties.get(prop)
        return value is not None and int(value) >= 0 and (spec is None or spec.unwired != int(value))

    def presence_ports(self, settings: Mapping[str, Any]) -> tuple[int, int] | None:
        """The decoded port range whose reads show the device is there: for a model the
        probe guest checks by plain reads (no handshake of its own), the one holding the
        probe's first read (a GUS's register block at base+0x100, not its write-only
        mix-control port at the base); else the one holding the probe base; else the first."""
        ports = [(lo, hi) for kind, lo, hi in self.decoded_resources(settings) if kind == "port"]
        if not ports:
            return None
        base = settings.get(self.probe_base) if self.probe_base else None
        if base is None:
            return ports[0]
        reads = [] if self.guest_probe else [int(base) + s.offset for s in self.probe if s.op == "read"]
        for port in reads[:1] + [int(base)]:
            for lo, hi in ports:
                if lo <= port <= hi:
                    return lo, hi
        return ports[0]


class Catalog(Mapping[str, DeviceModel]):
    """All device models of the catalog folders, keyed by model name."""

    def __init__(self, models: dict[str, DeviceModel], directories: tuple[Path, ...]) -> None:
        self._models = models
        self.directories = directories

    def __getitem__(self, name: str) -> DeviceModel:
        return self._models[name]

    def __iter__(self):
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    @property
    def nt_drivers(self) -> dict[str, tuple[str, ...]]:
        """Driver name -> the models it drives, from the models' ``nt_driver`` keys."""
        out: dict[str, list[str]] = {}
        for model in self._models.values():
            if model.nt_driver:
                out.setdefault(model.nt_driver, []).append(model.name)
        return {name: tuple(sorted(models)) for name, models in sorted(out.items())}

    def lookup(self, name: str, node: Node, key: str) -> DeviceModel:
        """The model ``name``, or a located error listing the known ones."""
        try:
            return self._models[name]
        except KeyError:
            raise node.error(key, unknown_name("device model", name, sorted(self._models), listed_by="harness models")
                             + "; models are in " + os.pathsep.join(map(str, self.directories))) from None


def _cache_name(kind: str, directory: Path) -> str:
    """The parsed-document cache (yamlio.load_files) of one folder of ``kind``."""
    return f"{kind}-{zlib.crc32(str(directory).encode()):08x}"


def load_catalog(*directories: str | Path) -> Catalog:
    """The catalog of ``directories`` in order (default: :func:`default_catalog_dirs`).

    A later folder's model replaces an earlier one of the same name, so a user's folder can
    override a shipped model; within one folder a name may be defined once.
    """
    if not directories:
        return _load_catalog(_resolved_default_dirs(os.environ.get(MODELS_ENV, ""), os.getcwd()))
    return _load_catalog(tuple(Path(d).resolve() for d in directories))


@lru_cache(maxsize=8)
def _resolved_default_dirs(models_env: str, cwd: str) -> tuple[Path, ...]:
    """:func:`default_catalog_dirs` resolved, once per value of ``$HARNESS_DEVICE_MODELS``
    and working directory (what the result depends on: the key): a job asks for the
    catalog several times, and resolving costs a stat per path component each time."""
    return tuple(d.resolve() for d in default_catalog_dirs())


@lru_cache(maxsize=8)
def _load_catalog(directories: tuple[Path, ...]) -> Catalog:
    models: dict[str, DeviceModel] = {}
    for directory in directories:
        if not directory.is_dir():
            raise ConfigError("device model directory not found", source=str(directory))
        here: dict[str, DeviceModel] = {}
        paths = sorted(directory.glob("*.yaml"))
        for path, document in zip(paths, load_files(paths, _cache_name("models", directory))):
            model = parse_model(document, str(path))
            if model.name in here:
                raise ConfigError(f"device model {model.name!r} is defined twice "
                                  f"(also in {here[model.name].source})", source=str(path))
            here[model.name] = model
        models.update(here)
    for model in models.values():
        unknown = [c for c in model.companions if c not in models]
        if unknown:
            raise ConfigError(f"model {model.name!r}: companions {unknown} are not models of the catalog",
                              source=model.source)
    return Catalog(models, directories)


_MODEL_KEYS = frozenset({"name", "description", "qemu_driver", "bus", "machines", "backend",
                         "properties", "instance_defaults", "always", "decodes", "probe",
                         "pci", "bridge", "nt_driver", "ownerless_regions", "instance_property", "firmware_writes",
                         "companions", "graphic_console", "chassis_properties",
                         "canbus_properties", "one_per_machine",
                         "memdev_size", "root_bus_only", "register_block"})


def parse_model(doc: Any, source: str) -> DeviceModel:
    if not isinstance(doc, Node):
        raise ConfigError("a device model must be a YAML mapping", source=source)
    doc.check_keys(_MODEL_KEYS, {"name", "qemu_driver", "bus", "machines"})
    name = get_str(doc, "name")
    if Path(source).stem != name:
        raise doc.error("name", f"model name {name!r} must match its file name {Path(source).name!r}")
    bus = get_str(doc, "bus", choices=BUS_KINDS)
    machines = tuple(_str_list(doc, "machines", MACHINE_KINDS))
    properties = _parse_properties(doc)
    instance_defaults = tuple(_parse_defaults(doc, properties))
    always = _parse_always(doc)
    ports, fixed, irqs, dmas = _parse_decodes(doc, properties)
    probe_base, probe, guest_probe = _parse_probe(doc, properties)
    pci = _parse_pci(doc) if "pci" in doc else None
    bridge = get_str(doc, "bridge", choices=tuple(BRIDGE_CHASSIS), default=None)
    check_qemu_name(doc, "qemu_driver", get_str(doc, "qemu_driver"))
    if bus in ("pci", "pcie") and pci is None:
        raise doc.error(None, "a PCI device model needs a 'pci' section")
    return DeviceModel(
        name=name,
        description=get_str(doc, "description", default=""),
        qemu_driver=get_str(doc, "qemu_driver"),
        bus=bus,
        machines=machines,
        backend=get_str(doc, "backend", choices=BACKENDS, default="none"),
        properties=MappingProxyType(properties),
        instance_defaults=instance_defaults,
        always=MappingProxyType(always),
        ports=ports, fixed=fixed, irq_properties=irqs, dma_properties=dmas,
        probe_base=probe_base, probe=probe, guest_probe=guest_probe, pci=pci,
        bridge=bridge,
        nt_driver=get_str(doc, "nt_driver", default=None),
        source=source,
        ownerless_regions=tuple(_str_list(doc, "ownerless_regions")) if "ownerless_regions" in doc else (),
        instance_property=_parse_instance_property(doc, properties),
        companions=tuple(_str_list(doc, "companions")) if "companions" in doc else (),
        firmware_writes=tuple(_fixed_ranges(doc, ports_key="firmware_writes", memory_key="firmware_writes_memory")),
        graphic_console=get_str(doc, "graphic_console", choices=GRAPHIC_CONSOLE, default="none"),
        chassis_properties=_parse_chassis(doc, bridge),
        canbus_properties=_parse_canbus(doc),
        one_per_machine=get_str(doc, "one_per_machine", default=None),
        memdev_size=_parse_memdev_size(doc),
        root_bus_only=get_bool(doc, "root_bus_only", default=False),
        register_block=get_int(doc, "register_block", lo=2, hi=256, default=None, decimal=True),
    )


def _parse_memdev_size(doc: Node) -> int | None:
    memdev = get_str(doc, "backend", choices=BACKENDS, default="none") == "memdev"
    if memdev != ("memdev_size" in doc):
        raise doc.error("memdev_size" if not memdev else "backend",
                        "a model has 'memdev_size' exactly when its backend is memdev (the RAM QEMU shares)")
    if not memdev:
        return None
    size = get_int(doc, "memdev_size", lo=0x1000, hi=1 << 30)
    if size & (size - 1):
        raise doc.error("memdev_size", f"{size:#x} is not a power of two")
    return size


def _parse_canbus(doc: Node) -> tuple[str, ...]:
    backend = get_str(doc, "backend", choices=BACKENDS, default="none")
    if backend != "canbus":
        if "canbus_properties" in doc:
            raise doc.error("canbus_properties", "only a model with 'backend: canbus' connects to a CAN bus")
        return ()
    names = tuple(_str_list(doc, "canbus_properties")) if "canbus_properties" in doc else ()
    if not names:
        raise doc.error("canbus_properties" if "canbus_properties" in doc else "backend",
                        "a canbus model lists the link properties that take the bus (canbus_properties)")
    for name in names:
        check_qemu_name(doc, "canbus_properties", name)
    return names


def _parse_chassis(doc: Node, bridge: str | None) -> tuple[str, ...]:
    if "chassis_properties" not in doc:
        return BRIDGE_CHASSIS.get(bridge, ())
    if bridge is None:
        raise doc.error("chassis_properties", "only a bridge has a chassis number")
    names = tuple(_str_list(doc, "chassis_properties"))
    for name in names:
        check_qemu_name(doc, "chassis_properties", name)
    return names


def _parse_instance_property(doc: Node, properties: dict[str, PropertySpec]) -> str | None:
    name = get_str(doc, "instance_property", default=None)
    if name is not None and (name not in properties or properties[name].kind != "index"):
        raise doc.error("instance_property", f"{name!r} is not a property of kind 'index' of this model")
    return name


def _str_list(node: Node, key: str, choices: tuple[str, ...] | None = None) -> list[str]:
    items = get_list(node, key)
    for i, item in enumerate(items):
        if not isinstance(item, str) or (choices is not None and item not in choices):
            expected = f"one of {', '.join(choices)}" if choices else "a string"
            raise node.error(key, f"item {i} is {item!r}; expected {expected}")
    return items


def _parse_properties(doc: Node) -> dict[str, PropertySpec]:
    out: dict[str, PropertySpec] = {}
    if "properties" not in doc:
        return out
    props = doc.child("properties")
    for name in props:
        check_qemu_name(props, name, name)
        spec = props.child(name)
        spec.check_keys({"kind", "choices", "setting", "unwired", "max", "max_why"}, {"kind"})
        kind = get_str(spec, "kind", choices=tuple(PROPERTY_KINDS))
        choices = tuple(get_list(spec, "choices", default=[]))
        for value in choices:
            _check_value(spec, "choices", kind, value)
        setting = get_bool(spec, "setting", default=kind in ("port", "irq", "dma"))
        if "unwired" in spec and kind != "irq":
            raise spec.error("unwired", "only an irq property has a value that leaves its line unconnected")
        unwired = get_int(spec, "unwired", lo=0, hi=15, default=None)
        maximum = None
        if "max" in spec:
            _check_value(spec, "max", kind, spec["max"])
            maximum = spec["max"]
            if any(value > maximum for value in choices):
                raise spec.error("choices", f"a choice lies above max {maximum:#x}")
        why = get_str(spec, "max_why", default="") if maximum is not None else ""
        if maximum is not None and not why:
            raise spec.error("max", "say why QEMU takes nothing above it: max_why")
        out[name] = PropertySpec(name, kind, choices, setting, unwired, maximum, why)
    return out


def _parse_always(doc: Node) -> dict[str, Any]:
    """Properties passed to QEMU on every instance (e.g. ``romfile: ""``): checked like settings."""
    if "always" not in doc:
        return {}
    node = doc.child("always")
    for key, value in node.items():
        check_qemu_name(node, key, key)
        if isinstance(value, str):
            check_qemu_string(node, key, value)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise node.error(key, f"expected a string, integer or boolean, got {value!r}")
    return dict(node)


def _parse_defaults(doc: Node, properties: dict[str, PropertySpec]) -> list[Mapping[str, Any]]:
    out = []
    for i, item in enumerate(get_list(doc, "instance_defaults", default=[])):
        if not isinstance(item, Node):
            raise doc.error("instance_defaults", f"item {i} must be a mapping of property: value")
        for prop in item:
            if prop not in properties:
                raise item.error(prop, f"unknown property {prop!r}; declare it under 'properties'")
            _check_value(item, prop, properties[prop].kind, item[prop])
        out.append(MappingProxyType(dict(item)))
    return out


def _parse_decodes(doc: Node, properties: dict[str, PropertySpec]):
    if "decodes" not in doc:
        return (), (), (), ()
    dec = doc.child("decodes")
    dec.check_keys({"ports", "fixed_ports", "fixed_memory", "irq", "dma", "fixed_irq"})
    ports = []
    for i, item in enumerate(get_list(dec, "ports", default=[])):
        if not isinstance(item, Node):
            raise dec.error("ports", f"item {i} must be a mapping")
        item.check_keys({"base", "offset", "length", "length_property"}, {"base", "length"})
        base = get_str(item, "base")
        length_property = get_str(item, "length_property", default=None)
        for prop_key, prop in (("base", base), ("length_property", length_property)):
            if prop is not None and prop not in properties:
                raise item.error(prop_key, f"unknown property {prop!r}")
        ports.append(PortDecode(base, get_int(item, "offset", lo=0, hi=0xFFFF, default=0),
                                get_int(item, "length", lo=1, hi=0x10000), length_property))
    fixed = _fixed_ranges(dec, ports_key="fixed_ports", memory_key="fixed_memory")
    # ISA lines wired at realize with no property to move them (a PCI IDE function's
    # compatibility channels raise IRQ 14 and 15).
    for i, line in enumerate(get_list(dec, "fixed_irq", default=[])):
        if isinstance(line, bool) or not isinstance(line, int) or not 0 <= line <= 15:
            raise dec.error("fixed_irq", f"item {i} is {line!r}; expected an ISA IRQ 0-15")
        fixed.append(FixedRange("irq", line, 1))
    irqs = tuple(_str_list(dec, "irq")) if "irq" in dec else ()
    dmas = tuple(_str_list(dec, "dma")) if "dma" in dec else ()
    for key, names in (("irq", irqs), ("dma", dmas)):
        for prop in names:
            if prop not in properties:
                raise dec.error(key, f"unknown property {prop!r}")
    return tuple(ports), tuple(fixed), irqs, dmas


def _fixed_ranges(node: Node, *, ports_key: str, memory_key: str) -> list[FixedRange]:
    """The fixed port and memory runs listed under ``ports_key`` and ``memory_key`` of
    ``node`` (a model's decodes, a board device), each ``{start, length}`` inside its space."""
    fixed = []
    for key, kind, hi in ((ports_key, "port", 0xFFFF), (memory_key, "memory", 2**64 - 1)):
        for i, run in enumerate(get_list(node, key, default=[])):
            if not isinstance(run, Node):
                raise node.error(key, f"item {i} must be a mapping with start and length")
            run.check_keys({"start", "length"}, {"start", "length"})
            start = get_int(run, "start", lo=0, hi=hi)
            fixed.append(FixedRange(kind, start, get_int(run, "length", lo=1, hi=hi - start + 1)))
    return fixed


def _parse_probe(doc: Node, properties: dict[str, PropertySpec]):
    if "probe" not in doc:
        return None, (), None
    probe = doc.child("probe")
    probe.check_keys({"base", "steps", "guest"}, {"base", "steps"})
    guest = get_str(probe, "guest", choices=GUEST_PROBES, default=None)
    base = get_str(probe, "base")
    if base not in properties:
        raise probe.error("base", f"unknown property {base!r}")
    steps = []
    for i, item in enumerate(get_list(probe, "steps")):
        if not isinstance(item, Node):
            raise probe.error("steps", f"item {i} must be a mapping")
        item.check_keys({"read", "write", "size", "value", "expect", "mask"})
        size = get_int(item, "size", default=1)
        if size not in (1, 2, 4):
            raise item.error("size", "expected 1, 2 or 4")
        top = (1 << (8 * size)) - 1
        if ("read" in item) == ("write" in item):
            raise item.error(None, "a probe step is either 'read: OFFSET' or 'write: OFFSET'")
        if "read" in item:
            steps.append(ProbeStep("read", get_int(item, "read", lo=0, hi=0xFFFF), size,
                                   get_int(item, "expect", lo=0, hi=top),
                                   get_int(item, "mask", lo=0, hi=top, default=top)))
        else:
            steps.append(ProbeStep("write", get_int(item, "write", lo=0, hi=0xFFFF), size,
                                   get_int(item, "value", lo=0, hi=top)))
    return base, tuple(steps), guest


def _parse_pci(doc: Node) -> PciIdentity:
    pci = doc.child("pci")
    pci.check_keys({"vendor", "device", "class", "interrupt_pin", "bars"},
                   {"vendor", "device", "class"})
    bars = []
    for i, item in enumerate(get_list(pci, "bars", default=[])):
        if not isinstance(item, Node):
            raise pci.error("bars", f"item {i} must be a mapping")
        item.check_keys({"bar", "kind", "size", "64bit", "prefetchable"}, {"bar", "kind", "size"})
        size = get_int(item, "size", lo=1)
        if size & (size - 1):
            raise item.error("size", f"BAR size {size:#x} is not a power of two")
        bars.append(Bar(get_int(item, "bar", lo=0, hi=6), get_str(item, "kind", choices=("io", "memory")),
                        size, get_bool(item, "64bit", default=False),
                        get_bool(item, "prefetchable", default=False)))
    return PciIdentity(get_int(pci, "vendor", lo=0, hi=0xFFFF), get_int(pci, "device", lo=0, hi=0xFFFF),
                       get_int(pci, "class", lo=0, hi=0xFFFF),
                       get_int(pci, "interrupt_pin", lo=0, hi=4, default=0), tuple(bars))


def _check_value(node: Node, key: str, kind: str, value: Any) -> None:
    bounds = PROPERTY_KINDS[kind]
    if kind == "str":
        if not isinstance(value, str):
            raise node.error(key, f"expected a string, got {value!r}")
        check_qemu_string(node, key, value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise node.error(key, f"expected true or false, got {value!r}")
    else:
        if isinstance(value, bool) or not isinstance(value, int):
            raise node.error(key, f"expected an integer ({kind}), got {value!r}")
        assert bounds is not None
        if not bounds[0] <= value <= bounds[1]:
            # ports in hex, as machine files and QEMU write them; a line or a channel as its
            # number ('irq value 99', not 'irq value 0x63')
            shown = (lambda v: f"{v:#x}") if kind in ("port", "int") else str
            raise node.error(key, f"{kind} value {shown(value)} out of range {shown(bounds[0])}..{shown(bounds[1])}")
        if kind == "dma" and value == 4:
            raise node.error(key, "DMA channel 4 is the cascade between the two 8237s")


#: What a string that reaches a QEMU option may look like: no ',' or '=' (they would
#: start another option), no '/' (every file QEMU opens is one the harness put in the run
#: folder), no leading '-', bounded.  harness.qemu.machine checks the argv against it too.
QEMU_STRING_RE = re.compile(r"(?![-])[A-Za-z0-9_.:+-]{0,128}")
QEMU_STRING_RULE = "at most 128 letters, digits and _.:+-, not starting with '-'"
#: A QEMU property or driver name (the keys of ``-device``).
QEMU_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
QEMU_NAME_RULE = "a letter, then up to 63 letters, digits, '_', '.' or '-'"


def check_qemu_string(node: Node, key: str, value: str) -> None:
    """Refuse strings that could smuggle options into a QEMU ``-device`` argument, or name
    a host file."""
    if not QEMU_STRING_RE.fullmatch(value):
        raise node.error(key, f"{value[:80]!r} is not a valid QEMU value: {QEMU_STRING_RULE} "
                              "(commas and '=' would inject QEMU options, '/' name host files)")


def check_qemu_name(node: Node, key: str, value: str) -> None:
    """Refuse a property or driver name QEMU's option syntax cannot hold as one key."""
    if not QEMU_NAME_RE.fullmatch(value):
        raise node.error(key, f"{value[:80]!r} is not a valid QEMU name: {QEMU_NAME_RULE}")


def check_value(node: Node, key: str, spec: PropertySpec, value: Any) -> None:
    """Validate a configured value of property ``spec``: type and range; a string property
    with choices takes only those (QEMU's enumerations), while numeric choices are the
    card's jumpers and other values stay allowed (conflict scenarios need them)."""
    _check_value(node, key, spec.kind, value)
    if spec.maximum is not None and value > spec.maximum:
        raise node.error(key, f"{value:#x} is above {spec.maximum:#x}, the highest {spec.name} QEMU takes: "
                              f"{spec.maximum_why}")
    if spec.kind == "str" and spec.choices and value not in spec.choices:
        raise node.error(key, f"{value!r} is not one of: {', '.join(map(str, spec.choices))}")


# ---------------------------------------------------------------------------------------
# Board models: what a machine type builds in, and who claims it on NT

#: The NT components that claim board devices (harness.drivers.board names each one's
#: service and ResourceMap class): the HAL, the keyboard port driver, the IDE miniport,
#: a VGA miniport, the ACPI driver, the floppy sample driver, and the PnP manager, which
#: reserves the boot configuration of a device no driver takes.
BOARD_CLAIMANTS = ("hal", "i8042prt", "atapi", "vga", "acpi", "floppy", "pnp")


@dataclass(frozen=True)
class ConfigRun:
    """A range placed by a chipset register: ``(config[register] & mask) + offset``, decoded
    while ``config[enable_register] & enable_mask`` is set (PMBASE + PMIOSE, ...)."""
    kind: str  # "port" or "memory"
    register: int
    mask: int
    enable_register: int
    enable_mask: int
    offset: int
    length: int


@dataclass(frozen=True)
class BoardPci:
    """The built-in PCI function whose registers place a board device's resources: its
    IDs and its fixed address on bus 0.  The address, not the IDs, finds it: a user
    device may be the same chip (a second ich9-ahci or piix3-ide)."""
    vendor: int
    device: int
    slot: int
    function: int

    @property
    def ids(self) -> tuple[int, int]:
        return (self.vendor, self.device)

    @property
    def bdf(self) -> str:
        return f"00:{self.slot:02x}.{self.function}"


@dataclass(frozen=True)
class BoardDevice:
    """One built-in device of a machine type: what it decodes and who claims it."""
    name: str
    description: str
    #: QOM type owning its regions in ``info mtree -f`` (None: regions without an owner),
    #: narrowed to ``regions`` by name when one owner has several roles.
    qemu_type: str | None
    regions: tuple[str, ...]
    claimant: str | None  # one of BOARD_CLAIMANTS, None when nothing claims it
    reason: str  # why nothing claims it (claimant None)
    fixed: tuple[FixedRange, ...]
    irqs: tuple[int, ...]
    dmas: tuple[int, ...]
    #: The built-in PCI function whose registers place ``config`` and ``bars``.
    pci: BoardPci | None
    config: tuple[ConfigRun, ...]
    bars: tuple[Bar, ...]
    source: str = field(compare=False, default="")
    #: The PCI function signals through INTx: its routed line (config 0x3C) is its IRQ.
    pci_interrupt: bool = False
    #: The accelerators under which QEMU wires ``irqs`` (empty: all); QEMU connects the
    #: x87 FERR line to IRQ 13 under TCG only.
    irq_accel: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How every report names this device (:func:`board_label`)."""
        return board_label(self.name)

    def matches(self, owner_type: str | None, region: str) -> bool:
        """Whether a flat-map region (owner's QOM type, region name) is this device's."""
        return owner_type == self.qemu_type and (not self.regions or region.split(" @")[0] in self.regions)

    def decoded_resources(self, read_config: Any = None) -> list[tuple[str, int, int]]:
        """(kind, first, last) of what the device decodes now.  ``read_config(offset,
        size)`` reads the configuration space of its PCI function (None when the function
        is absent); it places the register-based runs and BARs, skipped without it."""
        out = [(f.kind, f.start, f.start + f.length - 1) for f in self.fixed]
        if self.pci is not None and read_config is not None:
            for run in self.config:
                enabled = read_config(run.enable_register, 1)
                value = read_config(run.register, 4 if run.mask > 0xFFFF else 2)
                if enabled is None or value is None or not enabled & run.enable_mask or not value & run.mask:
                    continue
                start = (value & run.mask) + run.offset
                out.append((run.kind, start, start + run.length - 1))
            for bar in self.bars:
                value = read_config(0x10 + 4 * bar.index, 4)
                base = None if value is None else value & (~3 if bar.kind == "io" else ~0xF) & 0xFFFFFFFF
                if base:
                    out.append(("port" if bar.kind == "io" else "memory", base, base + bar.size - 1))
            if self.pci_interrupt and read_config(0x3D, 1):
                line = read_config(0x3C, 1)
                if line not in (None, 0, 0xFF):
                    out.append(("irq", line, line))
        out += [("irq", n, n) for n in self.irqs]
        out += [("dma", n, n) for n in self.dmas]
        return out


#: What a board device's name is prefixed with wherever devices are named: a machine-file
#: id cannot hold ':' (harness.config.ID_RE), so 'board:acpi' is never the id 'acpi'.
BOARD_LABEL_PREFIX = "board:"


def board_label(name: str) -> str:
    """The one name of board device ``name`` in claimant lines, checks, collisions and rows."""
    return BOARD_LABEL_PREFIX + name


def board_device_of(board: Iterable[BoardDevice], owner_type: str | None,
                    region: str | None = None) -> BoardDevice | None:
    """The board device a flat-map region (its owner's QOM type and name), or with no
    ``region`` a QOM device of type ``owner_type``, belongs to; None if none of ``board``."""
    for device in board:
        if (owner_type is not None and device.qemu_type == owner_type) if region is None \
                else device.matches(owner_type, region):
            return device
    return None


def board_label_of(board: Iterable[BoardDevice], owner_type: str | None, region: str, fallback: str) -> str:
    """The label of the board device a flat-map region is, else ``fallback``: a QOM path
    says neither which board device it is nor stays put when a device is added
    (/machine/unattached/device[N])."""
    device = board_device_of(board, owner_type, region)
    return device.label if device is not None else fallback


@lru_cache(maxsize=1)
def board_dir() -> Path:
    """The shipped board files' folder, one Path for the process (as shipped_dir keeps its
    answer): board_model is asked ~55 times a matrix cell, and a new Path each time made
    _load_boards' cache hash it anew (9 -> 0.2 µs a call; issue 21's tenth round)."""
    return shipped_dir("device_models") / "boards"


def board_model(machine: str) -> tuple[BoardDevice, ...]:
    """The built-in devices of machine type ``machine`` (every board file naming it)."""
    if machine not in MACHINE_KINDS:
        raise ValueError(f"machine type must be one of {MACHINE_KINDS}, not {machine!r}")
    return _load_boards(board_dir())[machine]


@lru_cache(maxsize=2)
def _load_boards(directory: Path) -> Mapping[str, tuple[BoardDevice, ...]]:
    boards: dict[str, list[BoardDevice]] = {kind: [] for kind in MACHINE_KINDS}
    names: dict[tuple[str, str], str] = {}
    paths = sorted(directory.glob("*.yaml"))
    for path, doc in zip(paths, load_files(paths, _cache_name("boards", directory))):
        if not isinstance(doc, Node):
            raise ConfigError("a board file must be a YAML mapping", source=str(path))
        doc.check_keys({"machines", "devices"}, {"machines", "devices"})
        machines = _str_list(doc, "machines", MACHINE_KINDS)
        for i, item in enumerate(get_list(doc, "devices")):
            if not isinstance(item, Node):
                raise doc.error("devices", f"item {i} must be a mapping")
            device = _parse_board_device(item, str(path))
            for kind in machines:
                if (kind, device.name) in names:
                    raise item.error("name", f"board device {device.name!r} of {kind} is defined twice "
                                             f"(also in {names[kind, device.name]})")
                names[kind, device.name] = str(path)
                boards[kind].append(device)
    return MappingProxyType({kind: tuple(devs) for kind, devs in boards.items()})


_BOARD_KEYS = frozenset({"name", "description", "qemu_type", "regions", "claimant", "reason", "ports",
                         "memory", "irq", "dma", "pci", "config_ports", "config_memory", "bars",
                         "pci_interrupt", "irq_accel"})


def _parse_board_device(item: Node, source: str) -> BoardDevice:
    item.check_keys(_BOARD_KEYS, {"name", "qemu_type", "claimant"})
    claimant = get_str(item, "claimant", choices=(*BOARD_CLAIMANTS, "none"))
    reason = get_str(item, "reason", default="")
    if claimant == "none" and not reason:
        raise item.error("claimant", "a device nothing claims needs a 'reason' saying why")
    fixed = _fixed_ranges(item, ports_key="ports", memory_key="memory")
    lines = {}
    for key, hi in (("irq", 15), ("dma", 7)):
        values = get_list(item, key, default=[])
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
                raise item.error(key, f"{value!r} is not a {key} number 0..{hi}")
        lines[key] = tuple(values)
    pci = None
    if "pci" in item:
        node = item.child("pci")
        node.check_keys({"vendor", "device", "slot", "function"}, {"vendor", "device", "slot", "function"})
        pci = BoardPci(get_int(node, "vendor", lo=0, hi=0xFFFF), get_int(node, "device", lo=0, hi=0xFFFF),
                       get_int(node, "slot", lo=0, hi=31), get_int(node, "function", lo=0, hi=7))
    config = []
    for key, kind in (("config_ports", "port"), ("config_memory", "memory")):
        for i, run in enumerate(get_list(item, key, default=[])):
            if not isinstance(run, Node):
                raise item.error(key, f"item {i} must be a mapping")
            run.check_keys({"register", "mask", "enable_register", "enable_mask", "offset", "length"},
                           {"register", "mask", "enable_register", "enable_mask", "length"})
            config.append(ConfigRun(kind, get_int(run, "register", lo=0, hi=0xFC),
                                    get_int(run, "mask", lo=1, hi=0xFFFFFFFF),
                                    get_int(run, "enable_register", lo=0, hi=0xFF),
                                    get_int(run, "enable_mask", lo=1, hi=0xFF),
                                    get_int(run, "offset", lo=0, hi=0xFFFFFFFF, default=0),
                                    get_int(run, "length", lo=1, hi=2**32)))
    bars = []
    for i, bar in enumerate(get_list(item, "bars", default=[])):
        if not isinstance(bar, Node):
            raise item.error("bars", f"item {i} must be a mapping")
        bar.check_keys({"bar", "kind", "size"}, {"bar", "kind", "size"})
        bars.append(Bar(get_int(bar, "bar", lo=0, hi=5), get_str(bar, "kind", choices=("io", "memory")),
                        get_int(bar, "size", lo=1)))
    pci_interrupt = get_bool(item, "pci_interrupt", default=False)
    if (config or bars or pci_interrupt) and pci is None:
        raise item.error("config_ports" if config else "bars" if bars else "pci_interrupt",
                         "register-placed resources need the 'pci' function whose registers place them")
    return BoardDevice(
        name=get_str(item, "name"), description=get_str(item, "description", default=""),
        qemu_type=None if item["qemu_type"] is None else get_str(item, "qemu_type"),
        regions=tuple(_str_list(item, "regions")) if "regions" in item else (),
        claimant=None if claimant == "none" else claimant, reason=reason, fixed=tuple(fixed),
        irqs=lines["irq"], dmas=lines["dma"], pci=pci, config=tuple(config), bars=tuple(bars), source=source,
        pci_interrupt=pci_interrupt,
        irq_accel=tuple(_str_list(item, "irq_accel")) if "irq_accel" in item else ())
