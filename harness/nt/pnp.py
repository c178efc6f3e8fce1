r"""The PnP manager's resource side: device nodes, logical configurations, assignment.

Seed 004 and nt-semantics.md §6: each device node holds *requirements* configurations
(Basic, Filtered, Override: IO_RESOURCE_REQUIREMENTS_LISTs) and *resource-list*
configurations (Boot, Forced, Allocated: CM_RESOURCE_LISTs).  A requirements list carries
the priority of each of its alternative lists in a leading ConfigData descriptor (LCPRI_*,
§6.2, lower is better); a Boot configuration has LCPRI_BOOTCONFIG and a Forced one
LCPRI_FORCECONFIG.

Registry (§6.1, §2.4): ``Enum\<enumerator>\<device id>\<instance>\LogConf`` holds
BasicConfigVector, FilteredConfigVector, OverrideConfigVector (REG_RESOURCE_REQUIREMENTS_LIST)
and BootConfig, ForcedConfig (REG_RESOURCE_LIST); the allocated configuration is the
volatile ``Enum\...\Control`` value AllocConfig, where the ReactOS kernel writes it; the
claim itself goes to ``RESOURCEMAP\PnP Manager\PnpManager`` as ``<PDO name>.Raw`` /
``.Translated`` through the I/O manager.

Candidates of one device, best first (§6.3 MODEL):

1. a Forced configuration is the only candidate;
2. else the Boot configuration, then the alternative lists of the requirements —
   Filtered if a driver filtered them, else Override if present, else Basic — stably sorted
   by LCPRI (a list without ConfigData counts as LCPRI_NORMAL, ties keep list order).
   Inside a list each group (a descriptor and its ALTERNATIVE followers, PREFERRED first,
   :func:`~harness.nt.arbiter.groups_of`) contributes one choice per descriptor; an
   interrupt or DMA range is split into its single values and a port or memory range with
   at most :data:`EXPAND_LIMIT` aligned places into those places, so the search tries them
   all.  A wider window stays a window: it is placed by the arbiter's allocation
   (:meth:`~harness.nt.arbiter.Arbiter.allocate`, top-down first fit) against whatever is
   assigned when the search reaches it.  The choices of a list are taken in the order of
   ``itertools.product`` (the first group varies slowest); identical concrete
   configurations are tried once.

Search (:func:`solve`): depth-first over the devices in a *static* order — forced devices
first, then by ascending number of candidates (most constrained first), ties in tree
order — trying each device's candidates best first, with forward checking (after each
placement every later device's concrete candidates that now conflict are set aside; an
emptied device makes the search back up).  Conflict checks are the arbiter's
(:meth:`~harness.nt.arbiter.Arbiter.conflicts_with` over the compiled interval index), on
one working arbiter holding the fixed claims and the placements so far.  The result is
the lexicographically first assignment in that order (candidate rank of the first device,
then the second, ...), which :func:`exhaustive_solve` — plain enumeration of every
combination in the same order — finds too; tests and ``make bench-pnp`` compare them.
Every search has a node budget and a deadline (:class:`PnpSearchLimit`).

Bus windows (:mod:`harness.nt.arbiter`, "Bus windows"): a bus's or bridge's windows are not
claims its devices collide with.  A node's :attr:`DeviceNode.parent` names the bus it sits
on; the working arbiter gets that tree, so a device's claims must fit its bus's windows (an
allocation searches inside them), a bus's windows must keep its placed children inside,
and sibling buses' windows must not overlap.  Genuine LogConf trees name no parents: their
windows then meet only other windows, and only when neither holds the other.

Device problem codes (§6.3; cfg.h CM_PROB_*): :func:`assign` is what the PnP manager
makes of the search for a whole tree.  Devices join in tree order (the order NT
enumerates and starts them), each one only if it and every device already in can still
be placed together (the search may move the earlier ones to other candidates, which NT's
one-at-a-time arbiter would not); a device that cannot join gets CM_PROB_NORMAL_CONFLICT
(Device Manager's "Code 12") and no resources.  The assignment of the others is then
translated (HalTranslateBusAddress, HalGetInterruptVector, through the caller's
``translate``); a device whose list does not translate gets CM_PROB_TRANSLATION_FAILED
and loses its assignment, as ReactOS's ``IopAssignDeviceResources`` does.  The code is
kept on the node (:attr:`DeviceNode.problem`) and in the registry: volatile
``Enum\...\Control`` values ``Problem`` (REG_DWORD) and ``StatusFlags`` with
DN_HAS_PROBLEM (**MODEL**: NT keeps both in the device node and hands them out through
CM_Get_DevNode_Status; no public source gives a registry value for them).

Adding a configuration (:func:`add_log_conf`, CM_Add_Empty_Log_Conf with its ``ulFlags``):
a requirements configuration (Basic, Filtered, Override) takes further alternative lists,
placed among the lists of the same LCPRI first (PRIORITY_EQUAL_FIRST) or last
(PRIORITY_EQUAL_LAST) and otherwise by ascending LCPRI; Boot, Forced and Alloc are one per
device (a second is refused, CR_ALREADY_SUCH_LOGCONF).

When no assignment exists, :func:`unsatisfiable_core` reports a set of devices that cannot
be satisfied together: deletion-based (drop a device whenever the rest stays
unsatisfiable), which gives a *minimal* (irreducible) core; then, within a budget, every
smaller set of devices is tried, and when none is unsatisfiable the core is proved
*minimum* (the smallest there is).  The result says which of the two it is.
"""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from .arbiter import Arbiter, Claim, Conflict, Owner, claims_of, groups_of
from .registry import MACHINE, RegType, Registry
from .resources import (CM_RESOURCE_LIST, ConfigDataRequirement, DmaRequirement,
                        IO_RESOURCE_DESCRIPTOR, IO_RESOURCE_LIST, IO_RESOURCE_REQUIREMENTS_LIST,
                        INTERFACE_TYPE, InterruptRequirement, LCPRI_BOOTCONFIG, LCPRI_DISABLED,
                        LCPRI_FORCECONFIG, LCPRI_NORMAL, Interrupt, Memory, MemoryRequirement, Port,
                        PortRequirement, describe_range)
from .status import NTSTATUS

