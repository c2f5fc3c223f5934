// The committed images in test/soft/guests are what its build.sh makes from the sources: rebuilt
// once into a temporary folder with the same binutils (TOOLCHAIN) and compared byte for byte, every
// image of the folder (APIC, x2APIC, access-rights and cpu-features guests). Skipped with the reason
// when the host's binutils differ.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GUESTS } from "../support/debugcon-guest.js";
import { asToolchainProblem } from "../support/guest-toolchain.js";

const problem = asToolchainProblem(GUESTS);

describe("test/soft/guests images", () => {
  it.skipIf(problem !== undefined)(
    `match their sources byte for byte${problem ? ` (skipped: ${problem})` : ""}`,
    () => {
      const out = mkdtempSync(join(tmpdir(), "nodevmm-soft-guests-"));
      try {
        execFileSync("sh", [join(GUESTS, "build.sh"), out], { stdio: "pipe", timeout: 60_000 });
        const committed = readdirSync(GUESTS).filter((f) => f.endsWith(".bin"));
        expect(readdirSync(out).sort()).toEqual(committed.sort());
        for (const file of committed) {
          expect(readFileSync(join(out, file)).equals(readFileSync(join(GUESTS, file))), file).toBe(true);
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
  );
});
