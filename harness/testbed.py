r"""A booted machine with its NT side attached: the test bed the main job, the pytest
plugin and repro bundles all work on.

:class:`Testbed` takes a machine whose firmware has run (paused), and builds on it what
NT has once the HAL is up: the post-firmware hardware view, the ``Description`` tree from
detection, an I/O manager holding the HAL's own claims.  Then it does the *steps* of a
scenario, in order:

* :class:`LoadStep`: load one of the sample drivers (:data:`harness.drivers.DRIVERS`) with
  the ``Parameters`` of the machine's devices it drives;
* :class:`harness.nt.iomgr.ReportCall`: an IoReportResourceUsage made directly (by a
  test, or written down in a bundle);
* :class:`harness.actions.Action`: a register access behind NT's back (move a BAR, write
  a config or port register, read and check), done where it stands among the others.

Every step lands in the I/O manager's journal in order, so whatever a test did can be
written down as a repro bundle (:mod:`harness.repro`) and done again on a fresh machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .actions import Action, ActionRecord, parse_step
from .builtin import board_settings
from .claimants import (ClaimantLine, ResolvedBoardDevice, board_parameters, claimant_lines, legacy_parameters,
                        resolve_board)
from .config import GENERIC_DRIVER, VGA_DRIVER, MachineSpec
from .drivers import BOARD_DRIVERS, DRIVERS, NtDriver
from .drivers.legacy import VGA_ACCESS_RANGES
from .errors import HarnessError, unknown_name
from .names import BOARD_CONTROLLER_KEY
from .nt.busaccess import posted_writes
from .nt.detect import detect_hardware
from .nt.hal import Hal
from .nt.iomgr import DeviceObject, DriverObject, IoManager, LoadResult, ReportCall, ReportResult
from .nt.registry import Registry
from .qemu.layout import Layout, snapshot
from .qemu.livebus import LiveBus
from .qemu.machine import Machine
from .verify import HardwareView, routed_view, who_answers


@dataclass(frozen=True)
class LoadStep:
    """Load the sample driver ``driver`` for the machine devices ``devices``."""

    driver: str
    devices: tuple[str, ...]
    override_conflict: bool = False
    #: "decoded" (claim what each device decodes) or "block" (the card's whole block).
    claim: str = "decoded"


Step = LoadStep | ReportCall | Action


def load_steps(spec: MachineSpec) -> list[LoadStep]:
    """The machine file's driver load order as steps."""
    return [LoadStep(d.name, d.devices, d.override_conflict, d.claim) for d in spec.drivers]


def _live_ioapic(machine: Machine) -> list[int]:
    """The I/O APIC's redirection table of ``machine`` (HMP), for the HAL's APIC routing."""
    from .qemu.pic import read_ioapic  # (here: a PIC machine's job never reads it)
    return read_ioapic(machine)


def devices_driven_by(spec: MachineSpec, name: str) -> tuple[str, ...]:
    """The devices of ``spec`` that the sample driver ``name`` drives."""
    return tuple(d.id for d in spec.devices if d.driver == name)


