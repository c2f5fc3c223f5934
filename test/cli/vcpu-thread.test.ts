// `nodevmm run --vcpu-thread`: the soft vCPU in a worker thread (createMachine's vcpuThread), through
// the real bin/nodevmm.js; refused, as a usage error, with --deterministic (which interleaves the vCPUs on the machine's thread)
// (several vCPUs in threads: test/cli/smp-guests.test.ts).

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { backendMissing, nodevmm } from "./helpers.js";

const skipReason = backendMissing("soft");
const dir = mkdtempSync(join(tmpdir(), "nodevmm-cli-thread-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// mov al,'h'; out 0xe9,al; mov dx,0xe9; mov al,'i'; out dx,al; mov al,0x2a; out 0xf4,al; hlt
const HI = [0xb0, 0x68, 0xe6, 0xe9, 0xba, 0xe9, 0x00, 0xb0, 0x69, 0xee, 0xb0, 0x2a, 0xe6, 0xf4, 0xf4];

describe.skipIf(skipReason !== undefined)(
  `nodevmm run --vcpu-thread${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    const image = join(dir, "hi.bin");
    writeFileSync(image, Uint8Array.from(HI));
    const soft = ["run", image, "--backend", "soft", "--timeout", "20"];

    it("runs the guest with the same output, exits and status as without", () => {
      const plain = nodevmm([...soft, "--stats"]);
      const threaded = nodevmm([...soft, "--stats", "--vcpu-thread"]);
      expect(threaded.stdout).toBe("hi");
      expect(threaded.status).toBe((0x2a << 1) | 1);
      expect(threaded.stdout).toBe(plain.stdout);
      expect(threaded.status).toBe(plain.status);
      // the same guest exits (the host's "intr" aside)
      const rows = (s: string) =>
        s
          .split("\n")
          .filter((l) => /^\s*io\b/.test(l))
          .map((l) => l.trim().split(/\s+/).slice(0, 2).join(" "));
      expect(rows(threaded.stderr)).toEqual(rows(plain.stderr));
    });

    // (with --gdb it debugs: test/cli/gdb-vcpu-thread.test.ts)
    it("is a usage error with --deterministic", () => {
      const r = nodevmm([...soft, "--vcpu-thread", "--deterministic"]);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain("--vcpu-thread cannot be used with --deterministic");
    });
  },
);
