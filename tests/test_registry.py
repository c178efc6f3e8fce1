"""Tests for harness.nt.registry, harness.nt.regfile and ``harness registry``.

Expected bytes are written out by hand (struct.pack / str.encode), and the .reg sample in
tests/data was typed by hand, not produced by the exporter.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main as cli_main
from harness.nt.errors import (InvalidPathError, KeyHasSubkeysError, KeyNotFoundError,
                               RegFileError, RegistryError, RegistryFileError,
                               RegistryLockedError, RegistryTypeError, TruncatedError,
                               ValueNotFoundError, VolatileParentError)
from harness.nt.regfile import (HEADER, export_reg, export_text, from_hkey, import_reg,
                                import_text, parse_reg, to_hkey)
from harness.nt.registry import (MACHINE, RESOURCE_MAP, RegType, Registry, decode_value,
                                 encode_value, fold, format_tree, split_path,
                                 unique_registry_path)
from harness.nt.resources import (CM_FULL_RESOURCE_DESCRIPTOR, CM_RESOURCE_LIST,
                                  CM_SERIAL_DEVICE_DATA, Arch, CmResourceShareUndetermined,
                                  CM_RESOURCE_INTERRUPT_LATCHED, CM_RESOURCE_PORT_16_BIT_DECODE,
                                  CM_RESOURCE_PORT_IO, DeviceSpecific, Interrupt,
                                  InterruptRequirement, IO_RESOURCE_LIST,
                                  IO_RESOURCE_PREFERRED, IO_RESOURCE_REQUIREMENTS_LIST, Isa,
                                  Port, PortRequirement)
from harness.nt.status import NTSTATUS

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]
SERIAL_KEY = RESOURCE_MAP + r"\OtherDrivers\Serial"

COM1 = CM_RESOURCE_LIST.single(
    Isa, 0, Port(0x3F8, 8),
    Interrupt(4, 4, share=CmResourceShareUndetermined, flags=CM_RESOURCE_INTERRUPT_LATCHED))


@pytest.fixture
def reg():
    with Registry() as r:
        yield r


def utf16z(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\0\0"


# ---------------------------------------------------------------------------------------
# Keys


def test_keys_are_case_insensitive_and_keep_their_case(reg):
    made = reg.create_key(r"\Registry\Machine\HARDWARE\ResourceMap\OtherDrivers")
    assert made == r"\REGISTRY\MACHINE\HARDWARE\ResourceMap\OtherDrivers"
    again = reg.create_key(r"\registry\machine\hardware\RESOURCEMAP\otherdrivers\Serial")
    assert again == r"\REGISTRY\MACHINE\HARDWARE\ResourceMap\OtherDrivers\Serial"
    assert reg.key_exists(r"\REGISTRY\MACHINE\HARDWARE\RESOURCEMAP\OTHERDRIVERS\SERIAL")
    assert reg.canonical_path(r"\registry\machine\hardware") == r"\REGISTRY\MACHINE\HARDWARE"
    assert reg.subkeys(r"\Registry\Machine\Hardware\ResourceMap") == ["OtherDrivers"]


def test_subkeys_enumerate_sorted_case_insensitively(reg):
    for name in ("beta", "Alpha", "GAMMA", "delta"):
        reg.create_key(MACHINE + "\\T\\" + name)
    assert reg.subkeys(MACHINE + r"\T") == ["Alpha", "beta", "delta", "GAMMA"]
    info = reg.key_info(MACHINE + r"\t")
    assert (info.name, info.subkey_count, info.value_count, info.volatile) == ("T", 4, 0, False)


def test_nt_upcasing_is_per_character():
    assert fold("straße") == "STRAßE"  # 'ß'.upper() is two characters: left alone
    assert fold("Serial0.Raw") == "SERIAL0.RAW"


@pytest.mark.parametrize("path, status", [
    ("Machine\\X", NTSTATUS.STATUS_OBJECT_PATH_SYNTAX_BAD),
    ("\\Machine\\X", NTSTATUS.STATUS_OBJECT_PATH_SYNTAX_BAD),
    ("\\Registry\\Machine\\\\X", NTSTATUS.STATUS_OBJECT_NAME_INVALID),
    ("\\Registry\\Machine\\X\\", NTSTATUS.STATUS_OBJECT_NAME_INVALID),
    ("\\Registry\\Machine\\" + "k" * 256, NTSTATUS.STATUS_OBJECT_NAME_INVALID),
    ("\\Registry\\Other\\X", NTSTATUS.STATUS_OBJECT_NAME_NOT_FOUND),
])
def test_invalid_paths(reg, path, status):
    with pytest.raises(InvalidPathError) as info:
        reg.create_key(path)
    assert info.value.status == status
    assert split_path("\\Registry\\Machine\\" + "k" * 255)[-1] == "k" * 255


def test_missing_keys_and_values(reg):
    with pytest.raises(KeyNotFoundError) as info:
        reg.values(MACHINE + r"\Nope")
    assert info.value.status == NTSTATUS.STATUS_OBJECT_NAME_NOT_FOUND
    with pytest.raises(KeyNotFoundError):
        reg.set_value(MACHINE + r"\Nope", "x", 1)  # set_value does not create keys
    reg.create_key(MACHINE + r"\K")
    with pytest.raises(ValueNotFoundError):
        reg.get_value(MACHINE + r"\K", "missing")
    assert reg.get(MACHINE + r"\K", "missing", None) is None
    assert reg.get(MACHINE + r"\Nope", "missing", 5) == 5
    with pytest.raises(ValueNotFoundError):
        reg.delete_value(MACHINE + r"\K", "missing")
    reg.delete_value(MACHINE + r"\K", "missing", missing_ok=True)


def test_delete_key(reg):
    reg.create_key(MACHINE + r"\A\B\C")
    reg.set_value(MACHINE + r"\A\B\C", "v", 1)
    with pytest.raises(KeyHasSubkeysError) as info:
        reg.delete_key(MACHINE + r"\A")
    assert info.value.status == NTSTATUS.STATUS_CANNOT_DELETE
    reg.delete_key(MACHINE + r"\a\b\c")  # leaf: no flag needed
    assert not reg.key_exists(MACHINE + r"\A\B\C")
    reg.create_key(MACHINE + r"\A\B\C")
    reg.delete_key(MACHINE + r"\A", recursive=True)
    assert not reg.key_exists(MACHINE + r"\A\B")
    assert reg.subkeys(MACHINE) == []
    with pytest.raises(KeyHasSubkeysError):
        reg.delete_key(MACHINE, recursive=True)
    with pytest.raises(KeyNotFoundError):
        reg.delete_key(MACHINE + r"\A")


def test_volatile_keys(reg):
    rm = reg.create_key(SERIAL_KEY, volatile=True)
    reg.set_value(rm, r"\Device\Serial0.Raw", COM1)
    reg.create_key(MACHINE + r"\SYSTEM\Setup")
    with pytest.raises(VolatileParentError) as info:
        reg.create_key(SERIAL_KEY + r"\Persistent")
    assert info.value.status == NTSTATUS.STATUS_CHILD_MUST_BE_VOLATILE
    reg.create_key(SERIAL_KEY + r"\Also", volatile=True)
    assert reg.key_info(rm).volatile
    removed = reg.discard_volatile()  # reboot
    assert removed == 5  # HARDWARE, RESOURCEMAP, OtherDrivers, Serial, Also
    assert not reg.key_exists(MACHINE + r"\HARDWARE")
    assert reg.key_exists(MACHINE + r"\SYSTEM\Setup")


# ---------------------------------------------------------------------------------------
# Values


def test_value_types_store_exact_bytes(reg):
    key = reg.create_key(MACHINE + r"\V")
    cases = [
        ("sz", "COM1", None, RegType.REG_SZ, utf16z("COM1")),
        ("expand", "%SystemRoot%", RegType.REG_EXPAND_SZ, RegType.REG_EXPAND_SZ,
         utf16z("%SystemRoot%")),
        ("multi", ["a", "bc"], None, RegType.REG_MULTI_SZ, "a\0bc\0\0".encode("utf-16-le")),
        ("empty-multi", [], RegType.REG_MULTI_SZ, RegType.REG_MULTI_SZ, b"\0\0"),
        ("dword", 0x12345678, None, RegType.REG_DWORD, struct.pack("<I", 0x12345678)),
        ("be", 0x12345678, RegType.REG_DWORD_BIG_ENDIAN, RegType.REG_DWORD_BIG_ENDIAN,
         struct.pack(">I", 0x12345678)),
        ("qword", 2**40 + 1, RegType.REG_QWORD, RegType.REG_QWORD, struct.pack("<Q", 2**40 + 1)),
        ("bin", b"\x00\xff", None, RegType.REG_BINARY, b"\x00\xff"),
        ("none", b"", RegType.REG_NONE, RegType.REG_NONE, b""),
        ("link", r"\Registry\Machine\X", RegType.REG_LINK, RegType.REG_LINK,
         r"\Registry\Machine\X".encode("utf-16-le")),
        ("surrogate", "\ud800x", None, RegType.REG_SZ, b"\x00\xd8x\x00\x00\x00"),
    ]
    for name, value, asked, expected_type, expected in cases:
        reg.set_value(key, name, value, asked)
        got = reg.get_value(key, name)
        assert (got.type, got.data) == (expected_type, expected), name
        decoded = got.value
        assert decoded == (tuple(value) if isinstance(value, list) else value), name
    assert [v.name for v in reg.values(key)] == [c[0] for c in cases]  # creation order


def test_resource_values_use_the_registry_layout():
    for arch in Arch:
        with Registry(arch=arch) as r:
            key = r.create_key(SERIAL_KEY, volatile=True)
            r.set_value(key, r"\Device\Serial0.Raw", COM1)
            r.set_value(key, "Configuration Data", COM1.descriptors[0])
            req = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, [IO_RESOURCE_LIST(
                [PortRequirement(8, 8, 0x3F8, 0x3FF)])])
            r.set_value(key, "BasicConfigVector", req)
            raw = r.get_value(key, r"\device\serial0.raw")
            assert raw.type == RegType.REG_RESOURCE_LIST
            # Count, then one full descriptor of 16 + 2 partials of the layout's size (§1.3)
            assert len(raw.data) == 4 + 16 + 2 * arch.partial_descriptor_size
            assert raw.data == COM1.pack(arch)
            assert raw.value == COM1
            assert r.get_value(key, "Configuration Data").type == \
                RegType.REG_FULL_RESOURCE_DESCRIPTOR
            assert r.get(key, "Configuration Data") == COM1.descriptors[0]
            assert r.get(key, "BasicConfigVector") == req


def test_replacing_a_value_keeps_name_case_and_slot(reg):
    key = reg.create_key(MACHINE + r"\K")
    reg.set_value(key, "First", 1)
    reg.set_value(key, "Second", 2)
    reg.set_value(key, "FIRST", "now a string")
    values = reg.values(key)
    assert [(v.name, v.type) for v in values] == [("First", RegType.REG_SZ),
                                                 ("Second", RegType.REG_DWORD)]
    reg.delete_value(key, "first")
    reg.set_value(key, "first", 3)
    assert [v.name for v in reg.values(key)] == ["Second", "first"]


def test_malformed_stored_bytes_raise_on_decode_only(reg):
    key = reg.create_key(MACHINE + r"\K")
    reg.set_value(key, "Truncated.Raw", COM1.pack()[:-3], RegType.REG_RESOURCE_LIST)
    stored = reg.get_value(key, "Truncated.Raw")
    assert stored.data == COM1.pack()[:-3]
    with pytest.raises(TruncatedError):
        _ = stored.value  # decoding the truncated bytes raises
    reg.set_value(key, "odd", b"abc", RegType.REG_SZ)
    with pytest.raises(RegistryTypeError, match="UTF-16"):
        reg.get(key, "odd")
    reg.set_value(key, "short", b"\1\2", RegType.REG_DWORD)
    with pytest.raises(RegistryTypeError, match="4 bytes"):
        reg.get(key, "short")
    reg.set_value(key, "unterminated", "ab".encode("utf-16-le"), RegType.REG_SZ)
    assert reg.get(key, "unterminated") == "ab"
    reg.set_value(key, "custom", b"\1", 0x20)
    assert reg.get_value(key, "custom").type_name == "REG_TYPE_0x20"
    assert reg.get(key, "custom") == b"\1"


def test_encode_and_decode_value_functions():
    assert encode_value(COM1, None, Arch.X86) == (RegType.REG_RESOURCE_LIST, COM1.pack(Arch.X86))
    assert decode_value(RegType.REG_RESOURCE_LIST, COM1.pack(Arch.X86), Arch.X86) == COM1
    assert encode_value(7) == (RegType.REG_DWORD, b"\7\0\0\0")
    assert decode_value(RegType.REG_MULTI_SZ, "a\0b\0".encode("utf-16-le")) == ("a", "b")
    assert decode_value(RegType.REG_MULTI_SZ, b"") == ()
    assert decode_value(RegType.REG_DWORD_BIG_ENDIAN, b"\0\0\1\0") == 256


@pytest.mark.parametrize("value, reg_type, match", [
    ("a\0b", RegType.REG_SZ, "NUL"),
    (["a", ""], RegType.REG_MULTI_SZ, "empty"),
    (["a", 1], RegType.REG_MULTI_SZ, "item 1"),
    (2**32, None, "REG_QWORD"),
    (2**32, RegType.REG_DWORD, "does not fit"),
    (-1, RegType.REG_QWORD, "does not fit"),
    (1.5, None, "no registry type"),
    ("text", RegType.REG_DWORD, "cannot store str"),
    (COM1, RegType.REG_FULL_RESOURCE_DESCRIPTOR, "cannot store"),
    (1, 2**32, "ULONG"),
])
def test_value_type_errors(reg, value, reg_type, match):
    key = reg.create_key(MACHINE + r"\K")
    with pytest.raises(RegistryTypeError, match=match) as info:
        reg.set_value(key, "v", value, reg_type)
    assert info.value.status == NTSTATUS.STATUS_OBJECT_TYPE_MISMATCH
    assert reg.values(key) == []


# ---------------------------------------------------------------------------------------
# Transactions


def test_transaction_rolls_back_everything(reg):
    key = reg.create_key(SERIAL_KEY, volatile=True)
    reg.set_value(key, r"\Device\Serial0.Raw", COM1)
    with pytest.raises(RuntimeError):
        with reg.transaction():
            reg.delete_value(key, r"\Device\Serial0.Raw")
            reg.create_key(SERIAL_KEY + r"\New", volatile=True)
            raise RuntimeError("conflict found after the first write")
    assert reg.get(key, r"\Device\Serial0.Raw") == COM1
    assert not reg.key_exists(SERIAL_KEY + r"\New")
    assert not reg.in_transaction


def test_nested_transaction_is_a_savepoint(reg):
    key = reg.create_key(MACHINE + r"\K")
    with reg.transaction():
        reg.set_value(key, "outer", 1)
        with pytest.raises(KeyError):
            with reg.transaction():
                reg.set_value(key, "inner", 2)
                raise KeyError("inner fails")
        reg.set_value(key, "after", 3)
    assert [v.name for v in reg.values(key)] == ["outer", "after"]


def test_failed_mutation_leaves_nothing_behind(reg):
    reg.create_key(MACHINE + r"\V", volatile=True)
    with pytest.raises(VolatileParentError):
        reg.create_key(MACHINE + r"\V\a\b")  # fails on the first new component
    with pytest.raises(InvalidPathError):
        with reg.transaction():
            reg.create_key(MACHINE + r"\W\x")
            reg.create_key("bad path")
    assert not reg.key_exists(MACHINE + r"\W")


def test_keys_found_after_a_rollback_or_delete_are_the_database_s(reg):
    """Key look-ups are remembered per instance: what a rolled-back savepoint created, or
    a deleted key, must not be found again, and a key made again is a new, empty key."""
    base = reg.create_key(MACHINE + r"\Cache")
    with reg.transaction():
        with pytest.raises(KeyError):
            with reg.transaction():
                reg.create_key(base + r"\Gone\Deeper")
                reg.set_value(base + r"\gone\deeper", "v", 1)
                raise KeyError("inner fails")
        assert not reg.key_exists(base + r"\GONE")
        reg.create_key(base + r"\Kept")
    assert reg.subkeys(base) == ["Kept"]
    reg.set_value(base + r"\kept", "old", 1)
    reg.delete_key(base + r"\KEPT")
    assert not reg.key_exists(base + r"\Kept")
    with pytest.raises(KeyNotFoundError):
        reg.set_value(base + r"\Kept", "v", 1)
    assert reg.create_key(base + r"\kEPT") == base + r"\kEPT"   # the new key's case
    assert reg.values(base + r"\Kept") == []
    reg.create_key(MACHINE + r"\Vol", volatile=True)
    reg.discard_volatile()
    assert not reg.key_exists(MACHINE + r"\vol")
    reg.close()
    with pytest.raises(RegistryError, match="closed"):
        reg.values(base)


def _statements(reg: Registry) -> list[str]:
    """Every SQL statement the registry runs from now on (SQLite's trace hook)."""
    seen: list[str] = []
    reg._conn.set_trace_callback(lambda sql: seen.append(sql.split()[0].upper()))
    return seen


def test_writes_run_only_the_statements_they_need(reg):
    """A driver load writes ~60 values and ~50 keys per matrix cell: a value is one
    statement (atomic alone, or part of the caller's transaction), a new key under a key
    this instance made is one INSERT (its subkeys are all known), an existing one none."""
    seen = _statements(reg)
    base = reg.create_key(MACHINE + r"\Services\Serial")  # a new registry knows all its keys
    assert seen == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
    seen.clear()
    reg.set_value(base, "Start", 1)
    assert seen == ["INSERT"]
    seen.clear()
    reg.create_key(base + r"\Parameters\Deeper")     # two new keys: one transaction
    assert seen == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
    seen.clear()
    reg.create_key(base + r"\parameters")             # known: no statement at all
    reg.create_key(base + r"\Parameters\Other")       # parent made here: no look-up first
    assert not reg.key_exists(base + r"\Parameters\Missing")   # nor to find it absent
    assert seen == ["INSERT"]
    seen.clear()
    with reg.transaction():                            # inside: no savepoint per write
        reg.set_value(base + r"\Parameters", "a", 1)
        reg.delete_value(base + r"\Parameters", "a")
    assert seen == ["BEGIN", "INSERT", "DELETE", "COMMIT"]
    # After a delete, what the instance knew is forgotten: a name is asked for again.
    reg.delete_key(base + r"\Parameters\Other")
    seen.clear()
    assert reg.create_key(base + r"\PARAMETERS\other") == base + r"\Parameters\other"
    assert seen == ["SELECT"] * 5 + ["INSERT"]   # MACHINE, Services, Serial, Parameters, other


def test_a_single_write_that_fails_leaves_the_outer_transaction_usable(reg):
    """Without a savepoint of its own, a failed one-statement write must still change
    nothing and leave the caller's transaction to commit or roll back as before."""
    vol = reg.create_key(MACHINE + r"\Vol", volatile=True)
    with reg.transaction():
        reg.set_value(vol, "kept", 1)
        with pytest.raises(VolatileParentError):
            reg.create_key(vol + r"\NotVolatile")
        with pytest.raises(KeyNotFoundError):
            reg.set_value(vol + r"\Missing", "v", 1)
        with pytest.raises(RegistryTypeError):
            reg.set_value(vol, "bad", object())
        with pytest.raises(ValueNotFoundError):
            reg.delete_value(vol, "absent")
        reg.create_key(vol + r"\Child", volatile=True)
    assert [v.name for v in reg.values(vol)] == ["kept"]
    assert reg.subkeys(vol) == ["Child"]


def test_walk_and_format_tree_enumerate_as_subkeys_does(reg):
    """The walk reads a subtree in two queries; its order is still the per-key
    enumeration (subkeys sorted by folded name, values in creation order)."""
    root = reg.create_key(MACHINE + r"\Walk")
    for name in ("b", "A", "straße", "Ä", "a1", "_z", "C"):
        reg.create_key(rf"{root}\{name}\Sub")
    reg.create_key(rf"{root}\V", volatile=True)
    for name, value in (("z", 1), ("a", "x"), ("M", 2)):
        reg.set_value(rf"{root}\b", name, value)
    reg.set_value(rf"{root}\b", "a", "replaced")   # keeps its slot

    def by_key(path: str) -> list[tuple[str, list]]:
        out = [(reg.canonical_path(path), reg.values(path))]
        for name in reg.subkeys(path):
            out += by_key(rf"{path}\{name}")
        return out

    assert list(reg.walk(root.upper())) == by_key(root)
    assert [v.name for v in dict(reg.walk(root))[root + r"\b"]] == ["z", "a", "M"]
    tree = format_tree(reg, root)
    assert f"{root}\\V  [volatile]" in tree.splitlines() and f"{root}\\b" in tree.splitlines()
    assert list(reg.walk(root + r"\A\Sub")) == [(root + r"\A\Sub", [])]
    with pytest.raises(KeyNotFoundError):
        list(reg.walk(root + r"\nothing"))


def test_save_writes_an_in_memory_registry_to_a_new_file(reg, tmp_path):
    key = reg.create_key(SERIAL_KEY, volatile=True)
    reg.set_value(key, r"\Device\Serial0.Raw", COM1)
    path = reg.save(tmp_path / "kept.sqlite")
    with pytest.raises(RegistryFileError, match="exists"):
        reg.save(path)                       # never over an existing file
    with reg.transaction(), pytest.raises(RegistryError, match="transaction"):
        reg.save(tmp_path / "mid.sqlite")
    assert not (tmp_path / "mid.sqlite").exists()
    with Registry(path, create=False) as saved:
        assert list(saved.walk(MACHINE)) == list(reg.walk(MACHINE))
        assert saved.get(key, r"\Device\Serial0.Raw") == COM1


def test_fold_is_per_character_upcasing():
    """Whole-string upper case where no character grows, else one character at a time."""
    assert fold("Serial0.Raw") == "SERIAL0.RAW"
    assert fold("straße") == "STRAßE"            # ß → SS would change the length
    assert fold("ŉa") == "ŉA" and fold("ǰ") == "ǰ"
    assert fold("ärger") == "ÄRGER" and fold("ı") == "I"
    for text in ("ßa", "ﬀx", "İi", "σς", "", "ßa" * 200):   # (a long name is not remembered)
        assert fold(text) == "".join(c.upper() if len(c.upper()) == 1 else c for c in text)


# ---------------------------------------------------------------------------------------
# Files, locking, durability


def test_file_registry_persists_and_records_its_layout(tmp_path):
    path = tmp_path / "m.sqlite"
    with Registry(path, arch="x86") as r:
        r.create_key(SERIAL_KEY, volatile=True)
        r.set_value(SERIAL_KEY, r"\Device\Serial0.Raw", COM1)
    with Registry(path) as r:
        assert r.arch is Arch.X86
        assert r.get_value(SERIAL_KEY, r"\Device\Serial0.Raw").data == COM1.pack(Arch.X86)
    with pytest.raises(RegistryFileError, match="x86"):
        Registry(path, arch=Arch.X64)


def test_second_instance_is_refused(tmp_path):
    path = tmp_path / "m.sqlite"
    with Registry(path):
        with pytest.raises(RegistryLockedError) as info:
            Registry(path, timeout=0.05)
        assert info.value.status == NTSTATUS.STATUS_SHARING_VIOLATION
        other = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(f"""
                from harness.nt.registry import Registry
                from harness.nt.errors import RegistryLockedError
                try:
                    Registry({str(path)!r}, timeout=0.05)
                except RegistryLockedError:
                    print("locked")
            """)], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert other.stdout.strip() == "locked", other.stderr
    Registry(path).close()  # released on close


