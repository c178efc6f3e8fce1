"""Test matrices: named axes of machine fragments → cells, each a validated machine.

A matrix file (``configs/matrices/*.yaml``) multiplies named *axes*.  Each axis maps
value names to fragments of a machine file; a *cell* takes one value of every axis and
merges their fragments (over an optional ``base`` machine) into one machine::

    name: isa-legacy
    base: ../machines/default.yaml      # optional, relative to this file; its name is dropped
    axes:                               # ordered: the cell id joins value names in this order
      machine: {pc: {machine: pc}, q35: {machine: q35}, isapc: {machine: isapc}}
      accel:   {tcg: {accel: tcg}}
      devices:
        isa_legacy: {devices: [{model: isa-serial, id: com1}, {model: ne2k_isa, id: ne0}]}
        pci_nics:   {devices: [{model: e1000, id: nic0, addr: 3}]}
        from_catalog: each_setting      # generated values, see below
    only:                               # keep a cell that matches ANY of these (default: all)
      - {machine: [pc, q35]}
    exclude:                            # then drop a cell that matches any of these
      - machine=q35 devices=isa-fdc*    # the one-line form of {machine: q35, devices: isa-fdc*}
    expect:                             # cells are expected clean unless a rule says otherwise
      - {when: {machine: [pc, q35], devices: ne2k_isa}, outcome: conflict,
         why: the HAL holds IRQ 9 for the ACPI SCI}

Expectation rules are tried in order and the last matching one wins; a rule may add
``known_issue: TEXT`` when the job is known to disagree (a gap in the job, not in the
hardware): the cell is then an expected failure (``xfail``) until the job agrees.

Merging: ``devices`` lists add up (the base's first, then each axis's in axis order);
any other machine key (``machine``, ``accel``, ``memory``, ``drivers``, ...) may come from
the base and be overridden by one axis value — two axes setting the same key is an error.

Ids: a cell's id is its value names joined by ``-`` in axis order (``pc-tcg-isa_legacy``);
it names nothing else (no index, no hash), so reordering values or adding a value or an
axis value elsewhere never renames an existing cell.  The cell's machine is named after
its id, so run folders read like the test ids.

Filters (``only`` and ``exclude``: avocado's only/no, but YAML 1.1 reads a bare ``no:`` key
as false, so the drop list is ``exclude``): a filter maps axis names to a value-name pattern or a list of them (shell
globs: ``isa-serial*``); a cell matches when every named axis matches (AND), any pattern
of an axis matching (OR).  The string form is ``axis=pat[,pat] axis=pat``.  Every axis
name and every pattern must match something, or loading fails with "did you mean".

Generated values (``from_catalog``) put one device, id ``dut``, in each value:
``each_model``: every catalog model with its defaults (value ``isa-serial``);
``each_setting``: that, plus one value per alternative choice of every property that
offers ``choices`` (the card's jumpers), set explicitly and the rest left at their
defaults (value ``isa-serial_iobase_0x2f8``).  A floppy drive on a machine without a
built-in controller gets an ``isa-fdc`` to sit on.

Exclusions: a cell whose machine type cannot hold one of its devices (the model does not
list that machine: PCI cards on isapc, a PCIe root port on pc) is left out with its
reason, as are cells the filters drop; :attr:`Matrix.excluded` lists them all with the
reason (``harness matrix FILE --list``).  Any other invalid cell is an error.

Sharding (:func:`shard`): cells are assigned by rendezvous hashing of their ids with a
load cap, so shard sizes differ by at most one and a cell's shard depends (almost) only
on its own id: adding or removing a cell moves few others (see :func:`shard`).
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import FIRMWARE_LOG_PORT, MachineSpec, on_firmware_log_port, parse_machine
from .devices import Catalog, DeviceModel, load_catalog
from .packagedata import resolve_config
from .verdict import VERDICTS
from .errors import COMMAND_LINE, ConfigError, HarnessError, unknown_name
from .yamlio import Node, get_list, get_str, load_file, load_text

_MATRIX_KEYS = frozenset({"name", "description", "base", "axes", "only", "exclude", "expect"})
#: Machine-file keys a fragment may set (the cell's id is its name; expectations come
#: from the ``expect`` rules).
_FRAGMENT_KEYS = frozenset({"description", "machine", "accel", "memory", "devices",
                            "firmware_log", "drivers", "builtin", "after_firmware"})
_RULE_KEYS = frozenset({"when", "outcome", "why", "known_issue"})
OUTCOMES = VERDICTS
GENERATORS = ("each_model", "each_setting")
GENERATOR_KEY = "from_catalog"
#: The generated device's id ("device under test").
DUT_ID = "dut"
#: Machine types whose board has a floppy controller of its own (q35 has none; the
#: machine-file check that refuses a bare floppy on q35 is harness.config._check_topology).
BUILTIN_FDC = ("pc", "isapc")
_VALUE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,47}")
_AXIS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_FILTER_ITEM_RE = re.compile(r"([^=\s]+)=(\S+)")


@dataclass(frozen=True)
class Filter:
    """One ``only``/``no``/``when`` filter: axis → patterns, with where it was written."""

    patterns: Mapping[str, tuple[str, ...]]
    where: str  # "only[0] (line 12)"

    def matches(self, axes: Mapping[str, str]) -> bool:
        return all(any(fnmatch.fnmatchcase(axes[axis], p) for p in pats)
                   for axis, pats in self.patterns.items())

    def __str__(self) -> str:
        return " ".join(f"{a}={','.join(p)}" for a, p in self.patterns.items())


@dataclass(frozen=True)
class Cell:
    """One cell: a fully validated machine named after the cell's id."""

    id: str
    axes: Mapping[str, str]
    spec: MachineSpec
    expect: str = "clean"
    #: Why the cell expects what it does (the matching ``expect`` rule's ``why``).
    why: str = ""
    #: Set when the job is known to disagree with the expectation (a gap in the job,
    #: named here); such a cell is an expected failure until the job is fixed.
    known_issue: str = ""


