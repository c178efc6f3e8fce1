"""Bus windows arbitrated as windows (harness.nt.arbiter, "Bus windows"): genuine LogConf
trees of real machines solve, genuine conflicts are still found, and the rule's edges on
trees of our own making: a device inside its bus's window, sibling bridges whose windows
overlap, a device outside its bus, a device-vs-device conflict inside a window, a
zero-length window, nested bridges.  No QEMU: the NT model alone."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from harness.nt import pnp
from harness.nt.arbiter import (TRANSLATION_DATA_PARENT_ADDRESS, Arbiter, Owner, claims_of, collide,
                                window_positions)
from harness.nt.iomgr import IoManager
from harness.nt.pnp import ConfigType, DeviceNode
from harness.nt.regfile import import_reg
from harness.nt.registry import MACHINE, Registry
from harness.nt.resources import (CM_RESOURCE_LIST, CM_RESOURCE_MEMORY_WINDOW_DECODE,
                                  CM_RESOURCE_PORT_PASSIVE_DECODE, CM_RESOURCE_PORT_POSITIVE_DECODE,
                                  CM_RESOURCE_PORT_WINDOW_DECODE, IO_RESOURCE_LIST,
                                  IO_RESOURCE_REQUIREMENTS_LIST, Arch, CmResourceShare, DevicePrivate,
                                  DevicePrivateRequirement, Isa, Memory, MemoryLarge, MemoryLargeRequirement,
                                  MemoryRequirement, PCIBus, Port,
                                  PortRequirement)
from harness.nt.status import NTSTATUS

DATA = Path(__file__).parent / "data" / "realworld-resources"
SYSTEM = MACHINE + r"\SYSTEM"
SHARED, EXCLUSIVE = CmResourceShare.CmResourceShareShared, CmResourceShare.CmResourceShareDeviceExclusive

# ---------------------------------------------------------------------------------------
# Genuine machines


def genuine(name: str) -> list[DeviceNode]:
    """Every device node of a genuine SYSTEM export that has LogConf values, named by its
    path below SYSTEM (a carved file's fragments included)."""
    arch = Arch.X86 if ("x86" in name or "win7" in name) else Arch.X64
    with Registry(arch=arch) as reg:
        import_reg(reg, DATA / name)
        return pnp.logconf_nodes(reg, SYSTEM)


#: Machine -> its devices with LogConf values (counted from the files).
SOLVABLE = {"xp-x86-acpi.reg": 4, "xp-sp3-x86-m57-pat-system.reg": 27,
            "xp-sp3-x86-vmware-system.reg": 22, "xp-sp3-x86-vmware-ofiara-system.reg": 56,
            "xp-x64-virtualbox-system.reg": 16, "win7-x86-system.reg": 61,
            "win10-1709-x64-system.reg": 59, "x64-virtualbox-system.reg": 13,
            "x64-qemu-guest-logs.reg": 14}


def root_buses(nodes: list[DeviceNode]) -> list[DeviceNode]:
    return [n for n in nodes if "PNP0A03" in n.name or "PNP0A08" in n.name]


@pytest.mark.parametrize("name", sorted(SOLVABLE))
def test_a_genuine_machine_solves_with_its_root_bus_windows_over_its_devices(name: str) -> None:
    nodes = genuine(name)
    assert len(nodes) == SOLVABLE[name]
    solution = pnp.solve(nodes, timeout=120)
    assert solution.satisfiable, name
    # What used to make it unsatisfiable is there: a root bus window over a device's
    # DeviceExclusive claim; the rule says they do not collide, the flat rule says they do.
    buses = root_buses(nodes)
    assert buses
    windows = [c for b in buses for c in claims_of(b.owner, solution.resources(b.name)) if c.window]
    assert windows and all(c.share == SHARED for c in windows)
    inside = [(w, c) for w in windows for n in nodes if n not in buses
              for c in claims_of(n.owner, solution.resources(n.name))
              if c.kind is w.kind and not c.window and w.start <= c.start and c.end <= w.end
              and c.share == EXCLUSIVE]
    assert inside
    for w, c in inside:
        assert not collide(w, c)
        assert collide(replace(w, window=False), c)


def test_every_window_of_a_genuine_root_bus_is_recognised_and_nothing_else_is() -> None:
    """XP (window, a Shared copy, two 0x6000 privates) and Windows 7+ (window, one 0x6000
    private, a Flags 1 private): each port and memory range of a root bus is a window, its
    bus-number range is not; PCIe root ports' windows (WINDOW_DECODE) are; the only other
    devices with acpi.sys producer ranges are VMware's hot-plug memory devices (PNP0C80,
    their RAM); no other device's range is a window."""
    producers = set()
    for name in sorted(SOLVABLE) + ["x64-dell-laptop-system.reg", "win10-mac-t2-carved.reg"]:
        nodes = genuine(name)
        for node in nodes:
            for kind, value in node.configs.items():
                lists = [lst.descriptors for lst in value.lists] if kind.is_requirements \
                    else [full.partials for full in value.descriptors]
                for descriptors in lists:
                    found = window_positions(descriptors)
                    ranges = {i for i, d in enumerate(descriptors)
                              if isinstance(d, (Port, Memory, MemoryLarge, PortRequirement, MemoryRequirement,
                                                   MemoryLargeRequirement))}
                    flagged = {i for i in ranges if descriptors[i].flags & (
                        CM_RESOURCE_PORT_WINDOW_DECODE if isinstance(descriptors[i], (Port, PortRequirement))
                        else CM_RESOURCE_MEMORY_WINDOW_DECODE)}
                    if node in root_buses(nodes):
                        assert found == ranges, (name, node.name, kind)
                    if found - flagged:
                        producers.add(node.name.split("\\")[-2])
                    else:
                        assert found == flagged, (name, node.name, kind)
    assert producers == {"PNP0A03", "PNP0A08", "PNP0C80"}


def core_conflicts(nodes: list[DeviceNode], core: list[str]) -> list:
    a, b = (n for n in nodes if n.name in core)
    placed = pnp.candidates(a)[0].resources or pnp.candidates(a)[1].resources
    arbiter = Arbiter()
    arbiter.replace(a.owner, claims_of(a.owner, placed))
    return [c for cand in pnp.candidates(b) if cand.resources is not None
            for c in arbiter.find_conflicts(claims_of(b.owner, cand.resources))]


def test_the_dell_cannot_solve_because_its_motherboard_resources_overlap_devices_exclusively() -> None:
    """Not a window: two ACPI motherboard-resource devices (PNP0C02) both ask for ports 0x2e,
    0x4e, 0x80, 0x92, 0xb2 ... DeviceExclusive, and PNP0C02 ranges cover the RTC's
    0x72-0x77 and the firmware hub's memory, in BasicConfigVector and BootConfig alike.
    Without the PNP0C01/PNP0C02 devices the Dell solves: every conflict left is one of theirs."""
    nodes = genuine("x64-dell-laptop-system.reg")
    core = pnp.unsatisfiable_core(nodes, timeout=120, subset_budget=2000)
    assert core is not None and core.minimum
    assert sorted(core.devices) == [r"ControlSet001\Enum\ACPI\PNP0C02\10", r"ControlSet001\Enum\ACPI\PNP0C02\2"]
    conflicts = core_conflicts(nodes, core.devices)
    assert conflicts and all(not c.requested.window and not c.holder.window for c in conflicts)
    shared_ports = {p for c in conflicts for p in range(max(c.holder.start, c.requested.start),
                                                      min(c.holder.end, c.requested.end) + 1)}
    assert {0x2E, 0x2F, 0x4E, 0x4F, 0x80, 0x92, 0xB2, 0xB3} <= shared_ports
    assert all(c.holder.share == c.requested.share == EXCLUSIVE for c in conflicts)
    rest = [n for n in nodes if "PNP0C02" not in n.name and "PNP0C01" not in n.name]
    assert pnp.solve(rest, timeout=120).satisfiable
    # Assigned as NT would, in tree order: only the three PNP0C02 devices get Code 12.
    pnp.assign(nodes, timeout=120)
    assert sorted(n.name.split("\\")[-2] for n in nodes if n.problem) == ["PNP0C02"] * 3


def test_the_carved_mac_cannot_solve_because_two_apple_devices_claim_one_page_block() -> None:
    """APP0001 and APP000B (Apple ACPI devices of the carved Boot Camp hive) both ask for
    memory 0xfe0b0000-0xfe0bffff DeviceExclusive: a device-vs-device overlap, not a window."""
    nodes = genuine("win10-mac-t2-carved.reg")
    core = pnp.unsatisfiable_core(nodes, timeout=120, subset_budget=2000)
    assert core is not None and core.minimum
    assert sorted(d.split("\\")[-2] for d in core.devices) == ["APP0001", "APP000B"]
    conflicts = core_conflicts(nodes, core.devices)
    assert conflicts and all(not c.requested.window and not c.holder.window for c in conflicts)
    assert {c.holder.start for c in conflicts} == {0xFE0B0000}
    # Assigned in tree order, every other device that gets Code 12 is held off by a device
    # of another carved run (an older copy of the same hive: the same devices twice).
    pnp.assign(nodes, timeout=120)
    failed = [n for n in nodes if n.problem and "APP000B" not in n.name]
    assert len(failed) == 6
    for n in failed:
        run = n.name.split("\\")[1]
        # (a holder that is a node is named first: "NAME (PnpManager \Device\...)")
        holders = re.findall(r"held by \S+ \(PnpManager \\Device\\CarvedFragments\\([0-9a-f]+)", n.problem_detail)
        assert holders and all(h != run for h in holders), n.name


def test_genuine_xp_alloc_configs_filed_as_pnp_manager_values_do_not_conflict() -> None:
    """The four AllocConfig values of the XP machine (PCI root bus with its windows,
    keyboard, mouse, ACPI system device) go through IoReportResourceUsage one by one; a
    legacy driver on the keyboard's port is still refused, naming the keyboard, and one on
    a free port inside the root bus's window is not."""
    reg = Registry(arch=Arch.X86)
    import_reg(reg, DATA / "xp-x86-acpi.reg")
    allocs = {path.split("\\")[-3]: v.value for path, values in reg.walk(SYSTEM)
              for v in values if v.name == "AllocConfig"}
    assert sorted(allocs) == ["PNP0303", "PNP0A03", "PNP0C08", "PNP0F03"]
    io = IoManager(Registry(":memory:", arch=Arch.X86))
    pnp_mgr, devices = loaded(io, pnp.PNP_MANAGER, list(allocs))
    for device, alloc in zip(devices, allocs.values()):
        result = io.IoReportResourceUsage(pnp.PNP_RESOURCE_CLASS, pnp_mgr, None, 0, device, alloc,
                                          alloc.size(Arch.X86), False)
        assert result == (NTSTATUS.STATUS_SUCCESS, False), device.name
    assert any(c.window for c in io.arbiter.claims())
    legacy, (dev,) = loaded(io, "Legacy", ["Legacy0"])
    on_keyboard = CM_RESOURCE_LIST.single(Isa, 0, Port(0x60, 1, share=EXCLUSIVE))
    assert io.IoReportResourceUsage(None, legacy, None, 0, dev, on_keyboard, on_keyboard.size(),
                                    False) == (NTSTATUS.STATUS_CONFLICTING_ADDRESSES, True)
    assert [e.conflict.holder.owner.device for e in io.error_log.entries] == [r"\Device\PNP0303"]
    free = CM_RESOURCE_LIST.single(Isa, 0, Port(0x300, 8, share=EXCLUSIVE))
    assert io.IoReportResourceUsage(None, legacy, None, 0, dev, free, free.size(),
                                    False) == (NTSTATUS.STATUS_SUCCESS, False)
    # A new manager taking the ResourceMap over reads the windows as windows too: the
    # keyboard's port meets the keyboard alone, not the root bus's window around it.
    again = IoManager(io.registry)
    assert any(c.window for c in again.arbiter.claims())
    holders = {c.holder.owner.device for c in again.arbiter.find_conflicts(claims_of(Owner("Other", "x"), on_keyboard))}
    assert holders == {r"\Device\PNP0303"}


class _Creator:
    """A driver whose DriverEntry creates one device object per name."""

    def __init__(self, io: IoManager, name: str, devices: list[str]) -> None:
        self.io, self.service_name, self.names, self.made = io, name, devices, []

    def DriverEntry(self, DriverObject, RegistryPath) -> NTSTATUS:
        for device in self.names:
            self.made.append(self.io.IoCreateDevice(DriverObject, rf"\Device\{device}")[1])
        return NTSTATUS.STATUS_SUCCESS


def loaded(io: IoManager, name: str, devices: list[str]):
    creator = _Creator(io, name, devices)
    return io.load_driver(creator).driver_object, creator.made


# ---------------------------------------------------------------------------------------
# Trees of our own making

def acpi_window(cls, start: int, end: int) -> tuple:
    """A root bus window as acpi.sys writes one: Shared, positive decode, then the
    TRANSLATION_DATA_PARENT_ADDRESS private with the parent-side type and start."""
    typ = 1 if cls in (Port, PortRequirement) else 3
    if cls in (Port, Memory):
        rng = cls(start, end - start + 1, share=SHARED, flags=CM_RESOURCE_PORT_POSITIVE_DECODE)
        return rng, DevicePrivate((typ, start, 0), share=CmResourceShare.CmResourceShareUndetermined,
                                  flags=TRANSLATION_DATA_PARENT_ADDRESS)
    rng = cls(end - start + 1, 1, start, end, share=SHARED, flags=CM_RESOURCE_PORT_POSITIVE_DECODE)
    return rng, DevicePrivateRequirement((typ, start, 0), share=CmResourceShare.CmResourceShareUndetermined,
                                         flags=TRANSLATION_DATA_PARENT_ADDRESS)


def bridge_window(cls, start: int, end: int):
    """A PCI-to-PCI bridge window as pci.sys writes one: WINDOW_DECODE, DeviceExclusive."""
    flag = CM_RESOURCE_PORT_WINDOW_DECODE if cls is Port else CM_RESOURCE_MEMORY_WINDOW_DECODE
    return cls(start, end - start + 1, share=EXCLUSIVE, flags=flag)


def fixed(name: str, *partials, parent: str | None = None, iface=Isa) -> DeviceNode:
    return DeviceNode(f"Root\\BUSARB\\{name}", name, parent=parent,
                      configs={ConfigType.BOOT: CM_RESOURCE_LIST.single(iface, 0, *partials)})


def ranged(name: str, *descriptors, parent: str | None = None) -> DeviceNode:
    req = IO_RESOURCE_REQUIREMENTS_LIST(PCIBus, 0, 0, (IO_RESOURCE_LIST(tuple(descriptors)),))
    return DeviceNode(f"Root\\BUSARB\\{name}", name, parent=parent, configs={ConfigType.BASIC: req})


def root() -> DeviceNode:
    return fixed("root", *acpi_window(Port, 0, 0xCF7), *acpi_window(Port, 0xD00, 0xFFFF),
                 *acpi_window(Memory, 0xC0000000, 0xFEBFFFFF))


def keyboard(parent: str | None = "root") -> DeviceNode:
    return fixed("kbd", Port(0x60, 1, share=EXCLUSIVE), Port(0x64, 1, share=EXCLUSIVE), parent=parent)


@pytest.mark.parametrize("parent", ["root", None])
def test_a_device_inside_its_bus_window_is_placed(parent) -> None:
    solution = pnp.solve([root(), keyboard(parent)])
    assert solution.satisfiable


def test_a_device_outside_every_window_of_its_bus_is_refused_saying_so() -> None:
    # 0xCF8-0xCFF is between the root bus's two port windows (the configuration ports).
    stray = fixed("stray", Port(0xCF8, 8, share=EXCLUSIVE), parent="root")
    nodes = [root(), keyboard(), stray]
    assert not pnp.solve(nodes).satisfiable
    assert pnp.unsatisfiable_core(nodes).devices == ["root", "stray"]
    pnp.assign(nodes)
    assert stray.problem == pnp.CM_PROB_NORMAL_CONFLICT
    assert "outside every port window of its bus PnpManager (\\Device\\root)" in stray.problem_detail
    assert "0xd00-0xffff" in stray.problem_detail
    # Asked as a range the bus does not forward, the allocation says the same of it.
    bridge = fixed("bridge", bridge_window(Port, 0xE000, 0xEFFF), parent="root", iface=PCIBus)
    low = ranged("low", PortRequirement(0x10, 0x10, 0x1000, 0x1FFF, share=EXCLUSIVE), parent="bridge")
    assert pnp.candidates(low)[0].requirements is not None     # left to the allocation
    pnp.assign([root(), bridge, low])
    assert "outside every port window of its bus PnpManager (\\Device\\bridge) (0xe000-0xefff" \
        in low.problem_detail
    # Not on that bus (no tree), the same ports are free.
    assert pnp.solve([root(), keyboard(), fixed("stray", Port(0xCF8, 8, share=EXCLUSIVE))]).satisfiable


def test_a_device_on_a_bus_is_allocated_inside_its_windows() -> None:
    card = ranged("card", PortRequirement(0x20, 0x20, 0, 0xFFFF, share=EXCLUSIVE), parent="bridge")
    bridge = fixed("bridge", bridge_window(Port, 0xE000, 0xEFFF), parent="root", iface=PCIBus)
    solution = pnp.solve([root(), bridge, card])
    assert solution.satisfiable
    (port,) = [p for _, p in solution.resources("card").partials()]
    assert 0xE000 <= port.start and port.start + port.length - 1 <= 0xEFFF


def test_two_sibling_bridges_with_overlapping_windows_conflict() -> None:
    a = fixed("a", bridge_window(Memory, 0xE0000000, 0xE0FFFFFF), parent="root", iface=PCIBus)
    b = fixed("b", bridge_window(Memory, 0xE0800000, 0xE17FFFFF), parent="root", iface=PCIBus)
    nodes = [root(), a, b]
    assert not pnp.solve(nodes).satisfiable
    assert pnp.unsatisfiable_core(nodes).devices == ["a", "b"]
    # Siblings the tree places: even one window inside the other is a conflict ...
    c = fixed("c", bridge_window(Memory, 0xE0100000, 0xE01FFFFF), parent="root", iface=PCIBus)
    assert not pnp.solve([root(), a, c]).satisfiable
    # ... while side by side they are fine.
    d = fixed("d", bridge_window(Memory, 0xE1000000, 0xE1FFFFFF), parent="root", iface=PCIBus)
    assert pnp.solve([root(), a, d]).satisfiable


def test_without_a_tree_only_partly_overlapping_windows_conflict() -> None:
    """Genuine exports name no parents: a window inside another may be a bridge inside its
    bus; windows that cross cannot be."""
    outer = Owner("x", "outer")
    inner = Owner("x", "inner")
    arbiter = Arbiter()
    arbiter.replace(outer, claims_of(outer, CM_RESOURCE_LIST.single(Isa, 0, *acpi_window(Memory, 0xC0000000, 0xFEBFFFFF))))
    nested = claims_of(inner, CM_RESOURCE_LIST.single(PCIBus, 0, bridge_window(Memory, 0xE0000000, 0xE0FFFFFF)))
    crossing = claims_of(inner, CM_RESOURCE_LIST.single(PCIBus, 0, bridge_window(Memory, 0xFE000000, 0xFEFFFFFF)))
    assert arbiter.find_conflicts(nested) == []
    assert [c.holder.owner for c in arbiter.find_conflicts(crossing)] == [outer]


def test_a_device_conflict_inside_a_window_is_still_found() -> None:
    other = fixed("other", Port(0x64, 1, share=EXCLUSIVE), parent="root")
    nodes = [root(), keyboard(), other]
    assert not pnp.solve(nodes).satisfiable
    assert pnp.unsatisfiable_core(nodes).devices == ["kbd", "other"]


def test_a_zero_length_window_holds_nothing_and_meets_nothing() -> None:
    empty = fixed("empty", bridge_window(Memory, 0xE0000000, 0xE0000000 - 1), parent="root", iface=PCIBus)
    sibling = fixed("sibling", bridge_window(Memory, 0xDFF00000, 0xE00FFFFF), parent="root", iface=PCIBus)
    assert pnp.solve([root(), empty, sibling]).satisfiable
    child = fixed("child", Memory(0xE0000000, 0x1000, share=EXCLUSIVE), parent="empty", iface=PCIBus)
    nodes = [root(), empty, child]
    assert not pnp.solve(nodes).satisfiable
    assert pnp.unsatisfiable_core(nodes).devices == ["empty", "child"]
    anywhere = ranged("anywhere", MemoryRequirement(0x1000, 0x1000, 0, 0xFFFFFFFF, share=EXCLUSIVE), parent="empty")
    assert not pnp.solve([root(), empty, anywhere]).satisfiable
    # It has no port window at all, so its child's ports are not bound by it.
    ports = fixed("ports", Port(0xE000, 0x10, share=EXCLUSIVE), parent="empty", iface=PCIBus)
    assert pnp.solve([root(), empty, ports]).satisfiable


def test_nested_bridges_place_a_grandchild_inside_both_and_refuse_a_window_outside_its_parent() -> None:
    outer = fixed("outer", bridge_window(Port, 0xE000, 0xEFFF), parent="root", iface=PCIBus)
    inner = fixed("inner", bridge_window(Port, 0xE800, 0xE8FF), parent="outer", iface=PCIBus)
    card = ranged("card", PortRequirement(0x10, 0x10, 0, 0xFFFF, share=EXCLUSIVE), parent="inner")
    solution = pnp.solve([root(), outer, inner, card])
    assert solution.satisfiable
    (port,) = [p for _, p in solution.resources("card").partials()]
    assert 0xE800 <= port.start <= 0xE8F0
    astray = fixed("astray", bridge_window(Port, 0xF000, 0xF0FF), parent="outer", iface=PCIBus)
    nodes = [root(), outer, astray]
    assert pnp.unsatisfiable_core(nodes).devices == ["outer", "astray"]
    # A bus placed after its child still has to hold it (the whole-slot check).
    arbiter = Arbiter()
    arbiter.set_parent(astray.owner, outer.owner)
    arbiter.replace(astray.owner, claims_of(astray.owner, astray.configs[ConfigType.BOOT]))
    conflicts = arbiter.find_conflicts(claims_of(outer.owner, outer.configs[ConfigType.BOOT]))
    assert len(conflicts) == 1 and "would leave" in conflicts[0].describe()


def test_a_parent_loop_is_refused() -> None:
    a = fixed("a", bridge_window(Port, 0xE000, 0xEFFF), parent="b")
    b = fixed("b", bridge_window(Port, 0xE000, 0xEFFF), parent="a")
    with pytest.raises(pnp.PnpError, match="loops back"):
        pnp.solve([a, b])


def test_what_is_not_a_window() -> None:
    """A ResourceConsumer range (DeviceExclusive, with the same private after it), a PCI BAR
    (its private is a BAR index, Flags 0), and port Flags 0x40 (PASSIVE_DECODE, which is
    WINDOW_DECODE's bit only for memory) are claims."""
    consumer = Port(0x400, 0x80, share=EXCLUSIVE)
    private = DevicePrivate((1, 0x400, 0), flags=TRANSLATION_DATA_PARENT_ADDRESS)
    assert window_positions([consumer, private]) == set()
    assert window_positions([Memory(0xF0000000, 0x1000, share=SHARED), DevicePrivate((1, 0, 0))]) == set()
    assert window_positions([Port(0x300, 8, share=SHARED, flags=CM_RESOURCE_PORT_PASSIVE_DECODE)]) == set()
    assert window_positions([Memory(0, 0x1000, flags=CM_RESOURCE_MEMORY_WINDOW_DECODE), consumer,
                             *acpi_window(Port, 0, 0xCF7)]) == {0, 2}
