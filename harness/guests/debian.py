"""Pinned Debian packages: download (urllib), check (sha256), unpack (ar + tar), no install.

The pins are in ``guest_images/linux/debian-packages.json``; each entry lists one or more
alternatives (Debian removes superseded kernel ABIs from its archive), tried in order.
A downloaded ``.deb`` is kept under the cache, named by its file name, and re-used while
its hash matches.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..atomicio import atomic_output
from ..errors import HarnessError
from .cache import GUEST_IMAGES, cache_root, locked, progress

PINS = GUEST_IMAGES / "linux" / "debian-packages.json"
DOWNLOAD_TIMEOUT = 60.0  # seconds without progress before a download is given up


class DebianFetchError(HarnessError):
    pass


@dataclass(frozen=True)
class DebianPackage:
    package: str
    version: str
    url: str
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


def load_pins(path: Path = PINS) -> dict[str, object]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DebianFetchError(f"{path}: {exc}") from None
    for key in ("kernel", "busybox"):
        if not isinstance(doc.get(key), list) or not doc[key]:
            raise DebianFetchError(f"{path}: '{key}' must be a non-empty list of package pins")
        for i, entry in enumerate(doc[key]):
            missing = {"package", "version", "url", "size", "sha256"} - set(entry)
            if missing:
                raise DebianFetchError(f"{path}: {key}[{i}] lacks {', '.join(sorted(missing))}")
    return doc


def alternatives(name: str, path: Path = PINS) -> list[DebianPackage]:
    doc = load_pins(path)
    return [DebianPackage(e["package"], e["version"], e["url"], e["size"], e["sha256"]) for e in doc[name]]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(candidates: Iterable[DebianPackage]) -> tuple[DebianPackage, Path]:
    """The first candidate that is cached or can be downloaded, with its verified path."""
    folder = cache_root() / "debian"
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for pkg in candidates:
        target = folder / pkg.filename
        with locked(f"deb-{pkg.package}"):
            if target.is_file() and _sha256(target) == pkg.sha256:
                return pkg, target
            try:
                _download(pkg, target)
                return pkg, target
            except DebianFetchError as exc:
                errors.append(str(exc))
    raise DebianFetchError("no pinned alternative could be fetched:\n  " + "\n  ".join(errors)
                           + f"\n(re-pin in {PINS})")


def _download(pkg: DebianPackage, target: Path) -> None:
    progress(f"downloading {pkg.package} {pkg.version} ({pkg.size / 1e6:.1f} MB) from {pkg.url}")
    start = time.monotonic()
    digest = hashlib.sha256()
    try:
        # Streamed to a temporary name, renamed only once the checksum matches.
        with urllib.request.urlopen(pkg.url, timeout=DOWNLOAD_TIMEOUT) as response, \
                atomic_output(target, "wb") as out:
            done, shown = 0, 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if done * 10 // max(pkg.size, 1) > shown:
                    shown = done * 10 // max(pkg.size, 1)
                    progress(f"  {pkg.filename}: {min(done * 100 // max(pkg.size, 1), 100)}%")
            if digest.hexdigest() != pkg.sha256:
                raise DebianFetchError(f"{pkg.url}: sha256 {digest.hexdigest()} does not match the pin {pkg.sha256}")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DebianFetchError(f"{pkg.url}: {exc}") from None
    progress(f"  {pkg.filename}: {done / 1e6:.1f} MB in {time.monotonic() - start:.2f} s, sha256 ok")


# ---------------------------------------------------------------------- unpacking
def _ar_members(data: io.BufferedReader) -> Iterable[tuple[str, bytes]]:
    if data.read(8) != b"!<arch>\n":
        raise DebianFetchError("not a Debian package (ar magic missing)")
    while header := data.read(60):
        if len(header) < 60:
            break
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data.read(size)
        if size % 2:
            data.read(1)
        yield name, body


def extract(deb: Path, wanted: Callable[[str], bool], *, stop_after: int | None = None) -> dict[str, bytes]:
    """Files of the package's data archive whose path (without the leading './') passes
    ``wanted``; reading stops once ``stop_after`` files were found."""
    found: dict[str, bytes] = {}
    with open(deb, "rb") as f:
        for name, body in _ar_members(f):
            if not name.startswith("data.tar"):
                continue
            with tarfile.open(fileobj=io.BytesIO(body), mode="r|*") as tar:
                for member in tar:
                    path = member.name.lstrip("./")
                    if member.isfile() and wanted(path):
                        handle = tar.extractfile(member)
                        assert handle is not None
                        found[path] = handle.read()
                        if stop_after is not None and len(found) >= stop_after:
                            return found
            return found
    raise DebianFetchError(f"{deb}: no data.tar member")