def test_bad_files(tmp_path):
    with pytest.raises(RegistryFileError, match="does not exist"):
        Registry(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryFileError):
        Registry(junk)
    import sqlite3
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(RegistryFileError, match="not a harness registry"):
        Registry(other)


def test_unique_registry_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    a = unique_registry_path(tmp_path / "runs", machine="pc/at 1")
    b = unique_registry_path(tmp_path / "runs", machine="pc/at 1")
    assert a != b and a.parent == b.parent == tmp_path / "runs"
    assert a.name.startswith(f"pc_at_1-{os.getpid()}-gw3-") and a.suffix == ".sqlite"


_CRASHER = textwrap.dedent("""
    import os, sys
    from harness.nt.registry import Registry
    from harness.nt.resources import CM_RESOURCE_LIST, Port, Isa
    path, mode = sys.argv[1], sys.argv[2]
    r = Registry(path)
    key = r"\\Registry\\Machine\\HARDWARE\\RESOURCEMAP\\OtherDrivers\\Serial"
    r.create_key(key, volatile=True)
    r.set_value(key, "claim.Raw", CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8)))
    r.set_value(key, "claim.Translated", CM_RESOURCE_LIST.single(Isa, 0, Port(0x3F8, 8)))
    with r.transaction():
        r.set_value(key, "claim.Raw", CM_RESOURCE_LIST.single(Isa, 0, Port(0x2F8, 8)))
        if mode == "mid":
            print("ready", flush=True)
            sys.stdin.readline()  # parent kills us here, half-way through the replacement
        r.set_value(key, "claim.Translated", CM_RESOURCE_LIST.single(Isa, 0, Port(0x2F8, 8)))
    print("ready", flush=True)
    sys.stdin.readline()
""")


