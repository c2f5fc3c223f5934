// The GDB stub on real KVM (KVM_SET_GUEST_DEBUG): Debian's gdb in batch mode against the guest of
// test/gdb (break on a symbol, continue, registers and memory read and written, stepi, a
// watchpoint that fires, detach letting the guest finish), and a protocol client for what batch
// gdb cannot do promptly (Ctrl-C on the spinning guest). Inside the nested-KVM lane gdb is the
// host's own (the guest runs chrooted in the host's root). Two vCPUs (test/gdb/smp-guest.ts, a
// vCPU thread each): every vCPU is a gdb thread, Ctrl-C stops both, a step of one leaves the other
// where it was, and an AP's breakpoint stops the machine naming it where KVM traps INT3 (where it
// does not, as in the nested lane, breakpoints are refused on several vCPUs).

import { beforeAll, describe, expect, it } from "vitest";
import { addPcDevices, createMachine, type Machine } from "../../lib/index.js";
import { probeGuestDebug } from "../../lib/vmm/debug-kvm.js";
import { MachineConfigError } from "../../lib/vmm/errors.js";
import { Client } from "../gdb/client.js";
import { buildGuest, expectGdbSession, type GdbGuest, gdbMissing, gdbSession, runGdb } from "../gdb/guest.js";
import { buildSmpGuest, SMP_LOAD_ADDRESS, type SmpGdbGuest } from "../gdb/smp-guest.js";
import { hex, reg, stubFixture } from "../gdb/stub-fixture.js";
import { probe, skipReason } from "./helpers.js";

let guest: GdbGuest | string;
/** what of KVM's guest debugging works on this host (undefined: no KVM) */
let debugProbe: { hardware: boolean; int3: boolean } | undefined;
beforeAll(async () => {
  guest = probe.usable ? buildGuest() : "no KVM";
  if (probe.usable) {
    // which path the stub takes here (under QEMU TCG both are emulated by single steps)
    const { Kvm } = await import("../../lib/kvm/index.js");
    const kvm = Kvm.open();
    const found = probeGuestDebug(kvm.binding);
    debugProbe = found;
    kvm.close();
    console.log(
      `test/kvm/gdb: debug registers ${found.hardware ? "fire" : "do not fire (stepped instead)"}, ` +
        `INT3 ${found.int3 ? "traps" : "does not trap (stepped instead)"} on this host`,
    );
  }
});

const fixture = stubFixture();

async function start(g: GdbGuest) {
  const vm = await createMachine({ backend: "kvm", memoryMiB: 16 });
  addPcDevices(vm, { coalesce: false });
  vm.loadElf(g.image);
  const { stub, run } = await fixture.serve(vm);
  // a test that fails before the run ends closes the machine under it: that rejection is expected
  run.catch(() => undefined);
  return { vm, stub, run };
}

/** the run's result, or undefined when it has not ended `ms` after gdb did */
const ended = <T>(run: Promise<T>, ms: number) =>
  Promise.race([run, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))]);

