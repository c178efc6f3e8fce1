r"""NT hardware-resource structures as immutable Python values with exact binary layouts.

Implements nt-semantics.md §1 (binary layouts and constants):

* ``CM_RESOURCE_LIST`` → ``CM_FULL_RESOURCE_DESCRIPTOR`` → ``CM_PARTIAL_RESOURCE_LIST`` →
  partial descriptors (:class:`Port`, :class:`Interrupt`, :class:`Memory`, :class:`Dma`,
  :class:`DeviceSpecific`, :class:`BusNumber`, :class:`MemoryLarge`, :class:`DevicePrivate`,
  :class:`Connection`, :class:`GenericPartial` for the remaining §1.5 types), all
  subclasses of ``CM_PARTIAL_RESOURCE_DESCRIPTOR`` (§1.2, §1.3);
* ``IO_RESOURCE_REQUIREMENTS_LIST`` → ``IO_RESOURCE_LIST`` → requirement descriptors
  (:class:`PortRequirement`, :class:`MemoryRequirement`, :class:`InterruptRequirement`,
  :class:`DmaRequirement`, :class:`BusNumberRequirement`, :class:`MemoryLargeRequirement`,
  :class:`ConfigDataRequirement`, :class:`DevicePrivateRequirement`,
  :class:`ConnectionRequirement`, :class:`GenericRequirement`), subclasses of
  ``IO_RESOURCE_DESCRIPTOR`` (§1.4);
* DeviceSpecificData payloads :class:`CM_SERIAL_DEVICE_DATA`, :class:`CM_FLOPPY_DEVICE_DATA`,
  :class:`PCI_REGISTRY_INFO` (§1.14, §5.1) and :class:`PCI_SLOT_NUMBER` (§1.11);
* every constant of §1.5–§1.9 (type codes, share codes, flag bits, Option bits,
  INTERFACE_TYPE, BUS_DATA_TYPE), defined here once and exported under its NT name.

Naming: structures and constants carry their NT names; fields and methods are snake_case
(``start``, ``length``, ``minimum_address``, ``pack()``, ``unpack()``).

Layouts: every ``pack``/``unpack`` takes an :class:`Arch`. The only x86/x64 difference in
these structures is KAFFINITY (4 vs 8 bytes), which makes ``CM_PARTIAL_RESOURCE_DESCRIPTOR``
16 bytes on x86 and 20 on x64 (§1.2); IO_RESOURCE_DESCRIPTOR is 32 bytes on both (§1.4).

Decisions (documented here once):

* Decoding is lossless: ``pack(unpack(b)) == b`` for every byte string ``unpack``
  accepts, and ``unpack(pack(v)) == v``. Named fields (Reserved/Spare included) are kept
  as fields; the union bytes after the member a Type selects (the 4-byte tail of a
  non-interrupt x64 partial, the unused bytes of an IO union) are kept verbatim in
  ``union_tail`` (trailing zero bytes dropped, so an all-zero tail is ``b""``). Windows
  does fill them: XP's PCI bus driver writes DevicePrivate requirements that are copies of
  the window descriptor before them, so the tail holds its MaximumAddress
  (:func:`private_copy_of` recognises that rule for dumps), and uninitialised pool shows
  up in the tails of ConfigData descriptors of FilteredConfigVector values.
* Affinity (``Interrupt.affinity``, ``InterruptRequirement.targeted_processors``) is a
  KAFFINITY: ``-1`` means "all processors" and is written as all-ones at the pointer width;
  reading all-ones gives back ``-1``, so x86 and x64 lists convert into each other. (Hence
  an x86 mask of exactly 0xFFFFFFFF reads back as ``-1``: the same bytes, the same meaning.)
* Zero lengths are valid everywhere: §9.4 makes zero-length claims and requirements cases
  for the arbiter, not malformed input. A range whose end passes the top of its address
  space (Start + Length > 2**64, or > 2**32 for bus numbers, §9.6) is malformed:
  :class:`~harness.nt.errors.FieldRangeError`.
* A type code outside §1.5, a share code outside §1.6, an INTERFACE_TYPE outside §1.9, or
  a DeviceSpecific descriptor in an IO list (§1.5) → :class:`UnknownTypeError`. Win8+
  DmaV3 requirement descriptors (whose channel lives outside the modelled fields) are
  refused the same way rather than silently truncated.
* ``unpack`` walks DeviceSpecificData payloads (§1.3 pitfall) and refuses trailing bytes;
  ``unpack_from`` returns the end offset instead, for walkers of larger buffers.
* The C-array rule (§1.3, seed 002): the *variable-size* layout NT writes into the registry
  allows any number of partials per full descriptor, and real lists (the HAL's ``.Raw``,
  §2.4) rely on that. A list declared *statically* as a C ``CM_RESOURCE_LIST`` and indexed
  as ``List[i]`` is only read correctly when every full descriptor but the last holds
  exactly one partial with no payload, and a DeviceSpecific partial is last in its list.
  ``pack(..., c_array=True)`` / ``unpack(..., c_array=True)`` enforce that
  (:class:`LayoutRuleError`), for producers and consumers that use the C-array view.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

from .errors import (FieldRangeError, LayoutRuleError, ResourceFormatError, SizeMismatchError,
                     TruncatedError, UnknownTypeError)

# ---------------------------------------------------------------------------------------
# Layout selection (§1.1)


class Arch(enum.Enum):
    """Which C layout to use: KAFFINITY is pointer-sized (§1.1)."""

    X86 = "x86"
    X64 = "x64"

    @property
    def affinity_size(self) -> int:
        return 4 if self is Arch.X86 else 8

    @property
    def partial_descriptor_size(self) -> int:
        """sizeof(CM_PARTIAL_RESOURCE_DESCRIPTOR): 16 on x86, 20 on x64 (§1.2)."""
        return 4 + 8 + self.affinity_size

    @classmethod
    def parse(cls, value: "Arch | str") -> "Arch":
        if isinstance(value, Arch):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise UnknownTypeError(f"unknown layout {value!r}, expected 'x86' or 'x64'",
                                   field="arch") from None


# ---------------------------------------------------------------------------------------
# Constants (§1.5–§1.9). Enum members are re-exported at module level under their NT name.


class CmResourceType(enum.IntEnum):
    """CM_PARTIAL_RESOURCE_DESCRIPTOR.Type / IO_RESOURCE_DESCRIPTOR.Type (§1.5)."""

    CmResourceTypeNull = 0
    CmResourceTypePort = 1
    CmResourceTypeInterrupt = 2
    CmResourceTypeMemory = 3
    CmResourceTypeDma = 4
    CmResourceTypeDeviceSpecific = 5
    CmResourceTypeBusNumber = 6
    CmResourceTypeMemoryLarge = 7
    CmResourceTypeNonArbitrated = 128
    CmResourceTypeConfigData = 128  # same code; the IO-list meaning (priority descriptor)
    CmResourceTypeDevicePrivate = 129
    CmResourceTypePcCardConfig = 130
    CmResourceTypeMfCardConfig = 131
    CmResourceTypeConnection = 132


class CmResourceShare(enum.IntEnum):
    """ShareDisposition (§1.6)."""

    CmResourceShareUndetermined = 0
    CmResourceShareDeviceExclusive = 1
    CmResourceShareDriverExclusive = 2
    CmResourceShareShared = 3
    CmResourceShareBusShared = 4


class INTERFACE_TYPE(enum.IntEnum):
    """Bus interface types (§1.9); a 4-byte signed enum, Undefined is -1."""

    InterfaceTypeUndefined = -1
    Internal = 0
    Isa = 1
    Eisa = 2
    MicroChannel = 3
    TurboChannel = 4
    PCIBus = 5
    VMEBus = 6
    NuBus = 7
    PCMCIABus = 8
    CBus = 9
    MPIBus = 10
    MPSABus = 11
    ProcessorInternal = 12
    InternalPowerBus = 13
    PNPISABus = 14
    PNPBus = 15
    Vmcs = 16
    ACPIBus = 17
    MaximumInterfaceType = 18


class BUS_DATA_TYPE(enum.IntEnum):
    """HalGetBusData bus data types (§1.9)."""

    ConfigurationSpaceUndefined = -1
    Cmos = 0
    EisaConfiguration = 1
    Pos = 2
    CbusConfiguration = 3
    PCIConfiguration = 4
    VMEConfiguration = 5
    NuBusConfiguration = 6
    PCMCIAConfiguration = 7
    MPIConfiguration = 8
    MPSAConfiguration = 9
    PNPISAConfiguration = 10
    SgiInternalConfiguration = 11
    MaximumBusDataType = 12


globals().update(CmResourceType.__members__)
globals().update(CmResourceShare.__members__)
globals().update(INTERFACE_TYPE.__members__)
globals().update(BUS_DATA_TYPE.__members__)

# Flags bits (§1.7).
CM_RESOURCE_PORT_MEMORY = 0x0000
CM_RESOURCE_PORT_IO = 0x0001
CM_RESOURCE_PORT_10_BIT_DECODE = 0x0004
CM_RESOURCE_PORT_12_BIT_DECODE = 0x0008
CM_RESOURCE_PORT_16_BIT_DECODE = 0x0010
CM_RESOURCE_PORT_POSITIVE_DECODE = 0x0020
CM_RESOURCE_PORT_PASSIVE_DECODE = 0x0040
CM_RESOURCE_PORT_WINDOW_DECODE = 0x0080
CM_RESOURCE_PORT_BAR = 0x0100

CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE = 0x0000
CM_RESOURCE_INTERRUPT_LATCHED = 0x0001
CM_RESOURCE_INTERRUPT_MESSAGE = 0x0002
CM_RESOURCE_INTERRUPT_POLICY_INCLUDED = 0x0004
CM_RESOURCE_INTERRUPT_ALLOW_RESERVED_IDT = 0x0008
CM_RESOURCE_INTERRUPT_SECONDARY_INTERRUPT = 0x0010
CM_RESOURCE_INTERRUPT_WAKE_HINT = 0x0020
CM_RESOURCE_INTERRUPT_LEVEL_LATCHED_BITS = 0x0001
CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN = 0xFFFFFFFE

CM_RESOURCE_MEMORY_READ_WRITE = 0x0000
CM_RESOURCE_MEMORY_READ_ONLY = 0x0001
CM_RESOURCE_MEMORY_WRITE_ONLY = 0x0002
CM_RESOURCE_MEMORY_WRITEABILITY_MASK = 0x0003
CM_RESOURCE_MEMORY_PREFETCHABLE = 0x0004
CM_RESOURCE_MEMORY_COMBINEDWRITE = 0x0008
CM_RESOURCE_MEMORY_24 = 0x0010
CM_RESOURCE_MEMORY_CACHEABLE = 0x0020
CM_RESOURCE_MEMORY_WINDOW_DECODE = 0x0040
CM_RESOURCE_MEMORY_BAR = 0x0080
CM_RESOURCE_MEMORY_COMPAT_FOR_INACCESSIBLE_RANGE = 0x0100
CM_RESOURCE_MEMORY_LARGE = 0x0E00
CM_RESOURCE_MEMORY_LARGE_40 = 0x0200
CM_RESOURCE_MEMORY_LARGE_48 = 0x0400
CM_RESOURCE_MEMORY_LARGE_64 = 0x0800
CM_RESOURCE_MEMORY_LARGE_40_MAXLEN = 0x000000FFFFFFFF00
CM_RESOURCE_MEMORY_LARGE_48_MAXLEN = 0x0000FFFFFFFF0000
CM_RESOURCE_MEMORY_LARGE_64_MAXLEN = 0xFFFFFFFF00000000

CM_RESOURCE_DMA_8 = 0x0000
CM_RESOURCE_DMA_16 = 0x0001
CM_RESOURCE_DMA_32 = 0x0002
CM_RESOURCE_DMA_8_AND_16 = 0x0004
CM_RESOURCE_DMA_BUS_MASTER = 0x0008
CM_RESOURCE_DMA_TYPE_A = 0x0010
CM_RESOURCE_DMA_TYPE_B = 0x0020
CM_RESOURCE_DMA_TYPE_F = 0x0040
CM_RESOURCE_DMA_V3 = 0x0080

# IO_RESOURCE_DESCRIPTOR.Option (§1.8).
IO_RESOURCE_REQUIRED = 0x00
IO_RESOURCE_PREFERRED = 0x01
IO_RESOURCE_DEFAULT = 0x02
IO_RESOURCE_ALTERNATIVE = 0x08

# Names used to render Flags per resource type: single bits only (masks and zero values
# are handled separately). Values are looked up from the constants above.
_FLAG_BITS: dict[CmResourceType, tuple[str, ...]] = {
    CmResourceType.CmResourceTypePort: (
        "CM_RESOURCE_PORT_IO", "CM_RESOURCE_PORT_10_BIT_DECODE",
        "CM_RESOURCE_PORT_12_BIT_DECODE", "CM_RESOURCE_PORT_16_BIT_DECODE",
        "CM_RESOURCE_PORT_POSITIVE_DECODE", "CM_RESOURCE_PORT_PASSIVE_DECODE",
        "CM_RESOURCE_PORT_WINDOW_DECODE", "CM_RESOURCE_PORT_BAR"),
    CmResourceType.CmResourceTypeInterrupt: (
        "CM_RESOURCE_INTERRUPT_LATCHED", "CM_RESOURCE_INTERRUPT_MESSAGE",
        "CM_RESOURCE_INTERRUPT_POLICY_INCLUDED", "CM_RESOURCE_INTERRUPT_ALLOW_RESERVED_IDT",
        "CM_RESOURCE_INTERRUPT_SECONDARY_INTERRUPT", "CM_RESOURCE_INTERRUPT_WAKE_HINT"),
    CmResourceType.CmResourceTypeMemory: (
        "CM_RESOURCE_MEMORY_READ_ONLY", "CM_RESOURCE_MEMORY_WRITE_ONLY",
        "CM_RESOURCE_MEMORY_PREFETCHABLE", "CM_RESOURCE_MEMORY_COMBINEDWRITE",
        "CM_RESOURCE_MEMORY_24", "CM_RESOURCE_MEMORY_CACHEABLE",
        "CM_RESOURCE_MEMORY_WINDOW_DECODE", "CM_RESOURCE_MEMORY_BAR",
        "CM_RESOURCE_MEMORY_COMPAT_FOR_INACCESSIBLE_RANGE", "CM_RESOURCE_MEMORY_LARGE_40",
        "CM_RESOURCE_MEMORY_LARGE_48", "CM_RESOURCE_MEMORY_LARGE_64"),
    CmResourceType.CmResourceTypeDma: (
        "CM_RESOURCE_DMA_16", "CM_RESOURCE_DMA_32", "CM_RESOURCE_DMA_8_AND_16",
        "CM_RESOURCE_DMA_BUS_MASTER", "CM_RESOURCE_DMA_TYPE_A", "CM_RESOURCE_DMA_TYPE_B",
        "CM_RESOURCE_DMA_TYPE_F", "CM_RESOURCE_DMA_V3"),
}
_FLAG_BITS[CmResourceType.CmResourceTypeMemoryLarge] = _FLAG_BITS[CmResourceType.CmResourceTypeMemory]
_FLAG_ZERO: dict[CmResourceType, str] = {
    CmResourceType.CmResourceTypePort: "CM_RESOURCE_PORT_MEMORY",
    CmResourceType.CmResourceTypeInterrupt: "CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE",
    CmResourceType.CmResourceTypeMemory: "CM_RESOURCE_MEMORY_READ_WRITE",
    CmResourceType.CmResourceTypeMemoryLarge: "CM_RESOURCE_MEMORY_READ_WRITE",
    CmResourceType.CmResourceTypeDma: "CM_RESOURCE_DMA_8",
}
_FLAG_PREFIX: dict[CmResourceType, str] = {
    CmResourceType.CmResourceTypePort: "CM_RESOURCE_PORT_",
    CmResourceType.CmResourceTypeInterrupt: "CM_RESOURCE_INTERRUPT_",
    CmResourceType.CmResourceTypeMemory: "CM_RESOURCE_MEMORY_",
    CmResourceType.CmResourceTypeMemoryLarge: "CM_RESOURCE_MEMORY_",
    CmResourceType.CmResourceTypeDma: "CM_RESOURCE_DMA_",
}
# LCPRI_* (§6.2): the priority a ConfigData descriptor gives its IO_RESOURCE_LIST; lower
# values are tried first.
LCPRI_FORCECONFIG = 0x0000
LCPRI_BOOTCONFIG = 0x0001
LCPRI_DESIRED = 0x2000
LCPRI_NORMAL = 0x3000
LCPRI_LASTBESTCONFIG = 0x3FFF
LCPRI_SUBOPTIMAL = 0x5000
LCPRI_LASTSOFTCONFIG = 0x7FFF
LCPRI_RESTART = 0x8000
LCPRI_REBOOT = 0x9000
LCPRI_POWEROFF = 0xA000
LCPRI_HARDRECONFIG = 0xC000
LCPRI_HARDWIRED = 0xE000
LCPRI_IMPOSSIBLE = 0xF000
LCPRI_DISABLED = 0xFFFF

_OPTION_BITS = ("IO_RESOURCE_PREFERRED", "IO_RESOURCE_DEFAULT", "IO_RESOURCE_ALTERNATIVE")

# MemoryLarge: which Flags bit selects which shift of the stored 32-bit length (§1.2).
_LARGE_SHIFTS = ((CM_RESOURCE_MEMORY_LARGE_40, 8), (CM_RESOURCE_MEMORY_LARGE_48, 16),
                 (CM_RESOURCE_MEMORY_LARGE_64, 32))


def format_flags(resource_type: int, flags: int, *, short: bool = False) -> str:
    """Render a Flags word as ``NAME|NAME|0x...`` using the bit names of ``resource_type``
    (§1.7). ``short`` drops the ``CM_RESOURCE_<TYPE>_`` prefix (for tree dumps)."""
    try:
        rtype = CmResourceType(resource_type)
    except ValueError:
        rtype = None
    names = _FLAG_BITS.get(rtype) if rtype is not None else None
    if names is None:
        return f"0x{flags:04x}"
    prefix = _FLAG_PREFIX[rtype] if short else ""
    if flags == 0:
        return _FLAG_ZERO[rtype][len(prefix):]
    parts, rest = [], flags
    for name in names:
        bit = globals()[name]
        if flags & bit:
            parts.append(name[len(prefix):])
            rest &= ~bit
    if rest:
        parts.append(f"0x{rest:x}")
    return "|".join(parts)


def format_option(option: int) -> str:
    """Render IO_RESOURCE_DESCRIPTOR.Option by its §1.8 bit names."""
    if option == IO_RESOURCE_REQUIRED:
        return "IO_RESOURCE_REQUIRED"
    parts, rest = [], option
    for name in _OPTION_BITS:
        bit = globals()[name]
        if option & bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(f"0x{rest:x}")
    return "|".join(parts)


# ---------------------------------------------------------------------------------------
# Validation and byte-reading helpers

_UINT_NAMES = {8: "UCHAR", 16: "USHORT", 32: "ULONG", 64: "ULONGLONG"}
_U8_MAX, _U16_MAX, _U32_MAX, _U64_MAX = 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


def _check_uint(value: Any, bits: int, cfield: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldRangeError(f"expected an integer, got {type(value).__name__} {value!r}",
                              field=cfield)
    if not 0 <= value < (1 << bits):
        raise FieldRangeError(f"{value:#x} does not fit {_UINT_NAMES[bits]} "
                              f"(0..{(1 << bits) - 1:#x})", field=cfield)
    return value


def _check_affinity(value: Any, cfield: str) -> int:
    """KAFFINITY: -1 (all processors) or a mask; the 64-bit all-ones mask normalises to -1."""
    if isinstance(value, int) and not isinstance(value, bool) and value == -1:
        return -1
    return -1 if _check_uint(value, 64, cfield) == _U64_MAX else value


def _pack_affinity(value: int, arch: "Arch") -> bytes | None:
    """A KAFFINITY at the pointer width (-1 = all ones); None if ``value`` does not fit."""
    width = arch.affinity_size * 8
    mask = (1 << width) - 1 if value == -1 else value
    return None if mask >> width else mask.to_bytes(arch.affinity_size, "little")


def _unpack_affinity(data: bytes, arch: "Arch") -> int:
    """Read a KAFFINITY at the pointer width; all ones reads as -1 (all processors)."""
    raw = int.from_bytes(data[:arch.affinity_size], "little")
    return -1 if raw == (1 << (8 * arch.affinity_size)) - 1 else raw


def _check_no_wrap(start: int, length: int, bits: int, cfield: str) -> None:
    if start + length > (1 << bits):
        raise FieldRangeError(f"range start {start:#x} + length {length:#x} = "
                              f"{start + length:#x} wraps past 2**{bits}", field=cfield)


def _to_enum(enum_cls: type[enum.IntEnum], value: Any, cfield: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnknownTypeError(f"expected an integer {enum_cls.__name__}, got {value!r}",
                               field=cfield)
    # The enum's own value table first: EnumType.__call__ costs ~10x a dict look-up, and
    # every descriptor built or decoded converts two or three fields.
    member = enum_cls._value2member_map_.get(value)
    if member is not None:
        return member
    try:
        return enum_cls(value)
    except ValueError:
        valid = ", ".join(str(m.value) for m in enum_cls)
        raise UnknownTypeError(f"{value} is not a {enum_cls.__name__} (valid: {valid})",
                               field=cfield) from None


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclass normalisation in __post_init__


class _Reader:
    """Bounds-checked little-endian reads that name the field on failure."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def bytes(self, n: int, cfield: str) -> bytes:
        if n > self.remaining:
            raise TruncatedError(f"needs {n} bytes but only {max(self.remaining, 0)} remain "
                                 f"(buffer is {len(self.data)} bytes)", field=cfield,
                                 offset=self.pos)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: struct.Struct, cfield: str) -> tuple[Any, ...]:
        return fmt.unpack(self.bytes(fmt.size, cfield))

    def need_items(self, count: int, item_size: int, cfield: str) -> None:
        """Refuse a Count that cannot fit before reading any item (also bounds work)."""
        if count * item_size > self.remaining:
            raise TruncatedError(f"Count {count} needs at least {count * item_size} bytes "
                                 f"but only {self.remaining} remain", field=cfield,
                                 offset=self.pos)


