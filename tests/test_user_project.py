"""The product as a user gets it: the wheel built from this tree, installed into a fresh
venv outside the repository, driving a small project of the user's own through the CLI and
through pytest -n 2.  Nothing here imports the checkout: every command runs the installed
entry points with the project folder as the working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO

#: Folders of the checkout that are not sources (what a fresh clone would not have).
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".cache", "build", "dist", "runs", "*.egg-info",
                                     "harness-failures", "__pycache__", "*.so", ".pytest_cache",
                                     ".hypothesis")

IRQ5 = """\
# Two ISA cards jumpered to IRQ 5: the second driver's claim conflicts.
name: irq5
machine: isapc
memory: 32
devices:
  - {model: sb16, id: sb0, iobase: 0x220, irq: 5, dma: 1, dma16: 5}
  - {model: ne2k_isa, id: ne0, iobase: 0x300, irq: 5}
drivers: [sb16, ne2000]
"""

CLEAN = """\
name: quiet
machine: isapc
memory: 32
devices:
  - {model: my-uart, id: com1, iobase: 0x3f8, irq: 4}
"""

TESTS = '''\
import pytest


@pytest.mark.machine("machines/irq5.yaml")
def test_the_network_card_loses_irq5(load_driver, iomgr):
    assert load_driver("sb16").ok
    assert not load_driver("ne2000").ok
    entry, = iomgr.error_log.query()
    assert entry.error_code.name == "IO_ERR_IRQ_CONFLICT_DETECTED"


@pytest.mark.machine("quiet.yaml")
def test_my_uart_machine_is_clean(layout, harness_spec):
    assert harness_spec.devices[0].model.name == "my-uart"
    assert any(r.start == 0x3F8 for r in layout.io)


@pytest.mark.machine("machines/irq5.yaml")
def test_wrongly_expects_both_cards(load_driver):
    assert load_driver("sb16").ok
    assert load_driver("ne2000").ok
'''

PYPROJECT = """\
[tool.pytest.ini_options]
harness_models = ["models"]
harness_configs = ["machines"]
"""


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One wheel, one fresh venv for the session (building and installing take ~25 s,
    most of it pip installing the dependencies from its cache)."""
    root = tmp_path_factory.mktemp("product")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    start = time.monotonic()
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                  "-w", str(root / "dist"), str(source)], root, dict(os.environ))
    assert built.returncode == 0, built.stderr
    wheel, = (root / "dist").glob("qemu_nt_harness-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input", str(wheel)],
               root, dict(os.environ))
    assert pip.returncode == 0, pip.stderr
    seconds = time.monotonic() - start
    # The user's environment: the venv first on PATH, a cache of their own, no variable of
    # this test session leaking in (xdist's worker variables, the harness's own settings).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "HARNESS_", "PYTHON", "VIRTUAL_ENV", "XDG_CACHE"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               HARNESS_CACHE_DIR=str(root / "cache"), XDG_CACHE_HOME=str(root / "xdg"))
    return {"venv": venv, "env": env, "root": root, "seconds": seconds}


@pytest.fixture(scope="session")
def project(installed: dict) -> Path:
    """A user's project: a machine file, a model of their own, tests, pytest settings."""
    proj = installed["root"] / "my-project"
    (proj / "machines").mkdir(parents=True)
    (proj / "models").mkdir()
    (proj / "machines" / "irq5.yaml").write_text(IRQ5)
    (proj / "machines" / "quiet.yaml").write_text(CLEAN)
    uart = (REPO / "device_models" / "isa-serial.yaml").read_text().replace("name: isa-serial", "name: my-uart")
    (proj / "models" / "my-uart.yaml").write_text(uart)
    (proj / "test_my_machines.py").write_text(TESTS)
    (proj / "pyproject.toml").write_text(PYPROJECT)
    return proj


def test_the_installed_package_is_not_the_checkout(installed: dict) -> None:
    out = _run([str(installed["venv"] / "bin" / "python"), "-c",
                "import harness, harness.packagedata as p; from harness.qemu import lifeline; print(harness.__file__); "
                "print(p.shipped_dir('configs')); print(lifeline.command(1)[0])"],
               installed["root"], installed["env"])
    module, configs, life = out.stdout.split()
    assert module.startswith(str(installed["venv"])) and not module.startswith(str(REPO))
    assert configs.endswith("harness/_data/configs") and configs.startswith(str(installed["venv"]))
    # The wheel carries the compiled lifeline, executable.
    assert life.endswith("harness/qemu/_lifeline") and life.startswith(str(installed["venv"]))


