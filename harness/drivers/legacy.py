r"""The generic claimants: a driver for every decoder that has no sample driver.

:class:`ResourceListDriver` follows the DriverEntry stages of seed 003 like every sample
driver, with the configuration setup wrote into its ``Parameters\<device>`` subkeys
(:func:`resource_parameters`): the raw resource list the device decodes (``Resources``,
REG_RESOURCE_LIST: one port or memory descriptor per contiguous run, its IRQs and DMA
channels) and, optionally, register probes (``Probe``, relative to ``ProbeBase``).  It
claims the whole list with IoReportResourceUsage and only then touches the device (the
probes).  Nothing in it knows a device kind: a new catalog model is claimed from its data.

Instances of it, each under the NT service that claims that kind of device, are:

* :class:`LegacyDriver` (``legacy``): the machine's devices whose model has no sample driver;
* the board claimants of :data:`BOARD_DRIVERS`: the keyboard port driver, the IDE miniport,
  the VGA miniport, the ACPI driver and the PnP manager's reservation of a driverless
  device's boot configuration (the HAL's own claims are :meth:`Hal.HalReportResourceUsage`,
  the board floppy controller is the floppy sample driver's).
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar, Iterable

from ..nt.iomgr import DeviceObject
from ..nt.resources import CM_RESOURCE_LIST, Dma, Interrupt, Memory, Port
from ..nt.registry import DEVICE_MAP, RegType
from .base import DeviceConfig, DeviceNotResponding, NtDriver, resources_of

#: One probe step: op (0 read, 1 write), offset from ProbeBase, size, value (written, or
#: expected under mask), mask.
PROBE_STEP = struct.Struct("<BHBII")
_READ, _WRITE = 0, 1


def pack_probe(steps: Iterable[Any]) -> bytes:
    """``Probe`` data from :class:`harness.devices.ProbeStep`-shaped steps."""
    return b"".join(PROBE_STEP.pack(_READ if s.op == "read" else _WRITE, s.offset, s.size,
                                    s.value or 0, s.mask) for s in steps)


def resource_parameters(resources: CM_RESOURCE_LIST, probe: bytes = b"", probe_base: int | None = None,
                        ) -> dict[str, Any]:
    """One device's ``Parameters`` subkey for a :class:`ResourceListDriver`."""
    out: dict[str, Any] = {"Resources": resources}
    if probe and probe_base is not None:
        out.update(Probe=probe, ProbeBase=probe_base)
    return out


class ResourceListDriver(NtDriver):
    """Claims each ``Parameters`` subkey's ``Resources`` list, then runs its ``Probe``."""

    service_name = "Legacy"
    device_prefix = "\\Device\\Legacy_"
    resource_class: ClassVar[str | None] = None

    def gather(self, registry_path: str) -> list[DeviceConfig]:
        out = []
        for name, values in self.parameters(registry_path).items():
            resources = values.get("Resources")
            if not isinstance(resources, CM_RESOURCE_LIST):
                continue
            partials = [p for _, p in resources.partials()]
            config = DeviceConfig(
                name, "Parameters",
                ports=[(p.start, p.length) for p in partials if isinstance(p, Port)],
                irq=next((p.level for p in partials if isinstance(p, Interrupt)), None),
                dma=[p.channel for p in partials if isinstance(p, Dma)],
                extra={"resources": resources, "memory": [(p.start, p.length) for p in partials
                                                          if isinstance(p, Memory)],
                       "probe": values.get("Probe", b""), "probe_base": values.get("ProbeBase")})
            out.append(config)
        return out

    def device_name(self, config: DeviceConfig, number: int) -> str:
        """Named after the device (machine-file id or board device name), so the
        ResourceMap says whose claim each value is."""
        return f"{self.device_prefix}{config.name}"

    def initialize(self, device: DeviceObject, config: DeviceConfig, resources: CM_RESOURCE_LIST) -> dict[str, Any]:
        probe, base = config.extra["probe"], config.extra["probe_base"]
        if not probe or base is None:
            return {}
        reads = 0
        for op, offset, size, value, mask in PROBE_STEP.iter_unpack(probe):
            port = base + offset   # the HAL's port functions wrap it at 16 bits, as DX does
            if op == _WRITE:
                self._write(port, size, value)
                continue
            got = self._read(port, size)
            reads += 1
            if got & mask != value:
                # not the value read: a counter answering there (q35's PM timer at 0x608)
                # reads differently every run, and a finding is one stable line (livefuzz)
                raise DeviceNotResponding(f"{config.name}: probe read of {port:#x} did not give {value:#x} "
                                          f"under mask {mask:#x}")
        return {"probe": f"{reads} read(s) answered"}

    def _read(self, port: int, size: int) -> int:
        read = {1: self.hal.READ_PORT_UCHAR, 2: self.hal.READ_PORT_USHORT, 4: self.hal.READ_PORT_ULONG}[size]
        return read(port)

    def _write(self, port: int, size: int, value: int) -> None:
        write = {1: self.hal.WRITE_PORT_UCHAR, 2: self.hal.WRITE_PORT_USHORT, 4: self.hal.WRITE_PORT_ULONG}[size]
        write(port, value)


class LegacyDriver(ResourceListDriver):
    """The machine file's devices without a sample driver (``legacy``)."""