@dataclass(frozen=True)
class Excluded:
    """A combination of axis values that is not a cell, and why."""

    id: str
    axes: Mapping[str, str]
    reason: str


@dataclass
class Matrix:
    name: str
    source: str
    description: str
    axes: dict[str, tuple[str, ...]]
    cells: list[Cell]
    excluded: list[Excluded] = field(default_factory=list)

    def cell(self, cell_id: str) -> Cell:
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        raise KeyError(cell_id)

    def select(self, filters: Iterable[str]) -> list[Cell]:
        """The cells matching any of the one-line ``filters`` (all cells when none)."""
        parsed = []
        for text in filters:
            try:
                parsed.append(parse_filter(text, f"--only {text!r}", self.axes))
            except ConfigError as exc:
                raise ConfigError(exc.message, source=COMMAND_LINE, field=f"--only {text!r}") from None
        return [c for c in self.cells if not parsed or any(f.matches(c.axes) for f in parsed)]


# ---------------------------------------------------------------------------- loading

def load_matrix(path: str | Path, catalog: Catalog | None = None) -> Matrix:
    """Read, expand and validate a matrix file or ``example:NAME`` (every cell's machine is checked)."""
    path = resolve_config(path)
    return _parse(_yaml(load_file, path), str(path), catalog)


def parse_matrix_text(text: str, source: str = "<inline>", catalog: Catalog | None = None) -> Matrix:
    return _parse(_yaml(load_text, text, source), source, catalog)


def _yaml(loader: Any, *args: Any) -> Any:
    try:
        return loader(*args)
    except ConfigError as exc:
        if "keys must be strings, got a boolean" not in exc.message:
            raise
        raise ConfigError(exc.message + " (YAML 1.1 reads no/yes/on/off as booleans: the list "
                          "of filters that drop cells is 'exclude', not 'no')",
                          source=exc.source, line=exc.line, field=exc.field) from None


@dataclass(frozen=True)
class _Value:
    """One value of an axis: a fragment of machine keys, or a generated device."""

    name: str
    fragment: Node | None
    line: int
    model: DeviceModel | None = None
    settings: tuple[tuple[str, Any], ...] = ()

    def keys(self) -> set[str]:
        return set(self.fragment) if self.fragment is not None else {"devices"}


#: Most combinations of axis values a matrix may expand to (each is a machine to validate).
MAX_COMBINATIONS = 10_000


def _parse(doc: Any, source: str, catalog: Catalog | None) -> Matrix:
    catalog = catalog if catalog is not None else load_catalog()
    if not isinstance(doc, Node):
        raise ConfigError("a matrix file must be a YAML mapping", source=source)
    doc.check_keys(_MATRIX_KEYS, {"axes"})
    name = get_str(doc, "name", default=Path(source).stem if not source.startswith("<") else "inline")
    if not _VALUE_RE.fullmatch(name):
        raise doc.error("name", f"{name!r} is not a valid matrix name: letters, digits, '_', '.', "
                                "'+' or '-', starting with a letter or digit")
    base = _load_base(doc, source) if "base" in doc else None
    axes = _parse_axes(doc.child("axes"), catalog)
    names = {axis: tuple(v.name for v in values) for axis, values in axes.items()}
    only = [_filter(doc, "only", i, item, names) for i, item in enumerate(get_list(doc, "only", default=[]))]
    no = [_filter(doc, "exclude", i, item, names) for i, item in enumerate(get_list(doc, "exclude", default=[]))]
    rules = _parse_rules(doc, names)
    _check_overrides(axes)

    combinations = math.prod(len(values) for values in axes.values())
    if combinations > MAX_COMBINATIONS:
        raise doc.error("axes", f"the axes make {combinations} combinations; a matrix may have at "
                                f"most {MAX_COMBINATIONS} (split it into several files)")
    cells: list[Cell] = []
    excluded: list[Excluded] = []
    seen: dict[str, str] = {}
    used_rules: set[int] = set()
    for combo in _product(list(axes.values())):
        chosen = {axis: value.name for axis, value in zip(axes, combo)}
        cell_id = "-".join(chosen.values())
        if cell_id in seen:
            raise doc.error("axes", f"two cells get the id {cell_id!r} ({seen[cell_id]} and "
                                    f"{_axes_text(chosen)}); rename a value")
        seen[cell_id] = _axes_text(chosen)
        merged = _merge(doc, source, base, list(axes), combo, catalog)
        reason = _unsupported(merged, catalog)
        if reason is None and only and not any(f.matches(chosen) for f in only):
            reason = "matches no 'only' filter (" + "; ".join(f"{f.where}: {f}" for f in only) + ")"
        if reason is None:
            hit = next((f for f in no if f.matches(chosen)), None)
            reason = f"dropped by {hit.where}: {hit}" if hit else None
        if reason is not None:
            excluded.append(Excluded(cell_id, chosen, reason))
            continue
        expect, why, issue = "clean", "", ""
        for index, (when, outcome, text, known) in enumerate(rules):
            if when.matches(chosen):
                expect, why, issue = outcome, text, known
                used_rules.add(index)
        spec = _cell_spec(merged, cell_id, expect, source, name, catalog)
        cells.append(Cell(cell_id, chosen, spec, expect, why, issue))
    if not cells:
        raise doc.error("axes", "the matrix has no cells: every combination is excluded "
                                f"({excluded[0].id}: {excluded[0].reason})" if excluded else
                                "the matrix has no cells")
    for index, (when, *_) in enumerate(rules):
        if index not in used_rules:
            raise ConfigError(f"rule '{when}' matches no cell of the matrix (only excluded ones)",
                              source=source, line=_rule_line(doc, index),
                              field=f"expect[{index}].when")
    return Matrix(name, source, get_str(doc, "description", default=""), names, cells, excluded)


