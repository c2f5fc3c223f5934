// The escape keys through a real terminal (util-linux `script` gives the command a pty): a guest
// that never reads COM1 is sent far more than the UART holds, then Ctrl-A h and Ctrl-A x. Before
// issue 10's fix stdin paused once two bytes waited, and Ctrl-A x was never seen (the run went on to
// its --timeout).

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { STATUS_INTERRUPTED, STATUS_LIMIT } from "../../lib/cli/exit-status.js";
import { ESCAPE_HINT } from "../../lib/cli/stdin.js";
import { backendMissing, bin } from "./helpers.js";

const script = spawnSync("script", ["--version"], { encoding: "utf8" }).status === 0;
const skip = !script ? "util-linux script is not installed" : backendMissing("soft");
const dir = mkdtempSync(join(tmpdir(), "nodevmm-stdin-tty-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe(`escape keys on a terminal${skip ? ` (skipped: ${skip})` : ""}`, () => {
  it.skipIf(skip !== undefined)(
    "Ctrl-A h and Ctrl-A x work while the guest never reads its serial port",
    () => {
      const spin = join(dir, "spin.bin");
      writeFileSync(spin, Buffer.from([0xeb, 0xfe])); // jmp $: never touches COM1
      const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} run ${JSON.stringify(spin)} --backend soft --timeout 60`;
      const typing = "x".repeat(200);
      const r = spawnSync(
        "sh",
        [
          "-c",
          `(sleep 1; printf '${typing}'; sleep 0.3; printf '\\001h'; sleep 0.3; printf '\\001x') | script -qec '${cmd}' /dev/null`,
        ],
        { encoding: "utf8", timeout: 120_000 },
      );
      // stopped by the user, not by --timeout: the escape was seen although input was backed up
      expect(r.status, r.stdout).toBe(STATUS_INTERRUPTED);
      expect(r.status).not.toBe(STATUS_LIMIT);
      expect(r.stdout).toContain(ESCAPE_HINT);
      expect(r.stdout).toMatch(/Ctrl-A x\s+stop the machine/);
    },
  );

  it.skipIf(skip !== undefined)(
    "Ctrl-A s stops the machine and saves it to --save; nodevmm resume goes on from there",
    () => {
      const spin = join(dir, "spin-save.bin");
      writeFileSync(spin, Buffer.from([0xeb, 0xfe]));
      const snap = join(dir, "spin.snap");
      const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} run ${JSON.stringify(spin)} --backend soft --timeout 60 --save ${JSON.stringify(snap)}`;
      const r = spawnSync("sh", ["-c", `(sleep 1; printf '\\001s') | script -qec '${cmd}' /dev/null`], {
        encoding: "utf8",
        timeout: 120_000,
      });
      expect(r.status, r.stdout).toBe(STATUS_INTERRUPTED);
      expect(r.stdout).toMatch(/saved .*spin\.snap/);
      expect(existsSync(snap)).toBe(true);
      const resumed = spawnSync(process.execPath, [bin, "resume", snap, "--timeout", "0.5"], {
        encoding: "utf8",
        timeout: 60_000,
      });
      // the spinning guest goes on spinning: the resumed run ends at its limit
      expect(resumed.status, resumed.stderr).toBe(STATUS_LIMIT);
    },
  );

  it.skipIf(skip !== undefined)("Ctrl-A s without --save says so and the guest runs on", () => {
    const spin = join(dir, "spin-nosave.bin");
    writeFileSync(spin, Buffer.from([0xeb, 0xfe]));
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} run ${JSON.stringify(spin)} --backend soft --timeout 60`;
    const r = spawnSync(
      "sh",
      ["-c", `(sleep 1; printf '\\001s'; sleep 0.3; printf '\\001x') | script -qec '${cmd}' /dev/null`],
      { encoding: "utf8", timeout: 120_000 },
    );
    expect(r.stdout).toContain("Ctrl-A s saves the machine only with --save PATH");
    expect(r.status, r.stdout).toBe(STATUS_INTERRUPTED);
  });
});
