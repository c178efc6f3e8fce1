#!/bin/busybox sh
# /init of the harness's Linux guest: report what the kernel made of the hardware, then
# power off.  Every section is printed between "@@GL-BEGIN <what>" and "@@GL-END <what>".
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Report on the harness's PCI console (gl_con=<PCI address>), whatever ttyS number the
# kernel gave it: ISA UARTs under test may take any of the others.
for t in /sys/bus/pci/devices/"$gl_con"/tty/*; do con="/dev/${t##*/}"; exec >"$con" 2>&1 </dev/null; done
echo "@@GL-UP@@ $(cut -d' ' -f1 /proc/uptime)"
# Modules in dependency order (the kernel hands gl_mods=a,b,c to init as a variable).
for m in $(echo "$gl_mods" | tr ',' ' '); do insmod "/lib/modules/$m.ko" 2>&1; done
# Opening a port is what makes the kernel request its IRQ: without it IRQ conflicts stay silent.
for t in /dev/ttyS*; do stty -F "$t" >/dev/null 2>&1; done
section() { echo "@@GL-BEGIN $1"; cat "$1" 2>/dev/null; echo "@@GL-END $1"; }
for f in /proc/ioports /proc/iomem /proc/interrupts /proc/dma /proc/cmdline /proc/version; do section "$f"; done
for d in /sys/bus/pci/devices/*; do section "$d/resource"; section "$d/irq"; done
for d in /sys/bus/pnp/devices/*; do section "$d/id"; section "$d/resources"; done
echo "@@GL-BEGIN dmesg"; dmesg; echo "@@GL-END dmesg"
echo "@@GL-DONE"
# poweroff -f does not wait for the tty: on a loaded host KBs of the report were still in
# its buffer and were lost.  Setting the console's own settings again (tcsetattr with
# TCSADRAIN) returns only when everything written has left the UART.
stty -F "$con" "$(stty -F "$con" -g)"
poweroff -f
