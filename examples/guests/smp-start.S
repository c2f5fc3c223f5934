/* Multiboot v1 header and the assembly side of smp.c: the BSP's entry, the AP trampoline (copied
 * below 1 MiB by smp.c, where a SIPI can start it), the APs' 32-bit entries and the interrupt stubs.
 * Flags as multiboot-start.S: page-align modules, memory information; the ELF headers give the load. */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x3
#define MAX_CPUS 16
#define AP_STACK 8192
#define LAPIC_ID 0xfee00020

        .section .multiboot, "a"
        .balign 4
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

        .code32
        .section .text.start, "ax"
        .globl _start
_start:
        movl    $bsp_stack_top, %esp
        /* our own GDT: the loader's (QEMU's, nodevmm's) may sit in memory smp.c reuses */
        lgdtl   gdtr
        ljmpl   $0x08, $1f
1:      movw    $0x10, %cx
        movw    %cx, %ds
        movw    %cx, %es
        movw    %cx, %ss
        movw    %cx, %fs
        movw    %cx, %gs
        pushl   %ebx                    /* multiboot information structure */
        pushl   %eax                    /* boot loader magic 0x2BADB002 */
        call    kmain
        .globl  halt_forever
halt_forever:
        cli
        hlt
        jmp     halt_forever

/* The trampoline's far jump lands here in protected mode with EBX = the real-mode CS it ran at.
 * The stack is the APIC ID's slot of ap_stacks (smp.c starts only APs with IDs below MAX_CPUS). */
        .globl  ap_entry32, ap_entry32_second
ap_entry32:
        xorl    %edx, %edx
        jmp     ap_common
ap_entry32_second:
        movl    $1, %edx
ap_common:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movl    LAPIC_ID, %eax
        shrl    $24, %eax
        cmpl    $MAX_CPUS, %eax
        jae     halt_forever
        leal    1(%eax), %ecx
        imull   $AP_STACK, %ecx
        leal    ap_stacks(%ecx), %esp
        pushl   %edx                    /* second entry? */
        pushl   %ebx                    /* real-mode CS */
        pushl   %eax                    /* APIC ID */
        call    ap_main
        jmp     halt_forever

/* The AP trampoline. A SIPI with vector V starts the AP in real mode at CS = V << 8, IP = 0; this
 * code is copied to V << 12 and uses only CS-relative addresses. smp.c fills tramp_target (offset of
 * ap_entry32 or ap_entry32_second) in each copy. */
        .code16
        .globl  trampoline_start, trampoline_end, tramp_target
trampoline_start:
        cli
        cld
        xorl    %ebx, %ebx
        movw    %cs, %bx
        movw    %bx, %ds
        lgdtl   tramp_gdtr - trampoline_start
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        /* DS still has the real-mode base: the far pointer is read from this copy */
        ljmpl   *(tramp_target - trampoline_start)
        .balign 4
tramp_target:
        .long   0
        .word   0x08
tramp_gdtr:
        .word   gdt_end - gdt - 1
        .long   gdt
trampoline_end:
        .code32

/* 256 interrupt stubs, 16 bytes apart: push the vector, then the common path calls
 * interrupt(vector) in smp.c. Exceptions (with or without an error code) never return from it. */
        .balign 16
        .globl  isr_stubs
isr_stubs:
        .set    vector, 0
        .rept   256
        .balign 16
        .byte   0x68                    /* pushl imm32: every stub the same length */
        .long   vector
        jmp     isr_common
        .set    vector, vector + 1
        .endr
isr_common:
        pushal
        cld
        pushl   32(%esp)
        call    interrupt
        addl    $4, %esp
        popal
        addl    $4, %esp
        iret

        .data
        .balign 8
        .globl  gdt
gdt:    .quad   0
        .quad   0x00cf9b000000ffff      /* 0x08: 32-bit code, flat, accessed */
        .quad   0x00cf93000000ffff      /* 0x10: data, flat, accessed */
gdt_end:
        .balign 4
        .word   0
gdtr:   .word   gdt_end - gdt - 1
        .long   gdt

        .bss
        .balign 16
        .skip   8192
bsp_stack_top:
        .balign 16
        .globl  ap_stacks
ap_stacks:
        .skip   MAX_CPUS * AP_STACK
        .section .note.GNU-stack, "", @progbits
