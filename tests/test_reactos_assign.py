"""IoAssignResources under ``reactos_compat`` (nt-semantics.md §3.2, §3.3, §2.3 silent
detector, §9.4, §9.6, §9.15, §9.16, §9.22), against the documented model on the same calls.
No QEMU: the ResourceMap is filled through the I/O manager's own writers."""

from __future__ import annotations

import pytest

from harness.nt.arbiter import Owner
from harness.nt.hal import HAL_PORTS, Hal
from harness.nt.iomgr import HAL_NAME, IoManager
from harness.nt.reactos_assign import conflicts, fixup_resource_list
from harness.nt.recorded import ReplayBus
from harness.nt.registry import RESOURCE_MAP, Registry
from harness.nt.resources import (CM_RESOURCE_LIST, BusNumber, BusNumberRequirement, CmResourceShare,
                                  ConfigDataRequirement, DevicePrivateRequirement, Dma, DmaRequirement,
                                  IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_LIST, IO_RESOURCE_PREFERRED,
                                  IO_RESOURCE_REQUIREMENTS_LIST, Interrupt, InterruptRequirement, Internal, Isa,
                                  LCPRI_DESIRED, Memory, MemoryLargeRequirement, MemoryRequirement, PCIBus, Port,
                                  PortRequirement)
from harness.nt.status import NTSTATUS

OK, CONFLICT = NTSTATUS.STATUS_SUCCESS, NTSTATUS.STATUS_CONFLICTING_ADDRESSES
SHARED = CmResourceShare.CmResourceShareShared
DRIVER_EXCLUSIVE = CmResourceShare.CmResourceShareDriverExclusive
HOLDER = Owner("Holder", r"\Device\Held0", "Holders")
ALT, PREF = IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_PREFERRED


def manager(*held, reactos: bool = True) -> IoManager:
    """An I/O manager whose ResourceMap holds the PC/AT HAL's ports and ``held``."""
    io = IoManager(Registry(":memory:"), reactos_compat=reactos)
    io.report_hal_resources(CM_RESOURCE_LIST.single(
        Internal, 0, *(Port(s, n, share=DRIVER_EXCLUSIVE) for s, n in HAL_PORTS)))
    if held:
        io.record_assignment(HOLDER, CM_RESOURCE_LIST.single(Isa, 0, *held))
    return io


def requirements(*lists, iface=Isa, bus=0) -> IO_RESOURCE_REQUIREMENTS_LIST:
    return IO_RESOURCE_REQUIREMENTS_LIST(iface, bus, 0, tuple(IO_RESOURCE_LIST(tuple(ds)) for ds in lists))


def assign(io: IoManager, *lists, iface=Isa, bus=0):
    return io.IoAssignResources(r"\Registry\Machine\System\CurrentControlSet\Services\Asker", None, None, None,
                                requirements(*lists, iface=iface, bus=bus))


def partials(resources: CM_RESOURCE_LIST | None) -> list:
    return [p for _, p in resources.partials()] if resources is not None else []


def test_nothing_is_written_so_a_second_call_gets_the_same_range() -> None:
    """§3.2 step 5 / §9.22: the result is not filed, so the next caller gets it again."""
    io = manager()
    before = [(c.owner, c.start) for c in io.arbiter.claims()]
    window = [PortRequirement(8, 8, 0x300, 0x3FF)]
    first, second = assign(io, window), assign(io, window)
    assert first == second == (OK, CM_RESOURCE_LIST.single(Isa, 0, Port(0x300, 8)))
    assert [(c.owner, c.start) for c in io.arbiter.claims()] == before and len(io.error_log) == 0
    assert not io.registry.key_exists(rf"{RESOURCE_MAP}\OtherDrivers\Asker")
    # The documented model files each result, so the second call goes elsewhere (top-down).
    nt = manager(reactos=False)
    req = requirements(window)
    (a,), (b,) = (partials(nt.IoAssignResources(path, None, None, None, req)[1]) for path in ("First", "Second"))
    assert a.start != b.start and {a.start, b.start} <= set(range(0x300, 0x3F9, 8))


