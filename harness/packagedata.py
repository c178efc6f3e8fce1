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
from importlib.resources import files
from pathlib import Path

#: The top-level data folders the build maps into the package.
SHIPPED = ("device_models", "configs", "guest_images")
#: Environment variable: extra device-model folders, ``os.pathsep``-separated, searched
#: after the shipped catalog; a model there replaces a shipped model of the same name.
MODELS_ENV = "HARNESS_DEVICE_MODELS"
#: Environment variable: the cache root (guest images, the accelerator verdict).
CACHE_ENV = "HARNESS_CACHE_DIR"
DIST_NAME = "qemu-nt-harness"


def _package_root() -> Path:
    root = files("harness")
    if not isinstance(root, Path):  # a zip import: the data could not be handed to make/QEMU
        raise RuntimeError("the harness package must be installed unpacked (not imported from a zip)")
    return root


def shipped_dir(name: str) -> Path:
    """The shipped data folder ``name`` (one of :data:`SHIPPED`)."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped data folder {name!r}; expected one of {SHIPPED}")
    package = _package_root()
    installed = package / "_data" / name
    if installed.is_dir():
        return installed
    source_tree = package.parent / name
    if source_tree.is_dir() and (package.parent / "pyproject.toml").is_file():
        return source_tree
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
    override = os.environ.get(CACHE_ENV)
    if override:
        root = Path(override).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base).expanduser() / DIST_NAME
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root
