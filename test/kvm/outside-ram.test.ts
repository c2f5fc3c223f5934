// The reference for test/soft/outside-ram.test.ts's jump: KVM stops a fetch from guest-physical
// memory with no memslot as an emulation failure at that RIP. The page-walk half is not compared:
// KVM's emulator takes the faulting paging-structure address for the data operand's (it reports an
// MMIO access to it), where a PC reads all ones and faults; the soft backend does the latter.

import { describe, expect, it } from "vitest";
import { jumpNowhere, NOWHERE } from "../support/outside-ram-guests.js";
import { probe, skipReason } from "./helpers.js";

describe.skipIf(!probe.usable)(`guest-physical memory with nothing behind it on KVM${skipReason}`, () => {
  for (const mode of ["protected", "long"] as const) {
    it(`a jump there (${mode} mode) is an emulation failure at that address, as on soft`, async () => {
      const kvm = await jumpNowhere("kvm", mode);
      expect(kvm.result.reason).toBe("internal-error");
      expect(kvm.result.message).toMatch(/suberror 1\)/);
      expect(kvm.rip).toBe(BigInt(NOWHERE));
      const soft = await jumpNowhere("soft", mode);
      expect(soft.result.reason).toBe(kvm.result.reason);
      expect(soft.rip).toBe(kvm.rip);
    });
  }
});
