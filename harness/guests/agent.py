"""The probe guest as a bus agent: port and memory accesses made by the guest's CPU.

Host-side HMP reads physical memory (``xp``) and does port I/O, but cannot write guest
memory, and its port accesses are not the CPU's.  In agent mode (``agent=PORT`` on its
command line, guest_images/probe/probe.c) the probe guest polls a harness-owned 16550
UART and performs each request it receives from the CPU's side: ``in``/``out`` of 1, 2
or 4 bytes and 8/16/32-bit physical-memory reads and writes (MMIO included).

The channel: QEMU's ISA serial with a unix-socket chardev (``agent.sock`` in the run
folder), the device id ``harness-agent`` (reserved prefix).  Its port block is chosen
from :data:`AGENT_PORTS` away from every modelled device, and its IRQ from
:data:`AGENT_IRQS` away from every modelled line; the agent never enables the UART's
interrupt, but QEMU drives the line low on every received byte, which would wipe a
device under test's request on a shared line (qemu-facts.md §3b).

:class:`AgentBus` implements :class:`~harness.nt.busaccess.BusAccess` plus
``write_memory``, so the HAL (``WRITE_REGISTER_*``) uses it transparently.  Every request
has a bounded timeout; a guest that does not answer raises :class:`AgentError`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from typing import Iterator

from ..config import MachineSpec
from ..nt.busaccess import (BusAccessError, check_config_range, check_port_access,
                            config_write_pieces)
from ..qemu.bus import PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA, HmpPorts
from ..qemu.livebus import LiveBus
from ..qemu.machine import AGENT_PORTS as AGENT_PORT_COUNT, FirmwareStalled, GuestBoot, Machine
from ..qemu.progress import POLL_INTERVAL, FirmwareWatch
from .probe import build_probe, channel_ports, ports_in_use

#: Port blocks tried for the agent's UART (nothing on a PC board decodes them).
AGENT_PORTS = (0x2E0, 0x1E0, 0x6E0)
#: ISA lines tried for it: the secondary IDE line first (no drive ever raises it).
AGENT_IRQS = (15, 14, 7, 5, 3, 4, 12)
REQUEST_TIMEOUT = 5.0
#: How often a request's wait looks whether QEMU stopped the guest meanwhile.
STOP_CHECK_INTERVAL = 0.2
#: Memory reads longer than this go through HMP (:meth:`AgentBus.read_memory`).
BULK_READ = 64
BOOT_TIMEOUT = 30.0  # SeaBIOS and the multiboot load take ~1 s under TCG
_REQUEST = struct.Struct("<cBII")
_ANSWER = struct.Struct("<cI")


class AgentError(BusAccessError):
    """The agent did not answer in time, answered nonsense, or refused a request."""


def agent_channel(spec: MachineSpec) -> tuple[int, int]:
    """(port, IRQ) for the agent's UART on ``spec``: clear of every modelled device and of
    every I/O BAR a step moves (:func:`~harness.guests.probe.ports_in_use`)."""
    taken = ports_in_use(spec)
    report, exit_port = channel_ports(spec)
    taken += [(report, report), (exit_port, exit_port + 3)]
    port = next((p for p in AGENT_PORTS
                 if not any(lo <= p + AGENT_PORT_COUNT - 1 and p <= hi for lo, hi in taken)), None)
    lines = {dev.settings["irq"] for dev in spec.devices if "irq" in dev.settings}
    irq = next((i for i in AGENT_IRQS if i not in lines), None)
    if port is None or irq is None:
        raise AgentError(f"no free port block {[hex(p) for p in AGENT_PORTS]} or ISA line {AGENT_IRQS} "
                         f"for the guest agent on {spec.source}")
    return port, irq


class GuestAgent:
    """The request channel: one request, one 5-byte answer, each bounded in time."""

    def __init__(self, machine: Machine, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.machine = machine
        self.timeout = timeout
        self.requests = 0
        self.seconds = 0.0
        self._sock: socket.socket | None = None

    def connect(self, timeout: float = BOOT_TIMEOUT, *, after_event: int = 0) -> None:
        """Wait (bounded) for the guest's hello line, connect, and check with a ping; a
        reset or shutdown (event number ``after_event`` or later) ends the wait at once."""
        deadline = time.monotonic() + timeout
        path = self.machine.agent_socket
        # SeaBIOS runs first: a firmware that provably stopped ends the wait at once.
        watch = FirmwareWatch(self.machine, deadline, also=(self.machine.report_path,))
        polled = time.monotonic()
        while True:
            text = self.machine.report_path.read_text(errors="replace") if self.machine.report_path.exists() else ""
            if '"hello"' in text and path.exists():
                break
            # A reset or shutdown on the way (-action pauses QEMU there) means no guest
            # will ever say hello: no need to wait out the bound.
            stops = [e for e in self.machine.events()[after_event:] if e["event"] == "SHUTDOWN"]
            if stops:
                reason = stops[0].get("data", {}).get("reason", "?")
                raise AgentError(f"the guest stopped the machine ({reason}) before its agent said hello"
                                 + self.machine.log_tails())
            # Nor when QEMU exited or paused the guest (a pvpanic the firmware wrote).
            stop = self._stopped()
            if stop is not None:
                raise AgentError(f"{stop} before its agent said hello" + self.machine.log_tails())
            if self.machine.pid is None or time.monotonic() > deadline:
                raise AgentError(f"the guest agent did not say hello within {timeout:g} s"
                                 + self.machine.log_tails())
            if time.monotonic() - polled >= POLL_INTERVAL:
                polled = time.monotonic()
                stall = watch.poll()
                if stall is not None:
                    raise FirmwareStalled(stall, machine=self.machine, waited_for="the guest agent's hello")
            time.sleep(0.01)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        sock.connect(str(path))
        self._sock = sock
        token = int.from_bytes(os.urandom(4), "little")
        if self.request(b"p", 4, 0, token) != token:
            raise AgentError("the guest agent answered a ping with the wrong value")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(self, op: bytes, size: int, address: int, value: int = 0) -> int:
        if self._sock is None:
            raise AgentError("the guest agent is not connected")
        start = time.monotonic()
        deadline = start + self.timeout
        # Waited for in slices: a guest that QEMU stopped (a device over the port the
        # request wrote paused it: a pvpanic, a reset) never answers, and that is known
        # from the events at once, not after the whole bound.
        self._sock.settimeout(self.timeout)
        try:
            self._sock.sendall(_REQUEST.pack(op, size, address & 0xFFFFFFFF, value & 0xFFFFFFFF))
            self._sock.settimeout(STOP_CHECK_INTERVAL)
            answer = b""
            while len(answer) < _ANSWER.size:
                try:
                    chunk = self._sock.recv(_ANSWER.size - len(answer))
                except socket.timeout:
                    stop = self._stopped()
                    if stop is None and time.monotonic() < deadline:
                        continue
                    self.close()  # the stream may be out of step now: no further requests
                    why = f"within {self.timeout:g} s" if stop is None else f"({stop})"
                    raise AgentError(f"the guest agent did not answer {op.decode()} {address:#x} {why}"
                                     + self.machine.log_tails()) from None
                if not chunk:
                    raise AgentError("the guest agent's channel closed")
                answer += chunk
        except socket.timeout:  # sendall: the guest does not read its UART
            self.close()
            raise AgentError(f"the guest agent did not take {op.decode()} {address:#x} within "
                             f"{self.timeout:g} s" + self.machine.log_tails()) from None
        status, out = _ANSWER.unpack(answer)
        self.requests += 1
        self.seconds += time.monotonic() - start
        if status != b"k":
            raise AgentError(f"the guest agent refused request {op!r} (status {status!r})")
        return out

    def _stopped(self) -> str | None:
        """What keeps the guest from answering: QEMU exited, or it is paused (its last
        STOP came after its last RESUME: a panic, or a reset or shutdown that ``-action``
        pauses; the write that caused it may have been answered before the pause took
        effect), else None."""
        if self.machine.returncode is not None:
            return f"QEMU exited with status {self.machine.returncode}"
        after: list[str] = []
        for event in reversed(self.machine.events()):
            if event["event"] == "RESUME":
                break
            after.append(event["event"])
        if "STOP" not in after:
            return None
        named = [name for name in reversed(after) if name != "STOP"]
        return "QEMU stopped the guest" + (f" ({', '.join(named)})" if named else "")

    def quit(self) -> None:
        """Ask the guest to leave through isa-debug-exit (QEMU exits)."""
        if self._sock is not None:
            self._sock.sendall(_REQUEST.pack(b"q", 0, 0, 0))
            self.close()


class AgentBus:
    """:class:`~harness.nt.busaccess.BusAccess` (and ``write_memory``) through the agent."""

    def __init__(self, machine: Machine, agent: GuestAgent) -> None:
        self.machine = machine
        self.agent = agent

    @property
    def epoch(self) -> int:
        # The guest runs all the time; only a QMP event (a reset, a stop) changes the
        # hardware behind the HAL's back.
        return self.machine.event_count

    def read_port(self, port: int, size: int = 1) -> int:
        check_port_access(port, size)
        return self.agent.request(b"i", size, port)

    def write_port(self, port: int, value: int, size: int = 1) -> None:
        check_port_access(port, size)
        if not 0 <= value < 1 << (8 * size):
            raise AgentError(f"value {value:#x} does not fit in {size} byte(s)")
        self.agent.request(b"o", size, port, value)

    def read_memory(self, address: int, length: int) -> bytes:
        """Registers (up to :data:`BULK_READ` bytes) are read by the guest's CPU; longer
        reads are firmware tables and RAM (the RSDP search reads 128 KiB), which read the
        same from QEMU's side (HMP ``xp``), in one command instead of one request a dword."""
        if length > BULK_READ:
            return LiveBus(self.machine).read_memory(address, length)
        out = bytearray()
        for at, size in _memory_pieces(address, length):
            out += self.agent.request(b"r", size, at).to_bytes(size, "little")
        return bytes(out)

    def write_memory(self, address: int, data: bytes) -> None:
        data = bytes(data)
        for at, size in _memory_pieces(address, len(data)):
            self.agent.request(b"w", size, at, int.from_bytes(data[at - address:at - address + size], "little"))

    def read_config(self, bus: int, device: int, function: int, offset: int, length: int) -> bytes:
        check_config_range(bus, device, function, offset, length)
        out = bytearray()
        for dword in range(offset & ~3, offset + length, 4):
            address = HmpPorts.config_address(bus, device, function, dword)
            out += self.agent.request(b"c", 4, address).to_bytes(4, "little")  # 0xCF8 then 0xCFC
        skip = offset & 3
        return bytes(out[skip:skip + length])

    def accept_interrupt(self) -> int:
        """Let the guest's CPU take one interrupt (IF=1 for a few instructions): the
        vector it took, 0 when nothing was pending.  No EOI is written: the caller's
        HAL does that (:class:`harness.nt.interrupts.InterruptManager` on the APIC HAL)."""
        return self.agent.request(b"a", 4, 0)

    def write_config(self, bus: int, device: int, function: int, offset: int, data: bytes) -> None:
        data = bytes(data)
        check_config_range(bus, device, function, offset, len(data))
        for piece, width in config_write_pieces(offset, len(data)):
            self.write_port(PCI_CONFIG_ADDRESS, HmpPorts.config_address(bus, device, function, piece), 4)
            value = int.from_bytes(data[piece - offset:piece - offset + width], "little")
            self.write_port(PCI_CONFIG_DATA + (piece & 3), value, width)


