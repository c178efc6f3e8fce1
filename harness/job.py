r"""The main job: boot a machine, detect it, load its drivers, and check every claim
against what the emulated hardware decodes.

Steps (:func:`run_job`): launch QEMU paused, run the firmware to its end, detect the
hardware into ``\Registry\Machine\Hardware\Description`` (register probes), file the HAL's
own claims, load the configured drivers in order (each one's ``Parameters`` written from
the machine file's device settings, as setup would), run the Reinitialize routines, take
the post-driver layout snapshot, and compare:

* each port/memory claim with QEMU's flat map: the claimed range must be decoded by the
  device the claim is for (present, owned by the expected device, not shadowed);
  bytes of a claim that another device decodes are a mismatch; bytes nobody decodes are
  only noted (drivers claim whole register blocks of which QEMU maps parts);
* each ISA interrupt and DMA claim with the device's configured line and channel;
* and, independently of the model, what the hardware itself does wrong
  (:func:`hardware_collisions`): addresses a device loses to another (by priority, or by
  being mapped later: the layout's shadowed ranges), an IRQ line driven by
  several devices, a DMA channel registered by several devices (QEMU: the last one owns
  it, the others stall, qemu-facts.md §3c).

An event that stops or cuts short the firmware (a guest panic, QEMU exiting, an early
reset: :mod:`harness.firmware_events`) is a finding too; when it leaves no machine to
examine, the report holds that finding alone.

The result (:class:`JobResult`) renders as text or JSON with a verdict
(:mod:`harness.verdict`): ``conflict`` (exit 1) when the error log holds an entry of
error severity (a conflict, or a driver's own error such as IO_ERR_INCORRECT_IRQL), a
claim mismatches the hardware, a driver broke a rule, the hardware collides in a way
nobody agreed to, or the firmware was stopped; ``warning`` (exit 3) when the only findings
are legal but lossy (every device on an edge-triggered ISA line holds a granted Shared
claim, and QEMU, with no wired-OR, loses an edge; a driver's warning-severity entry);
``clean`` (exit 0) otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from .actions import ActionRecord
from .claimants import CLAIMED, ClaimantLine, ResolvedBoardDevice, board_device_gathered, service_of
from .atomicio import OutputError, write_text
from .builtin import moved_port_types
from .config import HAL_CHOICES, RESERVED_ID_PREFIX, MachineSpec, hal_for  # noqa: F401 (HAL_CHOICES: re-exported)
from .consequences import SharedLine, exercise_shared_interrupts
from .devices import BOARD_LABEL_PREFIX, board_device_of, board_label_of, board_model, load_catalog
from .drivers import DRIVERS, NtDriver
from .drivers.legacy import VGA_ACCESS_RANGES
from .errors import HarnessError
from .firmware_events import FirmwareEvent, cut_short, stalled, stopped_by, stopped_during_boot, stopped_under_agent
from .nt.arbiter import Claim, ResourceKind, interrupt_line
from .nt.hal import HAL_NAMES, HalError, hal_flavour_for
from .nt.iomgr import IoManager, LoadResult
from .nt.registry import RESOURCE_MAP, Registry, format_tree
from .nt.resources import CmResourceShare, PCIBus, describe_range
from .nt.verifier import Violation
from .qemu.layout import ISA_IRQ_PROPERTIES, Layout, read_static_facts
from .qemu.actions import run_actions, run_firmware_and_steps
from .qemu.qomfacts import STATIC_QUERIES
from .qemu.machine import MACHINE_TYPES, FirmwareTimeout, Machine, MachineDied, MachineStuck, new_run_dir
from .testbed import Step, Testbed, load_steps
from .verdict import CLEAN, CONFLICT, EXIT_CODES, WARNING, error_log_verdict, worst
from .verify import IRQ_SHARED, HardwareView, dma_channel_users, hardware_conflicts, lost_reason, winner_names

OUTPUT_MARKER = ".harness-run"
_UNATTACHED = re.compile(r"\(?/machine/unattached/device\[\d+\]\)?")
REGISTRY_FILE = "registry.sqlite"


@dataclass
class ClaimCheck:
    """One claim compared with the hardware."""

    driver: str
    device: str | None
    expected: tuple[str, ...]        # device ids the claim is for (a board device's: its ranges' owners)
    resource: str                    # "port 0x3f8-0x3ff" ...
    ok: bool
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, expected=list(self.expected))


@dataclass
class Collision:
    """Something the emulated hardware itself does: two devices on one resource."""

    kind: str                        # "shadowed" or a harness.verify explanation class
    resource: str
    devices: tuple[str, ...]
    consequence: str
    phase: str = "post-drivers"      # the layout it was seen in
    level: str = CONFLICT            # harness.verdict: CONFLICT, or WARNING when legal but lossy

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, devices=list(self.devices))


@dataclass
class DriverReport:
    """One driver's load in the main job: its status, its devices' outcomes and its violations."""

    name: str
    status: str
    devices: list[dict[str, Any]]
    violations: list[str]


@dataclass
class JobResult:
    """Everything the main job found on one machine: what its reports are written from."""

    spec: MachineSpec
    out_dir: Path
    layout: Layout
    #: The ResourceMap key formatted (:func:`format_resource_map`); None while not
    #: formatted (a matrix cell that went as expected has no report to print it in).
    resource_map: str | None
    drivers: list[DriverReport]
    error_log: list[dict[str, Any]]
    violations: list[Violation]
    checks: list[ClaimCheck]
    collisions: list[Collision]
    timings: dict[str, float]
    picture: Path | None = None
    unreadable: list[str] = field(default_factory=list)
    shared_lines: list[SharedLine] = field(default_factory=list)
    hal: str = "pic"                    # the interrupt model the HAL ran (HAL_CHOICES)
    reactos: bool = False               # IoReportResourceUsage as ReactOS has it
    #: What the steps after the firmware did (harness.actions): the machine file's
    #: post-firmware ones, those among the scenario's steps, the post-drivers ones.
    actions: list[ActionRecord] = field(default_factory=list)
    #: Every device, board devices included, with its NT claimant or why it has none.
    claimants: list[ClaimantLine] = field(default_factory=list)
    events: list[FirmwareEvent] = field(default_factory=list)

    @property
    def hal_flavour(self) -> str:
        """The HAL flavour that interrupt model runs (harness.nt.hal.hal_flavour_for)."""
        return hal_flavour_for(self.hal)

    @property
    def hal_name(self) -> str:
        """The name the HAL filed its own claims under (harness.nt.hal.HAL_NAMES)."""
        return HAL_NAMES[self.hal_flavour, self.hal]

    @property
    def failed_actions(self) -> list[ActionRecord]:
        return [a for a in self.actions if not a.ok]

    @property
    def conflicts(self) -> list[dict[str, Any]]:
        return [e for e in self.error_log if "conflict" in e]

    @property
    def mismatches(self) -> list[ClaimCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def unclaimed(self) -> list[ClaimantLine]:
        """Decoders whose claimant was there but holds no claim on them (refused, or its
        driver did not find the device where it decodes): the arbiter cannot see a
        conflict with what they decode.  A decoder nothing is meant to claim (``claimant:
        none`` on the board, ``driver: none``, left out of ``drivers``) has no claimant."""
        return [c for c in self.claimants if c.claimant is not None and c.status != CLAIMED]

    @property
    def warnings(self) -> list[Collision]:
        return [c for c in self.collisions if c.level == WARNING]

    @property
    def driver_errors(self) -> list[dict[str, Any]]:
        """Error-log entries a driver wrote of its own (IoWriteErrorLogEntry, not a conflict)
        whose severity weighs on the verdict (a warning or an error; a retry's success does not)."""
        return [e for e in self.error_log if "conflict" not in e and error_log_verdict(e) != CLEAN]

    @property
    def verdict(self) -> str:
        """:data:`harness.verdict.CLEAN`, ``WARNING`` or ``CONFLICT`` (module doc); an
        error-log entry weighs what its severity does (:func:`harness.verdict.error_log_verdict`)."""
        if self.events or self.mismatches or self.violations or self.failed_actions or self.unclaimed:
            return CONFLICT
        return worst([*(c.level for c in self.collisions), *map(error_log_verdict, self.error_log)])

    @property
    def clean(self) -> bool:
        return self.verdict == CLEAN

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def findings(self) -> list[str]:
        """Every problem found, one stable line each (no sequence numbers, timings or
        source locations), in report order: what a repro bundle expects to see again."""
        out = [e.finding() for e in self.events]
        for e in self.conflicts:
            c = e["conflict"]
            out.append(f"conflict {e['code']}: {e['driver']} {e['device'] or ''} {c['requested']} "
                       f"held by {c['holder_driver']} {c['holder_device'] or ''}".replace("  ", " "))
        out += [f"error-log {e['code']} ({e['severity']}): {e['message']}" for e in self.driver_errors]
        out += [f"mismatch {c.device or c.driver}: {c.resource}: {f}" for c in self.mismatches for f in c.findings]
        out += [f"violation {v.driver}: {v.kind}" + (f" {v.access} {v.space} {v.port:#x}" if v.port is not None else "")
                for v in self.violations]
        out += [f"{'warning' if c.level == WARNING else 'hardware'} [{c.phase}] {c.kind}: {c.resource}: "
                f"{', '.join(c.devices)}" for c in self.collisions]
        out += [f"step {a.action.describe()}: {a.problem}" for a in self.failed_actions]
        out += [f"unclaimed {c.device}: {c.detail}" for c in self.unclaimed]
        # QOM's numbering of unnamed board devices shifts when a device is added or removed.
        return list(dict.fromkeys(" ".join(_UNATTACHED.sub("(board device)", line).split()) for line in out))

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.spec.name, "source": self.spec.source, "config_hash": self.spec.config_hash(),
            "machine_type": self.layout.machine_type, "qemu_version": self.layout.qemu_version,
            "accel": self.layout.accel, "hal": self.hal, "hal_flavour": self.hal_flavour, "reactos": self.reactos,
            "clean": self.clean,
            "verdict": self.verdict, "exit_code": self.exit_code, "findings": self.findings(),
            "events": [e.to_dict() for e in self.events],
            "drivers": [d.__dict__ for d in self.drivers], "error_log": self.error_log,
            "violations": [v.to_dict() for v in self.violations],
            "checks": [c.to_dict() for c in self.checks],
            "collisions": [c.to_dict() for c in self.collisions],
            "claimants": [c.to_dict() for c in self.claimants],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "shared_interrupts": [{"irq": s.irq, "input": s.input_name, "mode": s.mode, "devices": s.devices, "raised": s.raised,
                                   "taken": len(s.taken), "left_pending": s.left_pending, "lost": s.lost,
                                   "summary": s.describe()} for s in self.shared_lines],
            "out_dir": str(self.out_dir), "picture": str(self.picture) if self.picture else None,
            "after_firmware": [a.to_dict() for a in self.actions],
        }

    def format_text(self) -> str:
        out = [f"machine {self.spec.name} ({self.layout.machine_type}, {self.layout.accel}, "
               f"QEMU {self.layout.qemu_version}, {self.hal.upper()} HAL, {self.hal_flavour} flavour)", ""]
        if self.events:
            out.append("Firmware events")
            out += [f"  {e.describe()}" for e in self.events]
            out.append("")
        if any(e.stopped for e in self.events):
            out.append("The machine stopped there: nothing after the firmware was examined.")
        else:
            self._format_examined(out)
        out += ["", f"Result: {self.verdict} (exit {self.exit_code})" + ("" if self.clean else f": {self.counts()}")]
        if self.picture:
            out.append(f"Picture: {self.picture}")
        out.append(f"Files: {self.out_dir}")
        return "\n".join(out) + "\n"

    def counts(self) -> str:
        """How many findings of each sort there are, in one line (the sorts found)."""
        parts = [(len(self.events), "firmware event(s)"), (len(self.conflicts), "conflict(s)"),
                 (len(self.driver_errors), "driver error-log record(s)"),
                 (len(self.mismatches), "mismatch(es)"), (len(self.violations), "violation(s)"),
                 (len(self.collisions) - len(self.warnings), "hardware collision(s)"),
                 (len(self.warnings), "warning(s)"), (len(self.failed_actions), "failed step(s)"),
                 (len(self.unclaimed), "decoder(s) without a claim")]
        return ", ".join(f"{n} {word}" for n, word in parts if n) or "nothing"

    def _format_examined(self, out: list[str]) -> None:
        if self.actions:
            out.append("Steps after the firmware (the layout, claims and checks below are taken after them)")
            for a in self.actions:
                out.append(f"  {'ok  ' if a.ok else 'FAIL'} line {a.action.line}: {a.action.describe()}")
                out += [f"         {c}" for c in a.commands]
                if a.problem:
                    out.append(f"         ! {a.problem}")
            out.append("")
        out.append("Drivers")
        for d in self.drivers:
            out.append(f"  {d.name}: {d.status}")
            for dev in d.devices:
                where = dev["device"] or "(not started)"
                extra = f" — {dev['detail']}" if dev["detail"] else ""
                facts = ", ".join(f"{k} {v}" for k, v in dev["facts"].items())
                known = dev.get("id") or dev["config"]
                # what the driver gathered it as, where that is not the name itself
                name = known if dev["config"] in (known, known.removeprefix(BOARD_LABEL_PREFIX)) \
                    else f"{known} ({dev['config']})"
                out.append(f"    {name} -> {where}: {dev['status']}{extra}" + (f" [{facts}]" if facts else ""))
        out += ["", "Claimants (every decoder and the NT component holding its claim)"]
        out += [f"  {c.describe()}" for c in self.claimants] or ["  (none)"]
        out += ["", "ResourceMap", *("  " + line for line in (self.resource_map or "").rstrip("\n").splitlines())]
        out += ["", "Error log"]
        for e in self.error_log:
            whose = [e["device_id"]] if "device_id" in e else []
            whose += [f"held for {e['holder_id']}"] if "holder_id" in e else []
            out.append(f"  #{e['sequence']} {e['code']} ({e['severity']}): {e['message']}"
                       + (f" [{'; '.join(whose)}]" if whose else ""))
            if "explanation" in e:
                out.append(f"      = {e['explanation']}")
        if not self.error_log:
            out.append("  (empty)")
        out += ["", "Claim-before-touch violations"]
        out += [f"  {v}" for v in self.violations] or ["  (none)"]
        out += ["", "Claims against the hardware (info mtree -f)"]
        for c in self.checks:
            mark = "ok      " if c.ok else "MISMATCH"
            who = c.device or c.driver
            out.append(f"  {mark} {who}: {c.resource} (expected {', '.join(c.expected) or '?'})")
            out += [f"           ! {f}" for f in c.findings]
            out += [f"           - {n}" for n in c.notes]
        if self.shared_lines:
            out += ["", "Shared interrupt lines, exercised (each device asks once, then the CPU looks)"]
            out += [f"  {'LOST' if s.lost else 'ok  '} {s.describe()}" for s in self.shared_lines]
        out += ["", "What the hardware does"]
        out += [f"  {'WARNING ' if c.level == WARNING else ''}[{c.phase}] {c.kind}: {c.resource}: "
                f"{', '.join(c.devices)} — {c.consequence}" for c in self.collisions] \
            or ["  no shadowed ranges, no shared ISA IRQ or DMA lines"]


