/* system-code row "INVLPG": each iteration flips the frame of one PTE between 0x1FF000 (holding
 * 0x10000) and 0x1FE000 (holding 1), invalidates the page with INVLPG and reads it, so an INVLPG
 * that kept the old translation gives a wrong sum. Events: INVLPGs. Checksum: ceil(N/2) +
 * floor(N/2) * 0x10000 mod 2^32. */
#include "sys-common.inc"
        .set PAGE, 0x1ff000
        .set PTE, PT + (PAGE >> 12) * 8
        .text
        SYS_ENTRY
        movl $1, PAGE - 0x1000
        movl $0x10000, PAGE
        MARK 'S'
1:      xorb $0x10, PTE + 1             /* PTE bit 12: frame 0x1FF000 <-> 0x1FE000 */
        invlpg PAGE
        addl PAGE, %r14d
        decl %ebx
        jnz 1b
        movl %r14d, %eax
        SYS_EXIT

        SYS_TABLES
        SYS_TRAILER 0, 1000