class AgentLiveBus(LiveBus):
    """QEMU's monitor for ports, configuration space and bulk memory (the fast
    :class:`~harness.qemu.livebus.LiveBus` of a running machine), the guest's CPU for what
    only it can do: memory writes, register reads (up to :data:`BULK_READ` bytes: the local
    APIC is visible to its own CPU only) and taking an interrupt.  The main job's APIC HAL
    runs on it; the guest never touches configuration space after its start, so LiveBus's
    cache stays right."""

    def __init__(self, machine: Machine, agent_bus: AgentBus) -> None:
        super().__init__(machine)
        self.agent_bus = agent_bus

    def read_memory(self, address: int, length: int) -> bytes:
        return self.agent_bus.read_memory(address, length)  # it sends bulk reads back to HMP

    def write_memory(self, address: int, data: bytes) -> None:
        self.agent_bus.write_memory(address, data)

    def accept_interrupt(self) -> int:
        return self.agent_bus.accept_interrupt()


def _memory_pieces(address: int, length: int) -> list[tuple[int, int]]:
    if address < 0 or length < 0 or address + length > 1 << 32:
        raise AgentError(f"memory range {address:#x}+{length:#x} is outside the agent's 4 GiB")
    pieces = []
    end = address + length
    while address < end:
        size = 4 if address % 4 == 0 and end - address >= 4 else 2 if address % 2 == 0 and end - address >= 2 else 1
        pieces.append((address, size))
        address += size
    return pieces


