/* RDPID, FSGSBASE and PKU guest (long mode, 4-level paging): what CPUID.7.0 offers and, for each
 * offered feature, what it does and refuses as the SDM says (Vol. 2B RDPID, RDFSBASE/WRFSBASE,
 * RDPKRU/WRPKRU; Vol. 3A 2.5 CR4, 4.6.2 protection keys, 4.7 #PF error code bit 5). A feature not
 * offered is only checked to be refused: MOV to CR4 of its bit #GP(0), its instruction #UD. 0..2 MiB
 * is identity-mapped in 4 KiB supervisor pages except the user routines (USER_CODE), the user stack
 * page (USER_DATA) and KEY_DATA; USER_CODE and KEY_DATA carry protection key 1. Each try prints
 * "<vector>:<error code>:<CR2>" (vector ff: no fault; CR2 only for #PF); 64-bit values print as
 * high and low halves. Only architectural values are printed (never a TSC). Assembled for long mode
 * only: FSGSBASE is #UD outside 64-bit mode and protection keys need IA-32e paging. */
        .set    BITS64, 1
        .include "apic-common.inc"

        .set    PT_ROOT, 0x50000
        .set    PT_PDPT, 0x51000
        .set    PT_PD, 0x52000
        .set    PT0, 0x53000
        .set    USER_DATA, 0x55000
        .set    TSS, 0x57000
        .set    KEY_DATA, 0x58000
        .set    USER_STACK, USER_DATA + 0xff0
        .set    RING0_STACK, 0x70000
        .set    UDS, 0x2b
        .set    UCS, 0x33
        .set    TSS_SEL, 0x38
        .set    CR4_FSGSBASE, 0x10000
        .set    CR4_PKE, 0x400000
        .set    CR0_WP, 0x10000
        .set    MSR_FS_BASE, 0xc0000100
        .set    MSR_GS_BASE, 0xc0000101
        .set    MSR_TSC_AUX, 0xc0000103
        .set    PTE_KEY1, 0x08000000            /* bits 62:59 = 1, in the entry's high half */

        .macro  KTRY resume
        movl    $0xff, f_vec
        movl    $0, f_err
        movl    $0, f_cr2
        movl    $\resume, f_resume
        movq    %rsp, f_sp
        .endm
        .macro  KDONE
        movq    f_sp, %rsp
        .endm
/* runs user routine \entry at CPL 3; back when it (or u_exit after a fault) does INT 0x80 */
        .macro  UTRY entry
        movl    $0xff, f_vec
        movl    $0, f_err
        movl    $0, f_cr2
        movl    $u_exit, f_resume
        movl    $\entry, %eax
        call    enter_user
        .endm
        .macro  RESULT label
        SHOWM   \label, f_vec
        SHOWM   s_colon, f_err
        SHOWM   s_colon, f_cr2
        .endm
/* prints " \label=<high>:<low>" of %rax */
        .macro  SHOW64 label
        movq    %rax, shown64
        shrq    $32, %rax
        SHOW    \label
        PUTS    s_colon
        movl    shown64, %eax
        call    puthex
        .endm
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
/* PKRU = \val (ECX = EDX = 0) */
        .macro  PKRU val
        movl    $\val, %eax
        xorl    %ecx, %ecx
        xorl    %edx, %edx
        wrpkru
        .endm
        .macro  BIT var, reg, n
        movl    \reg, %eax
        shrl    $\n, %eax
        andl    $1, %eax
        movl    %eax, \var
        .endm

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
        movl    $RING0_STACK, TSS + 4
        movw    $TSS_SEL, %ax
        ltr     %ax
        call    setup_paging

        movl    $7, %eax
        xorl    %ecx, %ecx
        cpuid
        BIT     has_fsgsbase, %ebx, 0
        BIT     has_rdseed, %ebx, 18
        BIT     has_pku, %ecx, 3
        BIT     has_ospke, %ecx, 4
        BIT     has_rdpid, %ecx, 22
        movl    $0x80000001, %eax
        cpuid
        BIT     has_rdtscp, %edx, 27
        PUTS    s_cpuid
        SHOWM   s_fsgsbase, has_fsgsbase
        SHOWM   s_pku, has_pku
        SHOWM   s_ospke, has_ospke
        SHOWM   s_rdpid, has_rdpid
        PUTS    nl
        PUTS    s_cpuid_ext
        SHOWM   s_rdtscp, has_rdtscp
        PUTS    nl

        call    rdpid_checks
        cmpl    $0, has_rdtscp
        je      1f
        call    rdtscp_checks
