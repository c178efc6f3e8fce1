"""Random valid machines against the hardware's own answer (``make fuzz-machines``).

A seeded generator writes machine files from the catalog (isapc, pc, q35; 1-5 devices;
settings, ``builtin:`` settings and ``after_firmware`` steps), mostly placed near what
the board or another device already uses, so that conflicts are common; a second round
(its own stream) adds the APIC HAL on pc, ports at the decode edges, IRQ 2 beside 9,
16-bit DMA, multifunction slots, PCIe switches, every built-in device's settings,
``firmware_log: false`` and command, interrupt-line, port and memory-BAR steps; a third
(``seed:3``, fuzz3) the whole catalog at one rate with drives, several ISA cards of one model,
pci-bridges with bridge-window steps, two displays, the PIC HAL on q35, ReactOS's
IoReportResourceUsage, memory and port-read steps and ``drivers:`` lists; a fourth
(``seed:4``, fuzz4) the firmware's end at SeaBIOS's last log line: ``firmware_log: false``
(the reboot's end), files checked at both ends, cards on the end path's, the RTC's and
fw_cfg's ports, memory BARs moved into the BIOS window, the firmware run twice in one QEMU
(``--coverage`` prints what the generator writes, without QEMU); a fifth (``seed:5``, fuzz5)
stoppers (an isa-debug-exit, a pvpanic) on the ports each moment of a run writes (SeaBIOS's
first log byte, its end path, the HAL's start-up, another device's probe, a step), files run
again with the harness slowed, and PnP solutions applied and run again.  Each file runs
through the main job (:func:`harness.job.run_job`) twice and is checked against
invariants the live layout decides, never the job's own verdict:

``error``        no exception and no error outcome: what QEMU refuses, validation refuses
``determinism``  two runs give the same report and the same registry
``overlap``      every overlap of two parties' decodes the layout shows (a shadowed range;
                 an ISA IRQ line with several drivers, the PCI router's wired-OR of INTx
                 counting as one; a DMA channel registered by several devices) is in the
                 report as a collision or an error-log conflict between the same parties,
                 so a clean verdict means there is none
``claimant``     every decoder of the flat views has a claimant line
``claim``        no claim the report calls ok lies outside what its device decodes
``decode``       a device whose claimant line says claimed has every range it decodes in
                 the flat views inside a claim of its claimant (the claim invariant's
                 other way round: fuzz3)
``ends``         (``# ends: both``) the job with ``firmware_log`` flipped gives the same
                 verdict, events (kind, devices), findings, collisions, claims, claimants
                 and error log: the firmware's end (its log's line or its reboot) changes
                 nothing the drivers meet, but what only the log shows (fuzz4)
``rerun``        (``# rerun: true``) the firmware run again in the same QEMU ends as the
                 first did and leaves the same layout (fuzz4)
``timing``       (``# timing: attach|qmp|qtest``) the job again with the harness held back
                 there (:func:`slowed`: 0.5 s before it attaches to the running QEMU, 20 ms
                 before each QMP command or qtest exchange) gives the same verdict, events
                 (kind, devices, cause, stopped), findings, collisions, claims, claimants and
                 error log: where QEMU's end falls against the harness's I/O changes nothing
``pnp``          (``# pnp: true``, the file's own steps dropped: ``harness pnp`` boots
                 without them) where the search finds a conflict-free assignment and
                 ``--apply``'s reconciliation proves it on the live machine, that solution
                 written into a copy of the file (ISA settings set, moved BARs as
                 ``move_bar`` steps: :func:`solution_file`) and run through the job shows no
                 overlap in its layout of a device the solution placed, and every device
                 the solution did not move decodes in the copy's layout what it decoded in
                 the file's (ranges whole, ISA lines and channels, BARs).  A run with a
                 firmware event has nothing to solve (fuzz5)

    python tests/livefuzz.py --count 300 --seed 1 -j 2 --out runs/livefuzz

prints a summary per invariant and writes each failing machine file (shrunk: devices,
steps and builtin settings dropped while the same invariant still fails) with what
failed to ``--out``/failures/.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from harness.builtin import BUILTIN_DEVICES
from harness.config import DRIVE_CONTROLLERS, FIRMWARE_LOG_PORT, VGA_DRIVER, VGA_WINDOW, MachineSpec, parse_machine_text
from harness.devices import BOARD_LABEL_PREFIX, DeviceModel, board_device_of, board_model, load_catalog
from harness.errors import ConfigError
from harness.names import RESERVED_ID_PREFIX
from harness.drivers import DRIVERS
from harness.drivers.legacy import VGA_ACCESS_RANGES
from harness.qemu.layout import ISA_IRQ_PROPERTIES, Layout
from harness.qemu.lifeline import die_with_parent
from harness.verify import ACPI_SCI, CASCADE

MACHINE_TYPES = ("isapc", "pc", "q35")
Q35 = "q35"
INVARIANTS = ("error", "determinism", "overlap", "claimant", "claim", "decode", "ends", "rerun", "timing", "pnp",
              "checker")
#: The ACPI SCI's line on pc and q35 (qemu-facts.md §1: "The SCI is IRQ9"; the PIIX4 PM
#: and the ICH9 LPC drive GSI 9 directly, not through the PCI interrupt router).
SCI_IRQ = {"pc": 9, "q35": 9}
#: The master 8259's input the slave 8259 cascades into.
CASCADE_IRQ = 2
PCI_COMMAND_INTX_DISABLE = 0x400
#: Report fields that differ between two runs of one machine by design.
_VOLATILE = ("timings", "out_dir", "picture")
BOARD = "board"
#: Seconds a failing machine's runs may have taken for shrinking it to be worth its reruns.
SHRINK_WHEN_UNDER = 20
#: Collisions on a line the board holds by design: their report line names the device alone.
BOARD_LINE_KINDS = (ACPI_SCI, CASCADE)
#: QEMU's name of system RAM's regions (the copies below 1 MiB included, whatever PAM makes them).
SYSTEM_RAM = "pc.ram"


# ---------------------------------------------------------------------------- generator
@dataclass
class _Hot:
    """What the board and the devices so far use: where a new setting collides."""

    ports: list[tuple[int, int]] = field(default_factory=list)
    memory: list[tuple[int, int]] = field(default_factory=list)
    irqs: list[int] = field(default_factory=list)
    dmas: list[int] = field(default_factory=list)

    def add(self, resources: Iterable[tuple[str, int, int]]) -> None:
        for kind, lo, hi in resources:
            if kind == "port":
                self.ports.append((lo, hi))
            elif kind == "memory":
                self.memory.append((lo, hi))
            elif kind == "irq":
                self.irqs.append(lo)
            elif kind == "dma":
                self.dmas.append(lo)


def _usable(model: DeviceModel, machine: str) -> bool:
    # drives need a controller's place; the rest of the catalog stands alone
    return machine in model.machines and model.bus not in DRIVE_CONTROLLERS


def _near_port(rng: random.Random, model: DeviceModel | None, prop: str, hot: _Hot) -> int:
    """A base for port property ``prop`` that puts one of its decoded runs on a hot range."""
    decodes = [d for d in (model.ports if model else ()) if d.base == prop] or [None]
    decode = rng.choice(decodes)
    offset, length = (decode.offset, decode.length) if decode else (0, 1)
    lo, hi = rng.choice(hot.ports)
    base = rng.randint(lo - offset - length + 1, hi - offset)
    if rng.random() < 0.5:
        base &= ~3
    return min(max(base, 0), 0xFFFF)


def _setting(rng: random.Random, model: DeviceModel | None, prop: Any, hot: _Hot) -> int | None:
    """A value for setting ``prop``: None (QEMU's default), a jumper choice, or a hot value."""
    roll = rng.random()
    if roll < 0.25:
        return None
    if roll < 0.5 and prop.choices:
        return rng.choice(prop.choices)
    if prop.kind == "port" and hot.ports:
        return _near_port(rng, model, prop.name, hot)
    if prop.kind == "irq":
        return rng.choice(hot.irqs) if hot.irqs and rng.random() < 0.8 else rng.randint(1, 15)
    if prop.kind == "dma":
        return rng.choice(hot.dmas) if hot.dmas and rng.random() < 0.8 else rng.choice((0, 1, 2, 3, 5, 6, 7))
    return rng.choice(prop.choices) if prop.choices else None


def _bar_step(rng: random.Random, dev: dict[str, Any], model: DeviceModel, hot: _Hot) -> dict[str, Any] | None:
    bars = model.pci.bars if model.pci else ()
    if not bars:
        return None
    bar = rng.choice(bars)
    places = hot.ports if bar.kind == "io" else hot.memory
    if not places:
        return None
    lo, _hi = rng.choice(places)
    step = {"move_bar": dev["id"], "bar": bar.index, "address": lo & ~(bar.size - 1)}
    if rng.random() < 0.3:
        step["phase"] = "post-drivers"
    return step


def generate(seed: int | str, catalog: Any = None) -> dict[str, Any]:
    """One random machine file (a dict) from ``seed``; the same seed gives the same file."""
    rng = random.Random(str(seed))
    catalog = catalog or load_catalog()
    machine = rng.choice(MACHINE_TYPES)
    hot = _Hot()
    board = board_model(machine)
    for device in board:
        hot.add(device.decoded_resources())
    if machine in SCI_IRQ:
        hot.irqs.append(SCI_IRQ[machine])
    models = sorted((m for m in catalog.values() if _usable(m, machine)), key=lambda m: m.name)
    isa = [m for m in models if m.bus == "isa"]
    pci = [m for m in models if m.bus != "isa" and not m.bridge]
    bridges = [m for m in models if m.bridge]
    doc: dict[str, Any] = {"name": f"fuzz-{seed}".replace(":", "-"), "machine": machine, "devices": []}
    devices: list[dict[str, Any]] = doc["devices"]
    bridge_ids: list[str] = []
    for n in range(rng.randint(1, 5)):
        roll = rng.random()
        pool = isa if (roll < 0.55 or not pci) else bridges if (roll < 0.7 and bridges and n < 3) else pci
        model = rng.choice(pool)
        dev: dict[str, Any] = {"model": model.name, "id": f"d{n}"}
        for prop in model.settings:
            value = _setting(rng, model, prop, hot)
            if value is not None:
                dev[prop.name] = value
        if model.bus != "isa" and bridge_ids and not model.bridge and rng.random() < 0.6:
            parent = rng.choice(bridge_ids)
            dev["bus"] = parent
            parent_model = catalog[next(d["model"] for d in devices if d["id"] == parent)]
            dev["addr"] = 0 if parent_model.bridge == "pcie-root-port" else rng.randint(1, 6)
        elif model.bus != "isa" and rng.random() < 0.3:
            dev["addr"] = rng.randint(2, 0x1E)   # else QEMU's lowest free slot
        if model.bridge:
            bridge_ids.append(dev["id"])
        if rng.random() < 0.05 and not model.bridge:
            dev["driver"] = "none"
        devices.append(dev)
        settings = {**model.defaults_for(0), **{k: v for k, v in dev.items() if k in model.properties}}
        hot.add(model.decoded_resources(settings))
    builtins = [name for name, b in BUILTIN_DEVICES.items() if machine in b.machines]
    if builtins and rng.random() < 0.2:
        name = rng.choice(builtins)
        spec = BUILTIN_DEVICES[name]
        values = {p.name: _setting(rng, None, p, hot) for p in spec.properties.values()}
        doc["builtin"] = {name: {k: v for k, v in values.items() if v is not None}}
    steps = [s for s in (_bar_step(rng, d, catalog[d["model"]], hot) for d in devices
                         if rng.random() < 0.35) if s is not None]
    if steps:
        doc["after_firmware"] = steps
    # the second round's classes draw from their own stream: the first round's files stay as they were
    _second_round(random.Random(f"{seed}:2"), doc, catalog, hot, models)
    # the third round's likewise: the first two rounds' files stay as they were
    _third_round(random.Random(f"{seed}:3"), doc, catalog, hot)
    # and the fourth's: the first three rounds' files stay as they were
    _fourth_round(random.Random(f"{seed}:4"), doc, catalog, hot)
    # and the fifth's: the first four rounds' files stay as they were
    _fifth_round(random.Random(f"{seed}:5"), doc, catalog)
    return doc


# ---------------------------------------------------------------------------- second round
#: Memory a moved memory BAR may land on besides the hot ranges: RAM below 1 MiB (the IVT,
#: the EBDA's neighbourhood), the VGA window, the option-ROM and BIOS areas, and where
#: SeaBIOS places BARs (so a BAR lands on another device's BAR) and the VGA's framebuffer.
LOW_MEMORY_TARGETS = (0x0, 0x80000, 0x90000, 0xA0000, 0xB8000, 0xC0000, 0xE0000, 0xF0000)
BAR_AREA_TARGETS = (0xFC000000, 0xFD000000, 0xFE000000, 0xFEB80000, 0xFEBC0000, 0xFEBF0000)
#: PCI command values a step writes: decode off, I/O or memory only, bus master off, INTx off.
COMMAND_VALUES = (0x0, 0x1, 0x2, 0x3, 0x5, 0x6, 0x7 | PCI_COMMAND_INTX_DISABLE, 0x3 | PCI_COMMAND_INTX_DISABLE)
PCI_INTERRUPT_LINE = 0x3C
#: Where a 10-bit ISA decoder's ports repeat: every 0x400 (the alias a 16-bit QEMU does not decode).
ISA_ALIAS_STRIDE = 0x400


def _hal_choice(rng: random.Random, machine: str) -> str:
    """The HAL the job runs: ``auto`` (APIC on q35, PIC elsewhere), or the APIC HAL on pc."""
    return "apic" if machine == "pc" and rng.random() < 0.35 else "auto"


def _pci_ids(doc: dict[str, Any], catalog: Any) -> list[str]:
    return [d["id"] for d in doc["devices"] if catalog[d["model"]].pci is not None and not catalog[d["model"]].bridge]


def _edge_port(rng: random.Random, hot: _Hot) -> int:
    """A port at the edge of ISA decode: a hot port's 10-bit alias (+0x400·k), the top of
    the 10-bit space (0x3fc-0x400) or of the 16-bit one."""
    roll = rng.random()
    if roll < 0.5 and hot.ports:
        lo, _hi = rng.choice(hot.ports)
        return (lo % ISA_ALIAS_STRIDE + ISA_ALIAS_STRIDE * rng.randint(1, 63)) & 0xFFFF
    if roll < 0.8:
        return rng.randint(0x3F8, 0x401)
    return rng.randint(0xFFF0, 0xFFFF)


def _second_round(rng: random.Random, doc: dict[str, Any], catalog: Any, hot: _Hot,
                  models: list[DeviceModel]) -> None:
    """What the first round's generator never or rarely writes (the fuzz2 round): the APIC
    HAL on pc, ISA ports at the decode edges, IRQ 2 beside 9, 16-bit DMA channels,
    multifunction slots, PCIe switches on q35, several built-in devices' settings,
    ``firmware_log: false`` and PCI command, interrupt-line, port and memory-BAR steps."""
    machine = doc["machine"]
    devices: list[dict[str, Any]] = doc["devices"]
    hal = _hal_choice(rng, machine)
    if hal != "auto":
        doc[HAL_KEY] = hal
    isa_ports = [(d, p.name) for d in devices for p in catalog[d["model"]].settings
                 if catalog[d["model"]].bus == "isa" and p.kind == "port"]
    if isa_ports and rng.random() < 0.25:
        dev, prop = rng.choice(isa_ports)
        dev[prop] = _edge_port(rng, hot)
    isa_irqs = [(d, p.name) for d in devices for p in catalog[d["model"]].settings
                if catalog[d["model"]].bus == "isa" and p.kind == "irq"]
    if isa_irqs and rng.random() < 0.2:   # IRQ 2 is the slave's 9 on the bus: one line
        for (dev, prop), irq in zip(rng.sample(isa_irqs, min(2, len(isa_irqs))), rng.sample((2, 9), 2)):
            dev[prop] = irq
    by_name = {m.name: m for m in models}
    if rng.random() < 0.12 and "sb16" in by_name:
        channel = rng.choice((5, 6, 7))
        devices.append({"model": "sb16", "id": "dma16", "dma16": channel, **({"dma": 0} if rng.random() < 0.5 else {})})
        if "gus" in by_name and rng.random() < 0.6:
            devices.append({"model": "gus", "id": "gus16", "dma": rng.choice((channel, 5, 6, 7))})
    pci = [m for m in models if m.bus != "isa" and not m.bridge and m.pci is not None]
    if pci and rng.random() < 0.15:
        slot = rng.randint(0x10, 0x1E)
        functions = sorted(rng.sample(range(1, 8), rng.randint(1, 2)))
        devices.append({"model": rng.choice(pci).name, "id": "mf0", "addr": f"{slot:x}.0", "multifunction": True})
        devices += [{"model": rng.choice(pci).name, "id": f"mf{f}", "addr": f"{slot:x}.{f}"} for f in functions]
    if machine == "q35" and pci and rng.random() < 0.25:
        devices += [{"model": "pcie-root-port", "id": "swrp"},
                    {"model": "x3130-upstream", "id": "swup", "bus": "swrp", "addr": 0}]
        for n in range(rng.randint(1, 2)):
            devices += [{"model": "xio3130-downstream", "id": f"swdn{n}", "bus": "swup", "addr": n},
                        {"model": rng.choice(pci).name, "id": f"swd{n}", "bus": f"swdn{n}", "addr": 0}]
    builtins = [name for name, b in BUILTIN_DEVICES.items() if machine in b.machines]
    if builtins and rng.random() < 0.15:
        every = {name: {p.name: v for p in BUILTIN_DEVICES[name].properties.values()
                        if (v := _setting(rng, None, p, hot)) is not None} for name in builtins}
        if any(every.values()):
            doc["builtin"] = {name: values for name, values in every.items() if values}
    if rng.random() < 0.08:
        doc["firmware_log"] = False
        if isa_ports:   # the log port is free then: a device may take it
            dev, prop = rng.choice(isa_ports)
            dev[prop] = FIRMWARE_LOG_PORT
    steps = doc.get("after_firmware", [])
    ids = _pci_ids(doc, catalog) if machine != "isapc" else []
    for target in ids:
        roll = rng.random()
        if roll < 0.12:
            steps.append({"set_command": target, "value": rng.choice(COMMAND_VALUES)})
        elif roll < 0.2:
            steps.append({"pci_write": target, "offset": PCI_INTERRUPT_LINE, "size": 1,
                          "value": rng.choice((2, 9, *(hot.irqs or [5])))})
        elif roll < 0.35:
            dev = next(d for d in devices if d["id"] == target)
            bars = [b for b in catalog[dev["model"]].pci.bars if b.kind != "io"]
            if bars:
                bar = rng.choice(bars)
                address = rng.choice(LOW_MEMORY_TARGETS + BAR_AREA_TARGETS) & ~(bar.size - 1)
                steps.append({"move_bar": target, "bar": bar.index, "address": address})
        if steps and steps[-1].get("phase") is None and rng.random() < 0.3:
            steps[-1]["phase"] = "post-drivers"
    if hot.ports and rng.random() < 0.1:
        mine = [(lo, hi) for d in devices for kind, lo, hi in
                catalog[d["model"]].decoded_resources({**catalog[d["model"]].defaults_for(0),
                                                       **{k: v for k, v in d.items() if k in catalog[d["model"]].properties}})
                if kind == "port"]
        if mine:
            lo, hi = rng.choice(mine)
            steps.append({"port_write": rng.randint(lo, hi), "value": rng.randint(0, 0xFF)})
    if steps:
        doc["after_firmware"] = steps


# ---------------------------------------------------------------------------- third round
#: A PCI-PCI bridge's window registers (PCI-to-PCI Bridge Architecture 1.2, 3.2.5.6-3.2.5.9):
#: the I/O base and limit (a byte each, address bits 15:12), the memory and the
#: prefetchable base and limit (16 bits each, address bits 31:20).
BRIDGE_IO_WINDOW = 0x1C
BRIDGE_MEMORY_WINDOW = 0x20
BRIDGE_PREFETCH_WINDOW = 0x24
IO_WINDOW_GRAIN = 0x1000
MEMORY_WINDOW_GRAIN = 0x100000
#: Memory no board device, no RAM (128 MiB by default) and no BAR SeaBIOS places decodes on
#: pc and q35 (SeaBIOS puts BARs at 0xc0000000 and above; q35's MMCONFIG is 0xb0000000): a
#: ``memory_write`` there is dropped by the bus, and a memory BAR a step moves there first
#: is the only decoder of it.
UNUSED_MEMORY = 0x20000000
#: PCI classes whose devices SeaBIOS may have left bus-mastering (disks, USB: it boots from
#: them): a write into their registers could start DMA into the probe guest's memory.
BUS_MASTER_CLASSES = (0x01, 0x0C)
#: How many legacy cards an isapc at its limits gets on top of the first rounds'.
MANY_LEGACY_CARDS = (5, 9)
#: Cap on a file's devices (QEMU and the board take more; a machine of 20 runs slowly).
MAX_DEVICES = 20


def _settings_of(dev: dict[str, Any], model: DeviceModel) -> dict[str, Any]:
    return {**model.defaults_for(0), **{k: v for k, v in dev.items() if k in model.properties}}


def _one_more_fits(model: DeviceModel, devices: list[dict[str, Any]], catalog: Any) -> bool:
    """Whether QEMU takes another ``model`` beside ``devices`` (a model of which QEMU takes
    one per machine, a global VGA, a pvpanic: validation refuses a second)."""
    return model.one_per_machine is None or all(
        catalog[d["model"]].one_per_machine != model.one_per_machine for d in devices if d["model"] in catalog)


def _new_id(devices: list[dict[str, Any]], prefix: str) -> str:
    taken = {d["id"] for d in devices}
    return next(f"{prefix}{n}" for n in range(len(devices) + 1) if f"{prefix}{n}" not in taken)


def _card(rng: random.Random, model: DeviceModel, dev_id: str, hot: _Hot) -> dict[str, Any]:
    """A device of ``model`` with random settings (as the first round draws them), its
    resources added to ``hot``."""
    dev: dict[str, Any] = {"model": model.name, "id": dev_id}
    for prop in model.settings:
        value = _setting(rng, model, prop, hot)
        if value is not None:
            dev[prop.name] = value
    hot.add(model.decoded_resources(_settings_of(dev, model)))
    return dev


def _drive(rng: random.Random, doc: dict[str, Any], model: DeviceModel) -> dict[str, Any] | None:
    """A floppy or IDE drive on a controller of the file (an isa-fdc, an isa-ide) or on the
    board's own (pc and isapc's FDC, an IDE channel); None where there is none."""
    devices, machine = doc["devices"], doc["machine"]
    controller = DRIVE_CONTROLLERS[model.bus]
    mine = [d["id"] for d in devices if d["model"] == controller]
    dev: dict[str, Any] = {"model": model.name, "id": _new_id(devices, "drv")}
    if mine and rng.random() < 0.6:
        dev["controller"] = rng.choice(mine)
    elif model.bus == "floppy" and machine == "q35":
        return None   # q35 has no floppy controller of its own
    elif model.bus == "ide":
        dev["channel"] = rng.randint(0, 1)
    return dev


def _bridge_window_step(rng: random.Random, bridge: str, hot: _Hot) -> dict[str, Any]:
    """A ``pci_write`` of one of ``bridge``'s windows: onto a hot range (a board device's
    ports, the VGA window), onto where SeaBIOS places BARs, or closed (base above limit)."""
    register = rng.choice((BRIDGE_IO_WINDOW, BRIDGE_MEMORY_WINDOW, BRIDGE_PREFETCH_WINDOW))
    if register == BRIDGE_IO_WINDOW:
        lo = rng.choice(hot.ports)[0] if hot.ports and rng.random() < 0.7 else rng.choice((0x1000, 0xC000, 0xF000))
        base = lo & ~(IO_WINDOW_GRAIN - 1) & 0xFFFF
        limit = base + IO_WINDOW_GRAIN * rng.randint(0, 1) if rng.random() < 0.9 else base - IO_WINDOW_GRAIN
        if limit < 0 or limit > 0xFFFF:
            limit = base
        value = ((limit >> 8) & 0xF0) << 8 | (base >> 8) & 0xF0
        return {"pci_write": bridge, "offset": register, "size": 2, "value": value}
    targets = [lo for lo, _hi in hot.memory if lo >= MEMORY_WINDOW_GRAIN] + list(BAR_AREA_TARGETS) + [VGA_WINDOW]
    base = rng.choice(targets) & ~(MEMORY_WINDOW_GRAIN - 1)
    size = MEMORY_WINDOW_GRAIN * rng.choice((1, 2, 16))
    limit = min(base + size - 1, 0xFFFFFFFF) if rng.random() < 0.9 else base - MEMORY_WINDOW_GRAIN
    limit = max(limit, 0)
    value = ((limit >> 16) & 0xFFF0) << 16 | (base >> 16) & 0xFFF0
    return {"pci_write": bridge, "offset": register, "size": 4, "value": value}


def _bridge_tree(rng: random.Random, doc: dict[str, Any], catalog: Any, hot: _Hot,
                 pci: list[DeviceModel]) -> list[dict[str, Any]]:
    """A conventional PCI-PCI bridge (pci-bridge) on pc's root bus or behind a q35 root
    port, one to three devices behind it, and steps that move its windows and the BARs
    behind it; the steps are returned."""
    devices = doc["devices"]
    steps: list[dict[str, Any]] = []
    parent: dict[str, Any] = {}
    if doc["machine"] == "q35":
        port = _new_id(devices, "rp")
        devices.append({"model": "pcie-root-port", "id": port})
        parent = {"bus": port, "addr": 0}
    bridge = _new_id(devices, "br")
    devices.append({"model": "pci-bridge", "id": bridge, **parent})
    behind = []
    for slot in rng.sample(range(1, 8), rng.randint(1, 3)):
        model = rng.choice(pci)
        if not _one_more_fits(model, devices, catalog):
            continue
        dev = {"model": model.name, "id": _new_id(devices, "bd"), "bus": bridge, "addr": slot}
        devices.append(dev)
        behind.append((dev, model))
    if rng.random() < 0.6:
        steps.append(_bridge_window_step(rng, bridge, hot))
    if rng.random() < 0.2:
        steps.append({"set_command": bridge, "value": rng.choice(COMMAND_VALUES)})
    for dev, model in behind:
        if rng.random() < 0.3 and (step := _bar_step(rng, dev, model, hot)) is not None:
            steps.append(step)
    return steps


def _memory_steps(rng: random.Random, doc: dict[str, Any], catalog: Any) -> list[dict[str, Any]]:
    """``memory_write`` steps (the APIC HAL's guest agent writes them) only where the write
    cannot reset or stop the probe guest, whose RAM, local APIC, I/O APIC and HPET the
    agent runs on: unused space (:data:`UNUSED_MEMORY`: the bus drops the write), or a
    device's own memory BAR that a step first moves there (no disk or USB controller, which
    may be bus-mastering: a register write could start DMA into the guest); a
    ``memory_read`` beside them, and a ``port_read`` of a port a device decodes."""
    steps: list[dict[str, Any]] = []
    movable = [(d, b) for d in doc["devices"] for b in (catalog[d["model"]].pci.bars if catalog[d["model"]].pci else ())
               if b.kind != "io" and not catalog[d["model"]].bridge and 4 <= b.size <= 0x1000000
               and catalog[d["model"]].pci.class_code >> 8 not in BUS_MASTER_CLASSES]
    if movable and rng.random() < 0.6:
        dev, bar = rng.choice(movable)
        steps.append({"move_bar": dev["id"], "bar": bar.index, "address": UNUSED_MEMORY})
        steps.append({"memory_write": UNUSED_MEMORY + 4 * rng.randint(0, min(bar.size, 0x100) // 4 - 1),
                      "size": 4, "value": 0})
    else:
        steps.append({"memory_write": UNUSED_MEMORY + 4 * rng.randint(0, 0x3FF), "size": rng.choice((1, 2, 4)),
                      "value": rng.randint(0, 0xFF)})
    steps.append({"memory_read": rng.choice((UNUSED_MEMORY, VGA_WINDOW, *BAR_AREA_TARGETS)), "size": 4})
    return steps


def _drivers_list(rng: random.Random, doc: dict[str, Any], catalog: Any) -> list[Any] | None:
    """A ``drivers:`` list other than the default: the drivers in another order (so a
    shadowed device's driver may claim first), some listed by name alone, a sample driver
    with ``claim: block`` (the card's whole jumper block), ``override_conflict``; None
    where the file does not parse or has no driver."""
    try:
        spec = parse_machine_text(machine_text(doc), "drivers.yaml", catalog)
    except ConfigError:
        return None
    names = [d.name for d in spec.drivers]
    if not names:
        return None
    rng.shuffle(names)
    out: list[Any] = []
    for name in names:
        item: dict[str, Any] = {"name": name}
        if name in catalog.nt_drivers and rng.random() < 0.4:
            item["claim"] = "block"
        if rng.random() < 0.15:
            item["override_conflict"] = True
        out.append(item if len(item) > 1 or rng.random() < 0.5 else name)
    return out


def _third_round(rng: random.Random, doc: dict[str, Any], catalog: Any, hot: _Hot) -> None:
    """What the first two rounds never or rarely write (the fuzz3 round): every catalog
    model at one rate (drives on the board's controllers or the file's included),
    several ISA cards of one model, an isapc with many legacy cards, conventional
    pci-bridges on pc and behind q35 root ports with devices behind them and their windows
    and BARs moved, two displays with legacy faces, the PIC HAL on q35, ``memory_write``,
    ``memory_read`` and ``port_read`` steps, ``drivers:`` lists (order, ``claim:
    block``, ``override_conflict``), and jobs with ReactOS's IoReportResourceUsage."""
    machine = doc["machine"]
    devices: list[dict[str, Any]] = doc["devices"]
    usable = sorted((m for m in catalog.values() if machine in m.machines), key=lambda m: m.name)
    pci = [m for m in usable if m.pci is not None and not m.bridge and not m.root_bus_only]
    isa = [m for m in usable if m.bus == "isa"]
    steps: list[dict[str, Any]] = []

    def add(dev: dict[str, Any]) -> None:
        if len(devices) < MAX_DEVICES:
            devices.append(dev)
    if rng.random() < 0.3:   # the whole catalog at one rate: a rare model is as likely as sb16
        model = rng.choice(usable)
        if model.bus in DRIVE_CONTROLLERS:
            drive = _drive(rng, doc, model)
            if drive is not None:
                add(drive)
        elif not model.bridge and _one_more_fits(model, devices, catalog):
            add(_card(rng, model, _new_id(devices, "any"), hot))
    drives = [m for m in usable if m.bus in DRIVE_CONTROLLERS]
    if drives and rng.random() < 0.06 and (drive := _drive(rng, doc, rng.choice(drives))) is not None:
        add(drive)   # drives again: three models of the catalog's 132 are drives
    several = [m for m in isa if m.one_per_machine is None]
    if rng.random() < 0.12:
        model = rng.choice(several)
        for _ in range(rng.randint(2, 4)):
            add(_card(rng, model, _new_id(devices, "same"), hot))
    if machine == "isapc" and rng.random() < 0.25:
        for _ in range(rng.randint(*MANY_LEGACY_CARDS)):
            model = rng.choice(isa)
            if _one_more_fits(model, devices, catalog):
                add(_card(rng, model, _new_id(devices, "leg"), hot))
    if machine != "isapc" and pci and rng.random() < 0.2 and len(devices) < MAX_DEVICES - 5:
        steps += _bridge_tree(rng, doc, catalog, hot, pci)
    displays = [m for m in usable if m.fixed and any(f.start == VGA_WINDOW for f in m.fixed)]
    if len(displays) > 1 and rng.random() < 0.08:
        for model in rng.sample(displays, 2):
            if _one_more_fits(model, devices, catalog):
                add(_card(rng, model, _new_id(devices, "vga"), hot))
    if machine == "q35" and rng.random() < 0.2:
        doc[HAL_KEY] = "pic"
    apic = doc.get(HAL_KEY) == "apic" or (machine == "q35" and HAL_KEY not in doc)
    if apic and rng.random() < 0.25:
        steps += _memory_steps(rng, doc, catalog)
    if rng.random() < 0.1:
        mine = [(lo, hi) for d in devices if d["model"] in catalog
                for kind, lo, hi in catalog[d["model"]].decoded_resources(_settings_of(d, catalog[d["model"]]))
                if kind == "port"]
        if mine:
            lo, hi = rng.choice(mine)
            steps.append({"port_read": rng.randint(lo, hi), "expect": rng.randint(0, 0xFF), "mask": 0xFF})
    if steps:
        doc["after_firmware"] = doc.get("after_firmware", []) + steps
    if rng.random() < 0.15 and (drivers := _drivers_list(rng, doc, catalog)) is not None:
        doc["drivers"] = drivers
    if rng.random() < 0.08:   # IoReportResourceUsage as ReactOS has it: it files nothing
        doc[REACTOS_KEY] = True


# ---------------------------------------------------------------------------- fourth round
#: The ports SeaBIOS's way to its end and its reboot use, and the RTC's: the CMOS index
#: and data (0x70, 0x71: the shutdown status its reset path reads), the reset control
#: register (0xcf9), port 92's fast reset (0x92), the 8042's command port (0x64: its
#: reset pulse) and fw_cfg (0x510-0x511, its DMA port 0x514-0x51b: the boot-fail wait).
END_PATH_PORTS = (0x70, 0x71, 0xCF9, 0x92, 0x64, 0x510, 0x511, 0x514, 0x518)
#: The option-ROM and BIOS window: SeaBIOS's shadow RAM (PAM) on pc and q35, read-only
#: after its end; ROM and RAM without PAM on isapc.
BIOS_WINDOW = (0xC0000, 0xFFFFF)
#: Where a moved memory BAR lands in that window: option-ROM slots, the E and F segments.
BIOS_WINDOW_TARGETS = (0xC0000, 0xC8000, 0xCC000, 0xD0000, 0xDC000, 0xE0000, 0xE8000, 0xF0000, 0xF8000, 0xFF000)
#: A BAR up to this size fits the window at a target above (larger ones align to below it).
BIOS_WINDOW_BAR_MOST = 0x10000


def _over_port(rng: random.Random, model: DeviceModel, prop: str, target: int) -> int:
    """A base for ``prop`` that puts one of ``model``'s runs there over port ``target``."""
    decodes = [d for d in model.ports if d.base == prop] or [None]
    decode = rng.choice(decodes)
    offset, length = (decode.offset, decode.length) if decode else (0, 1)
    return min(max(target - offset - rng.randint(0, length - 1), 0), 0xFFFF)


def _fourth_round(rng: random.Random, doc: dict[str, Any], catalog: Any, hot: _Hot) -> None:
    """What three rounds never wrote once the firmware's end moved to SeaBIOS's last log
    line (the fuzz4 round): ``firmware_log: false`` machines (the reboot is their end) at
    a useful rate, and files checked at both ends (``# ends: both``: the job again with
    ``firmware_log`` flipped); cards on the ports SeaBIOS's end path and the RTC use and
    on fw_cfg (:data:`END_PATH_PORTS`); memory BARs moved into the option-ROM/BIOS window
    (PAM's read-only RAM after the end: :data:`BIOS_WINDOW`) with reads there; files whose
    firmware runs again in the same QEMU (``# rerun: true``, as a reused machine's reset
    does); more q35 machines under the PIC HAL."""
    machine = doc["machine"]
    devices: list[dict[str, Any]] = doc["devices"]
    usable = sorted((m for m in catalog.values() if machine in m.machines), key=lambda m: m.name)
    isa = [m for m in usable if m.bus == "isa" and any(p.kind == "port" for p in m.settings)]
    steps: list[dict[str, Any]] = []
    if isa and rng.random() < 0.3 and len(devices) < MAX_DEVICES:
        model = rng.choice(isa)
        if _one_more_fits(model, devices, catalog):
            dev = _card(rng, model, _new_id(devices, "end"), hot)
            prop = rng.choice([p.name for p in model.settings if p.kind == "port"])
            dev[prop] = _over_port(rng, model, prop, rng.choice(END_PATH_PORTS))
            devices.append(dev)
    if machine != "isapc" and rng.random() < 0.3:
        movable = [(d, b) for d in devices if d["model"] in catalog and catalog[d["model"]].pci is not None
                   and not catalog[d["model"]].bridge
                   for b in catalog[d["model"]].pci.bars if b.kind != "io" and b.size <= BIOS_WINDOW_BAR_MOST]
        if movable:
            dev, bar = rng.choice(movable)
            address = rng.choice(BIOS_WINDOW_TARGETS) & ~(bar.size - 1)
            step: dict[str, Any] = {"move_bar": dev["id"], "bar": bar.index, "address": address}
            if rng.random() < 0.3:
                step["phase"] = "post-drivers"
            steps += [step, {"memory_read": address, "size": 4, **({"phase": "post-drivers"} if "phase" in step else {})}]
    if rng.random() < 0.15:
        steps.append({"memory_read": rng.randrange(BIOS_WINDOW[0], BIOS_WINDOW[1], 4), "size": 4})
    if steps:
        doc["after_firmware"] = doc.get("after_firmware", []) + steps
    agent_steps = any("memory_write" in step for step in doc.get("after_firmware", []))
    if machine == "q35" and HAL_KEY not in doc and not agent_steps and rng.random() < 0.15:
        doc[HAL_KEY] = "pic"   # (memory writes need the APIC HAL's guest agent)
    if rng.random() < 0.15:
        doc["firmware_log"] = False
    if rng.random() < 0.2:
        doc[ENDS_KEY] = "both"
    if rng.random() < 0.15:
        doc[RERUN_KEY] = True


# ---------------------------------------------------------------------------- fifth round
#: Devices that stop the run when written: an isa-debug-exit ends QEMU at any write, a
#: pvpanic pauses the guest for good at a write with bit 0 set.
STOPPERS = ("isa-debug-exit", "pvpanic")
#: The ports each moment of a run writes, where a stopper ends it then: SeaBIOS's first
#: log byte (0x402, with ``firmware_log: false``: the harness's debug console holds it
#: otherwise), its end path and reboot (:data:`END_PATH_PORTS`), the HAL's start-up (the
#: 8259s' command and mask ports, the ELCR, the PIT, port 0x61 and the PCI configuration
#: ports; its qtest batches write the 8259s' initialization words in one go).  ``driver``
#: (a port another device of the file decodes: its driver's probe writes there) and
#: ``step`` (a ``port_write`` step onto the stopper's own port, after the firmware or after
#: the drivers) are drawn from the file itself.
PHASE_PORTS = {"log": (FIRMWARE_LOG_PORT,), "end": END_PATH_PORTS,
               "hal": (0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x40, 0x43, 0x61, 0xCF8, 0xCFC)}
STOP_PHASES = (*PHASE_PORTS, "driver", "step")
#: Where the timing invariant slows the harness (:func:`slowed`): the attach to a QEMU
#: already running its firmware (as bbf85a1's test does), every QMP command, every qtest
#: exchange (a batch of posted writes included).
SLOW_POINTS = ("attach", "qmp", "qtest")


def stopper_phase(spec: MachineSpec) -> str | None:
    """The moment of the run a stopper of ``spec`` sits on (:data:`STOP_PHASES`), if any."""
    stoppers = [d for d in spec.devices if d.model.name in STOPPERS]
    others = [(lo, hi) for d in spec.devices if d.model.name not in STOPPERS
              for kind, lo, hi in d.decoded_resources() if kind == "port"]
    for dev in stoppers:
        ports = [(lo, hi) for kind, lo, hi in dev.decoded_resources() if kind == "port"]
        if any(a.kind == "port_write" and any(lo <= a.port <= hi for lo, hi in ports) for a in spec.after_firmware):
            return "step"
        for phase, targets in PHASE_PORTS.items():
            if any(lo <= t <= hi for lo, hi in ports for t in targets):
                return phase
        if any(a <= hi and lo <= b for lo, hi in ports for a, b in others):
            return "driver"
    return None


def _fifth_round(rng: random.Random, doc: dict[str, Any], catalog: Any) -> None:
    """What four rounds never wrote or never checked (the fuzz5 round): a stopper (an
    isa-debug-exit or a pvpanic) on a port each moment of the run writes
    (:data:`STOP_PHASES`), sometimes with the firmware run twice; files run again with the
    harness slowed at one point (``# timing: attach|qmp|qtest``, the ``timing``
    invariant: QEMU's end falls elsewhere relative to the harness's I/O and the finding
    must not change); and files whose PnP solution is applied and run again (``# pnp:
    true``, the ``pnp`` invariant; their own steps dropped, as ``harness pnp`` boots
    without them)."""
    devices: list[dict[str, Any]] = doc["devices"]
    stopper = False
    if rng.random() < 0.35 and len(devices) < MAX_DEVICES:
        model = catalog[rng.choice(STOPPERS)]
        if _one_more_fits(model, devices, catalog):
            prop = next(p.name for p in model.settings if p.kind == "port")
            phase = rng.choice(STOP_PHASES)
            dev: dict[str, Any] = {"model": model.name, "id": _new_id(devices, "stop")}
            others = [(lo, hi) for d in devices if d["model"] in catalog
                      for kind, lo, hi in catalog[d["model"]].decoded_resources(_settings_of(d, catalog[d["model"]]))
                      if kind == "port"]
            if phase == "driver" and others:
                lo, hi = rng.choice(others)
                dev[prop] = _over_port(rng, model, prop, rng.randint(lo, hi))
            elif phase == "step" or (phase == "driver" and not others):
                dev[prop] = model.defaults_for(0)[prop]
                step: dict[str, Any] = {"port_write": dev[prop], "value": rng.choice((0, 1, 3, 0x53, 0xFF))}
                if rng.random() < 0.5:
                    step["phase"] = "post-drivers"
                doc["after_firmware"] = doc.get("after_firmware", []) + [step]
            else:
                if phase == "log":
                    doc["firmware_log"] = False
                dev[prop] = _over_port(rng, model, prop, rng.choice(PHASE_PORTS[phase]))
            devices.append(dev)
            stopper = True
            if rng.random() < 0.25:
                doc[RERUN_KEY] = True
    if rng.random() < (0.5 if stopper else 0.08):
        doc[TIMING_KEY] = rng.choice(SLOW_POINTS)
    if not stopper and rng.random() < 0.2:
        doc[PNP_KEY] = True
        doc.pop("after_firmware", None)


class _Dumper(yaml.SafeDumper):
    """Addresses in hex, as people write them in machine files."""


_Dumper.add_representer(int, lambda d, v: d.represent_scalar("tag:yaml.org,2002:int", hex(v) if v > 15 else str(v)))


#: The generator's keys for how the job runs: the HAL (``--hal``) and ReactOS's
#: IoReportResourceUsage (``--reactos``); a machine file has no such keys, so the file
#: carries them as its first comment lines (``# hal: apic``, ``# reactos: true``), which
#: ``job_options`` reads back.
HAL_KEY = "hal"
REACTOS_KEY = "reactos"
#: The checker's keys, carried the same way: ``# ends: both`` (the job again with
#: ``firmware_log`` flipped: the other firmware end) and ``# rerun: true`` (the firmware
#: run twice in one QEMU).
ENDS_KEY = "ends"
RERUN_KEY = "rerun"
#: The fifth round's: ``# timing: attach`` (the job again with the harness slowed there:
#: :data:`SLOW_POINTS`) and ``# pnp: true`` (the PnP solution applied and run again).
TIMING_KEY = "timing"
PNP_KEY = "pnp"
JOB_KEYS = (HAL_KEY, REACTOS_KEY, ENDS_KEY, RERUN_KEY, TIMING_KEY, PNP_KEY)
_JOB_LINE = re.compile(rf"^# ({'|'.join(JOB_KEYS)}): (\w+)$", re.M)


def machine_text(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k not in JOB_KEYS}
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=200)
    return "".join(f"# {k}: {str(doc[k]).lower()}\n" for k in JOB_KEYS if k in doc) + text


def job_options(text: str) -> dict[str, str]:
    """A generated file's job options, from its first comment lines (none: the defaults)."""
    return {m[1]: m[2] for m in _JOB_LINE.finditer(text)}


def hal_of(text: str) -> str:
    """The HAL a generated file's job runs (its ``# hal:`` line; ``auto`` without one)."""
    return job_options(text).get(HAL_KEY, "auto")


def reactos_of(text: str) -> bool:
    """Whether a generated file's job runs IoReportResourceUsage as ReactOS has it."""
    return job_options(text).get(REACTOS_KEY) == "true"


_FIRMWARE_LOG_LINE = re.compile(r"^firmware_log: (true|false)$", re.M)


def other_end(text: str) -> tuple[str, MachineSpec] | None:
    """A generated file with ``firmware_log`` flipped (its firmware's other end), if it
    asks for both ends (``# ends: both``) and validation takes it (a device on the log
    port keeps the log off)."""
    if job_options(text).get(ENDS_KEY) != "both":
        return None
    # the same lines (a finding names a file line): the key flipped in place or added last
    flipped, found = _FIRMWARE_LOG_LINE.subn(
        lambda m: f"firmware_log: {'true' if m[1] == 'false' else 'false'}", text)
    if not found:
        flipped = text.rstrip("\n") + "\nfirmware_log: false\n"
    try:
        return flipped, parse_machine_text(flipped, "other-end.yaml")
    except ConfigError:
        return None


def valid_machine(seed: int, catalog: Any = None, tries: int = 20) -> tuple[str, MachineSpec, int]:
    """The first file of sub-seeds ``seed:0``, ``seed:1``, ... that validation accepts, and
    how many it refused first (each refusal names a file line: checked here)."""
    catalog = catalog or load_catalog()
    for attempt in range(tries):
        text = machine_text(generate(f"{seed}:{attempt}", catalog))
        try:
            return text, parse_machine_text(text, f"fuzz-{seed}.yaml", catalog), attempt
        except ConfigError as exc:
            if f"fuzz-{seed}.yaml:" not in str(exc):
                raise AssertionError(f"a refusal that names no file line: {exc}") from None
    raise RuntimeError(f"seed {seed}: {tries} files in a row refused")


# ---------------------------------------------------------------------------- coverage
def _placement(spec: MachineSpec, dev: Any) -> str:
    """Where a PCI device sits: the root bus, or behind which bridge model (behind what)."""
    by_id = {d.id: d for d in spec.devices}
    parent = by_id.get(dev.bus) if dev.bus else None
    if parent is None:
        return f"{spec.machine} root bus"
    grand = by_id.get(parent.bus) if parent.bus else None
    return f"{spec.machine} behind {parent.model.name}" + (f" behind {grand.model.name}" if grand else "")


def classes_of(text: str, spec: MachineSpec) -> Counter[str]:
    """The classes one generated file holds (one count each), as :func:`coverage` tallies them."""
    by_id = {d.id: d for d in spec.devices}
    isa_models = Counter(d.model.name for d in spec.devices if d.model.bus == "isa")
    found = {
        f"machine {spec.machine}, HAL {hal_of(text)}": True,
        "driver: none": any(d.no_driver for d in spec.devices),
        "drive": any(d.model.bus in DRIVE_CONTROLLERS for d in spec.devices),
        "several ISA cards of one model": any(n > 1 for n in isa_models.values()),
        f"isapc with {MANY_LEGACY_CARDS[0] + 2}+ ISA cards": spec.machine == "isapc" and
        sum(isa_models.values()) >= MANY_LEGACY_CARDS[0] + 2,
        "two displays with the VGA window": sum(any(f.start == VGA_WINDOW for f in d.model.fixed)
                                                for d in spec.devices) > 1,
        "pci-bridge with devices behind it": any(d.bus in by_id and by_id[d.bus].model.name == "pci-bridge"
                                                 for d in spec.devices),
        "pci-bridge behind a root port": any(d.model.name == "pci-bridge" and d.bus in by_id and
                                             by_id[d.bus].model.bridge == "pcie-root-port" for d in spec.devices),
        "bridge window step": any(a.kind == "pci_write" and a.target in by_id and by_id[a.target].model.bridge
                                  for a in spec.after_firmware),
        "drivers: list": "\ndrivers:" in text,
        "claim: block": any(d.claim == "block" for d in spec.drivers),
        "override_conflict": any(d.override_conflict for d in spec.drivers),
        "ReactOS's IoReportResourceUsage": reactos_of(text),
        "firmware_log: false (the reboot is the end)": not spec.firmware_log,
        "both firmware ends checked": job_options(text).get(ENDS_KEY) == "both",
        "firmware run twice in one QEMU": job_options(text).get(RERUN_KEY) == "true",
        "a device on an end-path port (0x70/0x71/0xcf9/0x92/0x64/fw_cfg)": any(
            kind == "port" and lo <= port <= hi for d in spec.devices for kind, lo, hi in d.decoded_resources()
            for port in END_PATH_PORTS),
        "memory BAR moved into 0xc0000-0xfffff": any(a.kind == "move_bar" and a.address is not None and
                                                     BIOS_WINDOW[0] <= a.address <= BIOS_WINDOW[1]
                                                     for a in spec.after_firmware),
        "memory_read in 0xc0000-0xfffff": any(a.kind == "memory_read" and BIOS_WINDOW[0] <= a.address <= BIOS_WINDOW[1]
                                              for a in spec.after_firmware),
    }
    found.update({f"step {a.kind} {a.phase}": True for a in spec.after_firmware})
    phase = stopper_phase(spec)
    found.update({
        f"a stopper on a port {phase} writes": phase is not None,
        "a stopper, the firmware run twice": phase is not None and job_options(text).get(RERUN_KEY) == "true",
        f"slowed at {job_options(text).get(TIMING_KEY)}": TIMING_KEY in job_options(text),
        "PnP solution applied and run again": job_options(text).get(PNP_KEY) == "true",
    })
    return Counter(name for name, hit in found.items() if hit)


def coverage(seeds: Iterable[int], catalog: Any = None) -> dict[str, Counter[str]]:
    """What the generator writes over ``seeds`` (generation only, no QEMU): how many
    files hold each catalog model, each explicit setting, each placement of a PCI device,
    each class (:func:`classes_of`); ``refused``: the files validation refused first."""
    catalog = catalog or load_catalog()
    out: dict[str, Counter[str]] = {k: Counter() for k in ("models", "settings", "placements", "classes", "refused")}
    for seed in seeds:
        text, spec, refused = valid_machine(seed, catalog)
        out["refused"]["files"] += refused
        out["models"].update({d.model.name for d in spec.devices})
        out["settings"].update({f"{d.model.name}.{s}" for d in spec.devices for s in d.explicit
                                if s in {p.name for p in d.model.settings}})
        out["placements"].update({_placement(spec, d) for d in spec.devices if d.model.pci is not None})
        out["classes"] += classes_of(text, spec)
    return out


def print_coverage(count: int, first: int) -> None:
    catalog = load_catalog()
    found = coverage(range(first, first + count), catalog)
    settings = sorted(f"{m.name}.{p.name}" for m in catalog.values() for p in m.settings)
    print(f"{count} files (seeds {first}-{first + count - 1}), {found['refused']['files']} refused by validation first")
    for what, every, counted in (("models", sorted(catalog), found["models"]), ("settings", settings, found["settings"])):
        never = [n for n in every if not counted[n]]
        rarest = sorted(every, key=lambda n: (counted[n], n))[:6]
        print(f"{what}: {len(every) - len(never)} of {len(every)} in some file; never: {', '.join(never) or 'none'}; "
              f"rarest: {', '.join(f'{n} {counted[n]}' for n in rarest)}")
    for what in ("placements", "classes"):
        print(f"{what}:", *(f"{n:>6}  {k}" for k, n in sorted(found[what].items())), sep="\n")


# ---------------------------------------------------------------------------- invariants
@dataclass(frozen=True)
class Overlap:
    """Two parties (a machine-file id, or BOARD) on one resource, as the layout shows it."""

    kind: str  # "port", "memory", "irq", "dma"
    resource: str
    parties: tuple[str, str]


class _Parties:
    """Names of the layout's owners as the checker compares them with the report."""

    def __init__(self, spec: MachineSpec) -> None:
        self.ids = {d.id for d in spec.devices}

    def of(self, owner: str | None) -> str | None:
        """A machine-file id, BOARD, or None for the harness's own devices."""
        if owner and owner.lower().startswith(RESERVED_ID_PREFIX):
            return None
        return owner if owner in self.ids else BOARD


def layout_overlaps(spec: MachineSpec, layout: Layout) -> list[Overlap]:
    """Every overlap of two parties' decodes in ``layout`` that involves a machine-file
    device (the board's own overlaps, 0xcf9 inside the configuration ports, are by design)."""
    parties = _Parties(spec)
    found: set[Overlap] = set()

    def add(kind: str, resource: str, a: str | None, b: str | None) -> None:
        if a and b and a != b and (a in parties.ids or b in parties.ids):
            found.add(Overlap(kind, resource, tuple(sorted((a, b)))))   # type: ignore[arg-type]

    for s in layout.shadowed:
        for winner in s.hidden_by:
            add("port" if s.space == "io" else "memory", f"{s.space} {s.start:#x}-{s.end:#x}",
                parties.of(s.owner or s.name), parties.of(winner))
    for irq, drivers in irq_drivers(spec, layout).items():
        for i, a in enumerate(drivers):
            for b in drivers[i + 1:]:
                add("irq", f"irq {irq}", a, b)
    for channel, users in dma_registrations(spec, layout).items():
        for i, a in enumerate(users):
            for b in users[i + 1:]:
                add("dma", f"dma {channel}", a, b)
    return sorted(found, key=lambda o: (o.kind, o.resource, o.parties))


def irq_drivers(spec: MachineSpec, layout: Layout) -> dict[int, list[str]]:
    """ISA IRQ line → the parties that drive it separately: each ISA device (its QOM
    properties), each board part wired there, the SCI, and the PCI interrupt router once
    for every INTx routed there (it ORs them).  A party may appear once per source."""
    parties = _Parties(spec)
    models = {d.id: d.model for d in spec.devices}
    out: dict[int, list[str]] = {}

    def add(irq: Any, who: str | None) -> None:
        if who is not None and isinstance(irq, int) and 0 <= irq <= 15:
            out.setdefault(irq, []).append(who)

    board = board_model(spec.machine)
    covered: set[str] = set()
    for dev in layout.isa:
        for prop in ISA_IRQ_PROPERTIES:
            value = dev.properties.get(prop)
            if value is None or (dev.id in models and not models[dev.id].wires_irq(prop, value)):
                continue
            add(value, parties.of(dev.id))
            part = board_device_of(board, dev.type) if dev.id is None else None
            if part is not None:
                covered.add(part.name)
    present = {d.type for d in layout.isa} | {r.owner_type for r in layout.io} | \
        {r.name.split(" @")[0] for r in layout.io}
    for part in board:
        if part.name in covered or not part.irqs or (part.irq_accel and layout.accel not in part.irq_accel):
            continue
        if part.qemu_type in present or any(r in present for r in part.regions):
            for irq in part.irqs:
                add(irq, BOARD)
    if spec.machine in SCI_IRQ and not (spec.machine == Q35 and _config_ports_taken(layout)):
        add(SCI_IRQ[spec.machine], BOARD)
    add(CASCADE_IRQ, BOARD)
    routed: dict[int, str] = {}
    board_pci = {(p.pci.vendor, p.pci.device): p for p in board if p.pci is not None}
    for fn in layout.pci:
        part = board_pci.get((fn.vendor, fn.device)) if not fn.qdev_id else None
        if not fn.interrupt_pin or fn.command & PCI_COMMAND_INTX_DISABLE or (part is not None and not part.pci_interrupt):
            continue
        line = pci_pin_line(layout, fn, _line_rewritten(spec, fn))
        if line is not None and 0 < line < 16:
            # one source per line: the router; a machine-file function stands for it
            if routed.get(line) in (None, BOARD):
                routed[line] = parties.of(fn.qdev_id) if fn.qdev_id else BOARD
    for line, who in routed.items():
        add(line, who)
    return out


def _config_ports_taken(layout: Layout) -> bool:
    """Whether a card decodes the PCI configuration ports: q35's SCI line is then unknown
    to the layout and the job alike (ICH9 selects it in an LPC register only configuration
    space reaches; README "Random machines against the hardware", round two's note), and
    with the ports taken during the firmware SeaBIOS never enabled ACPI at all (livefuzz
    round five, seed 5001025: an NE2000 on IRQ 9 beside a card over 0xcf8-0xcff)."""
    from harness.verify import config_port_takers
    return bool(config_port_takers(layout))


def _line_rewritten(spec: MachineSpec, fn: Any) -> bool:
    """Whether a step of the file wrote ``fn``'s interrupt line register."""
    return any(a.kind == "pci_write" and a.target in (fn.qdev_id, fn.bdf) and
               a.offset <= PCI_INTERRUPT_LINE < a.offset + a.size for a in spec.after_firmware)


def pci_pin_line(layout: Layout, fn: Any, rewritten: bool = False) -> int | None:
    """The ISA line ``fn``'s interrupt pin raises: through the bridges' swizzle to its
    PIRQ link and the route the layout read from the chipset.  The interrupt line register
    is only the firmware's note of that route (a step may rewrite it: livefuzz round two),
    so it stands in only where the route cannot be read: no router (isapc), configuration
    ports under a card (the layout's reads reached the card), q35's board slots (their
    D2xIR registers); and not there either once a step ``rewritten`` it (unknown: None)."""
    from harness.nt.hal import ich9_link, piix3_link, swizzle_to_bus0
    from harness.verify import config_port_takers
    note = None if rewritten else fn.interrupt_line
    if layout.pirq is None or config_port_takers(layout):
        return note
    parent = {f.bridge.secondary: (f.bus, f.slot) for f in layout.pci if f.bridge is not None}
    root = swizzle_to_bus0(fn.bus, fn.slot, fn.interrupt_pin, parent)
    if root is None:
        return None   # behind a bridge the firmware never numbered: no route to any line
    link = piix3_link(*root) if layout.pirq.chipset == "piix3" else ich9_link(*root, lambda slot: None)
    if link is None:
        return note
    return layout.pirq.routes.get("ABCDEFGH"[link])


def dma_registrations(spec: MachineSpec, layout: Layout) -> dict[int, list[str]]:
    """DMA channel → the parties whose devices registered it (a device once per channel)."""
    parties = _Parties(spec)
    out: dict[int, list[str]] = {}
    for dev in layout.isa:
        for channel in {dev.properties.get("dma"), dev.properties.get("dma16")}:
            who = parties.of(dev.id)
            if isinstance(channel, int) and 0 <= channel <= 7 and who is not None:
                out.setdefault(channel, []).append(who)
    return out


def _report_pairs(report: dict[str, Any], ids: set[str]) -> list[set[str]]:
    """The parties each collision and each error-log conflict of a report names (a board
    device as BOARD), machine-file ids found through the drivers' device lists."""
    def party(label: str | None) -> str:
        return label if label in ids else BOARD   # a holder with no device is the HAL's own

    # a collision on a board line (the SCI, the cascade) names the device only: the line is the board's
    pairs = [{party(d) for d in c["devices"]} | ({BOARD} if c["kind"] in BOARD_LINE_KINDS else set())
             for c in report["collisions"]]
    nt_names = {dev["device"]: dev["config"] for d in report["drivers"] for dev in d["devices"] if dev["device"]}
    for e in report["error_log"]:
        c = e.get("conflict")
        if c:
            pairs.append({party(nt_names.get(e["device"], e["device"])),
                          party(nt_names.get(c["holder_device"], c["holder_device"]))})
    return pairs


def _parties_named(overlap: Overlap, named: set[str]) -> bool:
    """Whether a report item naming ``named`` is between the overlap's two parties (a
    board party: any board device; two board parts in one item count as both)."""
    a, b = overlap.parties
    if a == b:
        return a in named
    return a in named and b in named


def check_overlaps(spec: MachineSpec, layout: Layout, report: dict[str, Any]) -> list[str]:
    overlaps = layout_overlaps(spec, layout)
    pairs = _report_pairs(report, {d.id for d in spec.devices})
    out = [f"{o.resource}: {o.parties[0]} and {o.parties[1]} overlap in the layout, the report has no "
           f"collision or conflict between them" for o in overlaps
           if not any(_parties_named(o, named) for named in pairs)]
    if report["verdict"] == "clean" and overlaps and not out:
        out.append(f"clean verdict with {len(overlaps)} overlaps in the layout")
    return out


def check_claimants(spec: MachineSpec, layout: Layout, report: dict[str, Any]) -> list[str]:
    """Every decoder of the flat views (a machine-file device, a board device) has a line."""
    lines = {c["device"] for c in report["claimants"]}
    parties = _Parties(spec)
    board = board_model(spec.machine)
    out: list[str] = []
    for r in (*layout.io, *layout.memory):
        who = parties.of(r.owner)
        if who is None or (r.owner is None and r.name.startswith(SYSTEM_RAM)):
            continue   # the harness's own; system RAM (and its shadow below 1 MiB) decodes nobody's
        if who != BOARD:
            if who not in lines:
                out.append(f"{r.space} {r.start:#x}-{r.end:#x} ({r.name}) decoded by {who}: no claimant line")
            continue
        part = board_device_of(board, r.owner_type, r.name)
        if part is None:
            out.append(f"{r.space} {r.start:#x}-{r.end:#x} ({r.name}, {r.owner_type}): no board device describes it")
        elif part.label not in lines:
            out.append(f"{r.space} {r.start:#x}-{r.end:#x} ({r.name}): {part.label} has no claimant line")
    return list(dict.fromkeys(out))


def _decoded_by(layout: Layout, owner: str, space: str) -> list[tuple[int, int]]:
    """What ``owner`` decodes in ``space``: its flat-view ranges, those it lost to another,
    and its PCI BARs as configuration space places them (a BAR is the device's whole
    window, holes between QEMU's subregions included)."""
    ranges = layout.io if space == "io" else layout.memory
    bars = [(b.base, b.end) for fn in layout.pci if fn.qdev_id == owner for b in fn.bars
            if b.base is not None and b.end is not None and (b.kind == "io") == (space == "io")]
    return sorted([(r.start, r.end) for r in ranges if r.owner == owner] + bars +
                  [(s.start, s.end) for s in layout.shadowed if s.owner == owner and s.space == space])


def _covered(spans: list[tuple[int, int]], lo: int, hi: int) -> bool:
    for start, end in spans:
        if start <= lo <= end:
            lo = end + 1
            if lo > hi:
                return True
    return False


def _undecoded(layout: Layout, space: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """The holes of ``lo``-``hi`` no range of the flat view decodes (system RAM included)."""
    cursor, out = lo, []
    for r in sorted((r for r in (layout.io if space == "io" else layout.memory) if r.start <= hi and lo <= r.end),
                    key=lambda r: r.start):
        if r.start > cursor:
            out.append((cursor, r.start - 1))
        cursor = max(cursor, r.end + 1)
    return out + ([(cursor, hi)] if cursor <= hi else [])


_CLAIMED = re.compile(r"(port|memory) (0x[0-9a-f]+)(?:-(0x[0-9a-f]+))?")


def check_claims(spec: MachineSpec, layout: Layout, report: dict[str, Any]) -> list[str]:
    """A port or memory claim the report calls ok lies where its machine-file device decodes
    (its flat-view ranges and those it lost to another: it decodes them still)."""
    ids = {d.id for d in spec.devices}
    vgas = {d.id for d in spec.devices if d.driver == VGA_DRIVER}
    blocks = {DRIVERS[d.name].service_name for d in spec.drivers if d.claim == "block"}
    out = []
    for c in report["checks"]:
        match = _CLAIMED.match(c["resource"])
        mine = [e for e in c["expected"] if e in ids]
        if not c["ok"] or match is None or not mine:
            continue
        kind, lo, hi = match[1], int(match[2], 16), int(match[3] or match[2], 16)
        spans = sorted(s for e in mine for s in _decoded_by(layout, e, "io" if kind == "port" else "memory"))
        if set(mine) <= vgas:   # the VGA miniport claims the legacy VGA blocks whole, as NT's VgaSave does
            spans = sorted(spans + [(a, b) for k, a, b in VGA_ACCESS_RANGES if k == kind])
        if c["driver"] in blocks and any(a <= hi and lo <= b for a, b in spans):
            # a retail claim of the card's whole jumper block (claim: block): its holes
            # are the card's where nothing else decodes them (a byte another device
            # decodes is the job's "also decoded by", not ok)
            spans = sorted(spans + _undecoded(layout, "io" if kind == "port" else "memory", lo, hi))
        if not _covered(spans, lo, hi):
            out.append(f"{c['device'] or c['driver']}: {c['resource']} called ok, but "
                       f"{', '.join(mine)} decode(s) only {', '.join(f'{a:#x}-{b:#x}' for a, b in spans) or 'nothing'}")
    return out


def check_decodes_claimed(spec: MachineSpec, layout: Layout, report: dict[str, Any]) -> list[str]:
    """The other way round from :func:`check_claims`: a machine-file device whose claimant
    line says ``claimed`` has every range the live flat views show it decoding inside a
    claim of its claimant (a model narrower than what QEMU decodes would leave a decoder
    half-owned and call it claimed)."""
    ids = {d.id for d in spec.devices}
    spans: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for c in report["checks"]:
        match = _CLAIMED.match(c["resource"])
        if match:
            space = "io" if match[1] == "port" else "memory"
            spans.setdefault((c["driver"], space), []).append((int(match[2], 16), int(match[3] or match[2], 16)))
    out = []
    for line in report["claimants"]:
        if line["status"] != "claimed" or line["device"] not in ids:
            continue
        for r in (*layout.io, *layout.memory):
            if r.owner == line["device"] and not _covered(sorted(spans.get((line["claimant"], r.space), [])),
                                                          r.start, r.end):
                out.append(f"{line['device']} decodes {r.space} {r.start:#x}-{r.end:#x} ({r.name}) and its line "
                           f"says claimed by {line['claimant']}, which claims no such range")
    return out


def over_board_ports(spec: MachineSpec) -> list[str]:
    """Which board devices' ports the machine file's devices decode over, by the models
    (what a firmware that never finishes may have met there)."""
    out = []
    for part in board_model(spec.machine):
        ports = [(lo, hi) for kind, lo, hi in part.decoded_resources() if kind == "port"]
        for dev in spec.devices:
            hit = [(max(a, lo), min(b, hi)) for kind, a, b in dev.decoded_resources() if kind == "port"
                   for lo, hi in ports if a <= hi and lo <= b]
            out += [f"{dev.id} over {part.label} {lo:#x}-{hi:#x}" for lo, hi in hit]
    return out


def error_class(lines: list[str]) -> str:
    """An error's class for the summary: its exception and message, numbers dropped."""
    return re.sub(r"0x[0-9a-f]+|\d+", "N", lines[0].splitlines()[0])[:90]


#: A figure the harness measured in seconds inside a report's text ("found after 7.1 s",
#: "2.9 s of QEMU CPU"): a firmware event's timing, different each run by nature.
_MEASURED_SECONDS = re.compile(r"\b\d+\.\d+ s\b")


def normalised(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the fields and the measured seconds that differ between runs by
    design (which rule found a stalled firmware, and every other word, still count)."""
    kept = json.dumps({k: v for k, v in report.items() if k not in _VOLATILE})
    return json.loads(_MEASURED_SECONDS.sub("N s", kept))


# ---------------------------------------------------------------------------- the runner
def _run_once(spec: MachineSpec, out: Path, text: str) -> tuple[Any, dict[str, Any], bytes]:
    """The main job on ``spec`` with the job options of its generated ``text``."""
    from harness.job import run_job
    result = run_job(spec, out, picture=False, hal=hal_of(text), reactos=reactos_of(text))
    report = json.loads((out / "report.json").read_text())
    return result, report, (out / "registry.reg").read_bytes()


def registry_diff(first: bytes, second: bytes, most: int = 6) -> str:
    """Where two .reg exports differ (the lines of each, with the key above them), for a
    determinism failure's comment: which key a run wrote differently says why."""
    import difflib
    a, b = (data.decode("utf-16", errors="replace").splitlines() for data in (first, second))
    keys, key, out = {}, "", []
    for n, line in enumerate(a):
        key = line if line.startswith("[") else key
        keys[n] = key
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out.append(f"{keys.get(i1, key)} {a[i1:i2][:2]} -> {b[j1:j2][:2]}")
    return "; ".join(out[:most]) or "the same lines"


def check_machine(text: str, spec: MachineSpec, work: Path, *, only: str | None = None) -> dict[str, list[str]]:
    """Run one machine (twice for determinism) and return invariant → failures; the
    report's verdict is under the key ``verdict`` (not an invariant).  ``only``: the one
    invariant a shrinking trial needs (the second run and the other ends only for theirs)."""
    twice = only in (None, "determinism")
    failures: dict[str, list[str]] = {}
    try:
        result, report, registry = _run_once(spec, work / "a", text)
        if twice:
            _, report2, registry2 = _run_once(spec, work / "b", text)
            first, second = normalised(report), normalised(report2)
            if first != second:
                diff = [k for k in first if first[k] != second.get(k)]
                failures["determinism"] = [f"report fields differ between two runs: {', '.join(diff)}"]
            elif registry != registry2:
                failures["determinism"] = ["registry.reg differs between two runs: " + registry_diff(registry, registry2)]
    except Exception as exc:   # noqa: BLE001  what the invariant is about
        return {"error": [f"{type(exc).__name__}: {exc}", f"board ports under the devices: "
                          f"{', '.join(over_board_ports(spec)) or 'none'}", traceback.format_exc(limit=6)]}
    failures["verdict"] = [report["verdict"] + (" (firmware stopped)" if any(e.stopped for e in result.events) else "")]
    for name, check in (("ends", lambda: check_ends(text, spec, report, work / "other-end")),
                        ("rerun", lambda: check_rerun(spec) if job_options(text).get(RERUN_KEY) == "true" else []),
                        ("timing", lambda: check_timing(text, spec, report, work / "slowed")),
                        ("pnp", lambda: check_pnp(text, spec, result, work / "pnp"))):
        if only not in (None, name):
            continue
        try:
            found = check()
        except Exception as exc:   # noqa: BLE001  what the invariant is about
            found = [f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=6)]
        if found is not None and name in ("timing", "pnp"):
            failures.setdefault("checked", []).append(name)   # how many files each held on
        if found:
            failures[name] = found
    if any(e.stopped for e in result.events):
        return failures   # the firmware stopped: no layout to hold the report to
    for name, check in (("overlap", check_overlaps), ("claimant", check_claimants), ("claim", check_claims),
                        ("decode", check_decodes_claimed)):
        found = check(spec, result.layout, report)
        if found:
            failures[name] = found
    return failures


def check_ends(text: str, spec: MachineSpec, report: dict[str, Any], work: Path) -> list[str]:
    """The job at the firmware's other end (``firmware_log`` flipped: SeaBIOS's last log
    line or its reboot) gives the same verdict and the same claims, collisions, findings
    and events (:data:`ENDS_COMPARED`)."""
    other = other_end(text)
    if other is None:
        return []
    flipped, flipped_spec = other
    _, report2, _ = _run_once(flipped_spec, work, flipped)
    logged, rebooted = (report, report2) if spec.firmware_log else (report2, report)
    if any(e["kind"] in NEEDS_THE_LOG for e in logged["events"]):
        return []   # the reboot's end cannot see it: no like to compare
    if _reboot_met(spec, logged, rebooted):
        return []
    written = _reboot_written(spec)
    first, second = _at_either_end(report, written), _at_either_end(report2, written)
    ends = {True: "the log's line", False: "the reboot"}
    out = []
    for key in ENDS_COMPARED:
        if written and key in ("verdict", "exit_code"):
            continue   # decided by the cards the reboot wrote too
        a, b = first.get(key), second.get(key)
        if a != b:
            if isinstance(a, list) and isinstance(b, list):   # the items only one end has
                a, b = [x for x in a if x not in b], [x for x in b if x not in a]
            out.append(f"{key} differs between the firmware's ends ({ends[spec.firmware_log]}: {_short(a)}; "
                       f"{ends[flipped_spec.firmware_log]}: {_short(b)})")
    return out


#: Firmware events only the log shows: a reset before SeaBIOS's last line is the early
#: reset with the log, and without it the end (the harness cannot tell it from the final
#: reboot: README "Firmware events are findings"; livefuzz seed 4001034, a card over the
#: PCI configuration ports).
NEEDS_THE_LOG = ("early-reset",)
#: Where SeaBIOS's reboot (the end without the log) meets a card and stops for good:
#: it writes the CMOS shutdown-status index (0x8f) to the RTC's index port and reads the
#: status, and a card there answers garbage ("Unimplemented shutdown status": halted).
#: Measured with a debug console at each end-path port (test_livefuzz): the reboot writes
#: 0x70 (that stops it), isapc's 0x71 and 0x92, none of which stops it.
REBOOT_STOPS_AT = 0x70


def _reboot_met(spec: MachineSpec, logged: dict[str, Any], rebooted: dict[str, Any]) -> bool:
    """Whether the reboot's end stopped where the log's end went on because the reboot met
    a card on a port it writes (:data:`REBOOT_WRITES`: a card on the RTC's index halts it,
    an isa-debug-exit on isapc's 0xcf9 ends QEMU: seed 5002256): nothing after the
    firmware is there to compare."""
    written = _reboot_written(spec)
    return not logged["events"] and any(e["stopped"] and written & set(e["devices"]) for e in rebooted["events"])


#: The ports SeaBIOS's reboot (the end without the log) writes after where the log's end
#: stops it, by machine type: the RTC's index (0x70: the shutdown-status index 0x8f), port
#: 92, and on isapc the RTC's data port and the reset control register 0xcf9 (0x02, 0x06:
#: no chipset tells it there is none).  Measured with a debug console at each end-path port
#: (test_livefuzz).  A card there meets those writes at one end only, and a card with state
#: (an IPMI KCS at 0xcf9 takes them as a command: livefuzz round five, seed 5002075)
#: answers its driver differently afterwards: the hardware, not the harness.
REBOOT_WRITES = {"isapc": (0x70, 0x71, 0x92, 0xCF9), "pc": (0x70, 0x92), "q35": (0x70, 0x92)}


def _reboot_written(spec: MachineSpec) -> set[str]:
    """The file's devices on a port the reboot writes (:data:`REBOOT_WRITES`)."""
    return {d.id for d in spec.devices for kind, lo, hi in d.decoded_resources()
            if kind == "port" and any(lo <= p <= hi for p in REBOOT_WRITES[spec.machine])}


#: What the firmware's end must not change in a report (events by kind and devices).
ENDS_COMPARED = ("verdict", "exit_code", "events", "findings", "collisions", "checks", "claimants", "error_log",
                 "violations")


def _at_either_end(report: dict[str, Any], written: set[str] = frozenset()) -> dict[str, Any]:
    """The report as both firmware ends must give it: a firmware event by its kind and
    devices, not how the harness knew (the progress watch's retry rule and the cause's
    last log line read the log: without it the bound ends the wait) nor its finding's line;
    without the items that name a device of ``written`` (:func:`_reboot_written`)."""
    out = normalised(report)
    out["events"] = [{k: e.get(k) for k in ("kind", "devices")} for e in out["events"]]
    out["findings"] = [f for f in out["findings"] if not f.startswith("event [")]
    if written:
        names = re.compile(rf"\b({'|'.join(map(re.escape, sorted(written)))})\b")
        for key in ENDS_COMPARED:
            if isinstance(out.get(key), list):
                out[key] = [item for item in out[key] if not names.search(json.dumps(item))]
    return out


def _short(value: Any, most: int = 600) -> str:
    text = json.dumps(value)
    return text if len(text) <= most else text[:most] + "..."


def check_rerun(spec: MachineSpec) -> list[str]:
    """The firmware run again in the same QEMU (with the file's post-firmware steps, as a
    reused machine's reset does) ends as the first run did and leaves the same layout.  A
    first run that does not end is the job's event, judged by the other invariants."""
    from harness.qemu.actions import run_firmware_and_steps
    from harness.qemu.layout import snapshot
    from harness.qemu.machine import Machine
    with Machine(spec) as machine:
        try:
            run_firmware_and_steps(machine)
        except Exception:   # noqa: BLE001  the first run's own end: not this invariant's
            return []
        first, end = snapshot(machine, "post-firmware").to_dict(), machine.firmware_end
        try:
            run_firmware_and_steps(machine)
        except Exception as exc:   # noqa: BLE001  what the invariant is about
            return [f"the firmware's second run failed where the first ended at the {end}: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0]}"]
        second = snapshot(machine, "post-firmware").to_dict()
        out = [f"{key} differs after the firmware's second run: {_short(first[key])} -> {_short(second[key])}"
               for key in first if first[key] != second[key]]
        if machine.firmware_end != end:
            out.append(f"the firmware's first run ended at the {end}, its second at the {machine.firmware_end}")
        return out


#: How long each slowing point of :func:`slowed` holds the harness back: the attach long
#: enough for a firmware that ends QEMU at its first log byte to have done so (bbf85a1),
#: each QMP command and qtest exchange long enough for a running guest to move on.
ATTACH_DELAY = 0.5
COMMAND_DELAY = 0.02


@contextlib.contextmanager
def slowed(point: str) -> Iterator[None]:
    """The harness held back at ``point`` (:data:`SLOW_POINTS`) while QEMU runs on: after
    QEMU is spawned and before the harness attaches; before each QMP command; before each
    qtest exchange.  In this process only (a fuzz worker runs one machine at a time)."""
    from harness.qemu import machine as machine_module
    from harness.qemu.qtest import QtestChannel
    if point == "attach":
        owner, name = machine_module, "spawn_qemu"
        spawn = machine_module.spawn_qemu

        def late(*args: Any, **kwargs: Any) -> Any:
            spawned = spawn(*args, **kwargs)
            time.sleep(ATTACH_DELAY)
            return spawned
        replacement: Any = late
    elif point == "qmp":
        owner, name = machine_module.Machine, "_execute"
        execute = machine_module.Machine._execute

        async def slow_command(self: Any, command: str, arguments: Any = None) -> Any:
            await asyncio.sleep(COMMAND_DELAY)
            return await execute(self, command, arguments)
        replacement = slow_command
    elif point == "qtest":
        owner, name = QtestChannel, "execute"
        exchange = QtestChannel.execute

        def slow_exchange(self: Any, lines: Any, **kwargs: Any) -> Any:
            time.sleep(COMMAND_DELAY)
            return exchange(self, lines, **kwargs)
        replacement = slow_exchange
    else:
        raise ValueError(f"no slowing point {point!r}: one of {', '.join(SLOW_POINTS)}")
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


#: What the harness's speed must not change in a report: the ends invariant's fields,
#: events compared with their cause and whether they stopped the machine.
TIMING_COMPARED = ENDS_COMPARED


def _timing_view(report: dict[str, Any]) -> dict[str, Any]:
    out = normalised(report)
    out["events"] = [{k: e.get(k) for k in ("kind", "devices", "stopped", "cause")} for e in out["events"]]
    return out


def check_timing(text: str, spec: MachineSpec, report: dict[str, Any], work: Path) -> list[str] | None:
    """The job again with the harness slowed at the file's point (``# timing:``) gives the
    same verdict, events (kind, devices, cause, stopped), findings, collisions, claims,
    claimants and error log: where QEMU's end falls relative to the harness's I/O
    changes nothing a user reads."""
    point = job_options(text).get(TIMING_KEY)
    if point is None:
        return None
    with slowed(point):
        _, report2, _ = _run_once(spec, work, text)
    first, second = _timing_view(report), _timing_view(report2)
    out = []
    for key in TIMING_COMPARED:
        a, b = first.get(key), second.get(key)
        if a != b:
            if isinstance(a, list) and isinstance(b, list):
                a, b = [x for x in a if x not in b], [x for x in b if x not in a]
            out.append(f"{key} differs with the harness slowed at {point} (as it ran: {_short(a)}; slowed: {_short(b)})")
    return out


def solution_file(text: str, report: Any) -> str:
    """``text`` with a PnP solution written into it: each ISA setting the solution changes
    set on its device, each PCI BAR it moves a ``move_bar`` step after the firmware (as
    ``harness pnp --apply`` programs it through HalAssignSlotResources there)."""
    doc = {**yaml.safe_load(text), **job_options(text)}
    for dev in doc["devices"]:
        for prop, (_old, new) in report.changes.get(dev["id"], {}).items():
            dev[prop] = new
    steps = [{"move_bar": b.device, "bar": int(b.bar.split()[0][len("BAR"):]),
              "address": int(b.assigned.split("-")[0], 16)} for b in report.bars if not b.same]
    if steps:
        doc["after_firmware"] = doc.get("after_firmware", []) + steps
    return machine_text(doc)


def _decodes_by_party(spec: MachineSpec, layout: Layout) -> dict[str, set[tuple[Any, ...]]]:
    """Each machine-file device's decode in ``layout``: its flat-view and shadowed ranges,
    its ISA lines and channels, its BARs (what the pnp invariant says must not move)."""
    out: dict[str, set[tuple[Any, ...]]] = {d.id: set() for d in spec.devices}
    spans: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for r in (*layout.io, *layout.memory, *layout.shadowed):
        if r.owner in out:
            spans.setdefault((r.owner, r.space), []).append((r.start, r.end))
    from harness.nt.verifier import _merged
    for (owner, space), ranges in spans.items():   # whole: where another device shadows it moves with that device
        for lo, hi in _merged(ranges):
            out[owner].add((space, lo, hi))
    for dev in layout.isa:
        if dev.id in out:
            out[dev.id] |= {(k, v) for k, v in dev.properties.items() if k in ISA_IRQ_PROPERTIES or k.startswith("dma")}
    for fn in layout.pci:
        if fn.qdev_id in out:
            out[fn.qdev_id] |= {("bar", b.index, b.base) for b in fn.bars}
    return out


def check_pnp(text: str, spec: MachineSpec, result: Any, work: Path) -> list[str] | None:
    """``# pnp: true``: ``harness pnp --apply``'s solution, written into a copy of the file
    (:func:`solution_file`) and run through the job, holds on the live layout: where the
    search says every device it placed is clear of every other (satisfiable) and the
    reconciliation proved it on the live machine, the copy's layout shows no overlap of a
    machine-file device the solution placed (:func:`layout_overlaps`), and every device
    the solution did not move decodes in the copy what it decoded in the file (its
    ranges, lines, BARs).  A run whose firmware or HAL met an event is the job's finding:
    nothing to solve."""
    if job_options(text).get(PNP_KEY) != "true" or result.events:
        return None
    from harness.pnp_live import run_pnp
    report = run_pnp(spec, apply=True)
    if not report.solution.satisfiable or report.applied is None or not report.applied.proved:
        return None   # pnp says itself it has no conflict-free answer (the core, the findings)
    copy = solution_file(text, report)
    copy_spec = parse_machine_text(copy, "pnp-solution.yaml")
    applied, _, _ = _run_once(copy_spec, work, copy)
    if applied.events:
        return [f"the solution's file met a firmware event the file did not: "
                f"{', '.join(f'{e.kind} ({e.cause})' for e in applied.events)}"]
    placed = {n.name for n in report.nodes if n.name in report.solution.choices}
    out = [f"{o.resource}: {o.parties[0]} and {o.parties[1]} overlap after the solution was applied, which "
           f"placed {', '.join(p for p in o.parties if p in placed)} clear of everything"
           for o in layout_overlaps(copy_spec, applied.layout) if set(o.parties) & placed]
    moved = set(report.changes) | {b.device for b in report.bars if not b.same}
    before, after = _decodes_by_party(spec, result.layout), _decodes_by_party(copy_spec, applied.layout)
    out += [f"{dev} moved though the solution left it where it was: {_short(sorted(map(str, before[dev] - after[dev])))}"
            f" -> {_short(sorted(map(str, after[dev] - before[dev])))}"
            for dev in before if dev not in moved and before[dev] != after.get(dev)]
    return out


def _shrink(text: str, invariant: str, work: Path, budget: int = 8) -> str:
    """Drop devices, steps and builtin settings one at a time while ``invariant`` still fails."""
    doc = {**yaml.safe_load(text), **job_options(text)}
    for key in ("after_firmware", "builtin", "devices"):
        items = doc.get(key)
        if not items:
            continue
        for index in reversed(range(len(items) if isinstance(items, list) else 1)):
            if budget <= 0:
                return machine_text(doc)
            trial = json.loads(json.dumps(doc))
            if isinstance(items, list):
                del trial[key][index]
                if not trial[key]:
                    del trial[key]
            else:
                del trial[key]
            try:
                spec = parse_machine_text(machine_text(trial), "shrink.yaml")
            except ConfigError:
                continue   # a step naming the dropped device, a bus gone
            if key == "devices" and not spec.devices:
                continue
            budget -= 1
            if invariant in check_machine(machine_text(trial), spec, work / f"s{budget}", only=invariant):
                doc = trial
    return machine_text(doc)


def fuzz_one(seed: int, out_root: str | None = None, shrink: bool = True) -> dict[str, Any]:
    """Worker: generate machine ``seed``, check it, keep its file when it fails."""
    text, spec, refused = valid_machine(seed)
    t = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="livefuzz-") as tmp:
        try:
            failures = check_machine(text, spec, Path(tmp))
        except Exception:   # noqa: BLE001  the checker's own bug: keep the file, go on
            failures = {"checker": [traceback.format_exc(limit=4)]}
        verdict = failures.pop("verdict", ["error"])[0]
        checked = failures.pop("checked", [])
        if failures and out_root:
            folder = Path(out_root) / "failures"
            folder.mkdir(parents=True, exist_ok=True)
            first = next(iter(failures))
            # a machine that took long hit a bound (a hung firmware): each trial would too
            quick = time.monotonic() - t < SHRINK_WHEN_UNDER
            shrunk = _shrink(text, first, Path(tmp)) if shrink and quick else text
            comment = "".join(f"# {inv}: {part}\n" for inv, lines in failures.items()
                              for line in lines[:5] for part in line.rstrip().splitlines())
            (folder / f"fuzz-{seed}.yaml").write_text(comment + text)
            if shrunk != text:
                (folder / f"fuzz-{seed}.shrunk.yaml").write_text(f"# shrunk for {first}\n" + shrunk)
    return {"seed": seed, "machine": spec.machine, "refused": refused, "failures": failures, "verdict": verdict,
            "checked": checked, "seconds": round(time.monotonic() - t, 2)}


def _check_file(path: Path) -> int:
    spec = parse_machine_text(path.read_text(), str(path))
    with tempfile.TemporaryDirectory(prefix="livefuzz-") as tmp:
        failures = check_machine(path.read_text(), spec, Path(tmp))
        report = Path(tmp) / "a" / "report.json"
        if report.exists():
            print("findings:", *json.loads(report.read_text())["findings"], sep="\n  ")
    print("verdict:", *failures.pop("verdict", ["error"]))   # the job's, not an invariant
    print("checked:", *failures.pop("checked", ["-"]))
    for name, lines in failures.items():
        print(f"{name}:", *lines, sep="\n  ")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1, help="first seed; machine i has seed SEED+i")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--out", default="runs/livefuzz")
    parser.add_argument("--no-shrink", action="store_true")
    parser.add_argument("--file", help="check this one machine file and print what failed and the report's findings")
    parser.add_argument("--only", choices=JOB_KEYS, metavar="KEY",
                        help="check only the files among COUNT that carry job option KEY (# pnp:, # timing:, ...)")
    parser.add_argument("--coverage", action="store_true",
                        help="generate COUNT files from SEED (no QEMU) and print what they cover")
    args = parser.parse_args(argv)
    if args.file:
        return _check_file(Path(args.file))
    if args.coverage:
        print_coverage(args.count, args.seed)
        return 0
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out / "failures", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    per_invariant: Counter[str] = Counter()
    results = []
    t0 = time.monotonic()
    # workers (and so their QEMUs) die with this process, however it ends
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, initializer=die_with_parent,
                                                initargs=(os.getpid(),)) as pool:
        seeds = [args.seed + i for i in range(args.count)]
        if args.only:
            seeds = [seed for seed in seeds if args.only in job_options(valid_machine(seed)[0])]
        futures = [pool.submit(fuzz_one, seed, str(out), not args.no_shrink) for seed in seeds]
        for future in concurrent.futures.as_completed(futures):
            r = future.result()
            results.append(r)
            per_invariant.update(r["failures"].keys())
            mark = "FAIL " + ",".join(r["failures"]) if r["failures"] else "ok"
            print(f"seed {r['seed']:>6} {r['machine']:<5} {r['seconds']:>6.1f}s {mark}", flush=True)
    results.sort(key=lambda r: r["seed"])
    (out / "results.json").write_text(json.dumps(results, indent=1))
    refused = sum(r["refused"] for r in results)
    print(f"\n{len(results)} machines in {time.monotonic() - t0:.0f} s "
          f"({refused} generated files refused by validation first, each at a file line)")
    held = Counter(name for r in results for name in r["checked"])
    for name in INVARIANTS:
        print(f"  {name:<12} {per_invariant[name]:>4} failing" + (f" of {held[name]} checked" if name in held else ""))
    errors = Counter(error_class(r["failures"]["error"]) for r in results if "error" in r["failures"])
    for cls, n in errors.most_common():
        print(f"    error {n:>3}: {cls}")
    print("verdicts: " + ", ".join(f"{v} {n}" for v, n in sorted(Counter(r["verdict"] for r in results).items())))
    failing = sum(1 for r in results if r["failures"])
    print(f"failing machines: {failing}; files under {out / 'failures'}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
