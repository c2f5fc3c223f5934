/* I/O APIC guest: the 8259 masked, the LAPIC enabled, ISA IRQ 4 (COM1) routed by I/O APIC pin 4
 * to vector 0x51, first level-triggered then edge-triggered, with the 16550's THR-empty interrupt
 * as the source. The handler records Remote IRR, the LAPIC's ISR/TMR bits and the UART's IIR,
 * EOIs and records Remote IRR again. Last, a masked entry must leave the LAPIC's IRR clear. */
        .include "apic-common.inc"
        .set    VEC, 0x51
        .set    COM1, 0x3f8
        .globl  _start
_start:
        START
        SETGATE VEC, uart_isr
        SETGATE 0xff, spurious_isr
        lidt    idtr
        movb    $0xff, %al                      /* 8259: every line masked */
        outb    %al, $0x21
        outb    %al, $0xa1
        LAPIC_WR 0xf0, $0x1ff
        IOAPIC_RD 1
        SHOW    s_ver
        IOAPIC_RD 0
        SHOW    s_id
        IOAPIC_RD 2
        SHOW    s_arb
        IOAPIC_RD 0x18
        SHOW    s_redir
        IOAPIC_RD 0x19
        SHOW    s_high
        IOAPIC_WR 0x19, $0                      /* destination: APIC ID 0, physical */
        IOAPIC_WR 0x18, $(0x8000 | VEC)         /* level-triggered, fixed, unmasked */
        IOAPIC_RD 0x18
        SHOW    s_redir
        PUTS    nl

        movw    $COM1 + 1, %dx                  /* IER: THR empty */
        movb    $0x02, %al
        outb    %al, %dx
        WAIT_UNTIL_AT_LEAST count, $1
        call    report

        IOAPIC_WR 0x18, $VEC                    /* edge-triggered */
        movw    $COM1, %dx
        movb    $'x', %al
        outb    %al, %dx                        /* THR empties again: a new edge */
        WAIT_UNTIL_AT_LEAST count, $2
        call    report

        IOAPIC_WR 0x18, $(0x10000 | VEC)        /* masked */
        movw    $COM1, %dx
        movb    $'y', %al
        outb    %al, %dx
        LAPIC_RD 0x220                          /* IRR bits 64-95 */
        SHOW    s_irr
        IOAPIC_RD 0x18
        SHOW    s_redir
        SHOWM   s_spur, spurious
        PUTS    nl
        hlt

report: SHOWM   s_count, count
        SHOWM   s_rirr, rirr_in
        SHOWM   s_isr, isr_in
        SHOWM   s_tmr, tmr_in
        SHOWM   s_iir, iir_in
        SHOWM   s_after, rirr_after
        PUTS    nl
        ret

uart_isr:
        SAVE
        incl    count
        IOAPIC_RD 0x18
        andl    $0x4000, %eax
        movl    %eax, rirr_in
        LAPIC_RD 0x120                          /* ISR bits 64-95 */
        movl    %eax, isr_in
        LAPIC_RD 0x1a0                          /* TMR bits 64-95 */
        movl    %eax, tmr_in
        movw    $COM1 + 2, %dx                  /* IIR: reading it ends the THRE interrupt */
        xorl    %eax, %eax
        inb     %dx, %al
        movl    %eax, iir_in
        LAPIC_WR 0xb0, $0
        IOAPIC_RD 0x18
        andl    $0x4000, %eax
        movl    %eax, rirr_after
        RESTORE_IRET

        .include "apic-lib.inc"
count:      .long 0
rirr_in:    .long 0
isr_in:     .long 0
tmr_in:     .long 0
iir_in:     .long 0
rirr_after: .long 0
s_ver:  .asciz "ioapic ver="
s_id:   .asciz " id="
s_arb:  .asciz " arb="
s_redir: .asciz " redir="
s_high: .asciz " high="
s_count: .asciz "irqs="
s_rirr: .asciz " rirr="
s_isr:  .asciz " isr="
s_tmr:  .asciz " tmr="
s_iir:  .asciz " iir="
s_after: .asciz " rirr-after-eoi="
s_irr:  .asciz "masked: irr="
s_spur: .asciz " spurious="
