/* 64-bit long-mode MIPS guest: starts in real mode, builds identity page tables (one 2-MiB page) at
 * 0x10000, sets CR4.PAE, CR3, EFER.LME, then CR0.PE|PG together and far-jumps to a 64-bit code
 * segment; the loops use 64-bit operands. */
#include "common.inc"
        .set PML4, 0x10000
        .text
        .globl _start
_start:
        REAL_MODE_ENTRY
        /* page tables: PML4 -> PDPT -> PD[0] = 2-MiB page at 0 (zero 3 pages first) */
        movw $0x1000, %ax
        movw %ax, %es
        xorw %di, %di
        xorw %ax, %ax
        movw $0x1800, %cx
        rep stosw
        movl $PML4 + 0x1003, %es:0
        movl $PML4 + 0x2003, %es:0x1000
        movl $0x83, %es:0x2000
        xorw %ax, %ax
        movw %ax, %es
        movl %cr4, %eax
        orl $0x20, %eax
        movl %eax, %cr4
        movl $PML4, %eax
        movl %eax, %cr3
        movl $0xc0000080, %ecx
        rdmsr
        orl $0x100, %eax
        wrmsr
        lgdtl gdt_desc
        movl %cr0, %eax
        orl $0x80000001, %eax
        movl %eax, %cr0
        ljmpl $0x08, $lm64

        .code64
lm64:   movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movl $0x7c00, %esp

        movl ITERATIONS, %ecx
        movabsq $0x123456789abcdef0, %rbx
        movabsq $0x0fedcba987654321, %rdx
        movb $'S', %al
        outb %al, $DEBUG_PORT
alu:    addq %rdx, %rbx
        xorq %rbx, %rdx
        addq $0x3c5a7e91, %rbx
        decq %rcx
        jnz alu
        movb $'E', %al
        outb %al, $DEBUG_PORT
        movq %rbx, %rax
        xorq %rdx, %rax
        movq %rax, %rbx
        shrq $32, %rbx
        xorl %ebx, %eax
        call put32

        /* memory loop over qwords at ARRAY + RSI*8 (RSI wraps at 512): checksum = folded RAX ^ RSI */
        movl ITERATIONS, %ecx
        xorl %esi, %esi
        movabsq $0x13579bdf2468ace0, %rdx
        movb $'S', %al
        outb %al, $DEBUG_PORT
mem:    movq ARRAY(,%rsi,8), %rax
        addq %rdx, %rax
        movq %rax, ARRAY(,%rsi,8)
        incq %rsi
        andq $0x1ff, %rsi
        decq %rcx
        jnz mem
        movq %rax, %rbx
        movb $'E', %al
        outb %al, $DEBUG_PORT
        movq %rbx, %rax
        xorq %rsi, %rax
        movq %rax, %rbx
        shrq $32, %rbx
        xorl %ebx, %eax
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
        .quad 0x00af9a000000ffff /* 0x08: 64-bit code */
        .quad 0x00cf92000000ffff /* 0x10: flat data */
gdt_desc:
        .word gdt_desc - gdt - 1
        .long gdt

        TRAILER
