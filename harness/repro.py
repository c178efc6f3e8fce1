r"""Repro bundles: one YAML file that holds a resource-conflict scenario.

A bundle is written whenever something goes wrong (a failing pytest test that used the
harness fixtures, a failing matrix cell, a main job that was not clean) and holds::

    harness_repro: 1
    title: tests/test_x.py::test_y            # what produced it
    seen: {qemu_version: 7.2.19, accel: tcg, machine_type: pc-i440fx-7.2, recorded: ...}
    machine: {name: ..., machine: pc, devices: [...]}   # a machine file, without drivers
    steps:                                     # in order; defaults to the machine's drivers
      - load_driver: serial
        devices: [com1, com2]
      - report:                                # an IoReportResourceUsage a test made
          driver: Probe
          device: \Device\Probe0               # omitted: the driver-wide list
          class: OtherDrivers                  # omitted: the I/O manager's default class
          override: false
          device_list:                         # or driver_list; a CM_RESOURCE_LIST
            - interface: Isa
              bus: 0
              resources:
                - {port: 0x3f8, length: 8}
                - {interrupt: 4, share: shared}        # also vector, affinity; dma: dma_port
    claims: [...]                              # what was claimed (for the reader)
    expect:
      outcome: conflict                        # or warning, or clean
      findings: [...]                          # the job's findings, one stable line each

``harness repro FILE`` boots a fresh machine, does the steps, prints the main job's report
and says whether every expected finding was seen again (exit 0: reproduces, 1: it does
not, 2: the bundle or the machine could not be used; 0 means "still interesting", as a
reducer's test expects).  ``harness repro --shrink FILE`` removes steps and devices one at
a time while the scenario still reproduces and writes the smallest bundle it reached.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from .atomicio import write_text
from . import __version__
from .actions import ACTION_KINDS, Action, is_action, parse_step
from .config import CLAIM_STYLES, MachineSpec, parse_machine, parse_machine_text
from .errors import ConfigError, HarnessError, unknown_name
from .job import HAL_CHOICES, JobResult, run_job
from .nt.iomgr import ReportCall, _one_key_name
from .nt.resources import (CM_FULL_RESOURCE_DESCRIPTOR, CM_RESOURCE_PORT_IO, CM_RESOURCE_LIST, INTERFACE_TYPE, CmResourceShare, Dma,
                           Interrupt, Memory, Port)
from .nt.errors import ResourceFormatError
from .drivers import DRIVERS
from .verdict import CLEAN, CONFLICT, VERDICTS
from .testbed import LoadStep, Step, devices_driven_by, load_steps
from .yamlio import Node, get_bool, get_int, get_list, get_str, load_file

BUNDLE_VERSION = 1
#: The bundle's name in an output folder (main job, failing test, matrix cell).
BUNDLE_FILE = "bundle.yaml"
OUTCOMES = VERDICTS
_KEYS = frozenset({"harness_repro", "title", "seen", "machine", "hal", "reactos", "steps", "claims", "expect"})
_REPORT_KEYS = frozenset({"driver", "device", "class", "override", "driver_list", "device_list"})
_SHARES = {"undetermined": CmResourceShare.CmResourceShareUndetermined,
           "device-exclusive": CmResourceShare.CmResourceShareDeviceExclusive,
           "driver-exclusive": CmResourceShare.CmResourceShareDriverExclusive,
           "shared": CmResourceShare.CmResourceShareShared,
           "bus-shared": CmResourceShare.CmResourceShareBusShared}
_SHARE_NAMES = {v: k for k, v in _SHARES.items()}
#: Readable descriptor forms: the key that names the type, its class, its other fields.
_KINDS: dict[str, tuple[type, tuple[str, ...]]] = {
    "port": (Port, ("length",)), "memory": (Memory, ("length",)),
    "interrupt": (Interrupt, ("vector", "affinity")), "dma": (Dma, ("dma_port",)),
}


@dataclass
class Bundle:
    spec: MachineSpec
    steps: list[Step]
    outcome: str = "conflict"
    findings: list[str] = field(default_factory=list)
    title: str = ""
    seen: dict[str, Any] = field(default_factory=dict)
    claims: list[str] = field(default_factory=list)
    source: str = "<bundle>"
    #: How the job ran: its HAL (``harness run --hal``) and the ReactOS switch.
    hal: str = "auto"
    reactos: bool = False

    def to_doc(self) -> dict[str, Any]:
        machine = self.spec.to_dict()
        machine.pop("drivers")
        machine.pop("expect")
        for dev in machine["devices"]:
            dev.update({k: Hex(v) for k, v in dev.items() if k.endswith("base") and isinstance(v, int)})
        for step in machine.get("after_firmware", []):  # addresses and values read best in hex
            step.update({k: Hex(v) for k, v in step.items()
                         if isinstance(v, int) and k not in ("bar", "size", "phase")})
        return {"harness_repro": BUNDLE_VERSION, "title": self.title, "seen": self.seen,
                "machine": machine, "hal": self.hal, "reactos": self.reactos,
                "steps": [_step_doc(s) for s in self.steps],
                "claims": self.claims, "expect": {"outcome": self.outcome, "findings": self.findings}}

    def dump(self) -> str:
        return yaml.dump(self.to_doc(), Dumper=_Dumper, sort_keys=False, width=1 << 16, allow_unicode=True)

    def write(self, path: str | Path) -> Path:
        """Write atomically (a reader never sees half a bundle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text(path, self.dump())


def bundle_from(result: JobResult, steps: list[Step], *, title: str) -> Bundle:
    """The bundle of what a job (or a test bed) saw, with the steps that led to it."""
    seen = {"qemu_version": result.layout.qemu_version, "accel": result.layout.accel,
            "machine_type": result.layout.machine_type, "config_hash": result.spec.config_hash(),
            "harness": __version__,
            "recorded": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()}
    claims = [f"{c.driver} {c.device or ''}: {c.resource}".replace(" :", ":") for c in result.checks]
    return Bundle(result.spec, list(steps), result.verdict, result.findings(),
                  title, seen, claims, hal=result.hal, reactos=result.reactos)


def write_bundle(result: JobResult, steps: list[Step] | None = None, *, title: str) -> Path:
    """The bundle of ``result`` next to its report (``steps``: the machine's driver loads
    unless given)."""
    steps = load_steps(result.spec) if steps is None else steps
    path = bundle_from(result, steps, title=title).write(result.out_dir / BUNDLE_FILE)
    if (result.out_dir / "report.html").is_file():   # the page links the bundle now
        from .htmlreport import machine_report_html
        (result.out_dir / "report.html").write_text(machine_report_html(result))
    return path


def write_cell_bundle(cell: Any, outcome: Any, out_dir: Path) -> Path | None:
    """The matrix runner's failure hook: a failed cell's bundle next to its report (a
    cell whose job raised has no findings to write down; its error says why)."""
    if not isinstance(outcome, JobResult):
        return None
    return write_bundle(outcome, title=f"matrix cell {cell.id}")


# ---------------------------------------------------------------------------------------
# Reading


def load_bundle(path: str | Path) -> Bundle:
    if str(path).startswith("example:"):
        # (it said "file not found": the name of a shipped machine given for a bundle)
        raise ConfigError(f"shipped examples are machine files and matrices, not repro bundles: 'harness run "
                          f"{path}' writes one (bundle.yaml beside its report) when the machine is not clean",
                          source=str(path))
    return parse_bundle(load_file(path), str(path))


def parse_bundle(doc: Any, source: str) -> Bundle:
    if not isinstance(doc, Node):
        raise ConfigError("a repro bundle must be a YAML mapping", source=source)
    if "harness_repro" not in doc and isinstance(doc.get("machine"), str):
        # a machine type where a bundle has the machine mapping: a machine file given for a bundle
        raise doc.error(None, "this is a machine file, not a repro bundle: 'harness run' takes it and writes "
                              "one (bundle.yaml beside its report) when the machine is not clean")
    doc.check_keys(_KEYS, {"harness_repro", "machine"})
    version = get_int(doc, "harness_repro")
    if version != BUNDLE_VERSION:
        raise doc.error("harness_repro", f"bundle format {version} is not supported (this harness reads {BUNDLE_VERSION})")
    machine = doc["machine"]
    if not isinstance(machine, Node):
        raise doc.error("machine", "expected a machine mapping (the content of a machine file)")
    spec = parse_machine(machine, source)
    if "steps" in doc:
        if "drivers" in machine:
            raise machine.error("drivers", "give the driver load order either here or as 'steps', not both")
        steps = [_parse_step(item, doc, i, spec) for i, item in enumerate(get_list(doc, "steps"))]
    else:
        steps = list(load_steps(spec))
    expect = doc.get("expect", None)
    outcome, findings = "conflict", []
    if expect is not None:
        if not isinstance(expect, Node):
            raise doc.error("expect", "expected a mapping with 'outcome' and 'findings'")
        expect.check_keys({"outcome", "findings"})
        outcome = get_str(expect, "outcome", choices=OUTCOMES, default="conflict")
        findings = [_text(expect, "findings", f) for f in get_list(expect, "findings", default=[])]
    seen = doc.get("seen", None)
    if seen is None:
        seen = {}
    elif not isinstance(seen, Node):
        raise doc.error("seen", "expected a mapping")
    for key, value in seen.items():  # facts about the run that recorded it: plain values
        if not (value is None or isinstance(value, (str, int, float, bool))):
            kind = "a mapping" if isinstance(value, Node) else type(value).__name__
            raise seen.error(key, f"expected a string, number or boolean, got {kind}")
    claims = [_text(doc, "claims", c) for c in get_list(doc, "claims", default=[])]
    return Bundle(spec, steps, outcome, findings, get_str(doc, "title", default=""), dict(seen), claims, source,
                  hal=get_str(doc, "hal", choices=HAL_CHOICES, default="auto"),
                  reactos=get_bool(doc, "reactos", default=False))


def _text(node: Node, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise node.error(key, f"expected a list of strings, got {value!r}")
    return value


def _parse_step(item: Any, doc: Node, index: int, spec: MachineSpec) -> Step:
    if is_action(item):
        return parse_step(item, spec.devices, spec.machine)
    if not isinstance(item, Node) or not ({"load_driver", "report"} & set(item)):
        raise doc.error("steps", f"step {index} must be a mapping with 'load_driver', 'report' "
                                 f"or an action ({', '.join(ACTION_KINDS)})")
    if "load_driver" in item:
        item.check_keys({"load_driver", "devices", "override_conflict", "claim"}, {"load_driver"})
        name = get_str(item, "load_driver")
        mine = list(devices_driven_by(spec, name))
        if name not in DRIVERS:
            raise item.error("load_driver", unknown_name("driver", name, DRIVERS))
        devices = get_list(item, "devices", default=mine)
        for dev in devices:
            if dev not in mine:
                raise item.error("devices", f"{dev!r} is not a device of this machine that {name} drives "
                                            f"(those are: {', '.join(mine) or 'none'})")
        return LoadStep(name, tuple(devices), get_bool(item, "override_conflict", default=False),
                        get_str(item, "claim", choices=CLAIM_STYLES, default="decoded"))
    item.check_keys({"report"})
    report = item["report"]
    if not isinstance(report, Node):
        raise item.error("report", "expected a mapping (driver, device, class, override, device_list/driver_list)")
    report.check_keys(_REPORT_KEYS, {"driver"})
    lists = {key: _parse_list(report, key) for key in ("driver_list", "device_list") if key in report}
    if not lists:
        raise report.error(None, "needs a 'device_list' or a 'driver_list'")
    device = get_str(report, "device", default=None)
    if "device_list" in lists and device is None:
        raise report.error("device_list", "a device list needs the 'device' it is for")
    names = {key: get_str(report, key, default=None) for key in ("driver", "class")}
    for key, name in names.items():
        # the call would only return STATUS_OBJECT_NAME_INVALID, which no report shows
        if name is not None and not _one_key_name(name):
            raise report.error(key, f"{name!r} cannot be a registry key name (empty, or holds '\\'): "
                                    "IoReportResourceUsage would refuse it with STATUS_OBJECT_NAME_INVALID")
    return ReportCall(names["driver"], device, names["class"],
                      lists.get("driver_list"), lists.get("device_list"), get_bool(report, "override", default=False))


def _parse_list(report: Node, key: str) -> CM_RESOURCE_LIST:
    fulls = []
    for i, full in enumerate(get_list(report, key)):
        if not isinstance(full, Node):
            raise report.error(key, f"item {i} must be a mapping with interface, bus and resources")
        full.check_keys({"interface", "bus", "resources"}, {"resources"})
        interface = get_str(full, "interface", choices=tuple(t.name for t in INTERFACE_TYPE), default="Isa")
        partials = [_parse_descriptor(full, d, j) for j, d in enumerate(get_list(full, "resources"))]
        bus = get_int(full, "bus", lo=0, hi=0xFFFFFFFF, default=0)  # BusNumber is a ULONG
        fulls.append(CM_FULL_RESOURCE_DESCRIPTOR.of(INTERFACE_TYPE[interface], bus, *partials))
    return CM_RESOURCE_LIST(tuple(fulls))


def _parse_descriptor(full: Node, d: Any, index: int) -> Any:
    kinds = [k for k in _KINDS if isinstance(d, Node) and k in d]
    if len(kinds) != 1:
        raise full.error("resources", f"resource {index} must be a mapping with exactly one of "
                                      f"{', '.join(_KINDS)} (and its fields)")
    kind = kinds[0]
    cls, extra = _KINDS[kind]
    d.check_keys({kind, *extra, "share", "flags"}, {kind, *extra[:1]} if kind in ("port", "memory") else {kind})
    value = get_int(d, kind, lo=0)
    share = _SHARES[get_str(d, "share", choices=tuple(_SHARES), default="device-exclusive")]
    kwargs: dict[str, Any] = {"share": share}
    if "flags" in d:
        kwargs["flags"] = get_int(d, "flags", lo=0, hi=0xFFFF)
    try:
        if kind in ("port", "memory"):
            return cls(value, get_int(d, "length", lo=0), **kwargs)
        if kind == "interrupt":
            return cls(value, get_int(d, "vector", lo=0, default=value), get_int(d, "affinity", default=-1), **kwargs)
        return cls(value, get_int(d, "dma_port", lo=0, default=0), **kwargs)
    except (ResourceFormatError, ValueError) as exc:
        raise d.error(kind, str(exc)) from None


# ---------------------------------------------------------------------------------------
# Writing


def _step_doc(step: Step) -> dict[str, Any]:
    if isinstance(step, Action):
        return {k: v if k in ("bar", "size") or not isinstance(v, int) else Hex(v)
                for k, v in step.to_dict().items()}
    if isinstance(step, LoadStep):
        out: dict[str, Any] = {"load_driver": step.driver, "devices": list(step.devices)}
        if step.override_conflict:
            out["override_conflict"] = True
        if step.claim != "decoded":
            out["claim"] = step.claim
        return out
    report: dict[str, Any] = {"driver": step.driver}
    if step.device is not None:
        report["device"] = step.device
    if step.resource_class is not None:
        report["class"] = step.resource_class
    report["override"] = step.override
    for key, lst in (("driver_list", step.driver_list), ("device_list", step.device_list)):
        if lst is not None:
            report[key] = [{"interface": full.interface_type.name, "bus": full.bus_number,
                            "resources": [_descriptor_doc(p) for p in full.partials]} for full in lst.descriptors]
    return {"report": report}


def _descriptor_doc(p: Any) -> dict[str, Any]:
    kind = next((k for k, (cls, _) in _KINDS.items() if type(p) is cls), None)
    if kind is None:
        raise HarnessError(f"a repro bundle cannot hold a {type(p).__name__} descriptor yet "
                           "(port, memory, interrupt and DMA only)")
    out: dict[str, Any] = {kind: Hex(p.start if kind in ("port", "memory") else
                                     p.level if kind == "interrupt" else p.channel)}
    if kind in ("port", "memory"):
        out["length"] = Hex(p.length)
    elif kind == "interrupt":
        if p.vector != p.level:
            out["vector"] = p.vector
        if p.affinity != -1:
            out["affinity"] = Hex(p.affinity)
    elif p.port:
        out["dma_port"] = p.port
    if p.share != CmResourceShare.CmResourceShareDeviceExclusive:
        out["share"] = _SHARE_NAMES[p.share]
    if p.flags != (CM_RESOURCE_PORT_IO if kind == "port" else 0):
        out["flags"] = Hex(p.flags)
    return out


class Hex(int):
    """An int the bundle shows in hex (addresses, lengths)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Hex, lambda d, v: d.represent_scalar("tag:yaml.org,2002:int", f"{int(v):#x}"))
_Dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))


# ---------------------------------------------------------------------------------------
# Replay and shrink


@dataclass
class Replay:
    result: JobResult
    bundle: Bundle

    @property
    def observed(self) -> list[str]:
        return self.result.findings()

    @property
    def missing(self) -> list[str]:
        """Expected findings that did not come back."""
        seen = set(self.observed)
        return [f for f in self.bundle.findings if f not in seen]

    @property
    def new(self) -> list[str]:
        expected = set(self.bundle.findings)
        return [f for f in self.observed if f not in expected]

    @property
    def reproduces(self) -> bool:
        """Every recorded finding came back.  A bundle of a clean outcome records nothing to
        reproduce: its replay never counts as reproducing.  A conflict comes back as a
        conflict; a warning at least as a warning."""
        if self.bundle.outcome == CLEAN:
            return False
        if self.bundle.outcome == CONFLICT and self.result.verdict != CONFLICT:
            return False
        return not self.result.clean and not self.missing

    def format_text(self) -> str:
        b = self.bundle
        out = [f"Repro bundle {b.source}" + (f" ({b.title})" if b.title else "")]
        if b.seen:
            out.append("  recorded on " + ", ".join(f"{k} {v}" for k, v in b.seen.items()))
        if b.outcome == "clean":
            verdict = ("NOTHING TO REPRODUCE: the bundle records no finding"
                       + ("; the machine is still clean" if self.result.clean else "; the machine now has findings"))
        else:
            verdict = "REPRODUCES" if self.reproduces else "DOES NOT REPRODUCE"
        out.append(f"  expected outcome {b.outcome} with {len(b.findings)} finding(s): {verdict}")
        out += [f"    missing: {f}" for f in self.missing]
        out += [f"    new:     {f}" for f in self.new]
        if self.result.layout.qemu_version != b.seen.get("qemu_version", self.result.layout.qemu_version):
            out.append(f"  note: QEMU is now {self.result.layout.qemu_version}")
        return "\n".join(out) + "\n"


def replay(bundle: Bundle, out_dir: Path, *, picture: bool = True) -> Replay:
    """Do the bundle's scenario on a fresh machine (the main job with its steps)."""
    return Replay(run_job(bundle.spec, out_dir, picture=picture, steps=bundle.steps, hal=bundle.hal,
                          reactos=bundle.reactos), bundle)


@dataclass
class Shrunk:
    bundle: Bundle
    runs: int
    removed: list[str]


def shrink(bundle: Bundle, out_dir: Path, *, max_runs: int = 200,
           log: Callable[[str], None] = lambda _: None) -> Shrunk:
    """Greedy one-at-a-time reduction: in each pass try the bundle without each device
    (removed from the load steps too; a load step left without devices goes) and then
    without each step, keeping every removal after which the scenario still reproduces;
    passes repeat until one removes nothing.  The result is 1-minimal (no single
    remaining device or step can go) unless ``max_runs`` replays ran out first, which
    is logged.  Its ``claims`` and ``seen`` come from its own last replay."""
    if bundle.outcome == "clean":   # every removal would 'still reproduce' down to nothing
        raise HarnessError(f"{bundle.source} records a clean outcome, no finding: nothing to shrink")
    last = replay(bundle, out_dir, picture=False)
    if not last.reproduces:
        raise HarnessError(f"{bundle.source} does not reproduce on this machine; nothing to shrink "
                           f"(missing: {'; '.join(last.missing) or 'the recorded clean outcome'})")
    if bundle.outcome != CLEAN and not bundle.findings:
        bundle = replace(bundle, findings=last.observed)
    runs, removed = 1, []
    changed = True
    while changed:
        changed = False
        for label, make in _removals(bundle):
            candidate = make(bundle)
            if candidate is None:
                continue
            if runs >= max_runs:
                log(f"run budget of {max_runs} replays reached; the result may not be minimal")
                return Shrunk(_refreshed(bundle, last), runs, removed)
            runs += 1
            try:
                attempt = replay(candidate, out_dir, picture=False)
            except HarnessError as exc:
                log(f"  without {label}: machine unusable ({str(exc).splitlines()[0]})")
                continue
            log(f"  without {label}: {'still reproduces, removed' if attempt.reproduces else 'gone, kept'}")
            if attempt.reproduces:
                bundle, last, changed = candidate, attempt, True
                removed.append(label)
    return Shrunk(_refreshed(bundle, last), runs, removed)


def _refreshed(bundle: Bundle, last: Replay) -> Bundle:
    fresh = bundle_from(last.result, bundle.steps, title=bundle.title)
    return replace(bundle, seen=fresh.seen, claims=fresh.claims)


def _removals(bundle: Bundle):
    """(label, function making the smaller bundle or None) for each device, last first,
    then each step, last first (later ones are more often incidental).  The functions
    take the bundle as it is when they are tried, so earlier removals count."""
    for dev in reversed(bundle.spec.devices):
        yield f"device {dev.id} ({dev.model.name})", lambda b, dev_id=dev.id: _without_device(b, dev_id)
    for step in reversed(bundle.steps):
        label = (f"load {step.driver}" if isinstance(step, LoadStep)
                 else f"step {step.describe()}" if isinstance(step, Action)
                 else f"claim by {step.driver} {step.device or ''}".rstrip())
        yield label, lambda b, step=step: _without_step(b, step)
    for action in reversed(bundle.spec.after_firmware):
        yield f"step after the firmware: {action.describe()}", lambda b, a=action: _without_action(b, a)


def _without_action(bundle: Bundle, action: Any) -> Bundle | None:
    actions = bundle.spec.after_firmware
    if action not in actions:
        return None
    i = actions.index(action)
    return replace(bundle, spec=replace(bundle.spec, after_firmware=actions[:i] + actions[i + 1:]))


def _without_step(bundle: Bundle, step: Step) -> Bundle | None:
    if step not in bundle.steps:
        return None
    i = bundle.steps.index(step)
    return replace(bundle, steps=bundle.steps[:i] + bundle.steps[i + 1:])


def _without_device(bundle: Bundle, device_id: str) -> Bundle | None:
    doc = bundle.spec.to_dict()
    doc.pop("drivers")
    doc["devices"] = [d for d in doc["devices"] if d["id"] != device_id]
    try:
        spec = parse_machine_text(yaml.safe_dump(doc), bundle.spec.source)
    except ConfigError:
        return None   # something else needs it (a bridge's children, a drive's controller)
    steps: list[Step] = []
    for s in bundle.steps:
        if isinstance(s, LoadStep) and device_id in s.devices:
            s = replace(s, devices=tuple(d for d in s.devices if d != device_id))
            if not s.devices:
                continue
        steps.append(s)
    return replace(bundle, spec=spec, steps=steps)
