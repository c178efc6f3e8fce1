r"""The NT I/O manager's resource side: driver and device objects, claims, the ResourceMap.

What seed 000-003 and nt-semantics.md §2, §3 and §7 ask of it:

* :meth:`IoManager.IoReportResourceUsage` with every parameter of seed 001 (the rules are
  at the method), :meth:`IoManager.IoAssignResources` (requirements in, the claimed
  CM_RESOURCE_LIST out), and the :class:`~harness.nt.hal.SlotAllocator` interface, so the
  HAL's HalAssignSlotResources claims through the same arbiter.
* The ResourceMap in the registry is the record: a claim of driver ``D`` in class ``C``
  is the volatile key ``RESOURCEMAP\C\D`` with the values ``<device>.Raw`` and
  ``<device>.Translated`` (``.Raw``/``.Translated`` for a driver-wide list), both
  REG_RESOURCE_LIST (§2.4 MODEL).  The raw lists are what is arbitrated; the translated
  ones are produced by the HAL (HalTranslateBusAddress, HalGetInterruptVector) for the
  reader's benefit.  An :class:`IoManager` opened on a registry that already holds a
  ResourceMap takes those claims over, reading them as the ReactOS detector does (§2.3):
  every value of every ``class\owner`` key whose name does not contain ``.Translated``;
  a value that is not a readable resource list is skipped and listed in ``unreadable``.
* Conflict check and write are one step under one lock and one registry transaction
  (§9.22): two claims of one range back to back cannot both succeed, and a claim is either
  entirely in the registry and the arbiter or not at all.
* The error log (:mod:`harness.nt.errorlog`), the DriverEntry / Unload / Reinitialize life
  cycle (:meth:`IoManager.load_driver`), the ``Services\<Driver>\Parameters`` key a driver
  reads its settings from, and the claim-before-touch verifier (:mod:`harness.nt.verifier`)
  hooked into the HAL's port access.
"""

from __future__ import annotations

import contextlib
import contextvars
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Protocol

from .arbiter import (Allocation, Arbiter, Claim, Conflict, Owner, ResourceKind, claims_of,
                      conflicts_between, unique_conflicts)
from .description import IoQueryDeviceDescription as _query_description
from .errorlog import ErrorLog
from .hal import HAL_NAMES
from .errors import NtStatusError, ResourceFormatError
from .dma import DmaManager
from .interrupts import KINTERRUPT, InterruptAcceptor, InterruptManager
from .registry import RESOURCE_MAP, SERVICES, Registry, RegType
from .reactos_assign import ReactosAssignment, fixup_resource_list
from .resources import (CM_FULL_RESOURCE_DESCRIPTOR, CM_RESOURCE_LIST, CM_RESOURCE_PORT_IO,
                        INTERFACE_TYPE, IO_RESOURCE_REQUIREMENTS_LIST, Interrupt, Memory, Port)
from .status import NT_SUCCESS, NTSTATUS, IoErrorCode
from .verifier import ClaimVerifier, Violation

#: The class key a claim goes under when DriverClassName is NULL: "Other" in the DDK text
#: (seed 002); real systems are reported to use "OtherDrivers" (§2.4).
DEFAULT_RESOURCE_CLASS = "Other"
#: What a HAL's own claims are filed under (§2.4): this class, then the HAL's name
#: (:data:`harness.nt.hal.HAL_NAMES`; the PC/AT HAL's when the manager has no HAL).
HAL_RESOURCE_CLASS = "Hardware Abstraction Layer"
HAL_NAME = HAL_NAMES["legacy", "pic"]
#: IoAssignResources' search in a port or memory window (IoManager ``assign_search``):
#: from the top, as Windows' range arbiter (RtlFindRange, §3.4), or from the bottom.
ASSIGN_SEARCHES = ("top-down", "bottom-up")
RAW_SUFFIX = ".Raw"
MAX_REINITIALIZE_ROUNDS = 100
TRANSLATED_SUFFIX = ".Translated"

# ---------------------------------------------------------------------------------------
# Objects


@dataclass(eq=False)
class DeviceObject:
    r"""A device object: its name (``\Device\Serial0``), its driver and an extension."""

    name: str
    driver_object: "DriverObject"
    device_type: int = 0
    device_extension: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False

    def __repr__(self) -> str:
        return f"<DeviceObject {self.name}>"


DriverRoutine = Callable[..., Any]


@dataclass(eq=False)
class DriverObject:
    r"""A driver object: the service name (``Serial``), its ``\Driver\`` name, the entry
    points DriverEntry set (stage 3 of seed 003) and its device objects."""

    name: str
    registry_path: str
    major_function: dict[int, DriverRoutine] = field(default_factory=dict)
    driver_start_io: DriverRoutine | None = None
    driver_unload: DriverRoutine | None = None
    device_objects: list[DeviceObject] = field(default_factory=list)
    driver: Any = None            # the Python driver instance behind it
    loaded: bool = False

    @property
    def driver_name(self) -> str:
        return "\\Driver\\" + self.name

    def __repr__(self) -> str:
        return f"<DriverObject {self.driver_name}>"


