/* x2APIC IPI guest, two CPUs: the BSP switches its APIC to x2APIC mode, reads its 32-bit ID and
 * logical ID, sends itself an IPI through SELF IPI (MSR 0x83F), then starts CPU 1 with INIT and
 * SIPI through the 64-bit ICR (MSR 0x830, destination in EDX). CPU 1 comes up in real mode at
 * 0x8000 (a trampoline the BSP copies there), enters the loader's protected or long mode, switches
 * its own APIC to x2APIC mode and reports its IDs. The BSP then sends it vector 0x60 three ways:
 * physical destination 1, logical (cluster 0, bit 1) and the all-excluding-self shorthand; each
 * time CPU 1's handler answers with vector 0x61 to x2APIC ID 0. The verdict goes to isa-debug-exit
 * (port 0xF4): 0 when every count is as expected. */
        .include "apic-common.inc"
        .include "x2apic-common.inc"
        .set    TRAMPOLINE, 0x8000
        .set    DEBUG_EXIT, 0xf4

/* waits (PAUSE: the other CPU gets its turn) until \var >= \n */
        .macro  SPIN_UNTIL var, n
93:     pause
        cmpl    \n, \var
        jb      93b
        .endm

        .globl  _start
_start:
        START
        SETGATE 0x50, self_isr
        SETGATE 0x60, ap_ipi_isr
        SETGATE 0x61, reply_isr
        SETGATE 0xff, spurious_isr
        lidt    idtr
        PIC_OFF
        CPUID1_ECX 21
        SHOW    s_x2
        PUTS    nl

        RDMSRI  IA32_APIC_BASE
        orl     $0xc00, %eax                    /* EN and EXTD */
        wrmsr
        WRMSRI  X2APIC_SVR, $0x1ff
        RDMSRI  X2APIC_ID
        SHOW    s_bsp_id
        RDMSRI  X2APIC_LDR
        SHOW    s_ldr
        PUTS    nl

        /* SELF IPI: vector 0x50 to this CPU */
        WRMSRI  X2APIC_SELF_IPI, $0x50
        WAIT_UNTIL_AT_LEAST self_ipis, $1
        SHOWM   s_self, self_ipis
        PUTS    nl

        /* CPU 1's start code at 0x8000; in long mode it needs this CPU's CR3 */
        .ifdef  BITS64
        movq    %cr3, %rax
        movl    %eax, tr_cr3
        .endif
        movl    $tramp, %esi
        movl    $TRAMPOLINE, %edi
        movl    $(tramp_end - tramp), %ecx
        cld
        rep movsb
        /* INIT (assert), then SIPI twice with page 8: the 64-bit ICR, destination x2APIC ID 1 */
        WRMSRI  X2APIC_ICR, $0x4500, $1
        WRMSRI  X2APIC_ICR, $0x4608, $1
        WRMSRI  X2APIC_ICR, $0x4608, $1
        SPIN_UNTIL ap_ready, $1
        SHOWM   s_ap_id, ap_id
        SHOWM   s_ldr, ap_ldr
        SHOWM   s_ap_base, ap_base
        PUTS    nl

        sti
        /* physical destination 1 */
        WRMSRI  X2APIC_ICR, $0x60, $1
        SPIN_UNTIL replies, $1
        /* logical: cluster 0, member bit 1 */
        WRMSRI  X2APIC_ICR, $0x860, $0x00000002
        SPIN_UNTIL replies, $2
        /* all excluding self (the destination field is ignored) */
        WRMSRI  X2APIC_ICR, $0xc0060, $0
        SPIN_UNTIL replies, $3
        cli
        SHOWM   s_ap_took, ap_ipis
        SHOWM   s_replies, replies
        SHOWM   s_seen, ap_seen_id
        PUTS    nl
        SHOWM   s_spur, spurious
        PUTS    nl

        /* verdict: 0 when all counts are right */
        movl    $1, %eax
        cmpl    $1, self_ipis
        jne     9f
        cmpl    $1, ap_id
        jne     9f
        cmpl    $3, ap_ipis
        jne     9f
        cmpl    $3, replies
        jne     9f
        cmpl    $0, spurious
        jne     9f
        xorl    %eax, %eax
