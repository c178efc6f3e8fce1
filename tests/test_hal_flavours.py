"""The HAL flavours (nt-semantics.md §4.1 last paragraph, §4.2, §9.17): the legacy PC/AT HAL
with its bus handlers against the ACPI HAL, which has none.

Model-level checks run over an empty bus transcript (nothing may be read); the live check
measures on this QEMU which machine types have ACPI tables at all, the fact the choice of
flavour rests on.
"""

from __future__ import annotations

import pytest

from harness.config import hal_for, load_machine
from harness.nt.apic import Madt, find_rsdp, find_rsdt_in_ram
from harness.nt.hal import HAL_FLAVOURS, Hal, HalError, hal_flavour_for
from harness.nt.iomgr import HAL_RESOURCE_CLASS
from harness.nt.registry import RESOURCE_MAP
from harness.nt.recorded import ReplayBus
from harness.nt.resources import INTERFACE_TYPE, Eisa, Internal, Isa, MicroChannel, PCIBus
from harness.qemu.livebus import LiveBus
from harness.qemu.machine import Machine
from helpers import CONFIGS

NO_OVERRIDES = Madt(0, 0xFEE00000, True, ())


def silent_bus() -> ReplayBus:
    """A bus with nothing recorded: any read the HAL makes fails the test."""
    return ReplayBus({"format": "harness-bus-transcript", "version": 1, "calls": []})


def hal(flavour: str | None = None, interrupt_model: str = "pic") -> Hal:
    return Hal(silent_bus(), interrupt_model=interrupt_model, flavour=flavour, madt=NO_OVERRIDES)


def test_each_interrupt_model_has_its_flavour_and_bad_choices_are_refused() -> None:
    assert HAL_FLAVOURS == ("legacy", "acpi")
    assert (hal_flavour_for("pic"), hal_flavour_for("apic")) == ("legacy", "acpi")
    assert hal_flavour_for("pic", "acpi") == "acpi"      # the ACPI PIC HAL (halacpi)
    assert hal_flavour_for("apic", "acpi") == "acpi"
    with pytest.raises(ValueError, match="MADT"):
        hal_flavour_for("apic", "legacy")                # an MPS HAL is not modelled
    with pytest.raises(ValueError, match="legacy, acpi"):
        hal_flavour_for("pic", "ACPI")
    with pytest.raises(ValueError, match="pic or apic"):
        hal_flavour_for("auto")
    with pytest.raises(ValueError, match="legacy, acpi"):
        hal("mps")
    assert hal().flavour == "legacy" and hal(interrupt_model="apic").flavour == "acpi"
    # Each files its own claims under its own name, as ReactOS's halpcat.c, halacpi.c, apicacpi.c.
    assert [h.name for h in (hal(), hal("acpi"), hal(interrupt_model="apic"))] == [
        "PC Compatible Eisa/Isa HAL", "ACPI Compatible Eisa/Isa HAL", "ACPI 1.0 - APIC platform UP"]
    # What a job runs on each machine file (harness.config.hal_for's automatic choice).
    chosen = {name: hal_flavour_for(hal_for(load_machine(CONFIGS / "machines" / f"{name}.yaml")))
              for name in ("isapc", "default", "q35")}
    assert chosen == {"isapc": "legacy", "default": "legacy", "q35": "acpi"}


# Inputs the legacy table refuses, each for its own reason (§4.1): ISA memory past 24 address
# lines, a port past 0xFFFF, a second ISA bus, a bus type with no handler, an AddressSpace
# other than 0/1, a PCI bus that does not exist, memory above 4 GiB on the table's PCI bus.
REFUSED_BY_THE_TABLE = [
    (Isa, 0, 0x1000000, 0),
    (Isa, 0, 0x10000, 1),
    (Isa, 1, 0x3F8, 1),
    (Eisa, 0, 0x3F8, 1),
    (MicroChannel, 3, 0xD0000, 0),
    (Isa, 0, 0x3F8, 2),
    (Internal, 0, 0xFFFFFFFF_FFFFFFF0, 0),
    (INTERFACE_TYPE.VMEBus, 0, 0x1234, 1),
]


@pytest.mark.parametrize("iface, bus, address, space", REFUSED_BY_THE_TABLE)
def test_the_acpi_hal_translates_every_non_pci_bus_as_the_identity(iface, bus, address, space) -> None:
    legacy, acpi = hal(), hal("acpi")
    assert not legacy.HalTranslateBusAddress(iface, bus, address, space)
    # busemul.c: TranslatedAddress = BusAddress, TRUE, AddressSpace left as the caller gave it.
    assert acpi.HalTranslateBusAddress(iface, bus, address, space) == (True, space, address)
    assert hal("acpi", "apic").HalTranslateBusAddress(iface, bus, address, space) == (True, space, address)


def test_the_acpi_hal_translates_pci_through_its_default_routine() -> None:
    """HalPciTranslateBusAddress defaults to the same identity routine (halacpi.c
    HalpInitNonBusHandler): no bus handler, so not even the bus number is checked (the
    silent bus would fail the test if the HAL enumerated PCI to find out)."""
    acpi = hal("acpi")
    for bus, address, space in ((0, 0x100000000, 0), (0, 0x10000, 1), (255, 0xFEBF0000, 0), (3, 0, 7)):
        assert acpi.HalTranslateBusAddress(PCIBus, bus, address, space) == (True, space, address)


def test_a_negative_address_is_refused_by_both_flavours() -> None:
    for h in (hal(), hal("acpi")):
        assert not h.HalTranslateBusAddress(Isa, 0, -1, 0)


