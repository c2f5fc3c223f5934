// runGuest's host side (streaming, exit code, stage markers, hard timeout) with a stand-in for QEMU: a
// node script that behaves like the guest's /init would, writing to the share and the console log.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runGuest } from "../../scripts/nested-kvm/qemu.mjs";

let share = "";
beforeEach(() => {
  share = mkdtempSync(join(tmpdir(), "nkvm-guest-"));
});
afterEach(() => {
  rmSync(share, { recursive: true, force: true });
});

function fakeQemu(script: string, timeoutMs = 20_000) {
  const chunks: Buffer[] = [];
  const consoleLog = join(share, "console.log");
  const run = runGuest({
    qemu: process.execPath,
    args: ["-e", script, share, consoleLog],
    shareDir: share,
    consoleLog,
    timeoutMs,
    killGraceMs: 200,
    onOutput: (b) => chunks.push(b),
  });
  return run.then((r) => ({ ...r, streamed: Buffer.concat(chunks).toString() }));
}

describe("runGuest", () => {
  it("streams the command's output and returns its exit code and stages", async () => {
    const r = await fakeQemu(`
      const fs = require("fs"); const [share, con] = process.argv.slice(1);
      fs.writeFileSync(con, "[0.1] booting\\r\\n@@nkvm:stage:init\\r\\n@@nkvm:stage:run\\r\\n");
      fs.writeFileSync(share + "/out", "line one\\n");
      setTimeout(() => {
        fs.appendFileSync(share + "/out", "line two\\n");
        fs.appendFileSync(con, "@@nkvm:stage:done 3\\r\\n");
        fs.writeFileSync(share + "/rc", "3\\n");
      }, 250);
    `);
    expect(r.rc).toBe(3);
    expect(r.timedOut).toBe(false);
    expect(r.streamed).toBe("line one\nline two\n");
    expect(r.output).toBe(r.streamed);
    expect([...r.stages.keys()]).toEqual(["init", "run", "done"]);
    expect(r.fail).toBeNull();
  });

  it("reports a setup failure marker and no exit code", async () => {
    const r = await fakeQemu(`
      const fs = require("fs"); const [, con] = process.argv.slice(1);
      fs.writeFileSync(con, "@@nkvm:stage:init\\n@@nkvm:fail:insmod kvm_amd.ko failed\\n");
    `);
    expect(r.rc).toBeNull();
    expect(r.fail).toBe("insmod kvm_amd.ko failed");
    expect([...r.stages.keys()]).toEqual(["init"]);
  });

  it("kills a guest that outlives the timeout", async () => {
    const r = await fakeQemu(`process.on("SIGTERM", () => {}); setInterval(() => {}, 1000);`, 300);
    expect(r.timedOut).toBe(true);
    expect(r.rc).toBeNull();
    // SIGTERM was ignored, so the follow-up SIGKILL ended it.
    expect(r.qemuExit.signal).toBe("SIGKILL");
  });

  it("rejects with a clear error when QEMU cannot be started", async () => {
    await expect(
      runGuest({
        qemu: join(share, "no-such-qemu"),
        args: [],
        shareDir: share,
        consoleLog: join(share, "c.log"),
        timeoutMs: 1000,
        onOutput: () => {},
      }),
    ).rejects.toThrow(/could not start .*no-such-qemu/);
  });
});
