// Shared setup of the real-KVM suite: whether it can run here, and small guests built as bytes.

import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import {
  addonPath,
  Kvm,
  type KvmSegment,
  type KvmSregs,
  type KvmVcpu,
  type KvmVm,
  probeKvm,
} from "../../lib/kvm/index.js";

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

function seg(selector: number, type: number, extra: Partial<KvmSegment> = {}): KvmSegment {
  return {
    base: 0n,
    limit: 0xffff,
    selector,
    type,
    present: true,
    dpl: 0,
    db: false,
    s: true,
    l: false,
    g: false,
    avl: false,
    unusable: false,
    ...extra,
  };
}

/** Real mode with every segment based at 0, starting at rip. */
export function enterRealMode(vcpu: KvmVcpu, rip: number): void {
  const s = vcpu.getSregs();
  const code = seg(0, 0xb);
  const data = seg(0, 0x3);
  vcpu.setSregs({ ...s, cs: code, ds: data, es: data, fs: data, gs: data, ss: data });
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(rip), rflags: 2n, rsp: 0xf000n });
}

/** Flat 32-bit protected mode (no paging). */
export function enterProtectedMode(vcpu: KvmVcpu, rip: number): void {
  const s = vcpu.getSregs();
  const flat = { limit: 0xffffffff, g: true, db: true };
  const code = seg(8, 0xb, flat);
  const data = seg(16, 0x3, flat);
  const sregs: KvmSregs = {
    ...s,
    cs: code,
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    cr0: s.cr0 | 1n,
  };
  vcpu.setSregs(sregs);
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(rip), rflags: 2n, rsp: 0x8000n });
}

export const PML4 = 0x2000;
/** virtual HIGH + x maps to physical x (for the translate test) */
export const HIGH = 0x40000000;

/**
 * 64-bit long mode with page tables built here: the first 4 MiB identity-mapped with 2 MiB pages
 * (the second one has no RAM behind it when the VM is small: MMIO), and HIGH..HIGH+2MiB -> 0.
 */
export function enterLongMode(vcpu: KvmVcpu, mem: Uint8Array, rip: number): void {
  const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  const P = 1n;
  const RW = 2n;
  const PS = 0x80n;
  const q = (at: number, v: bigint) => dv.setBigUint64(at, v, true);
  q(PML4, 0x3000n | P | RW); // PML4[0] -> PDPT
  q(0x3000, 0x4000n | P | RW); // PDPT[0] -> PD (0..1 GiB)
  q(0x3000 + 8, 0x5000n | P | RW); // PDPT[1] -> PD (1..2 GiB)
  q(0x4000, 0x000000n | P | RW | PS);
  q(0x4000 + 8, 0x200000n | P | RW | PS);
  q(0x5000, 0x000000n | P | RW | PS);
  const s = vcpu.getSregs();
  const code = seg(8, 0xb, { l: true, limit: 0xffffffff, g: true });
  const data = seg(16, 0x3, { db: true, limit: 0xffffffff, g: true });
  vcpu.setSregs({
    ...s,
    cs: code,
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    cr3: BigInt(PML4),
    cr4: 0x20n, // PAE
    cr0: 0x80000011n, // PG | ET | PE
    efer: 0x500n, // LMA | LME
  });
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(rip), rflags: 2n, rsp: 0x8000n });
}

export function u32(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
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
