"""Accelerator policy: ``tcg`` (default), ``kvm`` (explicit), ``auto``.

``auto`` picks KVM only when /dev/kvm is usable *and* KVM is not slower here.  On these
machines KVM is nested and runs SeaBIOS 30-50x slower than TCG (qemu-facts.md §5), so on
a host that is itself a guest (the ``hypervisor`` CPU flag) ``auto`` measures the
firmware under both accelerators once and caches the verdict per host and QEMU build.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from ..atomicio import write_text
from ..packagedata import user_cache_dir
from ..errors import HarnessError, unknown_name
from ..names import ACCEL_POLICIES

KVM_DEVICE = "/dev/kvm"


class AccelUnavailable(HarnessError):
    pass


def kvm_usable() -> bool:
    return os.access(KVM_DEVICE, os.R_OK | os.W_OK)


def host_is_guest() -> bool:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return " hypervisor" in flags


def resolve_accel(policy: str) -> str:
    """The accelerator to run with under ``policy``."""
    if policy == "tcg":
        return "tcg"
    if policy == "kvm":
        if not kvm_usable():
            raise AccelUnavailable(f"accel 'kvm' requested but {KVM_DEVICE} is missing or not "
                                   "read/write for this user")
        return "kvm"
    if policy == "auto":
        if not kvm_usable():
            return "tcg"
        if not host_is_guest():
            return "kvm"
        return _calibrated_choice()
    raise HarnessError(unknown_name("accelerator policy", policy, ACCEL_POLICIES, label="policies"))


def _cache_file() -> Path:
    return user_cache_dir() / "accel.json"


def _host_key() -> str:
    from .binary import QEMU_BINARY
    try:
        version = subprocess.run([QEMU_BINARY, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        version = "unknown"
    host = os.uname()  # what platform.node() and platform.release() read, without importing platform
    return f"{host.nodename}|{host.release}|{version}"


def _calibrated_choice() -> str:
    path = _cache_file()
    key = _host_key()
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["choice"]
    except (OSError, ValueError, KeyError):
        pass
    timings = {accel: _firmware_seconds(accel) for accel in ("tcg", "kvm")}
    choice = "kvm" if timings["kvm"] <= timings["tcg"] else "tcg"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps({"key": key, "choice": choice, "seconds": timings,
                                 "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    return choice


def _firmware_seconds(accel: str) -> float:
    """SeaBIOS run time on a bare pc under ``accel`` (inf if it fails)."""
    from ..config import parse_machine_text
    from .machine import Machine
    spec = parse_machine_text("machine: pc\nfirmware_log: false\n", "<accel-calibration>")
    try:
        with Machine(spec, accel=accel) as machine:
            return machine.run_firmware()
    except HarnessError:
        return float("inf")
