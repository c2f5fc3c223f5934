/* SMEP, SMAP and UMIP guest: what CPUID.7.0 offers, that CR4 takes exactly the offered bits, and for
 * each offered feature the accesses it refuses (#PF error code and CR2, #GP, #UD) and those it
 * still allows, as the SDM (vol. 3A 4.6, 4.7; 2.5 CR4) says. Runs in 32-bit protected mode with
 * 32-bit paging and in long mode with 4-level paging, both built here: 0..4 MiB (2 MiB in long mode)
 * identity-mapped in 4 KiB supervisor pages except USER_CODE (the page of user routines in this
 * image), USER_DATA (data and the user stack) and USER_LDT. Each check prints
 * "<vector>:<error code>:<CR2>" (vector ff: no fault; CR2 only for #PF). A fault handler records
 * them and resumes at f_resume: in the kernel, after the instruction tried; in user mode, at
 * u_exit, whose INT 0x80 returns to the kernel as every user routine does. */
        .include "apic-common.inc"

        .set    PT_ROOT, 0x50000                /* PD (32-bit) or PML4 */
        .set    PT_PDPT, 0x51000
        .set    PT_PD, 0x52000
        .set    PT0, 0x53000                    /* the page table of the first 4 (2) MiB */
        .set    USER_DATA, 0x55000
        .set    USER_LDT, 0x56000
        .set    TSS, 0x57000
        .set    USER_STACK, USER_DATA + 0xff0
        .set    RING0_STACK, 0x70000
        .set    UCS32, 0x23
        .set    UDS, 0x2b
        .set    UCS64, 0x33
        .set    TSS_SEL, 0x38
        .set    LDT_SEL, 0x48
        .set    LDT_DS, 0x0f                    /* LDT entry 1, RPL 3 */
        .set    CR4_UMIP, 0x800
        .set    CR4_SMEP, 0x100000
        .set    CR4_SMAP, 0x200000
        .set    EFL_AC, 0x40000
        .ifdef  BITS64
        .set    PTE, 8
        .set    PTES, 512
        .set    UCS, UCS64
        .else
        .set    PTE, 4
        .set    PTES, 1024
        .set    UCS, UCS32
        .endif

/* kernel try: the fault handler resumes at \resume with the stack as it is here */
        .macro  KTRY resume
        movl    $0xff, f_vec
        movl    $0, f_err
        movl    $0, f_cr2
        movl    $\resume, f_resume
        .ifdef  BITS64
        movq    %rsp, f_sp
        .else
        movl    %esp, f_sp
        .endif
        .endm
        .macro  KDONE
        .ifdef  BITS64
        movq    f_sp, %rsp
        .else
        movl    f_sp, %esp
        .endif
        .endm
/* runs user routine \entry at CPL 3 with EFLAGS.AC = \ac; back when it (or u_exit) does INT 0x80 */
        .macro  UTRY entry, ac=0
        movl    $0xff, f_vec
        movl    $0, f_err
        movl    $0, f_cr2
        movl    $u_exit, f_resume
        movl    $\entry, %eax
        movl    $\ac, %ebx
        call    enter_user
        .endm
/* prints " \label=<vector>:<error code>:<CR2>" of the last try */
        .macro  RESULT label
        SHOWM   \label, f_vec
        SHOWM   s_colon, f_err
        SHOWM   s_colon, f_cr2
        .endm
        .ifdef  BITS64
        .macro  SET_CR4 bits
        movq    %cr4, %rax
        orq     $\bits, %rax
        movq    %rax, %cr4
        .endm
        .macro  CLR_CR4 bits
        movq    %cr4, %rax
        andq    $~\bits, %rax
        movq    %rax, %cr4
        .endm
        .else
        .macro  SET_CR4 bits
        movl    %cr4, %eax
        orl     $\bits, %eax
        movl    %eax, %cr4
        .endm
        .macro  CLR_CR4 bits
        movl    %cr4, %eax
        andl    $~\bits, %eax
        movl    %eax, %cr4
        .endm
        .endif
        .globl  _start
_start:
        START
        lgdt    gdtr
        SETGATE 6, ud_isr
        SETGATE 13, gp_isr
        SETGATE 14, pf_isr
        SETGATE 0x80, sys_isr
        movw    $0xee00, idt + 0x80 * GATE + 4  /* reachable from CPL 3 */
        lidt    idtr
        call    setup_tss
        call    setup_paging
        call    setup_ldt

        /* what CPUID offers */
        movl    $7, %eax
        xorl    %ecx, %ecx
        cpuid
        movl    %ebx, %eax
        shrl    $7, %eax
        andl    $1, %eax
        movl    %eax, has_smep
        movl    %ebx, %eax
        shrl    $20, %eax
        andl    $1, %eax
        movl    %eax, has_smap
        movl    %ecx, %eax
        shrl    $2, %eax
        andl    $1, %eax
        movl    %eax, has_umip
        PUTS    s_cpuid
        SHOWM   s_smep, has_smep
        SHOWM   s_smap, has_smap
        SHOWM   s_umip, has_umip
        PUTS    nl

        call    smep_checks
        call    smap_checks
        call    stac_checks
        call    umip_checks
        PUTS    s_done
        hlt