@pytest.mark.parametrize("mode, expected_start", [("mid", 0x3F8), ("committed", 0x2F8)])
def test_sigkill_leaves_old_or_new_state(tmp_path, mode, expected_start):
    path = tmp_path / "m.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _CRASHER, str(path), mode], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.kill()  # SIGKILL: no cleanup, no commit, no close
    finally:
        proc.wait(timeout=30)
    with Registry(path) as r:  # the dead process's lock went with it
        key = SERIAL_KEY
        raw = r.get(key, "claim.Raw")
        translated = r.get(key, "claim.Translated")
        assert raw.descriptors[0].partials[0].start == expected_start
        assert translated.descriptors[0].partials[0].start == expected_start


# ---------------------------------------------------------------------------------------
# regedit export


def test_export_format(reg, tmp_path):
    key = reg.create_key(SERIAL_KEY, volatile=True)
    reg.set_value(key, "", "Serial ports")
    reg.set_value(key, r'Quote"And\Back', "C:\\Windows\\")
    reg.set_value(key, "Level", 10)
    reg.set_value(key, "Ports", ["COM1", "COM2"])
    reg.set_value(key, r"\Device\Serial0.Raw", COM1)
    text = export_text(reg, RESOURCE_MAP)
    lines = text.split("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    assert lines[0] == HEADER and lines[1] == ""
    assert lines[2] == r"[HKEY_LOCAL_MACHINE\HARDWARE\RESOURCEMAP]"
    assert r"[HKEY_LOCAL_MACHINE\HARDWARE\RESOURCEMAP\OtherDrivers\Serial]" in lines
    assert '@="Serial ports"' in lines
    assert r'"Quote\"And\\Back"="C:\\Windows\\"' in lines
    assert '"Level"=dword:0000000a' in lines
    # 15 + 21 * 3 = 78 >= 77 characters after the 21st byte: regedit wraps there.
    ports = lines.index('"Ports"=hex(7):43,00,4f,00,4d,00,31,00,00,00,43,00,4f,00,4d,00,32,00,'
                        '00,00,00,\\')
    assert lines[ports + 1] == "  00"
    # The resource list: hex(8), a line breaks once it reaches 77 characters; the 31-char
    # prefix takes 16 bytes (31 + 48 = 79, plus '\'), continuation lines 25 bytes
    # (2 + 75 = 77, plus '\'); the bytes are the x64 packing.
    start = next(i for i, l in enumerate(lines) if l.startswith(r'"\\Device\\Serial0.Raw"'))
    block = []
    for line in lines[start:]:
        block.append(line)
        if not line.endswith("\\"):
            break
    assert block[0].startswith(r'"\\Device\\Serial0.Raw"=hex(8):')
    assert len(block[0]) == 80 and len(block[0].split(":", 1)[1].split(",")) == 17
    assert all(len(l) == 78 for l in block[1:-1]) and len(block[-1]) <= 77
    assert all(l.startswith("  ") for l in block[1:])
    assert len(block[1].strip().rstrip("\\").rstrip(",").split(",")) == 25
    joined = "".join(l.strip().rstrip("\\") for l in block).split(":", 1)[1]
    assert bytes.fromhex(joined.replace(",", "")) == COM1.pack(Arch.X64)
    assert text.endswith("\r\n\r\n")
    out = tmp_path / "out.reg"
    export_reg(reg, out, RESOURCE_MAP)
    raw = out.read_bytes()
    assert raw[:2] == b"\xff\xfe" and raw[2:].decode("utf-16-le") == text


def test_export_keeps_non_canonical_bytes_exact(reg):
    key = reg.create_key(MACHINE + r"\K")
    reg.set_value(key, "unterminated", "ab".encode("utf-16-le"), RegType.REG_SZ)
    reg.set_value(key, "newline", "a\r\nb")
    reg.set_value(key, "shortdword", b"\1\2", RegType.REG_DWORD)
    reg.set_value(key, "custom", b"\xAA", 0x1234)
    text = export_text(reg, key)
    assert '"unterminated"=hex(1):61,00,62,00' in text
    assert '"newline"=hex(1):61,00,0d,00,0a,00,62,00,00,00' in text
    assert '"shortdword"=hex(4):01,02' in text
    assert '"custom"=hex(1234):aa' in text
    with Registry() as other:
        import_text(other, text)
        assert other.values(key) == reg.values(key)


def test_export_escapes_line_breaks_and_nuls_in_names(reg):
    key = reg.create_key(MACHINE + r"\K")
    for name in ("two\nlines", "cr\rhere", "nul\0in", 'all\\"\r\n\0'):
        reg.set_value(key, name, 1)
    text = export_text(reg, key)
    assert '"two\\nlines"=dword:00000001' in text and '"nul\\0in"' in text
    with Registry() as other:
        import_text(other, text)
        assert other.values(key) == reg.values(key)


def test_hkey_mapping():
    assert to_hkey(r"\Registry\Machine\HARDWARE") == r"HKEY_LOCAL_MACHINE\HARDWARE"
    assert to_hkey(r"\REGISTRY\USER") == "HKEY_USERS"
    assert from_hkey(r"hkey_local_machine\System") == r"\REGISTRY\MACHINE\System"
    with pytest.raises(ValueError):
        from_hkey(r"HKEY_CURRENT_USER\Software")


# ---------------------------------------------------------------------------------------
# regedit import


def _check_sample(r: Registry) -> None:
    node = MACHINE + r"\HARDWARE\DESCRIPTION\System\MultifunctionAdapter\0\SerialController\0"
    assert r.get(node, "Identifier") == "COM1"
    assert r.get(node, "Component Information") == struct.pack("<IHHII", 0x60, 0, 0, 0,
                                                               0xFFFFFFFF)
    config = r.get(node, "Configuration Data")
    assert config == CM_FULL_RESOURCE_DESCRIPTOR.of(
        Isa, 0, Port(0x3F8, 7),
        Interrupt(4, 4, share=CmResourceShareUndetermined, flags=CM_RESOURCE_INTERRUPT_LATCHED),
        DeviceSpecific.of(CM_SERIAL_DEVICE_DATA(baud_clock=1843200)))
    key = SERIAL_KEY
    assert r.canonical_path(key) == MACHINE + r"\HARDWARE\RESOURCEMAP\OtherDrivers\Serial"
    assert r.get(key, "") == "Serial ports"
    assert r.get(key, r"\Device\Serial0.Raw") == COM1
    assert r.get(key, 'Quote"And\\Backslash') == "C:\\Windows\\"
    assert r.get(key, "Ports") == ("COM1", "COM2")
    assert r.get_value(key, "Path").type == RegType.REG_EXPAND_SZ
    assert r.get(key, "Path") == "%X%"
    assert r.get_value(key, "Big").type == RegType.REG_QWORD and r.get(key, "Big") == 2**32
    assert r.get(key, "DebugLevel") == 10
    assert r.get(key, "Obsolete", None) is None
    assert not r.key_exists(MACHINE + r"\HARDWARE\Scratch")
    assert r.get(key, "BasicConfigVector") == IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, [
        IO_RESOURCE_LIST([
            PortRequirement(8, 8, 0x3F8, 0x3FF, option=IO_RESOURCE_PREFERRED,
                            flags=CM_RESOURCE_PORT_IO | CM_RESOURCE_PORT_16_BIT_DECODE),
            InterruptRequirement(3, 4, share=CmResourceShareUndetermined,
                                 flags=CM_RESOURCE_INTERRUPT_LATCHED)])])
    assert [v.name for v in r.values(key)] == [
        "", r"\Device\Serial0.Raw", 'Quote"And\\Backslash', "Ports", "Path", "Big",
        "DebugLevel", "BasicConfigVector"]


