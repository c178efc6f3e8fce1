"""Genuine resource lists of a Windows XP machine (tests/data/realworld-resources/README.md):
each decodes with dedicated descriptor classes only, dumps, and re-encodes to exactly the
bytes Windows wrote."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from harness.nt.errors import RegFileError
from harness.nt.regfile import HEADER, import_reg, import_text
from harness.nt.registry import (DESCRIPTION_SYSTEM, MACHINE, REG_FULL_RESOURCE_DESCRIPTOR,
                                 REG_RESOURCE_LIST, REG_RESOURCE_REQUIREMENTS_LIST, Registry,
                                 format_tree)
from harness.nt.resources import (CM_FULL_RESOURCE_DESCRIPTOR, CM_RESOURCE_LIST,
                                  IO_RESOURCE_REQUIREMENTS_LIST, Arch, InterfaceTypeUndefined,
                                  ConfigDataRequirement, DevicePrivateRequirement, DeviceSpecific,
                                  GenericPartial, Isa,
                                  GenericRequirement, IO_RESOURCE_DESCRIPTOR, detect_arch,
                                  private_copy_of)

DATA = Path(__file__).parent / "data" / "realworld-resources"
CORPUS = DATA / "xp-x86-acpi.reg"
ENUM = MACHINE + r"\SYSTEM\ControlSet001\Enum"


@pytest.fixture(scope="module")
def xp():
    with Registry(arch=Arch.X86) as reg:
        assert import_reg(reg, CORPUS) == 16  # validated: every value decodes on import
        yield reg


def values(reg):
    return [(path, v) for path, vs in reg.walk(ENUM) for v in vs]


def descriptors(decoded):
    if isinstance(decoded, CM_RESOURCE_LIST):
        return [p for _, p in decoded.partials()]
    return [d for lst in decoded.lists for d in lst.descriptors]


def test_corpus_round_trips_exactly_with_no_unknown_types(xp):
    kinds = {REG_RESOURCE_LIST: CM_RESOURCE_LIST,
             REG_RESOURCE_REQUIREMENTS_LIST: IO_RESOURCE_REQUIREMENTS_LIST}
    seen = {REG_RESOURCE_LIST: 0, REG_RESOURCE_REQUIREMENTS_LIST: 0}
    for path, v in values(xp):
        decoded = v.value
        assert isinstance(decoded, kinds[v.type]), (path, v.name)
        assert decoded.pack(Arch.X86) == v.data, (path, v.name)
        assert not [d for d in descriptors(decoded)
                    if isinstance(d, (GenericPartial, GenericRequirement))], (path, v.name)
        if v.type == REG_RESOURCE_LIST:  # only the x86 layout fits these bytes
            assert detect_arch(v.data) is Arch.X86
        seen[v.type] += 1
    assert seen == {REG_RESOURCE_LIST: 8, REG_RESOURCE_REQUIREMENTS_LIST: 8}


def test_every_union_tail_is_accounted_for(xp):
    """Tails are either XP's DevicePrivate copies of the window before them, or pool
    garbage in ConfigData descriptors of FilteredConfigVector values: no unexplained bytes."""
    copies = garbage = 0
    for path, v in values(xp):
        if v.type != REG_RESOURCE_REQUIREMENTS_LIST:
            continue
        for lst in v.value.lists:
            for j, d in enumerate(lst.descriptors):
                if not d.union_tail:
                    continue
                if isinstance(d, DevicePrivateRequirement):
                    assert j and private_copy_of(d, lst.descriptors[j - 1], Arch.X86), (path, j)
                    copies += 1
                else:
                    assert isinstance(d, ConfigDataRequirement), (path, j, d)
                    assert v.name == "FilteredConfigVector"
                    garbage += 1
    assert copies == 12 and garbage == 4  # 4 windows in BasicConfigVector, 2 x 4 filtered


def test_the_issue_example_keeps_its_maximum_address(xp):
    raw = bytes.fromhex("0081030020000000f80c0000010000000000000000000000f70c000000000000")
    data = xp.get_value(ENUM + r"\ACPI\PNP0A03\0\LogConf", "BasicConfigVector").data
    assert raw in data
    d = IO_RESOURCE_DESCRIPTOR.unpack(raw, Arch.X86)
    assert d.pack(Arch.X86) == raw and d.union_tail.endswith(b"\xf7\x0c")


def test_dump_names_types_as_the_ddk_does(xp):
    text = format_tree(xp, ENUM)
    requirement_rows = [line for line in text.splitlines() if "IO_RESOURCE_" in line]
    assert sum("ConfigData" in line for line in requirement_rows) == 4  # all 4 genuine ones
    assert "NonArbitrated" not in text
    assert text.count("(a copy of the union of Descriptors[") == 12
    assert "tail 00 00 00 00 f7 0c" in text
    # The pool garbage of FilteredConfigVector shows too: header Reserved, ConfigData fields.
    assert "slot 0x0 reserved 0x26 0x720050 0x63006f," in text
    assert "priority 0x1 reserved 0x630050 0x32300069 tail 34 37 35 33 48 02" in text


@pytest.mark.parametrize("arch", list(Arch))
def test_x64_cpu_configuration_data(arch):
    """An empty full descriptor of an undefined bus: the same bytes in both layouts."""
    with Registry(arch=arch) as reg:
        assert import_reg(reg, DATA / "x64-cpu.reg") == 11
        value = reg.get_value(DESCRIPTION_SYSTEM + r"\CentralProcessor\0", "Configuration Data")
        assert value.type == REG_FULL_RESOURCE_DESCRIPTOR
        full = value.value
        assert isinstance(full, CM_FULL_RESOURCE_DESCRIPTOR)
        assert full.interface_type == InterfaceTypeUndefined
        assert (full.bus_number, full.partial_resource_list.version,
                full.partial_resource_list.revision, full.partials) == (0xFFFFFFFF, 0, 0, ())
        assert full.pack(arch) == value.data
        assert "InterfaceTypeUndefined bus 4294967295 (version 0.0, 0 partial(s))" in format_tree(reg)


EFI_MFA = DATA / "x64-efi-multifunction.reg"
DISK0 = DESCRIPTION_SYSTEM + r"\MultifunctionAdapter\0\DiskController\0\DiskPeripheral\0"


def test_x64_efi_disk_geometry_is_device_specific_data_in_20_byte_partials():
    """The boot disk's CM_DISK_GEOMETRY_DEVICE_DATA (BytesPerSector 512, no CHS geometry
    under EFI) follows a 20-byte x64 partial: only the x64 layout fits all 52 bytes."""
    with Registry(arch=Arch.X64) as reg:
        assert import_reg(reg, EFI_MFA) == 8
        value = reg.get_value(DISK0, "Configuration Data")
        assert len(value.data) == 52 and value.value.pack(Arch.X64) == value.data
        assert detect_arch(value.data, CM_FULL_RESOURCE_DESCRIPTOR) is Arch.X64
        (part,) = value.value.partials
        assert isinstance(part, DeviceSpecific) and len(part.data) == 16
        assert struct.unpack("<4I", part.data) == (512, 0, 0, 0)  # bytes/sector, cyl, spt, heads
        fulls = [v for _, vs in reg.walk(DESCRIPTION_SYSTEM) for v in vs
                 if v.type == REG_FULL_RESOURCE_DESCRIPTOR]
        assert len(fulls) == 3 and all(v.value.interface_type == Isa for v in fulls)
        assert all(v.value.pack(Arch.X64) == v.data for v in fulls)
        assert "DeviceSpecific 16 bytes: 00 02 00 00" in format_tree(reg)


def test_x64_export_into_an_x86_registry_is_refused_with_the_layout_that_fits():
    with Registry(arch=Arch.X86) as reg:
        with pytest.raises(RegFileError) as err:
            import_reg(reg, EFI_MFA)
        text = str(err.value)
        assert f"{EFI_MFA}:25" in text and "Configuration Data" in text
        assert "4 trailing bytes" in text and "decodes in the x64 layout" in text
        assert not reg.key_exists(DESCRIPTION_SYSTEM + r"\MultifunctionAdapter")  # nothing half-written
        # Bytes that fit neither layout get no such hint.
        with pytest.raises(RegFileError) as err:
            import_text(reg, f"{HEADER}\n\n[HKEY_LOCAL_MACHINE\\HARDWARE]\n\"C\"=hex(9):01,00,00,00,00\n")
        assert "not a valid REG_FULL_RESOURCE_DESCRIPTOR" in str(err.value)
        assert "decodes in" not in str(err.value)
