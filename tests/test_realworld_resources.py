"""Genuine resource lists of real Windows machines, XP to 10, x86 and x64
(tests/data/realworld-resources/README.md names each source): each decodes, dumps, and
re-encodes to exactly the bytes Windows wrote; damaged copies of them are refused naming
file, line, value and what was expected, with nothing written."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.nt.arbiter import (Arbiter, Owner, ResourceKind, claims_of, conflicts_between,
                                interrupt_line, kind_of)
from harness.nt.errors import RegFileError, ResourceFormatError
from harness.nt.regfile import (HEADER, export_text, file_layout, import_reg, import_text,
                                parse_reg, read_reg_file)
from harness.nt.registry import (DESCRIPTION_SYSTEM, MACHINE, REG_FULL_RESOURCE_DESCRIPTOR,
                                 REG_RESOURCE_LIST, REG_RESOURCE_REQUIREMENTS_LIST, Registry,
                                 format_tree)
from harness.nt.resources import (CM_FULL_RESOURCE_DESCRIPTOR, CM_RESOURCE_LIST,
                                  IO_RESOURCE_REQUIREMENTS_LIST, Arch, InterfaceTypeUndefined,
                                  ConfigDataRequirement, DevicePrivateRequirement, DeviceSpecific,
                                  GenericPartial, Isa,
                                  GenericRequirement, IO_RESOURCE_DESCRIPTOR, detect_arch,
                                  CmResourceShare, CmResourceType, Interrupt, Port,
                                  CM_RESOURCE_INTERRUPT_MESSAGE, InterruptRequirement,
                                  fitting_layouts, private_copy_of, CM_RESOURCE_MEMORY_LARGE,
                                  CM_RESOURCE_MEMORY_LARGE_40, CM_SERIAL_DEVICE_DATA, Connection,
                                  ConnectionRequirement, IO_RESOURCE_ALTERNATIVE,
                                  IO_RESOURCE_PREFERRED, Memory, MemoryLarge,
                                  MemoryLargeRequirement, PortRequirement, IO_RESOURCE_DEFAULT,
                                  LCPRI_DESIRED, LCPRI_NORMAL, MemoryRequirement,
                                  CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN,
                                  CM_RESOURCE_INTERRUPT_POLICY_INCLUDED, INTERFACE_TYPE,
                                  IO_RESOURCE_LIST, describe_range)

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


# --- Two genuine SYSTEM hives: Windows 7 x86 (REGEDIT4, ANSI) and an x64 Windows (5.00) ---

WIN7 = DATA / "win7-x86-system.reg"
VBOX = DATA / "x64-virtualbox-system.reg"
DELL = DATA / "x64-dell-laptop-system.reg"
WIN10 = DATA / "win10-1709-x64-system.reg"
SYSTEM = MACHINE + r"\SYSTEM\ControlSet001"
RESERVED_ISA = (SYSTEM + r"\Control\SystemResources\ReservedResources", "Isa")
XP_VMWARE = DATA / "xp-sp3-x86-vmware-system.reg"
MAC = DATA / "win10-mac-t2-carved.reg"
QEMU_GUEST = DATA / "x64-qemu-guest-logs.reg"
M57_PAT = DATA / "xp-sp3-x86-m57-pat-system.reg"
OFIARA = DATA / "xp-sp3-x86-vmware-ofiara-system.reg"
XP_X64 = DATA / "xp-x64-virtualbox-system.reg"
XP_VPC = DATA / "xp-sp3-x86-virtualpc-system.reg"
WIN10_NVME = DATA / "win10-2004-x64-vmware-nvme-system.reg"
EC2_LOGS = DATA / "x64-server2019-ec2-xen-logs.reg"
HIVESYS = DATA / "x64-setup-hivesys-inf.reg"
SETUPREG = DATA / "x64-setup-setupreg-hiv.reg"
SYSTEM_RESOURCES = r"\Control\SystemResources"
CARVED = MACHINE + r"\SYSTEM\CarvedFragments"
# file, layout, values, values fitting that layout only, values fitting the other layout
# only (x64 Windows' x86 ReservedResources\Isa, below), the key the LogConf keys are
# below and at least how many there are
HIVE_ARGS = "file,arch,count,layout_specific,foreign,logconf_root,logconfs"
HIVES = [
    pytest.param(WIN7, Arch.X86, 131, 60, 0, SYSTEM + r"\Enum", 13, id="win7-x86"),
    pytest.param(VBOX, Arch.X64, 36, 13, 1, SYSTEM + r"\Enum", 13, id="x64-vbox"),
    pytest.param(DELL, Arch.X64, 85, 35, 1, SYSTEM + r"\Enum", 13, id="x64-dell"),
    pytest.param(WIN10, Arch.X64, 128, 58, 1, SYSTEM + r"\Enum", 13, id="win10-x64"),
    pytest.param(XP_VMWARE, Arch.X86, 48, 22, 0, SYSTEM + r"\Enum", 22, id="xp-sp3-vmware"),
    pytest.param(MAC, Arch.X64, 64, 29, 0, CARVED, 35, id="win10-mac-carved"),
    pytest.param(QEMU_GUEST, Arch.X64, 35, 14, 0, SYSTEM + r"\Enum", 13, id="x64-qemu-logs"),
    pytest.param(M57_PAT, Arch.X86, 62, 28, 0, SYSTEM + r"\Enum", 27, id="xp-sp3-m57-pat"),
    pytest.param(OFIARA, Arch.X86, 118, 54, 0, SYSTEM + r"\Enum", 56, id="xp-sp3-vmware-ofiara"),
    pytest.param(XP_X64, Arch.X64, 41, 16, 1, SYSTEM + r"\Enum", 16, id="xp-x64-vbox"),
    pytest.param(XP_VPC, Arch.X86, 62, 28, 0, SYSTEM + r"\Enum", 28, id="xp-sp3-virtualpc"),
    pytest.param(WIN10_NVME, Arch.X64, 127, 56, 1, SYSTEM + r"\Enum", 60, id="win10-2004-vmware"),
    pytest.param(EC2_LOGS, Arch.X64, 35, 12, 0, MACHINE + r"\SYSTEM", 15, id="server2019-ec2-logs"),
]
RESOURCE_TYPES = {REG_RESOURCE_LIST: CM_RESOURCE_LIST,
                  REG_FULL_RESOURCE_DESCRIPTOR: CM_FULL_RESOURCE_DESCRIPTOR,
                  REG_RESOURCE_REQUIREMENTS_LIST: IO_RESOURCE_REQUIREMENTS_LIST}


def resource_values(reg, root=MACHINE):
    return [(path, v) for path, vs in reg.walk(root) for v in vs if v.type in RESOURCE_TYPES]


@pytest.mark.parametrize(HIVE_ARGS, HIVES)
def test_hive_values_decode_in_their_layout_and_round_trip(file, arch, count, layout_specific,
                                                           foreign, logconf_root, logconfs):
    """Every value decodes; the resource lists with partials fit one layout only, the
    machine's, but for the one value Windows keeps in the x86 layout on x64 (below)."""
    with Registry(arch=arch) as reg:
        assert import_reg(reg, file) == count
        values = resource_values(reg)
        assert len(values) == count
        only = {a: 0 for a in Arch}
        for path, v in values:
            kind = RESOURCE_TYPES[v.type]
            fits = fitting_layouts(v.data, kind)
            assert fits, (path, v.name)
            layout = arch if arch in fits else fits[0]
            assert kind.unpack(v.data, layout).pack(layout) == v.data, (path, v.name)
            if len(fits) == 1:
                only[fits[0]] += 1
            if v.type == REG_RESOURCE_REQUIREMENTS_LIST:
                assert detect_arch(v.data, kind) is None  # 32-byte descriptors in both
        assert only == {arch: layout_specific, **{a: foreign for a in Arch if a is not arch}}
        text = format_tree(reg)
        assert "undecodable" not in text
        assert text.count("not this registry's") == foreign


@pytest.mark.parametrize(HIVE_ARGS, HIVES)
def test_hive_export_reimports_to_the_same_bytes(file, arch, count, layout_specific, foreign,
                                                 logconf_root, logconfs):
    with Registry(arch=arch) as reg, Registry(arch=arch) as again:
        import_reg(reg, file)
        assert import_text(again, export_text(reg, MACHINE)) == count
        assert [(p, v.name, v.type, v.data) for p, v in resource_values(again)] == \
            [(p, v.name, v.type, v.data) for p, v in resource_values(reg)]


@pytest.mark.parametrize(HIVE_ARGS, HIVES)
def test_registry_command_imports_and_dumps_each_hive(file, arch, count, layout_specific, foreign,
                                                       logconf_root, logconfs, tmp_path, capsys):
    db = str(tmp_path / "machine.db")
    assert cli_main(["registry", "import", str(file), db, "--arch", arch.value]) == 0
    assert f"imported {count} value(s)" in capsys.readouterr().err
    assert cli_main(["registry", "dump", db, "--path", logconf_root]) == 0
    dump = capsys.readouterr().out
    assert dump.count("LogConf\n") >= logconfs and "undecodable" not in dump
    other = next(a for a in Arch if a is not arch)
    refused = str(tmp_path / "other.db")
    assert cli_main(["registry", "import", str(file), refused, "--arch", other.value]) == 2
    err = capsys.readouterr().err
    # Setup's SystemResources values (the same x86 bytes on every Windows) do not vote.
    with imported(file, arch) as reg:
        literal = sum(fitting_layouts(v.data, RESOURCE_TYPES[v.type]) == (arch,)
                      for path, v in resource_values(reg) if "\\Control\\SystemResources" in path)
    assert f"decodes in the {arch.value} layout, as do {layout_specific - literal} of the" in err
    assert not os.path.exists(refused)  # nothing half-written


