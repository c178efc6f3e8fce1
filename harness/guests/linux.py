"""The Linux guest: Debian's kernel and busybox, an initramfs of ours, a pexpect console.

Image (cached under ``.cache/guests/linux-<hash>``, rebuilt when a pin, ``init.sh`` or
this builder changes): the kernel's XZ payload is unpacked to an ELF ``vmlinux`` that
QEMU boots through its PVH note (no decompressor running under TCG: 2.5 s saved), and a
newc cpio is written here (busybox, ``/init``, ``/dev/console``, the modules), byte for
byte the same on every build.

Run: the machine spec plus a harness pci-serial console on a unix socket in the run
folder (ISA UARTs are devices under test), QEMU logging the whole console to
``console.log``; pexpect (fdpexpect over the socket) waits for the markers with a
timeout each, the sections are parsed into a :class:`LinuxReport`, and once the guest
powers off (QEMU pauses it) the layout is snapshotted as phase ``post-os``.
"""

from __future__ import annotations

import dataclasses
import io
import lzma
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomicio import write_bytes
from ..config import BOARD_PCI_FUNCTIONS, MachineSpec, place_pci_functions
from ..errors import HarnessError
from ..qemu.machine import Machine
from .cache import GUEST_IMAGES, cache_root, content_hash, locked, progress
from .debian import DebianPackage, alternatives, extract, fetch, load_pins

PHASE = "post-os"
INIT = GUEST_IMAGES / "linux" / "init.sh"
BUILDER_VERSION = "2"  # bump when the image layout written here changes
BOOT_TIMEOUT = 120.0   # spawn → first marker (2.5 s here; CI machines can be far slower)
STEP_TIMEOUT = 60.0    # between later markers
# No console=: the ttyS number of the harness console depends on the ISA UARTs under test;
# /init finds its tty from the PCI address (gl_con) instead.
KERNEL_ARGS = "8250.nr_uarts=16 quiet loglevel=1 panic=-1"
MARK_UP, MARK_DONE = "@@GL-UP@@", "@@GL-DONE"
#: Seconds to read what a guest that stopped had already written, looking for a marker.
STOPPED_DRAIN = 3.0


class LinuxGuestError(HarnessError):
    """The Linux guest could not be built, did not boot, or stopped before its end."""


class LinuxUnsupported(LinuxGuestError):
    """This machine cannot host the Linux guest (the reason says why)."""


# ---------------------------------------------------------------------- image
@dataclass(frozen=True)
class LinuxImage:
    kernel: Path
    initrd: Path
    kernel_package: DebianPackage
    modules: tuple[str, ...]


def build_image() -> LinuxImage:
    """Fetch the pinned packages and build vmlinux + initramfs, unless cached."""
    pins = load_pins()
    modules = tuple(pins.get("modules", ()))
    kernel_pkg, kernel_deb = fetch(alternatives("kernel"))
    busybox_pkg, busybox_deb = fetch(alternatives("busybox"))
    key = content_hash([INIT], kernel_pkg.sha256, busybox_pkg.sha256, ",".join(modules), BUILDER_VERSION)
    folder = cache_root() / f"linux-{key}"
    image = LinuxImage(folder / "vmlinux", folder / "initrd.cpio", kernel_pkg, modules)
    if image.kernel.is_file() and image.initrd.is_file():
        return image
    with locked("linux-image"):
        if image.kernel.is_file() and image.initrd.is_file():
            return image
        folder.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        progress(f"unpacking {kernel_deb.name} (kernel and {len(modules)} modules) ...")
        names = {f"{m}.ko" for m in modules}
        files = extract(kernel_deb, lambda p: (p.startswith("boot/vmlinuz-")
                                              or (p.startswith("lib/modules/") and p.rsplit("/", 1)[-1] in names)),
                        stop_after=1 + len(names))
        vmlinuz = next((data for path, data in files.items() if path.startswith("boot/vmlinuz-")), None)
        if vmlinuz is None:
            raise LinuxGuestError(f"{kernel_deb}: no boot/vmlinuz-*")
        found_modules = {path.rsplit("/", 1)[-1][:-3]: data for path, data in files.items() if path.endswith(".ko")}
        missing = [m for m in modules if m not in found_modules]
        if missing:
            raise LinuxGuestError(f"{kernel_deb}: modules not found: {', '.join(missing)}")
        progress(f"  unpacked in {time.monotonic() - start:.2f} s; extracting vmlinux ...")
        write_bytes(image.kernel, vmlinux_from_bzimage(vmlinuz))
        busybox = extract(busybox_deb, lambda p: p == "bin/busybox")
        if "bin/busybox" not in busybox:
            raise LinuxGuestError(f"{busybox_deb}: no bin/busybox")
        entries = [("bin/busybox", busybox["bin/busybox"], 0o100755), ("init", INIT.read_bytes(), 0o100755)]
        entries += [(f"lib/modules/{m}.ko", found_modules[m], 0o100644) for m in modules]
        write_bytes(image.initrd, newc_archive(entries))
        progress(f"Linux guest image ready in {time.monotonic() - start:.2f} s: {folder}")
    return image


