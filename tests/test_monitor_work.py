"""Less monitor work per machine, same answers: the QOM tree in one ``info qom-tree``
instead of a ``qom-list`` per container and a ``qom-get type`` per owner, checked against
asking QEMU the old way.  (Detection's posted reads: tests/test_fast_paths.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from harness.config import load_machine
from harness.qemu.layout import QomReader, read_static_facts, snapshot
from harness.qemu.machine import Machine
from harness.qemu.qomfacts import QOM_CONTAINERS, QOM_TREE_QUERY, parse_qom_tree
from helpers import CONFIGS, machine_spec

# A board's devices and configured ones, with an id and without (peripheral-anon).
MIXED = """
machine: pc
devices:
  - {model: isa-serial, id: com1, iobase: 0x3f8, irq: 4}
  - {model: isa-parallel, id: lpt1, iobase: 0x378, irq: 7}
  - {model: floppy, id: fd0, unit: 0}
  - {model: e1000, id: nic0, addr: 3}
  - {model: pci-bridge, id: br0, addr: 7}
  - {model: rtl8139, id: nic1, bus: br0, addr: 1}
"""


# ---- reading the tree ---------------------------------------------------------------

TREE = (
    "/machine (pc-i440fx-7.2-machine)\r\n"
    "  /fw_cfg (fw_cfg_io)\r\n"
    "    /\\x2from@etc\\x2facpi\\x2frsdp[0] (memory-region)\r\n"
    "  /peripheral (container)\r\n"
    "    /com1 (isa-serial)\r\n"
    "      /odd (name) here[0] (memory-region)\r\n"
    "  /unattached (container)\r\n"
    "    /device[0] (qemu64-x86_64-cpu)\r\n"
    "      /lapic (apic)\r\n"
    "    /device[10] (isa-serial)\r\n"
)


def test_the_tree_gives_each_object_its_path_parent_and_type() -> None:
    assert parse_qom_tree(TREE) == [
        ("/machine", "/", "pc-i440fx-7.2-machine"),
        ("/machine/fw_cfg", "/machine", "fw_cfg_io"),
        ("/machine/fw_cfg/\\x2from@etc\\x2facpi\\x2frsdp[0]", "/machine/fw_cfg", "memory-region"),
        ("/machine/peripheral", "/machine", "container"),
        ("/machine/peripheral/com1", "/machine/peripheral", "isa-serial"),
        ("/machine/peripheral/com1/odd (name) here[0]", "/machine/peripheral/com1", "memory-region"),
        ("/machine/unattached", "/machine", "container"),
        ("/machine/unattached/device[0]", "/machine/unattached", "qemu64-x86_64-cpu"),
        ("/machine/unattached/device[0]/lapic", "/machine/unattached/device[0]", "apic"),
        ("/machine/unattached/device[10]", "/machine/unattached", "isa-serial"),
    ]
    assert parse_qom_tree("/ (container)\n  /machine (m)\n", root="/") is None  # the root is named
    assert parse_qom_tree("/objects (container)\n  /mem (memory-backend-ram)\n", root="/objects") == [
        ("/objects", "/", "container"), ("/objects/mem", "/objects", "memory-backend-ram")]


@pytest.mark.parametrize("text", [
    "",                                                     # nothing
    "Error: no such path\n",                                # not the tree's form
    "/other (pc-i440fx-7.2-machine)\n",                     # another root than asked
    "/machine (m)\n/machine (m)\n",                         # two roots
    "/machine (m)\n    /deep (x)\n",                        # a level skipped
    "/machine (m)\n   /odd (x)\n",                          # odd indentation
    "/machine (m)\n  /a (x)\n  /a (y)\n",                   # one path twice
    "/machine (m)\n  /a\n",                                 # no type
    "/machine (m)\n  /a ()\n",                              # an empty type
    "/machine (m)\n  /a (two words)\n",                     # not a type name
    "/machine (m)\n  a (x)\n",                              # no slash
    "/machine (m)\n  / (x)\n",                              # no name
])
def test_a_tree_not_in_the_known_form_is_not_read(text: str) -> None:
    assert parse_qom_tree(text) is None


# ---- the tree against asking ----------------------------------------------------------

@pytest.mark.parametrize("source", ["default.yaml", "q35.yaml", "isapc.yaml", "mixed"])
def test_the_tree_says_what_qom_get_and_qom_list_say(source: str) -> None:
    """Every object's type as ``qom-get type`` says it, every container's children as its
    ``qom-list`` says (QOM does not need the firmware: launched is enough)."""
    spec = machine_spec(MIXED) if source == "mixed" else load_machine(CONFIGS / "machines" / source)
    with Machine(spec) as m:
        tree_text, *listings = m.qmp_many([QOM_TREE_QUERY, *(("qom-list", {"path": c}) for c in QOM_CONTAINERS)])
        objects = parse_qom_tree(tree_text)
        assert objects is not None and len(objects) > 100, tree_text[:500]
        asked = m.qmp_many([("qom-get", {"path": path, "property": "type"}) for path, _, _ in objects])
        assert {path: kind for path, _, kind in objects} == {path: got for (path, _, _), got in zip(objects, asked)}
        for container, listing in zip(QOM_CONTAINERS, listings):
            tree_children = {(path, kind) for path, parent, kind in objects if parent == container}
            if isinstance(listing, BaseException):  # a container QEMU did not need to make
                assert not tree_children
                continue
            listed = {(f"{container}/{c['name']}", c["type"][len("child<"):-1]) for c in listing
                      if c["type"].startswith("child<")}
            assert tree_children == listed, container


class _NoTree:
    """``machine`` whose monitor refuses ``info qom-tree``, with facts of its own: its
    reader falls back to a ``qom-list`` per container and a ``qom-get type`` per owner."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self.static_facts: dict[str, Any] = {}
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._machine, name)

    def qmp_many(self, commands: Any, **kw: Any) -> list[Any]:
        answers = self._machine.qmp_many(commands, **kw)
        for index, command in enumerate(commands):
            if command == QOM_TREE_QUERY:
                self.refused += 1
                answers[index] = RuntimeError("no info qom-tree here")
        return answers