ENUM = MACHINE + r"\SYSTEM\CurrentControlSet\Enum"
LOG_CONF = "LogConf"
CONTROL = "Control"
PNP_RESOURCE_CLASS = "PnP Manager"
PNP_MANAGER = "PnpManager"

#: A port or memory window with at most this many aligned places is split into them.
EXPAND_LIMIT = 16
#: At most this many candidates per device (a bound, not a tuning knob).
MAX_CANDIDATES = 20000
DEFAULT_NODE_BUDGET = 200_000
DEFAULT_TIMEOUT = 30.0

# IRP_MJ_PNP minor functions the resource side uses (wdm.h).
IRP_MJ_PNP = 0x1B
IRP_MN_QUERY_RESOURCES = 0x0A
IRP_MN_QUERY_RESOURCE_REQUIREMENTS = 0x0B
IRP_MN_FILTER_RESOURCE_REQUIREMENTS = 0x0D


class ConfigType(str, enum.Enum):
    """The six logical configuration types (§6.1), with their registry value names."""

    BASIC = "BasicConfigVector"
    FILTERED = "FilteredConfigVector"
    OVERRIDE = "OverrideConfigVector"
    BOOT = "BootConfig"
    FORCED = "ForcedConfig"
    ALLOC = "AllocConfig"

    @property
    def is_requirements(self) -> bool:
        return self in (ConfigType.BASIC, ConfigType.FILTERED, ConfigType.OVERRIDE)

    @property
    def label(self) -> str:
        return self.name.lower()


REQUIREMENT_TYPES = (ConfigType.BASIC, ConfigType.FILTERED, ConfigType.OVERRIDE)
RESOURCE_TYPES = (ConfigType.BOOT, ConfigType.FORCED)


class PnpError(Exception):
    pass


# Device problem codes (cfg.h) and the devnode status bit that says one is set.
CM_PROB_NORMAL_CONFLICT = 0x0C
CM_PROB_TRANSLATION_FAILED = 0x21
PROBLEM_NAMES = {CM_PROB_NORMAL_CONFLICT: "CM_PROB_NORMAL_CONFLICT",
                 CM_PROB_TRANSLATION_FAILED: "CM_PROB_TRANSLATION_FAILED"}
DN_HAS_PROBLEM = 0x00000400
PROBLEM_VALUE, STATUS_VALUE = "Problem", "StatusFlags"

# CM_Add_Empty_Log_Conf flags (cfgmgr32.h, §6.1).
PRIORITY_EQUAL_FIRST = 0x8
PRIORITY_EQUAL_LAST = 0x0
PRIORITY_BIT = 0x8
LOG_CONF_BITS = 0x7
#: cfgmgr32's LOG_CONF type numbers for the six configuration types.
LOG_CONF_TYPES = {0: "BASIC", 1: "FILTERED", 2: "ALLOC", 3: "BOOT", 4: "FORCED", 5: "OVERRIDE"}


def problem_name(code: int) -> str:
    return PROBLEM_NAMES.get(code, f"problem {code:#x}")


class PnpSearchLimit(PnpError):
    """The search ran out of its node budget or its time before deciding."""


# ---------------------------------------------------------------------------------------
# Device nodes


@dataclass
class DeviceNode:
    r"""One device instance: ``instance_path`` is ``<enumerator>\<device id>\<instance>``
    under Enum; ``name`` is how the harness names it (the machine file's id);
    ``configs`` maps each present configuration type to its list; ``driver`` answers the
    PnP IRPs (see :func:`send_pnp_irp`); ``movable`` says whether the device can take new
    resources while the machine runs (PCI BARs can; a jumpered ISA card cannot)."""

    instance_path: str
    name: str
    configs: dict[ConfigType, Any] = field(default_factory=dict)
    driver: Any = None
    movable: bool = True
    description: str = ""
    #: Fixed claims only this device must keep clear of (e.g. windows of bridges it is not behind).
    avoid: tuple[Claim, ...] = ()
    #: The name of the node whose bus this device sits on, when the tree is known: its
    #: claims must then fit that bus's windows (:mod:`harness.nt.arbiter`, bus windows).
    parent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: CM_PROB_* set by :func:`assign` (0: none) and why, in words.
    problem: int = 0
    problem_detail: str = ""

    def get(self, kind: ConfigType) -> Any:
        return self.configs.get(kind)

    @property
    def owner(self) -> Owner:
        return Owner(PNP_MANAGER, self.pdo_name, PNP_RESOURCE_CLASS)

    @property
    def pdo_name(self) -> str:
        return self.extra.get("pdo", "\\Device\\" + self.name)

    @property
    def requirements(self) -> tuple[ConfigType, IO_RESOURCE_REQUIREMENTS_LIST] | None:
        """The requirements allocation starts from: Filtered, else Override, else Basic."""
        for kind in (ConfigType.FILTERED, ConfigType.OVERRIDE, ConfigType.BASIC):
            if self.configs.get(kind) is not None:
                return kind, self.configs[kind]
        return None


def with_priority(priority: int, *descriptors: IO_RESOURCE_DESCRIPTOR) -> IO_RESOURCE_LIST:
    """An alternative list whose first descriptor is ConfigData with an LCPRI ``priority``."""
    return IO_RESOURCE_LIST((ConfigDataRequirement(priority), *descriptors))


def list_priority(alternative: IO_RESOURCE_LIST) -> int:
    first = alternative.descriptors[0] if alternative.descriptors else None
    return first.priority if isinstance(first, ConfigDataRequirement) else LCPRI_NORMAL


