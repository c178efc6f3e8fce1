r"""What every sample driver shares: the six DriverEntry stages of seed 003.

A driver subclasses :class:`NtDriver` and supplies

* :meth:`NtDriver.gather` (stages 1-2): one :class:`DeviceConfig` per device, from the
  Description tree (IoQueryDeviceDescription), the PCI bus (HalGetBusData), its
  ``Parameters`` subkey, or defaults;
* :meth:`NtDriver.initialize` (stage 5): real register I/O through the HAL, returning
  what it learnt (or raising :class:`DeviceNotResponding`);
* optionally :meth:`NtDriver.claim` (stage 4) when it claims otherwise than with
  IoReportResourceUsage of the gathered list (the PCI drivers use HalAssignSlotResources).

:meth:`NtDriver.DriverEntry` runs the stages: set the entry points (3), then per device
create the device object, claim (4) — trying the device's alternative settings in turn
when it is reconfigurable and the claim conflicts — and only then touch the device (5); a
device that cannot be claimed or does not answer is released and its device object
deleted.  With at least one device started DriverEntry returns STATUS_SUCCESS (6),
otherwise everything is released and the first failure's status is returned.  Unload
releases every claim (Count 0) and deletes the device objects.  Each device's fate is
kept in :attr:`NtDriver.outcomes` for the main job's report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cmp_to_key
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, Sequence

from ..nt.arbiter import Owner, ResourceKind, claims_of, conflicts_between
from ..nt.hal import Hal
from ..nt.interrupts import KINTERRUPT, interrupt_mode
from ..nt.iomgr import DeviceObject, DriverObject, IoManager
from ..nt.registry import DEVICE_MAP
from ..nt.resources import (CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE, CM_RESOURCE_LIST,
                            CM_RESOURCE_MEMORY_READ_WRITE, CM_RESOURCE_PORT_IO, CmResourceShare, DeviceSpecific,
                            Dma, INTERFACE_TYPE, Interrupt, Memory, Port)
from ..nt.status import NT_SUCCESS, NTSTATUS, IoErrorCode

#: What QEMU gives one device only when two decode it (NtDriver.start_order).
_CONTESTED_KINDS = (ResourceKind.PORT, ResourceKind.MEMORY, ResourceKind.DMA)

IRP_MJ_CREATE, IRP_MJ_CLOSE, IRP_MJ_READ, IRP_MJ_WRITE, IRP_MJ_DEVICE_CONTROL = 0x00, 0x02, 0x03, 0x04, 0x0E

#: Device settings (device_models property names) -> the Parameters value names NT
#: drivers use for them.
PARAMETER_NAMES = {"iobase": "IoBaseAddress", "irq": "InterruptNumber", "dma": "DmaChannel",
                   "dma16": "DmaChannel16"}
#: The Parameters value holding the ranges a device decodes (REG_RESOURCE_LIST): a driver
#: given it claims exactly those port runs instead of its whole register block.
DECODED_PORTS = "DecodedPorts"


class DeviceNotResponding(Exception):
    """Raised by :meth:`NtDriver.initialize` when the registers do not answer as the
    device should: nothing (or something else) decodes the claimed ports."""


@dataclass
class DeviceConfig:
    """One device's hardware configuration as a driver gathered it (bus-relative, raw)."""

    name: str                                   # the config id / Parameters subkey / "detected N"
    source: str                                 # "Description", "Parameters", "PCI", "default"
    ports: list[tuple[int, int]] = field(default_factory=list)     # (start, length), claimed
    irq: int | None = None
    dma: list[int] = field(default_factory=list)
    device_specific: bytes | None = None
    interface_type: INTERFACE_TYPE = INTERFACE_TYPE.Isa
    bus_number: int = 0
    slot: int | None = None                     # PCI_SLOT_NUMBER for PCI devices
    irq_share: CmResourceShare = CmResourceShare.CmResourceShareDeviceExclusive
    irq_flags: int = CM_RESOURCE_INTERRUPT_LATCHED
    alternatives: list["DeviceConfig"] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: The register base when the claimed runs do not start at it (an SB16's decoded runs
    #: start at base+4).
    io_base: int | None = None

    @property
    def base(self) -> int | None:
        if self.io_base is not None:
            return self.io_base
        return self.ports[0][0] if self.ports else None

    def resource_list(self) -> CM_RESOURCE_LIST:
        """The raw list to claim: ports, the interrupt, DMA channels, DeviceSpecificData."""
        exclusive = CmResourceShare.CmResourceShareDeviceExclusive
        partials: list[Any] = [Port(start, length, share=exclusive, flags=CM_RESOURCE_PORT_IO)
                               for start, length in self.ports]
        if self.irq is not None:
            partials.append(Interrupt(self.irq, self.irq, -1, share=self.irq_share, flags=self.irq_flags))
        partials += [Dma(channel, share=exclusive) for channel in self.dma]
        if self.device_specific:
            partials.append(DeviceSpecific(self.device_specific))
        return CM_RESOURCE_LIST.single(self.interface_type, self.bus_number, *partials)

    def describe(self) -> str:
        parts = [", ".join(f"ports {s:#x}-{s + n - 1:#x}" for s, n in self.ports)]
        if self.irq is not None:
            parts.append(f"IRQ {self.irq}")
        parts += [f"DMA {c}" for c in self.dma]
        return ", ".join(p for p in parts if p)


@dataclass
class DeviceOutcome:
    """What became of one gathered device."""

    config: str
    device: str | None
    status: NTSTATUS
    detail: str = ""
    resources: CM_RESOURCE_LIST | None = None
    attempts: int = 1
    facts: dict[str, Any] = field(default_factory=dict)
    #: What the driver gathered for it, and the device object it made for it (kept after a
    #: refused claim deleted it: the error log names it): whom the report names it for.
    gathered: DeviceConfig | None = None
    attempted: str | None = None

    @property
    def started(self) -> bool:
        return NT_SUCCESS(self.status)


class NtDriver:
    """Base of the sample drivers; see the module docstring."""

    service_name: ClassVar[str]
    device_prefix: ClassVar[str]            # "\\Device\\Serial" -> \Device\Serial0, 1, ...
    resource_class: ClassVar[str | None] = None
    #: The DeviceMap key the driver writes its device names under (seed 002).
    device_map_key: ClassVar[str | None] = None
    #: Drivers with an ISR (:meth:`isr`) connect it once the device is initialised and
    #: make the device take one real interrupt (:meth:`raise_interrupt`).
    takes_interrupts: ClassVar[bool] = False

    def __init__(self, io: IoManager, hal: Hal, *, override_conflict: bool = False,
                 mapping_order: Sequence[str] = (),
                 prefers: Callable[[str, int, int, str, str], bool | None] | None = None) -> None:
        self.io = io
        self.hal = hal
        self.override_conflict = override_conflict
        #: The configured devices' names in the order QEMU maps them (the machine file's):
        #: where siblings contest a resource and :attr:`prefers` cannot tell, the one
        #: mapped last answers (:meth:`start_order`).
        self.mapping_order = tuple(mapping_order)
        #: ``prefers(kind, start, end, a, b)``: True when QEMU gives device ``a`` those
        #: addresses (kind a ResourceKind value; for a DMA channel start == end) rather than
        #: ``b``, False for ``b``, None when unknown; the test bed reads it off the
        #: hardware (harness.verify.who_answers).
        self.prefers = prefers
        self.outcomes: list[DeviceOutcome] = []

    # ------------------------------------------------------------------ configuration
    @classmethod
    def parameters_for(cls, devices: Sequence[Any], claim: str = "decoded",
                       board: Mapping[str, Mapping[str, int]] = MappingProxyType({})) -> dict[str, Any]:
        """The Parameters subkeys setup would write for the configured devices: one per
        device id, with its settings under their NT names and, unless ``claim`` is
        ``block``, the port runs the device decodes (:data:`DECODED_PORTS`).  ``board``:
        the settings of the board's own devices (harness.builtin.board_settings), for a
        driver that drives one of them too."""
        out: dict[str, Any] = {}
        for dev in devices:
            values: dict[str, Any] = {PARAMETER_NAMES[k]: v for k, v in dev.settings.items() if k in PARAMETER_NAMES}
            if values and claim == "decoded":
                runs = [(a, b) for kind, a, b in dev.decoded_resources() if kind == "port"]
                if runs:
                    values[DECODED_PORTS] = resources_of([("port", a, b) for a, b in runs], INTERFACE_TYPE.Isa)
            if values:
                out[dev.id] = values
        return out

    def parameters(self, registry_path: str) -> dict[str, dict[str, Any]]:
        r"""``Parameters\<device>`` subkeys of the service key, as {name: {value: data}}."""
        registry = self.io.registry
        key = registry_path + "\\Parameters"
        if not registry.key_exists(key):
            return {}
        out = {}
        for name in registry.subkeys(key):
            out[name] = {v.name: v.value for v in registry.values(f"{key}\\{name}")}
        return out

    def gather(self, registry_path: str) -> list[DeviceConfig]:
        raise NotImplementedError

    # ------------------------------------------------------------------ stages
    #: Hand the configuration memory to a Reinitialize routine (seed 003 stage 6) instead
    #: of freeing it in DriverEntry; :meth:`Reinitialize` frees it.
    uses_reinitialization: ClassVar[bool] = False

    def DriverEntry(self, DriverObject: DriverObject, RegistryPath: str) -> NTSTATUS:
        return self._driver_entry(DriverObject, RegistryPath, self.io.ExAllocatePool("configuration"))

    def _driver_entry(self, DriverObject: DriverObject, RegistryPath: str, memory: Any) -> NTSTATUS:
        memory.contents = configs = self.start_order(self.gather(RegistryPath))  # stages 1-2
        DriverObject.driver_unload = self.DriverUnload               # stage 3
        DriverObject.major_function[IRP_MJ_CREATE] = self.dispatch_create_close
        DriverObject.major_function[IRP_MJ_CLOSE] = self.dispatch_create_close
        if not configs:
            self.io.error(DriverObject, IoErrorCode.IO_ERR_CONFIGURATION_ERROR,
                          f"{self.service_name}: no device configured or detected",
                          status=NTSTATUS.STATUS_NO_SUCH_DEVICE)
            self.io.ExFreePool(memory)
            return NTSTATUS.STATUS_NO_SUCH_DEVICE
        for config in configs:
            number = len(DriverObject.device_objects)
            self.outcomes.append(replace(self._start(DriverObject, config, number), gathered=config,
                                                     attempted=self.device_name(config, number)))
        if DriverObject.device_objects:                              # stage 6
            if self.uses_reinitialization:
                self.io.IoRegisterDriverReinitialization(DriverObject, self.Reinitialize, memory)
            else:
                self.io.ExFreePool(memory)
            return NTSTATUS.STATUS_SUCCESS
        self.io.ExFreePool(memory)
        return next(o.status for o in self.outcomes if not o.started)

    def start_order(self, configs: list[DeviceConfig]) -> list[DeviceConfig]:
        """``configs`` in the order the driver starts (and numbers) them: as gathered, except
        that configured siblings contesting what QEMU gives to one device only (a port,
        memory, a DMA channel's handler; an IRQ line both simply drive) start the one that
        answers first, in the places their group holds.  Who answers is what
        :attr:`prefers` says of the contested ranges (the most of them wins); where it
        cannot tell (or is not given), the device mapped last, QEMU's rule for
        equal-priority siblings.  The device that answers then holds the claim, and its
        shadowed sibling meets that claim in the arbiter before a register of it is
        touched; every other device keeps its place and number (``\\Device\\Serial0``
        stays the first gathered)."""
        mapped = {name: i for i, name in enumerate(self.mapping_order)}
        ranked = [i for i, c in enumerate(configs) if c.name in mapped]
        claims = {i: [c for c in claims_of(Owner(self.service_name, configs[i].name), self.claimed_list(configs[i]))
                      if c.kind in _CONTESTED_KINDS] for i in ranked}
        groups: list[list[int]] = []
        for i in ranked:   # siblings contesting something, transitively
            joined = [g for g in groups if any(conflicts_between(claims[i], claims[j]) for j in g)]
            groups = [g for g in groups if g not in joined] + [[i, *(j for g in joined for j in g)]]

        def first(i: int, j: int) -> int:   # < 0: i starts before j
            a, b = configs[i].name, configs[j].name
            if self.prefers is not None:
                votes = 0   # contested ranges QEMU gives i, minus those it gives j
                for conflict in conflicts_between(claims[i], claims[j]):
                    mine, theirs = conflict.requested, conflict.holder
                    verdict = self.prefers(mine.kind.value, max(mine.start, theirs.start),
                                           min(mine.end, theirs.end), a, b)
                    votes += 0 if verdict is None else 1 if verdict else -1
                if votes:
                    return -votes
            return mapped[b] - mapped[a]
        out = list(configs)
        for group in groups:
            for place, i in zip(sorted(group), sorted(group, key=cmp_to_key(first))):
                out[place] = configs[i]
        return out

    def Reinitialize(self, DriverObject: DriverObject, Context: Any, Count: int) -> None:
        """Runs once every driver has loaded: note it on each device, then free the
        configuration memory DriverEntry handed over."""
        for device in DriverObject.device_objects:
            device.device_extension.setdefault("facts", {})["reinitialized"] = Count
        self.io.ExFreePool(Context)

    def _start(self, driver_object: DriverObject, config: DeviceConfig, number: int) -> DeviceOutcome:
        status, device = self.io.IoCreateDevice(driver_object, self.device_name(config, number))
        if device is None:
            return DeviceOutcome(config.name, None, status, "IoCreateDevice failed")
        attempts = 0
        claimed = None
        last = NTSTATUS.STATUS_UNSUCCESSFUL
        for candidate in [config, *config.alternatives]:              # stage 4
            attempts += 1
            last, claimed = self.claim(driver_object, device, candidate)
            if NT_SUCCESS(last):
                config = candidate
                break
        if claimed is None:
            self.io.IoDeleteDevice(device)
            if NT_SUCCESS(last):
                # granted nothing: the bus showed no resources (a BAR over the configuration
                # ports hides the slot's header): no device to start, not a started one
                return DeviceOutcome(config.name, None, NTSTATUS.STATUS_NO_SUCH_DEVICE,
                                     "nothing to claim: the bus reported no resources for it", attempts=attempts)
            return DeviceOutcome(config.name, None, last, "could not claim " + config.describe(),
                                 attempts=attempts)
        try:                                                           # stage 5
            facts = self.initialize(device, config, claimed)
        except DeviceNotResponding as exc:
            self.release(driver_object, device)
            self.io.IoDeleteDevice(device)
            self.io.error(driver_object, IoErrorCode.IO_ERR_INVALID_IOBASE,
                          f"{device.name} ({config.name}): {exc}", status=NTSTATUS.STATUS_NO_SUCH_DEVICE)
            return DeviceOutcome(config.name, None, NTSTATUS.STATUS_NO_SUCH_DEVICE, str(exc), claimed, attempts)
        device.device_extension.update(config=config, resources=claimed, facts=facts)
        if self.takes_interrupts and config.irq is not None:
            facts.update(self.connect_interrupt(device, config))
        self.write_device_map(device, config)
        detail = "" if attempts == 1 else f"claimed with alternative setting {attempts - 1}"
        return DeviceOutcome(config.name, device.name, NTSTATUS.STATUS_SUCCESS, detail, claimed, attempts, facts)

    def device_name(self, config: DeviceConfig, number: int) -> str:
        """The device object's name: the prefix and the driver's device number."""
        return f"{self.device_prefix}{number}"

    @staticmethod
    def claimed_list(config: DeviceConfig) -> CM_RESOURCE_LIST:
        """The raw list a device's claim reports: a list the gathering made, else the
        config's own (:meth:`DeviceConfig.resource_list`)."""
        return config.extra.get("resources") or config.resource_list()

    def claim(self, driver_object: DriverObject, device: DeviceObject,
              config: DeviceConfig) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        """Stage 4 by IoReportResourceUsage of the gathered list (DeviceList)."""
        resources = self.claimed_list(config)
        result = self.io.IoReportResourceUsage(self.resource_class, driver_object, None, 0, device,
                                               resources, resources.size(self.io.registry.arch),
                                               self.override_conflict)
        if not NT_SUCCESS(result.status):
            return result.status, None
        return result.status, resources

    def release(self, driver_object: DriverObject, device: DeviceObject) -> None:
        """Erase a device's claim: IoReportResourceUsage with a Count of zero."""
        empty = CM_RESOURCE_LIST()
        self.io.IoReportResourceUsage(self.resource_class, driver_object, None, 0, device, empty,
                                      empty.size(self.io.registry.arch), False)

    def initialize(self, device: DeviceObject, config: DeviceConfig,
                   resources: CM_RESOURCE_LIST) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self, device: DeviceObject) -> None:
        """Quiesce a device before Unload releases it (default: nothing to do)."""

    # ------------------------------------------------------------------ interrupts
    def isr(self, Interrupt: KINTERRUPT, ServiceContext: DeviceObject) -> bool:
        """The InterruptService routine: TRUE only when this device interrupted (it may be
        called for another device's interrupt on a shared vector, even during DriverEntry)."""
        raise NotImplementedError

    def raise_interrupt(self, device: DeviceObject) -> None:
        """Make the device request an interrupt (for the self test and the job's exercise)."""
        raise NotImplementedError

    def quiet_interrupt(self, device: DeviceObject) -> None:
        """Stop the device from requesting interrupts again."""

    def connect_interrupt(self, device: DeviceObject, config: DeviceConfig) -> dict[str, Any]:
        """IoConnectInterrupt with what HalGetInterruptVector returns for the claimed IRQ,
        then one real interrupt: the device raises its line and the harness, standing in
        for the CPU, takes what the PIC presents."""
        vector = self.hal.HalGetInterruptVector(config.interface_type, config.bus_number, config.irq, config.irq)
        if not vector:
            return {"interrupt": f"IRQ {config.irq}: HalGetInterruptVector gives no vector"}
        share = config.irq_share == CmResourceShare.CmResourceShareShared
        mode = interrupt_mode(config.irq_flags)
        status, interrupt = self.io.IoConnectInterrupt(self.isr, device, None, vector.vector, vector.irql,
                                                       vector.irql, mode, share, vector.affinity, False,
                                                       name=f"{config.name} ({device.name})")
        if interrupt is None:
            self.io.error(device.driver_object, IoErrorCode.IO_ERR_INTERRUPT_RESOURCE_CONFLICT,
                          f"{device.name}: IoConnectInterrupt(vector {vector.vector:#x}) returned {status.name}",
                          device, status)
            return {"interrupt": f"not connected ({status.name})"}
        device.device_extension["interrupt"] = interrupt
        before = interrupt.claimed
        self.raise_interrupt(device)
        assert self.io.interrupts is not None
        self.io.interrupts.take_interrupts()
        self.quiet_interrupt(device)
        got = interrupt.claimed - before
        return {"interrupt": f"vector {vector.vector:#x} IRQL {vector.irql} {interrupt.mode_name}"
                             f"{' shared' if share else ''}: {'taken' if got else 'NOT TAKEN'}"}

    def disconnect_interrupt(self, device: DeviceObject) -> None:
        interrupt = device.device_extension.pop("interrupt", None)
        if interrupt is not None and interrupt.connected:
            self.io.IoDisconnectInterrupt(interrupt)

    def DriverUnload(self, DriverObject: DriverObject) -> None:
        for device in list(DriverObject.device_objects):
            self.stop(device)
            self.disconnect_interrupt(device)
            self.release(DriverObject, device)
            self.remove_device_map(device)
            self.io.IoDeleteDevice(device)

    def dispatch_create_close(self, DeviceObject: DeviceObject, Irp: Any) -> NTSTATUS:
        return NTSTATUS.STATUS_SUCCESS

    # ------------------------------------------------------------------ PnP IRPs
    def dispatch_pnp(self, node: Any, irp: Any) -> NTSTATUS:
        """IRP_MJ_PNP for the resource minor functions (:func:`harness.nt.pnp.send_pnp_irp`):
        each goes to its method below; a method answering None leaves the IRP to the bus
        driver's answer (STATUS_NOT_SUPPORTED)."""
        from ..nt import pnp
        handlers = {
            pnp.IRP_MN_QUERY_RESOURCES: lambda: self.query_resources(node, irp.information),
            pnp.IRP_MN_QUERY_RESOURCE_REQUIREMENTS:
                lambda: self.query_resource_requirements(node, irp.information),
            pnp.IRP_MN_FILTER_RESOURCE_REQUIREMENTS:
                lambda: self.filter_resource_requirements(node, irp.information),
        }
        handler = handlers.get(irp.minor_function)
        answer = handler() if handler is not None else None
        if answer is None:
            return NTSTATUS.STATUS_NOT_SUPPORTED
        irp.information = answer
        return NTSTATUS.STATUS_SUCCESS

    def query_resources(self, node: Any, boot: CM_RESOURCE_LIST | None) -> CM_RESOURCE_LIST | None:
        """IRP_MN_QUERY_RESOURCES: the boot configuration (default: the bus driver's)."""
        return None

    def query_resource_requirements(self, node: Any, basic: Any) -> Any:
        """IRP_MN_QUERY_RESOURCE_REQUIREMENTS: the Basic configuration (default: the bus's)."""
        return None

    def filter_resource_requirements(self, node: Any, requirements: Any) -> Any:
        """IRP_MN_FILTER_RESOURCE_REQUIREMENTS: narrow or reorder (default: unchanged)."""
        return None

    # ------------------------------------------------------------------ DeviceMap
    # One REG_SZ value per started device under DEVICEMAP\<device_map_key> (volatile), as
    # RtlWriteRegistryValue(RTL_REGISTRY_DEVICEMAP, ...) writes it; the names and data are
    # those of genuine NT4 (tests/data/realworld-devicemap/README.md).
    def device_number(self, device: DeviceObject) -> int:
        r"""The driver's number of a device (``\Device\Serial1`` -> 1)."""
        return int(device.name[len(self.device_prefix):])

    def dos_name(self, device: DeviceObject, config: DeviceConfig) -> str | None:
        """The DeviceMap value's data: the device's Win32 name (None: no entry)."""
        return None

    def device_map_name(self, device: DeviceObject) -> str:
        """The DeviceMap value's name: the device object's name unless a class driver's
        device above it is the one Win32 opens (:class:`~.isa.ParallelDriver`)."""
        return device.name

    def write_device_map(self, device: DeviceObject, config: DeviceConfig) -> None:
        name = self.dos_name(device, config)
        if self.device_map_key is None or name is None:
            return
        key = f"{DEVICE_MAP}\\{self.device_map_key}"
        self.io.registry.create_key(key, volatile=True)
        self.io.registry.set_value(key, self.device_map_name(device), name)

    def remove_device_map(self, device: DeviceObject) -> None:
        if self.device_map_key is None:
            return
        key = f"{DEVICE_MAP}\\{self.device_map_key}"
        if self.io.registry.key_exists(key):
            self.io.registry.delete_value(key, self.device_map_name(device), missing_ok=True)

    # ------------------------------------------------------------------ register helpers
    def inb(self, port: int) -> int:
        return self.hal.READ_PORT_UCHAR(port)

    def outb(self, port: int, value: int) -> None:
        self.hal.WRITE_PORT_UCHAR(port, value)

    def insb(self, port: int, count: int) -> bytes:
        """``count`` bytes read from one port (READ_PORT_BUFFER_UCHAR: one exchange)."""
        buffer = bytearray(count)
        self.hal.READ_PORT_BUFFER_UCHAR(port, buffer, count)
        return bytes(buffer)


