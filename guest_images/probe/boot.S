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
        lgdt gdt_desc                 /* our own flat segments: the loader's GDT may go away */
        ljmp $0x08, $1f
1:      mov  $0x10, %cx               /* eax and ebx carry the multiboot magic and info */
        mov  %cx, %ds
        mov  %cx, %es
        mov  %cx, %fs
        mov  %cx, %gs
        mov  %cx, %ss
        mov  $stack_top, %esp
        push %ebx                     /* multiboot info */
        push %eax                     /* multiboot magic */
        call probe_main
1:      hlt                           /* probe_main exits QEMU; never reached */
        jmp  1b

/* Interrupt entry for vectors 0x20-0xFF, 16 bytes a stub (the agent's 'a' request,
 * probe.c): the common part records the vector in taken_vector and clears IF in the
 * interrupted EFLAGS, so exactly one interrupt is taken per sti window.  There is no
 * EOI here: the harness, standing in for the HAL, writes it after the ISRs ran. */
        .globl irq_stubs
        .align 16
irq_stubs:
        .set vec, 0x20
        .rept 0xE0
        .align 16
        pushl $vec
        jmp  irq_common
        .set vec, vec + 1
        .endr
irq_common:
        xchg %eax, (%esp)             /* eax = vector; the stack slot keeps the old eax */
        movl %eax, taken_vector
        andl $0xFFFFFDFF, 12(%esp)    /* [esp+4] eip, +8 cs, +12 eflags: IF off on return */
        popl %eax
        iret

        .section .rodata
        .align 8
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF      /* 0x08: flat 32-bit code */
        .quad 0x00CF92000000FFFF      /* 0x10: flat 32-bit data */
gdt_desc:
        .word gdt_desc - gdt - 1
        .long gdt

        .section .bss
        .align 16
        .space 16384
stack_top:

        .section .note.GNU-stack, "", @progbits
