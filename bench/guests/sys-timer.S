/* system-code rows "timer": the local APIC timer in one-shot mode on vector 0x20, divide by 1 (a
 * tick is 1 ns on both QEMU and nodevmm). Each iteration arms it PARAM ticks ahead (default 1000:
 * 1 us), as a tickless kernel programs its next event, then waits for the interrupt: spinning on
 * the count with IF=1 (sys-timer-spin) or in STI;HLT (sys-timer-hlt, built with -DTIMER_HLT); the
 * handler counts, writes EOI and returns with IRETQ. (Re-arming from the handler instead starves
 * the interrupted code whenever the handler takes longer than the period, and a periodic timer that
 * short is an interrupt storm: QEMU's main loop livelocks under a 5-us period.) Events: timer
 * interrupts. Checksum: the handler's count, N. */
#include "sys-common.inc"
        .text
        SYS_ENTRY
        SET_GATE 0x20, timer, GATE_KERNEL
        movl $APIC, %r13d
        movl $0x1ff, 0xf0(%r13)         /* spurious-interrupt vector register: APIC on, vector 0xFF */
        movl $0xb, 0x3e0(%r13)          /* divide configuration: by 1 */
        movl $0x20, 0x320(%r13)         /* LVT timer: one-shot, vector 0x20 */
        movl PARAM, %ebp
        MARK 'S'
1:      movl %ebp, 0x380(%r13)          /* initial count: the timer starts */
#ifdef TIMER_HLT
        sti
        hlt                             /* in STI's shadow: the interrupt cannot come before HLT */
#else
        movl %r12d, %eax
        sti
2:      cmpl %eax, %r12d
        je 2b
#endif
        cli
        cmpl %ebx, %r12d
        jb 1b
        movl %r12d, %eax
        SYS_EXIT

timer:  incl %r12d
        movl $0, 0xb0(%r13)             /* EOI */
        iretq

        SYS_TABLES
        SYS_TRAILER 1000, 1000
