r"""IoQueryDeviceDescription over ``\Registry\Machine\Hardware\Description`` (nt-semantics.md §5.2).

A driver names what it looks for — a bus type (required) and optionally a bus number, a
controller type and number, a peripheral type and number — and its callout routine is
called once per match with what the Description tree holds there::

    def callout(Context, PathName, BusType, BusNumber, BusInformation,
                ControllerType, ControllerNumber, ControllerInformation,
                PeripheralType, PeripheralNumber, PeripheralInformation) -> NTSTATUS

Each ``*Information`` is a list of three entries indexed by :data:`IoQueryDeviceIdentifier`,
:data:`IoQueryDeviceConfigurationData` and :data:`IoQueryDeviceComponentInformation`: the
:class:`~harness.nt.registry.RegistryValue` (what KEY_VALUE_FULL_INFORMATION carries) or
None when that value is missing.  They are only valid during the call, as in NT (here:
do not rely on them afterwards either).

The walk follows ReactOS ``IopQueryBusDescription`` (§5.2): from
``HARDWARE\DESCRIPTION\System`` only subkeys named MultifunctionAdapter, EisaAdapter or
TcAdapter are buses; a numbered instance matches when its Configuration Data is present,
non-empty and names ``BusType``; matches are counted from 0 per bus type in enumeration
order (buses nested below a bus continue the count) and that count is the bus number.
Controllers are ``<bus>\<ControllerTypeName>\<n>`` with ``n`` the requested number or
0..count-1; peripherals one level deeper the same way (a controller without that
peripheral type is passed over).  A callout status that is not NT_SUCCESS stops the walk
and is returned.  MODEL: otherwise the last callout status is returned, or
STATUS_OBJECT_NAME_NOT_FOUND when nothing matched; no BusType → STATUS_NOT_IMPLEMENTED.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Optional

from .errors import KeyNotFoundError
from .registry import DESCRIPTION_SYSTEM, Registry, RegistryValue
from .resources import CM_FULL_RESOURCE_DESCRIPTOR
from .status import NT_SUCCESS, NTSTATUS


class CONFIGURATION_TYPE(enum.IntEnum):
    """Description-tree node kinds (§5.1), with NT's member names; the key names used in
    the tree are :data:`CONFIGURATION_TYPE_NAMES` (ReactOS's table: "System",
    "MultifunctionAdapter", "PrimaryICache", "CdRomController", ...)."""

    ArcSystem = 0
    CentralProcessor = 1
    FloatingPointProcessor = 2
    PrimaryIcache = 3
    PrimaryDcache = 4
    SecondaryIcache = 5
    SecondaryDcache = 6
    SecondaryCache = 7
    EisaAdapter = 8
    TcAdapter = 9
    ScsiAdapter = 10
    DtiAdapter = 11
    MultiFunctionAdapter = 12
    DiskController = 13
    TapeController = 14
    CdromController = 15
    WormController = 16
    SerialController = 17
    NetworkController = 18
    DisplayController = 19
    ParallelController = 20
    PointerController = 21
    KeyboardController = 22
    AudioController = 23
    OtherController = 24
    DiskPeripheral = 25
    FloppyDiskPeripheral = 26
    TapePeripheral = 27
    ModemPeripheral = 28
    MonitorPeripheral = 29
    PrinterPeripheral = 30
    PointerPeripheral = 31
    KeyboardPeripheral = 32
    TerminalPeripheral = 33
    OtherPeripheral = 34
    LinePeripheral = 35
    NetworkPeripheral = 36
    SystemMemory = 37
    DockingInformation = 38
    RealModeIrqRoutingTable = 39
    RealModePCIEnumeration = 40
    MaximumType = 41


globals().update(CONFIGURATION_TYPE.__members__)

#: Key names used in the tree, by type (ReactOS's name table; "System" for ArcSystem).
CONFIGURATION_TYPE_NAMES = {t: t.name for t in CONFIGURATION_TYPE}
CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE.ArcSystem] = "System"
CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE.PrimaryIcache] = "PrimaryICache"
CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE.PrimaryDcache] = "PrimaryDCache"
CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE.SecondaryIcache] = "SecondaryICache"
CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE.SecondaryDcache] = "SecondaryDCache"
CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE.CdromController] = "CdRomController"
CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE.MultiFunctionAdapter] = "MultifunctionAdapter"
CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE.MaximumType] = "Undefined"

IoQueryDeviceIdentifier = 0
IoQueryDeviceConfigurationData = 1
IoQueryDeviceComponentInformation = 2
_VALUE_NAMES = ("Identifier", "Configuration Data", "Component Information")
_BUS_KEYS = ("MultifunctionAdapter", "EisaAdapter", "TcAdapter")

Information = list[Optional[RegistryValue]]
Callout = Callable[[Any, str, int, int, Information, Optional[int], Optional[int], Optional[Information],
                    Optional[int], Optional[int], Optional[Information]], int]


def _information(registry: Registry, path: str) -> Information:
    out: Information = []
    for name in _VALUE_NAMES:
        try:
            out.append(registry.get_value(path, name))
        except Exception:
            out.append(None)
    return out


def _bus_type(info: Information) -> int | None:
    value = info[IoQueryDeviceConfigurationData]
    if value is None or not value.data:
        return None
    try:
        full = value.value
    except Exception:
        return None
    return int(full.interface_type) if isinstance(full, CM_FULL_RESOURCE_DESCRIPTOR) else None


class _Stop(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def IoQueryDeviceDescription(registry: Registry, BusType: int | None, BusNumber: int | None,
                             ControllerType: int | None, ControllerNumber: int | None,
                             PeripheralType: int | None, PeripheralNumber: int | None,
                             CalloutRoutine: Callout, Context: Any = None) -> NTSTATUS:
    """Call ``CalloutRoutine`` for each matching bus / controller / peripheral (module
    docstring, §5.2, DDK4-k104_57).  ``None`` stands for an omitted (NULL) argument."""
    if BusType is None:
        return NTSTATUS.STATUS_NOT_IMPLEMENTED
    state = {"counter": -1, "status": None}

    def call(path: str, bus: int, bus_info: Information, ctype=None, cnum=None, cinfo=None,
             ptype=None, pnum=None, pinfo=None) -> None:
        status = CalloutRoutine(Context, path, BusType, bus, bus_info, ctype, cnum, cinfo, ptype, pnum, pinfo)
        state["status"] = status
        if not NT_SUCCESS(status):
            raise _Stop(status)

    def numbered(path: str) -> list[tuple[int, str]]:
        try:
            names = registry.subkeys(path)
        except KeyNotFoundError:
            return []
        return [(i, f"{path}\\{i}") for i in range(len(names)) if registry.key_exists(f"{path}\\{i}")]

    def selected(base: str, number: int | None) -> list[tuple[int, str]]:
        """The one numbered subkey asked for (if it exists), else every one there is."""
        if number is None:
            return numbered(base)
        path = f"{base}\\{number}"
        return [(number, path)] if registry.key_exists(path) else []

    def controllers(bus_path: str, bus: int, bus_info: Information) -> None:
        name = CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE(ControllerType)]
        base = f"{bus_path}\\{name}"
        for cnum, cpath in selected(base, ControllerNumber):
            cinfo = _information(registry, cpath)
            if not PeripheralType:
                call(cpath, bus, bus_info, ControllerType, cnum, cinfo)
                continue
            pname = CONFIGURATION_TYPE_NAMES[CONFIGURATION_TYPE(PeripheralType)]
            pbase = f"{cpath}\\{pname}"
            for pnum, ppath in selected(pbase, PeripheralNumber):
                call(ppath, bus, bus_info, ControllerType, cnum, cinfo, PeripheralType, pnum,
                     _information(registry, ppath))

    def buses(path: str) -> None:
        try:
            children = registry.subkeys(path)
        except KeyNotFoundError:
            return
        for child in children:
            if child not in _BUS_KEYS:
                continue
            for _, bus_path in numbered(f"{path}\\{child}"):
                info = _information(registry, bus_path)
                if _bus_type(info) == int(BusType):
                    state["counter"] += 1
                    if BusNumber is None or BusNumber == state["counter"]:
                        if ControllerType is None:
                            call(bus_path, state["counter"], info)
                        else:
                            controllers(bus_path, state["counter"], info)
                buses(bus_path)  # buses below a bus

    try:
        buses(DESCRIPTION_SYSTEM)
    except _Stop as stop:
        return NTSTATUS(stop.status) if stop.status in NTSTATUS._value2member_map_ else stop.status
    if state["status"] is None:
        return NTSTATUS.STATUS_OBJECT_NAME_NOT_FOUND
    status = state["status"]
    return NTSTATUS(status) if status in NTSTATUS._value2member_map_ else status


__all__ = ["IoQueryDeviceDescription", "CONFIGURATION_TYPE", "CONFIGURATION_TYPE_NAMES",
           "IoQueryDeviceIdentifier", "IoQueryDeviceConfigurationData", "IoQueryDeviceComponentInformation",
           *CONFIGURATION_TYPE.__members__]