def test_x64_windows_keeps_the_isa_reserved_resources_in_the_x86_layout():
    """Setup's ``SystemResources\\ReservedResources\\Isa`` (ports of the 8514/A and ATI
    aliases, IRQs 1 3 4 6 12 14, 4 MB below 4 GB, all Shared but port 0..0xFF) is the same
    660 bytes on both machines: 40 partials of 16 bytes, which no x64 list can be."""
    with Registry(arch=Arch.X64) as x64, Registry(arch=Arch.X86) as x86:
        import_reg(x64, VBOX)
        import_reg(x86, WIN7)
        data = x64.get_value(*RESERVED_ISA).data
        assert data == x86.get_value(*RESERVED_ISA).data and len(data) == 660
        assert fitting_layouts(data) == (Arch.X86,)
        with pytest.raises(ResourceFormatError):
            x64.get_value(*RESERVED_ISA).value  # the registry's own view stays strict
        isa = CM_RESOURCE_LIST.unpack(data, Arch.X86)
        (full,) = isa.descriptors
        assert full.interface_type == Isa and len(full.partials) == 40
        assert sorted(interrupt_line(p) for p in full.partials if isinstance(p, Interrupt)) \
            == [1, 3, 4, 6, 12, 14]
        unshared = [p for p in full.partials if p.share != CmResourceShare.CmResourceShareShared]
        assert [(type(p), p.start, p.length) for p in unshared] == [(Port, 0, 0x100)]
        assert ("Isa : REG_RESOURCE_LIST (660 bytes, x86 layout, not this registry's x64, "
                "1 full descriptor(s))") in format_tree(x64)


def test_setup_writes_the_same_isa_reserved_resources_on_every_windows():
    """XP x86 and x64, Windows 7 x86 and later x64 Windows: every hive here that has
    ``SystemResources\\ReservedResources\\Isa`` has the same 660 bytes, in the x86 layout."""
    found = {}
    for param in HIVES:
        file, arch = param.values[:2]
        with imported(file, arch) as reg:
            if reg.key_exists(RESERVED_ISA[0]):
                found[file.name] = reg.get_value(*RESERVED_ISA).data
    assert len(found) >= 7 and {XP_X64.name, M57_PAT.name, WIN7.name} <= set(found)
    assert {len(d) for d in found.values()} == {660} and len(set(found.values())) == 1
    assert fitting_layouts(found[XP_X64.name]) == (Arch.X86,)


@pytest.mark.parametrize("file,arch,pic", [(WIN7, Arch.X86, r"ACPI\PNP0001\4&25ee97c0&0"),
                                           (VBOX, Arch.X64, r"ACPI\PNP0000\4&3a61fada&0")])
def test_the_pic_cascade_irq2_is_a_null_descriptor_keeping_its_interrupt_union(file, arch, pic):
    """Windows writes the PIC's IRQ 2 (the cascade) as a CmResourceTypeNull descriptor
    that keeps Flags 1 (latched) and an interrupt's union (Level 2, Vector 2), in the
    BootConfig and, with the requirement union (Minimum 2, Maximum 2), BasicConfigVector."""
    with Registry(arch=arch) as reg:
        import_reg(reg, file)
        logconf = SYSTEM + "\\Enum\\" + pic + r"\LogConf"
        boot = reg.get_value(logconf, "BootConfig").value
        (null,) = [p for _, p in boot.partials() if isinstance(p, GenericPartial)]
        assert (null.type, null.share, null.flags) == (CmResourceType.CmResourceTypeNull,
                                                       CmResourceShare.CmResourceShareDeviceExclusive, 1)
        assert struct.unpack_from("<II", null.data) == (2, 2)
        (req,) = [d for d in descriptors(reg.get_value(logconf, "BasicConfigVector").value)
                  if isinstance(d, GenericRequirement)]
        assert req.type == CmResourceType.CmResourceTypeNull and struct.unpack_from("<II", req.data) == (2, 2)


# --- The layout vote, on cases of our own making ---

X64_ONLY = CM_RESOURCE_LIST((CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(0x3F8, 8)),)).pack(Arch.X64)
X86_ONLY = CM_RESOURCE_LIST((CM_FULL_RESOURCE_DESCRIPTOR.of(
    Isa, 0, Port(0x2F8, 8), Interrupt(3, 3)),)).pack(Arch.X86)
BOTH = CM_RESOURCE_LIST((CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0),)).pack(Arch.X86)


def reg_file(*values: bytes) -> str:
    lines = [HEADER, "", r"[HKEY_LOCAL_MACHINE\HARDWARE\T]"]
    lines += [f'"v{i}"=hex(8):' + ",".join(f"{b:02x}" for b in data) for i, data in enumerate(values)]
    return "\n".join(lines) + "\n"


def test_vote_material_fits_as_meant():
    assert fitting_layouts(X64_ONLY) == (Arch.X64,)
    assert fitting_layouts(X86_ONLY) == (Arch.X86,)
    assert set(fitting_layouts(BOTH)) == set(Arch)


def test_a_minority_layout_value_is_kept_and_shown_in_its_layout():
    text = reg_file(X64_ONLY, X86_ONLY, BOTH, X64_ONLY)
    with Registry(arch=Arch.X64) as reg:
        assert import_text(reg, text) == 4
        assert reg.get_value(r"\Registry\Machine\HARDWARE\T", "v1").data == X86_ONLY
        dump = format_tree(reg)
        assert dump.count("not this registry's x64") == 1 and "Port" in dump
    with Registry(arch=Arch.X86) as reg:
        with pytest.raises(RegFileError) as err:
            import_text(reg, text, source="mix.reg")
        assert "mix.reg:4:" in str(err.value) and "'v0'" in str(err.value)  # the first x64-only value
        assert "as do 2 of the 3 values here that fit one layout only (1 fit x86)" in str(err.value)
        assert not reg.key_exists(r"\Registry\Machine\HARDWARE\T")


@pytest.mark.parametrize("values,line", [((X64_ONLY, X86_ONLY), 5), ((BOTH, X86_ONLY), 5),
                                         ((X86_ONLY,), 4)])
def test_without_a_majority_for_the_registry_layout_the_file_is_refused(values, line):
    """A tie, or other-layout values with nothing but layout-neutral ones beside them."""
    with Registry(arch=Arch.X64) as reg:
        with pytest.raises(RegFileError) as err:
            import_text(reg, reg_file(*values), source="t.reg")
        assert f"t.reg:{line}:" in str(err.value) and "decodes in the x86 layout" in str(err.value)
        assert not reg.key_exists(r"\Registry\Machine\HARDWARE\T")


def test_a_value_fitting_no_layout_is_refused_even_beside_a_majority():
    broken = X64_ONLY[:-1]
    with Registry(arch=Arch.X64) as reg:
        with pytest.raises(RegFileError) as err:
            import_text(reg, reg_file(X64_ONLY, X64_ONLY, broken), source="t.reg")
        assert "t.reg:6:" in str(err.value) and "decodes in" not in str(err.value)


def hex8(name: str, data: bytes) -> str:
    return f'"{name}"=hex(8):' + ",".join(f"{b:02x}" for b in data)


@pytest.mark.parametrize("tail", [
    [hex8("a", X86_ONLY)],                                    # a's x64 list overwritten
    ['"a"=-'],                                                # a deleted
    [r"[-HKEY_LOCAL_MACHINE\HARDWARE\T\Sub]"],                # a's key deleted
])
def test_only_values_left_stored_vote(tail):
    """x64 2 : x86 1 as written, but what is left after the file's own overwrites and
    deletions is 1 : 1, which an export of the result would show too: refused."""
    lines = [HEADER, "", r"[HKEY_LOCAL_MACHINE\HARDWARE\T\Sub]", hex8("a", X64_ONLY),
             r"[HKEY_LOCAL_MACHINE\HARDWARE\T]", hex8("b", X64_ONLY), hex8("c", X86_ONLY),
             r"[HKEY_LOCAL_MACHINE\HARDWARE\T\Sub]", *tail]
    with Registry(arch=Arch.X64) as reg:
        with pytest.raises(RegFileError) as err:
            import_text(reg, "\n".join(lines) + "\n", source="t.reg")
        assert "(1 fit x64)" in str(err.value)
        assert not reg.key_exists(r"\Registry\Machine\HARDWARE\T")
    with Registry(arch=Arch.X64) as reg:  # the same file less its tail imports
        assert import_text(reg, "\n".join(lines[:-1]) + "\n") == 3


@pytest.mark.parametrize("values,layout", [
    ((X64_ONLY, X86_ONLY, BOTH, X64_ONLY), Arch.X64),
    ((X86_ONLY, BOTH), Arch.X86),
    ((BOTH,), None),                        # nothing tells
    ((X64_ONLY, X86_ONLY), None),           # a tie
    ((), None),
])
def test_file_layout_is_the_vote_of_the_single_layout_values(values, layout):
    assert file_layout(parse_reg(reg_file(*values))) is layout


