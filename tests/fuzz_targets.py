"""The fuzz targets: every reader of outside input, with the exceptions it documents.

:data:`TARGETS` is the one table.  Each entry names a strategy of inputs (hypothesis), a
function that feeds one input to the library and checks what came back, and the
documented exception types.  A fuzz failure is any other exception (a bug, or an error
type the library does not document), a documented one that drags another traceback along
(``__context__`` not suppressed), or a broken invariant (an ``AssertionError`` from the
run function: a round trip that changes the value, an argv that leaves the run folder).

``tests/test_fuzz.py`` runs every target under hypothesis, ``FUZZ_EXAMPLES`` inputs each
(small in ``make test``, 10**5 in all under ``make fuzz``); ``tests/fuzz/fuzz_atheris.py``
drives the same entries coverage-guided.  A new reader (matrix files, repro bundles) is one
more ``Target`` here: a strategy that mixes generated documents, mutated real files and
noise, and a run function.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from hypothesis import strategies as st

from harness.config import parse_machine_text
from harness.devices import load_catalog, parse_model
from harness.errors import ConfigError, HarnessError
from harness.nt import resources as R
from harness.nt.errors import RegFileError, RegistryFileError, ResourceFormatError
from harness.nt.regfile import (apply_operations, decode_reg_bytes, export_text, import_text, parse_reg,
                                read_reg_bytes)
from harness.nt.registry import MACHINE, RESOURCE_MAP, Registry
from harness.qemu.machine import build_argv
from harness.yamlio import load_text
from helpers import CONFIGS, REPO, argv_field_setters, argv_violations, check_argv_field, model_spec


@dataclass(frozen=True)
class Target:
    name: str
    inputs: st.SearchStrategy[Any]
    #: Feeds one input to the library; returns True when the input was accepted.
    run: Callable[[Any], bool]
    documented: tuple[type[BaseException], ...]


def check_one(target: Target, value: Any) -> bool:
    """Run one input; raise AssertionError for anything but acceptance or a clean,
    documented refusal (with a message a UTF-8 terminal can print).  Returns whether the
    input was accepted."""
    try:
        return target.run(value)
    except target.documented as exc:
        assert exc.__cause__ is None and (exc.__suppress_context__ or exc.__context__ is None), \
            f"{type(exc).__name__} carries another traceback: {exc.__context__!r}"
        assert str(exc).encode("utf-8"), f"{type(exc).__name__} with an empty message"
        return False


# ------------------------------------------------------------------ mutation of real files
#: Integers at the edges of the C types and of the harness's own ranges.
EDGE_INTS = [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 0xFF, 0x100, 0x3F8, 0xFFFF, 0x10000, 0x7FFFFFFF,
             0x80000000, 0xFFFFFFFF, 2**32, 2**40, 2**48, 2**63, 2**64 - 1, 2**64, -1, -2**31]


def _splice(text: str, at: int, cut: int, piece: str) -> str:
    return text[:at] + piece + text[at + cut:]


@st.composite
def mutated_text(draw: st.DrawFn, seeds: list[str], tokens: list[str]) -> str:
    """A real file with a few random edits: deletions, insertions of the format's
    syntax tokens or random characters, duplicated lines."""
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 16))
        kind = draw(st.sampled_from(["token", "token", "chars", "delete", "line"]))
        if kind == "token":
            text = _splice(text, at, draw(st.integers(0, 2)), draw(st.sampled_from(tokens)))
        elif kind == "chars":
            text = _splice(text, at, cut, draw(st.text(max_size=8)))
        elif kind == "delete":
            text = _splice(text, at, cut, "")
        else:
            lines = text.splitlines(keepends=True) or [""]
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[:i + 1] + lines[i:])
    return text


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes) -> bytes:
    """Bit flips, overwritten little-endian fields, truncation and padding of ``seed``."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "field", "truncate", "extend"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "field" and len(data) >= 4:
            at = min(at, len(data) - 4) & ~3
            value = draw(st.sampled_from(EDGE_INTS)) & 0xFFFFFFFF
            data[at:at + 4] = value.to_bytes(4, "little")
        elif kind == "truncate":
            del data[at:]
        else:
            data += draw(st.binary(max_size=24))
    return bytes(data)


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any],
            odds: int = 8) -> st.SearchStrategy[Any]:
    """``good`` ``odds`` times out of ``odds + 1``: enough bad values to test refusals,
    enough good ones to get past the first check and reach the deeper code."""
    # (not one_of(good, good, ..., bad): one_of flattens nested one_ofs, losing the odds)
    return st.integers(0, odds).flatmap(lambda roll: good if roll else bad)


