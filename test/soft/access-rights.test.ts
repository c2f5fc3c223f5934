// SMEP, SMAP (EFLAGS.AC, STAC/CLAC, implicit supervisor accesses) and UMIP on the soft backend:
// the team guest test/soft/guests/access-rights.S in 32-bit protected mode (32-bit paging) and long
// mode (4-level paging), each check printed as vector, error code and CR2 (expected output and the
// runner in test/support/access-rights-guest.ts; test/kvm/access-rights.test.ts holds KVM to it).

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EXPECTED_OUT, GUESTS, runAccessRights } from "../support/access-rights-guest.js";
import { asToolchainProblem } from "../support/guest-toolchain.js";

describe("SMEP, SMAP and UMIP guest on the soft backend", () => {
  for (const bits of [32, 64] as const) {
    it(`${bits}-bit: CPUID offers all three, CR4 takes them, and each refuses what the SDM says with the right #PF error code and CR2`, async () => {
      const { out, result } = await runAccessRights(bits);
      expect(out).toBe(EXPECTED_OUT);
      expect(result.reason, result.message).toBe("hlt");
    });
  }
});

const problem = asToolchainProblem(GUESTS);

describe("access-rights guest images", () => {
  it.skipIf(problem !== undefined)(
    `match their source byte for byte${problem ? ` (skipped: ${problem})` : ""}`,
    () => {
      const out = mkdtempSync(join(tmpdir(), "nodevmm-access-rights-"));
      try {
        execFileSync("sh", [join(GUESTS, "build.sh"), out], { stdio: "pipe", timeout: 60_000 });
        for (const bits of [32, 64] as const) {
          const file = `access-rights-${bits}.bin`;
          expect(readFileSync(join(out, file)).equals(readFileSync(join(GUESTS, file))), file).toBe(true);
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
  );
});
