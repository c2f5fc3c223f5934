// `npm run fuzz` itself: a case that kills its child process is reported with the seed and path
// that replay it, and the replay dies the same way; a clean run of a target exits 0 with its
// figures. Runs scripts/fuzz/run.mjs as CI does (it bundles test/fuzz with esbuild).

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "../support/dist.js";

function fuzz(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [join(root, "scripts", "fuzz", "run.mjs"), ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, NODEVMM_FUZZ_SELFTEST: "1", FUZZ_STRICT: "" },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("npm run fuzz", () => {
  it("reports a child killed by a signal with the case, and --replay reproduces it", () => {
    const run = fuzz("--target", "selftest", "--runs", "4", "--batch", "4", "--seed", "7");
    expect(run.status, run.out).toBe(1);
    expect(run.out).toContain("killed by SIGSEGV");
    const replay = run.out.match(/--replay (selftest:\d+:\d+)/);
    expect(replay, run.out).not.toBeNull();
    const again = fuzz("--replay", replay![1]!);
    expect(again.status, again.out).toBe(1);
    expect(again.out).toContain("killed by SIGSEGV");
    // the case the report names is the case the replay ran
    const shown = run.out.match(/case: (case \d+)/)?.[1];
    expect(shown).toMatch(/^case \d*[02468]$/);
    expect(again.out).toContain(shown);
  });

  it("runs a bounded number of cases of a target and prints its figures", () => {
    const run = fuzz("--target", "binding", "--runs", "30", "--seed", "1");
    expect(run.status, run.out).toBe(0);
    expect(run.out).toMatch(/binding\s+30 runs/);
    expect(run.out).toContain("0 failure(s)");
  });

  it("refuses an unknown flag with status 2", () => {
    const run = fuzz("--bogus");
    expect(run.status).toBe(2);
    expect(run.out).toContain("unknown argument --bogus");
  });
});