def test_the_search_is_bottom_up_and_jumps_over_free_slots() -> None:
    """§3.3: candidates from MinimumAddress in steps of Alignment; after a conflict Start
    becomes 2*Start + Length, then + Alignment (the "conflicting" descriptor is the
    candidate itself), so 0x308..0x3F8, all free, are never tried."""
    io = manager(Port(0x300, 8))
    status, got = assign(io, [PortRequirement(8, 8, 0x300, 0xFFF)])
    assert (status, partials(got)) == (OK, [Port(2 * 0x300 + 8 + 8, 8)])
    # The same jump leaves the window: a free slot exists, the required descriptor is not
    # found, and the call "succeeds" with no list (§3.3 step 2).
    assert assign(io, [PortRequirement(8, 8, 0x300, 0x3FF)]) == (OK, None)
    assert "required descriptor 0 (CmResourceTypePort) not found" in io.reactos_assignments[-1].notes[0]
    # Start is not rounded up to the alignment: Min 0x301 is tried as it is.
    assert partials(assign(io, [PortRequirement(4, 0x10, 0x311, 0x3FF)])[1]) == [Port(0x311, 4)]
    nt = manager(Port(0x300, 8), reactos=False)
    (placed,) = partials(assign(nt, [PortRequirement(8, 8, 0x300, 0x3FF)])[1])
    assert placed.start % 8 == 0 and 0x308 <= placed.start <= 0x3F8


def test_alignment_zero_is_rewritten_in_the_callers_list() -> None:
    searched = PortRequirement(4, 0, 0x100, 0x1FF)
    skipped = PortRequirement(4, 0, 0x200, 0x2FF, option=ALT)   # never searched: left alone
    memory = MemoryRequirement(0x1000, 0, 0xD0000, 0xDFFFF)
    io = manager()
    status, got = assign(io, [searched, skipped, memory])
    assert partials(got) == [Port(0x100, 4), Memory(0xD0000, 0x1000)]
    assert (searched.alignment, skipped.alignment, memory.alignment) == (1, 0, 1)
    untouched = PortRequirement(4, 0, 0x100, 0x1FF)
    assign(manager(reactos=False), [untouched])
    assert untouched.alignment == 0


def test_a_failed_required_descriptor_ends_the_walk_with_success() -> None:
    """§3.3 step 2: Option 0 not found -> STATUS_SUCCESS with what was gathered before it;
    the next list, which would fit entirely, is never tried."""
    io = manager(Interrupt(5, 5, -1))
    fits = [PortRequirement(8, 8, 0x2E8, 0x2EF), InterruptRequirement(7, 7)]
    status, got = assign(io, [PortRequirement(8, 8, 0x3E8, 0x3EF), InterruptRequirement(5, 5), DmaRequirement(1, 1)],
                         fits)
    assert (status, partials(got)) == (OK, [Port(0x3E8, 8)])
    assert io.reactos_assignments[-1].list_index == 0
    assert assign(io, [InterruptRequirement(5, 5), PortRequirement(8, 8, 0x3E8, 0x3EF)], fits) == (OK, None)
    # The documented model moves on to the list that fits.
    nt = manager(Interrupt(5, 5, -1), reactos=False)
    status, got = assign(nt, [PortRequirement(8, 8, 0x3E8, 0x3EF), InterruptRequirement(5, 5)], fits)
    assert (status, partials(got)) == (OK, [Port(0x2E8, 8), Interrupt(7, 7, -1)])


def test_a_configdata_first_list_succeeds_with_no_resources() -> None:
    """§3.3 / §9.15: ConfigData is "unsupported", so a list opening with one (Option 0)
    stops at once: success, no list; the priority is not looked at either."""
    io = manager()
    low = [ConfigDataRequirement(0xC000), PortRequirement(8, 8, 0x2F8, 0x2FF)]
    high = [ConfigDataRequirement(LCPRI_DESIRED), PortRequirement(8, 8, 0x3F8, 0x3FF)]
    assert assign(io, low, high) == (OK, None)
    assert partials(assign(manager(reactos=False), low, high)[1]) == [Port(0x3F8, 8)]  # priority first


@pytest.mark.parametrize("unsupported", [MemoryLargeRequirement(1 << 32, 1 << 32, 0, (1 << 40) - 1),
                                         DevicePrivateRequirement((1, 2, 3))])
def test_unsupported_types_are_never_found(unsupported) -> None:
    io = manager()
    assert assign(io, [PortRequirement(8, 8, 0x300, 0x3FF), unsupported]) == (
        OK, CM_RESOURCE_LIST.single(Isa, 0, Port(0x300, 8)))
    optional = type(unsupported)(**{**unsupported.__dict__, "option": PREF})
    assert assign(io, [optional]) == (CONFLICT, None)


