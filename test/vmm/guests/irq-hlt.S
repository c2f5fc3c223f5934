/* Source of a byte array in ../guest-runs.test.ts. Build: as --32 -o x.o irq-hlt.S && objcopy -O binary -j .text x.o x.bin */
.code16
start:
  xor %ax,%ax
  mov %ax,%ds
  xor %bx,%bx
  movw $(handler-start+0x7c00), 0x94
  movw $0, 0x96
  mov $0x11,%al
  out %al,$0x20
  mov $0x20,%al
  out %al,$0x21
  mov $0x04,%al
  out %al,$0x21
  mov $0x01,%al
  out %al,$0x21
  mov $0xdf,%al
  out %al,$0x21
  sti
wait:
  hlt
  cmp $1,%bx
  jne wait
  cli
  hlt
handler:
  mov $'I',%al
  out %al,$0xe9
  mov $0x20,%al
  out %al,$0x20
  mov $1,%bx
  iret
