"""Security: private folders, no network listener, safe YAML, no shell, confined argv.

The harness runs QEMU with values taken from files a user may have been handed (machine
configs, later matrix files and repro bundles): none of them may reach a shell, inject a
QEMU option, or point QEMU at a file outside the machine's private run folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.config import load_machine
from harness.devices import load_catalog
from harness.errors import ConfigError, HarnessError
from harness.qemu.machine import Machine, build_argv, run_root
from helpers import (CONFIGS, argv_changes, argv_field_setters, argv_violations, check_argv_field,
                     machine_spec, model_spec, qemu_opts, with_last_device)

SERIAL = "machine: pc\ndevices:\n  - {model: isa-serial, id: com1}\n"


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _net_inodes(table: str) -> dict[int, str]:
    """inode → local address of every socket in /proc/net/<table>."""
    out = {}
    lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
    for line in lines:
        fields = line.split()
        out[int(fields[9])] = fields[1]
    return out


def _unix_paths() -> dict[int, str]:
    out = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8:
            out[int(fields[6])] = fields[7]
    return out


def test_qemu_listens_on_no_network_socket_and_its_sockets_stay_private() -> None:
    with Machine(load_machine(CONFIGS / "machines" / "default.yaml")) as m:  # three NICs
        m.run_firmware()
        sockets = _socket_inodes(m.pid)
        assert sockets, "QEMU holds at least its QMP socket"
        for table in ("tcp", "tcp6", "udp", "udp6"):
            net = _net_inodes(table)
            assert not sockets & set(net), f"QEMU has {table} sockets: {[net[i] for i in sockets & set(net)]}"
        paths = [p for i, p in _unix_paths().items() if i in sockets]
        for path in paths:  # QMP is a socketpair (no path); any named socket is in the run folder
            assert Path(path).parent == m.run_dir, path
        info = m.run_dir.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
        root = m.run_dir.parent.stat()
        assert stat.S_IMODE(root.st_mode) == 0o700 and root.st_uid == os.getuid()
        for entry in m.run_dir.iterdir():
            assert entry.stat().st_uid == os.getuid(), entry


def test_a_run_root_that_is_a_link_or_someone_elses_is_refused(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    link = tmp_path / "planted"
    link.symlink_to(target)
    monkeypatch.setenv("HARNESS_RUN_DIR", str(link))
    with pytest.raises(HarnessError, match="symbolic link"):
        run_root()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755, "the link's target must not be touched"
    if os.getuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    monkeypatch.setenv("HARNESS_RUN_DIR", str(foreign))
    with pytest.raises(HarnessError, match="another user"):
        run_root()


def test_yaml_is_read_with_the_safe_loader(tmp_path: Path) -> None:
    made = tmp_path / "made-by-yaml"
    for tag in (f"!!python/object/apply:os.mkdir [{str(made)!r}]", "!!python/name:os.system",
                f"!!python/object/new:os.mkdir [{str(made)!r}]"):
        with pytest.raises(ConfigError, match="constructor"):
            machine_spec(f"machine: {tag}\n")
    assert not made.exists()


# A naive walk of the aliases would never finish: the timeout guards against that, while
# the speed itself is not measured here (the machine may be loaded).
@pytest.mark.timeout(120)
def test_yaml_that_expands_without_bound_is_refused_quickly() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
    with pytest.raises(ConfigError, match="aliases are expanded"):
        machine_spec(laughs + "machine: pc\n")  # 9**9 values if walked naively
    with pytest.raises(ConfigError, match="nested too deeply"):
        machine_spec("machine: pc\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="integer of 5000 characters") as info:
        machine_spec("machine: pc\nmemory: " + "9" * 5000 + "\n")
    assert info.value.line == 2


HOSTILE = ["a;reboot", "a,chardev=x", "$(touch /tmp/pwn)", "`id`", "a\nb", "-device", "a b",
           "../x", "/etc/passwd", "a=b", "x'y", 'x"y', "a|b", "a&b", "a>b", "a\\b"]
#: Every config field whose text reaches QEMU's command line, as a YAML template.
TEXT_FIELDS = {
    "name": "name: {v}\nmachine: pc\n",
    "devices[0].id": "machine: pc\ndevices:\n  - {{model: isa-serial, id: {v}}}\n",
    "devices[0].model": "machine: pc\ndevices:\n  - {{model: {v}, id: a}}\n",
    "devices[1].bus": "machine: pc\ndevices:\n  - {{model: pci-bridge, id: br}}\n"
                      "  - {{model: e1000, id: n, bus: {v}}}\n",
    "devices[0].drive-type": "machine: pc\ndevices:\n  - {{model: floppy, id: f, drive-type: {v}}}\n",
    "devices[0].addr": "machine: pc\ndevices:\n  - {{model: e1000, id: n, addr: {v}}}\n",
    "machine": "machine: {v}\n",
    "accel": "machine: pc\naccel: {v}\n",
}


@pytest.mark.parametrize("field", sorted(TEXT_FIELDS))
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_text_in_any_field_that_reaches_qemu_is_refused(field: str, value: str) -> None:
    import json
    with pytest.raises(ConfigError) as info:
        machine_spec(TEXT_FIELDS[field].format(v=json.dumps(value)))  # a JSON string is YAML
    assert info.value.field == field, str(info.value)


def test_a_string_property_with_choices_takes_only_those() -> None:
    with pytest.raises(ConfigError, match="not one of") as info:
        machine_spec("machine: pc\ndevices:\n  - {model: floppy, id: f, drive-type: '1440'}\n")
    assert info.value.field == "devices[0].drive-type"


def test_argv_never_meets_a_shell_and_hostile_paths_are_passed_literally() -> None:
    # The one thing a user may choose freely is where run folders go: give it characters
    # a shell or QEMU's option parser would act on (short: it must fit a socket path).
    base = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))
    bait = base / "b"
    run_dir = base / f",path={bait};$(touch {bait})"
    try:
        with Machine(machine_spec(SERIAL), run_dir=run_dir) as m:
            m.run_firmware()
            m.hmp("o /b 0x3f8 0x41")  # a byte out of COM1 lands in its chardev file
            cmdline = Path(f"/proc/{m.pid}/cmdline").read_bytes().split(b"\0")[:-1]
            status = Path(f"/proc/{m.pid}/status").read_text()
            got = [a.decode() for a in cmdline[:len(m.argv)]]
            assert got[1:] == m.argv[1:] and got[0] == shutil.which(m.argv[0]), "QEMU got the argv itself"
            assert f"PPid:\t{os.getpid()}\n" in status, "no shell between the harness and QEMU"
            exec_line = (m.run_dir / "argv.sh").read_text().splitlines()[-1]
            assert shlex.split(exec_line) == ["exec", *m.argv], "argv.sh re-runs the same argv"
            open_files = {os.readlink(fd) for fd in Path(f"/proc/{m.pid}/fd").iterdir()}
            assert {str(run_dir / "com1.out"), str(run_dir / "firmware.log")} <= open_files
            assert argv_violations(m.argv, m.spec, run_dir) == []
        assert (run_dir / "com1.out").read_bytes() == b"A"
        assert b"No bootable device" in (run_dir / "firmware.log").read_bytes()
        assert not bait.exists(), "a path fragment was run or parsed as an option"
    finally:
        shutil.rmtree(base)


def test_the_argv_checker_catches_what_it_is_for(tmp_path: Path) -> None:
    spec = machine_spec(SERIAL)
    argv = build_argv(spec, tmp_path, "tcg")
    assert argv_violations(argv, spec, tmp_path) == []
    assert qemu_opts("file,id=a,path=/x,,y") == ["file", "id=a", "path=/x,y"]
    bad = [*argv, "-chardev", "file,id=x,path=/tmp/outside", "-monitor", "stdio"]
    found = argv_violations(bad, spec, tmp_path)
    assert any("outside the run folder" in f for f in found) and any("-monitor" in f for f in found)
    injected = [a.replace("isa-serial,", "isa-serial,romfile=/etc/passwd,") for a in argv]
    assert any("romfile" in f for f in argv_violations(injected, spec, tmp_path))


_CATALOG = load_catalog()


@st.composite
def _specs(draw: st.DrawFn):
    """Valid machine specs with random devices from the catalog and random values."""
    import json
    machine = draw(st.sampled_from(["pc", "q35", "isapc"]))
    lines = [f"machine: {machine}", "devices:"]
    names = [n for n, m in _CATALOG.items() if machine in m.machines and m.bus != "pcie"]
    for i, name in enumerate(draw(st.lists(st.sampled_from(names), max_size=6))):
        model = _CATALOG[name]
        item = {"model": name, "id": f"d{i}"}
        for prop, spec in model.properties.items():
            if draw(st.booleans()):
                item[prop] = draw(st.sampled_from(spec.choices) if spec.choices else
                                  st.integers(0, 0xFFFF) if spec.kind == "port" else
                                  st.integers(0, 15) if spec.kind == "irq" else st.sampled_from([0, 1, 3]))
        lines.append("  - " + json.dumps(item))
    try:
        return machine_spec("\n".join(lines) + "\n")
    except ConfigError:
        from hypothesis import assume
        assume(False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(spec=_specs())
def test_every_file_qemu_is_told_to_open_is_in_the_run_folder(spec) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="ha-"))
    try:
        assert argv_violations(build_argv(spec, run_dir, "tcg"), spec, run_dir) == []
    finally:
        shutil.rmtree(run_dir)


# ---- every field of every model through the argv builder --------------------------------
#: Text and values an attacker might put in any field: option separators, a line break,
#: a NUL, a second bus, the issue's injection, something very long, wrong types.
HOSTILE_VALUES = [",", "a,b", "=", "a=b", "x\ny", "x\0y", "bus=", "x,bus=isa.0",
                  "isa.0,iobase=0x2e8,irq=7,bus=isa", "-device", "A" * 5000, "", 99, -1, 2**70,
                  True, None, 1.5, ["a"]]


@pytest.mark.parametrize("model", sorted(_CATALOG))
def test_every_field_of_every_model_changes_only_its_own_value_in_argv(model: str, tmp_path: Path) -> None:
    spec = model_spec(model)
    base = build_argv(spec, tmp_path, "tcg")
    refused = accepted = 0
    for field, make in argv_field_setters(spec).items():
        key = field.rsplit(".", 1)[-1]
        for value in HOSTILE_VALUES:
            if value is None and key in ("bus", "controller"):
                continue  # no bus: the board's default, a valid choice
            if check_argv_field(spec, field, make, value, tmp_path):
                accepted += 1
            else:
                refused += 1
        # A valid other value goes through and changes exactly that value (the check can see).
        prop = _CATALOG[model].properties.get(key)
        if prop is not None and len(prop.choices) > 1:
            other = next(c for c in prop.choices if c != spec.devices[-1].settings.get(key))
            assert argv_changes(base, build_argv(make(other), tmp_path, "tcg")) == [
                (_CATALOG[model].qemu_driver, key, str(other))]
    assert refused > 0 and accepted < refused


@pytest.mark.parametrize("field,make", [
    ("name", lambda s, v: __import__("dataclasses").replace(s, name=v)),
    ("machine", lambda s, v: __import__("dataclasses").replace(s, machine=v)),
    ("memory", lambda s, v: __import__("dataclasses").replace(s, memory_mib=v)),
])
def test_machine_fields_with_hostile_values_are_refused_by_the_argv_builder(field, make, tmp_path: Path) -> None:
    spec = machine_spec(SERIAL)
    for value in HOSTILE_VALUES:
        if field == "memory" and value == 99:
            continue  # 99 MiB is a valid size
        with pytest.raises(ConfigError) as info:
            build_argv(make(spec, value), tmp_path, "tcg")
        assert info.value.field == field
    with pytest.raises(ConfigError, match="accel"):
        build_argv(spec, tmp_path, "tcg,accel=kvm")


def test_the_issues_bus_injection_is_refused_with_file_line_and_field() -> None:
    text = ("machine: pc\ndevices:\n"
            "  - {model: isa-serial, id: com2, iobase: 0x2f8, irq: 3,\n"
            "     bus: 'isa.0,iobase=0x2e8,irq=7,bus=isa'}\n")
    with pytest.raises(ConfigError) as info:
        machine_spec(text)
    assert str(info.value).startswith("<test>:4: devices[0].bus: ")
    # Built in code, past config.py: the argv builder refuses it the same way.
    spec = with_last_device(machine_spec(text.replace(",\n     bus: 'isa.0,iobase=0x2e8,irq=7,bus=isa'}", "}")),
                 bus="isa.0,iobase=0x2e8,irq=7,bus=isa")
    with pytest.raises(ConfigError) as info:
        build_argv(spec, Path("/tmp/x"), "tcg")
    assert str(info.value).startswith("<test>:3: devices[0].bus: ")
    assert "bus=isa.0" in ",".join(build_argv(with_last_device(spec, bus="isa"), Path("/tmp/x"), "tcg"))


def test_a_hostile_run_folder_path_changes_only_the_path_values() -> None:
    spec = machine_spec("machine: pc\ndevices:\n  - {model: isa-serial, id: com1}\n"
                        "  - {model: floppy, id: fd0}\n")
    tmp_path = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp"))  # short: unix socket paths
    try:
        _check_hostile_run_folder(spec, tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _check_hostile_run_folder(spec, tmp_path: Path) -> None:
    plain = build_argv(spec, tmp_path / "plain", "tcg") if (tmp_path / "plain").mkdir() is None else []
    hostile = tmp_path / "a,b=c,bus=isa.0,path=x"
    hostile.mkdir()
    changes = argv_changes(plain, build_argv(spec, hostile, "tcg"))
    assert changes and all(k in ("path", "file") and v.startswith(str(hostile) + "/") for _, k, v in changes)
    for bad in ("x\ny", "x\rz"):
        (tmp_path / bad).mkdir()
        with pytest.raises(ConfigError) as info:
            build_argv(spec, tmp_path / bad, "tcg")
        assert info.value.field == "run_dir"


def test_the_bus_names_the_argv_builder_uses_are_the_machines_real_buses() -> None:
    """machine_buses() against `info qtree` of a real QEMU of each machine kind."""
    from harness.qemu.machine import machine_buses
    machines = {
        "pc": "  - {model: pci-bridge, id: br0}\n  - {model: e1000, id: n1, bus: br0, addr: 1}\n"
              "  - {model: isa-fdc, id: fdc1, iobase: 0x370}\n  - {model: floppy, id: fd1, controller: fdc1}\n"
              "  - {model: isa-serial, id: com1, bus: isa}\n",
        "q35": "  - {model: pcie-root-port, id: rp0}\n  - {model: e1000e, id: n1, bus: rp0}\n"
               "  - {model: isa-serial, id: com1, bus: isa}\n",
        "isapc": "  - {model: isa-serial, id: com1, bus: isa}\n",
    }
    for kind, devices in machines.items():
        spec = machine_spec(f"machine: {kind}\nfirmware_log: false\ndevices:\n{devices}")
        with Machine(spec) as m:
            qtree = m.hmp("info qtree")
        names = {line.strip().removeprefix("bus: ") for line in qtree.splitlines() if line.strip().startswith("bus: ")}
        for index, dev in enumerate(spec.devices):
            if dev.bus is not None:
                assert machine_buses(spec, index)[dev.bus] in names, (kind, dev.id, sorted(names))


# ---- no shell for paths; caches and locks not following links --------------------------
def test_hostile_cache_and_install_paths_never_reach_a_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe guest's build runs make (whose recipes go through /bin/sh) with no path
    in them: a cache folder and an install folder full of shell syntax build fine and
    run nothing."""
    from harness.guests import probe
    bait = tmp_path / "bait"
    hostile = f"a b`touch {bait}1`$(touch {bait}2);touch {bait}3 'q\""
    sources = tmp_path / f"install {hostile}" / "probe"
    shutil.copytree(probe.PROBE_SOURCES, sources)
    monkeypatch.setattr(probe, "PROBE_SOURCES", sources)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / f"cache {hostile}"))
    elf = probe.build_probe()
    assert elf.is_file() and elf.read_bytes()[:4] == b"\x7fELF"
    assert str(tmp_path / f"cache {hostile}") in str(elf)
    assert not list(tmp_path.glob("bait*")), "a path fragment ran in a shell"


