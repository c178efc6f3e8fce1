"""Whether a running firmware still makes progress: the watch that ends a firmware wait
early, with :class:`~harness.qemu.machine.FirmwareStalled`, once it provably never ends.

A card on some board ports keeps SeaBIOS from its end (tests/board_overlaps.py
``FIRMWARE_STOPS``).  Measured on QEMU 7.2 (benchmarks/bench_firmware_stalls.py,
tests/test_firmware_stalls.py), such a firmware ends in one of three ways, each a rule
here; none of them reads wall-clock silence alone, so a loaded host (QEMU slow, not
stuck) never trips them:

* **spin**: the vCPU loops on a port that never answers (fw_cfg's DMA port 0x518, the
  RTC data port, the APM port, the PIT on isapc).  A bare machine's whole firmware costs
  QEMU under 0.1 s of CPU, at most 0.04 s between two log lines; the rule wants
  :data:`SPIN_CPU` seconds of QEMU's own CPU time (/proc/PID/stat: it only grows while
  QEMU runs, so a starved QEMU never trips it) since the last log line.  SeaBIOS also
  spins in waits bounded by its timer (guest time, which under TCG follows the host
  clock): 5 s at most (``FLOPPY_IRQ_TIMEOUT``, a SCSI unit's first readiness wait) short
  of its 30 s and longer ones (:data:`LONG_TIMED_WAIT`), which outlast the firmware bound;
  a floppy whose IRQ or DMA channel a card takes spends those 5 s in a clean machine of
  configs/.  So the rule also wants :data:`SILENT_WAIT` seconds since that line, a wait the
  firmware would have left in time being over by then, and applies only while a long wait
  begun at that line would end past the waiter's bound (a bound longer than 30 s, given
  by a caller, turns it off until then).
* **halt**: the vCPU halted with interrupts off (``HLT=1`` with EFLAGS.IF clear in
  ``info registers``, read only while QEMU uses no CPU): only an NMI, SMI or INIT wakes it,
  and a harness machine has one CPU and nothing that sends those.  SeaBIOS does so after
  "Unimplemented shutdown status" (a card on the RTC's index port 0x70).
* **retry**: SeaBIOS's last words are "No bootable device.  Retrying in N seconds." with
  N > 0, and its reboot comes N s later, past the wait's bound: it never read the
  harness's ``reboot-timeout`` (fw_cfg ``etc/boot-fail-wait``; with the log, the line with
  the harness's own number, :data:`END_LINE`, is the firmware's end), because a card
  displaces fw_cfg (0x510, 0x511) and SeaBIOS waits its default 60 s.  It sleeps on the
  timer meanwhile (halted, interrupts on).  The rule reads the firmware log: with
  ``firmware_log: false`` the bound ends that wait.

The spin rule's CPU figure is measured under TCG; under KVM (unmeasured here) only the
halt and retry rules apply, and the bound stays the backstop in every case.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import HarnessError
from .owner import cpu_seconds, stopped_by_signal

#: QEMU CPU seconds since the last log line before a spin counts (per accelerator; TCG
#: measured: a clean firmware's largest gap is 0.04 s, the whole run under 0.1 s).
SPIN_CPU = {"tcg": 2.0}
#: Seconds since the last log line before a spin counts: longer than SeaBIOS's longest
#: timer-bounded wait that can end within the firmware bound (5 s; measured in configs/:
#: a floppy IRQ timeout, 5.04 s between two log lines) with a margin.
SILENT_WAIT = 7.0
#: SeaBIOS's shortest timed wait beyond that (a SCSI unit's 30 s; ATA and AHCI wait 32 s,
#: measured: a card on 0x1f7 holds pc's firmware 32.2 s): a spin that starts less than
#: this before the waiter's bound cannot be such a wait ending in time.
LONG_TIMED_WAIT = 30.0
#: How often a waiter asks the watch (seconds).
POLL_INTERVAL = 0.1
#: How often at most the halt rule reads the vCPU's registers (a monitor round trip).
HALT_CHECK_INTERVAL = 0.5
#: SeaBIOS's words when it gives up booting and waits N seconds before its reboot.
RETRY_LINE = re.compile(r"No bootable device\.\s+Retrying in (\d+) seconds\.")
#: The wait before that reboot the harness asks of SeaBIOS (``-boot reboot-timeout``, fw_cfg
#: ``etc/boot-fail-wait``) when it reads the firmware's log: it stops the machine as soon as
#: the line above says this number (:class:`FirmwareEnd`), so the reboot never runs: on QEMU
#: 7.2 under TCG it costs ~40 ms of CPU (SeaBIOS copies itself back over its shadowed code
#: first, each write into translated code; ``make bench-firmware-end``), a third of the run.
#: Should the harness miss the line, the reboot still ends the run this many seconds later.
#: Without the log the reboot is the end: 0.
END_RETRY_SECONDS = 5
#: The line that ends a firmware run whose log the harness reads.
END_LINE = f"No bootable device.  Retrying in {END_RETRY_SECONDS} seconds.".encode()
#: How often a waiter looks for :data:`END_LINE` (seconds): a stat of the log each time.
END_POLL = 0.003
_HALTED = re.compile(r"\bHLT=1\b")
_EFLAGS = re.compile(r"\bEFL=([0-9a-fA-F]+)")
EFLAGS_IF = 1 << 9


@dataclass(frozen=True)
class Stall:
    """Why the firmware provably stopped: ``rule`` (spin, halt, retry) and ``how`` the
    harness knew, in words; ``seconds``: wall time from the watch's start."""
    rule: str
    how: str
    seconds: float
    last_line: str | None