def _rule_line(doc: Node, index: int) -> int:
    item = doc["expect"][index]
    return item.line if isinstance(item, Node) else doc.line_of("expect")


def _load_base(doc: Node, source: str) -> Node:
    rel = get_str(doc, "base")
    origin = Path(source).parent if not source.startswith("<") else Path.cwd()
    if not (origin / rel).is_file():
        raise doc.error("base", f"cannot load base machine {rel!r}: {origin / rel} is not a file")
    try:
        base = load_file(origin / rel)
        if not isinstance(base, Node):
            raise ConfigError("a base machine must be a YAML mapping", source=str(origin / rel))
        base.check_keys(_FRAGMENT_KEYS | {"name", "expect"})
    except ConfigError as exc:  # located in the base file itself, saying whose base it is
        raise ConfigError(f"{exc.message} (base machine of {source}, line {doc.line_of('base')})",
                          source=exc.source, line=exc.line, field=exc.field) from None
    return base


def _parse_axes(node: Node, catalog: Catalog) -> dict[str, tuple[_Value, ...]]:
    if not node:
        raise node.error(None, "a matrix needs at least one axis")
    axes: dict[str, tuple[_Value, ...]] = {}
    for axis in node:
        if not _AXIS_RE.fullmatch(axis):
            raise node.error(axis, f"{axis!r} is not a valid axis name: a letter, then letters, "
                                   "digits or '_'")
        values_node = node.child(axis)
        values: list[_Value] = []
        for value_name in values_node:
            line = values_node.line_of(value_name)
            if value_name == GENERATOR_KEY:
                kind = get_str(values_node, GENERATOR_KEY, choices=GENERATORS)
                values += _generate(kind, catalog, line)
                continue
            if not _VALUE_RE.fullmatch(value_name):
                raise values_node.error(value_name, f"{value_name!r} is not a valid value name: "
                                                    "letters, digits, '_', '.', '+' or '-' (at most 48)")
            fragment = values_node[value_name]
            if fragment is None:
                fragment = Node({}, {}, values_node.source, line, values_node.path(value_name))
            if not isinstance(fragment, Node):
                raise values_node.error(value_name, "expected a mapping of machine keys "
                                                    f"({', '.join(sorted(_FRAGMENT_KEYS))})")
            fragment.check_keys(_FRAGMENT_KEYS)
            if "devices" in fragment:
                get_list(fragment, "devices")
            values.append(_Value(value_name, fragment, line))
        seen: dict[str, int] = {}
        for value in values:
            if value.name in seen:
                raise values_node.error(None, f"axis {axis!r} has the value {value.name!r} twice "
                                              f"(lines {seen[value.name]} and {value.line})")
            seen[value.name] = value.line
        if not values:
            raise node.error(axis, f"axis {axis!r} has no values")
        axes[axis] = tuple(values)
    return axes


def _generate(kind: str, catalog: Catalog, line: int) -> list[_Value]:
    """The catalog's models, each with its defaults and (each_setting) every alternative."""
    out = []
    for model in sorted(catalog.values(), key=lambda m: m.name):
        out.append(_Value(model.name, None, line, model))
        if kind != "each_setting":
            continue
        defaults = model.defaults_for(0)
        for prop in model.properties.values():
            for choice in prop.choices:
                if defaults.get(prop.name) == choice:
                    continue
                shown = f"{choice:#x}" if prop.kind == "port" else str(choice)
                out.append(_Value(f"{model.name}_{prop.name}_{shown}", None, line, model,
                                  ((prop.name, choice),)))
    return out


def _check_overrides(axes: dict[str, tuple[_Value, ...]]) -> None:
    """Two axes may not both set a machine key other than ``devices``."""
    owner: dict[str, tuple[str, _Value]] = {}
    for axis, values in axes.items():
        for value in values:
            for key in value.keys() - {"devices"}:
                if key in owner and owner[key][0] != axis:
                    first_axis, first = owner[key]
                    assert value.fragment is not None
                    raise value.fragment.error(key, f"axes {first_axis!r} (line {first.line}) and "
                                                    f"{axis!r} both set {key!r}; one axis owns a key")
                owner.setdefault(key, (axis, value))


def parse_filter(item: Any, where: str, axes: Mapping[str, tuple[str, ...]],
                 node: Node | None = None, key: str | None = None) -> Filter:
    """A filter from its mapping or one-line form; every axis and pattern must match."""
    def fail(message: str) -> HarnessError:
        if node is not None:
            return node.error(key, message)
        return ConfigError(message, field=where)

    if isinstance(item, str):
        parts = item.split()
        pairs = [_FILTER_ITEM_RE.fullmatch(p) for p in parts]
        if not parts or not all(pairs):
            raise fail(f"filter {item!r} is not of the form 'axis=value[,value] axis=value'")
        raw: dict[str, Any] = {}
        for match in pairs:
            assert match is not None
            if match.group(1) in raw:
                raise fail(f"filter {item!r} names axis {match.group(1)!r} twice")
            raw[match.group(1)] = match.group(2).split(",")
    elif isinstance(item, Node):
        if not item:
            raise fail("an empty filter would match every cell; leave it out")
        raw = dict(item)
    else:
        raise fail("a filter is a mapping {axis: value or [values]} or a string 'axis=value ...'")
    patterns: dict[str, tuple[str, ...]] = {}
    for axis, value in raw.items():
        if axis not in axes:
            raise fail(unknown_name("axis", axis, axes, label="axes"))
        pats = value if isinstance(value, list) else [value]
        if not pats or not all(isinstance(p, str) and p for p in pats):
            raise fail(f"axis {axis!r}: expected a value name (or glob) or a list of them, got {value!r}")
        for pat in pats:
            if not any(fnmatch.fnmatchcase(v, pat) for v in axes[axis]):
                raise fail(unknown_name(f"axis {axis!r} value", pat, axes[axis], label="values"))
        patterns[axis] = tuple(pats)
    return Filter(patterns, where)