1:      call    fsgsbase_checks
        call    pku_checks
        PUTS    s_done
        hlt

/* ----------------------------------------------------------------------------------------- RDPID */
rdpid_checks:
        PUTS    s_rdpid_hdr
        cmpl    $0, has_rdpid
        jne     1f
        cmpl    $0, has_rdseed                  /* F3 0F C7 /7 without RDPID may be RDSEED's */
        jne     3f
        KTRY    2f
        rdpid   %rax
2:      KDONE
        RESULT  s_ud
3:      PUTS    nl
        ret
1:      KTRY    2f
        movl    $MSR_TSC_AUX, %ecx
        movl    $0x89abcdef, %eax
        xorl    %edx, %edx
        wrmsr
2:      KDONE
        RESULT  s_wrmsr
        movq    $-1, %rax
        rdpid   %rax                            /* TSC_AUX, zero-extended */
        SHOW64  s_value
        UTRY    u_rdpid                         /* any CPL */
        RESULT  s_cpl3
        SHOWM   s_value, USER_DATA + 0x100
        PUTS    nl
        ret

/* RDTSCP's ECX is TSC_AUX too (its EDX:EAX, a TSC, is not printed) */
rdtscp_checks:
        PUTS    s_rdtscp_hdr
        movl    $MSR_TSC_AUX, %ecx
        movl    $0x13579bdf, %eax
        xorl    %edx, %edx
        wrmsr
        movl    $-1, %ecx
        rdtscp
        movl    %ecx, %eax
        SHOW    s_ecx
        PUTS    nl
        ret

/* -------------------------------------------------------------------------------------- FSGSBASE */
fsgsbase_checks:
        PUTS    s_fsgs_hdr
        cmpl    $0, has_fsgsbase
        jne     1f
        KTRY    2f
        SET_CR4 CR4_FSGSBASE
2:      KDONE
        RESULT  s_movcr4
        KTRY    2f
        rdfsbase %rax
2:      KDONE
        RESULT  s_rdfsbase
        PUTS    nl
        ret
1:      KTRY    2f
        rdfsbase %rax                           /* CR4.FSGSBASE = 0: #UD */
2:      KDONE
        RESULT  s_off
        KTRY    2f
        wrgsbase %rax
2:      KDONE
        RESULT  s_off_wrgs
        KTRY    2f
        SET_CR4 CR4_FSGSBASE
2:      KDONE
        RESULT  s_movcr4
        PUTS    nl
        PUTS    s_fsgs_hdr2
        movabsq $0x00007fffdead1000, %rax
        wrfsbase %rax
        xorl    %eax, %eax
        rdfsbase %rax
        SHOW64  s_fs
        movabsq $0xffff800012345000, %rax
        wrgsbase %rax
        xorl    %eax, %eax
        rdgsbase %rax
        SHOW64  s_gs
        movl    $MSR_FS_BASE, %ecx              /* WRFSBASE wrote IA32_FS_BASE */
        rdmsr
        shlq    $32, %rdx
        orq     %rdx, %rax
        SHOW64  s_msr_fs
        movl    $MSR_GS_BASE, %ecx
        rdmsr
        shlq    $32, %rdx
        orq     %rdx, %rax
        SHOW64  s_msr_gs
        KTRY    2f
        movabsq $0x0000800000000000, %rax       /* non-canonical: #GP(0), FS base unchanged */
        wrfsbase %rax