# ---------------------------------------------------------------------------------------


def relocate_argv(script: Path, run_dir: Path, copy: Path) -> None:
    """Point a copied argv.sh at the copy of the run folder (its files: chardev outputs,
    drive images), not at the run folder, which is deleted when the machine closes."""
    if script.is_file():
        script.write_text(script.read_text().replace(str(run_dir), str(copy.resolve())))


def prepare_out_dir(out_dir: Path) -> Path:
    """An empty output folder; an existing one is only replaced if the harness made it."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not (out_dir / OUTPUT_MARKER).exists():
            raise HarnessError(f"{out_dir} exists and is not a harness output folder; choose another --out")
        shutil.rmtree(out_dir)
    try:
        out_dir.mkdir(parents=True, mode=0o700)
        (out_dir / OUTPUT_MARKER).touch()
    except OSError as exc:
        raise OutputError(f"cannot make the output folder {out_dir}: {exc.strerror}") from None
    return out_dir


def run_job(spec: MachineSpec, out_dir: Path, *, picture: bool = True, keep: bool = False,
            steps: Sequence[Step] | None = None, hal: str = "auto", reactos: bool = False,
            machine: Machine | None = None,
            all_files: Callable[[JobResult], bool] | None = None) -> JobResult:
    """Run the main job on ``spec``; files (logs, registry, .reg export, report, picture)
    go to ``out_dir``, which is replaced if it is a previous run's folder.  ``steps``
    replaces the machine file's driver load order (a repro bundle's scenario).  ``keep``
    also keeps QEMU's own run folder (its logs are copied to ``out_dir/qemu`` anyway).
    ``hal`` is one of :data:`HAL_CHOICES`; ``reactos``: IoReportResourceUsage as ReactOS
    has it (it writes nothing and sees no conflict), to show what a driver meets there.
    ``machine``: for the PIC HAL, ``spec``'s machine already launched in a run folder of
    :func:`~harness.qemu.machine.new_run_dir` (its firmware may be running, :meth:`Machine.start_firmware`) by a caller that starts
    QEMU before importing this module; the job closes it.

    ``all_files``: which files the job leaves.  None (the default): all of them.  Else
    it is asked, once the result is known, whether this result needs them (a matrix cell:
    when it failed its expectation); when it says no, ``out_dir`` gets ``report.json``
    alone (verdict, findings, counts, timings) and a picture if asked for: the registry
    lives in memory and is never exported, QEMU's logs are not copied, the ResourceMap is
    not formatted.  A job that raises keeps QEMU's logs and the registry."""
    apic = hal_for(spec, hal) == "apic"
    agent_errors: tuple[type[Exception], ...] = ()
    if apic:  # the probe guest's agent (~10 ms of imports a PIC job does not need)
        from .guests.agent import AgentError, AgentLiveBus, agent_boot, connect_agent
        agent_errors = (AgentError,)
    if apic and machine is not None:
        raise HarnessError("an early-launched machine is for the PIC HAL; the APIC HAL boots the probe guest")
    out_dir = prepare_out_dir(out_dir)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    # The job's own registry is one of its output files, none of which is fsynced (no sync
    # at each of its ~280 commits, nor at close); every commit stays atomic and kill-safe.
    # A job that may not need its files keeps the registry in memory until it knows.
    registry = Registry(out_dir / REGISTRY_FILE if all_files is None else ":memory:", sync="never")
    full = all_files is None
    try:
        # QEMU runs in its own short private folder (unix socket paths are limited); its
        # logs are copied next to the report once it has gone, whatever happened.
        if machine is None:
            # Made here (not by Machine) so it outlives close() for the copy below; unmarked,
            # so the sweep removes it if this process is killed before the copy.
            run_dir = new_run_dir(spec.name)
            machine = Machine(spec, run_dir=run_dir, boot=agent_boot(spec) if apic else None, keep=keep)
        else:
            run_dir = machine.run_dir
        bed: Testbed | None = None
        finished = False
        try:
            if not apic and machine.pid is None:
                # The firmware starts with QEMU, the layout's QOM questions asked along.
                machine.launch(start_firmware=True, ask=STATIC_QUERIES)
            with machine:
                agent = bus = None
                try:
                    if apic:
                        try:
                            agent = connect_agent(machine)  # the firmware ran, the guest serves the bus
                        except AgentError as exc:
                            event = stopped_during_boot(spec, machine) or stalled(
                                spec, machine, "the agent guest never answered: the firmware or its boot did not "
                                f"finish ({str(exc).splitlines()[0]})")
                            if event is None:
                                raise
                        else:
                            bus = AgentLiveBus(machine, agent)
                            event = None  # the firmware ended by booting the guest, not by its reboot
                            # What an OS or driver did once the firmware was done comes before NT looks.
                            try:
                                actions = run_actions(machine, spec.after_firmware, "post-firmware", bus)
                            except AgentError as exc:
                                # a step's write paused or ended the guest (a pvpanic's port):
                                # the next step's request finds it silent (livefuzz round four)
                                event = stopped_under_agent(spec, machine, exc)
                                if event is None:
                                    raise
                    else:
                        if machine.phase != "firmware":
                            machine.start_firmware()
                        read_static_facts(machine)  # QOM does not change: asked while SeaBIOS runs
                        actions = run_firmware_and_steps(machine)
                        event = cut_short(spec, machine)
                except (MachineStuck, MachineDied) as exc:
                    event = stopped_by(spec, machine, exc)
                except FirmwareTimeout as exc:   # (FirmwareStalled too: the watch knew before the bound)
                    event = stalled(spec, machine, exc.what, how=exc.how)
                    if event is None:   # nothing in the firmware's way: a slow host, or unknown
                        raise
                timings["boot+firmware"] = time.monotonic() - t0
                if event is not None and event.stopped:
                    result = _stopped_result(spec, machine, out_dir, timings, event,
                                             hal="apic" if apic else "pic", reactos=reactos)
                else:
                    t = time.monotonic()
                    try:
                        bed = Testbed(machine, registry, bus=bus, reactos_compat=reactos)
                        timings["detect"] = time.monotonic() - t
                        t = time.monotonic()
                        bed.run(load_steps(spec) if steps is None else steps)
                        timings["drivers"] = time.monotonic() - t
                        post = run_actions(machine, spec.after_firmware, "post-drivers", bed.hal.bus)
                        shared = exercise_shared_interrupts(bed.io, machine)
                        result = collect(bed, out_dir, timings, shared, resource_map=full)
                        # post-firmware, those among the steps (a bundle's), then post-drivers
                        result.actions = actions + result.actions + post
                        result.events[:0] = [event] if event is not None else []
                    except MachineDied as exc:
                        # a device the HAL or a driver wrote ended QEMU (an isa-debug-exit
                        # over their ports): a finding like one the firmware meets (livefuzz)
                        bed = None
                        result = _stopped_result(spec, machine, out_dir, timings,
                                                 stopped_by(spec, machine, exc, after_firmware=True),
                                                 hal="apic" if apic else "pic", reactos=reactos)
                    except (*agent_errors, HalError) as exc:
                        # the same under the APIC HAL, where the guest serves the bus: a
                        # write paused it (a pvpanic over the ELCR; a step's write, before
                        # the HAL's first read, which it wraps in a HalError) or ended QEMU
                        silent = exc if isinstance(exc, agent_errors) else exc.__cause__
                        lost = stopped_under_agent(spec, machine, silent) if isinstance(silent, agent_errors) else None
                        if lost is None:
                            raise
                        bed = None
                        result = _stopped_result(spec, machine, out_dir, timings, lost, hal="apic",
                                                 reactos=reactos)
                    finally:
                        if agent is not None:
                            agent.agent.close()
            full = full or all_files(result)
            finished = True
        finally:
            full = full or not finished  # a job that raised keeps what there is to see why
            if full:
                keep_run_files(run_dir, out_dir / "qemu")
                relocate_argv(out_dir / "qemu" / "argv.sh", run_dir, out_dir / "qemu")
            if not keep:
                shutil.rmtree(run_dir, ignore_errors=True)
        result.timings["total"] = time.monotonic() - t0
        write_outputs(result, bed.io if bed is not None else None, picture=picture, registry=registry,
                      full=full)
        if full:
            _keep_registry(registry, out_dir)
        return result
    except BaseException:
        with contextlib.suppress(Exception):  # what the job raised is the news, not this
            _keep_registry(registry, out_dir)
        raise
    finally:
        registry.close()


