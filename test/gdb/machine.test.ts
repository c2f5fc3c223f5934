// The stub over a real Machine on the soft backend, driven by a protocol client in the test: the
// guest stops where gdb's packets say (INT3 breakpoints, MTF steps, EPT watchpoints, Ctrl-C), and
// memory reads hide the INT3s. Both with the vCPU on the machine's thread and in a worker thread of
// its own (vcpuThread: the debugger's operations are calls to that thread).

import { beforeAll, describe, expect, it } from "vitest";
import { REGISTER_INDEX } from "../../lib/gdb/registers.js";
import { addPcDevices, createMachine } from "../../lib/index.js";
import { Client } from "./client.js";
import { buildGuest, type GdbGuest } from "./guest.js";
import { hex, reg, stubFixture } from "./stub-fixture.js";

let guest: GdbGuest | string;
beforeAll(() => {
  guest = buildGuest();
});

const fixture = stubFixture();

async function start(g: GdbGuest, vcpuThread: boolean) {
  const vm = await createMachine({ backend: "soft", memoryMiB: 16, vcpuThread });
  expect(vm.hasVcpuThread).toBe(vcpuThread);
  addPcDevices(vm, {});
  vm.loadElf(g.image);
  const { stub, run } = await fixture.serve(vm, 60_000);
  const client = await Client.open(stub.port);
  return { vm, stub, run, client };
}

describe.each([
  { vcpuThread: false, where: "on the machine's thread" },
  { vcpuThread: true, where: "in a worker thread" },
])("gdb stub on the soft backend, the vCPU $where (protocol client)", ({ vcpuThread }) => {
  it("breaks, reads and writes registers and memory, steps, watches, detaches", async (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const sym = (n: string) => (guest as GdbGuest).symbols.get(n)!;
    const { run, client: c, vm } = await start(guest, vcpuThread);
    expect(await c.ask("?")).toBe("T05thread:1;");
    expect(await reg(c, "rip")).toBe(sym("_start"));
    // INT3 at `bump`, hidden from memory reads
    const before = await c.ask(`m${hex(sym("bump"))},4`);
    expect(await c.ask(`Z0,${hex(sym("bump"))},1`)).toBe("OK");
    expect(vm.memory.readU8(Number(sym("bump")))).toBe(0xcc);
    expect(await c.ask(`m${hex(sym("bump"))},4`)).toBe(before);
    expect(await c.ask("c")).toBe("T05thread:1;swbreak:;");
    expect(await reg(c, "rip")).toBe(sym("bump"));
    expect(await reg(c, "rax")).toBe(5n);
    expect(await c.ask(`m${hex(sym("counter"))},8`)).toBe("0500000000000000");
    expect(await c.ask(`z0,${hex(sym("bump"))},1`)).toBe("OK");
    // one instruction: RBX = 0x1234, RIP at after_bump
    expect(await c.ask("s")).toBe("T05thread:1;");
    expect(await reg(c, "rip")).toBe(sym("after_bump"));
    expect(await reg(c, "rbx")).toBe(0x1234n);
    // a register write sticks
    expect(await c.ask(`P${REGISTER_INDEX.get("rbx")!.toString(16)}=9900000000000000`)).toBe("OK");
    expect(vm.vcpu(0).getRegs().rbx).toBe(0x99n);
    // write watchpoint: stops after the store, with its address
    expect(await c.ask(`Z2,${hex(sym("watched"))},4`)).toBe("OK");
    expect(await c.ask("c")).toBe(`T05thread:1;watch:${hex(sym("watched"))};`);
    expect(await c.ask(`m${hex(sym("watched"))},4`)).toBe("07000000");
    expect(await reg(c, "rip")).toBe(sym("after_bump") + 10n);
    expect(await c.ask(`z2,${hex(sym("watched"))},4`)).toBe("OK");
    // the guest spins until flag is set: Ctrl-C stops it in the loop (once it is there: a vCPU in a
    // thread of its own may take a Ctrl-C sent at once before it reaches the loop)
    c.send("c");
    await new Promise((r) => setTimeout(r, 200));
    c.raw(Uint8Array.of(3));
    expect(await c.next()).toBe("T02thread:1;");
    const rip = await reg(c, "rip");
    expect(rip >= sym("spin") && rip < sym("done")).toBe(true);
    // flag = 1 through M, then detach: the guest finishes by itself (debug-exit code (5 << 1) | 1)
    expect(await c.ask(`M${hex(sym("flag"))},1:01`)).toBe("OK");
    expect(await c.ask("D")).toBe("OK");
    const r = await run;
    expect(r.reason).toBe("debug-exit");
    expect(r.exitCode).toBe(11);
    c.close();
  });

  it("stops on read watchpoints and hardware breakpoints, and answers monitor commands", async (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const sym = (n: string) => (guest as GdbGuest).symbols.get(n)!;
    const { run, client: c } = await start(guest, vcpuThread);
    expect(await c.ask("?")).toBe("T05thread:1;");
    // the first `addq $1, counter(%rip)` reads counter: stop after it, counter already 1
    expect(await c.ask(`Z3,${hex(sym("counter"))},8`)).toBe("OK");
    expect(await c.ask("c")).toBe(`T05thread:1;rwatch:${hex(sym("counter"))};`);
    expect(await c.ask(`m${hex(sym("counter"))},8`)).toBe("0100000000000000");
    expect(await reg(c, "rip")).toBe(sym("counter_loop") + 8n); // addq $1, counter(%rip) is 8 bytes
    expect(await c.ask(`z3,${hex(sym("counter"))},8`)).toBe("OK");
    // Z1 on the soft backend: exact, reported as a hardware breakpoint
    expect(await c.ask(`Z1,${hex(sym("bump"))},1`)).toBe("OK");
    expect(await c.ask("c")).toBe("T05thread:1;hwbreak:;");
    expect(await reg(c, "rip")).toBe(sym("bump"));
    expect(await c.ask(`z1,${hex(sym("bump"))},1`)).toBe("OK");
    const monitor = async (cmd: string) =>
      Buffer.from(await c.ask(`qRcmd,${Buffer.from(cmd).toString("hex")}`), "hex").toString();
    expect(await monitor("info registers")).toMatch(/RIP=0*100017/);
    expect(await monitor("translate 0x100017")).toContain("100017");
    expect(await monitor("exits")).toMatch(/Exit kind/);
    // k ends the run
    c.send("k");
    const r = await run;
    expect(r.reason).toBe("stopped");
    expect(r.message).toBe("killed by gdb");
    c.close();
  });
});
