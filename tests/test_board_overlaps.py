"""Every decoder of the board has a claimant, whatever card lands on it (tests/board_overlaps.py
generates the machines from the live layout of a bare machine of each type).

For each range, line and channel the board decodes, a card over it must end the main job
as a conflict in which the board device is named: as the claimant whose claim meets the
card's (refused one way or the other) or, where nothing claims the board device on NT,
as the other side of the hardware collision; and no board claimant may claim a range
its board device does not decode.
"""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

from board_overlaps import FIRMWARE_STOP_RULES, FIRMWARE_STOPS, Overlap, Target, board_targets, machine, plan
from harness.claimants import service_of
from harness.config import parse_machine_text
from harness.devices import board_device_of, board_model
from harness.job import JobResult, run_job
from harness.nt.hal import ICH9_SCI_IRQS
from harness.qemu.bus import machine_ports
from harness.qemu.layout import Layout, snapshot
from harness.qemu.machine import FIRMWARE_TIMEOUT, FirmwareStalled, Machine, QMPTimeout
from harness.verdict import CONFLICT
from harness.verify import ACPI_SCI, CASCADE

pytestmark = pytest.mark.qemu

KINDS = ("isapc", "pc", "q35")
#: Hardware collisions whose kind names the board part (the cascade is the 8259s' line,
#: the SCI the ACPI function's): they list only the card.
NAMED_BY_KIND = {CASCADE: "interrupt-controllers", ACPI_SCI: "acpi"}


@cache
def bare(kind: str) -> tuple[Layout, int | None]:
    """The post-firmware layout of a machine with no cards, and its SCI line (read live:
    PIIX4's PM function's interrupt line, ICH9's ACPI_CNTL SCI_IRQ_SEL)."""
    with Machine(parse_machine_text(f"name: bare-{kind}\nmachine: {kind}\n", f"<bare {kind}>")) as m:
        m.run_firmware()
        layout = snapshot(m)
        sci = None
        if kind == "pc":
            sci = layout.pci_function("00:01.3").interrupt_line
        elif kind == "q35":
            sci = ICH9_SCI_IRQS[machine_ports(m).read_config(0, 0x1F, 0, 0x44, 1) & 7]
    return layout, sci


_SPAN = re.compile(r"(?:ports?|memory) (0x[0-9a-f]+)-(0x[0-9a-f]+)")
_LINE = re.compile(r"(?:IRQ|DMA channel) (\d+)")


def _covers(resource: str, target: Target, at: int) -> bool:
    """Whether an error log's resource text ("ports 0x60-0x60", "IRQ 1", "DMA channel 2")
    is ``target``'s where the card overlaps it (``at``)."""
    if target.space in ("irq", "dma"):
        m = _LINE.fullmatch(resource)
        return m is not None and int(m.group(1)) == at and resource.startswith("IRQ" if target.space == "irq" else "DMA")
    m = _SPAN.match(resource)
    return m is not None and int(m.group(1), 16) <= at <= int(m.group(2), 16)


def _claimant_service(target: Target, sci: int | None, hal_name: str) -> str | None:
    """Who claims ``target`` on NT: its board device's claimant (the HAL under the name of
    the HAL that ran), but the SCI, the ACPI function's line, is the HAL's claim
    (device_models/boards/pc.yaml)."""
    if target.space == "irq" and target.board.name == "acpi" and target.start == sci:
        return hal_name
    return service_of(target.board.claimant, hal_name) if target.board.claimant else None


def overlap_problems(result: JobResult, o: Overlap, sci: int | None) -> list[str]:
    """What is wrong with how the job reports card ``o.card`` over its board target."""
    t = o.target
    what = f"{o.card} over {t.describe()}"
    board = _claimant_service(t, sci, result.hal_name)
    card = next((c.claimant for c in result.claimants if c.device == o.card), None)
    problems = []
    met = [e for e in result.conflicts
           if {e["driver"], e["conflict"]["holder_driver"]} == {card, board}
           and (_covers(e["conflict"]["requested"], t, o.at) or _covers(e["conflict"]["held"], t, o.at))]
    # A BAR moved after the firmware meets no claim of the board's where its driver puts it
    # back (the NIC drivers), or meets the first of the several it covers (the generic one).
    if board is not None and not met and not o.step:
        problems.append(f"{what}: no refused claim between {card} and the board's claimant {board}")
    if board is None and any(c.device == o.card and c.status != "claimed" for c in result.claimants):
        problems.append(f"{what}: nothing claims the board device, yet the card's claim was refused")
    named = [c for c in result.collisions if o.card in c.devices
             and (t.board.label in c.devices or NAMED_BY_KIND.get(c.kind) == t.board.name)]
    if not named:
        problems.append(f"{what}: no hardware collision names both the card and {t.board.label}: "
                        + "; ".join(f"{c.kind} {c.resource} {c.devices}" for c in result.collisions
                                    if o.card in c.devices))
    return problems


