// The 64 x 64 -> 128-bit multiply on 32-bit halves (lib/cpu/mul64.ts) against BigInt.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { imulTrunc } from "../../lib/cpu/exec.js";
import type { Interpreter } from "../../lib/cpu/interpreter.js";
import { mulS64, mulU64, product } from "../../lib/cpu/mul64.js";

const words = (): bigint =>
  (BigInt(product[3]) << 96n) |
  (BigInt(product[2]) << 64n) |
  (BigInt(product[1]) << 32n) |
  BigInt(product[0]);
const u64 = (lo: number, hi: number): bigint => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
// edges matter most: 0, 1, all ones, sign bits
const half = fc.oneof(
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xffffffff),
);

describe("mul64", () => {
  it("unsigned products equal BigInt's, with halves given signed or unsigned", () => {
    fc.assert(
      fc.property(half, half, half, half, fc.boolean(), (al, ah, bl, bh, signedHalves) => {
        const f = (v: number): number => (signedHalves ? v | 0 : v);
        mulU64(f(al), f(ah), f(bl), f(bh));
        expect(words()).toBe(u64(al, ah) * u64(bl, bh));
      }),
      { numRuns: 5000 },
    );
  });

  it("signed products and their overflow equal BigInt's", () => {
    fc.assert(
      fc.property(half, half, half, half, (al, ah, bl, bh) => {
        const x = BigInt.asIntN(64, u64(al, ah));
        const y = BigInt.asIntN(64, u64(bl, bh));
        const p = x * y;
        const overflow = mulS64(al, ah | 0, bl, bh | 0);
        expect(words()).toBe(BigInt.asUintN(128, p));
        expect(overflow).toBe(BigInt.asIntN(64, p) !== p);
      }),
      { numRuns: 5000 },
    );
  });

  it("32-bit operands in 64-bit registers (one partial product) equal BigInt's", () => {
    fc.assert(
      fc.property(half, half, (al, bl) => {
        mulU64(al, 0, bl, 0);
        expect(words()).toBe(BigInt(al) * BigInt(bl));
        const overflow = mulS64(al, 0, bl, 0);
        expect(overflow).toBe(BigInt(al) * BigInt(bl) >= 1n << 63n);
      }),
      { numRuns: 5000 },
    );
  });

  it("IMUL r64 (imulTrunc) keeps the low 64 bits and flags overflow as BigInt says, on every operand shape", () => {
    const shaped = fc.oneof(
      half.map((lo) => [lo, 0] as const), // zero-extended 32-bit
      half.map((lo) => [lo, lo >> 31] as const), // sign-extended 32-bit
      fc.tuple(half, half),
    );
    fc.assert(
      fc.property(shaped, shaped, ([al, ah], [bl, bh]) => {
        const got: { lo?: number; hi?: number; cf?: number; of?: number } = {};
        const cpu = {
          setReg: (_size: number, _reg: number, lo: number, hi: number) => Object.assign(got, { lo, hi }),
          setRes: (_size: number, _lo: number, _hi: number, cf: number, of: number) =>
            Object.assign(got, { cf, of }),
        } as unknown as Interpreter;
        imulTrunc(cpu, 64, 0, al, ah, bl, bh);
        const p = BigInt.asIntN(64, u64(al, ah)) * BigInt.asIntN(64, u64(bl, bh));
        expect(u64(got.lo!, got.hi!)).toBe(BigInt.asUintN(64, p));
        const ovf = BigInt.asIntN(64, p) !== p ? 1 : 0;
        expect([got.cf, got.of]).toEqual([ovf, ovf]);
      }),
      { numRuns: 10000 },
    );
  });
});
