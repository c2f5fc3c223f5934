// The topology each KVM vCPU's CPUID states (lib/kvm/cpuid-topology.ts): one package of N
// single-thread cores, APIC id = vCPU index, as QEMU states -smp N. The rewrite is a pure function
// (checked on any host from made-up host leaves); on a real KVM each vCPU of an N-vCPU machine
// reads back what KVM_SET_CPUID2 was given.

import { describe, expect, it } from "vitest";
import { apicIdBits, type CpuidEntry, cpuidForVcpu } from "../../lib/kvm/index.js";
import { KvmMachineBackend } from "../../lib/vmm/backends/kvm.js";
import { probe, skipReason } from "./helpers.js";

const leaf = (fn: number, index = 0, r: Partial<CpuidEntry> = {}): CpuidEntry => ({
  function: fn,
  index,
  flags: 0,
  eax: 0,
  ebx: 0,
  ecx: 0,
  edx: 0,
  ...r,
});

/** a host's leaves as KVM_GET_SUPPORTED_CPUID passes them on: 8 threads on 4 cores, host APIC id 6 */
function hostLeaves(vendorEbx: number): CpuidEntry[] {
  return [
    leaf(0, 0, { eax: 0x1f, ebx: vendorEbx }),
    leaf(1, 0, { eax: 0x906ea, ebx: (6 << 24) | (8 << 16) | 0x0800, edx: 0x178bfbff }),
    // L1d (level 1, type 1) and L3 (level 3, type 3) shared by the host's threads, then the end
    leaf(4, 0, { flags: 1, eax: (3 << 26) | (1 << 14) | (1 << 5) | 1, ebx: 0x1c0003f, ecx: 0x3f }),
    leaf(4, 1, { flags: 1, eax: (3 << 26) | (15 << 14) | (3 << 5) | 3, ebx: 0x3c0003f, ecx: 0x2fff }),
    leaf(4, 2, { flags: 1 }),
    leaf(0xb, 0, { flags: 1, eax: 1, ebx: 2, ecx: 0x100, edx: 6 }),
    leaf(0xb, 1, { flags: 1, eax: 4, ebx: 8, ecx: 0x201, edx: 6 }),
    leaf(0xb, 2, { flags: 1, ecx: 2, edx: 6 }),
    leaf(0x80000001, 0, { ecx: 0x121 }),
    leaf(0x80000008, 0, { eax: 0x3030, ecx: 0x7007 }),
    leaf(0x8000001e, 0, { eax: 6, ebx: 0x103, ecx: 0x100 }),
  ];
}
const INTEL = 0x756e6547;
const AMD = 0x68747541;

const find = (es: CpuidEntry[], fn: number, index = 0) =>
  es.find((e) => e.function === fn && e.index === index);

