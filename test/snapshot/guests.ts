// Real-mode guests for the snapshot tests (flat images at 0x7C00, the CLI's default).

import { Alu, Asm, AX, CX, DX } from "../support/asm.js";
import { irq0Setup } from "../support/real-mode-timer.js";

const JZ = 4;
const JNZ = 5;
const JB = 2;

/**
 * Counts to `n`: each step waits for COM1's transmitter (an IN), writes 'A'+(i&15) to COM1 and
 * 'a'+(i&15) to the debug port, and stores the count at 0x500; then CLI; HLT. Three exits a step.
 */
export function countingGuest(n = 200): Uint8Array {
  const a = new Asm(16, 0x7c00);
  a.aluRR(Alu.Xor, CX, CX);
  a.label("step").movRI(DX, 0x3fd);
  a.label("wait").inDx(1).db(0xa8, 0x20).jShort(JZ, "wait"); // test al, 0x20
  a.db(0x88, 0xc8, 0x24, 0x0f, 0x04, 0x41); // mov al, cl; and al, 15; add al, 'A'
  a.movRI(DX, 0x3f8).outDx(1);
  a.db(0x04, 0x20).outImm(0xe9, 1); // add al, 0x20
  a.inc(CX).store({ abs: 0x500 }, CX);
  a.aluRI(Alu.Cmp, CX, n).jShort(JNZ, "step");
  a.db(0xfa, 0xf4); // cli; hlt
  return a.link();
}

/**
 * PIT channel 0 in mode 0 (one interrupt at terminal count) through the i8259 at vector 8, with
 * interrupts off: the guest polls the PIC's IRR until IRQ 0 is pending, writes 'P' to the debug port
 * and then to port 0x501 (the test stops the run there), enables interrupts, and the handler writes
 * 'T'. The main code then writes 'D' and halts. Mode 0 fires once: an IRQ lost in between never
 * comes back, and the guest spins until its limit.
 */
export function pendingTimerGuest(): Uint8Array {
  const a = new Asm(16, 0x7c00);
  irq0Setup(a, "handler");
  // PIT channel 0, lobyte/hibyte, mode 0, count 0x0800 (~1.7 ms)
  a.db(0xb0, 0x30).outImm(0x43, 1);
  a.db(0xb0, 0x00).outImm(0x40, 1);
  a.db(0xb0, 0x08).outImm(0x40, 1);
  // OCW3: reads of port 0x20 return the IRR
  a.db(0xb0, 0x0a).outImm(0x20, 1);
  a.label("poll").inImm(0x20, 1).db(0xa8, 0x01).jShort(JZ, "poll");
  a.db(0xb0, 0x50).outImm(0xe9, 1); // 'P'
  a.movRI(DX, 0x501).outDx(1); // the test's stop port
  a.db(0xfb); // sti
  a.label("idle").load(AX, { abs: 0x600 }).aluRI(Alu.Cmp, AX, 1).jShort(JB, "idle");
  a.db(0xb0, 0x44).outImm(0xe9, 1); // 'D'
  a.db(0xfa, 0xf4);
  a.label("handler");
  a.incM({ abs: 0x600 });
  a.db(0x50, 0xb0, 0x54).outImm(0xe9, 1); // push ax; 'T'
  a.db(0xb0, 0x20).outImm(0x20, 1).db(0x58, 0xcf); // EOI; pop ax; iret
  return a.link();
}
