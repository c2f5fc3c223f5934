// The soft vCPU thread's word encoding of runs and exits (lib/vmm/backends/soft/thread-codec.ts):
// what it takes comes back field for field; what it cannot carry is left to a message.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RawExit, VmExit } from "../../lib/types/exits.js";
import {
  readFastExit,
  readFastRun,
  UNBOUNDED,
  writeFastExit,
  writeFastRun,
} from "../../lib/vmm/backends/soft/thread-codec.js";
import { CONTROL_WORDS } from "../../lib/vmm/backends/soft/thread-protocol.js";

const words = () => new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
const raw = fc.record({
  backend: fc.constant("soft" as const),
  reason: fc.integer({ min: 0, max: 0xffff }),
  exitReasonField: fc.nat({ max: 0xffffffff }),
  qualification: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  instructionLength: fc.integer({ min: 0, max: 15 }),
}) as fc.Arbitrary<RawExit>;

describe("the soft vCPU thread's word encoding", () => {
  it("carries port I/O of one item, MMIO of up to 8 bytes, HLT and host interrupts exactly", () => {
    const io = fc
      .record({
        direction: fc.constantFrom("in" as const, "out" as const),
        port: fc.integer({ min: 0, max: 0xffff }),
        size: fc.constantFrom(1 as const, 2 as const, 4 as const),
        raw,
      })
      .chain((e) =>
        fc.uint8Array({ minLength: e.size, maxLength: e.size }).map(
          (data): VmExit => ({
            kind: "io",
            ...e,
            count: 1,
            data: e.direction === "in" ? new Uint8Array(e.size) : data,
          }),
        ),
      );
    const mmio = fc
      .record({
        address: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        length: fc.integer({ min: 1, max: 8 }),
        write: fc.boolean(),
        raw,
      })
      .chain((e) =>
        fc
          .uint8Array({ minLength: e.length, maxLength: e.length })
          .map((data): VmExit => ({ kind: "mmio", ...e, data: e.write ? data : new Uint8Array(e.length) })),
      );
    const other = fc.record({
      kind: fc.constantFrom("hlt" as const, "intr" as const),
      raw,
    }) as fc.Arbitrary<VmExit>;
    fc.assert(
      fc.property(fc.oneof(io, mmio, other), (exit) => {
        const w = words();
        expect(writeFastExit(w, exit)).toBe(true);
        expect(readFastExit(w)).toEqual(exit);
      }),
    );
  });

  it("leaves string I/O, longer MMIO and the other exits to messages", () => {
    const r: RawExit = {
      backend: "soft",
      reason: 30,
      exitReasonField: 30,
      qualification: 0n,
      instructionLength: 2,
    };
    const w = words();
    const io: VmExit = {
      kind: "io",
      direction: "in",
      port: 0x60,
      size: 1,
      count: 2,
      data: new Uint8Array(2),
      raw: r,
    };
    expect(writeFastExit(w, io)).toBe(false);
    const wide: VmExit = {
      kind: "mmio",
      address: 0,
      length: 16,
      write: true,
      data: new Uint8Array(16),
      raw: r,
    };
    expect(writeFastExit(w, wide)).toBe(false);
    expect(writeFastExit(w, { kind: "hypercall", nr: 1n, args: [], ret: 0n, raw: r })).toBe(false);
    expect(writeFastExit(w, { kind: "shutdown", raw: r })).toBe(false);
  });

  it("carries runs with up to 8 bytes of input and no limits or the thread's unbounded ones", () => {
    fc.assert(
      fc.property(
        fc.option(fc.uint8Array({ minLength: 1, maxLength: 8 })),
        fc.boolean(),
        (data, unbounded) => {
          const w = words();
          const completion = data === null ? undefined : { data };
          expect(writeFastRun(w, completion, unbounded ? UNBOUNDED : {})).toBe(true);
          const back = readFastRun(w);
          expect(back.completion).toEqual(completion);
          expect(back.limits).toEqual(unbounded ? UNBOUNDED : {});
        },
      ),
    );
    const w = words();
    expect(writeFastRun(w, { ret: 5n }, {})).toBe(false);
    expect(writeFastRun(w, undefined, { budget: { n: 100 } })).toBe(false);
    expect(writeFastRun(w, { data: new Uint8Array(16) }, {})).toBe(false);
  });
});
