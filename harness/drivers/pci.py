r"""Drivers of network cards: the NE2000 (ISA and PCI) and the PCI NICs (e1000, RTL8139).

The PCI drivers find their functions with HalGetBusData.  The NE2000 driver first claims
a PCI card where the firmware put it (IoReportResourceUsage of the bus-relative values
HalGetBusData gave, as seed 000 describes) and, when that conflicts, retries the way a
reconfigurable device can: HalAssignSlotResources places the card elsewhere and programs
it.  The PCI NIC driver claims through HalAssignSlotResources directly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..nt.hal import PCI_INVALID_VENDORID, PCI_MULTIFUNCTION, slot_number
from ..nt.iomgr import DeviceObject, DriverObject
from ..nt.resources import (CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE, CM_RESOURCE_LIST, INTERFACE_TYPE,
                            IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_LIST, CmResourceShare, Interrupt,
                            InterruptRequirement, Memory, PCIBus, PCIConfiguration, Port)
from ..nt.status import NT_SUCCESS, NTSTATUS
from .base import DeviceConfig, DeviceNotResponding, NtDriver, parameter_configs

#: The ISA bus pin "IRQ 2" reaches the slave 8259 as IRQ 9 on an AT.
AT_IRQ2_REDIRECT = 9
NE2000_PORTS = 0x20          # registers +0x00..0x0f, data port +0x10, reset +0x1f
#: The NE2000's register block is the PCI card's I/O BAR 0.
NE2000_PCI_BAR = 0
#: Intel 8254x registers (offsets in the register BAR).
E1000_STATUS, E1000_RDBAL, E1000_RAL0, E1000_RAH0 = 0x0008, 0x2800, 0x5400, 0x5404
RDBAL_PATTERN = 0x00A5A000   # 16-byte aligned: RDBAL's low 4 bits are hard-wired to 0


def find_pci(driver: NtDriver, ids: dict[tuple[int, int], str]) -> list[tuple[int, int, bytes, str]]:
    """(bus, slot number, 64-byte header, kind) of every function with one of ``ids``.
    Functions 1-7 of a device are asked for only when its function 0 is there and
    multifunction: the HAL answers them as empty slots otherwise (HalpValidPCISlot)."""
    out = []
    for bus in range(driver.hal.no_buses):
        for device in range(32):
            for function in range(8):
                slot = slot_number(device, function)
                header = bytearray(64)
                filled = driver.hal.HalGetBusData(PCIConfiguration, bus, slot, header, 64)
                vendor = int.from_bytes(header[0:2], "little")
                if filled == 64 and vendor != PCI_INVALID_VENDORID:
                    kind = ids.get((vendor, int.from_bytes(header[2:4], "little")))
                    if kind is not None:
                        out.append((bus, slot, bytes(header), kind))
                if function == 0 and (filled != 64 or vendor == PCI_INVALID_VENDORID
                                      or not header[0x0E] & PCI_MULTIFUNCTION):
                    break
    return out


def _pci_name(bus: int, slot: int) -> str:
    return f"PCI {bus:02x}:{slot & 0x1F:02x}.{slot >> 5 & 7}"


def _io_bar(resources: CM_RESOURCE_LIST) -> tuple[int, int]:
    """The first I/O range of ``resources``: (start, length)."""
    return next((p.start, p.length) for _, p in resources.partials() if isinstance(p, Port))


class Ne2000Driver(NtDriver):
    """NE2000 and compatibles: ISA cards from Parameters (IoBaseAddress, InterruptNumber),
    PCI cards (10ec:8029) from the bus.  Initialising resets the 8390, reads the station
    address PROM through remote DMA and checks the NE2000 signature."""

    service_name = "Ne2000"
    device_prefix = "\\Device\\Ne2000_"
    resource_class = "Network"
    takes_interrupts = True
    #: IMR/ISR bit the self test uses: remote DMA complete.
    RDC = 0x40

    def gather(self, registry_path: str) -> list[DeviceConfig]:
        out = parameter_configs(self.parameters(registry_path), port_length=NE2000_PORTS)
        for bus, slot, header, _ in find_pci(self, {(0x10EC, 0x8029): "ne2k_pci"}):
            bar0 = int.from_bytes(header[0x10:0x14], "little")
            line = header[0x3C]
            ports = [(bar0 & ~3, self._bar_length(bus, slot))] if bar0 & 1 and bar0 & ~3 else []
            out.append(DeviceConfig(
                _pci_name(bus, slot), "PCI", ports,
                None if line in (0, 0xFF) else line, interface_type=PCIBus, bus_number=bus, slot=slot,
                irq_share=CmResourceShare.CmResourceShareShared, irq_flags=CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE))
        return out

    def _bar_length(self, bus: int, slot: int) -> int:
        """How many ports the card's I/O BAR decodes (sized through the HAL): the claim
        covers all of them, not only the 8390's 0x20 (QEMU's card decodes 0x100), so
        nothing the arbiter could give away lies under the BAR."""
        bars = self.hal.size_bars(bus, slot & 0x1F, slot >> 5 & 7)
        return next((b.size for b in bars if b.index == NE2000_PCI_BAR and b.kind == "io"), NE2000_PORTS)

    def filter_resource_requirements(self, node: Any, requirements: Any) -> Any:
        """ISA cards: drop the IRQ 9 alternatives.  The card's "IRQ 2" jumper drives the
        bus pin an AT redirects to IRQ 9 (device_models/ne2k_isa.yaml), a line the board
        often gives to something else (the ACPI SCI on a PIIX4); this driver never asks
        for it, so the arbiter only sees the card's other settings."""
        if requirements is None or requirements.interface_type != INTERFACE_TYPE.Isa:
            return None
        lists = []
        for alternative in requirements.lists:
            kept = tuple(d for d in alternative.descriptors
                         if not (isinstance(d, InterruptRequirement)
                                 and d.minimum_vector <= AT_IRQ2_REDIRECT <= d.maximum_vector))
            groups = [d for d in kept if isinstance(d, InterruptRequirement)]
            if groups and groups[0].option & IO_RESOURCE_ALTERNATIVE:
                kept = tuple(replace(d, option=d.option & ~IO_RESOURCE_ALTERNATIVE) if d is groups[0] else d
                             for d in kept)
            if any(isinstance(d, InterruptRequirement) for d in kept):
                lists.append(IO_RESOURCE_LIST(kept))
        return replace(requirements, lists=tuple(lists))

    def claim(self, driver_object: DriverObject, device: DeviceObject,
              config: DeviceConfig) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        if config.slot is None:
            return super().claim(driver_object, device, config)
        if config.ports:  # where the firmware put it
            status, resources = super().claim(driver_object, device, config)
            if NT_SUCCESS(status):
                return status, resources
        # Reconfigurable: let the HAL place it elsewhere (it programs the BAR).
        status, resources = self.hal.HalAssignSlotResources(
            driver_object.registry_path, self.resource_class, driver_object, device, PCIBus,
            config.bus_number, config.slot)
        if NT_SUCCESS(status) and resources is not None:
            config.ports = [_io_bar(resources)]
            config.extra["moved_by"] = "HalAssignSlotResources"
        return status, resources

    def initialize(self, device: DeviceObject, config: DeviceConfig, resources: CM_RESOURCE_LIST) -> dict[str, Any]:
        base = config.base
        self.outb(base + 0x1F, self.inb(base + 0x1F))   # reset pulse
        if not self.inb(base + 0x07) & 0x80:            # ISR.RST
            raise DeviceNotResponding(f"no NE2000 at {base:#x}: reset not reported in ISR")
        self.outb(base + 0x00, 0x21)                    # CR: page 0, stop, abort DMA
        self.outb(base + 0x0E, 0x48)                    # DCR: byte transfers, FIFO 8
        self.outb(base + 0x0F, 0x00)                    # IMR: all masked
        self.outb(base + 0x07, 0xFF)                    # ISR: acknowledge all
        self.outb(base + 0x08, 0x00)                    # RSAR: PROM at 0
        self.outb(base + 0x09, 0x00)
        self.outb(base + 0x0A, 32)                      # RBCR: 32 bytes
        self.outb(base + 0x0B, 0)
        self.outb(base + 0x00, 0x0A)                    # CR: remote read, start
        prom = self.insb(base + 0x10, 32)              # data port: remote DMA, 32 bytes
        self.outb(base + 0x00, 0x21)
        if prom[28] != 0x57 or prom[30] != 0x57:        # 'W' 'W': NE2000 in word-doubled PROM
            # not the PROM's bytes: whatever answers there instead may read differently each run
            raise DeviceNotResponding(f"NE2000 at {base:#x}: no 0x57 signature at PROM bytes 28 and 30")
        mac = ":".join(f"{b:02x}" for b in prom[0:12:2])
        return {"mac": mac, **({"moved_by": config.extra["moved_by"]} if "moved_by" in config.extra else {})}


    def isr(self, Interrupt: Any, ServiceContext: DeviceObject) -> bool:
        """The 8390's ISR register, masked by the IMR the driver set: nothing = not mine."""
        base = ServiceContext.device_extension["config"].base
        status = self.inb(base + 0x07) & ServiceContext.device_extension.get("imr", 0)
        if not status:
            return False
        self.outb(base + 0x07, status)                  # acknowledge what was served
        ServiceContext.device_extension["interrupts"] = ServiceContext.device_extension.get("interrupts", 0) + 1
        return True

    def raise_interrupt(self, device: DeviceObject) -> None:
        """A zero-length remote read completes at once: ISR.RDC, the line goes up."""
        base = device.device_extension["config"].base
        device.device_extension["imr"] = self.RDC
        self.outb(base + 0x00, 0x22)                    # CR: page 0, start
        self.outb(base + 0x07, 0xFF)                    # ISR: clear everything
        self.outb(base + 0x0F, self.RDC)                # IMR
        self.outb(base + 0x0A, 0)                       # RBCR = 0
        self.outb(base + 0x0B, 0)
        self.outb(base + 0x00, 0x0A)                    # CR: remote read, start

    def quiet_interrupt(self, device: DeviceObject) -> None:
        base = device.device_extension["config"].base
        device.device_extension["imr"] = 0
        self.outb(base + 0x0F, 0x00)
        self.outb(base + 0x07, 0xFF)
        self.outb(base + 0x00, 0x21)                    # CR: stop