class Driver(Protocol):
    """What :meth:`IoManager.load_driver` needs: a service name and DriverEntry."""

    service_name: str

    def DriverEntry(self, DriverObject: DriverObject, RegistryPath: str) -> NTSTATUS: ...


class ReportResult(NamedTuple):
    """IoReportResourceUsage: the status, then the OUT ConflictDetected."""

    status: NTSTATUS
    conflict_detected: bool


class ReportCall(NamedTuple):
    """An IoReportResourceUsage call made from outside any driver (a test, a repro
    bundle), as :attr:`IoManager.journal` keeps it: enough to make it again."""

    driver: str
    device: str | None
    resource_class: str | None
    driver_list: CM_RESOURCE_LIST | None
    device_list: CM_RESOURCE_LIST | None
    override: bool


@dataclass
class LoadResult:
    """What loading a driver did: DriverEntry's status and what the I/O manager saw."""

    name: str
    status: NTSTATUS
    driver_object: DriverObject
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return NT_SUCCESS(self.status)


@dataclass(eq=False)
class PoolBlock:
    """Memory from ExAllocatePool: who allocated it, what for, whether it is still held."""

    owner: str | None
    tag: str
    contents: Any = None
    freed: bool = False


@dataclass
class _Reinit:
    """A reinitialization routine a driver registered (IoRegisterDriverReinitialization)."""

    driver_object: DriverObject
    routine: DriverRoutine
    context: Any


# ---------------------------------------------------------------------------------------
# The I/O manager


class _SlotAllocator:
    """The HAL's allocator for HalAssignSlotResources: IoAssignResources as documented,
    whatever ``reactos_compat`` says (see IoManager.IoAssignResources)."""

    def __init__(self, io: IoManager) -> None:
        self.io = io

    def IoAssignResources(self, RegistryPath: str, DriverClassName: str | None, DriverObject: Any,
                          DeviceObject: Any, RequestedResources: IO_RESOURCE_REQUIREMENTS_LIST,
                          ) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        return self.io._assign_documented(RegistryPath, DriverClassName, DriverObject, DeviceObject,
                                          RequestedResources)


