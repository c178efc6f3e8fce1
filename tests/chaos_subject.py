"""The test the chaos test's pytest workers run (not collected by ``make test``: its name
does not start with ``test_``; tests/test_chaos.py passes it to each worker).

It boots a machine and reboots it through the firmware over and over, so whenever the
chaos test strikes, QEMU is mid-boot.  Events go to the chaos test on the fd named by
CHAOS_REPORT_FD: ``qemu-up`` once QEMU runs, ``outcome`` with the error that ended the
test after the machine was closed.
"""

from __future__ import annotations

import json
import os
import time

from harness.qemu.machine import Machine
from helpers import machine_spec

#: The worker gives up by itself after this long if nothing strikes (a bound, not a wait).
LIMIT_S = 60.0


def report(event: str, **data: object) -> None:
    line = json.dumps({"id": int(os.environ["CHAOS_ID"]), "event": event, **data}) + "\n"
    os.write(int(os.environ["CHAOS_REPORT_FD"]), line.encode())


def test_boot_until_struck() -> None:
    start = time.monotonic()
    try:
        spec = machine_spec("name: chaos\nmachine: pc\ndevices:\n  - {model: isa-serial, id: com1}\n")
        with Machine(spec, qmp_timeout=float(os.environ.get("CHAOS_QMP_TIMEOUT", "10"))) as m:
            report("qemu-up", qemu=m.pid, run_dir=str(m.run_dir))
            while time.monotonic() - start < LIMIT_S:
                m.run_firmware(timeout=float(os.environ.get("CHAOS_FIRMWARE_TIMEOUT", "30")))
    except BaseException as exc:  # pytest-timeout's signal method raises a BaseException
        report("outcome", error=type(exc).__name__, message=str(exc)[:400],
               seconds=round(time.monotonic() - start, 3))
        raise
    raise AssertionError(f"nothing struck within {LIMIT_S} s")


def test_nothing() -> None:
    """The last session of a chaos run: its start-up sweeps what dead workers left."""
