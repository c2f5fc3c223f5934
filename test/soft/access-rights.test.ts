// SMEP, SMAP (EFLAGS.AC, STAC/CLAC, implicit supervisor accesses) and UMIP on the soft backend:
// the team guest test/soft/guests/access-rights.S in 32-bit protected mode (32-bit paging) and long
// mode (4-level paging), each check printed as vector, error code and CR2 (expected output and the
// runner in test/support/access-rights-guest.ts; test/kvm/access-rights.test.ts holds KVM to it).

import { describe, expect, it } from "vitest";
import { EXPECTED_OUT, runAccessRights } from "../support/access-rights-guest.js";

describe("SMEP, SMAP and UMIP guest on the soft backend", () => {
  for (const bits of [32, 64] as const) {
    it(`${bits}-bit: CPUID offers all three, CR4 takes them, and each refuses what the SDM says with the right #PF error code and CR2`, async () => {
      const { out, result } = await runAccessRights(bits);
      expect(out).toBe(EXPECTED_OUT);
      expect(result.reason, result.message).toBe("hlt");
    });
  }
});
