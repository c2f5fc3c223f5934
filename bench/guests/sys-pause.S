/* system-code row "PAUSE": a spin-wait loop's PAUSE. Events: PAUSEs. Checksum: the loop's own
 * count, N. */
#include "sys-common.inc"
        .text
        SYS_ENTRY
        MARK 'S'
1:      pause
        incl %r12d
        decl %ebx
        jnz 1b
        movl %r12d, %eax
        SYS_EXIT

        SYS_TABLES
        SYS_TRAILER 0, 1000
