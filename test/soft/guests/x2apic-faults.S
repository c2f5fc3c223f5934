/* x2APIC #GP guest: what a CPU refuses in x2APIC mode faults (#GP), the rest does not. Each check
 * prints how many #GPs its RDMSR/WRMSR raised (the handler skips the instruction): 1 where the SDM
 * (vol. 3 10.12) says #GP, 0 where the access is legal. Covers x2APIC registers in xAPIC mode, the
 * IA32_APIC_BASE transitions (EN=0 with EXTD=1, x2APIC to xAPIC, disabled to x2APIC are illegal),
 * registers that do not exist in x2APIC mode, read-only and write-only ones, and reserved bits. */
        .include "apic-common.inc"
        .include "x2apic-common.inc"

/* runs the RDMSR of \msr and prints " \label=<#GPs>" */
        .macro  TRY_RD label, msr
        movl    $0, gp_count
        RDMSRI  \msr
        SHOWM   \label, gp_count
        .endm
/* the same for WRMSR of \hi:\lo */
        .macro  TRY_WR label, msr, lo, hi=$0
        movl    $0, gp_count
        WRMSRI  \msr, \lo, \hi
        SHOWM   \label, gp_count
        .endm
/* WRMSR of IA32_APIC_BASE: the base read at the start with EN/EXTD as \bits */
        .macro  TRY_BASE label, bits
        movl    apic_base, %eax
        andl    $~0xc00, %eax
        orl     $\bits, %eax
        movl    %eax, base_new
        TRY_WR  \label, IA32_APIC_BASE, base_new
        .endm

        .globl  _start
_start:
        START
        SETGATE 13, gp_isr
        SETGATE 0xff, spurious_isr
        lidt    idtr
        PIC_OFF
        CPUID1_ECX 21
        SHOW    s_x2
        PUTS    nl
        RDMSRI  IA32_APIC_BASE
        movl    %eax, apic_base

        /* xAPIC mode: no x2APIC registers; EN=0 with EXTD=1 is invalid */
        PUTS    s_xapic
        TRY_RD  s_rd_id, 0x802
        TRY_WR  s_wr_tpr, 0x808, $0
        TRY_BASE s_extd_no_en, 0x400
        PUTS    nl

        /* into x2APIC mode */
        PUTS    s_enter
        TRY_BASE s_to_x2, 0xc00
        RDMSRI  IA32_APIC_BASE
        andl    $0xfff, %eax
        SHOW    s_base
        RDMSRI  X2APIC_ID
        SHOW    s_id
        RDMSRI  X2APIC_LDR
        SHOW    s_ldr
        LAPIC_RD 0x30                           /* the MMIO page reads as a disabled APIC's */
        SHOW    s_mmio
        PUTS    nl

        /* registers x2APIC mode does not have, and write-only / read-only ones */
        PUTS    s_regs
        TRY_RD  s_apr, 0x809
        TRY_RD  s_rrd, 0x80c
        TRY_RD  s_dfr, 0x80e
        TRY_WR  s_dfr, 0x80e, $0xffffffff
        TRY_RD  s_icr2, 0x831
        TRY_RD  s_cmci, 0x82f
        TRY_RD  s_m840, 0x840
        TRY_RD  s_eoi_rd, 0x80b
        TRY_RD  s_self_rd, 0x83f
        TRY_WR  s_id_wr, 0x802, $0
        TRY_WR  s_ldr_wr, 0x80d, $0
        TRY_WR  s_ver_wr, 0x803, $0
        PUTS    nl

        /* reserved bits; the same registers with legal values */
        PUTS    s_rsvd
        TRY_WR  s_tpr_hi, 0x808, $0, $1
        TRY_WR  s_tpr_b8, 0x808, $0x100
        TRY_WR  s_eoi_nz, 0x80b, $1
        TRY_WR  s_esr_nz, 0x828, $1
        TRY_WR  s_self_b8, 0x83f, $0x150
        TRY_WR  s_icr_b13, 0x830, $0x2050
        TRY_WR  s_tdcr_b2, 0x83e, $4
        TRY_WR  s_svr_b12, 0x80f, $0x11ff
        PUTS    nl
        PUTS    s_legal
        TRY_WR  s_tpr, 0x808, $0x20
        TRY_WR  s_svr, 0x80f, $0x1ff
        TRY_WR  s_tdcr, 0x83e, $0xb
        TRY_WR  s_esr, 0x828, $0
        TRY_WR  s_eoi, 0x80b, $0
        RDMSRI  0x808
        SHOW    s_tpr_reads
        PUTS    nl

        /* leaving x2APIC mode: only through the disabled state */
        PUTS    s_leave
        TRY_BASE s_to_xapic, 0x800
        TRY_BASE s_to_off, 0
        TRY_BASE s_off_to_x2, 0xc00
        TRY_BASE s_off_to_xapic, 0x800
        TRY_RD  s_rd_id, 0x802
        LAPIC_RD 0x30
        SHOW    s_mmio
        PUTS    nl
        SHOWM   s_spur, spurious
        PUTS    nl
        hlt

        .include "x2apic-lib.inc"
        .include "apic-lib.inc"
apic_base:  .long 0
base_new:   .long 0
s_x2:       .asciz "cpuid.1:ecx.x2apic="
s_xapic:    .asciz "xapic:"
s_rd_id:    .asciz " rdmsr-id="
s_wr_tpr:   .asciz " wrmsr-tpr="
s_extd_no_en: .asciz " extd-without-en="
s_enter:    .asciz "enter:"
s_to_x2:    .asciz " xapic-to-x2apic="
s_base:     .asciz " apic-base-low="
s_id:       .asciz " id="
s_ldr:      .asciz " ldr="
s_mmio:     .asciz " mmio-version="
s_regs:     .asciz "absent/ro/wo:"
s_apr:      .asciz " apr="
s_rrd:      .asciz " rrd="
s_dfr:      .asciz " dfr="
s_icr2:     .asciz " icr-high="
s_cmci:     .asciz " cmci="
s_m840:     .asciz " 840="
s_eoi_rd:   .asciz " rd-eoi="
s_self_rd:  .asciz " rd-self-ipi="
s_id_wr:    .asciz " wr-id="
s_ldr_wr:   .asciz " wr-ldr="
s_ver_wr:   .asciz " wr-version="
s_rsvd:     .asciz "reserved-bits:"
s_tpr_hi:   .asciz " tpr-bit32="
s_tpr_b8:   .asciz " tpr-bit8="
s_eoi_nz:   .asciz " eoi-nonzero="
s_esr_nz:   .asciz " esr-nonzero="
s_self_b8:  .asciz " self-ipi-bit8="
s_icr_b13:  .asciz " icr-bit13="
s_tdcr_b2:  .asciz " tdcr-bit2="
s_svr_b12:  .asciz " svr-bit12="
s_legal:    .asciz "legal:"
s_tpr:      .asciz " tpr="
s_svr:      .asciz " svr="
s_tdcr:     .asciz " tdcr="
s_esr:      .asciz " esr="
s_eoi:      .asciz " eoi="
s_tpr_reads: .asciz " tpr-reads="
s_leave:    .asciz "leave:"
s_to_xapic: .asciz " x2apic-to-xapic="
s_to_off:   .asciz " x2apic-to-disabled="
s_off_to_x2: .asciz " disabled-to-x2apic="
s_off_to_xapic: .asciz " disabled-to-xapic="
s_spur:     .asciz "spurious="
