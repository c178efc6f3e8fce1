"""The arbiter's conflict rule and allocator (nt-semantics.md §2.5, §3.4, §9): no QEMU."""

from __future__ import annotations

import pytest

from harness.nt.arbiter import Arbiter, Owner, ResourceKind, claims_of
from harness.nt.resources import (BusNumber, CM_RESOURCE_LIST, ConfigDataRequirement, Dma, DmaRequirement,
                                  IO_RESOURCE_ALTERNATIVE, IO_RESOURCE_LIST, IO_RESOURCE_PREFERRED,
                                  IO_RESOURCE_REQUIREMENTS_LIST, Interrupt, InterruptRequirement, Isa,
                                  LCPRI_DESIRED, LCPRI_SUBOPTIMAL, Memory, PCIBus, Port, PortRequirement,
                                  DeviceSpecific, MemoryRequirement, CmResourceShare as S)

A, B = Owner("DrvA", r"\Device\A0", "Other"), Owner("DrvB", r"\Device\B0", "Other")


def holding(owner: Owner, *partials, iface=Isa) -> Arbiter:
    arbiter = Arbiter()
    arbiter.replace(owner, claims_of(owner, CM_RESOURCE_LIST.single(iface, 0, *partials)))
    return arbiter


def conflicts(arbiter: Arbiter, owner: Owner, *partials, iface=Isa) -> list:
    return arbiter.find_conflicts(claims_of(owner, CM_RESOURCE_LIST.single(iface, 0, *partials)), [owner])


@pytest.mark.parametrize("held, asked, clash", [
    (Port(0x3F8, 8), Port(0x400, 8), False),        # §9.1 adjacency
    (Port(0x3F8, 8), Port(0x3FF, 1), True),         # last byte
    (Port(0x3F0, 8), Port(0x3F8, 8), False),
    (Port(0x3F8, 8), Port(0x3F8, 2), True),         # §9.2 identical start
    (Port(0x300, 0x20), Port(0x310, 1), True),      # §9.3 containment both ways
    (Port(0x310, 1), Port(0x300, 0x20), True),
    (Port(0x3F8, 8), Port(0x3F8, 0), False),        # §9.4 zero length at a boundary
    (Port(0x3F8, 8), Port(0x400, 0), False),
    (Port(0x3F8, 8), Port(0x3FA, 0), True),         # strictly inside
    (Port(0x3FA, 0), Port(0x3F8, 8), True),
    (Port(0xFFF8, 0x10), Port(0x10000, 4), True),   # §9.5 past 0xffff: 64-bit math, no window
    (Memory(0xFFFFFFFF_FFFFFFF0, 0x10), Memory(0xFFFFFFFF_FFFFFFFF, 1), True),   # §9.6
    (Port(0x3F8, 8), Memory(0x3F8, 8), False),      # §9.9 type separation
    (Port(0x3F8, 8, flags=0), Memory(0x3F8, 8), False),
    (Dma(2, 0x10), Dma(2, 0x20), True),
    (Dma(2), Dma(3), False),
    (DeviceSpecific(b"\1\2"), DeviceSpecific(b"\1\2"), False),
    (Interrupt(5, 5), Interrupt(5, 0x35), True),    # §9.8 the IRQ is Level when nonzero
    (Interrupt(0, 5), Interrupt(5, 9), True),       # Level 0: the Vector names it
    (Interrupt(5, 5), Interrupt(6, 5), False),
    (BusNumber(1, 2), BusNumber(2, 1), True),
    # §9.8: a shared level-sensitive PCI IRQ and an exclusive latched ISA IRQ on one line
    (Interrupt(11, 11, share=S.CmResourceShareShared), Interrupt(11, 11, flags=1), True),
    (Interrupt(11, 11, flags=1), Interrupt(11, 11, share=S.CmResourceShareShared), True),
    (Interrupt(11, 11, share=S.CmResourceShareShared), Interrupt(11, 11, share=S.CmResourceShareShared), False),
    (BusNumber(0xFFFFFF00, 0x100), BusNumber(0xFFFFFFFF, 1), True),   # §9.6: ends exactly at 2**32
    (Port(0x3F8, 8), Port(0x3F8, 8, flags=0), True),  # §9.9: PORT_MEMORY is still a port
])
def test_conflict_rule(held, asked, clash) -> None:
    assert bool(conflicts(holding(A, held), B, asked)) is clash


@pytest.mark.parametrize("mine, theirs, same_driver, clash", [
    (S.CmResourceShareShared, S.CmResourceShareShared, False, False),
    (S.CmResourceShareShared, S.CmResourceShareUndetermined, False, True),
    (S.CmResourceShareShared, S.CmResourceShareDeviceExclusive, False, True),
    (S.CmResourceShareDriverExclusive, S.CmResourceShareDriverExclusive, True, False),
    (S.CmResourceShareDriverExclusive, S.CmResourceShareShared, True, False),
    (S.CmResourceShareDriverExclusive, S.CmResourceShareDriverExclusive, False, True),
    (S.CmResourceShareDeviceExclusive, S.CmResourceShareDeviceExclusive, True, True),
    (S.CmResourceShareUndetermined, S.CmResourceShareUndetermined, True, True),
])
def test_share_dispositions(mine, theirs, same_driver, clash) -> None:
    other = Owner("DrvA", r"\Device\A1", "Other") if same_driver else B
    arbiter = holding(A, Interrupt(10, 10, share=theirs))
    assert bool(conflicts(arbiter, other, Interrupt(10, 10, share=mine))) is clash


