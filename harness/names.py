"""Names and choices the harness fixes, in a module with no imports: the command line
builds its parsers, and starts QEMU, before it loads the configuration layer
(:mod:`harness.qemu.launchplan`)."""

#: Prefix of the ids the harness gives its own chardevs, devices and monitors; a machine
#: file may not use it.
RESERVED_ID_PREFIX = "harness"
#: Accelerator policies (harness.qemu.accel): a machine file's ``accel``, ``--accel``.
ACCEL_POLICIES = ("tcg", "kvm", "auto")
#: The HALs a job can run (harness.config.hal_for): ``--hal``.
HAL_CHOICES = ("auto", "pic", "apic")
