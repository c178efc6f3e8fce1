r"""The resource arbiter: who holds which port, memory range, IRQ, DMA channel and bus number.

One :class:`Arbiter` holds every claim of the ResourceMap, one compiled interval index
per resource kind (§2.3, §2.5), over **raw, bus-relative** values as the seeds require:
translated values never take part.  Claims are grouped in *slots*
(:class:`Owner`): a driver's driver-wide list, or one of its device lists.  A slot is
replaced as a whole (seed 002: callers pass the full set each time).

Conflict rule (nt-semantics.md §2.5, the documented-NT model):

* Port, Memory (and MemoryLarge), BusNumber: any common address, half-open
  ``[Start, Start+Length)`` in 64-bit unsigned math.  A zero-length range conflicts only
  with a range that strictly contains its Start (§9.4).  Port and Memory never meet,
  whatever CM_RESOURCE_PORT_MEMORY says (§9.9).  InterfaceType and BusNumber of the full
  descriptor do not separate claims: an Isa port 0x3F8 meets a PCIBus port 0x3F8 (§2.3).
* Interrupt: the same IRQ, where an ISA/PCI raw descriptor's IRQ is its Level when nonzero,
  else its Vector (§4.2 MODEL).  Dma: the same channel (Port ignored).
* DeviceSpecific, DevicePrivate and the other kinds never conflict.
* Two Shared claims never conflict.  DriverExclusive is shareable between claims of one
  driver (model interpretation, §2.5); DeviceExclusive and Undetermined share with nobody.
* The slot being replaced is excluded from the search; every other slot counts, the
  caller's other slots included (a driver's device lists are distinct from each other).

Allocation (:meth:`Arbiter.allocate`, the IoAssignResources core, §3.1 and §3.4): the
alternative lists are tried in order, stably sorted by the LCPRI priority of a leading
ConfigData descriptor when a list has one (lists without count as LCPRI_NORMAL).  In a list,
a descriptor that is not ALTERNATIVE starts a *group* with the ALTERNATIVE descriptors that
follow it; a group is satisfied by its first descriptor that fits, PREFERRED ones first.
Every group of a list must be satisfied together, each against the claims and the
placements of the groups before it, or the next list is tried: a list is never returned
in part (ReactOS does, §3.3; not here).  Ranges are placed at a multiple of Alignment
(0 counts as 1) inside ``[MinimumAddress, MaximumAddress]``, memory and ports top-down and
IRQs, DMA channels and bus numbers ascending by default (§3.4), moving past each
conflicting claim rather than stepping one unit at a time.

Bus windows (:func:`window_positions`, :meth:`Arbiter.conflicts_with`): a bus or bridge's
window is what its children are arbitrated *from*, not a claim they collide with.  Windows
arbitrates per bus, not in one flat list: the PnP manager's root arbiters hand a bus its
windows, and the bus's children are arbitrated inside them (pci.sys's arbiters for a
bridge; acpi.sys's translator maps the root bus's).  How Windows marks a window, from the
genuine LogConf data (``tests/data/realworld-resources``) and its producers:

* ACPI root buses (PNP0A03/PNP0A08): acpi.sys turns each ResourceProducer address-space
  descriptor of ``_CRS`` into the range (Shared: it is not ``ResourceConsumer``;
  POSITIVE_DECODE unless subtractive) followed by a DevicePrivate with Flags
  ``TRANSLATION_DATA_PARENT_ADDRESS`` (0x6000) holding the parent-side type and start
  (acpi.sys ``PnpiBiosAddressToIoDescriptor``; the ``BRIDGE_WINDOW`` translator beside
  it).  Every genuine root bus, XP to 10, carries that mark after each window; a
  ``ResourceConsumer`` range of the same form is DeviceExclusive and stays a claim.
* PCI-to-PCI bridges: pci.sys flags the window CM_RESOURCE_PORT_WINDOW_DECODE (0x80) or
  CM_RESOURCE_MEMORY_WINDOW_DECODE (0x40) (the Dell's PCIe root ports; wdm.h names them).

The one rule, after Linux ``kernel/resource.c`` (a non-busy window is nested into, §8):
a window never conflicts with a claim that is not a window; two windows that overlap
conflict unless one bus is the other's ancestor (or, with no tree to say, one window
holds the other: a bridge inside its root bus); a claim of a device whose bus the tree
names (:meth:`Arbiter.set_parent`) must lie inside that bus's windows of its kind (when
the bus holds any), and a bus's windows must keep every claim of its children inside
them (:meth:`Arbiter.find_conflicts`).  A zero-length window holds nothing and meets nothing.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from .._intervals import ADDRESS_MAX, IntervalIndex
from .resources import (BusNumber, BusNumberRequirement, CM_PARTIAL_RESOURCE_DESCRIPTOR,
                        CM_RESOURCE_INTERRUPT_MESSAGE, CM_RESOURCE_LIST,
                        CM_RESOURCE_MEMORY_WINDOW_DECODE,
                        CM_RESOURCE_PORT_WINDOW_DECODE, CmResourceShare, CmResourceType,
                        ConfigDataRequirement, DevicePrivate, DevicePrivateRequirement, Dma,
                        DmaRequirement, GenericPartial, GenericRequirement, INTERFACE_TYPE,
                        IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_DESCRIPTOR,
                        IO_RESOURCE_LIST, IO_RESOURCE_PREFERRED, IO_RESOURCE_REQUIREMENTS_LIST,
                        Interrupt, InterruptRequirement, LCPRI_NORMAL, Memory, MemoryLarge,
                        MemoryLargeRequirement, MemoryRequirement, Port, PortRequirement,
                        describe_range, share_name)

Shared = CmResourceShare.CmResourceShareShared
DriverExclusive = CmResourceShare.CmResourceShareDriverExclusive

BUS_NUMBER_MAX = 0xFFFFFFFF
#: acpi.sys's DevicePrivate Flags after a bus window: the window's parent-side address follows.
TRANSLATION_DATA_PARENT_ADDRESS = 0x6000


class ResourceKind(str, enum.Enum):
    """The arbitrated kinds; each has its own index (Port and Memory never meet)."""

    PORT = "port"
    MEMORY = "memory"
    INTERRUPT = "interrupt"
    DMA = "dma"
    BUS_NUMBER = "bus-number"


@dataclass(frozen=True)
class Owner:
    """A claim slot: a driver's driver-wide list (``device`` None) or one device's list.

    ``driver`` is the service name (``Serial``); ``device`` the device object name
    (``\\Device\\Serial0``); ``resource_class`` the ResourceMap class key it lives under.
    """

    driver: str
    device: str | None = None
    resource_class: str = ""

    def __str__(self) -> str:
        return self.driver if self.device is None else f"{self.driver} ({self.device})"

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return (self.resource_class, self.driver, self.device or "")


@dataclass(frozen=True)
class Claim:
    """One arbitrated resource of a slot: the raw descriptor and the closed range it covers
    (for an interrupt or a DMA channel, a single point)."""

    owner: Owner
    kind: ResourceKind
    start: int
    end: int            # closed; for a zero-length range end == start - 1
    descriptor: CM_PARTIAL_RESOURCE_DESCRIPTOR
    interface_type: INTERFACE_TYPE = INTERFACE_TYPE.Isa
    bus_number: int = 0
    #: A bus's window (:func:`window_positions`): what its children are placed in.
    window: bool = False

    @property
    def share(self) -> CmResourceShare:
        return self.descriptor.share

    @property
    def empty(self) -> bool:
        return self.end < self.start

    def describe(self) -> str:
        what = "window" if self.window else share_name(self.share)
        return f"{self.kind.value} {describe_range(self.descriptor)} [{what}]"


def range_claim(owner: Owner, space: str, start: int, end: int) -> Claim:
    """A claim on the inclusive range [start, end] of ``space`` ("io" or "memory"), as
    something to keep clear of (what the hardware decodes, a bridge window); its
    descriptor, for messages only, is capped at the ULONG Length a CM descriptor holds."""
    length = min(end - start + 1, 0xFFFFFFFF)
    if space == "io":
        return Claim(owner, ResourceKind.PORT, start, end, Port(start, length))
    return Claim(owner, ResourceKind.MEMORY, start, end, Memory(start, length))


@dataclass(frozen=True)
class Conflict:
    """A requested resource and the claim already holding it."""

    requested: Claim
    holder: Claim
    #: Set when the two do not overlap but break the window rule (a claim outside its bus).
    reason: str = ""

    def describe(self) -> str:
        if self.reason:
            return f"{self.requested.owner} wants {self.requested.describe()}: {self.reason}"
        return (f"{self.requested.owner} wants {self.requested.describe()}, "
                f"held by {self.holder.owner}: {self.holder.describe()}")


@dataclass
class ListAttempt:
    """Why one alternative list of an allocation did not fit."""

    index: int
    descriptor: IO_RESOURCE_DESCRIPTOR | None = None   # the group head that could not be placed
    conflicts: list[Conflict] = field(default_factory=list)
    reason: str = ""


@dataclass
class Allocation:
    """Result of :meth:`Arbiter.allocate`: the assigned list, or why nothing fit."""

    resources: CM_RESOURCE_LIST | None
    list_index: int | None = None
    attempts: list[ListAttempt] = field(default_factory=list)


def kind_of(descriptor: Any) -> ResourceKind | None:
    """The arbitrated kind of a partial descriptor, None for kinds that never conflict."""
    if isinstance(descriptor, Port):
        return ResourceKind.PORT
    if isinstance(descriptor, (Memory, MemoryLarge)):
        return ResourceKind.MEMORY
    if isinstance(descriptor, Interrupt):
        # A message-signalled interrupt holds IDT vectors the HAL hands out per message,
        # no IRQ line (its Level is Group and MessageCount, nt-semantics §1): nothing to
        # arbitrate, as the Mac's Connection ids.
        return None if descriptor.flags & CM_RESOURCE_INTERRUPT_MESSAGE else ResourceKind.INTERRUPT
    if isinstance(descriptor, Dma):
        return ResourceKind.DMA
    if isinstance(descriptor, BusNumber):
        return ResourceKind.BUS_NUMBER
    return None


def interrupt_line(descriptor: Interrupt) -> int:
    """The IRQ a raw interrupt descriptor names: Level when nonzero, else Vector (§4.2)."""
    return descriptor.level or descriptor.vector


_RANGES = (Port, Memory, MemoryLarge, PortRequirement, MemoryRequirement, MemoryLargeRequirement)
_PRIVATE = (DevicePrivate, DevicePrivateRequirement)


def window_positions(descriptors: Sequence[Any]) -> set[int]:
    """The indices of the bus windows among one list's descriptors (resource or
    requirement descriptors alike; module docstring): a port or memory range flagged
    WINDOW_DECODE (pci.sys's bridge windows), or a Shared one followed, before the next
    other descriptor, by a DevicePrivate with TRANSLATION_DATA_PARENT_ADDRESS (acpi.sys's
    ResourceProducer windows of a root bus)."""
    found = set()
    for i, d in enumerate(descriptors):
        if not isinstance(d, _RANGES):
            continue
        bit = CM_RESOURCE_PORT_WINDOW_DECODE if isinstance(d, (Port, PortRequirement)) \
            else CM_RESOURCE_MEMORY_WINDOW_DECODE
        if d.flags & bit:
            found.add(i)
            continue
        if d.share != Shared:
            continue
        for after in descriptors[i + 1:]:
            if not isinstance(after, _PRIVATE):
                break
            if after.flags & TRANSLATION_DATA_PARENT_ADDRESS == TRANSLATION_DATA_PARENT_ADDRESS:
                found.add(i)
                break
    return found


def claims_of(owner: Owner, resources: CM_RESOURCE_LIST) -> list[Claim]:
    """The arbitrated claims of a resource list, in list order; bus windows marked."""
    out = []
    for full in resources.descriptors:
        partials = full.partials
        windows = window_positions(partials)
        for i, partial in enumerate(partials):
            kind = kind_of(partial)
            if kind is None:
                continue
            if kind in (ResourceKind.INTERRUPT, ResourceKind.DMA):
                point = interrupt_line(partial) if kind is ResourceKind.INTERRUPT else partial.channel
                start, end = point, point
            else:
                start, end = partial.start, partial.start + partial.length - 1
            out.append(Claim(owner, kind, start, end, partial, full.interface_type, full.bus_number,
                             i in windows))
    return out


def compatible(a: Claim, b: Claim) -> bool:
    """True when two claims on a common resource may coexist (the share rule above)."""
    if a.share == Shared and b.share == Shared:
        return True
    if a.owner.driver != b.owner.driver:
        return False
    return DriverExclusive in (a.share, b.share) and {a.share, b.share} <= {Shared, DriverExclusive}


def _windows_overlap(a: Claim, b: Claim) -> bool:
    """Two windows share an address (a zero-length window holds nothing)."""
    return not a.empty and not b.empty and a.start <= b.end and b.start <= a.end


def _nested(a: Claim, b: Claim) -> bool:
    return (a.start <= b.start and b.end <= a.end) or (b.start <= a.start and a.end <= b.end)


def collide(a: Claim, b: Claim, related: Callable[[Owner, Owner], "bool | None"] | None = None) -> bool:
    """The one conflict rule for two claims on the same kind (module docstring):
    ``related(a, b)`` says True when one owner's bus is the other's ancestor, False when
    the tree says they are not, None when it does not know."""
    if a.window or b.window:
        if not (a.window and b.window) or not _windows_overlap(a, b):
            return False
        kin = related(a.owner, b.owner) if related is not None else None
        return not (kin or (kin is None and _nested(a, b)))
    return _meet(a, b) and not compatible(a, b)


def _meet(a: Claim, b: Claim) -> bool:
    """Half-open overlap with the zero-length rule of §9.4."""
    if a.empty and b.empty:
        return False
    if a.empty:
        return b.start < a.start <= b.end
    if b.empty:
        return a.start < b.start <= a.end
    return a.start <= b.end and b.start <= a.end


class Arbiter:
    """Every claim, per kind, in compiled interval indexes; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._index = {kind: IntervalIndex() for kind in ResourceKind}
        self._by_handle: dict[ResourceKind, dict[int, Claim]] = {kind: {} for kind in ResourceKind}
        # Zero-length claims cannot be stored as closed ranges; they are rare, kept aside.
        self._empty: list[Claim] = []
        self._slots: dict[Owner, list[tuple[ResourceKind, int | None, Claim]]] = {}
        self._owner_ids: dict[Owner, int] = {}
        self._generation: dict[Owner, int] = {}   # when each slot was last written
        self._clock = 0
        #: The bus each slot's device sits on, where a device tree says so (set_parent).
        self._parent: dict[Owner, Owner] = {}

    # ------------------------------------------------------------------ reading
    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def owners(self) -> list[Owner]:
        with self._lock:
            return sorted(self._slots, key=lambda o: o.sort_key)

    def claims(self, owner: Owner | None = None) -> list[Claim]:
        with self._lock:
            slots = [owner] if owner is not None else sorted(self._slots, key=lambda o: o.sort_key)
            return [c for o in slots for _, _, c in self._slots.get(o, ())]

    def holders(self, kind: ResourceKind, start: int, end: int | None = None) -> list[Claim]:
        """Every claim of ``kind`` touching ``[start, end]`` (a point when end is None)."""
        end = start if end is None else end
        with self._lock:
            table = self._by_handle[kind]
            return [table[h] for h in self._index[kind].overlaps(start, end)]

    def __len__(self) -> int:
        with self._lock:
            return sum(len(t) for t in self._by_handle.values()) + len(self._empty)

    # ------------------------------------------------------------------ the device tree
    def set_parent(self, child: Owner, bus: Owner | None) -> None:
        """Say which bus ``child``'s device sits on (None: forget it).  Its claims must then
        lie inside that bus's windows, and its windows may nest in the bus's."""
        with self._lock:
            if bus is None:
                self._parent.pop(child, None)
                return
            walk: Owner | None = bus
            while walk is not None:
                if walk == child:
                    raise ValueError(f"{child} cannot sit on {bus}: that bus is below it")
                walk = self._parent.get(walk)
            self._parent[child] = bus

    def parent_of(self, owner: Owner) -> Owner | None:
        return self._parent.get(owner)

    def related(self, a: Owner, b: Owner) -> bool | None:
        """True when one of the two devices is on a bus below the other (or they are one
        device), False when the tree places both and neither is, None when it cannot say."""
        if a == b or self._below(a, b) or self._below(b, a):
            return True
        return False if a in self._parent and b in self._parent else None

    def _below(self, a: Owner, b: Owner) -> bool:
        walk = self._parent.get(a)
        while walk is not None:
            if walk == b:
                return True
            walk = self._parent.get(walk)
        return False

    def windows(self, owner: Owner, kind: ResourceKind) -> list[Claim]:
        with self._lock:
            return [c for _, _, c in self._slots.get(owner, ()) if c.window and c.kind is kind]

    # ------------------------------------------------------------------ conflicts
    def conflicts_with(self, claim: Claim, exclude: Iterable[Owner] = ()) -> list[Conflict]:
        """Every stored claim ``claim`` conflicts with, in address order, then, when it
        does not fit its bus's windows, that refusal (module docstring)."""
        excluded = set(exclude)
        with self._lock:
            if claim.empty:
                if claim.start == 0:
                    candidates: list[Claim] = []
                else:
                    candidates = self.holders(claim.kind, claim.start - 1, claim.start)
            else:
                candidates = self.holders(claim.kind, claim.start, claim.end)
            candidates += [e for e in self._empty if e.kind is claim.kind]
            found = [Conflict(claim, held) for held in candidates
                     if held.owner not in excluded and collide(claim, held, self.related)]
            bus = self._parent.get(claim.owner)
            if bus is not None and bus not in excluded:
                found += _outside(claim, self.windows(bus, claim.kind), bus)
            return found

    def find_conflicts(self, claims: Iterable[Claim], exclude: Iterable[Owner] = ()) -> list[Conflict]:
        """:meth:`conflicts_with` for each claim of one slot, and, for the windows among
        them, every stored claim of a device on that bus the windows would leave outside."""
        excluded = tuple(exclude)
        claims = list(claims)
        found = [c for claim in claims for c in self.conflicts_with(claim, excluded)]
        mine = {c.owner for c in claims}
        with self._lock:
            for kind in {c.kind for c in claims if c.window}:
                for bus in mine:
                    windows = [c for c in claims if c.window and c.kind is kind and c.owner == bus]
                    children = [o for o, parent in self._parent.items()
                                if parent == bus and o not in excluded and o not in mine]
                    for child in children:
                        for held in self.claims(child):
                            if held.kind is kind and _outside(held, windows, bus):
                                found.append(Conflict(windows[0], held, (
                                    f"its {kind.value} windows would leave {held.owner}'s "
                                    f"{held.describe()} outside them")))
        return found

    # ------------------------------------------------------------------ writing
    def replace(self, owner: Owner, claims: Sequence[Claim]) -> None:
        """Make ``claims`` the whole content of ``owner``'s slot (empty: release it)."""
        with self._lock:
            self.release(owner)
            if not claims:
                return
            oid = self._owner_ids.setdefault(owner, len(self._owner_ids) + 1)
            entries = []
            for claim in claims:
                if claim.owner != owner:
                    raise ValueError(f"claim of {claim.owner} stored in slot {owner}")
                if claim.empty:
                    self._empty.append(claim)
                    entries.append((claim.kind, None, claim))
                    continue
                handle = self._index[claim.kind].insert(claim.start, claim.end, oid,
                                                        claim.share == Shared)
                self._by_handle[claim.kind][handle] = claim
                entries.append((claim.kind, handle, claim))
            self._slots[owner] = entries
            self._clock += 1
            self._generation[owner] = self._clock

    def claimed_before(self, a: Owner, b: Owner) -> bool:
        """True when slot ``a`` got its current list before slot ``b`` got its own."""
        with self._lock:
            return self._generation.get(a, 0) < self._generation.get(b, 0)

    def release(self, owner: Owner) -> bool:
        """Drop a slot; False when it held nothing (releasing an unknown slot is a no-op)."""
        with self._lock:
            entries = self._slots.pop(owner, None)
            self._generation.pop(owner, None)
            if not entries:
                return False
            for kind, handle, claim in entries:
                if handle is None:
                    self._empty.remove(claim)
                else:
                    self._index[kind].remove(handle)
                    del self._by_handle[kind][handle]
            return True

    # ------------------------------------------------------------------ allocation
    def allocate(self, owner: Owner, requirements: IO_RESOURCE_REQUIREMENTS_LIST, *,
                 reserved: Sequence[Claim] = (), top_down: bool = True) -> Allocation:
        """Choose resources for ``requirements`` without storing them (the caller commits
        with :meth:`replace`).  ``owner``'s current slot is ignored, as a repeated
        IoAssignResources may move the caller's own resources (§3.1); ``reserved`` are
        extra claims to keep clear of (e.g. what the hardware decodes); ``top_down``
        places ports and memory from the top of their window (§3.4)."""
        result = Allocation(None)
        with self._lock:
            for index, alternative in _by_priority(requirements.lists):
                trial = _Trial(self, owner, reserved, requirements, top_down)
                attempt = ListAttempt(index)
                partials = trial.satisfy(alternative, attempt)
                if partials is None:
                    result.attempts.append(attempt)
                    continue
                result.resources = CM_RESOURCE_LIST.single(requirements.interface_type,
                                                           requirements.bus_number, *partials)
                result.list_index = index
                return result
        return result


def _priority(alternative: IO_RESOURCE_LIST) -> int:
    first = alternative.descriptors[0] if alternative.descriptors else None
    return first.priority if isinstance(first, ConfigDataRequirement) else LCPRI_NORMAL


def _by_priority(lists: Sequence[IO_RESOURCE_LIST]) -> list[tuple[int, IO_RESOURCE_LIST]]:
    return sorted(enumerate(lists), key=lambda item: _priority(item[1]))  # stable


def groups_of(alternative: IO_RESOURCE_LIST) -> list[list[IO_RESOURCE_DESCRIPTOR]]:
    """The requirement groups of a list: each non-ALTERNATIVE descriptor with the
    ALTERNATIVE ones after it, PREFERRED descriptors moved to the front (stably).
    ConfigData descriptors only carry the list's priority and form no group."""
    groups: list[list[IO_RESOURCE_DESCRIPTOR]] = []
    for d in alternative.descriptors:
        if isinstance(d, ConfigDataRequirement):
            continue
        if d.option & IO_RESOURCE_ALTERNATIVE and groups:
            groups[-1].append(d)
        else:
            groups.append([d])
    return [sorted(g, key=lambda d: not d.option & IO_RESOURCE_PREFERRED) for g in groups]


class _Trial:
    """One attempt at one alternative list: placements so far are held in a scratch
    arbiter so later groups of the same list avoid them."""

    def __init__(self, arbiter: Arbiter, owner: Owner, reserved: Sequence[Claim],
                 requirements: IO_RESOURCE_REQUIREMENTS_LIST, top_down: bool) -> None:
        self.arbiter = arbiter
        self.owner = owner
        self.scratch = Arbiter()
        self.reserved_owner = Owner("<reserved>", None, "")
        self.scratch.replace(self.reserved_owner, [
            Claim(self.reserved_owner, c.kind, c.start, c.end, c.descriptor) for c in reserved])
        self.iface = requirements.interface_type
        self.bus = requirements.bus_number
        self.top_down = top_down
        self.placing_window = False

    def satisfy(self, alternative: IO_RESOURCE_LIST, attempt: ListAttempt) -> list | None:
        partials = []
        windows = {id(alternative.descriptors[i]) for i in window_positions(alternative.descriptors)}
        for group in groups_of(alternative):
            found = None
            seen: list[Conflict] = []
            for d in group:
                self.placing_window = id(d) in windows
                found = self._place(d, seen)
                if found is not None:
                    break
            if found is None:
                attempt.descriptor = group[0]
                attempt.conflicts = unique_conflicts(seen)
                attempt.reason = (f"no free {describe_range(group[0])}" if seen
                                  else f"cannot satisfy {describe_range(group[0])}")
                return None
            partials.append(found)
            # Later groups must avoid this placement; it belongs to the same driver.
            slot = Owner(self.owner.driver, f"<placement {len(partials)}>", self.owner.resource_class)
            self.scratch.replace(slot, [replace(c, owner=slot) for c in self._claims(found)])
        return partials

    # Each candidate is checked against the real claims (minus the owner's own slot) and
    # the scratch claims (reserved + earlier groups); a blocked candidate jumps past the
    # lowest (ascending) or highest (descending) blocker.
    def _blockers(self, claim: Claim) -> list[Conflict]:
        found = self.arbiter.conflicts_with(claim, exclude=(self.owner,))
        found += self.scratch.conflicts_with(claim)
        return found

    def _place(self, d: IO_RESOURCE_DESCRIPTOR, seen: list[Conflict]) -> Any:
        if isinstance(d, (PortRequirement, MemoryRequirement, MemoryLargeRequirement)):
            return self._place_range(d, seen)
        if isinstance(d, BusNumberRequirement):
            return self._place_range(d, seen)
        if isinstance(d, InterruptRequirement) and d.message_count:
            # The raw MessageInterrupt form: MessageCount (a USHORT) in Level's high half;
            # the Vector stays the token, as no IDT vector is chosen here.
            if d.message_count > 0xFFFF:
                return None
            return Interrupt(d.message_count << 16, d.maximum_vector, -1, share=d.share,
                             flags=d.flags)
        if isinstance(d, InterruptRequirement):
            return self._place_point(d, d.minimum_vector, d.maximum_vector, seen,
                                     lambda v: Interrupt(v, v, -1, share=d.share, flags=d.flags))
        if isinstance(d, DmaRequirement):
            return self._place_point(d, d.minimum_channel, d.maximum_channel, seen,
                                     lambda c: Dma(c, 0, share=d.share, flags=d.flags))
        if isinstance(d, DevicePrivateRequirement):
            return DevicePrivate(d.data, share=d.share, flags=d.flags)
        if isinstance(d, GenericRequirement) and d.type == CmResourceType.CmResourceTypeNull:
            # Asks for nothing (pci.sys fills an unimplemented BAR's slot with a zeroed Null
            # descriptor): a Null partial keeps its place in the assigned list.
            return GenericPartial(CmResourceType.CmResourceTypeNull, share=d.share, flags=d.flags)
        return None  # a kind the arbiter does not assign

    def _claims(self, partial: Any) -> list[Claim]:
        """The placement's claim, a window when its descriptor is one of the list's windows."""
        return [replace(c, window=self.placing_window)
                for c in claims_of(self.owner, CM_RESOURCE_LIST.single(self.iface, self.bus, partial))]

    def _claim(self, partial: Any) -> Claim:
        return self._claims(partial)[0]

    def _place_point(self, d: Any, lo: int, hi: int, seen: list[Conflict], make: Any) -> Any:
        for value in range(lo, hi + 1) if hi >= lo else ():
            partial = make(value)
            # (no claim at all for a message interrupt not in the token form: kind_of)
            blockers = [b for claim in self._claims(partial) for b in self._blockers(claim)]
            if not blockers:
                return partial
            seen.extend(blockers)
        return None

    def _place_range(self, d: Any, seen: list[Conflict]) -> Any:
        if isinstance(d, BusNumberRequirement):
            length, align, lo, hi, top = d.length, 1, d.minimum_bus_number, d.maximum_bus_number, False
            limit = BUS_NUMBER_MAX

            def make(start: int) -> Any:
                return BusNumber(start, length, share=d.share, flags=d.flags)
        else:
            length, align, lo, hi = d.length, max(d.alignment, 1), d.minimum_address, d.maximum_address
            top = self.top_down
            limit = ADDRESS_MAX
            cls = {PortRequirement: Port, MemoryRequirement: Memory,
                   MemoryLargeRequirement: MemoryLarge}[type(d)]

            def make(start: int) -> Any:
                return cls(start, length, share=d.share, flags=d.flags)
        if hi < lo or length > hi - lo + 1 or lo > limit:
            return None
        # A device on a bus with windows of this kind is placed inside them, window by window.
        kind = ResourceKind.BUS_NUMBER if isinstance(d, BusNumberRequirement) else \
            (ResourceKind.PORT if isinstance(d, PortRequirement) else ResourceKind.MEMORY)
        bus = self.arbiter.parent_of(self.owner)
        windows = self.arbiter.windows(bus, kind) if bus is not None else []
        spans = sorted(((max(lo, w.start), min(hi, w.end)) for w in windows if not w.empty), reverse=top) \
            if windows else [(lo, hi)]
        spans = [(a, b) for a, b in spans if a <= b]
        for span_lo, span_hi in spans:
            found = self._search(span_lo, span_hi, length, align, top, make, seen)
            if found is not None:
                return found
        if windows and not spans:  # say why: its range lies outside every window of its bus
            seen.extend(_outside(self._claim(make(_align_up(lo, align))), windows, bus))
        return None

    def _search(self, lo: int, hi: int, length: int, align: int, top: bool, make: Any,
                seen: list[Conflict]) -> Any:
        first = _align_down(hi - max(length, 1) + 1, align) if top else _align_up(lo, align)
        start = first
        # Bounded: every step moves past at least one blocker or ends the search.
        while lo <= start and start + max(length, 1) - 1 <= hi:
            partial = make(start)
            blockers = self._blockers(self._claim(partial))
            if not blockers:
                return partial
            seen.extend(blockers)
            if top:
                lowest = min(b.holder.start for b in blockers)
                nxt = _align_down(lowest - max(length, 1), align) if lowest >= max(length, 1) else -1
                if nxt >= start:  # a zero-length blocker at start itself
                    nxt = start - align
            else:
                highest = max(b.holder.end for b in blockers)
                nxt = _align_up(max(highest + 1, start + 1), align)
            if nxt < 0:
                break
            start = nxt
        return None


def _align_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _align_down(value: int, align: int) -> int:
    return value // align * align if value >= 0 else -1


def _outside(claim: Claim, windows: Sequence[Claim], bus: Owner) -> list[Conflict]:
    """A refusal when ``claim`` does not lie inside one of its bus's ``windows`` of its
    kind; none when the bus has no window of that kind (nothing says where it decodes)."""
    if not windows or claim.kind in (ResourceKind.INTERRUPT, ResourceKind.DMA):
        return []
    for w in windows:
        if claim.empty and w.start <= claim.start <= w.end + 1 and not w.empty:
            return []
        if not claim.empty and w.start <= claim.start and claim.end <= w.end:
            return []
    spans = ", ".join(describe_range(w.descriptor) for w in windows)
    return [Conflict(claim, windows[0],
                     f"outside every {claim.kind.value} window of its bus {bus} ({spans})")]


def conflicts_between(claims: Iterable[Claim], others: Iterable[Claim]) -> list[Conflict]:
    """``claims`` against ``others`` not yet stored (another slot written in the same
    step), by the rule :meth:`Arbiter.conflicts_with` applies to stored claims."""
    others = list(others)
    return [Conflict(claim, held) for claim in claims for held in others
            if claim.kind is held.kind and collide(claim, held)]


def unique_conflicts(conflicts: Iterable[Conflict], side: str = "holder") -> list[Conflict]:
    """The first conflict per distinct ``side`` claim ("holder" or "requested"), in order."""
    out, keys = [], set()
    for c in conflicts:
        claim = getattr(c, side)
        key = (claim.owner, claim.kind, claim.start, claim.end)
        if key not in keys:
            keys.add(key)
            out.append(c)
    return out
