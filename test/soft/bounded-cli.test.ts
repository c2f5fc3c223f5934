// Bounded, always (issue 9), in the CLI: `nodevmm run GUEST --backend soft` of the issue's two
// hostage guests ends with status 130 at SIGINT, and with 124 at --timeout and at --max-exits.
// Spawns the real bin/nodevmm.js (dist/ is rebuilt when stale, as in test/cli).

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureDist, root } from "../support/dist.js";
import { HOSTAGE_GUESTS } from "../support/hostage-guests.js";

const skipCli = ensureDist("dist/lib/cli/main.js", ["lib"]);

/** Spawns `nodevmm run image --backend soft ...args`; `sigint`: sends SIGINT once the guest runs. */
function cli(
  image: string,
  args: string[],
  sigint: boolean,
): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(root, "bin", "nodevmm.js"), "run", image, "--backend", "soft", "--verbose", ...args],
      { cwd: root, stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    let sent = false;
    const kill = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => {
      stderr += d;
      // "loaded ..." comes after the SIGINT handler is installed, just before the run starts
      if (sigint && !sent && stderr.includes("loaded ")) {
        sent = true;
        setTimeout(() => child.kill("SIGINT"), 300);
      }
    });
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(kill);
      resolve({ status, stderr });
    });
  });
}

describe.skipIf(skipCli !== undefined)(
  `bounded runs of the hostage guests in the CLI${skipCli ? ` (skipped: ${skipCli})` : ""}`,
  { concurrent: true },
  () => {
    const dir = mkdtempSync(join(tmpdir(), "nodevmm-bounded-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    for (const [i, { name, image }] of HOSTAGE_GUESTS.entries()) {
      const path = join(dir, `guest${i}.bin`);
      writeFileSync(path, image);
      it(`${name}: SIGINT stops it with status 130; --timeout 0.3 and --max-exits give 124`, async () => {
        const [interrupted, timedOut, maxExits] = await Promise.all([
          cli(path, [], true),
          cli(path, ["--timeout", "0.3"], false),
          cli(path, ["--max-exits", "5"], false),
        ]);
        expect(interrupted.status, interrupted.stderr).toBe(130);
        // the run itself was stopped (not the set-up before it)
        expect(interrupted.stderr).toMatch(/^nodevmm: stopped: /m);
        expect(timedOut.status, timedOut.stderr).toBe(124);
        expect(timedOut.stderr).toContain("timeout");
        expect(maxExits.status, maxExits.stderr).toBe(124);
        expect(maxExits.stderr).toContain("max-exits");
      });
    }
  },
);