# ------------------------------------------------------------------ machine and model YAML
YAML_TOKENS = ["&a ", "*a", "<<: *a", "!!python/object/apply:os.system ['true'] ", "!!binary ",
               "!!set ", "!!timestamp ", "[", "]", "{", "}", ": ", "- ", "? ", "\t", "\n  ",
               "\n- ", "---\n", "...\n", "%YAML 1.1\n", "'", '"', "#", "~", "null", "true",
               "0x", "0o7", "0b1", "-1", "0x10000", "16", "1e9", ".inf", ".nan", "1_0",
               "99999999999999999999999", "190:20:30", ",", "=", "/", "\\", "\x00", "\ufeff",
               "$(id)", ";", "-device ", "harness-x", "\u0130", "\u00df", "!!int ", "!!float ",
               "!!int\n", "!!float ''", "bus: isa", "bus: 'isa.0,iobase=0x2e8,irq=7,bus=isa'",
               "{a: {b: 1}}", "bus: 0x1ffffffff"]
_CATALOG = load_catalog()
_MACHINE_SEEDS = sorted(p.read_text() for p in (CONFIGS / "machines").glob("*.yaml"))
_MODEL_SEEDS = [(p.stem, p.read_text()) for p in sorted((REPO / "device_models").glob("*.yaml"))]
_scalars = st.one_of(st.sampled_from(EDGE_INTS), st.integers(), st.booleans(), st.none(),
                     st.floats(allow_nan=False), st.text(max_size=12),
                     st.sampled_from(["pc", "q35", "isapc", "tcg", "kvm", "auto", "a,b", "-x",
                                      "/etc/passwd", "com1", "br0", "3", "0x1f", "9.1", "144"]))


#: Plausible values for each machine-file key; _scalars supplies the implausible ones.
_TOP_VALUES = {"name": st.sampled_from(["m1", "default", "a.b-c_d", "9lives"]),
               "description": st.text(max_size=20), "machine": st.sampled_from(["pc", "q35", "isapc"]),
               "accel": st.sampled_from(["tcg", "kvm", "auto"]), "memory": st.integers(16, 1024),
               "firmware_log": st.booleans()}


