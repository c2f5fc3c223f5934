// The KVM MachineBackend with a small real guest: zero-copy RAM, io exits with in-data filled by the
// caller, register mapping, the in-kernel irqchip behind setIrqLine.

import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { KVM_CAP, KVM_HC_MAP_GPA_RANGE, KVM_MP_STATE } from "../../lib/kvm/index.js";
import type { Segment } from "../../lib/types/regs.js";
import { createKvmBackend, KvmMachineBackend, probeKvm } from "../../lib/vmm/backends/kvm.js";

const probe = probeKvm();
const skip = probe.usable ? "" : ` (skipped: /dev/kvm not usable here: ${probe.reason})`;

describe("probeKvm", () => {
  it("answers without throwing, with a reason when unusable", () => {
    expect(typeof probe.usable).toBe("boolean");
    if (probe.usable) expect(probe.apiVersion).toBe(12);
    else expect(probe.reason).toMatch(/\S/);
  });
});

describe.skipIf(!probe.usable)(`KVM backend${skip}`, () => {
  it("runs a real-mode guest that reads a port, doubles the value and writes it back", () => {
    const backend = createKvmBackend({ memoryBytes: 0x100000 });
    try {
      expect(backend.kind).toBe("kvm");
      expect(backend.memory.size).toBe(0x100000);
      // in al,0x60; add al,al; mov [0x2000],al; out 0xe9,al; hlt
      backend.memory.write(
        0x7c00,
        new Uint8Array([0xe4, 0x60, 0x00, 0xc0, 0xa2, 0x00, 0x20, 0xe6, 0xe9, 0xf4]),
      );
      const vcpu = backend.createVcpu(0);
      const s = vcpu.getSregs();
      const flat = (type: number): Segment => ({ ...s.cs, base: 0n, selector: 0, limit: 0xffff, type });
      vcpu.setSregs({ ...s, cs: flat(0xb), ds: flat(3), es: flat(3), ss: flat(3) });
      vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x7c00n, rflags: 2n });
      const input = vcpu.run();
      expect(input).toMatchObject({
        kind: "io",
        direction: "in",
        port: 0x60,
        size: 1,
        raw: { backend: "kvm" },
      });
      if (input.kind !== "io") throw new Error("unreachable");
      input.data[0] = 21; // the caller answers the IN through exit.data
      const output = vcpu.run();
      expect(output).toMatchObject({ kind: "io", direction: "out", port: 0xe9 });
      if (output.kind === "io") expect(output.data[0]).toBe(42);
      // (no further run: with the in-kernel irqchip the HLT would wait in the kernel for an interrupt)
      expect(backend.memory.readU8(0x2000)).toBe(42); // the guest's write, seen through GuestMemory
      expect(vcpu.getRegs().rax & 0xffn).toBe(42n);
      backend.setIrqLine(4, true);
      backend.setIrqLine(4, false);
    } finally {
      backend.close();
    }
  });

  it("crossThreadKick() names the addon and the vCPU fd: a worker kicks a spinning guest out", async () => {
    const backend = new KvmMachineBackend({ memoryBytes: 0x100000 });
    try {
      backend.memory.write(0x7c00, new Uint8Array([0xeb, 0xfe])); // jmp $
      const vcpu = backend.createVcpu(0);
      const s = vcpu.getSregs();
      const flat = (type: number): Segment => ({ ...s.cs, base: 0n, selector: 0, limit: 0xffff, type });
      vcpu.setSregs({ ...s, cs: flat(0xb), ds: flat(3), es: flat(3), ss: flat(3) });
      vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x7c00n, rflags: 2n });
      expect(vcpu.isHalted?.()).toBe(false);
      const target = vcpu.crossThreadKick?.();
      if (backend.vm.binding.kind !== "addon") {
        // koffi's kick is its shared run state and a signal (test/kvm/koffi-kick.test.ts kicks with it)
        expect(target).toMatchObject({ binding: "koffi", vcpuFd: vcpu.kvmVcpu.fd });
        return;
      }
      expect(target?.addonPath).toMatch(/nodevmm\.node$/);
      const worker = new Worker(
        `const { workerData } = require("node:worker_threads");
         setTimeout(() => require(workerData.addonPath).kick(workerData.vcpuFd), 100);`,
        { eval: true, workerData: target },
      );
      try {
        expect(vcpu.run().kind).toBe("intr");
      } finally {
        await worker.terminate();
      }
      expect(vcpu.getRegs().rip).toBe(0x7c00n);
    } finally {
      backend.close();
    }
  });

  it("isHalted() follows the vCPU's MP state (HALTED is what the kernel sets on HLT)", () => {
    const backend = new KvmMachineBackend({ memoryBytes: 0x100000 });
    try {
      const vcpu = backend.createVcpu(0);
      const kvmVcpu = vcpu.kvmVcpu;
      expect(vcpu.isHalted?.()).toBe(false);
      kvmVcpu.setMpState(KVM_MP_STATE.HALTED);
      expect(vcpu.isHalted?.()).toBe(true);
      kvmVcpu.setMpState(KVM_MP_STATE.RUNNABLE);
      expect(vcpu.isHalted?.()).toBe(false);
      vcpu.close();
      expect(vcpu.isHalted?.()).toBe(false); // closed: never throws
    } finally {
      backend.close();
    }
  });

  it("enables KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE when the kernel offers it", () => {
    const backend = new KvmMachineBackend({ memoryBytes: 0x100000 });
    try {
      const offered = backend.vm.checkExtension(KVM_CAP.EXIT_HYPERCALL);
      const expected = offered & (1 << KVM_HC_MAP_GPA_RANGE) ? [KVM_HC_MAP_GPA_RANGE] : [];
      expect(backend.hypercalls).toEqual(expected);
    } finally {
      backend.close();
    }
  });

  it("refuses a memory size that is not a multiple of 4 KiB", () => {
    expect(() => createKvmBackend({ memoryBytes: 1000 })).toThrow(RangeError);
  });
});