def test_the_acpi_hal_maps_interrupts_without_asking_for_a_bus() -> None:
    """§4.2 / busemul.c: the ACPI HAL hands only level and vector to its root translator,
    so the interface type and bus number do not decide; the line checks still do."""
    legacy, acpi_pic, acpi_apic = hal(), hal("acpi"), hal(interrupt_model="apic")
    for iface, bus in ((Eisa, 0), (Isa, 1), (MicroChannel, 2), (INTERFACE_TYPE.VMEBus, 0)):
        assert not legacy.HalGetInterruptVector(iface, bus, 5, 5)
        assert acpi_pic.HalGetInterruptVector(iface, bus, 5, 5) == acpi_pic.HalGetInterruptVector(Isa, 0, 5, 5) \
            == (0x35, 22, 1)
        v = acpi_apic.HalGetInterruptVector(iface, bus, 5, 5)
        assert v and v == acpi_apic.HalGetInterruptVector(Isa, 0, 5, 5)  # one vector per GSI
    # A PCI line on a bus the silent bus cannot confirm: the ACPI HAL does not ask.
    assert acpi_apic.HalGetInterruptVector(PCIBus, 9, 20, 20)
    for h in (acpi_pic, acpi_apic):
        for level in (2, 24, 255):             # the cascade, past the I/O APIC's 24 inputs
            assert not h.HalGetInterruptVector(Eisa, 0, level, level)
        assert not h.HalGetInterruptVector(PCIBus, 0, 0, 0)  # PCI line 0: no interrupt (§9.8)
    kd = Hal(silent_bus(), flavour="acpi", madt=NO_OVERRIDES, kd_port=0x2F8)
    assert not kd.HalGetInterruptVector(Eisa, 4, 3, 3)  # the debugger's IRQ never maps


def test_acpi_tables_decide_where_the_acpi_flavour_can_run() -> None:
    """Measured: QEMU's isapc has no ACPI tables, pc and q35 have them (with an I/O APIC in
    the MADT), so the ACPI HAL cannot run on isapc and the PIC HAL there is the PC/AT one.
    Where SeaBIOS gives up booting the RSDP is in its F segment, as a boot loader finds it,
    and the RSDT at the top of RAM.  (Its reboot, which the harness no longer runs, restores
    its pristine image over the F segment first: the RSDP is gone after it.)"""
    found = {}
    for name in ("isapc", "default", "q35"):
        with Machine(load_machine(CONFIGS / "machines" / f"{name}.yaml")) as m:
            m.run_firmware()
            bus = LiveBus(m)
            found[name] = (find_rsdp(bus) is not None, find_rsdt_in_ram(bus) is not None)
            if name == "isapc":
                with pytest.raises(HalError, match="ACPI tables"):
                    Hal(bus, flavour="acpi")
                assert Hal(bus, interrupt_model="auto").flavour == "legacy"
                continue
            legacy, acpi = Hal(bus), Hal(bus, flavour="acpi")
            assert (legacy.flavour, acpi.flavour) == ("legacy", "acpi")
            # §9.17: ISA memory above 16 MiB fails on the PC/AT HAL, succeeds on the ACPI HAL.
            assert not legacy.HalTranslateBusAddress(Isa, 0, 0x1000000, 0)
            assert acpi.HalTranslateBusAddress(Isa, 0, 0x1000000, 0) == (True, 0, 0x1000000)
            assert Hal(bus, interrupt_model="auto").flavour == "acpi"  # the MADT names an I/O APIC
            if name == "default":  # the test bed takes the setting through to its HAL
                from harness.nt.registry import Registry
                from harness.testbed import Testbed
                bed = Testbed(m, Registry(":memory:"), hal_flavour="acpi")
                assert (bed.hal.interrupt_model, bed.hal.flavour) == ("pic", "acpi")
                assert bed.hal.HalTranslateBusAddress(Eisa, 0, 0x3F8, 1) == (True, 1, 0x3F8)
                hal_keys = bed.io.registry.subkeys(f"{RESOURCE_MAP}\\{HAL_RESOURCE_CLASS}")
                assert hal_keys == ["ACPI Compatible Eisa/Isa HAL"] == [bed.io.hal_name]
    assert found == {"isapc": (False, False), "default": (True, True), "q35": (True, True)}


def test_the_flavour_shows_in_what_pnp_gets() -> None:
    """Downstream of HalTranslateBusAddress: ISA memory above 16 MiB is CM_PROB_TRANSLATION_FAILED
    (code 33) on the PC/AT HAL and fine on the ACPI HAL; IRQ 2 fails on both (§9.17, §9.8)."""
    from harness.nt import pnp
    from harness.nt.resources import (IO_RESOURCE_LIST, IO_RESOURCE_REQUIREMENTS_LIST, InterruptRequirement,
                                      MemoryRequirement)

    def nodes() -> list[pnp.DeviceNode]:
        out = []
        for name, wants in (("isamem", MemoryRequirement(0x1000, 0x1000, 0x1000000, 0x1000FFF)),
                            ("cascade", InterruptRequirement(2, 2))):
            n = pnp.DeviceNode(f"Root\\TEST\\{name}", name)
            n.configs[pnp.ConfigType.BASIC] = IO_RESOURCE_REQUIREMENTS_LIST(Isa, 0, 0, (IO_RESOURCE_LIST((wants,)),))
            out.append(n)
        return out

    problems = {}
    for flavour in HAL_FLAVOURS:
        found = nodes()
        pnp.assign(found, translate=pnp.hal_translator(hal(flavour)))
        problems[flavour] = [n.problem for n in found]
    assert problems == {"legacy": [pnp.CM_PROB_TRANSLATION_FAILED] * 2,
                        "acpi": [0, pnp.CM_PROB_TRANSLATION_FAILED]}
