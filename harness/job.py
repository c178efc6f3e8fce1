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
  (:func:`hardware_collisions`): ranges shadowed by a later device, an IRQ line driven by
  several devices, a DMA channel registered by several devices (QEMU: the last one owns
  it, the others stall, qemu-facts.md §3c).

The result (:class:`JobResult`) renders as text or JSON; the exit status is 1 when the
error log holds a conflict, a claim mismatches the hardware, a driver broke a rule, or the
hardware collides, and 0 otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .actions import ActionRecord
from .claimants import ClaimantLine
from .config import MachineSpec
from .atomicio import OutputError, write_text
from .consequences import SharedLine, exercise_shared_interrupts
from .devices import load_catalog
from .drivers import DRIVERS, NtDriver
from .errors import HarnessError
from .nt.arbiter import Claim, ResourceKind, interrupt_line
from .nt.iomgr import HAL_NAME, IoManager, LoadResult
from .nt.regfile import export_reg
from .nt.registry import RESOURCE_MAP, Registry, format_tree
from .nt.resources import PCIBus, describe_range
from .nt.verifier import Violation
from .qemu.layout import ISA_IRQ_PROPERTIES, Layout
from .qemu.actions import run_actions, run_firmware_and_steps
from .qemu.machine import Machine, new_run_dir
from .testbed import Step, Testbed, load_steps
from .verify import HardwareView, hardware_conflicts

OUTPUT_MARKER = ".harness-run"
_UNATTACHED = re.compile(r"\(?/machine/unattached/device\[\d+\]\)?")
REGISTRY_FILE = "registry.sqlite"


@dataclass
class ClaimCheck:
    """One claim compared with the hardware."""

    driver: str
    device: str | None
    expected: tuple[str, ...]        # device ids the claim is for
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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, devices=list(self.devices))


@dataclass
class DriverReport:
    name: str
    status: str
    devices: list[dict[str, Any]]
    violations: list[str]


@dataclass
class JobResult:
    spec: MachineSpec
    out_dir: Path
    layout: Layout
    resource_map: str
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
    def clean(self) -> bool:
        return not (self.conflicts or self.mismatches or self.violations or self.collisions
                    or self.failed_actions)

    @property
    def exit_code(self) -> int:
        return 0 if self.clean else 1

    def findings(self) -> list[str]:
        """Every problem found, one stable line each (no sequence numbers, timings or
        source locations), in report order: what a repro bundle expects to see again."""
        out = []
        for e in self.conflicts:
            c = e["conflict"]
            out.append(f"conflict {e['code']}: {e['driver']} {e['device'] or ''} {c['requested']} "
                       f"held by {c['holder_driver']} {c['holder_device'] or ''}".replace("  ", " "))
        out += [f"mismatch {c.device or c.driver}: {c.resource}: {f}" for c in self.mismatches for f in c.findings]
        out += [f"violation {v.driver}: {v.kind}" + (f" {v.access} {v.space} {v.port:#x}" if v.port is not None else "")
                for v in self.violations]
        out += [f"hardware [{c.phase}] {c.kind}: {c.resource}: {', '.join(c.devices)}" for c in self.collisions]
        out += [f"step {a.action.describe()}: {a.problem}" for a in self.failed_actions]
        # QOM's numbering of unnamed board devices shifts when a device is added or removed.
        return list(dict.fromkeys(" ".join(_UNATTACHED.sub("(board device)", line).split()) for line in out))

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.spec.name, "source": self.spec.source, "config_hash": self.spec.config_hash(),
            "machine_type": self.layout.machine_type, "qemu_version": self.layout.qemu_version,
            "accel": self.layout.accel, "hal": self.hal, "reactos": self.reactos, "clean": self.clean,
            "exit_code": self.exit_code, "findings": self.findings(),
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
               f"QEMU {self.layout.qemu_version}, {self.hal.upper()} HAL)", ""]
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
                out.append(f"    {dev['config']} -> {where}: {dev['status']}{extra}" + (f" [{facts}]" if facts else ""))
        out += ["", "Claimants (every decoder and the NT component holding its claim)"]
        out += [f"  {c.describe()}" for c in self.claimants] or ["  (none)"]
        out += ["", "ResourceMap", *("  " + line for line in self.resource_map.rstrip("\n").splitlines())]
        out += ["", "Error log"]
        for e in self.error_log:
            out.append(f"  #{e['sequence']} {e['code']}: {e['message']}")
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
        out += [f"  [{c.phase}] {c.kind}: {c.resource}: {', '.join(c.devices)} — {c.consequence}"
                for c in self.collisions] \
            or ["  no shadowed ranges, no shared ISA IRQ or DMA lines"]
        verdict = "clean" if self.clean else (
            f"{len(self.conflicts)} conflict(s), {len(self.mismatches)} mismatch(es), "
            f"{len(self.violations)} violation(s), {len(self.collisions)} hardware collision(s)"
            + (f", {len(self.failed_actions)} failed step(s)" if self.failed_actions else ""))
        out += ["", f"Result: {verdict}"]
        if self.picture:
            out.append(f"Picture: {self.picture}")
        out.append(f"Files: {self.out_dir}")
        return "\n".join(out) + "\n"


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


