"""Board models against live QEMU (TCG): every built-in device of each machine type decodes
what device_models/boards says, every range QEMU decodes belongs to one board device, and
every board device's claimant holds its claim in the ResourceMap (or it says why not).

One boot per machine type; the checks share it.
"""

from __future__ import annotations

import pytest

from harness.claimants import resolve_board
from harness.config import BOARD_PCI_FUNCTIONS, parse_machine_text, place_pci_functions
from harness.devices import BOARD_CLAIMANTS, MACHINE_KINDS, board_model
from harness.drivers.legacy import BOARD_DRIVERS, OTHER_BOARD_CLAIMANTS
from harness.nt.registry import Registry
from harness.qemu.layout import ISA_IRQ_PROPERTIES, snapshot
from harness.qemu.machine import Machine
from harness import testbed

pytestmark = pytest.mark.qemu


def test_every_board_claimant_has_a_driver() -> None:
    assert set(BOARD_CLAIMANTS) == set(BOARD_DRIVERS) | set(OTHER_BOARD_CLAIMANTS)


def test_board_device_names_are_unique_per_machine() -> None:
    for kind in MACHINE_KINDS:
        names = [d.name for d in board_model(kind)]
        assert len(names) == len(set(names)), kind


def _fmt(ranges) -> str:
    return "{" + ", ".join(f"{k} {a:#x}-{b:#x}" for k, a, b in sorted(ranges)) + "}"


@pytest.mark.parametrize("kind", MACHINE_KINDS)
def test_board_model_matches_qemu(kind: str, tmp_path) -> None:
    spec = parse_machine_text(f"machine: {kind}\n", f"<board {kind}>")
    failures: list[str] = []
    with Machine(spec) as machine:
        machine.run_firmware()
        layout = snapshot(machine)
        registry = Registry(tmp_path / "registry.sqlite")
        try:
            bed = testbed.Testbed(machine, registry)
            bed.run([])
            board = bed.board
            assert board == resolve_board(kind, bed.hal)

            # 1. Each board device decodes exactly what the model says (ports and memory).
            for resolved in board:
                device = resolved.device
                model = {r for r in resolved.decoded if r[0] in ("port", "memory")}
                qemu = {("port" if r.space == "io" else "memory", r.start, r.end)
                        for r in (*layout.io, *layout.memory) if device.matches(r.owner_type, r.name)}
                # QEMU splits some runs into adjacent regions (rtc index/data): compare bytes.
                if _merged(model) != _merged(qemu):
                    failures.append(f"{device.name}: model {_fmt(model)}, QEMU {_fmt(qemu)}")
            # 2. Every decoded range (RAM and the harness's own devices aside) is a board device's.
            for r in (*layout.io, *layout.memory):
                if r.kind == "ram" or (r.owner or "").startswith("harness"):
                    continue
                owners = [res.device.name for res in board if res.device.matches(r.owner_type, r.name)]
                if len(owners) != 1:
                    failures.append(f"{r.space} {r.start:#x}-{r.end:#x} {r.name} ({r.owner_type}): "
                                    f"board devices {owners or 'none'}")
            # 3. The ISA parts' lines are the model's.
            for dev in layout.isa:
                if dev.id is not None:
                    continue
                mine = [res.device for res in board if res.device.qemu_type == dev.type]
                for prop, value in dev.properties.items():
                    if prop in (*ISA_IRQ_PROPERTIES, "dma"):
                        field = "dmas" if prop == "dma" else "irqs"
                        if not any(value in getattr(d, field) for d in mine):
                            failures.append(f"{dev.type} {prop} {value} is in no board device of type {dev.type}")
            # 3a. Each board PCI function is at the address the model gives, with its IDs.
            by_bdf = {f.bdf: f for f in layout.pci}
            for resolved in board:
                pci = resolved.device.pci
                if pci is not None and (pci.bdf not in by_bdf or
                                        (by_bdf[pci.bdf].vendor, by_bdf[pci.bdf].device) != pci.ids):
                    found = [f.bdf for f in layout.pci if (f.vendor, f.device) == pci.ids]
                    failures.append(f"{resolved.device.name}: model {pci.bdf}, query-pci has its IDs at {found}")
            # 3b'. The board's own PCI functions are config.BOARD_PCI_FUNCTIONS (the addresses
            # a machine file may not use).
            board_fns = {(f.slot, f.function) for f in layout.pci if f.bus == 0 and not f.qdev_id}
            if board_fns != set(BOARD_PCI_FUNCTIONS.get(kind, {})):
                failures.append(f"board PCI functions {sorted(board_fns)}, BOARD_PCI_FUNCTIONS "
                                f"{sorted(BOARD_PCI_FUNCTIONS.get(kind, {}))}")
            # 3b. A board PCI function's routed INTx line is the model's interrupt.
            for resolved in board:
                if resolved.device.pci_interrupt:
                    fn = by_bdf[resolved.device.pci.bdf]
                    irqs = [a for k, a, _ in resolved.decoded if k == "irq"]
                    if irqs != [fn.interrupt_line]:
                        failures.append(f"{resolved.device.name}: model IRQ {irqs}, query-pci {fn.interrupt_line}")
            # 4. Every board device is claimed by its claimant, or says why nothing claims it.
            for line in bed.claimants(layout):
                if line.device.startswith("board:") and line.status != "claimed":
                    device = next(r.device for r in board if f"board:{r.device.name}" == line.device)
                    if device.claimant is not None or not line.detail:
                        failures.append(f"{line.describe()}")
            failures += [f"error log: {e.to_dict()['message']}" for e in bed.io.error_log]
        finally:
            registry.close()
    assert not failures, f"board {kind}:\n  " + "\n  ".join(failures)


