/* 16-bit real-mode MIPS guest: ALU loop (add, xor, add, dec, jnz) then memory loop (load, add,
 * store, inc, and, dec, jnz), each between 'S' and 'E' on port 0xE9. Operands are 16-bit; the loop
 * counter is ECX so that counts above 65535 need no outer loop. */
#include "common.inc"
        .text
        .globl _start
_start:
        REAL_MODE_ENTRY

        /* ALU loop: checksum = DX:BX */
        movl ITERATIONS, %ecx
        movw $0x1234, %bx
        movw $0x5678, %dx
        movb $'S', %al
        outb %al, $DEBUG_PORT
alu:    addw %dx, %bx
        xorw %bx, %dx
        addw $0x3c5a, %bx
        decl %ecx
        jnz alu
        movb $'E', %al
        outb %al, $DEBUG_PORT
        movw %dx, %ax
        shll $16, %eax
        movw %bx, %ax
        call put32

        /* memory loop over words at ARRAY + SI (SI wraps at 2 KiB): checksum = SI:AX */
        movl ITERATIONS, %ecx
        xorw %si, %si
        movw $0x1357, %dx
        movb $'S', %al
        outb %al, $DEBUG_PORT
mem:    movw ARRAY(%si), %ax
        addw %dx, %ax
        movw %ax, ARRAY(%si)
        incw %si
        andw $0x7ff, %si
        decl %ecx
        jnz mem
        movw %ax, %bx
        movb $'E', %al
        outb %al, $DEBUG_PORT
        movw %si, %ax
        shll $16, %eax
        movw %bx, %ax
        call put32

        outb %al, $EXIT_PORT
1:      cli
        hlt
        jmp 1b

/* writes EAX to the debug port, low byte first */
put32:  movw $4, %cx
1:      outb %al, $DEBUG_PORT
        shrl $8, %eax
        loop 1b
        ret

        TRAILER