#: The HAL a job runs: ``pic`` over QEMU's HMP on the machine paused after its firmware;
#: ``apic`` over the probe guest's agent (interrupts through the I/O APIC and the local
#: APIC, taken by the guest's CPU); ``auto`` picks ``apic`` on q35 and ``pic`` elsewhere.
HAL_CHOICES = ("auto", "pic", "apic")


def hal_for(spec: MachineSpec, choice: str = "auto") -> str:
    """The HAL ``choice`` means on ``spec`` (``pic`` or ``apic``)."""
    if choice not in HAL_CHOICES:
        raise HarnessError(f"HAL {choice!r} is not one of {', '.join(HAL_CHOICES)}")
    if choice == "auto":
        return "apic" if spec.machine == "q35" else "pic"
    if choice == "apic" and spec.machine == "isapc":
        raise HarnessError(f"{spec.source}: an isapc machine has no I/O APIC; the APIC HAL cannot run on it")
    return choice


def run_job(spec: MachineSpec, out_dir: Path, *, picture: bool = True, keep: bool = False,
            steps: Sequence[Step] | None = None, hal: str = "auto", reactos: bool = False) -> JobResult:
    """Run the main job on ``spec``; files (logs, registry, .reg export, report, picture)
    go to ``out_dir``, which is replaced if it is a previous run's folder.  ``steps``
    replaces the machine file's driver load order (a repro bundle's scenario).  ``keep``
    also keeps QEMU's own run folder (its logs are copied to ``out_dir/qemu`` anyway).
    ``hal`` is one of :data:`HAL_CHOICES`; ``reactos``: IoReportResourceUsage as ReactOS
    has it (it writes nothing and sees no conflict), to show what a driver meets there."""
    from .guests.agent import AgentLiveBus, agent_boot, connect_agent

    apic = hal_for(spec, hal) == "apic"
    out_dir = prepare_out_dir(out_dir)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    registry = Registry(out_dir / REGISTRY_FILE)
    try:
        # QEMU runs in its own short private folder (unix socket paths are limited); its
        # logs are copied next to the report once it has gone, whatever happened.
        # Made here (not by Machine) so it outlives close() for the copy below; unmarked,
        # so the sweep removes it if this process is killed before the copy.
        run_dir = new_run_dir(spec.name)
        try:
            machine = Machine(spec, run_dir=run_dir, boot=agent_boot(spec) if apic else None, keep=keep)
            with machine:
                agent = bus = None
                if apic:
                    agent = connect_agent(machine)  # the firmware ran, the guest serves the bus
                    bus = AgentLiveBus(machine, agent)
                    # What an OS or driver did once the firmware was done comes before NT looks.
                    actions = run_actions(machine, spec.after_firmware, "post-firmware", bus)
                else:
                    actions = run_firmware_and_steps(machine)
                timings["boot+firmware"] = time.monotonic() - t0
                t = time.monotonic()
                try:
                    bed = Testbed(machine, registry, bus=bus, reactos_compat=reactos)
                    timings["detect"] = time.monotonic() - t
                    t = time.monotonic()
                    bed.run(load_steps(spec) if steps is None else steps)
                    timings["drivers"] = time.monotonic() - t
                    post = run_actions(machine, spec.after_firmware, "post-drivers", bed.hal.bus)
                    shared = exercise_shared_interrupts(bed.io, machine)
                    result = collect(bed, out_dir, timings, shared)
                    # post-firmware, those among the steps (a bundle's), then post-drivers
                    result.actions = actions + result.actions + post
                finally:
                    if agent is not None:
                        agent.agent.close()
        finally:
            shutil.copytree(run_dir, out_dir / "qemu", dirs_exist_ok=True,
                            ignore=lambda _, names: [n for n in names if n.startswith(".")])
            relocate_argv(out_dir / "qemu" / "argv.sh", run_dir, out_dir / "qemu")
            if not keep:
                shutil.rmtree(run_dir, ignore_errors=True)
        result.timings["total"] = time.monotonic() - t0
        write_outputs(result, bed.io, picture=picture)
        return result
    finally:
        registry.close()