def _device_values(model: Any, earlier: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """Plausible values for each key a device of ``model`` may have."""
    ids = st.sampled_from(earlier or ["nobody"])
    values: dict[str, st.SearchStrategy[Any]] = {
        "bus": st.one_of(ids, st.sampled_from(["isa", "isa.0,iobase=0x2e8,irq=7,bus=isa"])),
        "controller": ids, "unit": st.integers(0, 1), "multifunction": st.booleans(),
        "addr": st.one_of(st.integers(0, 31), st.sampled_from(["0x1f", "9.1", "3", "0x3.7"]))}
    for name, prop in model.properties.items():
        values[name] = st.sampled_from(prop.choices) if prop.choices else {
            "port": st.integers(0, 0xFFFF), "irq": st.integers(0, 15), "dma": st.integers(0, 7),
            "bool": st.booleans()}.get(prop.kind, st.integers(0, 255))
    return values


@st.composite
def machine_documents(draw: st.DrawFn) -> str:
    """Machine files built from the schema's own words, mostly with good values."""
    doc: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(sorted(_TOP_VALUES)), unique=True)):
        doc[key] = draw(_mostly(_TOP_VALUES[key], _scalars, 4))
    if draw(_mostly(st.just(True), st.just(False), 4)):
        doc["machine"] = draw(_TOP_VALUES["machine"])
    if not draw(st.integers(0, 9)):
        doc[draw(st.text(max_size=8))] = draw(_scalars)  # an unknown key
    devices: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 6))):
        model = _CATALOG[draw(st.sampled_from(sorted(_CATALOG)))]
        item: dict[str, Any] = {"model": model.name, "id": draw(_mostly(
            st.just(f"d{i}"), st.sampled_from(["d0", "x y", "harness-a", "-a", "", "a" * 40]), 6))}
        values = _device_values(model, [d["id"] for d in devices])
        for key in draw(st.lists(st.sampled_from(sorted(values)), unique=True, max_size=4)):
            item[key] = draw(_mostly(values[key], _scalars, 4))
        devices.append(item)
    if devices or draw(st.booleans()):
        doc["devices"] = devices
    style = draw(st.sampled_from(["block", "flow", "json"]))
    if style == "json":
        return json.dumps(doc)
    return yaml.safe_dump(doc, default_flow_style=style == "flow", allow_unicode=True)


def _run_machine(text: str) -> bool:
    spec = parse_machine_text(text, "<fuzz>")
    # A folder per input, removed at once: build_argv writes floppy images into it, and
    # xdist and atheris workers end without running atexit handlers.
    with tempfile.TemporaryDirectory(prefix="hf-") as run_dir:
        argv = build_argv(spec, Path(run_dir), "tcg")
        assert argv_violations(argv, spec, Path(run_dir)) == [], argv
    again = parse_machine_text(yaml.safe_dump(spec.to_dict()), "<fuzz-again>")
    assert again.to_dict() == spec.to_dict(), "to_dict does not round-trip"
    return True


def _run_model(item: tuple[str, str]) -> bool:
    name, text = item
    parse_model(load_text(text, f"<fuzz>/{name}.yaml"), f"<fuzz>/{name}.yaml")
    return True


# ------------------------------------------------------------------ matrix YAML
_MATRIX_SEEDS = [
    "name: m\naxes:\n  machine: {pc: {machine: pc}, isapc: {machine: isapc, memory: 32}}\n"
    "  devices:\n    com: {devices: [{model: isa-serial, id: com1, irq: 4}]}\n"
    "    nic: {devices: [{model: e1000, id: nic0, addr: 3}]}\n"
    "only:\n  - {machine: [pc, isa*]}\nexclude:\n  - machine=isapc devices=com\n"
    "expect:\n  - {when: {devices: nic}, outcome: conflict, why: w, known_issue: k}\n",
    "base: configs/machines/isapc.yaml\naxes:\n  a: {x: {}, y: {memory: 64}}\n",
    "axes:\n  m: {q35: {machine: q35}}\n  d: {from_catalog: each_model}\n",
]
MATRIX_TOKENS = YAML_TOKENS + ["from_catalog: each_setting", "only:", "exclude:", "expect:",
                               "when:", "outcome: conflict", "axes:", "base: ", "*", "=", "machine=pc"]


def _run_matrix(text: str) -> bool:
    from harness.matrix import parse_matrix_text, shard_of
    matrix = parse_matrix_text(text, "<fuzz>")
    ids = [c.id for c in matrix.cells]
    assert len(ids) == len(set(ids)) and all(c.spec.name == c.id for c in matrix.cells)
    assert all(c.expect in ("clean", "conflict") for c in matrix.cells)
    assigned = shard_of(matrix.cells, 3)
    sizes = [list(assigned.values()).count(i) for i in (1, 2, 3)]
    assert set(assigned) == set(ids) and max(sizes) - min(sizes) <= 1, sizes
    return True


# ------------------------------------------------------------------ resource structures
_NOISE = st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=4),
                   st.binary(max_size=4), st.lists(st.integers(), max_size=4), st.integers())


