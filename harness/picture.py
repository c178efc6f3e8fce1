"""A picture of one machine's resources: claims, what QEMU decodes, and conflicts.

Four panels: legacy I/O ports (0-0x3ff), the rest of the I/O space in use, IRQ lines
0-15 and DMA channels 0-7.  Each claimant (HAL, driver device) has a row; its claims are
bars, outlined red where the error log recorded a conflict on them, and the ranges QEMU
decodes are drawn as a grey track under the claims ("decoded by the hardware").
Rendered headless (Agg) into a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .atomicio import atomic_output
from .nt.arbiter import ResourceKind, interrupt_line
from .qemu.layout import ISA_IRQ_PROPERTIES, Layout
from .verdict import CLEAN, WARNING

LEGACY_PORT_END = 0x400


def _rows(io: Any) -> list[str]:
    return sorted({str(c.owner) for c in io.arbiter.claims()})


def draw_resource_map(io: Any, layout: Layout, result: Any, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(io)
    conflicts = [e.conflict for e in io.error_log if e.conflict is not None]
    refused = [(str(c.requested.owner), c.requested) for c in conflicts]
    labels = ["decoded by QEMU", *rows, *sorted({r for r, _ in refused} - set(rows))]
    index = {name: i for i, name in enumerate(labels)}
    height = max(4.0, 0.35 * len(labels) + 2)
    fig, axes = plt.subplots(1, 4, figsize=(22, height), sharey=True,
                             gridspec_kw={"width_ratios": [4, 3, 2, 1.2]})
    high_ports = [r for r in layout.io if r.start >= LEGACY_PORT_END and r.owner is not None]
    high_lo = min([r.start for r in high_ports] + [c.start for c in io.arbiter.claims()
                                                   if c.kind is ResourceKind.PORT and c.start >= LEGACY_PORT_END]
                  + [0xC000])
    panels = [(axes[0], ResourceKind.PORT, 0, LEGACY_PORT_END, "I/O ports 0x0-0x3ff"),
              (axes[1], ResourceKind.PORT, high_lo & ~0xFF, 0x10000, f"I/O ports {high_lo & ~0xFF:#x}-0xffff"),
              (axes[2], ResourceKind.INTERRUPT, 0, 16, "IRQ"),
              (axes[3], ResourceKind.DMA, 0, 8, "DMA")]
    for ax, kind, lo, hi, title in panels:
        ax.set_title(title)
        ax.set_xlim(lo, hi)
        if kind is ResourceKind.PORT:
            for r in layout.io:
                if r.owner is not None and r.end >= lo and r.start < hi:
                    ax.barh(0, r.end - r.start + 1, left=r.start, color="0.75", edgecolor="0.4", linewidth=0.3)
        else:
            points = _hardware_points(layout, kind)
            for value in points:
                ax.barh(0, 0.8, left=value + 0.1, color="0.75")
            ax.set_xticks(range(lo, hi))
        for claim in io.arbiter.claims():
            if claim.kind is not kind or claim.empty:
                continue
            start, width = _span(claim)
            if start + width < lo or start >= hi:
                continue
            hit = any(c.holder == claim for c in conflicts)
            ax.barh(index[str(claim.owner)], width, left=start, color="tab:blue" if not hit else "tab:orange",
                    edgecolor="red" if hit else "navy", linewidth=1.5 if hit else 0.5)
        for name, claim in refused:
            if claim.kind is kind:
                start, width = _span(claim)
                if lo <= start < hi:
                    ax.barh(index[name], width, left=start, color="none", edgecolor="red", hatch="///",
                            linewidth=1.5)
        if kind is ResourceKind.PORT:
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{int(v):#x}"))
            ax.tick_params(axis="x", labelrotation=45)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)))
    axes[0].set_yticklabels(labels, fontsize=8)
    axes[0].invert_yaxis()
    verdict = {CLEAN: "clean", WARNING: "warnings only: legal but lossy"}.get(
        result.verdict, "conflicts: refused claims hatched red, holders outlined red")
    fig.suptitle(f"{layout.machine} ({layout.machine_type}): ResourceMap against QEMU's decode — {verdict}")
    fig.tight_layout()
    with atomic_output(path, "wb") as handle:
        fig.savefig(handle, dpi=90, format="png")
    plt.close(fig)
    return path


def _span(claim: Any) -> tuple[int, int]:
    if claim.kind is ResourceKind.INTERRUPT:
        return interrupt_line(claim.descriptor), 1
    if claim.kind is ResourceKind.DMA:
        return claim.descriptor.channel, 1
    return claim.start, claim.end - claim.start + 1


def _hardware_points(layout: Layout, kind: ResourceKind) -> set[int]:
    props = ISA_IRQ_PROPERTIES if kind is ResourceKind.INTERRUPT else ("dma", "dma16")
    out = {dev.properties[p] for dev in layout.isa for p in props
           if p in dev.properties and 0 <= dev.properties[p] < (16 if kind is ResourceKind.INTERRUPT else 8)}
    return out