def collect(bed: Testbed, out_dir: Path, timings: dict[str, float] | None = None,
            shared: Sequence[SharedLine] = ()) -> JobResult:
    """The job's findings on a test bed now: claims against a fresh layout snapshot, what
    the hardware does (before the drivers and now; ``shared``: what exercising the shared
    interrupt lines showed), the ResourceMap and the error log."""
    io, spec = bed.io, bed.spec
    after = bed.after()
    checks = check_claims(io, after.layout, spec, bed.board)
    collisions = hardware_collisions(after, spec)
    collisions += [Collision("irq-lost", f"{s.input_name.lower()} {s.irq}", tuple(s.devices), s.describe())
                   for s in shared if s.lost]
    seen = {(c.kind, c.resource, c.devices) for c in collisions}
    # What the firmware left that the drivers then resolved (a moved BAR) counts too.
    collisions[:0] = [c for c in hardware_collisions(bed.before, spec)
                      if (c.kind, c.resource, c.devices) not in seen]
    registry = io.registry
    resource_map = format_tree(registry, RESOURCE_MAP) if registry.key_exists(RESOURCE_MAP) else ""
    error_log = []
    for entry in io.error_log:
        item = entry.to_dict()
        if entry.conflict is not None:
            explanation = same_card(spec, entry.conflict.requested, entry.conflict.holder)
            if explanation:
                item["explanation"] = explanation
        error_log.append(item)
    return JobResult(spec, out_dir, after.layout, resource_map, [_report(r, d) for r, d in bed.loaded],
                     error_log, io.violations, checks, collisions,
                     dict(timings or {}), unreadable=io.unreadable, shared_lines=list(shared),
                     hal=bed.hal.interrupt_model, reactos=bed.io.reactos_compat,
                     actions=list(bed.actions), claimants=bed.claimants(after.layout))


def write_outputs(result: JobResult, io: IoManager, *, picture: bool = True) -> None:
    """report.txt / report.json / report.html, registry.reg and (optionally) resourcemap.png in the
    result's folder."""
    out_dir = result.out_dir
    export_reg(io.registry, out_dir / "registry.reg")
    if picture:
        from .picture import draw_resource_map
        result.picture = draw_resource_map(io, result.layout, result, out_dir / "resourcemap.png")
    write_text(out_dir / "report.json", json.dumps(result.to_dict(), indent=1) + "\n")
    write_text(out_dir / "report.txt", result.format_text())
    from .htmlreport import machine_report_html
    write_text(out_dir / "report.html", machine_report_html(result))