def test_a_snapshot_asks_no_qom_question_after_the_firmware_and_equals_one_that_asks() -> None:
    with Machine(machine_spec(MIXED)) as m:
        m.start_firmware()
        read_static_facts(m)  # as a job does while SeaBIOS runs
        m.run_firmware()
        sent = len(m.commands)
        fast = snapshot(m)
        after = sorted(c for c, _ in m.commands[sent:])
        assert after == ["human-monitor-command", "human-monitor-command", "query-pci"], after
        slow_machine = _NoTree(m)
        reader = QomReader(slow_machine)
        slow = snapshot(slow_machine)
        assert slow_machine.refused == 1
        asked = [c for c, a in m.commands[sent + 3:] if c in ("qom-list", "qom-get")]
        assert asked.count("qom-list") == len(QOM_CONTAINERS) and "qom-get" in asked, asked
        assert slow.to_dict() == fast.to_dict()
        assert any(r.owner_type for r in fast.io) and reader.facts["isa-devices"]


# ---- anonymous ISA devices of one type, told apart --------------------------------------

class _Qom:
    """A monitor that answers ``qom-get`` from ``values`` ({(path, property): value}) and
    counts what it was asked."""

    def __init__(self, values: dict[tuple[str, str], int]) -> None:
        self.values, self.asked, self.static_facts = values, [], {}

    def qmp_many(self, commands: Any, **kw: Any) -> list[Any]:
        self.asked += [(a["path"], a["property"]) for _, a in commands]
        return [self.values[a["path"], a["property"]] for _, a in commands]


def test_anonymous_devices_of_one_type_are_told_apart_asking_all_but_the_last() -> None:
    paths = [f"/machine/unattached/device[{n}]" for n in (4, 5, 6)]
    bases = {paths[0]: 0xA0, paths[1]: 0x20, paths[2]: 0x4D0}
    devices = [(p, None, "isa-i8259") for p in paths]
    qtree = [("isa-i8259", None, {"iobase": b}) for b in (0x20, 0xA0, 0x4D0)]
    monitor = _Qom({(p, "iobase"): b for p, b in bases.items()})
    got = QomReader(monitor)._match_qtree(devices, qtree)
    assert got is not None and {d.path: d.properties["iobase"] for d in got} == bases
    assert monitor.asked == [(paths[0], "iobase"), (paths[1], "iobase")]  # the last by elimination
    # An answer no entry fits, or one that fits two different entries: not used.
    wrong = _Qom({(paths[0], "iobase"): 0x3F8, (paths[1], "iobase"): 0x20})
    assert QomReader(wrong)._match_qtree(devices, qtree) is None
    # Alike entries need no question at all.
    alike = _Qom({})
    assert QomReader(alike)._match_qtree(devices, [("isa-i8259", None, {"iobase": 0x20})] * 3) is not None
    assert alike.asked == []


def test_a_board_s_two_pics_are_told_apart_with_one_question() -> None:
    """The pc board's two i8259s (anonymous, iobase 0x20 and 0xa0): one ``qom-get`` where
    there were two, and the same devices as the QOM walk finds."""
    with Machine(machine_spec("machine: pc\n")) as m:
        reader = QomReader(m)
        fast = reader._read_isa_devices()
        asked = [(c, a) for c, a in m.commands if c == "qom-get"]
        pics = [d for d in fast if d.type == "isa-i8259"]
        assert sorted(d.properties["iobase"] for d in pics) == [0x20, 0xA0]
        assert len(asked) == 1 and asked[0][1]["property"] == "iobase", asked
        assert {d.path: d.properties for d in fast} == {
            d.path: d.properties for d in reader._walk_isa_devices([(d.path, d.id, d.type) for d in fast])}