def claims_beyond_the_board(result: JobResult, kind: str, layout: Layout, cards: set[str]) -> list[str]:
    """Board claims (ports, memory) that reach past what one board device decodes, in the
    bare machine's layout or in this run's (the firmware places the board's BARs, PMBASE
    and SMBus base elsewhere beside PCI cards)."""
    board = board_model(kind)
    decoded: dict[tuple[str, str], list[tuple[int, int]]] = {}
    live = result.layout
    for r in (*layout.io, *layout.memory, *live.io, *live.memory, *live.shadowed):
        device = board_device_of(board, r.owner_type, r.name)
        if device is not None and r.owner not in cards:
            decoded.setdefault(("port" if r.space == "io" else "memory", device.name), []).append((r.start, r.end))
    out = []
    for c in result.checks:
        m = _SPAN.match(c.resource)
        if m is None or set(c.expected) & cards or c.device is None:
            continue
        lo, hi = int(m.group(1), 16), int(m.group(2), 16)
        space = c.resource.split()[0]
        inside = [name for (s, name), spans in decoded.items() if s == space and _within(lo, hi, spans)]
        if len(inside) != 1:
            out.append(f"{c.driver} {c.device}: {c.resource} is not what one board device decodes "
                       f"(bare {kind}: {inside or 'none'})")
    return out


def _within(lo: int, hi: int, spans: list[tuple[int, int]]) -> bool:
    cursor = lo
    for start, end in sorted(spans):
        if start <= cursor <= end:
            cursor = end + 1
    return cursor > hi


@pytest.mark.parametrize("kind", KINDS)
def test_a_card_over_each_board_decoder_meets_its_claimant(kind: str, tmp_path: Path) -> None:
    layout, sci = bare(kind)
    targets, strays = board_targets(kind, layout, sci)
    assert not strays, f"ranges of the bare {kind} no board device owns: {strays}"
    boots, left = plan(kind, targets)
    # What no card can overlap: on isapc (no PCI BAR to move) the ranges whose every port
    # stops the firmware (fw_cfg, the RTC's index) and the firmware ROMs (no ISA memory card).
    assert all(t.space == "memory" or all(p in FIRMWARE_STOPS[kind] for p in range(t.start, t.end + 1))
               for t in left), [t.describe() for t in left]
    assert not left or kind == "isapc"
    covered = {t for boot in boots for t in (o.target for o in boot)}
    assert covered | set(left) == set(targets)
    problems: list[str] = []
    for i, overlaps in enumerate(boots):
        spec = machine(kind, f"board-overlaps-{kind}-{i}", overlaps)
        result = run_job(spec, tmp_path / str(i), picture=False, all_files=lambda r: False)
        assert result.verdict == CONFLICT, result.format_text()
        if any(e.stopped for e in result.events):
            # The APIC HAL's agent guest never runs when the firmware resets at once (the
            # PCI configuration ports taken): the event names the cards; the PIC HAL,
            # which needs no guest, shows the claims.
            (event,) = result.events
            assert event.kind == "early-reset" and set(event.devices) == {o.card for o in overlaps}, \
                result.format_text()
            result = run_job(spec, tmp_path / f"{i}-pic", picture=False, all_files=lambda r: False, hal="pic")
            assert result.verdict == CONFLICT and not any(e.stopped for e in result.events), result.format_text()
        for o in overlaps:
            problems += overlap_problems(result, o, sci)
        problems += claims_beyond_the_board(result, kind, layout, {o.card for o in overlaps})
    assert not problems, "\n".join(problems)


def test_a_card_on_the_harness_firmware_log_port_is_refused() -> None:
    """The one board-side decoder no card is generated for: 0x402, the harness's own
    firmware-log console while ``firmware_log`` is on, refused at the card's line."""
    from harness.errors import ConfigError
    with pytest.raises(ConfigError, match=r"m.yaml:4: devices\[0\]\.iobase: .*firmware-log port"):
        parse_machine_text("machine: pc\nfirmware_log: true\ndevices:\n  - {model: isa-debugcon, id: d, iobase: 0x402}\n",
                           "m.yaml")


@pytest.mark.slow
def test_a_card_on_these_ports_stops_the_firmware() -> None:
    """The fact behind FIRMWARE_STOPS and FIRMWARE_STOP_RULES: with a debug console on one
    of these ports SeaBIOS never reaches its end (a bare machine's, the control, takes well
    under a second under TCG), and the progress watch says so before the firmware bound, by
    the rule measured for the port.  The machines of one type run side by side, each waited
    on from a thread of its own.  The generated machines of the test above are the
    converse: every port they use lets the firmware finish."""
    def outcome(m: Machine) -> tuple[str, float] | str:
        try:
            m.run_firmware()
        except FirmwareStalled as exc:
            return exc.stall.rule, exc.seconds
        except QMPTimeout as exc:
            return str(exc).splitlines()[0]
        return "finished"

    for kind, ports in FIRMWARE_STOPS.items():
        with contextlib.ExitStack() as stack:
            machines = {}
            for port in sorted(ports):
                text = f"name: stop-{port:x}\nmachine: {kind}\ndevices:\n  - {{model: isa-debugcon, id: d, iobase: {port:#x}}}\n"
                machines[port] = stack.enter_context(Machine(parse_machine_text(text, "<stop>")))
                machines[port].start_firmware()
            control = stack.enter_context(Machine(parse_machine_text(f"machine: {kind}\n", "<control>")))
            control.run_firmware()
            with ThreadPoolExecutor(len(machines)) as pool:
                seen = dict(zip(machines, pool.map(outcome, machines.values())))
            bound = FIRMWARE_TIMEOUT["tcg"]
            wrong = {hex(p): o for p, o in seen.items()
                     if not (isinstance(o, tuple) and o[0] == FIRMWARE_STOP_RULES[p] and o[1] < bound)}
            assert not wrong, (kind, wrong)
