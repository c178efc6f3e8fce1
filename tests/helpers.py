"""Helpers shared by the test modules (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.config import RESERVED_ID_PREFIX, MachineSpec, parse_machine_text
from harness.devices import load_catalog

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def machine_spec(text: str, source: str = "<test>") -> MachineSpec:
    """A MachineSpec from inline YAML (the catalog is the repository's device_models/)."""
    return parse_machine_text(text, source)


#: PCI functions QEMU accepts, placed as QEMU places them (harness.config.place_pci_functions):
#: a function > 0 before its multifunction function 0, a device without addr in the lowest
#: free slot, a function beside the board's PIIX3, slot 0 behind a bridge.
PLACEMENT_MACHINE = "machine: pc\ndevices:\n" + "".join(f"  - {d}\n" for d in [
    "{model: rtl8139, id: b, addr: '4.1'}", "{model: e1000, id: a, addr: 4, multifunction: true}",
    "{model: e1000, id: c}", "{model: e1000, id: d, addr: '1.2'}", "{model: pci-bridge, id: br}",
    "{model: e1000, id: e, bus: br}"])
PLACEMENT = {"b": (4, 1), "a": (4, 0), "c": (2, 0), "d": (1, 2), "br": (3, 0), "e": (0, 0)}


def qemu_pids() -> set[int]:
    """Pids of every running qemu-system process on this machine."""
    out = subprocess.run(["pgrep", "-f", "^[^ ]*qemu-system"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def tiny_bios(code: bytes) -> bytes:
    """A 64 KiB firmware image whose reset vector (offset 0xfff0) runs ``code``.

    For guests that must misbehave on purpose: the CPU starts at 0xffff:fff0 in real mode
    with this image mapped below 1 MiB and 4 GiB; the rest of the image is ``hlt``.
    """
    if len(code) > 16:
        raise ValueError("the reset vector has 16 bytes before the end of the image")
    image = bytearray(b"\xf4" * 0x10000)
    image[0xFFF0:0xFFF0 + len(code)] = code
    return bytes(image)


#: Real-mode code for tiny_bios: spin forever (``jmp $``) / write 1 to pvpanic's port 0x505.
def tiny_bios_args(folder: Path, code: bytes) -> tuple[str, str]:
    """QEMU arguments that run :func:`tiny_bios` of ``code`` (written into ``folder``)."""
    path = folder / "bios.bin"
    path.write_bytes(tiny_bios(code))
    return ("-bios", str(path))


SPIN_FOREVER = bytes([0xEB, 0xFE])
PANIC_VIA_PVPANIC = bytes([0xBA, 0x05, 0x05, 0xB0, 0x01, 0xEE, 0xF4, 0xEB, 0xFD])

FIGURES = REPO / "build" / "reliability"


def record_figures(name: str, **figures: object) -> None:
    """Keep the numbers a reliability test measured (``build/reliability/NAME.json``);
    ``make reliability-figures`` prints them all."""
    import json
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")


# ---- what a QEMU command line may contain (security tests and the config fuzzer) ----
#: Options build_argv writes, with whether each takes a value.
QEMU_OPTIONS = {"-name": True, "-machine": True, "-accel": True, "-m": True, "-display": True,
                "-boot": True, "-action": True, "-chardev": True, "-device": True,
                "-audiodev": True, "-drive": True, "-cpu": True, "-nodefaults": False, "-S": False,
                "-global": True, "-object": True}
#: -device keys the harness adds itself (the others must be the model's own properties).
DEVICE_KEYS = {"id", "bus", "addr", "multifunction", "unit", "chardev", "drive", "audiodev",
               "chassis_nr", "chassis", "slot", "bmc", "memdev"}


def qemu_opts(text: str) -> list[str]:
    """Split a QEMU option string at single commas (',,' is a literal comma)."""
    parts, current, i = [], [], 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1:i + 2] == ",":
                current.append(",")
                i += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(text[i])
        i += 1
    return parts + ["".join(current)]


def argv_violations(argv: list[str], spec: MachineSpec, run_dir: Path) -> list[str]:
    """What in ``argv`` breaks the rules: only known options, no value that could start a
    new option or line, every -device key the model's or the harness's own, every file
    QEMU opens inside ``run_dir``."""
    bad: list[str] = []
    models = {d.id: d.model for d in spec.devices}
    i = 1
    while i < len(argv):
        option = argv[i]
        if option not in QEMU_OPTIONS:
            bad.append(f"unexpected argv element {option!r} at {i}")
            i += 1
            continue
        if not QEMU_OPTIONS[option]:
            i += 1
            continue
        value = argv[i + 1] if i + 1 < len(argv) else ""
        i += 2
        if value.startswith("-") or any(c in value for c in "\n\r\0"):
            bad.append(f"{option} value {value!r} could start an option or a line")
        opts = qemu_opts(value)
        pairs = dict(p.partition("=")[::2] for p in opts[1:] if "=" in p)
        for key in ("path", "file"):
            if key in pairs and Path(pairs[key]).resolve().parent != run_dir.resolve():
                bad.append(f"{option} {key}={pairs[key]!r} is outside the run folder {run_dir}")
        if option == "-object" and not value.startswith((f"can-bus,id={RESERVED_ID_PREFIX}-can-",
                                                         f"memory-backend-ram,id={RESERVED_ID_PREFIX}-mem-")):
            bad.append(f"-object {value!r} is not a CAN bus or RAM backend of the harness's own")
        if option == "-global":
            # Only the board's own devices, only their declared properties, only integers.
            from harness.builtin import BUILTIN_DEVICES
            allowed = {f"{d.qemu_type}.{p}" for d in BUILTIN_DEVICES.values() for p in d.properties}
            target, _, number = value.partition("=")
            if target not in allowed or not number.isdigit():
                bad.append(f"-global {value!r} is not a built-in device's integer property")
        if option == "-device":
            model = models.get(pairs.get("id", ""))
            # A device without a model is the harness's own firmware-log isa-debugcon.
            own = set(model.properties) | set(model.always) | set(model.canbus_properties) \
                | set(model.chassis_properties) if model else {"iobase"}
            bad += [f"-device key {k!r} in {value!r}" for k in pairs if k not in DEVICE_KEYS | own]
            bad += [f"-device element {p!r} in {value!r}" for p in opts[1:] if "=" not in p]
    return bad


# ---- one field of a device changed past config.py (argv tests and the argv fuzzer) ----
def model_spec(name: str):
    """A valid machine holding model ``name`` as its last device, with whatever it needs
    in front (a bridge for a PCI device, a controller for a floppy)."""
    import json
    machine, items = model_items(name)
    return machine_spec(f"machine: {machine}\ndevices:\n" + "".join(f"  - {json.dumps(i)}\n" for i in items))


def model_items(name: str, prefix: str = "") -> tuple[str, list[dict]]:
    """:func:`model_spec`'s machine type and device items, every id (and every reference to
    one) prefixed with ``prefix``, so several models' items fit in one machine."""
    model = load_catalog()[name]
    machine = "q35" if model.bus == "pcie" else "pc" if "pc" in model.machines else model.machines[0]
    items = []
    behind_bridge = model.bus in ("pci", "pcie") and not model.bridge and not model.root_bus_only
    if behind_bridge:
        items.append({"model": "pcie-root-port" if model.bus == "pcie" else "pci-bridge", "id": f"{prefix}br"})
    from harness.config import DRIVE_CONTROLLERS
    if model.bus in DRIVE_CONTROLLERS:
        items.append({"model": DRIVE_CONTROLLERS[model.bus], "id": f"{prefix}fdc1",
                      **({"iobase": 0x370} if model.bus == "floppy" else {})})
    item = {"model": name, "id": f"{prefix}dut"}
    # On a named bus, so the bus is in the baseline command line too.
    if model.bus in DRIVE_CONTROLLERS:
        item["controller"] = f"{prefix}fdc1"
    elif model.bus == "isa":
        item["bus"] = "isa"
    elif behind_bridge:
        item["bus"] = f"{prefix}br"
    # Every property set (a first choice, or a small valid value), so each field's value
    # is in the baseline command line.
    for prop, spec in model.properties.items():
        item[prop] = spec.choices[0] if spec.choices else {"bool": False, "str": "x"}.get(spec.kind, 1)
    items.append(item)
    return machine, items


def with_last_device(spec, **device_changes):
    import dataclasses
    devices = list(spec.devices)
    devices[-1] = dataclasses.replace(devices[-1], **device_changes)
    return dataclasses.replace(spec, devices=tuple(devices))


def argv_field_setters(spec) -> dict[str, object]:
    """Every field of the last device that reaches argv -> a function making a spec with
    that field set to a value, bypassing config.py (the argv builder must hold alone)."""
    import dataclasses
    from types import MappingProxyType

    from harness.config import DRIVE_CONTROLLERS
    dev = spec.devices[-1]
    index = len(spec.devices) - 1
    fields = {f"devices[{index}].id": lambda v: with_last_device(spec, id=v),
              f"devices[{index}].{'controller' if dev.model.bus in DRIVE_CONTROLLERS else 'bus'}":
                  lambda v: with_last_device(spec, bus=v),
              "qemu_driver": lambda v: with_last_device(spec, model=dataclasses.replace(dev.model, qemu_driver=v))}
    for prop in dev.model.properties:
        fields[f"devices[{index}].{prop}"] = (
            lambda v, p=prop: with_last_device(spec, settings=MappingProxyType({**dev.settings, p: v})))
    for key in dev.model.always:
        fields[f"always.{key}"] = (lambda v, k=key: with_last_device(spec, model=dataclasses.replace(
            dev.model, always=MappingProxyType({**dev.model.always, k: v}))))
    return fields


def argv_changes(before: list[str], after: list[str]) -> list[tuple[str, str, str]]:
    """(option, key, new value) for every option element that differs; the two command
    lines must have the same options and the same keys in the same order."""
    assert len(before) == len(after), (before, after)
    out = []
    for old, new in zip(before, after):
        a, b = qemu_opts(old), qemu_opts(new)
        assert len(a) == len(b), f"{old!r} became {new!r}: another option element appeared"
        for position, (x, y) in enumerate(zip(a, b)):
            if x != y and position == 0:  # the driver (or backend) an option starts with
                out.append((old.split(",", 1)[0], "<head>", y))
            elif x != y:
                kx, _, _ = x.partition("=")
                ky, _, vy = y.partition("=")
                assert kx == ky, f"{old!r} became {new!r}: a key changed"
                out.append((old.split(",", 1)[0], ky, vy))
    return out


def check_argv_field(spec: MachineSpec, field: str, make, value: object, run_dir: Path) -> bool:
    """Build the argv of ``spec`` with ``field`` set to ``value`` (``make``: from
    argv_field_setters): it must be refused with a ConfigError naming that field, or change
    nothing in the command line but that field's own value.  Returns whether accepted."""
    from harness.errors import ConfigError
    from harness.qemu.machine import build_argv
    base = build_argv(spec, run_dir, "tcg")
    try:
        argv = build_argv(make(value), run_dir, "tcg")
    except ConfigError as exc:
        assert exc.field == field, f"{field}={value!r} refused as {exc.field}: {exc}"
        if field.startswith("devices"):
            assert str(exc).startswith(f"{spec.source}:{spec.devices[-1].line}: {field}: "), str(exc)
        return False
    key = "<head>" if field == "qemu_driver" else field.rsplit(".", 1)[-1]
    expected = ("on" if value else "off") if isinstance(value, bool) else str(value)
    changes = argv_changes(base, argv)
    if key == "id":  # the id also names the device's chardev, drive and files, and its chassis
        assert all(expected in v or k in ("chassis_nr", "chassis", "slot") for _, k, v in changes), changes
    else:
        assert all(k == key and v == expected for _, k, v in changes), (field, value, changes)
    assert argv_violations(argv, make(value), run_dir) == [], argv
    return True


def machine_error(text: str, line: int | tuple[int, ...], field: str, message: str) -> str:
    """Parse machine YAML ``text`` as ``m.yaml`` and check the ConfigError it must raise
    names that line (one of them) and field, and says ``message``; its text returned."""
    import pytest
    from harness.config import parse_machine_text
    from harness.errors import ConfigError
    with pytest.raises(ConfigError) as info:
        parse_machine_text(text, "m.yaml")
    got = str(info.value)
    lines = (line,) if isinstance(line, int) else line
    assert any(got.startswith(f"m.yaml:{n}: {field}") for n in lines), got
    assert message in got, got
    return got


# ---- interrupt tests (the PIC HAL's test_interrupts.py, the APIC HAL's test_apic.py) ----
def uart_isr(bus, base: int, log: list[str]):
    """A 16550's ISR: reading IIR acknowledges THRE; TRUE when the UART had something."""
    def isr(interrupt, context) -> bool:
        iir = bus.read_port(base + 2)
        log.append(f"{base:#x}:{iir:#04x}")
        return not iir & 1
    return isr


def release_interrupts(manager, bus, uart_bases) -> None:
    """Disconnect every interrupt object of ``manager``, quiet the UARTs, take what is left."""
    assert manager.interrupts is not None
    for chain in list(manager.interrupts.vectors.values()):
        for interrupt in list(chain):
            manager.IoDisconnectInterrupt(interrupt)
    for base in uart_bases:
        bus.write_port(base + 1, 0)
        bus.read_port(base + 2)
    manager.interrupts.take_interrupts()
