/* ISA IRQ 0 through the I/O APIC: the 8259 masked, the PIT at ~1 kHz, pin 0 programmed to vector
 * 0x60 and pin 2 to vector 0x62 (edge). Counts which vector the PIT's ticks arrive at: with the
 * PC's interrupt source override (IRQ 0 -> pin 2) it is 0x62. */
        .include "apic-common.inc"
        .globl  _start
_start:
        START
        SETGATE 0x60, pin0_isr
        SETGATE 0x62, pin2_isr
        SETGATE 0xff, spurious_isr
        lidt    idtr
        movb    $0xff, %al
        call    pic_init                        /* initialised, then every line masked */
        LAPIC_WR 0xf0, $0x1ff
        IOAPIC_WR 0x10, $0x60
        IOAPIC_WR 0x14, $0x62
        movl    $1193, %eax
        call    pit_start
        WAIT_UNTIL_AT_LEAST total, $3
        SHOWM   s_pin0, pin0
        SHOWM   s_pin2, pin2
        SHOWM   s_spur, spurious
        PUTS    nl
        hlt

pin0_isr:
        SAVE
        incl    pin0
        incl    total
        LAPIC_WR 0xb0, $0
        RESTORE_IRET
pin2_isr:
        SAVE
        incl    pin2
        incl    total
        LAPIC_WR 0xb0, $0
        RESTORE_IRET

        .include "apic-lib.inc"
pin0:   .long 0
pin2:   .long 0
total:  .long 0
s_pin0: .asciz "pin0="
s_pin2: .asciz " pin2="
s_spur: .asciz " spurious="