def test_hand_written_sample_imports_utf8(reg):
    assert import_reg(reg, DATA / "sample_hardware.reg") == 13
    _check_sample(reg)


def test_hand_written_sample_imports_utf16_with_bom(reg, tmp_path):
    text = (DATA / "sample_hardware.reg").read_text(encoding="utf-8").replace("\n", "\r\n")
    # In a UTF-16 file string types in hex form are UTF-16LE bytes (in the sample: ANSI).
    for ansi in ("43,4f,4d,31,00,43,4f,4d,32,00,00", "25,58,25,00"):
        text = text.replace(ansi, ",".join(f"{b:02x}" for b in bytes.fromhex(
            ansi.replace(",", "")).decode().encode("utf-16-le")))
    path = tmp_path / "sample16.reg"
    path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    import_reg(reg, path)
    _check_sample(reg)


def test_round_trip_through_a_file(reg, tmp_path):
    import_reg(reg, DATA / "sample_hardware.reg")
    out = tmp_path / "export.reg"
    export_reg(reg, out)
    with Registry() as copy:
        import_reg(copy, out)
        _check_sample(copy)
        assert list(copy.walk(MACHINE)) == list(reg.walk(MACHINE))
        assert export_text(copy) == export_text(reg)


K = "[HKEY_LOCAL_MACHINE\\A]"
BAD_FILES = [
    ("", 1, "empty first line"),
    (f"\n{HEADER}\n", 1, "empty first line"),  # regedit wants the header on line 1
    ("REGEDIT\n", 1, "Windows 3.1"),
    ("REGEDIT 4\n", 1, "imports nothing"),
    ("Windows Registry Editor Version 4.00\n", 1, "expected the header"),
    (f"{HEADER}\n\n\"x\"=\"y\"\n", 3, "outside a key section"),
    (f"{HEADER}\n[-HKEY_LOCAL_MACHINE\\A]\n\"x\"=\"y\"\n", 3, "outside a key section"),
    (f"{HEADER}\n[HKEY_LOCAL_MACHINE\\A\n", 2, "expected ']'"),
    (f"{HEADER}\n[HKEY_CURRENT_USER\\A]\n", 2, "HKEY_LOCAL_MACHINE or HKEY_USERS"),
    (f"{HEADER}\n{K} junk\n", 2, "after ']'"),
    (f"{HEADER}\n[ HKEY_LOCAL_MACHINE\\A]\n", 2, "start with a blank"),
    (f"{HEADER}\n[-HKEY_LOCAL_MACHINE]\n", 2, "root key cannot be deleted"),
    (f"{HEADER}\n[-X\\Y]\n", 2, "HKEY_ after '-'"),
    (f"{HEADER}\n{K}\n\"x\"\"y\"\n", 3, "expected '='"),
    (f"{HEADER}\n{K}\n\"x=1\n", 3, "unterminated value name"),
    (f"{HEADER}\n{K}\n\"x\"=\"abc\n", 3, "unterminated string"),
    (f"{HEADER}\n{K}\n\"x\"=\"a\" junk\n", 3, "after the closing quote"),
    (f"{HEADER}\n{K}\n\"x\"=- junk\n", 3, "after '=-'"),
    (f"{HEADER}\n{K}\n\"x\"=dword:123456789\n", 3, "expected dword"),
    (f"{HEADER}\n{K}\n\"x\"=dword:12 34\n", 3, "expected dword"),
    (f"{HEADER}\n{K}\n\"x\"=dword:\n", 3, "expected dword"),
    (f"{HEADER}\n{K}\n\"x\"=hex:01,zz\n", 3, "'zz'"),
    (f"{HEADER}\n{K}\n\"x\"=hex:01,,02\n", 3, "expected a hex byte"),
    (f"{HEADER}\n{K}\n\"x\"=hex:100\n", 3, "'100'"),
    (f"{HEADER}\n{K}\n\"x\"=hex:01 02\n", 3, "expected ','"),
    (f"{HEADER}\n{K}\n\"x\"=hex:01,\\ 02\n", 3, "after the continuation"),
    (f"{HEADER}\n{K}\n\"x\"=hex:01,\\\n  02,\\\n{K}\n", 5, "continuing the value of line 3"),
    (f"{HEADER}\n{K}\n\"x\"=hex:01,\\\n  0g\n", 4, "expected ','"),
    (f"{HEADER}\n{K}\n\"x\"=qword:1\n", 3, "expected a quoted string"),
    (f"{HEADER}\n{K}\n\"x\"=hex(0x2):00\n", 3, r"expected hex\(N\)"),
    (f"{HEADER}\n{K}\n\"x\"=hex(100000000):00\n", 3, r"expected hex\(N\)"),
    (f"{HEADER}\n{K}\nfoo\n", 3, r"expected '\[KEY\]'"),
    (f"{HEADER}\n{K}\n# not a comment in a .reg file\n", 3, r"expected '\[KEY\]'"),
    (f"{HEADER}\n{K}\n\"x\"=\"a\0b\"\n", 3, "NUL character"),
    (f"{HEADER}\n{K}\n\"x\"=hex(8):01,00,00,00\n", 3, "not a valid REG_RESOURCE_LIST"),
    (f"{HEADER}\n[HKEY_LOCAL_MACHINE\\A\\\\B]\n", 2, "empty key name"),
]