/* ------------------------------------------------------------------------------------------ SMEP */
smep_checks:
        PUTS    s_smep_hdr
        cmpl    $0, has_smep
        jne     1f
        KTRY    2f
        SET_CR4 CR4_SMEP
2:      KDONE
        RESULT  s_movcr4
        PUTS    nl
        ret
1:      KTRY    2f
        call    u_ret                           /* a user page's code, SMEP off: runs */
2:      KDONE
        RESULT  s_off
        KTRY    2f
        SET_CR4 CR4_SMEP
2:      KDONE
        RESULT  s_movcr4
        KTRY    2f
        call    u_ret                           /* SMEP on: #PF, P|I, CR2 = the target */
2:      KDONE
        RESULT  s_on
        KTRY    2f
        call    k_ret                           /* a supervisor page's code still runs */
2:      KDONE
        RESULT  s_kernel
        UTRY    u_ret_user                      /* and user code at CPL 3 */
        RESULT  s_user
        CLR_CR4 CR4_SMEP
        PUTS    nl
        ret

k_ret:  ret

/* ------------------------------------------------------------------------------------------ SMAP */
smap_checks:
        PUTS    s_smap_hdr
        cmpl    $0, has_smap
        jne     1f
        KTRY    2f
        SET_CR4 CR4_SMAP
2:      KDONE
        RESULT  s_movcr4
        PUTS    nl
        ret
1:      movl    $0x12345678, USER_DATA
        UTRY    u_load_ldt, EFL_AC              /* SMAP off: the implicit access is allowed */
        RESULT  s_implicit_off
        KTRY    2f
        SET_CR4 CR4_SMAP
2:      KDONE
        RESULT  s_movcr4
        PUTS    nl
        PUTS    s_smap_hdr2
        clac
        KTRY    2f
        movl    USER_DATA, %eax                 /* AC = 0: #PF, P */
2:      KDONE
        RESULT  s_read
        KTRY    2f
        movl    %eax, USER_DATA + 4             /* #PF, P|W */
2:      KDONE
        RESULT  s_write
        stac
        KTRY    2f
        movl    USER_DATA, %eax                 /* AC = 1: allowed */
        movl    %eax, USER_DATA + 8
2:      KDONE
        RESULT  s_stac_rw
        movl    USER_DATA + 8, %eax
        SHOW    s_value
        KTRY    2f
        movl    USER_DATA + 12, %eax            /* allowed and cached, then CLAC: #PF */
        clac
        movl    USER_DATA + 16, %eax
2:      KDONE
        RESULT  s_clac
        KTRY    2f
        movl    user_var, %eax                  /* supervisor data: SMAP does not apply */
2:      KDONE
        RESULT  s_kernel
        PUTS    nl
        PUTS    s_smap_hdr3
        UTRY    u_read, EFL_AC                  /* user-mode accesses: SMAP does not apply */
        RESULT  s_user
        UTRY    u_load_ldt, EFL_AC              /* LDT on a user page at CPL 3: implicit, #PF */
        RESULT  s_implicit
        CLR_CR4 CR4_SMAP
        PUTS    nl
        ret

/* ----------------------------------------------------------------------------------- STAC/CLAC */
stac_checks:
        PUTS    s_stac_hdr
        cmpl    $0, has_smap
        je      1f
        stac
        call    get_ac
        SHOW    s_ac_stac
        clac
        call    get_ac
        SHOW    s_ac_clac
1:      UTRY    u_stac                          /* #UD at CPL 3 (and without SMAP anywhere) */
        RESULT  s_user_stac
        UTRY    u_clac
        RESULT  s_user_clac
        PUTS    nl
        ret

get_ac:
        .ifdef  BITS64
        pushfq
        popq    %rax
        .else
        pushfl
        popl    %eax
        .endif
        shrl    $18, %eax
        andl    $1, %eax
        ret

/* ------------------------------------------------------------------------------------------ UMIP */
umip_checks:
        PUTS    s_umip_hdr
        cmpl    $0, has_umip
        jne     1f
        KTRY    2f
        SET_CR4 CR4_UMIP
2:      KDONE
        RESULT  s_movcr4
        PUTS    nl
        ret
