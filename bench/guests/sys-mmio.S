/* system-code row "MMIO": reads the local APIC's version register (0xFEE00030, 0x00050014 on both
 * QEMU and nodevmm), an MMIO exit per iteration on nodevmm. Events: reads. Checksum: the sum read,
 * N * 0x50014 mod 2^32. */
#include "sys-common.inc"
        .text
        SYS_ENTRY
        movl $APIC, %r13d
        MARK 'S'
1:      addl 0x30(%r13), %r14d
        decl %ebx
        jnz 1b
        movl %r14d, %eax
        SYS_EXIT

        SYS_TABLES
        SYS_TRAILER 0, 1000