describe("CPUID topology of a KVM vCPU", () => {
  it("APIC id bits: enough to number the package's cores", () => {
    expect([1, 2, 3, 4, 5, 8, 9, 64].map(apicIdBits)).toEqual([0, 1, 2, 2, 3, 3, 4, 6]);
  });

  it.each([
    [1, 0],
    [2, 1],
    [4, 3],
    [6, 5],
  ])("%i vCPUs, vCPU %i: leaves 1, 4, 0xB say one package of that many cores and this APIC id", (n, i) => {
    const out = cpuidForVcpu(hostLeaves(INTEL), i, n);
    const l1 = find(out, 1)!;
    expect(l1.ebx >>> 24).toBe(i);
    expect(l1.ebx & 0xffff).toBe(0x0800); // CLFLUSH size and brand index kept
    expect((l1.ebx >>> 16) & 0xff).toBe(n > 1 ? n : 0);
    expect((l1.edx >>> 28) & 1).toBe(n > 1 ? 1 : 0);
    const bits = apicIdBits(n);
    // cores per package in every cache leaf; the L1 is the core's own, the L3 the package's
    expect(find(out, 4, 0)!.eax >>> 26).toBe((1 << bits) - 1);
    expect((find(out, 4, 0)!.eax >>> 14) & 0xfff).toBe(0);
    expect((find(out, 4, 1)!.eax >>> 14) & 0xfff).toBe((1 << bits) - 1);
    expect(find(out, 4, 1)!.eax & 0x3fff).toBe((3 << 5) | 3);
    expect(find(out, 4, 2)).toEqual(leaf(4, 2, { flags: 1 }));
    // 0xB: SMT level of 1 thread, core level of n, then the end; EDX is this vCPU's x2APIC id
    const b = out.filter((e) => e.function === 0xb).sort((x, y) => x.index - y.index);
    expect(b.map((e) => [e.index, e.eax, e.ebx, e.ecx, e.edx])).toEqual([
      [0, 0, 1, 0x100, i],
      [1, bits, n, 0x201, i],
      [2, 0, 0, 2, i],
    ]);
    // Intel: no CmpLegacy, 0x80000008 ECX as the host had it
    expect(find(out, 0x80000001)!.ecx & 2).toBe(0);
    expect(find(out, 0x80000008)!.ecx).toBe(0x7007);
    // nothing added or lost but the topology sub-leaves
    expect(out.map((e) => `${e.function}.${e.index}`).sort()).toEqual(
      hostLeaves(INTEL)
        .map((e) => `${e.function}.${e.index}`)
        .sort(),
    );
  });

  it("AMD: CmpLegacy with several cores, 0x80000008 core count and id size, 0x8000001E ids", () => {
    const out = cpuidForVcpu(hostLeaves(AMD), 2, 3);
    expect(find(out, 0x80000001)!.ecx).toBe(0x123);
    const ecx = find(out, 0x80000008)!.ecx;
    expect(ecx & 0xff).toBe(2);
    expect((ecx >>> 12) & 0xf).toBe(2);
    expect(find(out, 0x80000008)!.eax).toBe(0x3030);
    expect(find(out, 0x8000001e)).toMatchObject({ eax: 2, ebx: 2, ecx: 0, edx: 0 });
    expect(find(cpuidForVcpu(hostLeaves(AMD), 0, 1), 0x80000001)!.ecx & 2).toBe(0);
  });

  it("states the hypervisor (CPUID.1:ECX[31]), which KVM's list leaves clear, so guests find KVM's leaves", () => {
    for (const host of [INTEL, AMD]) {
      const out = cpuidForVcpu(hostLeaves(host), 0, 1);
      expect(find(out, 1)!.ecx >>> 31).toBe(1);
      // the rest of the leaf as KVM listed it
      expect((find(out, 1)!.ecx & 0x7fffffff) >>> 0).toBe(find(hostLeaves(host), 1)!.ecx & 0x7fffffff);
    }
  });

  it("refuses an index outside the machine or a count below one", () => {
    expect(() => cpuidForVcpu(hostLeaves(INTEL), 2, 2)).toThrow(RangeError);
    expect(() => cpuidForVcpu(hostLeaves(INTEL), 0, 0)).toThrow(RangeError);
  });
});

describe.skipIf(!probe.usable)(`CPUID of the vCPUs of an SMP KVM machine${skipReason}`, () => {
  it("each of 4 vCPUs holds its own APIC id and the 4-core topology (KVM_GET_CPUID2)", () => {
    const backend = new KvmMachineBackend({ memoryBytes: 1 << 20, vcpus: 4 });
    try {
      const vcpus = [0, 1, 2, 3].map((i) => backend.createVcpu(i));
      vcpus.forEach((v, i) => {
        const got = v.kvmVcpu.getCpuid2();
        const l1 = got.find((e) => e.function === 1)!;
        expect(l1.ebx >>> 24).toBe(i);
        expect((l1.ebx >>> 16) & 0xff).toBe(4);
        for (const e of got.filter((x) => x.function === 0xb)) expect(e.edx).toBe(i);
      });
      expect(() => backend.createVcpu(4)).toThrow(RangeError);
      for (const v of vcpus) v.close();
    } finally {
      backend.close();
    }
  });
});
