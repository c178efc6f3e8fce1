"""Settings of the machine's own devices: the devices the board builds itself, which a
machine file cannot add or remove but can configure where QEMU allows it.

QEMU gives a built-in device no id, and its properties cannot change once it is realized,
so the one way in is ``-global TYPE.PROPERTY=VALUE`` on the command line.  A global
applies to every device of the type: the harness passes every setting of a device the
file adds itself explicitly, which wins over a global, so only the board's own device
takes it.  A machine file says::

    builtin:
      i8042: {kbd-irq: 1, mouse-irq: 12}        # the keyboard controller's two lines
      fdc: {iobase: 0x370, irq: 6, dma: 2}      # pc/isapc's floppy controller, moved

Each property is typed with the catalog's property kinds (harness.devices.PROPERTY_KINDS),
so a value reaches QEMU's argv only after the same checks as a device's.  The drives on
the board's IDE buses and floppy controller are devices of the file (``ide-hd``/``ide-cd``
with ``channel``, ``floppy`` without ``controller``).  The built-in IDE controllers have no
resource properties in QEMU 7.2 (PIIX3/ICH9 are PCI functions; isapc's two isa-ide share
one type, so a global would move both), so they are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from .devices import PropertySpec, check_value
from .yamlio import Node


@dataclass(frozen=True)
class BuiltinDevice:
    """A device every board of ``machines`` has built in, and the properties a machine file may set on it."""

    qemu_type: str
    machines: tuple[str, ...]
    properties: Mapping[str, PropertySpec]
    #: QEMU's values on a board nobody configured (measured with info qtree, QEMU 7.2).
    defaults: Mapping[str, int]
    description: str


def _props(**kinds: str) -> Mapping[str, PropertySpec]:
    return MappingProxyType({name.replace("_", "-"): PropertySpec(name.replace("_", "-"), kind, (), True)
                             for name, kind in kinds.items()})


BUILTIN_DEVICES: Mapping[str, BuiltinDevice] = MappingProxyType({
    "i8042": BuiltinDevice("i8042", ("pc", "q35", "isapc"), _props(kbd_irq="irq", mouse_irq="irq"),
                           MappingProxyType({"kbd-irq": 1, "mouse-irq": 12}),
                           "8042 keyboard controller (ports 0x60/0x64)"),
    "fdc": BuiltinDevice("isa-fdc", ("pc", "isapc"), _props(iobase="port", irq="irq", dma="dma"),
                         MappingProxyType({"iobase": 0x3F0, "irq": 6, "dma": 2}),
                         "floppy controller (q35 has none: add an isa-fdc)"),
})


def parse_builtin(doc: Node, machine: str) -> Mapping[str, Mapping[str, int]]:
    """The ``builtin`` section: built-in device name -> {property: value}, validated."""
    if "builtin" not in doc:
        return MappingProxyType({})
    section = doc.child("builtin")
    section.check_keys(set(BUILTIN_DEVICES))
    out: dict[str, Mapping[str, int]] = {}
    for name in section:
        device = BUILTIN_DEVICES[name]
        if machine not in device.machines:
            raise section.error(name, f"{machine} has no built-in {name} ({device.description}); "
                                      f"machines with one: {', '.join(device.machines)}")
        settings = section.child(name)
        settings.check_keys(set(device.properties))
        for prop, value in settings.items():
            check_value(settings, prop, device.properties[prop], value)
        out[name] = MappingProxyType(dict(settings))
    return MappingProxyType(out)


def builtin_settings(spec: Any, name: str) -> dict[str, int]:
    """Every setting of built-in device ``name`` on ``spec``'s board: QEMU's defaults with
    the machine file's changes."""
    return {**BUILTIN_DEVICES[name].defaults, **spec.builtin.get(name, {})}


def board_settings(spec: Any) -> dict[str, dict[str, int]]:
    """Every built-in device ``spec``'s machine type has, with its settings: what a driver
    of a board device (the floppy driver of the built-in controller) is set up with."""
    return {name: builtin_settings(spec, name) for name, device in BUILTIN_DEVICES.items()
            if spec.machine in device.machines}


def apply_settings(qemu_type: str | None, decoded: list[tuple[str, int, int]],
                   builtin: Mapping[str, Mapping[str, int]]) -> list[tuple[str, int, int]]:
    """What a board device of ``qemu_type`` decodes under the machine file's ``builtin``
    settings, from what it decodes at QEMU's defaults (``decoded``, the board model): a
    ``port`` setting moves its ports by the change of base, an ``irq``/``dma`` setting
    replaces the line or channel that is its default (all at once, so two lines may swap)."""
    device = next((d for d in BUILTIN_DEVICES.values() if d.qemu_type == qemu_type), None)
    if device is None:
        return decoded
    name = next(n for n, d in BUILTIN_DEVICES.items() if d is device)
    settings = builtin.get(name, {})
    shift = 0
    moved: dict[str, dict[int, int]] = {"irq": {}, "dma": {}}
    for prop, value in settings.items():
        kind, default = device.properties[prop].kind, device.defaults[prop]
        if kind == "port":
            shift += int(value) - default
        elif kind in moved:
            moved[kind][default] = int(value)
    out = []
    for kind, first, last in decoded:
        if kind == "port":
            out.append((kind, first + shift, last + shift))
        elif kind in moved and first == last:
            line = moved[kind].get(first, first)
            out.append((kind, line, line))
        else:
            out.append((kind, first, last))
    return out


def moved_port_types(builtin: Mapping[str, Mapping[str, int]]) -> frozenset[str]:
    """QEMU types of the built-in devices whose ports the machine file's ``builtin`` moved
    off QEMU's defaults: their overlaps with the rest of the board are the file's doing,
    not the board's design."""
    return frozenset(device.qemu_type for name, device in BUILTIN_DEVICES.items()
                     for prop, value in builtin.get(name, {}).items()
                     if device.properties[prop].kind == "port" and int(value) != device.defaults[prop])


def global_args(builtin: Mapping[str, Mapping[str, int]]) -> list[str]:
    """``-global`` arguments for the configured built-in settings (values are validated
    integers: nothing from the file reaches the command line as text)."""
    args: list[str] = []
    for name in sorted(builtin):
        qemu_type = BUILTIN_DEVICES[name].qemu_type
        for prop, value in sorted(builtin[name].items()):
            args += ["-global", f"{qemu_type}.{prop}={int(value)}"]
    return args
