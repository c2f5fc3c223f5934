// A REP string instruction counts one unit of work per iteration, its first iteration being the
// instruction's own retirement (restarted or not): a run ends exactly at its budget wherever a
// REP falls in it, and every run that reaches a REP makes progress. bounded.test.ts once found
// a run of budget 6 stopping at 7, where an iteration and the restart counted two.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Interpreter, StopReason } from "../../lib/cpu/index.js";
import { CODE, hex, makeGuest } from "./guest.js";

const DST = 0x200000;

// mov ecx, 100 ; mov edi, DST ; cld ; rep stosb ; hlt
const REP = hex("b9 64 00 00 00 bf 00 00 20 00 fc f3 aa f4");
// mov ecx, 100 ; mov edi, DST ; cld ; stosb ; hlt
const PLAIN = hex("b9 64 00 00 00 bf 00 00 20 00 fc aa f4");
// mov ecx, 0 ; mov edi, DST ; cld ; rep stosb ; hlt
const EMPTY = hex("b9 00 00 00 00 bf 00 00 20 00 fc f3 aa f4");

describe.each([
  ["blocks", true],
  ["single-step decoder", false],
] as const)("REP against a run's budget (%s)", (_name, decodeCache) => {
  const guest = (code: number[]) => {
    const saved = Interpreter.defaultDecodeCache;
    Interpreter.defaultDecodeCache = decodeCache;
    try {
      const g = makeGuest("prot32", code);
      g.cpu.setGpr(0, 0xabn);
      return g;
    } finally {
      Interpreter.defaultDecodeCache = saved;
    }
  };

  it("with one unit left does one iteration and restarts, ending the run at its budget", () => {
    const g = guest(REP);
    expect(g.cpu.run(4)).toBe(StopReason.Budget);
    expect(g.cpu.work()).toBe(4);
    expect(g.cpu.getRipNumber()).toBe(CODE + 11);
    expect(Number(g.cpu.getGpr(1))).toBe(99);
    expect(g.run()).toBe(StopReason.Halted);
    expect(Number(g.cpu.getGpr(1))).toBe(0);
    expect([...g.ram.subarray(DST, DST + 101)]).toEqual([...new Array(100).fill(0xab), 0]);
  });

  it("counts 100 iterations as 100 units, and a REP with a zero count as one", () => {
    const g = guest(REP);
    expect(g.run()).toBe(StopReason.Halted);
    // three MOV/CLD, the REP's 100 iterations, HLT
    expect(g.cpu.work()).toBe(3 + 100 + 1);
    const e = guest(EMPTY);
    expect(e.run()).toBe(StopReason.Halted);
    expect(e.cpu.work()).toBe(3 + 1 + 1);
    expect(e.ram[DST]).toBe(0);
  });

  it("makes progress in runs of budget 1 that start at the REP", () => {
    const g = guest(REP);
    expect(g.cpu.run(3)).toBe(StopReason.Budget);
    for (let k = 1; k <= 3; k++) {
      expect(g.cpu.run(1)).toBe(StopReason.Budget);
      expect(g.cpu.work()).toBe(3 + k);
      expect(Number(g.cpu.getGpr(1))).toBe(100 - k);
    }
  });

  it("carries out an instruction without REP on the budget's last unit", () => {
    const g = guest(PLAIN);
    expect(g.cpu.run(4)).toBe(StopReason.Budget);
    expect(g.cpu.work()).toBe(4);
    expect(g.cpu.getRipNumber()).toBe(CODE + 12);
    expect(g.ram[DST]).toBe(0xab);
  });

  it("ends every run exactly at its budget, in slices of any size, with the same memory", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 12 }), (slices) => {
        const g = guest(REP);
        let used = 0;
        for (const s of slices) {
          const r = g.cpu.run(s);
          if (r === StopReason.Halted) break;
          expect(r).toBe(StopReason.Budget);
          used += s;
          expect(g.cpu.work()).toBe(used);
        }
        expect(g.run()).toBe(StopReason.Halted);
        expect(g.cpu.work()).toBe(104);
        expect([...g.ram.subarray(DST, DST + 101)]).toEqual([...new Array(100).fill(0xab), 0]);
      }),
      { numRuns: 50 },
    );
  });
});