def _merged(ranges) -> list[tuple[str, int, int]]:
    """Adjacent ranges of one kind joined (QEMU splits the RTC's index and data ports)."""
    out: list[list] = []
    for kind, lo, hi in sorted(ranges):
        if out and out[-1][0] == kind and lo <= out[-1][2] + 1:
            out[-1][2] = max(out[-1][2], hi)
        else:
            out.append([kind, lo, hi])
    return [tuple(r) for r in out]


@pytest.mark.parametrize("item, message", [
    ("{name: x, qemu_type: null, claimant: none, ports: [{start: 0x80, length: 1}]}",
     r"b.yaml:3: devices\[0\].claimant: a device nothing claims needs a 'reason'"),
    ("{name: x, qemu_type: t, claimant: hall}", r"b.yaml:3: devices\[0\].claimant: unknown value 'hall' \(did you mean 'hal'\?\); expected one of"),
    ("{name: x, qemu_type: t, claimant: hal, bars: [{bar: 4, kind: io, size: 16}]}",
     r"b.yaml:3: devices\[0\].bars: register-placed resources need the 'pci' function"),
    ("{name: x, qemu_type: t, claimant: hal, pci: {vendor: 0x8086, device: 0x7010}}",
     r"b.yaml:3: devices\[0\].pci: missing required field"),
    ("{name: x, qemu_type: t, claimant: hal, pci: {vendor: 0x8086, device: 0x7010, slot: 32, function: 0}}",
     r"b.yaml:3: devices\[0\].pci.slot: "),
    ("{name: x, qemu_type: t, claimant: hal, irq: [16]}", r"b.yaml:3: devices\[0\].irq: 16 is not a irq number"),
    ("{name: x, qemu_type: t, claimant: hal, port: []}",
     r"b.yaml:3: devices\[0\].port: unknown field 'port' \(did you mean 'ports'\?\)"),
])
def test_bad_board_files_are_refused_with_file_line_and_field(tmp_path, item: str, message: str) -> None:
    from harness.devices import _load_boards
    from harness.errors import ConfigError
    (tmp_path / "b.yaml").write_text(f"machines: [pc]\ndevices:\n  - {item}\n")
    with pytest.raises(ConfigError, match=message):
        _load_boards(tmp_path)


def test_pci_functions_sit_where_place_pci_functions_says() -> None:
    """QEMU's placement against config.place_pci_functions (helpers.PLACEMENT), one boot."""
    from helpers import PLACEMENT, PLACEMENT_MACHINE
    spec = parse_machine_text(PLACEMENT_MACHINE, "<placement>")
    with Machine(spec) as machine:
        machine.run_firmware()
        layout = snapshot(machine)
    measured = {f.qdev_id: (f.slot, f.function) for f in layout.pci if f.qdev_id}
    assert measured == place_pci_functions("pc", spec.devices) == PLACEMENT


@pytest.mark.parametrize("machine, addr, words", [
    ("pc-i440fx-7.2", "0.1", "single function device can't be populated in function 0.1"),
    ("pc-q35-7.2", "0x1f.2", "not available for e1000, in use by ich9-ahci"),
])
def test_qemu_refuses_what_board_pci_functions_forbids(machine: str, addr: str, words: str) -> None:
    """Why config refuses those addresses: QEMU itself exits on them (no machine runs)."""
    import subprocess
    from harness.qemu.binary import QEMU_BINARY
    done = subprocess.run([QEMU_BINARY, "-machine", machine, "-nodefaults", "-display", "none", "-S",
                           "-monitor", "none", "-device", f"e1000,addr={addr}"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and words in done.stderr, done.stderr
