// RDPID, FSGSBASE and PKU on the soft backend: the team guest test/soft/guests/cpu-features.S in long
// mode (4-level paging), each check printed as vector, error code and CR2 (expected output and the
// runner in test/support/cpu-features-guest.ts; test/kvm/cpu-features.test.ts holds KVM to it).

import { describe, expect, it } from "vitest";
import { EXPECTED_OUT, runCpuFeatures } from "../support/cpu-features-guest.js";

describe("RDPID, FSGSBASE and PKU guest on the soft backend", () => {
  it("CPUID offers all three, CR4 takes them, and each does and refuses what the SDM says (#PF error codes with PK, #GP, #UD)", async () => {
    const { out, result } = await runCpuFeatures();
    expect(out).toBe(EXPECTED_OUT);
    expect(result.reason, result.message).toBe("hlt");
  });
});
