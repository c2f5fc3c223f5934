// RDTSC reads the time-stamp counter without BigInt while it fits a double and no IA32_TSC write
// moved the offset (msr.ts tscHalves): EDX:EAX must be what tsc() gives, on either side of the
// 2^32 and 2^53 boundaries, with the host's clock or the work count, and after IA32_TSC writes.

import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { tsc, tscHalves } from "../../lib/cpu/msr.js";
import { makeGuest } from "./guest.js";

const IA32_TSC = 0x10;
// rdtsc ; hlt
const RDTSC = [0x0f, 0x31, 0xf4];

const CLOCKS = [
  0,
  1,
  0xffffffff,
  2 ** 32,
  2 ** 32 + 7,
  123456789012.75,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 60,
];

function halves(t: bigint): [number, number] {
  return [Number(t & 0xffffffffn), Number(t >> 32n)];
}

describe("RDTSC without BigInt", () => {
  for (const now of CLOCKS) {
    it(`host clock at ${now}: tscHalves and RDTSC give tsc()`, () => {
      const g = makeGuest("long", RDTSC);
      g.cpu.tscClock = () => now;
      const t = tsc(g.cpu);
      const lo = tscHalves(g.cpu);
      expect([lo, g.cpu.vh]).toEqual(halves(t));
      expect(g.run()).toBe(StopReason.Halted);
      expect(g.cpu.getGpr(0)).toBe(t & 0xffffffffn);
      expect(g.cpu.getGpr(2)).toBe(t >> 32n);
    });
  }

  it("counts work when there is no host clock", () => {
    const g = makeGuest("long", RDTSC);
    g.cpu.retired = 2 ** 40 + 5;
    const lo = tscHalves(g.cpu);
    expect([lo, g.cpu.vh]).toEqual(halves(BigInt(2 ** 40 + 5)));
  });

  for (const written of [0n, 5n, 2n ** 63n + 9n, 2n ** 64n - 1n]) {
    it(`after a write of ${written} to IA32_TSC`, () => {
      const g = makeGuest("long", RDTSC);
      let now = 1000;
      g.cpu.tscClock = () => now;
      g.cpu.setMsr(IA32_TSC, written);
      now = 1500;
      const t = tsc(g.cpu);
      expect(t).toBe(BigInt.asUintN(64, written + 500n));
      const lo = tscHalves(g.cpu);
      expect([lo, g.cpu.vh]).toEqual(halves(t));
      expect(g.run()).toBe(StopReason.Halted);
      expect(g.cpu.getGpr(0)).toBe(t & 0xffffffffn);
      expect(g.cpu.getGpr(2)).toBe(t >> 32n);
    });
  }
});