def _report(result: LoadResult, driver: NtDriver) -> DriverReport:
    return DriverReport(result.name, result.status.name, [
        {"config": o.config, "device": o.device, "status": o.status.name, "detail": o.detail,
         "facts": o.facts} for o in driver.outcomes], [str(v) for v in result.violations])


# ---------------------------------------------------------------------------------------
# Claims against the hardware


def _label(r: Any) -> str:
    """Who a decoded range belongs to: its owning device, else (no owner: the legacy IDE
    ports of a PIIX, port 0x80) the region's name."""
    return r.owner or r.name.split(" @")[0]


def _expected_devices(claim: Claim, io: IoManager, layout: Layout, spec: MachineSpec,
                      board: Sequence[Any] = ()) -> tuple[str, ...]:
    """The machine-file device ids a claim is for (for a board claimant's claim: the
    owners, or owner-less region names, of the board device's ranges)."""
    driver_object = io.drivers.get(claim.owner.driver)
    config = None
    if driver_object is not None:
        for dev in driver_object.device_objects:
            if dev.name == claim.owner.device:
                config = dev.device_extension.get("config")
    if claim.interface_type == PCIBus and config is not None and config.slot is not None:
        bdf = f"{claim.bus_number:02x}:{config.slot & 0x1F:02x}.{config.slot >> 5 & 7}"
        try:
            return (layout.pci_function(bdf).qdev_id,)
        except KeyError:
            return ()
    if config is not None:
        if any(d.id == config.name for d in spec.devices):
            return (config.name,)
        device = next((r.device for r in board if r.device.name == config.name), None)
        if device is not None:
            return tuple(sorted({_label(r) for r in (*layout.io, *layout.memory)
                                 if device.matches(r.owner_type, r.name)}))
        # Found by detection: whichever device of this driver's kinds sits at that base,
        # configured or built into the board (then named by its QOM path, as the map does).
        kinds = _qemu_types_of(claim.owner.driver)
        return tuple(dev.id or dev.path for dev in layout.isa
                     if dev.type in kinds and dev.properties.get("iobase") == config.base)
    return ()


def _qemu_types_of(service_name: str) -> set[str]:
    """QEMU device types driven by the driver with this service name."""
    catalog = load_catalog()
    name = next((k for k, v in DRIVERS.items() if v.service_name == service_name), None)
    return {catalog[m].qemu_driver for m in catalog.nt_drivers.get(name, ())}


def check_claims(io: IoManager, layout: Layout, spec: MachineSpec,
                 board: Sequence[Any] = ()) -> list[ClaimCheck]:
    checks = []
    for claim in io.arbiter.claims():
        if claim.owner.driver == HAL_NAME or claim.empty:
            continue
        expected = _expected_devices(claim, io, layout, spec, board)
        check = ClaimCheck(claim.owner.driver, claim.owner.device, expected,
                           f"{claim.kind.value} {describe_range(claim.descriptor)}", True)
        if claim.kind in (ResourceKind.PORT, ResourceKind.MEMORY):
            _check_range(check, claim, layout)
        elif claim.kind in (ResourceKind.INTERRUPT, ResourceKind.DMA) and claim.interface_type != PCIBus:
            _check_line(check, claim, layout, spec)
        check.ok = not check.findings
        checks.append(check)
    return checks