class _wrap_errors:
    """Context manager: prefix constructor errors raised while decoding with ``path``."""

    __slots__ = ("path", "offset")

    def __init__(self, path: str, offset: int) -> None:
        self.path = path
        self.offset = offset

    def __enter__(self) -> None:
        return None

    def __exit__(self, et, ev, tb) -> bool:
        if isinstance(ev, ResourceFormatError) and ev.offset is None:
            raise ev.within(self.path, self.offset) from None
        return False


def _pack_items(items: tuple, arch: Any, cfield: str) -> bytes:
    """``item.pack(arch)`` of each array element, concatenated; errors name ``cfield[i]``."""
    out = []
    i = 0
    try:  # (the element's path is built only for an error)
        for i, item in enumerate(items):
            out.append(item.pack(arch))
    except ResourceFormatError as e:
        raise e.within(f"{cfield}[{i}]") from None
    return b"".join(out)


def _read_items(r: "_Reader", arch: "Arch", read: Any, count: int, item_size: int,
                count_field: str, cfield: str) -> tuple:
    """Read a Count-prefixed array with ``read(r, arch, "cfield[i]")``. A Count whose items
    (``item_size`` bytes each at the least) cannot fit is refused before reading any."""
    r.need_items(count, item_size, count_field)
    return tuple(read(r, arch, f"{cfield}[{i}]") for i in range(count))


def _finish(data: bytes, end: int, name: str) -> None:
    if end != len(data):
        raise SizeMismatchError(f"{len(data) - end} trailing bytes after the structure "
                                f"({end} of {len(data)} bytes used)", field=name, offset=end)