@pytest.mark.parametrize("text, line, match", BAD_FILES, ids=[b[2] for b in BAD_FILES])
def test_import_errors_name_line_and_expectation(reg, text, line, match):
    with pytest.raises(RegFileError, match=match) as info:
        import_text(reg, text, source="bad.reg")
    assert info.value.line == line
    assert str(info.value).startswith(f"bad.reg:{line}: ")
    assert str(info.value).count("[STATUS_") == 1  # one status, not one per layer
    assert reg.subkeys(MACHINE) == []  # nothing applied


def test_import_is_atomic(reg):
    text = f"{HEADER}\n[HKEY_LOCAL_MACHINE\\Good]\n\"a\"=dword:1\n[HKEY_LOCAL_MACHINE\\V]\n" \
           "\"r\"=hex(8):05,00,00,00\n"
    with pytest.raises(RegFileError, match="line 5|:5:"):
        import_text(reg, text)
    assert not reg.key_exists(MACHINE + r"\Good")
    import_text(reg, text, validate=False)  # opt-out: stored as given, decoded on demand
    assert reg.get_value(MACHINE + r"\V", "r").data == b"\5\0\0\0"


def test_import_encodings(reg, tmp_path):
    body = f"{HEADER}\r\n[HKEY_LOCAL_MACHINE\\É]\r\n\"ü\"=\"ß\"\r\n"
    (tmp_path / "bom8.reg").write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    (tmp_path / "be.reg").write_bytes(b"\xfe\xff" + body.encode("utf-16-be"))
    (tmp_path / "latin1.reg").write_bytes(body.encode("latin-1"))
    import_reg(reg, tmp_path / "bom8.reg")
    assert reg.get(MACHINE + "\\é", "Ü") == "ß"
    with pytest.raises(RegFileError, match="big-endian"):
        import_reg(reg, tmp_path / "be.reg")
    with pytest.raises(RegFileError, match="UTF-8") as info:
        import_reg(reg, tmp_path / "latin1.reg")
    assert info.value.line == 2
    with pytest.raises(RegFileError, match="cannot read"):
        import_reg(reg, tmp_path / "missing.reg")


