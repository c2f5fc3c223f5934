// REP MOVS / REP STOS a page at a time (exec-string.ts repBulk) against the same instructions an
// iteration at a time (Interpreter.repBulk = false; the differential suite holds that path to the
// host CPU): every size and direction, overlapping copies, 16-bit index wrap, runs that cross
// pages, walk from RAM into MMIO and into an unmapped page (#PF partway), copies onto the code
// page (over the REP itself), in slices that stop the REP anywhere.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Seg, StopReason } from "../../lib/cpu/index.js";
import { CODE, type Guest, hex, type Mode, makeGuest, RAM_SIZE } from "./guest.js";

interface RepCase {
  mode: Mode;
  movs: boolean;
  /** element bytes */
  n: number;
  down: boolean;
  prefix: number;
  count: number;
  si: number;
  di: number;
  /** real mode: ES and DS bases (a multiple of 16) */
  es: number;
  ds: number;
  slice: number;
  seed: number;
}

const near = (edges: number[]) =>
  fc.tuple(fc.constantFrom(...edges), fc.integer({ min: -40, max: 40 })).map(([e, d]) => Math.max(0, e + d));

const arbIndex = (mode: Mode): fc.Arbitrary<number> =>
  mode === "real"
    ? fc.oneof(fc.integer({ min: 0, max: 0xffff }), near([0, 0x1000, 0x8000, 0xfff0, 0xffff]))
    : fc.oneof(
        fc.integer({ min: 0x100000, max: RAM_SIZE - 1 }),
        near([0x200000, 0x201000, RAM_SIZE, RAM_SIZE + 0x1000]),
        ...(mode === "long" ? [near([0x40000000])] : []),
      );

const arbRepCase: fc.Arbitrary<RepCase> = fc.constantFrom<Mode>("real", "prot32", "long").chain((mode) =>
  fc
    .record({
      movs: fc.boolean(),
      n: fc.constantFrom(...(mode === "long" ? [1, 2, 4, 8] : [1, 2, 4])),
      down: fc.boolean(),
      prefix: fc.constantFrom(0xf3, 0xf2),
      count: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 20_000 })),
      si: arbIndex(mode),
      di: arbIndex(mode),
      overlap: fc.oneof(fc.constant(null), fc.integer({ min: -9, max: 9 })),
      es: fc.constantFrom(0x20000, 0x30000, CODE),
      ds: fc.constantFrom(0x20000, 0x30000, CODE),
      slice: fc.constantFrom(1_000_000, 1_000_000, 1, 2, 5),
      seed: fc.integer(),
    })
    .map(({ overlap, ...c }) => ({
      ...c,
      mode,
      // overlapping copies: the destination a few bytes from the source
      di:
        overlap === null || !c.movs
          ? c.di
          : Math.max(0, c.si + overlap) & (mode === "real" ? 0xffff : 0x7fffffff),
    })),
);

/** CLD/STD ; [66] F3/F2 [REX.W] MOVS/STOS ; HLT */
function code(c: RepCase): number[] {
  // a 32-bit element in 16-bit code, or a 16-bit one in 32/64-bit code, takes 66
  const o16 = (c.n === 2 && c.mode !== "real") || (c.n === 4 && c.mode === "real") ? [0x66] : [];
  const op = (c.movs ? 0xa4 : 0xaa) | (c.n > 1 ? 1 : 0);
  return [c.down ? 0xfd : 0xfc, ...o16, c.prefix, ...(c.n === 8 ? [0x48] : []), op, 0xf4];
}

interface Outcome {
  stop: StopReason;
  event: string;
  regs: bigint[];
  rip: bigint;
  retired: number;
  mmio: number[];
  ram: Uint8Array;
}

