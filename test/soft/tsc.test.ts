// Guest time on the soft backend follows the machine's clock: the TSC counts it at the frequency
// CPUID states (leaves 0x15/0x16 and the hypervisor's 0x40000010), so a kernel reads a known TSC
// frequency instead of calibrating, and a guest that waits for the TSC to advance waits for time,
// not for a number of instructions.

import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/vmm/machine.js";

// real mode at 0x7c00: rdtsc; mov [0x500],eax; mov [0x504],edx; out 0x80,al; rdtsc;
// mov [0x508],eax; mov [0x50c],edx; hlt
const TWO_READS = [
  0x0f, 0x31, 0x66, 0xa3, 0x00, 0x05, 0x66, 0x89, 0x16, 0x04, 0x05, 0xe6, 0x80, 0x0f, 0x31, 0x66, 0xa3, 0x08,
  0x05, 0x66, 0x89, 0x16, 0x0c, 0x05, 0xf4,
];

// real mode at 0x7c00: for each leaf in [0x15, 0x16, 0x40000010, 0]: cpuid and store eax..edx
function cpuidGuest(leaves: number[]): Uint8Array {
  const out: number[] = [];
  leaves.forEach((leaf, i) => {
    const at = 0x600 + i * 16;
    out.push(0x66, 0xb8, leaf & 0xff, (leaf >>> 8) & 0xff, (leaf >>> 16) & 0xff, leaf >>> 24); // mov eax, leaf
    out.push(0x66, 0x31, 0xc9); // xor ecx, ecx
    out.push(0x0f, 0xa2); // cpuid
    for (const [reg, off] of [
      [0, 0],
      [3, 4],
      [1, 8],
      [2, 12],
    ] as const) {
      // mov [at+off], e(ax|bx|cx|dx)
      const a = at + off;
      out.push(0x66, 0x89, 0x06 | (reg << 3), a & 0xff, a >>> 8);
    }
  });
  out.push(0xf4);
  return Uint8Array.from(out);
}

const u64 = (vm: { memory: { read(a: number, n: number): Uint8Array } }, at: number) =>
  new DataView(vm.memory.read(at, 8).slice().buffer).getBigUint64(0, true);

