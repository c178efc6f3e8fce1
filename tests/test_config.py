"""Machine specs and device models: every bad input gets a located, explained error."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_machine, parse_machine_text
from harness.devices import load_catalog, parse_model
from harness.errors import ConfigError
from harness.yamlio import load_text

from helpers import CONFIGS


def error_of(text: str, source: str = "m.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_machine_text(text, source)
    return info.value


@pytest.mark.parametrize("path", sorted((CONFIGS / "machines").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_machine_configs_load(path: Path) -> None:
    spec = load_machine(path)
    assert spec.devices, "a shipped machine should add devices"
    # The resolved spec round-trips through its plain form.
    import yaml
    again = parse_machine_text(yaml.safe_dump(spec.to_dict()), "<round-trip>")
    assert again.to_dict() == spec.to_dict()
    assert again.config_hash() == spec.config_hash()


def test_defaults_follow_qemu_instance_order() -> None:
    spec = parse_machine_text("machine: pc\ndevices:\n  - {model: isa-serial, id: a}\n"
                              "  - {model: isa-serial, id: b}\n")
    assert dict(spec.device("a").settings) == {"iobase": 0x3F8, "irq": 4}
    assert dict(spec.device("b").settings) == {"iobase": 0x2F8, "irq": 3}
    assert spec.device("b").explicit == frozenset()
    assert spec.device("a").decoded_resources() == [("port", 0x3F8, 0x3FF), ("irq", 4, 4)]


@pytest.mark.parametrize("text, line, field, words", [
    ("machine: pc\ndevices:\n  - {model: isa-serial, id: a, irq: 16}\n", 3, "devices[0].irq", "out of range"),
    ("machine: pc\ndevices:\n  - {model: isa-serial, id: a, iobase: 0x103f8}\n", 3, "devices[0].iobase", "out of range"),
    ("machine: pc\ndevices:\n  - {model: isa-serial, id: a, irq: '4'}\n", 3, "devices[0].irq", "expected an integer"),
    ("machine: pc\ndevices:\n  - model: isa-serial\n    id: a\n    iobse: 0x3f8\n", 5, "devices[0].iobse", "did you mean 'iobase'"),
    ("machine: pc\ndevices:\n  - {model: isa-serail, id: a}\n", 3, "devices[0].model", "did you mean 'isa-serial'"),
    ("machine: pc\ndevices:\n  - {model: isa-serial, id: a}\n  - {model: isa-serial, id: a}\n", 4, "devices[1].id", "duplicate id"),
    ("machine: pc\ndevices:\n  - {model: isa-serial, id: harness-x}\n", 3, "devices[0].id", "reserved"),
    ("machine: pc\ndevices:\n  - {model: isa-serial, id: 'a,b'}\n", 3, "devices[0].id", "not a valid id"),
    ("machine: pc\ndevices:\n  - {model: isa-serial, id: a, baudbase: x}\n", 3, "devices[0].baudbase", "expected an integer"),
    ("machine: pdp11\n", 1, "machine", "unknown value 'pdp11'; expected one of: pc, q35, isapc"),
    ("machine: pc\naccel: hvf\n", 2, "accel", "unknown value 'hvf'; expected one of: tcg, kvm, auto"),
    # a count is said in decimal as written (it said 0x4 ... 0x10..0x4000)
    ("machine: pc\nmemory: 4\n", 2, "memory", "4 is out of range; expected 16..16384"),
    ("machine: pc\ndevices:\n  - {model: ide-hd, id: d, channel: 2}\n", 3, "devices[0].channel",
     "2 is out of range; expected 0..1"),
    ("machine: pc\nmachien: pc\n", 2, "machien", "unknown field"),
    ("machine: pc\ndevices:\n  - isa-serial\n", 2, "devices", "must be a mapping"),
    ("machine: pc\ndevices:\n  - {model: isa-serial}\n", 3, "devices[0]", "missing required field 'id'"),
    ("machine: pc\nmachine: q35\n", 2, "machine", "duplicate key"),
    # a key given twice inside a device or a builtin entry is named at its full path (was 'irq')
    ("machine: pc\ndevices:\n  - {model: isa-serial, id: a}\n  - model: isa-serial\n    id: b\n    irq: 4\n"
     "    irq: 3\n", 7, "devices[1].irq", "duplicate key 'irq' (first on line 6)"),
    ("machine: pc\nbuiltin:\n  fdc: {irq: 6, irq: 5}\n", 3, "builtin.fdc.irq", "duplicate key"),
    # ids name registry keys, which are case-insensitive (the second UART's settings
    # replaced the first's: false mismatches); the Floppy driver keeps one subkey itself
    ("machine: pc\ndevices:\n  - {model: isa-serial, id: com3}\n  - {model: isa-serial, id: COM3}\n", 4,
     "devices[1].id", "only in case"),
    ("machine: pc\ndevices:\n  - {model: isa-fdc, id: boardController, iobase: 0x370}\n", 3,
     "devices[0].id", "the Floppy driver's Parameters subkey"),
])
def test_bad_machine_files_name_line_and_field(text: str, line: int, field: str, words: str) -> None:
    err = error_of(text)
    assert err.source == "m.yaml"
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    assert words in str(err)
    assert str(err).startswith(f"m.yaml:{line}: {field}: ")


def test_yaml_syntax_error_has_line() -> None:
    err = error_of("machine: pc\ndevices:\n  - {model: isa-serial, id: a\n")
    assert err.line is not None and err.line >= 3
    assert "YAML syntax error" in str(err)


def test_unsafe_yaml_tags_are_refused() -> None:
    err = error_of("machine: !!python/object/apply:os.system ['true']\n")
    assert "YAML" in str(err)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        load_machine(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)


def test_accel_override_is_validated() -> None:
    with pytest.raises(ConfigError, match="accel"):
        parse_machine_text("machine: pc\n", accel="hax")
    assert parse_machine_text("machine: pc\n", accel="kvm").accel == "kvm"


def test_a_config_refers_to_a_catalog_model_that_the_machine_supports(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "only-pc.yaml").write_text(
        "name: only-pc\nqemu_driver: isa-serial\nbus: isa\nmachines: [pc]\n"
        "properties:\n  iobase: {kind: port}\n")
    catalog = load_catalog(models)
    with pytest.raises(ConfigError, match="not available on machine type 'isapc'"):
        parse_machine_text("machine: isapc\ndevices:\n  - {model: only-pc, id: x}\n", "m.yaml", catalog)
    spec = parse_machine_text("machine: pc\ndevices:\n  - {model: only-pc, id: x, iobase: 0x100}\n",
                              "m.yaml", catalog)
    assert spec.device("x").settings["iobase"] == 0x100


@pytest.mark.parametrize("body, words", [
    ("name: other\nqemu_driver: x\nbus: isa\nmachines: [pc]\n", "must match its file name"),
    ("name: m\nqemu_driver: x\nbus: usb\nmachines: [pc]\n", "unknown value 'usb'; expected one of"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nproperties:\n  irq: {kind: irq, choices: [3, 16]}\n",
     "out of range"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\ndecodes:\n  ports:\n    - {base: iobase, length: 8}\n",
     "unknown property 'iobase'"),
    ("name: m\nqemu_driver: x\nbus: pci\nmachines: [pc]\n", "needs a 'pci' section"),
    ("name: m\nqemu_driver: x\nbus: pci\nmachines: [pc]\npci: {vendor: 1, device: 2, class: 3, "
     "bars: [{bar: 0, kind: io, size: 0x30}]}\n", "not a power of two"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nproperties:\n  dma: {kind: dma, choices: [4]}\n",
     "cascade"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nproperties:\n"
     "  romfile: {kind: str, choices: ['a,b']}\n", "inject"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nalways: {romfile: 'x,bootindex=1'}\n", "inject"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nalways: {romfile: [1]}\n", "expected a string"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nproperties:\n  iobase: {kind: port, unwired: 0}\n",
     "only an irq property"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nproperties:\n  irq: {kind: irq, unwired: 16}\n",
     "unwired"),
    # keys of issue "models2": fixed ISA lines, graphic consoles, chassis and CAN links
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\ndecodes: {fixed_irq: [16]}\n", "expected an ISA IRQ 0-15"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\ngraphic_console: yes-please\n", "unknown value 'yes-please'"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nchassis_properties: [chassis]\n", "only a bridge"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\ncanbus_properties: [canbus]\n", "backend: canbus"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nbackend: canbus\n", "lists the link properties"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nbackend: canbus\ncanbus_properties: ['a,b']\n", "not a valid QEMU name"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nbackend: memdev\n", "exactly when its backend is memdev"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nmemdev_size: 0x1000\n", "exactly when its backend is memdev"),
    ("name: m\nqemu_driver: x\nbus: isa\nmachines: [pc]\nbackend: memdev\nmemdev_size: 0x3000\n", "power of two"),
])
def test_bad_device_models_are_refused(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=words) as info:
        parse_model(load_text(body, str(path)), str(path))
    assert str(path) in str(info.value)


def test_pci_topology_is_checked() -> None:
    err = error_of("machine: isapc\ndevices:\n  - {model: e1000, id: n}\n")
    assert "isapc" in str(err) and err.line == 3
    err = error_of("machine: pc\ndevices:\n  - {model: e1000, id: n, bus: br}\n")
    assert "not the id of a pci-bridge" in str(err)
    err = error_of("machine: pc\ndevices:\n  - {model: e1000, id: a, addr: 3}\n  - {model: rtl8139, id: b, addr: '0x3'}\n")
    assert "already used by 'a'" in str(err) and err.line == 4
    err = error_of("machine: pc\ndevices:\n  - {model: e1000, id: a, addr: 40}\n")
    assert "out of range" in str(err)
    err = error_of("machine: pc\ndevices:\n  - {model: isa-serial, id: a, addr: 3}\n")
    assert "not a PCI device" in str(err)
    err = error_of("machine: q35\ndevices:\n  - {model: floppy, id: f}\n")
    assert "no built-in floppy controller" in str(err)


_PCI = "machine: {machine}\ndevices:\n"


@pytest.mark.parametrize("machine, devices, line, field, words", [
    # the board's own functions
    ("pc", ["{model: e1000, id: a, addr: 1}"], 3, "addr", "the board's PIIX3 ISA bridge"),
    ("q35", ["{model: e1000, id: a, addr: 0x1f}"], 3, "addr", "the board's ICH9 LPC bridge"),
    ("q35", ["{model: e1000, id: a, addr: '0.2'}"], 3, "addr", "function 0 there is the board's MCH host bridge"),
    # a single-function function 0, either order
    ("pc", ["{model: e1000, id: a, addr: '3.0'}", "{model: e1000, id: b, addr: '3.1'}"], 4, "addr",
     "function 0 there is 'a', a single-function device"),
    ("pc", ["{model: e1000, id: b, addr: '3.1'}", "{model: e1000, id: a, addr: 3}"], 4, "addr",
     "already holds 'b' at a function > 0"),
    # no function 0 at all: no PCI scan finds the slot
    ("pc", ["{model: e1000, id: b, addr: '5.2'}"], 3, "addr", "has no function 0"),
    # a device without addr takes the lowest free slot (2 on pc) before a later explicit one
    ("pc", ["{model: VGA, id: v}", "{model: e1000, id: a, addr: 2}"], 4, "addr",
     "already used by 'v' (it has no addr"),
    # behind a PCIe root port only slot 0, explicit or as the second device placed there
    ("q35", ["{model: pcie-root-port, id: rp, addr: 8}", "{model: e1000e, id: a, bus: rp, addr: 1}"], 4,
     "addr", "QEMU hides slot 0x1 behind 'rp'"),
    ("q35", ["{model: pcie-root-port, id: rp, addr: 8}", "{model: e1000e, id: a, bus: rp}",
             "{model: e1000e, id: b, bus: rp}"], 5, "model", "QEMU hides slot 0x1 behind 'rp'"),
])
def test_pci_addresses_qemu_refuses_or_hides_are_refused(machine: str, devices: list[str], line: int,
                                                         field: str, words: str) -> None:
    err = error_of(_PCI.format(machine=machine) + "".join(f"  - {d}\n" for d in devices))
    assert (err.line, err.field.rsplit(".", 1)[-1]) == (line, field), str(err)
    assert words in str(err)


def test_pci_functions_qemu_accepts_are_placed_as_qemu_places_them() -> None:
    from harness.config import place_pci_functions
    from helpers import PLACEMENT, PLACEMENT_MACHINE
    assert place_pci_functions("pc", parse_machine_text(PLACEMENT_MACHINE, "m.yaml").devices) == PLACEMENT


def test_an_unwired_irq_value_decodes_no_line() -> None:
    """QEMU's IPMI interfaces wire no IRQ for irq 0 (``isairq > 0`` in their realize);
    their models say so with ``unwired: 0``, and the value is then no line at all."""
    spec = parse_machine_text("machine: pc\ndevices:\n  - {model: isa-ipmi-kcs, id: k, irq: 0}\n"
                              "  - {model: isa-ipmi-bt, id: b, irq: 10}\n", "m.yaml")
    assert [r for r in spec.device("k").decoded_resources() if r[0] == "irq"] == []
    assert ("irq", 10, 10) in spec.device("b").decoded_resources()
    serial = parse_machine_text("machine: pc\ndevices:\n  - {model: isa-serial, id: s, irq: 0}\n", "m.yaml")
    assert ("irq", 0, 0) in serial.device("s").decoded_resources()   # a UART's 0 is IRQ 0


@pytest.mark.parametrize("machine", ["pc", "q35", "isapc"])
def test_ids_may_be_board_device_names(machine: str) -> None:
    # QEMU takes them, and the checks tell a board device from a machine-file one by
    # kind (harness.devices.board_label), not by name; any case, as registry keys go.
    from harness.config import ID_RE
    from harness.devices import board_model
    names = [d.name for d in board_model(machine) if ID_RE.fullmatch(d.name)]
    assert len(names) > 10
    text = f"machine: {machine}\ndevices:\n" + "".join(
        f"  - {{model: isa-debugcon, id: {name.upper() if i % 2 else name}}}\n" for i, name in enumerate(names))
    spec = parse_machine_text(text)
    assert [d.id.lower() for d in spec.devices] == [n.lower() for n in names]


def _one_per_machine_pairs() -> list[tuple[str, str]]:
    catalog = load_catalog()
    groups: dict[str, list[str]] = {}
    for model in catalog.values():
        if model.one_per_machine:
            groups.setdefault(model.one_per_machine, []).append(model.name)
    return [(a, b) for names in groups.values() for a in sorted(names) for b in sorted(names)]


@pytest.mark.parametrize("first, second", _one_per_machine_pairs())
def test_a_second_of_a_one_per_machine_kind_is_refused_at_its_line(first: str, second: str) -> None:
    """Every two devices of a ``one_per_machine`` kind (one model twice too) are refused at
    the second one's line (that QEMU refuses each pair is measured in
    test_device_models.py::test_one_per_machine_groups_are_what_qemu_does)."""
    catalog = load_catalog()
    machine = next(m for m in catalog[first].machines if m in catalog[second].machines)
    err = error_of(f"machine: {machine}\ndevices:\n  - {{model: {first}, id: a}}\n  - {{model: {second}, id: b}}\n")
    assert (err.line, err.field.rsplit(".", 1)[-1]) == (4, "model"), str(err)
    assert f"QEMU takes one {catalog[first].one_per_machine} device per machine: 'a'" in str(err)


def test_one_per_machine_leaves_other_kinds_alone() -> None:
    """A PCI VGA beside an ISA one, and a pvpanic-pci beside a pvpanic, are no second of a kind."""
    spec = parse_machine_text("machine: pc\ndevices:\n  - {model: VGA, id: v}\n  - {model: isa-vga, id: w}\n"
                              "  - {model: pvpanic, id: p}\n  - {model: pvpanic-pci, id: q}\n", "m.yaml")
    assert [d.id for d in spec.devices] == ["v", "w", "p", "q"]
