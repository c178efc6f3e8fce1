r"""IoAssignResources as ReactOS has it: the ``reactos_compat`` switch's allocator.

nt-semantics.md §3.2 (the entry, RX-iorsrce) and §3.3 (``IopFixupResourceListWithRequirements``
with its ``IopFind*Resource`` helpers and the silent conflict detector of §2.3, RX-pnpres-new
at 3765a73), reproduced with their quirks because a driver tested against ReactOS meets them:

* the ResourceMap is only read, never written, so two calls can get the same range;
* the alternative lists are tried in their order (no ConfigData priority sort); a
  *required* descriptor (Option 0) that finds nothing ends the walk, and the call then
  "succeeds" with the descriptors gathered before it, possibly none (the list is NULL):
  a list opening with a ConfigData descriptor (Option 0, a type the search does not
  support) therefore succeeds at once with no resources;
* a PREFERRED descriptor whose alternatives all fail abandons the list; the "need an
  alternative" flag is one variable for the whole call (declared before the list loop), so
  it is still set when the next list starts and that list fails at its first
  non-ALTERNATIVE descriptor too: every later list fails, STATUS_CONFLICTING_ADDRESSES;
* a descriptor already satisfied by one gathered earlier in the same list (same Type; port,
  memory and bus numbers of equal Length inside its window; an interrupt vector or DMA
  channel inside its range) adds nothing (the "existing list" check runs on the list being
  built); and the detector never sees this list's own placements, so a second port
  request of another length can get the same start;
* the search is bottom-up first fit from MinimumAddress in steps of Alignment, with
  Alignment 0 rewritten to 1 *in the caller's descriptor*; on a conflict Start jumps by the
  "conflicting" descriptor, which the detector fills with the candidate itself, so Start
  becomes 2*Start + Length, then + Alignment: free slots are skipped over;
* the loop bound is ``Maximum - Length + 1`` in unsigned 64-bit (32-bit for bus numbers):
  with Length > Maximum + 1 it underflows, so a free first candidate is returned although
  it runs past Maximum;
* interrupts are tried Min..Max ascending (Level = Vector = the IRQ, Affinity -1), DMA
  channels likewise (Port 0); MemoryLarge, DevicePrivate, ConfigData and other types are
  "unsupported": not found.

The detector (``IopCheckResourceDescriptor``, silent mode) compares against every raw list
in the ResourceMap, the caller's own included, with no regard to InterfaceType or
BusNumber: skip when both are Shared or the Types differ; port and memory conflict when the
half-open ranges ``[Start, Start+Length)`` meet (ends in wrapping 64-bit math), bus numbers
likewise in 32-bit; interrupts when the Vectors are equal; DMA when the Channels are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

from .resources import (CM_RESOURCE_LIST, BusNumber, BusNumberRequirement, CmResourceShare, CmResourceType,
                        Dma, DmaRequirement, IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_DESCRIPTOR,
                        IO_RESOURCE_REQUIRED, IO_RESOURCE_REQUIREMENTS_LIST, Interrupt, InterruptRequirement,
                        Memory, MemoryRequirement, Port, PortRequirement)
from .status import NTSTATUS

ULONGLONG = 1 << 64
ULONG = 1 << 32
Shared = CmResourceShare.CmResourceShareShared


@dataclass
class ReactosAssignment:
    """What the allocator returned, and how it got there."""

    status: NTSTATUS
    resources: CM_RESOURCE_LIST | None
    #: The alternative list that "succeeded", None when every list failed.
    list_index: int | None = None
    #: Why a walk ended early or a search was cut short, in order (for reports and tests).
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# The detector (silent mode)


def conflicts(candidate: Any, stored: Any) -> bool:
    """Whether ReactOS's silent detector reports ``candidate`` against one stored partial."""
    if candidate.share == Shared and stored.share == Shared:
        return False
    if candidate.type != stored.type:
        return False
    kind = candidate.type
    if kind in (CmResourceType.CmResourceTypePort, CmResourceType.CmResourceTypeMemory):
        return _half_open_meet(candidate.start, candidate.length, stored.start, stored.length, ULONGLONG)
    if kind == CmResourceType.CmResourceTypeBusNumber:
        return _half_open_meet(candidate.start, candidate.length, stored.start, stored.length, ULONG)
    if kind == CmResourceType.CmResourceTypeInterrupt:
        return candidate.vector == stored.vector
    if kind == CmResourceType.CmResourceTypeDma:
        return candidate.channel == stored.channel
    return False


def _half_open_meet(start: int, length: int, start2: int, length2: int, modulus: int) -> bool:
    start, start2 = start % modulus, start2 % modulus
    return start < (start2 + length2) % modulus and start2 < (start + length) % modulus


# ---------------------------------------------------------------------------------------
# The allocator