class FirmwareEnd:
    """Whether SeaBIOS gave up booting, per its log: :data:`END_LINE`, complete, among the
    bytes QEMU wrote from ``offset`` on (where this firmware run's log starts).  SeaBIOS then
    sleeps on its timer until the reboot, its devices as it hands them to a boot loader.

    A firmware that never read the harness's fw_cfg says another number (60): that line is
    not the end here; the watch's retry rule judges it."""

    def __init__(self, log: Path, offset: int = 0) -> None:
        self.log = log
        self.offset = offset
        self._fd: int | None = None
        self._partial = b""   # a line not yet ended

    def reached(self) -> bool:
        if self._fd is None:
            try:
                self._fd = os.open(self.log, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False   # not made yet: QEMU makes it as it starts
        size = os.fstat(self._fd).st_size
        if size <= self.offset:
            return False
        data = self._partial + os.pread(self._fd, size - self.offset, self.offset)
        self.offset = size
        lines, _, self._partial = data.rpartition(b"\n")
        return END_LINE in lines

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def last_line(log: bytes) -> str | None:
    """The last non-blank line of a firmware log, or None."""
    return next((line.decode(errors="replace").strip() for line in reversed(log.splitlines()) if line.strip()), None)


class FirmwareWatch:
    """Samples a running machine (:meth:`poll`) and says when its firmware stopped.

    Progress is any growth of the machine's firmware log or of ``also`` (e.g. the probe
    guest's report file); ``deadline`` (time.monotonic()) is the waiter's bound."""

    def __init__(self, machine: Any, deadline: float, *, also: Sequence[Path] = ()) -> None:
        self.machine = machine
        self.deadline = deadline
        self.log = machine.firmware_log if machine.spec.firmware_log else None
        self.files = ([self.log] if self.log is not None else []) + list(also)
        self.spin_cpu = SPIN_CPU.get(machine.accel_used or machine.accel)
        self.start = time.monotonic()
        self._sizes: tuple[int, ...] = ()
        self._line: str | None = None
        self._line_at = self.start          # wall time of the last progress
        # Where the silence the spin rule judges began (the last progress, or the end of a
        # stop by a signal) and QEMU's CPU time then; QEMU's CPU time at the previous poll.
        self._silent_from = self.start
        self._cpu_from = self._cpu_last = self._cpu()
        self._halt_checked = 0.0

    def _cpu(self) -> float | None:
        """QEMU's CPU time, or None when it is gone or stopped by a signal (SIGSTOP, a
        debugger): neither is the firmware's doing, and its waiter deals with both."""
        pid = self.machine.pid
        try:
            return cpu_seconds(pid) if pid is not None and not stopped_by_signal(pid) else None
        except (OSError, IndexError, ValueError):
            return None

    def _sizes_now(self) -> tuple[int, ...]:
        sizes = []
        for path in self.files:
            try:
                sizes.append(path.stat().st_size)
            except OSError:
                sizes.append(-1)
        return tuple(sizes)

    def poll(self) -> Stall | None:
        now = time.monotonic()
        cpu = self._cpu()
        sizes = self._sizes_now()
        if sizes != self._sizes:
            self._sizes, self._line_at, self._silent_from, self._cpu_from = sizes, now, now, cpu
            if self.log is not None:
                try:
                    self._line = last_line(self.log.read_bytes())
                except OSError:
                    pass
        if cpu is None or self._cpu_from is None:
            # No judgement across a stop: the spin and halt rules start again after it.
            self._cpu_last, self._cpu_from, self._silent_from = cpu, cpu, now
            return None
        found = self._retry(now) or self._spin(now, cpu) or self._halt(now, cpu)
        self._cpu_last = cpu
        return found

    def _after(self) -> str:
        return f"SeaBIOS's last log line {self._line!r}" if self._line is not None else "the firmware's start"

    def _retry(self, now: float) -> Stall | None:
        match = RETRY_LINE.search(self._line or "")
        wait = int(match.group(1)) if match is not None else 0
        if wait in (0, END_RETRY_SECONDS):
            # 5 is the harness's own number: the end its waiter stops the machine at
            # (FirmwareEnd), seen here first when the line came between the waiter's looks.
            return None
        if self._line_at + wait < self.deadline:
            return None  # its reboot ends the firmware within the bound
        return Stall("retry", f"SeaBIOS gave up booting and waits {wait} s before its reboot "
                     f"({self._after()}): it never read the harness's reboot-timeout through "
                     "fw_cfg, and the reboot would come past the bound", now - self.start, self._line)

    def _spin(self, now: float, cpu: float) -> Stall | None:
        spent = cpu - self._cpu_from
        if self.spin_cpu is None or spent < self.spin_cpu or now - self._silent_from < SILENT_WAIT \
                or self._line_at + LONG_TIMED_WAIT <= self.deadline:
            return None
        return Stall("spin", f"no progress in {spent:.1f} s of QEMU CPU ({now - self._silent_from:.1f} s) after "
                     f"{self._after()}: the vCPU spins", now - self.start, self._line)

    def _halt(self, now: float, cpu: float) -> Stall | None:
        if self._cpu_last is None or cpu - self._cpu_last > 0 or now - self._halt_checked < HALT_CHECK_INTERVAL:
            return None  # QEMU used CPU since the last poll: not halted
        self._halt_checked = now
        state = vcpu_halt_state(self.machine)
        if state is None or not state[0] or state[1] & EFLAGS_IF:
            return None
        return Stall("halt", f"the vCPU halted with interrupts off (EFLAGS {state[1]:#x}) "
                     f"after {self._after()}: nothing in the machine can wake it", now - self.start, self._line)


def vcpu_halt_state(machine: Any) -> tuple[bool, int] | None:
    """Whether the (first) vCPU is halted, and its EFLAGS, from ``info registers``; None
    when the monitor does not answer or says neither."""
    try:
        registers = machine.hmp("info registers")
    except HarnessError:
        return None
    eflags = _EFLAGS.search(registers)
    return (bool(_HALTED.search(registers)), int(eflags.group(1), 16)) if eflags is not None else None


__all__ = ["END_RETRY_SECONDS", "FirmwareEnd", "FirmwareWatch", "Stall", "last_line", "vcpu_halt_state"]
