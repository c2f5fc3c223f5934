// Random bytes executed in every mode: whatever the guest does, run() returns a StopReason (exit,
// budget, halt, shutdown) and never throws a JS exception.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Mode, makeGuest } from "./guest.js";

describe("random code never crashes the interpreter", () => {
  for (const mode of ["real", "prot32", "long"] as Mode[]) {
    it(`${mode} mode`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
          const g = makeGuest(mode, bytes, { mmioRead: () => 0, mmioWrite: () => {} });
          g.cpu.setControl("cr4", g.cpu.getControl("cr4") | 0x200n);
          let threw: unknown = null;
          let r = -1;
          try {
            r = g.run(200);
          } catch (e) {
            threw = e;
          }
          expect(threw).toBeNull();
          expect([0, 1, 2, 3]).toContain(r);
        }),
        { numRuns: 150, seed: 12345 },
      );
    });
  }
});