def fixup_resource_list(requirements: IO_RESOURCE_REQUIREMENTS_LIST, stored: Iterable[Any]) -> ReactosAssignment:
    """``IopFixupResourceListWithRequirements`` with no starting list, as IoAssignResources
    calls it; ``stored`` are the raw partial descriptors of the ResourceMap.  May rewrite
    Alignment 0 to 1 in ``requirements``' own descriptors, as ReactOS does."""
    held = list(stored)
    notes: list[str] = []
    alternate_required = False  # one flag for the whole call, as in pnpres.c
    for index, alternative in enumerate(requirements.lists):
        gathered: list[Any] = []  # rolled back to nothing for each list
        for position, d in enumerate(alternative.descriptors):
            if not alternate_required and d.option & IO_RESOURCE_ALTERNATIVE:
                continue
            if alternate_required and not d.option & IO_RESOURCE_ALTERNATIVE:
                notes.append(f"list {index}: descriptor {position} reached with an alternative still "
                             "needed: list abandoned")
                break
            if any(_satisfies(have, d) for have in gathered):
                continue  # matched: nothing added, the flag untouched
            found = _find(d, held, notes)
            if found is None and d.option == IO_RESOURCE_REQUIRED:
                notes.append(f"list {index}: required descriptor {position} ({_name(d)}) not found: "
                             f"the walk stops and the call succeeds with {len(gathered)} descriptor(s)")
                break
            if found is None:
                alternate_required = True
                continue
            alternate_required = False
            gathered.append(found)
        if alternate_required:
            continue
        resources = (CM_RESOURCE_LIST.single(requirements.interface_type, requirements.bus_number, *gathered)
                     if gathered else None)
        return ReactosAssignment(NTSTATUS.STATUS_SUCCESS, resources, index, notes)
    notes.append("out of alternative lists")
    return ReactosAssignment(NTSTATUS.STATUS_CONFLICTING_ADDRESSES, None, None, notes)


def _name(d: IO_RESOURCE_DESCRIPTOR) -> str:
    try:
        return CmResourceType(d.type).name
    except ValueError:
        return f"Type {d.type}"


def _satisfies(have: Any, d: IO_RESOURCE_DESCRIPTOR) -> bool:
    """The "existing list" check: does an already gathered descriptor stand for ``d``?"""
    if have.type != d.type:
        return False
    if isinstance(d, InterruptRequirement):
        return d.minimum_vector <= have.vector <= d.maximum_vector
    if isinstance(d, (PortRequirement, MemoryRequirement)):
        last = (have.start + have.length - 1) % ULONGLONG
        return have.length == d.length and have.start >= d.minimum_address and last <= d.maximum_address
    if isinstance(d, BusNumberRequirement):
        last = (have.start + have.length - 1) % ULONG
        return have.length == d.length and have.start >= d.minimum_bus_number and last <= d.maximum_bus_number
    if isinstance(d, DmaRequirement):
        return d.minimum_channel <= have.channel <= d.maximum_channel
    return True  # "other stuff is fine"


def _find(d: IO_RESOURCE_DESCRIPTOR, held: list[Any], notes: list[str]) -> Any:
    def free(candidate: Any) -> bool:
        return not any(conflicts(candidate, h) for h in held)

    if isinstance(d, InterruptRequirement):
        for vector in range(d.minimum_vector, d.maximum_vector + 1):
            candidate = Interrupt(vector, vector, -1, share=d.share, flags=d.flags)
            if free(candidate):
                return candidate
        return None
    if isinstance(d, DmaRequirement):
        for channel in range(d.minimum_channel, d.maximum_channel + 1):
            candidate = Dma(channel, 0, share=d.share, flags=d.flags)
            if free(candidate):
                return candidate
        return None
    if isinstance(d, (PortRequirement, MemoryRequirement)):
        if d.alignment == 0:  # "HACK" in pnpres.c: written into the caller's requirements list
            object.__setattr__(d, "alignment", 1)
        cls = Port if isinstance(d, PortRequirement) else Memory
        start = _first_fit(d, d.minimum_address, d.maximum_address, d.alignment, ULONGLONG, notes, free)
    elif isinstance(d, BusNumberRequirement):
        cls = BusNumber
        start = _first_fit(d, d.minimum_bus_number, d.maximum_bus_number, 1, ULONG, notes, free)
    else:
        return None  # unsupported type
    if start is None:
        return None
    if start + d.length > (ULONG if cls is BusNumber else ULONGLONG):
        notes.append(f"ReactOS would return {cls.__name__} {start:#x} length {d.length:#x}, which wraps past the "
                     "end of its counter: no descriptor can hold it; treated as not found")
        return None
    return cls(start, d.length, share=d.share, flags=d.flags)


class _Range(NamedTuple):
    """A candidate range as the detector sees it (it may wrap, which a descriptor may not)."""

    type: int
    share: int
    start: int
    length: int


def _first_fit(d: IO_RESOURCE_DESCRIPTOR, minimum: int, maximum: int, step: int, modulus: int,
               notes: list[str], free: Any) -> int | None:
    """``IopFindPortResource`` / ``IopFindMemoryResource`` / ``IopFindBusNumberResource``.

    Bounded where ReactOS is not: each conflict takes Start to 2*Start + Length + step, so
    Start + 1 at least doubles and, within the counter's width (64 or 32 bits), the loop
    ends after at most that many conflicts by passing its bound.  Only a bound that
    underflowed (Length > Maximum + 1) or sits in the top half of the range lets Start
    wrap instead; from there ReactOS can go round for ever.  The harness stops at the wrap
    and reports the descriptor as not found, with a note."""
    length = d.length
    bound = (maximum - length + 1) % modulus
    start = minimum % modulus
    while start <= bound:
        if free(_Range(d.type, d.share, start, length)):
            return start
        nxt = start + start + length + step  # the "conflicting" descriptor is the candidate
        if nxt >= modulus:
            notes.append(f"search from {minimum:#x}: Start would wrap past {modulus:#x} after a conflict at "
                         f"{start:#x} (ReactOS may loop for ever here); treated as not found")
            return None
        start = nxt
    return None
