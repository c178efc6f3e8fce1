r"""Drivers of the jumpered ISA devices: 16550 serial ports, parallel ports, floppy
controllers and the Sound Blaster 16.

Each gathers its devices from the Description tree (what detection found) and from its
``Parameters\<device>`` subkeys (what setup configured), claims each with
IoReportResourceUsage, and only then talks to the registers.  These devices cannot move
at run time (QEMU fixes their jumpers at launch), so a conflict leaves the device
unstarted; the alternative-setting retry is the PCI drivers' (:mod:`.pci`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from ..names import BOARD_CONTROLLER_KEY
from ..nt.description import CONFIGURATION_TYPE, IoQueryDeviceConfigurationData
from ..nt.dma import DeallocateObject
from ..nt.hal import DEVICE_DESCRIPTION, DEVICE_DESCRIPTION_VERSION1, Width8Bits, Width16Bits
from ..nt.iomgr import DeviceObject
from ..nt.resources import (CM_FLOPPY_DEVICE_DATA, CM_RESOURCE_LIST, CM_SERIAL_DEVICE_DATA,
                            CmResourceShare, DeviceSpecific, Dma, Interrupt, Isa, Port)
from ..nt.status import NTSTATUS, IoErrorCode
from .base import PARAMETER_NAMES, DeviceConfig, DeviceNotResponding, NtDriver, parameter_configs

UART_CLOCK = 1843200
COM_NAMES = {0x3F8: "COM1", 0x2F8: "COM2", 0x3E8: "COM3", 0x2E8: "COM4"}
SECTOR_SIZE = 512
#: How long a DMA sector read may take (QEMU moves it in a bottom half within a few ms).
DMA_READ_TIMEOUT = 0.5
#: How many times the floppy driver reads the main status register over a wait's bound,
#: evenly spaced: a count, as a driver's stall loop counts, so a controller that never
#: answers is read the same number of times however loaded the host (livefuzz round three:
#: an FDC inside ACPI's ports was read 1,585 to 3,990 times a run, each read a violation,
#: and two runs' reports differed).
MSR_POLLS = 100


def described(driver: NtDriver, controller: CONFIGURATION_TYPE,
              peripheral: CONFIGURATION_TYPE | None = None) -> list[dict[str, Any]]:
    """The ISA controllers of one type in the Description tree (IoQueryDeviceDescription):
    number, raw partials and, when asked, the peripheral partials of each."""
    found: dict[int, dict[str, Any]] = {}

    def callout(Context, PathName, BusType, BusNumber, BusInformation, ControllerType,
                ControllerNumber, ControllerInformation, PeripheralType, PeripheralNumber,
                PeripheralInformation):
        entry = found.setdefault(ControllerNumber, {"number": ControllerNumber, "partials": (),
                                                    "peripherals": []})
        data = ControllerInformation[IoQueryDeviceConfigurationData]
        if data is not None:
            entry["partials"] = data.value.partials
        if PeripheralInformation is not None:
            pdata = PeripheralInformation[IoQueryDeviceConfigurationData]
            entry["peripherals"].append(pdata.value.partials if pdata is not None else ())
        return NTSTATUS.STATUS_SUCCESS

    driver.io.IoQueryDeviceDescription(Isa, None, controller, None, peripheral, None, callout)
    return [found[k] for k in sorted(found)]


def _merge(configured: list[DeviceConfig], detected: list[DeviceConfig]) -> list[DeviceConfig]:
    """Configured devices first (setup's view), each matched with at most one detected
    controller at its base (whose DeviceSpecificData it takes); detected controllers
    nobody configured are added after them."""
    out = list(configured)
    for found in detected:
        match = next((c for c in out if c.base == found.base and c.extra.get("detected") is None), None)
        if match is None:
            out.append(found)
            continue
        match.extra["detected"] = found.name
        if found.device_specific and not match.device_specific:
            match.device_specific = found.device_specific
    return out


def _detected(driver: NtDriver, controller: CONFIGURATION_TYPE, length: int) -> list[DeviceConfig]:
    out = []
    for entry in described(driver, controller):
        ports = [p for p in entry["partials"] if isinstance(p, Port)]
        irqs = [p for p in entry["partials"] if isinstance(p, Interrupt)]
        specific = [p for p in entry["partials"] if isinstance(p, DeviceSpecific)]
        if not ports:
            continue
        out.append(DeviceConfig(f"{controller.name} {entry['number']}", "Description",
                                [(ports[0].start, length)], irqs[0].level if irqs else None,
                                device_specific=specific[0].data if specific else None))
    return out


class SerialDriver(NtDriver):
    """16550 UARTs: 8 ports, an IRQ and CM_SERIAL_DEVICE_DATA with the baud clock each.

    Ports the driver is given on one IRQ (COM1 and COM3 on IRQ 4, by PC convention) share
    it: each claims the interrupt Shared and connects its ISR with ShareVector, Latched
    (ISA lines are edge-triggered).  The ISR reads IIR: bit 0 set means "not mine"."""

    service_name = "Serial"
    device_prefix = "\\Device\\Serial"
    #: NT4's serial.sys claims under this class (not under its DeviceMap key's name).
    resource_class = "LOADED SERIAL DRIVER RESOURCES"
    device_map_key = "SERIALCOMM"
    takes_interrupts = True

    def gather(self, registry_path: str) -> list[DeviceConfig]:
        configured = parameter_configs(self.parameters(registry_path), port_length=8)
        merged = _merge(configured, _detected(self, CONFIGURATION_TYPE.SerialController, 8))
        irqs = [c.irq for c in merged if c.irq is not None]
        for config in merged:
            if not config.device_specific:  # the PC clock when detection had nothing to say
                config.device_specific = CM_SERIAL_DEVICE_DATA(baud_clock=UART_CLOCK).pack()
            if config.irq is not None and irqs.count(config.irq) > 1:
                config.irq_share = CmResourceShare.CmResourceShareShared
        return merged

    def isr(self, Interrupt: Any, ServiceContext: DeviceObject) -> bool:
        base = ServiceContext.device_extension["config"].base
        iir = self.inb(base + 2)
        if iir & 0x01:
            return False                           # no interrupt pending: not this UART
        for _ in range(16):                        # serve every cause, as IIR ranks them
            cause = iir & 0x0E
            if cause == 0x06:
                self.inb(base + 5)                 # line status: read LSR
            elif cause in (0x04, 0x0C):
                self.inb(base)                     # received data (or timeout): read RBR
            elif cause == 0x00:
                self.inb(base + 6)                 # modem status: read MSR
            # 0x02, transmitter empty: reading IIR acknowledged it
            iir = self.inb(base + 2)
            if iir & 0x01:
                break
        ServiceContext.device_extension["interrupts"] = ServiceContext.device_extension.get("interrupts", 0) + 1
        return True

    def raise_interrupt(self, device: DeviceObject) -> None:
        base = device.device_extension["config"].base
        self.outb(base + 1, 0x02)                  # IER: transmitter empty -> pending at once

    def quiet_interrupt(self, device: DeviceObject) -> None:
        self.outb(device.device_extension["config"].base + 1, 0x00)

    def initialize(self, device: DeviceObject, config: DeviceConfig, resources: CM_RESOURCE_LIST) -> dict[str, Any]:
        base = config.base
        for pattern in (0x5A, 0xA5):               # scratch register: is a UART there?
            self.outb(base + 7, pattern)
            if self.inb(base + 7) != pattern:
                raise DeviceNotResponding(f"no UART at {base:#x}: scratch register does not hold {pattern:#04x}")
        clock = CM_SERIAL_DEVICE_DATA.unpack(config.device_specific).baud_clock
        divisor = clock // (16 * 9600)
        self.outb(base + 3, 0x80)                  # DLAB
        self.outb(base + 0, divisor & 0xFF)
        self.outb(base + 1, divisor >> 8)
        self.outb(base + 3, 0x03)                  # 8N1
        self.outb(base + 2, 0x07)                  # enable and clear the FIFOs
        self.outb(base + 1, 0x00)                  # no interrupts until IRP time
        self.outb(base + 4, 0x0B)                  # DTR, RTS, OUT2 (gates the IRQ line)
        iir = self.inb(base + 2)
        lsr = self.inb(base + 5)
        if not lsr & 0x20:
            # what was wanted, not the value read: a finding is one stable line (see the floppy's)
            raise DeviceNotResponding(f"UART at {base:#x}: transmitter holding register never empties "
                                      "(LSR bit 5 clear)")
        return {"uart": "16550A" if iir & 0xC0 == 0xC0 else "16450", "baud": clock // (16 * divisor),
                "divisor": divisor}

    def stop(self, device: DeviceObject) -> None:
        base = device.device_extension["config"].base
        self.outb(base + 1, 0x00)
        self.outb(base + 4, 0x00)

    def dos_name(self, device: DeviceObject, config: DeviceConfig) -> str | None:
        return COM_NAMES.get(config.base, f"COM{5 + self.device_number(device)}")


class ParallelDriver(NtDriver):
    """Standard parallel ports: data, status and control registers (3 ports) and the IRQ."""

    service_name = "Parport"
    device_prefix = "\\Device\\ParallelPort"
    #: NT4's parport.sys claims under this class (not under its DeviceMap key's name).
    resource_class = "LOADED PARALLEL DRIVER RESOURCES"
    device_map_key = "PARALLEL PORTS"
    #: The parallel class driver's device over port N (NT4 parallel.sys): the one Win32
    #: opens, so the one DEVICEMAP\PARALLEL PORTS lists.
    class_device_prefix = "\\Device\\Parallel"
    uses_reinitialization = True

    def gather(self, registry_path: str) -> list[DeviceConfig]:
        configured = parameter_configs(self.parameters(registry_path), port_length=3)
        return _merge(configured, _detected(self, CONFIGURATION_TYPE.ParallelController, 3))

    def initialize(self, device: DeviceObject, config: DeviceConfig, resources: CM_RESOURCE_LIST) -> dict[str, Any]:
        base = config.base
        for pattern in (0xAA, 0x55):
            self.outb(base, pattern)
            if self.inb(base) != pattern:
                raise DeviceNotResponding(f"no parallel port at {base:#x}: data register does not hold {pattern:#04x}")
        self.outb(base + 2, 0x08)                  # select printer, INIT asserted (reset)
        self.outb(base + 2, 0x0C)                  # INIT released: printer reset done
        status = self.inb(base + 1)
        return {"status": f"{status:#04x}", "busy": not status & 0x80}

    def device_map_name(self, device: DeviceObject) -> str:
        return f"{self.class_device_prefix}{self.device_number(device)}"

    def dos_name(self, device: DeviceObject, config: DeviceConfig) -> str | None:
        """The symbolic link itself, numbered after the port (not its base): port N is
        LPT(N+1), as NT4's parallel.sys names it."""
        return f"\\DosDevices\\LPT{self.device_number(device) + 1}"


class FloppyDriver(NtDriver):
    """82077AA floppy controllers: the registers an 82077 decodes, base+1..5 and base+7
    (base+6 is the IDE's alternate status; base+0 is a PS/2 status register QEMU does not
    decode), or with ``claim: block`` base+0..5 and base+7 as the retail driver claims
    them; IRQ, DMA channel and CM_FLOPPY_DEVICE_DATA of the first drive; every drive's
    densities are reported as facts."""

    service_name = "Floppy"
    device_prefix = "\\Device\\FloppyController"
    resource_class = "Disk"
    #: (offset, length) runs from the controller's base, claimed exactly or as a block.
    DECODED_RUNS = ((1, 5), (7, 1))
    BLOCK_RUNS = ((0, 6), (7, 1))
    #: Parameters value (driver-wide) asking for the retail claim.
    WHOLE_BLOCK = "ClaimWholeBlock"

    #: The Parameters subkey of the board's own controller.
    BOARD_CONTROLLER = BOARD_CONTROLLER_KEY

    @classmethod
    def parameters_for(cls, devices: Sequence[Any], claim: str = "decoded",
                       board: Mapping[str, Mapping[str, int]] = MappingProxyType({})) -> dict[str, Any]:
        """Setup's view: each isa-fdc with its settings, and the board's own controller
        (``board["fdc"]``: where the machine file's ``builtin`` put it), each with its
        DriveCount, 0 (nothing to read a sector from) unless a drive hangs off it; with
        ``claim: block`` the driver-wide :attr:`WHOLE_BLOCK` value."""
        out = super().parameters_for(devices, "block")
        for dev in devices:   # a controller of the file: as many drives as hang off it
            if dev.id in out and dev.model.name != "floppy":
                out[dev.id]["DriveCount"] = sum(d.model.name == "floppy" and d.bus == dev.id for d in devices)
        if claim == "block":
            out[cls.WHOLE_BLOCK] = 1
        if "fdc" in board:
            values = {PARAMETER_NAMES[k]: v for k, v in board["fdc"].items() if k in PARAMETER_NAMES}
            if not any(d.model.name == "floppy" and d.bus is None for d in devices):
                values["DriveCount"] = 0
            out[cls.BOARD_CONTROLLER] = values
        return out

    @classmethod
    def board_parameters(cls, board: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
        """Loaded for the board's own controller alone (no device of the file)."""
        return cls.parameters_for((), board=board)

    def _runs(self, registry_path: str, base: int) -> list[tuple[int, int]]:
        key = registry_path + "\\Parameters"
        registry = self.io.registry
        block = registry.key_exists(key) and any(v.name == self.WHOLE_BLOCK and v.value
                                                 for v in registry.values(key))
        return [(base + offset, length) for offset, length in (self.BLOCK_RUNS if block else self.DECODED_RUNS)]

    def gather(self, registry_path: str) -> list[DeviceConfig]:
        out = []
        for entry in described(self, CONFIGURATION_TYPE.DiskController, CONFIGURATION_TYPE.FloppyDiskPeripheral):
            ports = [p for p in entry["partials"] if isinstance(p, Port)]
            if not ports:
                continue
            base = ports[0].start
            irqs = [p.level for p in entry["partials"] if isinstance(p, Interrupt)]
            dmas = [p.channel for p in entry["partials"] if isinstance(p, Dma)]
            drives = [next((d.data for d in partials if isinstance(d, DeviceSpecific)), None)
                      for partials in entry["peripherals"]]
            out.append(DeviceConfig(f"DiskController {entry['number']}", "Description",
                                    self._runs(registry_path, base), irqs[0] if irqs else None, dmas,
                                    device_specific=next((d for d in drives if d), None),
                                    extra={"drives": drives}, io_base=base))
        params = self.parameters(registry_path)
        for name, values in params.items():  # a controller setup knows but detection missed
            base = values.get("IoBaseAddress")
            if base is not None and all(c.base != base for c in out):
                drives = {"drives": [None] * values["DriveCount"]} if "DriveCount" in values else {}
                out.append(DeviceConfig(name, "Parameters", self._runs(registry_path, base),
                                        values.get("InterruptNumber"),
                                        [values["DmaChannel"]] if "DmaChannel" in values else [], extra=drives,
                                        io_base=base))
        return out

    def initialize(self, device: DeviceObject, config: DeviceConfig, resources: CM_RESOURCE_LIST) -> dict[str, Any]:
        base = config.base
        self.outb(base + 2, 0x00)                  # DOR: controller reset
        self.outb(base + 2, 0x0C)                  # out of reset, DMA and IRQ gate on
        msr = self._wait_msr(base, 0x80, 0xC0)     # RQM, ready to take a command
        sense = []
        for _ in range(4):                         # one SENSE INTERRUPT per drive after reset
            self.outb(base + 5, 0x08)
            self._wait_msr(base, 0xC0, 0xC0)       # result phase
            st0 = self.insb(base + 5, 2)[0]        # ST0, then the present cylinder
            sense.append(st0)
        self._wait_msr(base, 0x80, 0xC0)
        self.outb(base + 5, 0x10)                  # VERSION
        self._wait_msr(base, 0xC0, 0xC0)
        version = self.inb(base + 5)
        densities = []
        for data in config.extra.get("drives", []):
            if data:
                info = CM_FLOPPY_DEVICE_DATA.unpack(data)
                densities.append({"max_density": info.max_density, "mount_density": info.mount_density})
        facts = {"msr": f"{msr:#04x}", "version": f"{version:#04x}", "enhanced": version == 0x90,
                 "drives": densities, "st0": [f"{s:#04x}" for s in sense]}
        # Drive 0, sector 1 through system DMA, unless detection found the controller
        # without a drive (the board's own FDC on a machine with no floppy).
        if config.dma and config.extra.get("drives", [None]) != []:
            read = self.read_sector(device, config)
            facts["dma_read"] = read.describe()
            if not read.complete:
                self.io.error(device.driver_object, IoErrorCode.IO_ERR_TIMEOUT,
                              f"{device.name}: {read.describe()}", device, NTSTATUS.STATUS_IO_TIMEOUT)
        return facts

    def read_sector(self, device: DeviceObject, config: DeviceConfig, *, cylinder: int = 0, head: int = 0,
                    sector: int = 1, timeout: float = DMA_READ_TIMEOUT) -> "SectorRead":
        """READ DATA of one 512-byte sector of drive 0 through the claimed DMA channel, the NT
        way: HalGetAdapter, HalAllocateCommonBuffer, IoAllocateAdapterChannel, whose
        ExecutionRoutine maps the transfer (IoMapTransfer), runs the FDC command and flushes
        (IoFlushAdapterBuffers).  A controller whose channel never moves stays busy: the
        read gives up after ``timeout`` and resets the controller."""
        assert self.io.dma is not None
        base = config.base
        adapter, registers = self.hal.HalGetAdapter(DEVICE_DESCRIPTION(
            version=DEVICE_DESCRIPTION_VERSION1, dma_channel=config.dma[0], interface_type=Isa,
            dma_width=Width8Bits if config.dma[0] < 4 else Width16Bits, maximum_length=SECTOR_SIZE))
        if adapter is None:
            return SectorRead(config.dma[0], None, b"", False, "HalGetAdapter refused the channel")
        buffer = self.io.dma.HalAllocateCommonBuffer(adapter, SECTOR_SIZE)
        if buffer is None:
            return SectorRead(config.dma[0], None, b"", False, "no common buffer")
        result: list[SectorRead] = []

        def execution_routine(device_object: Any, irp: Any, map_register_base: int, context: Any) -> int:
            self.io.dma.IoMapTransfer(adapter, buffer, map_register_base, 0, SECTOR_SIZE, False)
            self.outb(base + 2, 0x1C)                  # DOR: drive 0, motor on, DMA and IRQ gate
            for byte in (0x03, 0xDF, 0x02):            # SPECIFY: step rate, head unload, load, DMA mode
                self._command(base, byte)
            for byte in (0xE6, head << 2, cylinder, head, sector, 2, sector, 0x1B, 0xFF):  # READ DATA
                self._command(base, byte)
            try:
                self._wait_msr(base, 0xC0, 0xC0, timeout)          # result phase
            except DeviceNotResponding:
                msr = self.inb(base + 4)
                remaining = self.io.dma.remaining(adapter)
                self.io.dma.IoFlushAdapterBuffers(adapter, buffer, map_register_base, 0, SECTOR_SIZE, False)
                self.outb(base + 2, 0x00)              # reset the stuck controller
                self.outb(base + 2, 0x0C)
                result.append(SectorRead(adapter.dma_channel, buffer.logical_address, b"", False,
                                         f"stalled: main status {msr:#04x} after {timeout:g} s, DMA count "
                                         f"{remaining:#06x} (the channel never moved a byte)"))
                return DeallocateObject
            status = self.insb(base + 5, 7)            # the result phase: ST0-ST2, C, H, R, N
            done = self.io.dma.IoFlushAdapterBuffers(adapter, buffer, map_register_base, 0, SECTOR_SIZE, False)
            data = self.hal.bus.read_memory(buffer.logical_address, SECTOR_SIZE)
            ok = done and status[0] & 0xC0 == 0
            result.append(SectorRead(adapter.dma_channel, buffer.logical_address, data, ok,
                                     f"ST0-2 {status[:3].hex()}, terminal count {'reached' if done else 'not reached'}"))
            return DeallocateObject

        status = self.io.dma.IoAllocateAdapterChannel(adapter, device, 1, execution_routine, None)
        self.io.dma.HalFreeCommonBuffer(adapter, SECTOR_SIZE, buffer)
        self.outb(base + 2, 0x0C)                      # motor off
        if not result:
            return SectorRead(adapter.dma_channel, None, b"", False, f"IoAllocateAdapterChannel: {status.name}")
        return result[0]

    def _command(self, base: int, byte: int) -> None:
        self._wait_msr(base, 0x80, 0xC0)               # RQM, direction to the controller
        self.outb(base + 5, byte)

    def _wait_msr(self, base: int, want: int, mask: int, timeout: float = 1.0) -> int:
        for poll in range(MSR_POLLS):
            msr = self.inb(base + 4)
            if msr & mask == want:
                return msr
            if poll < MSR_POLLS - 1:
                time.sleep(timeout / MSR_POLLS)
        # what was wanted, not the value read: a counter answering there (a timer under the
        # controller's ports) reads differently every run, and a finding is one stable line
        raise DeviceNotResponding(f"floppy controller at {base:#x}: main status never showed {want:#04x} "
                                  f"under mask {mask:#04x}")


@dataclass(frozen=True)
class SectorRead:
    """One floppy sector read through system DMA."""

    channel: int | None
    address: int | None            # the common buffer's logical address
    data: bytes
    complete: bool
    detail: str

    def describe(self) -> str:
        if not self.complete:
            return f"DMA {self.channel}: {self.detail}"
        return (f"DMA {self.channel}: {len(self.data)} bytes at {self.address:#x}, {self.detail}, "
                f"first bytes {self.data[:8].hex()}")


class SoundBlasterDriver(NtDriver):
    """Sound Blaster 16: 16 ports from IoBaseAddress, the IRQ and both DMA channels, all
    from its Parameters (ISA sound cards are not detected by the loader).  Initialising
    resets the DSP, reads its version and asks the mixer which IRQ and DMA channels the
    card is set to; a disagreement with the claim is logged as IO_ERR_INCORRECT_IRQL."""

    service_name = "Sndblst"
    device_prefix = "\\Device\\SoundBlaster"
    resource_class = "Sound"

    MIXER_IRQ = {0x01: 9, 0x02: 5, 0x04: 7, 0x08: 10}

    def gather(self, registry_path: str) -> list[DeviceConfig]:
        return parameter_configs(self.parameters(registry_path), port_length=0x10)

    def initialize(self, device: DeviceObject, config: DeviceConfig, resources: CM_RESOURCE_LIST) -> dict[str, Any]:
        base = config.base
        self.outb(base + 6, 1)
        self.outb(base + 6, 0)
        if not self.inb(base + 0xE) & 0x80 or self.inb(base + 0xA) != 0xAA:
            raise DeviceNotResponding(f"no Sound Blaster DSP at {base:#x}: reset not acknowledged with 0xaa")
        self.outb(base + 0xC, 0xE1)                # DSP version
        major, minor = self.insb(base + 0xA, 2)
        self.outb(base + 4, 0x80)                  # mixer: interrupt setup
        irq_bits = self.inb(base + 5)
        self.outb(base + 4, 0x81)                  # mixer: DMA setup
        dma_bits = self.inb(base + 5)
        card_irq = self.MIXER_IRQ.get(irq_bits & 0x0F)
        card_dma = [c for c in range(8) if dma_bits >> c & 1]
        if config.irq is not None and card_irq != config.irq:
            self.io.error(device.driver_object, IoErrorCode.IO_ERR_INCORRECT_IRQL,
                          f"{device.name}: the card is set to IRQ {card_irq}, the claim says {config.irq}",
                          device)
        return {"dsp": f"{major}.{minor:02d}", "card_irq": card_irq, "card_dma": card_dma}