2:      KDONE
        RESULT  s_noncanon
        KTRY    2f
        movabsq $0xfff0000000000000, %rax
        wrgsbase %rax
2:      KDONE
        RESULT  s_noncanon_gs
        rdfsbase %rax
        SHOW64  s_fs
        movl    $MSR_FS_BASE, %ecx              /* and WRMSR is what RDFSBASE reads */
        movl    $0x00345000, %eax
        movl    $0x00000012, %edx
        wrmsr
        rdfsbase %rax
        SHOW64  s_wrmsr_fs
        PUTS    nl
        PUTS    s_fsgs_hdr3
        movl    $0xabc000, %eax                 /* at CPL 3 too */
        wrfsbase %rax
        UTRY    u_fsgs
        RESULT  s_cpl3
        SHOWM   s_fs, USER_DATA + 0x100
        rdgsbase %rax
        SHOW64  s_gs
        xorl    %eax, %eax
        wrfsbase %rax
        wrgsbase %rax
        CLR_CR4 CR4_FSGSBASE
        KTRY    2f
        wrfsbase %rax                           /* off again: #UD */
2:      KDONE
        RESULT  s_off
        PUTS    nl
        ret

/* ------------------------------------------------------------------------------------------- PKU */
pku_checks:
        movl    $0x5a5a5a5a, KEY_DATA
        PUTS    s_pku_hdr
        cmpl    $0, has_pku
        jne     1f
        KTRY    2f
        SET_CR4 CR4_PKE
2:      KDONE
        RESULT  s_movcr4
        KTRY    2f
        rdpkru
2:      KDONE
        RESULT  s_rdpkru
        PUTS    nl
        ret
1:      KTRY    2f
        xorl    %ecx, %ecx
        rdpkru                                  /* CR4.PKE = 0: #UD */
2:      KDONE
        RESULT  s_off
        KTRY    2f
        PKRU    0
2:      KDONE
        RESULT  s_off_wr
        call    get_ospke
        SHOW    s_ospke
        KTRY    2f
        SET_CR4 CR4_PKE
2:      KDONE
        RESULT  s_movcr4
        call    get_ospke                       /* CPUID's OSPKE follows CR4.PKE */
        SHOW    s_ospke
        xorl    %ecx, %ecx
        rdpkru
        SHOW    s_pkru
        PUTS    nl
        PUTS    s_pku_hdr2
        KTRY    2f
        movl    $1, %ecx
        rdpkru
2:      KDONE
        RESULT  s_rdpkru_ecx
        KTRY    2f
        movl    $4, %eax
        movl    $1, %ecx
        xorl    %edx, %edx
        wrpkru
2:      KDONE
        RESULT  s_wrpkru_ecx
        KTRY    2f
        movl    $4, %eax
        xorl    %ecx, %ecx
        movl    $1, %edx
        wrpkru
2:      KDONE
        RESULT  s_wrpkru_edx
        PKRU    0x12345678
        xorl    %ecx, %ecx
        rdpkru
        SHOW    s_pkru
        PUTS    nl

        PKRU    0
        PUTS    s_pku_hdr3                      /* key 1: AD1 = PKRU bit 2, WD1 = bit 3 */
        PKRU    0x4
        UTRY    u_read
        RESULT  s_ad_read
        UTRY    u_write
        RESULT  s_ad_write
        UTRY    u_ret_user                      /* the code page has key 1 too: fetches are free */
        RESULT  s_fetch
        PKRU    0x8
        UTRY    u_read
        RESULT  s_wd_read
        SHOWM   s_value, USER_DATA + 0x100
        UTRY    u_write
        RESULT  s_wd_write
        PKRU    0xfffffff3                      /* every key but 1 disabled: key 1 is free */
        UTRY    u_write
        RESULT  s_other_keys
        PUTS    nl

        PUTS    s_pku_hdr4                      /* supervisor accesses to the user page */
        PKRU    0
        KTRY    2f
        movl    KEY_DATA, %eax                  /* allowed, and its translation cached ... */
        PKRU    0x4
        movl    KEY_DATA + 4, %eax              /* ... does not outlive WRPKRU */