def _value_for(field: dataclasses.Field, noisy: bool) -> st.SearchStrategy[Any]:
    """Plausible values for a descriptor field; when ``noisy``, sometimes anything at all."""
    plausible = {
        "share": st.sampled_from([*R.CmResourceShare, 5, 255]),
        "interface_type": st.sampled_from([*R.INTERFACE_TYPE, 99, -2]),
        "type": st.sampled_from([*R.CmResourceType, 8, 133, 255]),
        "data": st.one_of(st.binary(max_size=40), st.tuples(*[st.sampled_from(EDGE_INTS)] * 3)),
        "size": st.binary(min_size=8, max_size=8),
        "reserved": st.tuples(*[st.integers(0, 3)] * 3),
        "flags": st.integers(0, 0xFFFF),
        "option": st.integers(0, 0xFF),
    }.get(field.name, st.one_of(st.integers(0, 0xFF), st.integers(0, 0xFFFF),
                                st.sampled_from(EDGE_INTS), st.integers(0, 2**64 - 1)))
    return _mostly(plausible, _NOISE) if noisy else plausible


@st.composite
def recipe(draw: st.DrawFn, cls: type, noisy: bool = True) -> tuple:
    """A constructor call ``(cls, kwargs)``: required fields always, optional ones now
    and then; nothing is built yet (building is what the run function tests)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required or draw(st.booleans()):
            kwargs[f.name] = draw(_value_for(f, noisy))
    return (cls, kwargs)


def _with(cls: type, noisy: bool, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple]:
    """A recipe of ``cls`` whose listed fields hold lists of sub-recipes (when ``noisy``,
    now and then with a stray non-structure in them)."""
    lists = {name: _mostly(st.lists(items, max_size=4), st.lists(st.one_of(items, _NOISE), max_size=4))
             if noisy else st.lists(items, max_size=4) for name, items in fields.items()}
    return st.tuples(recipe(cls, noisy), st.fixed_dictionaries(lists)).map(
        lambda pair: (cls, {**pair[0][1], **pair[1]}))


def _recipes(noisy: bool) -> dict[type, st.SearchStrategy[tuple]]:
    """A recipe strategy for every structure with a binary form."""
    partial = st.sampled_from(R.CM_PARTIAL_DESCRIPTOR_CLASSES).flatmap(lambda c: recipe(c, noisy))
    requirement = st.sampled_from(R.IO_DESCRIPTOR_CLASSES).flatmap(lambda c: recipe(c, noisy))
    partial_list = _with(R.CM_PARTIAL_RESOURCE_LIST, noisy, descriptors=partial)
    full = st.tuples(recipe(R.CM_FULL_RESOURCE_DESCRIPTOR, noisy), partial_list).map(
        lambda pair: (pair[0][0], {**pair[0][1], "partial_resource_list": pair[1]}))
    io_list = _with(R.IO_RESOURCE_LIST, noisy, descriptors=requirement)
    out = {R.CM_RESOURCE_LIST: _with(R.CM_RESOURCE_LIST, noisy, descriptors=full),
           R.CM_FULL_RESOURCE_DESCRIPTOR: full, R.CM_PARTIAL_RESOURCE_LIST: partial_list,
           R.CM_PARTIAL_RESOURCE_DESCRIPTOR: partial,
           R.IO_RESOURCE_REQUIREMENTS_LIST: _with(R.IO_RESOURCE_REQUIREMENTS_LIST, noisy,
                                                  lists=io_list),
           R.IO_RESOURCE_LIST: io_list, R.IO_RESOURCE_DESCRIPTOR: requirement}
    for payload in (R.CM_SERIAL_DEVICE_DATA, R.CM_FLOPPY_DEVICE_DATA, R.PCI_REGISTRY_INFO,
                    R.PCI_SLOT_NUMBER):
        out[payload] = recipe(payload, noisy)
    return out


#: For the constructor targets; CLEAN_RECIPES (no junk values) seed the binary ones.
RECIPES, CLEAN_RECIPES = _recipes(True), _recipes(False)
_CM_KINDS = [k for k in RECIPES if not k.__name__.startswith("IO_")]
_IO_KINDS = [k for k in RECIPES if k.__name__.startswith("IO_")]


def build(item: Any) -> Any:
    """Carry out a recipe (sub-recipes first)."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], type):
        cls, kwargs = item
        return cls(**{k: build(v) for k, v in kwargs.items()})
    if isinstance(item, list):
        return [build(v) for v in item]
    return item


