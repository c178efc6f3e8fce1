"""The I/O error log: what the Win32 event viewer would show (nt-semantics.md §7, §1.14).

Each :class:`ErrorLogEntry` is one IO_ERROR_LOG_PACKET with its meaning kept in Python
form: the IO_ERR code, the final status, DumpData (for a conflict: the conflicting range,
IRQ or channel, §7), the insertion strings (%1 the object the entry was allocated against,
%2 the other driver, %3 the other device), and the caller's and the holder's driver and
device.  :meth:`ErrorLogEntry.pack` gives the packet's exact bytes.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field
from typing import Iterator

from .arbiter import Claim, Conflict, ResourceKind, interrupt_line
from .status import NTSTATUS, IoErrorCode, severity

#: IO_ERROR_LOG_PACKET header up to DumpData (§1.14) and the size limit of one entry.
_PACKET_HEADER = struct.Struct("<BBHHHH2xIIIIIQ")
ERROR_LOG_LIMIT_SIZE = 240

# Which code a conflict of each kind logs: *_CONFLICT_DETECTED for two drivers' explicit
# claims (IoReportResourceUsage), *_RESOURCE_CONFLICT when allocation failed (§7).
_DETECTED = {
    ResourceKind.PORT: IoErrorCode.IO_ERR_PORT_CONFLICT_DETECTED,
    ResourceKind.MEMORY: IoErrorCode.IO_ERR_MEMORY_CONFLICT_DETECTED,
    ResourceKind.INTERRUPT: IoErrorCode.IO_ERR_IRQ_CONFLICT_DETECTED,
    ResourceKind.DMA: IoErrorCode.IO_ERR_DMA_CONFLICT_DETECTED,
    ResourceKind.BUS_NUMBER: IoErrorCode.IO_ERR_MEMORY_CONFLICT_DETECTED,
}
_ALLOCATION = {
    ResourceKind.PORT: IoErrorCode.IO_ERR_PORT_RESOURCE_CONFLICT,
    ResourceKind.MEMORY: IoErrorCode.IO_ERR_MEMORY_RESOURCE_CONFLICT,
    ResourceKind.INTERRUPT: IoErrorCode.IO_ERR_INTERRUPT_RESOURCE_CONFLICT,
    ResourceKind.DMA: IoErrorCode.IO_ERR_DMA_RESOURCE_CONFLICT,
    ResourceKind.BUS_NUMBER: IoErrorCode.IO_ERR_MEMORY_RESOURCE_CONFLICT,
}


def dump_data(claim: Claim) -> tuple[int, ...]:
    """DumpData of a conflict entry (§7): Start low/high and Length for a range; Level,
    Vector and Affinity for an IRQ; Channel and Port for DMA."""
    d = claim.descriptor
    if claim.kind is ResourceKind.INTERRUPT:
        return (d.level, d.vector, d.affinity & 0xFFFFFFFF)
    if claim.kind is ResourceKind.DMA:
        return (d.channel, d.port)
    return (d.start & 0xFFFFFFFF, d.start >> 32 & 0xFFFFFFFF, d.length & 0xFFFFFFFF)


def _what(claim: Claim) -> str:
    d = claim.descriptor
    if claim.kind is ResourceKind.INTERRUPT:
        return f"IRQ {interrupt_line(d)}"
    if claim.kind is ResourceKind.DMA:
        return f"DMA channel {d.channel}"
    noun = {ResourceKind.PORT: "ports", ResourceKind.MEMORY: "memory",
            ResourceKind.BUS_NUMBER: "bus numbers"}[claim.kind]
    if claim.empty:
        return f"{noun} {d.start:#x} (empty)"
    return f"{noun} {claim.start:#x}-{claim.end:#x}"


def setting(claim: Claim) -> str:
    """A resource as a *_RESOURCE_CONFLICT message's '%2' names it: the device's setting
    (an IRQ or DMA channel number, a port or memory range)."""
    d = claim.descriptor
    if claim.kind is ResourceKind.INTERRUPT:
        return str(interrupt_line(d))
    if claim.kind is ResourceKind.DMA:
        return str(d.channel)
    return f"{claim.start:#x}-{claim.end:#x}"


@dataclass(frozen=True)
class ErrorLogEntry:
    """One entry of the error log: a conflict the I/O manager logged, or a driver's IoWriteErrorLogEntry."""

    sequence: int
    error_code: IoErrorCode
    final_status: NTSTATUS
    driver: str                      # who logged it (%1 is its object's name)
    device: str | None
    message: str
    dump_data: tuple[int, ...] = ()
    strings: tuple[str, ...] = ()
    conflict: Conflict | None = None
    unique_error_value: int = 0

    @property
    def kind(self) -> ResourceKind | None:
        return self.conflict.requested.kind if self.conflict else None

    @property
    def severity(self) -> str:
        """The severity the code carries (``error``, ``warning``, ``informational``, ``success``)."""
        return severity(self.error_code)

    def pack(self) -> bytes:
        """The IO_ERROR_LOG_PACKET bytes: header, DumpData ULONGs, then the insertion
        strings as NUL-terminated UTF-16 at StringOffset, within the 240-byte limit: what
        does not fit is cut at a whole ULONG / character and every string kept still ends
        in its NUL, NumberOfStrings counting only those (a reader walks to the NUL)."""
        room = ERROR_LOG_LIMIT_SIZE - _PACKET_HEADER.size
        dump = struct.pack(f"<{len(self.dump_data)}I", *self.dump_data)[:room // 4 * 4]
        offset = _PACKET_HEADER.size + len(dump)
        room -= len(dump)
        strings = []
        for text in self.strings:
            if room < 2:
                break
            encoded = text.encode("utf-16-le")[:(room - 2) // 2 * 2] + b"\0\0"
            strings.append(encoded)
            room -= len(encoded)
        header = _PACKET_HEADER.pack(0, 0, len(dump), len(strings), offset, 0,
                                     int(self.error_code), self.unique_error_value,
                                     int(self.final_status) & 0xFFFFFFFF, self.sequence, 0, 0)
        return header + dump + b"".join(strings)

    def to_dict(self) -> dict:
        out = {"sequence": self.sequence, "code": self.error_code.name,
               "code_value": f"{int(self.error_code):#010x}", "severity": self.severity,
               "status": self.final_status.name,
               "driver": self.driver, "device": self.device, "message": self.message,
               "dump_data": [f"{v:#x}" for v in self.dump_data], "strings": list(self.strings)}
        if self.conflict is not None:
            held = self.conflict.holder
            out["conflict"] = {"kind": held.kind.value, "requested": _what(self.conflict.requested),
                               "held": _what(held), "holder_driver": held.owner.driver,
                               "holder_device": held.owner.device}
        return out

    def __str__(self) -> str:
        return f"#{self.sequence} {self.error_code.name}: {self.message}"


@dataclass
class ErrorLog:
    """The entries in the order they were logged; thread-safe."""

    entries: list[ErrorLogEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[ErrorLogEntry]:
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def log(self, error_code: IoErrorCode, message: str, *, driver: str, device: str | None = None,
            final_status: NTSTATUS = NTSTATUS.STATUS_SUCCESS, dump: tuple[int, ...] = (),
            strings: tuple[str, ...] = (), conflict: Conflict | None = None) -> ErrorLogEntry:
        with self._lock:
            entry = ErrorLogEntry(len(self.entries) + 1, error_code, final_status, driver, device,
                                  message, dump, strings, conflict)
            self.entries.append(entry)
            return entry

    def log_conflict(self, conflict: Conflict, *, allocation: bool = False) -> ErrorLogEntry:
        """One entry for a conflicting pair, the holder's range in DumpData and the
        caller's object as %1 (§7).  *_CONFLICT_DETECTED (two explicit claims): %2 the
        holder's driver, %3 its device.  *_RESOURCE_CONFLICT (allocation found nothing
        free): "could not get its setting '%2' due to driver '%3'", so %2 the setting
        the device could not get and %3 the holder's driver."""
        req, held = conflict.requested, conflict.holder
        code = (_ALLOCATION if allocation else _DETECTED)[req.kind]
        caller = req.owner.device or req.owner.driver
        other_device = held.owner.device or ""
        verb = "could not get" if allocation else "claimed"
        message = (f"{req.owner} {verb} {_what(req)}: {_what(held)} already claimed by "
                   f"driver {held.owner.driver}" + (f" for {other_device}" if other_device else ""))
        return self.log(code, message, driver=req.owner.driver, device=req.owner.device,
                        final_status=NTSTATUS.STATUS_CONFLICTING_ADDRESSES, dump=dump_data(held),
                        strings=(caller, setting(req), held.owner.driver) if allocation
                        else (caller, held.owner.driver, other_device), conflict=conflict)

    def query(self, *, code: IoErrorCode | None = None, driver: str | None = None,
              kind: ResourceKind | None = None) -> list[ErrorLogEntry]:
        return [e for e in self if (code is None or e.error_code == code)
                and (driver is None or e.driver == driver or
                     (e.conflict is not None and e.conflict.holder.owner.driver == driver))
                and (kind is None or e.kind is kind)]