def test_a_preferred_with_no_alternative_left_dooms_every_later_list() -> None:
    """§3.3: PREFERRED fails, its ALTERNATIVEs fail -> the list is abandoned.  The flag is
    one variable for the whole call (pnpres.c declares it before the list loop), so the
    next list starts with it set and is abandoned at its first plain descriptor."""
    io = manager(Port(0x3F8, 8), Port(0x2F8, 8))
    taken = [PortRequirement(8, 8, 0x3F8, 0x3FF, option=PREF), PortRequirement(8, 8, 0x2F8, 0x2FF, option=ALT)]
    free = [PortRequirement(8, 8, 0x3E8, 0x3EF)]
    assert assign(io, taken, free) == (CONFLICT, None)
    assert assign(io, free, taken)[1] is not None      # in the other order the free list wins
    assert assign(io, [taken[0]]) == (CONFLICT, None)  # a lone PREFERRED that fails: out of lists
    nt = manager(Port(0x3F8, 8), Port(0x2F8, 8), reactos=False)
    assert partials(assign(nt, taken, free)[1]) == [Port(0x3E8, 8)]
    # An alternative that fits is taken and the walk goes on.
    status, got = assign(io, [taken[0], PortRequirement(8, 8, 0x3E8, 0x3EF, option=ALT), InterruptRequirement(3, 4)])
    assert partials(got) == [Port(0x3E8, 8), Interrupt(3, 3, -1)]


def test_a_descriptor_satisfied_by_one_gathered_before_adds_nothing() -> None:
    """The "existing list" check runs on the list being built, and the detector never sees
    it: an equal request is dropped, one of another length lands on the same start."""
    io = manager()
    port8 = PortRequirement(8, 8, 0x300, 0x3FF)
    assert partials(assign(io, [port8, port8])[1]) == [Port(0x300, 8)]
    assert partials(assign(io, [port8, PortRequirement(0x10, 8, 0x300, 0x3FF)])[1]) == [Port(0x300, 8),
                                                                                       Port(0x300, 0x10)]
    assert partials(assign(io, [InterruptRequirement(3, 7), InterruptRequirement(2, 9)])[1]) == [Interrupt(3, 3, -1)]
    assert partials(assign(io, [InterruptRequirement(3, 7), InterruptRequirement(5, 9)])[1]) == [Interrupt(3, 3, -1),
                                                                                               Interrupt(5, 5, -1)]


def test_interrupts_and_dma_are_first_fit_ascending_on_vector_and_channel() -> None:
    io = manager(Interrupt(0, 3, -1), Dma(1, 0x80), Interrupt(7, 7, -1, share=SHARED))
    got = partials(assign(io, [InterruptRequirement(3, 9), DmaRequirement(0, 3), DmaRequirement(1, 3)])[1])
    # IRQ 3 is held by Vector (its Level 0 is not looked at); DMA 0 is free; the second DMA
    # request is not satisfied by channel 0 (outside 1..3) and skips the held channel 1.
    assert got[0] == Interrupt(4, 4, -1) and got[1] == Dma(0, 0) and got[2] == Dma(2, 0)
    shared = partials(assign(io, [InterruptRequirement(7, 7, share=SHARED)])[1])
    assert shared == [Interrupt(7, 7, -1, share=SHARED)]             # Shared vs Shared passes
    assert assign(io, [InterruptRequirement(7, 7)]) == (OK, None)     # exclusive vs Shared does not


def test_interface_type_does_not_separate_and_the_list_keeps_the_callers_bus() -> None:
    io = manager(Port(0x3F8, 8))
    # The PCI request meets the ISA holder at 0x3F8 and jumps to 2*0x3F8 + 8 + 8.
    status, got = assign(io, [PortRequirement(8, 8, 0x3F8, 0xFFF)], iface=PCIBus, bus=2)
    assert (status, got) == (OK, CM_RESOURCE_LIST.single(PCIBus, 2, Port(0x800, 8)))


