"""Package data and caches: what the wheel carries, user model folders, the cache root."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.devices import load_catalog
from harness.packagedata import SHIPPED, shipped_dir, user_cache_dir, user_model_dirs
from helpers import REPO, machine_spec


def test_source_tree_uses_top_level_folders():
    for name in SHIPPED:
        assert shipped_dir(name) == REPO / name
    with pytest.raises(ValueError, match="unknown shipped data folder"):
        shipped_dir("tests")


def _model(folder: Path, name: str, description: str) -> None:
    text = (REPO / "device_models" / "isa-debugcon.yaml").read_text()
    text = text.replace("name: isa-debugcon", f"name: {name}")
    text = text.replace("description: Bochs-style debug console port (writes go to a chardev)",
                        f"description: {description}")
    (folder / f"{name}.yaml").write_text(text)


def test_user_model_folders_layer_over_the_shipped_catalog(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    _model(first, "isa-debugcon", "overridden by the first folder")
    _model(first, "my-console", "a model of the user's own")
    _model(second, "my-console", "the second folder wins")
    monkeypatch.setenv("HARNESS_DEVICE_MODELS", f"{first}:{second}:")
    assert user_model_dirs() == (first, second)
    catalog = load_catalog()
    shipped = load_catalog(shipped_dir("device_models"))
    assert set(catalog) == set(shipped) | {"my-console"}
    assert catalog["isa-debugcon"].description == "overridden by the first folder"
    assert catalog["my-console"].description == "the second folder wins"
    # a machine file can use the user's model
    spec = machine_spec("machine: isapc\nfirmware_log: false\ndevices:\n"
                        "  - {model: my-console, id: con, iobase: 0x402}\n")
    assert spec.devices[0].model.name == "my-console"


def test_the_default_catalog_follows_the_setting_and_the_working_directory(tmp_path, monkeypatch):
    """load_catalog() remembers its resolved folders per setting and working directory:
    a changed $HARNESS_DEVICE_MODELS, or a relative entry seen from another folder, is
    a different catalog."""
    for name in ("a", "b"):
        (tmp_path / name / "models").mkdir(parents=True)
        _model(tmp_path / name / "models", "my-console", f"the model in {name}")
    monkeypatch.setenv("HARNESS_DEVICE_MODELS", "models")
    monkeypatch.chdir(tmp_path / "a")
    assert load_catalog()["my-console"].description == "the model in a"
    monkeypatch.chdir(tmp_path / "b")
    assert load_catalog()["my-console"].description == "the model in b"
    monkeypatch.setenv("HARNESS_DEVICE_MODELS", str(tmp_path / "a" / "models"))
    assert load_catalog()["my-console"].description == "the model in a"
    monkeypatch.delenv("HARNESS_DEVICE_MODELS")
    assert "my-console" not in load_catalog()


def test_missing_user_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DEVICE_MODELS", str(tmp_path / "nowhere"))
    with pytest.raises(Exception, match="device model directory not found") as info:
        load_catalog()
    assert "nowhere" in str(info.value)


def test_cache_root_follows_the_user_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "qemu-nt-harness"
    assert (user_cache_dir().stat().st_mode & 0o777) == 0o700
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "explicit"))
    assert user_cache_dir() == tmp_path / "explicit"


@pytest.mark.slow
def test_wheel_carries_every_tracked_data_file(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path), str(REPO)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", *SHIPPED], capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked
    missing = [path for path in tracked if f"harness/_data/{path}" not in names]
    assert not missing, f"the wheel lacks {missing}"


def test_example_names_resolve_to_shipped_configs():
    from harness.errors import ConfigError
    from harness.packagedata import examples, resolve_config
    found = examples()
    assert found["conflicts/sb16-ne2000-irq5"] == shipped_dir("configs") / "conflicts" / "sb16-ne2000-irq5.yaml"
    assert resolve_config("example:sb16-ne2000-irq5") == found["conflicts/sb16-ne2000-irq5"]
    assert resolve_config("example:matrices/devices.yaml") == found["matrices/devices"]
    assert resolve_config("plain/path.yaml") == Path("plain/path.yaml")
    # an unknown name: said so, the closest names, and how to list them all (not all of them)
    with pytest.raises(ConfigError, match=r"^example:nosuch: unknown shipped example 'nosuch'; "
                                          rf"'harness examples' lists all {len(found)}$"):
        resolve_config("example:nosuch")
    with pytest.raises(ConfigError, match=r"unknown shipped example 'machines/defualt' \(did you mean "
                                          r"'machines/default'\?\); 'harness examples' lists all"):
        resolve_config("example:machines/defualt")
    # a name typed without its folder is compared by its last part
    with pytest.raises(ConfigError, match=r"\(did you mean 'conflicts/sb16-ne2000-irq5', "):
        resolve_config("example:sb16-ne2000-irq6")


def test_added_model_folders_extend_the_environment(tmp_path, monkeypatch):
    from harness.packagedata import add_user_model_dirs
    monkeypatch.setenv("HARNESS_DEVICE_MODELS", str(tmp_path / "a"))
    add_user_model_dirs(["b", tmp_path / "a"], base=tmp_path)
    assert user_model_dirs() == (tmp_path / "a", tmp_path / "b")


def test_cli_models_option_and_examples_command(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    _model(folder, "my-console", "the user's console")
    (tmp_path / "m.yaml").write_text("name: m\nmachine: isapc\nfirmware_log: false\n"
                                     "devices:\n  - {model: my-console, id: con, iobase: 0x402}\n")
    matrix = tmp_path / "mx.yaml"
    matrix.write_text("name: mx\nbase: m.yaml\naxes:\n  machine: {isapc: {machine: isapc}}\n")
    cli = [sys.executable, "-m", "harness.cli"]
    without = subprocess.run(cli + ["matrix", str(matrix)], capture_output=True, text=True, timeout=60)
    assert without.returncode == 2 and "unknown device model 'my-console'" in without.stderr
    with_models = subprocess.run(cli + ["matrix", str(matrix), "--models", str(folder)], capture_output=True,
                                 text=True, timeout=60)
    assert with_models.returncode == 0, with_models.stderr
    listing = subprocess.run(cli + ["examples"], capture_output=True, text=True, timeout=60)
    assert "example:conflicts/sb16-ne2000-irq5" in listing.stdout
    copied = subprocess.run(cli + ["examples", "--copy", "serial-at-cf8", "--to", str(tmp_path / "c")],
                            capture_output=True, text=True, timeout=60)
    assert copied.returncode == 0 and (tmp_path / "c" / "serial-at-cf8.yaml").read_text() == \
        (shipped_dir("configs") / "conflicts" / "serial-at-cf8.yaml").read_text()
    again = subprocess.run(cli + ["examples", "--copy", "serial-at-cf8", "--to", str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "not overwriting" in again.stderr


def test_package_root_is_what_importlib_resources_finds():
    from importlib.resources import files
    from harness.packagedata import _package_root
    assert _package_root() == files("harness")


def test_a_package_imported_from_a_zip_is_refused_by_name(tmp_path):
    archive = tmp_path / "harness.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for source in (REPO / "harness").glob("*.py"):
            zf.write(source, f"harness/{source.name}")
    code = ("from harness.packagedata import shipped_dir\ntry:\n    shipped_dir('configs')\n"
            "except RuntimeError as exc:\n    print('REFUSED', exc)\n")
    done = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(archive)!r})\n" + code],
                          capture_output=True, text=True, timeout=60)
    assert "REFUSED the harness package must be installed unpacked" in done.stdout, done.stderr
