"""The NT model: status codes, resource structures, the registry (and, later, the HAL,
arbiter and I/O manager). Knows nothing about QEMU (ARCHITECTURE.md).

Modules: :mod:`.status` (NTSTATUS, IO_ERR codes), :mod:`.resources` (CM_* and
IO_RESOURCE_* structures with exact x86/x64 layouts), :mod:`.registry` (SQLite-backed
``\\Registry`` with typed values), :mod:`.regfile` (regedit .reg import/export),
:mod:`.errors` (the exceptions these raise).
"""
