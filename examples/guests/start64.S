/* Entry of the 64-bit C guests: own stack, call main, then halt for good. */
        .code64
        .section .text.start, "ax"
        .globl _start
_start:
        leaq    stack_top(%rip), %rsp
        call    main
1:      cli
        hlt
        jmp     1b

        .bss
        .balign 16
        .skip   4096
stack_top:
        .section .note.GNU-stack, "", @progbits
