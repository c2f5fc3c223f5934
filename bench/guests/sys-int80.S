/* system-code row "INT 0x80": ring 3 (entered with IRETQ, IOPL 3) loops on INT 0x80 through a DPL-3
 * interrupt gate; the CPU switches to the TSS's RSP0, the handler counts and returns with IRETQ.
 * Events: round trips. Checksum: the handler's count, N. */
#include "sys-common.inc"
        .text
        SYS_ENTRY
        SET_GATE 0x80, entry, GATE_USER
        LOAD_TSS
        ENTER_RING3 user

user:   MARK 'S'
1:      int $0x80
        decl %ebx
        jnz 1b
        movl %r12d, %eax
        SYS_EXIT

entry:  incl %r12d
        iretq

        SYS_TABLES
        SYS_TRAILER 0, 1000