1:      UTRY    u_sgdt                          /* UMIP off: allowed at CPL 3 */
        RESULT  s_off
        KTRY    2f
        SET_CR4 CR4_UMIP
2:      KDONE
        RESULT  s_movcr4
        KTRY    2f
        sgdt    kscratch                        /* CPL 0: allowed */
        sidt    kscratch
        sldt    %eax
        str     %eax
        smsw    %eax
2:      KDONE
        RESULT  s_kernel
        PUTS    nl
        PUTS    s_umip_hdr2
        UTRY    u_sgdt
        RESULT  s_sgdt
        UTRY    u_sidt
        RESULT  s_sidt
        UTRY    u_sldt
        RESULT  s_sldt
        UTRY    u_str
        RESULT  s_str
        UTRY    u_smsw
        RESULT  s_smsw
        UTRY    u_smsw_mem
        RESULT  s_smsw_mem
        CLR_CR4 CR4_UMIP
        PUTS    nl
        ret

/* ----------------------------------------------------------------------------------- machinery */
/* enters the user routine at %eax with EFLAGS.AC from %ebx; returns when it does INT 0x80 */
enter_user:
        .ifdef  BITS64
        movq    %rsp, k_sp
        pushfq
        popq    %rcx
        andl    $~EFL_AC, %ecx
        orl     %ebx, %ecx
        pushq   $UDS
        pushq   $USER_STACK
        pushq   %rcx
        pushq   $UCS
        pushq   %rax
        iretq
        .else
        movl    %esp, k_sp
        movw    $UDS, %cx                       /* DPL 3: IRET to CPL 3 would null DPL-0 DS/ES */
        movw    %cx, %ds
        movw    %cx, %es
        pushfl
        popl    %ecx
        andl    $~EFL_AC, %ecx
        orl     %ebx, %ecx
        pushl   $UDS
        pushl   $USER_STACK
        pushl   %ecx
        pushl   $UCS
        pushl   %eax
        iret
        .endif

/* INT 0x80 from user mode: back to enter_user's caller on the kernel stack */
sys_isr:
        .ifdef  BITS64
        movq    k_sp, %rsp
        .else
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movl    k_sp, %esp
        .endif
        ret

ud_isr:
        .ifdef  BITS64
        pushq   $0
        pushq   $6
        .else
        pushl   $0
        pushl   $6
        .endif
        jmp     fault_common
gp_isr:
        .ifdef  BITS64
        pushq   $13
        .else
        pushl   $13
        .endif
        jmp     fault_common
pf_isr:
        .ifdef  BITS64
        pushq   $14
        .else
        pushl   $14
        .endif
/* records vector, error code and (for #PF) CR2; returns to f_resume */
fault_common:
        .ifdef  BITS64
        pushq   %rax
        movq    8(%rsp), %rax
        movl    %eax, f_vec
        movq    16(%rsp), %rax
        movl    %eax, f_err
        movl    f_resume, %eax
        movq    %rax, 24(%rsp)
        xorl    %eax, %eax
        cmpl    $14, f_vec
        jne     1f
        movq    %cr2, %rax
1:      movl    %eax, f_cr2
        popq    %rax
        addq    $16, %rsp
        iretq
        .else
        pushl   %eax
        pushl   %ds
        movw    $0x10, %ax                      /* a fault at CPL 3 leaves a user DS */
        movw    %ax, %ds
        movl    8(%esp), %eax
        movl    %eax, f_vec
        movl    12(%esp), %eax
        movl    %eax, f_err
        movl    f_resume, %eax
        movl    %eax, 16(%esp)
        xorl    %eax, %eax
        cmpl    $14, f_vec
        jne     1f
        movl    %cr2, %eax
1:      movl    %eax, f_cr2
        popl    %ds
        popl    %eax
        addl    $8, %esp
        iret
        .endif

setup_tss:
        movl    $RING0_STACK, TSS + 4           /* ESP0 / RSP0 low half */
        .ifndef BITS64
        movl    $0x10, TSS + 8                  /* SS0 */
        .endif
        movw    $TSS_SEL, %ax
        ltr     %ax
        ret

/* the paging structures described at the top; CR0.WP on */
setup_paging:
        movl    $PT0, %edi
        xorl    %eax, %eax
        movl    $PTES, %ecx
