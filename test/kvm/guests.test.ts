// Real guests on /dev/kvm: the guests shared with the soft backend (test/support/shared-guests.ts:
// real, protected and long mode, string I/O, MMIO, CPUID), then what only KVM offers here: translate,
// single-step and hardware breakpoints, dirty logging.

import { describe, expect, it } from "vitest";
import { GUEST_RAM_BYTES, SHARED_GUESTS, type SharedGuest } from "../support/shared-guests.js";
import {
  debugRegistersEmulatedByTcg,
  enterRealMode,
  HIGH,
  makeVm,
  probe,
  skipReason,
  type TestVm,
} from "./helpers.js";

/** KVM-only checks run after a shared guest, on its VM */
const AFTER: Partial<Record<SharedGuest["id"], { name: string; check(t: TestVm): void }>> = {
  "long-mode": {
    name: "translate()",
    check(t) {
      const tr = t.vcpu.translate(BigInt(HIGH + 0x1234));
      expect(tr).toMatchObject({ valid: true, physicalAddress: 0x1234n, writeable: true });
      expect(t.vcpu.translate(0x80000000n).valid).toBe(false); // PDPT[2] is not present
    },
  },
};

describe.skipIf(!probe.usable)(`real KVM guests${skipReason}`, () => {
  for (const guest of SHARED_GUESTS) {
    const after = AFTER[guest.id];
    it(after ? `${guest.name}; ${after.name}` : guest.name, () => {
      const t = makeVm(GUEST_RAM_BYTES);
      try {
        t.vcpu.setCpuid2(t.kvm.getSupportedCpuid()); // as the machine backend sets every vCPU up
        guest.run({ vcpu: t.vcpu, ram: t.mem });
        after?.check(t);
      } finally {
        t.close();
      }
    });
  }

  it("guest debug: single-step reports each instruction, a hardware breakpoint stops at its address", () => {
    const t = makeVm();
    try {
      t.mem.set([0x40, 0x40, 0x40, 0xf4], 0x1000); // inc ax x3; hlt
      enterRealMode(t.vcpu, 0x1000);
      t.vcpu.setRegs({ ...t.vcpu.getRegs(), rax: 0n });
      t.vcpu.setGuestDebug({ singleStep: true });
      const steps: [bigint, bigint][] = [];
      for (let i = 0; i < 3; i++) {
        const exit = t.vcpu.run();
        if (exit.kind !== "debug") throw new Error(`expected a debug exit, got ${exit.kind}`);
        expect(exit.exception).toBe(1);
        steps.push([exit.pc, t.vcpu.getRegs().rax]);
      }
      expect(steps).toEqual([
        [0x1001n, 1n],
        [0x1002n, 2n],
        [0x1003n, 3n],
      ]);
      t.vcpu.setGuestDebug(null);
      expect(t.vcpu.run().kind).toBe("hlt");

      // Breakpoint 0 at 0x1002 while stepping: DR0/DR7 reach the guest's debug registers, so the
      // #DB exits report B0 (DR6 bit 0) exactly at 0x1002 and nowhere else.
      enterRealMode(t.vcpu, 0x1000);
      t.vcpu.setGuestDebug({ singleStep: true, hwBreakpoints: [0x1002n] });
      const b0At: bigint[] = [];
      for (let i = 0; i < 8; i++) {
        const exit = t.vcpu.run();
        if (exit.kind === "hlt") break;
        if (exit.kind !== "debug") throw new Error(`expected a debug exit, got ${exit.kind}`);
        expect(exit.exception).toBe(1);
        if (exit.dr6 & 1n) b0At.push(exit.pc);
        // an instruction breakpoint faults before the instruction; step over it as debuggers do (RF)
        if (exit.pc === 0x1002n && exit.dr6 & 1n) break;
      }
      expect(b0At).toEqual([0x1002n]);

      // The breakpoint alone stops the guest at its address. Not under QEMU's TCG (the nested-KVM
      // lane): QEMU 7.2 loads DR7 from the VMCB on VMRUN without arming its breakpoint hooks, so
      // an L2 instruction breakpoint only shows in DR6 next to a single-step trap (checked above).
      if (!debugRegistersEmulatedByTcg) {
        enterRealMode(t.vcpu, 0x1000);
        t.vcpu.setGuestDebug({ hwBreakpoints: [0x1002n] });
        const bp = t.vcpu.run();
        expect(bp).toMatchObject({ kind: "debug", exception: 1, pc: 0x1002n });
        if (bp.kind === "debug") expect(bp.dr6 & 1n).toBe(1n); // B0: breakpoint 0 hit
      }
    } finally {
      t.close();
    }
  });

  it("dirty log: pages the guest wrote, then a cleared log", () => {
    const t = makeVm(0x10000, undefined, true);
    try {
      // mov [0x3000],al; mov [0x5004],al; hlt
      t.mem.set([0xa2, 0x00, 0x30, 0xa2, 0x04, 0x50, 0xf4], 0x1000);
      enterRealMode(t.vcpu, 0x1000);
      t.vm.getDirtyLog(0); // start from a clean log
      expect(t.vcpu.run().kind).toBe("hlt");
      const dirty = t.vm.dirtyPages(0);
      expect(dirty).toContain(0x3000);
      expect(dirty).toContain(0x5000);
      expect(dirty).not.toContain(0x7000);
      expect(dirty).not.toContain(0x9000);
      expect(t.vm.dirtyPages(0)).toEqual([]);
    } finally {
      t.close();
    }
  });
});