def keep_run_files(run_dir: Path, target: Path) -> None:
    """Copy the run folder's files to ``target``: not hidden ones, and not QEMU's sockets
    (agent.sock, console.sock), which cannot be copied and are left behind when QEMU exits
    early (copying one raised over the job's own error, hiding QEMU's message)."""
    def skipped(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(".")
                or not (Path(folder, n).is_file() or Path(folder, n).is_dir())]
    shutil.copytree(run_dir, target, dirs_exist_ok=True, ignore=skipped)


def _keep_registry(registry: Registry, out_dir: Path) -> None:
    """The job's registry as ``out_dir``'s registry file (one kept in memory is written out)."""
    if registry.path == ":memory:":
        registry.save(out_dir / REGISTRY_FILE)


def _stopped_result(spec: MachineSpec, machine: Machine, out_dir: Path, timings: dict[str, float],
                    event: FirmwareEvent, *, hal: str, reactos: bool) -> JobResult:
    """The report of a machine the firmware never got through: the event alone (there is
    no layout to snapshot, no hardware to detect)."""
    layout = Layout(spec.name, MACHINE_TYPES[spec.machine], "pre-firmware", machine.qemu_version or "",
                    machine.accel_used or machine.accel)
    return JobResult(spec, out_dir, layout, "", [], [], [], [], [], dict(timings), hal=hal, reactos=reactos,
                     events=[event])


