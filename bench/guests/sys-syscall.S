/* system-code row "SYSCALL/SYSRET": ring 3 (entered with IRETQ, IOPL 3) loops on SYSCALL; the
 * LSTAR entry counts and returns with SYSRETQ, as a null system call does. STAR: SYSCALL CS 0x08
 * (SS 0x10), SYSRET base 0x10 (CS 0x23, SS 0x1B); FMASK as Linux's. Events: round trips.
 * Checksum: the handler's count, N. */
#include "sys-common.inc"
        .text
        SYS_ENTRY
        movl $0xc0000081, %ecx          /* STAR */
        xorl %eax, %eax
        movl $0x00100008, %edx
        wrmsr
        movl $0xc0000082, %ecx          /* LSTAR */
        movl $entry, %eax
        xorl %edx, %edx
        wrmsr
        movl $0xc0000084, %ecx          /* FMASK: TF, DF, IF, IOPL, NT, AC */
        movl $0x47700, %eax
        wrmsr
        ENTER_RING3 user

user:   MARK 'S'
1:      syscall
        decl %ebx
        jnz 1b
        movl %r12d, %eax
        SYS_EXIT

entry:  incl %r12d
        sysretq

        SYS_TABLES
        SYS_TRAILER 0, 1000
