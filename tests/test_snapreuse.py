"""The post-drivers layout reuses the post-firmware snapshot when nothing that changes what
QEMU decodes happened in between (LiveBus.layout_unchanged, layout.refresh), and is taken
afresh otherwise.  Real QEMU (TCG); every expected layout is a fresh snapshot QEMU answers.

* The rule, measured: the real main job (detection, board claimants, sample drivers,
  post-drivers steps, the shared-interrupt exercise) on the machine files, the conflict
  machines and the whole catalog (several models per machine, on pc, isapc and q35), then
  a fresh snapshot right after: the layout the job reused equals it field for field.
* What keeps it: reads, monitor queries, port writes that remap nothing (an ELCR change is
  read again into the reused layout), BAR sizing that restores every register, a second
  ``after()``.
* What breaks it: a step that moves a BAR, a configuration write that changes a header, a
  hand write to 0xCF8/0xCFC, a qtest port or memory write and a non-read monitor command
  behind the bus, a write to a VGA data port (the chain-4 window mapped; VBE), a QMP
  event: each makes the next layout fresh, and the fresh one differs from the kept one
  where the change is.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterator

import pytest

from harness import job
from harness.config import DRIVE_CONTROLLERS, PCI_CLASS_VGA, VGA_WINDOW, load_machine
from harness.devices import load_catalog
from harness.qemu.bus import PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA, PortChannel
from harness.qemu.layout import Layout, diff, refresh, snapshot
from harness.qemu.livebus import REMAPPING_PORTS, LiveBus
from harness.qemu.machine import Machine
from harness.nt.registry import Registry
from harness import testbed  # (the module: pytest would take a Testbed class for tests)
from harness.verify import PCI_CONFIG_REGIONS
from helpers import CONFIGS, machine_spec, model_items

#: Left out: jobs that wait seconds for a stalled DMA transfer (the layout path is the
#: same as on their devices' catalog machines below).
SLOW_JOBS = {"dma-channel-stall", "floppy-sb16-dma2"}
MACHINE_FILES = [p for p in sorted((CONFIGS / "machines").glob("*.yaml")) + sorted((CONFIGS / "conflicts").glob("*.yaml"))
                 if p.stem not in SLOW_JOBS]
#: How many catalog models share one machine in the catalog sample.
MODELS_PER_MACHINE = 8


def _display(model) -> bool:
    """A VGA: a model that decodes the legacy window, or a PCI VGA-class function."""
    return any(f.kind == "memory" and f.start == VGA_WINDOW for f in model.fixed) or (
        model.pci is not None and model.pci.class_code == PCI_CLASS_VGA)


def _exclusive(model) -> str | None:
    """What a machine of the catalog sample holds one of: a VGA, a drive controller's bus,
    a device QEMU takes once per machine."""
    if _display(model):
        return "display"
    return model.bus if model.bus in DRIVE_CONTROLLERS else model.one_per_machine


def _catalog_machines() -> list[tuple[str, str]]:
    """(name, machine text): every catalog model on each machine type it runs on, packed
    several to a machine (:func:`_exclusive`)."""
    catalog = load_catalog()
    out = []
    for machine in ("pc", "isapc", "q35"):
        chunks: list[list[str]] = []
        for name in sorted(catalog):
            model = catalog[name]
            if machine not in model.machines or (machine != "q35" and model.bus == "pcie"):
                continue
            key = _exclusive(model)
            for chunk in chunks:
                if len(chunk) < MODELS_PER_MACHINE and (key is None or key not in {_exclusive(catalog[n]) for n in chunk}):
                    chunk.append(name)
                    break
            else:
                chunks.append([name])
        for index, chunk in enumerate(chunks):
            chunk.sort(key=lambda n: catalog[n].graphic_console != "first")  # QEMU's console 0 first
            items = [item for i, name in enumerate(chunk) for item in model_items(name, f"m{i}-")[1]]
            text = f"machine: {machine}\ndevices:\n" + "".join(f"  - {json.dumps(i)}\n" for i in items)
            out.append((f"{machine}-{index}:{'+'.join(chunk)}", text))
    return out


CATALOG_MACHINES = _catalog_machines()


@dataclasses.dataclass
class Observed:
    result: job.JobResult
    why: str | None      # why the post-drivers layout was taken afresh; None: reused
    fresh: Layout        # a fresh snapshot right after the job's own
    changed: bool        # the post-drivers layout differs from the post-firmware one


def run_observed(spec, out: Path, monkeypatch: pytest.MonkeyPatch, **kwargs) -> Observed:
    """The main job on ``spec`` (PIC HAL), watched where it collects its findings."""
    seen: dict[str, object] = {}
    real = job.collect

    def observing(bed, *args, **kw):
        result = real(bed, *args, **kw)
        seen.update(why=bed.after_fresh_because, fresh=snapshot(bed.machine, "post-drivers"),
                    before=bed.before.layout)
        return result

    monkeypatch.setattr(job, "collect", observing)
    result = job.run_job(spec, out, picture=False, hal="pic", all_files=lambda r: False, **kwargs)
    before: Layout = seen["before"]  # type: ignore[assignment]
    assert result.layout.to_dict() == seen["fresh"].to_dict(), diff(seen["fresh"], result.layout)  # type: ignore
    assert result.timings["post-drivers layout reused"] == float(seen["why"] is None)
    return Observed(result, seen["why"], seen["fresh"],  # type: ignore[arg-type]
                    dataclasses.replace(result.layout, phase=before.phase) != before)


@pytest.mark.parametrize("path", MACHINE_FILES, ids=lambda p: p.stem)
def test_machine_files_reuse_equals_fresh(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal to a fresh snapshot; refused only where the hardware changed (or a step moved
    a BAR after the drivers: it may move it back where the firmware had it)."""
    spec = load_machine(path)
    seen = run_observed(spec, tmp_path / "out", monkeypatch)
    moves_back = any(a.phase == "post-drivers" and a.kind in ("move_bar", "pci_write", "set_command")
                     for a in spec.after_firmware)
    # with the configuration ports taken from the host bridge, no write there can be read back
    config_ports_taken = any(s.space == "io" and s.name in PCI_CONFIG_REGIONS for s in seen.result.layout.shadowed)
    assert seen.why is None or seen.changed or moves_back or config_ports_taken, seen.why