def _fmt_value(name: str, value: Any, obj: Any) -> str:
    if isinstance(value, enum.Enum):
        return value.name
    if name == "flags":
        return format_flags(getattr(obj, "type", -1), value)
    if name == "option":
        return format_option(value)
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        if value == -1 or name not in _HEX_FIELDS:
            return str(value)
        return hex(value)
    if isinstance(value, tuple):
        inner = ", ".join(_fmt_value("", v, obj) if not dataclasses.is_dataclass(v) else repr(v)
                          for v in value)
        return f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


_HEX_FIELDS = frozenset({"start", "length", "alignment", "minimum_address", "maximum_address",
                         "affinity", "targeted_processors", "port", "data_words"})


class _ReprMixin:
    """Readable reprs: enum names, flag names, hex addresses. Fields still equal to their
    default are left out (except share and flags) so short descriptors read short; the
    result is valid Python after ``from harness.nt.resources import *``."""

    def __repr__(self) -> str:
        parts = []
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        # The descriptor's own (positional) fields first, then option/share/flags.
        for f in sorted(fields, key=lambda f: f.kw_only):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if (f.default is not dataclasses.MISSING and value == f.default
                    and f.name not in ("share", "flags")):
                continue
            if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
                continue
            parts.append(f"{f.name}={_fmt_value(f.name, value, self)}")
        return f"{type(self).__name__}({', '.join(parts)})"


class _Structure(_ReprMixin):
    """``unpack``/``unpack_from`` of the structures decoded through a :class:`_Reader`.

    A subclass defines ``_read(r, arch, path)``, which decodes one structure at ``r.pos``
    and leaves ``r.pos`` after it, and ``_C_NAME``, the C name that roots the field paths
    of decoding errors (inherited: ``Port.unpack`` reports CM_PARTIAL_RESOURCE_DESCRIPTOR).
    """

    _C_NAME: ClassVar[str]

    @classmethod
    def _read(cls, r: _Reader, arch: Arch, path: str) -> Any:
        raise NotImplementedError

    @classmethod
    def unpack(cls, data: bytes, arch: Arch = Arch.X64) -> Any:
        # Structures are immutable, and a job decodes the same few values again and again
        # (a driver reads back the lists its service key was given): decoded once per
        # (structure, bytes, layout).  Errors are not remembered; they are raised each time.
        if type(data) is bytes and len(data) <= _REMEMBERED_DECODE and isinstance(arch, Arch):
            return _unpack_remembered(cls, data, arch)
        return cls._unpack(data, arch)

    @classmethod
    def _unpack(cls, data: bytes, arch: Arch) -> Any:
        obj, end = cls.unpack_from(data, 0, arch)
        _finish(data, end, cls._C_NAME)
        return obj

    @classmethod
    def unpack_from(cls, data: bytes, offset: int = 0, arch: Arch = Arch.X64,
                    ) -> tuple[Any, int]:
        r = _Reader(bytes(data), offset)
        obj = cls._read(r, Arch.parse(arch), cls._C_NAME)
        return obj, r.pos


_REMEMBERED_DECODE = 4096  # bytes: a resource list is ~100; a fuzzer's inputs are not kept


@functools.lru_cache(maxsize=256)
def _unpack_remembered(cls: type[_Structure], data: bytes, arch: Arch) -> Any:
    return cls._unpack(data, arch)


# ---------------------------------------------------------------------------------------
# Descriptors: a header carrying the Type code, then a union selected by Type (§1.2, §1.4)


