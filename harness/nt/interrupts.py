r"""Interrupt objects and their dispatch on the PC/AT PIC HAL and the APIC HAL: IoConnectInterrupt,
IoDisconnectInterrupt, KeSynchronizeExecution, and the CPU's side of taking an interrupt.

A driver connects its ISR to the vector, IRQL and affinity HalGetInterruptVector gave
(seed 000).  The rules (WRK ``KeConnectInterrupt`` / ``IoConnectInterrupt``, ReactOS
``irq.c``): the affinity must name an active processor, SynchronizeIrql may not be below
Irql, the vector must be a device vector the HAL hands out (0x30-0x3F but the cascade's
0x32); a vector already connected takes a new object only when every object on it and
the new one say ShareVector and use the same mode; otherwise STATUS_INVALID_PARAMETER.
The first object on a vector enables its line at the 8259 (HalEnableSystemInterrupt:
unmask, and set the ELCR bit for LevelSensitive, clear it for Latched); the last one to
disconnect masks it again.  The model's HAL starts with every line but the cascade masked:
it runs no clock of its own.

Taking an interrupt is what the CPU and the HAL would do, through the bus's ports: the
8259's poll command (OCW3 0x0C) acknowledges the highest-priority pending line exactly as
INTA does (edge-latched IRR cleared, ISR set), the vector is 0x30 + IRQ, the chain of
interrupt objects runs, and a non-specific EOI ends it.  A vector with one object calls its ISR
once (``KiInterruptDispatch``); a chain runs in connection
order as ``KiChainedDispatch2ndLvl`` does (WRK intsup.asm): for a LevelSensitive vector
it stops at the first ISR that returns TRUE (the line stays asserted while another
device needs service); for a Latched vector it traverses the whole chain, again and
again, until one full pass finds no ISR claiming, because one edge may stand for several
devices.  An interrupt no ISR claims is counted as spurious.  A connect takes any
interrupt already pending at once: an ISR can be called before IoConnectInterrupt returns
(seed 003), so it must recognise an interrupt that is not its device's.

On the APIC HAL (``hal.interrupt_model == "apic"``) the same rules hold with the APIC's
parts (:class:`ApicController`): the vector must be one HalGetInterruptVector handed out
for an I/O APIC input; the first connect programs that input's redirection entry (the
vector, fixed delivery to the boot processor's local APIC, edge for Latched and level for
LevelSensitive, the MADT's polarity) and unmasks it, the last disconnect masks it; the
8259s are masked for good and the local APIC enabled with LINT0 masked.  Taking an
interrupt is the CPU's own: the probe guest's agent opens an interrupt window (its ``a``
request) and answers the vector its CPU took from the local APIC; after the chain ran the
HAL writes the local APIC's EOI register, which for a level vector also ends the I/O
APIC's Remote IRR (a line still asserted is delivered again).  The APIC HAL therefore
needs a bus with ``accept_interrupt`` and ``write_memory`` (:class:`InterruptAcceptor`).

Interrupts are taken only when :meth:`InterruptManager.take_interrupts` is called (the
harness stands in for the CPU; the guest, if any, runs with IF=0), so a test can make
several devices interrupt before the "CPU" looks — which is how a shared line loses one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Protocol, runtime_checkable

from .hal import CASCADE_IRQ, ISA_IRQS, PRIMARY_VECTOR_BASE, Hal
from .resources import CM_RESOURCE_INTERRUPT_LATCHED
from .status import NTSTATUS

LevelSensitive, Latched = 0, 1          # KINTERRUPT_MODE
HIGH_LEVEL = 31
PIC_MASTER, PIC_SLAVE = 0x20, 0xA0
ELCR_PORTS = (0x4D0, 0x4D1)
OCW3_READ_IRR, OCW3_READ_ISR, OCW3_POLL = 0x0A, 0x0B, 0x0C
NON_SPECIFIC_EOI = 0x20
#: Lines the PIIX/ICH ELCR keeps edge-triggered whatever is written (clock, keyboard,
#: cascade, RTC, x87).
EDGE_ONLY_IRQS = frozenset({0, 1, 2, 8, 13})
#: More interrupts than this in one take_interrupts is an interrupt storm (a level line
#: nobody services); the model stops there instead of hanging as NT would.
STORM_LIMIT = 64
#: Full passes over a Latched chain before it counts as a storm.
MAX_LATCHED_PASSES = 16

ServiceRoutine = Callable[["KINTERRUPT", Any], bool]


@dataclass(eq=False)
class KINTERRUPT:
    """One connected interrupt object."""

    service_routine: ServiceRoutine
    service_context: Any
    vector: int
    irql: int
    synchronize_irql: int
    mode: int
    share_vector: bool
    affinity: int
    name: str = ""
    owner: Any = None                   # the driver object that connected it
    line: int = -1                      # the controller input: ISA IRQ (PIC) or GSI (APIC)
    connected: bool = True
    calls: int = 0
    claimed: int = 0

    @property
    def irq(self) -> int:
        return self.line

    @property
    def mode_name(self) -> str:
        return "Latched" if self.mode == Latched else "LevelSensitive"


@dataclass
class TakenInterrupt:
    """One interrupt the CPU took: which line, and what each ISR call returned."""

    irq: int | None
    vector: int | None
    calls: list[tuple[str, bool]] = field(default_factory=list)
    handled: bool = False
    passes: int = 0
    reason: str = ""                    # why it is spurious, when it is

    @property
    def spurious(self) -> bool:
        return not self.handled


@dataclass(frozen=True)
class PicState:
    """The two 8259s as the CPU reads them (OCW3 and the IMR/ELCR ports), bit n = IRQ n."""

    irr: int
    isr: int
    imr: int
    elcr: int

    def pending(self, irq: int) -> bool:
        return bool(self.irr >> irq & 1)


@runtime_checkable
class InterruptAcceptor(Protocol):
    """A bus whose CPU can take an interrupt on request (the probe guest's agent)."""

    def accept_interrupt(self) -> int: ...

    def write_memory(self, address: int, data: bytes) -> None: ...


#: What :meth:`Controller.acknowledge` answers for an interrupt that has no line (the
#: slave 8259 with nothing pending; the local APIC's spurious vector).
SPURIOUS = -1


class Controller:
    """The HAL's side of one interrupt controller model."""

    #: The controller's section in QEMU's ``info irq``.
    qemu_name = ""

    def start(self) -> None:
        raise NotImplementedError

    def line_of(self, vector: int) -> int | None:
        """The input a device vector comes from, None for a vector the HAL never hands out."""
        raise NotImplementedError

    def set_line(self, vector: int, line: int, enabled: bool, mode: int) -> None:
        """HalEnableSystemInterrupt / HalDisableSystemInterrupt."""
        raise NotImplementedError

    def acknowledge(self) -> tuple[int, int] | int | None:
        """(line, vector) of the interrupt the CPU takes now, SPURIOUS, or None."""
        raise NotImplementedError

    def eoi(self, line: int, vector: int) -> None:
        raise NotImplementedError


class PicController(Controller):
    """The two 8259s through their ports: poll (OCW3) as INTA, non-specific EOI."""

    qemu_name = "isa-i8259"

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    def start(self) -> None:
        """Mask every line but the cascade: lines are enabled as ISRs connect."""
        self.bus.write_port(PIC_MASTER + 1, 0xFF & ~(1 << CASCADE_IRQ))
        self.bus.write_port(PIC_SLAVE + 1, 0xFF)

    def line_of(self, vector: int) -> int | None:
        irq = vector - PRIMARY_VECTOR_BASE
        return irq if 0 <= irq < ISA_IRQS and irq != CASCADE_IRQ else None

    def set_line(self, vector: int, line: int, enabled: bool, mode: int) -> None:
        port = PIC_MASTER + 1 if line < 8 else PIC_SLAVE + 1
        bit = 1 << (line & 7)
        imr = self.bus.read_port(port)
        self.bus.write_port(port, imr & ~bit if enabled else imr | bit)
        if enabled and line not in EDGE_ONLY_IRQS:
            elcr_port = ELCR_PORTS[line >> 3]
            elcr = self.bus.read_port(elcr_port)
            self.bus.write_port(elcr_port, elcr | bit if mode == LevelSensitive else elcr & ~bit)

    def acknowledge(self) -> tuple[int, int] | int | None:
        self.bus.write_port(PIC_MASTER, OCW3_POLL)
        master = self.bus.read_port(PIC_MASTER)
        if not master & 0x80:
            return None
        irq = master & 7
        if irq == CASCADE_IRQ:
            self.bus.write_port(PIC_SLAVE, OCW3_POLL)
            slave = self.bus.read_port(PIC_SLAVE)
            if not slave & 0x80:
                self.eoi(8, 0)
                return SPURIOUS
            irq = 8 + (slave & 7)
        return irq, PRIMARY_VECTOR_BASE + irq

    def eoi(self, line: int, vector: int) -> None:
        if line >= 8:
            self.bus.write_port(PIC_SLAVE, NON_SPECIFIC_EOI)
        self.bus.write_port(PIC_MASTER, NON_SPECIFIC_EOI)


class ApicController(Controller):
    """The I/O APIC and the boot processor's local APIC (module docstring)."""

    qemu_name = "ioapic"

    def __init__(self, hal: Hal) -> None:
        if not isinstance(hal.bus, InterruptAcceptor):
            raise ValueError("the APIC HAL takes interrupts through the CPU: its bus must be the probe "
                             "guest's agent (accept_interrupt and write_memory), not "
                             f"{type(hal.bus).__name__}")
        # (.apic loads here, not with this module: a PIC machine's job never needs it)
        from .apic import IoApic, LocalApic, LAPIC_DEFAULT_ADDRESS
        madt = hal.madt
        if madt is None or not madt.ioapics:
            raise ValueError("the APIC HAL needs an I/O APIC, and the firmware's MADT lists none")
        self.hal = hal
        self.bus: Any = hal.bus
        self.ioapic = IoApic(hal.bus, madt.ioapics[0].address, madt.ioapics[0].gsi_base)
        self.lapic = LocalApic(hal.bus, madt.local_apic or LAPIC_DEFAULT_ADDRESS)
        self.destination = 0

    def start(self) -> None:
        """The 8259s masked for good, the local APIC enabled (LINT0 masked)."""
        self.bus.write_port(PIC_MASTER + 1, 0xFF)
        self.bus.write_port(PIC_SLAVE + 1, 0xFF)
        self.lapic.enable()
        from .apic import LAPIC_ID
        self.destination = self.lapic.read(LAPIC_ID) >> 24

    def line_of(self, vector: int) -> int | None:
        line = self.hal.apic_lines.get(vector)
        return None if line is None else line.gsi - self.ioapic.gsi_base

    def set_line(self, vector: int, line: int, enabled: bool, mode: int) -> None:
        if not enabled:
            self.ioapic.mask(line)
            return
        from .apic import RedirectionEntry
        source = self.hal.apic_lines[vector]
        self.ioapic.set_entry(line, RedirectionEntry.build(vector, level=mode == LevelSensitive,
                                                           active_low=source.active_low,
                                                           destination=self.destination))

    def acknowledge(self) -> tuple[int, int] | int | None:
        from .apic import SPURIOUS_VECTOR
        vector = self.bus.accept_interrupt()
        if vector == 0:
            return None
        if vector == SPURIOUS_VECTOR:
            return SPURIOUS  # the local APIC's spurious vector takes no EOI
        line = self.line_of(vector)
        return (-1 if line is None else line), vector

    def eoi(self, line: int, vector: int) -> None:
        self.lapic.eoi()


class InterruptManager:
    """The kernel's interrupt objects and the HAL's part in taking interrupts.

    ``wrap_call(interrupt)`` returns a context manager every ISR call runs in (the I/O
    manager attributes the ISR's register accesses to the driver that connected it).
    """

    def __init__(self, hal: Hal, *, wrap_call: Callable[[KINTERRUPT], ContextManager[Any]] | None = None) -> None:
        self.hal = hal
        self.bus = hal.bus
        self.controller: Controller = PicController(hal.bus) if hal.interrupt_model == "pic" else ApicController(hal)
        self.wrap_call = wrap_call or (lambda interrupt: contextlib.nullcontext())
        self.vectors: dict[int, list[KINTERRUPT]] = {}
        self.taken: list[TakenInterrupt] = []
        self.spurious = 0
        self.current_irql = 0
        self._initialised = False

    # ------------------------------------------------------------------ the 8259s
    def pic_state(self) -> PicState:
        irr = self._ocw3_read(OCW3_READ_IRR)
        isr = self._ocw3_read(OCW3_READ_ISR)
        imr = self.bus.read_port(PIC_MASTER + 1) | self.bus.read_port(PIC_SLAVE + 1) << 8
        elcr = self.bus.read_port(ELCR_PORTS[0]) | self.bus.read_port(ELCR_PORTS[1]) << 8
        return PicState(irr, isr, imr, elcr)

    def _ocw3_read(self, command: int) -> int:
        self.bus.write_port(PIC_MASTER, command)
        self.bus.write_port(PIC_SLAVE, command)
        return self.bus.read_port(PIC_MASTER) | self.bus.read_port(PIC_SLAVE) << 8

    def _init_hal(self) -> None:
        if not self._initialised:
            self.controller.start()
            self._initialised = True

    # ------------------------------------------------------------------ connect
    def IoConnectInterrupt(self, ServiceRoutine: ServiceRoutine, ServiceContext: Any, SpinLock: Any,
                           Vector: int, Irql: int, SynchronizeIrql: int, InterruptMode: int,
                           ShareVector: bool, ProcessorEnableMask: int, FloatingSave: bool = False,
                           *, name: str = "", owner: Any = None) -> tuple[NTSTATUS, KINTERRUPT | None]:
        """Connect an ISR (module docstring for the rules); returns the status and the
        interrupt object (None on failure)."""
        invalid = NTSTATUS.STATUS_INVALID_PARAMETER, None
        if not ProcessorEnableMask & self.hal.active_processors:
            return invalid
        if InterruptMode not in (LevelSensitive, Latched) or not 0 <= Irql <= HIGH_LEVEL \
                or SynchronizeIrql < Irql or SynchronizeIrql > HIGH_LEVEL:
            return invalid
        line = self.controller.line_of(Vector)
        if line is None:
            return invalid
        chain = self.vectors.get(Vector, [])
        if chain and not (ShareVector and all(i.share_vector and i.mode == InterruptMode for i in chain)):
            return invalid
        interrupt = KINTERRUPT(ServiceRoutine, ServiceContext, Vector, Irql, SynchronizeIrql, InterruptMode,
                               bool(ShareVector), ProcessorEnableMask & self.hal.active_processors,
                               name or getattr(ServiceRoutine, "__qualname__", "isr"), owner, line)
        self._init_hal()
        self.vectors.setdefault(Vector, []).append(interrupt)
        if len(self.vectors[Vector]) == 1:
            self.controller.set_line(Vector, line, True, InterruptMode)
        self.take_interrupts()           # what is pending now reaches the new ISR at once
        return NTSTATUS.STATUS_SUCCESS, interrupt

    def IoDisconnectInterrupt(self, InterruptObject: KINTERRUPT) -> None:
        chain = self.vectors.get(InterruptObject.vector, [])
        if InterruptObject not in chain:
            raise ValueError(f"interrupt object {InterruptObject.name} is not connected")
        chain.remove(InterruptObject)
        InterruptObject.connected = False
        if not chain:
            del self.vectors[InterruptObject.vector]
            self.controller.set_line(InterruptObject.vector, InterruptObject.line, False, InterruptObject.mode)

    def KeSynchronizeExecution(self, Interrupt: KINTERRUPT, SynchronizeRoutine: Callable[[Any], bool],
                               SynchronizeContext: Any) -> bool:
        """Run a routine at the interrupt's SynchronizeIrql: interrupts are only taken when
        take_interrupts runs, so nothing can preempt it; the IRQL is what it observes."""
        saved, self.current_irql = self.current_irql, Interrupt.synchronize_irql
        try:
            return bool(SynchronizeRoutine(SynchronizeContext))
        finally:
            self.current_irql = saved

    def connected(self, vector: int) -> list[KINTERRUPT]:
        return list(self.vectors.get(vector, []))

    # ------------------------------------------------------------------ taking interrupts
    def take_interrupts(self, limit: int = STORM_LIMIT) -> list[TakenInterrupt]:
        """Take every interrupt the PICs present (at most ``limit``); returns them in order.
        Stopping at the limit marks the last one as a storm."""
        out: list[TakenInterrupt] = []
        if not self._initialised:
            return out
        for _ in range(limit):
            taken = self.controller.acknowledge()
            if taken is None:
                break
            if taken == SPURIOUS:
                out.append(TakenInterrupt(None, None, reason="the controller had nothing to deliver "
                                                             "(spurious IRQ 15 / spurious vector kind)"))
                continue
            assert isinstance(taken, tuple)
            out.append(self._dispatch(*taken))
            self.controller.eoi(*taken)
        else:
            if out:
                out[-1].reason = f"interrupt storm: {limit} interrupts in a row"
        self.taken += out
        self.spurious += sum(1 for t in out if t.spurious)
        return out

    def _dispatch(self, irq: int, vector: int) -> TakenInterrupt:
        chain = list(self.vectors.get(vector, []))
        taken = TakenInterrupt(irq, vector)
        if not chain:
            taken.reason = "no interrupt object is connected to the vector"
            return taken
        if len(chain) == 1:              # not chained: KiInterruptDispatch calls the ISR once
            taken.passes = 1
            taken.handled = self._call(chain[0], taken)
            if not taken.handled:
                taken.reason = "no ISR on the vector claimed it"
            return taken
        level = chain[0].mode == LevelSensitive
        for _ in range(MAX_LATCHED_PASSES):
            taken.passes += 1
            claimed_this_pass = False
            for interrupt in chain:
                if self._call(interrupt, taken):
                    taken.handled = claimed_this_pass = True
                    if level:
                        return taken
            if level or not claimed_this_pass:
                break
        if not taken.handled:
            taken.reason = "no ISR on the vector claimed it"
        return taken

    def _call(self, interrupt: KINTERRUPT, taken: TakenInterrupt) -> bool:
        saved, self.current_irql = self.current_irql, interrupt.synchronize_irql
        try:
            with self.wrap_call(interrupt):
                result = bool(interrupt.service_routine(interrupt, interrupt.service_context))
        finally:
            self.current_irql = saved
        interrupt.calls += 1
        interrupt.claimed += result
        taken.calls.append((interrupt.name, result))
        return result


def interrupt_mode(flags: int) -> int:
    """KINTERRUPT_MODE for a CM interrupt descriptor's Flags (bit 0: latched)."""
    return Latched if flags & CM_RESOURCE_INTERRUPT_LATCHED else LevelSensitive


__all__ = ["ApicController", "Controller", "InterruptAcceptor", "InterruptManager", "KINTERRUPT",
           "LevelSensitive", "Latched", "PicController", "PicState", "TakenInterrupt", "interrupt_mode"]
