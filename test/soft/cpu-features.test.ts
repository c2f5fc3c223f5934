// RDPID, FSGSBASE and PKU on the soft backend: the team guest test/soft/guests/cpu-features.S in long
// mode (4-level paging), each check printed as vector, error code and CR2 (expected output and the
// runner in test/support/cpu-features-guest.ts; test/kvm/cpu-features.test.ts holds KVM to it).

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EXPECTED_OUT, GUESTS, runCpuFeatures } from "../support/cpu-features-guest.js";
import { asToolchainProblem } from "../support/guest-toolchain.js";

describe("RDPID, FSGSBASE and PKU guest on the soft backend", () => {
  it("CPUID offers all three, CR4 takes them, and each does and refuses what the SDM says (#PF error codes with PK, #GP, #UD)", async () => {
    const { out, result } = await runCpuFeatures();
    expect(out).toBe(EXPECTED_OUT);
    expect(result.reason, result.message).toBe("hlt");
  });
});

const problem = asToolchainProblem(GUESTS);

describe("cpu-features guest image", () => {
  it.skipIf(problem !== undefined)(
    `matches its source byte for byte${problem ? ` (skipped: ${problem})` : ""}`,
    () => {
      const out = mkdtempSync(join(tmpdir(), "nodevmm-cpu-features-"));
      try {
        execFileSync("sh", [join(GUESTS, "build.sh"), out], { stdio: "pipe", timeout: 60_000 });
        const file = "cpu-features-64.bin";
        expect(readFileSync(join(out, file)).equals(readFileSync(join(GUESTS, file))), file).toBe(true);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
  );
});