def test_file_layout_counts_only_the_values_left_stored():
    lines = [HEADER, "", r"[HKEY_LOCAL_MACHINE\HARDWARE\T]", hex8("a", X86_ONLY),
             hex8("b", X86_ONLY), hex8("c", X64_ONLY)]
    assert file_layout(parse_reg("\n".join(lines) + "\n")) is Arch.X86
    assert file_layout(parse_reg("\n".join(lines + ['"a"=-']) + "\n")) is None  # 1 : 1 left


@pytest.mark.parametrize("file,arch", [(WIN7, Arch.X86), (M57_PAT, Arch.X86), (XP_X64, Arch.X64),
                                       (QEMU_GUEST, Arch.X64), (DATA / "x64-cpu.reg", Arch.X64)])
def test_a_new_database_takes_the_files_layout(file, arch, tmp_path, capsys):
    """Without ``--arch`` a new database gets the layout the file's values show (XP x64's
    one x86-only value, setup's Isa, does not vote; a file whose values fit both is x64, the
    default); an
    existing database keeps its own and refuses a file of the other."""
    db = str(tmp_path / "machine.db")
    assert cli_main(["registry", "import", str(file), db]) == 0
    with Registry(db, create=False) as reg:
        assert reg.arch is arch
    other = WIN7 if arch is Arch.X64 else XP_X64
    assert cli_main(["registry", "import", str(other), db]) == 2
    assert f"import it into an {next(a for a in Arch if a is not arch).value} registry" in \
        capsys.readouterr().err


@pytest.mark.parametrize("file,arch,count,first,last", [(WIN7, Arch.X86, 110, 81, 190),
                                                        (VBOX, Arch.X64, 367, 81, 511),
                                                        (DELL, Arch.X64, 407, 54, 511)])
def test_the_acpi_hal_boot_config_reserves_idt_vectors_not_irq_lines(file, arch, count, first, last):
    """``ACPI_HAL\\PNP0C08``'s BootConfig is one DeviceExclusive Interrupt per IDT vector
    (PNPBus, bus 0xFFFFFFFF), each vector once, Level a small number shared by many: read
    as IRQ lines (Level when nonzero), they would hold IRQs 3 to 12 against every device."""
    with Registry(arch=arch) as reg:
        import_reg(reg, file)
        boot = reg.get_value(SYSTEM + r"\Enum\ACPI_HAL\PNP0C08\0\LogConf", "BootConfig").value
        (full,) = boot.descriptors
        assert (full.interface_type.name, full.bus_number) == ("PNPBus", 0xFFFFFFFF)
        partials = full.partials
        assert all(isinstance(p, Interrupt) and p.share == CmResourceShare.CmResourceShareDeviceExclusive
                   for p in partials)
        vectors = [p.vector for p in partials]
        assert len(set(vectors)) == len(vectors) and min(vectors) == first
        assert (len(vectors), max(vectors)) == (count, last)
        assert len({p.level for p in partials}) <= 10 < len(partials)


@pytest.mark.parametrize("name,cut,pad,expected", [
    ("BootConfig", 1, 0, "needs at least 64 bytes but only 63 remain"),
    ("BootConfig", 0, 4, "4 trailing bytes after the structure (84 of 88 bytes used)"),
    ("BasicConfigVector", 2, 0, "ListSize 168 runs past the end of the buffer (166 bytes)"),
    ("BasicConfigVector", 0, 32, "32 trailing bytes after the structure (168 of 200 bytes used)"),
])
def test_a_cut_or_padded_genuine_value_is_refused_naming_file_line_value_and_why(name, cut, pad, expected):
    """Genuine bytes (Win7's PIC) one cut short or padded, amid the machine's other values:
    the whole file is refused at that value's line and nothing is written."""
    with Registry(arch=Arch.X86) as reg:
        import_reg(reg, WIN7)
        data = reg.get_value(SYSTEM + r"\Enum\ACPI\PNP0001\4&25ee97c0&0\LogConf", name).data
        damaged = data[:len(data) - cut] + bytes(pad)
        reg_type = "8" if name == "BootConfig" else "a"
        text = export_text(reg, MACHINE) + ("\r\n[HKEY_LOCAL_MACHINE\\HARDWARE\\Damaged]\r\n"
                                             f'"{name}"=hex({reg_type}):' + damaged.hex(",") + "\r\n")
    line = text.count("\n")
    with Registry(arch=Arch.X86) as reg:
        with pytest.raises(RegFileError) as err:
            import_text(reg, text, source="damaged.reg")
        message = str(err.value)
        assert message.startswith(f"damaged.reg:{line}: value '{name}' is not a valid ")
        assert expected in message and "in the registry's x86 layout" in message
        assert not reg.key_exists(MACHINE + r"\SYSTEM")


def test_windows_10_counts_an_unwritten_descriptor_in_list_size():
    """Three PCI BasicConfigVector values of Windows 10 1709 (two alternative lists:
    message-signalled interrupts, then a line-based fallback) have ListSize (= the value's
    length) 32 bytes past the lists: a zeroed descriptor slot, kept as ``slack``, shown in
    the dump."""
    with Registry(arch=Arch.X64) as reg:
        import_reg(reg, WIN10)
        slack = [(path, v.value) for path, v in resource_values(reg)
                 if v.type == REG_RESOURCE_REQUIREMENTS_LIST and v.value.slack]
        assert len(slack) == 3
        for path, req in slack:
            assert "\\Enum\\PCI\\" in path and req.slack == bytes(32)
            msi, lines = ([bool(d.flags & CM_RESOURCE_INTERRUPT_MESSAGE) for d in lst.descriptors
                           if isinstance(d, InterruptRequirement)] for lst in req.lists)
            assert all(msi) and lines[-1] is False and req.alternative_lists == 2
        assert format_tree(reg).count("32 bytes after the lists, inside ListSize: zero") == 3


# --- Third pass: XP SP3 (damaged hive), Windows 10 on a Mac (carved), a QEMU guest (logs) ---

def imported(file, arch):
    reg = Registry(arch=arch)
    import_reg(reg, file)
    return reg


def one_value(reg, under, key_tail, name):
    """The value ``name`` of the one key below ``under`` whose path ends in ``key_tail``."""
    (found,) = [v for path, vs in reg.walk(under) if path.endswith(key_tail)
                for v in vs if v.name == name]
    return found


def test_memory40_window_of_the_macs_pcie_root_bus():
    """Windows 10 on a Mac reserves 256 GB of MMIO above 256 GB for its PCIe root bus: a
    MemoryLarge partial with CM_RESOURCE_MEMORY_LARGE_40 whose stored Length40 is the
    length >> 8, and the same window as a requirement."""
    with imported(MAC, Arch.X64) as reg:
        boot = one_value(reg, CARVED, r"\PNP0A08\0\LogConf", "BootConfig")
        (large,) = [p for _, p in boot.value.partials() if isinstance(p, MemoryLarge)]
        assert (large.start, large.length) == (0x40_0000_0000, 0x40_0000_0000)
        assert large.flags & CM_RESOURCE_MEMORY_LARGE == CM_RESOURCE_MEMORY_LARGE_40
        raw = large.pack(Arch.X64)
        assert raw in boot.data and struct.unpack_from("<QI", raw, 4) == (0x40_0000_0000, 0x4000_0000)
        basic = one_value(reg, CARVED, r"\PNP0A08\0\LogConf", "BasicConfigVector")
        (req,) = [d for d in descriptors(basic.value) if isinstance(d, MemoryLargeRequirement)]
        assert (req.length, req.minimum_address, req.maximum_address) == \
            (0x40_0000_0000, 0x40_0000_0000, 0x7F_FFFF_FFFF)
        assert req.flags & CM_RESOURCE_MEMORY_LARGE == CM_RESOURCE_MEMORY_LARGE_40
        text = format_tree(reg, CARVED)
        assert "MemoryLarge    0x4000000000-0x7fffffffff (length 0x4000000000) Shared           LARGE_40" in text


def test_the_macs_bluetooth_uart_is_a_connection_id_not_a_range():
    """BCM2E7C's BootConfig and BasicConfigVector hold one CmResourceTypeConnection: class
    SERIAL (2), type 3, connection id 1; the arbiter has nothing to arbitrate in it."""
    with imported(MAC, Arch.X64) as reg:
        boot = one_value(reg, CARVED, r"\BCM2E7C\1\LogConf", "BootConfig").value
        (conn,) = [p for _, p in boot.partials()]
        assert isinstance(conn, Connection) and kind_of(conn) is None
        assert (conn.connection_class, conn.connection_type, conn.connection_id) == (2, 3, 1)
        basic = one_value(reg, CARVED, r"\BCM2E7C\1\LogConf", "BasicConfigVector").value
        (req,) = descriptors(basic)
        assert isinstance(req, ConnectionRequirement) and req.connection_id == 1
        assert not [d for _, p in resource_values(reg) for d in descriptors(p.value)
                    if isinstance(d, (GenericPartial, GenericRequirement)) and int(d.type) == 0x84]
        assert format_tree(reg, CARVED).count("Connection     class 2 (SERIAL) type 3 id 0x1 ") == 2


