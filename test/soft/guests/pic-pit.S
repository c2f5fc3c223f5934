/* The 8259 as before the APICs: the LAPIC left as reset leaves it (software-disabled, LINT0
 * ExtINT), the PIT at ~1 kHz on IRQ 0 through the 8259 at vector 0x20. Prints the LAPIC's reset
 * registers, then (after at least ten ticks) the 8259's ISR as the handler saw it. */
        .include "apic-common.inc"
        .globl  _start
_start:
        START
        SETGATE 0x20, pit_isr
        SETGATE 0x27, spurious_isr
        lidt    idtr
        SHOWL   s_svr, 0xf0
        SHOWL   s_lint0, 0x350
        SHOWL   s_lint1, 0x360
        SHOWL   s_lvtt, 0x320
        SHOWL   s_tpr, 0x80
        PUTS    nl
        movb    $0xfe, %al
        call    pic_init
        movb    $0x0b, %al                      /* OCW3: reads of 0x20 give the ISR */
        outb    %al, $0x20
        movl    $1193, %eax
        call    pit_start
        WAIT_UNTIL_AT_LEAST ticks, $10
        SHOWM   s_isr, isr_seen
        SHOWL   s_irr, 0x200
        SHOWM   s_spur, spurious
        PUTS    nl
        hlt

pit_isr:
        SAVE
        incl    ticks
        inb     $0x20, %al
        movzbl  %al, %eax
        movl    %eax, isr_seen
        movb    $0x20, %al
        outb    %al, $0x20
        RESTORE_IRET

        .include "apic-lib.inc"
ticks:  .long 0
isr_seen: .long 0
s_svr:  .asciz "svr="
s_lint0: .asciz " lint0="
s_lint1: .asciz " lint1="
s_lvtt: .asciz " lvtt="
s_tpr:  .asciz " tpr="
s_isr:  .asciz "ticks>=10 isr8259="
s_irr:  .asciz " apic-irr="
s_spur: .asciz " spurious="
