// Issue 11's team-written SMP guests on the soft backend, through createMachine as a program uses
// it: examples/images/smp.elf (examples/guests/smp.c) finds the CPUs in the ACPI MADT, starts every
// AP with INIT/SIPI/SIPI and runs one test; its output and verdict must be exactly what a correct
// multiprocessor gives (checked first on QEMU, whose TCG runs the CPUs in threads). With one vCPU
// the tests that need two say so and stop. The same image through `nodevmm run --smp` is in
// test/cli/smp-guests.test.ts, on KVM in test/kvm/smp-guests.test.ts.

import { describe, expect, it } from "vitest";
import {
  exitCodeOf,
  expectedSmp,
  needsTwoCpus,
  runSmpGuest,
  SMP_TESTS,
  type SmpTest,
} from "../support/smp-guest.js";

/** n per test: small enough for the interpreter, large enough that the CPUs' turns interleave */
const N: Partial<Record<SmpTest, number>> = {
  xadd: 20_000,
  spinlock: 5_000,
  pingpong: 50,
  ioapic: 5,
  compute: 20_000,
};

async function expectPasses(test: SmpTest, vcpus: number, deterministic = false) {
  const { out, result } = await runSmpGuest({ backend: "soft", vcpus, test, n: N[test], deterministic });
  const want = expectedSmp(test, vcpus, N[test]);
  expect(out).toBe(want.out);
  expect(result.reason, result.message).toBe("debug-exit");
  expect(result.exitCode).toBe(exitCodeOf(want.value));
  return result;
}

for (const vcpus of [1, 2, 4]) {
  describe(`the SMP guest on ${vcpus} soft vCPU${vcpus === 1 ? "" : "s"}`, () => {
    for (const test of SMP_TESTS) {
      it(`${test}${vcpus === 1 && needsTwoCpus(test) ? " says it needs 2 CPUs" : ""}`, async () => {
        await expectPasses(test, vcpus);
      });
    }
  });
}

describe("the SMP guest on 8 soft vCPUs", () => {
  for (const test of ["xadd", "spinlock", "pingpong", "ipi"] as const) {
    it(test, async () => {
      await expectPasses(test, 8);
    });
  }
});

// the "at least 1..16 on soft"; the guest's own limit is 16 too
describe("the SMP guest on 16 soft vCPUs", () => {
  for (const test of ["xadd", "ipi"] as const) {
    it(test, async () => {
      await expectPasses(test, 16);
    });
  }
});

describe("the SMP guest on a deterministic soft machine", () => {
  for (const test of SMP_TESTS) {
    it(`${test} on 2 vCPUs`, async () => {
      await expectPasses(test, 2, true);
    });
  }

  for (const sync of [true, false]) {
    it(`two ${sync ? "runSync" : "async run"}s of the spinlock on 4 vCPUs retire the same instructions`, async () => {
      const run = () =>
        runSmpGuest({ backend: "soft", vcpus: 4, test: "spinlock", n: 5000, deterministic: true, sync });
      const a = await run();
      const b = await run();
      expect(a.out).toBe(expectedSmp("spinlock", 4, 5000).out);
      expect(b.out).toBe(a.out);
      expect(a.result.instructions).toBeGreaterThan(0);
      expect(b.result.instructions).toBe(a.result.instructions);
    });
  }
});
