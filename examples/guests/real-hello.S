/* Real-mode hello: a boot sector (0x7C00, CS:IP 0:7C00) that prints one line over the 16550 UART at
 * 0x3f8, one OUT per byte, then halts. Expected output: real-hello.expected. */
        .code16
        .text
        .globl _start
_start:
        cli
        xorw    %ax, %ax
        movw    %ax, %ds
        movw    $msg, %si
        movw    $0x3f8, %dx
        cld
1:      lodsb
        testb   %al, %al
        jz      2f
        outb    %al, %dx
        jmp     1b
2:      hlt
        jmp     2b

msg:    .asciz  "Hello from real mode\n"

        .org    510
        .byte   0x55, 0xaa
        .section .note.GNU-stack, "", @progbits
