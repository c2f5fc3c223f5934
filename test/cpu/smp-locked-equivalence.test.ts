// The locked path of shared-memory mode (lib/cpu/smp-atomic.ts) computes what the ordinary path
// does: random sequences of LOCK-prefixed read-modify-writes (and XCHG) on operands at every
// alignment run on one interpreter with the mode on and on one without; registers, flags and
// memory must end the same. (One thread: no CAS ever fails here; smp-atomics.test.ts races them.)

import { describe, expect, it } from "vitest";
import { createSharedMemoryState, StopReason } from "../../lib/cpu/index.js";
import { makeGuest, RAM_SIZE } from "./guest.js";

const DATA = 0x100000;

/** xorshift32: the same sequences on every run */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/** one locked instruction on [rdi+d] (d random 0..47) */
function lockedInsn(r: () => number): number[] {
  const d = r() % 48;
  const reg = r() % 4; // eax, ecx, edx, ebx
  const modrm = 0x47 | (reg << 3);
  const alu = [0x01, 0x09, 0x11, 0x19, 0x21, 0x29, 0x31][r() % 7];
  switch (r() % 12) {
    case 0:
      return [0xf0, alu, modrm, d];
    case 1:
      return [0xf0, 0x48, alu, modrm, d];
    case 2:
      return [0xf0, 0x66, alu, modrm, d];
    case 3:
      return [0xf0, alu - 1, modrm, d];
    case 4:
      // NOT, NEG (F7 /2, /3), INC, DEC (FF /0, /1)
      return r() % 2 === 0
        ? [0xf0, 0xf7, 0x57 | ((2 + (r() % 2)) << 3), d]
        : [0xf0, 0xff, 0x47 | ((r() % 2) << 3), d];
    case 5:
      // BTS/BTR/BTC [rdi+d], imm8 (0F BA /5 /6 /7)
      return [0xf0, 0x0f, 0xba, 0x47 | ((5 + (r() % 3)) << 3), d, r() % 64];
    case 6:
      return [0xf0, 0x0f, 0xc1, modrm, d];
    case 7:
      return [0xf0, 0x48, 0x0f, 0xc1, modrm, d];
    case 8:
      return [0xf0, 0x0f, 0xb1, modrm, d];
    case 9:
      return [0x87, modrm, d];
    case 10:
      // CMPXCHG8B [rdi+d]
      return [0xf0, 0x0f, 0xc7, 0x4f, d];
    default:
      // ALU r/m, imm8 (83 /0../6)
      return [0xf0, 0x83, 0x47 | ((r() % 7) << 3), d, r() & 0xff];
  }
}

describe("locked instructions compute the same with and without shared memory", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`random sequence ${seed}`, () => {
      const r = rng(seed * 7919);
      const code: number[] = [];
      for (let k = 0; k < 200; k++) code.push(...lockedInsn(r));
      code.push(0xf4);
      const regs = Array.from({ length: 16 }, () => [r() | 0, r() | 0]);
      const data = Array.from({ length: 64 }, () => r() & 0xff);
      // make some CMPXCHG compares succeed: EAX (and EDX) equal to memory at times
      const runOne = (shared: boolean) => {
        const g = makeGuest("long", code);
        g.ram.set(data, DATA);
        if (shared) g.cpu.attachSharedMemory(createSharedMemoryState(RAM_SIZE, 1), 0);
        for (let i = 0; i < 16; i++) {
          if (i === 4) continue;
          g.cpu.lo[i] = regs[i][0];
          g.cpu.hi[i] = regs[i][1];
        }
        g.cpu.lo[7] = DATA;
        g.cpu.hi[7] = 0;
        g.cpu.lo[0] =
          g.ram[DATA + 8] | (g.ram[DATA + 9] << 8) | (g.ram[DATA + 10] << 16) | (g.ram[DATA + 11] << 24);
        expect(g.cpu.run(100_000)).toBe(StopReason.Halted);
        return {
          lo: Array.from(g.cpu.lo),
          hi: Array.from(g.cpu.hi),
          flags: g.cpu.getFlags(),
          retired: g.cpu.retired,
          mem: Array.from(g.ram.subarray(DATA, DATA + 64)),
        };
      };
      const plain = runOne(false);
      expect(plain.retired).toBe(201);
      expect(runOne(true)).toEqual(plain);
    });
  }
});
