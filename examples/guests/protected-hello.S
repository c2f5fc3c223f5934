/* Protected-mode hello: an ELF32 entered by the loader in flat 32-bit protected mode. Prints a line
 * with CR0.PE read back from the CPU, then halts. Expected output: protected-hello.expected. */
        .code32
        .section .text.start, "ax"
        .globl _start
_start:
        movl    $stack_top, %esp
        movw    $0x3f8, %dx
        movl    $msg, %esi
        call    print
        movl    %cr0, %eax
        andb    $1, %al
        addb    $'0', %al
        outb    %al, %dx
        movl    $tail, %esi
        call    print
1:      cli
        hlt
        jmp     1b

print:  lodsb
        testb   %al, %al
        jz      2f
        outb    %al, %dx
        jmp     print
2:      ret

        .section .rodata
msg:    .asciz  "Hello from protected mode (CR0.PE="
tail:   .asciz  ")\n"

        .bss
        .balign 16
        .skip   1024
stack_top:
        .section .note.GNU-stack, "", @progbits
