/* 32-bit protected-mode MIPS guest: starts in real mode, loads a flat GDT, sets CR0.PE and far-jumps
 * to 32-bit code (no paging), then runs the ALU and memory loops with 32-bit operands. */
#include "common.inc"
        .text
        .globl _start
_start:
        REAL_MODE_ENTRY
        lgdtl gdt_desc
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl $0x08, $pm32

        .code32
pm32:   movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movl $0x7c00, %esp

        movl ITERATIONS, %ecx
        movl $0x12345678, %ebx
        movl $0x9abcdef0, %edx
        movb $'S', %al
        outb %al, $DEBUG_PORT
alu:    addl %edx, %ebx
        xorl %ebx, %edx
        addl $0x3c5a7e91, %ebx
        decl %ecx
        jnz alu
        movb $'E', %al
        outb %al, $DEBUG_PORT
        movl %ebx, %eax
        xorl %edx, %eax
        call put32

        /* memory loop over dwords at ARRAY + ESI*4 (ESI wraps at 1024): checksum = EAX ^ ESI */
        movl ITERATIONS, %ecx
        xorl %esi, %esi
        movl $0x13579bdf, %edx
        movb $'S', %al
        outb %al, $DEBUG_PORT
mem:    movl ARRAY(,%esi,4), %eax
        addl %edx, %eax
        movl %eax, ARRAY(,%esi,4)
        incl %esi
        andl $0x3ff, %esi
        decl %ecx
        jnz mem
        movl %eax, %ebx
        movb $'E', %al
        outb %al, $DEBUG_PORT
        movl %ebx, %eax
        xorl %esi, %eax
        call put32

        outb %al, $EXIT_PORT
1:      cli
        hlt
        jmp 1b

put32:  movl $4, %ecx
1:      outb %al, $DEBUG_PORT
        shrl $8, %eax
        loop 1b
        ret

        .p2align 3
gdt:    .quad 0
        .quad 0x00cf9a000000ffff /* 0x08: flat 32-bit code */
        .quad 0x00cf92000000ffff /* 0x10: flat data */
gdt_desc:
        .word gdt_desc - gdt - 1
        .long gdt

        TRAILER