def test_parse_reg_operations():
    ops = parse_reg(f"{HEADER}\n[HKEY_USERS\\S]\n@=hex:\n\"d\"=-\n[-HKEY_USERS\\S]\n")
    assert [(o.line, o.kind, o.name, o.data) for o in ops] == [
        (2, "key", "", b""), (3, "value", "", b""), (4, "delete_value", "d", b""),
        (5, "delete_key", "", b"")]
    assert ops[1].type == RegType.REG_BINARY


# Random trees survive export → import byte for byte.
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\\\r\n\0"),
                min_size=1, max_size=12)
value_names = st.text(st.characters(blacklist_categories=("Cs",),
                                    blacklist_characters="\r\n"), max_size=12)
values = st.one_of(
    st.tuples(st.sampled_from([0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 0x99]), st.binary(max_size=90)),
    st.tuples(st.just(RegType.REG_SZ), st.text(max_size=20)),
    st.tuples(st.just(RegType.REG_DWORD), st.integers(0, 2**32 - 1)),
    st.tuples(st.just(RegType.REG_MULTI_SZ),
              st.lists(st.text(min_size=1, max_size=5).filter(lambda s: "\0" not in s),
                       max_size=3)),
)
trees = st.lists(st.tuples(st.lists(names, min_size=1, max_size=3),
                           st.lists(st.tuples(value_names, values), max_size=3)),
                 max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_export_import_round_trip(tree):
    with Registry() as src:
        for parts, vals in tree:
            key = src.create_key("\\".join([MACHINE, *parts]))
            for name, (reg_type, value) in vals:
                if isinstance(value, str) and "\0" in value:
                    value = value.encode("utf-16-le", "surrogatepass")
                src.set_value(key, name, value, reg_type)
        text = export_text(src)
        with Registry() as dst:
            import_text(dst, text, validate=False)
            assert list(dst.walk(MACHINE)) == list(src.walk(MACHINE))


# ---------------------------------------------------------------------------------------
# Tree print and CLI


def test_format_tree_decodes_resource_lists(reg):
    import_reg(reg, DATA / "sample_hardware.reg")
    reg.set_value(SERIAL_KEY, "Broken.Raw", b"\2\0\0\0", RegType.REG_RESOURCE_LIST)
    text = format_tree(reg, RESOURCE_MAP)
    lines = text.splitlines()
    assert lines[0] == MACHINE + r"\HARDWARE\RESOURCEMAP"
    row = next(l for l in lines if l.strip().startswith("Port") and "0x3f8-0x3ff" in l)
    assert row.split()[-2:] == ["DeviceExclusive", "IO"]
    irq = next(l for l in lines if l.strip().startswith("Interrupt") and "level 4" in l)
    assert "vector 4" in irq and "Undetermined" in irq and irq.endswith("LATCHED")
    assert any("IO|16_BIT_DECODE" in l and "IO_RESOURCE_PREFERRED" in l for l in lines)
    assert any("Broken.Raw : REG_RESOURCE_LIST <undecodable:" in l for l in lines)
    assert "    (Default) : REG_SZ \"Serial ports\"" in text


def test_cli_import_and_dump(tmp_path, capsys):
    db = tmp_path / "m.sqlite"
    assert cli_main(["registry", "import", str(DATA / "sample_hardware.reg"), str(db)]) == 0
    assert cli_main(["registry", "dump", str(db), "--path",
                     r"\Registry\Machine\Hardware\ResourceMap"]) == 0
    out = capsys.readouterr().out
    assert r"\Device\Serial0.Raw : REG_RESOURCE_LIST (60 bytes, x64" in out
    out_reg = tmp_path / "out.reg"
    assert cli_main(["registry", "dump", str(db), "--reg", str(out_reg)]) == 0
    with Registry() as r:
        import_reg(r, out_reg)
        _check_sample(r)


def test_cli_errors(tmp_path, capsys):
    assert cli_main(["registry", "dump", str(tmp_path / "none.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.reg"
    bad.write_text(f"{HEADER}\n[HKEY_LOCAL_MACHINE\\A]\n\"x\"=hex:zz\n")
    assert cli_main(["registry", "import", str(bad), str(tmp_path / "m.sqlite")]) == 2
    assert "bad.reg:3:" in capsys.readouterr().err
    assert cli_main(["registry", "import", str(DATA / "sample_hardware.reg"),
                     str(tmp_path / "x86.sqlite"), "--arch", "x86"]) == 2
    assert "x86 layout" in capsys.readouterr().err  # the sample holds x64 lists
    # A refused import leaves no database it created behind (nor its WAL files) ...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.reg"]
    # ... and an existing one as it was.
    db = tmp_path / "kept.sqlite"
    assert cli_main(["registry", "import", str(DATA / "sample_hardware.reg"), str(db)]) == 0
    before = db.read_bytes()
    assert cli_main(["registry", "import", str(bad), str(db)]) == 2
    assert db.exists() and db.read_bytes() == before


def _everything(registry: Registry) -> tuple:
    """A registry's whole state: its SQLite schema and rows, and the keys it remembers."""
    db = registry._conn
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    return (list(db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name")),
            {t: list(db.execute(f"SELECT * FROM {t} ORDER BY rowid")) for t in tables},
            dict(registry._keys), set(registry._all_children_known), registry.arch)


@pytest.mark.parametrize("arch", [None, "x86", "x64"])
def test_an_in_memory_registry_is_a_fresh_empty_one_however_it_is_made(tmp_path, arch):
    """In-memory registries after the first are copies of this process's first empty one
    (Registry._copy_empty): each must be what making one from scratch gives (as a file
    is made), and nothing one registry wrote may show in the next."""
    here = rf"{MACHINE}\HARDWARE\Written\Here"
    first = Registry(":memory:", arch=arch)
    first.create_key(here)
    first.set_value(here, "Value", 7)
    copy = Registry(":memory:", arch=arch)
    with Registry(tmp_path / "made.sqlite", arch=arch) as made:
        assert _everything(copy) == _everything(made)
    assert not copy.key_exists(rf"{MACHINE}\HARDWARE\Written")
    copy.create_key(here)
    assert _everything(copy)[1]["keys"] == _everything(first)[1]["keys"]   # the same ids
    assert copy.values(here) == [] and first.get(here, "Value") == 7
    with Registry(copy.save(tmp_path / "copy.sqlite")) as saved:
        assert saved.key_exists(here) and saved.arch is copy.arch
    first.close()
    copy.close()


def test_in_memory_registries_are_made_from_any_thread():
    import threading
    Registry(":memory:").close()   # this thread's first
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with Registry(":memory:") as registry:
                registry.create_key(rf"{MACHINE}\HARDWARE\Thread")
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
    thread = threading.Thread(target=other)
    thread.start()
    thread.join(30)
    assert errors == []