def _filter(doc: Node, key: str, index: int, item: Any, axes: Mapping[str, tuple[str, ...]]) -> Filter:
    line = item.line if isinstance(item, Node) else doc.line_of(key)
    where = f"{key}[{index}] (line {line})"
    if isinstance(item, Node):
        return parse_filter(item, where, axes, item, None)
    return _located(doc, key, index, lambda: parse_filter(item, where, axes), where)


def _located(doc: Node, key: str, index: int, fn: Any, where: str) -> Filter:
    try:
        return fn()
    except ConfigError as exc:
        raise ConfigError(exc.message, source=doc.source, line=doc.line_of(key),
                          field=f"{doc.path(key)}[{index}]") from None


def _parse_rules(doc: Node, axes: Mapping[str, tuple[str, ...]]) -> list[tuple[Filter, str, str, str]]:
    rules = []
    for index, item in enumerate(get_list(doc, "expect", default=[])):
        if not isinstance(item, Node):
            raise doc.error("expect", f"item {index} must be a mapping with 'when', 'outcome' and 'why'")
        item.check_keys(_RULE_KEYS, {"when", "outcome", "why"})
        outcome = get_str(item, "outcome", choices=OUTCOMES)
        why = get_str(item, "why")
        when = item["when"]
        where = f"expect[{index}] (line {item.line})"
        if isinstance(when, Node):
            flt = parse_filter(when, where, axes, when, None)
        else:
            flt = _located(item, "when", -1, lambda: parse_filter(when, where, axes), where)
        rules.append((flt, outcome, why, get_str(item, "known_issue", default="")))
    return rules


def _product(axes: list[tuple[_Value, ...]]) -> Iterable[tuple[_Value, ...]]:
    import itertools
    return itertools.product(*axes)


def _merge(doc: Node, source: str, base: Node | None, axis_names: list[str],
           combo: tuple[_Value, ...], catalog: Catalog) -> dict[str, Any]:
    """The cell's machine keys: the base's, each overridden by an axis value; devices added
    up.  Values stay :class:`Node` objects, so errors point into the file they came from."""
    merged: dict[str, Any] = {}
    lines: dict[str, int] = {}
    sources: dict[str, str] = {}  # the file each top-level key came from (base or matrix)
    paths: dict[str, str] = {}    # and where in the matrix file, for a key an axis value sets
    devices: list[Any] = []
    if base is not None:
        for key in base:
            if key not in ("name", "expect", "devices"):
                merged[key], lines[key], sources[key] = base[key], base.line_of(key), base.source
        devices += get_list(base, "devices", default=[])
    for value in combo:
        if value.fragment is None:
            continue
        for key in value.fragment:
            if key == "devices":
                devices += value.fragment["devices"]
            else:
                merged[key], lines[key] = value.fragment[key], value.fragment.line_of(key)
                sources[key] = value.fragment.source
                paths[key] = value.fragment.path(key)
    machine = merged.get("machine")
    for value in combo:
        if value.model is not None:
            devices += _generated_devices(value, machine if isinstance(machine, str) else None, source)
    merged["devices"] = devices
    lines["devices"] = doc.line_of("axes")
    return {"data": merged, "lines": lines, "sources": sources, "paths": paths, "axes_line": doc.line_of("axes")}


def _generated_devices(value: _Value, machine: str | None, source: str) -> list[Node]:
    assert value.model is not None
    def node(data: dict[str, Any], index: int) -> Node:
        return Node(data, {k: value.line for k in data}, source, value.line,
                    f"axes.{GENERATOR_KEY}[{value.name}].devices[{index}]")
    item: dict[str, Any] = {"model": value.model.name, "id": DUT_ID, **dict(value.settings)}
    if value.model.bus == "floppy" and machine not in BUILTIN_FDC:
        return [node({"model": "isa-fdc", "id": "fdc0"}, 0), node({**item, "controller": "fdc0"}, 1)]
    return [node(item, 0)]


def _unsupported(merged: dict[str, Any], catalog: Catalog) -> str | None:
    """Why the cell's machine type cannot hold one of its devices, or a device sits on the
    harness's firmware-log port (which a machine file may not do), or None."""
    machine = merged["data"].get("machine")
    log_on = merged["data"].get("firmware_log", True) is not False
    for item in merged["data"]["devices"]:
        model = catalog.get(item.get("model")) if isinstance(item, Node) and isinstance(item.get("model"), str) else None
        if model is None:
            continue
        if isinstance(machine, str) and machine not in model.machines:
            return (f"{machine} cannot hold {model.name} ({item.get('id')}): the model supports "
                    f"{', '.join(model.machines)}")
        settings = {**model.defaults_for(0), **{k: v for k, v in item.items() if k in model.properties}}
        if log_on and all(isinstance(v, int) for v in settings.values()):
            clash = on_firmware_log_port(model.decoded_resources(settings))
            if clash is not None:
                return (f"{model.name} ({item.get('id')}) would decode {clash[0]:#x}-{clash[1]:#x}, which holds "
                        f"the harness's firmware-log port {FIRMWARE_LOG_PORT:#x} (firmware_log is on)")
    return None