2:      KDONE
        RESULT  s_ad_read
        KTRY    2f
        movl    %eax, KEY_DATA + 8
2:      KDONE
        RESULT  s_ad_write
        PKRU    0x8
        KTRY    2f
        movl    KEY_DATA, %eax
2:      KDONE
        RESULT  s_wd_read
        KTRY    2f
        movl    %eax, KEY_DATA + 12             /* CR0.WP = 1: #PF */
2:      KDONE
        RESULT  s_wd_write
        movq    %cr0, %rax
        andl    $~CR0_WP, %eax
        movq    %rax, %cr0
        KTRY    2f
        movl    $0x600dcafe, KEY_DATA + 16      /* CR0.WP = 0: allowed */
2:      KDONE
        RESULT  s_wd_write_wp0
        movq    %cr0, %rax
        orl     $CR0_WP, %eax
        movq    %rax, %cr0
        PKRU    0xffffffff                      /* supervisor pages have no key */
        KTRY    2f
        movl    user_var, %eax
        movl    %eax, user_var + 4
2:      KDONE
        RESULT  s_kernel
        PKRU    0
        SHOWM   s_value, KEY_DATA + 16
        PUTS    nl

        PUTS    s_pku_hdr5
        PKRU    0x4                             /* CR4.PKE = 0: keys are ignored */
        CLR_CR4 CR4_PKE
        KTRY    2f
        movl    KEY_DATA, %eax
2:      KDONE
        RESULT  s_off
        call    get_ospke
        SHOW    s_ospke
        KTRY    2f
        xorl    %ecx, %ecx
        rdpkru
2:      KDONE
        RESULT  s_rdpkru
        PUTS    nl
        ret

get_ospke:
        movl    $7, %eax
        xorl    %ecx, %ecx
        cpuid
        movl    %ecx, %eax
        shrl    $4, %eax
        andl    $1, %eax
        ret

/* ----------------------------------------------------------------------------------- machinery */
/* enters the user routine at %eax; returns when it does INT 0x80 */
enter_user:
        movq    %rsp, k_sp
        pushfq
        popq    %rcx
        pushq   $UDS
        pushq   $USER_STACK
        pushq   %rcx
        pushq   $UCS
        pushq   %rax
        iretq

/* INT 0x80 from user mode: back to enter_user's caller on the kernel stack */
sys_isr:
        movq    k_sp, %rsp
        ret

ud_isr:
        pushq   $0
        pushq   $6
        jmp     fault_common
gp_isr:
        pushq   $13
        jmp     fault_common
pf_isr:
        pushq   $14
/* records vector, error code and (for #PF) CR2; returns to f_resume */
fault_common:
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

/* the paging structures described at the top; CR0.WP on */
setup_paging:
        movl    $PT0, %edi
        xorl    %eax, %eax
        movl    $512, %ecx
1:      movl    %eax, (%edi)
        orl     $3, (%edi)
        movl    $0, 4(%edi)
        addl    $0x1000, %eax
        addl    $8, %edi
        loop    1b
        .irp    page, upage, USER_DATA, KEY_DATA
        movl    $\page, %eax
        shrl    $12, %eax
        orl     $7, PT0(, %eax, 8)
        .endr
        .irp    page, upage, KEY_DATA
        movl    $\page, %eax
        shrl    $12, %eax
        orl     $PTE_KEY1, PT0 + 4(, %eax, 8)
        .endr
        movl    $PT0 | 7, PT_PD
        movl    $PT_PD | 7, PT_PDPT
        movl    $PT_PDPT | 7, PT_ROOT
        movq    $PT_ROOT, %rax
        movq    %rax, %cr3
        movq    %cr0, %rax
        orl     $CR0_WP, %eax
        movq    %rax, %cr0
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
        .long   0x70000067, 0x00008905          /* 0x38 TSS at 0x57000 (16 bytes) */
        .long   0, 0