function run(c: RepCase, bulk: boolean): Outcome {
  const mmio: number[] = [];
  const g: Guest = makeGuest(c.mode, code(c), {
    event: () => true,
    mmioRead: (gpa, size) => {
      mmio.push(gpa, size);
      return (gpa * 0x9e3779b1) >>> 0;
    },
    mmioWrite: (gpa, size, lo, hi) => {
      mmio.push(gpa, size, lo >>> 0, hi >>> 0);
    },
  });
  g.cpu.repBulk = bulk;
  // a pattern in the data areas
  let x = c.seed | 1;
  const fill = (from: number, to: number) => {
    for (let a = from; a < to; a++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      g.ram[a] = x;
    }
  };
  if (c.mode === "real") {
    fill(0x20000, 0x40000);
    g.cpu.setSegment(Seg.ES, { selector: c.es >> 4, base: BigInt(c.es), limit: 0xffff, ar: 0x93 });
    g.cpu.setSegment(Seg.DS, { selector: c.ds >> 4, base: BigInt(c.ds), limit: 0xffff, ar: 0x93 });
  } else fill(0x100000, RAM_SIZE);
  g.cpu.setGpr(6, BigInt(c.si));
  g.cpu.setGpr(7, BigInt(c.di));
  g.cpu.setGpr(1, BigInt(c.count));
  g.cpu.setGpr(0, 0x1122334455667788n);
  let stop: StopReason = StopReason.Budget;
  // (a copy onto the code page may turn the guest into anything, a loop included)
  for (let k = 0; k < 200_000 && stop === StopReason.Budget && g.cpu.retired < 200_000; k++)
    stop = g.cpu.run(c.slice);
  const exit = g.hooks.lastExit;
  return {
    stop,
    event: exit?.kind === "event" ? `${exit.vector}/${exit.errorCode}` : exit ? exit.kind : "",
    regs: [0, 1, 6, 7].map((r) => g.cpu.getGpr(r)),
    rip: g.cpu.getRip(),
    retired: g.cpu.retired,
    mmio,
    ram: g.ram,
  };
}

describe("REP MOVS / REP STOS a page at a time", () => {
  // 10-18 s alone on a 2-core machine, and over the default 60 s there while the whole suite's
  // workers share it: the reference path runs long REPs an iteration at a time
  it("random runs end as an iteration at a time does", { timeout: 240_000 }, () => {
    fc.assert(
      fc.property(arbRepCase, (c) => {
        const ref = run(c, false);
        const got = run(c, true);
        const { ram: a, ...restRef } = ref;
        const { ram: b, ...rest } = got;
        expect(rest).toEqual(restRef);
        expect(
          Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
            Buffer.from(b.buffer, b.byteOffset, b.byteLength),
          ),
        ).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it("a long REP STOSD over a code page with blocks drops only the blocks it hits", () => {
    // mov edi, CODE+0x800 ; mov ecx, 0x100 ; xor eax, eax ; rep stosd ; hlt — over [0x800, 0xc00)
    const g = makeGuest("prot32", hex("bf 00 08 01 00 b9 00 01 00 00 31 c0 f3 ab f4"));
    // a block at CODE+0xf00 that the store does not reach, one at CODE+0x900 that it does
    g.ram.set(hex("90 90 f4"), CODE + 0xf00);
    g.ram.set(hex("90 90 f4"), CODE + 0x900);
    for (const at of [0xf00, 0x900]) {
      g.cpu.setRip(BigInt(CODE + at));
      g.cpu.activity = 0;
      expect(g.run()).toBe(StopReason.Halted);
    }
    const page = g.cpu.codePages.get(CODE);
    const at = (lo: number) =>
      [...(page?.blocks.values() ?? [])].filter((b) => b.off >= lo && b.off < lo + 3);
    const keep = at(0xf00);
    expect(keep.length).toBeGreaterThan(0);
    expect(at(0x900).length).toBeGreaterThan(0);
    g.cpu.setRip(BigInt(CODE));
    g.cpu.activity = 0;
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.ram.subarray(CODE + 0x800, CODE + 0xc00).every((v) => v === 0)).toBe(true);
    expect(at(0x900)).toEqual([]);
    expect(at(0xf00)).toEqual(keep);
    expect(g.cpu.blocksInvalidated).toBeGreaterThan(0);
  });
});