def test_a_planted_lock_link_is_refused_and_lock_waits_are_bounded(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    from harness.guests.cache import cache_root, locked
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    victim = tmp_path / "someone-elses-file"
    victim.write_text("precious")
    (cache_root() / "probe.lock").symlink_to(victim)
    with pytest.raises(HarnessError, match="link is refused"):
        with locked("probe"):
            pass
    assert victim.read_text() == "precious"
    # Held by another open file (another process's build): the wait ends at its bound.
    with open(cache_root() / "held.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        start = time.monotonic()
        with pytest.raises(HarnessError, match="more than 0.3 s"):
            with locked("held", timeout=0.3):
                pass
        assert 0.3 <= time.monotonic() - start < 2
    with locked("held", timeout=0.3):  # released: taken at once
        pass
    # A cache folder that is a link (planted in a shared cache) is refused, not followed.
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "shared"))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "guests").symlink_to(tmp_path / "cache" / "guests")
    with pytest.raises(HarnessError, match="is a link"):
        cache_root()


def test_a_repeated_or_reserved_id_is_refused_by_the_argv_builder(tmp_path: Path) -> None:
    """Found by the argv-fields fuzzer: a floppy given its controller's id shared QEMU's
    id namespace with it."""
    spec = model_spec("floppy")
    for value in ("fdc1", "harness-fwlog", "HARNESS-x"):
        with pytest.raises(ConfigError, match="used twice or reserved") as info:
            build_argv(with_last_device(spec, id=value), tmp_path, "tcg")
        assert info.value.field == "devices[1].id"