def test_zero_length_requests_succeed_at_their_minimum() -> None:
    """§3.3 / §9.4: a zero-length range conflicts only when strictly inside another."""
    io = manager(Port(0x3F0, 0x10))
    for minimum in (0x3F0, 0x400):            # at either boundary of the held range
        assert partials(assign(io, [PortRequirement(0, 1, minimum, 0x40F)])[1]) == [Port(minimum, 0)]
    assert assign(io, [PortRequirement(0, 1, 0x3F8, 0x3FF)]) == (OK, None)  # strictly inside


def test_length_past_max_underflows_and_a_wrapping_search_stops() -> None:
    """§3.3 / §9.6: Length > Max+1 makes the bound wrap to nearly 2**64, so a free first
    candidate is returned although it runs past Max; where Start itself would wrap past
    2**64 ReactOS may loop for ever, and the harness stops, notes it, and reports the
    descriptor as not found (the call returns at once)."""
    io = manager(Memory(0, 0x10))
    assert partials(assign(io, [MemoryRequirement(0x2000, 1, 0x100, 0xFFF)])[1]) == [Memory(0x100, 0x2000)]
    assert partials(assign(io, [MemoryRequirement(0x2000, 1, 0, 0xFFF)])[1]) == [Memory(0x2001, 0x2000)]
    top = 0xFFFFFFFF_FFFFF000
    io = manager(Memory(top, 0xF00))
    for request in (MemoryRequirement(0x100, 1, top, 0xFFFFFFFF_FFFFFFFF),   # a window at the very top
                    MemoryRequirement(0x10, 1, top + 0x10, 0)):              # and the underflow
        assert assign(io, [request]) == (OK, None)
        assert any("would wrap past 0x10000000000000000" in n for n in io.reactos_assignments[-1].notes)
    # A holder ending exactly at 2**64 has an end of 0 in ReactOS's math: it never conflicts.
    io = manager(Memory(top, 0x1000))
    assert partials(assign(io, [MemoryRequirement(0x10, 1, top, 0xFFFFFFFF_FFFFFFFF)])[1]) == [Memory(top, 0x10)]
    # A free candidate that itself wraps (underflowed bound) is what ReactOS would return;
    # no descriptor can hold it, so it is reported as not found.
    assert assign(io, [MemoryRequirement(0x2000, 1, top, 0xFFF)]) == (OK, None)
    assert "no descriptor can hold it" in io.reactos_assignments[-1].notes[0]
    # Bus numbers count in 32 bits: the same bound there.
    io = manager(BusNumber(0xFFFFFF00, 0xF0))
    assert assign(io, [BusNumberRequirement(1, 0xFFFFFF00, 0xFFFFFFFF)]) == (OK, None)
    assert "would wrap past 0x100000000" in io.reactos_assignments[-1].notes[0]
    assert partials(assign(io, [BusNumberRequirement(2, 0, 0xFF)])[1]) == [BusNumber(0, 2)]


def test_no_requirements_is_not_implemented() -> None:
    """§3.2 steps 2 and 4: NULL, no lists or an empty first list -> STATUS_NOT_IMPLEMENTED."""
    io = manager()
    empty_first = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, (IO_RESOURCE_LIST(()),
                                                            IO_RESOURCE_LIST((PortRequirement(8, 8, 0x300, 0x3FF),))))
    for req in (None, IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, ()), empty_first):
        assert io.IoAssignResources("Asker", None, None, None, req) == (NTSTATUS.STATUS_NOT_IMPLEMENTED, None)
    assert manager(reactos=False).IoAssignResources("Asker", None, None, None, None) == (OK, None)