1:      movl    %eax, (%edi)
        orl     $3, (%edi)
        movl    $0, 4(%edi)                     /* 32-bit: the next entry, rewritten next round */
        addl    $0x1000, %eax
        addl    $PTE, %edi
        loop    1b
        .irp    page, upage, USER_DATA, USER_LDT
        movl    $\page, %eax
        shrl    $12, %eax
        orl     $7, PT0(, %eax, PTE)
        .endr
        .ifdef  BITS64
        movl    $PT0 | 7, PT_PD
        movl    $PT_PD | 7, PT_PDPT
        movl    $PT_PDPT | 7, PT_ROOT
        movq    $PT_ROOT, %rax
        movq    %rax, %cr3
        movq    %cr0, %rax
        orl     $0x10000, %eax
        movq    %rax, %cr0
        .else
        movl    $PT0 | 7, PT_ROOT
        movl    $PT_ROOT, %eax
        movl    %eax, %cr3
        movl    %cr0, %eax
        orl     $0x80010000, %eax
        movl    %eax, %cr0
        .endif
        ret

/* a flat DPL-3 data segment as LDT entry 1, the LDT on a user page */
setup_ldt:
        movl    $0x0000ffff, USER_LDT + 8
        movl    $0x00cff300, USER_LDT + 12
        movw    $LDT_SEL, %ax
        lldt    %ax
        ret

        .include "apic-lib.inc"

        .balign 8
gdt:    .quad   0
        .quad   0x00cf9b000000ffff              /* 0x08 code32 */
        .quad   0x00cf93000000ffff              /* 0x10 data */
        .quad   0x00af9b000000ffff              /* 0x18 code64 */
        .quad   0x00cffb000000ffff              /* 0x23 user code32 */
        .quad   0x00cff3000000ffff              /* 0x2b user data */
        .quad   0x00affb000000ffff              /* 0x33 user code64 */
        .long   0x70000067, 0x00008905          /* 0x38 TSS at 0x57000 (64-bit: 16 bytes) */
        .long   0, 0
        .long   0x6000000f, 0x00008205          /* 0x48 LDT at 0x56000 */
        .long   0, 0
gdt_end:
        .balign 8
        .word   0, 0, 0
gdtr:   .word   gdt_end - gdt - 1
        .ifdef  BITS64
        .quad   gdt
        .else
        .long   gdt
        .endif
        .balign 8
f_sp:   .quad   0
k_sp:   .quad   0
f_vec:  .long   0
f_err:  .long   0
f_cr2:  .long   0
f_resume: .long 0
has_smep: .long 0
has_smap: .long 0
has_umip: .long 0
user_var: .long 0
kscratch: .fill 16, 1, 0
s_colon:    .asciz ":"
s_cpuid:    .asciz "cpuid.7.0:"
s_smep:     .asciz " smep="
s_smap:     .asciz " smap="
s_umip:     .asciz " umip="
s_smep_hdr: .asciz "smep:"
s_smap_hdr: .asciz "smap:"
s_smap_hdr2: .asciz "smap-supervisor:"
s_smap_hdr3: .asciz "smap-cpl3:"
s_stac_hdr: .asciz "stac-clac:"
s_umip_hdr: .asciz "umip:"
s_umip_hdr2: .asciz "umip-cpl3:"
s_movcr4:   .asciz " mov-cr4="
s_off:      .asciz " off="
s_on:       .asciz " on="
s_kernel:   .asciz " kernel="
s_user:     .asciz " user="
s_implicit_off: .asciz " implicit-off="
s_implicit: .asciz " implicit="
s_read:     .asciz " read="
s_write:    .asciz " write="
s_stac_rw:  .asciz " stac-rw="
s_value:    .asciz " value="
s_clac:     .asciz " clac="
s_ac_stac:  .asciz " ac-after-stac="
s_ac_clac:  .asciz " ac-after-clac="
s_user_stac: .asciz " cpl3-stac="
s_user_clac: .asciz " cpl3-clac="
s_sgdt:     .asciz " sgdt="
s_sidt:     .asciz " sidt="
s_sldt:     .asciz " sldt="
s_str:      .asciz " str="
s_smsw:     .asciz " smsw="
s_smsw_mem: .asciz " smsw-mem="
s_done:     .asciz "done\n"

/* ------------------------------------------------------------- the user page: CPL 3 routines */
        .org    0x3000                          /* 0x13000 in both images: the same CR2 */
upage:
u_ret:  ret                                     /* called from the kernel by the SMEP checks */
u_exit: int     $0x80
u_ret_user:
        nop
        int     $0x80
u_read: movl    USER_DATA, %eax
        int     $0x80
u_load_ldt:
        movw    $LDT_DS, %ax
        movw    %ax, %fs
        int     $0x80
u_stac: stac
        int     $0x80
u_clac: clac
        int     $0x80
u_sgdt: sgdt    USER_DATA + 0x100
        int     $0x80
u_sidt: sidt    USER_DATA + 0x100
        int     $0x80
u_sldt: sldt    %eax
        int     $0x80
u_str:  str     %eax
        int     $0x80
u_smsw: smsw    %eax
        int     $0x80
u_smsw_mem:
        smsw    USER_DATA + 0x100
        int     $0x80