def test_windows_10_asks_for_msi_messages_by_token():
    """PCI requirement lists of the Mac ask for message-signalled interrupts as the WDK
    says: MaximumVector = CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN, MinimumVector = token -
    count + 1; a power of two up to MSI's 32 (8 or 16 preferred, 1 as the alternative, or
    1 alone)."""
    with imported(MAC, Arch.X64) as reg:
        asks = []
        for _, v in resource_values(reg):
            if v.type == REG_RESOURCE_REQUIREMENTS_LIST:
                asks += [(d.message_count, d.option) for d in descriptors(v.value)
                         if isinstance(d, InterruptRequirement) and d.flags & CM_RESOURCE_INTERRUPT_MESSAGE]
        assert asks and {count for count, _ in asks} == {1, 8, 16}
        assert (8, IO_RESOURCE_PREFERRED) in asks and (1, IO_RESOURCE_ALTERNATIVE) in asks
        text = format_tree(reg, CARVED)
        assert "message token, 8 message(s)" in text and "vector 4294967" not in text


XP_ENUM = SYSTEM + r"\Enum"


@pytest.mark.parametrize("file", [XP_VMWARE, M57_PAT, OFIARA])
def test_xp_counts_list_size_past_its_lists_too(file):
    """XP's ISA PnP read-data port, on three machines alike: ListSize 1120 (the value's
    length), one list of 16 port descriptors ending at 552, then 568 zero bytes (not whole
    descriptors): kept as slack, as Windows 10's unwritten descriptor is. Its BootConfig's
    partial list is Version 0, Revision 0x3000."""
    with imported(file, Arch.X86) as reg:
        key = XP_ENUM + r"\ISAPNP\ReadDataPort\0\LogConf"
        value = reg.get_value(key, "BasicConfigVector")
        req = value.value
        assert struct.unpack_from("<I", value.data)[0] == len(value.data) == 1120
        assert (req.interface_type.name, len(req.lists), len(req.lists[0].descriptors)) == ("Internal", 1, 16)
        assert req.slack == bytes(568) and len(value.data) - len(req.slack) == 552
        assert req.pack(Arch.X86) == value.data
        boot = reg.get_value(key, "BootConfig").value
        (full,) = boot.descriptors
        plist = full.partial_resource_list
        assert (plist.version, plist.revision) == (0, 0x3000)
        assert [(p.start, p.length) for p in full.partials] == [(0xA79, 1), (0x279, 1)]
        assert "568 bytes after the lists, inside ListSize: zero" in format_tree(reg, key)


def test_xp_legacy_serial_boot_config_carries_the_uart_clock():
    """The firmware mapper's COM1 (Enum\\Root\\*PNP0501): Isa, partial list Version 0.0,
    ports 0x3F8 length 7, IRQ 4 with ShareDisposition Undetermined, and 8 bytes of
    CM_SERIAL_DEVICE_DATA: BaudClock 1843200; COM2 the same at 0x2F8, IRQ 3."""
    with imported(XP_VMWARE, Arch.X86) as reg:
        for instance, base, irq in (("1_0_17_0_0_0", 0x3F8, 4), ("1_0_17_1_0_0", 0x2F8, 3)):
            boot = reg.get_value(XP_ENUM + "\\Root\\*PNP0501\\" + instance + r"\LogConf",
                                 "BootConfig").value
            (full,) = boot.descriptors
            assert full.interface_type == Isa
            assert (full.partial_resource_list.version, full.partial_resource_list.revision) == (0, 0)
            port, line, specific = full.partials
            assert (type(port), port.start, port.length) == (Port, base, 7)
            assert (type(line), interrupt_line(line), line.share) == \
                (Interrupt, irq, CmResourceShare.CmResourceShareUndetermined)
            assert CM_SERIAL_DEVICE_DATA.unpack(specific.data) == CM_SERIAL_DEVICE_DATA(0, 0, 1843200)


@pytest.mark.parametrize("file,arch,key,repeats", [
    (XP_X64, Arch.X64, r"\ACPI\PNP0A03\0", 2),
    (QEMU_GUEST, Arch.X64, r"\ACPI\PNP0A03\1", 1),
])
def test_root_bus_windows_are_followed_by_private_type_and_start(file, arch, key, repeats):
    """After each window of the PCI root bus's BasicConfigVector: on XP x64 the window's
    copy (XP's rule), then on both DevicePrivate (type 1 port / 3 memory, the window's
    start, 0) with Flags 0x6000, then (0, 0, 0) with Flags 1 -- twice each on XP x64,
    once on the later x64 guest."""
    with imported(file, arch) as reg:
        req = reg.get_value(XP_ENUM + key + r"\LogConf", "BasicConfigVector").value
        (lst,) = req.lists
        ds = list(lst.descriptors)
        windows = [i for i, d in enumerate(ds) if isinstance(d, (PortRequirement, MemoryRequirement))]
        assert len(windows) >= 4
        for i in windows:
            window = ds[i]
            after = ds[i + 1:i + 1 + 2 * repeats + (repeats == 2)]
            if repeats == 2:  # XP's copy of the window first
                assert private_copy_of(after[0], window, arch)
                after = after[1:]
            kind = 1 if isinstance(window, PortRequirement) else 3
            assert [(d.data, d.flags) for d in after] == \
                [((kind, window.minimum_address, 0), 0x6000)] * repeats + [((0, 0, 0), 1)] * repeats


def test_xp_lists_each_com_port_twice_mapper_and_acpi():
    """The firmware mapper's COM1/COM2 (Isa, 7 ports, IRQ share Undetermined) and ACPI's
    (PNPBus, 8 ports from the same base, IRQ DeviceExclusive) side by side in one LogConf
    tree: under the ResourceMap rule they would collide, so LogConf values are no claims."""
    with imported(XP_VMWARE, Arch.X86) as reg:
        for mapper, acpi, base in (("1_0_17_0_0_0", "1", 0x3F8), ("1_0_17_1_0_0", "2", 0x2F8)):
            boots = [reg.get_value(XP_ENUM + key + r"\LogConf", "BootConfig").value
                     for key in ("\\Root\\*PNP0501\\" + mapper, "\\ACPI\\PNP0501\\" + acpi)]
            (old, new) = [[(p.start, p.length) for _, p in b.partials() if isinstance(p, Port)]
                          for b in boots]
            assert (old, new) == ([(base, 7)], [(base, 8)])
            assert [b.descriptors[0].interface_type.name for b in boots] == ["Isa", "PNPBus"]
            claims = [claims_of(Owner(str(i)), b) for i, b in enumerate(boots)]
            assert conflicts_between(*claims)


def test_a_legacy_game_port_asks_with_io_resource_default_and_two_priorities():
    """XP's LEGACY\\JOYSTICK (OFIARA): two alternative lists, each led by a ConfigData of
    LCPRI_DESIRED then LCPRI_NORMAL, every descriptor with Option IO_RESOURCE_DEFAULT (the
    flag the DDK calls unused): ports 0x200 or 0x208..0x21F, 8 aligned to 8."""
    with imported(OFIARA, Arch.X86) as reg:
        (value,) = [v for path, vs in reg.walk(XP_ENUM + r"\LEGACY\JOYSTICK") for v in vs]
        req = value.value
        assert (req.interface_type, req.alternative_lists) == (Isa, 2)
        heads = [lst.descriptors[0] for lst in req.lists]
        assert [h.priority for h in heads] == [LCPRI_DESIRED, LCPRI_NORMAL]
        assert {d.option for d in descriptors(req)} == {IO_RESOURCE_DEFAULT}
        ports = [(d.minimum_address, d.maximum_address, d.length, d.alignment)
                 for d in descriptors(req) if isinstance(d, PortRequirement)]
        assert ports == [(0x200, 0x207, 8, 8), (0x208, 0x21F, 8, 8)]


def test_qemu_guests_root_bus_leaves_out_qemus_own_ports():
    """The x64 guest's PCI root bus (PNP0A03) windows, as Windows read them from QEMU's
    ACPI: the gaps between the port windows are QEMU's PCI configuration ports and its
    ACPI hotplug registers; the memory window starts above the guest's 1 GB of RAM."""
    with imported(QEMU_GUEST, Arch.X64) as reg:
        boot = reg.get_value(XP_ENUM + r"\ACPI\PNP0A03\1\LogConf", "BootConfig").value
        ports = sorted((p.start, p.end - 1) for _, p in boot.partials() if isinstance(p, Port))
        gaps = [(a_end + 1, b_start - 1) for (_, a_end), (b_start, _) in zip(ports, ports[1:])]
        assert ports[0][0] == 0 and ports[-1][1] == 0xFFFF
        assert gaps == [(0xCF8, 0xCFF), (0xAE00, 0xAE0E), (0xAF00, 0xAF1F), (0xAFE0, 0xAFE3)]
        assert all(p.share == CmResourceShare.CmResourceShareShared
                   for _, p in boot.partials() if isinstance(p, (Port, Memory)))
        memory = [(p.start, p.end - 1) for _, p in boot.partials() if isinstance(p, Memory)]
        assert memory == [(0xA0000, 0xBFFFF), (0x4000_0000, 0xFEBF_FFFF)]


# --- Bad real-world input made from the genuine files ---