@pytest.mark.parametrize("name,text", CATALOG_MACHINES, ids=[n for n, _ in CATALOG_MACHINES])
def test_catalog_reuse_equals_fresh(name: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal to a fresh snapshot; refused only where the hardware changed."""
    seen = run_observed(machine_spec(text, f"<{name}>"), tmp_path / "out", monkeypatch)
    assert seen.why is None or seen.changed, seen.why
    # A display's data ports are decoded by a block the rule knows (measured).
    for dev in seen.result.spec.devices:
        if _display(dev.model):
            for port in (0x3C5, 0x3CF):
                names = {r.name.split(" @")[0] for r in seen.result.layout.io
                         if r.owner == dev.id and r.start <= port <= r.end}
                assert len(names) == 1 and port in REMAPPING_PORTS.get(names.pop(), (1, ()))[1], (dev.id, port, names)


# ---------------------------------------------------------------------- what breaks it
NEGATIVE = """\
machine: pc
devices:
  - {model: VGA, id: vga}
  - {model: e1000, id: nic0, addr: 3}
"""


#: The tests on the machine below share it (one boot, on one worker).
on_pc = pytest.mark.xdist_group("snapreuse-pc")


@pytest.fixture(scope="module")
def pc() -> Iterator[Machine]:
    with Machine(machine_spec(NEGATIVE)) as m:
        m.run_firmware()
        assert m.qtest is not None
        yield m


def adopted(m: Machine) -> tuple[LiveBus, Layout]:
    bus = LiveBus(m)
    return bus, snapshot(m, "post-firmware", monitor_reads_to=bus.adopt)


def nic(m: Machine) -> tuple[int, int, int]:
    fn = next(f for f in snapshot(m).pci if f.qdev_id == "nic0")
    return fn.bus, fn.slot, fn.function


def fresh_differs(m: Machine, kept: Layout, *expected: str) -> list[str]:
    lines = diff(kept, snapshot(m, kept.phase))
    assert lines and all(any(e in line for line in lines) for e in expected), lines
    return lines


@on_pc
def test_nothing_decoded_changed_keeps_the_snapshot(pc: Machine) -> None:
    """Reads, monitor queries, port writes elsewhere and BAR sizing through the bus (it
    restores every register) keep the snapshot; refresh equals a fresh one."""
    key = nic(pc)  # (a snapshot: its 0xCF8 writes are not the bus's, so before adopting)
    bus, kept = adopted(pc)
    pc.hmp("info pic")
    pc.qmp("query-pci")
    bus.write_port(0x80, 0x5A)            # the POST port: decodes nothing new
    bus.read_config(*key, 0, 64)
    bar0 = int.from_bytes(bus.read_config(*key, 0x10, 4), "little")
    bus.probe_config(*key, [(0x10, 0xFFFFFFFF, bar0)])
    elcr = bus.read_port(0x4D0)
    bus.write_port(0x4D0, elcr ^ 0x20)    # IRQ 5 edge <-> level: read again, not kept
    assert bus.layout_unchanged() is None
    again = bus.refresh(kept, "post-drivers")
    assert bus.layout_unchanged() is None and bus.refresh(kept, "post-drivers") == again  # its reads are its own
    assert again.to_dict() == snapshot(pc, "post-drivers").to_dict() == refresh(kept, pc, "post-drivers").to_dict()
    assert again.elcr == kept.elcr ^ 0x20
    bus.write_port(0x4D0, elcr)


@on_pc
def test_a_header_change_makes_it_fresh(pc: Machine) -> None:
    key = nic(pc)  # (a snapshot: its 0xCF8 writes are not the bus's, so before adopting)
    bus, kept = adopted(pc)
    command = int.from_bytes(bus.read_config(*key, 0x04, 2), "little")
    bus.write_config(*key, 0x04, (command & ~1).to_bytes(2, "little"))  # I/O decoding off
    try:
        assert "configuration write changed" in (bus.layout_unchanged() or "")
        fresh_differs(pc, kept, "command", "io -")
    finally:
        bus.write_config(*key, 0x04, command.to_bytes(2, "little"))


@on_pc
def test_a_hand_write_to_cf8_makes_it_fresh(pc: Machine) -> None:
    key = nic(pc)  # (a snapshot: its 0xCF8 writes are not the bus's, so before adopting)
    bus, kept = adopted(pc)
    command = PortChannel.config_address(*key, 0x04)
    old = bus.read_config(*key, 0x04, 2)
    bus.write_port(PCI_CONFIG_ADDRESS, command, 4)
    bus.write_port(PCI_CONFIG_DATA, int.from_bytes(old, "little") & ~1, 2)
    try:
        assert "0xcf8" in (bus.layout_unchanged() or "")
        fresh_differs(pc, kept, "command")
    finally:
        bus.write_port(PCI_CONFIG_ADDRESS, command, 4)
        bus.write_port(PCI_CONFIG_DATA, int.from_bytes(old, "little"), 2)


@on_pc
def test_writes_behind_the_bus_make_it_fresh(pc: Machine) -> None:
    """A qtest write the bus did not make, and a monitor command that is not a read."""
    key = nic(pc)
    bus, kept = adopted(pc)
    old = bus.read_config(*key, 0x04, 2)
    assert pc.qtest is not None
    pc.qtest.execute([f"outl {PCI_CONFIG_ADDRESS:#x} {PortChannel.config_address(*key, 0x04):#x}",
                      f"outw {PCI_CONFIG_DATA:#x} {int.from_bytes(old, 'little') & ~1:#x}"])
    try:
        assert "qtest write(s) not made through this bus" in (bus.layout_unchanged() or "")
        fresh_differs(pc, kept, "command")
    finally:
        pc.qtest.execute([f"outl {PCI_CONFIG_ADDRESS:#x} {PortChannel.config_address(*key, 0x04):#x}",
                          f"outw {PCI_CONFIG_DATA:#x} {int.from_bytes(old, 'little'):#x}"])
    bus, kept = adopted(pc)
    pc.qtest.execute(["writeb 0x7000 0x5a"])  # RAM: a memory write all the same
    assert bus.layout_unchanged() == "1 qtest write(s) not made through this bus"
    bus, kept = adopted(pc)
    pc.hmp("o /b 0x80 0x12")
    assert bus.layout_unchanged() == "the monitor command 'o /b 0x80 0x12'"
    bus, kept = adopted(pc)
    pc.qmp("set-action", {"reboot": "shutdown"})  # a command that sets something (the policy it had)
    assert bus.layout_unchanged() == "the QMP command 'set-action'"


@on_pc
def test_a_vga_chain4_write_makes_it_fresh(pc: Machine) -> None:
    """Sequencer writes that turn chain-4 on (all planes, SR4 bit 3): QEMU maps the
    ``vga.chain4`` alias over the legacy window (vga.c, vga_update_memory_access)."""
    bus, kept = adopted(pc)
    old = {}
    for index in (2, 4):
        bus.write_port(0x3C4, index)
        old[index] = bus.read_port(0x3C5)
    assert bus.layout_unchanged() is None  # reads, and writes to the index port, remap nothing
    bus.write_port(0x3C4, 0x0F02, 2)  # index 2 and its data in one word: all planes
    assert "a port write to 0x3c4 (vga: a VGA data port" in (bus.layout_unchanged() or "")
    bus.write_port(0x3C4, 4)
    bus.write_port(0x3C5, old[4] | 0x08)
    try:
        fresh_differs(pc, kept, "memory + 0xa0000", "vga.vram")  # the alias shows its target
    finally:
        for index in (2, 4):
            bus.write_port(0x3C4, index)
            bus.write_port(0x3C5, old[index])
    assert snapshot(pc, kept.phase).to_dict() == kept.to_dict()  # as it was


@on_pc
def test_vbe_data_writes_make_it_fresh(pc: Machine) -> None:
    """The VBE data port (bank, enable) calls vga_update_memory_access too; its index port
    does not.  The ports are named as REMAPPING_PORTS has them (measured)."""
    bus, kept = adopted(pc)
    for port in REMAPPING_PORTS["vbe"][1]:
        assert {r.name.split(" @")[0] for r in kept.io if r.start <= port <= r.end} == {"vbe"}
    bus.write_port(0x1CE, 5, 2)  # VBE_DISPI_INDEX_BANK (a word at the index port: the index alone)
    bank = bus.read_port(0x1CF, 2)
    assert bus.layout_unchanged() is None
    bus.write_port(0x1CF, bank, 2)
    assert "0x1cf (vbe" in (bus.layout_unchanged() or "")
    assert snapshot(pc, kept.phase).to_dict() == kept.to_dict()  # the same bank: nothing moved


@on_pc
def test_testbed_after_reuses_until_told(pc: Machine) -> None:
    """A test bed's after() reuses its own post-firmware snapshot, again on a second call;
    ``fresh=True`` and a snapshot handed in from elsewhere (the pytest plugin's) take a
    fresh one, each saying why."""
    with Registry(":memory:") as registry:
        bed = testbed.Testbed(pc, registry)
        first = bed.after()
        assert bed.after_fresh_because is None
        assert bed.after().layout == first.layout and bed.after_fresh_because is None
        assert first.layout.to_dict() == snapshot(pc, "post-drivers").to_dict()
        assert bed.after(fresh=True).layout.to_dict() == first.layout.to_dict()
        assert bed.after_fresh_because == "a fresh snapshot was asked for"
    with Registry(":memory:") as registry:
        handed = testbed.Testbed(pc, registry, firmware_layout=snapshot(pc, "post-firmware"))
        assert handed.after().layout.to_dict() == first.layout.to_dict()
        assert handed.after_fresh_because == "the post-firmware snapshot came from elsewhere (no bus adopted it)"


@on_pc
def test_a_qmp_event_makes_it_fresh(pc: Machine) -> None:
    """Last on this machine: a reset (the RESET event) clears every BAR."""
    bus, kept = adopted(pc)
    mark = pc.event_count
    pc.qmp("set-action", {"reboot": "reset"})  # (the harness makes a reset a shutdown)
    pc.qmp("system_reset")
    pc.wait_event("RESET", after=mark, timeout=10)
    assert bus.layout_unchanged() in ("a QMP event (the machine ran, stopped or was reset)",
                                      "the QMP command 'set-action'")
    fresh_differs(pc, kept, "BAR0")


# ---------------------------------------------------------------------- the job
MOVED = """\
machine: pc
devices:
  - {model: e1000, id: nic0, addr: 3}
after_firmware:
  - {move_bar: nic0, bar: 1, address: 0xd000, phase: post-drivers}
"""


def test_a_step_that_moves_a_bar_makes_it_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = run_observed(machine_spec(MOVED), tmp_path / "out", monkeypatch)
    assert "0xcf8" in (seen.why or "") and seen.changed
    bar1 = next(b for b in seen.result.layout.pci_by_id("nic0").bars if b.index == 1)
    assert bar1.base == 0xD000 and any(r.start == 0xD000 for r in seen.result.layout.ranges_of("nic0"))


def test_a_fresh_layout_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """collect(fresh_layout=True): the same layout, taken afresh, and the report says so."""
    spec = load_machine(CONFIGS / "machines" / "isapc.yaml")
    real = job.collect
    monkeypatch.setattr(job, "collect", lambda bed, *a, **kw: real(bed, *a, **kw, fresh_layout=True))
    seen = run_observed(spec, tmp_path / "out", monkeypatch)
    assert seen.why == "a fresh snapshot was asked for" and not seen.changed
    assert json.loads((tmp_path / "out" / "report.json").read_text())["timings"]["post-drivers layout reused"] == 0.0