class KeyboardPortDriver(ResourceListDriver):
    r"""Board claimant ``i8042prt``: the 8042 as NT 4's keyboard port driver files it (its
    DDK sample, as VirtualBox's NT 4 PS/2 driver VBoxPS2NT.cpp keeps it, with the names of
    kbdmou.h): one device object ``\Device\KeyboardPort<n>`` for the keyboard and the aux
    port (``\Device\PointerPort<n>`` is a symbolic link to it); its one claim, both
    interrupts and the ports, under the class made of the two DeviceMap base names,
    ``KeyboardPort/PointerPort``; and ``DEVICEMAP\KeyboardPort`` and ``\PointerPort``
    naming the two with the driver's registry path as data (RtlWriteRegistryValue,
    REG_SZ)."""

    #: kbdmou.h's DD_KEYBOARD_PORT_BASE_NAME_U and DD_POINTER_PORT_BASE_NAME_U: the
    #: DeviceMap keys and the device names' bases.
    DEVICE_MAP_KEYS = ("KeyboardPort", "PointerPort")
    service_name = "i8042prt"
    resource_class = "/".join(DEVICE_MAP_KEYS)
    device_prefix = f"\\Device\\{DEVICE_MAP_KEYS[0]}"
    device_name = NtDriver.device_name   # numbered, as the port driver tries 0, 1, ...

    def _device_map_values(self, device: DeviceObject) -> list[tuple[str, str]]:
        number = self.device_number(device)
        return [(f"{DEVICE_MAP}\\{key}", f"\\Device\\{key}{number}") for key in self.DEVICE_MAP_KEYS]

    def write_device_map(self, device: DeviceObject, config: DeviceConfig) -> None:
        for key, name in self._device_map_values(device):
            self.io.registry.create_key(key, volatile=True)
            self.io.registry.set_value(key, name, device.driver_object.registry_path)

    def remove_device_map(self, device: DeviceObject) -> None:
        for key, name in self._device_map_values(device):
            if self.io.registry.key_exists(key):
                self.io.registry.delete_value(key, name, missing_ok=True)


class VideoMiniportDriver(ResourceListDriver):
    r"""Board claimant ``vga`` (and every display of the machine file): the VGA miniport
    under the video port driver, which names its devices ``\Device\Video<n>``, claims
    under ``VIDEO`` and lists each device in ``DEVICEMAP\VIDEO``: the device's name with
    its registry key (the service's, then ``Device<n>``) as data, and ``MaxObjectNumber``
    (REG_DWORD), the highest number, which win32k reads to find them all (ReactOS
    videoprt.c and win32k's EngpUpdateGraphicsDeviceList)."""

    service_name = "VgaSave"
    resource_class = "VIDEO"
    device_prefix = "\\Device\\Video"
    device_name = NtDriver.device_name   # numbered, as the video port driver does
    MAX_OBJECT_NUMBER = "MaxObjectNumber"

    def write_device_map(self, device: DeviceObject, config: DeviceConfig) -> None:
        key = f"{DEVICE_MAP}\\VIDEO"
        number = self.device_number(device)
        self.io.registry.create_key(key, volatile=True)
        self.io.registry.set_value(key, device.name, f"{device.driver_object.registry_path}\\Device{number}")
        highest = self.io.registry.get(key, self.MAX_OBJECT_NUMBER, None)
        if highest is None or highest < number:
            self.io.registry.set_value(key, self.MAX_OBJECT_NUMBER, number, RegType.REG_DWORD)

    def remove_device_map(self, device: DeviceObject) -> None:
        key = f"{DEVICE_MAP}\\VIDEO"
        if self.io.registry.key_exists(key):
            self.io.registry.delete_value(key, device.name, missing_ok=True)


def _board_driver(claimant: str, service: str, resource_class: str | None, prefix: str) -> type[ResourceListDriver]:
    return type(f"{service}Driver", (ResourceListDriver,), {
        "__doc__": f"Board claimant {claimant!r}: service {service}, ResourceMap class "
                   f"{resource_class or 'the default'}.",
        "service_name": service, "resource_class": resource_class, "device_prefix": prefix})


#: Board claimants (harness.devices.BOARD_CLAIMANTS) that are a ResourceListDriver, in the
#: order NT starts them: the ACPI driver and the PnP manager's reservations first, then the
#: boot-start IDE miniport, then the system-start keyboard port and video drivers.
BOARD_DRIVERS: dict[str, type[ResourceListDriver]] = {
    "acpi": _board_driver("acpi", "ACPI", "PnP Manager", "\\Device\\ACPI_"),
    "pnp": _board_driver("pnp", "PnpManager", "PnP Manager", "\\Device\\PnpReserved_"),
    "atapi": _board_driver("atapi", "atapi", "ScsiAdapter", "\\Device\\Ide_"),
    "i8042prt": KeyboardPortDriver,
    "vga": VideoMiniportDriver,
}
#: What the VGA miniport claims beside its device's own decode (VgaSave's access ranges):
#: the VGA register blocks and the legacy frame buffer window.
VGA_ACCESS_RANGES = (("port", 0x3B0, 0x3BB), ("port", 0x3C0, 0x3DF), ("memory", 0xA0000, 0xBFFFF))
#: Board claimants that are not a ResourceListDriver: the HAL claims for itself at boot,
#: the floppy controller is the floppy sample driver's.
OTHER_BOARD_CLAIMANTS = ("hal", "floppy")


__all__ = ["ResourceListDriver", "LegacyDriver", "KeyboardPortDriver", "VideoMiniportDriver", "BOARD_DRIVERS", "OTHER_BOARD_CLAIMANTS", "pack_probe",
           "resource_parameters", "resources_of", "VGA_ACCESS_RANGES"]
