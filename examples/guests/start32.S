/* Entry of the 32-bit flat C guests: own stack, call main, then halt for good. */
        .code32
        .section .text.start, "ax"
        .globl _start
_start:
        movl    $stack_top, %esp
        call    main
1:      cli
        hlt
        jmp     1b

        .bss
        .balign 16
        .skip   4096
stack_top:
        .section .note.GNU-stack, "", @progbits
