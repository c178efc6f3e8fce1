"""NTSTATUS values and event-log (IO_ERR_*) codes: the one place each value is defined.

Values follow nt-semantics.md §1.13 (NTSTATUS) and §7 (IO_ERR codes); a few extra status
values the registry model needs (name/type errors) carry their ntstatus.h values too.
Member names are spelled exactly as NT spells them and are re-exported at module level, so
``from harness.nt.status import STATUS_SUCCESS`` reads like driver code.

Two error styles are supported: return an :class:`NTSTATUS` (``NT_SUCCESS(status)``), or
raise :class:`NtStatusError`, which carries one.
"""

from __future__ import annotations

import enum

from ..errors import HarnessError


class _Code(enum.IntEnum):
    """A 32-bit NT code (no members): prints as ``NAME (0xXXXXXXXX)``, formats as the int."""

    def __str__(self) -> str:
        return f"{self.name} (0x{self.value:08X})"


class NTSTATUS(_Code):
    """NTSTATUS codes as unsigned 32-bit values (nt-semantics.md §1.13)."""

    STATUS_SUCCESS = 0x00000000
    STATUS_BUFFER_OVERFLOW = 0x80000005
    STATUS_NO_MORE_ENTRIES = 0x8000001A
    STATUS_UNSUCCESSFUL = 0xC0000001
    STATUS_NOT_IMPLEMENTED = 0xC0000002
    STATUS_INVALID_PARAMETER = 0xC000000D
    STATUS_NO_SUCH_DEVICE = 0xC000000E
    STATUS_INVALID_DEVICE_REQUEST = 0xC0000010
    STATUS_NO_MEMORY = 0xC0000017
    STATUS_CONFLICTING_ADDRESSES = 0xC0000018
    STATUS_BUFFER_TOO_SMALL = 0xC0000023
    STATUS_OBJECT_TYPE_MISMATCH = 0xC0000024
    STATUS_OBJECT_NAME_INVALID = 0xC0000033
    STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
    STATUS_OBJECT_NAME_COLLISION = 0xC0000035
    STATUS_OBJECT_PATH_SYNTAX_BAD = 0xC000003B
    STATUS_SHARING_VIOLATION = 0xC0000043
    STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
    STATUS_IO_TIMEOUT = 0xC00000B5
    STATUS_NOT_SUPPORTED = 0xC00000BB
    STATUS_CANNOT_DELETE = 0xC0000121
    STATUS_CHILD_MUST_BE_VOLATILE = 0xC0000181
    STATUS_DEVICE_DOES_NOT_EXIST = 0xC00000C0
    STATUS_NOT_FOUND = 0xC0000225


globals().update(NTSTATUS.__members__)


def NT_SUCCESS(status: int) -> bool:
    """True for success and informational codes: the status is >= 0 as a signed LONG."""
    return (int(status) & 0xFFFFFFFF) < 0x80000000


def NT_INFORMATION(status: int) -> bool:
    return (int(status) & 0xFFFFFFFF) >> 30 == 1


def NT_WARNING(status: int) -> bool:
    return (int(status) & 0xFFFFFFFF) >> 30 == 2


def NT_ERROR(status: int) -> bool:
    return (int(status) & 0xFFFFFFFF) >> 30 == 3


#: STATUS_SEVERITY_SUCCESS, _INFORMATIONAL, _WARNING, _ERROR (ntstatus.h, ntiologc.h): the
#: top two bits of a status or an IO_ERR code, by name.
SEVERITIES = ("success", "informational", "warning", "error")


def severity(code: int) -> str:
    """The severity a status or IO_ERR code carries in its top two bits (:data:`SEVERITIES`)."""
    return SEVERITIES[(int(code) & 0xFFFFFFFF) >> 30]


class IoErrorCode(_Code):
    """IO_ERROR_LOG_PACKET.ErrorCode values (nt-semantics.md §7; facility IO = 4).  Most
    are of error severity; the retry's success and the firmware warning carry theirs as
    ntiologc.h gives them (Severity=Success, Severity=Warning)."""

    IO_ERR_RETRY_SUCCEEDED = 0x00040001
    IO_ERR_INSUFFICIENT_RESOURCES = 0xC0040002
    IO_ERR_CONFIGURATION_ERROR = 0xC0040003
    IO_ERR_TIMEOUT = 0xC0040009
    IO_ERR_INCORRECT_IRQL = 0xC004000D
    IO_ERR_INVALID_IOBASE = 0xC004000E
    IO_ERR_MEMORY_CONFLICT_DETECTED = 0xC0040015
    IO_ERR_PORT_CONFLICT_DETECTED = 0xC0040016
    IO_ERR_DMA_CONFLICT_DETECTED = 0xC0040017
    IO_ERR_IRQ_CONFLICT_DETECTED = 0xC0040018
    IO_WRN_BAD_FIRMWARE = 0x8004001A
    IO_ERR_DMA_RESOURCE_CONFLICT = 0xC004001B
    IO_ERR_INTERRUPT_RESOURCE_CONFLICT = 0xC004001C
    IO_ERR_MEMORY_RESOURCE_CONFLICT = 0xC004001D
    IO_ERR_PORT_RESOURCE_CONFLICT = 0xC004001E


globals().update(IoErrorCode.__members__)


class NtStatusError(HarnessError):
    """An error that maps onto one NTSTATUS, for code that prefers raising to returning.

    ``status`` is the :class:`NTSTATUS` a routine in the NT model would return for it;
    subclasses set a default in ``default_status``.
    """

    default_status: NTSTATUS = NTSTATUS.STATUS_UNSUCCESSFUL

    def __init__(self, message: str, status: NTSTATUS | None = None) -> None:
        self.status = NTSTATUS(status if status is not None else self.default_status)
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} [{self.status.name}]"


__all__ = ["NTSTATUS", "IoErrorCode", "NtStatusError", "NT_SUCCESS", "NT_INFORMATION",
           "NT_WARNING", "NT_ERROR", "SEVERITIES", "severity", *NTSTATUS.__members__, *IoErrorCode.__members__]