def vmlinux_from_bzimage(bzimage: bytes) -> bytes:
    """The ELF kernel inside an XZ-compressed bzImage (Debian's kernels are KERNEL_XZ)."""
    start = bzimage.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise LinuxGuestError("no XZ stream in the kernel image")
    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
    if out[:4] != b"\x7fELF":
        raise LinuxGuestError("the kernel's XZ payload is not an ELF file")
    return out


def newc_archive(files: list[tuple[str, bytes, int]]) -> bytes:
    """A newc cpio with the folders the files need, /dev/console, and mtime 0 everywhere."""
    out = io.BytesIO()
    inode = 1

    def entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nonlocal inode
        fields = (inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        out.write(b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0")
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))
        inode += 1

    folders = sorted({"/".join(p.split("/")[:i]) for p, _, _ in files for i in range(1, p.count("/") + 1)}
                     | {"dev", "proc", "sys", "sbin", "usr", "usr/bin", "usr/sbin"})
    for folder in folders:
        entry(folder, 0o040755)
    entry("dev/console", 0o020600, rdev=(5, 1))
    for name, data, mode in files:
        entry(name, mode, data)
    entry("TRAILER!!!", 0)
    return out.getvalue()


# ---------------------------------------------------------------------- report
@dataclass(frozen=True)
class KernelResource:
    start: int
    end: int
    name: str
    depth: int


@dataclass(frozen=True)
class LinuxReport:
    machine: str
    kernel: str
    phase: str
    ioports: tuple[KernelResource, ...]
    iomem: tuple[KernelResource, ...]
    interrupts: dict[int, tuple[str, ...]]  # Linux IRQ → handler names (empty: released)
    dma: dict[int, str]
    pci_resources: dict[str, tuple[tuple[int, int, int], ...]]  # bdf → (start, end, flags) per index
    pci_irqs: dict[str, int]
    pnp: dict[str, tuple[str, str]]  # pnp device → (id, resources text)
    dmesg: tuple[str, ...]
    seconds: float
    layout: Any = None  # the post-os snapshot of the same run
    messages: tuple[str, ...] = field(default=())  # conflict and probe-failure lines of dmesg

    def port_names(self, lo: int, hi: int) -> list[str]:
        """Names of /proc/ioports entries overlapping [lo, hi] (not the PCI bus root)."""
        return [r.name for r in self.ioports if r.start <= hi and r.end >= lo and r.name != "PCI Bus 0000:00"]

    def irq_names(self, irq: int) -> tuple[str, ...] | None:
        return self.interrupts.get(irq)

    def conflict_for(self, names: tuple[str, ...], irq: int | None) -> str | None:
        """A kernel message about IRQ ``irq`` or naming one of ``names`` (genirq refusals,
        failed probes), if there is one."""
        for line in self.messages:
            m = re.search(r"Flags mismatch irq (\d+)", line)
            if m and irq is not None and int(m.group(1)) == irq:
                return line
            if names and "failed with error" in line and any(n in line for n in names):
                return line
        return None

    def pnp_describing(self, port: int) -> str | None:
        for dev, (pnp_id, resources) in self.pnp.items():
            for lo, hi in re.findall(r"io 0x([0-9a-f]+)-0x([0-9a-f]+)", resources):
                if int(lo, 16) <= port <= int(hi, 16):
                    return f"{dev} ({pnp_id})"
        return None

    def pci_resource(self, bdf: str, index: int) -> tuple[int, int] | None:
        resources = self.pci_resources.get(bdf, ())
        if index >= len(resources) or resources[index][:2] == (0, 0):
            return None
        return resources[index][0], resources[index][1]

    def pci_irq(self, bdf: str) -> int | None:
        return self.pci_irqs.get(bdf)


