/* Source of a byte array in ../guest-runs.test.ts. Build: as --32 -o x.o mmio.S && objcopy -O binary -j .text x.o x.bin */
.code32
  movl $0x12345678, %eax
  movl %eax, 0x2000000
  movl 0x2000004, %ebx
  movw 0x3000000, %dx
  cli
  hlt
