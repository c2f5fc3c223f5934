// Team-written guests for x2APIC mode and the TSC-deadline timer (test/soft/guests: tsc-deadline.S,
// x2apic-faults.S, x2apic-ipi.S; run and expected output in test/support/x2apic-guests.ts), in
// 32-bit protected and 64-bit long mode, on the soft backend; test/kvm/x2apic-guests.test.ts holds
// KVM's in-kernel APIC to the same output. Waits are on the TSC or on interrupts taken.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type CpuidEntry, cpuidForVcpu, KVM_CAP_TSC_DEADLINE_TIMER } from "../../lib/kvm/index.js";
import { RegisterValueError } from "../../lib/vmm/errors.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import {
  GUESTS,
  runGuest,
  TSC_DEADLINE_OUT,
  X2APIC_FAULTS_OUT,
  X2APIC_IPI_OUT,
} from "../support/x2apic-guests.js";

describe("TSC-deadline guest on the soft backend", () => {
  for (const bits of [32, 64] as const) {
    it(`${bits}-bit: arms IA32_TSC_DEADLINE, takes its interrupt with the TSC past it; zero, mode changes and masking as the SDM says`, async () => {
      const { out, result } = await runGuest("tsc-deadline", bits);
      expect(out).toBe(TSC_DEADLINE_OUT);
      expect(result.reason).toBe("hlt");
    });
  }
});

describe("x2APIC #GP guest on the soft backend", () => {
  for (const bits of [32, 64] as const) {
    it(`${bits}-bit: illegal IA32_APIC_BASE transitions, absent, read-only, write-only registers and reserved bits fault; legal accesses do not`, async () => {
      const { out, result } = await runGuest("x2apic-faults", bits);
      expect(out).toBe(X2APIC_FAULTS_OUT);
      expect(result.reason).toBe("hlt");
    });
  }
});

describe("x2APIC IPI guest on two soft vCPUs", () => {
  for (const bits of [32, 64] as const) {
    it(`${bits}-bit: x2APIC IDs, SELF IPI, INIT/SIPI and fixed IPIs through the 64-bit ICR, both ways`, async () => {
      const { out, result } = await runGuest("x2apic-ipi", bits, { vcpus: 2 });
      expect(out).toBe(X2APIC_IPI_OUT);
      expect(result.reason, result.message).toBe("debug-exit");
      expect(result.exitCode).toBe(1); // verdict 0
    });
  }

  it("on one vCPU the AP never answers: the run ends at its limit, not in a crash", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    try {
      addPcDevices(vm, { debugcon: () => {} });
      vm.loadFlat(readFileSync(join(GUESTS, "x2apic-ipi-32.bin")), { address: 0x10000, mode: "protected" });
      const result = await vm.run({ timeoutMs: 300 });
      expect(result.reason).toBe("timeout");
    } finally {
      vm.close();
    }
  });
});

