/* Multiboot v1 entry of the probe guest: QEMU's -kernel loads this ELF, SeaBIOS runs
 * first (PCI BARs, PIRQ routing, ELCR are the firmware's), then jumps here in 32-bit
 * protected mode with paging off and interrupts disabled. */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003          /* page-align modules, give us mem_lower/upper */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text
        .globl _start
_start:
        cli                           /* nothing is ever acknowledged: IRR shows the wires */
        mov  $stack_top, %esp
        push %ebx                     /* multiboot info */
        push %eax                     /* multiboot magic */
        call probe_main
1:      hlt                           /* probe_main exits QEMU; never reached */
        jmp  1b

        .section .bss
        .align 16
        .space 16384
stack_top:

        .section .note.GNU-stack, "", @progbits