def parameter_configs(params: Mapping[str, Mapping[str, Any]], *, port_length: int,
                      default_irq: int | None = None) -> list[DeviceConfig]:
    """DeviceConfigs from ``Parameters\\<device>`` subkeys holding IoBaseAddress,
    InterruptNumber, DmaChannel and DmaChannel16, in subkey order.  The ports claimed are
    the :data:`DECODED_PORTS` runs when setup wrote them, else ``port_length`` ports from
    the base (the card's whole block)."""
    out = []
    for name, values in params.items():
        base = values.get("IoBaseAddress")
        if base is None:
            continue
        dma = [values[k] for k in ("DmaChannel", "DmaChannel16") if k in values]
        decoded = values.get(DECODED_PORTS)
        ports = ([(p.start, p.length) for _, p in decoded.partials() if isinstance(p, Port)]
                 if isinstance(decoded, CM_RESOURCE_LIST) else [(base, port_length)])
        out.append(DeviceConfig(name, "Parameters", ports, values.get("InterruptNumber", default_irq), dma,
                                io_base=base))
    return out


def resources_of(decoded: Sequence[tuple[str, int, int]], interface_type: int, bus_number: int = 0, *,
                 level_sensitive_shared: bool = False) -> CM_RESOURCE_LIST:
    """A raw resource list from decoded (kind, first, last) ranges: one descriptor per
    contiguous run (adjacent runs of one device merge), then its IRQs and DMA channels.
    ``level_sensitive_shared``: PCI INTx lines, claimed Shared and level-triggered."""
    exclusive = CmResourceShare.CmResourceShareDeviceExclusive
    runs: dict[str, list[list[int]]] = {"port": [], "memory": []}
    for kind, first, last in sorted(r for r in decoded if r[0] in runs):
        merged = runs[kind]
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    partials: list[Any] = [Port(a, b - a + 1, share=exclusive, flags=CM_RESOURCE_PORT_IO) for a, b in runs["port"]]
    partials += [Memory(a, b - a + 1, share=exclusive, flags=CM_RESOURCE_MEMORY_READ_WRITE)
                 for a, b in runs["memory"]]
    for kind, first, _ in decoded:
        if kind == "irq":
            share = CmResourceShare.CmResourceShareShared if level_sensitive_shared else exclusive
            flags = CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE if level_sensitive_shared else CM_RESOURCE_INTERRUPT_LATCHED
            partials.append(Interrupt(first, first, -1, share=share, flags=flags))
    partials += [Dma(first, share=exclusive) for kind, first, _ in decoded if kind == "dma"]
    return CM_RESOURCE_LIST.single(interface_type, bus_number, *partials)