_RESOURCE_RE = re.compile(r"^(\s*)([0-9a-f]+)-([0-9a-f]+) : (.*)$")
_IRQ_RE = re.compile(r"^\s*(\d+):\s+\d+\s+\S+\s+\S+\s*(.*)$")
_CONFLICT_RE = re.compile(r"genirq: Flags mismatch|probe of \S+ failed with error|unable to get IRQ|"
                          r"resource collision|can't claim")


def parse_console(text: str, *, machine: str = "", seconds: float = 0.0) -> LinuxReport:
    """Parse the guest's console (sections between @@GL-BEGIN/@@GL-END markers)."""
    text = text.replace("\r", "")
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.split("\n"):
        if line.startswith("@@GL-BEGIN "):
            current = line[len("@@GL-BEGIN "):].strip()
            sections[current] = []
        elif line.startswith("@@GL-END "):
            current = None
        elif current is not None:
            sections[current].append(line)
    if MARK_DONE not in text:
        raise LinuxGuestError("the console shows no @@GL-DONE: the report is incomplete")

    def resources(name: str) -> tuple[KernelResource, ...]:
        out = []
        for line in sections.get(name, []):
            m = _RESOURCE_RE.match(line)
            if m:
                out.append(KernelResource(int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip(),
                                          len(m.group(1)) // 2))
        return tuple(out)

    interrupts = {}
    for line in sections.get("/proc/interrupts", []):
        m = _IRQ_RE.match(line)
        if m:
            interrupts[int(m.group(1))] = tuple(n.strip() for n in m.group(2).split(",") if n.strip())
    dma = {}
    for line in sections.get("/proc/dma", []):
        channel, _, owner = line.partition(":")
        if channel.strip().isdigit():
            dma[int(channel)] = owner.strip()
    pci_resources, pci_irqs, pnp = {}, {}, {}
    for name, lines in sections.items():
        m = re.match(r"/sys/bus/pci/devices/[0-9a-f]{4}:([0-9a-f]{2}:[0-9a-f]{2}\.\d)/(resource|irq)$", name)
        if m and m.group(2) == "resource":
            pci_resources[m.group(1)] = tuple(tuple(int(v, 16) for v in line.split()) for line in lines
                                              if len(line.split()) == 3)
        elif m and lines and lines[0].strip().isdigit():
            pci_irqs[m.group(1)] = int(lines[0])
        m = re.match(r"/sys/bus/pnp/devices/([^/]+)/(id|resources)$", name)
        if m:
            pnp_id, res = pnp.get(m.group(1), ("", ""))
            pnp[m.group(1)] = (" ".join(lines).strip(), res) if m.group(2) == "id" else (pnp_id, "\n".join(lines))
    dmesg = tuple(sections.get("dmesg", []))
    version = " ".join(sections.get("/proc/version", [])).strip()
    kernel = version.split()[2] if len(version.split()) > 2 else "unknown"
    return LinuxReport(machine, kernel, PHASE, resources("/proc/ioports"), resources("/proc/iomem"),
                       interrupts, dma, pci_resources, pci_irqs, pnp, dmesg, seconds,
                       messages=tuple(line for line in dmesg if _CONFLICT_RE.search(line)))


# ---------------------------------------------------------------------- running
def console_slot(spec: MachineSpec) -> int:
    """The highest free slot on bus 0 for the harness console: its 8-byte I/O BAR sorts
    after every other BAR, so the firmware places the other devices as without it."""
    if spec.machine == "isapc":
        raise LinuxUnsupported("isapc has no PCI bus for the harness console, and its 486 CPU cannot "
                               "run the amd64 kernel")
    placed = place_pci_functions(spec.machine, spec.devices)
    used = {placed[dev.id][0] for dev in spec.devices if dev.id in placed and dev.bus is None}
    used |= {slot for slot, _ in BOARD_PCI_FUNCTIONS[spec.machine]}
    for slot in range(0x1F, 0, -1):
        if slot not in used:
            return slot
    raise LinuxUnsupported("no free PCI slot on bus 0 for the harness console")


def run_linux(spec: MachineSpec, *, keep: bool = False, boot_timeout: float = BOOT_TIMEOUT,
              step_timeout: float = STEP_TIMEOUT) -> LinuxReport:
    """Boot the Linux guest on ``spec`` and return what the kernel reported."""
    import pexpect
    from pexpect import fdpexpect

    from ..qemu.layout import snapshot
    from ..qemu.machine import GuestBoot

    slot = console_slot(spec)
    image = build_image()
    append = f"{KERNEL_ARGS} gl_mods={','.join(image.modules)} gl_con=0000:00:{slot:02x}.0"
    boot = GuestBoot(kernel=image.kernel, initrd=image.initrd, append=append, console_slot=slot)
    with Machine(spec, boot=boot, keep=keep) as machine:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10.0)
        sock.connect(str(machine.console_socket))
        # fdspawn owns the descriptor from here on (and closes it).
        console = fdpexpect.fdspawn(sock.detach(), timeout=1.0, maxread=65536, encoding="utf-8",
                                    codec_errors="replace")
        chunks: list[str] = []
        mark = len(machine.events())
        start = time.monotonic()
        machine.resume()

        def expect(marker: str, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    console.expect_exact(marker, timeout=0.5)
                    chunks.append(console.before + marker)
                    return
                except pexpect.TIMEOUT:
                    pass
                except pexpect.EOF:
                    raise LinuxGuestError(f"QEMU closed the console before {marker}" + machine.log_tails(40))
                if any(e["event"] == "STOP" for e in machine.events()[mark:]):
                    # What it wrote before stopping is all on its way: read the rest before
                    # calling the marker missing (a loaded host reads the console late).
                    try:
                        console.expect_exact(marker, timeout=STOPPED_DRAIN)
                        chunks.append(console.before + marker)
                        return
                    except (pexpect.TIMEOUT, pexpect.EOF):
                        pass
                    raise LinuxGuestError(f"the guest stopped the machine (panic or reset) before {marker}"
                                          + machine.log_tails(40))
                if time.monotonic() > deadline:
                    raise LinuxGuestError(f"no {marker} on the console within {timeout:g} s"
                                          + machine.log_tails(40))

        try:
            expect(MARK_UP, boot_timeout)
            expect(MARK_DONE, step_timeout)
            seconds = time.monotonic() - start
            machine.wait_event("STOP", after=mark, timeout=step_timeout)  # poweroff -f: paused
            layout = snapshot(machine, phase=PHASE)
        finally:
            console.close()
        report = parse_console("".join(chunks), machine=spec.name, seconds=seconds)
    return dataclasses.replace(report, layout=layout)

