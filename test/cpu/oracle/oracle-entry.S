/* Switches the host CPU into a test case's register state, runs the case's code, and captures the
 * resulting state. The code is followed (by oracle.c) with an absolute jump to oracle_exit; a fault
 * lands in oracle.c's signal handler, which resumes at oracle_recover on the host stack. */
        .intel_syntax noprefix
        .text

        .globl oracle_run
        .hidden oracle_run
        .type oracle_run, @function
/* int oracle_run(const struct oracle_state *in): 0 when the code ran to its end, 1 after a fault */
oracle_run:
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        mov [rip + oracle_host_rsp], rsp
        fxrstor64 [rip + oracle_fx_in]
        movdqu xmm0, [rdi + 144 + 0*16]
        movdqu xmm1, [rdi + 144 + 1*16]
        movdqu xmm2, [rdi + 144 + 2*16]
        movdqu xmm3, [rdi + 144 + 3*16]
        movdqu xmm4, [rdi + 144 + 4*16]
        movdqu xmm5, [rdi + 144 + 5*16]
        movdqu xmm6, [rdi + 144 + 6*16]
        movdqu xmm7, [rdi + 144 + 7*16]
        movdqu xmm8, [rdi + 144 + 8*16]
        movdqu xmm9, [rdi + 144 + 9*16]
        movdqu xmm10, [rdi + 144 + 10*16]
        movdqu xmm11, [rdi + 144 + 11*16]
        movdqu xmm12, [rdi + 144 + 12*16]
        movdqu xmm13, [rdi + 144 + 13*16]
        movdqu xmm14, [rdi + 144 + 14*16]
        movdqu xmm15, [rdi + 144 + 15*16]
        /* compatibility-mode code addresses memory through DS/ES, null in a 64-bit process */
        mov eax, 0x2b
        mov ds, eax
        mov es, eax
        push qword ptr [rdi + 128]
        popfq
        mov rax, [rdi + 0*8]
        mov rcx, [rdi + 1*8]
        mov rdx, [rdi + 2*8]
        mov rbx, [rdi + 3*8]
        mov rbp, [rdi + 5*8]
        mov rsi, [rdi + 6*8]
        mov r8, [rdi + 8*8]
        mov r9, [rdi + 9*8]
        mov r10, [rdi + 10*8]
        mov r11, [rdi + 11*8]
        mov r12, [rdi + 12*8]
        mov r13, [rdi + 13*8]
        mov r14, [rdi + 14*8]
        mov r15, [rdi + 15*8]
        /* the case's SS (a 16-bit LDT stack segment, or the usual 0x2b), right before its RSP */
        mov ss, word ptr [rip + oracle_ss]
        mov rsp, [rdi + 4*8]
        mov rdi, [rdi + 7*8]
        /* far jump through oracle_far_entry (m16:32): CS 0x33 runs the code in 64-bit mode, 0x23
         * in compatibility mode */
        .byte 0xff, 0x2d
        .long oracle_far_entry - . - 4

        .globl oracle_exit
        .hidden oracle_exit
oracle_exit:
        mov [rip + oracle_out + 0*8], rax
        mov [rip + oracle_out + 1*8], rcx
        mov [rip + oracle_out + 2*8], rdx
        mov [rip + oracle_out + 3*8], rbx
        mov [rip + oracle_out + 4*8], rsp
        mov [rip + oracle_out + 5*8], rbp
        mov [rip + oracle_out + 6*8], rsi
        mov [rip + oracle_out + 7*8], rdi
        mov [rip + oracle_out + 8*8], r8
        mov [rip + oracle_out + 9*8], r9
        mov [rip + oracle_out + 10*8], r10
        mov [rip + oracle_out + 11*8], r11
        mov [rip + oracle_out + 12*8], r12
        mov [rip + oracle_out + 13*8], r13
        mov [rip + oracle_out + 14*8], r14
        mov [rip + oracle_out + 15*8], r15
        /* the 64-bit user data segment again, after a case on the 16-bit stack segment */
        mov eax, 0x2b
        mov ss, eax
        mov rsp, [rip + oracle_host_rsp]
        pushfq
        pop rax
        mov [rip + oracle_out + 128], rax
        movdqu [rip + oracle_out + 144 + 0*16], xmm0
        movdqu [rip + oracle_out + 144 + 1*16], xmm1
        movdqu [rip + oracle_out + 144 + 2*16], xmm2
        movdqu [rip + oracle_out + 144 + 3*16], xmm3
        movdqu [rip + oracle_out + 144 + 4*16], xmm4
        movdqu [rip + oracle_out + 144 + 5*16], xmm5
        movdqu [rip + oracle_out + 144 + 6*16], xmm6
        movdqu [rip + oracle_out + 144 + 7*16], xmm7
        movdqu [rip + oracle_out + 144 + 8*16], xmm8
        movdqu [rip + oracle_out + 144 + 9*16], xmm9
        movdqu [rip + oracle_out + 144 + 10*16], xmm10
        movdqu [rip + oracle_out + 144 + 11*16], xmm11
        movdqu [rip + oracle_out + 144 + 12*16], xmm12
        movdqu [rip + oracle_out + 144 + 13*16], xmm13
        movdqu [rip + oracle_out + 144 + 14*16], xmm14
        movdqu [rip + oracle_out + 144 + 15*16], xmm15
        fxsave64 [rip + oracle_fx_out]
        cld
        xor eax, eax
        jmp 1f

        .globl oracle_recover
        .hidden oracle_recover
oracle_recover:
        cld
        mov eax, 1
1:
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        ret
        .size oracle_run, . - oracle_run

        .section .note.GNU-stack,"",@progbits