def collect(bed: Testbed, out_dir: Path, timings: dict[str, float] | None = None,
            shared: Sequence[SharedLine] = (), *, resource_map: bool = True,
            fresh_layout: bool = False) -> JobResult:
    """The job's findings on a test bed now: claims against the post-drivers layout (the
    post-firmware snapshot reused when nothing changed what QEMU decodes since, a fresh one
    otherwise or with ``fresh_layout``: :meth:`Testbed.after`), what the hardware does
    (before the drivers and now; ``shared``: what exercising the shared interrupt lines
    showed), the error log and (``resource_map``) the ResourceMap formatted.  The timings
    get the post-drivers layout's seconds and whether it was reused (1.0) or not (0.0)."""
    io, spec = bed.io, bed.spec
    timings = dict(timings or {})
    t = time.monotonic()
    after = bed.after(fresh=fresh_layout)
    timings["post-drivers layout"] = time.monotonic() - t
    timings["post-drivers layout reused"] = float(bed.after_fresh_because is None)
    checks = check_claims(io, after.layout, spec, bed.board, after.routes)
    collisions = hardware_collisions(after, spec)
    collisions += [Collision("irq-lost", f"{s.input_name.lower()} {s.irq}", tuple(s.devices), s.describe())
                   for s in shared if s.lost]
    seen = {(c.kind, c.resource, c.devices) for c in collisions}
    # What the firmware left that the drivers then resolved (a moved BAR) counts too;
    # the same view (reused, or unchanged) has nothing to add.
    if not _same_view(bed.before, after):
        collisions[:0] = [c for c in hardware_collisions(bed.before, spec)
                          if (c.kind, c.resource, c.devices) not in seen]
    collisions = grade_shared_lines(collisions, _consented_lines(io, after.layout, spec, bed.board),
                                    after.layout.elcr)
    names = _user_names(bed, after.layout)
    error_log = []
    for entry in io.error_log:
        item = _named(entry.to_dict(), names)
        if entry.conflict is not None:
            explanation = same_card(spec, entry.conflict.requested, entry.conflict.holder)
            if explanation:
                item["explanation"] = explanation
        error_log.append(item)
    return JobResult(spec, out_dir, after.layout, format_resource_map(io.registry) if resource_map else None,
                     [_report(r, d, names) for r, d in bed.loaded],
                     error_log, io.violations, checks, collisions,
                     timings, unreadable=io.unreadable, shared_lines=list(shared),
                     hal=bed.hal.interrupt_model, reactos=bed.io.reactos_compat,
                     actions=list(bed.actions), claimants=bed.claimants(after.layout))


