"""The main job (``harness run``) on the shipped machines and conflict configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_machine, parse_machine_text
from harness.errors import ConfigError, HarnessError
from harness.job import REGISTRY_FILE, format_resource_map, run_job
from harness.nt.registry import Registry
from harness.verdict import CONFLICT, EXIT_CODES, WARNING
from helpers import CONFIGS

CONFLICTS = sorted((CONFIGS / "conflicts").glob("*.yaml"))

# What each conflict config must show: the refused claim's error code, who held the
# resource, and the hardware consequence the job reveals.  A code of None: every claim
# looked fine and only the hardware shows the consequence; None for the whole entry: the
# config is written to run clean (expect: clean).  The verdict (and so the exit code) is
# the config's own ``expect``.
EXPECTED: dict[str, tuple[str | None, str | None, str | None] | None] = {
    "serial-same-base": ("IO_ERR_PORT_CONFLICT_DETECTED", "Serial", "shadowed"),
    "ne2000-irq9-sci": ("IO_ERR_IRQ_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "acpi-sci"),
    "sb16-ne2000-irq5": ("IO_ERR_IRQ_CONFLICT_DETECTED", "Sndblst", "irq-shared"),
    "floppy-sb16-dma2": ("IO_ERR_DMA_CONFLICT_DETECTED", "Sndblst", "dma-shared"),
    "isa-under-pci-bar": ("IO_ERR_PORT_CONFLICT_DETECTED", "Ne2000", "shadowed"),
    "serial-at-cf8": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "shadowed"),
    "shared-isa-irq-edge": (None, None, "irq-lost"),
    "shared-isa-irq-edge-q35": (None, None, "irq-lost"),
    "pci-intx-shared": None,
    "pci-intx-shared-q35": None,
    "dma-channel-stall": (None, None, "dma-shared"),
    # no claim is refused: the BAR is moved behind the arbiter's back (a step after the firmware)
    "bar-moved-onto-isa-memory": (None, None, "shadowed"),
    # the generic legacy driver claims both: the IPMI BT's claim meets pc-testdev's, and
    # its ownerless ports are attributed from its model in the hardware view
    "ipmi-bt-on-testdev": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    # Claimants of every decoder (issue 16); a consequence of None: the hardware shows none.
    "sb16-adlib-pair": None,
    "debugcon-beside-hal": None,
    "sb16-block-adlib": ("IO_ERR_PORT_CONFLICT_DETECTED", "Sndblst", None),
    "debugcon-in-hal-hole": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", None),
    "isa-ide-over-board-ide": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "ne2000-over-isapc-ide": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "serial-on-keyboard": ("IO_ERR_PORT_CONFLICT_DETECTED", "i8042prt", "shadowed"),
    "debugcon-in-q35-acpi": ("IO_ERR_PORT_CONFLICT_DETECTED", "ACPI", "shadowed"),
    "cs4231a-shadows-sb16": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    "serial-shadowed-by-ne2000": ("IO_ERR_PORT_CONFLICT_DETECTED", "Ne2000", "shadowed"),
    # Scenarios of the QA pass: board devices, one-port overlaps, lines, channels, builtin settings.
    "serial-overlap-last-port": ("IO_ERR_PORT_CONFLICT_DETECTED", "Serial", "shadowed"),
    "serial-overlap-first-port": ("IO_ERR_PORT_CONFLICT_DETECTED", "Serial", "shadowed"),
    "ipmi-bt-over-pic": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "shadowed"),
    "ipmi-bt-over-pit": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "shadowed"),
    "ipmi-bt-over-rtc": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "shadowed"),
    "applesmc-on-post-port": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "shadowed"),
    "ipmi-bt-over-fdc-and-ide": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "isa-fdc-over-board-fdc": (None, None, "dma-shared"),
    "isa-ide-on-q35": None,
    "lpt-at-3bc": (None, None, None),
    "lpt-3bc-over-vga": (None, None, "shadowed"),
    "serial-under-pc-pmbase": ("IO_ERR_PORT_CONFLICT_DETECTED", "ACPI", "shadowed"),
    "ipmi-bt-on-pc-smbus": ("IO_ERR_PORT_CONFLICT_DETECTED", "PnpManager", "shadowed"),
    "ipmi-bt-on-gpe0": ("IO_ERR_PORT_CONFLICT_DETECTED", "ACPI", "shadowed"),
    "ipmi-bt-on-q35-tco": ("IO_ERR_PORT_CONFLICT_DETECTED", "ACPI", "shadowed"),
    "pvpanic-under-reset-control": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "shadowed"),
    "ne2000-isa-on-pci-intx": ("IO_ERR_INTERRUPT_RESOURCE_CONFLICT", "Ne2000", "irq-shared"),
    "serial-irq8-rtc": ("IO_ERR_IRQ_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "irq-shared"),
    "serial-irq1-keyboard": ("IO_ERR_IRQ_CONFLICT_DETECTED", "i8042prt", "irq-shared"),
    "serial-irq2-cascade": ("IO_ERR_IRQ_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "pic-cascade"),
    "gus-sb16-dma5": ("IO_ERR_DMA_CONFLICT_DETECTED", "Legacy", "dma-shared"),
    "gus-cs4231a-dma3": ("IO_ERR_DMA_CONFLICT_DETECTED", "Legacy", "dma-shared"),
    "q35-fdc-cs4231a-dma3": ("IO_ERR_DMA_CONFLICT_DETECTED", "Legacy", "dma-shared"),
    "sb16-dma16-is-dma8": None,
    "pc-testdev-twice": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    "ib700-twice": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    "applesmc-in-ne2000": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    "gus-midi-under-ne2000": ("IO_ERR_PORT_CONFLICT_DETECTED", "Ne2000", "shadowed"),
    "builtin-fdc-moved": None,
    "builtin-mouse-irq5-sb16": ("IO_ERR_IRQ_CONFLICT_DETECTED", "i8042prt", "irq-shared"),
    "builtin-mouse-frees-irq12": None,
    "isapc-ne2000-irq9": None,
    "serial-irq15-q35": None,
    "lpt-com4-irq7": ("IO_ERR_IRQ_CONFLICT_DETECTED", "Serial", "irq-shared"),
    "bar-moved-onto-hpet": (None, None, "shadowed"),
    "bar-moved-onto-bios": (None, None, "shadowed"),
    "bar-moved-onto-option-rom": (None, None, "shadowed"),
    "serial-irq0-timer": (None, None, "irq-shared"),
    "bar-moved-onto-lapic": (None, None, "shadowed"),
    # Scenarios of the second QA pass.
    "serial-irq13-fpu": (None, None, "irq-shared"),
    "sb16-adlib-kcs-irq5": ("IO_ERR_IRQ_CONFLICT_DETECTED", "Legacy", "irq-shared"),
    "ipmi-kcs-irq0": None,
    "serial-irq13-fpu-claimed": ("IO_ERR_IRQ_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "irq-shared"),
    "serial-alias-6f8": None,
    "ports-at-top": None,
    "debugcon-at-port-0": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "shadowed"),
    "serial-in-vga-ports": ("IO_ERR_PORT_CONFLICT_DETECTED", "Serial", "shadowed"),
    "uart-at-3c0-beside-non-vga-displays": None,
    "two-pci-vgas": ("IO_ERR_PORT_CONFLICT_DETECTED", "VgaSave", "shadowed"),
    # models of issue "models2": a second compatibility IDE, two new VGA-class cards
    "second-pci-ide-over-board-ide": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "qxl-vga-and-vmware-svga": ("IO_ERR_PORT_CONFLICT_DETECTED", "VgaSave", "shadowed"),
    "isa-ide-over-pci-ide-q35": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    "pcie-switch-clean-q35": None,
    "isa-cirrus-over-pci-vga": ("IO_ERR_PORT_CONFLICT_DETECTED", "VgaSave", "shadowed"),
    "pci-intx-pair-and-isa-uart": (None, None, "irq-shared"),
    "uhci-intx-and-isa-uart": (None, None, "irq-shared"),
    "ne2000-irq10-pc": None,
    "ne2000-irq10-q35": ("IO_ERR_IRQ_CONFLICT_DETECTED", "PnpManager", "irq-shared"),
    "ne2000-irq10-isapc": None,
    "isapc-floppy-sb16-dma2": ("IO_ERR_DMA_CONFLICT_DETECTED", "Sndblst", "dma-shared"),
    "three-way-0x300": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    "three-way-ide-alt-status": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "full-clean-pc": None,
    "full-clean-q35": None,
    "full-clean-isapc": None,
    "debugcon-in-fw-cfg-gap": None,
    "bar-moved-onto-vbe-lfb": ("IO_ERR_MEMORY_CONFLICT_DETECTED", "PciNet", "shadowed"),
    "serial-irq2-q35": (None, None, "pic-cascade"),
    "serial-shadowed-beside-lsi": ("IO_ERR_PORT_CONFLICT_DETECTED", "Ne2000", "shadowed"),
    "full-clean-pci-pc": None,
    "full-clean-pci-q35": None,
    "pvpanic-at-com1": None,
    # the machine stops at the HAL's write: a firmware event alone (checked in
    # test_firmware_events: guest-panicked, caused by panic0 over the ELCR)
    "pvpanic-on-elcr-q35": (None, None, None),
    # Scenarios of the third QA pass: q35's board, BARs (64-bit, sibling functions), builtin.
    "bar-moved-onto-q35-rcba": (None, None, "shadowed"),
    "bar-moved-onto-mmconfig": (None, None, "shadowed"),
    "serial-on-q35-smbus": ("IO_ERR_PORT_CONFLICT_DETECTED", "PnpManager", "shadowed"),
    "serial-on-q35-cpu-hotplug": ("IO_ERR_PORT_CONFLICT_DETECTED", "ACPI", "shadowed"),
    "builtin-kbd-irq4-q35": ("IO_ERR_IRQ_CONFLICT_DETECTED", "i8042prt", "irq-shared"),
    "builtin-fdc-onto-serial": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "bar-moved-onto-sibling-function": (None, None, "shadowed"),
    "bar64-moved-onto-bar": (None, None, "shadowed"),
    "bar64-above-4g-q35": None,
    "serial-in-root-port-window": (None, None, "shadowed"),
    "multifunction-pair-q35": None,
    "bridge-msix-bar-onto-nic": (None, None, "shadowed"),
    "bar-moved-outside-bridge-window": (None, None, None),
    # Scenarios of the fourth QA pass: isapc's ISA-only board, ownerless regions, DMA channels.
    "isapc-isa-ide-third": None,
    "isapc-ne2000-over-two-ide": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "ipmi-bt-twice": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    "ipmi-kcs-under-bt-partial": (None, None, "shadowed"),
    "isapc-sb16-gus-dma1-driverless": (None, None, "dma-shared"),
    "isapc-second-fdc-on-irq6-dma2": ("IO_ERR_IRQ_CONFLICT_DETECTED", "Floppy", "dma-shared"),
    "isapc-second-fdc-clean": None,
    "q35-pirq-rerouted-onto-serial": (None, None, "irq-shared"),
    "pirq-rerouted-onto-sb16": ("IO_ERR_IRQ_CONFLICT_DETECTED", "PciNet", "irq-shared"),
    "pci-line-register-rewritten": None,
    "io-bar-moved-onto-com1-post-drivers": (None, None, "shadowed"),
    "command-register-cleared-post-drivers": (None, None, None),
    "builtin-mouse-irq9-sci": ("IO_ERR_IRQ_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "acpi-sci"),
    "isapc-ne2000-over-vga-ports": ("IO_ERR_PORT_CONFLICT_DETECTED", "Ne2000", "shadowed"),
    "bar-moved-onto-testdev-mmio": (None, None, "shadowed"),
    "q35-serial-irq6-no-fdc": None,
    "isapc-serial-irq13-fpu": (None, None, "irq-shared"),
    "isapc-sb16-gus-adlib-240": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    "vga-behind-bridge": None,
    "q35-vga-behind-root-port": None,
    "builtin-fdc-dma1-sb16": ("IO_ERR_DMA_CONFLICT_DETECTED", "Sndblst", "dma-shared"),
    "builtin-fdc-370-isapc": None,
    "pirq-rerouted-after-drivers": (None, None, "irq-shared"),
    "pci-intx-disabled-beside-uart": None,
    "serial-in-bridge-window-gap": None,
    # issue "startorder": who answers a contested range is the flat view's, not the last mapped
    "isa-cirrus-beside-vga-behind-bridge": ("IO_ERR_PORT_CONFLICT_DETECTED", "VgaSave", "shadowed"),
    "two-vgas-behind-two-bridges": None,
    # qa5: the newly modelled devices beside ISA cards and board devices
    "second-display-behind-bridge-beside-svga": None,
    "serial-in-ati-vga-crtc": ("IO_ERR_PORT_CONFLICT_DETECTED", "Serial", "shadowed"),
    "hyperv-testdev-beside-serial-isapc": None,
    "hyperv-testdev-under-serial-q35": ("IO_ERR_PORT_CONFLICT_DETECTED", "Serial", "shadowed"),
    "ivshmem-bar-onto-nic": (None, None, "shadowed"),
    "can-io-bar-over-com1": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "ne2000-over-svga-io-bar": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "ne2000-in-virtio-vga-ports": ("IO_ERR_PORT_CONFLICT_DETECTED", "Ne2000", "shadowed"),
    "eepro100-io-bar-onto-ide": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "serial-over-second-piix3-ide": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "piix4-ide-beside-isa-ide-q35": ("IO_ERR_PORT_CONFLICT_DETECTED", "Legacy", "shadowed"),
    "q35-second-display-behind-root-port": None,
    "eepro100-bar-onto-hyperv-post-drivers": (None, None, "shadowed"),
    "switch-bar-moved-onto-sibling-reassigned": None,
    # livefuzz: a BAR over 0xcf8-0xcff hides the slot's header; the driver starts nothing
    "io-bar-moved-onto-config-ports-q35": (None, None, "shadowed"),
    # livefuzz: the VGA miniport claims what the bridge forwards, not the cirrus's whole block
    "debugcon-between-vga-blocks-behind-bridge": None,
    # livefuzz: a BAR moved out of a claim of several contiguous BARs
    "bar-moved-out-of-a-merged-claim": (None, None, None),
    # livefuzz round two: the VGA miniport's claim of its BARs is checked like any other
    "vga-bar-moved-out-of-its-claim": (None, None, None),
    # livefuzz round two: an ISA port past 0xffff wraps to 16 bits, onto the HAL's DMA block
    "applesmc-port-wraps-past-0xffff": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", None),
    # livefuzz round three: the guest agent's port keeps clear of an I/O BAR a step moves
    "io-bar-moved-over-the-agent-port-q35": (None, None, "shadowed"),
    # livefuzz round four: a BAR under SeaBIOS's shadow RAM loses to the RAM block, named alike at either end
    "bar-moved-into-the-bios-shadow-q35": (None, None, "shadowed"),
    # livefuzz round three: the agent's UART beside four COM ports is no fifth isa-serial
    "four-com-ports-beside-the-agent-q35": None,
    # livefuzz round five: the harness's firmware-log console under a moved BAR is no party
    "bar-moved-over-the-firmware-log-port-q35": (None, None, "shadowed"),
    # livefuzz round five: a PCI IDE on no bus QEMU reports decodes its compatibility ports unclaimed
    "pci-ide-behind-an-unnumbered-bridge-pc": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "shadowed"),
    # qa6: what a card over each board decoder showed (tests/test_board_overlaps.py)
    "fpu-port-and-line-taken": ("IO_ERR_IRQ_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "irq-shared"),
    "keyboard-ports-both-taken": ("IO_ERR_PORT_CONFLICT_DETECTED", "i8042prt", "shadowed"),
    "keyboard-lines-both-taken": ("IO_ERR_IRQ_CONFLICT_DETECTED", "i8042prt", "irq-shared"),
    "rtl8139-bar-moved-onto-hpet": (None, None, "shadowed"),
    "serial-on-q35-sata-smbus-line": ("IO_ERR_IRQ_CONFLICT_DETECTED", "PnpManager", "irq-shared"),
    "serial-on-q35-pci-config-ports": (None, None, None),
    "elcr-port-taken-shared-irq3": ("IO_ERR_PORT_CONFLICT_DETECTED", "PC Compatible Eisa/Isa HAL", "irq-lost"),
    # qa7: scenarios as users write them from the README
    "isa-ide-over-floppy-ports": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    "ne2000-serial-irq4": ("IO_ERR_IRQ_CONFLICT_DETECTED", "Ne2000", "irq-shared"),
    "sb16-cs4231a-dma1": ("IO_ERR_DMA_CONFLICT_DETECTED", "Legacy", "dma-shared"),
    "builtin-kbd-irq3-com2": ("IO_ERR_IRQ_CONFLICT_DETECTED", "i8042prt", "irq-shared"),
    "bar-moved-onto-cirrus-lowmem": (None, None, "shadowed"),
    "q35-root-ports-beside-isa-clean": None,
    "sci-line-register-rewritten": (None, None, "acpi-sci"),
    # livefuzz's leftover on pc: the SCI and the NIC's firmware route, not the card's bytes
    "io-bar-moved-onto-config-ports-pc": (None, None, "acpi-sci"),
    "q35-io-bar-onto-config-ports-beside-uart": (None, None, "irq-shared"),
    # qa8: a board device `builtin` moved onto another board device's port
    "builtin-fdc-371-under-ide": ("IO_ERR_PORT_CONFLICT_DETECTED", "atapi", "shadowed"),
    # qa8: the SB16's mixer IRQ select moves no line in QEMU (its steps measure it)
    "sb16-mixer-irq-select-keeps-its-line": None,
    # qa9: a driver's own error-log entry (no conflict) is a conflict by its error severity
    "sb16-mixer-irq-select-before-drivers": (None, None, None),
}

# The error-log entries drivers write of their own (IoWriteErrorLogEntry, no conflict) in
# each config that has any, in order: each weighs on the verdict by its severity (README,
# "Verdict levels and exit codes"); every other config has none.
# The first conflict entry's two devices as the user knows them (device_id, holder_id in
# report.json, "[ne0; held for sb0]" in report.txt): the error log itself names NT's
# device objects, \Device\Ne2000_0 (deleted when its claim was refused) and \Device\SoundBlaster0.
CONFLICT_NAMES = {"sb16-ne2000-irq5": ("ne0", "sb0"), "serial-on-keyboard": ("com9", "board:keyboard-controller"),
                  "isa-ide-over-board-ide": ("ide9", "board:ide-legacy"), "ipmi-bt-on-testdev": ("testdev", "bmcbt")}

INVALID_IOBASE, TIMEOUT = "IO_ERR_INVALID_IOBASE", "IO_ERR_TIMEOUT"
DRIVER_ERRORS = {"sb16-mixer-irq-select-before-drivers": ["IO_ERR_INCORRECT_IRQL"],
                 # a device its driver claimed does not answer where it was told to look
                 "builtin-fdc-onto-serial": [INVALID_IOBASE], "can-io-bar-over-com1": [INVALID_IOBASE] * 2,
                 "ipmi-bt-over-fdc-and-ide": [INVALID_IOBASE], "isa-ide-over-floppy-ports": [INVALID_IOBASE],
                 "isapc-sb16-gus-adlib-240": [INVALID_IOBASE], "lpt-3bc-over-vga": [INVALID_IOBASE],
                 "lpt-at-3bc": [INVALID_IOBASE], "serial-in-root-port-window": [INVALID_IOBASE],
                 # the floppy driver's DMA read of sector 1 never completes
                 "dma-channel-stall": [TIMEOUT], "ipmi-bt-over-rtc": [TIMEOUT]}

# Whom a config's failed claim check must say the claim was for: a board device by its
# label, as every report names it (it showed an owner-less region's name, 'ide').
CHECK_FOR = {"isa-ide-over-floppy-ports": ("board:ide-legacy",)}

# Words a config's hardware collision must say (what the line or range really does there).
COLLISION_SAYS = {"bar-moved-into-the-bios-shadow-q35": "no longer answers there: pc.ram wins them",   # livefuzz round four
                  "serial-irq2-q35": "the timer's GSI 2", "serial-irq13-fpu": "fpu-error",
                  "io-bar-moved-onto-config-ports-pc": "IRQ 11 is driven by com4, nic0",
                  "q35-io-bar-onto-config-ports-beside-uart": "IRQ 11 is driven by com4, nic0",
                  # a board device is named as the claimants name it, not by its QOM path
                  "bar-moved-onto-q35-rcba": "board:root-complex-registers wins them",
                  "bar-moved-onto-mmconfig": "board:pci-express-configuration wins them",
                  "builtin-fdc-onto-serial": "board:ide-legacy (ide) no longer answers",
                  # qa8: two board parties, one moved by the file's builtin, collide
                  "builtin-fdc-371-under-ide": "board:floppy-controller (fdc) no longer answers there: board:ide-legacy wins",
                  # a piece of an ownerless region left in the flat view is its device's
                  "ipmi-kcs-under-bt-partial": "bt0 (ipmi-bt) no longer answers there: kcs0 wins",
                  # a PIRQ routed to an ISA line drives it also where the NIC's claim is a GSI
                  "q35-pirq-rerouted-onto-serial": "IRQ 4 is driven by com1, nic0",
                  "isapc-serial-irq13-fpu": "fpu-error",
                  # qa6: the FERR line stays wired with 0xf0 taken; an alias BAR lost whole;
                  # built-in PCI functions named as the claimants name them
                  "fpu-port-and-line-taken": "IRQ 13 is driven by ne0, board:fpu-error",
                  "rtl8139-bar-moved-onto-hpet": "nic0 (rtl8139-mem) no longer answers there: board:hpet wins them",
                  "serial-on-q35-sata-smbus-line": "IRQ 10 is driven by com1, board:sata, board:smbus",
                  "keyboard-lines-both-taken": "IRQ 12 is driven by board:keyboard-controller, com1",
                  # the ELCR as the 8259s hold it, not the byte a card on 0x4d0 answers
                  "elcr-port-taken-shared-irq3": "edge-triggered (ELCR bit 3 clear)",
                  # every compatibility-mode PCI IDE function drives IRQ 14/15 (QEMU's
                  # pci_piix_init_ports), the one that answers at the ports or not
                  "second-pci-ide-over-board-ide": "IRQ 14 is driven by board:ide-legacy, ide2"}

# The decoders each config leaves without a claim (JobResult.unclaimed: refused, or not
# found by their driver where they decode); every other config leaves none.  A device
# whose claim is refused is one; one its driver could not find (lpt-at-3bc, a hidden
# board FDC) is one too, conflict or not.
UNCLAIMED: dict[str, set[str]] = {
    "isa-ide-over-floppy-ports": {"board:floppy-controller", "fd0", "ide2"}, "ne2000-serial-irq4": {"com1"},
    "io-bar-moved-onto-config-ports-pc": {"nic0"}, "q35-io-bar-onto-config-ports-beside-uart": {"nic0"},
    "sb16-cs4231a-dma1": {"sb0"}, "builtin-kbd-irq3-com2": {"com2"},   # qa7
    "builtin-fdc-371-under-ide": {"board:floppy-controller"},   # qa8
    "io-bar-moved-onto-config-ports-q35": {"nic0"}, "bar-moved-out-of-a-merged-claim": {"nic0"},   # livefuzz
    "applesmc-in-ne2000": {"ne0"}, "applesmc-on-post-port": {"smc"}, "bar-moved-onto-isa-memory": {"nic0"},
    "builtin-mouse-irq5-sb16": {"sb0"}, "cs4231a-shadows-sb16": {"sb0"}, "debugcon-in-hal-hole": {"dbg0"},
    "debugcon-in-q35-acpi": {"dbg0"}, "floppy-sb16-dma2": {"board:floppy-controller", "fd0"},
    "gus-cs4231a-dma3": {"gus0"}, "gus-midi-under-ne2000": {"gus0"}, "gus-sb16-dma5": {"sb0"},
    "ipmi-bt-on-gpe0": {"bt0"}, "ipmi-bt-on-pc-smbus": {"bt0"}, "ipmi-bt-on-q35-tco": {"bt0"},
    "ipmi-bt-on-testdev": {"testdev"}, "ipmi-bt-over-fdc-and-ide": {"board:floppy-controller", "bt0"},
    "ipmi-bt-over-pic": {"bt0"}, "ipmi-bt-over-pit": {"bt0"}, "ipmi-bt-over-rtc": {"bt0"}, "isa-ide-over-board-ide": {"ide9"}, "lpt-3bc-over-vga": {"lpt3"},
    "lpt-at-3bc": {"lpt3"}, "lpt-com4-irq7": {"lpt1"}, "ne2000-irq9-sci": {"ne0"}, "ne2000-isa-on-pci-intx": {"nic0"},
    "ne2000-over-isapc-ide": {"ne0"}, "pvpanic-under-reset-control": {"pp"}, "q35-fdc-cs4231a-dma3": {"fdc0"},
    "sb16-block-adlib": {"opl0"}, "sb16-ne2000-irq5": {"ne0"}, "serial-at-cf8": {"com1"},
    "serial-irq1-keyboard": {"com2"}, "serial-irq2-cascade": {"com2"}, "serial-irq8-rtc": {"com2"},
    "serial-on-keyboard": {"com9"}, "serial-overlap-first-port": {"com2"}, "serial-overlap-last-port": {"com2"},
    "serial-shadowed-by-ne2000": {"com9"}, "serial-under-pc-pmbase": {"com3"},
    # refused: a sibling of the same driver, mapped later, started first and holds the ranges
    "sb16-adlib-kcs-irq5": {"sb0"}, "isa-fdc-over-board-fdc": {"board:floppy-controller"},
    "serial-irq13-fpu-claimed": {"com2"}, "debugcon-at-port-0": {"dbg0"}, "serial-in-vga-ports": {"vga0"},
    "two-pci-vgas": {"vga0"}, "isa-cirrus-over-pci-vga": {"vga0"}, "ne2000-irq10-q35": {"ne0"},
    "isapc-floppy-sb16-dma2": {"board:floppy-controller"}, "three-way-0x300": {"com9", "ne0"},
    "three-way-ide-alt-status": {"com9", "bt0"}, "serial-shadowed-beside-lsi": {"com9"}, "bar-moved-onto-vbe-lfb": {"vga0"},
    "serial-same-base": {"com1"}, "ib700-twice": {"wd0"}, "pc-testdev-twice": {"td0"},
    "serial-on-q35-smbus": {"com3"}, "serial-on-q35-cpu-hotplug": {"com3"}, "builtin-kbd-irq4-q35": {"com1"},
    "builtin-fdc-onto-serial": {"board:floppy-controller", "com3"}, "serial-in-root-port-window": {"com3"},
    # the fourth QA pass
    "isapc-ne2000-over-two-ide": {"ne0"}, "ipmi-bt-twice": {"bt0"},
    "isapc-second-fdc-on-irq6-dma2": {"board:floppy-controller"}, "pirq-rerouted-onto-sb16": {"sb0"},
    "io-bar-moved-onto-com1-post-drivers": {"nic0"}, "builtin-mouse-irq9-sci": {"board:keyboard-controller"},
    "isapc-ne2000-over-vga-ports": {"vga0"}, "isapc-sb16-gus-adlib-240": {"gus0", "sb0"},
    "builtin-fdc-dma1-sb16": {"board:floppy-controller", "fd0"},
    # models2
    "second-pci-ide-over-board-ide": {"ide2"}, "qxl-vga-and-vmware-svga": {"qxl0"},
    "isa-ide-over-pci-ide-q35": {"pciide"},
    # startorder: the device the bridge's VGA window forwards to holds the claim
    "isa-cirrus-beside-vga-behind-bridge": {"vga1"},
    # qa5
    "serial-in-ati-vga-crtc": {"ati0"}, "hyperv-testdev-under-serial-q35": {"hv0"},
    "can-io-bar-over-com1": {"can0", "com1", "board:floppy-controller"}, "ne2000-over-svga-io-bar": {"ne0"},
    "ne2000-in-virtio-vga-ports": {"vv0"}, "eepro100-io-bar-onto-ide": {"nic0"},
    "serial-over-second-piix3-ide": {"ide9", "com9"}, "piix4-ide-beside-isa-ide-q35": {"ide9"},
    "eepro100-bar-onto-hyperv-post-drivers": {"hv0", "nic0"},
    # qa6
    "fpu-port-and-line-taken": {"dbg0", "ne0"}, "keyboard-ports-both-taken": {"d60", "kcs0"},
    "keyboard-lines-both-taken": {"ne0", "com1"}, "serial-on-q35-sata-smbus-line": {"com1"},
    "elcr-port-taken-shared-irq3": {"dbg0"},
    "applesmc-port-wraps-past-0xffff": {"smc0"},   # livefuzz round two
    "io-bar-moved-over-the-agent-port-q35": {"snd0"},   # livefuzz round three: its claim is where SeaBIOS put it
    # livefuzz round five: on no bus no scan finds it, and its claimant line said claimed
    "pci-ide-behind-an-unnumbered-bridge-pc": {"ide9", "board:floppy-controller"},
    "bar-moved-over-the-firmware-log-port-q35": {"can0"},
}

# Words a config's claims check must say of some claim (a claim that is not what its device decodes).
CHECK_SAYS = {"bar-moved-out-of-a-merged-claim": "outside the device's BARs and decode: 0xfebfe000-0xfebfefff",
              "vga-bar-moved-out-of-its-claim": "outside the device's BARs and decode: 0xf4000000-0xf7ffffff",
              "isapc-sb16-gus-dma1-driverless": "channel 1 is owned by gus0, registered last",
              "dma-channel-stall": "channel 2 is owned by sb0, registered last",
              "io-bar-moved-onto-com1-post-drivers": "decoded by nic0 (rtl8139 0x300-0x3ff)",
              "command-register-cleared-post-drivers": "nothing decodes this range",
              "pirq-rerouted-after-drivers": "PIRQC routes nic0's INTA# to IRQ 4, the claim says 11",
              # qa5
              "can-io-bar-over-com1": "decoded by can0 (kvaser_pci-sja 0x380-0x3ff)",
              "eepro100-io-bar-onto-ide": "decoded by nic0 (eepro100-io 0x140-0x17f)",
              "eepro100-bar-onto-hyperv-post-drivers": "decoded by nic0 (eepro100-io 0x3000-0x303f)",
              # qa6: the 8042 lost both ports and is still whom i8042prt's claims are for
              "keyboard-ports-both-taken": "'s 0x64-0x64 is shadowed by kcs0",
              # a board device named as every report names it, not by its QOM path
              "serial-on-keyboard": "board:keyboard-controller's 0x60-0x60 is shadowed by com9"}


# Configs where the device that answers holds the claim and a shadowed one is refused or
# unclaimed, so every claim is decoded as claimed (the job's "Claims against the hardware").
CLAIMS_DECODED = {"serial-same-base", "serial-overlap-first-port", "serial-overlap-last-port", "gus-cs4231a-dma3",
                  "isa-fdc-over-board-fdc", "two-pci-vgas", "isa-cirrus-over-pci-vga", "serial-in-vga-ports",
                  "ipmi-bt-twice", "isapc-second-fdc-on-irq6-dma2", "pirq-rerouted-onto-sb16", "bar-moved-onto-testdev-mmio",
                  "qxl-vga-and-vmware-svga", "isa-ide-over-pci-ide-q35", "two-vgas-behind-two-bridges",
                  # qa5
                  "second-display-behind-bridge-beside-svga", "serial-in-ati-vga-crtc",
                  "hyperv-testdev-under-serial-q35", "ivshmem-bar-onto-nic", "ne2000-over-svga-io-bar",
                  "ne2000-in-virtio-vga-ports", "piix4-ide-beside-isa-ide-q35", "q35-second-display-behind-root-port",
                  # livefuzz
                  "debugcon-between-vga-blocks-behind-bridge"}


def test_every_conflict_config_is_covered() -> None:
    assert {p.stem for p in CONFLICTS} == set(EXPECTED) and set(UNCLAIMED) | CLAIMS_DECODED <= set(EXPECTED)


@pytest.mark.parametrize("name", ["default", "q35", "isapc"])
def test_shipped_machines_run_clean(name: str, tmp_path: Path) -> None:
    result = run_job(load_machine(CONFIGS / "machines" / f"{name}.yaml"), tmp_path / "out")
    assert result.clean, result.format_text()
    assert result.exit_code == 0 and result.checks and all(c.ok for c in result.checks)
    started = [d for r in result.drivers for d in r.devices if d["device"]]
    assert started and all(d["status"] == "STATUS_SUCCESS" for r in result.drivers for d in r.devices)
    for name in ("report.json", "report.txt", "report.html", "registry.reg", "registry.sqlite", "resourcemap.png",
                 "qemu/qemu.log", "qemu/argv.sh"):
        assert (tmp_path / "out" / name).is_file(), name
    assert (tmp_path / "out" / "resourcemap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Each driver's self-test interrupt really arrived: through the 8259s on pc, through
    # the I/O APIC and the local APIC on q35 (APIC vectors: IRQL = vector >> 4, 5-12).
    q35 = result.spec.machine == "q35"
    assert result.hal == ("apic" if q35 else "pic")
    irqs = [d["facts"]["interrupt"] for r in result.drivers for d in r.devices if "interrupt" in d.get("facts", {})]
    assert irqs and all(i.endswith(": taken") for i in irqs), irqs
    if q35:
        assert any(i.startswith("vector 0xc") and "IRQL 12" in i for i in irqs), irqs


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_a_failed_run_keeps_its_files_but_not_qemus_sockets(tmp_path: Path) -> None:
    """QEMU that exits early leaves agent.sock behind (q35's probe guest); copying it raised
    over the job's own error, so 'QEMU exited before its monitor ran' and QEMU's message
    came out as an unreadable socket list (measured: a q35 e1000 at 00:1f.0, before the
    config refused that address)."""
    import socket
    from harness.job import keep_run_files
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "qemu.log").write_text("qemu-system-x86_64: refused\n")
    (run_dir / ".lock").write_text("")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(run_dir / "agent.sock"))
        keep_run_files(run_dir, tmp_path / "out" / "qemu")
    finally:
        listener.close()
    assert sorted(p.name for p in (tmp_path / "out" / "qemu").iterdir()) == ["qemu.log"]


def test_all_files_decides_which_files_a_job_leaves(tmp_path: Path) -> None:
    """``all_files`` (a matrix cell's): asked with the result; no means report.json alone
    (the registry never left memory), yes means every file, the registry written out
    from memory; a job that raises (here: the question itself) keeps QEMU's logs and the
    registry whatever it would have answered."""
    spec = load_machine(CONFIGS / "conflicts" / "serial-same-base.yaml")
    asked = []
    trimmed = run_job(spec, tmp_path / "trimmed", picture=False, all_files=lambda r: asked.append(r) or False)
    assert asked == [trimmed] and trimmed.verdict == CONFLICT and trimmed.resource_map is None
    assert _files(tmp_path / "trimmed") == {".harness-run", "report.json"}
    doc = json.loads((tmp_path / "trimmed" / "report.json").read_text())
    assert doc["verdict"] == CONFLICT and doc["findings"] == trimmed.findings() and doc["timings"]["total"] > 0

    kept = run_job(spec, tmp_path / "kept", picture=False, all_files=lambda r: r.verdict == CONFLICT)
    files = _files(tmp_path / "kept")
    assert {"report.json", "report.txt", "report.html", "registry.reg", REGISTRY_FILE, "qemu/argv.sh"} <= files
    assert kept.resource_map and "ResourceMap" in (tmp_path / "kept" / "report.txt").read_text()
    assert kept.findings() == trimmed.findings()
    # Alone, report.json is compact (one line, for programs); with the other files indented.
    compact, indented = ((tmp_path / d / "report.json").read_text() for d in ("trimmed", "kept"))
    assert compact.count("\n") == 1 and indented.count("\n") > 20 and indented.startswith('{\n "')
    assert json.loads(compact).keys() == json.loads(indented).keys()
    with Registry(tmp_path / "kept" / REGISTRY_FILE, create=False) as saved:
        assert format_resource_map(saved) == kept.resource_map

    def broken(result: object) -> bool:
        raise RuntimeError("the question failed")
    with pytest.raises(RuntimeError, match="the question failed"):
        run_job(spec, tmp_path / "raised", picture=False, all_files=broken)
    files = _files(tmp_path / "raised")
    assert {REGISTRY_FILE, "qemu/argv.sh"} <= files and "report.json" not in files
    with Registry(tmp_path / "raised" / REGISTRY_FILE, create=False) as saved:
        assert format_resource_map(saved) == kept.resource_map


@pytest.mark.parametrize("path", CONFLICTS, ids=[p.stem for p in CONFLICTS])
def test_conflict_configs_report_their_conflict(path: Path, tmp_path: Path) -> None:
    spec = load_machine(path)
    result = run_job(spec, tmp_path / "out", picture=False, all_files=lambda r: False)  # report.json only
    expected = EXPECTED[path.stem]
    assert {c.device for c in result.unclaimed} == UNCLAIMED.get(path.stem, set()), result.format_text()
    # one collision per run a device loses to the same winners (the RTC's two regions at
    # 0x70 are one), never two that overlap or touch
    runs: dict[tuple[str, tuple[str, ...]], list[tuple[int, int]]] = {}
    for c in result.collisions:
        if c.kind == "shadowed":
            space, span = c.resource.split()
            runs.setdefault((space, c.devices), []).append(tuple(int(x, 16) for x in span.split("-")))
    for spans in runs.values():
        spans.sort()
        assert all(b[0] > a[1] + 1 for a, b in zip(spans, spans[1:])), result.format_text()
    if path.stem in COLLISION_SAYS:
        assert any(COLLISION_SAYS[path.stem] in f"{c.devices} {c.consequence}" for c in result.collisions), \
            result.format_text()
    if path.stem in CHECK_SAYS:
        assert any(CHECK_SAYS[path.stem] in f for c in result.checks for f in c.findings), result.format_text()
    # the harness's own devices (its firmware-log console, the agent's UART) are no party
    assert not [c for c in result.collisions if any(d.startswith("harness-") for d in c.devices)], \
        result.format_text()
    # a check names whom a claim is for as the rest of the report does: never a QOM path
    assert not [c for c in result.checks if any(e.startswith("/machine/") for e in c.expected)], result.format_text()
    if path.stem in CHECK_FOR:
        assert [c.expected for c in result.checks if not c.ok] == [CHECK_FOR[path.stem]], result.format_text()
    if path.stem in CLAIMS_DECODED:
        assert all(c.ok for c in result.checks), result.format_text()
    assert [e["code"] for e in result.driver_errors] == DRIVER_ERRORS.get(path.stem, []), result.format_text()
    if path.stem in CONFLICT_NAMES:
        first = result.conflicts[0]
        assert (first.get("device_id"), first.get("holder_id")) == CONFLICT_NAMES[path.stem], first
        assert f"[{first['device_id']}; held for {first['holder_id']}]" in result.format_text()
    # the one-card explanation is about a block claim over a chip's ports, never a line
    assert all(e["code"] == "IO_ERR_PORT_CONFLICT_DETECTED" for e in result.conflicts if "explanation" in e)
    if expected is None:
        assert spec.expect == "clean" and result.exit_code == 0, result.format_text()
        assert not result.error_log, result.format_text()
        return
    assert spec.expect in (CONFLICT, WARNING)
    code, holder, consequence = expected
    assert result.verdict == spec.expect and result.exit_code == EXIT_CODES[spec.expect], result.format_text()
    if code is None:
        assert not result.conflicts, result.format_text()       # every claim looked fine
    else:
        refused = [e for e in result.conflicts if e["code"] == code]
        assert refused and refused[0]["conflict"]["holder_driver"] == holder, result.format_text()
    if consequence is None:
        assert not result.collisions, result.format_text()     # only the arbiter sees it
    else:
        assert consequence in {c.kind for c in result.collisions}, result.format_text()
    # refused before the device was touched: the refused device has no started outcome
    # and the verifier saw no access to anything unclaimed
    assert not result.violations


def test_shared_interrupt_configs_show_what_the_line_does(tmp_path: Path) -> None:
    edge = run_job(load_machine(CONFIGS / "conflicts" / "shared-isa-irq-edge.yaml"), tmp_path / "e", picture=False)
    (line,) = edge.shared_lines
    assert line.irq == 4 and line.no_edge == ["com3 (\\Device\\Serial1)"] and not line.left_pending
    pci = run_job(load_machine(CONFIGS / "conflicts" / "pci-intx-shared.yaml"), tmp_path / "p", picture=False)
    (line,) = pci.shared_lines
    assert line.mode == "LevelSensitive" and len(line.taken) == 2 and not line.lost


def test_the_shared_interrupt_exercise_runs_through_the_ioapic_on_q35(tmp_path: Path) -> None:
    edge = run_job(load_machine(CONFIGS / "conflicts" / "shared-isa-irq-edge-q35.yaml"), tmp_path / "e",
                   picture=False)
    assert edge.hal == "apic"
    (line,) = edge.shared_lines
    assert (line.input_name, line.irq, line.mode) == ("GSI", 4, "Latched")
    assert line.vector >= 0x50 and line.no_edge == ["com3 (\\Device\\Serial1)"] and not line.left_pending
    assert "at the I/O APIC" in line.describe()
    pci = run_job(load_machine(CONFIGS / "conflicts" / "pci-intx-shared-q35.yaml"), tmp_path / "p", picture=False)
    (line,) = pci.shared_lines
    assert (line.input_name, line.irq, line.mode) == ("GSI", 23, "LevelSensitive")
    assert len(line.taken) == 2 and all(t.vector == line.vector for t in line.taken) and not line.lost
    assert json.loads((tmp_path / "p" / "report.json").read_text())["shared_interrupts"][0]["input"] == "GSI"
    # The same machine on the PIC HAL: the links are routed to one ISA IRQ by SeaBIOS.
    assert run_job(load_machine(CONFIGS / "conflicts" / "pci-intx-shared-q35.yaml"), tmp_path / "q",
                   picture=False, hal="pic").hal == "pic"
    # pc on the APIC HAL: the PIIX3 ORs both INTx onto IRQ 11, i.e. GSI 11; the agent's own
    # UART (IRQ 15, beside the idle secondary IDE channel) is no finding.
    pc = run_job(load_machine(CONFIGS / "conflicts" / "pci-intx-shared.yaml"), tmp_path / "pc",
                 picture=False, hal="apic")
    (line,) = pc.shared_lines
    assert pc.clean and (pc.hal, line.input_name, line.irq, len(line.taken)) == ("apic", "GSI", 11, 2)
    # The APIC HAL is an ACPI HAL (harness.nt.hal.hal_flavour_for): the report says so.
    assert pc.to_dict()["hal_flavour"] == "acpi" and "APIC HAL, acpi flavour)" in pc.format_text()


def test_the_reactos_switch_shows_what_a_driver_meets_there(tmp_path: Path) -> None:
    spec = load_machine(CONFIGS / "conflicts" / "serial-same-base.yaml")
    ros = run_job(spec, tmp_path / "ros", picture=False, reactos=True)
    # Every claim succeeds and nothing is filed or logged; the hardware still shadows one UART.
    assert all(d["status"] == "STATUS_SUCCESS" for r in ros.drivers for d in r.devices)
    assert not ros.conflicts and "Serial" not in ros.resource_map
    assert "shadowed" in {c.kind for c in ros.collisions}


def test_the_hal_choice_is_checked() -> None:
    from harness.job import hal_for
    q35 = load_machine(CONFIGS / "machines" / "q35.yaml")
    isapc = load_machine(CONFIGS / "machines" / "isapc.yaml")
    default = load_machine(CONFIGS / "machines" / "default.yaml")
    assert (hal_for(q35), hal_for(default), hal_for(isapc), hal_for(default, "apic")) == ("apic", "pic", "pic", "apic")
    with pytest.raises(HarnessError, match="no I/O APIC"):
        hal_for(isapc, "apic")
    with pytest.raises(HarnessError, match="unknown HAL .x2apic. \\(did you mean .apic. or .pic.\\?\\); HALs: auto, pic, apic"):
        hal_for(q35, "x2apic")


def test_the_dma_stall_config_shows_the_stalled_read(tmp_path: Path) -> None:
    result = run_job(load_machine(CONFIGS / "conflicts" / "dma-channel-stall.yaml"), tmp_path / "o", picture=False)
    (floppy,) = [d for r in result.drivers if r.name == "Floppy" for d in r.devices]
    assert "stalled: main status 0x10" in floppy["facts"]["dma_read"]
    assert [e["code"] for e in result.error_log] == ["IO_ERR_TIMEOUT"]


def test_the_serial_pair_shows_which_uart_answers(tmp_path: Path) -> None:
    """com2, mapped last, answers at 0x3f8: the Serial driver starts it first, so its claim
    is what the hardware decodes and com1's is refused (it used to be the other way round:
    com1's claim decoded by com2)."""
    result = run_job(load_machine(CONFIGS / "conflicts" / "serial-same-base.yaml"), tmp_path / "o", picture=False)
    assert all(c.ok for c in result.checks), result.format_text()
    (serial,) = [r for r in result.drivers if r.name == "Serial"]
    assert [(d["config"], bool(d["device"])) for d in serial.devices] == [("com2", True), ("com1", False)]
    assert any(c.kind == "shadowed" and "com1" in c.devices for c in result.collisions)


def test_a_moved_pci_bar_resolves_the_isa_overlap(tmp_path: Path) -> None:
    result = run_job(load_machine(CONFIGS / "conflicts" / "isa-under-pci-bar.yaml"), tmp_path / "o", picture=False)
    pci = next(d for r in result.drivers for d in r.devices if d["config"].startswith("PCI"))
    assert pci["device"] and pci["facts"]["moved_by"] == "HalAssignSlotResources"
    assert all(c.ok for c in result.checks)                     # after the move every claim decodes
    assert [c.phase for c in result.collisions] == ["post-firmware"]


def test_cli_run_exit_codes_and_json(tmp_path: Path, capsys) -> None:
    assert main(["run", str(CONFIGS / "machines" / "default.yaml"), "--json", "--no-picture",
                 "--out", str(tmp_path / "a")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] and report["machine_type"] == "pc-i440fx-7.2"
    # Devices that contest nothing are numbered as gathered: COM1 (0x3f8) is Serial0, as NT
    # numbers it, and the PCI NICs follow the bus scan.
    numbered = {r["name"]: [(d["config"], d["device"]) for d in r["devices"]] for r in report["drivers"]}
    assert numbered["Serial"] == [("com1", "\\Device\\Serial0"), ("com2", "\\Device\\Serial1")]
    assert [d for _, d in numbered["PciNet"]] == ["\\Device\\PciNet0", "\\Device\\PciNet1", "\\Device\\PciNet2"]
    assert [c for c, _ in numbered["PciNet"]] == ["PCI 00:03.0", "PCI 00:04.0", "PCI 01:01.0"]
    # each beside the name the user knows it by: the file's id, a board device's label
    known = {r["name"]: [d["id"] for d in r["devices"]] for r in report["drivers"]}
    assert known["PciNet"] == ["nic0", "nic1", "nic2"] and known["Serial"] == ["com1", "com2"]
    assert known["Floppy"] == ["board:floppy-controller"] and known["ACPI"] == ["board:acpi"], known
    assert main(["run", str(CONFIGS / "conflicts" / "serial-at-cf8.yaml"), "--no-picture",
                 "--out", str(tmp_path / "b")]) == 1
    assert "IO_ERR_PORT_CONFLICT_DETECTED" in capsys.readouterr().out


def test_cli_refuses_a_foreign_output_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    assert main(["run", str(CONFIGS / "machines" / "default.yaml"), "--out", str(tmp_path / "mine")]) == 2
    assert "not a harness output folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("text, message", [
    ("drivers: [serail]", "t.yaml:4: drivers: unknown driver 'serail' (did you mean 'serial'?)"),
    ("drivers: [{name: serial, devices: [nic0]}]", "devices: 'nic0' is not a device of this machine that serial drives"),
    ("drivers: [serial, serial]", "driver 'serial' is listed twice"),
    ("drivers: [{name: serial, override: true}]", "override"),
    ("expect: maybe", "expect"),
])
def test_bad_driver_sections_are_refused_with_their_line(text: str, message: str) -> None:
    base = "machine: pc\ndevices:\n  - {model: isa-serial, id: com1}\n"
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        parse_machine_text(base + text, "t.yaml")


def test_default_driver_list_follows_the_devices_last_first() -> None:
    spec = load_machine(CONFIGS / "machines" / "default.yaml")
    assert [(d.name, d.devices) for d in spec.drivers] == [
        ("pcinet", ("nic0", "nic1", "nic2")), ("sb16", ("sb0",)), ("ne2000", ("ne0",)),
        ("floppy", ("fd0",)), ("parallel", ("lpt1",)), ("serial", ("com1", "com2"))]


def test_qemus_parallel_port_at_0x3bc_keeps_its_data_latch_at_0x3c0() -> None:
    """The QEMU fact behind lpt-at-3bc (and the matrix's 0x3bc cells): isa-parallel picks
    its register by ``port & 7`` (hw/char/parallel.c), so at base 0x3bc the data latch
    answers at 0x3c0 and 0x3bc itself floats, measured on this QEMU."""
    from harness.qemu.machine import Machine
    with Machine(load_machine(CONFIGS / "conflicts" / "lpt-at-3bc.yaml")) as m:
        m.hmp("o /b 0x3bc 0xaa")
        m.hmp("o /b 0x3c0 0x5a")
        assert m.hmp("i /b 0x3bc").split("=")[-1].strip() == "0xff"
        assert m.hmp("i /b 0x3c0").split("=")[-1].strip() == "0x5a"


def test_qemus_floppy_controller_off_an_aligned_base_keeps_its_msr_at_port_and_7() -> None:
    """The fact behind isa-fdc's register_block (as isa-parallel's above): the board's FDC
    moved to 0x371 answers its main status register (idle: 0x80) at 0x374, whose low bits
    are 4, not at base+4 = 0x375 (the data FIFO there), measured on this QEMU."""
    from harness.config import parse_machine_text
    from harness.qemu.machine import Machine
    from harness.devices import load_catalog
    assert load_catalog()["isa-fdc"].register_block == load_catalog()["isa-parallel"].register_block == 8
    with Machine(parse_machine_text("machine: pc\nbuiltin:\n  fdc: {iobase: 0x371}\n")) as m:
        m.run_firmware()
        msr = int(m.hmp("i /b 0x374").split("=")[-1], 16)
        fifo = int(m.hmp("i /b 0x375").split("=")[-1], 16)
    assert msr & 0xC0 == 0x80 and fifo & 0xC0 != 0x80, (hex(msr), hex(fifo))


def test_the_8254_drives_irq_0_without_an_irq_property() -> None:
    """The fact behind serial-irq0-timer: QEMU's PIT has no irq property (wired by a GPIO;
    on pc and q35 through the HPET's legacy route), yet SeaBIOS's timer interrupts are
    raises of IRQ 0 (`info irq`, TCG) on a machine where nothing else is on line 0.  (On
    isapc SeaBIOS finishes before the first tick.)"""
    from harness.qemu.machine import Machine
    for machine in ("pc", "q35"):
        with Machine(parse_machine_text(f"name: bare-{machine}\nmachine: {machine}\n", "<test>")) as m:
            m.run_firmware()
            counts = dict(line.split(":") for line in m.hmp("info irq").splitlines()[1:] if ":" in line)
            assert int(counts.get(" 0", 0)) > 0, (machine, counts)


def test_seabios_treats_irq_13_as_the_fpu_error_line() -> None:
    """The fact behind serial-irq13-fpu: QEMU wires the x87 FERR output to IRQ 13 under
    TCG (x86_register_ferr_irq(gsi[13]), no QOM property), and the firmware treats the
    line as live: SeaBIOS gives IRQ 13 a handler of its own and unmasks it, while lines
    nothing drives (10, 11) stay masked on one shared default handler."""
    from harness.qemu.machine import Machine
    with Machine(parse_machine_text("name: bare-pc\nmachine: pc\n", "<test>")) as m:
        m.run_firmware()
        pics = {line.split(":")[0]: dict(kv.split("=") for kv in line.split(":", 1)[1].split())
                for line in m.hmp("info pic").splitlines() if line.startswith("pic")}
        imr, base = int(pics["pic1"]["imr"], 16), int(pics["pic1"]["irq_base"], 16)

        def handler(irq: int) -> str:
            return m.hmp(f"xp /1wx {(base + irq - 8) * 4}").split(":")[1].strip()
        assert not imr >> (13 - 8) & 1 and imr >> (10 - 8) & 1 and imr >> (11 - 8) & 1, pics
        assert handler(13) != handler(10) == handler(11)


def test_pcs_sci_raises_irq_9_whatever_the_pm_line_register_says() -> None:
    """The fact behind sci-line-register-rewritten: QEMU wires the PIIX4 PM's SCI to ISA
    IRQ 9 (pc_piix.c: piix4_pm_init(..., x86ms->gsi[9], ...)); its interrupt line register
    0x3C is the firmware's note.  Rewritten to 5, a power-button SCI (SCI_EN, PWRBTN_EN,
    system_powerdown) still sets IRR bit 9 at the slave 8259 and nothing at IRQ 5."""
    from harness.qemu.bus import machine_ports
    from harness.qemu.machine import Machine
    with Machine(parse_machine_text("name: bare-pc\nmachine: pc\n", "<test>")) as m:
        m.run_firmware()
        ports = machine_ports(m)
        address = 0x80000000 | 1 << 11 | 3 << 8   # 00:01.3, the PIIX4 PM
        pmbase = ports.transfer([("out", 0xCF8, 4, address | 0x40), ("in", 0xCFC, 4, None)])[0] & 0xFFC0
        ports.transfer([("out", 0xCF8, 4, address | 0x3C), ("out", 0xCFC, 1, 5)])
        assert ports.transfer([("out", 0xCF8, 4, address | 0x3C), ("in", 0xCFC, 1, None)]) == [5]
        ports.transfer([("out", pmbase + 4, 2, 1), ("out", pmbase + 2, 2, 0x100)])   # PM1_CNT.SCI_EN, PM1_EN.PWRBTN_EN
        m.qmp("system_powerdown")
        irr = {line.split(":")[0]: int(line.split("irr=")[1].split()[0], 16)
               for line in m.hmp("info pic").splitlines() if line.startswith("pic")}
        assert irr["pic1"] >> (9 - 8) & 1 and not irr["pic0"] >> 5 & 1, irr


def test_qemu_decodes_16_address_bits_so_0x6f8_is_no_alias_of_0x2f8() -> None:
    """The fact behind serial-alias-6f8: a 10-bit ISA decoder answers at base + 0x400
    too; QEMU's dispatch uses all 16 bits, so the UARTs at 0x2f8 and 0x6f8 keep scratch
    registers of their own and a port with nothing behind it (0xaff) floats."""
    from harness.qemu.machine import Machine
    with Machine(load_machine(CONFIGS / "conflicts" / "serial-alias-6f8.yaml")) as m:
        m.hmp("o /b 0x2ff 0x11")
        m.hmp("o /b 0x6ff 0x22")
        m.hmp("o /b 0xaff 0x33")
        assert [m.hmp(f"i /b {port:#x}").split("=")[-1].strip() for port in (0x2ff, 0x6ff, 0xaff)] == \
            ["0x11", "0x22", "0xff"]


def test_a_piece_of_an_ownerless_region_is_its_devices(tmp_path: Path) -> None:
    """The flat view keeps 0xe4-0xe6 of the BT's ownerless 'ipmi-bt' (the KCS, mapped later,
    takes 0xe7): that piece is bt0 decoding, so the claim's one fault is the port it lost."""
    result = run_job(load_machine(CONFIGS / "conflicts" / "ipmi-kcs-under-bt-partial.yaml"), tmp_path / "o",
                     picture=False, all_files=lambda r: False)
    check, = [c for c in result.checks if c.device == r"\Device\Legacy_bt0" and c.resource.startswith("port")]
    assert check.findings == ["also decoded by kcs0 0xe7-0xe8",
                              "bt0's 0xe7-0xe7 is shadowed by kcs0 (being mapped later (equal priority 0: "
                              "the last mapped wins, address by address))"], result.format_text()
