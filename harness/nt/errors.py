"""Exceptions of the NT model's data layer (resource structures and the registry).

Every class derives from :class:`~harness.nt.status.NtStatusError` (hence from
:class:`harness.errors.HarnessError`) and carries the NTSTATUS the NT routine that met the
problem would return, so an I/O-manager routine can turn any of them into a status with
``except NtStatusError as e: return e.status``.

Resource errors also derive from :class:`ValueError`: they describe a bad value, whether it
came from a caller's constructor arguments or from a byte buffer.
"""

from __future__ import annotations

from .status import NTSTATUS, NtStatusError


class ResourceFormatError(NtStatusError, ValueError):
    """A resource structure (CM_* / IO_RESOURCE_*) is malformed.

    ``field`` is the C path of the offending field (``List[0].PartialResourceList.Count``),
    ``offset`` the byte offset in the buffer being unpacked (``None`` when the error came
    from constructing a value rather than from bytes).
    """

    default_status = NTSTATUS.STATUS_INVALID_PARAMETER

    def __init__(self, message: str, *, field: str = "", offset: int | None = None,
                 status: NTSTATUS | None = None) -> None:
        self.field = field
        self.offset = offset
        self.detail = message
        super().__init__(self._render(), status)

    def _render(self) -> str:
        where = self.field or "<value>"
        if self.offset is not None:
            where += f" @0x{self.offset:x}"
        return f"{where}: {self.detail}"

    def within(self, prefix: str, base_offset: int | None = None) -> "ResourceFormatError":
        """Return a copy whose field path is prefixed (and offset shifted) by an enclosing
        structure, so the message names the full path from the outermost structure."""
        field = f"{prefix}.{self.field}" if prefix and self.field else (prefix or self.field)
        offset = self.offset
        if offset is None and base_offset is not None:
            offset = base_offset
        clone = type(self).__new__(type(self))
        ResourceFormatError.__init__(clone, self.detail, field=field, offset=offset,
                                     status=self.status)
        return clone


class TruncatedError(ResourceFormatError):
    """The buffer ends before the structure does (including a Count or DataSize that
    promises more bytes than there are)."""


class UnknownTypeError(ResourceFormatError):
    """A type code (resource Type, ShareDisposition, INTERFACE_TYPE, registry type…) is not
    one nt-semantics.md §1 defines, or is not allowed in this kind of list."""


class FieldRangeError(ResourceFormatError):
    """A field value does not fit its C type, or a range wraps past the top of its
    address space (Start + Length > 2**64, or 2**32 for bus numbers)."""


class SizeMismatchError(ResourceFormatError):
    """A size field (ListSize, DataSize) disagrees with the contents, or bytes are left over
    after the structure."""


class LayoutRuleError(ResourceFormatError):
    """A list breaks the statically-declared C-array rule (nt-semantics.md §1.3): only the
    last full descriptor may carry more than one partial descriptor, and a DeviceSpecific
    partial (with its payload) must be the last one of its list."""


class RegistryError(NtStatusError):
    """Base of registry errors."""

    default_status = NTSTATUS.STATUS_UNSUCCESSFUL


class InvalidPathError(RegistryError):
    """A key path is not an absolute ``\\Registry\\...`` path, or a key name is invalid."""

    default_status = NTSTATUS.STATUS_OBJECT_PATH_SYNTAX_BAD


class KeyNotFoundError(RegistryError, KeyError):
    """A key does not exist."""

    default_status = NTSTATUS.STATUS_OBJECT_NAME_NOT_FOUND

    def __str__(self) -> str:  # KeyError would quote the message
        return NtStatusError.__str__(self)


class ValueNotFoundError(RegistryError, KeyError):
    """A value does not exist under an existing key."""

    default_status = NTSTATUS.STATUS_OBJECT_NAME_NOT_FOUND

    def __str__(self) -> str:
        return NtStatusError.__str__(self)


class RegistryTypeError(RegistryError):
    """A value's data does not match its registry type, or a Python value cannot be
    stored as the requested type."""

    default_status = NTSTATUS.STATUS_OBJECT_TYPE_MISMATCH


class KeyHasSubkeysError(RegistryError):
    """A non-recursive delete of a key that still has subkeys."""

    default_status = NTSTATUS.STATUS_CANNOT_DELETE


class VolatileParentError(RegistryError):
    """A non-volatile key was to be created under a volatile one (NT refuses this)."""

    default_status = NTSTATUS.STATUS_CHILD_MUST_BE_VOLATILE


class RegistryLockedError(RegistryError):
    """The registry file is held by another live registry instance."""

    default_status = NTSTATUS.STATUS_SHARING_VIOLATION


class RegistryFileError(RegistryError):
    """The registry database file is missing, unreadable, or not a harness registry."""


class RegFileError(RegistryError):
    """A regedit (.reg) text file could not be parsed or applied.

    ``source`` names the file, ``line`` is 1-based.
    """

    default_status = NTSTATUS.STATUS_INVALID_PARAMETER

    def __init__(self, message: str, *, source: str = "<reg>", line: int | None = None) -> None:
        self.source = source
        self.line = line
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}")
