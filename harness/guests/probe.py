"""The probe guest: build it, run it on a machine, parse its report.

The guest (``guest_images/probe/``) is a 32-bit multiboot ELF built with the host gcc
on first use and cached by a hash of its sources.  It is loaded with ``-kernel``, runs
after SeaBIOS, probes exactly the devices the machine spec models (passed on its command
line), writes one JSON object per line to an isa-debugcon port (never a UART: those are
under test) and ends QEMU through isa-debug-exit (status 33).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import MachineSpec
from ..devices import load_catalog
from ..errors import HarnessError
from ..qemu.layout import PIRQ_REGISTERS, Layout
from ..qemu.machine import GuestBoot, GuestStopped, Machine
from .cache import GUEST_IMAGES, cache_root, content_hash, locked, progress

PROBE_SOURCES = GUEST_IMAGES / "probe"
PHASE = "probe-guest"
#: isa-debug-exit turns the guest's write of 0x10 into this QEMU exit status.
EXIT_STATUS = (0x10 << 1) | 1
#: (report port, exit port) pairs tried in order; the first that no modelled device
#: decodes is used.  0xE9 is the classic debug console port.
CHANNEL_PORTS = ((0xE9, 0xF4), (0x4E9, 0x4F4), (0xFE9, 0xFF4))
DEFAULT_TIMEOUT = 30.0  # a run takes ~0.1 s under TCG; CI machines can be far slower


class ProbeError(HarnessError):
    """The probe guest did not build, did not run to its end, or reported nonsense."""


# ---------------------------------------------------------------------- building
def build_probe() -> Path:
    """The probe ELF, built now if its sources changed since the cached build."""
    sources = sorted(p for p in PROBE_SOURCES.iterdir() if p.is_file())
    if not sources:
        raise ProbeError(f"no probe guest sources in {PROBE_SOURCES}")
    folder = cache_root() / f"probe-{content_hash(sources)}"
    elf = folder / "probe.elf"
    if elf.is_file():
        return elf
    with locked("probe"):
        if elf.is_file():  # another process built it while we waited
            return elf
        progress(f"building the probe guest from {PROBE_SOURCES} ...")
        start = time.monotonic()
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            # make's recipes run in /bin/sh: no path may reach them (a cache or install
            # path with a backquote or a space).  The sources are copied into the private
            # build folder and make runs there with relative names only.
            for source in sources:
                shutil.copyfile(source, Path(tmp, source.name))
            result = subprocess.run(["make", "--no-print-directory", "OUT=."], cwd=tmp,
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise ProbeError(f"building the probe guest failed (make exit {result.returncode}):\n"
                                 + result.stdout[-2000:] + result.stderr[-2000:])
            Path(tmp, "probe.elf").replace(elf)
        progress(f"probe guest built in {time.monotonic() - start:.2f} s: {elf}")
    return elf


# ---------------------------------------------------------------------- what to probe
@dataclass(frozen=True)
class ProbeTarget:
    """One device the guest probes: its handshake kind, id and modelled port."""

    kind: str  # one of devices.GUEST_PROBES, or "ports"
    id: str
    port: int
    length: int

    def token(self) -> str:
        return f"dev={self.kind}:{self.id}:{self.port:#x}:{self.length}"


def probe_targets(spec: MachineSpec, layout: Layout | None = None) -> list[ProbeTarget]:
    """The spec's ISA devices at their modelled ports, then the board's own ISA devices
    that the catalog knows (e.g. the built-in FDC), read from ``layout`` when given."""
    targets = []
    for dev in spec.devices:
        ports = [(lo, hi) for kind, lo, hi in dev.decoded_resources() if kind == "port"]
        if dev.model.bus != "isa" or not ports:
            continue
        model = dev.model
        if model.guest_probe and model.probe_base:
            targets.append(ProbeTarget(model.guest_probe, dev.id, int(dev.settings[model.probe_base]),
                                       ports[0][1] - ports[0][0] + 1))
        else:
            lo, hi = model.presence_ports(dev.settings) or ports[0]
            targets.append(ProbeTarget("ports", dev.id, lo, hi - lo + 1))
    if layout is not None:
        by_driver = {m.qemu_driver: m for m in load_catalog().values() if m.guest_probe}
        for board in layout.isa:
            model = by_driver.get(board.type)
            if board.id is None and model is not None and model.probe_base in board.properties:
                targets.append(ProbeTarget(model.guest_probe, board.path, board.properties[model.probe_base], 8))
    return targets


def config_reads(spec: MachineSpec) -> list[tuple[int, int, int, int]]:
    """Config dwords the guest reads for us: the chipset's PIRQ route registers."""
    if spec.machine not in PIRQ_REGISTERS:
        return []
    (bus, slot, fn), registers = PIRQ_REGISTERS[spec.machine]
    return [(bus, slot, fn, off) for off in sorted({o & ~3 for o in registers.values()})]