def _cell_spec(merged: dict[str, Any], cell_id: str, expect: str, source: str, matrix: str,
               catalog: Catalog) -> MachineSpec:
    data = dict(merged["data"], name=cell_id, expect=expect)
    data.setdefault("description", f"cell {cell_id} of matrix {matrix}")
    lines = dict(merged["lines"])
    for key in data:  # the cell's own name, expect, description: made from its axes
        lines.setdefault(key, merged["axes_line"])
    node = Node(data, lines, source, merged["axes_line"], "")
    try:
        return parse_machine(node, source, catalog)
    except ConfigError as exc:
        # The error points at the value; a top-level key from the base machine is in the
        # base file.  Say which cell it broke.
        top = re.split(r"[.\[]", exc.field or "", maxsplit=1)[0]
        origin = merged["sources"].get(top, exc.source) if exc.source == source else exc.source
        # a key an axis value sets is named where it stands (axes.machine.pc.memory, not memory)
        field = (merged["paths"][top] + exc.field[len(top):]
                 if exc.source == source and exc.field and top in merged["paths"] else exc.field)
        raise ConfigError(f"{exc.message} (in cell {cell_id})", source=origin, line=exc.line,
                          field=field) from None


def _axes_text(axes: Mapping[str, str]) -> str:
    return " ".join(f"{a}={v}" for a, v in axes.items())


# ---------------------------------------------------------------------------- sharding