def _has_arch(kind: type) -> bool:
    """Structures whose layout depends on the arch (the payloads have one layout)."""
    return "arch" in inspect.signature(kind.unpack).parameters


def _pack(value: Any, arch: R.Arch) -> bytes:
    return value.pack(arch) if _has_arch(type(value)) else value.pack()


def _unpack(kind: type, data: bytes, arch: R.Arch) -> Any:
    return kind.unpack(data, arch) if _has_arch(kind) else kind.unpack(data)


def _roundtrip(value: Any, arch: R.Arch) -> None:
    repr(value)
    if isinstance(value, (R.CM_PARTIAL_RESOURCE_DESCRIPTOR, R.IO_RESOURCE_DESCRIPTOR)):
        R.describe_range(value)
    if isinstance(value, R.PCI_SLOT_NUMBER):  # a ULONG, not a buffer
        assert R.PCI_SLOT_NUMBER.from_ulong(value.as_ulong) == value
    else:
        assert _unpack(type(value), _pack(value, arch), arch) == value, \
            f"unpack(pack(v)) != v for {value!r}"


def _run_recipe(item: tuple[tuple, R.Arch]) -> bool:
    made, arch = build(item[0]), item[1]
    _roundtrip(made, arch)
    if isinstance(made, R.CM_RESOURCE_LIST):
        try:
            packed = made.pack(arch, c_array=True)
        except R.LayoutRuleError:
            return True
        assert R.CM_RESOURCE_LIST.unpack(packed, arch, c_array=True) == made
    return True


#: Structures read from bytes (PCI_SLOT_NUMBER is a ULONG, not a buffer).
_UNPACKERS = [k for k in RECIPES if k is not R.PCI_SLOT_NUMBER]


def _real_values() -> list[tuple[type, bytes]]:
    """The genuine lists of tests/data/realworld-resources, as (structure, bytes)."""
    kinds = {8: R.CM_RESOURCE_LIST, 9: R.CM_FULL_RESOURCE_DESCRIPTOR, 10: R.IO_RESOURCE_REQUIREMENTS_LIST}
    return [(kinds[op.type], op.data) for path in sorted((REPO / "tests" / "data" / "realworld-resources").glob("*.reg"))
            for op in parse_reg(decode_reg_bytes(path.read_bytes()), str(path)) if op.type in kinds]


_REAL_VALUES = _real_values()


@st.composite
def resource_bytes(draw: st.DrawFn) -> tuple[type, bytes, R.Arch, bool]:
    """(structure, bytes, arch, c_array): a packed random value, a genuine value (mutated or
    not), or noise."""
    kind = draw(st.sampled_from(_UNPACKERS))
    arch = draw(st.sampled_from(list(R.Arch)))
    data = draw(st.binary(max_size=64))
    if not draw(st.integers(0, 5)):
        kind, data = draw(st.sampled_from(_REAL_VALUES))
        if draw(st.booleans()):
            data = draw(mutated_bytes(data))
    elif draw(st.integers(0, 3)):
        try:
            data = _pack(build(draw(CLEAN_RECIPES[kind])), arch)
        except ResourceFormatError:
            pass  # an invalid recipe: keep the noise
        if draw(st.booleans()):
            data = draw(mutated_bytes(data))
    return kind, data, arch, draw(st.booleans())