def _same_view(before: HardwareView, after: HardwareView) -> bool:
    """Whether two views show the same hardware (their phases aside): then every collision
    of one is a collision of the other."""
    return (before.routes == after.routes and before.sci == after.sci
            and dataclasses.replace(after.layout, phase=before.layout.phase) == before.layout)


def format_resource_map(registry: Registry) -> str:
    """The ResourceMap key and everything below it, printed (empty when there is none)."""
    return format_tree(registry, RESOURCE_MAP) if registry.key_exists(RESOURCE_MAP) else ""


def write_outputs(result: JobResult, io: IoManager | None, *, picture: bool = True,
                  registry: Registry | None = None, full: bool = True) -> None:
    """report.txt / report.json / report.html, registry.reg and (optionally) resourcemap.png
    in the result's folder; ``full`` false: report.json (compact) and the picture alone.  Without
    an I/O manager (the firmware never finished) there is no picture, and the registry is
    ``registry``."""
    out_dir = result.out_dir
    registry = io.registry if io is not None else registry
    if picture and io is not None:
        from .picture import draw_resource_map
        result.picture = draw_resource_map(io, result.layout, result, out_dir / "resourcemap.png")
    # Alone (a matrix cell that went as expected), report.json is read by programs only:
    # compact, which json's C encoder writes (indented, the pure-Python one runs, ~5x slower).
    layout = {"indent": 1} if full else {"separators": (",", ":")}
    write_text(out_dir / "report.json", json.dumps(result.to_dict(), **layout) + "\n")
    if not full:
        return
    if result.resource_map is None and registry is not None:
        result.resource_map = format_resource_map(registry)
    from .nt.regfile import export_reg  # (a passing matrix cell writes no .reg file)
    export_reg(registry, out_dir / "registry.reg")
    write_text(out_dir / "report.txt", result.format_text())
    from .htmlreport import machine_report_html
    write_text(out_dir / "report.html", machine_report_html(result))


def _report(result: LoadResult, driver: NtDriver, names: Mapping[str, str]) -> DriverReport:
    """One driver's load; each device with ``id``, the name the user knows it by (``names``:
    the device object the driver made for it -> that name), beside what the driver gathered."""
    return DriverReport(result.name, result.status.name, [
        {"config": o.config, "id": names.get(o.attempted or ""), "device": o.device, "status": o.status.name,
         "detail": o.detail, "facts": o.facts} for o in driver.outcomes], [str(v) for v in result.violations])


def _known_as(config: Any, driver: NtDriver, spec: MachineSpec, board: Sequence[ResolvedBoardDevice],
              layout: Layout) -> str | None:
    """The name the user knows the device a driver gathered (``config``) by: a machine-file
    id, a board device's label (what a board claimant, or the Floppy driver under its
    BoardController subkey, gathered), a PCI function's id; None for one it found alone."""
    if config is None:
        return None
    # a board claimant's subkey is the board device's, whatever ids the file has
    gathered = board_device_gathered(board, driver.service_name, config.name)
    if gathered is None and config.name == getattr(driver, "BOARD_CONTROLLER", None):
        gathered = next((r.device for r in board if r.device.claimant in DRIVERS
                         and DRIVERS[r.device.claimant] is type(driver)), None)
    if gathered is not None:
        return gathered.label
    if any(d.id == config.name for d in spec.devices):
        return config.name
    if config.slot is not None and config.interface_type == PCIBus:
        try:
            fn = layout.pci_function(_bdf(config.bus_number, config.slot))
        except KeyError:
            return None
        return fn.qdev_id or next((r.device.label for r in board
                                   if r.device.pci is not None and r.device.pci.bdf == fn.bdf), None)
    # found by detection (the board's FDC as DiskController 0): the one device of the
    # driver's kinds at that base
    kinds = _qemu_types_of(driver.service_name)
    there = [dev for dev in layout.isa if dev.type in kinds and dev.properties.get("iobase") == config.base]
    if len(there) == 1:
        device = board_device_of([r.device for r in board], there[0].type)
        return there[0].id or (device.label if device is not None else None)
    return None


def _bdf(bus: int, slot: int) -> str:
    """The layout's BB:SS.F of a PCI_SLOT_NUMBER ``slot`` on ``bus``."""
    return f"{bus:02x}:{slot & 0x1F:02x}.{slot >> 5 & 7}"


def _user_names(bed: Testbed, layout: Layout) -> dict[str, str]:
    """Each device object a driver made (started or not) -> the name the user knows its device by."""
    return {o.attempted: name for _, driver in bed.loaded for o in driver.outcomes
            if o.attempted and (name := _known_as(o.gathered, driver, bed.spec, bed.board, layout))}


