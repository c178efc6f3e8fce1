"""Where the harness finds its shipped data, the user's additions, and its caches.

The catalog (``device_models/``), the example machines and matrices (``configs/``) and the
guest recipes (``guest_images/``) sit at the top of the repository.  The build copies them
into the package as ``harness/_data/<name>`` (``setup.py``), so an installed wheel carries
them and finds them through :mod:`importlib.resources`.  A source tree (a clone, or an
editable install of one) has no ``_data``: there the top-level folders themselves are the
shipped data, found as the siblings of the package, never through the working directory.

Users layer their own folders over the shipped ones (``HARNESS_DEVICE_MODELS``, the
``--models`` option, the ``harness_models`` ini key); caches go to the user's cache
directory, never into site-packages or the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path
TYPE_CHECKING = False  # (typing is not imported on the way to --help)
if TYPE_CHECKING:
    from typing import Any

#: The top-level data folders the build maps into the package.
SHIPPED = ("device_models", "configs", "guest_images")
#: Environment variable: extra device-model folders, ``os.pathsep``-separated, searched
#: after the shipped catalog; a model there replaces a shipped model of the same name.
MODELS_ENV = "HARNESS_DEVICE_MODELS"
from .names import CACHE_ENV, DIST_NAME, cache_root  # noqa: F401  (CACHE_ENV re-exported)


def _package_root() -> Path:
    """What ``importlib.resources.files("harness")`` answers for an unpacked package (its
    folder; tested), without importing importlib.resources, zipfile and tempfile (~3 ms
    of every command and matrix worker)."""
    root = Path(__file__).parent
    if not root.is_dir():  # a zip import: the data could not be handed to make/QEMU
        raise RuntimeError("the harness package must be installed unpacked (not imported from a zip)")
    return root


#: shipped_dir's answers: an installed package does not move while it runs, and the board
#: model is asked for on every device a report names (several stat calls each).
_found: dict[str, Path] = {}


def shipped_dir(name: str) -> Path:
    """The shipped data folder ``name`` (one of :data:`SHIPPED`)."""
    if name in _found:
        return _found[name]
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped data folder {name!r}; expected one of {SHIPPED}")
    package = _package_root()
    installed = package / "_data" / name
    if installed.is_dir():
        return _found.setdefault(name, installed)
    source_tree = package.parent / name
    if source_tree.is_dir() and (package.parent / "pyproject.toml").is_file():
        return _found.setdefault(name, source_tree)
    raise FileNotFoundError(f"the harness package at {package} carries no {name}/ data; "
                            f"reinstall {DIST_NAME} from a wheel or sdist built by its own build")


def user_model_dirs() -> tuple[Path, ...]:
    """The folders named by ``$HARNESS_DEVICE_MODELS``, in order (empty entries ignored)."""
    value = os.environ.get(MODELS_ENV, "")
    return tuple(Path(part).expanduser() for part in value.split(os.pathsep) if part.strip())


def user_cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/qemu-nt-harness``, else ``~/.cache/...``.

    Created on demand, private to the user (0700): guest images and locks live here.
    """
    root = Path(cache_root())
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:   # a file there, or a parent that cannot be made
        from .errors import HarnessError
        where = CACHE_ENV if os.environ.get(CACHE_ENV) else "XDG_CACHE_HOME or HOME"
        raise HarnessError(f"cache folder {root} (from {where}) cannot be made: {exc.strerror}") from None
    return root


def _cache_file(name: str) -> Path:
    return user_cache_dir() / "parsed" / f"{name}.pickle"


def read_cache(name: str) -> dict[Any, Any]:
    """The dict last stored as cache ``name`` by :func:`write_cache`, else an empty one: a
    cache that is missing, does not load, or that someone else could have written (a
    pickle runs code) is no cache."""
    import pickle
    from .names import private_cache_file
    path = _cache_file(name)
    if not private_cache_file(str(path)):
        return {}
    try:
        with open(path, "rb") as f:
            cached = pickle.load(f)
    except Exception:  # noqa: BLE001 - missing, truncated or from another version: no cache
        return {}
    return cached if isinstance(cached, dict) else {}


def write_cache(name: str, data: dict[Any, Any]) -> None:
    """Store ``data`` as cache ``name`` (atomically: readers see the old or the new one)."""
    import pickle
    try:
        path = _cache_file(name)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except (OSError, pickle.PicklingError):
        pass  # a cache that cannot be written only costs the next run its work


def add_user_model_dirs(directories: "list[str | Path] | tuple[str | Path, ...]", base: Path | None = None) -> None:
    """Layer ``directories`` (after any already named) over the shipped catalog.

    The ``--models`` option and the ``harness_models`` ini key end here: they extend
    ``$HARNESS_DEVICE_MODELS`` of this process, so worker processes it starts (matrix
    workers, xdist workers) see the same catalog.  Relative paths are taken from ``base``
    (default: the working directory).
    """
    base = base if base is not None else Path.cwd()
    extra = [str((base / Path(d).expanduser()).resolve()) for d in directories]
    current = [str(d) for d in user_model_dirs()]
    os.environ[MODELS_ENV] = os.pathsep.join(dict.fromkeys([*current, *extra]))


#: ``example:NAME`` names a shipped example config (``harness examples`` lists them).
EXAMPLE_PREFIX = "example:"


def examples() -> dict[str, Path]:
    """The shipped example machines and matrices by name (``conflicts/sb16-ne2000-irq5``)."""
    root = shipped_dir("configs")
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.yaml"))}


def resolve_config(path: "str | Path") -> Path:
    """``path`` itself, or for ``example:NAME`` the shipped example of that name (``NAME``
    may leave out the folder when only one example has that file name)."""
    text = str(path)
    if not text.startswith(EXAMPLE_PREFIX):
        return Path(path)
    name = text[len(EXAMPLE_PREFIX):].removesuffix(".yaml")
    found = examples()
    if name in found:
        return found[name]
    by_stem = [p for key, p in found.items() if key.rsplit("/", 1)[-1] == name]
    if len(by_stem) == 1:
        return by_stem[0]
    from .errors import ConfigError, unknown_name
    if by_stem:
        raise ConfigError(f"example {name!r} is ambiguous: it is " + " and ".join(
            EXAMPLE_PREFIX + key for key in found if key.rsplit("/", 1)[-1] == name), source=text)
    raise ConfigError(unknown_name("shipped example", name, found, listed_by="harness examples"), source=text)
