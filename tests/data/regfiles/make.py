"""Writes the .reg dialect corpus: every file twice, as regedit 5.00 writes (UTF-16LE with
a BOM, CRLF) and as an ANSI file (UTF-8 here, CRLF). Run from this folder:
``python make.py``. The expected imports are in tests/test_regfile_dialect.py."""

from pathlib import Path

H5, H4 = "Windows Registry Editor Version 5.00", "REGEDIT4"
K = r"[HKEY_LOCAL_MACHINE\SOFTWARE\Dialect]"

# name: text. "{SZHEX}" is string data in hex form: ANSI bytes in the ANSI file, UTF-16LE
# in the UTF-16 file (regedit reads hex(1)/(2)/(7) by the file's encoding).
ACCEPTED = {
    "comment_after_key": f"{H5}\n\n{K} ; the key\n\"v\"=dword:00000001\n",
    "comment_after_values": (f"{H5}\n\n{K}\n@=\"default\" ; c1\n\"s\"=\"text\"\t; c2\n"
                             "\"d\"=dword:0000002a ;c3\n\"b\"=hex:01,02 ; c4\n\"gone\"=\"x\"\n"
                             "\"gone\"=- ; c5\n"),
    "comment_after_continuation": f"{H5}\n\n{K}\n\"b\"=hex:01,02,\\ ; more below\n  03,04\n",
    "continuation_with_blank_and_comment_lines": (
        f"{H5}\n\n{K}\n\"b\"=hex:01,02,\\\n\n; a comment between the lines\n  03,\\\n"
        "    ; indented comment\n  04\n\"after\"=dword:5\n"),
    "upper_case_type_prefixes": (f"{H5}\n\n{K}\n\"d\"=DWORD:0000000A\n\"b\"=HEX:0A,0b\n"
                                 "\"q\"=Hex(B):01,00,00,00,00,00,00,00\n\"n\"=hex(0):\n"),
    "lone_cr_in_string": f"{H5}\n\n{K}\n\"s\"=\"one\rtwo\"\n\"next\"=dword:1\n",
    "string_escapes": f"{H5}\n\n{K}\n\"s\"=\"a\\\\b \\\"q\\\" \\n \\r end\"\n\"u\"=\"\\q\"\n\"z\"=\"cut\\0here\"\n",
    "delete_key_then_recreate": (f"{H5}\n\n{K}\n\"old\"=dword:1\n\n"
                                 "[-HKEY_LOCAL_MACHINE\\SOFTWARE\\Dialect]\n\n"
                                 f"{K}\n\"new\"=dword:2\n"),
    "delete_missing_things": (f"{H5}\n\n[-HKEY_LOCAL_MACHINE\\SOFTWARE\\Nowhere]\n{K}\n"
                              "\"never\"=-\n\"v\"=dword:3\n"),
    "blanks_around_tokens": (f"  {H5}\n\n  {K}\n  \"s\" = \"x\"  \n\t@ =\tdword: 0000000b\n"
                             "\"b\"= hex: 01, 2,0003\n"),
    "file_ends_after_continuation": f"{H5}\n\n{K}\n\"b\"=hex:01,02,\\",
    "string_types_in_hex": f"{H5}\n\n{K}\n\"e\"=hex(2):{{SZHEX:%SystemRoot%}}\n\"m\"=hex(7):{{SZHEX:a\0b\0}}\n",
    "regedit4": f"{H4}\n\n{K}\n\"s\"=\"four\"\n\"e\"=hex(2):{{SZHEX:%PATH%}}\n\"d\"=dword:00000004\n",
}
REFUSED = {  # name: (text, line, what the error says)
    "junk_after_key": (f"{H5}\n\n{K} junk\n", 3, "after ']'"),
    "hash_comment": (f"{H5}\n\n{K}\n# regedit's comments start with ';'\n", 4, "expected '\\[KEY\\]'"),
    "junk_after_string": (f"{H5}\n\n{K}\n\"s\"=\"x\" y\n", 4, "after the closing quote"),
    "bad_continuation_line": (f"{H5}\n\n{K}\n\"b\"=hex:01,\\\n\"next\"=dword:1\n", 5,
                              "continuing the value of line 4"),
    "no_header_on_line_1": (f"\n{H5}\n\n{K}\n", 1, "header"),
    "blank_before_comma": (f"{H5}\n\n{K}\n\"b\"=hex:01 ,02\n", 4, "expected ','"),
    "unknown_type": (f"{H5}\n\n{K}\n\"q\"=qword:1\n", 4, "expected a quoted string"),
    "value_after_key_deletion": (f"{H5}\n\n{K}\n\"a\"=dword:1\n[-HKEY_LOCAL_MACHINE\\SOFTWARE\\Dialect]\n"
                                 "\"b\"=dword:2\n", 6, "outside a key section"),
}


def expand(text: str, encoding: str) -> str:
    out, rest = [], text
    while "{SZHEX:" in rest:
        head, _, tail = rest.partition("{SZHEX:")
        body, _, rest = tail.partition("}")
        raw = (body + "\0").encode(encoding)
        out += [head, ",".join(f"{b:02x}" for b in raw)]
    return "".join(out) + rest


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    crlf = lambda t: t.replace("\r", "\x00CR").replace("\n", "\r\n").replace("\x00CR", "\r")
    (folder / f"{name}.utf16.reg").write_bytes(
        b"\xff\xfe" + crlf(expand(text, "utf-16-le")).encode("utf-16-le"))
    (folder / f"{name}.ansi.reg").write_bytes(crlf(expand(text, "utf-8")).encode("utf-8"))


if __name__ == "__main__":
    here = Path(__file__).parent
    for name, text in ACCEPTED.items():
        write(here / "accepted", name, text)
    for name, (text, _, _) in REFUSED.items():
        write(here / "refused", name, text)