def _run_unpack(item: tuple[type, bytes, R.Arch, bool]) -> bool:
    kind, data, arch, c_array = item
    if kind is R.CM_RESOURCE_LIST:
        value = kind.unpack(data, arch, c_array=c_array)
        R.detect_arch(data)
    else:
        value = _unpack(kind, data, arch)
    _roundtrip(value, arch)
    assert _pack(value, arch) == data, f"decoding is not lossless for {value!r}"
    return True


# ------------------------------------------------------------------ .reg files
REG_TOKENS = ["hex(8):", "hex(9):", "hex(a):", "hex(ffffffff):", "hex(0):", "hex:", "dword:", "HEX:",
              "DWORD:", "Hex(2):", " ; c", ";", "\\ ; c\n", "\\\n; c\n\n  ", "\\0", "\\n", "\\r",
              "\r", "REGEDIT4\r\n", "[-HKEY_USERS\\S]", "=-",
              "dword:fffffffff", "\\\n  ", "\\\n\n", "[-HKEY_LOCAL_MACHINE\\X]", "[HKEY_USERS\\",
              "[HKEY_CURRENT_USER\\X]", "[HKEY_LOCAL_MACHINE\\\\]", '"=', "@=", "=-", ",", "ff,",
              "0,", "\r\n", "\r", "\\\\", '\\"', "\x00", ";", "]", "[", '"', "=", "REGEDIT4\n",
              "\ud800", "\u0130"]
#: Mutation seeds: the hand-written sample, the dialect corpus and the genuine exports.
_REG_SEEDS = [decode_reg_bytes(path.read_bytes()) for path in sorted(
    [REPO / "tests" / "data" / "sample_hardware.reg",
     *(REPO / "tests" / "data" / "regfiles" / "accepted").glob("*.ansi.reg"),
     *(REPO / "tests" / "data" / "realworld-resources").glob("*.reg")])]


@st.composite
def reg_documents(draw: st.DrawFn) -> str:
    """.reg text from the format's grammar: sections, names, every data form."""
    lines = [draw(_mostly(st.just("Windows Registry Editor Version 5.00"),
                          st.sampled_from(["REGEDIT4", "", "Windows Registry Editor"])))]
    for _ in range(draw(st.integers(0, 4))):
        root = draw(st.sampled_from(["HKEY_LOCAL_MACHINE", "HKEY_USERS", "-HKEY_LOCAL_MACHINE",
                                     "HKEY_CLASSES_ROOT", "hkey_local_machine"]))
        parts = draw(st.lists(st.sampled_from(["HARDWARE", "RESOURCEMAP", "X", "x", "a b",
                                               "\u00df", ""]) | st.text(max_size=6), max_size=3))
        lines += ["", f"[{chr(92).join([root, *parts])}]"]
        for _ in range(draw(st.integers(0, 4))):
            name = "@" if draw(st.booleans()) else '"' + draw(st.text(max_size=6)).replace(
                "\\", "\\\\").replace('"', '\\"') + '"'
            kind = draw(st.sampled_from(["sz", "dword", "hex", "del"]))
            if kind == "sz":
                data = '"' + draw(st.text(max_size=8)).replace("\\", "\\\\").replace('"', '\\"') + '"'
            elif kind == "dword":
                data = "dword:" + draw(st.text("0123456789abcdefABCDEFg", min_size=0, max_size=10))
            elif kind == "del":
                data = "-"
            else:
                rtype = draw(st.sampled_from(["", "(8)", "(9)", "(a)", "(b)", "(7)", "(2)", "(1)",
                                              "(4)", "(100)", "(ffffffff)"]))
                payload = draw(st.binary(max_size=40) | resource_bytes().map(lambda t: t[1]))
                body = ",".join(f"{b:02x}" for b in payload)
                if len(body) > 60 and draw(st.booleans()):
                    body = body[:60] + ",\\\n  " + body[61:]
                data = f"hex{rtype}:{body}"
            lines.append(f"{name}={data}")
    return draw(st.sampled_from(["\r\n", "\n"])).join(lines) + "\r\n"


