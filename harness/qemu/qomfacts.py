"""The QMP questions whose answers cannot change while a QEMU runs (its QOM tree: the
harness plugs no device after launch), as the layout's ISA reader asks them
(:meth:`harness.qemu.layout.QomReader.isa_devices`), and how to read the QOM tree's answer.

Kept free of imports so that a QEMU started from a launch plan (harness.qemu.launchplan)
gets them written into its monitor before it starts: QEMU answers them while SeaBIOS
runs, and the layout finds the answers waiting instead of asking.
"""

#: QOM containers holding the board's devices and the configured ones (with and without id).
QOM_CONTAINERS = ("/machine/unattached", "/machine/peripheral", "/machine/peripheral-anon")

#: Where the QOM tree is read from: everything the machine made is below it.
QOM_TREE_ROOT = "/machine"

#: Every object below :data:`QOM_TREE_ROOT` with its type, in one HMP command: the
#: containers' children and the type of every device owning a memory region (what a
#: ``qom-list`` per container and a ``qom-get type`` per owner would say, ~0.5 ms of
#: QEMU's CPU each, where the whole tree costs ~1.3 ms).
QOM_TREE_QUERY = ("human-monitor-command", {"command-line": f"info qom-tree {QOM_TREE_ROOT}"})

#: The ISA reader's first batch: the ISA device types, the QOM tree, the qdev tree.
ISA_FACT_QUERIES = (
    ("qom-list-types", {"implements": "isa-device", "abstract": False}),
    QOM_TREE_QUERY,
    ("human-monitor-command", {"command-line": "info qtree"}),
)

#: The PCI device types (the layout's and the bus's PCI readers, QomReader.pci_types).
PCI_TYPES_QUERY = ("qom-list-types", {"implements": "pci-device", "abstract": False})

#: Everything a launch asks ahead (harness.qemu.spawn.spawn_qemu's ``ask``).
STATIC_QUERIES = (*ISA_FACT_QUERIES, PCI_TYPES_QUERY)

#: The commands a launch plan may ask ahead besides those above (what the QOM reader asked
#: of the same machine last time; harness.qemu.launchplan); anything else in a plan is refused.
STATIC_COMMANDS = frozenset({"qom-get", "qom-list", "qom-list-types"})


def parse_qom_tree(text: str, root: str = QOM_TREE_ROOT) -> "list[tuple[str, str, str]] | None":
    """``(path, parent path, type)`` of every object in the answer to ``info qom-tree
    root`` (QEMU prints one ``/name (type)`` line per object, children indented two more
    spaces than their parent), in QEMU's order; None when any line is not of that form
    (the caller then asks QOM object by object instead of guessing).  A name is whatever
    stands between the slash and the last `` (``: a type name holds no space or bracket."""
    import re  # here, not above: launch plans import this module on the way to QEMU's start
    line_form = re.compile(r"( *)/(.+) \(([^\s()]+)\)\r?").fullmatch  # (re keeps it compiled)
    lines = text.rstrip("\r\n").split("\n")
    first = line_form(lines[0])
    if first is None or first.group(1) or first.group(2) != root.rsplit("/", 1)[-1]:
        return None  # the tree of the root asked for, the root first
    out = [(root, root.rsplit("/", 1)[0] or "/", first.group(3))]
    stack = [root]  # the path at each depth down to the last line's
    for line in lines[1:]:
        match = line_form(line)
        if match is None:
            return None
        indent, name, kind = match.groups()
        depth = len(indent) >> 1
        if len(indent) & 1 or not 0 < depth <= len(stack):
            return None
        parent = stack[depth - 1]
        path = f"{parent}/{name}"
        del stack[depth:]
        stack.append(path)
        out.append((path, parent, kind))
    if len({path for path, _, _ in out}) != len(out):
        return None  # one path twice: not a tree
    return out