def test_the_silent_detector_rules() -> None:
    """§2.3 (RX-pnpres-new): half-open ranges in wrapping 64-bit math, bus numbers in 32-bit,
    interrupts by Vector, DMA by Channel, both Shared skip, other types never."""
    pairs = [
        (Port(0x3F8, 8), Port(0x3F8, 1), True),            # the same Start (old ReactOS missed it)
        (Port(0x3F8, 8), Port(0x400, 8), False),           # adjacent
        (Port(0x3F8, 8), Port(0x3FF, 1), True),            # last byte
        (Port(0x3F8, 8), Memory(0x3F8, 8), False),         # Type differs
        (Port(0x3F8, 8, share=SHARED), Port(0x3F8, 8, share=SHARED), False),
        (Port(0x3F8, 8, share=SHARED), Port(0x3F8, 8), True),
        (Interrupt(4, 0, -1), Interrupt(9, 0, -1), True),  # Level-only descriptors: Vector 0 each
        (Interrupt(4, 4, -1), Interrupt(4, 5, -1), False),
        (Dma(1, 0), Dma(1, 0x80), True),
        (Dma(1, 0), Dma(2, 0), False),
        (BusNumber(0xFFFFFFF0, 0x10), BusNumber(0xFFFFFFF8, 1), False),              # end wraps to 0
        (BusNumber(0xFFFFFFE0, 0x10), BusNumber(0xFFFFFFE8, 1), True),
        (Memory(0xFFFFFFFF_FFFFFFF0, 0x10), Memory(0xFFFFFFFF_FFFFFFF8, 1), False),  # end wraps to 0
        (Memory(0xFFFFFFFF_FFFFFFE0, 0x10), Memory(0xFFFFFFFF_FFFFFFE8, 1), True),
    ]
    for a, b, expected in pairs:
        assert conflicts(a, b) == conflicts(b, a) == expected, (a, b)


def test_the_allocator_alone_and_the_hal_keeps_the_documented_path() -> None:
    """fixup_resource_list works on any list of stored partials; the HAL's slot allocator
    of a compat I/O manager still files its claims (ReactOS's HalAssignSlotResources does
    not arbitrate at all, §3.5, which is not modelled)."""
    result = fixup_resource_list(requirements([PortRequirement(8, 8, 0x300, 0x30F)]), [Port(0x300, 8)])
    assert (result.status, result.resources, result.list_index) == (OK, None, 0)
    hal = Hal(ReplayBus({"format": "harness-bus-transcript", "version": 1, "calls": []}))
    io = IoManager(Registry(":memory:"), hal, reactos_compat=True)
    window = requirements([PortRequirement(8, 8, 0x300, 0x30F)])
    status, got = hal.allocator.IoAssignResources("Slot", None, None, None, window)
    assert status == OK and [c.descriptor for c in io.claims_of_driver("Slot")] == partials(got)
    assert HAL_NAME not in {c.owner.driver for c in io.arbiter.claims()}


def test_the_documented_search_direction_is_a_policy() -> None:
    """§3.4 MODEL: top-down (Windows' RtlFindRange) by default, bottom-up on request; the
    start is a multiple of Alignment either way (Min rounded up, Max - Length rounded down)."""
    window = [PortRequirement(0x10, 0x10, 0x1003, 0x10F8)]
    top = manager(reactos=False)
    bottom = IoManager(Registry(":memory:"), assign_search="bottom-up")
    assert top.assign_search == "top-down"
    assert partials(assign(top, window)[1]) == [Port(0x10E0, 0x10)]
    assert partials(assign(bottom, window)[1]) == [Port(0x1010, 0x10)]
    with pytest.raises(ValueError, match="top-down, bottom-up"):
        IoManager(Registry(":memory:"), assign_search="middle-out")


def test_on_a_live_pc_the_detector_sees_the_hals_own_claims() -> None:
    """On the default pc after SeaBIOS the HAL claims what it reads from the chipset (the
    ACPI SCI among its IRQs); ReactOS's allocator walks past those from the bottom:
    ports 0x00, 0x20 and 0x60 conflict (DMA 1, PIC 1, the speaker gate 0x61), so Start goes
    0 -> 0x20 -> 0x60 -> 0xE0 (2*Start + 0x10 + 0x10), the first free candidate."""
    from harness.config import load_machine
    from harness.qemu.livebus import LiveBus
    from harness.qemu.machine import Machine
    from helpers import CONFIGS
    with Machine(load_machine(CONFIGS / "machines" / "default.yaml")) as m:
        m.run_firmware()
        hal = Hal(LiveBus(m))
        io = IoManager(Registry(":memory:"), hal, reactos_compat=True)
        io.report_hal_resources(hal.HalReportResourceUsage())
        held_irqs = {p.vector for _, p in hal.HalReportResourceUsage().partials() if isinstance(p, Interrupt)}
        assert hal.sci_irq() in held_irqs and 8 in held_irqs
        (irq,) = partials(assign(io, [InterruptRequirement(8, 15)])[1])
        assert irq.vector == min(set(range(8, 16)) - held_irqs)
        assert partials(assign(io, [PortRequirement(0x10, 0x10, 0, 0xFF)])[1]) == [Port(0xE0, 0x10)]
