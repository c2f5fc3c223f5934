/* Source of a byte array in ../guest-runs.test.ts. Build: as --32 -o x.o irq-strio.S && objcopy -O binary -j .text x.o x.bin */
.code16
.org 0
start:
  xor %ax,%ax
  mov %ax,%ds
  mov %ax,%es
  cld
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
  mov $0x500,%dx
  out %al,%dx
wait:
  cmp $1,%bx
  jne wait
  mov $(msg-start+0x7c00),%si
  mov $3,%cx
  mov $0xe9,%dx
  rep outsb
  mov $0x7e00,%di
  mov $2,%cx
  mov $0x501,%dx
  rep insw
  cli
  hlt
handler:
  mov $'I',%al
  out %al,$0xe9
  mov $0x20,%al
  out %al,$0x20
  mov $1,%bx
  iret
msg: .ascii "abc"