#: Most shards a matrix splits into (a CI fan-out; shard_of costs cells x shards).
MAX_SHARDS = 1000


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` → ``(2, 4)``: shard 2 of 4, 1-based."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", str(text))
    if not match:
        raise HarnessError(f"shard {text!r} is not of the form I/N (e.g. 2/4: the second of four)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS or not 1 <= index <= count:
        raise HarnessError(f"shard {text!r}: N must be 1..{MAX_SHARDS} and I between 1 and N")
    return index, count


def _rank(key: str) -> int:
    import hashlib
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def shard_of(cells: Iterable[Cell], count: int) -> dict[str, int]:
    """Cell id → shard (1-based) for ``count`` shards.

    Rendezvous hashing with a load cap: each cell ranks the shards by ``sha256(id/shard)``
    and, taken in ``sha256(id)`` order, goes to its best-ranked shard that still has
    fewer than ``len(cells) // count`` cells; once every shard is full, the remainder go
    one each to their best-ranked shard among those with exactly that many.  Sizes differ
    by at most one, and a cell's shard depends on its own id and on how full shards are
    when its turn comes: adding a cell moves only the few that the cap pushes over.
    """
    ids = sorted({c.id for c in cells}, key=_rank)
    if not 1 <= count <= MAX_SHARDS:
        raise HarnessError(f"the number of shards must be 1..{MAX_SHARDS}, not {count}")
    floor = len(ids) // count
    load = [0] * count
    out: dict[str, int] = {}
    for cell_id in ids:
        prefs = sorted(range(count), key=lambda s: _rank(f"{cell_id}/{s}"))
        target = next((s for s in prefs if load[s] < floor), None)
        if target is None:
            target = next(s for s in prefs if load[s] == floor)
        load[target] += 1
        out[cell_id] = target + 1
    return out


def shard(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard ``index`` (1-based) of ``count``, in their matrix order."""
    if not 1 <= index <= count:
        raise HarnessError(f"shard {index}/{count}: I must be between 1 and N")
    assigned = shard_of(cells, count)
    return [c for c in cells if assigned[c.id] == index]


# ---------------------------------------------------------------------------- running

#: A cell's outcome: the job agrees with its expectation, disagrees, raised (or its
#: worker died or timed out), or disagrees as a known issue says it will.
OUTCOME_WORDS = ("pass", "fail", "error", "xfail")
#: Which cells keep every file of their main job (report.txt and .html, the registry and
#: its .reg export, QEMU's logs): only those that fail or raise, or all of them.  A cell
#: that goes as expected (pass, xfail) keeps its report.json, which the summary reads.
ARTIFACTS = ("failures", "all")
#: How long one cell may take before its worker is killed and the cell is an error
#: (a main job takes a second or two; the firmware alone is bounded at 30 s under TCG).
CELL_TIMEOUT = 300.0


@dataclass
class CellResult:
    cell_id: str
    outcome: str            # one of OUTCOME_WORDS
    expected: str           # a verdict (harness.verdict): "clean", "warning" or "conflict"
    exit_code: int          # the job's (harness.verdict.EXIT_CODES), 2 on error (exception, timeout)
    seconds: float
    out_dir: Path
    bundle: Path | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, out_dir=str(self.out_dir),
                    bundle=str(self.bundle) if self.bundle else None)


def check_artifacts(artifacts: str) -> str:
    """``artifacts`` if it is one of :data:`ARTIFACTS`, else a HarnessError naming them."""
    if artifacts not in ARTIFACTS:
        raise HarnessError("artifacts: " + unknown_name("value", artifacts, ARTIFACTS, label="expected one of"))
    return artifacts


def run_cell(cell: Cell, out_root: Path, *, on_failure: Any = None, picture: bool = False,
             artifacts: str = "failures") -> CellResult:
    """Run the main job on one cell in this process; its files go to ``out_root/<id>``
    (which of them: :data:`ARTIFACTS`)."""
    import shutil
    import time
    from .qemu.machine import start_running
    from .config import hal_for

    check_artifacts(artifacts)
    out_dir = Path(out_root) / cell.id
    start = time.monotonic()
    outcome: Any
    machine = None
    try:
        # As `harness run` does: QEMU first, so that a new worker imports the NT model
        # while the firmware runs (the APIC HAL's probe guest is booted by the job).
        machine = start_running(cell.spec) if hal_for(cell.spec, "auto") == "pic" else None
        from .job import run_job
        outcome = run_job(cell.spec, out_dir, picture=picture, machine=machine,
                          all_files=None if artifacts == "all" else lambda job: judge(cell, job)[0] == "fail")
    except Exception as exc:  # noqa: BLE001 - any failure of the job is the cell's error
        outcome = exc
    finally:
        if machine is not None:   # (the job closed it and copied what it needed)
            machine.close()
            shutil.rmtree(machine.run_dir, ignore_errors=True)
    seconds = time.monotonic() - start
    if isinstance(outcome, Exception):
        result = CellResult(cell.id, "error", cell.expect, 2, seconds, out_dir,
                            message=f"{type(outcome).__name__}: {str(outcome).splitlines()[0] if str(outcome) else ''}")
    else:
        word, message = judge(cell, outcome)
        result = CellResult(cell.id, word, cell.expect, outcome.exit_code, seconds, out_dir, message=message)
    if result.outcome in ("fail", "error") and on_failure is not None:
        try:
            result.bundle = on_failure(cell, outcome, out_dir)
        except Exception as exc:  # noqa: BLE001 - a failing hook must not hide the cell's result
            result.message += f" (on_failure failed: {type(exc).__name__}: {exc})"
    return result


def judge(cell: Cell, job: Any) -> tuple[str, str]:
    """The cell's outcome word (pass, fail or xfail) for the main job's result, and why."""
    ok = job.verdict == cell.expect
    if cell.known_issue:
        return ("xfail", f"known issue: {cell.known_issue}") if not ok else (
            "fail", f"the known issue no longer shows ({cell.known_issue}): remove known_issue")
    return ("pass", "") if ok else ("fail", f"expected {cell.expect}, the job found {_verdict(job)}")


def _verdict(job: Any) -> str:
    return "it clean" if job.clean else f"{job.counts()} (verdict {job.verdict})"


class RunAborted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM in the CLI) during :func:`run_cells`: every worker and its QEMU
    has been killed; ``results`` holds the cells that finished."""

    def __init__(self, results: list[CellResult]) -> None:
        super().__init__(f"aborted after {len(results)} cell(s)")
        self.results = results


def run_cells(cells: list[Cell], jobs: int, out_root: str | Path, *, on_failure: Any = None,
              progress: Any = "auto", picture: bool = False, artifacts: str = "failures",
              timeout: float = CELL_TIMEOUT) -> list[CellResult]:
    """Run the main job of every cell, ``jobs`` at a time, in worker processes.

    Each worker is a process that runs cells one after another, forked from this one when
    it has no other thread (after importing what the cells need, once for every worker),
    otherwise a fresh Python (:class:`_Worker`); it dies with this process (a parent-death
    signal) and its QEMUs die with it.  A worker that dies or overruns
    ``timeout`` seconds on a cell is killed, the cell is an error and a new worker takes
    over.  On Ctrl-C every worker is killed, then any QEMU a worker started that is still
    there, and :class:`RunAborted` is raised with the finished results.

    ``on_failure(cell, job_result_or_exception, out_dir) -> Path | None`` runs in the
    worker for every failed or erroring cell (so it must be picklable: a module-level
    function); what it returns is the result's ``bundle``.  ``progress``: "auto" (a bar
    on a terminal, else a line per cell on stderr), "bar", "lines", None, or a callable
    ``(result, done, total)``.  ``artifacts``: which cells keep every file of their job
    (:data:`ARTIFACTS`).  Results come back in the order of ``cells``.
    """
    import time
    from collections import deque
    from multiprocessing.connection import wait

    check_artifacts(artifacts)
    from .atomicio import output_folder
    out_root = output_folder(out_root)   # before any worker starts
    report = _progress(progress, len(cells))
    queue = deque(cells)
    done: dict[str, CellResult] = {}
    workers: list[_Worker] = []
    t0 = time.monotonic()
    try:
        if _can_fork():
            _preload()
        workers = [_Worker(out_root, on_failure, picture, artifacts) for _ in range(max(1, min(jobs, len(cells))))]
        for worker in workers:
            if queue:
                worker.assign(queue.popleft())
        while any(w.cell is not None for w in workers):
            busy = [w for w in workers if w.cell is not None]
            wait([w.conn for w in busy], timeout=0.5)
            for index, worker in enumerate(workers):
                cell = worker.cell
                if cell is None:
                    continue
                result = worker.collect(timeout, out_root)
                if result is None:
                    continue
                if worker.cell is not None:  # died or overran: replace it
                    worker.kill()
                    workers[index] = worker = _Worker(out_root, on_failure, picture, artifacts)
                worker.cell = None
                done[result.cell_id] = result
                report(result, len(done), len(cells))
                if queue:
                    worker.assign(queue.popleft())
    except KeyboardInterrupt:
        _kill_workers(workers)
        raise RunAborted([done[c.id] for c in cells if c.id in done]) from None
    finally:
        _stop_workers(workers)
        close = getattr(report, "close", None)
        if close is not None:
            close(time.monotonic() - t0)
    return [done[c.id] for c in cells]


def _cell_to_wire(cell: Cell) -> dict[str, Any]:
    """A picklable form of a cell (a MachineSpec holds mapping proxies, which are not)."""
    spec = cell.spec
    return {"id": cell.id, "axes": dict(cell.axes), "expect": cell.expect, "why": cell.why,
            "known_issue": cell.known_issue, "source": spec.source, "spec": spec.to_dict(),
            "lines": {key: [item.line for item in getattr(spec, key)] for key in _LINED}}


#: The MachineSpec fields whose items keep the line of the file they came from: the worker
#: parses the spec from one line of JSON, so it takes them from the wire (a report's
#: "line N" of a step or a driverless device named line 1 of every matrix).
_LINED = ("devices", "drivers", "after_firmware")


def _cell_from_wire(data: dict[str, Any]) -> Cell:
    import json
    from .config import parse_machine
    from .yamlio import load_json
    # Checked again in full, as a machine file is; JSON's own parser, not PyYAML's (same document).
    spec = parse_machine(load_json(json.dumps(data["spec"]), data["source"]), data["source"])
    spec = replace(spec, **{key: tuple(replace(item, line=line) for item, line
                                       in zip(getattr(spec, key), data["lines"][key], strict=True))
                            for key in _LINED})
    return Cell(data["id"], data["axes"], spec, data["expect"], data["why"], data["known_issue"])


class _Worker:
    """A worker process talking over a socketpair wrapped in a multiprocessing Connection;
    it gets the parent's ``sys.path`` first, then cells.

    Forked from this process when it runs no other thread (``harness matrix`` does not):
    the child starts with what this process has already imported (the CLI, the matrix and
    the catalog, ~140 modules) and no interpreter start, instead of paying both again in
    every worker.  Otherwise (a test process with the harness's event-loop thread, say)
    it is a fresh ``python -c``: forking a threaded process copies locks other threads
    may hold.  Not multiprocessing's spawn, which re-runs the parent's ``__main__``."""

    def __init__(self, out_root: Path, on_failure: Any, picture: bool, artifacts: str) -> None:
        import os
        import socket
        import sys
        from multiprocessing.connection import Connection
        ours, theirs = socket.socketpair()
        try:
            self.forked = _can_fork()
            self.proc: Any = _fork_worker(theirs, ours) if self.forked else _spawn_worker(theirs)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        _PARENT_ENDS.add(self.conn)
        self.conn.send(list(sys.path))  # first, so the hook below unpickles in the worker
        self.conn.send((str(out_root), on_failure, picture, artifacts))
        self.cell: Cell | None = None
        self.started = 0.0

    def close(self) -> None:
        _PARENT_ENDS.discard(self.conn)
        self.conn.close()

    def assign(self, cell: Cell) -> None:
        import time
        self.cell, self.started = cell, time.monotonic()
        self.conn.send(_cell_to_wire(cell))

    def collect(self, timeout: float, out_root: Path) -> CellResult | None:
        """The finished cell's result; an error result if the worker died or overran
        (``self.cell`` stays set then, telling the caller to replace the worker)."""
        import time
        assert self.cell is not None
        cell, elapsed = self.cell, time.monotonic() - self.started
        why = None
        if self.conn.poll():
            try:
                result = self.conn.recv()
                self.cell = None
                return result
            except (EOFError, OSError):
                self.proc.wait(5)
                why = f"the worker process died (exit status {self.proc.returncode})"
        if why is None and elapsed > timeout:
            why = f"no result within {timeout:.0f} s: the worker was killed"
        if why is None:
            return None
        return CellResult(cell.id, "error", cell.expect, 2, elapsed, out_root / cell.id, message=why)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.close()
        from .qemu.reaper import kill_qemus_of
        kill_qemus_of({self.proc.pid})


#: This process's ends of its workers' socketpairs: a forked worker closes its copies,
#: so that a worker sees the end of its stream when the runner closes its end.
_PARENT_ENDS: set[Any] = set()


def _can_fork() -> bool:
    """Whether this process runs one thread, Python's or any other (a fork copies the locks
    other threads hold, such as the harness's event loop's)."""
    import os
    if not hasattr(os, "pidfd_open"):   # (_ForkedProcess waits on one)
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _preload() -> None:
    """Import here, once, what a worker's first cell imports (the QEMU layer, the job, the
    NT model: ~100 modules, most of a worker's start-up), so that every forked worker starts
    with it instead of importing it again."""
    import ctypes  # noqa: F401 - die_with_parent's
    from . import job  # noqa: F401
    from .qemu import machine  # noqa: F401


def _spawn_worker(theirs: Any) -> Any:
    import os
    import subprocess
    import sys
    # The collector stays off until the first cell is done (_worker_main): its passes
    # during the ~240 imports find nothing to free and cost ~8 ms of the start-up.
    code = (f"import gc; gc.disable(); import harness.dataclass_cache as d; d.install(); "
            f"import harness.matrix as m; m._worker_main({theirs.fileno()}, {os.getpid()})")
    return subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()],
                            stdin=subprocess.DEVNULL, cwd=os.getcwd())


def _fork_worker(theirs: Any, ours: Any) -> "_ForkedProcess":
    import gc
    import os
    import signal
    import sys
    parent = os.getpid()
    for stream in (sys.stdout, sys.stderr):   # or the child would write the buffers again
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    # What the worker inherits is frozen in it: its collection after the first cell then
    # walks only what that cell made (and writes no collector header into inherited pages,
    # each a page copied): ~15-20 ms of CPU a worker.  This process stays as it was.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    # Ctrl-C, SIGTERM and SIGHUP wait until each side has its handlers: the runner's (the
    # CLI's raise KeyboardInterrupt) must never run in the child.
    stopping = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if freeze:
            gc.unfreeze()
        try:
            return _ForkedProcess(pid)
        except BaseException:   # (no pidfd: the worker must not outlive its handle)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
    try:   # the child: never returns into the runner's frames
        # the runner decides about Ctrl-C (it kills us); SIGTERM and SIGHUP end a worker,
        # as they end a spawned one
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        ours.close()   # the worker sees the end of its stream when the runner closes it
        for conn in _PARENT_ENDS:
            conn.close()
        _PARENT_ENDS.clear()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        gc.disable()   # as a spawned worker: off until its first cell is done
        _worker_main(theirs.fileno(), parent)
    except BaseException:  # noqa: BLE001 - shown, then the worker ends; the runner sees it die
        import traceback
        traceback.print_exc()
    os._exit(1)


class _ForkedProcess:
    """What the runner uses of a Popen (pid, returncode, poll, wait, kill), for a forked
    worker; waits are bounded on a pidfd, the kill goes through it (no pid reuse)."""

    def __init__(self, pid: int) -> None:
        import os
        self.pid = pid
        self.returncode: int | None = None
        self._fd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        import os
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                os.close(self._fd)
        return self.returncode

    def wait(self, timeout: float) -> int:
        import select
        import subprocess
        if self.poll() is None:
            select.select([self._fd], [], [], timeout)
            if self.poll() is None:
                raise subprocess.TimeoutExpired(f"matrix worker {self.pid}", timeout)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        import signal
        if self.poll() is None:
            signal.pidfd_send_signal(self._fd, signal.SIGKILL)


def _worker_main(fd: int, parent: int) -> None:
    import signal
    import sys
    from multiprocessing.connection import Connection
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it kills us on Ctrl-C
    from .qemu.lifeline import die_with_parent
    die_with_parent(parent)
    conn = Connection(fd)
    try:
        sys.path[:] = conn.recv()
        out_root, on_failure, picture, artifacts = conn.recv()
        warm = False
        while True:
            message = conn.recv()
            if message is None:
                break
            try:
                result = run_cell(_cell_from_wire(message), Path(out_root), on_failure=on_failure,
                                  picture=picture, artifacts=artifacts)
            except Exception as exc:  # noqa: BLE001 - reported as the cell's error
                result = CellResult(message["id"], "error", message["expect"], 2, 0.0,
                                    Path(out_root) / message["id"], message=f"{type(exc).__name__}: {exc}")
            conn.send(result)
            if not warm:
                # What the first cell imported stays for good: out of the collector's full
                # passes (each walked every module object again: ~0.5 ms a cell, measured).
                # The collector was off until now (_Worker); one cell's cycles are freed here.
                import gc
                gc.collect()
                gc.freeze()
                gc.enable()
                warm = True
    except (EOFError, OSError):
        pass
    _exit_now()


def _exit_now() -> None:
    """End a worker without the interpreter's teardown of every imported module (0.1-0.2 s
    the parent would wait for): its files are written and closed, each cell's machine is
    closed by its job (and any left open is closed here), so there is nothing to undo."""
    import os
    import sys
    if "harness.qemu.machine" in sys.modules:
        sys.modules["harness.qemu.machine"].close_all()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def _kill_workers(workers: list["_Worker"]) -> None:
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.kill()
    for worker in workers:
        worker.proc.wait(5)
    from .qemu.machine import run_root
    from .qemu.reaper import kill_qemus_of, sweep_orphan_run_dirs
    kill_qemus_of({w.proc.pid for w in workers})
    sweep_orphan_run_dirs(run_root())


def _stop_workers(workers: list["_Worker"]) -> None:
    import subprocess
    for worker in workers:
        if worker.proc.poll() is None:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
    for worker in workers:
        try:
            worker.proc.wait(5)
        except subprocess.TimeoutExpired:
            worker.kill()
        worker.close()


# ---------------------------------------------------------------------------- reporting

def _progress(progress: Any, total: int) -> Any:
    import sys
    if progress is None:
        return lambda result, done, total: None
    if callable(progress):
        return progress
    if progress not in ("auto", "bar", "lines"):
        raise HarnessError(f"progress {progress!r} is not 'auto', 'bar', 'lines', None or a callable")
    bar = progress == "bar" or (progress == "auto" and sys.stderr.isatty())
    return ProgressBar(total, sys.stderr) if bar else ProgressLines(total, sys.stderr)


class ProgressLines:
    """One line per finished cell (for logs and CI)."""

    def __init__(self, total: int, stream: Any) -> None:
        self.stream, self.width = stream, len(str(total))

    def __call__(self, result: CellResult, done: int, total: int) -> None:
        tail = f"  {result.message}" if result.outcome != "pass" else ""
        self.stream.write(f"[{done:>{self.width}}/{total}] {result.outcome:<5} {result.seconds:6.2f} s  "
                          f"{result.cell_id}{tail}\n")
        self.stream.flush()

    def close(self, seconds: float) -> None:
        pass


class ProgressBar:
    """One self-rewriting line on a terminal: bar, counts, rate, time left."""

    def __init__(self, total: int, stream: Any) -> None:
        import time
        self.stream, self.total, self.start = stream, total, time.monotonic()
        self.counts = {word: 0 for word in OUTCOME_WORDS}

    def __call__(self, result: CellResult, done: int, total: int) -> None:
        import shutil
        import time
        self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate else 0.0
        counts = " ".join(f"{w} {n}" for w, n in self.counts.items() if n or w in ("pass", "fail"))
        text = f" {done}/{total} {counts}  {rate:.1f} cells/s  {left:.0f} s left  {result.cell_id}"
        columns = shutil.get_terminal_size((100, 20)).columns
        width = max(10, min(30, columns - len(text) - 3))
        filled = width * done // max(total, 1)
        line = f"[{'#' * filled}{'.' * (width - filled)}]{text}"
        if result.outcome in ("fail", "error"):
            self.stream.write(f"\r\033[K{result.outcome.upper()} {result.cell_id}: {result.message}\n")
        self.stream.write(f"\r\033[K{line[:columns - 1]}")
        self.stream.flush()

    def close(self, seconds: float) -> None:
        self.stream.write("\n")
        self.stream.flush()


def format_summary(results: list[CellResult], seconds: float | None = None) -> str:
    """The table printed at the end of a run: cell, outcome, time, and for a cell that
    failed its bundle (or its folder) and what went wrong."""
    if not results:
        return "no cells were run\n"
    width = max(len("cell"), *(len(r.cell_id) for r in results))
    lines = [f"{'cell':<{width}}  outcome  expected  exit  seconds  files / why", "-" * (width + 48)]
    for r in results:
        where = ""
        if r.outcome != "pass":
            where = f"{r.bundle or r.out_dir}  {r.message}"
        lines.append(f"{r.cell_id:<{width}}  {r.outcome:<7}  {r.expected:<8}  {r.exit_code:>4}  "
                     f"{r.seconds:7.2f}  {where}".rstrip())
    counts = {w: sum(r.outcome == w for r in results) for w in OUTCOME_WORDS}
    total = f"{len(results)} cells: " + ", ".join(f"{n} {w}" for w, n in counts.items() if n or w != "xfail")
    if seconds:
        total += f" in {seconds:.1f} s ({len(results) / seconds:.2f} cells/s)"
    return "\n".join(lines + ["", total]) + "\n"