def test_harness_run_finds_the_conflict_from_the_users_tree(installed: dict, project: Path) -> None:
    result = _run(["harness", "run", "machines/irq5.yaml"], project, installed["env"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "IO_ERR_IRQ_CONFLICT_DETECTED" in result.stdout
    assert (project / "runs" / "irq5" / "report.txt").is_file()
    # the user's model folder through the CLI option; a shipped example by name
    clean = _run(["harness", "run", "machines/quiet.yaml", "--models", "models", "--out", "runs/quiet"],
                 project, installed["env"])
    assert clean.returncode == 0, clean.stdout + clean.stderr
    listing = _run(["harness", "examples"], project, installed["env"])
    assert "example:conflicts/sb16-ne2000-irq5" in listing.stdout


def test_pytest_n2_on_the_users_project(installed: dict, project: Path) -> None:
    result = _run(["pytest", "-n", "2", "-p", "no:cacheprovider", "-q"], project, installed["env"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "1 failed" in result.stdout, result.stdout
    folder = project / "harness-failures" / "test_my_machines.py_test_wrongly_expects_both_cards"
    assert f"replay: harness repro {folder / 'bundle.yaml'}" in result.stdout
    assert {"bundle.yaml", "report.txt", "report.html", "qemu-argv.sh", "registry.reg"} <= {
        p.name for p in folder.iterdir()}
    replay = _run(["harness", "repro", str(folder / "bundle.yaml"), "--out", "runs/replay"], project,
                  installed["env"])
    assert replay.returncode == 0 and "REPRODUCES" in replay.stdout, replay.stdout + replay.stderr


def test_a_bad_marker_under_n2_names_file_line_and_field(installed: dict, project: Path, tmp_path: Path) -> None:
    (tmp_path / "test_bad.py").write_text(
        'import pytest\n\n@pytest.mark.machine("machine: isapc\\ndevices: [{model: isa-serial, id: c, irq: 99}]")\n'
        'def test_x(machine):\n    pass\n')
    result = _run(["pytest", "-n", "2", "-p", "no:cacheprovider", "-q"], tmp_path, installed["env"])
    assert result.returncode == 4, result.stdout + result.stderr
    assert "ERROR: test_bad.py::test_x: <test_bad.py::test_x>:2: devices[0].irq:" in result.stderr
    assert "INTERNALERROR" not in result.stdout + result.stderr


def test_verify_builds_its_guest_into_the_user_cache(installed: dict, project: Path) -> None:
    result = _run(["harness", "verify", "machines/irq5.yaml", "--guest", "probe"], project, installed["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 unexplained" in result.stdout
    cache = Path(installed["env"]["HARNESS_CACHE_DIR"])
    assert list(cache.glob("guests/probe-*/probe.elf"))
    site = installed["venv"] / "lib"
    assert not [p for p in site.rglob("*.elf")], "a guest image was written into site-packages"


def test_the_readme_walkthrough_runs_in_the_fresh_venv(installed: dict) -> None:
    """Every block of the README's "Use it in your project", in a new folder, with only the
    installed wheel (the install block itself is what the `installed` fixture does)."""
    from readme_blocks import USER_SECTION, blocks
    from test_readme import run_block
    folder = installed["root"] / "readme-project"
    folder.mkdir()
    walkthrough = [b for b in blocks() if b.section == USER_SECTION]
    assert [b.lang for b in walkthrough if not b.skip] == ["yaml", "python", "sh"]
    for block in walkthrough:
        if block.skip:
            assert "tests/test_user_project.py" in block.skip
            continue
        run_block(block, folder, installed["env"], str(installed["venv"] / "bin" / "python"))
    assert (folder / "runs" / "irq5" / "report.html").is_file()


def test_every_other_command_works_from_the_wheel(installed: dict, project: Path) -> None:
    """The commands the tests above do not run, as the README gives them, with shipped
    examples by name and files of the user's tree only (QA pass 8)."""
    env = installed["env"]
    layout = _run(["harness", "layout", "example:machines/isapc", "--json"], project, env)
    assert layout.returncode == 0 and '"phase": "post-firmware"' in layout.stdout, layout.stderr
    pnp = _run(["harness", "pnp", "example:conflicts/sb16-ne2000-irq5"], project, env)
    assert pnp.returncode == 0 and "ISA settings to change" in pnp.stdout, pnp.stdout + pnp.stderr
    run = _run(["harness", "run", "example:machines/isapc", "--out", "runs/isapc", "--no-picture"], project, env)
    assert run.returncode == 0, run.stdout + run.stderr
    dump = _run(["harness", "registry", "dump", "runs/isapc/registry.sqlite", "--reg", "isapc.reg"], project, env)
    assert dump.returncode == 0 and (project / "isapc.reg").is_file(), dump.stderr
    imported = _run(["harness", "registry", "import", "isapc.reg", "again.sqlite"], project, env)
    assert imported.returncode == 0 and "imported" in imported.stderr, imported.stdout + imported.stderr
    again = _run(["harness", "registry", "dump", "again.sqlite"], project, env)
    assert again.returncode == 0 and "RESOURCEMAP" in again.stdout and "Serial" in again.stdout, again.stderr
    model = _run(["harness", "models", "sb16"], project, env)
    assert model.returncode == 0 and "_data/device_models/sb16.yaml" in model.stdout, model.stdout
    listing = _run(["harness", "matrix", "example:matrices/devices", "--list"], project, env)
    assert listing.returncode == 0 and "left out" in listing.stdout.lower(), listing.stdout + listing.stderr
    # `harness models | head`: the reader gone, the program stops quietly with 141
    piped = subprocess.run("harness models | head -1", shell=True, cwd=project, env=env, capture_output=True,
                           text=True, timeout=120, executable="/bin/bash")
    assert piped.stdout.count("\n") == 1 and piped.stderr == "", piped.stderr
