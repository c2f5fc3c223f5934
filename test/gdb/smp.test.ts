// The stub on a two-vCPU soft guest (x2apic-ipi.S, built with symbols): each vCPU is a thread
// (qfThreadInfo, qThreadExtraInfo, T, Hg/Hc), a breakpoint or watchpoint the AP hits stops the
// machine with thread:2, Hg1/Hg2 read different vCPUs' registers, a step of thread 2 runs one AP instruction
// and nothing on the BSP, and Debian's gdb lists both threads and reads thread 2's RIP.

import { beforeAll, describe, expect, it } from "vitest";
import { addPcDevices, createMachine, type Machine } from "../../lib/index.js";
import { Client } from "./client.js";
import { gdbMissing, runGdb } from "./guest.js";
import { buildSmpGuest, SMP_LOAD_ADDRESS, type SmpGdbGuest } from "./smp-guest.js";
import { hex, reg, stubFixture } from "./stub-fixture.js";

let guest: SmpGdbGuest | string;
beforeAll(() => {
  guest = buildSmpGuest();
});

const fixture = stubFixture();

async function start(g: SmpGdbGuest, vcpuThread: boolean) {
  const vm = await createMachine({ backend: "soft", memoryMiB: 4, vcpus: 2, vcpuThread });
  expect(vm.hasVcpuThread).toBe(vcpuThread);
  addPcDevices(vm, { debugcon: () => {} });
  vm.loadFlat(g.flat, { address: SMP_LOAD_ADDRESS, mode: "long" });
  const { stub, run } = await fixture.serve(vm);
  return { vm, stub, run };
}
const retired = (m: Machine, i: number) =>
  (m.vcpu(i).backend as { instructionsRetired?(): number }).instructionsRetired?.();

