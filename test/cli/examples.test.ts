// Issue 5's "nodevmm run of each example works from a shell": every image of
// examples/images/manifest.json through the real command, with the command line the manifest and
// examples/guests/README.md give (plugins included), on the soft backend and on KVM where usable.
// Serial output must equal the .expected file and the exit status must be the manifest's stop.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  backendMissing,
  distMissing,
  documentedRuns,
  exampleArgs,
  expectedOutput,
  expectedStatus,
  kvmHypercalls,
  manifest,
  nodevmm,
  root,
} from "./helpers.js";

describe.skipIf(distMissing !== undefined)(
  `the example manifest${distMissing ? ` (skipped: ${distMissing})` : ""}`,
  () => {
    it("names a built plugin for every guest that needs host code", () => {
      expect(manifest.map((m) => m.name)).toEqual(
        expect.arrayContaining(["real-hello", "long-crc", "multiboot-info", "custom-device", "hypercall"]),
      );
      for (const m of manifest) {
        const needsHost = m.device !== undefined || m.hypercall !== undefined;
        expect(m.plugins?.length ?? 0, m.name).toBe(needsHost ? 1 : 0);
        for (const p of m.plugins ?? []) expect(existsSync(join(root, p)), p).toBe(true);
      }
    });

    it("examples/guests/README.md gives each example's command line, as this suite runs it", () => {
      const documented = documentedRuns(readFileSync(join(root, "examples", "guests", "README.md"), "utf8"));
      expect(documented).toEqual(manifest.map(exampleArgs));
    });

    it("the custom-device guest without its plugin reads all-ones and says so", () => {
      const m = manifest.find((x) => x.name === "custom-device")!;
      const args = exampleArgs({ ...m, plugins: [] });
      const r = nodevmm([...args, "--backend", "soft", "--timeout", "30"]);
      expect(r.stdout).toContain("device(21) = 4294967295");
      expect(r.stdout).toContain("5 results wrong");
      expect(r.stdout).not.toBe(expectedOutput(m));
    });
  },
);

for (const kind of ["soft", "kvm"] as const) {
  const why = backendMissing(kind);
  describe.skipIf(why !== undefined)(
    `nodevmm run examples on ${kind}${why ? ` (skipped: ${why})` : ""}`,
    () => {
      for (const m of manifest) {
        const blocked = kind === "kvm" && m.hypercall !== undefined && !kvmHypercalls.ok;
        it.skipIf(blocked)(
          `${m.name}: serial output and exit status${blocked ? ` (skipped: ${kvmHypercalls.reason})` : ""}`,
          () => {
            const r = nodevmm([...exampleArgs(m), "--backend", kind, "--timeout", "30"]);
            expect(r.stderr).toBe("");
            expect(r.stdout).toBe(expectedOutput(m));
            expect(r.status).toBe(expectedStatus(m));
          },
        );
        if (blocked) {
          it(`${m.name}: where VMCALL cannot reach the loop, the command warns instead of hanging silently`, () => {
            const r = nodevmm([...exampleArgs(m), "--backend", kind, "--timeout", "0.5"]);
            expect(r.stderr).toMatch(/warning: a plugin answers hypercalls, but .*try --backend soft/);
            expect(r.status).toBe(124);
          });
        }
      }
    },
  );
}