class IoManager:
    """One machine's I/O manager over a registry and (optionally) a HAL.

    ``hal`` translates the lists written to ``.Translated``, reports its own resources
    (:meth:`report_hal_resources`) and, when given, has this manager installed as its
    allocator and the claim verifier attached to its port access.  Without a HAL the
    translated list is a copy of the raw one.
    """

    def __init__(self, registry: Registry, hal: Any = None, *, strict_verifier: bool = False,
                 default_class: str = DEFAULT_RESOURCE_CLASS, reactos_compat: bool = False,
                 assign_search: str = "top-down") -> None:
        if assign_search not in ASSIGN_SEARCHES:
            raise ValueError(f"assign_search must be one of {', '.join(ASSIGN_SEARCHES)}, not {assign_search!r}")
        #: Where IoAssignResources starts in a port or memory window (§3.4 MODEL: a policy;
        #: NT4's direction is not confirmed).  IRQs, DMA channels, bus numbers: ascending.
        self.assign_search = assign_search
        self.registry = registry
        self.hal = hal
        self.default_class = default_class
        #: §2.5's switch: IoReportResourceUsage as ReactOS has it (see that method).
        self.reactos_compat = reactos_compat
        self.arbiter = Arbiter()
        self.error_log = ErrorLog()
        self.drivers: dict[str, DriverObject] = {}
        self.unreadable: list[str] = []
        self.load_results: list[LoadResult] = []
        #: What was done to this manager from outside the drivers, in order: the
        #: IoReportResourceUsage calls (:class:`ReportCall`) and whatever its owner adds
        #: (the test bed's driver loads), so a scenario can be written down and replayed.
        self.journal: list[Any] = []
        self._violations: list[Violation] = []
        self._reinit: list[_Reinit] = []
        self._staged_reinit: list[_Reinit] | None = None
        self._reinit_counts: dict[tuple[int, DriverRoutine], int] = {}
        self.pool: list[PoolBlock] = []
        self._current: contextvars.ContextVar[DriverObject | None] = \
            contextvars.ContextVar("current_driver", default=None)
        self.verifier = ClaimVerifier(self.arbiter, self.current_driver_name, strict=strict_verifier,
                                      sink=self._violations.append)
        self._take_over_resource_map()
        #: Interrupt objects (IoConnectInterrupt), on the PIC HAL, or the APIC HAL over a bus
        #: whose CPU takes interrupts (the guest agent); ISRs run attributed to
        #: the driver that connected them.
        self.interrupts: InterruptManager | None = None
        #: Adapter channels and common buffers (IoAllocateAdapterChannel, HalAllocateCommonBuffer).
        self.dma: DmaManager | None = DmaManager(hal.bus) if hal is not None else None
        #: What each IoAssignResources under ``reactos_compat`` did (its notes say why).
        self.reactos_assignments: list[ReactosAssignment] = []
        if hal is not None:
            hal.allocator = _SlotAllocator(self)
            hal.add_port_hook(self.verifier)
            if hal.interrupt_model == "pic" or isinstance(hal.bus, InterruptAcceptor):
                self.interrupts = InterruptManager(
                    hal, wrap_call=lambda i: self.running(i.owner) if i.owner is not None else contextlib.nullcontext())

    # ------------------------------------------------------------------ context
    def current_driver_name(self) -> str | None:
        current = self._current.get()
        return current.name if current is not None else None

    @contextlib.contextmanager
    def running(self, driver_object: DriverObject) -> Iterator[None]:
        """Run driver code: port accesses made inside are attributed to this driver."""
        token = self._current.set(driver_object)
        try:
            yield
        finally:
            self._current.reset(token)

    @property
    def violations(self) -> list[Violation]:
        return list(self._violations)

    # ------------------------------------------------------------------ ResourceMap
    def _take_over_resource_map(self) -> None:
        if not self.registry.key_exists(RESOURCE_MAP):
            return
        for class_name in self.registry.subkeys(RESOURCE_MAP):
            class_path = _sub(RESOURCE_MAP, class_name)
            for owner_name in self.registry.subkeys(class_path):
                owner_path = _sub(class_path, owner_name)
                for value in self.registry.values(owner_path):
                    if TRANSLATED_SUFFIX.lower() in value.name.lower():
                        continue
                    where = f"{owner_path}\\{value.name}"
                    try:
                        resources = CM_RESOURCE_LIST.unpack(value.data, self.registry.arch)
                    except ResourceFormatError as exc:
                        self.unreadable.append(f"{where}: {exc}")
                        continue
                    owner = _owner_of(class_name, owner_name, value.name)
                    self.arbiter.replace(owner, self.arbiter.claims(owner) + claims_of(owner, resources))

    def _value_base(self, owner: Owner) -> str:
        return owner.device or ""

    def _owner_key(self, owner: Owner) -> str:
        return _sub(RESOURCE_MAP, owner.resource_class, owner.driver)

    def _write(self, *slots: tuple[Owner, CM_RESOURCE_LIST]) -> None:
        """Store (or, for an empty list, erase) whole slots: all registry writes in one
        transaction first, then the arbiter, so a failed write changes neither."""
        with self.registry.transaction():
            for owner, raw in slots:
                self._store(owner, raw)
        for owner, raw in slots:
            self.arbiter.replace(owner, claims_of(owner, raw))

    def _store(self, owner: Owner, raw: CM_RESOURCE_LIST) -> None:
        key = self._owner_key(owner)
        base = self._value_base(owner)
        if raw.count == 0:
            if self.registry.key_exists(key):
                self.registry.delete_value(key, base + RAW_SUFFIX, missing_ok=True)
                self.registry.delete_value(key, base + TRANSLATED_SUFFIX, missing_ok=True)
                if not self.registry.values(key) and not self.registry.subkeys(key):
                    self.registry.delete_key(key)
            return
        self.registry.create_key(key, volatile=True)
        packed = raw.pack(self.registry.arch)
        translated = self.translate(raw)
        self.registry.set_value(key, base + RAW_SUFFIX, packed, RegType.REG_RESOURCE_LIST)
        self.registry.set_value(key, base + TRANSLATED_SUFFIX, packed if translated is raw else translated,
                                RegType.REG_RESOURCE_LIST)

    def translate(self, raw: CM_RESOURCE_LIST) -> CM_RESOURCE_LIST:
        """The ``.Translated`` twin of a raw list: each port and memory range through
        HalTranslateBusAddress, each interrupt through HalGetInterruptVector (§2.4).  A
        descriptor the HAL cannot translate is kept as it is, so both lists keep one size.
        What translates to itself (a PC's ports) is the raw object itself, and a list that
        does entirely is ``raw``: no equal copies to build and pack again."""
        if self.hal is None:
            return raw
        fulls = []
        for full in raw.descriptors:
            partials = [self._translate_one(full, p) for p in full.partials]
            prl = full.partial_resource_list
            if (prl.version, prl.revision) == (1, 1) and all(map(operator.is_, partials, full.partials)):
                fulls.append(full)
            else:
                fulls.append(CM_FULL_RESOURCE_DESCRIPTOR.of(full.interface_type, full.bus_number, *partials))
        if all(map(operator.is_, fulls, raw.descriptors)):
            return raw
        return CM_RESOURCE_LIST(tuple(fulls))

    def _translate_one(self, full: CM_FULL_RESOURCE_DESCRIPTOR, p: Any) -> Any:
        if isinstance(p, (Port, Memory)):
            space = 1 if isinstance(p, Port) else 0
            t = self.hal.HalTranslateBusAddress(full.interface_type, full.bus_number, p.start, space)
            if not t:
                return p
            kind = Port if t.address_space == 1 else Memory
            if kind is Port:
                flags = p.flags | CM_RESOURCE_PORT_IO
            else:
                flags = p.flags & ~CM_RESOURCE_PORT_IO if isinstance(p, Port) else p.flags
            if type(p) is kind and t.translated_address == p.start and flags == p.flags and not p.union_tail:
                return p  # what the HAL would build is this very value
            return kind(t.translated_address, p.length, share=p.share, flags=flags)
        if isinstance(p, Interrupt):
            v = self.hal.HalGetInterruptVector(full.interface_type, full.bus_number, p.level or p.vector,
                                               p.vector or p.level)
            if not v:
                return p
            return Interrupt(v.irql, v.vector, v.affinity, share=p.share, flags=p.flags)
        return p

    def record_assignment(self, owner: Owner, resources: CM_RESOURCE_LIST) -> None:
        """File an assignment the caller has already arbitrated against this manager's
        arbiter (the PnP manager, :mod:`harness.nt.pnp`): ``.Raw`` and ``.Translated``
        written as one slot, no conflict check here; an empty list erases the slot."""
        with self.arbiter.lock:
            self._write((owner, resources))

    @property
    def hal_name(self) -> str:
        """The name the HAL's own claims are filed under: its own, or the PC/AT HAL's."""
        return getattr(self.hal, "name", HAL_NAME)

    def report_hal_resources(self, resources: CM_RESOURCE_LIST) -> None:
        """The HAL's own claims, under ``Hardware Abstraction Layer\\<HAL name>`` (§2.4)."""
        with self.arbiter.lock:
            self._write((Owner(self.hal_name, None, HAL_RESOURCE_CLASS), resources))

    # ------------------------------------------------------------------ devices
    def IoCreateDevice(self, DriverObject: DriverObject, DeviceName: str, DeviceType: int = 0,
                       ) -> tuple[NTSTATUS, DeviceObject | None]:
        taken = {d.name.lower() for drv in self.drivers.values() for d in drv.device_objects}
        taken |= {d.name.lower() for d in DriverObject.device_objects}
        if DeviceName.lower() in taken:
            return NTSTATUS.STATUS_OBJECT_NAME_COLLISION, None
        device = DeviceObject(DeviceName, DriverObject, DeviceType)
        DriverObject.device_objects.append(device)
        return NTSTATUS.STATUS_SUCCESS, device

    def IoDeleteDevice(self, DeviceObject: DeviceObject) -> None:
        if DeviceObject in DeviceObject.driver_object.device_objects:
            DeviceObject.driver_object.device_objects.remove(DeviceObject)
        DeviceObject.deleted = True

    # ------------------------------------------------------------------ claims
    def IoReportResourceUsage(self, DriverClassName: str | None, DriverObject: DriverObject | None,
                              DriverList: CM_RESOURCE_LIST | bytes | None, DriverListSize: int,
                              DeviceObject: DeviceObject | None,
                              DeviceList: CM_RESOURCE_LIST | bytes | None, DeviceListSize: int,
                              OverrideConflict: bool) -> ReportResult:
        """Claim (or, with a Count of zero, release) resources in the ResourceMap.

        * At least one of (DriverObject, DriverList, DriverListSize) and (DeviceObject,
          DeviceList, DeviceListSize) must be complete: non-null and non-zero; otherwise,
          STATUS_INVALID_PARAMETER; a size smaller than its list or a malformed list,
          STATUS_UNSUCCESSFUL (§2.1: "bad list").  Both sets may be given; both are
          then claimed.
        * ``reactos_compat``: after those checks, STATUS_SUCCESS with ConflictDetected
          FALSE, and nothing written or logged — what ReactOS does (§2.2, §2.3: its
          IoReportResourceUsage writes no ResourceMap entry and its detector, in the
          non-silent mode this call uses, answers "no conflict").
        * The class key is DriverClassName, or :data:`DEFAULT_RESOURCE_CLASS` when None;
          a new name creates its key.
        * The lists are checked against every claim in the ResourceMap except the slots
          this call replaces (the driver's driver-wide list, and this device's list),
          and the device list against the driver list: two slots, as in two calls.
        * No conflict: the lists are written (replacing the earlier ones; Count 0 erases),
          STATUS_SUCCESS, ConflictDetected FALSE.
        * Conflict, OverrideConflict FALSE: one error-log entry per conflicting resource
          naming the holder, nothing written, STATUS_CONFLICTING_ADDRESSES, TRUE.
        * Conflict, OverrideConflict TRUE: written anyway, nothing logged, STATUS_SUCCESS,
          TRUE (the caller must not use the conflicting resources, seed 002).
        """
        if DriverObject is None:
            return ReportResult(NTSTATUS.STATUS_INVALID_PARAMETER, False)
        requests: list[tuple[Owner, CM_RESOURCE_LIST]] = []
        resource_class = DriverClassName if DriverClassName else self.default_class
        if not _one_key_name(resource_class, DriverObject.name):
            return ReportResult(NTSTATUS.STATUS_OBJECT_NAME_INVALID, False)
        try:
            if DriverList is not None and DriverListSize:
                requests.append((Owner(DriverObject.name, None, resource_class),
                                 self._list_argument(DriverList, DriverListSize, "DriverList")))
            if DeviceObject is not None and DeviceList is not None and DeviceListSize:
                if DeviceObject.driver_object is not DriverObject:
                    return ReportResult(NTSTATUS.STATUS_INVALID_PARAMETER, False)
                requests.append((Owner(DriverObject.name, DeviceObject.name, resource_class),
                                 self._list_argument(DeviceList, DeviceListSize, "DeviceList")))
        except ResourceFormatError:
            return ReportResult(NTSTATUS.STATUS_UNSUCCESSFUL, False)  # a bad list (§2.1 item 6)
        if not requests:
            return ReportResult(NTSTATUS.STATUS_INVALID_PARAMETER, False)
        if self.current_driver_name() is None:
            lists = dict((owner.device is not None, lst) for owner, lst in requests)
            self.journal.append(ReportCall(DriverObject.name, DeviceObject.name if True in lists else None,
                                           DriverClassName, lists.get(False), lists.get(True),
                                           bool(OverrideConflict)))
        if self.reactos_compat:  # §2.2: its detector answers "no conflict"; nothing is written
            return ReportResult(NTSTATUS.STATUS_SUCCESS, False)
        with self.arbiter.lock:
            replaced = [owner for owner, _ in requests]
            conflicts = [c for owner, resources in requests
                         for c in self.arbiter.find_conflicts(claims_of(owner, resources), replaced)]
            if len(requests) == 2:  # the two slots of one call meet as if claimed one after the other
                (driver_slot, driver_list), (device_slot, device_list) = requests
                conflicts += conflicts_between(claims_of(device_slot, device_list),
                                               claims_of(driver_slot, driver_list))
            if conflicts and not OverrideConflict:
                for conflict in _first_per_resource(conflicts):
                    self.error_log.log_conflict(conflict)
                return ReportResult(NTSTATUS.STATUS_CONFLICTING_ADDRESSES, True)
            self._write(*requests)
            return ReportResult(NTSTATUS.STATUS_SUCCESS, bool(conflicts))

    def _list_argument(self, value: CM_RESOURCE_LIST | bytes, size: int, name: str) -> CM_RESOURCE_LIST:
        """A list argument in either form: a CM_RESOURCE_LIST, or the caller's buffer whose
        first ``size`` bytes must hold exactly one list."""
        arch = self.registry.arch
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if size > len(data):
                raise ResourceFormatError(f"{name}Size {size} is larger than the buffer ({len(data)})",
                                          field=f"{name}Size")
            return CM_RESOURCE_LIST.unpack(data[:size], arch)
        if not isinstance(value, CM_RESOURCE_LIST):
            raise ResourceFormatError(f"{name} must be a CM_RESOURCE_LIST or bytes", field=name)
        if size < value.size(arch):
            raise ResourceFormatError(f"{name}Size {size} is smaller than the list ({value.size(arch)})",
                                      field=f"{name}Size")
        return value

    def IoAssignResources(self, RegistryPath: str, DriverClassName: str | None,
                          DriverObject: DriverObject | Any, DeviceObject: DeviceObject | Any,
                          RequestedResources: IO_RESOURCE_REQUIREMENTS_LIST | None,
                          ) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        """Choose and claim resources from a requirements list (§3.1).

        The slot is the device's when DeviceObject is given, else the driver's (a
        RegistryPath other than the driver's own Services key names a per-device slot).
        RequestedResources None, with no alternative lists, or whose first list is empty
        erases the slot's claim (STATUS_SUCCESS, no list).  Otherwise the arbiter places
        it (from the top of each port or memory window, or the bottom: ``assign_search``)
        against every other claim (the caller's previous assignment in this slot may
        move); for a PCI function the ranges the hardware already decodes for other
        devices are avoided too.  Success: the raw CM_RESOURCE_LIST is written to the
        ResourceMap and returned.  No list fits: STATUS_CONFLICTING_ADDRESSES with an
        IO_ERR_*_RESOURCE_CONFLICT entry per holder that blocked the first list, or
        STATUS_INSUFFICIENT_RESOURCES when nothing was in the way (the windows are too
        small).  Nothing is claimed on failure.

        ``reactos_compat``: what ReactOS does instead (§3.2, §3.3,
        :mod:`harness.nt.reactos_assign`): no requirements (None, no alternative lists, or
        an empty first list) is STATUS_NOT_IMPLEMENTED; otherwise its allocator runs against
        the ResourceMap and its status and list are returned as they are, and nothing is
        written or logged.  (HalAssignSlotResources keeps the documented path: ReactOS's
        does not call IoAssignResources at all, §3.5, and that is not modelled.)
        """
        if self.reactos_compat:
            return self._assign_like_reactos(RequestedResources)
        return self._assign_documented(RegistryPath, DriverClassName, DriverObject, DeviceObject,
                                       RequestedResources)

    def _assign_like_reactos(self, req: IO_RESOURCE_REQUIREMENTS_LIST | None,
                             ) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        if req is None or not req.lists or not req.lists[0].descriptors:
            return NTSTATUS.STATUS_NOT_IMPLEMENTED, None  # "release" is not implemented there
        with self.arbiter.lock:
            result = fixup_resource_list(req, [c.descriptor for c in self.arbiter.claims()])
        self.reactos_assignments.append(result)
        return result.status, result.resources

    def _assign_documented(self, RegistryPath: str, DriverClassName: str | None,
                           DriverObject: DriverObject | Any, DeviceObject: DeviceObject | Any,
                           RequestedResources: IO_RESOURCE_REQUIREMENTS_LIST | None,
                           ) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        owner = self._assign_owner(RegistryPath, DriverClassName, DriverObject, DeviceObject)
        if not _one_key_name(owner.resource_class, owner.driver):
            return NTSTATUS.STATUS_OBJECT_NAME_INVALID, None
        req = RequestedResources
        with self.arbiter.lock:
            if req is None or not req.lists or not req.lists[0].descriptors:
                self._write((owner, CM_RESOURCE_LIST()))
                return NTSTATUS.STATUS_SUCCESS, None
            allocation = self.arbiter.allocate(owner, req, reserved=self._decoded_elsewhere(req, owner),
                                               top_down=self.assign_search == "top-down")
            if allocation.resources is None:
                return self._allocation_failed(allocation), None
            self._write((owner, allocation.resources))
            return NTSTATUS.STATUS_SUCCESS, allocation.resources

    def _assign_owner(self, registry_path: str, class_name: str | None, driver_object: Any,
                      device_object: Any) -> Owner:
        resource_class = class_name if class_name else self.default_class
        path = (registry_path or "").rstrip("\\")
        leaf = path.rsplit("\\", 1)[-1]
        driver = getattr(driver_object, "name", None) or leaf
        if isinstance(device_object, DeviceObject):
            return Owner(driver, device_object.name, resource_class)
        if path and path.lower() != self.service_key(driver).lower():
            return Owner(driver, leaf, resource_class)
        return Owner(driver, None, resource_class)

    def _decoded_elsewhere(self, req: IO_RESOURCE_REQUIREMENTS_LIST, owner: Owner) -> list[Claim]:
        if self.hal is None or req.interface_type != INTERFACE_TYPE.PCIBus:
            return []
        busy = Owner("<decoded by the hardware>", None, "")
        out = []
        for span in self.hal.busy_ranges(req):
            length = span.end - span.start + 1
            d = Port(span.start, length) if span.space == "io" else Memory(span.start, length)
            out.append(Claim(busy, ResourceKind.PORT if span.space == "io" else ResourceKind.MEMORY,
                             span.start, span.end, d))
        return out

    def _allocation_failed(self, allocation: Allocation) -> NTSTATUS:
        first = allocation.attempts[0] if allocation.attempts else None
        real = [c for c in (first.conflicts if first else []) if not c.holder.owner.driver.startswith("<")]
        if real:
            for conflict in _first_per_resource(real):
                self.error_log.log_conflict(conflict, allocation=True)
            return NTSTATUS.STATUS_CONFLICTING_ADDRESSES
        if first is not None and first.conflicts:
            return NTSTATUS.STATUS_CONFLICTING_ADDRESSES
        return NTSTATUS.STATUS_INSUFFICIENT_RESOURCES

    def release(self, owner: Owner) -> None:
        with self.arbiter.lock:
            self._write((owner, CM_RESOURCE_LIST()))

    def claims_of_driver(self, name: str) -> list[Claim]:
        return [c for c in self.arbiter.claims() if c.owner.driver == name]

    # ------------------------------------------------------------------ interrupts
    def IoConnectInterrupt(self, ServiceRoutine: Any, ServiceContext: Any, SpinLock: Any, Vector: int,
                           Irql: int, SynchronizeIrql: int, InterruptMode: int, ShareVector: bool,
                           ProcessorEnableMask: int, FloatingSave: bool = False, *,
                           name: str = "") -> tuple[NTSTATUS, KINTERRUPT | None]:
        """:meth:`harness.nt.interrupts.InterruptManager.IoConnectInterrupt`, owned by the
        driver running now (its ISR's register accesses are attributed to it)."""
        if self.interrupts is None:
            return NTSTATUS.STATUS_NOT_SUPPORTED, None
        return self.interrupts.IoConnectInterrupt(ServiceRoutine, ServiceContext, SpinLock, Vector, Irql,
                                                  SynchronizeIrql, InterruptMode, ShareVector,
                                                  ProcessorEnableMask, FloatingSave, name=name,
                                                  owner=self._current.get())

    def IoDisconnectInterrupt(self, InterruptObject: KINTERRUPT) -> None:
        assert self.interrupts is not None
        self.interrupts.IoDisconnectInterrupt(InterruptObject)

    def interrupts_of(self, driver_object: DriverObject) -> list[KINTERRUPT]:
        if self.interrupts is None:
            return []
        return [i for chain in self.interrupts.vectors.values() for i in chain if i.owner is driver_object]

    # ------------------------------------------------------------------ description
    def IoQueryDeviceDescription(self, *args: Any, **kwargs: Any) -> NTSTATUS:
        """:func:`harness.nt.description.IoQueryDeviceDescription` on this registry."""
        return _query_description(self.registry, *args, **kwargs)

    # ------------------------------------------------------------------ driver life cycle
    def service_key(self, name: str) -> str:
        return _sub(SERVICES, name)

    def install_service(self, name: str, parameters: Mapping[str, Any] | None = None) -> str:
        r"""Create ``Services\<name>`` with its ``Parameters`` subkey holding ``parameters``
        (int → REG_DWORD, str → REG_SZ, bytes → REG_BINARY, a mapping → a subkey),
        replacing earlier parameters; returns the service key path."""
        key = self.service_key(name)
        params = _sub(key, "Parameters")
        with self.registry.transaction():
            self.registry.create_key(key)
            self.registry.set_value(key, "Type", 1, RegType.REG_DWORD)   # SERVICE_KERNEL_DRIVER
            self.registry.set_value(key, "Start", 1, RegType.REG_DWORD)  # SERVICE_SYSTEM_START
            if self.registry.key_exists(params):
                self.registry.delete_key(params, recursive=True)
            self.registry.create_key(params)
            _write_parameters(self.registry, params, parameters or {})
        return key

    def load_driver(self, driver: Driver, parameters: Mapping[str, Any] | None = None) -> LoadResult:
        """Install the driver's service key, create its driver object and run DriverEntry.

        On a failure status the seed 003 rules are checked: everything must have been
        released (claims, device objects) and no Reinitialize routine registered; what was
        left is recorded as a violation and then cleaned up by the I/O manager, as NT
        unloads such a driver."""
        name = driver.service_name
        if name in self.drivers and self.drivers[name].loaded:
            raise NtStatusError(f"driver {name} is already loaded", NTSTATUS.STATUS_OBJECT_NAME_COLLISION)
        registry_path = self.install_service(name, parameters)
        driver_object = DriverObject(name, registry_path, driver=driver)
        self.drivers[name] = driver_object
        before = len(self._violations)
        self._staged_reinit = []
        try:
            with self.running(driver_object):
                status = NTSTATUS(driver.DriverEntry(driver_object, registry_path))
        finally:
            staged, self._staged_reinit = self._staged_reinit, None
        handed_on = {id(entry.context) for entry in staged}
        if NT_SUCCESS(status):
            driver_object.loaded = True
            self._reinit.extend(staged)
            self._check_pool(name, "DriverEntry returned STATUS_SUCCESS", keep=handed_on)
        else:
            if staged:
                self._violate("reinitialize-on-failure", name,
                              f"DriverEntry registered a Reinitialize routine and returned {status.name}")
            self._check_pool(name, f"DriverEntry returned {status.name}")
            self._sweep(driver_object, f"DriverEntry returned {status.name}")
        result = LoadResult(name, status, driver_object, self._violations[before:])
        self.load_results.append(result)
        return result

    def unload_driver(self, name: str) -> list[Violation]:
        """Call the driver's Unload routine; its claims must be gone afterwards (seed 002)."""
        driver_object = self.drivers.get(name)
        if driver_object is None or not driver_object.loaded:
            raise NtStatusError(f"driver {name} is not loaded", NTSTATUS.STATUS_OBJECT_NAME_NOT_FOUND)
        before = len(self._violations)
        if driver_object.driver_unload is not None:
            with self.running(driver_object):
                driver_object.driver_unload(driver_object)
        self._sweep(driver_object, "after Unload")
        driver_object.loaded = False
        self._reinit = [r for r in self._reinit if r.driver_object is not driver_object]
        return self._violations[before:]

    def _sweep(self, driver_object: DriverObject, when: str) -> None:
        left = self.claims_of_driver(driver_object.name)
        if left:
            self._violate("claims-left", driver_object.name,
                          f"{when}, {len(left)} claimed resource(s) still in the ResourceMap: "
                          + "; ".join(c.describe() for c in left[:4]))
            with self.arbiter.lock:
                self._write(*((owner, CM_RESOURCE_LIST()) for owner in sorted({c.owner for c in left}, key=lambda o: o.sort_key)))
        connected = self.interrupts_of(driver_object)
        if connected:
            self._violate("interrupts-left", driver_object.name,
                          f"{when}, interrupt objects still connected: " + ", ".join(i.name for i in connected))
            for interrupt in connected:
                self.IoDisconnectInterrupt(interrupt)
        if driver_object.device_objects:
            self._violate("devices-left", driver_object.name,
                          f"{when}, device objects not deleted: "
                          + ", ".join(d.name for d in driver_object.device_objects))
            for device in list(driver_object.device_objects):
                self.IoDeleteDevice(device)

    def _violate(self, kind: str, driver: str, detail: str) -> None:
        self._violations.append(Violation(kind, driver, detail))

    def IoRegisterDriverReinitialization(self, DriverObject: DriverObject, DriverReinitializationRoutine: DriverRoutine,
                                         Context: Any) -> None:
        """Queue a Reinitialize routine; it runs after every driver has loaded, and only
        if the DriverEntry that registered it returns success (seed 003).  A Context that
        is pool memory (the configuration) becomes the routine's to free: one it neither
        frees nor passes on by queueing itself again is a "reinitialize-leak"."""
        entry = _Reinit(DriverObject, DriverReinitializationRoutine, Context)
        if self._staged_reinit is not None and self._current.get() is DriverObject:
            self._staged_reinit.append(entry)
        else:
            self._reinit.append(entry)

    def run_reinitialization(self, max_rounds: int = MAX_REINITIALIZE_ROUNDS) -> int:
        """Call the queued Reinitialize routines; a routine may queue itself again and is
        then called again with its Count one higher, as in NT.  Returns how many calls
        were made; more than ``max_rounds`` rounds is a driver bug (NtStatusError)."""
        calls = 0
        for _ in range(max_rounds):
            if not self._reinit:
                return calls
            pending, self._reinit = self._reinit, []
            for entry in pending:
                key = (id(entry.driver_object), entry.routine)
                count = self._reinit_counts.get(key, 0) + 1
                self._reinit_counts[key] = count
                calls += 1
                with self.running(entry.driver_object):
                    entry.routine(entry.driver_object, entry.context, count)
                requeued = any(r.context is entry.context for r in self._reinit)
                if isinstance(entry.context, PoolBlock) and not entry.context.freed and not requeued:
                    self._violate("reinitialize-leak", entry.driver_object.name,
                                  f"the Reinitialize routine did not free the configuration memory it was "
                                  f"given ({entry.context.tag}) and did not queue itself again")
                    self.ExFreePool(entry.context)
        raise NtStatusError(f"Reinitialize routines still re-queueing after {max_rounds} rounds",
                            NTSTATUS.STATUS_UNSUCCESSFUL)

    # ------------------------------------------------------------------ pool
    def ExAllocatePool(self, tag: str, contents: Any = None) -> PoolBlock:
        """Memory for the running driver (its DriverEntry's configuration, seed 003 stage 1)."""
        block = PoolBlock(self.current_driver_name(), tag, contents)
        self.pool.append(block)
        return block

    def ExFreePool(self, block: PoolBlock) -> None:
        if block.freed or block not in self.pool:
            raise NtStatusError(f"ExFreePool of {block.tag!r}: not allocated (double free?)",
                                NTSTATUS.STATUS_INVALID_PARAMETER)
        block.freed = True
        self.pool.remove(block)

    def _check_pool(self, driver: str, when: str, keep: set[int] = frozenset()) -> None:
        """Seed 003: initialisation memory is freed before DriverEntry returns, unless it
        went to IoRegisterDriverReinitialization (then the Reinitialize routine frees it)."""
        left = [b for b in self.pool if b.owner == driver and id(b) not in keep]
        if left:
            self._violate("pool-left", driver, f"{when} with {len(left)} pool allocation(s) not freed: "
                          + ", ".join(b.tag for b in left))
            for block in left:
                self.ExFreePool(block)

    def error(self, driver_object: DriverObject, code: IoErrorCode, message: str,
              device: DeviceObject | None = None, status: NTSTATUS = NTSTATUS.STATUS_SUCCESS) -> None:
        """IoWriteErrorLogEntry for a driver's own errors (not conflicts)."""
        self.error_log.log(code, message, driver=driver_object.name,
                           device=device.name if device else None, final_status=status)


