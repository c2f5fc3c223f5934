// `nodevmm run IMAGE --vcpu-thread --gdb` (once refused): the soft vCPUs run in worker threads and
// Debian's gdb debugs them through the real bin/nodevmm.js: the guest waits for gdb, breaks on a
// symbol, gdb lists a thread per vCPU (--smp 2: the AP waits for a SIPI that never comes), writes
// guest memory, detaches, and the command exits with the guest's status. Skips when gdb, binutils
// or dist is missing.

import { beforeAll, describe, expect, it } from "vitest";
import { buildGuest, type GdbGuest, gdbMissing, runGdb, startCliGdb } from "../gdb/guest.js";
import { ensureDist } from "../support/dist.js";

let guest: GdbGuest | string;
beforeAll(() => {
  guest = ensureDist("dist/lib/cli/main.js", ["lib"]) ?? gdbMissing() ?? buildGuest();
});

describe("nodevmm run --vcpu-thread --gdb", () => {
  it("debugs vCPUs in worker threads: breakpoints, threads, memory, detach, the guest's status", async (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const g = guest;
    const { port, stderr, exited } = await startCliGdb([
      "run",
      g.elfPath,
      "--backend",
      "soft",
      "--vcpu-thread",
      "--smp",
      "2",
      "--serial",
      "none",
      "--gdb",
      "127.0.0.1:0",
      "--gdb-wait",
      "--timeout",
      "100",
    ]);
    const { out, status } = await runGdb(g.elfPath, [
      "set pagination off",
      "set confirm off",
      `target remote 127.0.0.1:${port}`,
      "break spin",
      "continue",
      "echo @threads \n",
      "info threads",
      "set var *(char *)&flag = 1",
      "delete",
      "break done",
      "continue",
      "print/x $pc",
      "print *(long *)&counter",
      "detach",
    ]);
    expect(status, out).toBe(0);
    expect(out).toContain("Breakpoint 1, spin ()");
    const threads = out.split("@threads")[1] ?? "";
    expect(threads).toMatch(/\*\s*1\s+Thread 1 \(vCPU 0\) spin \(\)/);
    expect(threads).toMatch(/2\s+Thread 2 \(vCPU 1\)/);
    expect(out).toContain("Breakpoint 2, done ()");
    expect(out).toContain(`$1 = 0x${g.symbols.get("done")!.toString(16)}`);
    expect(out).toContain("$2 = 5");
    // debug-exit code (5 << 1) | 1 is the command's status
    expect(await exited, stderr()).toBe(11);
  }, 120_000);
});