class _Descriptor(_Structure):
    """What CM_PARTIAL_RESOURCE_DESCRIPTOR and IO_RESOURCE_DESCRIPTOR share.

    Each of the two bases defines its header (``_pack_header`` / ``_read_header``, which
    returns the Type code and the other header fields as constructor keywords), its size
    (``_fixed_size``), ``_CLASSES`` (its concrete classes by Type code, filled by
    :func:`_kind`) and ``_generic`` (the value for a Type without a concrete class).
    Each concrete class packs its union member (``_union_bytes``; the rest of the union
    is written as zero) and is built from it (``_from_union``).
    """

    type: ClassVar[CmResourceType]
    _union: ClassVar[str] = ""  # C name of the union member, for error paths
    _CLASSES: ClassVar[dict[int, type["_Descriptor"]]]
    _HEADER: ClassVar[struct.Struct]

    def _f(self, name: str) -> str:
        return f"u.{self._union}.{name}"

    @staticmethod
    def _fixed_size(arch: Arch) -> int:
        raise NotImplementedError

    def _pack_header(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def _read_header(cls, r: _Reader, path: str) -> tuple[int, dict[str, int]]:
        raise NotImplementedError

    @classmethod
    def _generic(cls, code: CmResourceType, union: bytes, common: dict[str, int]) -> Any:
        raise NotImplementedError

    def _union_bytes(self, arch: Arch) -> bytes:
        raise NotImplementedError

    @classmethod
    def _from_union(cls, union: bytes, arch: Arch, common: dict[str, int], r: _Reader,
                    path: str) -> Any:
        """Build from the union bytes; ``r`` is positioned after the descriptor (where a
        DeviceSpecificData payload starts), ``path`` names the descriptor."""
        raise NotImplementedError

    def _payload(self) -> bytes:
        """Bytes that follow the descriptor: only DeviceSpecificData has any (§1.2)."""
        return b""

    def size(self, arch: Arch = Arch.X64) -> int:
        """Bytes this descriptor occupies, including any DeviceSpecificData payload."""
        return self._fixed_size(arch) + len(self._payload())

    def union(self, arch: Arch = Arch.X64) -> bytes:
        """All the union bytes as packed: the selected member, then ``union_tail``, then
        zeros up to the union's size in ``arch``."""
        arch = Arch.parse(arch)
        member = self._union_bytes(arch)
        room = self._fixed_size(arch) - self._HEADER.size - len(member)
        if len(self.union_tail) > room:  # type: ignore[attr-defined]
            raise FieldRangeError(
                f"a union tail of {len(self.union_tail)} bytes does not fit the {room} "  # type: ignore[attr-defined]
                f"bytes after u.{self._union} in the {arch.value} layout", field="u")
        return member + self.union_tail + bytes(room - len(self.union_tail))  # type: ignore[attr-defined]

    def pack(self, arch: Arch = Arch.X64) -> bytes:
        return self._pack_header() + self.union(arch) + self._payload()

    @classmethod
    def _read(cls, r: _Reader, arch: Arch, path: str) -> Any:
        start = r.pos
        rtype, common = cls._read_header(r, path)
        union = r.bytes(cls._fixed_size(arch) - cls._HEADER.size, f"{path}.u")
        with _wrap_errors(path, start):
            code = _to_enum(CmResourceType, rtype, "Type")
            kind = cls._CLASSES.get(int(code))
            if kind is None:
                obj = cls._generic(code, union, common)
            else:
                obj = kind._from_union(union, arch, common, r, path)
        # What follows the member is kept as it is (lossless decoding, module docstring).
        _set(obj, "union_tail", union[len(obj._union_bytes(arch)):].rstrip(b"\0"))
        return obj


def _check_tail(value: Any) -> bytes:
    """``union_tail``: bytes after the selected union member, trailing zeros dropped."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise FieldRangeError(f"expected bytes, got {type(value).__name__}", field="u")
    return bytes(value).rstrip(b"\0")


def _kind(code: CmResourceType, union: str):
    """Class decorator: the concrete descriptor for Type ``code``, union member ``u.<union>``."""
    def register(cls):
        cls.type = code
        cls._union = union
        cls._CLASSES[int(code)] = cls
        return cls
    return register


def _generic_union(data: Any, size: int) -> bytes:
    """The verbatim union bytes of a Generic* descriptor."""
    if not isinstance(data, (bytes, bytearray)) or len(data) != size:
        raise FieldRangeError(f"expected {size} bytes of union data", field="u.Generic")
    return bytes(data)


def _refuse_dedicated(code: CmResourceType, classes: dict[int, type]) -> None:
    """A Generic* descriptor is only for a Type without a concrete class."""
    if int(code) in classes:
        raise UnknownTypeError(f"{code.name} has a dedicated class "
                               f"{classes[int(code)].__name__}", field="Type")


# ---------------------------------------------------------------------------------------
# CM_PARTIAL_RESOURCE_DESCRIPTOR (§1.2)

_CM_HEADER = struct.Struct("<BBH")        # Type, ShareDisposition, Flags
_CM_UNION_BYTES = 12                      # union bytes common to both layouts
_CM_PARTIAL_CLASSES: dict[int, type["CM_PARTIAL_RESOURCE_DESCRIPTOR"]] = {}


@dataclass(frozen=True, kw_only=True, repr=False)
class CM_PARTIAL_RESOURCE_DESCRIPTOR(_Descriptor):
    """Base of the partial descriptors; construct a subclass (:class:`Port`, …).

    ``share`` is the ShareDisposition (§1.6), ``flags`` the type-specific Flags (§1.7).
    """

    share: CmResourceShare = CmResourceShare.CmResourceShareDeviceExclusive
    flags: int = 0
    union_tail: bytes = b""

    _C_NAME: ClassVar[str] = "CM_PARTIAL_RESOURCE_DESCRIPTOR"
    _CLASSES: ClassVar[dict[int, type[_Descriptor]]] = _CM_PARTIAL_CLASSES
    _HEADER: ClassVar[struct.Struct] = _CM_HEADER

    def __post_init__(self) -> None:
        if type(self) is CM_PARTIAL_RESOURCE_DESCRIPTOR:
            raise TypeError("construct a concrete descriptor such as Port or Interrupt")
        _set(self, "share", _to_enum(CmResourceShare, self.share, "ShareDisposition"))
        _check_uint(self.flags, 16, "Flags")
        _set(self, "union_tail", _check_tail(self.union_tail))

    @staticmethod
    def _fixed_size(arch: Arch) -> int:
        """sizeof(CM_PARTIAL_RESOURCE_DESCRIPTOR), without a DeviceSpecificData payload;
        on x64 the union ends in 4 bytes of padding (only Interrupt's Affinity uses them)."""
        return Arch.parse(arch).partial_descriptor_size

    def _pack_header(self) -> bytes:
        return _CM_HEADER.pack(self.type, self.share, self.flags)

    @classmethod
    def _read_header(cls, r: _Reader, path: str) -> tuple[int, dict[str, int]]:
        rtype, share, flags = r.unpack(_CM_HEADER, f"{path}.Type")
        return rtype, dict(share=share, flags=flags)

    @classmethod
    def _generic(cls, code, union, common):
        return GenericPartial(code, union[:_CM_UNION_BYTES], **common)


_QI = struct.Struct("<QI")
_III = struct.Struct("<III")
_II = struct.Struct("<II")


class _Range:
    """A [start, start+length) range: Port, Memory, MemoryLarge, BusNumber."""

    @property
    def end(self) -> int:
        """Exclusive end of the range."""
        return self.start + self.length  # type: ignore[attr-defined]


class _StartLength(_Range):
    """u.Port and u.Memory, the same C struct: PHYSICAL_ADDRESS Start, ULONG Length (§1.2)."""

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        _check_uint(self.start, 64, self._f("Start"))    # type: ignore[attr-defined]
        _check_uint(self.length, 32, self._f("Length"))  # type: ignore[attr-defined]
        _check_no_wrap(self.start, self.length, 64, self._f("Length"))  # type: ignore[attr-defined]

    def _union_bytes(self, arch: Arch) -> bytes:
        return _QI.pack(self.start, self.length)  # type: ignore[attr-defined]

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        start, length = _QI.unpack_from(union)
        return cls(start, length, **common)


@_kind(CmResourceType.CmResourceTypePort, "Port")
@dataclass(frozen=True, kw_only=False, repr=False)
class Port(_StartLength, CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """I/O port range [start, start+length). ``flags`` defaults to CM_RESOURCE_PORT_IO:
    a zero Flags word means CM_RESOURCE_PORT_MEMORY (a port in memory space)."""

    start: int
    length: int
    flags: int = field(default=CM_RESOURCE_PORT_IO, kw_only=True)


@_kind(CmResourceType.CmResourceTypeMemory, "Memory")
@dataclass(frozen=True, repr=False)
class Memory(_StartLength, CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """Bus-relative memory range [start, start+length), Length a ULONG."""

    start: int
    length: int


def _large_shift(flags: int) -> int | None:
    """The shift of a MemoryLarge Length as NT decodes it (RtlCmDecodeMemIoResource): the
    first of CM_RESOURCE_MEMORY_LARGE_40, _48, _64 set in Flags wins; with none of them
    NT reads the length as 0 (None here)."""
    for bit, shift in _LARGE_SHIFTS:
        if flags & bit:
            return shift
    return None


def _fits_shift(value: int, shift: int) -> bool:
    """``value`` is exactly a ULONG shifted left by ``shift`` (a LARGE_* stored length)."""
    return value % (1 << shift) == 0 and (value >> shift) <= _U32_MAX


def _with_large_flag(flags: int, *lengths: int) -> int:
    """Add the narrowest CM_RESOURCE_MEMORY_LARGE_* bit that represents every length
    exactly, if the caller gave none and a length is not zero (with no bit NT reads 0)."""
    if flags & CM_RESOURCE_MEMORY_LARGE or not any(lengths):
        return flags
    for bit, shift in _LARGE_SHIFTS:
        if all(_fits_shift(n, shift) for n in lengths):
            return flags | bit
    return flags  # nothing fits: validation reports it


def _check_large(flags: int, values: dict[str, tuple[int, int]]) -> int | None:
    """Validate MemoryLarge lengths ``{C field: (value, ignored stored ULONG)}`` against
    Flags; returns the shift (None: no LARGE_* bit, every value 0 and the stored ULONGs
    kept as they are because NT ignores them)."""
    shift = _large_shift(flags)
    for cfield, (value, ignored) in values.items():
        _check_uint(ignored, 32, f"{cfield} (ignored)")
        if shift is None:
            if value:
                raise FieldRangeError(f"{value:#x} is not representable by any of "
                                      "CM_RESOURCE_MEMORY_LARGE_40/48/64", field=cfield)
            continue
        if ignored:
            raise FieldRangeError(f"an ignored stored value ({ignored:#x}) exists only without "
                                  "a CM_RESOURCE_MEMORY_LARGE_* bit in Flags", field=cfield)
        if not _fits_shift(value, shift):
            raise FieldRangeError(f"{value:#x} is not representable with a {shift}-bit "
                                  "shift of a ULONG", field=cfield)
    return shift


def _stored_large(value: int, ignored: int, shift: int | None) -> int:
    return ignored if shift is None else value >> shift


def _decoded_large(stored: int, shift: int | None) -> tuple[int, int]:
    """(value, ignored stored ULONG) from a stored Length/Alignment."""
    return (0, stored) if shift is None else (stored << shift, 0)


class _LargeMember:
    """Error paths name the union member the LARGE_* flag selects, as the DDK does:
    u.Memory40.Length40, u.Memory48.Length48, u.Memory64.Length64 (Alignment likewise)."""

    def _f(self, name: str) -> str:
        flags = self.flags  # type: ignore[attr-defined]
        width = {8: "40", 16: "48"}.get(_large_shift(flags) if isinstance(flags, int) else None, "64")
        return f"u.Memory{width}.{name}{width if name in ('Length', 'Alignment') else ''}"


@_kind(CmResourceType.CmResourceTypeMemoryLarge, "Memory64")
@dataclass(frozen=True, repr=False)
class MemoryLarge(_LargeMember, _Range, CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """CmResourceTypeMemoryLarge (Vista+): ``length`` is the real length; the stored
    Length40/48/64 is it shifted right by the LARGE_* flag NT picks (the first of 40, 48,
    64 set, so several bits are accepted as NT accepts them). Without a LARGE_* bit in
    ``flags`` a non-zero ``length`` gets the narrowest bit that holds it exactly. With no
    bit at all NT decodes the length as 0 and ignores the stored ULONG: ``length`` is 0
    and that ULONG is kept in ``ignored_length``."""

    start: int
    length: int
    ignored_length: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        _set(self, "flags", _with_large_flag(self.flags, self.length)
             if isinstance(self.flags, int) and isinstance(self.length, int) else self.flags)
        super().__post_init__()
        _check_uint(self.start, 64, self._f("Start"))
        _check_uint(self.length, 64, self._f("Length"))
        _check_large(self.flags, {self._f("Length"): (self.length, self.ignored_length)})
        _check_no_wrap(self.start, self.length, 64, self._f("Length"))

    def _union_bytes(self, arch: Arch) -> bytes:
        shift = _large_shift(self.flags)
        return _QI.pack(self.start, _stored_large(self.length, self.ignored_length, shift))

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        start, stored = _QI.unpack_from(union)
        length, ignored = _decoded_large(stored, _large_shift(common["flags"]))
        return cls(start, length, ignored_length=ignored, **common)


@_kind(CmResourceType.CmResourceTypeInterrupt, "Interrupt")
@dataclass(frozen=True, repr=False)
class Interrupt(CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """Bus-relative interrupt: Level, Vector and KAFFINITY Affinity (-1 = all processors,
    what §2.1 asks claims to carry)."""

    level: int
    vector: int
    affinity: int = -1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uint(self.level, 32, self._f("Level"))
        _check_uint(self.vector, 32, self._f("Vector"))
        _set(self, "affinity", _check_affinity(self.affinity, self._f("Affinity")))

    def _union_bytes(self, arch: Arch) -> bytes:
        affinity = _pack_affinity(self.affinity, arch)
        if affinity is None:
            raise FieldRangeError(f"{self.affinity:#x} does not fit the {arch.value} KAFFINITY "
                                  f"({arch.affinity_size} bytes)", field=self._f("Affinity"))
        return _II.pack(self.level, self.vector) + affinity

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        level, vector = _II.unpack_from(union)
        return cls(level, vector, _unpack_affinity(union[8:], arch), **common)


@_kind(CmResourceType.CmResourceTypeDma, "Dma")
@dataclass(frozen=True, repr=False)
class Dma(CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """DMA channel and port. With CM_RESOURCE_DMA_V3 the same three ULONGs are read as
    Channel, RequestLine, TransferWidth (+3 reserved bytes) — see the properties."""

    channel: int
    port: int = 0
    reserved1: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uint(self.channel, 32, self._f("Channel"))
        _check_uint(self.port, 32, self._f("Port"))
        _check_uint(self.reserved1, 32, self._f("Reserved1"))

    @property
    def request_line(self) -> int:
        return self.port

    @property
    def transfer_width(self) -> int:
        return self.reserved1 & 0xFF

    def _union_bytes(self, arch: Arch) -> bytes:
        return _III.pack(self.channel, self.port, self.reserved1)

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        return cls(*_III.unpack_from(union), **common)


@_kind(CmResourceType.CmResourceTypeBusNumber, "BusNumber")
@dataclass(frozen=True, repr=False)
class BusNumber(_Range, CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """Bus-number range [start, start+length) in 32-bit space."""

    start: int
    length: int
    reserved: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uint(self.start, 32, self._f("Start"))
        _check_uint(self.length, 32, self._f("Length"))
        _check_uint(self.reserved, 32, self._f("Reserved"))
        _check_no_wrap(self.start, self.length, 32, self._f("Length"))

    def _union_bytes(self, arch: Arch) -> bytes:
        return _III.pack(self.start, self.length, self.reserved)

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        return cls(*_III.unpack_from(union), **common)


class _PrivateData:
    """u.DevicePrivate, the same in both unions: ULONG Data[3] (§1.2, §1.4)."""

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        _set(self, "data", _three_ulongs(self.data, self._f("Data")))  # type: ignore[attr-defined]

    def _union_bytes(self, arch: Arch) -> bytes:
        return _III.pack(*self.data)  # type: ignore[attr-defined]

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        return cls(_III.unpack_from(union), **common)


@_kind(CmResourceType.CmResourceTypeDevicePrivate, "DevicePrivate")
@dataclass(frozen=True, repr=False)
class DevicePrivate(_PrivateData, CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """Three driver-private ULONGs (Data[3])."""

    data: tuple[int, int, int] = (0, 0, 0)


def _three_ulongs(values: Any, cfield: str) -> tuple[int, int, int]:
    try:
        items = tuple(values)
    except TypeError:
        raise FieldRangeError(f"expected 3 ULONGs, got {values!r}", field=cfield) from None
    if len(items) != 3:
        raise FieldRangeError(f"expected 3 ULONGs, got {len(items)}", field=cfield)
    for i, v in enumerate(items):
        _check_uint(v, 32, f"{cfield}[{i}]")
    return items  # type: ignore[return-value]


@_kind(CmResourceType.CmResourceTypeDeviceSpecific, "DeviceSpecificData")
@dataclass(frozen=True, repr=False)
class DeviceSpecific(CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """DeviceSpecificData: DataSize = len(data) bytes of payload follow the descriptor
    (§1.2). Use :meth:`of` with a payload structure such as CM_SERIAL_DEVICE_DATA."""

    data: bytes = b""
    reserved1: int = 0
    reserved2: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise FieldRangeError(f"expected bytes, got {type(self.data).__name__}",
                                  field=self._f("Data"))
        _set(self, "data", bytes(self.data))
        _check_uint(len(self.data), 32, self._f("DataSize"))
        _check_uint(self.reserved1, 32, self._f("Reserved1"))
        _check_uint(self.reserved2, 32, self._f("Reserved2"))

    @classmethod
    def of(cls, payload: Any, **kwargs: Any) -> "DeviceSpecific":
        """Wrap a payload structure (anything with ``pack() -> bytes``)."""
        return cls(payload.pack(), **kwargs)

    @property
    def data_size(self) -> int:
        return len(self.data)

    def _payload(self) -> bytes:
        return self.data

    def _union_bytes(self, arch: Arch) -> bytes:
        return _III.pack(len(self.data), self.reserved1, self.reserved2)

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        size, reserved1, reserved2 = _III.unpack_from(union)
        if size > r.remaining:
            raise TruncatedError(f"DataSize {size} runs past the end of the buffer "
                                 f"({r.remaining} bytes remain)",
                                 field=f"{path}.u.DeviceSpecificData.DataSize",
                                 offset=r.pos - arch.partial_descriptor_size + 4)
        data = r.bytes(size, f"{path}.DeviceSpecificData")
        return cls(data, reserved1, reserved2, **common)


_CONNECTION = struct.Struct("<BBBBII")  # Class, Type, Reserved1, Reserved2, IdLowPart, IdHighPart
#: u.Connection.Class (wdm.h): which resource hub serves the connection id.
CONNECTION_CLASS_NAMES = {1: "GPIO", 2: "SERIAL", 3: "FUNCTION_CONFIG"}


@dataclass(frozen=True, repr=False)
class _ConnectionMember:
    """u.Connection (Win8+), the same 12 bytes in both unions (§1.2, §1.4): Class and Type
    UCHARs, two reserved UCHARs, then the 64-bit connection id a driver opens through the
    resource hub, as IdLowPart and IdHighPart. Not an arbitrated range."""

    connection_class: int
    connection_type: int
    reserved1: int = 0
    reserved2: int = 0
    id_low_part: int = 0
    id_high_part: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        for name, cname, bits in (("connection_class", "Class", 8), ("connection_type", "Type", 8),
                                  ("reserved1", "Reserved1", 8), ("reserved2", "Reserved2", 8),
                                  ("id_low_part", "IdLowPart", 32),
                                  ("id_high_part", "IdHighPart", 32)):
            _check_uint(getattr(self, name), bits, self._f(cname))  # type: ignore[attr-defined]

    @property
    def connection_id(self) -> int:
        return self.id_high_part << 32 | self.id_low_part  # type: ignore[attr-defined]

    def _union_bytes(self, arch: Arch) -> bytes:
        return _CONNECTION.pack(self.connection_class, self.connection_type,  # type: ignore[attr-defined]
                                self.reserved1, self.reserved2,  # type: ignore[attr-defined]
                                self.id_low_part, self.id_high_part)  # type: ignore[attr-defined]

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        return cls(*_CONNECTION.unpack_from(union), **common)


@_kind(CmResourceType.CmResourceTypeConnection, "Connection")
@dataclass(frozen=True, repr=False)
class Connection(_ConnectionMember, CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """CmResourceTypeConnection: a GPIO or serial-bus connection id (see _ConnectionMember)."""


@dataclass(frozen=True, repr=False)
class GenericPartial(CM_PARTIAL_RESOURCE_DESCRIPTOR):
    """A §1.5 type without a dedicated view here (Null, NonArbitrated/ConfigData,
    PcCardConfig, MfCardConfig): its 12 union bytes, kept verbatim."""

    type: CmResourceType  # type: ignore[misc]
    data: bytes = bytes(_CM_UNION_BYTES)

    _union: ClassVar[str] = "Generic"

    def __post_init__(self) -> None:
        super().__post_init__()
        _set(self, "type", _to_enum(CmResourceType, self.type, "Type"))
        if type(self) is GenericPartial:
            _refuse_dedicated(self.type, _CM_PARTIAL_CLASSES)
        _set(self, "data", _generic_union(self.data, _CM_UNION_BYTES))

    def _union_bytes(self, arch: Arch) -> bytes:
        return self.data


# ---------------------------------------------------------------------------------------
# CM_PARTIAL_RESOURCE_LIST / CM_FULL_RESOURCE_DESCRIPTOR / CM_RESOURCE_LIST (§1.3)

_HHI = struct.Struct("<HHI")   # Version, Revision, Count
_iI = struct.Struct("<iI")     # InterfaceType, BusNumber
_I = struct.Struct("<I")


def _tuple_of(values: Any, kind: type, cfield: str) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise FieldRangeError(f"expected a sequence of {kind.__name__}, got {values!r}",
                              field=cfield)
    items = tuple(values)
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise FieldRangeError(f"expected {kind.__name__}, got {item!r}",
                                  field=f"{cfield}[{i}]")
    return items


@dataclass(frozen=True, repr=False)
class _VersionedList(_Structure):
    """Version, Revision, Count, then Count descriptors: the layout CM_PARTIAL_RESOURCE_LIST
    (§1.3) and IO_RESOURCE_LIST (§1.4) share. A subclass names the descriptor base class
    (``_ITEM``) and the C name of the array (``_ITEMS``)."""

    descriptors: tuple = ()
    version: int = field(default=1, kw_only=True)
    revision: int = field(default=1, kw_only=True)

    _ITEM: ClassVar[type["CM_PARTIAL_RESOURCE_DESCRIPTOR | IO_RESOURCE_DESCRIPTOR"]]
    _ITEMS: ClassVar[str]

    def __post_init__(self) -> None:
        _set(self, "descriptors", _tuple_of(self.descriptors, self._ITEM, self._ITEMS))
        _check_uint(self.version, 16, "Version")
        _check_uint(self.revision, 16, "Revision")

    @property
    def count(self) -> int:
        return len(self.descriptors)

    def size(self, arch: Arch = Arch.X64) -> int:
        return _HHI.size + sum(d.size(arch) for d in self.descriptors)

    def pack(self, arch: Arch = Arch.X64) -> bytes:
        arch = Arch.parse(arch)
        return (_HHI.pack(self.version, self.revision, len(self.descriptors))
                + _pack_items(self.descriptors, arch, self._ITEMS))

    @classmethod
    def _read(cls, r: _Reader, arch: Arch, path: str) -> Any:
        version, revision, count = r.unpack(_HHI, f"{path}.Version")
        items = _read_items(r, arch, cls._ITEM._read, count, cls._ITEM._fixed_size(arch),
                            f"{path}.Count", f"{path}.{cls._ITEMS}")
        return cls(items, version=version, revision=revision)


@dataclass(frozen=True, repr=False)
class CM_PARTIAL_RESOURCE_LIST(_VersionedList):
    """Version, Revision and the partial descriptors (Count = len(descriptors))."""

    descriptors: tuple[CM_PARTIAL_RESOURCE_DESCRIPTOR, ...] = ()

    _ITEM: ClassVar[type] = CM_PARTIAL_RESOURCE_DESCRIPTOR
    _ITEMS: ClassVar[str] = "PartialDescriptors"
    _C_NAME: ClassVar[str] = "CM_PARTIAL_RESOURCE_LIST"


@dataclass(frozen=True, repr=False)
class CM_FULL_RESOURCE_DESCRIPTOR(_Structure):
    """One bus's resources: InterfaceType, BusNumber and a CM_PARTIAL_RESOURCE_LIST.
    This is also the whole content of a REG_FULL_RESOURCE_DESCRIPTOR value (§1.10)."""

    interface_type: INTERFACE_TYPE
    bus_number: int
    partial_resource_list: CM_PARTIAL_RESOURCE_LIST = CM_PARTIAL_RESOURCE_LIST()

    _C_NAME: ClassVar[str] = "CM_FULL_RESOURCE_DESCRIPTOR"

    def __post_init__(self) -> None:
        _set(self, "interface_type", _to_enum(INTERFACE_TYPE, self.interface_type,
                                              "InterfaceType"))
        _check_uint(self.bus_number, 32, "BusNumber")
        if not isinstance(self.partial_resource_list, CM_PARTIAL_RESOURCE_LIST):
            raise FieldRangeError("expected a CM_PARTIAL_RESOURCE_LIST, got "
                                  f"{self.partial_resource_list!r}", field="PartialResourceList")

    @classmethod
    def of(cls, interface_type: int, bus_number: int, *partials: CM_PARTIAL_RESOURCE_DESCRIPTOR,
           version: int = 1, revision: int = 1) -> "CM_FULL_RESOURCE_DESCRIPTOR":
        """``CM_FULL_RESOURCE_DESCRIPTOR.of(Isa, 0, Port(0x3f8, 8), Interrupt(4, 4))``."""
        return cls(interface_type, bus_number,
                   CM_PARTIAL_RESOURCE_LIST(partials, version=version, revision=revision))

    @property
    def partials(self) -> tuple[CM_PARTIAL_RESOURCE_DESCRIPTOR, ...]:
        return self.partial_resource_list.descriptors

    def size(self, arch: Arch = Arch.X64) -> int:
        return 8 + self.partial_resource_list.size(arch)

    def pack(self, arch: Arch = Arch.X64) -> bytes:
        try:
            body = self.partial_resource_list.pack(arch)
        except ResourceFormatError as e:
            raise e.within("PartialResourceList") from None
        return _iI.pack(self.interface_type, self.bus_number) + body

    @classmethod
    def _read(cls, r: _Reader, arch: Arch, path: str) -> "CM_FULL_RESOURCE_DESCRIPTOR":
        start = r.pos
        interface_type, bus_number = r.unpack(_iI, f"{path}.InterfaceType")
        with _wrap_errors(path, start):
            interface_type = _to_enum(INTERFACE_TYPE, interface_type, "InterfaceType")
        prl = CM_PARTIAL_RESOURCE_LIST._read(r, arch, f"{path}.PartialResourceList")
        return cls(interface_type, bus_number, prl)


@dataclass(frozen=True, repr=False)
class CM_RESOURCE_LIST(_Structure):
    """A resource list: what IoReportResourceUsage takes and a REG_RESOURCE_LIST holds.

    ``descriptors`` are the full descriptors (C ``List[]``, Count = their number);
    an empty list is the Count=0 "release my claim" list of §2.1.
    """

    descriptors: tuple[CM_FULL_RESOURCE_DESCRIPTOR, ...] = ()

    _C_NAME: ClassVar[str] = "CM_RESOURCE_LIST"

    def __post_init__(self) -> None:
        _set(self, "descriptors", _tuple_of(self.descriptors, CM_FULL_RESOURCE_DESCRIPTOR,
                                            "List"))

    @classmethod
    def single(cls, interface_type: int, bus_number: int,
               *partials: CM_PARTIAL_RESOURCE_DESCRIPTOR) -> "CM_RESOURCE_LIST":
        """A list with one full descriptor: ``CM_RESOURCE_LIST.single(Isa, 0, Port(...))``."""
        return cls((CM_FULL_RESOURCE_DESCRIPTOR.of(interface_type, bus_number, *partials),))

    @property
    def count(self) -> int:
        return len(self.descriptors)

    def partials(self) -> Iterator[tuple[CM_FULL_RESOURCE_DESCRIPTOR, CM_PARTIAL_RESOURCE_DESCRIPTOR]]:
        """Every (full descriptor, partial descriptor) pair, in list order."""
        for full in self.descriptors:
            for partial in full.partials:
                yield full, partial

    def size(self, arch: Arch = Arch.X64) -> int:
        """Exact byte size (PnpDetermineResourceListSize, §1.3)."""
        return 4 + sum(f.size(arch) for f in self.descriptors)

    def check_c_array(self) -> None:
        """Raise :class:`LayoutRuleError` unless the list reads the same through a
        statically declared C array (see the module docstring and §1.3)."""
        for i, full in enumerate(self.descriptors):
            parts = full.partials
            last_full = i == len(self.descriptors) - 1
            if not last_full and len(parts) != 1:
                raise LayoutRuleError(
                    f"full descriptor {i} of {len(self.descriptors)} has {len(parts)} partial "
                    "descriptors; only the last full descriptor may have other than one",
                    field=f"List[{i}].PartialResourceList.Count")
            for j, p in enumerate(parts):
                if isinstance(p, DeviceSpecific) and p.data and (j != len(parts) - 1 or not last_full):
                    raise LayoutRuleError(
                        "DeviceSpecificData with payload must be the last partial of the last "
                        "full descriptor in a C-array layout",
                        field=f"List[{i}].PartialResourceList.PartialDescriptors[{j}]")

    def pack(self, arch: Arch = Arch.X64, *, c_array: bool = False) -> bytes:
        """Serialise; ``c_array=True`` additionally enforces :meth:`check_c_array`."""
        if c_array:
            self.check_c_array()
        return _I.pack(len(self.descriptors)) + _pack_items(self.descriptors, arch,
                                                            "CM_RESOURCE_LIST.List")

    @classmethod
    def unpack(cls, data: bytes, arch: Arch = Arch.X64, *, c_array: bool = False,
               ) -> "CM_RESOURCE_LIST":
        obj = super().unpack(data, arch)
        if c_array:
            obj.check_c_array()
        return obj

    @classmethod
    def _read(cls, r: _Reader, arch: Arch, path: str) -> "CM_RESOURCE_LIST":
        (count,) = r.unpack(_I, f"{path}.Count")
        # 16: the smallest full descriptor, InterfaceType + BusNumber + an empty partial list.
        fulls = _read_items(r, arch, CM_FULL_RESOURCE_DESCRIPTOR._read, count, 16,
                            f"{path}.Count", f"{path}.List")
        return cls(fulls)


def fitting_layouts(data: bytes, kind: type = CM_RESOURCE_LIST) -> tuple[Arch, ...]:
    """Every layout under which ``data`` decodes exactly as ``kind`` (a resource list
    type): none, one, or both (a list with no partial descriptor, a requirements list)."""
    fits = []
    for arch in Arch:
        try:
            kind.unpack(data, arch)
        except ResourceFormatError:
            continue
        fits.append(arch)
    return tuple(fits)


def detect_arch(data: bytes, kind: type = CM_RESOURCE_LIST) -> Arch | None:
    """Return the one layout under which ``data`` decodes exactly as ``kind`` (a CM list
    type), or None if neither or both do — for lists of unknown origin, e.g. a .reg file."""
    fits = fitting_layouts(data, kind)
    return fits[0] if len(fits) == 1 else None


# ---------------------------------------------------------------------------------------
# IO_RESOURCE_DESCRIPTOR (§1.4)

_IO_HEADER = struct.Struct("<BBBBHH")   # Option, Type, ShareDisposition, Spare1, Flags, Spare2
_IO_DESCRIPTOR_SIZE = 32
_IO_UNION_BYTES = 24
_IO_CLASSES: dict[int, type["IO_RESOURCE_DESCRIPTOR"]] = {}


@dataclass(frozen=True, kw_only=True, repr=False)
class IO_RESOURCE_DESCRIPTOR(_Descriptor):
    """Base of the requirement descriptors; construct a subclass (:class:`PortRequirement`…).

    ``option`` is IO_RESOURCE_REQUIRED (0) / PREFERRED / ALTERNATIVE / DEFAULT (§1.8).
    """

    option: int = IO_RESOURCE_REQUIRED
    share: CmResourceShare = CmResourceShare.CmResourceShareDeviceExclusive
    flags: int = 0
    spare1: int = 0
    spare2: int = 0
    union_tail: bytes = b""

    _C_NAME: ClassVar[str] = "IO_RESOURCE_DESCRIPTOR"
    _CLASSES: ClassVar[dict[int, type[_Descriptor]]] = _IO_CLASSES
    _HEADER: ClassVar[struct.Struct] = _IO_HEADER

    def __post_init__(self) -> None:
        if type(self) is IO_RESOURCE_DESCRIPTOR:
            raise TypeError("construct a concrete requirement such as PortRequirement")
        _check_uint(self.option, 8, "Option")
        _set(self, "share", _to_enum(CmResourceShare, self.share, "ShareDisposition"))
        _check_uint(self.flags, 16, "Flags")
        _check_uint(self.spare1, 8, "Spare1")
        _check_uint(self.spare2, 16, "Spare2")
        _set(self, "union_tail", _check_tail(self.union_tail))

    @property
    def is_alternative(self) -> bool:
        return bool(self.option & IO_RESOURCE_ALTERNATIVE)

    @property
    def is_preferred(self) -> bool:
        return bool(self.option & IO_RESOURCE_PREFERRED)

    @staticmethod
    def _fixed_size(arch: Arch) -> int:
        return _IO_DESCRIPTOR_SIZE  # the same on x86 and x64 (§1.4)

    def _pack_header(self) -> bytes:
        return _IO_HEADER.pack(self.option, self.type, self.share, self.spare1, self.flags,
                               self.spare2)

    @classmethod
    def _read_header(cls, r: _Reader, path: str) -> tuple[int, dict[str, int]]:
        option, rtype, share, spare1, flags, spare2 = r.unpack(_IO_HEADER, f"{path}.Option")
        return rtype, dict(option=option, share=share, flags=flags, spare1=spare1,
                           spare2=spare2)

    @classmethod
    def _generic(cls, code, union, common):
        return GenericRequirement(code, union, **common)


_IIQQ = struct.Struct("<IIQQ")


class _WindowMixin:
    """u.Port, u.Memory and u.Memory64 of IO_RESOURCE_DESCRIPTOR, one C layout: ULONG Length,
    ULONG Alignment, PHYSICAL_ADDRESS MinimumAddress, MaximumAddress (§1.4). Length and
    Alignment are ``_LENGTH_BITS`` wide as values (64 for MemoryLarge, stored shifted)."""

    _LENGTH_BITS: ClassVar[int] = 32

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        bits = self._LENGTH_BITS
        _check_uint(self.length, bits, self._f("Length"))                  # type: ignore[attr-defined]
        _check_uint(self.alignment, bits, self._f("Alignment"))            # type: ignore[attr-defined]
        _check_uint(self.minimum_address, 64, self._f("MinimumAddress"))   # type: ignore[attr-defined]
        _check_uint(self.maximum_address, 64, self._f("MaximumAddress"))  # type: ignore[attr-defined]

    def _union_bytes(self, arch: Arch) -> bytes:
        return _IIQQ.pack(self.length, self.alignment, self.minimum_address,  # type: ignore[attr-defined]
                          self.maximum_address)  # type: ignore[attr-defined]

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        return cls(*_IIQQ.unpack_from(union), **common)


@_kind(CmResourceType.CmResourceTypePort, "Port")
@dataclass(frozen=True, repr=False)
class PortRequirement(_WindowMixin, IO_RESOURCE_DESCRIPTOR):
    """``length`` ports anywhere in [minimum_address, maximum_address] (inclusive end of
    window, §1.4 MODEL) with Start a multiple of ``alignment``. Flags default IO."""

    length: int
    alignment: int
    minimum_address: int
    maximum_address: int
    flags: int = field(default=CM_RESOURCE_PORT_IO, kw_only=True)


@_kind(CmResourceType.CmResourceTypeMemory, "Memory")
@dataclass(frozen=True, repr=False)
class MemoryRequirement(_WindowMixin, IO_RESOURCE_DESCRIPTOR):
    """Like :class:`PortRequirement`, for memory."""

    length: int
    alignment: int
    minimum_address: int
    maximum_address: int


@_kind(CmResourceType.CmResourceTypeMemoryLarge, "Memory64")
@dataclass(frozen=True, repr=False)
class MemoryLargeRequirement(_LargeMember, _WindowMixin, IO_RESOURCE_DESCRIPTOR):
    """CmResourceTypeMemoryLarge requirement: real ``length``/``alignment``, stored shifted
    by the LARGE_* flag as in :class:`MemoryLarge` (added when missing; with no bit both
    read as 0 and the stored ULONGs are kept in ``ignored_length``/``ignored_alignment``)."""

    length: int
    alignment: int
    minimum_address: int
    maximum_address: int
    ignored_length: int = field(default=0, kw_only=True)
    ignored_alignment: int = field(default=0, kw_only=True)

    _LENGTH_BITS: ClassVar[int] = 64

    def __post_init__(self) -> None:
        if isinstance(self.flags, int) and isinstance(self.length, int) and isinstance(self.alignment, int):
            _set(self, "flags", _with_large_flag(self.flags, self.length, self.alignment))
        super().__post_init__()  # base fields, then the window at 64 bits
        _check_large(self.flags, {self._f("Length"): (self.length, self.ignored_length),
                                  self._f("Alignment"): (self.alignment, self.ignored_alignment)})

    def _union_bytes(self, arch: Arch) -> bytes:
        shift = _large_shift(self.flags)
        return _IIQQ.pack(_stored_large(self.length, self.ignored_length, shift),
                          _stored_large(self.alignment, self.ignored_alignment, shift),
                          self.minimum_address, self.maximum_address)

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        length, alignment, lo, hi = _IIQQ.unpack_from(union)
        shift = _large_shift(common["flags"])
        length, ignored_length = _decoded_large(length, shift)
        alignment, ignored_alignment = _decoded_large(alignment, shift)
        return cls(length, alignment, lo, hi, ignored_length=ignored_length,
                   ignored_alignment=ignored_alignment, **common)


_INTR_REQ = struct.Struct("<IIHHI")  # MinimumVector, MaximumVector, AffinityPolicy, Group, PriorityPolicy


@_kind(CmResourceType.CmResourceTypeInterrupt, "Interrupt")
@dataclass(frozen=True, repr=False)
class InterruptRequirement(IO_RESOURCE_DESCRIPTOR):
    """A vector in [minimum_vector, maximum_vector]. The Vista+ policy fields default to
    0; ``targeted_processors`` is a KAFFINITY (-1 = all)."""

    minimum_vector: int
    maximum_vector: int
    affinity_policy: int = field(default=0, kw_only=True)
    group: int = field(default=0, kw_only=True)
    priority_policy: int = field(default=0, kw_only=True)
    targeted_processors: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uint(self.minimum_vector, 32, self._f("MinimumVector"))
        _check_uint(self.maximum_vector, 32, self._f("MaximumVector"))
        _check_uint(self.affinity_policy, 16, self._f("AffinityPolicy"))
        _check_uint(self.group, 16, self._f("Group"))
        _check_uint(self.priority_policy, 32, self._f("PriorityPolicy"))
        _set(self, "targeted_processors",
             _check_affinity(self.targeted_processors, self._f("TargetedProcessors")))

    @property
    def message_count(self) -> int | None:
        """How many message-signalled interrupts the descriptor asks for: with
        CM_RESOURCE_INTERRUPT_MESSAGE, MaximumVector is CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN
        and MinimumVector is the token - count + 1 (WDK, "Using Interrupt Resource
        Descriptors"); None for a line-based (or not token-shaped) requirement."""
        if (not self.flags & CM_RESOURCE_INTERRUPT_MESSAGE
                or self.maximum_vector != CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN
                or self.minimum_vector > self.maximum_vector):
            return None
        return self.maximum_vector - self.minimum_vector + 1

    def _union_bytes(self, arch: Arch) -> bytes:
        mask = _pack_affinity(self.targeted_processors, arch)
        if mask is None:  # (this message, unlike Interrupt's, has never named the width)
            raise FieldRangeError(f"{self.targeted_processors:#x} does not fit the {arch.value} "
                                  "KAFFINITY", field=self._f("TargetedProcessors"))
        return _INTR_REQ.pack(self.minimum_vector, self.maximum_vector, self.affinity_policy,
                              self.group, self.priority_policy) + mask

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        lo, hi, affinity_policy, group, priority = _INTR_REQ.unpack_from(union)
        return cls(lo, hi, affinity_policy=affinity_policy, group=group,
                   priority_policy=priority,
                   targeted_processors=_unpack_affinity(union[16:], arch), **common)


@_kind(CmResourceType.CmResourceTypeDma, "Dma")
@dataclass(frozen=True, repr=False)
class DmaRequirement(IO_RESOURCE_DESCRIPTOR):
    """A DMA channel in [minimum_channel, maximum_channel] (the NT4 DDK's "MinumumChannel")."""

    minimum_channel: int
    maximum_channel: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flags & CM_RESOURCE_DMA_V3:
            raise UnknownTypeError("DmaV3 requirement layout (Win8+) is not modelled",
                                   field="Flags")
        _check_uint(self.minimum_channel, 32, self._f("MinimumChannel"))
        _check_uint(self.maximum_channel, 32, self._f("MaximumChannel"))

    def _union_bytes(self, arch: Arch) -> bytes:
        return _II.pack(self.minimum_channel, self.maximum_channel)

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        return cls(*_II.unpack_from(union), **common)


_IIII = struct.Struct("<IIII")


@_kind(CmResourceType.CmResourceTypeBusNumber, "BusNumber")
@dataclass(frozen=True, repr=False)
class BusNumberRequirement(IO_RESOURCE_DESCRIPTOR):
    """``length`` consecutive bus numbers within [minimum_bus_number, maximum_bus_number]."""

    length: int
    minimum_bus_number: int
    maximum_bus_number: int
    reserved: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uint(self.length, 32, self._f("Length"))
        _check_uint(self.minimum_bus_number, 32, self._f("MinBusNumber"))
        _check_uint(self.maximum_bus_number, 32, self._f("MaxBusNumber"))
        _check_uint(self.reserved, 32, self._f("Reserved"))

    def _union_bytes(self, arch: Arch) -> bytes:
        return _IIII.pack(self.length, self.minimum_bus_number, self.maximum_bus_number,
                          self.reserved)

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        return cls(*_IIII.unpack_from(union), **common)


@_kind(CmResourceType.CmResourceTypeConfigData, "ConfigData")
@dataclass(frozen=True, repr=False)
class ConfigDataRequirement(IO_RESOURCE_DESCRIPTOR):
    """CmResourceTypeConfigData: gives its IO_RESOURCE_LIST an LCPRI_* ``priority`` (§6.2)."""

    priority: int
    reserved1: int = 0
    reserved2: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uint(self.priority, 32, self._f("Priority"))
        _check_uint(self.reserved1, 32, self._f("Reserved1"))
        _check_uint(self.reserved2, 32, self._f("Reserved2"))

    def _union_bytes(self, arch: Arch) -> bytes:
        return _III.pack(self.priority, self.reserved1, self.reserved2)

    @classmethod
    def _from_union(cls, union, arch, common, r, path):
        return cls(*_III.unpack_from(union), **common)


@_kind(CmResourceType.CmResourceTypeDevicePrivate, "DevicePrivate")
@dataclass(frozen=True, repr=False)
class DevicePrivateRequirement(_PrivateData, IO_RESOURCE_DESCRIPTOR):
    """Three driver-private ULONGs."""

    data: tuple[int, int, int] = (0, 0, 0)


@_kind(CmResourceType.CmResourceTypeConnection, "Connection")
@dataclass(frozen=True, repr=False)
class ConnectionRequirement(_ConnectionMember, IO_RESOURCE_DESCRIPTOR):
    """CmResourceTypeConnection in a requirement list: the same fields as :class:`Connection`."""


@dataclass(frozen=True, repr=False)
class GenericRequirement(IO_RESOURCE_DESCRIPTOR):
    """A §1.5 type without a dedicated view (Null, PcCardConfig, MfCardConfig): its 24
    union bytes verbatim."""

    type: CmResourceType  # type: ignore[misc]
    data: bytes = bytes(_IO_UNION_BYTES)

    _union: ClassVar[str] = "Generic"

    def __post_init__(self) -> None:
        super().__post_init__()
        code = _to_enum(CmResourceType, self.type, "Type")
        _set(self, "type", code)
        if code == CmResourceType.CmResourceTypeDeviceSpecific:
            raise UnknownTypeError("CmResourceTypeDeviceSpecific is not allowed in IO "
                                   "resource lists (§1.5)", field="Type")
        _refuse_dedicated(code, _IO_CLASSES)
        _set(self, "data", _generic_union(self.data, _IO_UNION_BYTES))

    def _union_bytes(self, arch: Arch) -> bytes:
        return self.data


# ---------------------------------------------------------------------------------------
# IO_RESOURCE_LIST / IO_RESOURCE_REQUIREMENTS_LIST (§1.4)


@dataclass(frozen=True, repr=False)
class IO_RESOURCE_LIST(_VersionedList):
    """One alternative configuration: Version (1), Revision (1), descriptors."""

    descriptors: tuple[IO_RESOURCE_DESCRIPTOR, ...] = ()

    _ITEM: ClassVar[type] = IO_RESOURCE_DESCRIPTOR
    _ITEMS: ClassVar[str] = "Descriptors"
    _C_NAME: ClassVar[str] = "IO_RESOURCE_LIST"


_REQ_HEADER = struct.Struct("<IiII3II")  # ListSize, InterfaceType, BusNumber, SlotNumber, Reserved[3], AlternativeLists


@dataclass(frozen=True, repr=False)
class IO_RESOURCE_REQUIREMENTS_LIST(_Structure):
    """What a device can use: alternative IO_RESOURCE_LISTs for one bus slot.
    ListSize and AlternativeLists are computed (§1.4: 32 + Σ(8 + 32×Count), plus
    ``slack``).

    ``slack`` is what ListSize covers after the last list, kept verbatim: Windows 10's PCI
    driver writes BasicConfigVector values whose second alternative list is one
    descriptor shorter than the first, with ListSize (and the value) still counting that
    descriptor's 32 bytes, zeroed (tests/data/realworld-resources/README.md)."""

    interface_type: INTERFACE_TYPE
    bus_number: int
    slot_number: int = 0
    lists: tuple[IO_RESOURCE_LIST, ...] = ()
    reserved: tuple[int, int, int] = field(default=(0, 0, 0), kw_only=True)
    slack: bytes = field(default=b"", kw_only=True)

    _C_NAME: ClassVar[str] = "IO_RESOURCE_REQUIREMENTS_LIST"

    def __post_init__(self) -> None:
        _set(self, "interface_type", _to_enum(INTERFACE_TYPE, self.interface_type,
                                              "InterfaceType"))
        _check_uint(self.bus_number, 32, "BusNumber")
        _check_uint(self.slot_number, 32, "SlotNumber")
        _set(self, "lists", _tuple_of(self.lists, IO_RESOURCE_LIST, "List"))
        _set(self, "reserved", _three_ulongs(self.reserved, "Reserved"))
        if not isinstance(self.slack, (bytes, bytearray, memoryview)):
            raise FieldRangeError(f"expected bytes, got {type(self.slack).__name__}", field="slack")
        _set(self, "slack", bytes(self.slack))

    @property
    def alternative_lists(self) -> int:
        return len(self.lists)

    def size(self, arch: Arch = Arch.X64) -> int:
        return _REQ_HEADER.size + sum(lst.size(arch) for lst in self.lists) + len(self.slack)

    @property
    def list_size(self) -> int:
        return self.size()

    def pack(self, arch: Arch = Arch.X64) -> bytes:
        header = _REQ_HEADER.pack(self.size(arch), self.interface_type, self.bus_number,
                                  self.slot_number, *self.reserved, len(self.lists))
        return header + _pack_items(self.lists, arch, "IO_RESOURCE_REQUIREMENTS_LIST.List") + self.slack

    @classmethod
    def _read(cls, r: _Reader, arch: Arch, path: str) -> "IO_RESOURCE_REQUIREMENTS_LIST":
        data, offset = r.data, r.pos
        (list_size, interface_type, bus_number, slot, res0, res1, res2,
         alternatives) = r.unpack(_REQ_HEADER, f"{path}.ListSize")
        if list_size < _REQ_HEADER.size:
            raise SizeMismatchError(f"ListSize {list_size} is smaller than the "
                                    f"{_REQ_HEADER.size}-byte header", field=f"{path}.ListSize",
                                    offset=offset)
        if list_size > len(data) - offset:
            raise TruncatedError(f"ListSize {list_size} runs past the end of the buffer "
                                 f"({len(data) - offset} bytes)", field=f"{path}.ListSize",
                                 offset=offset)
        body = _Reader(data[:offset + list_size], r.pos)
        # 8: the smallest IO_RESOURCE_LIST, Version + Revision + Count with no descriptor.
        lists = _read_items(body, arch, IO_RESOURCE_LIST._read, alternatives, 8,
                            f"{path}.AlternativeLists", f"{path}.List")
        end = offset + list_size
        with _wrap_errors(path, offset):
            obj = cls(interface_type, bus_number, slot, lists, reserved=(res0, res1, res2),
                      slack=data[body.pos:end])
        r.pos = end
        return obj


# ---------------------------------------------------------------------------------------
# DeviceSpecificData payloads (§1.14, §5.1) and PCI_SLOT_NUMBER (§1.11)


def _unpack_exact(fmt: struct.Struct, data: bytes, name: str) -> tuple[Any, ...]:
    """The fields of a fixed-size payload that must fill ``data`` exactly."""
    data = bytes(data)
    if len(data) < fmt.size:
        raise TruncatedError(f"needs {fmt.size} bytes, got {len(data)}", field=name, offset=0)
    _finish(data, fmt.size, name)
    return fmt.unpack(data)


@dataclass(frozen=True, repr=False)
class CM_SERIAL_DEVICE_DATA(_ReprMixin):
    """Serial DeviceSpecificData: Version, Revision, BaudClock (8 bytes). The PC UART
    clock 1843200 Hz is what the loader reports (§5.1)."""

    version: int = 0
    revision: int = 0
    baud_clock: int = 1843200

    _FMT: ClassVar[struct.Struct] = struct.Struct("<HHI")

    def __post_init__(self) -> None:
        _check_uint(self.version, 16, "Version")
        _check_uint(self.revision, 16, "Revision")
        _check_uint(self.baud_clock, 32, "BaudClock")

    def pack(self) -> bytes:
        return self._FMT.pack(self.version, self.revision, self.baud_clock)

    @classmethod
    def unpack(cls, data: bytes) -> "CM_SERIAL_DEVICE_DATA":
        return cls(*_unpack_exact(cls._FMT, data, "CM_SERIAL_DEVICE_DATA"))


_FLOPPY_TIMING = ("step_rate_head_unload_time", "head_load_time", "motor_off_time",
                  "sector_length_code", "sector_per_track", "read_write_gap_length",
                  "data_transfer_length", "format_gap_length", "format_fill_character",
                  "head_settle_time", "motor_settle_time", "maximum_track_value",
                  "data_transfer_rate")


@dataclass(frozen=True, repr=False)
class CM_FLOPPY_DEVICE_DATA(_ReprMixin):
    """Floppy DeviceSpecificData, in the form its Version says (the DDK's "new data fields
    for version >= 2.0"): Version 2 and later carry the 13 UCHAR drive timings after
    MountDensity — the full form ReactOS freeldr and NT's loader write, sizeof 36 (33
    bytes used, ``padding`` the 0..3 bytes after them as found); versions 0 and 1 end
    before StepRateHeadUnloadTime (the 20-byte short form). Both occur in the Description
    trees of real machines; a payload whose size disagrees with its Version is refused."""

    version: int = 2
    revision: int = 0
    size: bytes = bytes(8)
    max_density: int = 0
    mount_density: int = 0
    step_rate_head_unload_time: int | None = None
    head_load_time: int | None = None
    motor_off_time: int | None = None
    sector_length_code: int | None = None
    sector_per_track: int | None = None
    read_write_gap_length: int | None = None
    data_transfer_length: int | None = None
    format_gap_length: int | None = None
    format_fill_character: int | None = None
    head_settle_time: int | None = None
    motor_settle_time: int | None = None
    maximum_track_value: int | None = None
    data_transfer_rate: int | None = None
    padding: bytes = field(default=bytes(3), kw_only=True)

    _HEAD: ClassVar[struct.Struct] = struct.Struct("<HH8sII")  # 20 bytes
    _LONG_USED: ClassVar[int] = 20 + 13
    _LONG_SIZEOF: ClassVar[int] = 36
    #: The first Version with the drive timings.
    TIMINGS_VERSION: ClassVar[int] = 2

    def __post_init__(self) -> None:
        _check_uint(self.version, 16, "Version")
        _check_uint(self.revision, 16, "Revision")
        if not isinstance(self.size, (bytes, bytearray)) or len(self.size) != 8:
            raise FieldRangeError("expected 8 bytes", field="Size")
        _set(self, "size", bytes(self.size))
        _check_uint(self.max_density, 32, "MaxDensity")
        _check_uint(self.mount_density, 32, "MountDensity")
        timings = [getattr(self, n) for n in _FLOPPY_TIMING]
        if self.version >= self.TIMINGS_VERSION:
            if any(t is None for t in timings):
                raise FieldRangeError(f"Version {self.version} is the full form: set all 13 "
                                      "drive timings", field="StepRateHeadUnloadTime")
            for name, value in zip(_FLOPPY_TIMING, timings):
                _check_uint(value, 8, name)
        elif any(t is not None for t in timings):
            raise FieldRangeError(f"Version {self.version} is the short form, which ends before "
                                  f"the drive timings (they need Version >= "
                                  f"{self.TIMINGS_VERSION})", field="StepRateHeadUnloadTime")
        room = self._LONG_SIZEOF - self._LONG_USED
        if not isinstance(self.padding, (bytes, bytearray)) or len(self.padding) > room:
            raise FieldRangeError(f"expected 0..{room} bytes after DataTransferRate",
                                  field="padding")
        _set(self, "padding", bytes(self.padding))

    @classmethod
    def from_parameter_table(cls, table: bytes, max_density: int, maximum_track_value: int,
                             **kwargs: Any) -> "CM_FLOPPY_DEVICE_DATA":
        """The full form as the loader builds it: the first 11 bytes of the BIOS diskette
        parameter table (INT 1Eh) are StepRateHeadUnloadTime..MotorSettleTime."""
        if len(table) < 11:
            raise TruncatedError(f"a diskette parameter table has 11 bytes, got {len(table)}",
                                 field="StepRateHeadUnloadTime", offset=0)
        timings = dict(zip(_FLOPPY_TIMING, table[:11]))
        return cls(max_density=max_density, maximum_track_value=maximum_track_value,
                   data_transfer_rate=0, **timings, **kwargs)

    @property
    def has_timings(self) -> bool:
        return self.step_rate_head_unload_time is not None

    def pack(self) -> bytes:
        head = self._HEAD.pack(self.version, self.revision, self.size, self.max_density,
                               self.mount_density)
        if not self.has_timings:
            return head
        return head + bytes(getattr(self, n) for n in _FLOPPY_TIMING) + self.padding

    @classmethod
    def unpack(cls, data: bytes) -> "CM_FLOPPY_DEVICE_DATA":
        data = bytes(data)
        if len(data) < cls._HEAD.size:
            raise TruncatedError(f"needs at least {cls._HEAD.size} bytes, got {len(data)}",
                                 field="CM_FLOPPY_DEVICE_DATA", offset=0)
        head = cls._HEAD.unpack_from(data)
        if head[0] < cls.TIMINGS_VERSION:
            _finish(data, cls._HEAD.size, f"CM_FLOPPY_DEVICE_DATA (Version {head[0]}, short form)")
            return cls(*head)
        if not cls._LONG_USED <= len(data) <= cls._LONG_SIZEOF:
            raise SizeMismatchError(f"{len(data)} bytes: Version {head[0]} is the full form, "
                                    f"{cls._LONG_USED}..{cls._LONG_SIZEOF} bytes",
                                    field="CM_FLOPPY_DEVICE_DATA", offset=0)
        timings = dict(zip(_FLOPPY_TIMING, data[cls._HEAD.size:cls._LONG_USED]))
        return cls(*head, **timings, padding=data[cls._LONG_USED:])


@dataclass(frozen=True, repr=False)
class PCI_REGISTRY_INFO(_ReprMixin):
    """DeviceSpecific payload of the "PCI" adapter node (§1.14): four UCHARs."""

    major_revision: int = 2
    minor_revision: int = 1
    no_buses: int = 1
    hardware_mechanism: int = 1

    _FMT: ClassVar[struct.Struct] = struct.Struct("<BBBB")

    def __post_init__(self) -> None:
        for name, cname in (("major_revision", "MajorRevision"),
                            ("minor_revision", "MinorRevision"),
                            ("no_buses", "NoBuses"), ("hardware_mechanism", "HardwareMechanism")):
            _check_uint(getattr(self, name), 8, cname)

    @property
    def config_mechanism(self) -> int:
        """Configuration mechanism (1 or 2): low nibble of HardwareMechanism."""
        return self.hardware_mechanism & 0x0F

    def pack(self) -> bytes:
        return self._FMT.pack(self.major_revision, self.minor_revision, self.no_buses,
                              self.hardware_mechanism)

    @classmethod
    def unpack(cls, data: bytes) -> "PCI_REGISTRY_INFO":
        return cls(*_unpack_exact(cls._FMT, data, "PCI_REGISTRY_INFO"))


@dataclass(frozen=True, repr=False)
class PCI_SLOT_NUMBER(_ReprMixin):
    """PCI_SLOT_NUMBER (§1.11): DeviceNumber bits 0–4, FunctionNumber bits 5–7, the rest
    Reserved and required to be zero. ``as_ulong`` is the value HAL routines take."""

    device_number: int
    function_number: int = 0

    def __post_init__(self) -> None:
        if _check_uint(self.device_number, 8, "DeviceNumber") > 31:
            raise FieldRangeError(f"{self.device_number} is not a PCI device number (0..31)",
                                  field="DeviceNumber")
        if _check_uint(self.function_number, 8, "FunctionNumber") > 7:
            raise FieldRangeError(f"{self.function_number} is not a PCI function number (0..7)",
                                  field="FunctionNumber")

    @property
    def as_ulong(self) -> int:
        return self.device_number | (self.function_number << 5)

    @classmethod
    def from_ulong(cls, value: int) -> "PCI_SLOT_NUMBER":
        _check_uint(value, 32, "PCI_SLOT_NUMBER")
        if value >> 8:
            raise FieldRangeError(f"{value:#x} has Reserved bits 8..31 set",
                                  field="PCI_SLOT_NUMBER.Reserved")
        return cls(value & 0x1F, (value >> 5) & 0x7)


# Every descriptor class, for callers that dispatch or enumerate (tests, dumps).
CM_PARTIAL_DESCRIPTOR_CLASSES: tuple[type[CM_PARTIAL_RESOURCE_DESCRIPTOR], ...] = (
    *_CM_PARTIAL_CLASSES.values(), GenericPartial)
IO_DESCRIPTOR_CLASSES: tuple[type[IO_RESOURCE_DESCRIPTOR], ...] = (
    *_IO_CLASSES.values(), GenericRequirement)


def _tail_note(d: CM_PARTIAL_RESOURCE_DESCRIPTOR | IO_RESOURCE_DESCRIPTOR) -> str:
    return f" tail {d.union_tail.hex(' ')}" if d.union_tail else ""


def describe_range(d: CM_PARTIAL_RESOURCE_DESCRIPTOR | IO_RESOURCE_DESCRIPTOR) -> str:
    """One-line summary of what a descriptor covers, as a resource viewer shows it; a
    non-zero union tail (bytes after the member) and the non-zero fields the summary
    leaves out (:func:`_unsaid_fields`) are shown after it."""
    return _describe_member(d) + ("" if isinstance(d, (DevicePrivate, DevicePrivateRequirement))
                                  else _tail_note(d)) + _unsaid_fields(d)


def _unsaid_fields(d: CM_PARTIAL_RESOURCE_DESCRIPTOR | IO_RESOURCE_DESCRIPTOR) -> str:
    """A requirement's Spare1/Spare2 and an interrupt requirement's Vista+ policy fields,
    when not zero: XP's ISA PnP bus driver sets Spare1 0x80 and numbers its descriptors in
    Spare2, and leaves pool bytes where later Windows keeps the policy (a dump that hid
    them would show two different values alike)."""
    notes = ""
    if isinstance(d, InterruptRequirement) and (d.affinity_policy or d.group or d.priority_policy
                                                or d.targeted_processors):
        targets = "all" if d.targeted_processors == -1 else f"{d.targeted_processors:#x}"
        notes += (f" policy {d.affinity_policy:#x} group {d.group:#x} priority "
                  f"{d.priority_policy:#x} targets {targets}")
    if isinstance(d, IO_RESOURCE_DESCRIPTOR) and (d.spare1 or d.spare2):
        notes += f" spare {d.spare1:#x} {d.spare2:#x}"
    return notes


def _describe_member(d: CM_PARTIAL_RESOURCE_DESCRIPTOR | IO_RESOURCE_DESCRIPTOR) -> str:
    if isinstance(d, MemoryLarge) and not d.flags & CM_RESOURCE_MEMORY_LARGE:
        return f"{d.start:#x} (no LARGE_* flag: length 0, stored {d.ignored_length:#x} ignored)"
    if isinstance(d, (Port, Memory, MemoryLarge, BusNumber)):
        if d.length == 0:
            return f"{d.start:#x} (empty)"
        return f"{d.start:#x}-{d.end - 1:#x} (length {d.length:#x})"
    if isinstance(d, Interrupt):
        aff = "all" if d.affinity == -1 else f"{d.affinity:#x}"
        return f"level {d.level} vector {d.vector} affinity {aff}"
    if isinstance(d, Dma):
        return f"channel {d.channel} port {d.port}"
    if isinstance(d, DeviceSpecific):
        shown = d.data[:12].hex(" ") + (" …" if len(d.data) > 12 else "")
        return f"{len(d.data)} bytes: {shown}" if d.data else "0 bytes"
    if isinstance(d, (DevicePrivate, DevicePrivateRequirement)):
        return "data " + " ".join(f"{w:#x}" for w in d.data) + _tail_note(d)
    if isinstance(d, (PortRequirement, MemoryRequirement, MemoryLargeRequirement)):
        return (f"length {d.length:#x} align {d.alignment:#x} in "
                f"[{d.minimum_address:#x}, {d.maximum_address:#x}]")
    if isinstance(d, InterruptRequirement):
        if d.message_count is not None:
            return f"message token, {d.message_count} message(s)"
        return f"vector {d.minimum_vector}..{d.maximum_vector}"
    if isinstance(d, DmaRequirement):
        return f"channel {d.minimum_channel}..{d.maximum_channel}"
    if isinstance(d, BusNumberRequirement):
        return f"length {d.length} in [{d.minimum_bus_number}, {d.maximum_bus_number}]"
    if isinstance(d, (Connection, ConnectionRequirement)):
        name = CONNECTION_CLASS_NAMES.get(d.connection_class)
        kind = f"{d.connection_class} ({name})" if name else str(d.connection_class)
        reserved = (f" reserved {d.reserved1:#x} {d.reserved2:#x}"
                    if d.reserved1 or d.reserved2 else "")
        return f"class {kind} type {d.connection_type} id {d.connection_id:#x}{reserved}"
    if isinstance(d, ConfigDataRequirement):
        reserved = (f" reserved {d.reserved1:#x} {d.reserved2:#x}"
                    if d.reserved1 or d.reserved2 else "")
        return f"priority {d.priority:#x}{reserved}"
    return f"data {d.data.hex(' ')}"  # generic kinds


#: The DDK name of each Type code in a CM list (0x80 is CmResourceTypeNonArbitrated there).
CM_TYPE_NAMES: dict[int, str] = {t.value: t.name for t in CmResourceType}
#: ... and in an IO (requirement) list, where 0x80 is CmResourceTypeConfigData (§1.5).
IO_TYPE_NAMES: dict[int, str] = {**CM_TYPE_NAMES, int(CmResourceType.CmResourceTypeConfigData):
                                 "CmResourceTypeConfigData"}


def type_name(code: int, *, requirement: bool = False) -> str:
    """Short type name for dumps, the DDK's CmResourceType name without its prefix:
    ``Port``, ``Interrupt``…; code 0x80 is ``NonArbitrated`` in a CM list and
    ``ConfigData`` in a requirement list (``requirement=True``)."""
    names = IO_TYPE_NAMES if requirement else CM_TYPE_NAMES
    name = names.get(code)
    return name.removeprefix("CmResourceType") if name else f"Type{code}"


def descriptor_type_name(d: "CM_PARTIAL_RESOURCE_DESCRIPTOR | IO_RESOURCE_DESCRIPTOR") -> str:
    """:func:`type_name` of a descriptor, in the naming of the list kind it belongs to."""
    return type_name(int(d.type), requirement=isinstance(d, IO_RESOURCE_DESCRIPTOR))


def private_copy_of(d: Any, previous: Any, arch: Arch = Arch.X64) -> bool:
    """True when DevicePrivate ``d`` is a copy of the union of the descriptor before it,
    the rule XP's PCI bus driver follows in the requirement lists it writes (the window
    descriptor is repeated with Type 0x81, so the union tail holds its MaximumAddress)."""
    if not isinstance(d, (DevicePrivate, DevicePrivateRequirement)) or type(previous) is type(d):
        return False
    if not isinstance(previous, (CM_PARTIAL_RESOURCE_DESCRIPTOR, IO_RESOURCE_DESCRIPTOR)):
        return False
    try:
        return bool(d.union_tail) and d.union(arch) == previous.union(arch)
    except ResourceFormatError:
        return False


def share_name(share: int) -> str:
    try:
        return CmResourceShare(share).name.removeprefix("CmResourceShare")
    except ValueError:
        return f"Share{share}"


__all__ = [
    "Arch", "CmResourceType", "CmResourceShare", "INTERFACE_TYPE", "BUS_DATA_TYPE",
    *CmResourceType.__members__, *CmResourceShare.__members__, *INTERFACE_TYPE.__members__,
    *BUS_DATA_TYPE.__members__,
    *[n for n in list(globals()) if n.startswith(("CM_RESOURCE_", "IO_RESOURCE_", "LCPRI_"))
      and isinstance(globals()[n], int)],
    "CM_PARTIAL_RESOURCE_DESCRIPTOR", "Port", "Interrupt", "Memory", "MemoryLarge", "Dma",
    "DeviceSpecific", "BusNumber", "DevicePrivate", "Connection", "GenericPartial",
    "CM_PARTIAL_RESOURCE_LIST", "CM_FULL_RESOURCE_DESCRIPTOR", "CM_RESOURCE_LIST",
    "IO_RESOURCE_DESCRIPTOR", "PortRequirement", "MemoryRequirement", "MemoryLargeRequirement",
    "InterruptRequirement", "DmaRequirement", "BusNumberRequirement", "ConfigDataRequirement",
    "DevicePrivateRequirement", "ConnectionRequirement", "GenericRequirement",
    "CONNECTION_CLASS_NAMES", "IO_RESOURCE_LIST",
    "IO_RESOURCE_REQUIREMENTS_LIST", "CM_SERIAL_DEVICE_DATA", "CM_FLOPPY_DEVICE_DATA",
    "PCI_REGISTRY_INFO", "PCI_SLOT_NUMBER", "CM_PARTIAL_DESCRIPTOR_CLASSES",
    "IO_DESCRIPTOR_CLASSES", "detect_arch", "fitting_layouts", "format_flags", "format_option", "describe_range",
    "type_name", "descriptor_type_name", "private_copy_of", "CM_TYPE_NAMES", "IO_TYPE_NAMES",
    "share_name",
]
