// Debian's gdb in batch mode against the stub on the soft backend, on a guest with symbols: break
// on a symbol, continue, read and write registers and memory, stepi, a watchpoint that fires, and
// detach letting the guest finish. (Ctrl-C is driven at the protocol level in machine.test.ts:
// batch gdb cannot interrupt without sleeping for a while first.) Skips when gdb is missing.

import { beforeAll, describe, expect, it } from "vitest";
import { addPcDevices, createMachine } from "../../lib/index.js";
import { buildGuest, expectGdbSession, type GdbGuest, gdbMissing, gdbSession, runGdb } from "./guest.js";
import { stubFixture } from "./stub-fixture.js";

let guest: GdbGuest | string;
beforeAll(() => {
  guest = gdbMissing() ?? buildGuest();
});

const fixture = stubFixture();

describe.each([
  { vcpuThread: false, where: "on the machine's thread" },
  { vcpuThread: true, where: "in a worker thread" },
])("Debian gdb against the soft backend, the vCPU $where", ({ vcpuThread }) => {
  it("breaks on a symbol, reads and writes registers and memory, steps, watches, detaches", async (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const g = guest;
    const vm = await createMachine({ backend: "soft", memoryMiB: 16, vcpuThread });
    addPcDevices(vm, {});
    vm.loadElf(g.image);
    const { stub, run } = await fixture.serve(vm);
    const { out, status } = await runGdb(g.elfPath, gdbSession(stub.port));
    const r = await run;
    if (process.env.GDB_TRACE) console.log(out);
    expect(status, out).toBe(0);
    expectGdbSession(out, g);
    expect(vm.vcpu(0).getRegs().rbx).toBe(0xabcn);
    // the guest ran on after the detach: the counter gdb wrote (6) is its debug-exit code
    expect(r.reason).toBe("debug-exit");
    expect(r.exitCode).toBe(13);
  }, 120_000);
});