def _check_range(check: ClaimCheck, claim: Claim, layout: Layout) -> None:
    space = "io" if claim.kind is ResourceKind.PORT else "memory"
    decoded = [r for r in (layout.io if space == "io" else layout.memory)
               if r.start <= claim.end and claim.start <= r.end and r.kind != "ram"]
    mine = [r for r in decoded if _label(r) in check.expected]
    others = [r for r in decoded if _label(r) not in check.expected and r.owner is not None]
    if not mine:
        if others:
            check.findings.append("decoded by " + ", ".join(sorted({f"{r.owner} ({r.name} {r.start:#x}-{r.end:#x})"
                                                                   for r in others})) + ", not by the expected device")
        else:
            check.findings.append("nothing decodes this range")
    elif others:
        check.findings.append("also decoded by " + ", ".join(sorted({f"{r.owner} {r.start:#x}-{r.end:#x}" for r in others})))
    for s in layout.shadowed:
        if s.space == space and s.owner in check.expected and s.start <= claim.end and claim.start <= s.end:
            check.findings.append(f"{s.owner}'s {s.start:#x}-{s.end:#x} is shadowed by {', '.join(s.hidden_by)}")
    covered = sum(min(r.end, claim.end) - max(r.start, claim.start) + 1 for r in decoded)
    if mine and covered < claim.end - claim.start + 1:
        check.notes.append(f"{claim.end - claim.start + 1 - covered} of {claim.end - claim.start + 1} "
                           "claimed byte(s) decoded by no device")


def _check_line(check: ClaimCheck, claim: Claim, layout: Layout, spec: MachineSpec) -> None:
    prop = ISA_IRQ_PROPERTIES if claim.kind is ResourceKind.INTERRUPT else ("dma", "dma16")
    value = interrupt_line(claim.descriptor) if claim.kind is ResourceKind.INTERRUPT else claim.descriptor.channel
    devices = {dev.id or dev.path: dev for dev in layout.isa}
    ids = {d.id for d in spec.devices}
    board = [devices[n] for n in check.expected if n not in ids and n in devices]
    if check.expected and not set(check.expected) & ids:
        # A board claimant's line: one of the board device's ISA parts drives it, or the
        # board model (checked against QEMU by tests/test_boards.py) says it is wired so.
        if board and not any(dev.properties.get(p) == value for dev in board for p in prop):
            check.findings.append(f"none of {', '.join(d.id or d.path for d in board)} is on {value}")
        elif not board:
            check.notes.append(f"{claim.kind.value} {value}: wired on the board (board model)")
        return
    for name in check.expected:
        dev = devices.get(name)
        if dev is None:
            check.findings.append(f"{name} is not an ISA device QEMU knows")
            continue
        if not any(dev.properties.get(p) == value for p in prop):
            shown = ", ".join(f"{p} {dev.properties[p]}" for p in prop if p in dev.properties)
            check.findings.append(f"QEMU has {name} on {shown}, the claim says {value}")


def same_card(spec: MachineSpec, requested: Claim, holder: Claim) -> str:
    """Why a conflict between two claims is one card's: one side is a chip QEMU emulates as
    a separate device model (a companion, like the SB16's OPL) and the other a retail
    driver's claim of the card's whole block over it.  Empty when it is not."""
    def devices_of(claim: Claim) -> list[Any]:
        out = []
        for dev in spec.devices:
            if dev.driver is None or DRIVERS[dev.driver].service_name != claim.owner.driver:
                continue
            if claim.kind is ResourceKind.PORT and not any(
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
    # Only where a configured device is involved: the board's own overlaps (0xcf9 reset
    # register over the host bridge, RAM over the option ROM area) are by design.
    out = [Collision("shadowed", f"{s.space} {s.start:#x}-{s.end:#x}", (s.owner or s.name, *s.hidden_by),
                     f"{s.owner or s.name} no longer answers there: {', '.join(s.hidden_by)} was mapped later",
                     layout.phase)
           for s in layout.shadowed if s.owner in ids or ids.intersection(s.hidden_by)]
    out += [Collision(f.explanation, f.resource, tuple(f.device.split(", ")), f.reason, layout.phase)
            for f in hardware_conflicts(spec, hardware)]
    return out