def ports_in_use(spec: MachineSpec) -> list[tuple[int, int]]:
    """The ports ``spec`` puts a decoder on, which the guest's own channels keep clear of:
    every device's, and every I/O BAR the file's ``move_bar`` steps place (a post-drivers
    move over the agent's UART cut the harness off from the guest; livefuzz round three)."""
    taken = [(lo, hi) for dev in spec.devices for kind, lo, hi in dev.decoded_resources() if kind == "port"]
    ids = {dev.id: dev for dev in spec.devices}
    for step in spec.after_firmware:
        dev = ids.get(step.target or "")
        if step.kind == "move_bar" and dev is not None and dev.model.pci is not None and any(
                b.index == step.bar and b.kind == "io" for b in dev.model.pci.bars):
            taken.append((step.address, step.address + step.bar_size - 1))
    return taken


def channel_ports(spec: MachineSpec) -> tuple[int, int]:
    taken = ports_in_use(spec)
    for report, exit_port in CHANNEL_PORTS:
        if not any(lo <= p + n - 1 and p <= hi for lo, hi in taken for p, n in ((report, 1), (exit_port, 4))):
            return report, exit_port
    raise ProbeError(f"every candidate report/exit port pair {CHANNEL_PORTS} is decoded by a device "
                     f"of {spec.source}")


def command_line(spec: MachineSpec, layout: Layout | None = None) -> tuple[str, int, int]:
    report, exit_port = channel_ports(spec)
    tokens = [f"report={report:#x}", f"exit={exit_port:#x}"]
    tokens += [f"cfg={b}:{s}:{f}:{off:#x}" for b, s, f, off in config_reads(spec)]
    tokens += [t.token() for t in probe_targets(spec, layout)]
    return " ".join(tokens), report, exit_port


# ---------------------------------------------------------------------- the report
@dataclass(frozen=True)
class ProbeBar:
    index: int  # 0-5; 6 is the expansion ROM
    kind: str  # "io", "memory" or "rom" (as layout.Bar)
    base: int
    size: int
    is_64bit: bool = False
    prefetchable: bool = False

    @property
    def end(self) -> int:
        return self.base + self.size - 1


@dataclass(frozen=True)
class ProbePci:
    bus: int
    slot: int
    function: int
    vendor: int
    device: int
    class_code: int  # base class << 16 | subclass << 8 | prog-if
    header_type: int
    command: int
    interrupt_line: int  # config 0x3C: the firmware's hint
    interrupt_pin: int
    bars: tuple[ProbeBar, ...]
    #: IRQ lines seen to go up and down while the function asserted INTx; None when the
    #: guest knows no way to make this function interrupt.
    irq_observed: tuple[int, ...] | None
    windows: dict[str, int] = field(default_factory=dict)  # bridges: io/mem/pref base and limit

    @property
    def bdf(self) -> str:
        return f"{self.bus:02x}:{self.slot:02x}.{self.function}"


@dataclass(frozen=True)
class ProbeIsa:
    id: str
    kind: str
    port: int
    present: bool
    #: IRQ lines the device was seen to drive; None when the handshake cannot raise one.
    irqs: tuple[int, ...] | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeReport:
    machine: str
    machine_type: str
    phase: str
    pci_conf1: bool  # False: 0xCF8 did not behave (no PCI, or something shadows it)
    elcr: int
    pci: tuple[ProbePci, ...]
    isa: tuple[ProbeIsa, ...]
    config: dict[tuple[int, int, int, int], int]
    command_line: str
    seconds: float

    def pci_function(self, bdf: str) -> ProbePci:
        for fn in self.pci:
            if fn.bdf == bdf:
                return fn
        raise KeyError(bdf)

    def isa_device(self, device_id: str) -> ProbeIsa:
        for dev in self.isa:
            if dev.id == device_id:
                return dev
        raise KeyError(device_id)

    def pirq_routes(self, machine_kind: str) -> dict[str, int | None]:
        """PIRQ link → ISA IRQ as the guest read the chipset registers (None: disabled)."""
        if machine_kind not in PIRQ_REGISTERS:
            return {}
        (bus, slot, fn), registers = PIRQ_REGISTERS[machine_kind]
        routes: dict[str, int | None] = {}
        for link, off in registers.items():
            dword = self.config.get((bus, slot, fn, off & ~3))
            if dword is not None:
                value = dword >> (8 * (off & 3)) & 0xFF
                routes[link] = None if value & 0x80 else value & 0x0F
        return routes