def add_log_conf(node: DeviceNode, flags: int, priority: int, resources: Any, *,
                 interface_type: int = INTERFACE_TYPE.Isa, bus_number: int = 0, slot_number: int = 0) -> int:
    """CM_Add_Empty_Log_Conf with its resource descriptors (module docstring).

    ``flags`` = the LOG_CONF type (0 Basic, 1 Filtered, 2 Alloc, 3 Boot, 4 Forced,
    5 Override) | PRIORITY_EQUAL_FIRST or PRIORITY_EQUAL_LAST.  A requirements type takes
    ``resources`` as an IO_RESOURCE_LIST (its descriptors; a leading ConfigData is replaced
    by ``priority``) and returns the new list's index; a resource-list type takes a
    CM_RESOURCE_LIST, is one per device, and returns 0.  The interface, bus and slot name
    the requirements list when the node has none of that type yet."""
    if flags & ~(LOG_CONF_BITS | PRIORITY_BIT):
        raise PnpError(f"{node.name}: log conf flags {flags:#x} have bits other than the type and "
                       f"PRIORITY_EQUAL_FIRST ({PRIORITY_EQUAL_FIRST:#x})")
    type_name = LOG_CONF_TYPES.get(flags & LOG_CONF_BITS)
    if type_name is None:
        raise PnpError(f"{node.name}: log conf type {flags & LOG_CONF_BITS} is not one of "
                       + ", ".join(f"{k} ({v})" for k, v in LOG_CONF_TYPES.items()))
    if not 0 <= priority <= LCPRI_DISABLED:
        raise PnpError(f"{node.name}: priority {priority:#x} is outside LCPRI_FORCECONFIG..LCPRI_DISABLED")
    kind = ConfigType[type_name]
    if not kind.is_requirements:
        if not isinstance(resources, CM_RESOURCE_LIST):
            raise PnpError(f"{node.name}: a {kind.label} configuration is a CM_RESOURCE_LIST")
        if node.configs.get(kind) is not None:
            raise PnpError(f"{node.name}: a device has one {kind.label} configuration, and it has one")
        node.configs[kind] = resources
        return 0
    if not isinstance(resources, IO_RESOURCE_LIST):
        raise PnpError(f"{node.name}: a {kind.label} configuration takes IO_RESOURCE_LISTs")
    body = [d for d in resources.descriptors if not isinstance(d, ConfigDataRequirement)]
    new = with_priority(priority, *body)
    existing = node.configs.get(kind)
    if existing is None:
        existing = IO_RESOURCE_REQUIREMENTS_LIST(interface_type, bus_number, slot_number, ())
    lists = list(existing.lists)
    first = bool(flags & PRIORITY_EQUAL_FIRST)
    at = next((i for i, alt in enumerate(lists)
               if (list_priority(alt) >= priority if first else list_priority(alt) > priority)), len(lists))
    lists.insert(at, new)
    node.configs[kind] = replace(existing, lists=tuple(lists))
    return at


# ---------------------------------------------------------------------------------------
# IRPs


@dataclass
class Irp:
    """The part of an IRP_MJ_PNP IRP these minor functions use: ``information`` is
    IoStatus.Information (in: the list to filter; out: the driver's answer)."""

    minor_function: int
    information: Any = None
    status: NTSTATUS = NTSTATUS.STATUS_NOT_SUPPORTED


def send_pnp_irp(node: DeviceNode, minor: int, information: Any = None) -> Irp:
    """Send one PnP IRP to the node's driver (its ``dispatch_pnp(node, irp)``).  A driver
    that does not handle it leaves STATUS_NOT_SUPPORTED and the information as it was,
    as a bus driver's answer passes a function driver that has nothing to add."""
    irp = Irp(minor, information)
    dispatch = getattr(node.driver, "dispatch_pnp", None)
    if dispatch is not None:
        irp.status = NTSTATUS(dispatch(node, irp))
        if irp.status == NTSTATUS.STATUS_NOT_SUPPORTED:
            irp.information = information
    return irp


def query_configurations(node: DeviceNode) -> DeviceNode:
    """What the PnP manager asks a device's stack before assigning (§6.3): its boot
    configuration (IRP_MN_QUERY_RESOURCES), its requirements
    (IRP_MN_QUERY_RESOURCE_REQUIREMENTS) and then the driver's filter
    (IRP_MN_FILTER_RESOURCE_REQUIREMENTS) over Override-else-Basic; a changed answer
    becomes the Filtered configuration.  The node is updated and returned."""
    irp = send_pnp_irp(node, IRP_MN_QUERY_RESOURCES, node.get(ConfigType.BOOT))
    if irp.status == NTSTATUS.STATUS_SUCCESS and irp.information is not None:
        node.configs[ConfigType.BOOT] = irp.information
    irp = send_pnp_irp(node, IRP_MN_QUERY_RESOURCE_REQUIREMENTS, node.get(ConfigType.BASIC))
    if irp.status == NTSTATUS.STATUS_SUCCESS and irp.information is not None:
        node.configs[ConfigType.BASIC] = irp.information
    source = node.get(ConfigType.OVERRIDE) or node.get(ConfigType.BASIC)
    if source is not None:
        irp = send_pnp_irp(node, IRP_MN_FILTER_RESOURCE_REQUIREMENTS, source)
        if irp.status == NTSTATUS.STATUS_SUCCESS and irp.information is not None \
                and irp.information != source:
            node.configs[ConfigType.FILTERED] = irp.information
    return node


# ---------------------------------------------------------------------------------------
# Registry


def enum_key(node: DeviceNode) -> str:
    return f"{ENUM}\\{node.instance_path}"


def store_node(registry: Registry, node: DeviceNode) -> None:
    r"""Write the node's key, its LogConf values and (when allocated) ``Control\AllocConfig``
    in one transaction; configuration types the node lacks are removed."""
    key = enum_key(node)
    with registry.transaction():
        registry.create_key(key)
        if node.description:
            registry.set_value(key, "DeviceDesc", node.description)
        registry.set_value(key, "LocationInformation", node.name)
        logconf = f"{key}\\{LOG_CONF}"
        registry.create_key(logconf)
        for kind in (*REQUIREMENT_TYPES, *RESOURCE_TYPES):
            value = node.configs.get(kind)
            if value is None:
                registry.delete_value(logconf, kind.value, missing_ok=True)
                continue
            reg_type = RegType.REG_RESOURCE_REQUIREMENTS_LIST if kind.is_requirements \
                else RegType.REG_RESOURCE_LIST
            registry.set_value(logconf, kind.value, value, reg_type)
        alloc = node.configs.get(ConfigType.ALLOC)
        control = f"{key}\\{CONTROL}"
        if alloc is not None or node.problem:
            registry.create_key(control, volatile=True)
        if alloc is not None:
            registry.set_value(control, ConfigType.ALLOC.value, alloc, RegType.REG_RESOURCE_LIST)
        elif registry.key_exists(control):
            registry.delete_value(control, ConfigType.ALLOC.value, missing_ok=True)
        if node.problem:
            registry.set_value(control, PROBLEM_VALUE, node.problem, RegType.REG_DWORD)
            registry.set_value(control, STATUS_VALUE, DN_HAS_PROBLEM, RegType.REG_DWORD)
        elif registry.key_exists(control):
            registry.delete_value(control, PROBLEM_VALUE, missing_ok=True)
            registry.delete_value(control, STATUS_VALUE, missing_ok=True)


