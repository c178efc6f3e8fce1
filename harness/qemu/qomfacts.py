"""The QMP questions whose answers cannot change while a QEMU runs (its QOM tree: the
harness plugs no device after launch), as the layout's ISA reader asks them
(:meth:`harness.qemu.layout.QomReader.isa_devices`).

Kept free of imports so that a QEMU started from a launch plan (harness.qemu.launchplan)
gets them written into its monitor before it starts: QEMU answers them while SeaBIOS
runs, and the layout finds the answers waiting instead of asking.
"""

#: QOM containers holding the board's devices and the configured ones (with and without id).
QOM_CONTAINERS = ("/machine/unattached", "/machine/peripheral", "/machine/peripheral-anon")

#: The ISA reader's first batch: the ISA device types, the containers' listings, the tree.
ISA_FACT_QUERIES = (
    ("qom-list-types", {"implements": "isa-device", "abstract": False}),
    *(("qom-list", {"path": container}) for container in QOM_CONTAINERS),
    ("human-monitor-command", {"command-line": "info qtree"}),
)

#: The PCI device types (the layout's and the bus's PCI readers, QomReader.pci_types).
PCI_TYPES_QUERY = ("qom-list-types", {"implements": "pci-device", "abstract": False})

#: Everything a launch asks ahead (harness.qemu.spawn.spawn_qemu's ``ask``).
STATIC_QUERIES = (*ISA_FACT_QUERIES, PCI_TYPES_QUERY)

#: The commands a launch plan may ask ahead besides those above (what the QOM reader asked
#: of the same machine last time; harness.qemu.launchplan); anything else in a plan is refused.
STATIC_COMMANDS = frozenset({"qom-get", "qom-list", "qom-list-types"})