9:      outb    %al, $DEBUG_EXIT
        hlt

self_isr:
        SAVE
        .ifdef  BITS64
        pushq   %rcx
        .else
        pushl   %ecx
        .endif
        incl    self_ipis
        WRMSRI  X2APIC_EOI, $0
        jmp     isr_out

/* CPU 1: count, remember who it is, EOI, answer CPU 0 with vector 0x61 */
ap_ipi_isr:
        SAVE
        .ifdef  BITS64
        pushq   %rcx
        .else
        pushl   %ecx
        .endif
        incl    ap_ipis
        RDMSRI  X2APIC_ID
        movl    %eax, ap_seen_id
        WRMSRI  X2APIC_EOI, $0
        WRMSRI  X2APIC_ICR, $0x61, $0
        jmp     isr_out

reply_isr:
        SAVE
        .ifdef  BITS64
        pushq   %rcx
        .else
        pushl   %ecx
        .endif
        incl    replies
        WRMSRI  X2APIC_EOI, $0
isr_out:
        .ifdef  BITS64
        popq    %rcx
        .else
        popl    %ecx
        .endif
        RESTORE_IRET

/* CPU 1 after the trampoline: flat data segments, a stack, the shared IDT, its APIC in x2APIC
 * mode, then halted with interrupts on */
ap_entry:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movl    $0x70000, %esp
        .ifdef  BITS64
        movl    $LAPIC, %r15d
        .endif
        lidt    idtr
        RDMSRI  IA32_APIC_BASE
        orl     $0x400, %eax
        wrmsr
        andl    $0xfff, %eax
        movl    %eax, ap_base
        WRMSRI  X2APIC_SVR, $0x1ff
        RDMSRI  X2APIC_ID
        movl    %eax, ap_id
        RDMSRI  X2APIC_LDR
        movl    %eax, ap_ldr
        movl    $1, ap_ready
1:      sti
        hlt
        jmp     1b

/* copied to 0x8000; CPU 1 starts here in real mode (CS 0x800) */
        .code16
tramp:
        cli
        lgdtl   %cs:(tr_gdtr - tramp)
        .ifdef  BITS64
        movl    %cs:(tr_cr3 - tramp), %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        orl     $0x20, %eax                     /* PAE */
        movl    %eax, %cr4
        movl    $0xc0000080, %ecx
        rdmsr
        orl     $0x100, %eax                    /* EFER.LME */
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000001, %eax               /* PG, PE */
        movl    %eax, %cr0
        ljmpl   $0x18, $ap_entry
        .else
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        ljmpl   $0x08, $ap_entry
        .endif
        .balign 4
tr_gdtr: .word  31                              /* the loader's GDT at 0x500 */
        .long   0x500
tr_cr3: .long   0
tramp_end:
        .ifdef  BITS64
        .code64
        .else
        .code32
        .endif

        .include "x2apic-lib.inc"
        .include "apic-lib.inc"
self_ipis:  .long 0
ap_ready:   .long 0
ap_id:      .long 0xffffffff
ap_ldr:     .long 0
ap_base:    .long 0
ap_ipis:    .long 0
ap_seen_id: .long 0xffffffff
replies:    .long 0
s_x2:       .asciz "cpuid.1:ecx.x2apic="
s_bsp_id:   .asciz "cpu0 x2apic-id="
s_ldr:      .asciz " ldr="
s_self:     .asciz "self-ipi="
s_ap_id:    .asciz "cpu1 x2apic-id="
s_ap_base:  .asciz " apic-base-low="
s_ap_took:  .asciz "cpu1 took="
s_replies:  .asciz " cpu0 got replies="
s_seen:     .asciz " cpu1 id in its handler="
s_spur:     .asciz "spurious="