def _one_key_name(*names: object) -> bool:
    """Whether each name can be one ResourceMap key: a class or driver name holding '\\'
    would make a nested key that the take-over on reopen reads as another owner."""
    return all(isinstance(n, str) and n and "\\" not in n for n in names)


def _sub(path: str, *names: str) -> str:
    return "\\".join((path, *names))


def _owner_of(class_name: str, owner_name: str, value_name: str) -> Owner:
    base = value_name[:-len(RAW_SUFFIX)] if value_name.lower().endswith(RAW_SUFFIX.lower()) else value_name
    return Owner(owner_name, base or None, class_name)


def _first_per_resource(conflicts: list[Conflict]) -> list[Conflict]:
    """The first holder of each requested resource (the detector's first hit, §2.3)."""
    return unique_conflicts(conflicts, "requested")


def _write_parameters(registry: Registry, key: str, parameters: Mapping[str, Any]) -> None:
    for name, value in parameters.items():
        if isinstance(value, Mapping):
            sub = _sub(key, str(name))
            registry.create_key(sub)
            _write_parameters(registry, sub, value)
        elif isinstance(value, CM_RESOURCE_LIST):   # a resource list setup wrote for the driver
            registry.set_value(key, str(name), value, RegType.REG_RESOURCE_LIST)
        elif isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
            raise NtStatusError(f"parameter {name!r}: expected an integer, string, bytes, resource list or mapping, "
                                f"got {value!r}", NTSTATUS.STATUS_INVALID_PARAMETER)
        elif isinstance(value, int):
            registry.set_value(key, str(name), value, RegType.REG_DWORD)
        else:
            registry.set_value(key, str(name), value)


__all__ = ["IoManager", "DriverObject", "DeviceObject", "Driver", "ReportResult", "LoadResult", "PoolBlock",
           "DEFAULT_RESOURCE_CLASS", "HAL_RESOURCE_CLASS", "HAL_NAME", "ASSIGN_SEARCHES", "RAW_SUFFIX",
           "TRANSLATED_SUFFIX"]
