/* system-code row "port I/O": OUT to port 0x80 (the POST port, on both QEMU and nodevmm), a VM exit
 * per iteration. Events: OUTs. Checksum: the loop's own count, N. */
#include "sys-common.inc"
        .text
        SYS_ENTRY
        MARK 'S'
1:      outb %al, $0x80
        incl %r12d
        decl %ebx
        jnz 1b
        movl %r12d, %eax
        SYS_EXIT

        SYS_TABLES
        SYS_TRAILER 0, 1000
