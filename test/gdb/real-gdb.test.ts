// Debian's gdb in batch mode against the stub on the soft backend, on a guest with symbols: break
// on a symbol, continue, read and write registers and memory, stepi, a watchpoint that fires, and
// detach letting the guest finish. (Ctrl-C is driven at the protocol level in machine.test.ts:
// batch gdb cannot interrupt without sleeping for a while first.) Skips when gdb is missing.

import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { GdbServerHandle } from "../../lib/gdb/index.js";
import { addPcDevices, createMachine, type Machine } from "../../lib/index.js";
import { buildGuest, type GdbGuest, gdbMissing, runGdb } from "./guest.js";

let guest: GdbGuest | string;
beforeAll(() => {
  guest = gdbMissing() ?? buildGuest();
});

let vm: Machine | undefined;
let stub: GdbServerHandle | undefined;
afterEach(async () => {
  await stub?.close();
  vm?.close();
  vm = undefined;
  stub = undefined;
});

describe.each([
  { vcpuThread: false, where: "on the machine's thread" },
  { vcpuThread: true, where: "in a worker thread" },
])("Debian gdb against the soft backend, the vCPU $where", ({ vcpuThread }) => {
  it("breaks on a symbol, reads and writes registers and memory, steps, watches, detaches", async (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const g = guest;
    vm = await createMachine({ backend: "soft", memoryMiB: 16, vcpuThread });
    addPcDevices(vm, {});
    vm.loadElf(g.image);
    stub = await vm.gdbServer({ port: 0, wait: true });
    const run = stub.run({ timeoutMs: 120_000 });
    const { out, status } = await runGdb(g.elfPath, [
      "set pagination off",
      "set confirm off",
      `target remote 127.0.0.1:${stub.port}`,
      "echo @start \n",
      "print/x $pc",
      "break bump",
      "continue",
      "echo @at-bump \n",
      "print/x $pc",
      "print $rax",
      "print *(long *)&counter",
      "set var *(long *)&counter = 6",
      "stepi",
      "echo @stepped \n",
      "print/x $pc",
      "print/x $rbx",
      "set var $rbx = 0xabc",
      "print/x $rbx",
      "info registers fs_base cr0 efer",
      "delete",
      "watch *(int *)&watched",
      "continue",
      "echo @watched \n",
      "print *(int *)&watched",
      "delete",
      "set var *(char *)&flag = 1",
      "detach",
    ]);
    const r = await run;
    if (process.env.GDB_TRACE) console.log(out);
    const section = (name: string) => out.split(`@${name}`)[1] ?? "";
    expect(status, out).toBe(0);
    expect(section("start")).toContain(`= 0x${g.symbols.get("_start")!.toString(16)}`);
    expect(section("at-bump")).toMatch(/\$2 = 0x100017/);
    expect(section("at-bump")).toContain("$3 = 5");
    expect(section("at-bump")).toContain("$4 = 5");
    expect(section("stepped")).toContain(`$5 = 0x${g.symbols.get("after_bump")!.toString(16)}`);
    expect(section("stepped")).toContain("$6 = 0x1234");
    expect(section("stepped")).toContain("$7 = 0xabc");
    expect(section("stepped")).toMatch(/cr0\s+0x[0-9a-f]+/);
    expect(section("stepped")).toMatch(/efer\s+0x[0-9a-f]*5[0-9a-f]{2}/);
    expect(out).toMatch(/[Ww]atchpoint 2: \*\(int \*\)&watched\s+Old value = 0\s+New value = 7/);
    expect(section("watched")).toContain("= 7");
    expect(vm.vcpu(0).getRegs().rbx).toBe(0xabcn);
    // the guest ran on after the detach: the counter gdb wrote (6) is its debug-exit code
    expect(r.reason).toBe("debug-exit");
    expect(r.exitCode).toBe(13);
  }, 120_000);
});
