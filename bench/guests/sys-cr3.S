/* system-code row "CR3 reload": two address spaces share the identity map of the first 2 MiB and
 * map the linear 2 MiB at 2 MiB to different frames (A: itself, holding 1; B: 4 MiB, holding
 * 0x10000). Each iteration loads CR3 with B, reads 2 MiB, loads A, reads it again, so a CR3 load
 * that kept stale translations gives a wrong sum. Events: CR3 loads (2 per iteration). Checksum:
 * N * 0x10001 mod 2^32. */
#include "sys-common.inc"
        .set PML4_B, 0x15000
        .set PDPT_B, 0x16000
        .set PD_B, 0x17000
        .set VA, 0x200000
        .text
        SYS_ENTRY
        movl $PDPT_B + 7, PML4_B        /* B: PML4[0] -> PDPT_B -> PD_B */
        movl $PD_B + 7, PDPT_B
        movl $PT + 7, PD_B              /* PD_B[0] -> the shared PT (code, stacks, tables) */
        movl $0x400087, PD_B + 8        /* PD_B[1]: 2-MiB page at 4 MiB */
        movl $0x200087, 0x12008         /* A: PD[1]: 2-MiB page at 2 MiB */
        movl $PML4, %esi
        movl $PML4_B, %edi
        movl $1, VA
        movq %rdi, %cr3
        movl $0x10000, VA
        movq %rsi, %cr3
        MARK 'S'
1:      movq %rdi, %cr3
        addl VA, %r14d
        movq %rsi, %cr3
        addl VA, %r14d
        decl %ebx
        jnz 1b
        movl %r14d, %eax
        SYS_EXIT

        SYS_TABLES
        SYS_TRAILER 0, 1000
