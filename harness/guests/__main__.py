"""``python -m harness.guests``: build the probe guest and the Linux guest image now
(both are otherwise built on first use); prints where they are."""

from __future__ import annotations

from .linux import build_image
from .probe import build_probe

if __name__ == "__main__":
    print(f"probe guest: {build_probe()}")
    image = build_image()
    print(f"Linux guest: {image.kernel} + {image.initrd} ({image.kernel_package.package} "
          f"{image.kernel_package.version})")
