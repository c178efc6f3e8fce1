r"""``harness registry``: inspect a machine's registry database and move it to/from regedit.

* ``harness registry dump DBFILE [--path KEY] [--reg OUT.reg]`` prints the tree with
  decoded resource lists, or writes a regedit 5.00 file instead;
* ``harness registry import FILE.reg DBFILE [--arch x86|x64] [--ansi-codepage CP]`` loads a
  .reg file atomically (creating the database if needed, in the layout the file's resource
  values show unless ``--arch`` says), in the dialect of :mod:`harness.nt.regfile`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from ..nt.regfile import (DEFAULT_ANSI, ansi_codec, apply_operations, export_reg, file_layout,
                          read_reg_file)
from ..nt.registry import REGISTRY_ROOT, Registry, format_tree
from ..nt.resources import Arch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "registry",
        description="Work with the SQLite registry database of a modelled machine.")
    sub = parser.add_subparsers(dest="registry_command", metavar="ACTION", required=True)

    dump = sub.add_parser("dump", help="print a registry tree (or write it as a .reg file)",
                          description="Print keys and values below KEY, resource lists "
                                      "decoded into type / range / share / flags rows.")
    dump.add_argument("dbfile", help="registry database file")
    dump.add_argument("--path", default=REGISTRY_ROOT,
                      help=r"key to start at, e.g. \Registry\Machine\Hardware\ResourceMap "
                           r"(default: \Registry)")
    dump.add_argument("--reg", metavar="OUT.reg",
                      help="write a regedit file (UTF-16LE) instead of printing")
    dump.set_defaults(func=run_dump)

    imp = sub.add_parser("import", help="load a regedit .reg file into a registry database",
                         description="Apply a 'Windows Registry Editor Version 5.00' or "
                                     "'REGEDIT4' file (the dialect regedit and Wine accept) in "
                                     "one transaction; nothing changes if any line is bad, and "
                                     "the error names the file and line.")
    imp.add_argument("regfile", help=".reg file (UTF-16LE with BOM, or ANSI/UTF-8)")
    imp.add_argument("dbfile", help="registry database file (created if missing)")
    imp.add_argument("--arch", choices=[a.value for a in Arch],
                     help="resource-list layout of a new database (default: the layout the "
                          "file's resource values show, x64 when they show none); must match "
                          "an existing one")
    imp.add_argument("--volatile", action="store_true", help="create the keys as volatile")
    imp.add_argument("--no-validate", dest="validate", action="store_false",
                     help="store resource-typed values even if they do not decode")
    imp.add_argument("--ansi-codepage", type=_codepage, default=DEFAULT_ANSI, metavar="CP",
                     help="Windows code page of an ANSI (REGEDIT4) file whose names or strings "
                          "are not ASCII, e.g. cp1252 or 1251 (default: UTF-8)")
    imp.set_defaults(func=run_import)


def _codepage(name: str) -> str:
    try:
        return ansi_codec(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run_dump(args: argparse.Namespace) -> int:
    with Registry(args.dbfile, create=False) as registry:
        if args.reg:
            export_reg(registry, args.reg, args.path)
            print(f"wrote {args.reg}", file=sys.stderr)
        else:
            sys.stdout.write(format_tree(registry, args.path))
    return 0


def run_import(args: argparse.Namespace) -> int:
    created = not os.path.lexists(args.dbfile)
    try:
        ops = read_reg_file(args.regfile, ansi_codepage=args.ansi_codepage)
        # A new database takes the layout of the machine the file comes from.
        arch = args.arch if args.arch or not created else file_layout(ops)
        with Registry(args.dbfile, arch=arch) as registry:
            count = apply_operations(registry, ops, source=args.regfile, volatile=args.volatile,
                                     validate=args.validate)
    except BaseException:
        # The import wrote nothing (it is one transaction); a database it created for
        # itself is then empty: none is left behind.
        if created:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(args.dbfile + suffix)
        raise
    print(f"imported {count} value(s) from {args.regfile} into {args.dbfile}", file=sys.stderr)
    return 0
