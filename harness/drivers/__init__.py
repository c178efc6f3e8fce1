"""Sample NT-style drivers for the emulated devices (see :mod:`harness.drivers.base`).

``DRIVERS`` maps the names device models give in ``nt_driver`` (and machine files use
under ``drivers``) to the driver classes.
"""

from .base import DeviceConfig, DeviceNotResponding, DeviceOutcome, NtDriver
from .isa import FloppyDriver, ParallelDriver, SerialDriver, SoundBlasterDriver
from .legacy import BOARD_DRIVERS, LegacyDriver, ResourceListDriver
from .pci import Ne2000Driver, PciNicDriver

DRIVERS: dict[str, type[NtDriver]] = {
    "serial": SerialDriver,
    "parallel": ParallelDriver,
    "floppy": FloppyDriver,
    "sb16": SoundBlasterDriver,
    "ne2000": Ne2000Driver,
    "pcinet": PciNicDriver,
    "legacy": LegacyDriver,
    "vga": BOARD_DRIVERS["vga"],
}

__all__ = ["DRIVERS", "NtDriver", "DeviceConfig", "DeviceOutcome", "DeviceNotResponding",
           "SerialDriver", "ParallelDriver", "FloppyDriver", "SoundBlasterDriver", "Ne2000Driver",
           "PciNicDriver", "LegacyDriver", "ResourceListDriver", "BOARD_DRIVERS"]
