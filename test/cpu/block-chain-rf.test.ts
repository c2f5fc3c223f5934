// RF after IRET: the processor clears it when the next instruction completes (SDM 17.3.1.1), so
// the run loop single-steps that instruction. A compiled block ending in IRET must not chain on
// to the next compiled block with RF still set: an INT n a few blocks on would push it in its
// EFLAGS image.

import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, EXC_LOG, hex, le32, makeGuest, r32, STACK_TOP } from "./guest.js";

const T = CODE + 0x13;
// mov ecx, 2 ; mov edx, 2 ; L: push edx ; push 8 ; push T ; iret ;
// T: inc eax ; jmp U ; U: mov edx, 0x10002 (RF) ; dec ecx ; jnz L ; int 0x1f ; hlt
// The first pass runs (and compiles) T and U with RF clear; the second IRETs to T with RF set.
const code = [
  ...hex("b9 02 00 00 00 ba 02 00 00 00 52 6a 08 68"),
  ...le32(T),
  ...hex("cf 40 eb 00 ba 02 00 01 00 49 75 ec cd 1f f4"),
];

describe("RF set by IRET ends a chain of compiled blocks", () => {
  for (const [config, threshold] of [
    ["single-step", -1],
    ["interpreted", 0],
    ["compiled on first run", 1],
  ] as const) {
    it(`${config}: INT n pushes EFLAGS with RF clear`, () => {
      const g = makeGuest("prot32", code);
      g.cpu.decodeCache = threshold >= 0;
      g.cpu.jitThreshold = Math.max(threshold, 0);
      expect(g.run()).toBe(StopReason.Halted);
      // the handler of vector 31 ran, with the INT's frame (EIP, CS, EFLAGS) at the stack's top
      expect(r32(g.ram, EXC_LOG)).toBe(31);
      expect(r32(g.ram, STACK_TOP - 12)).toBe(CODE + 0x20);
      expect(r32(g.ram, STACK_TOP - 4) & 0x10000).toBe(0);
      expect(Number(g.cpu.getGpr(0))).toBe(2);
    });
  }
});