def load_node(registry: Registry, instance_path: str, enum: str = ENUM) -> DeviceNode:
    """A node as :func:`store_node` left it (configurations only; no driver); ``enum``:
    another Enum key (a SYSTEM export's ``ControlSet001\\Enum``)."""
    key = f"{enum}\\{instance_path}"
    node = DeviceNode(instance_path, registry.get(key, "LocationInformation", instance_path),
                      description=registry.get(key, "DeviceDesc", ""))
    logconf = f"{key}\\{LOG_CONF}"
    if registry.key_exists(logconf):
        for value in registry.values(logconf):
            try:
                kind = ConfigType(value.name)
            except ValueError:
                continue
            node.configs[kind] = value.value
    control = f"{key}\\{CONTROL}"
    if registry.key_exists(control):
        alloc = registry.get(control, ConfigType.ALLOC.value, None)
        if alloc is not None:
            node.configs[ConfigType.ALLOC] = alloc
        node.problem = registry.get(control, PROBLEM_VALUE, 0)
    return node


def logconf_nodes(registry: Registry, under: str) -> list[DeviceNode]:
    r"""Every device node with LogConf configurations anywhere below ``under`` (a genuine
    SYSTEM export's ``ControlSet001\Enum``, or carved hive fragments whose key paths stop
    short of Enum), each named by its path below ``under``; no tree (no parents)."""
    nodes = []
    for path, _ in registry.walk(under):
        if path.lower().endswith("\\" + LOG_CONF.lower()) and len(path) > len(under) + len(LOG_CONF) + 1:
            node = load_node(registry, path[len(under) + 1:-len(LOG_CONF) - 1], under)
            if node.configs:
                nodes.append(node)
    return nodes


def stored_nodes(registry: Registry, enum: str = ENUM) -> list[str]:
    r"""Every ``<enumerator>\<device id>\<instance>`` under Enum, in key order."""
    if not registry.key_exists(enum):
        return []
    return [f"{e}\\{d}\\{i}" for e in registry.subkeys(enum)
            for d in registry.subkeys(f"{enum}\\{e}") for i in registry.subkeys(f"{enum}\\{e}\\{d}")]


# ---------------------------------------------------------------------------------------
# Candidates


@dataclass(frozen=True)
class Candidate:
    """One configuration a device may get: where it comes from (type, list index, choice
    number), its priority, and either the concrete list (``resources``) or, when a wide
    window is left to the arbiter, the single-list ``requirements`` to place."""

    source: ConfigType
    priority: int
    list_index: int | None
    choice: int
    resources: CM_RESOURCE_LIST | None = None
    requirements: IO_RESOURCE_REQUIREMENTS_LIST | None = None

    @property
    def concrete(self) -> bool:
        return self.resources is not None

    def describe(self) -> str:
        where = self.source.label if self.list_index is None else \
            f"{self.source.label} list {self.list_index}"
        return f"{where} (priority {self.priority:#06x}), choice {self.choice}"


