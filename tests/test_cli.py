"""The ``harness`` command line, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CONFIGS, REPO


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_layout_json_prints_the_post_firmware_snapshot() -> None:
    result = harness("layout", str(CONFIGS / "machines" / "default.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["phase"] == "post-firmware" and data["machine"] == "default"
    owners = {r["owner"] for r in data["io"]}
    assert {"com1", "com2", "lpt1", "ne0", "sb0"} <= owners
    assert {f["qdev_id"] for f in data["pci"]} >= {"nic0", "nic1", "br0", "nic2"}


def test_layout_both_phases_prints_the_firmware_diff() -> None:
    result = harness("layout", str(CONFIGS / "machines" / "isapc.yaml"), "--phase", "both")
    assert result.returncode == 0, result.stderr
    assert "phase pre-firmware" in result.stdout and "phase post-firmware" in result.stdout
    assert "Changed by the firmware" in result.stdout


def test_bad_config_exits_2_with_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("machine: pc\ndevices:\n  - {model: isa-serial, id: c, irq: 99}\n")
    result = harness("layout", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: devices[0].irq:" in result.stderr and "Traceback" not in result.stderr


def test_bad_arguments_are_refused_by_the_parser() -> None:
    result = harness("layout", "x.yaml", "--phase", "later")
    assert result.returncode == 2 and "argument --phase: unknown choice 'later'; choose from: " in result.stderr


@pytest.mark.parametrize("command", [
    ["run", "example:machines/isapc"], ["layout", "example:machines/isapc"],
    ["verify", "example:machines/isapc"], ["pnp", "example:machines/isapc"],
    ["matrix", "example:matrices/devices", "--run", "--only", "machine=isapc devices=sb16"],
])
def test_a_missing_qemu_is_one_line(command, tmp_path) -> None:
    env = dict(os.environ, HARNESS_QEMU="no-such-qemu-binary")
    done = subprocess.run([sys.executable, "-m", "harness.cli", *command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"harness {command[0]}: error: QEMU binary 'no-such-qemu-binary' not found ($HARNESS_QEMU is "
        "'no-such-qemu-binary'): install QEMU (Debian: apt-get install qemu-system-x86) or set HARNESS_QEMU to its path"]


@pytest.mark.parametrize("args, says", [
    (["pnp", "--timeout", "nan"], "error: the command line: --timeout: must be a positive number of seconds, not nan"),
    (["pnp", "--timeout", "inf"], "error: the command line: --timeout: must be a positive number of seconds, not inf"),
    (["pnp", "--timeout", "0"], "error: the command line: --timeout: must be a positive number of seconds, not 0"),
    (["pnp", "--budget", "0"], "error: the command line: --budget: must be at least 1, not 0"),
])
def test_out_of_range_options_name_the_option_and_what_was_expected(args, says) -> None:
    # nan passed 'timeout <= 0' and ran the search with no time limit
    result = harness(*args[:1], str(CONFIGS / "machines" / "default.yaml"), *args[1:])
    assert result.returncode == 2 and result.stderr.splitlines() == [f"harness {args[0]}: {says}"]


def test_a_very_long_value_is_shown_cut_in_its_error(tmp_path: Path) -> None:
    bad = tmp_path / "long.yaml"
    bad.write_text(f"machine: pc\ndevices:\n  - {{model: isa-serial, id: {'a' * 5000}}}\n")
    result = harness("run", str(bad))
    line, = result.stderr.splitlines()
    assert result.returncode == 2 and len(line) < 300, line
    assert f"{bad}:3: devices[0].id: '{'a' * 60}...' (5000 characters) is not a valid id" in line


def test_examples_copy_into_a_folder_it_cannot_make_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = harness("examples", "--copy", "machines/default", "--to", str(blocker / "sub"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"harness examples: error: --to {blocker / 'sub'}: cannot make the folder")
    result = harness("examples", "--copy", "machines/default", "--to", str(tmp_path / "mine"))
    assert result.returncode == 0 and (tmp_path / "mine" / "default.yaml").read_text().startswith("#")


def test_a_run_folder_root_that_cannot_be_made_is_named_with_its_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = dict(os.environ, HARNESS_RUN_DIR=str(blocker))
    done = subprocess.run([sys.executable, "-m", "harness.cli", "layout", str(CONFIGS / "machines" / "isapc.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    # it said "[Errno 17] File exists: '...'"
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"harness layout: error: run folder root {blocker} (HARNESS_RUN_DIR) cannot be made: File exists"]


def test_a_cache_folder_that_cannot_be_made_is_named_with_its_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = dict(os.environ, HARNESS_CACHE_DIR=str(blocker))
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(CONFIGS / "machines" / "isapc.yaml"),
                           "--out", str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"harness run: error: cache folder {blocker} (from HARNESS_CACHE_DIR) cannot be made: File exists"]
    assert not (tmp_path / "out").exists()


def test_only_a_long_quoted_value_is_cut_never_the_text_between_two() -> None:
    from harness.errors import ConfigError
    # the text between two short literals ('abc,drive=x' ... '-') was once taken for one
    rule = "at most 128 letters, digits and _.:+-, not starting with '-' (commas and '=' would inject QEMU options)"
    assert str(ConfigError(f"'abc,drive=x' is not a valid QEMU value: {rule}")).endswith(rule)
    between = "'x-' and then " + "long words " * 12 + "'y'"
    assert str(ConfigError(between)) == f"<config>: {between}"
    assert str(ConfigError("'" + "a" * 100 + "' is bad")) == f"<config>: '{'a' * 60}...' (100 characters) is bad"


@pytest.mark.parametrize("command", [
    ["models"], ["models", "sb16"], ["examples"], ["matrix", "example:matrices/devices", "--list"],
    ["run", "example:machines/isapc", "--no-picture", "--out", "{tmp}/out"],
])
def test_output_to_a_reader_that_went_away_ends_quietly(command, tmp_path) -> None:
    """`harness models | head`: once the reader is gone the command stops without an error
    line, with the status a shell gives a program SIGPIPE ended (it said "error: [Errno 32]
    Broken pipe" with exit 2, a usage error); a job still writes its files first."""
    import shutil
    import tempfile
    from harness.cli import EXIT_OUTPUT_CLOSED
    live = Path(tempfile.mkdtemp(prefix="qa8-", dir="/tmp"))   # short: QEMU's sockets live there
    env = dict(os.environ, HARNESS_RUN_DIR=str(live))
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *(a.format(tmp=tmp_path) for a in command)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # no reader from the start: the first write meets a broken pipe
    try:
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == EXIT_OUTPUT_CLOSED == 141, err
    finally:
        proc.kill()
        left = list(live.rglob("*"))
        shutil.rmtree(live, ignore_errors=True)
    assert err == ""
    assert not left   # the machine's run folder is gone
    if command[0] == "run":
        assert (tmp_path / "out" / "report.json").is_file()


@pytest.mark.parametrize("args, says", [
    # every unknown name the same way: unknown, the closest names, where the whole list is
    (["run", "example:nope"], "error: example:nope: unknown shipped example 'nope'; 'harness examples' lists all "),
    (["layout", "example:machines/q53"], "error: example:machines/q53: unknown shipped example 'machines/q53' "
     "(did you mean 'machines/q35'?); 'harness examples' lists all "),
    (["models", "sb61"], "error: unknown device model 'sb61' (did you mean 'sb16'?); 'harness models' lists all "),
    (["matrix", "example:matrices/devices", "--only", "machin=pc"], "error: the command line: --only 'machin=pc': "
     "unknown axis 'machin' (did you mean 'machine'?); axes: machine, accel, devices"),
    (["matrix", "example:matrices/devices", "--only", "machine=pcc"], "error: the command line: --only "
     "'machine=pcc': unknown axis 'machine' value 'pcc' (did you mean 'pc'?); values: pc, q35, isapc"),
    (["run", "--hal", "apix", "x.yaml"], "error: argument --hal: unknown choice 'apix' (did you mean 'apic'?); "
     "choose from: auto, pic, apic"),
    (["runn"], "error: argument COMMAND: unknown command 'runn' (did you mean 'run'?); choose from: run, layout, "),
])
def test_an_unknown_name_says_so_with_the_closest_names_and_where_the_list_is(args, says) -> None:
    # 'harness run example:nope' printed all ~180 examples on one line
    result = harness(*args)
    line = result.stderr.splitlines()[-1]   # (after argparse's usage lines)
    command = "harness" if args[0] == "runn" else f"harness {args[0]}"
    assert result.returncode == 2 and line.startswith(f"{command}: {says}"), line
    assert len(line) < 250, line
