// The SMP guest (examples/images/smp.elf) through the real command, as issue 11's new user tried it:
// `nodevmm run IMAGE --smp N --cmdline "test=..."`. The exit status is the guest's debug-exit verdict
// ((value << 1) | 1) and stdout its exact report. Kept out of test/soft so that the single-step
// project does not spawn the same commands again (a child process does not see its setting).

import { describe, expect, it } from "vitest";
import {
  exitCodeOf,
  expectedSmp,
  SMP_IMAGE_PATH,
  SMP_TESTS,
  type SmpTest,
  smpCmdline,
} from "../support/smp-guest.js";
import { backendMissing, nodevmm } from "./helpers.js";

const N: Partial<Record<SmpTest, number>> = {
  xadd: 20_000,
  spinlock: 5_000,
  pingpong: 50,
  ioapic: 5,
  compute: 20_000,
};

function run(test: SmpTest, smp: number, ...extra: string[]) {
  const args = ["run", SMP_IMAGE_PATH, "--smp", String(smp), "--cmdline", smpCmdline(test, N[test])];
  return nodevmm([...args, "--backend", "soft", "--timeout", "60", ...extra]);
}

const why = backendMissing("soft");
describe.skipIf(why !== undefined)(`nodevmm run --smp on soft${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const test of SMP_TESTS) {
    it(`${test} with --smp 2`, () => {
      const r = run(test, 2);
      const want = expectedSmp(test, 2, N[test]);
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(want.out);
      expect(r.status).toBe(exitCodeOf(want.value));
    });
  }

  it("xadd with --smp 4 --deterministic", () => {
    const r = run("xadd", 4, "--deterministic");
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(expectedSmp("xadd", 4, N.xadd).out);
    expect(r.status).toBe(exitCodeOf(0));
  });

  // each vCPU in a worker thread of its own: the LOCK XADDs of two threads at once add up exactly
  it("xadd and pingpong with --smp 2 --vcpu-thread", () => {
    for (const test of ["xadd", "pingpong"] as const) {
      const r = run(test, 2, "--vcpu-thread");
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(expectedSmp(test, 2, N[test]).out);
      expect(r.status).toBe(exitCodeOf(0));
    }
  });

  it("with --smp 1 the guest finds one CPU, and says so for a test that needs two", () => {
    const r = run("pingpong", 1);
    expect(r.stdout).toBe(expectedSmp("pingpong", 1, N.pingpong).out);
    expect(r.status).toBe(exitCodeOf(2));
  });

  it("--smp 0 is a usage error", () => {
    const r = nodevmm(["run", SMP_IMAGE_PATH, "--smp", "0", "--backend", "soft"]);
    expect(r.stderr).toMatch(/--smp/);
    expect(r.status).toBe(2);
  });
});
