r"""Interrupt objects and their dispatch on the PC/AT PIC HAL: IoConnectInterrupt,
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

Interrupts are taken only when :meth:`InterruptManager.take_interrupts` is called (the
harness stands in for the CPU; the guest, if any, runs with IF=0), so a test can make
several devices interrupt before the "CPU" looks — which is how a shared line loses one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

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
    connected: bool = True
    calls: int = 0
    claimed: int = 0

    @property
    def irq(self) -> int:
        return self.vector - PRIMARY_VECTOR_BASE

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


class InterruptManager:
    """The kernel's interrupt objects and the PIC HAL's part in taking interrupts.

    ``wrap_call(interrupt)`` returns a context manager every ISR call runs in (the I/O
    manager attributes the ISR's register accesses to the driver that connected it).
    """

    def __init__(self, hal: Hal, *, wrap_call: Callable[[KINTERRUPT], ContextManager[Any]] | None = None) -> None:
        if hal.interrupt_model != "pic":
            raise ValueError("interrupt dispatch is modelled for the PC/AT PIC HAL only")
        self.hal = hal
        self.bus = hal.bus
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
        """Mask every line but the cascade: lines are enabled as ISRs connect."""
        if not self._initialised:
            self.bus.write_port(PIC_MASTER + 1, 0xFF & ~(1 << CASCADE_IRQ))
            self.bus.write_port(PIC_SLAVE + 1, 0xFF)
            self._initialised = True

    def _set_line(self, irq: int, enabled: bool, mode: int) -> None:
        """HalEnableSystemInterrupt / HalDisableSystemInterrupt."""
        port = PIC_MASTER + 1 if irq < 8 else PIC_SLAVE + 1
        bit = 1 << (irq & 7)
        imr = self.bus.read_port(port)
        self.bus.write_port(port, imr & ~bit if enabled else imr | bit)
        if enabled and irq not in EDGE_ONLY_IRQS:
            elcr_port = ELCR_PORTS[irq >> 3]
            elcr = self.bus.read_port(elcr_port)
            self.bus.write_port(elcr_port, elcr | bit if mode == LevelSensitive else elcr & ~bit)

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
        irq = Vector - PRIMARY_VECTOR_BASE
        if not 0 <= irq < ISA_IRQS or irq == CASCADE_IRQ:
            return invalid
        chain = self.vectors.get(Vector, [])
        if chain and not (ShareVector and all(i.share_vector and i.mode == InterruptMode for i in chain)):
            return invalid
        interrupt = KINTERRUPT(ServiceRoutine, ServiceContext, Vector, Irql, SynchronizeIrql, InterruptMode,
                               bool(ShareVector), ProcessorEnableMask & self.hal.active_processors,
                               name or getattr(ServiceRoutine, "__qualname__", "isr"), owner)
        self._init_hal()
        self.vectors.setdefault(Vector, []).append(interrupt)
        if len(self.vectors[Vector]) == 1:
            self._set_line(irq, True, InterruptMode)
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
            self._set_line(InterruptObject.irq, False, InterruptObject.mode)

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
            irq = self._acknowledge()
            if irq is None:
                break
            out.append(self._dispatch(irq))
            self._eoi(irq)
        else:
            if out:
                out[-1].reason = f"interrupt storm: {limit} interrupts in a row"
        self.taken += out
        self.spurious += sum(1 for t in out if t.spurious)
        return out

    def _acknowledge(self) -> int | None:
        self.bus.write_port(PIC_MASTER, OCW3_POLL)
        master = self.bus.read_port(PIC_MASTER)
        if not master & 0x80:
            return None
        irq = master & 7
        if irq == CASCADE_IRQ:
            self.bus.write_port(PIC_SLAVE, OCW3_POLL)
            slave = self.bus.read_port(PIC_SLAVE)
            return 8 + (slave & 7) if slave & 0x80 else -1
        return irq

    def _eoi(self, irq: int) -> None:
        if irq < 0 or irq >= 8:
            self.bus.write_port(PIC_SLAVE, NON_SPECIFIC_EOI)
        self.bus.write_port(PIC_MASTER, NON_SPECIFIC_EOI)

    def _dispatch(self, irq: int) -> TakenInterrupt:
        if irq < 0:
            return TakenInterrupt(None, None, reason="the slave PIC had nothing pending (spurious IRQ 15 kind)")
        vector = PRIMARY_VECTOR_BASE + irq
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


__all__ = ["InterruptManager", "KINTERRUPT", "LevelSensitive", "Latched", "PicState", "TakenInterrupt",
           "interrupt_mode"]