describe("the soft vCPU's IA32_APIC_BASE and CPUID with and without a local APIC", () => {
  it("EXTD reads back in the MSR and the special registers; the host may set what a guest may not", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 1 });
    try {
      const cpu = vm.vcpu(0);
      const base = cpu.getMsr(0x1b)!;
      expect(base & 0xc00n).toBe(0x800n);
      cpu.setMsr(0x1b, base | 0x400n);
      expect(cpu.getMsr(0x1b)).toBe(base | 0x400n);
      expect(cpu.getSregs().apicBase).toBe(base | 0x400n);
      expect(vm.pic!.lapic.x2apic).toBe(true);
      expect(cpu.getMsr(0x802)).toBe(0n);
      expect(() => cpu.setMsr(0x1b, (base | 0x400n) & ~0x800n)).toThrow(RegisterValueError); // EN=0, EXTD=1
      // a guest may not go back to xAPIC directly; the host, as KVM lets user space, may
      cpu.setMsr(0x1b, base);
      expect(vm.pic!.lapic.x2apic).toBe(false);
      cpu.setSregs({ ...cpu.getSregs(), apicBase: base | 0x400n });
      expect(vm.pic!.lapic.x2apic).toBe(true);
    } finally {
      vm.close();
    }
  });

  it("CPUID.1:ECX offers x2APIC and TSC-deadline only when the vCPU has the local APIC to back them", async () => {
    // mov eax, 1; cpuid; hlt (real mode)
    const code = Uint8Array.from([0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2, 0xf4]);
    const ecx = async (platformDevices: boolean) => {
      const vm = await createMachine({ backend: "soft", memoryMiB: 1, platformDevices });
      try {
        vm.load(code);
        await vm.run({ timeoutMs: 5000 });
        return Number(vm.vcpu(0).getRegs().rcx);
      } finally {
        vm.close();
      }
    };
    expect((await ecx(true)) & ((1 << 21) | (1 << 24))).toBe((1 << 21) | (1 << 24));
    expect((await ecx(false)) & ((1 << 21) | (1 << 24))).toBe(0);
  });

  it("without a local APIC, IA32_TSC_DEADLINE and the x2APIC MSRs do not exist", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 1, platformDevices: false });
    try {
      expect(vm.vcpu(0).getMsr(0x6e0)).toBeUndefined();
      expect(vm.vcpu(0).getMsr(0x802)).toBeUndefined();
      expect(() => vm.vcpu(0).setMsr(0x1b, 0xfee00d00n)).toThrow(RegisterValueError);
    } finally {
      vm.close();
    }
  });
});

describe("a KVM vCPU's CPUID.1:ECX (lib/kvm/cpuid-topology.ts)", () => {
  const supported = (ecx: number): CpuidEntry[] => [
    { function: 1, index: 0, flags: 0, eax: 0x906ea, ebx: 0, ecx, edx: 0 },
  ];
  const ecx = (list: CpuidEntry[], tscDeadline?: boolean) =>
    cpuidForVcpu(list, 0, 1, tscDeadline === undefined ? {} : { tscDeadline }).find((e) => e.function === 1)!
      .ecx;
  it("x2APIC stays as KVM lists it; TSC-deadline is added when KVM_CAP_TSC_DEADLINE_TIMER says so", () => {
    expect(ecx(supported(1 << 21)) & (1 << 21)).toBe(1 << 21);
    expect(ecx(supported(0)) & (1 << 21)).toBe(0);
    expect(ecx(supported(1 << 21)) & (1 << 24)).toBe(0);
    expect(ecx(supported(1 << 21), true) >>> 0).toBe(((1 << 21) | (1 << 24) | (1 << 31)) >>> 0);
    // newer kernels list it themselves: kept either way
    expect(ecx(supported(1 << 24), false) & (1 << 24)).toBe(1 << 24);
    expect(KVM_CAP_TSC_DEADLINE_TIMER).toBe(72);
  });
});

describe("a snapshot of a machine in x2APIC mode with a TSC deadline armed", () => {
  it("resumes in x2APIC mode with the deadline still armed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nodevmm-x2apic-snap-"));
    try {
      const a = await createMachine({ backend: "soft", memoryMiB: 1 });
      const cpu = a.vcpu(0);
      cpu.setMsr(0x1b, cpu.getMsr(0x1b)! | 0x400n);
      cpu.setMsr(0x80f, 0x1ffn);
      cpu.setMsr(0x832, 0x40040n);
      const deadline = cpu.getMsr(0x10)! + 20_000_000_000n; // 10 s ahead
      cpu.setMsr(0x6e0, deadline);
      const path = join(dir, "x2apic.snap");
      await a.snapshot(path);
      a.close();
      const b = await createMachine({ backend: "soft", restore: path });
      try {
        const c = b.vcpu(0);
        expect(c.getMsr(0x1b)! & 0xc00n).toBe(0xc00n);
        expect(b.pic!.lapic.x2apic).toBe(true);
        expect(c.getMsr(0x802)).toBe(0n);
        expect(c.getMsr(0x832)).toBe(0x40040n);
        expect(c.getMsr(0x6e0)).toBe(deadline);
      } finally {
        b.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
