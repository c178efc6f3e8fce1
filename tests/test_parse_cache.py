"""The cache of parsed YAML documents (harness.yamlio.load_files), which the device
catalog reads through: it answers only for the same path and bytes, and never hides an
error or trusts a file others could have written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harness import yamlio
from harness.errors import ConfigError

MODEL = "name: {name}\nvalue: {value}\nlist: [1, 2]\n"


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "parsed" / "t.pickle"


def _files(folder: Path, **values: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for name, value in values.items():
        path = folder / f"{name}.yaml"
        path.write_text(MODEL.format(name=name, value=value))
        paths.append(path)
    return paths


def _same(a: object, b: object) -> bool:
    """Equal, with the same source lines on every mapping (what error messages use)."""
    if isinstance(a, yamlio.Node):
        return isinstance(b, yamlio.Node) and list(a) == list(b) and (a.source, a.line, a.field) == \
            (b.source, b.line, b.field) and a._lines == b._lines and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_cached_documents_are_the_parsed_ones(tmp_path, cache_home) -> None:
    paths = _files(tmp_path / "m", a=1, b=2)
    first = yamlio.load_files(paths, "t")
    assert cache_home.is_file()
    second = yamlio.load_files(paths, "t")  # from the cache
    direct = [yamlio.load_file(p) for p in paths]
    assert all(_same(x, y) and _same(y, z) for x, y, z in zip(first, second, direct))


def test_an_edited_file_is_parsed_again(tmp_path, cache_home) -> None:
    paths = _files(tmp_path / "m", a=1, b=2)
    yamlio.load_files(paths, "t")
    st = paths[0].stat()
    paths[0].write_text(MODEL.format(name="a", value=7))
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and time: only the bytes differ
    assert yamlio.load_files(paths, "t")[0]["value"] == 7


def test_a_broken_file_is_reported_as_load_file_reports_it(tmp_path, cache_home) -> None:
    paths = _files(tmp_path / "m", a=1, b=2)
    yamlio.load_files(paths, "t")
    paths[1].write_text("name: b\nvalue: [1,\n")
    with pytest.raises(ConfigError) as cached:
        yamlio.load_files(paths, "t")
    with pytest.raises(ConfigError) as direct:
        yamlio.load_file(paths[1])
    assert str(cached.value) == str(direct.value) and str(paths[1]) in str(cached.value)


@pytest.mark.parametrize("damage", ["others-can-write", "garbage"])
def test_a_cache_file_that_cannot_be_trusted_or_read_is_ignored(tmp_path, cache_home, damage) -> None:
    paths = _files(tmp_path / "m", a=1)
    yamlio.load_files(paths, "t")
    if damage == "garbage":
        cache_home.write_bytes(b"\x80\x05not a pickle")
    else:
        # What a planted cache would look like: it must not be loaded (pickle runs code).
        import pickle
        key = next(iter(pickle.loads(cache_home.read_bytes())))
        cache_home.write_bytes(pickle.dumps({key: "planted"}))
        cache_home.chmod(cache_home.stat().st_mode | stat.S_IWOTH)
    assert yamlio.load_files(paths, "t")[0]["value"] == 1


def test_the_cache_keeps_a_bounded_number_of_other_files(tmp_path, cache_home) -> None:
    import pickle
    paths = _files(tmp_path / "m", a=1, b=2, c=3, d=4)
    for path in paths:
        yamlio.load_files([path], "t", keep_others=2)
    held = pickle.loads(cache_home.read_bytes())
    assert [key.split("\0")[0] for key in held] == [str(p) for p in paths[1:]]  # the newest three
    assert yamlio.load_files([paths[1]], "t", keep_others=2)[0]["value"] == 2


def test_a_warm_harness_run_does_not_import_pyyaml(tmp_path) -> None:
    """Machine file, catalog and board files all answered by the cache: a clean main job
    never loads PyYAML (the first run, which fills the cache, does)."""
    import subprocess
    import sys
    from helpers import CONFIGS, REPO
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"))
    code = ("import sys\nfrom harness.cli import main\n"
            f"main(['run', {str(CONFIGS / 'machines' / 'default.yaml')!r}, '--no-picture', '--out', {str(tmp_path / 'out')!r}])\n"
            "print('yaml' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120, check=True).stdout.split()[-1:] for _ in range(2)]
    assert runs == [["True"], ["False"]]