def test_interface_type_does_not_separate_claims() -> None:
    assert conflicts(holding(A, Port(0x3F8, 8), iface=Isa), B, Port(0x3F8, 8), iface=PCIBus)


def test_the_slot_being_replaced_is_excluded_but_other_slots_of_the_caller_count() -> None:
    arbiter = holding(A, Port(0x3F8, 8))
    assert not conflicts(arbiter, A, Port(0x3F8, 8))
    assert conflicts(arbiter, Owner("DrvA", r"\Device\A1", "Other"), Port(0x3F8, 8))
    assert conflicts(arbiter, Owner("DrvA", None, "Other"), Port(0x3F8, 8))   # driver slot is distinct


def test_replace_and_release() -> None:
    arbiter = holding(A, Port(0x3F8, 8), Interrupt(4, 4))
    arbiter.replace(A, claims_of(A, CM_RESOURCE_LIST.single(Isa, 0, Port(0x2F8, 8))))
    assert [(c.kind, c.start) for c in arbiter.claims()] == [(ResourceKind.PORT, 0x2F8)]
    assert arbiter.release(A) and not arbiter.release(A) and len(arbiter) == 0


def req(*lists, iface=Isa) -> IO_RESOURCE_REQUIREMENTS_LIST:
    return IO_RESOURCE_REQUIREMENTS_LIST(iface, 0, 0, tuple(IO_RESOURCE_LIST(tuple(l)) for l in lists))


def placed(allocation) -> list:
    return [p for _, p in allocation.resources.partials()] if allocation.resources else None


def test_preferred_then_alternatives_in_one_list() -> None:
    arbiter = holding(A, Port(0x3F8, 8))
    got = arbiter.allocate(B, req([PortRequirement(8, 8, 0x3F8, 0x3FF, option=IO_RESOURCE_PREFERRED),
                                   PortRequirement(8, 8, 0x2F8, 0x2FF, option=IO_RESOURCE_ALTERNATIVE),
                                   InterruptRequirement(3, 4)]))
    assert placed(got) == [Port(0x2F8, 8), Interrupt(3, 3, -1)]
    # an ALTERNATIVE marked PREFERRED is tried before its siblings
    got = Arbiter().allocate(B, req([PortRequirement(8, 8, 0x3F8, 0x3FF),
                                     PortRequirement(8, 8, 0x2E8, 0x2EF, option=IO_RESOURCE_ALTERNATIVE),
                                     PortRequirement(8, 8, 0x2F8, 0x2FF, option=IO_RESOURCE_ALTERNATIVE | IO_RESOURCE_PREFERRED)]))
    assert placed(got) == [Port(0x2F8, 8)]


def test_a_failed_required_descriptor_moves_to_the_next_list_never_a_partial_one() -> None:
    arbiter = holding(A, Port(0x300, 0x20), Interrupt(5, 5))
    got = arbiter.allocate(B, req([PortRequirement(0x20, 0x20, 0x340, 0x35F), InterruptRequirement(5, 5)],
                                  [PortRequirement(0x20, 0x20, 0x320, 0x33F), InterruptRequirement(10, 10)]))
    assert got.list_index == 1 and placed(got) == [Port(0x320, 0x20), Interrupt(10, 10, -1)]
    none = arbiter.allocate(B, req([PortRequirement(0x20, 0x20, 0x340, 0x35F), InterruptRequirement(5, 5)]))
    assert none.resources is None and none.attempts[0].conflicts[0].holder.owner == A


def test_lists_are_tried_in_config_data_priority_order() -> None:
    got = Arbiter().allocate(B, req([ConfigDataRequirement(LCPRI_SUBOPTIMAL), PortRequirement(8, 8, 0x2F8, 0x2FF)],
                                    [ConfigDataRequirement(LCPRI_DESIRED), PortRequirement(8, 8, 0x3F8, 0x3FF)]))
    assert got.list_index == 1 and placed(got) == [Port(0x3F8, 8)]


def test_alignment_window_and_direction() -> None:
    arbiter = holding(A, Memory(0xFEBF0000, 0x10000))
    got = arbiter.allocate(B, req([MemoryRequirement(0x1000, 0x1000, 0xFEB00000, 0xFEBFFFFF)]))
    assert placed(got) == [Memory(0xFEBEF000, 0x1000)]        # top-down, past the holder
    got = arbiter.allocate(B, req([PortRequirement(0x10, 0x10, 0x1003, 0x1040)]), top_down=False)
    assert placed(got) == [Port(0x1010, 0x10)]                # Min rounded up to the alignment
    assert arbiter.allocate(B, req([PortRequirement(0x100, 0x100, 0x1000, 0x10FE)])).resources is None
    assert arbiter.allocate(B, req([PortRequirement(8, 0, 0x10, 0x17)])).resources is not None   # Alignment 0 = 1


def test_later_groups_avoid_earlier_placements_of_the_same_list() -> None:
    got = Arbiter().allocate(B, req([PortRequirement(8, 8, 0x3F8, 0x3FF), PortRequirement(8, 8, 0x3F0, 0x3FF),
                                     DmaRequirement(1, 3), DmaRequirement(1, 3)]))
    assert placed(got) == [Port(0x3F8, 8), Port(0x3F0, 8), Dma(1), Dma(2)]


def test_allocation_ignores_the_callers_own_slot() -> None:
    arbiter = holding(B, Port(0x3F8, 8))
    assert placed(arbiter.allocate(B, req([PortRequirement(8, 8, 0x3F8, 0x3FF)]))) == [Port(0x3F8, 8)]
