"""PnP resource assignment: logical configurations, priorities, the search and its core
(harness.nt.pnp, no QEMU), and the live side (harness.pnp_live) on real machines."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.config import load_machine
from harness.drivers import Ne2000Driver
from harness.nt import pnp
from harness.nt.arbiter import Arbiter, Owner, claims_of
from harness.nt.pnp import ConfigType, DeviceNode, with_priority
from harness.nt.registry import Registry, RegType
from harness.nt.resources import (CM_RESOURCE_LIST, IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_LIST,
                                  IO_RESOURCE_REQUIREMENTS_LIST, LCPRI_DESIRED, LCPRI_NORMAL,
                                  LCPRI_SUBOPTIMAL, Interrupt, InterruptRequirement, Isa, Port,
                                  PortRequirement)
from helpers import CONFIGS, machine_spec


def port_req(start: int, length: int = 8, **kw) -> PortRequirement:
    return PortRequirement(length, 1, start, start + length - 1, **kw)


def irq_req(*lines: int) -> list[InterruptRequirement]:
    return [InterruptRequirement(v, v, option=IO_RESOURCE_ALTERNATIVE if i else 0) for i, v in enumerate(lines)]


def node(name: str, *lists: IO_RESOURCE_LIST, kind: ConfigType = ConfigType.BASIC, **configs) -> DeviceNode:
    n = DeviceNode(f"Root\\TEST\\{name}", name)
    if lists:
        n.configs[kind] = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, tuple(lists))
    for key, value in configs.items():
        n.configs[ConfigType[key.upper()]] = value
    return n


def cm(*partials) -> CM_RESOURCE_LIST:
    return CM_RESOURCE_LIST.single(Isa, 0, *partials)


def ports_of(solution: pnp.Solution, name: str) -> list[int]:
    return [p.start for _, p in solution.resources(name).partials() if isinstance(p, Port)]


def held(*ports: int) -> Arbiter:
    """An arbiter where a legacy driver holds 8 ports at each of ``ports``."""
    arbiter = Arbiter()
    owner = Owner("Legacy", "\\Device\\Legacy0")
    arbiter.replace(owner, claims_of(owner, cm(*(Port(p, 8) for p in ports))))
    return arbiter


# ------------------------------------------------------------------ configuration types


def test_forced_configuration_is_the_only_candidate():
    n = node("a", IO_RESOURCE_LIST((port_req(0x300),)), forced=cm(Port(0x200, 8)), boot=cm(Port(0x100, 8)))
    assert ports_of(pnp.solve([n]), "a") == [0x200]
    # Held: the device gets nothing else, even though its boot and basic places are free.
    assert not pnp.solve([n], held(0x200)).satisfiable


def test_boot_configuration_comes_before_the_requirements_and_gives_way_on_conflict():
    n = node("a", IO_RESOURCE_LIST((port_req(0x300),)), boot=cm(Port(0x100, 8)))
    solution = pnp.solve([n])
    assert ports_of(solution, "a") == [0x100]
    assert solution.choices["a"].candidate.source is ConfigType.BOOT
    moved = pnp.solve([n], held(0x100))
    assert ports_of(moved, "a") == [0x300]
    [(refused, conflicts)] = moved.refused["a"]
    assert refused.source is ConfigType.BOOT and conflicts[0].holder.owner.driver == "Legacy"


def test_override_replaces_basic_and_filtered_replaces_both():
    basic = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, (IO_RESOURCE_LIST((port_req(0x100),)),))
    override = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, (IO_RESOURCE_LIST((port_req(0x200),)),))
    filtered = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, (IO_RESOURCE_LIST((port_req(0x300),)),))
    n = node("a", basic=basic, override=override)
    assert ports_of(pnp.solve([n]), "a") == [0x200]
    assert pnp.solve([n]).choices["a"].candidate.source is ConfigType.OVERRIDE
    n.configs[ConfigType.FILTERED] = filtered
    assert ports_of(pnp.solve([n]), "a") == [0x300]
    # Without an override, a basic-only node uses basic.
    assert ports_of(pnp.solve([node("b", basic=basic)]), "b") == [0x100]


def test_lists_are_tried_by_lcpri_then_in_list_order():
    lists = (with_priority(LCPRI_SUBOPTIMAL, port_req(0x100)),
             IO_RESOURCE_LIST((port_req(0x200),)),                # no ConfigData: LCPRI_NORMAL
             with_priority(LCPRI_NORMAL, port_req(0x280)),          # a tie with the previous one
             with_priority(LCPRI_DESIRED, port_req(0x300)))
    n = node("a", *lists)
    order = [(c.priority, c.list_index) for c in pnp.candidates(n)]
    assert order == [(LCPRI_DESIRED, 3), (LCPRI_NORMAL, 1), (LCPRI_NORMAL, 2), (LCPRI_SUBOPTIMAL, 0)]
    assert ports_of(pnp.solve([n]), "a") == [0x300]
    assert ports_of(pnp.solve([n], held(0x300)), "a") == [0x200]
    assert ports_of(pnp.solve([n], held(0x300, 0x200)), "a") == [0x280]
    assert ports_of(pnp.solve([n], held(0x300, 0x200, 0x280)), "a") == [0x100]
    assert not pnp.solve([n], held(0x300, 0x200, 0x280, 0x100)).satisfiable


def test_groups_expand_preferred_first_and_small_windows_into_places():
    n = node("a", IO_RESOURCE_LIST((PortRequirement(8, 8, 0x300, 0x31F), *irq_req(5, 3))))
    got = [(p[0].start, p[1].level) for p in
           ([q for _, q in c.resources.partials()] for c in pnp.candidates(n))]
    # Each aligned place of the small window, ascending; the first group varies slowest.
    assert got == [(0x300, 5), (0x300, 3), (0x308, 5), (0x308, 3), (0x310, 5), (0x310, 3), (0x318, 5), (0x318, 3)]


# ------------------------------------------------------------------ search


def test_backtracking_across_devices():
    # c has one candidate and goes first; a's first choice then starves b, so the search
    # must undo a and give it its second choice.
    a = node("a", IO_RESOURCE_LIST((port_req(0x100),)), IO_RESOURCE_LIST((port_req(0x200),)))
    b = node("b", IO_RESOURCE_LIST((port_req(0x100),)), IO_RESOURCE_LIST((port_req(0x300),)))
    c = node("c", IO_RESOURCE_LIST((port_req(0x300),)))
    solution = pnp.solve([a, b, c])
    assert solution.order == ["c", "a", "b"]
    assert (ports_of(solution, "a"), ports_of(solution, "b"), ports_of(solution, "c")) == ([0x200], [0x100], [0x300])
    assert solution.stats.backtracks >= 1
    # Without forward checking it backtracks too, and reaches the same assignment.
    assert pnp.solve([a, b, c], forward_check=False).ranks() == solution.ranks()


def test_budget_is_a_clear_error():
    nodes = [node(f"d{i}", *(IO_RESOURCE_LIST((InterruptRequirement(v, v),)) for v in range(3, 8)))
             for i in range(7)]   # 7 devices, 5 lines: unsatisfiable only after a long search
    with pytest.raises(pnp.PnpSearchLimit, match="node budget of 50 placements"):
        pnp.solve(nodes, budget=50)


def test_a_failure_goes_back_to_the_devices_that_caused_it():
    """livefuzz round five (seed 5001044): three IPMI cards with two places between them
    were tried again under every choice of every unrelated device placed before them (a
    chronological search: no verdict within 30 s for 15 devices).  The search now goes
    back to the latest device whose placement took part in the failure."""
    unrelated = [node(f"u{i}", *(IO_RESOURCE_LIST((port_req(0x1000 + 0x100 * i + 0x10 * k),)) for k in range(2)))
                 for i in range(12)]   # two places each, none near the others': 4096 combinations
    cards = [node(f"kcs{i}", *(IO_RESOURCE_LIST((port_req(base, 2),)) for base in (0xCA2, 0xCA8)))
             for i in range(3)]
    for forward_check in (True, False):
        solution = pnp.solve([*unrelated, *cards], budget=500, forward_check=forward_check)
        assert not solution.satisfiable and solution.stats.nodes < 100, solution.stats
    # a satisfiable set still gets the first assignment in the static order
    fits = pnp.solve([*unrelated, *cards[:2]], budget=500)
    assert fits.satisfiable and fits.ranks() == pnp.solve([*unrelated, *cards[:2]], forward_check=False).ranks()
    assert [ports_of(fits, c.name) for c in cards[:2]] == [[0xCA2], [0xCA8]]


def test_two_devices_that_always_collide_are_found_before_the_search():
    """livefuzz round five (seed 5001226): two GUS cards decode the AdLib's 0x388 in every
    configuration; the search met it only at the second card, once for every choice of
    each device that had set some of its bases aside (an SB16's 144): no verdict in 30 s."""
    bases = [0x200 + 0x10 * i for i in range(10)]
    takers = [node(f"u{i}", IO_RESOURCE_LIST((port_req(b),)), IO_RESOURCE_LIST((port_req(0x1000 + b),)))
              for i, b in enumerate(bases)]
    guses = [node(f"gus{i}", *(IO_RESOURCE_LIST((port_req(b), port_req(0x388, 2))) for b in bases)) for i in range(2)]
    solution = pnp.solve([*takers, *guses], budget=2000)
    assert not solution.satisfiable
    assert pnp.solve([*takers, guses[0]], budget=2000).satisfiable
    core = pnp.unsatisfiable_core([*takers, *guses], budget=2000)
    assert sorted(core.devices) == ["gus0", "gus1"]


def test_minimum_core_on_an_impossible_set():
    lines = [InterruptRequirement(5, 5), InterruptRequirement(7, 7, option=IO_RESOURCE_ALTERNATIVE)]
    lpts = [node(f"lpt{i}", IO_RESOURCE_LIST((port_req(0x200 + 0x10 * i), *lines))) for i in range(3)]
    others = [node("com1", IO_RESOURCE_LIST((port_req(0x3F8), *irq_req(4, 3)))),
              node("com2", IO_RESOURCE_LIST((port_req(0x2F8), *irq_req(3, 4))))]
    nodes = [others[0], *lpts, others[1]]
    assert not pnp.solve(nodes).satisfiable
    core = pnp.unsatisfiable_core(nodes)
    assert core is not None and core.minimum and sorted(core.devices) == ["lpt0", "lpt1", "lpt2"]
    # Irreducible: without any one of them the rest is satisfiable; and nothing smaller
    # is unsatisfiable (the exhaustive answer).
    for name in core.devices:
        assert pnp.solve([n for n in nodes if n.name in core.devices and n.name != name]).satisfiable
    assert sorted(pnp.exhaustive_minimum_core(nodes)) == sorted(core.devices)
    assert pnp.unsatisfiable_core(others) is None


def random_instance(rng: random.Random, devices: int) -> list[DeviceNode]:
    out = []
    for d in range(devices):
        lists = []
        for _ in range(rng.randint(1, 3)):
            start = rng.choice([0x200, 0x220, 0x240, 0x260, 0x280])
            lines = rng.sample([3, 4, 5, 7], rng.randint(1, 2))
            lists.append(with_priority(rng.choice([LCPRI_DESIRED, LCPRI_NORMAL, LCPRI_SUBOPTIMAL]),
                                       port_req(start, rng.choice([8, 0x20])), *irq_req(*lines)))
        n = node(f"d{d}", *lists)
        if rng.random() < 0.3:
            n.configs[ConfigType.BOOT] = cm(Port(rng.choice([0x200, 0x300]), 8), Interrupt(5, 5, -1))
        out.append(n)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_search_agrees_with_exhaustive_enumeration(seed: int):
    rng = random.Random(seed)
    nodes = random_instance(rng, rng.randint(2, 5))
    base = held(0x260) if seed % 3 == 0 else None
    fast, slow = pnp.solve(nodes, base), pnp.exhaustive_solve(nodes, base)
    assert fast.satisfiable == slow.satisfiable
    if fast.satisfiable:
        assert fast.ranks() == slow.ranks()
        assert {k: v.resources for k, v in fast.choices.items()} == {k: v.resources for k, v in slow.choices.items()}
        # The assignment is conflict-free by the arbiter's own rule.
        check = Arbiter()
        for name, choice in fast.choices.items():
            claims = claims_of(choice.node.owner, choice.resources)
            assert not check.find_conflicts(claims), name
            check.replace(choice.node.owner, claims)
    else:
        core = pnp.unsatisfiable_core(nodes, base)
        assert core is not None and core.minimum
        assert len(core.devices) == len(pnp.exhaustive_minimum_core(nodes, base))


# ------------------------------------------------------------------ IRPs and registry


def test_filter_hook_narrows_and_becomes_the_filtered_configuration():
    spec = load_machine(CONFIGS / "conflicts" / "ne2000-irq9-sci.yaml")
    from harness.pnp_live import isa_requirements
    dev = spec.device("ne0")
    n = DeviceNode("Root\\LEGACY_NE2000\\0000", "ne0",
                   {ConfigType.BASIC: isa_requirements(dev.model, dict(dev.settings))},
                   driver=Ne2000Driver(None, None))
    pnp.query_configurations(n)
    lines = lambda req: {d.minimum_vector for lst in req.lists for d in lst.descriptors
                         if isinstance(d, InterruptRequirement)}
    assert 9 in lines(n.get(ConfigType.BASIC))
    assert lines(n.get(ConfigType.FILTERED)) == lines(n.get(ConfigType.BASIC)) - {9}
    assert all(c.source is ConfigType.FILTERED for c in pnp.candidates(n))
    # A driver that does not answer leaves Basic as it was and no Filtered appears.
    plain = DeviceNode("Root\\X\\0", "x", {ConfigType.BASIC: n.get(ConfigType.BASIC)})
    assert ConfigType.FILTERED not in pnp.query_configurations(plain).configs


def test_registry_round_trip():
    n = node("a", with_priority(LCPRI_DESIRED, port_req(0x300)), boot=cm(Port(0x100, 8)),
             forced=cm(Port(0x200, 8)), override=IO_RESOURCE_REQUIREMENTS_LIST(
                 Isa, 0, 0, (IO_RESOURCE_LIST((port_req(0x280),)),)))
    n.configs[ConfigType.FILTERED] = n.get(ConfigType.BASIC)
    n.configs[ConfigType.ALLOC] = pnp.solve([n]).resources("a")
    with Registry() as registry:
        pnp.store_node(registry, n)
        key = pnp.enum_key(n)
        assert key == r"\REGISTRY\MACHINE\SYSTEM\CurrentControlSet\Enum\Root\TEST\a"
        types = {v.name: v.type for v in registry.values(key + r"\LogConf")}
        assert types == {"BasicConfigVector": RegType.REG_RESOURCE_REQUIREMENTS_LIST,
                         "FilteredConfigVector": RegType.REG_RESOURCE_REQUIREMENTS_LIST,
                         "OverrideConfigVector": RegType.REG_RESOURCE_REQUIREMENTS_LIST,
                         "BootConfig": RegType.REG_RESOURCE_LIST, "ForcedConfig": RegType.REG_RESOURCE_LIST}
        assert registry.key_info(key + r"\Control").volatile
        back = pnp.load_node(registry, "Root\\TEST\\a")
        assert back.configs == n.configs and back.name == "a"
        assert pnp.stored_nodes(registry) == ["Root\\TEST\\a"]
        # The priority travels in the stored list's ConfigData.
        assert pnp.list_priority(back.get(ConfigType.BASIC).lists[0]) == LCPRI_DESIRED


# ------------------------------------------------------------------ live


#: Conflict configs no assignment can resolve: two devices with nothing to set, one
#: wired over the other (test_two_devices_with_nothing_to_set_on_the_same_ports_*); two
#: VGAs, whose legacy decodes are part of every configuration a PCI VGA can have too.
UNSATISFIABLE = {"pc-testdev-twice": ("td0", "td1"), "ib700-twice": ("wd0", "wd1"),
                 "two-pci-vgas": ("vga0", "vga1"), "isa-cirrus-over-pci-vga": ("vga0", "vga1"),
                 "qxl-vga-and-vmware-svga": ("qxl0", "svga0"),
                 "isa-cirrus-beside-vga-behind-bridge": ("vga0", "vga1")}
#: Conflict configs whose `builtin` setting puts a board device on a resource the HAL
#: holds: a board device has its one hard-wired configuration, so it is the core alone.
BOARD_SETTING_CORES = {"builtin-mouse-irq9-sci": "KeyboardController@0x60",
                       # the FDC at 0x371 decodes 0x376, which it lost to the IDE mapped later:
                       # its node needs it too (it was left out as the flat view left it out)
                       "builtin-fdc-371-under-ide": "DiskController@0x370"}
#: Configs the assignment changes although they have steps after the firmware: PnP lays
#: out requirements, and a PCI function's routed line stays in its configuration whatever
#: its command register says (INTx disabled), so a UART on that line moves; the SCI's
#: IRQ 9 is the HAL's whatever a step writes to the PM's line register, so an NE2000 there moves
#: (and, beside a BAR over the configuration ports, so does a UART on the NIC's routed line).
MOVES_DESPITE_STEPS = {"pci-intx-disabled-beside-uart", "sci-line-register-rewritten",
                       "io-bar-moved-onto-config-ports-pc", "q35-io-bar-onto-config-ports-beside-uart"}
#: Conflict configs where a device's every configuration meets a board device's fixed
#: decode: a second compatibility-mode IDE function on pc (the board's IDE holds the
#: legacy channels and lines).
HELD_BY_BOARD = {"second-pci-ide-over-board-ide": ("ide2", "ide-legacy"),
                 "serial-over-second-piix3-ide": ("ide9", "ide-legacy")}
#: Conflict configs with no resource to move: the conflict is a decoder its driver cannot
#: find (QEMU's parallel port at 0x3bc keeps its registers at port & 7).
NOTHING_TO_MOVE = {"lpt-at-3bc"}
#: Conflict configs the assignment resolves by moving a PCI BAR alone (programmed live, no
#: relaunch): a UART inside a root port's I/O window keeps its port, the e1000e's I/O BAR
#: moves to the window's other end.
BARS_ONLY = {"serial-in-root-port-window"}
#: Conflict configs whose `builtin` setting moves a board device onto the PCI configuration
#: data port, which PnP does not move (the board FDC at 0xcfc is not found by detection
#: there): SeaBIOS numbered no bridge, so the PIIX3 IDE behind one is on no bus and no
#: node, while it decodes the legacy IDE ports; the reconciliation names it.
NOT_SEEN_BY_PNP = {"pci-ide-behind-an-unnumbered-bridge-pc": "ide9"}
LIVE_CONFIGS = [CONFIGS / "machines" / "default.yaml", *sorted((CONFIGS / "conflicts").glob("*.yaml"))]


@pytest.mark.parametrize("path", [p for p in LIVE_CONFIGS
                                  if p.stem not in {*UNSATISFIABLE, *BOARD_SETTING_CORES, *HELD_BY_BOARD,
                                                    *NOT_SEEN_BY_PNP}],
                         ids=lambda p: p.stem)
def test_live_assignment_is_conflict_free_after_apply(path: Path):
    from harness.pnp_live import run_pnp
    spec = load_machine(path)
    report = run_pnp(spec, apply=True)
    assert report.solution.satisfiable
    applied = report.applied
    assert applied is not None and applied.proved, report.format_text()
    # A conflict (or warning) config needs its ISA settings changed, hence a relaunch;
    # default does not, nor does a conflict born of how a driver claims (claim: block),
    # not of the settings, nor one made after the firmware (after_firmware steps: PnP
    # lays out what the firmware left, where nothing collides).
    moves = (spec.expect != "clean" and not any(d.claim == "block" for d in spec.drivers)
             and not spec.after_firmware and path.stem not in NOTHING_TO_MOVE | BARS_ONLY) \
        or path.stem in MOVES_DESPITE_STEPS
    assert applied.relaunched == moves == bool(report.changes)
    assert applied.claims >= len(report.nodes)
    # Every PCI BAR is compared with SeaBIOS's, and a difference carries its holder.
    for bar in report.bars:
        assert bar.same or "held by" in bar.explanation or "unassigned" in bar.explanation


@pytest.mark.parametrize("name", sorted(UNSATISFIABLE))
def test_two_devices_with_nothing_to_set_on_the_same_ports_cannot_both_be_placed(name: str):
    """Each is a node with its one hard-wired configuration, so the pair is the set's
    minimum core and the one the PnP manager reaches second gets Code 12 (they were kept
    clear of as fixed claims, where nothing conflicts: the set looked satisfiable)."""
    from harness.pnp_live import run_pnp
    report = run_pnp(load_machine(CONFIGS / "conflicts" / f"{name}.yaml"))
    first, second = UNSATISFIABLE[name]
    assert not report.solution.satisfiable and report.exit_code == 1
    assert report.core is not None and report.core.minimum and sorted(report.core.devices) == [first, second]
    assert [(n.name, n.problem) for n in report.problems] == [(second, 0x0C)]


@pytest.mark.parametrize("name", sorted(NOT_SEEN_BY_PNP))
def test_a_device_on_no_bus_is_named_against_the_assignment(name: str):
    from harness.pnp_live import run_pnp
    report = run_pnp(load_machine(CONFIGS / "conflicts" / f"{name}.yaml"), apply=True)
    assert report.solution.satisfiable and not report.applied.relaunched and report.exit_code == 1
    assert NOT_SEEN_BY_PNP[name] not in {n.name for n in report.nodes}
    assert {f.device for f in report.applied.blocking} >= {NOT_SEEN_BY_PNP[name]}, report.format_text()


@pytest.mark.parametrize("name", sorted(BOARD_SETTING_CORES))
def test_a_board_device_set_onto_a_hal_resource_is_the_core_alone(name: str):
    from harness.pnp_live import run_pnp
    report = run_pnp(load_machine(CONFIGS / "conflicts" / f"{name}.yaml"))
    assert not report.solution.satisfiable and report.exit_code == 1
    assert report.core is not None and report.core.devices == [BOARD_SETTING_CORES[name]]
    assert [(n.name, n.problem) for n in report.problems] == [(BOARD_SETTING_CORES[name], 0x0C)]


@pytest.mark.parametrize("name", sorted(HELD_BY_BOARD))
def test_a_device_whose_fixed_decode_a_board_device_holds_cannot_be_placed(name: str):
    from harness.pnp_live import run_pnp
    report = run_pnp(load_machine(CONFIGS / "conflicts" / f"{name}.yaml"))
    device, board = HELD_BY_BOARD[name]
    assert not report.solution.satisfiable and report.exit_code == 1
    assert report.core is not None and sorted(report.core.devices) == [device]
    assert [(n.name, n.problem) for n in report.problems] == [(device, 0x0C)]
    assert f"held by board:{board}" in report.problems[0].problem_detail


def test_a_pci_ide_node_keeps_its_channels_and_lines_and_an_isa_channel_moves_off_them():
    """A piix3-ide on q35 holds the legacy channels and IRQ 14/15 (its model's fixed
    decodes, the channels registered with no owner): the ISA channel over its primary
    moves to a free place and line instead of the PCI function being refused for its own
    ports (they were taken for another device's decode) or sharing its line."""
    from harness.pnp_live import run_pnp
    report = run_pnp(load_machine(CONFIGS / "conflicts" / "isa-ide-over-pci-ide-q35.yaml"))
    assert report.solution.satisfiable and not report.problems, report.format_text()
    assert set(report.changes) == {"isaide"}, report.format_text()   # the PCI function keeps all
    new = {prop: after for prop, (_, after) in report.changes["isaide"].items()}
    assert new["iobase"] not in (0x1F0, 0x170) and new["irq"] not in (14, 15), new


def test_memory_a_device_maps_into_its_own_bar_without_an_owner_stays_its_own():
    """vmware-svga's FIFO RAM (registered with no owner) and ivshmem-plain's RAM backend
    (owned by the backend object) fill their BAR2s: the assignment keeps both BARs where
    the firmware put them instead of moving each off its own memory."""
    from harness.pnp_live import run_pnp
    spec = machine_spec("machine: pc\ndevices:\n  - {model: vmware-svga, id: svga0, addr: 3}\n"
                        "  - {model: ivshmem-plain, id: shm0, addr: 4}\n")
    report = run_pnp(spec)
    assert report.solution.satisfiable and not report.problems, report.format_text()
    bar2 = [b for b in report.bars if b.device in ("svga0", "shm0") and b.bar.startswith("BAR2 ")]
    assert len(bar2) == 2 and all(b.same for b in bar2), report.format_text()


def test_live_impossible_set_reports_its_minimum_core(capsys):
    code = cli_main(["pnp", str(CONFIGS / "pnp" / "three-parallel-ports.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    assert "Minimum set of devices that cannot be satisfied together" in out
    listed = out.split("together", 1)[1].split("Device problems", 1)[0].split()
    assert {"lpt1", "lpt2", "lpt3"} <= set(listed) and "com1" not in listed
    # The device the PnP manager reached last of the three gets Code 12; everything else
    # is assigned, and the registry holds the code.
    problems = out.split("Device problems", 1)[1].split("Assignment", 1)[0]
    assert "lpt3                   CM_PROB_NORMAL_CONFLICT (Code 12)" in problems
    assert "registry: Root\\LEGACY_PARPORT\\0002\\Control: Problem = 0xc, StatusFlags = 0x400" in problems
    assert not [line for line in problems.splitlines() if line.split()[:1] in (["lpt1"], ["lpt2"])], problems
    # lpt3's holders by name (they were numbered PDOs only: PnpManager (\Device\00000003))
    assert "held by lpt1 (PnpManager \\Device\\" in problems or "held by lpt2 (PnpManager" in problems, problems
    assert "lpt3                   none (CM_PROB_NORMAL_CONFLICT)" in out
    code = cli_main(["pnp", "--json", str(CONFIGS / "pnp" / "three-parallel-ports.yaml")])
    devices = {d["name"]: d for d in json.loads(capsys.readouterr().out)["devices"]}
    assert code == 1 and devices["lpt3"]["problem"] == 0x0C and devices["lpt3"]["assigned"] is None
    assert devices["lpt1"]["problem"] == 0 and devices["lpt1"]["assigned"]


def test_cli_reports_bad_input_with_its_field(capsys):
    assert cli_main(["pnp", str(CONFIGS / "machines" / "default.yaml"), "--budget", "0"]) == 2
    assert "--budget" in capsys.readouterr().err


def test_cli_says_the_search_ran_out_in_a_line(capsys):
    """livefuzz round five: a search that reached its budget or deadline printed a Python
    traceback (PnpSearchLimit is no HarnessError) and exited 1, "a problem found"."""
    assert cli_main(["pnp", str(CONFIGS / "pnp" / "three-parallel-ports.yaml"), "--budget", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness pnp: error: ") and "node budget of 1" in err and "--budget" in err, err
    assert "Traceback" not in err


# ------------------------------------------------------------------ problem codes, adding configurations


def test_an_impossible_set_gives_code_12_to_the_device_that_came_last():
    lines = [InterruptRequirement(5, 5), InterruptRequirement(7, 7, option=IO_RESOURCE_ALTERNATIVE)]
    lpts = [node(f"lpt{i}", IO_RESOURCE_LIST((port_req(0x200 + 0x10 * i), *lines))) for i in range(3)]
    com1 = node("com1", IO_RESOURCE_LIST((port_req(0x3F8), *irq_req(4, 3))))
    com2 = node("com2", IO_RESOURCE_LIST((port_req(0x2F8), *irq_req(3, 4))))
    nodes = [com1, *lpts, com2]
    solution = pnp.assign(nodes)
    assert not solution.satisfiable
    assert [(n.name, n.problem) for n in nodes if n.problem] == [("lpt2", pnp.CM_PROB_NORMAL_CONFLICT)]
    assert "interrupt level 5" in lpts[2].problem_detail and "held by" in lpts[2].problem_detail
    # Everyone else is placed, and together (one arbiter takes every assignment).
    assert set(solution.choices) == {"com1", "lpt0", "lpt1", "com2"}
    check = Arbiter()
    for name, choice in solution.choices.items():
        assert not check.find_conflicts(claims_of(choice.node.owner, choice.resources))
        check.replace(choice.node.owner, claims_of(choice.node.owner, choice.resources))
    # Tree order decides who loses: put lpt2 first and lpt1 is the one left out.
    pnp.assign([lpts[2], com1, lpts[0], lpts[1], com2])
    assert [n.name for n in nodes if n.problem] == ["lpt1"]
    # A satisfiable tree clears old problems.
    assert pnp.assign([com1, lpts[0], com2]).satisfiable and not any(n.problem for n in nodes[:2])


def test_problem_codes_live_in_the_device_node_and_the_registry():
    n = node("lpt9", IO_RESOURCE_LIST((port_req(0x278),)))
    n.problem = pnp.CM_PROB_NORMAL_CONFLICT
    with Registry() as registry:
        pnp.store_node(registry, n)
        control = pnp.enum_key(n) + "\\Control"
        assert registry.get_value(control, "Problem").type == RegType.REG_DWORD
        assert registry.get(control, "Problem") == 0x0C and registry.get(control, "StatusFlags") == pnp.DN_HAS_PROBLEM
        assert registry.key_info(control).volatile
        assert pnp.load_node(registry, n.instance_path).problem == 0x0C
        n.problem = 0
        pnp.store_node(registry, n)
        assert registry.get(control, "Problem", None) is None and pnp.load_node(registry, n.instance_path).problem == 0


def test_a_list_the_hal_cannot_translate_is_code_33():
    from harness.nt.hal import Hal
    from harness.nt.recorded import ReplayBus
    from harness.nt.resources import MemoryRequirement
    hal = Hal(ReplayBus({"format": "harness-bus-transcript", "version": 1, "calls": []}))
    high = node("isamem", IO_RESOURCE_LIST((MemoryRequirement(0x1000, 0x1000, 0x1000000, 0x1000FFF),)))
    cascade = node("cascade", IO_RESOURCE_LIST((port_req(0x300), InterruptRequirement(2, 2))))
    fine = node("fine", IO_RESOURCE_LIST((port_req(0x320), InterruptRequirement(5, 5))))
    solution = pnp.assign([high, cascade, fine], translate=pnp.hal_translator(hal))
    assert (high.problem, cascade.problem, fine.problem) == (pnp.CM_PROB_TRANSLATION_FAILED,
                                                            pnp.CM_PROB_TRANSLATION_FAILED, 0)
    assert "HalTranslateBusAddress refuses memory 0x1000000" in high.problem_detail  # Isa memory ends at 16 MiB
    assert "HalGetInterruptVector gives no vector" in cascade.problem_detail
    assert set(solution.choices) == {"fine"} and not solution.satisfiable
    assert pnp.problem_name(0x21) == "CM_PROB_TRANSLATION_FAILED"


def test_adding_lists_with_priority_equal_first_and_last():
    n = DeviceNode("Root\\TEST\\0000", "dev")
    basic = 0  # BASIC_LOG_CONF
    a = IO_RESOURCE_LIST((port_req(0x200),))
    b = IO_RESOURCE_LIST((port_req(0x220),))
    c = IO_RESOURCE_LIST((port_req(0x240),))
    d = IO_RESOURCE_LIST((port_req(0x260),))
    assert pnp.add_log_conf(n, basic | pnp.PRIORITY_EQUAL_LAST, LCPRI_NORMAL, a) == 0
    assert pnp.add_log_conf(n, basic | pnp.PRIORITY_EQUAL_LAST, LCPRI_NORMAL, b) == 1    # after a
    assert pnp.add_log_conf(n, basic | pnp.PRIORITY_EQUAL_FIRST, LCPRI_NORMAL, c) == 0   # before a
    assert pnp.add_log_conf(n, basic | pnp.PRIORITY_EQUAL_FIRST, LCPRI_DESIRED, d) == 0  # better: first
    lists = n.configs[ConfigType.BASIC].lists
    assert [pnp.list_priority(x) for x in lists] == [LCPRI_DESIRED, LCPRI_NORMAL, LCPRI_NORMAL, LCPRI_NORMAL]
    assert [x.descriptors[1].minimum_address for x in lists] == [0x260, 0x240, 0x200, 0x220]
    # The search tries them in that order: c wins over a and b at equal priority.
    assert [c.candidate.list_index for c in [pnp.solve([n]).choices["dev"]]] == [0]
    held_d = pnp.solve([n], held(0x260))
    assert ports_of(held_d, "dev") == [0x240]
    # Filtered and Override take lists the same way; Boot, Forced and Alloc are one per device.
    assert pnp.add_log_conf(n, 5 | pnp.PRIORITY_EQUAL_FIRST, LCPRI_SUBOPTIMAL, a) == 0
    assert pnp.add_log_conf(n, 3, 0, cm(Port(0x200, 8))) == 0
    with pytest.raises(pnp.PnpError, match="one boot configuration"):
        pnp.add_log_conf(n, 3 | pnp.PRIORITY_EQUAL_FIRST, 0, cm(Port(0x220, 8)))
    with pytest.raises(pnp.PnpError, match="type 6"):
        pnp.add_log_conf(n, 6, LCPRI_NORMAL, a)
    with pytest.raises(pnp.PnpError, match="bits other than"):
        pnp.add_log_conf(n, 0x10, LCPRI_NORMAL, a)
    with pytest.raises(pnp.PnpError, match="priority 0x10000"):
        pnp.add_log_conf(n, basic, 0x10000, a)
    with pytest.raises(pnp.PnpError, match="IO_RESOURCE_LISTs"):
        pnp.add_log_conf(n, basic, LCPRI_NORMAL, cm(Port(0x200, 8)))


def test_a_device_that_takes_any_port_may_move_across_the_isa_card_area():
    """A port property without choices (QEMU tells the guest the base in ACPI) gives the
    current base first, then every base in the ISA card area aligned as its block."""
    from harness.devices import load_catalog
    from harness.pnp_live import ANY_PORT_WINDOW, _choices, isa_requirements
    model = load_catalog()["isa-ipmi-bt"]
    bases = _choices(model, "ioport", 0xe4)
    assert bases[0] == 0xe4 and len(bases) == len(set(bases))
    lo, hi = ANY_PORT_WINDOW
    assert all(lo <= b and b + 3 <= hi and b % 4 == 0 for b in bases[1:])
    assert bases[1:] == list(range(lo, hi + 1, 4))
    lists = isa_requirements(model, {"ioport": 0xe4, "irq": 5}).lists
    assert len(lists) == len(bases)
    # a property with choices keeps exactly them (jumpers)
    assert _choices(load_catalog()["isa-ipmi-kcs"], "ioport", 0xca2) == [0xca2, 0xca8]


def test_an_unwired_irq_stays_unwired_in_every_configuration():
    """An IPMI interface left at irq 0 wires no line (QEMU connects an IRQ only for irq > 0):
    its configurations ask for none, so moving it off a port does not wire it to a line
    the machine file left free (two BTs at 0xe4 gave 'bt1: irq 0 -> 5')."""
    from harness.devices import load_catalog
    from harness.pnp_live import _isa_partials, isa_requirements, settings_of
    model = load_catalog()["isa-ipmi-bt"]
    requirements = isa_requirements(model, {"ioport": 0xe4, "irq": 0})
    assert not [d for lst in requirements.lists for d in lst.descriptors if isinstance(d, InterruptRequirement)]
    wired = isa_requirements(model, {"ioport": 0xe4, "irq": 5})
    assert all(any(isinstance(d, InterruptRequirement) for d in lst.descriptors) for lst in wired.lists)
    moved = CM_RESOURCE_LIST.single(Isa, 0, _isa_partials("port", 0x100, 0x103))
    assert settings_of(model, moved, {"ioport": 0xe4, "irq": 0}) == {"ioport": 0x100, "irq": 0}


def test_a_device_with_nothing_to_set_keeps_all_it_decodes():
    """pc-testdev has no settings: it is a node wired where its model decodes, also the
    0xe4 run the IPMI BT realized after it hides in the flat view, and the IPMI BT (whose
    own ownerless region does not hold it back) moves out of 0xe0-0xeb."""
    from harness.pnp_live import run_pnp
    report = run_pnp(load_machine(CONFIGS / "conflicts" / "ipmi-bt-on-testdev.yaml"))
    assert report.solution.satisfiable, report.format_text()
    (old, new), = report.changes["bmcbt"].values()
    assert old == 0xe4 and not 0xe0 <= new <= 0xeb
    text = report.format_text()
    testdev, = [n for n in report.nodes if n.name == "testdev"]   # a node with its one configuration
    # the holder by its name first: its numbered PDO alone names no one (was 'PnpManager (\\Device\\0000000N)')
    assert f"port 0xe4-0xe7 (length 0x4) held by testdev (PnpManager {testdev.extra['pdo']})" in text
    # Its MMIO page near 4 GiB, which no ISA bus translates, is kept clear of beside it.
    assert any(f.startswith("testdev: memory 0xff000000-") for f in report.fixed), report.fixed
    assert "(ipmi-bt)" not in text and "bmcbt: ioport 0xe4 -> " in text


def test_a_zero_length_window_asks_for_nothing_and_is_not_split_into_places():
    """Genuine PCI bridges (Windows 7's 440BX AGP bridge, every bridge of the VMware and
    Dell machines in tests/data/realworld-resources) ask for windows of Length 0 when
    nothing is behind them: [0, 0xFFFF] aligned to 0x1000 is 16 places, few enough to be
    split, and a place of length 0 ends before it starts (MaximumAddress = Start - 1, -1 at
    0): no valid descriptor.  The window stays one requirement, and a device with it is
    placed beside a card that holds ports anywhere in it."""
    from harness.nt.resources import MemoryRequirement
    empty = [PortRequirement(0, 0x1000, 0, 0xFFFF), MemoryRequirement(0, 0x100000, 0, 0xFFFFFFFF)]
    n = node("bridge", IO_RESOURCE_LIST((*empty, port_req(0x300))))
    found = pnp.candidates(n)
    assert len(found) == 1 and all(d.length == 0 for d in found[0].requirements.lists[0].descriptors[:2])
    solution = pnp.solve([n], held(0x0, 0x1000, 0x8000))
    assert solution.satisfiable
    got = [(p.start, p.length) for _, p in solution.resources("bridge").partials() if isinstance(p, Port)]
    assert (0x300, 8) in got and all(length in (0, 8) for _, length in got)


def test_a_device_that_cannot_join_names_the_device_node_holding_it():
    """A holder that is another device node is named by its name first: its numbered PDO
    (\\Device\\00000001, as the live tree numbers them) alone named no one."""
    first, second = node("dx0", IO_RESOURCE_LIST((port_req(0x500),))), node("pp0", IO_RESOURCE_LIST((port_req(0x500),)))
    first.extra["pdo"], second.extra["pdo"] = "\\Device\\00000001", "\\Device\\00000002"
    pnp.assign([first, second])
    assert (first.problem, second.problem) == (0, pnp.CM_PROB_NORMAL_CONFLICT)
    assert "held by dx0 (PnpManager \\Device\\00000001)" in second.problem_detail, second.problem_detail