@st.composite
def reg_inputs(draw: st.DrawFn) -> tuple[bytes, R.Arch]:
    """(file bytes, registry layout): generated, mutated sample, or noise, in any encoding."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        raw = draw(st.binary(max_size=200))
    else:
        text = draw(reg_documents() if choice < 6 else mutated_text(_REG_SEEDS, REG_TOKENS))
        encoding = draw(_mostly(st.sampled_from(["utf-16", "utf-8", "utf-8-sig"]),
                                st.just("utf-16-be"), 16))
        raw = text.encode(encoding, "surrogatepass")
    return raw, draw(st.sampled_from(list(R.Arch)))


def _run_reg(item: tuple[bytes, R.Arch]) -> bool:
    raw, arch = item
    with Registry(":memory:", arch=arch) as reg:
        decoded = read_reg_bytes(raw, "<fuzz.reg>")
        import_text(reg, decoded.text, source="<fuzz.reg>", unicode=decoded.unicode)
        exported = export_text(reg)  # what export_reg writes as UTF-16LE
        with Registry(":memory:", arch=arch) as again:
            apply_operations(again, parse_reg(exported, "<export>", unicode=True), source="<export>")
            assert _tree(again) == _tree(reg), "export then import changed the registry"
    return True


def _tree(reg: Registry) -> list:
    return [(path, [(v.name, v.type, v.data) for v in values]) for path, values in reg.walk(MACHINE)]


# ------------------------------------------------------------------ repro bundles

_BUNDLE_SEED = """harness_repro: 1
title: seed
machine:
  name: seed
  machine: pc
  devices:
    - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}
    - {model: isa-parallel, id: lpt1, iobase: 0x378, irq: 7}
steps:
  - load_driver: serial
    devices: [com1]
  - report:
      driver: Probe
      device: \\Device\\Probe0
      class: OtherDrivers
      override: false
      device_list:
        - interface: Isa
          bus: 0
          resources:
            - {port: 0x3f8, length: 8, share: shared}
            - {interrupt: 4, vector: 4, affinity: -1, flags: 1}
            - {dma: 2, dma_port: 0}
            - {memory: 0xd0000, length: 0x1000}
expect:
  outcome: conflict
  findings: [a, b]
"""


def _run_bundle(text: str) -> bool:
    from harness.repro import parse_bundle
    bundle = parse_bundle(load_text(text, "<fuzz-bundle>"), "<fuzz-bundle>")
    again = parse_bundle(load_text(bundle.dump(), "<dump>"), "<dump>")
    assert again.steps == bundle.steps and again.findings == bundle.findings, "dump then parse changed the bundle"
    return True


# ------------------------------------------------------------------ argv, field by field
#: Text made of what QEMU's option parser and a shell act on, and the issue's injection.
_HOSTILE_TEXT = st.one_of(
    st.text(alphabet=",=\n\r\x00 -_.:/$`'\"\\;|&isa0123", max_size=40),
    st.sampled_from(["isa", "isa.0", "isa.0,iobase=0x2e8,irq=7,bus=isa", "br", "fdc1", "bus=",
                     "x,bus=isa.0", "A" * 300, "com1"]),
    _scalars)


@functools.lru_cache(maxsize=None)
def _argv_spec(model: str) -> Any:
    return model_spec(model)


@st.composite
def argv_field_inputs(draw: st.DrawFn) -> tuple[str, str, Any]:
    """(model, one of its fields that reach argv, a value for it)."""
    model = draw(st.sampled_from(sorted(_CATALOG)))
    field = draw(st.sampled_from(sorted(argv_field_setters(_argv_spec(model)))))
    return model, field, draw(_HOSTILE_TEXT)


def _run_argv_field(item: tuple[str, str, Any]) -> bool:
    """The value goes into the field past config.py: build_argv refuses it naming that
    field, or the command line changes in that field's value alone."""
    model, field, value = item
    if value is None:
        value = ""  # None is "no bus" for a bus field, a valid choice that drops the key
    spec = _argv_spec(model)
    with tempfile.TemporaryDirectory(prefix="hf-") as run_dir:
        return check_argv_field(spec, field, argv_field_setters(spec)[field], value, Path(run_dir))


