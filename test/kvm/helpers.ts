// Shared setup of the real-KVM suite: whether it can run here, a VM with one vCPU, a watchdog.

import { readFileSync } from "node:fs";
import { Kvm, type KvmVcpu, type KvmVm, probeKvm } from "../../lib/kvm/index.js";
import { Watchdog } from "../../lib/vmm/watchdog.js";

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
 * the machine's watchdog thread kicks the vCPU after `ms` (through either binding's kick target),
 * turning a hang into an "intr" exit the test then rejects.
 */
export async function watchdog(vcpu: KvmVcpu, ms: number): Promise<{ stop(): Promise<void> }> {
  const target = vcpu.binding.kickTarget?.(vcpu.fd);
  if (!target) throw new Error(`the ${vcpu.binding.kind} binding cannot kick across threads here`);
  const dog = new Watchdog(target);
  await dog.ready();
  dog.arm(performance.timeOrigin + performance.now() + ms);
  return { stop: () => dog.close() };
}
