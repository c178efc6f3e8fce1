"""PnP assignment benchmark (``make bench-pnp``): synthetic arbitration sets, no QEMU.

* Solve time of :func:`harness.nt.pnp.solve` on ISA sets (N cards, 4-8 alternative lists
  each, 32 ports per list in a tight pool of places, some cards with an IRQ group) with a
  planted solution hidden among each card's alternatives (so one exists and greedy
  first-fit does not find it), plus PCI functions with memory and I/O BARs inside bridge
  windows (placed by the arbiter), given as address bounds or as a tree of bridge nodes.
* Agreement with :func:`harness.nt.pnp.exhaustive_solve` (every combination) on small
  random instances: same verdict, same assignment; both timed.

Writes the table to stdout and to ``benchmarks/RESULTS-pnp.md``.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

from harness.nt import pnp
from harness.nt.pnp import ConfigType, DeviceNode, with_priority
from harness.nt.resources import (CM_RESOURCE_LIST, CM_RESOURCE_MEMORY_WINDOW_DECODE,
                                  CM_RESOURCE_PORT_WINDOW_DECODE, IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_LIST,
                                  IO_RESOURCE_REQUIREMENTS_LIST, LCPRI_HARDRECONFIG, LCPRI_NORMAL,
                                  CmResourceShare, InterruptRequirement, Isa, Memory, MemoryRequirement,
                                  PCIBus, Port, PortRequirement)

ISA_LINES = (3, 4, 5, 7, 9, 10, 11, 12, 15)
EXCLUSIVE = CmResourceShare.CmResourceShareDeviceExclusive
PORT_BASE, PORT_LEN = 0x1000, 0x20


def isa_set(rng: random.Random, cards: int, slack: float = 1.5) -> list[DeviceNode]:
    """``cards`` cards over ``cards * slack`` port places; card i's planted place is
    place i, hidden at a random position among 4-8 alternatives; one card in eight
    also needs an IRQ (planted: a distinct line)."""
    places = int(cards * slack)
    nodes = []
    irq_cards = list(range(0, cards, 8))[:len(ISA_LINES)]
    for i in range(cards):
        k = rng.randint(4, 8)
        slots = rng.sample([p for p in range(places) if p != i], k - 1)
        slots.insert(rng.randrange(k), i)
        lists = []
        for s in slots:
            start = PORT_BASE + s * PORT_LEN
            descriptors = [PortRequirement(PORT_LEN, 1, start, start + PORT_LEN - 1)]
            if i in irq_cards:
                planted = ISA_LINES[irq_cards.index(i)]
                lines = rng.sample([v for v in ISA_LINES if v != planted], 2) + [planted]
                descriptors += [InterruptRequirement(v, v, option=IO_RESOURCE_ALTERNATIVE if j else 0)
                                for j, v in enumerate(lines)]
            lists.append(with_priority(LCPRI_HARDRECONFIG, *descriptors))
        nodes.append(DeviceNode(f"Root\\BENCH\\{i:04d}", f"isa{i}", {
            ConfigType.BASIC: IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, tuple(lists))}, movable=False))
    return nodes


def pci_set(rng: random.Random, bridges: int, per_bridge: int, tree: bool = False) -> list[DeviceNode]:
    """Functions behind ``bridges`` bridges, each bridge a 4 MiB memory and 4 KiB I/O
    window; each function two memory BARs (4 KiB-256 KiB) and one I/O BAR (16-64 ports).
    Without ``tree`` the windows are the BARs' address bounds; with it each bridge is a
    node of its own holding WINDOW_DECODE windows, and its functions, asking for any
    address, sit on it (``DeviceNode.parent``): the arbiter places them inside."""
    nodes = []
    for b in range(bridges):
        mem_lo, io_lo = 0xF0000000 + b * 0x400000, 0xC000 + b * 0x1000
        if tree:
            nodes.append(DeviceNode(f"PCI\\BENCH\\BRIDGE{b:02X}", f"bridge{b}", {
                ConfigType.BOOT: CM_RESOURCE_LIST.single(
                    PCIBus, 0, Memory(mem_lo, 0x400000, share=EXCLUSIVE, flags=CM_RESOURCE_MEMORY_WINDOW_DECODE),
                    Port(io_lo, 0x1000, share=EXCLUSIVE, flags=CM_RESOURCE_PORT_WINDOW_DECODE))}))
        mem_bounds = (0, 0xFFFFFFFF) if tree else (mem_lo, mem_lo + 0x3FFFFF)
        io_bounds = (0, 0xFFFF) if tree else (io_lo, io_lo + 0xFFF)
        for f in range(per_bridge):
            descriptors = [MemoryRequirement(size, size, *mem_bounds)
                           for size in (1 << rng.randint(12, 18), 1 << rng.randint(12, 18))]
            size = 1 << rng.randint(4, 6)
            descriptors.append(PortRequirement(size, size, *io_bounds))
            nodes.append(DeviceNode(f"PCI\\BENCH\\{b:02X}{f:02X}", f"pci{b}.{f}", {
                ConfigType.BASIC: IO_RESOURCE_REQUIREMENTS_LIST(
                    PCIBus, b + 1, f, (with_priority(LCPRI_NORMAL, *descriptors),))},
                parent=f"bridge{b}" if tree else None))
    return nodes


def small_instance(rng: random.Random) -> list[DeviceNode]:
    nodes = []
    for i in range(rng.randint(3, 6)):
        lists = []
        for _ in range(rng.randint(2, 4)):
            start = PORT_BASE + rng.randrange(5) * PORT_LEN
            lines = rng.sample(ISA_LINES[:4], rng.randint(1, 2))
            lists.append(IO_RESOURCE_LIST((PortRequirement(PORT_LEN, 1, start, start + PORT_LEN - 1),
                                           *(InterruptRequirement(v, v, option=IO_RESOURCE_ALTERNATIVE if j else 0)
                                             for j, v in enumerate(lines)))))
        nodes.append(DeviceNode(f"Root\\SMALL\\{i}", f"d{i}", {
            ConfigType.BASIC: IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, tuple(lists))}))
    return nodes


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> int:
    rows = ["| set | devices | candidates | placements | backtracks | pruned | solve (median) |",
            "|---|---|---|---|---|---|---|"]
    budget = 50_000
    for cards, bridges, per_bridge, slack, tree in (
            (16, 0, 0, 1.5, False), (32, 0, 0, 1.5, False), (64, 0, 0, 1.5, False), (64, 4, 8, 1.5, False),
            (64, 4, 8, 1.5, True), (64, 0, 0, 1.25, False), (128, 4, 8, 1.5, False)):
        rng = random.Random(cards * 1000 + bridges + int(slack * 100))
        nodes = isa_set(rng, cards, slack) + pci_set(rng, bridges, per_bridge, tree)
        count = sum(len(pnp.candidates(n)) for n in nodes)
        label = (f"{cards} ISA, {int(cards * slack)} places" +
                 (f" + {bridges}×{per_bridge} PCI {'on bridge nodes (the tree)' if tree else 'in bridge windows'}"
                  if bridges else ""))
        try:
            seconds, solution = timed(lambda: pnp.solve(nodes, budget=budget), 3)
        except pnp.PnpSearchLimit as exc:
            rows.append(f"| {label} | {len(nodes)} | {count} | > {budget} | — | — | budget exceeded: {exc} |")
            continue
        assert solution.satisfiable, f"{cards} cards: the planted solution exists"
        s = solution.stats
        rows.append(f"| {label} | {len(nodes)} | {count} | {s.nodes} | {s.backtracks} | {s.pruned} | "
                    f"{seconds * 1000:.1f} ms |")
    rng = random.Random(7)
    agree = sat = 0
    fast_t = slow_t = 0.0
    instances = 300
    for _ in range(instances):
        nodes = small_instance(rng)
        t = time.perf_counter()
        fast = pnp.solve(nodes)
        fast_t += time.perf_counter() - t
        t = time.perf_counter()
        slow = pnp.exhaustive_solve(nodes)
        slow_t += time.perf_counter() - t
        same = fast.satisfiable == slow.satisfiable and (not fast.satisfiable or fast.ranks() == slow.ranks())
        agree += same
        sat += fast.satisfiable
        if not same:
            print(f"DISAGREEMENT: {[n.name for n in nodes]}", file=sys.stderr)
    rows += ["", "| exhaustive check | instances | satisfiable | agree | search total | exhaustive total |",
             "|---|---|---|---|---|---|",
             f"| 3-6 devices, 2-4 lists, 1-2 IRQs each | {instances} | {sat} | {agree} | "
             f"{fast_t * 1000:.0f} ms | {slow_t * 1000:.0f} ms |"]
    text = "\n".join(rows) + "\n"
    sys.stdout.write(text)
    (Path(__file__).parent / "RESULTS-pnp.md").write_text(
        "# PnP assignment benchmark (`make bench-pnp`)\n\n" + text)
    return 0 if agree == instances else 1


if __name__ == "__main__":
    sys.exit(main())
