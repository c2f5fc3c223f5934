// `nodevmm run --backend soft --trace`: each exit shows the VMX basic exit reason (number and name),
// the exit qualification and the instruction length beside the common fields. Spawns the real
// bin/nodevmm.js (dist/ is rebuilt when stale, as in test/cli).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ensureDist, root } from "../support/dist.js";

const skipReason = ensureDist("dist/lib/cli/main.js", ["lib"]);

describe.skipIf(skipReason !== undefined)(
  `soft backend --trace${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    it("port I/O exits report reason 30 IO_INSTRUCTION, the I/O qualification and the length", () => {
      const dir = mkdtempSync(join(tmpdir(), "nodevmm-soft-trace-"));
      try {
        const image = join(dir, "boot.bin");
        // mov al,'h'; out 0xe9,al; mov dx,0xe9; mov al,'i'; out dx,al; mov al,0x2a; out 0xf4,al; hlt
        writeFileSync(
          image,
          Uint8Array.from([
            0xb0, 0x68, 0xe6, 0xe9, 0xba, 0xe9, 0x00, 0xb0, 0x69, 0xee, 0xb0, 0x2a, 0xe6, 0xf4, 0xf4,
          ]),
        );
        const r = spawnSync(
          process.execPath,
          [join(root, "bin", "nodevmm.js"), "run", image, "--backend", "soft", "--trace", "--timeout", "20"],
          { cwd: root, encoding: "utf8", timeout: 30_000 },
        );
        expect(r.stdout).toBe("hi");
        // "intr" exits are the host's (device deadlines, slices), not the guest's
        const lines = r.stderr.split("\n").filter((l) => /^#\d+ /.test(l) && !/^#\d+ intr /.test(l));
        // qualification: size-1 in 2:0, string 4, immediate 6, port in 31:16 (SDM table 28-5)
        const q = (port: number, immediate: boolean) =>
          `0x${((port << 16) | (immediate ? 0x40 : 0)).toString(16)}`;
        expect(lines[0]).toMatch(/^#\d+ io out port=0x00e9 size=1 .*\[vmx 30 IO_INSTRUCTION /);
        expect(lines[0]).toContain(`qual=${q(0xe9, true)} len=2]`);
        expect(lines[1]).toContain(`[vmx 30 IO_INSTRUCTION qual=${q(0xe9, false)} len=1]`);
        expect(lines[2]).toContain(`qual=${q(0xf4, true)} len=2]`);
        expect(r.status).toBe((0x2a << 1) | 1);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
