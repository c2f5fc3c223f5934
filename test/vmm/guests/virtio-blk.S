/* Source of the byte array in ../virtio.test.ts: a minimal virtio-mmio block driver.
   Build: as --32 -o x.o virtio-blk.S && objcopy -O binary -j .text x.o x.bin
   Flat 32-bit protected mode at 0x100000. Checks magic/version/device ID, negotiates VERSION_1 only,
   sets up queue 0 (8 entries: descriptors 0x10000, available ring 0x11000, used ring 0x12000), then
   reads sector 1 into 0x14000, inverts its first byte, writes the buffer to sector 2 and flushes,
   polling the used ring after each notify and checking status, used length and InterruptStatus.
   Prints 'K' to port 0xE9 on success, or a letter naming the failed check, then CLI; HLT. */
.code32
.set MMIO, 0xd0000000
.set DESC, 0x10000
.set AVAIL, 0x11000
.set USED, 0x12000
.set HDR, 0x13000
.set DATA, 0x14000
.set STATUS, 0x15000

/* desc i = { addr, len, flags | next << 16 } */
.macro desc i, addr, len, flagsnext
  movl $\addr, DESC + 16 * \i
  movl $0, DESC + 16 * \i + 4
  movl $\len, DESC + 16 * \i + 8
  movl $\flagsnext, DESC + 16 * \i + 12
.endm

/* header at HDR + 16 * n = { type, 0, sector } */
.macro header n, type, sector
  movl $\type, HDR + 16 * \n
  movl $0, HDR + 16 * \n + 4
  movl $\sector, HDR + 16 * \n + 8
  movl $0, HDR + 16 * \n + 12
.endm

/* publish head into avail slot n, notify, poll used.idx == n + 1, check the status byte and used length */
.macro submit n, head, status, usedlen, code
  movb $0xff, \status
  movw $\head, AVAIL + 4 + 2 * \n
  movw $(\n + 1), AVAIL + 2
  movl $0, 0x50(%esi)
1: cmpw $(\n + 1), USED + 2
  jne 1b
  mov $\code, %al
  cmpb $0, \status
  jne fail
  cmpl $\head, USED + 4 + 8 * \n
  jne fail
  cmpl $\usedlen, USED + 8 + 8 * \n
  jne fail
  testl $1, 0x60(%esi)
  jz fail
  movl $1, 0x64(%esi)
  cmpl $0, 0x60(%esi)
  jne fail
.endm

  mov $MMIO, %esi
  mov $'m', %al
  cmpl $0x74726976, 0x00(%esi)
  jne fail
  mov $'v', %al
  cmpl $2, 0x04(%esi)
  jne fail
  mov $'d', %al
  cmpl $2, 0x08(%esi)
  jne fail

  movl $0, 0x70(%esi)          /* reset */
  movl $1, 0x70(%esi)          /* ACKNOWLEDGE */
  movl $3, 0x70(%esi)          /* DRIVER */
  mov $'f', %al
  movl $1, 0x14(%esi)          /* DeviceFeaturesSel = 1 */
  testl $1, 0x10(%esi)         /* VERSION_1 (bit 32) offered */
  jz fail
  movl $1, 0x24(%esi)
  movl $1, 0x20(%esi)          /* DriverFeatures[1] = VERSION_1 */
  movl $0, 0x24(%esi)
  movl $0, 0x20(%esi)          /* DriverFeatures[0] = 0 */
  movl $0xb, 0x70(%esi)        /* FEATURES_OK */
  testl $8, 0x70(%esi)
  jz fail

  mov $'q', %al
  movl $0, 0x30(%esi)          /* QueueSel 0 */
  cmpl $8, 0x34(%esi)          /* QueueNumMax >= 8 */
  jb fail
  movl $8, 0x38(%esi)
  movl $DESC, 0x80(%esi)
  movl $0, 0x84(%esi)
  movl $AVAIL, 0x90(%esi)
  movl $0, 0x94(%esi)
  movl $USED, 0xa0(%esi)
  movl $0, 0xa4(%esi)
  movl $1, 0x44(%esi)          /* QueueReady */
  movl $0xf, 0x70(%esi)        /* DRIVER_OK */

  /* read sector 1: header (NEXT -> 1), data (WRITE|NEXT -> 2), status (WRITE) */
  header 0, 0, 1
  desc 0, HDR, 16, 0x00010001
  desc 1, DATA, 512, 0x00020003
  desc 2, STATUS, 1, 0x00000002
  submit 0, 0, STATUS, 513, 'r'

  notb DATA

  /* write it to sector 2: header (NEXT -> 4), data (NEXT -> 5), status (WRITE) */
  header 1, 1, 2
  desc 3, HDR + 16, 16, 0x00040001
  desc 4, DATA, 512, 0x00050001
  desc 5, STATUS + 1, 1, 0x00000002
  submit 1, 3, STATUS + 1, 1, 'w'

  /* flush: header (NEXT -> 7), status (WRITE) */
  header 2, 4, 0
  desc 6, HDR + 32, 16, 0x00070001
  desc 7, STATUS + 2, 1, 0x00000002
  submit 2, 6, STATUS + 2, 1, 's'

  mov $'K', %al
fail:
  out %al, $0xe9
  cli
  hlt
