"""The Linux guest on real QEMU (TCG): two boots in all, shared by the assertions.

The first run fetches the pinned Debian packages (tens of MB) into .cache/guests/debian
and builds the image; later runs reuse them.
"""

from __future__ import annotations

import pytest

from harness.config import load_machine
from harness.guests.linux import (LinuxGuestError, LinuxUnsupported, build_image, console_slot, newc_archive,
                                  parse_console, run_linux)
from harness.qemu.machine import CONSOLE_ID
from harness.verify import NO_DRIVER, OS_CONFLICT, hardware_view, reconcile
from helpers import CONFIGS, machine_spec

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


@pytest.fixture(scope="module")
def default_run():
    spec = load_machine(CONFIGS / "machines" / "default.yaml")
    return spec, hardware_view(spec), run_linux(spec)


def test_image_is_cached_and_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    first = build_image()
    capsys.readouterr()
    again = build_image()
    assert again == first
    assert "[guests]" not in capsys.readouterr().err, "a current cache does no download or build"
    assert first.kernel.read_bytes()[:4] == b"\x7fELF"
    files = [("init", b"#!/bin/sh\n", 0o100755), ("lib/modules/a.ko", b"x" * 5, 0o100644)]
    assert newc_archive(files) == newc_archive(files)
    assert len(newc_archive(files)) % 4 == 0


def test_linux_sees_the_isa_ports_and_the_firmwares_pci_layout(default_run) -> None:
    spec, hardware, linux = default_run
    assert linux.kernel == build_image().kernel_package.package.removeprefix("linux-image-")
    for dev in spec.devices:
        if dev.model.name == "isa-serial":
            (lo, hi), = [(a, b) for kind, a, b in dev.decoded_resources() if kind == "port"]
            assert "serial" in linux.port_names(lo, hi), dev.id
    for fn in hardware.layout.pci:
        if not fn.qdev_id:
            continue
        for bar in fn.bars:
            if bar.base is not None and bar.kind != "rom":
                assert linux.pci_resource(fn.bdf, bar.index) == (bar.base, bar.end), (fn.qdev_id, bar)
        route = hardware.routes.get(fn.bdf)
        if route is not None:
            assert linux.pci_irq(fn.bdf) == route.irq
    # The post-OS snapshot of the same run holds the harness's console at its slot.
    assert linux.layout.phase == "post-os"
    console = linux.layout.pci_by_id(CONSOLE_ID)
    assert console.slot == console_slot(spec)
    assert any(r.name == "serial" and r.start == console.bars[0].base for r in linux.ioports)


def test_reconciliation_with_linux_explains_what_the_kernel_cannot_see(default_run) -> None:
    spec, hardware, linux = default_run
    rec = reconcile(spec, hardware, linux=linux)
    rec.assert_explained()
    unseen = {f.device for f in rec.findings if f.view == "linux"}
    assert unseen == {"ne0", "sb0"}, "amd64 Linux has no driver or ACPI entry for ISA NE2000/SB16"
    assert all(f.explanation == NO_DRIVER for f in rec.findings)
    assert rec.views["linux"] == "post-os"


def test_a_shared_edge_irq_is_refused_by_the_kernel() -> None:
    spec = machine_spec("""
machine: pc
devices:
  - {model: isa-parallel, id: lpt1, iobase: 0x378, irq: 7}
  - {model: isa-serial, id: com2, iobase: 0x2f8, irq: 7}
""")
    linux = run_linux(spec)
    assert any("Flags mismatch irq 7" in m for m in linux.messages), linux.messages
    rec = reconcile(spec, hardware_view(spec), linux=linux)
    conflicts = [f for f in rec.findings if f.explanation == OS_CONFLICT]
    assert conflicts and all("irq 7" in f.reason for f in conflicts)
    assert {f.device for f in conflicts} <= {"lpt1", "com2"}
    rec.assert_explained()


def test_isapc_cannot_host_the_linux_guest_and_says_why() -> None:
    with pytest.raises(LinuxUnsupported, match="isapc has no PCI bus"):
        console_slot(load_machine(CONFIGS / "machines" / "isapc.yaml"))


def test_an_incomplete_console_transcript_is_refused() -> None:
    with pytest.raises(LinuxGuestError, match="no @@GL-DONE"):
        parse_console("@@GL-UP@@ 1.0\n@@GL-BEGIN /proc/ioports\n03f8-03ff : serial\n")
    report = parse_console("@@GL-BEGIN /proc/ioports\r\n  03f8-03ff : serial\r\n@@GL-END /proc/ioports\r\n"
                           "@@GL-BEGIN /proc/dma\n 2: floppy\n@@GL-END /proc/dma\n@@GL-DONE\n")
    assert report.port_names(0x3F8, 0x3F8) == ["serial"] and report.dma == {2: "floppy"}
