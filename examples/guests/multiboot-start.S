/* Multiboot v1 header and entry of multiboot-info.c. Flags: page-align modules (bit 0) and provide
 * memory information (bit 1); no a.out-kludge addresses, so the loader uses the ELF headers. */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x3

        .section .multiboot, "a"
        .balign 4
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

        .code32
        .section .text.start, "ax"
        .globl _start
_start:
        movl    $stack_top, %esp
        pushl   %ebx                    /* multiboot information structure */
        pushl   %eax                    /* boot loader magic 0x2BADB002 */
        call    kmain
1:      cli
        hlt
        jmp     1b

        .bss
        .balign 16
        .skip   4096
stack_top:
        .section .note.GNU-stack, "", @progbits
