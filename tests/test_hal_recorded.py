"""The HAL replayed from a recorded transcript: no QEMU, milliseconds.

``tests/data/hal-pc-default.json`` holds every bus access :func:`hal_session` made on the
default pc machine (configs/machines/default.yaml) after SeaBIOS.  Replaying it checks
the HAL's logic against facts (qemu-facts.md, the device catalog) without booting;
``tests/test_hal.py::test_recorded_transcript_matches_the_live_machine`` checks that the
transcript still is what the live machine answers.  Regenerate it with::

    PYTHONPATH=.:tests .venv/bin/python tests/test_hal_recorded.py --record
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.devices import load_catalog
from harness.nt.busaccess import BusAccess, DecodeMap
from harness.nt.hal import Hal, slot_number
from harness.nt.recorded import NotRecordedError, RecordingBus, ReplayBus, TranscriptError
from harness.nt.resources import CM_RESOURCE_LIST, Cmos, Memory, PCIBus, PCIConfiguration, Port

TRANSCRIPT = Path(__file__).parent / "data" / "hal-pc-default.json"
#: SeaBIOS's PIRQ routes on pc (qemu-facts.md §4): PIRQA/B -> 10, C/D -> 11.
SEABIOS_PIRQ = (10, 10, 11, 11)


def hal_session(hal: Hal) -> dict[str, Any]:
    """A driver-like walk over the default machine through the HAL; JSON-able results."""
    out: dict[str, Any] = {"no_buses": hal.no_buses, "functions": [list(k) for k in hal.pci_functions()]}
    config = {}
    for bus, dev, fn in hal.pci_functions():
        config[f"{bus:02x}:{dev:02x}.{fn}"] = hal.get_bus_data(PCIConfiguration, bus, slot_number(dev, fn), 0, 256).hex()
    out["config"] = config
    empty = next(d for d in range(32) if [0, d, 0] not in out["functions"])
    out["empty"] = [hal.HalGetBusDataByOffset(PCIConfiguration, 0, empty, bytearray(8), off, 8) for off in (0, 1, 2, 64)]
    out["missing_bus"] = hal.HalGetBusData(PCIConfiguration, hal.no_buses, 3, bytearray(8), 8)
    routes = {}
    for key in hal.pci_functions():
        route = hal.pci_interrupt_route(*key)
        if route is not None:
            routes["%02x:%02x.%d" % key] = [route.root_slot, route.root_pin, route.link, route.irq]
    out["routes"] = routes
    out["vectors"] = {name: list(hal.HalGetInterruptVector(PCIBus, int(name[:2], 16), r[3], r[3]))
                      for name, r in routes.items()}
    out["windows_bus1"] = hal.bus_windows(PCIBus, 1)
    out["bars"] = {"%02x:%02x.%d" % key: [[b.index, b.kind, b.size, b.is_64bit] for b in hal.size_bars(*key)]
                   for key in hal.pci_functions() if key[1] in (3, 4) or key[0] == 1}
    behind = next(k for k in hal.pci_functions() if k[0] == 1)
    status, resources = hal.HalAssignSlotResources("\\Registry\\Machine\\System\\e1000", None, "driver", "device",
                                                   PCIBus, 1, slot_number(behind[1], behind[2]))
    out["assign"] = [int(status), resources.pack().hex() if resources else None]
    out["translate"] = [list(hal.HalTranslateBusAddress(PCIBus, 1, p.start, 1 if isinstance(p, Port) else 0))
                        for _, p in resources.partials() if isinstance(p, (Port, Memory))]
    out["cmos_a"] = hal.get_bus_data(Cmos, 0, 0x0A, 0, 1).hex()
    out["com1_lsr"] = hal.READ_PORT_UCHAR(0x3FD)
    return out


def record(path: Path = TRANSCRIPT) -> None:
    from harness.config import load_machine
    from harness.qemu.livebus import LiveBus
    from harness.qemu.machine import Machine
    from helpers import CONFIGS

    with Machine(load_machine(CONFIGS / "machines" / "default.yaml")) as m:
        m.run_firmware()
        recorder = RecordingBus(LiveBus(m), meta={"machine": "configs/machines/default.yaml",
                                                  "phase": "post-firmware", "qemu": m.qemu_version,
                                                  "made_by": "tests/test_hal_recorded.py --record"})
        hal_session(Hal(recorder))
        recorder.save(path)


@pytest.fixture(scope="module")
def transcript() -> dict[str, Any]:
    return json.loads(TRANSCRIPT.read_text())


@pytest.fixture(scope="module")
def replayed(transcript) -> dict[str, Any]:
    return hal_session(Hal(ReplayBus(transcript)))


def test_replay_is_a_bus_and_a_decode_map(transcript) -> None:
    bus = ReplayBus(transcript)
    assert isinstance(bus, BusAccess) and isinstance(bus, DecodeMap)
    assert not isinstance(ReplayBus({**transcript, "calls": [c for c in transcript["calls"]
                                                            if c["op"] not in ("decoded_ranges", "bar_mappings",
                                                                               "pci_root_windows")]}), DecodeMap)


def test_replayed_session_matches_the_facts(replayed) -> None:
    functions = [tuple(k) for k in replayed["functions"]]
    assert replayed["no_buses"] == 2 and (1, 1, 0) in functions  # the bridged e1000 of default.yaml
    assert replayed["empty"] == [2, 1, 0, 0] and replayed["missing_bus"] == 0
    assert replayed["cmos_a"] == "26" and replayed["com1_lsr"] == 0x60
    host = bytes.fromhex(replayed["config"]["00:00.0"])
    assert host[:4] == (0x12378086).to_bytes(4, "little")
    # Routes by QEMU's pc rule (qemu-facts §4): PIRQ (pin-1 + slot-1 + sum of parent slots) & 3.
    for name, (_root_slot, _root_pin, link, irq) in replayed["routes"].items():
        bus, dev = int(name[:2], 16), int(name[3:5], 16)
        pin = bytes.fromhex(replayed["config"][name])[0x3D]
        parents = 7 if bus == 1 else 0  # default.yaml's bridge sits in slot 7
        assert link == (pin - 1 + dev - 1 + parents) & 3 and irq == SEABIOS_PIRQ[link], name
        assert bytes.fromhex(replayed["config"][name])[0x3C] == irq
        assert replayed["vectors"][name] == [0x30 + irq, 27 - irq, 1]


def test_replayed_sizes_and_assignment(replayed) -> None:
    catalog = load_catalog()
    sizes = {(b.index, b.kind, b.size) for b in catalog["e1000"].pci.bars}
    assert {(i, k, s) for i, k, s, _ in replayed["bars"]["00:03.0"]} == sizes
    assert {(i, k, s) for i, k, s, _ in replayed["bars"]["01:01.0"]} == sizes
    assert {(i, k, s) for i, k, s, _ in replayed["bars"]["00:04.0"]} == \
        {(b.index, b.kind, b.size) for b in catalog["rtl8139"].pci.bars}
    status, packed = replayed["assign"]
    assert status == 0
    resources = CM_RESOURCE_LIST.unpack(bytes.fromhex(packed))
    window = replayed["windows_bus1"]
    for _, p in resources.partials():
        if isinstance(p, (Port, Memory)):
            space = "io" if isinstance(p, Port) else "memory"
            assert any(lo <= p.start and p.start + p.length - 1 <= hi for lo, hi in window[space])
    assert all(t[0] for t in replayed["translate"])


def test_unrecorded_access_is_refused_clearly(transcript) -> None:
    hal = Hal(ReplayBus(transcript))
    with pytest.raises(NotRecordedError, match=r"read_port\(0x2fd, 0x1\) is not in the transcript \(never recorded\)"):
        hal.READ_PORT_UCHAR(0x2FD)
    bus = ReplayBus(transcript)
    assert bus.read_port(0x3FD, 1) == 0x60
    with pytest.raises(NotRecordedError, match="recorded 1 time"):
        bus.read_port(0x3FD, 1)
    with pytest.raises(NotRecordedError, match="write_config"):
        bus.write_config(0, 3, 0, 0x04, b"\x00\x00")


def test_strict_replay_wants_the_recorded_order(transcript) -> None:
    bus = ReplayBus(transcript, strict=True)
    calls = transcript["calls"]
    second = next(c for c in calls[1:] if c["op"] == "read_config" and c["args"] != calls[0]["args"])
    with pytest.raises(NotRecordedError, match="out of order"):
        bus.read_config(*second["args"])
    first = calls[0]
    getattr(bus, first["op"])(*first["args"])
    assert bus.replayed == 1 and bus.remaining == len(calls) - 1


def test_transcripts_round_trip_and_bad_ones_are_refused(transcript, tmp_path) -> None:
    again = RecordingBus(ReplayBus(transcript))
    hal_session(Hal(again))
    assert again.transcript()["calls"] == transcript["calls"]
    again.save(tmp_path / "t.json")
    assert ReplayBus.load(tmp_path / "t.json").remaining == len(transcript["calls"])
    with pytest.raises(TranscriptError):
        ReplayBus({"format": "something-else", "version": 1, "calls": []})
    bad = copy.deepcopy(transcript)
    bad["calls"][0]["op"] = "format_disk"
    with pytest.raises(TranscriptError, match="unknown operation"):
        ReplayBus(bad)


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: test_hal_recorded.py --record")
    record()
    print(f"wrote {TRANSCRIPT} ({TRANSCRIPT.stat().st_size} bytes)")