describe.skipIf(!probe.usable)(`gdb stub on KVM${skipReason}`, () => {
  it("Debian gdb: breaks on a symbol, reads and writes registers and memory, steps, watches, detaches", async (ctx) => {
    const missing = gdbMissing();
    if (missing) return ctx.skip(missing);
    if (typeof guest === "string") return ctx.skip(guest);
    const g = guest;
    const { run, stub: s, vm: m } = await start(g);
    const { out, status } = await runGdb(g.elfPath, gdbSession(s.port));
    const r = await ended(run, 20_000);
    if (process.env.GDB_TRACE) console.log(out);
    expect(r, `the run did not end after gdb detached:\n${out}`).toBeDefined();
    if (!r) return;
    expect(status, out).toBe(0);
    expectGdbSession(out, g);
    expect(m.vcpu(0).getRegs().rbx).toBe(0xabcn);
    expect(r.reason, out).toBe("debug-exit");
    expect(r.exitCode).toBe(13);
  }, 180_000);

  it("protocol client: Ctrl-C stops the spinning guest, memory written through M lets it finish", async (ctx) => {
    if (typeof guest === "string") return ctx.skip(guest);
    const sym = (n: string) => (guest as GdbGuest).symbols.get(n)!;
    const { run, stub: s } = await start(guest);
    const c = await Client.open(s.port);
    try {
      expect(await c.ask("?")).toBe("T05thread:1;");
      expect(await reg(c, "rip")).toBe(sym("_start"));
      // a hardware breakpoint (DR0) at `bump`
      expect(await c.ask(`Z1,${hex(sym("bump"))},1`)).toBe("OK");
      expect(await c.ask("c")).toBe("T05thread:1;hwbreak:;");
      expect(await reg(c, "rip")).toBe(sym("bump"));
      expect(await c.ask(`z1,${hex(sym("bump"))},1`)).toBe("OK");
      // single steps report SIGTRAP at the next instruction
      expect(await c.ask("s")).toBe("T05thread:1;");
      expect(await reg(c, "rip")).toBe(sym("after_bump"));
      c.send("c");
      // the guest spins on `flag`: let it reach the loop, then Ctrl-C
      await new Promise((r) => setTimeout(r, 200));
      c.raw(Uint8Array.of(3));
      expect(await c.next()).toBe("T02thread:1;");
      const rip = await reg(c, "rip");
      expect(rip >= sym("spin") && rip < sym("done")).toBe(true);
      expect(await c.ask(`M${hex(sym("flag"))},1:01`)).toBe("OK");
      expect(await c.ask("D")).toBe("OK");
      const r = await run;
      expect(r.reason).toBe("debug-exit");
      expect(r.exitCode).toBe(11);
    } finally {
      c.close();
    }
  }, 120_000);

  it("two vCPUs: a thread each, Ctrl-C, steps of one vCPU with the other held, breakpoints where INT3 traps", async (ctx) => {
    const g = probe.usable ? buildSmpGuest() : "no KVM";
    if (typeof g === "string") return ctx.skip(g);
    const sym = (n: string) => (g as SmpGdbGuest).symbols.get(n)!;
    let vm: Machine;
    try {
      vm = await createMachine({ backend: "kvm", memoryMiB: 4, vcpus: 2 });
    } catch (e) {
      // SMP on KVM needs the addon's vCPU threads
      if (e instanceof MachineConfigError) return ctx.skip(e.message);
      throw e;
    }
    addPcDevices(vm, { debugcon: () => {}, coalesce: false });
    vm.loadFlat(g.flat, { address: SMP_LOAD_ADDRESS, mode: "long" });
    const { stub, run } = await fixture.serve(vm, 300_000);
    run.catch(() => undefined);
    const c = await Client.open(stub.port);
    try {
      expect(await c.ask("?")).toBe("T05thread:1;");
      expect(await c.ask("qfThreadInfo")).toBe("m1,2");
      expect(await c.ask("qsThreadInfo")).toBe("l");
      expect(await c.ask("Hg3")).toMatch(/^E/);

      // the AP spins at ap_entry (jmp .) once it is up, the BSP on ap_ready: Ctrl-C until the AP is there
      const entry = hex(sym("ap_entry"));
      const original = await c.ask(`m${entry},2`);
      expect(await c.ask(`M${entry},2:ebfe`)).toBe("OK");
      let apRip = 0n;
      for (let tries = 0; tries < 20 && apRip !== sym("ap_entry"); tries++) {
        c.send("vCont;c");
        await new Promise((r) => setTimeout(r, 1000));
        c.raw(Uint8Array.of(3));
        expect(await c.next()).toBe("T02thread:1;");
        expect(await c.ask("Hg2")).toBe("OK");
        apRip = await reg(c, "rip");
      }
      expect(apRip).toBe(sym("ap_entry"));
      expect(await c.ask("Hg1")).toBe("OK");
      const bspRip = await reg(c, "rip");
      expect(bspRip).toBeGreaterThan(sym("_start"));
      expect(bspRip).toBeLessThan(sym("self_isr"));

      // a step of thread 2 (gdb's form: step 2, continue the rest): the AP's jmp, the BSP held
      expect(await c.ask("vCont;s:2;c")).toBe("T05thread:2;");
      expect(await c.ask("qC")).toBe("QC2");
      expect(await reg(c, "rip")).toBe(sym("ap_entry"));
      expect(await c.ask("Hg1")).toBe("OK");
      expect(await reg(c, "rip")).toBe(bspRip);
      // and one of thread 1: the BSP's spin loop moves on by one instruction
      expect(await c.ask("vCont;s:1;c")).toBe("T05thread:1;");
      expect(await reg(c, "rip")).not.toBe(bspRip);
      expect(await c.ask(`M${entry},2:${original}`)).toBe("OK");

      if (debugProbe?.int3 === false) {
        // stepping every vCPU instead of trapping INT3 cannot cover an AP (debug-kvm.ts): refused
        expect(await c.ask(`Z0,${hex(sym("ap_ipi_isr"))},1`)).toMatch(/^E/);
        expect(await c.ask(`Z1,${hex(sym("ap_ipi_isr"))},1`)).toMatch(/^E/);
      } else {
        // the AP's IPI handler: its INT3 exits the AP's KVM_RUN (USE_SW_BP on every vCPU)
        expect(await c.ask(`Z0,${hex(sym("ap_ipi_isr"))},1`)).toBe("OK");
        expect(await c.ask("vCont;c")).toBe("T05thread:2;swbreak:;");
        expect(await reg(c, "rip")).toBe(sym("ap_ipi_isr"));
        expect(await c.ask(`z0,${hex(sym("ap_ipi_isr"))},1`)).toBe("OK");
      }
      // the guest's verdict (0: every count right) comes as the process's exit
      expect(await c.ask("c")).toBe("W01");
      const r = await run;
      expect(r.reason).toBe("debug-exit");
      expect(r.exitCode).toBe(1);
    } finally {
      c.close();
    }
  }, 300_000);
});
