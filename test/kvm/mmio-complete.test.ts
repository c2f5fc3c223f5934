// The MMIO instruction forms of test/support/mmio-cases.ts on KVM (the nested-KVM lane): KVM's
// emulator is the reference for the accesses the soft backend makes (test/soft/mmio-complete.test.ts
// holds it to the same logs): each access once, in order, 8-byte pieces, page-crossing parts.
import { describe, it } from "vitest";
import { CASES } from "../support/mmio-cases.js";
import { expectRun, Model, runCase } from "../support/mmio-guests.js";
import { probe, skipReason } from "./helpers.js";

describe.skipIf(!probe.usable)(`MMIO accesses complete exactly once, in order, on KVM${skipReason}`, () => {
  for (const c of CASES) {
    for (const mode of c.modes) {
      if (c.notOnKvm !== undefined) {
        it.skip(`${c.name} (${mode} mode): ${c.notOnKvm}`);
        continue;
      }
      it(`${c.name} (${mode} mode)`, async () => {
        const run = await runCase("kvm", mode, c.code);
        const model = new Model();
        expectRun(run, model, c.expect(model, mode));
      });
    }
  }
});
