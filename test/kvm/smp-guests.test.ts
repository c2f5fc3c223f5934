// Issue 11's team-written SMP guests on KVM (the nested-KVM lane here; QEMU there may run with
// -smp 2): examples/images/smp.elf with 2 and 4 vCPUs, the in-kernel local APICs, I/O APIC and PIT
// doing the delivering. Same expectations as the soft backend's run (test/soft/smp-guests.test.ts),
// with the issue's million LOCK XADDs per CPU. Skipped with the reason where /dev/kvm is missing or
// the KVM machine does not take more than one vCPU yet.

import { describe, expect, it } from "vitest";
import { MachineConfigError } from "../../lib/vmm/errors.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { exitCodeOf, expectedSmp, runSmpGuest, SMP_TESTS, type SmpTest } from "../support/smp-guest.js";
import { probe } from "./helpers.js";

async function kvmSmpMissing(): Promise<string | undefined> {
  if (!probe.usable) return `/dev/kvm not usable here: ${probe.reason}`;
  try {
    const vm = await createMachine({ backend: "kvm", vcpus: 2, memoryMiB: 16 });
    vm.close();
    return undefined;
  } catch (e) {
    if (e instanceof MachineConfigError) return e.message;
    throw e;
  }
}

const missing = await kvmSmpMissing();
if (missing) console.warn(`test/kvm/smp-guests: skipped: ${missing}`);

/** the issue's million XADDs per CPU; fewer spinlock rounds, since a 1-CPU nested lane preempts lock holders */
const N: Partial<Record<SmpTest, number>> = {
  xadd: 1_000_000,
  spinlock: 20_000,
  pingpong: 1000,
  ioapic: 20,
  compute: 1_000_000,
};

describe.skipIf(missing !== undefined)(
  `the SMP guest on KVM${missing ? ` (skipped: ${missing})` : ""}`,
  () => {
    for (const vcpus of [2, 4]) {
      for (const test of SMP_TESTS) {
        it(`${test} on ${vcpus} vCPUs`, async () => {
          const { out, result } = await runSmpGuest({ backend: "kvm", vcpus, test, n: N[test] });
          const want = expectedSmp(test, vcpus, N[test]);
          expect(out).toBe(want.out);
          expect(result.reason, result.message).toBe("debug-exit");
          expect(result.exitCode).toBe(exitCodeOf(want.value));
        });
      }
    }
  },
);
