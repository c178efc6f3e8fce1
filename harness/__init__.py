"""QEMU-backed hardware test harness with an NT-style HAL and I/O manager.

Layers (see ARCHITECTURE.md in the shared design folder):
``harness.config``/``harness.devices`` read YAML, ``harness.qemu`` runs and reads QEMU,
``harness.nt`` models the NT HAL and I/O manager without knowing about QEMU.
"""

__version__ = "0.1.0"