def agent_boot(spec: MachineSpec) -> GuestBoot:
    """How to boot ``spec`` with the probe guest serving bus requests (channel ports and
    the agent's UART placed clear of the spec's devices)."""
    report, exit_port = channel_ports(spec)
    port, irq = agent_channel(spec)
    return GuestBoot(kernel=build_probe(), append=f"report={report:#x} exit={exit_port:#x} agent={port:#x}",
                     report_port=report, exit_port=exit_port, agent_port=port, agent_irq=irq)


def connect_agent(machine: Machine, timeout: float = BOOT_TIMEOUT) -> AgentBus:
    """Resume a launched machine booted with :func:`agent_boot` and connect to its agent
    (bounded); the caller closes ``bus.agent`` when done."""
    mark = machine.event_count
    machine.resume()
    agent = GuestAgent(machine)
    try:
        agent.connect(timeout, after_event=mark)
    except BaseException:
        agent.close()
        raise
    return AgentBus(machine, agent)


@contextlib.contextmanager
def agent_machine(spec: MachineSpec, *, keep: bool = False,
                  timeout: float = BOOT_TIMEOUT, before_launch=None) -> Iterator[tuple[Machine, AgentBus]]:
    """A running machine whose probe guest serves bus requests; yields (machine, bus).

    ``before_launch(machine)`` runs after the run folder exists and before QEMU starts
    (e.g. to write a floppy image).  The guest is asked to leave on exit."""
    machine = Machine(spec, boot=agent_boot(spec), keep=keep)
    if before_launch is not None:
        before_launch(machine)
    with machine:
        bus = connect_agent(machine, timeout)
        try:
            yield machine, bus
        finally:
            bus.agent.close()


__all__ = ["AGENT_IRQS", "AGENT_PORTS", "AgentBus", "AgentLiveBus", "AgentError", "GuestAgent", "agent_boot", "agent_channel",
           "agent_machine", "connect_agent"]