def with_damaged_value(file, arch, key, name, damage):
    """The genuine file's export with a damaged copy of one of its values appended under a
    new key, and the line that copy is on."""
    with imported(file, arch) as reg:
        value = reg.get_value(key, name)
        data = damage(bytearray(value.data))
        text = export_text(reg, MACHINE)
    text += ("\r\n[HKEY_LOCAL_MACHINE\\HARDWARE\\Damaged]\r\n"
             f'"{name}"=hex({value.type:x}):' + bytes(data).hex(",") + "\r\n")
    return text, text.count("\n")


def put(offset, fmt, value):
    def damage(data):
        struct.pack_into(fmt, data, offset, value)
        return data
    return damage


MAC_ROOT = CARVED + r"\08045660\PNP0A08\0\LogConf"
MAC_UART = CARVED + r"\08048660\BCM2E7C\1\LogConf"
XP_READ_PORT = XP_ENUM + r"\ISAPNP\ReadDataPort\0\LogConf"


@pytest.mark.parametrize("file,arch,key,name,damage,expected", [
    (MAC, Arch.X64, MAC_ROOT, "BootConfig", lambda d: d[:-1],
     "needs at least"),                                                     # cut by one byte
    (MAC, Arch.X64, MAC_ROOT, "BootConfig", put(16, "<I", 57),               # Count 56 -> 57
     "Count 57 needs at least 1140 bytes but only 1120 remain"),
    (MAC, Arch.X64, MAC_UART, "BootConfig", put(20, "<B", 0x85),            # unknown Type
     "133 is not a CmResourceType (valid: 0, 1, 2, 3, 4, 5, 6, 7, 128, 129, 130, 131, 132)"),
    (MAC, Arch.X64, MAC_UART, "BasicConfigVector", put(41, "<B", 0x40),     # unknown Type
     "64 is not a CmResourceType"),
    (XP_VMWARE, Arch.X86, XP_READ_PORT, "BasicConfigVector", put(0, "<I", 1121),
     "ListSize 1121 runs past the end of the buffer (1120 bytes)"),
    (XP_VMWARE, Arch.X86, XP_READ_PORT, "BasicConfigVector", put(0, "<I", 551),
     "Count 16 needs at least 512 bytes but only 511 remain"),
    (XP_VMWARE, Arch.X86, XP_READ_PORT, "BasicConfigVector", put(0, "<I", 16),
     "ListSize 16 is smaller than the 32-byte header"),
])
def test_a_damaged_genuine_value_refuses_the_file_at_its_line(file, arch, key, name, damage,
                                                               expected):
    """A genuine value cut short, with a count, ListSize or Type code made wrong, amid the
    machine's other values: the error names the file, the line, the value and what was
    expected, and nothing of the file is written."""
    text, line = with_damaged_value(file, arch, key, name, damage)
    with Registry(arch=arch) as reg:
        with pytest.raises(RegFileError) as err:
            import_text(reg, text, source="damaged.reg")
        message = str(err.value)
        assert message.startswith(f"damaged.reg:{line}: value '{name}' is not a valid "), message
        assert expected in message
        assert not reg.key_exists(MACHINE + r"\SYSTEM")


def test_the_damaged_values_are_stored_as_they_are_without_validation(tmp_path, capsys):
    """``--no-validate`` keeps such a value (bytes unchanged) and the dump marks it."""
    text, _ = with_damaged_value(MAC, Arch.X64, MAC_UART, "BootConfig", put(20, "<B", 0x85))
    source = tmp_path / "damaged.reg"
    source.write_text(text, encoding="utf-8")
    db = str(tmp_path / "machine.db")
    assert cli_main(["registry", "import", str(source), db, "--no-validate"]) == 0
    capsys.readouterr()
    assert cli_main(["registry", "dump", db, "--path", r"\Registry\Machine\HARDWARE\Damaged"]) == 0
    dump = capsys.readouterr().out
    assert "undecodable" in dump and "133 is not a CmResourceType" in dump


