"""Tests for harness.nt.resources (nt-semantics.md §1) and harness.nt.status.

Expected byte strings are built here with struct.pack straight from the §1 layout tables,
never through the code under test.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.nt import resources as R
from harness.nt.errors import (FieldRangeError, LayoutRuleError, ResourceFormatError,
                               SizeMismatchError, TruncatedError, UnknownTypeError)
from harness.nt.resources import *  # noqa: F401,F403  (reprs must eval in this namespace)
from harness.nt.resources import (Arch, BusNumber, CM_FLOPPY_DEVICE_DATA,
                                  CM_FULL_RESOURCE_DESCRIPTOR, CM_PARTIAL_RESOURCE_LIST,
                                  CM_RESOURCE_LIST, CM_SERIAL_DEVICE_DATA, DeviceSpecific,
                                  DevicePrivate, Dma, GenericPartial, Interrupt,
                                  IO_RESOURCE_LIST, IO_RESOURCE_REQUIREMENTS_LIST, Memory,
                                  MemoryLarge, PCI_REGISTRY_INFO, PCI_SLOT_NUMBER, Port)
from harness.nt.status import (NTSTATUS, NT_ERROR, NT_SUCCESS, NT_WARNING, NtStatusError,
                               IoErrorCode)

X86, X64 = Arch.X86, Arch.X64
ARCHES = [X86, X64]

# ---------------------------------------------------------------------------------------
# Independent encoders, straight from the §1.2–§1.4 tables.


def cm_hdr(rtype: int, share: int, flags: int) -> bytes:
    return struct.pack("<BBH", rtype, share, flags)


def cm_tail(arch: Arch) -> bytes:
    """x64 union is 16 bytes: 4 bytes more than the 12 every non-interrupt member uses."""
    return b"" if arch is X86 else bytes(4)


def cm_port(start, length, share=1, flags=1, arch=X64, rtype=1):
    return cm_hdr(rtype, share, flags) + struct.pack("<II", start & 0xFFFFFFFF, start >> 32) \
        + struct.pack("<I", length) + cm_tail(arch)


def cm_interrupt(level, vector, affinity, share=0, flags=1, arch=X64):
    aff = struct.pack("<I", affinity) if arch is X86 else struct.pack("<Q", affinity)
    return cm_hdr(2, share, flags) + struct.pack("<II", level, vector) + aff


def cm_three(rtype, a, b, c, share=1, flags=0, arch=X64):
    return cm_hdr(rtype, share, flags) + struct.pack("<III", a, b, c) + cm_tail(arch)


def partial_list(*partials: bytes, version=1, revision=1) -> bytes:
    return struct.pack("<HHI", version, revision, len(partials)) + b"".join(partials)


def full(interface_type, bus, plist: bytes) -> bytes:
    return struct.pack("<iI", interface_type, bus) + plist


def resource_list(*fulls: bytes) -> bytes:
    return struct.pack("<I", len(fulls)) + b"".join(fulls)


def io_desc(option, rtype, share, flags, union: bytes, spare1=0, spare2=0) -> bytes:
    assert len(union) <= 24
    return struct.pack("<BBBBHH", option, rtype, share, spare1, flags, spare2) \
        + union + bytes(24 - len(union))


def io_list(*descs: bytes, version=1, revision=1) -> bytes:
    return struct.pack("<HHI", version, revision, len(descs)) + b"".join(descs)


def req_list(interface_type, bus, slot, *lists: bytes, reserved=(0, 0, 0)) -> bytes:
    body = b"".join(lists)
    return struct.pack("<IiII3II", 32 + len(body), interface_type, bus, slot, *reserved,
                       len(lists)) + body


def with_ulong(data: bytes, offset: int, value: int) -> bytes:
    """``data`` with the ULONG at ``offset`` overwritten (to corrupt a count or size)."""
    return data[:offset] + struct.pack("<I", value) + data[offset + 4:]


SERIAL_CLOCK = struct.pack("<HHI", 0, 0, 1843200)


# ---------------------------------------------------------------------------------------
# Sizes stated in §1


@pytest.mark.parametrize("arch, partial, plist, fulld, rlist", [
    (X86, 16, 24, 32, 36), (X64, 20, 28, 36, 40)])
def test_structure_sizes_match_section_1(arch, partial, plist, fulld, rlist):
    p = Port(0x3F8, 8)
    prl = CM_PARTIAL_RESOURCE_LIST([p])
    fd = CM_FULL_RESOURCE_DESCRIPTOR(Isa, 0, prl)
    rl = CM_RESOURCE_LIST([fd])
    assert arch.partial_descriptor_size == partial
    assert (len(p.pack(arch)), len(prl.pack(arch)), len(fd.pack(arch)), len(rl.pack(arch))) \
        == (partial, plist, fulld, rlist)
    assert (p.size(arch), prl.size(arch), fd.size(arch), rl.size(arch)) \
        == (partial, plist, fulld, rlist)


@pytest.mark.parametrize("arch", ARCHES)
def test_io_structure_sizes_match_section_1(arch):
    d = PortRequirement(8, 8, 0x200, 0x3FF)
    lst = IO_RESOURCE_LIST([d])
    req = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, [lst])
    assert (len(d.pack(arch)), len(lst.pack(arch)), len(req.pack(arch))) == (32, 40, 72)
    assert req.size(arch) == struct.unpack_from("<I", req.pack(arch))[0] == 72


# ---------------------------------------------------------------------------------------
# Exact bytes for each partial type, both layouts


def _roundtrip_partial(obj, expected: bytes, arch: Arch):
    assert obj.pack(arch) == expected
    assert CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(expected, arch) == obj


@pytest.mark.parametrize("arch", ARCHES)
def test_port_bytes(arch):
    obj = Port(0x1_0000_03F8, 8, share=CmResourceShareShared,
               flags=CM_RESOURCE_PORT_IO | CM_RESOURCE_PORT_16_BIT_DECODE)
    _roundtrip_partial(obj, cm_port(0x1_0000_03F8, 8, share=3, flags=0x11, arch=arch), arch)


@pytest.mark.parametrize("arch", ARCHES)
def test_memory_bytes(arch):
    obj = Memory(0xFEBF0000, 0x10000, flags=CM_RESOURCE_MEMORY_PREFETCHABLE)
    _roundtrip_partial(obj, cm_port(0xFEBF0000, 0x10000, flags=4, arch=arch, rtype=3), arch)


def test_interrupt_bytes_affinity_width():
    obj = Interrupt(4, 4, 0x3, share=CmResourceShareUndetermined,
                    flags=CM_RESOURCE_INTERRUPT_LATCHED)
    _roundtrip_partial(obj, cm_interrupt(4, 4, 3, arch=X86), X86)
    _roundtrip_partial(obj, cm_interrupt(4, 4, 3, arch=X64), X64)
    # -1 = all processors: all ones at the pointer width, and back to -1.
    allcpu = Interrupt(9, 9, share=CmResourceShareShared, flags=0)
    assert allcpu.affinity == -1
    _roundtrip_partial(allcpu, cm_interrupt(9, 9, 0xFFFFFFFF, share=3, flags=0, arch=X86), X86)
    _roundtrip_partial(allcpu, cm_interrupt(9, 9, 2**64 - 1, share=3, flags=0, arch=X64), X64)
    big = Interrupt(1, 1, 1 << 40)
    assert CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(big.pack(X64), X64) == big
    with pytest.raises(FieldRangeError, match="Affinity"):
        big.pack(X86)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("obj, rtype, words", [
    (Dma(2, 0x10, 7, share=CmResourceShareUndetermined, flags=CM_RESOURCE_DMA_16),
     4, (2, 0x10, 7)),
    (BusNumber(0, 0x100, 5), 6, (0, 0x100, 5)),
    (DevicePrivate((1, 2, 0xFFFFFFFF)), 129, (1, 2, 0xFFFFFFFF)),
])
def test_three_ulong_types_bytes(arch, obj, rtype, words):
    expected = cm_three(rtype, *words, share=obj.share, flags=obj.flags, arch=arch)
    _roundtrip_partial(obj, expected, arch)


@pytest.mark.parametrize("arch", ARCHES)
def test_device_specific_payload_follows_descriptor(arch):
    obj = DeviceSpecific.of(CM_SERIAL_DEVICE_DATA(baud_clock=1843200), reserved1=1, reserved2=2)
    expected = cm_three(5, 8, 1, 2, arch=arch) + SERIAL_CLOCK
    _roundtrip_partial(obj, expected, arch)
    assert obj.size(arch) == arch.partial_descriptor_size + 8
    assert CM_SERIAL_DEVICE_DATA.unpack(obj.data).baud_clock == 1843200


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("flag, shift", [(0x200, 8), (0x400, 16), (0x800, 32)])
def test_memory_large_bytes(arch, flag, shift):
    stored = 0x1234
    obj = MemoryLarge(0x8_0000_0000, stored << shift, flags=flag)
    _roundtrip_partial(obj, cm_port(0x8_0000_0000, stored, flags=flag, arch=arch, rtype=7), arch)


def test_memory_large_picks_narrowest_flag_and_rejects_bad_lengths():
    # The §1.7 *_MAXLEN constants are the largest lengths each width holds.
    assert MemoryLarge(0, 0x100).flags == CM_RESOURCE_MEMORY_LARGE_40
    assert MemoryLarge(0, CM_RESOURCE_MEMORY_LARGE_40_MAXLEN).flags == CM_RESOURCE_MEMORY_LARGE_40
    assert MemoryLarge(0, CM_RESOURCE_MEMORY_LARGE_48_MAXLEN).flags == CM_RESOURCE_MEMORY_LARGE_48
    assert MemoryLarge(0, CM_RESOURCE_MEMORY_LARGE_64_MAXLEN).flags == CM_RESOURCE_MEMORY_LARGE_64
    assert MemoryLarge(0, 2**48).flags == CM_RESOURCE_MEMORY_LARGE_64
    with pytest.raises(FieldRangeError, match="Length"):
        MemoryLarge(0, 0x101)  # no shift represents it
    with pytest.raises(FieldRangeError, match="Length"):
        MemoryLarge(0, 0x10000, flags=CM_RESOURCE_MEMORY_LARGE_64)
    assert MemoryLarge(0, 0).flags == 0  # NT reads a length of 0 without any LARGE bit


@pytest.mark.parametrize("arch", ARCHES)
def test_memory_large_flags_as_nt_decodes_them(arch):
    """RtlCmDecodeMemIoResource: the first of LARGE_40, _48, _64 set picks the shift; with
    none the length is 0 and the stored ULONG is ignored (kept so the bytes round-trip)."""
    both = CM_RESOURCE_MEMORY_LARGE_40 | CM_RESOURCE_MEMORY_LARGE_64
    raw = cm_port(0x1000, 0x12, flags=both, rtype=7, arch=arch)
    obj = CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(raw, arch)
    assert obj.length == 0x12 << 8 and obj.pack(arch) == raw
    raw = cm_port(0x1000, 7, flags=CM_RESOURCE_MEMORY_PREFETCHABLE, rtype=7, arch=arch)
    obj = CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(raw, arch)
    assert (obj.length, obj.ignored_length, obj.flags) == (0, 7, CM_RESOURCE_MEMORY_PREFETCHABLE)
    assert obj.pack(arch) == raw and "ignored" in describe_range(obj)
    with pytest.raises(FieldRangeError, match="ignored"):
        MemoryLarge(0, 0x100, flags=CM_RESOURCE_MEMORY_LARGE_40, ignored_length=1)
    req = IO_RESOURCE_DESCRIPTOR.unpack(io_desc(0, 7, 1, 0, struct.pack("<IIQQ", 5, 6, 0, 2**40)),
                                        arch)
    assert (req.length, req.alignment, req.ignored_length, req.ignored_alignment) == (0, 0, 5, 6)
    assert req.pack(arch)[8:16] == struct.pack("<II", 5, 6)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("code", [0, 128, 130, 131])
def test_generic_types_keep_their_union_bytes(arch, code):
    union = bytes(range(1, 13))
    raw = cm_hdr(code, 1, 0x55) + union + cm_tail(arch)
    obj = CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(raw, arch)
    assert isinstance(obj, GenericPartial) and obj.type == code and obj.data == union
    assert obj.flags == 0x55 and obj.pack(arch) == raw


@pytest.mark.parametrize("arch", ARCHES)
def test_connection_fields_in_a_partial(arch):
    """u.Connection: Class, Type, two reserved UCHARs, IdLowPart, IdHighPart (§1.2)."""
    union = bytes(range(1, 13))
    raw = cm_hdr(132, 0, 0) + union + cm_tail(arch)
    obj = CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(raw, arch)
    assert obj == Connection(1, 2, 3, 4, 0x08070605, 0x0C0B0A09, share=0)
    assert obj.connection_id == 0x0C0B0A0908070605 and obj.pack(arch) == raw
    assert describe_range(obj) == "class 1 (GPIO) type 2 id 0xc0b0a0908070605 reserved 0x3 0x4"
    if arch is X64:  # the x64 union's last 4 bytes are not the member's: kept as the tail
        raw = raw[:-4] + b"\x01\x02\x03\x04"
        assert CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(raw, arch).union_tail == b"\x01\x02\x03\x04"
    with pytest.raises(FieldRangeError, match=r"u\.Connection\.Class"):
        Connection(256, 0)
    with pytest.raises(FieldRangeError, match=r"u\.Connection\.IdHighPart"):
        Connection(2, 3, id_high_part=2**32)


def test_x64_union_tail_is_kept():
    raw = bytearray(cm_port(0x3F8, 8, arch=X64))
    raw[16:20] = b"\xAA\xBB\xCC\x00"  # bytes in the union tail of a Port
    obj = CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(bytes(raw), X64)
    assert obj == Port(0x3F8, 8, union_tail=b"\xAA\xBB\xCC") != Port(0x3F8, 8)
    assert obj.pack(X64) == bytes(raw) and "tail aa bb cc" in describe_range(obj)
    with pytest.raises(FieldRangeError, match="does not fit the 0 bytes"):
        obj.pack(X86)  # the x86 union has no room after the member
    assert Port(0x3F8, 8, union_tail=bytes(4)).union_tail == b""  # zeros are no tail


@pytest.mark.parametrize("arch", ARCHES)
def test_io_union_tails_are_kept(arch):
    """Bytes after the member of every requirement kind survive a round trip."""
    for rtype, used in ((2, 16 + arch.affinity_size), (4, 8), (6, 16), (0x80, 12), (0x81, 12)):
        union = bytes(used) + bytes(range(1, 25 - used))
        raw = io_desc(0, rtype, 1, 0, union)
        obj = IO_RESOURCE_DESCRIPTOR.unpack(raw, arch)
        assert obj.union_tail == bytes(range(1, 25 - used)) and obj.pack(arch) == raw


def test_device_private_copy_rule_is_recognised():
    """XP's PCI driver repeats the Port window as DevicePrivate (the issue's 32 bytes)."""
    port = bytes.fromhex("0001030020000000f80c0000010000000000000000000000f70c000000000000")
    copy = bytes.fromhex("0081030020000000f80c0000010000000000000000000000f70c000000000000")
    p, d = (IO_RESOURCE_DESCRIPTOR.unpack(b, X86) for b in (port, copy))
    assert d.data == (0xCF8, 1, 0) and d.union_tail == bytes(4) + b"\xf7\x0c"
    assert d.pack(X86) == copy and private_copy_of(d, p, X86) and not private_copy_of(p, d, X86)
    assert describe_range(d).endswith("tail 00 00 00 00 f7 0c")
    assert not private_copy_of(DevicePrivateRequirement((0xCF8, 1, 0)), p, X86)


# ---------------------------------------------------------------------------------------
# Whole lists against hand-built bytes


def serial_config(arch):
    """The freeldr-style COM1 Configuration Data of §5.1 as a CM_RESOURCE_LIST."""
    return resource_list(full(1, 0, partial_list(
        cm_port(0x3F8, 7, share=1, flags=1, arch=arch),
        cm_interrupt(4, 4, 0xFFFFFFFF if arch is X86 else 2**64 - 1, share=0, flags=1, arch=arch),
        cm_three(5, 8, 0, 0, arch=arch) + SERIAL_CLOCK)))


SERIAL_VALUE = CM_RESOURCE_LIST.single(
    Isa, 0,
    Port(0x3F8, 7),
    Interrupt(4, 4, share=CmResourceShareUndetermined, flags=CM_RESOURCE_INTERRUPT_LATCHED),
    DeviceSpecific.of(CM_SERIAL_DEVICE_DATA()))


@pytest.mark.parametrize("arch", ARCHES)
def test_serial_resource_list_bytes(arch):
    expected = serial_config(arch)
    assert SERIAL_VALUE.pack(arch) == expected
    assert CM_RESOURCE_LIST.unpack(expected, arch) == SERIAL_VALUE
    # §1.3 size formula, computed by hand: 4 + (16 + 3 partials + 8 payload bytes)
    assert len(expected) == 4 + 16 + 3 * arch.partial_descriptor_size + 8
    assert SERIAL_VALUE.size(arch) == len(expected)


@pytest.mark.parametrize("arch", ARCHES)
def test_payload_in_middle_full_descriptor_is_walked(arch):
    """§9.13: DataSize in a middle full descriptor; the next one starts after the payload."""
    payload = bytes(range(13))  # odd size: the next descriptor is unaligned, as in NT
    raw = resource_list(
        full(1, 0, partial_list(cm_three(5, 13, 0, 0, arch=arch) + payload)),
        full(5, 2, partial_list(cm_port(0xE000, 0x20, arch=arch),
                                cm_port(0xFEB00000, 0x1000, flags=0, arch=arch, rtype=3))))
    rl = CM_RESOURCE_LIST.unpack(raw, arch)
    assert rl.count == 2
    assert rl.descriptors[0].partials == (DeviceSpecific(payload),)
    assert rl.descriptors[1].interface_type is INTERFACE_TYPE.PCIBus
    assert rl.descriptors[1].bus_number == 2
    assert rl.descriptors[1].partials == (Port(0xE000, 0x20), Memory(0xFEB00000, 0x1000))
    assert rl.pack(arch) == raw
    # A walker that ignores the payload (the RX-pnpres-old pitfall) would read the payload
    # bytes as the second full descriptor's InterfaceType.
    naive_next = 4 + 16 + arch.partial_descriptor_size
    assert struct.unpack_from("<i", raw, naive_next)[0] != 5


@pytest.mark.parametrize("arch", ARCHES)
def test_full_resource_descriptor_value_bytes(arch):
    """REG_FULL_RESOURCE_DESCRIPTOR of the floppy controller node in §5.1, plus the empty
    Version 0 / Count 0 form."""
    raw = full(1, 0, partial_list(cm_port(0x3F0, 8, arch=arch),
                                  cm_interrupt(6, 6, 3, flags=1, arch=arch),
                                  cm_three(4, 2, 0, 0, share=0, arch=arch)))
    fd = CM_FULL_RESOURCE_DESCRIPTOR.of(
        Isa, 0, Port(0x3F0, 8),
        Interrupt(6, 6, 3, share=CmResourceShareUndetermined,
                  flags=CM_RESOURCE_INTERRUPT_LATCHED),
        Dma(2, share=CmResourceShareUndetermined))
    assert fd.pack(arch) == raw
    assert CM_FULL_RESOURCE_DESCRIPTOR.unpack(raw, arch) == fd
    empty = full(0, 0, partial_list(version=0, revision=0))
    assert len(empty) == 16
    assert CM_FULL_RESOURCE_DESCRIPTOR.unpack(empty, arch) == CM_FULL_RESOURCE_DESCRIPTOR(
        Internal, 0, CM_PARTIAL_RESOURCE_LIST(version=0, revision=0))


def test_empty_resource_list_is_count_zero():
    assert CM_RESOURCE_LIST().pack() == struct.pack("<I", 0)
    assert CM_RESOURCE_LIST.unpack(b"\0\0\0\0").count == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_requirements_list_bytes(arch):
    """Two alternative lists with different Counts (§9.14); every union member."""
    tp = 0xFFFFFFFF if arch is X86 else 2**64 - 1
    list0 = io_list(
        io_desc(0, 128, 0, 0, struct.pack("<III", 0x2000, 0, 0)),
        io_desc(1, 1, 1, 0x11, struct.pack("<IIQQ", 8, 8, 0x3F8, 0x3FF)),
        io_desc(8, 1, 1, 0x11, struct.pack("<IIQQ", 8, 8, 0x2F8, 0x2FF)),
        io_desc(0, 2, 0, 1, struct.pack("<IIHHI", 3, 4, 1, 2, 3)
                + (struct.pack("<I", tp) if arch is X86 else struct.pack("<Q", tp))))
    list1 = io_list(
        io_desc(0, 3, 1, 4, struct.pack("<IIQQ", 0x1000, 0x1000, 0xD0000, 0xDFFFF), spare1=9,
                spare2=0x1234),
        io_desc(0, 4, 0, 0, struct.pack("<II", 1, 3)),
        io_desc(0, 6, 1, 0, struct.pack("<IIII", 1, 0, 255, 0)),
        io_desc(0, 129, 1, 0, struct.pack("<III", 7, 8, 9)),
        io_desc(0, 7, 1, 0x400, struct.pack("<IIQQ", 2, 1, 0, 2**64 - 1)))
    raw = req_list(5, 0, 0x23, list0, list1, reserved=(1, 2, 3))
    expected = IO_RESOURCE_REQUIREMENTS_LIST(PCIBus, 0, PCI_SLOT_NUMBER(3, 1).as_ulong, [
        IO_RESOURCE_LIST([
            ConfigDataRequirement(0x2000, share=CmResourceShareUndetermined),
            PortRequirement(8, 8, 0x3F8, 0x3FF, option=IO_RESOURCE_PREFERRED,
                            flags=0x11),
            PortRequirement(8, 8, 0x2F8, 0x2FF, option=IO_RESOURCE_ALTERNATIVE, flags=0x11),
            InterruptRequirement(3, 4, affinity_policy=1, group=2, priority_policy=3,
                                 targeted_processors=-1, share=CmResourceShareUndetermined,
                                 flags=CM_RESOURCE_INTERRUPT_LATCHED)]),
        IO_RESOURCE_LIST([
            MemoryRequirement(0x1000, 0x1000, 0xD0000, 0xDFFFF,
                              flags=CM_RESOURCE_MEMORY_PREFETCHABLE, spare1=9, spare2=0x1234),
            DmaRequirement(1, 3, share=CmResourceShareUndetermined),
            BusNumberRequirement(1, 0, 255),
            DevicePrivateRequirement((7, 8, 9)),
            MemoryLargeRequirement(0x20000, 0x10000, 0, 2**64 - 1,
                                   flags=CM_RESOURCE_MEMORY_LARGE_48)]),
    ], reserved=(1, 2, 3))
    assert expected.pack(arch) == raw
    assert IO_RESOURCE_REQUIREMENTS_LIST.unpack(raw, arch) == expected
    assert len(raw) == 32 + (8 + 32 * 4) + (8 + 32 * 5)
    assert expected.alternative_lists == 2


def test_requirements_list_with_no_lists():
    raw = req_list(1, 0, 0)
    assert len(raw) == 32
    assert IO_RESOURCE_REQUIREMENTS_LIST.unpack(raw) == IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0)


def test_generic_requirement_keeps_24_bytes():
    union = bytes(range(24))
    raw = io_desc(0, 130, 1, 0, union)
    obj = IO_RESOURCE_DESCRIPTOR.unpack(raw)
    assert obj == GenericRequirement(CmResourceTypePcCardConfig, union)
    assert obj.pack() == raw


TOKEN = CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN
MSG = CM_RESOURCE_INTERRUPT_LATCHED | CM_RESOURCE_INTERRUPT_MESSAGE


@pytest.mark.parametrize("lo,hi,flags,count", [
    (TOKEN - 7, TOKEN, MSG, 8),              # MSI: Maximum - Minimum + 1 messages
    (TOKEN, TOKEN, MSG, 1),                  # one message (each MSI-X descriptor)
    (TOKEN - 7, TOKEN, CM_RESOURCE_INTERRUPT_LATCHED, None),  # no MESSAGE flag: vectors
    (5, 9, MSG, None),                       # MESSAGE but not the token: shown as vectors
    (TOKEN + 1, TOKEN, MSG, None),           # Minimum above the token
])
def test_message_interrupt_requirement_count(lo, hi, flags, count):
    req = InterruptRequirement(lo, hi, flags=flags)
    assert req.message_count == count
    expected = (f"message token, {count} message(s)" if count else f"vector {lo}..{hi}")
    assert describe_range(req) == expected


def test_connection_requirement_fields():
    """Class @8, Type @9, IdLowPart @12, IdHighPart @16 of the descriptor (§1.4); the 12
    union bytes after them are the tail."""
    union = bytes([2, 3, 0, 0]) + struct.pack("<II", 7, 1) + bytes(range(1, 13))
    raw = io_desc(0, 132, 0, 0, union)
    obj = IO_RESOURCE_DESCRIPTOR.unpack(raw)
    assert isinstance(obj, ConnectionRequirement) and obj.union_tail == bytes(range(1, 13))
    assert (obj.connection_class, obj.connection_type, obj.connection_id) == (2, 3, 0x1_00000007)
    assert obj.pack() == raw
    assert describe_range(obj) == ("class 2 (SERIAL) type 3 id 0x100000007 tail "
                                   "01 02 03 04 05 06 07 08 09 0a 0b 0c")


# ---------------------------------------------------------------------------------------
# DeviceSpecificData payloads, PCI_SLOT_NUMBER


def test_serial_device_data():
    assert CM_SERIAL_DEVICE_DATA(1, 2, 115200).pack() == struct.pack("<HHI", 1, 2, 115200)
    assert CM_SERIAL_DEVICE_DATA.unpack(struct.pack("<HHI", 1, 2, 9)).baud_clock == 9
    with pytest.raises(TruncatedError):
        CM_SERIAL_DEVICE_DATA.unpack(b"\0" * 7)
    with pytest.raises(SizeMismatchError):
        CM_SERIAL_DEVICE_DATA.unpack(b"\0" * 9)


def test_floppy_device_data_both_forms():
    head = struct.pack("<HH8sII", 2, 0, b"3.5\0\0\0\0\0", 1440, 0)
    timings = bytes([0xAF, 2, 37, 2, 18, 0x1B, 0xFF, 0x6C, 0xF6, 15, 8, 79, 0])
    long_form = head + timings + bytes(3)  # sizeof 36: 33 used + tail padding
    fd = CM_FLOPPY_DEVICE_DATA.unpack(long_form)
    assert fd.max_density == 1440 and fd.size == b"3.5\0\0\0\0\0"
    assert fd.step_rate_head_unload_time == 0xAF and fd.maximum_track_value == 79
    assert fd.data_transfer_rate == 0 and fd.has_timings
    assert fd.pack() == long_form
    short33 = CM_FLOPPY_DEVICE_DATA.unpack(head + timings)  # without the tail padding
    assert short33.padding == b"" and short33.pack() == head + timings
    assert dataclasses.replace(short33, padding=bytes(3)) == fd
    v1 = struct.pack("<HH8sII", 1, 0, b"3.5\0\0\0\0\0", 1440, 0)
    short = CM_FLOPPY_DEVICE_DATA.unpack(v1)  # versions before 2 end before the timings
    assert not short.has_timings and short.pack() == v1
    for bad in (head[:19], head, head + b"\0" * 5, long_form + b"\0", v1 + timings):
        with pytest.raises(ResourceFormatError):  # the size disagrees with the Version
            CM_FLOPPY_DEVICE_DATA.unpack(bad)
    with pytest.raises(FieldRangeError, match="all 13"):
        CM_FLOPPY_DEVICE_DATA(head_load_time=3)
    with pytest.raises(FieldRangeError, match="short form"):
        CM_FLOPPY_DEVICE_DATA(version=1, head_load_time=3)
    with pytest.raises(FieldRangeError, match="Size"):
        CM_FLOPPY_DEVICE_DATA(version=1, size=b"3.5")
    # What freeldr builds from the BIOS diskette parameter table (INT 1Eh).
    built = CM_FLOPPY_DEVICE_DATA.from_parameter_table(timings[:11] + b"\xEE", 1440, 79,
                                                       size=b"3.5\0\0\0\0\0")
    assert built == fd and len(built.pack()) == 36
    # Carried as DeviceSpecificData of a FloppyDiskPeripheral node.
    ds = DeviceSpecific.of(fd)
    assert ds.data_size == 36


def test_pci_registry_info_and_slot_number():
    info = PCI_REGISTRY_INFO(2, 1, 1, 0x11)
    assert info.pack() == bytes([2, 1, 1, 0x11]) and info.config_mechanism == 1
    assert PCI_REGISTRY_INFO.unpack(bytes([2, 1, 4, 2])).no_buses == 4
    with pytest.raises(TruncatedError):
        PCI_REGISTRY_INFO.unpack(b"\1\2")
    slot = PCI_SLOT_NUMBER(0x1F, 7)
    assert slot.as_ulong == 0x1F | (7 << 5) == 0xFF
    assert PCI_SLOT_NUMBER.from_ulong(0x23) == PCI_SLOT_NUMBER(3, 1)
    with pytest.raises(FieldRangeError, match="Reserved"):
        PCI_SLOT_NUMBER.from_ulong(0x100)
    with pytest.raises(FieldRangeError, match="DeviceNumber"):
        PCI_SLOT_NUMBER(32)
    with pytest.raises(FieldRangeError, match="FunctionNumber"):
        PCI_SLOT_NUMBER(0, 8)


def test_decoding_is_remembered_per_bytes_and_layout_and_errors_are_not():
    """Decoded structures are immutable and shared: the same bytes in the same layout
    decode once; other bytes, the other layout, a bytearray, a refused buffer and the
    c_array rule all still go their own way, every time."""
    com = CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8), Interrupt(4, 4, affinity=0x1))
    x64, x86 = com.pack(X64), com.pack(X86)
    first = CM_RESOURCE_LIST.unpack(x64, X64)
    assert first == com and CM_RESOURCE_LIST.unpack(x64, X64) is first
    assert CM_RESOURCE_LIST.unpack(bytearray(x64), X64) == com
    assert CM_RESOURCE_LIST.unpack(x86, X86) == com
    with pytest.raises(SizeMismatchError):   # x64 bytes do not read as x86 ones
        CM_RESOURCE_LIST.unpack(x64, X86)
    for _ in range(2):
        with pytest.raises(TruncatedError, match="CM_RESOURCE_LIST"):
            CM_RESOURCE_LIST.unpack(x64[:-1], X64)
    two_fulls = CM_RESOURCE_LIST([CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(1, 1), Port(2, 1)),
                                  CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(3, 1))]).pack()
    assert CM_RESOURCE_LIST.unpack(two_fulls).count == 2
    for _ in range(2):
        with pytest.raises(LayoutRuleError):
            CM_RESOURCE_LIST.unpack(two_fulls, c_array=True)
    # Another structure over the same bytes is decoded as that structure.
    full = com.descriptors[0].pack(X64)
    assert CM_FULL_RESOURCE_DESCRIPTOR.unpack(full) == com.descriptors[0]
    with pytest.raises(ResourceFormatError):
        CM_RESOURCE_LIST.unpack(full)


# ---------------------------------------------------------------------------------------
# The C-array rule (§1.3, seed 002)


def test_c_array_rule_enforced_only_where_asked():
    two_fulls = CM_RESOURCE_LIST([
        CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(0x3F8, 8), Interrupt(4, 4)),
        CM_FULL_RESOURCE_DESCRIPTOR.of(Internal, 0, Port(0x20, 2))])
    # The variable-size registry layout allows it (the HAL's own .Raw list looks like this).
    raw = two_fulls.pack(X86)
    assert CM_RESOURCE_LIST.unpack(raw, X86) == two_fulls
    with pytest.raises(LayoutRuleError, match=r"List\[0\]"):
        two_fulls.pack(X86, c_array=True)
    with pytest.raises(LayoutRuleError):
        CM_RESOURCE_LIST.unpack(raw, X86, c_array=True)
    # Only the last full descriptor may have several partials.
    ok = CM_RESOURCE_LIST([CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(0x3F8, 8)),
                           CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(0x2F8, 8),
                                                          Interrupt(3, 3))])
    assert ok.pack(X64, c_array=True) == ok.pack(X64)
    # In that layout a C reader indexing List[1] at sizeof(CM_FULL_RESOURCE_DESCRIPTOR)
    # lands exactly on the second full descriptor (32 bytes on x86 per §1.3).
    assert struct.unpack_from("<iI", ok.pack(X86), 4 + 32) == (1, 0)
    # Zero partials in a non-last descriptor also breaks the stride.
    with pytest.raises(LayoutRuleError):
        CM_RESOURCE_LIST([CM_FULL_RESOURCE_DESCRIPTOR(Isa, 0),
                          CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(1, 1))]).check_c_array()


def test_c_array_rule_device_specific_must_be_last():
    payload = DeviceSpecific(b"12345678")
    not_last = CM_RESOURCE_LIST.single(Isa, 0, payload, Port(0x3F8, 8))
    with pytest.raises(LayoutRuleError, match="DeviceSpecific"):
        not_last.pack(c_array=True)
    in_first = CM_RESOURCE_LIST([CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, payload),
                                 CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(1, 1))])
    with pytest.raises(LayoutRuleError):
        in_first.pack(c_array=True)
    SERIAL_VALUE.pack(c_array=True)  # payload last in the only full descriptor: fine


# ---------------------------------------------------------------------------------------
# Malformed input: every field


@pytest.mark.parametrize("arch", ARCHES)
def test_every_truncation_of_a_list_is_reported(arch):
    raw = serial_config(arch)
    for n in range(len(raw)):
        with pytest.raises(TruncatedError) as info:
            CM_RESOURCE_LIST.unpack(raw[:n], arch)
        assert info.value.field.startswith("CM_RESOURCE_LIST")
        assert info.value.status == NTSTATUS.STATUS_INVALID_PARAMETER


@pytest.mark.parametrize("arch", ARCHES)
def test_every_truncation_of_a_requirements_list_is_reported(arch):
    raw = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, [IO_RESOURCE_LIST([
        PortRequirement(8, 8, 0, 0xFFFF), InterruptRequirement(3, 4)])]).pack(arch)
    for n in range(len(raw)):
        with pytest.raises((TruncatedError, SizeMismatchError)):
            IO_RESOURCE_REQUIREMENTS_LIST.unpack(raw[:n], arch)


def test_count_larger_than_data():
    raw = serial_config(X64)
    lying = struct.pack("<I", 2) + raw[4:]
    with pytest.raises(TruncatedError, match=r"List\[1\]"):
        CM_RESOURCE_LIST.unpack(lying)
    huge = struct.pack("<I", 0xFFFFFFFF) + raw[4:]
    with pytest.raises(TruncatedError, match="CM_RESOURCE_LIST.Count"):
        CM_RESOURCE_LIST.unpack(huge)
    partial_count = with_ulong(raw, 4 + 12, 4)  # PartialResourceList.Count 3 -> 4
    with pytest.raises(TruncatedError, match=r"PartialResourceList"):
        CM_RESOURCE_LIST.unpack(partial_count)
    io_count = with_ulong(io_list(io_desc(0, 1, 1, 1, b"")), 4, 2)
    with pytest.raises(TruncatedError, match="IO_RESOURCE_LIST.Count"):
        IO_RESOURCE_LIST.unpack(io_count)


def test_device_specific_data_size_past_buffer():
    ds_offset = 4 + 16 + 2 * 16
    raw = with_ulong(serial_config(X86), ds_offset + 4, 9)  # DataSize 8 -> 9
    with pytest.raises(TruncatedError, match="DataSize 9") as info:
        CM_RESOURCE_LIST.unpack(raw, X86)
    assert info.value.offset == ds_offset + 4
    assert "PartialDescriptors[2]" in info.value.field


@pytest.mark.parametrize("code", [8, 9, 127, 133, 255])
def test_unknown_partial_type(code):
    raw = resource_list(full(1, 0, partial_list(cm_port(0x3F8, 8), cm_port(1, 1, rtype=code))))
    with pytest.raises(UnknownTypeError, match=r"PartialDescriptors\[1\]\.Type"):
        CM_RESOURCE_LIST.unpack(raw)


@pytest.mark.parametrize("code", [8, 200])
def test_unknown_requirement_type(code):
    with pytest.raises(UnknownTypeError, match="Type"):
        IO_RESOURCE_DESCRIPTOR.unpack(io_desc(0, code, 1, 0, b""))


def test_device_specific_not_allowed_in_io_lists():
    with pytest.raises(UnknownTypeError, match="not allowed"):
        IO_RESOURCE_DESCRIPTOR.unpack(io_desc(0, 5, 1, 0, b""))
    with pytest.raises(UnknownTypeError, match="DmaV3"):
        IO_RESOURCE_DESCRIPTOR.unpack(io_desc(0, 4, 1, CM_RESOURCE_DMA_V3, b""))


def test_unknown_share_and_interface_type():
    with pytest.raises(UnknownTypeError, match="ShareDisposition"):
        CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(cm_port(1, 1, share=5))
    with pytest.raises(UnknownTypeError, match="ShareDisposition"):
        IO_RESOURCE_DESCRIPTOR.unpack(io_desc(0, 1, 9, 0, b""))
    with pytest.raises(UnknownTypeError, match=r"List\[0\].InterfaceType"):
        CM_RESOURCE_LIST.unpack(resource_list(full(99, 0, partial_list())))
    with pytest.raises(UnknownTypeError, match="InterfaceType"):
        IO_RESOURCE_REQUIREMENTS_LIST.unpack(req_list(-2, 0, 0))
    # InterfaceTypeUndefined is -1, not 0 (§1.1).
    fd = CM_FULL_RESOURCE_DESCRIPTOR.unpack(full(-1, 0, partial_list()))
    assert fd.interface_type is INTERFACE_TYPE.InterfaceTypeUndefined


def test_wrapping_ranges_rejected_from_bytes():
    with pytest.raises(FieldRangeError, match="wraps past 2\\*\\*64"):
        CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(cm_port(2**64 - 0x10, 0x20, rtype=3))
    with pytest.raises(FieldRangeError, match="wraps past 2\\*\\*64"):
        CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(cm_port(2**64 - 0x10, 0x20))
    with pytest.raises(FieldRangeError, match="wraps past 2\\*\\*32"):
        CM_PARTIAL_RESOURCE_DESCRIPTOR.unpack(cm_three(6, 0xFFFFFFF0, 0x20, 0))
    # Ending exactly at the top is not a wrap; ports past 0xFFFF are fine (§9.5).
    assert Memory(2**64 - 0x10, 0x10).end == 2**64
    assert Port(0xFFF8, 0x10).end == 0x10008
    assert BusNumber(0xFFFFFF00, 0x100).end == 2**32


def test_zero_lengths_are_valid_values():
    """§9.4: zero-length claims and requirements are arbiter cases, not malformed."""
    for obj in (Port(0x3F8, 0), Memory(0, 0), BusNumber(5, 0), MemoryLarge(0, 0),
                PortRequirement(0, 0, 0, 0xFFFF), MemoryRequirement(0, 1, 0, 0)):
        assert type(obj).unpack(obj.pack()) == obj


def test_list_size_mismatches():
    good = req_list(1, 0, 0, io_list(io_desc(0, 1, 1, 1, b"")))
    for corrupt, error, match in [
        (with_ulong(good, 0, len(good) + 8), TruncatedError, "ListSize"),          # ListSize
        (with_ulong(good, 0, 31), SizeMismatchError, "header"),
        (with_ulong(good, 28, 2), TruncatedError, "IO_RESOURCE_REQUIREMENTS_LIST"),  # AlternativeLists
    ]:
        with pytest.raises(error, match=match):
            IO_RESOURCE_REQUIREMENTS_LIST.unpack(corrupt)


@pytest.mark.parametrize("slack", [bytes(32), bytes(8), b"\x01\x02\x03"])
def test_list_size_past_the_lists_is_slack_kept_verbatim(slack):
    """Windows 10 counts a zeroed 32-byte descriptor after the last list in ListSize (a
    genuine case in tests/test_realworld_resources.py); any such slack round-trips, and
    bytes past ListSize are still refused."""
    good = req_list(1, 0, 0, io_list(io_desc(0, 1, 1, 1, b"")))
    raw = with_ulong(good + slack, 0, len(good) + len(slack))
    req = IO_RESOURCE_REQUIREMENTS_LIST.unpack(raw)
    assert req.slack == slack and req.size() == len(raw) and req.pack() == raw
    assert req == IO_RESOURCE_REQUIREMENTS_LIST.unpack(good).__class__(
        req.interface_type, req.bus_number, req.slot_number, req.lists, slack=slack)
    with pytest.raises(SizeMismatchError, match="1 trailing"):
        IO_RESOURCE_REQUIREMENTS_LIST.unpack(raw + b"\0")
    with pytest.raises(FieldRangeError, match="slack"):
        IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, slack=None)


@pytest.mark.parametrize("cls", [CM_RESOURCE_LIST, CM_FULL_RESOURCE_DESCRIPTOR,
                                 CM_PARTIAL_RESOURCE_LIST, IO_RESOURCE_LIST,
                                 IO_RESOURCE_REQUIREMENTS_LIST])
def test_trailing_bytes_rejected_but_unpack_from_allows(cls):
    samples = {
        CM_RESOURCE_LIST: SERIAL_VALUE,
        CM_FULL_RESOURCE_DESCRIPTOR: SERIAL_VALUE.descriptors[0],
        CM_PARTIAL_RESOURCE_LIST: SERIAL_VALUE.descriptors[0].partial_resource_list,
        IO_RESOURCE_LIST: IO_RESOURCE_LIST([DmaRequirement(0, 7)]),
        IO_RESOURCE_REQUIREMENTS_LIST: IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0),
    }
    raw = samples[cls].pack()
    with pytest.raises(SizeMismatchError, match="1 trailing"):
        cls.unpack(raw + b"\0")
    obj, end = cls.unpack_from(b"xx" + raw + b"yy", 2)
    assert obj == samples[cls] and end == 2 + len(raw)


# Every constructor field, out of range: (class, args, kwargs, field named in the error).
FIELD_CASES = [
    (Port, (-1, 1), {}, "u.Port.Start"),
    (Port, (2**64, 1), {}, "u.Port.Start"),
    (Port, (0, 2**32), {}, "u.Port.Length"),
    (Port, (0, 1), {"flags": 0x10000}, "Flags"),
    (Port, (0, 1), {"share": 5}, "ShareDisposition"),
    (Memory, (2**64, 1), {}, "u.Memory.Start"),
    (Memory, (0, 2**32), {}, "u.Memory.Length"),
    (MemoryLarge, (2**64, 0x100), {}, "u.Memory40.Start"),
    (MemoryLarge, (0, 0x10000), {"flags": CM_RESOURCE_MEMORY_LARGE_64}, "u.Memory64.Length64"),
    (Interrupt, (2**32, 1), {}, "u.Interrupt.Level"),
    (Interrupt, (1, 2**32), {}, "u.Interrupt.Vector"),
    (Interrupt, (1, 1, -2), {}, "u.Interrupt.Affinity"),
    (Interrupt, (1, 1, 2**64), {}, "u.Interrupt.Affinity"),
    (Dma, (2**32,), {}, "u.Dma.Channel"),
    (Dma, (0, 2**32), {}, "u.Dma.Port"),
    (Dma, (0, 0, 2**32), {}, "u.Dma.Reserved1"),
    (BusNumber, (2**32, 0), {}, "u.BusNumber.Start"),
    (BusNumber, (0, 2**32), {}, "u.BusNumber.Length"),
    (BusNumber, (0, 0, -1), {}, "u.BusNumber.Reserved"),
    (DevicePrivate, ((1, 2),), {}, "u.DevicePrivate.Data"),
    (DevicePrivate, ((1, 2, 2**32),), {}, "u.DevicePrivate.Data[2]"),
    (DeviceSpecific, ("text",), {}, "u.DeviceSpecificData.Data"),
    (DeviceSpecific, (b"",), {"reserved1": 2**32}, "u.DeviceSpecificData.Reserved1"),
    (DeviceSpecific, (b"",), {"reserved2": -1}, "u.DeviceSpecificData.Reserved2"),
    (GenericPartial, (CmResourceTypeNull, b"short"), {}, "u.Generic"),
    (PortRequirement, (2**32, 1, 0, 0), {}, "u.Port.Length"),
    (PortRequirement, (1, 2**32, 0, 0), {}, "u.Port.Alignment"),
    (PortRequirement, (1, 1, -1, 0), {}, "u.Port.MinimumAddress"),
    (PortRequirement, (1, 1, 0, 2**64), {}, "u.Port.MaximumAddress"),
    (PortRequirement, (1, 1, 0, 0), {"option": 256}, "Option"),
    (PortRequirement, (1, 1, 0, 0), {"spare1": 256}, "Spare1"),
    (PortRequirement, (1, 1, 0, 0), {"spare2": 2**16}, "Spare2"),
    (MemoryRequirement, (2**32, 1, 0, 0), {}, "u.Memory.Length"),
    (MemoryLargeRequirement, (0x180, 0x100, 0, 0), {}, "u.Memory64.Length64"),
    (MemoryLargeRequirement, (0x100, 0x180, 0, 0), {"flags": CM_RESOURCE_MEMORY_LARGE_40},
     "u.Memory40.Alignment40"),
    (MemoryLargeRequirement, (0x10000, 0x18000, 0, 0), {"flags": CM_RESOURCE_MEMORY_LARGE_48},
     "u.Memory48.Alignment48"),
    (InterruptRequirement, (2**32, 0), {}, "u.Interrupt.MinimumVector"),
    (InterruptRequirement, (0, 2**32), {}, "u.Interrupt.MaximumVector"),
    (InterruptRequirement, (0, 0), {"affinity_policy": 2**16}, "u.Interrupt.AffinityPolicy"),
    (InterruptRequirement, (0, 0), {"group": 2**16}, "u.Interrupt.Group"),
    (InterruptRequirement, (0, 0), {"priority_policy": 2**32}, "u.Interrupt.PriorityPolicy"),
    (InterruptRequirement, (0, 0), {"targeted_processors": -3},
     "u.Interrupt.TargetedProcessors"),
    (DmaRequirement, (2**32, 0), {}, "u.Dma.MinimumChannel"),
    (DmaRequirement, (0, 2**32), {}, "u.Dma.MaximumChannel"),
    (BusNumberRequirement, (2**32, 0, 0), {}, "u.BusNumber.Length"),
    (BusNumberRequirement, (0, 2**32, 0), {}, "u.BusNumber.MinBusNumber"),
    (BusNumberRequirement, (0, 0, 2**32), {}, "u.BusNumber.MaxBusNumber"),
    (BusNumberRequirement, (0, 0, 0, 2**32), {}, "u.BusNumber.Reserved"),
    (ConfigDataRequirement, (2**32,), {}, "u.ConfigData.Priority"),
    (ConfigDataRequirement, (0, -1), {}, "u.ConfigData.Reserved1"),
    (ConfigDataRequirement, (0, 0, 2**32), {}, "u.ConfigData.Reserved2"),
    (DevicePrivateRequirement, ((0, 0, -1),), {}, "u.DevicePrivate.Data[2]"),
    (GenericRequirement, (CmResourceTypeNull, bytes(23)), {}, "u.Generic"),
    (CM_PARTIAL_RESOURCE_LIST, ((),), {"version": 2**16}, "Version"),
    (CM_PARTIAL_RESOURCE_LIST, ((),), {"revision": -1}, "Revision"),
    (CM_PARTIAL_RESOURCE_LIST, ((Port(0, 1), "x"),), {}, "PartialDescriptors[1]"),
    (CM_FULL_RESOURCE_DESCRIPTOR, (1, 2**32), {}, "BusNumber"),
    (CM_FULL_RESOURCE_DESCRIPTOR, (1, 0, "x"), {}, "PartialResourceList"),
    (CM_RESOURCE_LIST, ([Port(0, 1)],), {}, "List[0]"),
    (IO_RESOURCE_LIST, ((),), {"version": -1}, "Version"),
    (IO_RESOURCE_LIST, ([Port(0, 1)],), {}, "Descriptors[0]"),
    (IO_RESOURCE_REQUIREMENTS_LIST, (1, 2**32), {}, "BusNumber"),
    (IO_RESOURCE_REQUIREMENTS_LIST, (1, 0, 2**32), {}, "SlotNumber"),
    (IO_RESOURCE_REQUIREMENTS_LIST, (1, 0, 0, ()), {"reserved": (0, 0, -1)}, "Reserved[2]"),
    (CM_SERIAL_DEVICE_DATA, (2**16,), {}, "Version"),
    (CM_SERIAL_DEVICE_DATA, (0, 0, 2**32), {}, "BaudClock"),
    (PCI_REGISTRY_INFO, (256,), {}, "MajorRevision"),
]


@pytest.mark.parametrize("cls, args, kwargs, field", FIELD_CASES,
                         ids=[f"{c[0].__name__}-{c[3]}" for c in FIELD_CASES])
def test_field_out_of_range_names_the_field(cls, args, kwargs, field):
    with pytest.raises(ResourceFormatError) as info:
        cls(*args, **kwargs)
    assert info.value.field == field
    assert field in str(info.value)


def test_non_integers_rejected():
    with pytest.raises(FieldRangeError, match="expected an integer"):
        Port("0x3f8", 8)
    with pytest.raises(FieldRangeError, match="expected an integer"):
        Port(True, 8)
    with pytest.raises(UnknownTypeError):
        Port(0, 8, share="shared")
    with pytest.raises(TypeError):
        CM_PARTIAL_RESOURCE_DESCRIPTOR()


def test_values_are_immutable_and_hashable():
    p = Port(0x3F8, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.start = 0  # type: ignore[misc]
    assert {p, Port(0x3F8, 8)} == {p}
    assert hash(SERIAL_VALUE) == hash(CM_RESOURCE_LIST.unpack(SERIAL_VALUE.pack()))


def test_errors_are_harness_errors_carrying_a_status():
    with pytest.raises(HarnessError):
        Port(-1, 1)
    try:
        CM_RESOURCE_LIST.unpack(b"\1")
    except NtStatusError as e:
        assert e.status is NTSTATUS.STATUS_INVALID_PARAMETER
        assert not NT_SUCCESS(e.status)
    with pytest.raises(ValueError):  # also a ValueError for generic callers
        Port(-1, 1)


def test_readable_repr_evaluates_back():
    value = CM_RESOURCE_LIST.single(
        PCIBus, 0, Port(0xE000, 0x20, flags=CM_RESOURCE_PORT_IO | CM_RESOURCE_PORT_16_BIT_DECODE),
        Interrupt(11, 11, share=CmResourceShareShared), Memory(0xFEBF0000, 0x1000))
    text = repr(value)
    assert "start=0xe000" in text and "CM_RESOURCE_PORT_IO|CM_RESOURCE_PORT_16_BIT_DECODE" in text
    assert "interface_type=PCIBus" in text and "CmResourceShareShared" in text
    assert eval(text) == value
    assert R.format_flags(CmResourceTypePort, 0x8001) == "CM_RESOURCE_PORT_IO|0x8000"
    assert R.format_flags(CmResourceTypeMemory, 0, short=True) == "READ_WRITE"
    assert R.format_option(9) == "IO_RESOURCE_PREFERRED|IO_RESOURCE_ALTERNATIVE"


def test_constants_match_section_1():
    assert (CmResourceTypeConfigData == CmResourceTypeNonArbitrated == 128)
    assert CmResourceTypeConnection == 132 and CmResourceTypeMemoryLarge == 7
    assert CmResourceShareBusShared == 4
    assert INTERFACE_TYPE.InterfaceTypeUndefined == -1 and PCIBus == 5 and PNPISABus == 14
    assert BUS_DATA_TYPE.PCIConfiguration == 4 and BUS_DATA_TYPE.ConfigurationSpaceUndefined == -1
    assert CM_RESOURCE_MEMORY_LARGE == (CM_RESOURCE_MEMORY_LARGE_40 | CM_RESOURCE_MEMORY_LARGE_48
                                        | CM_RESOURCE_MEMORY_LARGE_64)
    assert (IO_RESOURCE_PREFERRED, IO_RESOURCE_DEFAULT, IO_RESOURCE_ALTERNATIVE) == (1, 2, 8)
    assert R.CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN == 0xFFFFFFFE


def test_ntstatus_and_io_err_codes():
    from harness.nt import status
    assert status.STATUS_CONFLICTING_ADDRESSES == 0xC0000018
    assert NTSTATUS.STATUS_INSUFFICIENT_RESOURCES == 0xC000009A
    assert str(NTSTATUS.STATUS_CONFLICTING_ADDRESSES) == \
        "STATUS_CONFLICTING_ADDRESSES (0xC0000018)"
    assert NT_SUCCESS(status.STATUS_SUCCESS) and not NT_SUCCESS(status.STATUS_UNSUCCESSFUL)
    assert NT_WARNING(status.STATUS_NO_MORE_ENTRIES) and not NT_SUCCESS(
        status.STATUS_NO_MORE_ENTRIES)
    assert NT_ERROR(status.STATUS_NOT_FOUND)
    assert IoErrorCode.IO_ERR_PORT_CONFLICT_DETECTED == 0xC0040016
    assert status.IO_ERR_IRQ_CONFLICT_DETECTED == 0xC0040018
    # facility IO (4) in bits 16..27; the severity in the top two bits, as the name says
    # (ntiologc.h: IO_ERR_RETRY_SUCCEEDED is a success, IO_WRN_* warnings, the rest errors)
    assert all((c >> 16) & 0xFFF == 4 for c in IoErrorCode)
    severities = {c.name: status.severity(c) for c in IoErrorCode}
    assert severities.pop("IO_ERR_RETRY_SUCCEEDED") == "success"
    assert {n for n, s in severities.items() if s == "warning"} == {n for n in severities if n.startswith("IO_WRN_")} != set()
    assert all(s == "error" for n, s in severities.items() if n.startswith("IO_ERR_"))
    err = NtStatusError("boom", NTSTATUS.STATUS_CONFLICTING_ADDRESSES)
    assert err.status == 0xC0000018 and "STATUS_CONFLICTING_ADDRESSES" in str(err)


def test_detect_arch():
    assert R.detect_arch(SERIAL_VALUE.pack(X86)) is X86
    assert R.detect_arch(SERIAL_VALUE.pack(X64)) is X64
    assert R.detect_arch(b"\0\0\0\0") is None  # an empty list is the same in both
    assert R.detect_arch(b"junk") is None


# ---------------------------------------------------------------------------------------
# Property tests

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)
shares = st.sampled_from(list(CmResourceShare))
flags16 = u16


def _range(start_max: int, length_max: int, top: int):
    return st.integers(0, start_max).flatmap(
        lambda s: st.tuples(st.just(s), st.integers(0, min(length_max, top - s))))


# Affinity values that survive both layouts (x86 all-ones reads back as -1, by design).
affinities = st.one_of(st.just(-1), st.integers(0, 0xFFFFFFFE))


def _large(shift_bits):
    return st.sampled_from(shift_bits).flatmap(
        lambda fs: st.tuples(st.just(fs[0]), u32.map(lambda v: v << fs[1])))


LARGE = [(CM_RESOURCE_MEMORY_LARGE_40, 8), (CM_RESOURCE_MEMORY_LARGE_48, 16),
         (CM_RESOURCE_MEMORY_LARGE_64, 32)]
GENERIC_CM = [CmResourceTypeNull, CmResourceTypeNonArbitrated, CmResourceTypePcCardConfig,
              CmResourceTypeMfCardConfig]
connection_fields = st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
                              st.integers(0, 255), u32, u32)

partials = st.one_of(
    st.builds(lambda r, sh, f: Port(*r, share=sh, flags=f), _range(2**64 - 1, 2**32 - 1, 2**64),
              shares, flags16),
    st.builds(lambda r, sh, f: Memory(*r, share=sh, flags=f),
              _range(2**64 - 1, 2**32 - 1, 2**64), shares, flags16),
    st.builds(lambda fl, s, sh, f: MemoryLarge(s, fl[1], share=sh,
                                               flags=(f & ~CM_RESOURCE_MEMORY_LARGE) | fl[0]),
              _large(LARGE), st.just(0), shares, flags16),
    st.builds(lambda a, b, c, sh, f: Interrupt(a, b, c, share=sh, flags=f),
              u32, u32, affinities, shares, flags16),
    st.builds(lambda a, b, c, sh, f: Dma(a, b, c, share=sh, flags=f), u32, u32, u32, shares,
              flags16),
    st.builds(lambda r, c, sh, f: BusNumber(*r, c, share=sh, flags=f),
              _range(2**32 - 1, 2**32 - 1, 2**32), u32, shares, flags16),
    st.builds(lambda d, sh, f: DevicePrivate(d, share=sh, flags=f), st.tuples(u32, u32, u32),
              shares, flags16),
    st.builds(lambda d, a, b, sh, f: DeviceSpecific(d, a, b, share=sh, flags=f),
              st.binary(max_size=24), u32, u32, shares, flags16),
    st.builds(lambda t, d, sh, f: GenericPartial(t, d, share=sh, flags=f),
              st.sampled_from(GENERIC_CM), st.binary(min_size=12, max_size=12), shares, flags16),
    st.builds(lambda c, sh, f: Connection(*c, share=sh, flags=f), connection_fields, shares,
              flags16),
)
fulls = st.builds(
    lambda it, bus, ps, v, r: CM_FULL_RESOURCE_DESCRIPTOR(
        it, bus, CM_PARTIAL_RESOURCE_LIST(ps, version=v, revision=r)),
    st.sampled_from(list(INTERFACE_TYPE)), u32, st.lists(partials, max_size=4), u16, u16)
resource_lists = st.builds(CM_RESOURCE_LIST, st.lists(fulls, max_size=3))

io_common = st.fixed_dictionaries({"option": st.integers(0, 255), "share": shares,
                                   "flags": flags16, "spare1": st.integers(0, 255),
                                   "spare2": u16})
requirements = st.one_of(
    st.builds(lambda a, b, c, d, k: PortRequirement(a, b, c, d, **k), u32, u32, u64, u64,
              io_common),
    st.builds(lambda a, b, c, d, k: MemoryRequirement(a, b, c, d, **k), u32, u32, u64, u64,
              io_common),
    st.builds(lambda fl, al, c, d, k: MemoryLargeRequirement(
        fl[1], (al << dict(LARGE)[fl[0]]), c, d,
        **{**k, "flags": (k["flags"] & ~CM_RESOURCE_MEMORY_LARGE) | fl[0]}),
        _large(LARGE), u32, u64, u64, io_common),
    st.builds(lambda a, b, ap, g, pp, tp, k: InterruptRequirement(
        a, b, affinity_policy=ap, group=g, priority_policy=pp, targeted_processors=tp, **k),
        u32, u32, u16, u16, u32, affinities, io_common),
    st.builds(lambda a, b, k: DmaRequirement(a, b, **{**k, "flags": k["flags"] & ~0x80}),
              u32, u32, io_common),
    st.builds(lambda a, b, c, d, k: BusNumberRequirement(a, b, c, d, **k), u32, u32, u32, u32,
              io_common),
    st.builds(lambda a, b, c, k: ConfigDataRequirement(a, b, c, **k), u32, u32, u32, io_common),
    st.builds(lambda d, k: DevicePrivateRequirement(d, **k), st.tuples(u32, u32, u32),
              io_common),
    st.builds(lambda t, d, k: GenericRequirement(t, d, **k),
              st.sampled_from([CmResourceTypeNull, CmResourceTypePcCardConfig,
                               CmResourceTypeMfCardConfig]),
              st.binary(min_size=24, max_size=24), io_common),
    st.builds(lambda c, k: ConnectionRequirement(*c, **k), connection_fields, io_common),
)
io_lists = st.builds(lambda ds, v, r: IO_RESOURCE_LIST(ds, version=v, revision=r),
                     st.lists(requirements, max_size=4), u16, u16)
requirement_lists = st.builds(
    lambda it, bus, slot, ls, res: IO_RESOURCE_REQUIREMENTS_LIST(it, bus, slot, ls, reserved=res),
    st.sampled_from(list(INTERFACE_TYPE)), u32, u32, st.lists(io_lists, max_size=3),
    st.tuples(u32, u32, u32))

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(resource_lists, st.sampled_from(ARCHES))
def test_resource_list_round_trip(value, arch):
    raw = value.pack(arch)
    assert len(raw) == value.size(arch)
    back = CM_RESOURCE_LIST.unpack(raw, arch)
    assert back == value
    assert back.pack(arch) == raw


@FAST
@given(resource_lists)
def test_x86_and_x64_layouts_convert(value):
    via_x86 = CM_RESOURCE_LIST.unpack(value.pack(X86), X86)
    assert via_x86 == value
    assert via_x86.pack(X64) == value.pack(X64)


@FAST
@given(requirement_lists, st.sampled_from(ARCHES))
def test_requirements_round_trip(value, arch):
    raw = value.pack(arch)
    assert struct.unpack_from("<I", raw)[0] == len(raw) == value.size(arch)
    assert IO_RESOURCE_REQUIREMENTS_LIST.unpack(raw, arch) == value


@settings(max_examples=60, deadline=None)
@given(st.one_of(resource_lists, requirement_lists))
def test_repr_round_trip(value):
    assert eval(repr(value)) == value


LAYOUT_TYPES = [CM_RESOURCE_LIST, CM_FULL_RESOURCE_DESCRIPTOR, CM_PARTIAL_RESOURCE_LIST,
                CM_PARTIAL_RESOURCE_DESCRIPTOR, IO_RESOURCE_REQUIREMENTS_LIST, IO_RESOURCE_LIST,
                IO_RESOURCE_DESCRIPTOR]
PAYLOAD_TYPES = [CM_SERIAL_DEVICE_DATA, CM_FLOPPY_DEVICE_DATA, PCI_REGISTRY_INFO]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(LAYOUT_TYPES), st.sampled_from(ARCHES))
def test_random_bytes_only_raise_documented_errors(data, kind, arch):
    try:
        value = kind.unpack(data, arch)
    except ResourceFormatError:
        return
    assert kind.unpack(value.pack(arch), arch) == value
    assert value.pack(arch) == data  # lossless: every accepted byte string


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40), st.sampled_from(PAYLOAD_TYPES))
def test_random_payload_bytes_only_raise_documented_errors(data, kind):
    try:
        value = kind.unpack(data)
    except ResourceFormatError:
        return
    assert kind.unpack(value.pack()) == value
    assert value.pack() == data


def _mutate(raw: bytearray, data: st.DataObject) -> bytes:
    """Overwrite a few bytes (header, union or tail alike) with random ones."""
    for _ in range(data.draw(st.integers(0, 6))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    return bytes(raw)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(resource_lists, requirement_lists), st.sampled_from(ARCHES), st.data())
def test_every_accepted_byte_string_round_trips_exactly(value, arch, data):
    """The lossless property: mutate a packed list anywhere (so union tails, reserved and
    spare fields, alignment tails and flags get random bytes); whatever still decodes
    packs back to exactly the same bytes."""
    kind = type(value)
    mutated = _mutate(bytearray(value.pack(arch)), data)
    try:
        decoded = kind.unpack(mutated, arch)
    except ResourceFormatError:
        return
    assert decoded.pack(arch) == mutated
    assert kind.unpack(decoded.pack(arch), arch) == decoded


@FAST
@given(resource_lists, st.sampled_from(ARCHES), st.data())
def test_mutated_lists_decode_consistently_or_raise(value, arch, data):
    raw = bytearray(value.pack(arch))
    if not raw:
        return
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw)
    try:
        decoded = CM_RESOURCE_LIST.unpack(mutated, arch)
    except ResourceFormatError:
        return
    # Whatever decoded is a faithful value: it re-packs to the very same bytes.
    assert CM_RESOURCE_LIST.unpack(decoded.pack(arch), arch) == decoded
    assert decoded.pack(arch) == mutated