class PciNicDriver(NtDriver):
    """PCI NICs claimed through HalAssignSlotResources: Intel 82540EM (e1000) read through
    its register BAR (MmMapIoSpace of the translated address, READ_REGISTER_ULONG, and
    a WRITE_REGISTER_ULONG check when the bus can write memory), RealTek 8139 reset and
    read through its I/O BAR."""

    service_name = "PciNet"
    device_prefix = "\\Device\\PciNet"
    resource_class = "Network"
    IDS = {(0x8086, 0x100E): "e1000", (0x10EC, 0x8139): "rtl8139"}

    def gather(self, registry_path: str) -> list[DeviceConfig]:
        return [DeviceConfig(_pci_name(bus, slot), "PCI", interface_type=PCIBus, bus_number=bus, slot=slot,
                             extra={"kind": kind})
                for bus, slot, _, kind in find_pci(self, self.IDS)]

    def claim(self, driver_object: DriverObject, device: DeviceObject,
              config: DeviceConfig) -> tuple[NTSTATUS, CM_RESOURCE_LIST | None]:
        status, resources = self.hal.HalAssignSlotResources(
            driver_object.registry_path, self.resource_class, driver_object, device, PCIBus,
            config.bus_number, config.slot)
        if NT_SUCCESS(status) and resources is not None:
            config.ports = [(p.start, p.length) for _, p in resources.partials() if isinstance(p, Port)]
            config.irq = next((p.level for _, p in resources.partials() if isinstance(p, Interrupt)), None)
        return status, resources

    def initialize(self, device: DeviceObject, config: DeviceConfig, resources: CM_RESOURCE_LIST) -> dict[str, Any]:
        if not config.ports:
            raise DeviceNotResponding("no I/O BAR was assigned")
        base = config.base
        facts: dict[str, Any] = {}
        if config.extra["kind"] == "rtl8139":
            self.outb(base + 0x37, 0x10)                # CR: software reset
            for _ in range(100):
                if not self.inb(base + 0x37) & 0x10:
                    break
            else:
                raise DeviceNotResponding(f"RTL8139 at {base:#x}: reset never completes")
            mac = bytes(self.inb(base + i) for i in range(6))
        else:
            # QEMU's e1000 I/O window (IOADDR/IODATA) reads as zero: use the register BAR,
            # mapped with MmMapIoSpace at its translated address.
            physical, length = self._memory_bar(config, resources)
            registers = self.hal.MmMapIoSpace(physical, length)
            if registers is None:
                raise DeviceNotResponding(f"MmMapIoSpace({physical:#x}, {length:#x}) failed")
            device.device_extension["registers"] = registers
            status = self.hal.READ_REGISTER_ULONG(registers.register(E1000_STATUS))
            if status == 0xFFFFFFFF:
                self.stop(device)
                raise DeviceNotResponding(f"e1000 at {physical:#x}: STATUS reads all ones")
            low = self.hal.READ_REGISTER_ULONG(registers.register(E1000_RAL0))
            high = self.hal.READ_REGISTER_ULONG(registers.register(E1000_RAH0))
            mac = (low | (high & 0xFFFF) << 32).to_bytes(6, "little")
            if self.hal.can_write_registers:
                facts["register_write"] = self._write_check(registers)
        if mac in (bytes(6), b"\xff" * 6):
            self.stop(device)
            raise DeviceNotResponding(f"{config.extra['kind']} at {base:#x}: no station address")
        return {"kind": config.extra["kind"], "mac": ":".join(f"{b:02x}" for b in mac), **facts}

    def _write_check(self, registers: Any) -> str:
        """WRITE_REGISTER_ULONG a pattern into RDBAL (a plain read/write register while
        receive is off), read it back, restore it."""
        address = registers.register(E1000_RDBAL)
        saved = self.hal.READ_REGISTER_ULONG(address)
        self.hal.WRITE_REGISTER_ULONG(address, RDBAL_PATTERN)
        seen = self.hal.READ_REGISTER_ULONG(address)
        self.hal.WRITE_REGISTER_ULONG(address, saved)
        return "read back" if seen == RDBAL_PATTERN else f"wrote {RDBAL_PATTERN:#x}, read {seen:#x}"

    def stop(self, device: DeviceObject) -> None:
        registers = device.device_extension.pop("registers", None)
        if registers is not None:
            self.hal.MmUnmapIoSpace(registers, registers.length)

    def _memory_bar(self, config: DeviceConfig, resources: CM_RESOURCE_LIST) -> tuple[int, int]:
        """The translated (physical) address and length of the first memory BAR
        (HalTranslateBusAddress)."""
        bar = next(p for _, p in resources.partials() if isinstance(p, Memory))
        translation = self.hal.HalTranslateBusAddress(PCIBus, config.bus_number, bar.start, 0)
        if not translation:
            raise DeviceNotResponding(f"memory BAR {bar.start:#x} does not translate")
        return translation.translated_address, bar.length