@dataclass
class Testbed:
    """One machine's NT model: HAL, registry and I/O manager over a booted machine (module docstring)."""

    machine: Machine
    registry: Registry
    #: The bus the HAL uses: None for QEMU's HMP on the paused machine (the PIC HAL), or
    #: the probe guest's agent on a running one (the HAL is then chosen from the
    #: machine's MADT: the APIC HAL where there is an I/O APIC).
    bus: Any = None
    #: IoReportResourceUsage as ReactOS has it (nt-semantics.md §2.5's switch).
    reactos_compat: bool = False
    #: The HAL flavour (harness.nt.hal.HAL_FLAVOURS); None: the one its interrupt model is.
    hal_flavour: str | None = None
    #: IoAssignResources' search in port and memory windows (harness.nt.iomgr.ASSIGN_SEARCHES).
    assign_search: str = "top-down"
    #: The machine's post-firmware snapshot when the caller already has it (the pytest
    #: plugin keeps one per reused machine); taken here otherwise.
    firmware_layout: Layout | None = None
    hal: Hal = field(init=False)
    io: IoManager = field(init=False)
    #: The hardware as the firmware left it (before any driver touched it).
    before: HardwareView = field(init=False)
    #: Each load step's result with the driver instance (its per-device outcomes), the
    #: board claimants' first.
    loaded: list[tuple[LoadResult, NtDriver]] = field(init=False, default_factory=list)
    #: The machine type's built-in devices and what each decodes as the firmware left them.
    board: list[ResolvedBoardDevice] = field(init=False, default_factory=list)
    #: Objects created for direct claims, by name (a bundle names them, not holds them).
    _objects: dict[str, Any] = field(init=False, default_factory=dict)
    #: What each Action step did, in order.
    actions: list[ActionRecord] = field(init=False, default_factory=list)
    #: How the last :meth:`after` got its layout: None when it reused the post-firmware
    #: snapshot (nothing that changes what QEMU decodes happened since), else why it took
    #: a fresh one.
    after_fresh_because: str | None = field(init=False, default="after() was not called")

    def __post_init__(self) -> None:
        bus = LiveBus(self.machine) if self.bus is None else self.bus
        self.hal = Hal(bus, interrupt_model="pic" if self.bus is None else "auto",
                       ioapic_reader=lambda: _live_ioapic(self.machine), flavour=self.hal_flavour)
        layout = self.firmware_layout
        #: The bus that adopted the post-firmware snapshot's monitor answers (it knows
        #: whether they still hold: LiveBus.layout_unchanged), if one did.
        self._adopted_by: LiveBus | None = None
        if layout is None:  # read now: the bus keeps what the monitor answered (LiveBus.adopt)
            layout = snapshot(self.machine, "post-firmware", monitor_reads_to=getattr(bus, "adopt", None))
            self._adopted_by = bus if isinstance(bus, LiveBus) else None
        self.before = routed_view(layout, self.hal)
        detect_hardware(bus, self.registry, self.hal)
        self.io = IoManager(self.registry, self.hal, reactos_compat=self.reactos_compat,
                            assign_search=self.assign_search)
        self.io.report_hal_resources(self.hal.HalReportResourceUsage())
        self.board = resolve_board(self.spec.machine, self.hal, self.spec.builtin, layout)
        for claimant, cls in BOARD_DRIVERS.items():   # the board's claimants start first
            params = board_parameters(self.board, claimant)
            if params:
                driver = cls(self.io, self.hal)
                self.loaded.append((self.io.load_driver(driver, params), driver))

    @property
    def spec(self) -> MachineSpec:
        return self.machine.spec

    @property
    def steps(self) -> list[Step]:
        """What was done so far, in order (loads and direct claims)."""
        return [s for s in self.io.journal if isinstance(s, (LoadStep, ReportCall, Action))]

    # ------------------------------------------------------------------ steps
    def load_driver(self, name: str, devices: Sequence[str] | None = None, *,
                    override_conflict: bool = False, claim: str = "decoded") -> LoadResult:
        """Load the sample driver ``name`` (``serial``, ``ne2000``, ...) for ``devices``
        (default: every device of the machine it drives), with their Parameters."""
        cls = DRIVERS.get(name)
        if cls is None:
            raise HarnessError(unknown_name("driver", name, DRIVERS))
        mine = devices_driven_by(self.spec, name)
        chosen = mine if devices is None else tuple(devices)
        stray = [d for d in chosen if d not in mine]
        if stray:
            raise HarnessError(f"{', '.join(stray)}: not a device of machine {self.spec.name} that {name} drives "
                               f"(those are: {', '.join(mine) or 'none'})")
        self.io.journal.append(LoadStep(name, chosen, override_conflict, claim))
        # The board's own devices are realized with the machine, before every -device:
        # its floppy controller (the Floppy driver's BoardController) is mapped first.
        driver = cls(self.io, self.hal, override_conflict=override_conflict,
                     mapping_order=[BOARD_CONTROLLER_KEY, *(d.id for d in self.spec.devices)],
                     prefers=self._who_answers())
        devices = [self.spec.device(d) for d in chosen]
        if name == GENERIC_DRIVER:
            params = legacy_parameters(devices, self.before.layout)
        elif name == VGA_DRIVER:
            params = legacy_parameters(devices, self.before.layout, VGA_ACCESS_RANGES)
        elif not chosen and hasattr(cls, "board_parameters"):
            params = cls.board_parameters(board_settings(self.spec))   # loaded for a board device alone
        else:
            params = cls.parameters_for(devices, claim, board_settings(self.spec))
        with posted_writes(self.hal.bus):  # a driver's port writes ride along with its next read
            result = self.io.load_driver(driver, params)
        self.loaded.append((result, driver))
        return result

    def _who_answers(self) -> Callable[[str, int, int, str, str], bool | None]:
        """harness.verify.who_answers on what QEMU decodes when a driver first asks (only a
        driver with contesting siblings does): the post-firmware snapshot while the bus that
        adopted it says nothing changed since (LiveBus.layout_unchanged), else a fresh one
        (a step before the load may have moved a BAR)."""
        found: list[Callable[[str, int, int, str, str], bool | None]] = []

        def prefers(kind: str, start: int, end: int, a: str, b: str) -> bool | None:
            if not found:
                bus, layout = self._adopted_by, self.before.layout
                if bus is not None and bus.layout_unchanged() is not None:
                    layout = snapshot(self.machine, "post-drivers")   # drivers are loading
                found.append(who_answers(self.spec, layout))
            return found[0](kind, start, end, a, b)
        return prefers

    def report(self, call: ReportCall) -> ReportResult:
        """Make a recorded IoReportResourceUsage again, with driver and device objects of
        the recorded names (created on first use; they belong to no loaded driver)."""
        driver = self._objects.get(call.driver)
        if driver is None:
            driver = self._objects[call.driver] = DriverObject(call.driver, self.io.service_key(call.driver))
        device = None
        if call.device is not None:
            device = self._objects.get(f"{call.driver}|{call.device}")
            if device is None:
                device = self._objects[f"{call.driver}|{call.device}"] = DeviceObject(call.device, driver)
        arch = self.registry.arch
        return self.io.IoReportResourceUsage(
            call.resource_class, driver,
            call.driver_list, call.driver_list.size(arch) if call.driver_list else 0,
            device, call.device_list, call.device_list.size(arch) if call.device_list else 0,
            call.override)

    def act(self, step: "Action | dict[str, Any]") -> ActionRecord:
        """Do one register access now, e.g. ``bed.act({"move_bar": "nic0", "bar": 0,
        "address": 0xa0000})``: validated like a machine file's step, journaled (so a
        bundle written from this bed replays it), its record returned."""
        from .qemu.actions import do_action
        if not isinstance(step, Action):
            import yaml
            from .yamlio import load_text
            doc = load_text(yaml.safe_dump({"step": dict(step)}), "<testbed.act>")
            step = parse_step(doc.child("step"), self.spec.devices, self.spec.machine)
        self.io.journal.append(step)
        record = do_action(self.machine, step, self.hal.bus)
        self.actions.append(record)
        return record

    def run(self, steps: Iterable[Step]) -> None:
        """Do ``steps`` in order, then the Reinitialize routines the drivers registered."""
        for step in steps:
            if isinstance(step, LoadStep):
                self.load_driver(step.driver, step.devices, override_conflict=step.override_conflict,
                                 claim=step.claim)
            elif isinstance(step, Action):
                self.act(step)
            else:
                self.report(step)
        # A board device whose claimant is a sample driver the steps did not load (the
        # built-in floppy controller without a drive): that driver starts anyway, for the
        # devices it finds itself.
        for name in dict.fromkeys(r.device.claimant for r in self.board):
            if name in DRIVERS and not self.io.drivers.get(DRIVERS[name].service_name):
                self.load_driver(name, ())
        self.io.run_reinitialization()

    def claimants(self, layout: Any = None) -> list[ClaimantLine]:
        """Every device of the machine, board devices included, and its NT claimant."""
        return claimant_lines(self.io, self.spec, self.board, layout or self.before.layout)

    def after(self, *, fresh: bool = False) -> HardwareView:
        """The hardware now: the post-drivers layout with the PCI routing.  The post-firmware
        snapshot is reused (its registers read again: :func:`~harness.qemu.layout.refresh`)
        when the bus that adopted it says nothing changed what QEMU decodes since; a fresh
        snapshot is taken otherwise, or when ``fresh``.  :attr:`after_fresh_because` says
        which, and why."""
        bus = self._adopted_by
        if fresh:
            why: str | None = "a fresh snapshot was asked for"
        elif bus is None:
            why = "the post-firmware snapshot came from elsewhere (no bus adopted it)"
        else:
            why = bus.layout_unchanged()
        self.after_fresh_because = why
        if why is None and bus is not None:
            layout = bus.refresh(self.before.layout, "post-drivers")
        else:
            layout = snapshot(self.machine, "post-drivers")
        return routed_view(layout, self.hal)