def parse_report(text: str, *, machine: str = "", machine_type: str = "", seconds: float = 0.0,
                 source: str = "probe report") -> ProbeReport:
    """Parse the guest's JSON lines; a malformed or incomplete report raises ProbeError."""
    hello: dict[str, Any] | None = None
    done = False
    pci: list[ProbePci] = []
    isa: list[ProbeIsa] = []
    config: dict[tuple[int, int, int, int], int] = {}
    lines = [line for line in text.splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            item = json.loads(line)
            kind = item["kind"]
            if kind == "hello":
                hello = item
            elif kind == "pci":
                pci.append(_pci(item))
            elif kind == "isa":
                isa.append(_isa(item))
            elif kind == "cfg":
                config[(item["bus"], item["slot"], item["function"], _hex(item["offset"]))] = _hex(item["value"])
            elif kind == "done":
                if item["lines"] != number:
                    raise ValueError(f"done says {item['lines']} lines, {number} arrived")
                done = True
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise ProbeError(f"{source}, line {number}: {exc}: {line[:200]!r}") from None
    if hello is None:
        raise ProbeError(f"{source}: the guest printed nothing (it did not boot)")
    if not done:
        raise ProbeError(f"{source}: the report stops after {len(lines)} lines without 'done'")
    return ProbeReport(machine, machine_type, PHASE, bool(hello["pci_conf1"]), _hex(hello["elcr"]),
                       tuple(pci), tuple(isa), config, hello["cmdline"], seconds)


def _hex(text: str) -> int:
    if not isinstance(text, str) or not text.startswith("0x"):
        raise ValueError(f"expected a 0x-hex string, got {text!r}")
    return int(text, 16)


_BAR_KINDS = {"io": "io", "mem": "memory", "rom": "rom"}
_WINDOW_KEYS = ("io_base", "io_limit", "mem_base", "mem_limit", "pref_base", "pref_limit")


def _pci(item: dict[str, Any]) -> ProbePci:
    bus, rest = item["bdf"].split(":")
    slot, function = rest.split(".")
    bars = tuple(ProbeBar(b["bar"], _BAR_KINDS[b["type"]], _hex(b["base"]), _hex(b["size"]),
                          bool(b.get("mem64", False)), bool(b.get("prefetch", False))) for b in item["bars"])
    observed = item["irq_observed"]
    return ProbePci(int(bus, 16), int(slot, 16), int(function), _hex(item["vendor"]), _hex(item["device"]),
                    _hex(item["class"]), item["header"], _hex(item["command"]), item["irq_line"],
                    item["irq_pin"], bars, None if observed is None else tuple(observed),
                    {k: _hex(item[k]) for k in _WINDOW_KEYS if k in item})


_ISA_KEYS = {"kind", "id", "dev", "port", "present", "irq"}


def _isa(item: dict[str, Any]) -> ProbeIsa:
    irqs = item.get("irq")
    return ProbeIsa(item["id"], item["dev"], _hex(item["port"]), bool(item["present"]),
                    None if irqs is None else tuple(irqs),
                    {k: v for k, v in item.items() if k not in _ISA_KEYS})


# ---------------------------------------------------------------------- running
def run_probe(spec: MachineSpec, layout: Layout | None = None, *, timeout: float = DEFAULT_TIMEOUT,
              keep: bool = False) -> ProbeReport:
    """Boot the probe guest on ``spec`` (a fresh QEMU) and return what it reported.

    ``layout`` (a snapshot of the same spec) adds the board's own ISA devices to what is
    probed.  The run folder keeps ``report.out`` beside the usual logs.
    """
    elf = build_probe()
    append, report_port, exit_port = command_line(spec, layout)
    boot = GuestBoot(kernel=elf, append=append, report_port=report_port, exit_port=exit_port)
    machine = Machine(spec, boot=boot, keep=keep)
    with machine:
        start = time.monotonic()
        machine.resume()
        try:
            status = machine.wait_exit(timeout, "the probe guest leaving through isa-debug-exit")
        except GuestStopped as exc:
            raise ProbeError(str(exc)) from None
        seconds = time.monotonic() - start
        text = machine.report_path.read_text(errors="replace") if machine.report_path.exists() else ""
        try:
            report = parse_report(text, machine=spec.name, machine_type=spec.machine, seconds=seconds,
                                  source=str(machine.report_path))
        except ProbeError as exc:
            raise ProbeError(f"{exc} (QEMU exit status {status})" + machine.log_tails()) from None
        if status != EXIT_STATUS:
            raise ProbeError(f"the probe guest ended QEMU with status {status}, expected {EXIT_STATUS}"
                             + machine.log_tails())
    return report
