// RDTSC's halves without BigInt also under an IA32_TSC offset and VMX's TSC offset (msr.ts
// tscHalves): for any count and any pair of offsets, on two processors with different offsets read
// in turn (the offsets' sum is cached by value), EDX:EAX must be what tsc() gives.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { tsc, tscHalves } from "../../lib/cpu/msr.js";
import { makeGuest } from "./guest.js";

const halves = (t: bigint): [number, number] => [Number(t & 0xffffffffn), Number(t >> 32n)];

const count = fc.oneof(
  fc.integer({ min: 0, max: 2 ** 40 }),
  fc.constantFrom(0, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 60),
);
const offset = fc.oneof(
  fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
  fc.bigInt({ min: -(1n << 41n), max: 1n << 41n }),
  fc.constantFrom(0n, -1n, 1n, (1n << 53n) - 1n, -(1n << 53n), 1n << 53n, (1n << 64n) - 1n),
);

describe("RDTSC halves with TSC offsets", () => {
  it("equal tsc() for any count and offsets, two processors read in turn", () => {
    const a = makeGuest("long", [0xf4]).cpu;
    const b = makeGuest("long", [0xf4]).cpu;
    fc.assert(
      fc.property(count, offset, offset, count, offset, (ca, oa, ga, cb, ob) => {
        a.tscClock = () => ca;
        a.tscOffset = oa;
        a.tscGuestOffset = ga;
        b.tscClock = null;
        b.retired = cb;
        b.tscOffset = ob;
        b.tscGuestOffset = 0n;
        for (const cpu of [a, b, a, b]) {
          const lo = tscHalves(cpu);
          expect([lo, cpu.vh]).toEqual(halves(tsc(cpu)));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
