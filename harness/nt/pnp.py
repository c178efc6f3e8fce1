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
from typing import Any, Iterable, Sequence

from .arbiter import Arbiter, Claim, Conflict, Owner, claims_of, groups_of
from .registry import MACHINE, RegType, Registry
from .resources import (CM_RESOURCE_LIST, ConfigDataRequirement, DmaRequirement,
                        IO_RESOURCE_DESCRIPTOR, IO_RESOURCE_LIST, IO_RESOURCE_REQUIREMENTS_LIST,
                        InterruptRequirement, LCPRI_BOOTCONFIG, LCPRI_FORCECONFIG, LCPRI_NORMAL,
                        MemoryRequirement, PortRequirement, describe_range)
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
    extra: dict[str, Any] = field(default_factory=dict)

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
        if alloc is not None:
            registry.create_key(control, volatile=True)
            registry.set_value(control, ConfigType.ALLOC.value, alloc, RegType.REG_RESOURCE_LIST)
        elif registry.key_exists(control):
            registry.delete_value(control, ConfigType.ALLOC.value, missing_ok=True)


def load_node(registry: Registry, instance_path: str) -> DeviceNode:
    """A node as :func:`store_node` left it (configurations only; no driver)."""
    key = f"{ENUM}\\{instance_path}"
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
    return node


def stored_nodes(registry: Registry) -> list[str]:
    r"""Every ``<enumerator>\<device id>\<instance>`` under Enum, in key order."""
    if not registry.key_exists(ENUM):
        return []
    return [f"{e}\\{d}\\{i}" for e in registry.subkeys(ENUM)
            for d in registry.subkeys(f"{ENUM}\\{e}") for i in registry.subkeys(f"{ENUM}\\{e}\\{d}")]


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


def _is_window(d: IO_RESOURCE_DESCRIPTOR) -> bool:
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
            if any(_is_window(d) for d in combo):
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
    """A private arbiter with every claim of ``base`` except the nodes' own slots."""
    working = Arbiter()
    if base is None:
        return working
    mine = {n.owner for n in nodes}
    for owner in base.owners():
        if owner not in mine:
            working.replace(owner, base.claims(owner))
    return working


def static_order(nodes: Sequence[DeviceNode], cands: dict[str, list[Candidate]]) -> list[DeviceNode]:
    """Forced devices first, then fewest candidates first, ties in tree order."""
    index = {id(n): i for i, n in enumerate(nodes)}
    return sorted(nodes, key=lambda n: (n.get(ConfigType.FORCED) is None, len(cands[n.name]), index[id(n)]))


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
    return allocation.resources, claims_of(owner, allocation.resources), []


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
    alive: dict[str, list[int]] = {n.name: list(range(len(cands[n.name]))) for n in order}
    chosen: dict[str, Choice] = {}

    def prune_after(k: int) -> list[tuple[str, list[int]]] | None:
        """Forward checking: drop later concrete candidates that now conflict; None if a
        device is left with nothing (the undo list is returned either way via ``undo``)."""
        undo: list[tuple[str, list[int]]] = []
        for later in order[k + 1:]:
            keep = []
            for rank in alive[later.name]:
                cand = cands[later.name][rank]
                if not cand.concrete:
                    keep.append(rank)
                    continue
                claims = cache.get((later.name, rank))
                if claims is None:
                    claims = cache[(later.name, rank)] = claims_of(later.owner, cand.resources)
                if working.find_conflicts(claims, exclude=(later.owner,)):
                    stats.pruned += 1
                else:
                    keep.append(rank)
            if len(keep) != len(alive[later.name]):
                undo.append((later.name, alive[later.name]))
                alive[later.name] = keep
                if not keep:
                    return undo + [("<dead>", [])]
        return undo

    def restore(undo: list[tuple[str, list[int]]]) -> None:
        for name, previous in reversed(undo):
            if name != "<dead>":
                alive[name] = previous

    def descend(k: int) -> bool:
        if k == len(order):
            return True
        node = order[k]
        for rank in list(alive[node.name]):
            limit.spend(stats)
            cand = cands[node.name][rank]
            resources, claims, _ = _realise(node, cand, working, avoid, cache, rank)
            if resources is None:
                continue
            working.replace(node.owner, claims)
            undo = prune_after(k) if forward_check else []
            dead = bool(undo) and undo[-1][0] == "<dead>"
            if not dead:
                chosen[node.name] = Choice(node, cand, resources, rank)
                if descend(k + 1):
                    return True
                del chosen[node.name]
            stats.backtracks += 1
            restore(undo)
            working.release(node.owner)
        return False

    ok = descend(0)
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


def describe_conflicts(conflicts: Iterable[Conflict], limit: int = 3) -> str:
    seen, out = set(), []
    for c in conflicts:
        key = (str(c.holder.owner), c.holder.kind, c.holder.start)
        if key in seen:
            continue
        seen.add(key)
        out.append(f"{c.holder.kind.value} {describe_range(c.holder.descriptor)} held by {c.holder.owner}")
    more = f" (+{len(out) - limit} more)" if len(out) > limit else ""
    return "; ".join(out[:limit]) + more if out else "no room left in its windows"


__all__ = ["ConfigType", "DeviceNode", "Candidate", "Choice", "Solution", "SearchStats", "Core",
           "PnpError", "PnpSearchLimit", "Irp", "send_pnp_irp", "query_configurations",
           "store_node", "load_node", "stored_nodes", "enum_key", "candidates", "solve",
           "exhaustive_solve", "unsatisfiable_core", "exhaustive_minimum_core", "with_priority",
           "list_priority", "static_order", "ENUM", "IRP_MJ_PNP", "IRP_MN_QUERY_RESOURCES",
           "IRP_MN_QUERY_RESOURCE_REQUIREMENTS", "IRP_MN_FILTER_RESOURCE_REQUIREMENTS",
           "PNP_RESOURCE_CLASS", "PNP_MANAGER", "EXPAND_LIMIT"]
