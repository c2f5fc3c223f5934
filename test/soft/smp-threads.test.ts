// Issue 11's SMP guest with every soft vCPU in a worker thread of its own (createMachine's
// vcpuThread), all of them running the guest at once over shared memory: the LOCK XADDs, the
// spinlock, the IPIs, INIT/SIPI, the TLB shootdown and the I/O APIC's routing must give exactly what
// a multiprocessor gives (the same expectations as test/soft/smp-guests.test.ts, where the vCPUs take
// turns on one thread). The counts are large enough that the threads' accesses really interleave.

import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import {
  exitCodeOf,
  expectedSmp,
  runSmpGuest,
  SMP_TESTS,
  type SmpTest,
  smpCmdline,
  smpImage,
} from "../support/smp-guest.js";

const N: Partial<Record<SmpTest, number>> = {
  xadd: 200_000,
  spinlock: 50_000,
  pingpong: 50,
  ioapic: 5,
  compute: 200_000,
};

async function expectPasses(test: SmpTest, vcpus: number, sync = false) {
  const { out, result } = await runSmpGuest({
    backend: "soft",
    vcpus,
    test,
    n: N[test],
    vcpuThread: true,
    sync,
  });
  const want = expectedSmp(test, vcpus, N[test]);
  expect(out).toBe(want.out);
  expect(result.reason, result.message).toBe("debug-exit");
  expect(result.exitCode).toBe(exitCodeOf(want.value));
}

for (const vcpus of [2, 4]) {
  describe(`the SMP guest on ${vcpus} soft vCPUs in threads`, () => {
    for (const test of SMP_TESTS) {
      it(test, async () => {
        await expectPasses(test, vcpus);
      });
    }
  });
}

describe("SMP soft vCPU threads", () => {
  it("runSync gives the same results", async () => {
    for (const test of ["xadd", "ipi"] as const) await expectPasses(test, 2, true);
  });

  it("the machine is threaded, without a warning", async () => {
    const vm = await createMachine({ backend: "soft", vcpus: 2, memoryMiB: 16, vcpuThread: true });
    try {
      expect(vm.hasVcpuThread).toBe(true);
      expect(vm.warnings).toEqual([]);
    } finally {
      vm.close();
    }
  });

  it("a timeout and stop() end a run of both vCPUs; the guest then runs on to the same result", async () => {
    const n = 60_000_000;
    const vm = await createMachine({ backend: "soft", vcpus: 2, memoryMiB: 16, vcpuThread: true });
    try {
      let out = "";
      addPcDevices(vm, { serial: (b: Uint8Array) => (out += Buffer.from(b).toString("latin1")) });
      vm.load(smpImage(), { format: "multiboot", cmdline: smpCmdline("compute", n) });
      // (compiled, the guest's 60M hashes take some 150 ms of both threads at the fastest: the
      // timeout and the stop come well before that)
      expect((await vm.run({ timeoutMs: 40 })).reason).toBe("timeout");
      // every vCPU is parked after the run: their registers can be read
      for (const i of [0, 1]) expect(typeof vm.vcpu(i).getRegs().rip).toBe("bigint");
      const running = vm.run({ timeoutMs: 120_000 });
      setTimeout(() => vm.stop(), 20);
      expect((await running).reason).toBe("stopped");
      const result = await vm.run({ timeoutMs: 120_000 });
      expect(result.reason, out).toBe("debug-exit");
      expect(out).toBe(expectedSmp("compute", 2, n).out);
    } finally {
      vm.close();
    }
  });
});
