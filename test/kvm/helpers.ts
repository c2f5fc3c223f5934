// Shared setup of the real-KVM suite: whether it can run here, a VM with one vCPU, a watchdog.

import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { addonPath, Kvm, type KvmVcpu, type KvmVm, probeKvm } from "../../lib/kvm/index.js";

// the mode helpers are shared with the soft backend's run of the same guests
export { enterLongMode, enterProtectedMode, enterRealMode, HIGH, PML4, u32 } from "../support/modes.js";

export const probe = probeKvm();
/** why the suite is skipped, shown in the test names */
export const skipReason = probe.usable ? "" : ` (skipped: /dev/kvm not usable here: ${probe.reason})`;
if (!probe.usable) console.warn(`test/kvm: real-KVM tests skipped: ${probe.reason}`);

/**
 * The L1 "hardware" is QEMU's TCG emulator (the nested-KVM lane of scripts/test-kvm.mjs sets
 * NODEVMM_IN_NESTED_KVM; QEMU's generic CPU models name themselves in /proc/cpuinfo).
 */
export const debugRegistersEmulatedByTcg =
  process.env.NODEVMM_IN_NESTED_KVM === "1" || /^model name\s*:\s*QEMU Virtual CPU/m.test(cpuinfo());

function cpuinfo(): string {
  try {
    return readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return "";
  }
}

export interface TestVm {
  kvm: Kvm;
  vm: KvmVm;
  vcpu: KvmVcpu;
  mem: Uint8Array;
  close(): void;
}

/** A VM with `size` bytes of RAM at 0 and one vCPU; `setup` runs before the vCPU exists. */
export function makeVm(size = 0x10000, setup?: (vm: KvmVm) => void, logDirtyPages = false): TestVm {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  // VT-x needs these for real mode; harmless elsewhere (as every VMM does)
  vm.setTssAddress(0xfffbd000);
  vm.setIdentityMapAddress(0xfffbc000);
  const region = vm.allocateMemory(0, size, { logDirtyPages });
  setup?.(vm);
  const vcpu = vm.createVcpu(0);
  return { kvm, vm, vcpu, mem: region.bytes, close: () => kvm.close() };
}

/**
 * For runs that would block in the kernel if the guest misbehaved (HLT with an in-kernel irqchip):
 * a worker kicks the vCPU after `ms`, turning a hang into an "intr" exit the test then rejects.
 * Needs the addon (koffi cannot interrupt another thread's KVM_RUN); a no-op otherwise.
 */
export async function watchdog(vcpu: KvmVcpu, ms: number): Promise<{ stop(): Promise<void> }> {
  const addon = addonPath();
  if (vcpu.binding.kind !== "addon" || !addon) return { stop: async () => undefined };
  const worker = new Worker(
    `const { workerData } = require("node:worker_threads");
     setTimeout(() => require(workerData.addon).kick(workerData.fd), workerData.ms);`,
    { eval: true, workerData: { addon, fd: vcpu.fd, ms } },
  );
  await new Promise((resolve) => worker.once("online", resolve));
  return {
    stop: async () => {
      await worker.terminate();
    },
  };
}