def _named(entry: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """An error-log entry with the names the user knows its devices by (``device_id``, and
    ``holder_id`` for a conflict's holder), where they are known."""
    out = dict(entry)
    if entry.get("device") in names:
        out["device_id"] = names[entry["device"]]
    holder = (entry.get("conflict") or {}).get("holder_device")
    if holder in names:
        out["holder_id"] = names[holder]
    return out


# ---------------------------------------------------------------------------------------
# Claims against the hardware


def _label(r: Any) -> str:
    """Who a decoded range belongs to: its owning device, else (no owner: the legacy IDE
    ports of a PIIX, port 0x80) the region's name."""
    return r.owner or r.name.split(" @")[0]


#: Whom a claim is for, as the checks compare it with a decoded range (:func:`_who`):
#: (owned, label): a device by its owner (an id, or a board device's QOM path), or an
#: owner-less region by its name, which a machine-file id may equal ('ide').
Who = tuple[bool, str]


def _who(r: Any) -> Who:
    return (r.owner is not None, _label(r))


def _labels(whos: Sequence[Who]) -> tuple[str, ...]:
    """What the report shows of ``whos``: their labels."""
    return tuple(dict.fromkeys(label for _, label in whos))


def _board_labels(board: Sequence[ResolvedBoardDevice], layout: Layout,
                  configured: Collection[str]) -> dict[str, tuple[Who, ...]]:
    """Each board device's name -> the owners, or owner-less region names, of its ranges
    in ``layout`` (one pass over the layout for the whole board).  A range of a device
    the machine file ``configured`` is never the board's, though its type may be (an
    isa-ide or isa-fdc of the file on isapc, whose own IDE and FDC are of those types)."""
    by_type: dict[str | None, list[Any]] = {}
    # Shadowed regions too: a board device whose every range another device took (an
    # i8042 with a card on 0x60 and one on 0x64) is still the one its claims are for.
    for r in (*layout.io, *layout.memory, *layout.shadowed):
        if r.owner not in configured:
            by_type.setdefault(r.owner_type, []).append(r)
    return {d.name: tuple(sorted({_who(r) for r in by_type.get(d.qemu_type, ()) if d.matches(r.owner_type, r.name)},
                                 key=lambda who: (who[1], who[0])))
            for d in (resolved.device for resolved in board)}


def _expected_devices(claim: Claim, io: IoManager, layout: Layout, spec: MachineSpec,
                      board: Sequence[ResolvedBoardDevice] = (),
                      board_labels: Mapping[str, tuple[Who, ...]] | None = None) -> tuple[Who, ...]:
    """Whom a claim is for: a machine-file device, or for what a board claimant gathered
    as a board device (by its Parameters subkey, never by an id of the same name) the
    owners, or owner-less region names, of the board device's ranges (``board_labels``)."""
    config = _claim_config(claim, io)
    if _is_pci_slot_claim(claim, config):
        bdf = _bdf(claim.bus_number, config.slot)
        try:
            return ((True, layout.pci_function(bdf).qdev_id),)
        except KeyError:
            return ()
    if config is not None:
        board_device = board_device_gathered(board, claim.owner.driver, config.name)
        if board_device is not None:
            if board_labels is None:
                board_labels = _board_labels(board, layout, {d.id for d in spec.devices})
            return board_labels.get(board_device.name, ())
        if any(d.id == config.name for d in spec.devices):
            return ((True, config.name),)
        # Found by detection: whichever device of this driver's kinds sits at that base,
        # configured or built into the board (then named by its QOM path, as the map does).
        # The driver knows one controller per base, so of two there its claims are for the
        # one that answers at the ports it claimed; the shadowed one has no claim.
        kinds = _qemu_types_of(claim.owner.driver)
        found: list[Who] = [(True, dev.id or dev.path) for dev in layout.isa
                            if dev.type in kinds and dev.properties.get("iobase") == config.base]
        answering = {_who(r) for start, length in config.ports for r in layout.io
                     if r.start <= start + length - 1 and start <= r.end}
        return tuple([who for who in found if who in answering] or found)
    return ()


def _claim_config(claim: Claim, io: IoManager) -> Any:
    """The configuration the claiming driver gathered for the claim's device, or None."""
    driver_object = io.drivers.get(claim.owner.driver)
    if driver_object is not None:
        for dev in driver_object.device_objects:
            if dev.name == claim.owner.device:
                return dev.device_extension.get("config")
    return None


def _is_pci_slot_claim(claim: Claim, config: Any) -> bool:
    return claim.interface_type == PCIBus and config is not None and config.slot is not None


def _shown_expected(claim: Claim, io: IoManager, whos: Sequence[Who], board: Sequence[ResolvedBoardDevice],
                    detected: Mapping[Who, str]) -> tuple[str, ...]:
    """Whom a check says the claim is for: a board device by its label (board:ide-legacy),
    as every report names it, not by its ranges' QOM paths or owner-less region names."""
    config = _claim_config(claim, io)
    if config is not None and not _is_pci_slot_claim(claim, config):
        gathered = board_device_gathered(board, claim.owner.driver, config.name)
        if gathered is not None:
            return (gathered.label,)
    return tuple(dict.fromkeys(detected.get(who, who[1]) for who in whos))


def _qemu_types_of(service_name: str) -> set[str]:
    """QEMU device types driven by the driver with this service name."""
    catalog = load_catalog()
    name = next((k for k, v in DRIVERS.items() if v.service_name == service_name), None)
    return {catalog[m].qemu_driver for m in catalog.nt_drivers.get(name, ())}


def check_claims(io: IoManager, layout: Layout, spec: MachineSpec,
                 board: Sequence[ResolvedBoardDevice] = (),
                 routes: Mapping[str, Any] | None = None) -> list[ClaimCheck]:
    """Every claim compared with what QEMU decodes (``routes``: each PCI function's live
    interrupt route, bdf → PciRoute, as a HardwareView holds them)."""
    checks = []
    board_labels = _board_labels(board, layout, {d.id for d in spec.devices})
    shown = _board_namer(spec.machine)
    detected = _detected_board_controllers(layout, spec)
    for claim in io.arbiter.claims():
        if claim.owner.driver == io.hal_name or claim.empty:
            continue
        whos = _expected_devices(claim, io, layout, spec, board, board_labels)
        check = ClaimCheck(claim.owner.driver, claim.owner.device,
                           _shown_expected(claim, io, whos, board, detected),
                           f"{claim.kind.value} {describe_range(claim.descriptor)}", True)
        if claim.kind in (ResourceKind.PORT, ResourceKind.MEMORY):
            _check_range(check, claim, layout, whos, shown)
        elif claim.kind in (ResourceKind.INTERRUPT, ResourceKind.DMA) and claim.interface_type != PCIBus:
            _check_line(check, claim, layout, spec, whos)
        elif claim.kind is ResourceKind.INTERRUPT and routes is not None:
            _check_pci_line(check, claim, layout, routes)
        check.ok = not check.findings
        checks.append(check)
    return checks


def _detected_board_controllers(layout: Layout, spec: MachineSpec) -> dict[Who, str]:
    """The board label of each built-in ISA device by its QOM path: the board's floppy
    controller, which the Floppy driver finds by detection and claims as a base, not as
    a board device's Parameters."""
    devices = board_model(spec.machine)
    configured = {d.id for d in spec.devices}
    return {(True, dev.id or dev.path): found.label for dev in layout.isa
            if dev.id not in configured and (found := board_device_of(devices, dev.type)) is not None}


def _board_namer(machine: str) -> Callable[[Any], str]:
    """How a finding names a region's owner: a board device as every report does
    (board:keyboard-controller), not by its QOM path, which shifts as devices are added;
    a machine-file device by its id."""
    devices = board_model(machine)

    def name(r: Any) -> str:
        if r.owner is None or not r.owner.startswith("/machine/"):
            return r.owner
        return board_label_of(devices, r.owner_type, r.name, r.owner)
    return name


def _check_range(check: ClaimCheck, claim: Claim, layout: Layout, whos: Sequence[Who],
                 shown: Callable[[Any], str]) -> None:
    space = "io" if claim.kind is ResourceKind.PORT else "memory"
    # System RAM (no owning device) decodes nobody's claim; RAM a device owns, such as a
    # frame buffer behind a BAR (vga.vram), is that device decoding it.
    decoded = [r for r in (layout.io if space == "io" else layout.memory)
               if r.start <= claim.end and claim.start <= r.end and (r.kind != "ram" or r.owner is not None)]
    mine = [r for r in decoded if _who(r) in whos]
    others = [r for r in decoded if _who(r) not in whos and r.owner is not None]
    if not mine:
        if others:
            check.findings.append("decoded by " + ", ".join(sorted({f"{shown(r)} ({r.name} "
                                                                   f"{r.start:#x}-{r.end:#x})" for r in others}))
                                  + ", not by the expected device")
        else:
            check.findings.append("nothing decodes this range")
    elif others:
        check.findings.append("also decoded by " + ", ".join(sorted({f"{shown(r)} "
                                                                     f"{r.start:#x}-{r.end:#x}" for r in others})))
    for s in layout.shadowed:
        if s.space == space and (True, s.owner) in whos and s.start <= claim.end and claim.start <= s.end:
            check.findings.append(f"{shown(s)}'s {s.start:#x}-{s.end:#x} is shadowed by "
                                  f"{', '.join(s.hidden_by)}"
                                  + (f" ({s.cause})" if s.cause else ""))
    _check_outside_bars(check, claim, layout, whos, space, mine)
    covered = sum(min(r.end, claim.end) - max(r.start, claim.start) + 1 for r in decoded)
    if mine and covered < claim.end - claim.start + 1:
        check.notes.append(f"{claim.end - claim.start + 1 - covered} of {claim.end - claim.start + 1} "
                           "claimed byte(s) decoded by no device")


def _check_outside_bars(check: ClaimCheck, claim: Claim, layout: Layout, whos: Sequence[Who], space: str,
                        mine: Sequence[Any]) -> None:
    """A claim over a PCI device's BARs holds no byte outside them and its decode: holes
    between QEMU's subregions inside a BAR are the device's, but a byte outside every BAR
    is one the device no longer decodes (a BAR moved away after the claim; livefuzz: two
    contiguous BARs claimed as one run hid that).  The VGA miniport's legacy blocks count
    as its decode (it claims them whole, as VgaSave does); its BARs do not escape the check
    (livefuzz: a qxl-vga's BAR0 moved away left its claim of all three BARs called ok)."""
    bars = [(b.base, b.end) for owned, name in whos if owned for fn in layout.pci if fn.qdev_id == name
            for b in fn.bars if b.base is not None and b.end is not None and (b.kind == "io") == (space == "io")]
    if not any(lo <= claim.end and claim.start <= hi for lo, hi in bars):
        return
    legacy = [(lo, hi) for kind, lo, hi in VGA_ACCESS_RANGES if (kind == "port") == (space == "io")] \
        if claim.owner.driver == service_of("vga") else []
    cursor, outside = claim.start, []
    for lo, hi in sorted([*bars, *legacy, *((r.start, r.end) for r in mine)]):
        if hi < cursor:
            continue
        if lo > cursor:
            outside.append((cursor, min(lo - 1, claim.end)))
        cursor = max(cursor, hi + 1)
        if cursor > claim.end:
            break
    if cursor <= claim.end:
        outside.append((cursor, claim.end))
    outside = [(lo, hi) for lo, hi in outside if lo <= hi]
    if outside:
        check.findings.append("outside the device's BARs and decode: " + ", ".join(
            f"{lo:#x}-{hi:#x}" for lo, hi in outside) + " (decoded by it no longer)")


def _check_line(check: ClaimCheck, claim: Claim, layout: Layout, spec: MachineSpec, whos: Sequence[Who]) -> None:
    prop = ISA_IRQ_PROPERTIES if claim.kind is ResourceKind.INTERRUPT else ("dma", "dma16")
    value = interrupt_line(claim.descriptor) if claim.kind is ResourceKind.INTERRUPT else claim.descriptor.channel
    devices = {dev.id or dev.path: dev for dev in layout.isa}
    ids = {d.id for d in spec.devices}
    owners = [name for owned, name in whos if owned]
    board = [devices[n] for n in owners if n not in ids and n in devices]
    if claim.kind is ResourceKind.DMA:
        # QEMU's 8237 keeps one handler per channel, the last registered: the claim is
        # what its device decodes only where that device is the channel's owner.
        users = dma_channel_users(spec, layout).get(value, [])
        if len(users) > 1 and (users[-1].id or users[-1].path) not in owners and \
                any((u.id or u.path) in owners for u in users):
            last = users[-1]
            owner = last.id or getattr(board_device_of(board_model(spec.machine), last.type), "label",
                                       f"{last.type} ({last.path})")
            check.findings.append(f"channel {value} is owned by {owner}, registered last: the claimed "
                                  "device's transfers stall")
    if whos and not ids.intersection(owners):
        # A board claimant's line: one of the board device's ISA parts drives it, or the
        # board model (checked against QEMU by tests/test_boards.py) says it is wired so.
        if board and not any(dev.properties.get(p) == value for dev in board for p in prop):
            check.findings.append(f"none of {', '.join(d.id or d.path for d in board)} is on {value}")
        elif not board:
            check.notes.append(f"{claim.kind.value} {value}: wired on the board (board model)")
        return
    for name in owners:
        dev = devices.get(name)
        if dev is None:
            check.findings.append(f"{name} is not an ISA device QEMU knows")
            continue
        if not any(dev.properties.get(p) == value for p in prop):
            shown = ", ".join(f"{p} {dev.properties[p]}" for p in prop if p in dev.properties)
            check.findings.append(f"QEMU has {name} on {shown}, the claim says {value}")


def _check_pci_line(check: ClaimCheck, claim: Claim, layout: Layout, routes: Mapping[str, Any]) -> None:
    """A PCI function's interrupt claim against where the chipset routes its pin now: a
    PIRQ register rewritten after the drivers claimed moves the interrupt, not the claim.
    Either the ISA line (PIC HAL) or the I/O APIC input (APIC HAL) is the pin's."""
    value = interrupt_line(claim.descriptor)
    for name in check.expected:
        try:
            fn = layout.pci_by_id(name)
        except KeyError:
            continue
        route = routes.get(fn.bdf)
        if route is not None and route.irq is not None and value not in (route.irq, route.gsi):
            check.findings.append(f"{route.link_name} routes {name}'s INT{'ABCD'[route.pin - 1]}# to IRQ {route.irq}"
                                  f", the claim says {value}")


def _consented_lines(io: IoManager, layout: Layout, spec: MachineSpec,
                     board: Sequence[ResolvedBoardDevice]) -> dict[int, set[str]]:
    """ISA IRQ line -> the machine-file devices whose Shared claim on it the arbiter granted."""
    ids = {d.id for d in spec.devices}
    out: dict[int, set[str]] = {}
    for claim in io.arbiter.claims():
        if claim.kind is ResourceKind.INTERRUPT and claim.interface_type != PCIBus \
                and claim.share == CmResourceShare.CmResourceShareShared:
            out.setdefault(interrupt_line(claim.descriptor), set()).update(
                name for owned, name in _expected_devices(claim, io, layout, spec, board) if owned and name in ids)
    return out


def grade_shared_lines(collisions: list[Collision], consented: dict[int, set[str]],
                       elcr: int | None) -> list[Collision]:
    """Collisions on an edge-triggered IRQ line whose every driver holds a granted Shared
    claim on it become warnings: NT allowed the share, and what QEMU does with it (no
    wired-OR, a lost edge) is lossy, not a misconfiguration.  A line that also carries a
    device without such a claim stays a conflict, and so does every other collision."""
    clean_lines = set()
    for c in collisions:
        if c.kind == IRQ_SHARED:
            irq = int(c.resource.split()[1])
            edge = elcr is None or not elcr >> irq & 1
            if edge and set(c.devices) <= consented.get(irq, set()):
                clean_lines.add(irq)
    # The lost edge seen when the line was exercised (irq-lost) is graded with its line.
    return [dataclasses.replace(c, level=WARNING)
            if c.kind in (IRQ_SHARED, "irq-lost") and int(c.resource.split()[1]) in clean_lines else c
            for c in collisions]


def same_card(spec: MachineSpec, requested: Claim, holder: Claim) -> str:
    """Why a conflict between two claims is one card's: one side is a chip QEMU emulates as
    a separate device model (a companion, like the SB16's OPL) and the other a retail
    driver's claim of the card's whole block over it.  Empty when it is not, and for
    anything but ports: a block claim covers ports only, and a line or channel the two
    claim says nothing of which devices hold the claims."""
    if requested.kind is not ResourceKind.PORT or holder.kind is not ResourceKind.PORT:
        return ""

    def devices_of(claim: Claim) -> list[Any]:
        out = []
        for dev in spec.devices:
            if dev.driver is None or DRIVERS[dev.driver].service_name != claim.owner.driver:
                continue
            if not any(
                    k == "port" and a <= claim.end and claim.start <= b for k, a, b in dev.decoded_resources()):
                continue
            out.append(dev)
        return out

    for card, chip in ((a, b) for x, y in ((requested, holder), (holder, requested))
                       for a in devices_of(x) for b in devices_of(y)):
        if chip.model.name in card.model.companions:
            return (f"{chip.id} ({chip.model.name}) is a chip of the same card as {card.id} ({card.model.name}), "
                    f"emulated by QEMU as a separate device: the card's driver claims its whole block "
                    f"(claim: block), which covers the chip's ports; claim: decoded claims only what "
                    f"{card.model.name} decodes")
    return ""


def hardware_collisions(hardware: HardwareView, spec: MachineSpec) -> list[Collision]:
    """What the emulated hardware does with devices that share a resource: ranges a
    configured device lost to a later one (the layout's shadowed ranges), and the shared
    IRQ lines and DMA channels :func:`harness.verify.hardware_conflicts` finds."""
    layout = hardware.layout
    ids = {d.id for d in spec.devices}
    # Only where a configured device, or a board device the file's `builtin` moved, is
    # involved: the board's own overlaps (0xcf9 reset register over the host bridge, RAM
    # over the option ROM area) are by design.
    # One device's regions that overlap or touch (the RTC's 'rtc-index' inside its 'rtc')
    # and lose to the same winners for the same reason are one collision, not one each.
    groups: dict[tuple[Any, ...], list[Any]] = {}
    board = board_model(spec.machine)
    moved = moved_port_types(spec.builtin)
    for s in layout.shadowed:
        if s.owner and s.owner.lower().startswith(RESERVED_ID_PREFIX):
            continue   # the harness's own instrument lost (the firmware-log console under a BAR a step moved)
        if (s.owner in ids or s.device_winners(layout, ids)
                or moved & {s.owner_type, *(r.owner_type for r in s.winning_regions(layout))}):
            loser = s.owner if s.owner in ids else board_label_of(board, s.owner_type, s.name, s.owner or s.name)
            winners = winner_names(board, layout, s, ids)
            reason = lost_reason(s, winners)
            groups.setdefault((s.space, loser, winners, reason), []).append(s)
    shadowed: list[tuple[str, int, Collision]] = []
    for (space, loser, winners, reason), group in groups.items():
        runs: list[list[Any]] = []
        for s in sorted(group, key=lambda s: (s.start, s.end)):
            if runs and s.start <= runs[-1][1] + 1:
                runs[-1][1] = max(runs[-1][1], s.end)
                runs[-1][2] = list(dict.fromkeys([*runs[-1][2], s.name]))
            else:
                runs.append([s.start, s.end, [s.name]])
        shadowed += [(space, start, Collision(
            "shadowed", f"{space} {start:#x}-{end:#x}", (loser, *winners),
            f"{loser} ({', '.join(names)}) no longer answers there: {reason}", layout.phase))
            for start, end, names in runs]
    out = [c for _, _, c in sorted(shadowed, key=lambda t: t[:2])]   # in address order, as the layout
    out += [Collision(f.explanation, f.resource, tuple(f.device.split(", ")), f.reason, layout.phase)
            for f in hardware_conflicts(spec, hardware)]
    return out