@pytest.mark.parametrize("encode,accepted", [
    (lambda text: text.encode("utf-8"), True),                            # re-saved as UTF-8
    (lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"), True),           # ... with a BOM
    (lambda text: text.replace("\r\n", "\n").encode("utf-8"), True),      # LF line ends
    (lambda text: text.encode("utf-16-le"), "UTF-16LE text without a byte-order mark"),
    (lambda text: "\ufeff".encode("utf-16-be") + text.encode("utf-16-be"), "big-endian UTF-16"),
])
def test_a_genuine_export_in_other_encodings(encode, accepted, tmp_path):
    """The Mac's UTF-16LE export re-encoded as editors and tools do: the same values, or a
    refusal at line 1 that says which encoding was found and which are expected."""
    raw = MAC.read_bytes()
    assert raw.startswith(b"\xff\xfe")
    text = raw[2:].decode("utf-16-le")
    other = tmp_path / "other.reg"
    other.write_bytes(encode(text))
    with Registry(arch=Arch.X64) as want, Registry(arch=Arch.X64) as got:
        import_reg(want, MAC)
        if accepted is True:
            assert import_reg(got, other) == 64
            assert [(p, v.name, v.data) for p, v in resource_values(got)] == \
                [(p, v.name, v.data) for p, v in resource_values(want)]
        else:
            with pytest.raises(RegFileError) as err:
                import_reg(got, other)
            assert f"{other}:1:" in str(err.value) and accepted in str(err.value)
            assert "expected UTF-16LE with" in str(err.value)
            assert not got.key_exists(MACHINE + r"\SYSTEM")


# --- PnP on genuine requirement lists ---


def test_pnp_candidates_of_a_pci_bridge_with_a_zero_length_window():
    """Windows 7's 440BX AGP bridge (and every PCI bridge of the VMware and Dell machines)
    asks for bridge windows of Length 0 (nothing behind them): a port window [0, 0xFFFF]
    aligned to 0x1000 has 16 places, few enough to be expanded, and each place must stay a
    valid descriptor."""
    from harness.nt import pnp
    with imported(WIN7, Arch.X86) as reg:
        key = SYSTEM + r"\Enum\PCI\VEN_8086&DEV_7191&SUBSYS_00000000&REV_01\3&18d45aa6&0&08\LogConf"
        basic = reg.get_value(key, "BasicConfigVector").value
    assert [d for d in descriptors(basic)
            if isinstance(d, PortRequirement) and d.length == 0 and d.alignment == 0x1000]
    node = pnp.DeviceNode("PCI\\bridge\\0", "bridge", configs={pnp.ConfigType.BASIC: basic})
    assert pnp.candidates(node)


def test_a_regedit4_export_in_a_windows_code_page_via_the_command(tmp_path, capsys):
    """Windows 7's REGEDIT4 export with a key of a German machine's names added in its code
    page (cp1252): refused as UTF-8 at that line, nothing written; with ``--ansi-codepage
    1252`` every genuine value imports unchanged beside the new key."""
    raw = WIN7.read_bytes()
    assert raw.startswith(b"REGEDIT4\r\n")
    added = ("\r\n[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\Class\\Anschlüsse]\r\n"
             '"Class"="Ports"\r\n').encode("cp1252")
    source = tmp_path / "de.reg"
    source.write_bytes(raw + added)
    line = (raw + added).count(b"\n") - 1
    db = str(tmp_path / "machine.db")
    assert cli_main(["registry", "import", str(source), db, "--arch", "x86"]) == 2
    err = capsys.readouterr().err
    at = len(raw) + added.index("ü".encode("cp1252"))
    assert f"{source}:{line}: invalid UTF-8 at byte {at}" in err
    assert "--ansi-codepage" in err and not os.path.exists(db)
    assert cli_main(["registry", "import", str(source), db, "--arch", "x86",
                     "--ansi-codepage", "1252"]) == 0
    capsys.readouterr()
    with Registry(db, create=False) as got, imported(WIN7, Arch.X86) as want:
        assert [(p, v.name, v.data) for p, v in resource_values(got)] == \
            [(p, v.name, v.data) for p, v in resource_values(want)]
        assert got.get(SYSTEM + r"\Control\Class\Anschlüsse", "Class") == "Ports"


# --- Fourth pass: an ISA PnP card (XP on Virtual PC), NVMe and MSI-X (Windows 10 2004) ---

SB16 = XP_ENUM + r"\ISAPNP\TBA03b0\FFFFFFFF\LogConf"
E1000E = (XP_ENUM + r"\PCI\VEN_8086&DEV_10D3&SUBSYS_07D015AD&REV_00\000C29FFFF661AA200"
          r"\LogConf")


def test_xp_isa_pnp_sound_blaster_numbers_its_descriptors_in_spare2():
    """Virtual PC's ISA PnP Sound Blaster 16 (ISAPNP\\TBA03b0): BootConfig ports 0x220 and
    0x380 (10-bit decode), DMA 1 and 5, IRQ 5, partial list Revision 0x3000 as the read-data
    port's; its BasicConfigVector (list Revision 0x30, led by ConfigData LCPRI_DESIRED)
    has Spare1 0x80 on every resource descriptor and numbers the DMA and port ones 1..4 in
    Spare2, with pool addresses (0xe1......) in the header's Reserved[2], the ConfigData's
    tail and the interrupt's Vista+ policy fields; the dump shows every one of them."""
    with imported(XP_VPC, Arch.X86) as reg:
        boot = reg.get_value(SB16, "BootConfig").value
        (full,) = boot.descriptors
        assert (full.interface_type, full.partial_resource_list.revision) == (Isa, 0x3000)
        assert sorted((type(p).__name__, p.start if isinstance(p, Port) else
                       p.channel if hasattr(p, "channel") else interrupt_line(p))
                      for p in full.partials) == [("Dma", 1), ("Dma", 5), ("Interrupt", 5),
                                                  ("Port", 0x220), ("Port", 0x380)]
        req = reg.get_value(SB16, "BasicConfigVector").value
        (lst,) = req.lists
        assert (lst.version, lst.revision, req.reserved[2] >> 24) == (1, 0x30, 0xE1)
        head, *rest = lst.descriptors
        assert isinstance(head, ConfigDataRequirement) and head.priority == LCPRI_DESIRED
        assert head.union_tail.endswith(struct.pack("<I", req.reserved[2]))
        assert [(d.spare1, d.spare2) for d in rest] == [(0x80, 0), (0x80, 1), (0x80, 2),
                                                        (0x80, 3), (0x80, 4)]
        irq = rest[0]
        assert isinstance(irq, InterruptRequirement) and irq.priority_policy >> 24 == 0xE1
        text = format_tree(reg, SB16)
        assert "priority 0xe1017388 targets 0xe1017348 spare 0x80 0x0" in text
        assert text.count("spare 0x80 ") == 5
        assert "in [0x380, 0x38f] spare 0x80 0x4" in text


def test_a_dump_tells_apart_descriptors_that_differ_only_in_unsaid_fields():
    """Two requirement lists alike but for Spare1/Spare2 or an interrupt's policy fields
    used to dump to the same text."""
    plain = InterruptRequirement(5, 5)
    variants = [plain, InterruptRequirement(5, 5, spare1=0x80, spare2=1),
                InterruptRequirement(5, 5, group=0xFFFF),
                InterruptRequirement(5, 5, targeted_processors=-1),
                PortRequirement(0x10, 1, 0x220, 0x22F, spare2=3)]
    rows = [describe_range(d) for d in variants]
    assert len(set(rows)) == len(rows)
    assert rows[0] == "vector 5..5"
    assert rows[2].endswith("group 0xffff priority 0x0 targets 0x0")
    assert rows[3].endswith("targets all") and rows[4].endswith("spare 0x0 0x3")


NVME = XP_ENUM + r"\PCI\VEN_15AD&DEV_07F0&SUBSYS_07F015AD&REV_00\4&3b50545d&0&00B8\LogConf"
ROOT_PORT = XP_ENUM + r"\PCI\VEN_15AD&DEV_07A0&SUBSYS_07A015AD&REV_01\3&61aaa01&0&A8\LogConf"


def msi_asks(reg, key, index=0):
    req = reg.get_value(key, "BasicConfigVector").value
    return [d for d in req.lists[index].descriptors if isinstance(d, InterruptRequirement)]


def test_windows_10_asks_msi_x_one_message_a_descriptor_with_its_policy():
    """Windows 10 2004 asks MSI-X one 1-message descriptor per vector, POLICY_INCLUDED:
    the NVMe controller 16, IrqPolicySpecifiedProcessors (4) at IrqPriorityHigh (3),
    targeted at CPU 0 and CPU 1 in turn (a queue per processor); the e1000e (82574L) 3 with
    the policy fields zero; each PCIe root port one for Group 0xFFFF (all groups). The
    e1000e's lists also hold a zeroed CmResourceTypeNull descriptor in the slot of its
    unimplemented BAR 2 (the DevicePrivate after each BAR names BARs 0, 1 and 3)."""
    with imported(WIN10_NVME, Arch.X64) as reg:
        nvme = msi_asks(reg, NVME)
        assert all(d.message_count == 1 and d.flags & CM_RESOURCE_INTERRUPT_POLICY_INCLUDED
                   for d in nvme)
        assert [(d.affinity_policy, d.priority_policy, d.targeted_processors) for d in nvme] == \
            [(4, 3, 1), (4, 3, 2)] * 8
        nic = msi_asks(reg, E1000E)
        assert [(d.message_count, d.affinity_policy, d.group, d.priority_policy,
                 d.targeted_processors) for d in nic] == [(1, 0, 0, 0, 0)] * 3
        assert [d.message_count for d in msi_asks(reg, E1000E, 1)] == [1, None]
        (port,) = msi_asks(reg, ROOT_PORT)
        assert (port.message_count, port.group) == (1, 0xFFFF)
        for lst in reg.get_value(E1000E, "BasicConfigVector").value.lists:
            (null,) = [d for d in lst.descriptors if isinstance(d, GenericRequirement)]
            assert null.type == CmResourceType.CmResourceTypeNull and null.data == bytes(24)
            assert [d.data[1] for d in lst.descriptors
                    if isinstance(d, DevicePrivateRequirement)] == [0, 1, 3]
        text = format_tree(reg, NVME)
        assert text.count("policy 0x4 group 0x0 priority 0x3 targets 0x2") == 8


def requirements(*descriptors, iface=INTERFACE_TYPE.PCIBus):
    return IO_RESOURCE_REQUIREMENTS_LIST(iface, 0, 0, (IO_RESOURCE_LIST(tuple(descriptors)),))


MSI = CM_RESOURCE_INTERRUPT_LATCHED | CM_RESOURCE_INTERRUPT_MESSAGE
EXCLUSIVE = CmResourceShare.CmResourceShareDeviceExclusive


def test_a_null_requirement_asks_for_nothing_and_keeps_its_place():
    """A zeroed Null descriptor between two BARs (pci.sys's unimplemented BAR) was a
    descriptor the arbiter could not satisfy, so the device could never be given resources."""
    null = GenericRequirement(CmResourceType.CmResourceTypeNull)
    asked = requirements(MemoryRequirement(0x1000, 0x1000, 0, 0xFFFFFFFF), null,
                         PortRequirement(0x20, 0x20, 0, 0xFFFF))
    placed = Arbiter().allocate(Owner("nic"), asked).resources
    assert placed is not None
    kinds = [type(p) for _, p in placed.partials()]
    assert kinds == [Memory, GenericPartial, Port]
    assert [p for _, p in placed.partials()][1].type == CmResourceType.CmResourceTypeNull
    assert [c.kind for c in claims_of(Owner("nic"), placed)] == [ResourceKind.MEMORY, ResourceKind.PORT]
    # Other generic kinds are still refused, naming the descriptor.
    other = requirements(GenericRequirement(CmResourceType.CmResourceTypePcCardConfig))
    attempt = Arbiter().allocate(Owner("card"), other)
    assert attempt.resources is None and "cannot satisfy" in attempt.attempts[0].reason


@pytest.mark.parametrize("count", [1, 3, 8])
def test_message_interrupts_take_no_irq_line(count):
    """MSI/MSI-X asks (the token form) are not IRQ lines: several 1-message descriptors of
    one device and another device's messages all fit beside a line-based IRQ, which is still
    arbitrated; the placement is the raw MessageInterrupt form (MessageCount in Level's high
    half, the Vector the token)."""
    token = CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN
    arbiter = Arbiter()
    line = arbiter.allocate(Owner("old"), requirements(InterruptRequirement(9, 9, share=EXCLUSIVE)))
    arbiter.replace(Owner("old"), claims_of(Owner("old"), line.resources))
    for name in ("nic", "nvme"):
        asked = requirements(*[InterruptRequirement(token - count + 1, token, share=EXCLUSIVE, flags=MSI)
                               for _ in range(3)])
        placed = arbiter.allocate(Owner(name), asked).resources
        assert placed is not None, name
        messages = [p for _, p in placed.partials()]
        assert [(p.level, p.vector) for p in messages] == [(count << 16, token)] * 3
        assert claims_of(Owner(name), placed) == [] and all(kind_of(p) is None for p in messages)
        arbiter.replace(Owner(name), claims_of(Owner(name), placed))
    again = arbiter.allocate(Owner("late"), requirements(InterruptRequirement(9, 9, share=EXCLUSIVE)))
    assert again.resources is None and again.attempts[0].conflicts  # IRQ 9 is still held


def test_more_messages_than_message_count_holds_are_refused_naming_the_ask():
    token = CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN
    asked = requirements(InterruptRequirement(token - 0x10000, token, share=EXCLUSIVE, flags=MSI))
    attempt = Arbiter().allocate(Owner("odd"), asked)
    assert attempt.resources is None
    assert attempt.attempts[0].reason == "cannot satisfy message token, 65537 message(s)"


def test_the_windows_10_vmware_machine_solves_but_for_its_motherboard_resources():
    """Before the two rules above the e1000e alone had no assignment (its Null BAR slot,
    then its three MSI-X messages on one 'vector'), so neither had the machine. Now what
    keeps it from solving is VMware's ACPI: motherboard resources (PNP0C02) ask for ports
    0x72-0x77 DeviceExclusive over the RTC's 0x70-0x73, as the Dell's PNP0C02 overlap."""
    from harness.nt import pnp
    with imported(WIN10_NVME, Arch.X64) as reg:
        nodes = pnp.logconf_nodes(reg, MACHINE + r"\SYSTEM")
    assert len(nodes) == 60
    nic = next(n for n in nodes if "DEV_10D3" in n.name)
    assert pnp.solve([nic], timeout=60).satisfiable
    rest = [n for n in nodes if "PNP0C02" not in n.name]
    solution = pnp.solve(rest, timeout=120)
    assert solution.satisfiable
    placed = [p for _, p in solution.resources(nic.name).partials()]
    assert sum(isinstance(p, Interrupt) and bool(p.flags & CM_RESOURCE_INTERRUPT_MESSAGE) for p in placed) == 3
    core = pnp.unsatisfiable_core(nodes, timeout=120, subset_budget=2000)
    assert core is not None and core.minimum
    assert sorted(d.split("\\")[-2] for d in core.devices) == ["PNP0B00", "PNP0C02"]


XENBUS = MACHINE + r"\SYSTEM\ControlSet002\Enum\XENBUS"


def test_xen_pv_devices_ask_a_page_and_any_line_for_one_close_processor():
    """AWS's Xen PV devices under Windows Server 2019 (VBD disk, VIF network, IFACE): each
    asks, on the Internal bus, 4 KB of prefetchable cacheable memory anywhere in the 64-bit
    space and one level-triggered interrupt of any vector (0..0xFFFFFFFF), DeviceExclusive,
    IrqPolicyOneCloseProcessor for all processor groups; the machine's 15 LogConf devices
    solve, each PV device on a line of its own."""
    from harness.nt import pnp
    with imported(EC2_LOGS, Arch.X64) as reg:
        asks = {path.split("\\")[-3]: v.value for path, vs in reg.walk(XENBUS) for v in vs}
        nodes = pnp.logconf_nodes(reg, MACHINE + r"\SYSTEM")
    assert sorted(k.split("&")[1] for k in asks) == ["DEV_IFACE", "DEV_VBD", "DEV_VIF"]
    for req in asks.values():
        assert req.interface_type.name == "Internal"
        (lst,) = req.lists
        memory, line = lst.descriptors
        assert (type(memory), memory.length, memory.alignment, memory.maximum_address) == \
            (MemoryRequirement, 0x1000, 0x1000, 0xFFFF_FFFF_FFFF_FFFF)
        assert isinstance(line, InterruptRequirement) and line.message_count is None
        assert (line.minimum_vector, line.maximum_vector, line.affinity_policy, line.group,
                line.share) == (0, 0xFFFFFFFF, 2, 0xFFFF, EXCLUSIVE)
    assert len(nodes) == 15
    solution = pnp.solve(nodes, timeout=120)
    assert solution.satisfiable
    lines = [interrupt_line(p) for n in nodes if "XENBUS" in n.name
             for _, p in solution.resources(n.name).partials() if isinstance(p, Interrupt)]
    assert len(lines) == 3 == len(set(lines))


# --- Bad real-world input made from the fourth pass's files ---

def write(tmp_path, raw: bytes):
    path = tmp_path / "joined.reg"
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("file,arch,encode", [
    (XP_VPC, Arch.X86, lambda raw: raw),                                    # UTF-16LE, BOM
    (EC2_LOGS, Arch.X64, lambda raw: raw),                                  # REGEDIT4, ASCII
    (WIN10_NVME, Arch.X64, lambda raw: raw),                                # UTF-8, BOM, LF
])
def test_two_exports_joined_are_refused_at_the_second_header(file, arch, encode, tmp_path):
    """``copy /b a.reg+b.reg`` (or ``cat``) leaves the second file's byte-order mark and
    header mid-file: refused at that line, saying what it is; nothing is written."""
    raw = file.read_bytes()
    joined = write(tmp_path, raw + raw)
    text = raw.decode("utf-16") if raw.startswith(b"\xff\xfe") else raw.decode("utf-8-sig")
    line = len(text.splitlines()) + 1
    with Registry(arch=arch) as reg:
        with pytest.raises(RegFileError) as err:
            import_reg(reg, joined)
        assert f"{joined}:{line}: a second file header" in str(err.value)
        assert "import each file on its own" in str(err.value)
        assert not reg.key_exists(MACHINE + r"\SYSTEM")


def test_ansi_text_appended_to_a_utf16_export_is_named_as_such(tmp_path):
    """A key typed in an ANSI editor and appended to XP's UTF-16LE export: its bytes pair up
    into CJK-looking characters; the error says so instead of showing them alone."""
    raw = XP_VPC.read_bytes()
    tail = b'[HKEY_LOCAL_MACHINE\\HARDWARE\\Added]\r\n"Name"="Sound"\r\n'
    joined = write(tmp_path, raw + tail)
    with Registry(arch=Arch.X86) as reg:
        with pytest.raises(RegFileError) as err:
            import_reg(reg, joined)
        message = str(err.value)
        assert "read as UTF-16LE are ASCII text ('[HKEY_LOCAL_MACHINE" in message
        assert "Expected the whole file in one encoding" in message
        assert not reg.key_exists(MACHINE + r"\SYSTEM")


@pytest.mark.parametrize("split,accepted", [
    (lambda h: h[:12] + "\\\r\n  " + h[12:], True),       # after a comma, as regedit wraps
    (lambda h: h[:12] + "\\\r\n" + h[12:], True),         # no indent on the continuation
    (lambda h: h[:12] + "\\\r\n\r\n; note\r\n  " + h[12:], True),  # blank, comment inside
    (lambda h: h[:11] + "\\\r\n  " + h[11:], "expected ',' between hex bytes, got '\\\\'"),
    (lambda h: h[:10] + "\\\r\n  " + h[10:], "expected ',' between hex bytes, got '\\\\'"),
    (lambda h: h[:12] + "," + h[12:], "expected a hex byte like '0a', got ''"),
])
def test_a_genuine_value_split_across_lines(split, accepted):
    """The Sound Blaster's BootConfig wrapped as regedit does, and wrapped oddly: inside a
    byte or before its comma (Wine's parser fails there too), or with a doubled comma."""
    with imported(XP_VPC, Arch.X86) as reg:
        data = reg.get_value(SB16, "BootConfig").data
    text = f'{HEADER}\r\n\r\n[HKEY_LOCAL_MACHINE\\HARDWARE\\T]\r\n"B"=hex(8):{split(data.hex(","))}\r\n'
    with Registry(arch=Arch.X86) as reg:
        if accepted is True:
            assert import_text(reg, text) == 1
            assert reg.get_value(MACHINE + r"\HARDWARE\T", "B").data == data
        else:
            with pytest.raises(RegFileError) as err:
                import_text(reg, text, source="split.reg")
            assert str(err.value).startswith("split.reg:4: ") and accepted in str(err.value)
            assert not reg.key_exists(MACHINE + r"\HARDWARE\T")


@pytest.mark.parametrize("cut", ["mid-line", "after-backslash", "after-line-end", "mid-byte"])
def test_an_export_cut_short_inside_a_value_says_so(cut, tmp_path):
    """The EC2 export cut inside its second requirement list (a download or copy that
    stopped): regedit reads the value up to the end of the file, so the error names that
    value and line and says the file ends inside it; nothing is written."""
    raw = EC2_LOGS.read_bytes()
    start = raw.index(b"hex(a):", raw.index(b"hex(a):") + 1)
    backslash = raw.index(b"\\\r\n", start)
    end = {"mid-line": backslash - 7, "after-backslash": backslash + 1,
           "after-line-end": backslash + 3, "mid-byte": backslash - 1}[cut]
    short = write(tmp_path, raw[:end])
    line = raw[:start].count(b"\n") + 1
    name = raw[raw.rindex(b"\n", 0, start) + 1:start].decode("ascii").strip('"=')
    with Registry(arch=Arch.X64) as reg:
        with pytest.raises(RegFileError) as err:
            import_reg(reg, short)
        message = str(err.value)
        assert message.startswith(f"{short}:{line}: value '{name}' is not a valid")
        assert message.endswith("; the file ends inside this value: cut short? "
                                "[STATUS_INVALID_PARAMETER]")
        assert not reg.key_exists(MACHINE + r"\SYSTEM")


def test_a_whole_value_without_a_final_line_end_is_not_called_cut():
    """The hint is for values that do not decode: a complete file that only lacks its last
    line end imports, and a broken value inside the file gets no such hint."""
    raw = EC2_LOGS.read_bytes().rstrip(b"\r\n")
    with Registry(arch=Arch.X64) as reg:
        assert import_text(reg, raw.decode("ascii"), unicode=False) == 35
    broken = X64_ONLY[:-1]
    text = reg_file(broken, X64_ONLY).rstrip("\n")
    with Registry(arch=Arch.X64) as reg:
        with pytest.raises(RegFileError) as err:
            import_text(reg, text, source="t.reg")
        assert "t.reg:4:" in str(err.value) and "cut short" not in str(err.value)


def test_the_virtual_pc_machine_solves_and_its_isa_pnp_card_asks_for_its_boot_config():
    """XP on Virtual PC: the 28 LogConf devices solve; the Sound Blaster keeps its
    BootConfig, and its requirement list alone (one PREFERRED choice per descriptor) is
    placed on the same ports, DMA channels and IRQ."""
    from harness.nt import pnp
    with imported(XP_VPC, Arch.X86) as reg:
        nodes = pnp.logconf_nodes(reg, MACHINE + r"\SYSTEM")
        asked = reg.get_value(SB16, "BasicConfigVector").value
        boot = reg.get_value(SB16, "BootConfig").value
    assert len(nodes) == 28
    solution = pnp.solve(nodes, timeout=120)
    assert solution.satisfiable
    card = next(n for n in nodes if "TBA03b0" in n.name)
    assert solution.resources(card.name) == boot

    def ranges(resources):
        return sorted((kind_of(p).value, claim.start, claim.end)
                      for claim in claims_of(Owner("sb16"), resources) for p in [claim.descriptor])
    placed = Arbiter().allocate(Owner("sb16"), asked).resources
    assert placed is not None and ranges(placed) == ranges(boot)


@pytest.mark.parametrize("encoding,accepted", [("utf-16-le", False), ("ascii", True)])
def test_a_unicode_string_line_pasted_into_a_regedit4_export(encoding, accepted):
    """The Sound Blaster's HardwareID (REG_MULTI_SZ 'ISAPNP\\TBA03b0', '*PNPb003') as a
    5.00 export writes it, UTF-16LE bytes, pasted into the REGEDIT4 EC2 export: read as
    ANSI it would become one string per character; refused at its line, nothing written.
    The same strings as ANSI bytes are what a REGEDIT4 file holds, stored as UTF-16LE."""
    strings = "ISAPNP\\TBA03b0\0*PNPb003\0\0"
    raw = EC2_LOGS.read_bytes().decode("ascii")
    text = raw + ("[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet002\\Enum\\ISAPNP\\TBA03b0\\FFFFFFFF]\r\n"
                  f'"HardwareID"=hex(7):{strings.encode(encoding).hex(",")}\r\n')
    key = MACHINE + r"\SYSTEM\ControlSet002\Enum\ISAPNP\TBA03b0\FFFFFFFF"
    with Registry(arch=Arch.X64) as reg:
        if accepted:
            assert import_text(reg, text, unicode=False) == 36
            assert reg.get_value(key, "HardwareID").data == strings.encode("utf-16-le")
            return
        with pytest.raises(RegFileError) as err:
            import_text(reg, text, unicode=False, source="pasted.reg")
        assert str(err.value).startswith(f"pasted.reg:{text.count(chr(10))}: REG_MULTI_SZ data "
                                         "in hex form are UTF-16LE")
        assert not reg.key_exists(MACHINE + r"\SYSTEM")



# --- Setup's own copy: the SystemResources values of hivesys.inf ---

def system_resources(reg, control_set):
    root = MACHINE + "\\SYSTEM\\" + control_set + SYSTEM_RESOURCES
    return {(path[len(root):], v.name): v.data for path, vs in reg.walk(root) for v in vs
            if v.type in RESOURCE_TYPES} if reg.key_exists(root) else {}


def test_every_windows_holds_hivesys_infs_system_resources_byte_for_byte():
    """XP x64 setup's AMD64\\HIVESYS.INF AddReg lines for AssignmentOrdering PCFlat and PCI
    and ReservedResources Isa: every hive here that has them, x86 and x64, XP to Windows 10
    2004, holds the same bytes -- which is why x64 Windows keeps Isa in the x86 layout."""
    with imported(HIVESYS, Arch.X64) as reg:
        inf = system_resources(reg, "CurrentControlSet")
    assert sorted(inf) == [(r"\AssignmentOrdering", "PCFlat"), (r"\AssignmentOrdering", "PCI"),
                           (r"\ReservedResources", "Isa")]
    same = []
    for param in HIVES:
        file, arch = param.values[:2]
        with imported(file, arch) as reg:
            held = system_resources(reg, "ControlSet001")
        if held:
            assert held == inf, file.name
            same.append(arch)
    assert len(same) >= 9 and set(same) == set(Arch)


@pytest.mark.parametrize("arch", list(Arch))
def test_an_x64_system_resources_export_imports_into_either_layout(arch, tmp_path, capsys):
    """The SystemResources key of an x64 machine holds one value that fits the x86 layout
    only: it was refused for an x64 registry as 'exported from an x86 machine?'. Setup's
    literal values do not tell a file's layout; a new database keeps the default."""
    assert file_layout(read_reg_file(HIVESYS)) is None
    with Registry(arch=arch) as reg:
        assert import_reg(reg, HIVESYS) == 3
        text = format_tree(reg)
    assert ("x86 layout, not this registry's x64" in text) is (arch is Arch.X64)
    db = str(tmp_path / "new.db")
    assert cli_main(["registry", "import", str(HIVESYS), db]) == 0
    with Registry(db, create=False) as reg:
        assert reg.arch is Arch.X64


def test_setup_literals_do_not_vote_but_other_values_still_do():
    """Beside Isa (x86 bytes, not counted) one x64-only LogConf value makes the file x64:
    an x86 registry refuses it naming that value, with 0 values counted for x86."""
    isa = import_values(HIVESYS, Arch.X64)[(r"\ReservedResources", "Isa")]
    lines = [HEADER, "", r"[HKEY_LOCAL_MACHINE\SYSTEM\ControlSet001\Control\SystemResources\ReservedResources]",
             hex8("Isa", isa), r"[HKEY_LOCAL_MACHINE\SYSTEM\ControlSet001\Enum\Root\X\0000\LogConf]",
             hex8("BootConfig", X64_ONLY)]
    text = "\n".join(lines) + "\n"
    assert file_layout(parse_reg(text)) is Arch.X64
    with Registry(arch=Arch.X64) as reg:
        assert import_text(reg, text) == 2
    with Registry(arch=Arch.X86) as reg:
        with pytest.raises(RegFileError) as err:
            import_text(reg, text, source="mixed.reg")
        assert "mixed.reg:6: value 'BootConfig'" in str(err.value)
        assert "as do 1 of the 1 values here that fit one layout only (0 fit x86)" in str(err.value)
        assert not reg.key_exists(MACHINE + r"\SYSTEM")


def import_values(file, arch):
    with imported(file, arch) as reg:
        return system_resources(reg, "CurrentControlSet")



def values_below(reg, root):
    return {(path[len(root):], v.name): v.data for path, vs in reg.walk(root) for v in vs
            if v.type in RESOURCE_TYPES} if reg.key_exists(root) else {}


def test_text_mode_setups_hive_holds_the_arbiters_values_every_windows_keeps():
    """The XP x64 media's SETUPREG.HIV (text-mode setup's SYSTEM hive): its four
    Arbiters\\ReservedResources lists are the same bytes on every machine here, XP to
    Server 2019; its AllocationOrder Pci and Root are XP's (x86 and x64), later Windows
    changed them; its SystemResources are text-mode setup's own (PCI 296 bytes, Isa 628 and
    Eisa 292 in the x86 layout), which GUI setup's hivesys.inf replaces."""
    arbiters = MACHINE + r"\SYSTEM\ControlSet001\Control\Arbiters"
    with imported(SETUPREG, Arch.X64) as reg:
        setup = values_below(reg, arbiters)
        literal = values_below(reg, MACHINE + r"\SYSTEM\ControlSet001" + SYSTEM_RESOURCES)
    reserved = {k: v for k, v in setup.items() if k[0] == r"\ReservedResources"}
    assert sorted(name for _, name in reserved) == ["BrokenMemAtF8", "BrokenVideo",
                                                     "Gateway9500Workaround", "PCStandard"]
    alike, xp = 0, []
    for param in HIVES:
        file, arch = param.values[:2]
        with imported(file, arch) as reg:
            for control_set in ("ControlSet001", "ControlSet002"):
                held = values_below(reg, MACHINE + "\\SYSTEM\\" + control_set + r"\Control\Arbiters")
                if held:
                    break
        if not held:
            continue
        assert {k: held[k] for k in reserved} == reserved, file.name
        alike += 1
        if file.name.startswith("xp-"):
            xp.append(file.name)
            assert {k: v for k, v in held.items() if k[0] == r"\AllocationOrder"} == \
                {k: v for k, v in setup.items() if k[0] == r"\AllocationOrder"}, file.name
    assert alike >= 12 and len(xp) >= 4
    sizes = {name: len(data) for (_, name), data in literal.items()}
    assert sizes == {"PCFlat": 1192, "PCI": 296, "Isa": 628, "Eisa": 292}
    assert [name for (_, name), data in literal.items()
            if fitting_layouts(data, RESOURCE_TYPES[REG_RESOURCE_LIST]) == (Arch.X86,)] == ["Isa", "Eisa"]


@pytest.mark.parametrize("arch", list(Arch))
def test_the_setup_hive_of_x64_media_imports_into_either_layout(arch):
    """Two x86-only values (Isa, Eisa), all under SystemResources, and nothing else that
    tells: the file has no layout of its own, and an x64 registry takes it."""
    assert file_layout(read_reg_file(SETUPREG)) is None
    with Registry(arch=arch) as reg:
        assert import_reg(reg, SETUPREG) == 10
        assert format_tree(reg).count("not this registry's") == (2 if arch is Arch.X64 else 0)


@pytest.mark.parametrize("file,count", [(HIVESYS, 3), (SETUPREG, 10)])
def test_setup_media_values_round_trip_and_dump(file, count):
    with Registry(arch=Arch.X64) as reg, Registry(arch=Arch.X64) as again:
        assert import_reg(reg, file) == count
        for path, v in resource_values(reg):
            fits = fitting_layouts(v.data, RESOURCE_TYPES[v.type])
            assert RESOURCE_TYPES[v.type].unpack(v.data, fits[0]).pack(fits[0]) == v.data, (path, v.name)
        assert "undecodable" not in format_tree(reg)
        assert import_text(again, export_text(reg, MACHINE)) == count
        assert [(p, v.data) for p, v in resource_values(again)] == [(p, v.data) for p, v in resource_values(reg)]