// vcpuThread: each vCPU in a worker thread of its own, the two running at once between stops
describe.each([
  { vcpuThread: false, where: "taking turns on the machine's thread" },
  { vcpuThread: true, where: "each in a worker thread" },
])("gdb stub, two vCPUs on the soft backend $where", ({ vcpuThread }) => {
  it("lists a thread per vCPU, stops on the AP's breakpoint as thread 2, reads and steps each vCPU", async (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const sym = (n: string) => (guest as SmpGdbGuest).symbols.get(n)!;
    const { vm, stub, run } = await start(guest, vcpuThread);
    const c = await Client.open(stub.port);
    expect(await c.ask("?")).toBe("T05thread:1;");
    expect(await c.ask("qfThreadInfo")).toBe("m1,2");
    expect(await c.ask("qsThreadInfo")).toBe("l");
    expect(await c.ask("qC")).toBe("QC1");
    expect(Buffer.from(await c.ask("qThreadExtraInfo,2"), "hex").toString()).toBe("vCPU 1");
    expect(await c.ask("T2")).toBe("OK");
    expect(await c.ask("T3")).toMatch(/^E/);
    expect(await c.ask("Hg3")).toMatch(/^E/);

    // the AP's first long-mode instruction: the stop names thread 2, which becomes current
    expect(await c.ask(`Z0,${hex(sym("ap_entry"))},1`)).toBe("OK");
    expect(await c.ask("vCont;c")).toBe("T05thread:2;swbreak:;");
    expect(await c.ask("qC")).toBe("QC2");
    expect(await reg(c, "rip")).toBe(sym("ap_entry"));
    expect(await c.ask("Hg1")).toBe("OK");
    const bspRip = await reg(c, "rip");
    expect(bspRip).not.toBe(sym("ap_entry"));
    // the BSP is past its INIT/SIPI and waits for ap_ready; its RIP lies in its own code
    expect(bspRip).toBeGreaterThan(sym("_start"));
    expect(bspRip).toBeLessThan(sym("self_isr"));
    expect(await c.ask("Hg2")).toBe("OK");
    expect(await reg(c, "rip")).toBe(sym("ap_entry"));
    expect(await c.ask(`z0,${hex(sym("ap_entry"))},1`)).toBe("OK");

    // a step of thread 2 (gdb's form: step 2, continue the rest): one AP instruction, the BSP held
    const bspBefore = retired(vm, 0);
    const apBefore = retired(vm, 1);
    expect(await c.ask("vCont;s:2;c")).toBe("T05thread:2;");
    expect(await reg(c, "rip")).toBe(sym("ap_entry") + 4n); // movw $0x10, %ax: 66 b8 10 00
    expect((await reg(c, "rax")) & 0xffffn).toBe(0x10n);
    expect(retired(vm, 0)).toBe(bspBefore);
    if (apBefore !== undefined) expect(retired(vm, 1)).toBe(apBefore + 1);
    expect(await c.ask("Hg1")).toBe("OK");
    expect(await reg(c, "rip")).toBe(bspRip);

    // Hc + s: the legacy form steps the Hc thread
    expect(await c.ask("Hc2")).toBe("OK");
    expect(await c.ask("s")).toBe("T05thread:2;");
    expect(await c.ask("Hg2")).toBe("OK");
    expect(await reg(c, "rip")).toBe(sym("ap_entry") + 6n); // movw %ax, %ds: 8e d8
    expect(retired(vm, 0)).toBe(bspBefore);

    // a write watchpoint the AP triggers (the BSP reads the same page meanwhile, spinning on it)
    expect(await c.ask(`Z2,${hex(sym("ap_ready"))},4`)).toBe("OK");
    expect(await c.ask("vCont;c")).toBe(`T05thread:2;watch:${hex(sym("ap_ready"))};`);
    expect(await c.ask(`m${hex(sym("ap_ready"))},4`)).toBe("01000000");
    expect(await c.ask(`z2,${hex(sym("ap_ready"))},4`)).toBe("OK");

    // the IPI handler runs on the AP only: thread 2 again
    expect(await c.ask(`Z0,${hex(sym("ap_ipi_isr"))},1`)).toBe("OK");
    expect(await c.ask("vCont;c")).toBe("T05thread:2;swbreak:;");
    expect(await reg(c, "rip")).toBe(sym("ap_ipi_isr"));
    expect(await c.ask(`z0,${hex(sym("ap_ipi_isr"))},1`)).toBe("OK");
    // the guest's verdict (0: every count right) comes as the process's exit
    expect(await c.ask("c")).toBe("W01");
    c.close();
    const r = await run;
    expect(r.reason).toBe("debug-exit");
    expect(r.exitCode).toBe(1);
  }, 120_000);

  it("Ctrl-C stops both spinning vCPUs, Z1 stops the AP, and a gdb that leaves while the guest runs takes its breakpoints along", async (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const sym = (n: string) => (guest as SmpGdbGuest).symbols.get(n)!;
    const { vm, stub, run } = await start(guest, vcpuThread);
    const c = await Client.open(stub.port);
    expect(await c.ask("?")).toBe("T05thread:1;");
    const entry = hex(sym("ap_entry"));
    expect(await c.ask(`Z0,${entry},1`)).toBe("OK");
    expect(await c.ask("vCont;c")).toBe("T05thread:2;swbreak:;");
    expect(await c.ask(`z0,${entry},1`)).toBe("OK");

    // the AP spins at ap_entry (jmp .), the BSP on ap_ready: both run until Ctrl-C stops them
    const original = await c.ask(`m${entry},2`);
    expect(await c.ask(`M${entry},2:ebfe`)).toBe("OK");
    const bspBefore = retired(vm, 0);
    const apBefore = retired(vm, 1);
    c.send("vCont;c");
    await new Promise((resolve) => setTimeout(resolve, 100));
    c.raw(Uint8Array.of(3));
    expect(await c.next()).toBe("T02thread:1;");
    if (bspBefore !== undefined) expect(retired(vm, 0)).toBeGreaterThan(bspBefore);
    if (apBefore !== undefined) expect(retired(vm, 1)).toBeGreaterThan(apBefore);
    expect(await c.ask("Hg2")).toBe("OK");
    expect(await reg(c, "rip")).toBe(sym("ap_entry"));
    expect(await c.ask("Hg1")).toBe("OK");
    const bspRip = await reg(c, "rip");
    expect(bspRip).toBeGreaterThan(sym("_start"));
    expect(bspRip).toBeLessThan(sym("self_isr"));

    // a hardware breakpoint where the AP spins: the AP's thread stops
    expect(await c.ask(`Z1,${entry},1`)).toBe("OK");
    expect(await c.ask("vCont;c")).toBe("T05thread:2;hwbreak:;");
    expect(await c.ask(`z1,${entry},1`)).toBe("OK");

    // the AP's code back, a breakpoint in its IPI handler, and gdb goes away while the guest runs:
    // the breakpoint goes with it and the guest finishes by itself (0: every count right)
    expect(await c.ask(`M${entry},2:${original}`)).toBe("OK");
    expect(await c.ask(`Z0,${hex(sym("ap_ipi_isr"))},1`)).toBe("OK");
    c.send("vCont;c");
    c.close();
    const r = await run;
    expect(r.reason).toBe("debug-exit");
    expect(r.exitCode).toBe(1);
    expect(vm.memory.readU8(Number(sym("ap_ipi_isr")))).not.toBe(0xcc);
  }, 120_000);

  it("Debian gdb: info threads lists both vCPUs, thread 2's registers", async (ctx) => {
    const missing = gdbMissing();
    if (missing) return ctx.skip(missing);
    if (typeof guest === "string") return ctx.skip(guest);
    const g = guest;
    const { stub } = await start(g, vcpuThread);
    const { out, status } = await runGdb(g.elfPath, [
      "set pagination off",
      "set confirm off",
      `target remote 127.0.0.1:${stub.port}`,
      "break ap_entry",
      "continue",
      "echo @threads \n",
      "info threads",
      "thread 2",
      "echo @t2 \n",
      "info registers rip",
      "stepi",
      "echo @stepped \n",
      "info registers rip",
      "thread 1",
      "echo @t1 \n",
      "info registers rip",
      "kill",
    ]);
    if (process.env.GDB_TRACE) console.log(out);
    const section = (name: string) => out.split(`@${name}`)[1] ?? "";
    expect(status, out).toBe(0);
    expect(out).toMatch(/Thread 2 .*hit Breakpoint 1/);
    expect(section("threads")).toMatch(/1\s+Thread 1 \(vCPU 0\)/);
    expect(section("threads")).toMatch(/\*\s*2\s+Thread 2 \(vCPU 1\)[^\n]* in ap_entry/);
    const ap = g.symbols.get("ap_entry")!;
    expect(section("t2")).toMatch(new RegExp(`rip\\s+0x${hex(ap)}\\s`));
    expect(section("stepped")).toMatch(new RegExp(`rip\\s+0x${hex(ap + 4n)}\\s`));
    expect(section("t1")).not.toMatch(new RegExp(`rip\\s+0x${hex(ap)}\\s`));
  }, 120_000);
});
