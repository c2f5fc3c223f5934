// Guest-physical memory with nothing behind it (issue 13). A page walk that reads a paging
// structure there reads the floating bus (all ones), as a PC does: the entry is present with
// reserved bits set, so the access ends in #PF with P and RSVD in its error code and CR2 the linear
// address. A jump there stops the run as KVM stops it, an emulation failure (internal-error,
// suberror 1) at that RIP (test/kvm/outside-ram.test.ts compares).

import { describe, expect, it } from "vitest";
import { jumpNowhere, NOWHERE, UNMAPPED_LINEAR, walkThroughNowhere } from "../support/outside-ram-guests.js";

const PF_P = 1n;
const PF_W = 2n;
const PF_RSVD = 8n;

describe("guest-physical memory with nothing behind it (soft backend)", () => {
  for (const write of [false, true]) {
    it(`a ${write ? "store" : "load"} whose page directory is there takes #PF (RSVD)`, async () => {
      const r = await walkThroughNowhere("soft", write);
      expect(r.result.reason, r.result.message).toBe("hlt");
      expect(r.errorCode).toBe(PF_P | PF_RSVD | (write ? PF_W : 0n));
      expect(r.cr2).toBe(BigInt(UNMAPPED_LINEAR));
    });
  }
  for (const mode of ["protected", "long"] as const) {
    it(`a jump there (${mode} mode) stops as an emulation failure at that address`, async () => {
      const { result, rip } = await jumpNowhere("soft", mode);
      expect(result.reason).toBe("internal-error");
      expect(result.message).toMatch(/suberror 1\).*instruction fetch from guest-physical 0x40000000/);
      expect(rip).toBe(BigInt(NOWHERE));
    });
  }
});
