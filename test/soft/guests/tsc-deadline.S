/* TSC-deadline guest: checks that CPUID offers the TSC-deadline timer, puts the local APIC timer in
 * TSC-deadline mode (LVT timer bits 18:17 = 10b, vector 0x40) and arms IA32_TSC_DEADLINE 1 ms
 * (2,000,000 ticks at the stated 2 GHz) ahead. The interrupt must come with the TSC at or past the
 * deadline and the MSR disarmed (0). Then: the initial-count register is ignored in this mode,
 * writing 0 disarms, leaving the mode disarms, a deadline in the past fires at once, and a masked
 * timer fires nothing but still disarms. Waits are on the TSC (busy, interrupts on) or on the
 * interrupt count, never on instruction counts. */
        .include "apic-common.inc"
        .include "x2apic-common.inc"

/* IA32_TSC_DEADLINE = the TSC now + \ticks; the deadline stays in %edx:%eax */
        .macro  ARM ticks
        rdtsc
        addl    $\ticks, %eax
        adcl    $0, %edx
        movl    $TSC_DEADLINE, %ecx
        wrmsr
        .endm
        .globl  _start
_start:
        START
        SETGATE 0x40, timer_isr
        SETGATE 0xff, spurious_isr
        lidt    idtr
        PIC_OFF
        CPUID1_ECX 24
        SHOW    s_cpuid

        LAPIC_WR 0xf0, $0x1ff                   /* software enable, spurious vector 0xFF */
        LAPIC_WR 0x320, $0x40040                /* TSC-deadline mode, vector 0x40 */
        SHOWL   s_lvtt, 0x320
        ARM     2000000000                      /* 1 s ahead: reads back while armed */
        movl    %eax, dl_lo
        movl    %edx, dl_hi
        RDMSRI  TSC_DEADLINE
        xorl    dl_lo, %eax
        xorl    dl_hi, %edx
        orl     %edx, %eax
        sete    %al
        movzbl  %al, %eax
        SHOW    s_armed
        PUTS    nl

        ARM     2000000                         /* re-armed 1 ms ahead */
        movl    %eax, dl_lo
        movl    %edx, dl_hi

        WAIT_UNTIL_AT_LEAST ticks, $1
        /* the TSC the handler read is at or past the deadline */
        movl    $0, %ebx
        movl    fire_hi, %eax
        cmpl    dl_hi, %eax
        jb      1f
        ja      2f
        movl    fire_lo, %eax
        cmpl    dl_lo, %eax
        jb      1f
2:      movl    $1, %ebx
1:      movl    %ebx, %eax
        SHOW    s_fired
        SHOWM   s_msr_in_isr, msr_in_isr
        SHOWM   s_ticks, ticks
        PUTS    nl

        /* the initial count is ignored in this mode; the current count reads 0 */
        LAPIC_WR 0x380, $1000000
        SHOWL   s_tmict, 0x380
        SHOWL   s_tmcct, 0x390
        PUTS    nl

        /* armed 20 ms ahead, then 0: nothing comes within 25 ms (the soft backend's test runs
         * deterministically, so a busy host between two instructions cannot make the deadline
         * pass first) */
        ARM     40000000
        WRMSRI  TSC_DEADLINE, $0
        RDMSRI  TSC_DEADLINE
        SHOW    s_disarmed
        WAIT_TSC 50000000
        SHOWM   s_ticks, ticks
        PUTS    nl

        /* armed, then one-shot mode and back: disarmed, nothing comes */
        ARM     40000000
        LAPIC_WR 0x320, $0x40                   /* one-shot: the MSR reads 0 outside the mode */
        RDMSRI  TSC_DEADLINE
        SHOW    s_oneshot_msr
        LAPIC_WR 0x320, $0x40040
        RDMSRI  TSC_DEADLINE
        SHOW    s_back_msr
        WAIT_TSC 50000000
        SHOWM   s_ticks, ticks
        PUTS    nl

        /* a deadline already past fires at once */
        WRMSRI  TSC_DEADLINE, $1
        WAIT_UNTIL_AT_LEAST ticks, $2
        SHOWM   s_past, ticks
        PUTS    nl

        /* masked: nothing comes, but the deadline passes (the TSC is past it) and disarms */
        LAPIC_WR 0x320, $0x50040
        ARM     2000000
        WAIT_TSC 6000000
        SHOWM   s_masked, ticks
        RDMSRI  TSC_DEADLINE
        SHOW    s_msr
        SHOWM   s_spur, spurious
        PUTS    nl
        hlt

timer_isr:
        SAVE
        .ifdef  BITS64
        pushq   %rcx
        .else
        pushl   %ecx
        .endif
        incl    ticks
        rdtsc
        movl    %eax, fire_lo
        movl    %edx, fire_hi
        RDMSRI  TSC_DEADLINE
        orl     %edx, %eax
        movl    %eax, msr_in_isr
        LAPIC_WR 0xb0, $0                       /* EOI */
        .ifdef  BITS64
        popq    %rcx
        .else
        popl    %ecx
        .endif
        RESTORE_IRET

        .include "x2apic-lib.inc"
        .include "apic-lib.inc"
ticks:      .long 0
dl_lo:      .long 0
dl_hi:      .long 0
fire_lo:    .long 0
fire_hi:    .long 0
msr_in_isr: .long 0xffffffff
s_cpuid:    .asciz "cpuid.1:ecx.tsc-deadline="
s_lvtt:     .asciz " lvtt="
s_armed:    .asciz " armed-reads-back="
s_fired:    .asciz "fired tsc>=deadline="
s_msr_in_isr: .asciz " msr-in-isr="
s_ticks:    .asciz " ticks="
s_tmict:    .asciz "initial-count-ignored: init="
s_tmcct:    .asciz " cur="
s_disarmed: .asciz "zero-disarms: msr="
s_oneshot_msr: .asciz "mode-change-disarms: msr-in-one-shot="
s_back_msr: .asciz " msr-back-in-deadline-mode="
s_past:     .asciz "past-deadline-fires-at-once: ticks="
s_masked:   .asciz "masked: ticks="
s_msr:      .asciz " msr="
s_spur:     .asciz " spurious="