gdt_end:
        .balign 8
        .word   0, 0, 0
gdtr:   .word   gdt_end - gdt - 1
        .quad   gdt
        .balign 8
f_sp:   .quad   0
k_sp:   .quad   0
shown64: .quad  0
f_vec:  .long   0
f_err:  .long   0
f_cr2:  .long   0
f_resume: .long 0
has_fsgsbase: .long 0
has_rdseed: .long 0
has_pku: .long 0
has_ospke: .long 0
has_rdpid: .long 0
has_rdtscp: .long 0
user_var: .long 0, 0
s_colon:    .asciz ":"
s_cpuid:    .asciz "cpuid.7.0:"
s_fsgsbase: .asciz " fsgsbase="
s_pku:      .asciz " pku="
s_ospke:    .asciz " ospke="
s_rdpid:    .asciz " rdpid="
s_cpuid_ext: .asciz "cpuid.80000001:"
s_rdtscp:   .asciz " rdtscp="
s_rdpid_hdr: .asciz "rdpid:"
s_rdtscp_hdr: .asciz "rdtscp:"
s_fsgs_hdr: .asciz "fsgsbase:"
s_fsgs_hdr2: .asciz "fsgsbase-rw:"
s_fsgs_hdr3: .asciz "fsgsbase-cpl3:"
s_pku_hdr:  .asciz "pku:"
s_pku_hdr2: .asciz "pku-pkru:"
s_pku_hdr3: .asciz "pku-user:"
s_pku_hdr4: .asciz "pku-supervisor:"
s_pku_hdr5: .asciz "pku-off:"
s_ud:       .asciz " ud="
s_wrmsr:    .asciz " wrmsr="
s_value:    .asciz " value="
s_ecx:      .asciz " ecx="
s_cpl3:     .asciz " cpl3="
s_off:      .asciz " off="
s_off_wrgs: .asciz " off-wrgsbase="
s_off_wr:   .asciz " off-wrpkru="
s_movcr4:   .asciz " mov-cr4="
s_rdfsbase: .asciz " rdfsbase="
s_rdpkru:   .asciz " rdpkru="
s_fs:       .asciz " fs="
s_gs:       .asciz " gs="
s_msr_fs:   .asciz " msr-fs="
s_msr_gs:   .asciz " msr-gs="
s_noncanon: .asciz " noncanonical-fs="
s_noncanon_gs: .asciz " noncanonical-gs="
s_wrmsr_fs: .asciz " wrmsr-fs="
s_pkru:     .asciz " pkru="
s_rdpkru_ecx: .asciz " rdpkru-ecx="
s_wrpkru_ecx: .asciz " wrpkru-ecx="
s_wrpkru_edx: .asciz " wrpkru-edx="
s_ad_read:  .asciz " ad-read="
s_ad_write: .asciz " ad-write="
s_fetch:    .asciz " ad-fetch="
s_wd_read:  .asciz " wd-read="
s_wd_write: .asciz " wd-write="
s_other_keys: .asciz " other-keys="
s_wd_write_wp0: .asciz " wd-write-wp0="
s_kernel:   .asciz " kernel="
s_done:     .asciz "done\n"

/* ------------------------------------------------------------- the user page: CPL 3 routines */
        .org    0x4000                          /* 0x14000 */
upage:
u_exit: int     $0x80
u_ret_user:
        nop
        int     $0x80
u_rdpid:
        rdpid   %rax
        movl    %eax, USER_DATA + 0x100
        int     $0x80
u_fsgs: rdfsbase %rax
        movl    %eax, USER_DATA + 0x100
        movl    $0x00def000, %eax
        wrgsbase %rax
        int     $0x80
u_read: movl    KEY_DATA, %eax
        movl    %eax, USER_DATA + 0x100
        int     $0x80
u_write:
        movl    %eax, KEY_DATA + 4
        int     $0x80