def _points(d: IO_RESOURCE_DESCRIPTOR) -> list[IO_RESOURCE_DESCRIPTOR]:
    """A descriptor split into single-value descriptors when it is small enough."""
    fixed = replace(d, option=0)
    if isinstance(d, (InterruptRequirement, DmaRequirement)):
        lo, hi = (d.minimum_vector, d.maximum_vector) if isinstance(d, InterruptRequirement) \
            else (d.minimum_channel, d.maximum_channel)
        if hi < lo or hi - lo >= 256:
            return [fixed]
        if isinstance(d, InterruptRequirement):
            return [replace(fixed, minimum_vector=v, maximum_vector=v) for v in range(lo, hi + 1)]
        return [replace(fixed, minimum_channel=c, maximum_channel=c) for c in range(lo, hi + 1)]
    if isinstance(d, (PortRequirement, MemoryRequirement)):
        if d.length == 0:  # asks for nothing (a bridge window with nothing behind it): no places
            return [fixed]
        align = max(d.alignment, 1)
        first = -(-d.minimum_address // align) * align
        last = d.maximum_address - max(d.length, 1) + 1
        if last < first:
            return [fixed]
        count = (last - first) // align + 1
        if count > EXPAND_LIMIT or count == 1:
            return [fixed]
        return [replace(fixed, minimum_address=s, maximum_address=s + d.length - 1)
                for s in range(first, last + 1, align)]
    return [fixed]


def _has_room(d: IO_RESOURCE_DESCRIPTOR) -> bool:
    """A requirement with more than one place (left to the arbiter's allocation)."""
    if isinstance(d, (PortRequirement, MemoryRequirement)):
        return d.maximum_address - d.minimum_address + 1 > max(d.length, 1)
    if isinstance(d, InterruptRequirement):
        return d.maximum_vector > d.minimum_vector
    if isinstance(d, DmaRequirement):
        return d.maximum_channel > d.minimum_channel
    return hasattr(d, "length") and hasattr(d, "minimum_address")


def candidates(node: DeviceNode, *, limit: int = MAX_CANDIDATES) -> list[Candidate]:
    """The node's candidates, best first (module docstring).  Concrete ones are built by
    the arbiter's own placement on an empty arbiter (a list whose own groups collide is
    dropped there)."""
    forced = node.get(ConfigType.FORCED)
    if forced is not None:
        return [Candidate(ConfigType.FORCED, LCPRI_FORCECONFIG, None, 0, forced)]
    out: list[Candidate] = []
    seen: set[bytes] = set()

    def add(c: Candidate) -> None:
        if c.resources is not None:
            key = c.resources.pack()
            if key in seen:
                return
            seen.add(key)
        if len(out) >= limit:
            raise PnpError(f"{node.name}: more than {limit} candidate configurations")
        out.append(c)

    boot = node.get(ConfigType.BOOT)
    if boot is not None and boot.count:
        add(Candidate(ConfigType.BOOT, LCPRI_BOOTCONFIG, None, 0, boot))
    found = node.requirements
    if found is None:
        return out
    kind, req = found
    empty = Arbiter()
    order = sorted(enumerate(req.lists), key=lambda item: list_priority(item[1]))
    for index, alternative in order:
        head = [d for d in alternative.descriptors if isinstance(d, ConfigDataRequirement)][:1]
        choices = [[p for d in group for p in _points(d)] for group in groups_of(alternative)]
        for number, combo in enumerate(itertools.product(*choices)):
            single = IO_RESOURCE_REQUIREMENTS_LIST(req.interface_type, req.bus_number, req.slot_number,
                                                   (IO_RESOURCE_LIST((*head, *combo)),))
            priority = list_priority(alternative)
            if any(_has_room(d) for d in combo):
                add(Candidate(kind, priority, index, number, None, single))
                continue
            placed = empty.allocate(node.owner, single).resources
            if placed is not None:
                add(Candidate(kind, priority, index, number, placed))
    return out


# ---------------------------------------------------------------------------------------
# Search


@dataclass
class Choice:
    """What one device got: the candidate and the concrete resources."""

    node: DeviceNode
    candidate: Candidate
    resources: CM_RESOURCE_LIST
    rank: int                        # position of the candidate in the device's list


@dataclass
class SearchStats:
    nodes: int = 0                   # candidate placements tried
    backtracks: int = 0              # placements undone because a later device had nothing left
    pruned: int = 0                  # candidates set aside by forward checking
    seconds: float = 0.0


@dataclass
class Solution:
    satisfiable: bool
    choices: dict[str, Choice] = field(default_factory=dict)    # node name -> choice
    order: list[str] = field(default_factory=list)
    stats: SearchStats = field(default_factory=SearchStats)
    #: Per node, why each better candidate than the chosen one was refused (first holders).
    refused: dict[str, list[tuple[Candidate, list[Conflict]]]] = field(default_factory=dict)

    def resources(self, name: str) -> CM_RESOURCE_LIST:
        return self.choices[name].resources

    def ranks(self) -> tuple[int, ...]:
        return tuple(self.choices[n].rank for n in self.order)


class _Budget:
    def __init__(self, budget: int, timeout: float, what: str) -> None:
        self.left = budget
        self.budget = budget
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.what = what

    def spend(self, stats: SearchStats) -> None:
        stats.nodes += 1
        self.left -= 1
        if self.left < 0:
            raise PnpSearchLimit(f"{self.what}: node budget of {self.budget} placements exhausted "
                                 f"({stats.backtracks} backtracks) before a verdict")
        if stats.nodes % 256 == 0 and time.monotonic() > self.deadline:
            raise PnpSearchLimit(f"{self.what}: no verdict within {self.timeout:g} s "
                                 f"({stats.nodes} placements, {stats.backtracks} backtracks)")


def _working_arbiter(base: Arbiter | None, nodes: Sequence[DeviceNode]) -> Arbiter:
    """A private arbiter with every claim of ``base`` except the nodes' own slots, and
    the device tree: each node's bus (:attr:`DeviceNode.parent`) among the nodes."""
    working = Arbiter()
    owners = {n.name: n.owner for n in nodes}
    for n in nodes:
        if n.parent is not None and n.parent in owners:
            working.set_parent(n.owner, owners[n.parent])
    if base is None:
        return working
    mine = set(owners.values())
    for owner in base.owners():
        if owner not in mine:
            working.replace(owner, base.claims(owner))
    return working


def static_order(nodes: Sequence[DeviceNode], cands: dict[str, list[Candidate]]) -> list[DeviceNode]:
    """Forced devices first, then fewest candidates first, ties in tree order; a device
    whose every candidate is left to the arbiter's allocation goes after the others (it
    adapts to what is placed, the others cannot: a BAR with "any IRQ" placed first would
    take the timer's IRQ 0 and leave the timer nothing, as on the genuine Dell)."""
    index = {id(n): i for i, n in enumerate(nodes)}
    return sorted(nodes, key=lambda n: (n.get(ConfigType.FORCED) is None,
                                        bool(cands[n.name]) and not any(c.concrete for c in cands[n.name]),
                                        len(cands[n.name]), index[id(n)]))


class _Avoid:
    """Per-node fixed claims to keep clear of, in a small arbiter of their own."""

    def __init__(self, nodes: Sequence[DeviceNode]) -> None:
        self.by_node: dict[str, Arbiter] = {}
        for n in nodes:
            if n.avoid:
                a = Arbiter()
                owner = Owner("<avoid>")
                a.replace(owner, [replace(c, owner=owner) for c in n.avoid])
                self.by_node[n.name] = a

    def blocks(self, node: DeviceNode, claims: Sequence[Claim]) -> list[Conflict]:
        a = self.by_node.get(node.name)
        return a.find_conflicts(claims) if a is not None else []


def _fixed_part(node: DeviceNode, cand: Candidate) -> list[Claim]:
    """The claims a candidate left to the arbiter's allocation holds wherever it places
    the rest: its descriptors with a single place (a PCI VGA's legacy ranges beside its
    BARs), on which forward checking prunes it (it kept every such candidate)."""
    req = cand.requirements
    fixed = tuple(d for d in req.lists[0].descriptors
                  if isinstance(d, (PortRequirement, MemoryRequirement, InterruptRequirement, DmaRequirement))
                  and not _has_room(d))
    if not fixed:
        return []
    placed = Arbiter().allocate(node.owner, IO_RESOURCE_REQUIREMENTS_LIST(
        req.interface_type, req.bus_number, req.slot_number, (IO_RESOURCE_LIST(fixed),))).resources
    return claims_of(node.owner, placed) if placed is not None else []


def _held_whatever(node: DeviceNode, cands: Sequence[Candidate]) -> list[Claim]:
    """The claims every candidate of ``node`` holds (a GUS's AdLib ports in each of its
    configurations; none for a node without candidates)."""
    held = [{(c.kind, c.start, c.end): c for c in (claims_of(node.owner, cand.resources) if cand.concrete
                                                    else _fixed_part(node, cand))} for cand in cands]
    if not held:
        return []
    common = set(held[0]).intersection(*held[1:])
    return [claim for key, claim in held[0].items() if key in common]


def _two_never_fit(order: Sequence[DeviceNode], cands: dict[str, list[Candidate]], working: Arbiter) -> bool:
    """Whether two nodes hold conflicting claims in every configuration each can have:
    then no assignment exists, whatever the others get.  The search would learn it only
    at the later of the two, once for each choice of each device whose placement pruned
    some of its candidates (livefuzz round five, seed 5001226: two GUS cards, which both
    decode the AdLib's 0x388 in all of their 211 configurations, beside an SB16's 144: no
    verdict within 30 s)."""
    held = [(n, claims) for n in order if (claims := _held_whatever(n, cands[n.name]))]
    for i, (a, mine) in enumerate(held):
        working.replace(a.owner, mine)
        try:
            if any(c.holder.owner == a.owner for b, theirs in held[i + 1:]
                   for c in working.find_conflicts(theirs, exclude=(b.owner,))):
                return True
        finally:
            working.release(a.owner)
    return False


def _realise(node: DeviceNode, cand: Candidate, working: Arbiter, avoid: _Avoid,
             claim_cache: dict[tuple[str, int], list[Claim]], rank: int,
             ) -> tuple[CM_RESOURCE_LIST | None, list[Claim], list[Conflict]]:
    """The candidate's concrete list against the working arbiter, or why not."""
    owner = node.owner
    if cand.concrete:
        claims = claim_cache.get((node.name, rank))
        if claims is None:
            claims = claim_cache[(node.name, rank)] = claims_of(owner, cand.resources)
        blockers = working.find_conflicts(claims, exclude=(owner,)) + avoid.blocks(node, claims)
        return (None if blockers else cand.resources), claims, blockers
    reserved = list(node.avoid)
    allocation = working.allocate(owner, cand.requirements, reserved=reserved)
    if allocation.resources is None:
        conflicts = [c for a in allocation.attempts for c in a.conflicts]
        return None, [], conflicts
    claims = claims_of(owner, allocation.resources)
    # The whole list at once: a bus's placed windows must still hold its children's claims.
    blockers = working.find_conflicts(claims, exclude=(owner,))
    return (None if blockers else allocation.resources), claims, blockers


def solve(nodes: Sequence[DeviceNode], base: Arbiter | None = None, *,
          budget: int = DEFAULT_NODE_BUDGET, timeout: float = DEFAULT_TIMEOUT,
          forward_check: bool = True, cands: dict[str, list[Candidate]] | None = None) -> Solution:
    """Assign every node (module docstring): the first assignment in the static order, or
    ``satisfiable=False``.  ``base`` holds the claims to keep (HAL, legacy drivers, what
    the platform decodes); it is not changed.  Raises :class:`PnpSearchLimit`."""
    t0 = time.monotonic()
    _check_names(nodes)
    cands = cands if cands is not None else {n.name: candidates(n) for n in nodes}
    order = static_order(nodes, cands)
    working = _working_arbiter(base, nodes)
    avoid = _Avoid(nodes)
    stats = SearchStats()
    limit = _Budget(budget, timeout, f"PnP assignment of {len(nodes)} device(s)")
    cache: dict[tuple[str, int], list[Claim]] = {}
    if _two_never_fit(order, cands, working):
        stats.seconds = time.monotonic() - t0
        return Solution(False, {}, [n.name for n in order], stats)
    alive: dict[str, list[int]] = {n.name: list(range(len(cands[n.name]))) for n in order}
    chosen: dict[str, Choice] = {}

    depth = {n.owner: i for i, n in enumerate(order)}
    #: Which depth set each (node, rank) aside (forward checking), and per depth the
    #: earlier depths whose placements its candidates failed against: conflict-directed
    #: backjumping goes back to the latest of those, over placements that had no part in
    #: the failure (three IPMI cards for two places were tried again under every choice of
    #: every unrelated PCI function placed before them: livefuzz round five, seed 5001044).
    #: A placement the arbiter allocated (not a concrete candidate) lies where the claims
    #: before it left room: blaming it blames every depth up to it.
    pruner: dict[tuple[str, int], int] = {}
    blamed: list[set[int]] = [set() for _ in order]
    behind: list[set[int]] = [set() for _ in order]

    def pruned_by(node: DeviceNode) -> set[int]:
        alive_now = set(alive[node.name])
        return set().union(*(behind[pruner[(node.name, r)]] for r in range(len(cands[node.name]))
                             if r not in alive_now))

    def holders(conflicts: Sequence[Conflict], k: int) -> set[int]:
        """The depths before ``k`` behind the placed nodes holding what blocked."""
        return set().union(*(behind[depth[c.holder.owner]] for c in conflicts if depth.get(c.holder.owner, k) < k))

    def prune_after(k: int) -> list[tuple[str, list[int]]] | None:
        """Forward checking: drop later candidates that now conflict (a candidate left to
        the arbiter by the part it holds wherever it goes: :func:`_fixed_part`); the
        undo list ends with ("<dead>", [name]) if a device is left with nothing."""
        undo: list[tuple[str, list[int]]] = []
        for later in order[k + 1:]:
            keep = []
            for rank in alive[later.name]:
                cand = cands[later.name][rank]
                claims = cache.get((later.name, rank))
                if claims is None:
                    claims = cache[(later.name, rank)] = claims_of(later.owner, cand.resources) \
                        if cand.concrete else _fixed_part(later, cand)
                if claims and working.find_conflicts(claims, exclude=(later.owner,)):
                    stats.pruned += 1
                    pruner[(later.name, rank)] = k
                else:
                    keep.append(rank)
            if len(keep) != len(alive[later.name]):
                undo.append((later.name, alive[later.name]))
                alive[later.name] = keep
                if not keep:
                    return undo + [("<dead>", [later.name])]
        return undo

    def restore(undo: list[tuple[str, list[int]]]) -> None:
        for name, previous in reversed(undo):
            if name != "<dead>":
                alive[name] = previous

    def descend(k: int) -> bool | int:
        """True when every node from depth ``k`` on is placed; else the depth to go back to
        (-1: none, no assignment exists)."""
        if k == len(order):
            return True
        node = order[k]
        blamed[k] = set()
        for rank in list(alive[node.name]):
            limit.spend(stats)
            cand = cands[node.name][rank]
            resources, claims, blockers = _realise(node, cand, working, avoid, cache, rank)
            if resources is None:
                # an allocation that found no room failed on what every claim before it left
                blamed[k] |= holders(blockers, k) if cand.concrete else set(range(k))
                continue
            behind[k] = {k} if cand.concrete else set(range(k + 1))
            working.replace(node.owner, claims)
            undo = prune_after(k) if forward_check else []
            dead = bool(undo) and undo[-1][0] == "<dead>"
            back: bool | int = k
            if dead:
                wiped = next(n for n in order if n.name == undo[-1][1][0])
                blamed[k] |= pruned_by(wiped) - {k}
            else:
                chosen[node.name] = Choice(node, cand, resources, rank)
                back = descend(k + 1)
                if back is True:
                    return True
                del chosen[node.name]
            stats.backtracks += 1
            restore(undo)
            working.release(node.owner)
            if back < k:
                return back   # this node's placement had no part in the failure below
        culprits = blamed[k] | pruned_by(node)
        if not culprits:
            return -1
        h = max(culprits)
        blamed[h] |= culprits - {h}
        return h

    ok = descend(0) is True
    stats.seconds = time.monotonic() - t0
    solution = Solution(ok, chosen if ok else {}, [n.name for n in order], stats)
    if ok:
        solution.refused = _refusals(order, cands, solution, base, avoid)
    return solution


def _refusals(order: Sequence[DeviceNode], cands: dict[str, list[Candidate]], solution: Solution,
              base: Arbiter | None, avoid: _Avoid) -> dict[str, list[tuple[Candidate, list[Conflict]]]]:
    """For each device, the better candidates it did not get and what held them, against
    the final assignment of every other device (one arbiter with everything placed)."""
    everything = _working_arbiter(base, order)
    for name, choice in solution.choices.items():
        everything.replace(choice.node.owner, claims_of(choice.node.owner, choice.resources))
    out: dict[str, list[tuple[Candidate, list[Conflict]]]] = {}
    for node in order:
        choice = solution.choices[node.name]
        refused = []
        for rank, cand in enumerate(cands[node.name][:choice.rank]):
            _, _, blockers = _realise(node, cand, everything, avoid, {}, rank)
            refused.append((cand, blockers))
        if refused:
            out[node.name] = refused
    return out


#: ``translate(node, resources)``: None when the HAL translates every descriptor, else why not.
Translator = Callable[[DeviceNode, CM_RESOURCE_LIST], "str | None"]


def assign(nodes: Sequence[DeviceNode], base: Arbiter | None = None, *, translate: Translator | None = None,
           solution: Solution | None = None, budget: int = DEFAULT_NODE_BUDGET,
           timeout: float = DEFAULT_TIMEOUT) -> Solution:
    """What the PnP manager makes of the tree (module docstring): the devices that get
    resources, and a CM_PROB_* on each node that does not (set here, cleared on the
    others).  ``solution``: the full tree's :func:`solve`, if already made."""
    _check_names(nodes)
    cands = {n.name: candidates(n) for n in nodes}
    for n in nodes:
        n.problem, n.problem_detail = 0, ""
    if solution is None:
        solution = solve(nodes, base, budget=budget, timeout=timeout, cands=cands)
    placed = list(nodes)
    if not solution.satisfiable:
        placed = []
        for node in nodes:                # tree order: who was there first keeps its place
            trial = solve(placed + [node], base, budget=budget, timeout=timeout,
                          cands={n.name: cands[n.name] for n in placed + [node]})
            if trial.satisfiable:
                placed.append(node)
                solution = trial
            else:
                node.problem = CM_PROB_NORMAL_CONFLICT
        if not placed:
            solution = Solution(True, {}, [], solution.stats)
        everything = _working_arbiter(base, nodes)
        for name, choice in solution.choices.items():
            everything.replace(choice.node.owner, claims_of(choice.node.owner, choice.resources))
        avoid = _Avoid(nodes)
        for node in nodes:
            if node.problem:
                blockers = [c for rank, cand in enumerate(cands[node.name])
                            for c in _realise(node, cand, everything, avoid, {}, rank)[2]]
                node.problem_detail = ("no candidate configuration is free: " + describe_conflicts(blockers, nodes=nodes)
                                       if cands[node.name] else "it has no candidate configuration")
    if translate is not None:
        for name, choice in list(solution.choices.items()):
            why = translate(choice.node, choice.resources)
            if why:
                choice.node.problem = CM_PROB_TRANSLATION_FAILED
                choice.node.problem_detail = why
                del solution.choices[name]
    solution.satisfiable = not any(n.problem for n in nodes)
    return solution


def hal_translator(hal: Any) -> Translator:
    """A :data:`Translator` through a HAL: each port and memory range by
    HalTranslateBusAddress, each interrupt by HalGetInterruptVector (as the I/O manager
    makes ``.Translated``, but a refusal is a failure here, not a copy of the raw value)."""
    def translate(node: DeviceNode, resources: CM_RESOURCE_LIST) -> str | None:
        for full in resources.descriptors:
            bus = f"{INTERFACE_TYPE(full.interface_type).name} bus {full.bus_number}"
            for p in full.partials:
                if isinstance(p, (Port, Memory)):
                    if not hal.HalTranslateBusAddress(full.interface_type, full.bus_number, p.start,
                                                      1 if isinstance(p, Port) else 0):
                        space = "port" if isinstance(p, Port) else "memory"
                        return f"HalTranslateBusAddress refuses {space} {describe_range(p)} on {bus}"
                elif isinstance(p, Interrupt):
                    if not hal.HalGetInterruptVector(full.interface_type, full.bus_number,
                                                     p.level or p.vector, p.vector or p.level):
                        return f"HalGetInterruptVector gives no vector for {describe_range(p)} on {bus}"
        return None
    return translate


def exhaustive_solve(nodes: Sequence[DeviceNode], base: Arbiter | None = None, *,
                     budget: int = 2_000_000) -> Solution:
    """Every combination of candidates in the static order (the last device varying
    fastest), realised device by device on a fresh working arbiter; the first that places
    every device.  No pruning, no shortcuts: the reference :func:`solve` must agree with."""
    t0 = time.monotonic()
    _check_names(nodes)
    cands = {n.name: candidates(n) for n in nodes}
    order = static_order(nodes, cands)
    avoid = _Avoid(nodes)
    stats = SearchStats()
    for combo in itertools.product(*(range(len(cands[n.name])) for n in order)):
        stats.nodes += 1
        if stats.nodes > budget:
            raise PnpSearchLimit(f"exhaustive search: more than {budget} combinations")
        working = _working_arbiter(base, nodes)
        chosen = {}
        for node, rank in zip(order, combo):
            cand = cands[node.name][rank]
            resources, claims, _ = _realise(node, cand, working, avoid, {}, rank)
            if resources is None:
                break
            working.replace(node.owner, claims)
            chosen[node.name] = Choice(node, cand, resources, rank)
        else:
            stats.seconds = time.monotonic() - t0
            return Solution(True, chosen, [n.name for n in order], stats)
    stats.seconds = time.monotonic() - t0
    return Solution(False, {}, [n.name for n in order], stats)


def _check_names(nodes: Sequence[DeviceNode]) -> None:
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise PnpError(f"device names must be unique: {', '.join(dup)}")
    parents = {n.name: n.parent for n in nodes}
    for n in nodes:
        seen, walk = {n.name}, n.parent
        while walk is not None and walk in parents:
            if walk in seen:
                raise PnpError(f"{n.name}: its parent chain loops back through {walk}")
            seen.add(walk)
            walk = parents[walk]


# ---------------------------------------------------------------------------------------
# Unsatisfiable cores


@dataclass
class Core:
    devices: list[str]
    minimum: bool                   # proved the smallest; otherwise minimal (irreducible)
    checks: int                     # satisfiability checks made

    @property
    def kind(self) -> str:
        return "minimum" if self.minimum else "minimal"


def unsatisfiable_core(nodes: Sequence[DeviceNode], base: Arbiter | None = None, *,
                       budget: int = DEFAULT_NODE_BUDGET, timeout: float = DEFAULT_TIMEOUT,
                       subset_budget: int = 20000) -> Core | None:
    """A set of devices that cannot be satisfied together, or None when all can
    (module docstring: deletion-based minimal core, then a bounded proof of minimum)."""
    cands = {n.name: candidates(n) for n in nodes}
    checks = 0

    def sat(subset: Sequence[DeviceNode]) -> bool:
        nonlocal checks
        checks += 1
        return solve(subset, base, budget=budget, timeout=timeout,
                     cands={n.name: cands[n.name] for n in subset}).satisfiable

    if sat(nodes):
        return None
    core = list(nodes)
    for node in list(nodes):
        trial = [n for n in core if n is not node]
        if not sat(trial):
            core = trial
    minimum, tried = True, 0
    for size in range(1, len(core)):
        for subset in itertools.combinations(nodes, size):
            tried += 1
            if tried > subset_budget:
                minimum = False
                break
            if not sat(subset):
                core = list(subset)
                break
        else:
            continue
        break
    return Core([n.name for n in core], minimum, checks)


def exhaustive_minimum_core(nodes: Sequence[DeviceNode], base: Arbiter | None = None) -> list[str] | None:
    """The smallest unsatisfiable set by trying every subset, smallest first, with
    :func:`exhaustive_solve` (small instances only)."""
    for size in range(1, len(nodes) + 1):
        for subset in itertools.combinations(nodes, size):
            if not exhaustive_solve(subset, base).satisfiable:
                return [n.name for n in subset]
    return None


# ---------------------------------------------------------------------------------------
# Text


def describe_resources(resources: CM_RESOURCE_LIST | None) -> str:
    if resources is None:
        return "-"
    return ", ".join(describe_range(p) for _, p in resources.partials()) or "(nothing)"


def describe_conflicts(conflicts: Iterable[Conflict], limit: int = 3, nodes: Iterable[DeviceNode] = ()) -> str:
    """The holders of what ``conflicts`` refused; a holder that is one of ``nodes`` by its
    name first (``dx0 (PnpManager \\Device\\00000002)``: the numbered PDO alone names no one)."""
    names = {n.pdo_name: n.name for n in nodes}
    seen, out = set(), []
    for c in conflicts:
        key = (str(c.holder.owner), c.holder.kind, c.holder.start)
        if key in seen:
            continue
        seen.add(key)
        owner = c.holder.owner
        holder = (f"{names[owner.device]} ({owner.driver} {owner.device})"
                  if owner.driver == PNP_MANAGER and owner.device in names else str(owner))
        out.append(c.describe() if c.reason else
                   f"{c.holder.kind.value} {describe_range(c.holder.descriptor)} held by {holder}")
    more = f" (+{len(out) - limit} more)" if len(out) > limit else ""
    return "; ".join(out[:limit]) + more if out else "no room left in its windows"


__all__ = ["ConfigType", "DeviceNode", "Candidate", "Choice", "Solution", "SearchStats", "Core",
           "PnpError", "PnpSearchLimit", "Irp", "send_pnp_irp", "query_configurations",
           "store_node", "load_node", "stored_nodes", "logconf_nodes", "enum_key", "candidates", "solve",
           "exhaustive_solve", "unsatisfiable_core", "exhaustive_minimum_core", "with_priority",
           "list_priority", "static_order", "ENUM", "IRP_MJ_PNP", "IRP_MN_QUERY_RESOURCES",
           "IRP_MN_QUERY_RESOURCE_REQUIREMENTS", "IRP_MN_FILTER_RESOURCE_REQUIREMENTS",
           "PNP_RESOURCE_CLASS", "PNP_MANAGER", "EXPAND_LIMIT", "assign", "add_log_conf", "problem_name",
           "CM_PROB_NORMAL_CONFLICT", "CM_PROB_TRANSLATION_FAILED", "DN_HAS_PROBLEM", "PRIORITY_EQUAL_FIRST",
           "PRIORITY_EQUAL_LAST", "Translator", "hal_translator"]
