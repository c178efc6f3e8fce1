"""The .reg dialect corpus (tests/data/regfiles, written by its make.py): every construct
regedit and Wine's regedit accept, each in both encodings (UTF-16LE with BOM as regedit
5.00 writes, and ANSI/UTF-8), imports to the same values; every file regedit would not
import is refused naming file and line, with nothing applied."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness.nt.errors import RegFileError
from harness.nt.regfile import ansi_codec, import_reg, import_text, read_reg_bytes
from harness.nt.registry import (MACHINE, REG_BINARY, REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ,
                                 REG_NONE, REG_QWORD, REG_SZ, Registry)

CORPUS = Path(__file__).parent / "data" / "regfiles"
KEY = MACHINE + r"\SOFTWARE\Dialect"
ENCODINGS = ["utf16", "ansi"]


def _make():
    spec = importlib.util.spec_from_file_location("regfiles_make", CORPUS / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _make()

EXPECTED = {  # file: {value name: (type, decoded value)} under KEY after the import
    "comment_after_key": {"v": (REG_DWORD, 1)},
    "comment_after_values": {"": (REG_SZ, "default"), "s": (REG_SZ, "text"),
                             "d": (REG_DWORD, 42), "b": (REG_BINARY, b"\1\2")},
    "comment_after_continuation": {"b": (REG_BINARY, b"\1\2\3\4")},
    "continuation_with_blank_and_comment_lines": {"b": (REG_BINARY, b"\1\2\3\4"),
                                                  "after": (REG_DWORD, 5)},
    "upper_case_type_prefixes": {"d": (REG_DWORD, 10), "b": (REG_BINARY, b"\x0a\x0b"),
                                 "q": (REG_QWORD, 1), "n": (REG_NONE, b"")},
    "lone_cr_in_string": {"s": (REG_SZ, "one\rtwo"), "next": (REG_DWORD, 1)},
    "string_escapes": {"s": (REG_SZ, 'a\\b "q" \n \r end'), "u": (REG_SZ, "q"),
                       "z": (REG_SZ, "cut")},
    "delete_key_then_recreate": {"new": (REG_DWORD, 2)},
    "delete_missing_things": {"v": (REG_DWORD, 3)},
    "blanks_around_tokens": {"s": (REG_SZ, "x"), "": (REG_DWORD, 11),
                             "b": (REG_BINARY, b"\1\2\3")},
    "file_ends_after_continuation": {"b": (REG_BINARY, b"\1\2")},
    "string_types_in_hex": {"e": (REG_EXPAND_SZ, "%SystemRoot%"), "m": (REG_MULTI_SZ, ("a", "b"))},
    "regedit4": {"s": (REG_SZ, "four"), "e": (REG_EXPAND_SZ, "%PATH%"), "d": (REG_DWORD, 4)},
}


def test_corpus_is_what_make_writes():
    assert set(EXPECTED) == set(MAKE.ACCEPTED)
    for folder, names in (("accepted", MAKE.ACCEPTED), ("refused", MAKE.REFUSED)):
        files = sorted(p.name for p in (CORPUS / folder).glob("*.reg"))
        assert files == sorted(f"{n}.{e}.reg" for n in names for e in ENCODINGS)
    raw = (CORPUS / "accepted" / "comment_after_key.utf16.reg").read_bytes()
    assert raw.startswith(b"\xff\xfeW\0i\0") and b"\r\0\n\0" in raw  # as regedit 5.00 writes


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accepted_construct_imports_as_regedit_does(name, encoding):
    with Registry() as reg:
        import_reg(reg, CORPUS / "accepted" / f"{name}.{encoding}.reg")
        got = {v.name: (v.type, v.value) for v in reg.values(KEY)}
        assert got == EXPECTED[name]
        assert not reg.key_exists(MACHINE + r"\SOFTWARE\Nowhere")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", sorted(MAKE.REFUSED))
def test_refused_file_names_file_and_line_and_applies_nothing(name, encoding):
    _, line, match = MAKE.REFUSED[name]
    path = CORPUS / "refused" / f"{name}.{encoding}.reg"
    with Registry() as reg:
        with pytest.raises(RegFileError, match=match) as info:
            import_reg(reg, path)
        assert info.value.line == line and str(info.value).startswith(f"{path}:{line}: ")
        assert reg.subkeys(MACHINE) == []


@pytest.mark.parametrize("header", [MAKE.H5, MAKE.H4])
def test_utf16le_without_a_bom_is_named_as_such(header):
    """Tools that drop the BOM leave "W\\0i\\0n\\0..." (or "R\\0E\\0G\\0..."): refused at line
    1 saying what was found, not as a stray NUL; with the BOM the same text imports."""
    text = f"{header}\r\n\r\n{MAKE.K}\r\n\"v\"=dword:00000001\r\n"
    with pytest.raises(RegFileError) as err:
        read_reg_bytes(text.encode("utf-16-le"), source="nobom.reg")
    assert str(err.value).startswith("nobom.reg:1: UTF-16LE text without a byte-order mark")
    assert read_reg_bytes(b"\xff\xfe" + text.encode("utf-16-le")).text == text
    assert read_reg_bytes(text.encode("utf-8")).text == text  # ASCII is not mistaken for it


@pytest.mark.parametrize("name,accepted", [("1252", "cp1252"), ("cp1251", "cp1251"),
                                           ("windows-1252", "cp1252"), ("CP932", "cp932"),
                                           ("utf-8", "utf-8"), ("utf-16", None),
                                           ("base64", None), ("nope", None), ("", None)])
def test_ansi_code_page_names(name, accepted):
    if accepted:
        assert ansi_codec(name) == accepted
    else:
        with pytest.raises(ValueError, match="is not a code page"):
            ansi_codec(name)


@pytest.mark.parametrize("codepage,name,text", [
    ("cp1252", "Anschlüsse (COM & LPT)", "%SystemRoot%\\Gerät"),
    ("cp1251", "Порты (COM и LPT)", "Устройство"),
    ("cp932", "ポート (COM と LPT)", "デバイス"),
])
def test_an_ansi_file_in_a_windows_code_page(codepage, name, text):
    """A REGEDIT4 file written by regedit on a machine whose names are not ASCII is in that
    machine's code page: refused as UTF-8 (naming line and byte, and the option), read
    exactly once the code page is named, hex(2) string bytes included."""
    body = (f"REGEDIT4\r\n\r\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\{name}]\r\n"
            '"e"=hex(2):' + ",".join(f"{b:02x}" for b in text.encode(codepage)) + ",00\r\n")
    raw = body.encode(codepage)
    with pytest.raises(RegFileError) as err:
        read_reg_bytes(raw, source="ansi.reg")
    assert str(err.value).startswith("ansi.reg:3: invalid UTF-8 at byte ")
    assert "--ansi-codepage" in str(err.value)
    decoded = read_reg_bytes(raw, source="ansi.reg", ansi=codepage)
    assert decoded.text == body and not decoded.unicode
    with Registry() as reg:
        assert import_text(reg, decoded.text, unicode=False, ansi=decoded.ansi) == 1
        assert reg.get(MACHINE + "\\SOFTWARE\\" + name, "e") == text


def test_encoding_errors_give_the_file_byte_offset():
    """Offsets count the BOM: a UTF-16 file cut inside a code unit, a bad UTF-8 byte after
    a UTF-8 BOM."""
    text = f"{MAKE.H5}\r\n\r\n{MAKE.K}\r\n\"v\"=dword:00000001\r\n"
    raw = b"\xff\xfe" + text.encode("utf-16-le")
    with pytest.raises(RegFileError) as err:
        read_reg_bytes(raw[:-1], source="cut.reg")
    assert str(err.value).startswith(f"cut.reg:4: the file ends inside a UTF-16 code unit at "
                                     f"byte {len(raw) - 2} (cut short?)")
    bad = b"\xef\xbb\xbf" + text.encode("utf-8").replace(b"dword", b"dw\xffrd")
    with pytest.raises(RegFileError) as err:
        read_reg_bytes(bad, source="bad.reg")
    at = bad.index(bytes([0xFF]))
    assert f"bad.reg:4: invalid UTF-8 at byte {at}" in str(err.value)
    assert "--ansi-codepage" not in str(err.value)  # a UTF-8 BOM says the file is UTF-8