describe("soft backend: the TSC follows the machine's clock", () => {
  it("advances by the time that passed between two reads, not by the instructions between them", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 1 });
    try {
      vm.load(Uint8Array.from(TWO_READS));
      // the run ends at the OUT's exit (a limit of one exit could end it at a time slice before
      // the first RDTSC); the next one goes on after it
      vm.io.onOut(0x80, () => vm.stop());
      expect((await vm.run({ timeoutMs: 5000 })).reason).toBe("stopped");
      const before = performance.now();
      await sleep(40);
      expect((await vm.run({ timeoutMs: 5000 })).reason).toBe("hlt");
      const slept = performance.now() - before;
      const first = u64(vm, 0x500);
      const second = u64(vm, 0x508);
      // four instructions apart, but the host slept some 40 ms in between (timers may fire a
      // millisecond early): at the stated 2 GHz at least 60 million ticks, where a TSC of retired
      // instructions gave 4
      expect(second - first).toBeGreaterThanOrEqual(60_000_000n);
      // and not more than the wall time that passed around the whole second run, plus a margin
      expect(Number(second - first)).toBeLessThan((slept + 5000) * 2e6);
    } finally {
      vm.close();
    }
  });

  it("CPUID states the TSC and crystal frequencies, and leaf 0 reaches them", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 1 });
    try {
      vm.load(cpuidGuest([0x15, 0x16, 0x40000010, 0, 0x40000000]));
      expect((await vm.run({ timeoutMs: 5000 })).reason).toBe("hlt");
      const leaf = (i: number) => [0, 4, 8, 12].map((o) => vm.memory.readU32(0x600 + i * 16 + o));
      const [den, num, crystal] = leaf(0);
      expect(den).toBeGreaterThan(0);
      expect(crystal).toBeGreaterThan(0);
      const tscHz = (crystal * num) / den;
      expect(leaf(1)[0]).toBe(tscHz / 1e6); // base MHz
      expect(leaf(2)[0]).toBe(tscHz / 1000); // TSC kHz
      expect(leaf(2)[1]).toBe(crystal / 1000); // APIC bus kHz
      expect(leaf(3)[0]).toBeGreaterThanOrEqual(0x16); // max basic leaf
      expect(leaf(4)[0]).toBeGreaterThanOrEqual(0x40000010); // max hypervisor leaf
    } finally {
      vm.close();
    }
  });

  it("WRMSR IA32_TSC sets the counter, which then goes on counting time", async () => {
    // mov ecx,0x10; xor eax,eax; mov edx,0x100; wrmsr; rdtsc; mov [0x500],eax; mov [0x504],edx; hlt
    const code = [
      0x66, 0xb9, 0x10, 0, 0, 0, 0x66, 0x31, 0xc0, 0x66, 0xba, 0x00, 0x01, 0, 0, 0x0f, 0x30, 0x0f, 0x31, 0x66,
      0xa3, 0x00, 0x05, 0x66, 0x89, 0x16, 0x04, 0x05, 0xf4,
    ];
    const vm = await createMachine({ backend: "soft", memoryMiB: 1 });
    try {
      vm.load(Uint8Array.from(code));
      expect((await vm.run({ timeoutMs: 5000 })).reason).toBe("hlt");
      const t = u64(vm, 0x500);
      expect(t >> 32n).toBe(0x100n);
      expect(t).toBeGreaterThanOrEqual(0x100n << 32n);
    } finally {
      vm.close();
    }
  });

  it("IA32_TSC_ADJUST (CPUID.7.0:EBX[1]) reads back what was written and moves the TSC by it", async () => {
    // mov ecx,0x3b; xor eax,eax; mov edx,0x200; wrmsr; rdtsc; mov [0x500],eax; mov [0x504],edx;
    // rdmsr; mov [0x508],eax; mov [0x50c],edx; hlt
    const code = [
      0x66, 0xb9, 0x3b, 0, 0, 0, 0x66, 0x31, 0xc0, 0x66, 0xba, 0x00, 0x02, 0, 0, 0x0f, 0x30, 0x0f, 0x31, 0x66,
      0xa3, 0x00, 0x05, 0x66, 0x89, 0x16, 0x04, 0x05, 0x0f, 0x32, 0x66, 0xa3, 0x08, 0x05, 0x66, 0x89, 0x16,
      0x0c, 0x05, 0xf4,
    ];
    const vm = await createMachine({ backend: "soft", memoryMiB: 1 });
    try {
      vm.load(Uint8Array.from(code));
      expect((await vm.run({ timeoutMs: 5000 })).reason).toBe("hlt");
      expect(u64(vm, 0x500) >> 32n).toBe(0x200n);
      expect(u64(vm, 0x508)).toBe(0x200n << 32n);
    } finally {
      vm.close();
    }
  });
});

describe("soft backend: IA32_ARCH_CAPABILITIES", () => {
  it("is offered (CPUID.7.0:EDX[29]) and says the interpreter is not affected by speculative-execution leaks", async () => {
    // mov eax,7; xor ecx,ecx; cpuid; mov [0x510],edx; mov ecx,0x10a; rdmsr; mov [0x500],eax;
    // mov [0x504],edx; hlt
    const code = [
      0x66, 0xb8, 7, 0, 0, 0, 0x66, 0x31, 0xc9, 0x0f, 0xa2, 0x66, 0x89, 0x16, 0x10, 0x05, 0x66, 0xb9, 0x0a,
      0x01, 0, 0, 0x0f, 0x32, 0x66, 0xa3, 0x00, 0x05, 0x66, 0x89, 0x16, 0x04, 0x05, 0xf4,
    ];
    const vm = await createMachine({ backend: "soft", memoryMiB: 1 });
    try {
      vm.load(Uint8Array.from(code));
      expect((await vm.run({ timeoutMs: 5000 })).reason).toBe("hlt");
      expect((vm.memory.readU32(0x510) >>> 29) & 1).toBe(1);
      // IBRS/IBPB (IA32_SPEC_CTRL, IA32_PRED_CMD), which IBRS_ALL below presumes
      expect((vm.memory.readU32(0x510) >>> 26) & 1).toBe(1);
      const caps = u64(vm, 0x500);
      // RDCL_NO SSB_NO MDS_NO TAA_NO SBDR_SSDP_NO FBSDP_NO PSDP_NO BHI_NO PBRSB_NO GDS_NO RFDS_NO ITS_NO
      for (const bit of [0n, 4n, 5n, 8n, 13n, 14n, 15n, 20n, 24n, 26n, 27n, 62n])
        expect((caps >> bit) & 1n).toBe(1n);
      // enhanced IBRS (1), and no feature it does not have: RSBA (2), TSX_CTRL (7)
      expect((caps >> 1n) & 1n).toBe(1n);
      for (const bit of [2n, 7n]) expect((caps >> bit) & 1n).toBe(0n);
    } finally {
      vm.close();
    }
  });
});
