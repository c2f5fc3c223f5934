// Real-mode guest set-up shared by tests that take timer interrupts without firmware: DS = 0, the
// IVT entry for vector 8 pointing at a label, and the master i8259 initialised (vector base 8) with
// only IRQ 0 (the PIT) unmasked. Interrupts stay off (CLI) until the guest enables them.

import { Alu, type Asm, AX } from "./asm.js";

export function irq0Setup(a: Asm, handler: string): void {
  a.db(0xfa); // cli
  a.aluRR(Alu.Xor, AX, AX).db(0x8e, 0xd8); // mov ds, ax
  a.movRI(AX, 0).store({ abs: 0x600 }, AX);
  // IVT[8] = 0000:handler
  a.db(0xc7, 0x06, 0x20, 0x00).addr(handler).db(0xc7, 0x06, 0x22, 0x00, 0x00, 0x00);
  // i8259 master: ICW1-4 (vector base 8), mask all but IRQ 0
  for (const [port, v] of [
    [0x20, 0x11],
    [0x21, 0x08],
    [0x21, 0x04],
    [0x21, 0x01],
    [0x21, 0xfe],
  ] as const) {
    a.db(0xb0, v).outImm(port, 1);
  }
}
