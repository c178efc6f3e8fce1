r"""System DMA through the 8237s: common buffers, adapter channels, map transfers.

After HalGetAdapter (:meth:`harness.nt.hal.Hal.HalGetAdapter`, seed 000) a driver
allocates a buffer the controller can reach with :meth:`DmaManager.HalAllocateCommonBuffer`,
waits for the channel with :meth:`DmaManager.IoAllocateAdapterChannel` (its
ExecutionRoutine runs when the adapter is its), programs the transfer with
:meth:`DmaManager.IoMapTransfer`, lets the device move the data, and ends with
:meth:`DmaManager.IoFlushAdapterBuffers` and :meth:`DmaManager.IoFreeAdapterChannel`.

Model decisions:

* **Common buffers** come from a pool of guest-physical RAM the harness keeps for DMA
  (:data:`COMMON_BUFFER_POOL`, inside the first 16 MiB an ISA channel reaches; clear of
  the probe guest, which lives at 1 MiB).  A buffer is page-aligned, never crosses the
  adapter's boundary (64 KiB for channels 0-3, 128 KiB for 5-7: the 8237's address
  counter does not carry into the page register) and is no longer than one transfer.
  Paging is off in every guest the harness runs, so the virtual address is the physical
  (logical) one.
* **Adapter channels**: one owner at a time per channel; a second IoAllocateAdapterChannel
  on a busy channel is queued and its ExecutionRoutine runs when the owner frees it.
  More map registers than HalGetAdapter granted: STATUS_INSUFFICIENT_RESOURCES.  The
  ExecutionRoutine's IO_ALLOCATION_ACTION decides whether the channel stays allocated.
* **IoMapTransfer** programs the channel exactly as the HAL does: mask it, clear the byte
  flip-flop, write the mode (single transfer; write = device to memory), the address and
  page, the count less one (in words on the 16-bit controller), and unmask it.
  **IoFlushAdapterBuffers** masks the channel again and reports whether the count
  reached terminal count (it reads 0xFFFF once the last byte moved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .busaccess import BusAccess
from .hal import ADAPTER_OBJECT, PAGE_SIZE
from .status import NTSTATUS

#: IO_ALLOCATION_ACTION values an ExecutionRoutine returns.
KeepObject, DeallocateObject, DeallocateObjectKeepRegisters = 1, 2, 3
#: Guest-physical RAM kept for common buffers: [start, end).
COMMON_BUFFER_POOL = (0x200000, 0x400000)
#: 8237 registers: (mask, mode, clear flip-flop) per controller.
CONTROLLER_PORTS = {1: (0x0A, 0x0B, 0x0C), 2: (0xD4, 0xD6, 0xD8)}
MODE_WRITE, MODE_READ = 0x04, 0x08   # transfer type: device -> memory / memory -> device
MASK_CHANNEL = 0x04
TERMINAL_COUNT = 0xFFFF

ExecutionRoutine = Callable[[Any, Any, int, Any], int]


@dataclass(eq=False)
class CommonBuffer:
    """What HalAllocateCommonBuffer returns: the buffer and its logical (bus) address."""

    virtual_address: int
    logical_address: int
    length: int
    adapter: ADAPTER_OBJECT


@dataclass
class _Channel:
    """One DMA adapter channel: its owner, its map registers and the requests waiting for it."""

    owner: Any = None
    map_registers: int = 0
    waiting: list[tuple[Any, int, ExecutionRoutine, Any]] = field(default_factory=list)


class DmaManager:
    """Adapter channels and common buffers of one machine, over its bus."""

    def __init__(self, bus: BusAccess, pool: tuple[int, int] = COMMON_BUFFER_POOL) -> None:
        self.bus = bus
        self.pool = pool
        self.buffers: list[CommonBuffer] = []
        self.channels: dict[int, _Channel] = {}

    # ------------------------------------------------------------------ common buffers
    def HalAllocateCommonBuffer(self, AdapterObject: ADAPTER_OBJECT, Length: int,
                                CacheEnabled: bool = False) -> CommonBuffer | None:
        """A page-aligned buffer the adapter reaches; None (NULL) when none fits."""
        a = AdapterObject
        if Length <= 0 or (a.maximum_transfer is not None and Length > a.maximum_transfer):
            return None
        size = -(-Length // PAGE_SIZE) * PAGE_SIZE
        taken = [(b.logical_address, b.logical_address + -(-b.length // PAGE_SIZE) * PAGE_SIZE)
                 for b in self.buffers]
        for start in range(self.pool[0], self.pool[1] - size + 1, PAGE_SIZE):
            if a.boundary is not None and start // a.boundary != (start + Length - 1) // a.boundary:
                continue
            if any(lo < start + size and start < hi for lo, hi in taken):
                continue
            break
        else:
            return None
        if start + Length - 1 > a.maximum_physical_address:
            return None
        buffer = CommonBuffer(start, start, Length, a)
        self.buffers.append(buffer)
        return buffer

    def HalFreeCommonBuffer(self, AdapterObject: ADAPTER_OBJECT, Length: int, Buffer: CommonBuffer) -> None:
        if Buffer not in self.buffers or Length != Buffer.length:
            raise ValueError("HalFreeCommonBuffer: not a buffer of this length from HalAllocateCommonBuffer")
        self.buffers.remove(Buffer)

    # ------------------------------------------------------------------ adapter channels
    def IoAllocateAdapterChannel(self, AdapterObject: ADAPTER_OBJECT, DeviceObject: Any,
                                 NumberOfMapRegisters: int, ExecutionRoutine: ExecutionRoutine,
                                 Context: Any) -> NTSTATUS:
        a = AdapterObject
        if NumberOfMapRegisters > a.map_registers or a.dma_channel is None:
            return NTSTATUS.STATUS_INSUFFICIENT_RESOURCES
        channel = self.channels.setdefault(a.dma_channel, _Channel())
        if channel.owner is not None:
            channel.waiting.append((DeviceObject, NumberOfMapRegisters, ExecutionRoutine, Context))
            return NTSTATUS.STATUS_SUCCESS
        self._grant(a, channel, DeviceObject, NumberOfMapRegisters, ExecutionRoutine, Context)
        return NTSTATUS.STATUS_SUCCESS

    def _grant(self, adapter: ADAPTER_OBJECT, channel: _Channel, device: Any, registers: int,
               routine: ExecutionRoutine, context: Any) -> None:
        channel.owner, channel.map_registers = device, registers
        action = routine(device, None, 0, context)       # MapRegisterBase: 0 (no map registers on ISA)
        if action == DeallocateObject:
            self.IoFreeAdapterChannel(adapter)

    def IoFreeAdapterChannel(self, AdapterObject: ADAPTER_OBJECT) -> None:
        channel = self.channels.get(AdapterObject.dma_channel)
        if channel is None or channel.owner is None:
            raise ValueError(f"IoFreeAdapterChannel: DMA channel {AdapterObject.dma_channel} is not allocated")
        channel.owner = None
        if channel.waiting:
            self._grant(AdapterObject, channel, *channel.waiting.pop(0))

    def owner(self, AdapterObject: ADAPTER_OBJECT) -> Any:
        channel = self.channels.get(AdapterObject.dma_channel)
        return channel.owner if channel else None

    # ------------------------------------------------------------------ transfers
    def IoMapTransfer(self, AdapterObject: ADAPTER_OBJECT, Buffer: CommonBuffer, MapRegisterBase: int,
                      Offset: int, Length: int, WriteToDevice: bool) -> tuple[int, int]:
        """Program the channel for ``Length`` bytes at ``Buffer + Offset``; returns the
        logical address and the length mapped."""
        a = AdapterObject
        if a.controller is None or a.channel_number is None or a.page_port is None:
            raise ValueError("IoMapTransfer: a bus-master adapter has no system DMA channel to program")
        if not 0 <= Offset < Buffer.length or Length <= 0 or Offset + Length > Buffer.length:
            raise ValueError(f"IoMapTransfer: {Offset:#x}+{Length:#x} is outside the {Buffer.length:#x}-byte buffer")
        address = Buffer.logical_address + Offset
        if a.boundary is not None and address // a.boundary != (address + Length - 1) // a.boundary:
            raise ValueError(f"IoMapTransfer: {address:#x}+{Length:#x} crosses a {a.boundary:#x} boundary")
        mask, mode_port, flip_flop = CONTROLLER_PORTS[a.controller]
        shift = 1 if a.width16 else 0                 # the 16-bit controller counts words
        counter = address >> shift & 0xFFFF
        count = (Length >> shift) - 1
        mode = (a.mode or 0) | (MODE_READ if WriteToDevice else MODE_WRITE)
        self.bus.write_port(mask, MASK_CHANNEL | a.channel_number)
        self.bus.write_port(flip_flop, 0)
        self.bus.write_port(mode_port, mode)
        self.bus.write_port(a.address_port, counter & 0xFF)
        self.bus.write_port(a.address_port, counter >> 8)
        self.bus.write_port(a.page_port, address >> 16 & (0xFE if a.width16 else 0xFF))
        self.bus.write_port(a.count_port, count & 0xFF)
        self.bus.write_port(a.count_port, count >> 8)
        self.bus.write_port(mask, a.channel_number)
        return address, Length

    def remaining(self, AdapterObject: ADAPTER_OBJECT) -> int:
        """The channel's current count register (0xFFFF: terminal count reached)."""
        a = AdapterObject
        assert a.controller is not None and a.count_port is not None
        self.bus.write_port(CONTROLLER_PORTS[a.controller][2], 0)
        return self.bus.read_port(a.count_port) | self.bus.read_port(a.count_port) << 8

    def IoFlushAdapterBuffers(self, AdapterObject: ADAPTER_OBJECT, Buffer: CommonBuffer, MapRegisterBase: int,
                              Offset: int, Length: int, WriteToDevice: bool) -> bool:
        """Mask the channel; TRUE when the whole transfer happened (terminal count)."""
        a = AdapterObject
        assert a.controller is not None and a.channel_number is not None
        self.bus.write_port(CONTROLLER_PORTS[a.controller][0], MASK_CHANNEL | a.channel_number)
        return self.remaining(a) == TERMINAL_COUNT


__all__ = ["COMMON_BUFFER_POOL", "CommonBuffer", "DeallocateObject", "DeallocateObjectKeepRegisters",
           "DmaManager", "KeepObject", "TERMINAL_COUNT"]
