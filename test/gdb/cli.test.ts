// `nodevmm run IMAGE --gdb HOST:PORT --gdb-wait` with Debian's gdb attached: the guest waits before
// its first instruction, gdb breaks on a symbol and detaches, the guest finishes and the command
// exits with the guest's status. Also the usage errors of --gdb. Skips when gdb or dist is missing.

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureDist, root } from "../support/dist.js";
import { buildGuest, type GdbGuest, gdbMissing, runGdb, startCliGdb } from "./guest.js";

const bin = join(root, "bin", "nodevmm.js");
let guest: GdbGuest | string;
beforeAll(() => {
  guest = ensureDist("dist/lib/cli/main.js", ["lib"]) ?? gdbMissing() ?? buildGuest();
});

describe("nodevmm run --gdb", () => {
  it("rejects a malformed --gdb address as a usage error", (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const r = spawnSync(process.execPath, [bin, "run", guest.elfPath, "--gdb", "host:port"], {
      encoding: "utf8",
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--gdb: "host:port" is not [HOST:]PORT');
  });

  it("waits for gdb, stops at a breakpoint, runs on after detach and exits with the guest's code", async (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const g = guest;
    const { port, stderr, exited } = await startCliGdb([
      "run",
      g.elfPath,
      "--backend",
      "soft",
      "--serial",
      "none",
      "--gdb",
      "127.0.0.1:0",
      "--gdb-wait",
    ]);
    expect(stderr()).toContain("the guest waits for gdb to continue");
    const { out, status } = await runGdb(g.elfPath, [
      "set confirm off",
      `target remote 127.0.0.1:${port}`,
      "print/x $pc",
      "break spin",
      "continue",
      "set var *(char *)&flag = 1",
      "delete",
      "break done",
      "continue",
      "print/x $pc",
      "print *(long *)&counter",
      "detach",
    ]);
    expect(status, out).toBe(0);
    expect(out).toContain(`$1 = 0x${g.symbols.get("_start")!.toString(16)}`);
    expect(out).toContain("Breakpoint 1, spin ()");
    expect(out).toContain("Breakpoint 2, done ()");
    expect(out).toContain(`$2 = 0x${g.symbols.get("done")!.toString(16)}`);
    expect(out).toContain("$3 = 5");
    // debug-exit code (5 << 1) | 1 is the command's status
    expect(await exited, stderr()).toBe(11);
  }, 120_000);
});
