"""Guests that run inside a machine and report what software there sees of the hardware.

* :mod:`harness.guests.probe`: the bare-metal probe guest (``guest_images/probe/``),
  ~0.1 s under TCG: PCI through 0xCF8/0xCFC, sized BARs, ISA devices at the modelled
  ports, the IRQ lines they really drive.
* :mod:`harness.guests.linux`: a Debian kernel with a busybox initramfs (seconds under
  TCG): what an OS makes of the hardware (/proc/ioports, /proc/interrupts, conflicts).

Recipes live in ``guest_images/``; what they produce goes to a git-ignored cache
(:mod:`harness.guests.cache`).
"""
