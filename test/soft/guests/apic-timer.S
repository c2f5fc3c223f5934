/* Local APIC guest: prints the APIC's reset state, enables it and runs its timer in periodic
 * mode (100 ms: initial count 100,000,000, divide by 1, on the 1 GHz APIC bus KVM and the soft
 * backend both model) next to the PIT at ~100 Hz through the 8259 and LINT0 (the virtual wire),
 * and prints how many PIT ticks passed from its first period to its fifth. Then: TPR 0x40 holds
 * the timer's vector 0x40 back for 30 PIT ticks (3 periods), a self-IPI through the ICR, and a
 * one-shot count. Counts that a late host could push one higher (a period elapsing between a
 * handler's IRET and the CLI after the wait) are printed as the bound the wait guarantees. */
        .include "apic-common.inc"
        .globl  _start
_start:
        START
        SETGATE 0x20, pit_isr
        SETGATE 0x40, timer_isr
        SETGATE 0x50, ipi_isr
        SETGATE 0xff, spurious_isr
        lidt    idtr
        SHOWL   s_ver, 0x30
        SHOWL   s_svr, 0xf0
        SHOWL   s_lint0, 0x350
        SHOWL   s_lvtt, 0x320
        SHOWL   s_ppr, 0xa0
        PUTS    nl

        movb    $0xfe, %al                      /* 8259: IRQ 0 only */
        call    pic_init
        movl    $11932, %eax                    /* ~100 Hz */
        call    pit_start
        LAPIC_WR 0xf0, $0x1ff                   /* software enable, spurious vector 0xFF */
        LAPIC_WR 0x3e0, $0x0b                   /* divide by 1 */
        LAPIC_WR 0x320, $0x20040                /* periodic, vector 0x40 */
        LAPIC_WR 0x380, $100000000
        WAIT_UNTIL_AT_LEAST apic_ticks, $5
        SHOWL   s_lvtt, 0x320
        SHOWL   s_tdcr, 0x3e0
        SHOWL   s_init, 0x380
        SHOWL   s_lint0, 0x350
        PUTS    nl
        movl    pit_at_5, %eax
        subl    pit_at_1, %eax
        movl    %eax, pit_1_to_5
        SHOWM   s_pit, pit_1_to_5
        SHOWM   s_isr, isr_seen
        SHOWM   s_ppr, ppr_seen
        PUTS    nl

        /* TPR: class 4 and below wait */
        LAPIC_WR 0x80, $0x40
        movl    $0, apic_ticks
        movl    pit_ticks, %eax
        addl    $30, %eax
        movl    %eax, pit_goal
        WAIT_UNTIL_AT_LEAST pit_ticks, pit_goal
        SHOWM   s_held, apic_ticks
        SHOWL   s_ppr, 0xa0
        LAPIC_RD 0x200 + 0x20                   /* IRR bits 64-95: 0x40 waits */
        SHOW    s_irr
        LAPIC_WR 0x80, $0
        WAIT_UNTIL_AT_LEAST apic_ticks, $1
        PUTS    s_after
        PUTS    nl
        LAPIC_WR 0x380, $0                      /* stop */
        SHOWL   s_cur, 0x390

        /* a fixed IPI to itself (shorthand self) */
        LAPIC_WR 0x300, $0x40050
        SHOWL   s_icr, 0x300
        WAIT_UNTIL_AT_LEAST ipis, $1
        SHOWM   s_ipis, ipis
        PUTS    nl

        /* one-shot: the count runs down and stays at 0 after one interrupt */
        movl    $0, apic_ticks
        LAPIC_WR 0x320, $0x40                   /* one-shot, vector 0x40 */
        LAPIC_WR 0x3e0, $0x03                   /* divide by 16 */
        LAPIC_WR 0x380, $100000                 /* 1.6 ms */
        LAPIC_RD 0x390
        cmpl    $100000, %eax
        ja      bad
        WAIT_UNTIL_AT_LEAST apic_ticks, $1
        movl    pit_ticks, %eax                 /* five more PIT ticks (50 ms): no second interrupt */
        addl    $5, %eax
        movl    %eax, pit_goal
        WAIT_UNTIL_AT_LEAST pit_ticks, pit_goal
        SHOWM   s_oneshot, apic_ticks
        SHOWL   s_cur, 0x390
        SHOWM   s_spur, spurious
        PUTS    nl
        hlt
bad:    PUTS    s_bad
        hlt

pit_isr:
        SAVE
        incl    pit_ticks
        movb    $0x20, %al
        outb    %al, $0x20
        RESTORE_IRET

timer_isr:
        SAVE
        incl    apic_ticks
        movl    pit_ticks, %eax                 /* PIT ticks at the first and fifth period */
        cmpl    $1, apic_ticks
        jne     1f
        movl    %eax, pit_at_1
1:      cmpl    $5, apic_ticks
        jne     2f
        movl    %eax, pit_at_5
2:
        LAPIC_RD 0x120                          /* ISR bits 64-95: vector 0x40 in service */
        movl    %eax, isr_seen
        LAPIC_RD 0xa0
        movl    %eax, ppr_seen
        LAPIC_WR 0xb0, $0                       /* EOI */
        RESTORE_IRET

ipi_isr:
        SAVE
        incl    ipis
        LAPIC_WR 0xb0, $0
        RESTORE_IRET

        .include "apic-lib.inc"
apic_ticks: .long 0
pit_ticks:  .long 0
pit_at_1:   .long 0
pit_at_5:   .long 0
pit_1_to_5: .long 0
pit_goal:   .long 0
isr_seen:   .long 0
ppr_seen:   .long 0
ipis:       .long 0
s_ver:  .asciz "ver="
s_svr:  .asciz " svr="
s_lint0: .asciz " lint0="
s_lvtt: .asciz " lvtt="
s_ppr:  .asciz " ppr="
s_tdcr: .asciz " tdcr="
s_init: .asciz " init="
s_pit:  .asciz "periods>=5 pit-ticks-from-1st-to-5th="
s_isr:  .asciz " isr="
s_held: .asciz "tpr40: ticks="
s_irr:  .asciz " irr="
s_after: .asciz " delivered-at-tpr0"
s_cur:  .asciz " cur="
s_icr:  .asciz " icr="
s_ipis: .asciz " ipis="
s_oneshot: .asciz "oneshot="
s_spur: .asciz " spurious="
s_bad:  .asciz "bad current count\n"