# ------------------------------------------------------------------ registry files
@functools.lru_cache(maxsize=1)
def _registry_seed() -> bytes:
    """A real registry file of a few pages: ResourceMap claims, strings, a volatile key."""
    with tempfile.TemporaryDirectory(prefix="hf-") as folder:
        path = Path(folder) / "seed.sqlite"
        with Registry(path) as reg, reg.transaction():
            for n in range(40):
                key = rf"{RESOURCE_MAP}\Class{n % 5}\Driver{n}"
                reg.create_key(key)
                reg.set_value(key, rf"\Device\Dev{n}.Raw",
                              R.CM_RESOURCE_LIST.single(R.Isa, 0, R.Port(0x100 + 8 * n, 8)))
                reg.set_value(key, "Text", f"value {n} " * 6)
            reg.create_key(rf"{RESOURCE_MAP}\Class0\Driver0\Volatile", volatile=True)
        return path.read_bytes()


@st.composite
def registry_files(draw: st.DrawFn) -> bytes:
    """The seed registry with bit flips, overwritten fields, truncation, or a page of noise."""
    seed = _registry_seed()
    if draw(st.booleans()):
        return draw(mutated_bytes(seed))
    data = bytearray(seed)
    at = draw(st.integers(0, len(data) - 1))
    data[at:at + 64] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def _run_registry(data: bytes) -> bool:
    from harness.nt.iomgr import IoManager
    from harness.nt.registry import format_tree
    with tempfile.TemporaryDirectory(prefix="hf-") as folder:
        path = Path(folder) / "r.sqlite"
        path.write_bytes(data)
        with Registry(path, create=False) as reg:
            format_tree(reg)  # every key and value, decoded
            IoManager(reg)    # the next run's take-over of the ResourceMap
    return True


# ------------------------------------------------------------------ the table

TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("machine-yaml",
           st.one_of(machine_documents(), mutated_text(_MACHINE_SEEDS, YAML_TOKENS),
                     mutated_text(_MACHINE_SEEDS, YAML_TOKENS), st.text(max_size=200)),
           _run_machine, (ConfigError,)),
    Target("device-model-yaml",
           st.sampled_from(_MODEL_SEEDS).flatmap(lambda seed: st.tuples(
               st.just(seed[0]), mutated_text([seed[1]], YAML_TOKENS))),
           _run_model, (ConfigError,)),
    Target("cm-io-binary", resource_bytes(), _run_unpack, (ResourceFormatError,)),
    Target("cm-python", st.tuples(st.sampled_from(_CM_KINDS).flatmap(RECIPES.__getitem__),
                                  st.sampled_from(list(R.Arch))), _run_recipe, (ResourceFormatError,)),
    Target("io-python", st.tuples(st.sampled_from(_IO_KINDS).flatmap(RECIPES.__getitem__),
                                  st.sampled_from(list(R.Arch))), _run_recipe, (ResourceFormatError,)),
    Target("reg-file", reg_inputs(), _run_reg, (RegFileError,)),
    Target("repro-bundle", st.one_of(mutated_text([_BUNDLE_SEED], YAML_TOKENS), st.text(max_size=200)),
           _run_bundle, (ConfigError,)),
    Target("matrix-yaml", st.one_of(mutated_text(_MATRIX_SEEDS, MATRIX_TOKENS), st.text(max_size=200)),
           _run_matrix, (ConfigError,)),
    Target("argv-fields", argv_field_inputs(), _run_argv_field, (ConfigError,)),
    Target("registry-file", registry_files(), _run_registry, (RegistryFileError,)),
]}

assert all(issubclass(e, HarnessError) for t in TARGETS.values() for e in t.documented)
