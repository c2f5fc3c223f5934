/* system-code row "page fault": each iteration makes one page not present (clear PTE.P, INVLPG) and
 * loads from it; the #PF handler finds the PTE from CR2, sets P and returns with IRETQ, and the load
 * is restarted. Events: page faults (R12D, counted by the handler). Checksum: faults + the sum of
 * the values loaded (0x01000000 each) = N * 0x01000001 mod 2^32. */
#include "sys-common.inc"
        .set PAGE, 0x1ff000
        .set PTE, PT + (PAGE >> 12) * 8
        .text
        SYS_ENTRY
        SET_GATE 14, pf, GATE_KERNEL
        movl $0x01000000, PAGE
        MARK 'S'
1:      andb $0xfe, PTE
        invlpg PAGE
        addl PAGE, %r14d
        decl %ebx
        jnz 1b
        leal (%r12, %r14), %eax
        SYS_EXIT

pf:     pushq %rax
        movq %cr2, %rax
        shrl $12, %eax
        orb $1, PT(, %rax, 8)
        incl %r12d
        popq %rax
        addq $8, %rsp                   /* the error code */
        iretq

        SYS_TABLES
        SYS_TRAILER 0, 1000
