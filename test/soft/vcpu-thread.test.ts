// Soft vCPUs in worker threads (createMachine({ vcpuThread: true }), lib/vmm/backends/soft/threads.ts):
// the guest runs beside the machine's thread, not in slices of it, with the same exits, output and
// state as on the machine's thread. Other suites run again with every soft machine threaded (the
// "vcpu-thread" project of vitest.config.ts); this file holds what only threads can show.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { imagePath } from "../../examples/paths.js";
import { addPcDevices, createMachine, type Machine, type VmExit } from "../../lib/index.js";
import { Asm, CX } from "../support/asm.js";

const JNZ = 5;
const COUNTER = 0x500;

/** real mode: adds 1 to the dword at COUNTER forever, never exiting */
function counting(): Uint8Array {
  const a = new Asm(16, 0x7c00);
  a.label("top");
  a.db(0x66, 0xff, 0x06, COUNTER & 0xff, COUNTER >> 8); // inc dword [COUNTER]
  a.db(0xeb, 0xf9); // jmp top
  return a.link();
}

/** real mode: CX rounds of an OUT to 0x80 with the round's count, then CLI; HLT */
function outs(rounds: number): Uint8Array {
  const a = new Asm(16, 0x7c00);
  a.movRI(CX, rounds);
  a.label("round");
  a.db(0x89, 0xc8); // mov ax, cx
  a.outImm(0x80, 1);
  a.dec(CX).jShort(JNZ, "round");
  a.db(0xfa, 0xf4);
  return a.link();
}

async function soft(image: Uint8Array, vcpuThread: boolean, memoryMiB = 4): Promise<Machine> {
  const vm = await createMachine({ backend: "soft", memoryMiB, vcpuThread });
  vm.loadFlat(image, { address: 0x7c00, mode: "real" });
  return vm;
}

const counter = (vm: Machine) => new DataView(vm.memory.view(COUNTER, 4).slice().buffer).getUint32(0, true);

/** blocks this thread for `ms` (no event-loop turn, no slice of anyone's run) */
function blockFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

describe("a soft vCPU in a worker thread", () => {
  it("says so, and runs the guest while the machine's thread is blocked (on the machine's thread it cannot)", async () => {
    for (const threaded of [true, false]) {
      const vm = await soft(counting(), threaded);
      try {
        expect(vm.hasVcpuThread).toBe(threaded);
        const run = vm.run({ timeoutMs: 30_000 });
        // let the run start (the first slice, or the thread's first entry)
        while (counter(vm) === 0) await new Promise((r) => setTimeout(r, 5));
        const before = counter(vm);
        blockFor(300);
        const after = counter(vm);
        vm.stop();
        const result = await run;
        expect(result.reason).toBe("stopped");
        if (threaded) expect(after).toBeGreaterThan(before);
        else expect(after).toBe(before);
      } finally {
        vm.close();
      }
    }
  });

  it("gives the same exits, data and final registers as the vCPU on the machine's thread", async () => {
    const runs: { exits: string[]; regs: unknown; result: string }[] = [];
    for (const threaded of [false, true]) {
      const vm = await soft(outs(300), threaded);
      try {
        const exits: string[] = [];
        vm.on("exit", (e: VmExit) => {
          if (e.kind === "io") exits.push(`${e.direction} ${e.port} ${Buffer.from(e.data).toString("hex")}`);
          else if (e.kind !== "intr") exits.push(e.kind);
        });
        const r = threaded ? await vm.run({ timeoutMs: 30_000 }) : vm.runSync({ timeoutMs: 30_000 });
        runs.push({ exits, regs: vm.vcpu(0).getRegs(), result: r.reason });
      } finally {
        vm.close();
      }
    }
    expect(runs[1]!.result).toBe("hlt");
    expect(runs[1]!.exits).toHaveLength(301);
    expect(runs[1]).toEqual(runs[0]);
  });

  it("boots the real-mode hello example through addPcDevices, sync and async", async () => {
    for (const sync of [true, false]) {
      const vm = await createMachine({ backend: "soft", memoryMiB: 16, vcpuThread: true });
      try {
        let out = "";
        addPcDevices(vm, {
          serial: (b: Uint8Array) => {
            out += Buffer.from(b).toString("latin1");
          },
        });
        vm.loadFlat(readFileSync(imagePath("real-hello.bin")), { address: 0x7c00, mode: "real" });
        const r = sync ? vm.runSync({ timeoutMs: 30_000 }) : await vm.run({ timeoutMs: 30_000 });
        expect(r.reason).toBe("hlt");
        expect(out).toBe("Hello from real mode\n");
        expect(vm.vcpu(0).dump()).toContain("Mode=real");
      } finally {
        vm.close();
      }
    }
  });

  it("takes registers set between runs, ends at maxExits and maxInstructions, and again after them", async () => {
    const vm = await soft(outs(1000), true);
    try {
      let r = await vm.run({ maxExits: 10, timeoutMs: 30_000 });
      expect(r.reason).toBe("max-exits");
      expect(r.exits).toBe(10);
      r = vm.runSync({ maxInstructions: 500, timeoutMs: 30_000 });
      expect(r.reason).toBe("max-instructions");
      expect(r.instructions).toBeGreaterThanOrEqual(500);
      // CX is the rounds left: 5 more, then the guest halts
      const regs = vm.vcpu(0).getRegs();
      vm.vcpu(0).setRegs({ ...regs, rcx: 5n });
      let outsSeen = 0;
      vm.io.onOut(0x80, () => {
        outsSeen++;
      });
      r = await vm.run({ timeoutMs: 30_000 });
      expect(r.reason).toBe("hlt");
      expect(outsSeen).toBeLessThanOrEqual(6);
      expect(outsSeen).toBeGreaterThanOrEqual(5);
      expect(vm.vcpu(0).getRegs().rcx & 0xffffn).toBe(0n);
    } finally {
      vm.close();
    }
  });

  it("ends a spinning guest's run at its timeout, at stop(), and at close()", async () => {
    const vm = await soft(Uint8Array.from([0xeb, 0xfe]), true);
    try {
      expect((await vm.run({ timeoutMs: 200 })).reason).toBe("timeout");
      const stopped = vm.run({ timeoutMs: 30_000 });
      setTimeout(() => vm.stop(), 50);
      expect((await stopped).reason).toBe("stopped");
      const closed = vm.run({ timeoutMs: 30_000 });
      setTimeout(() => vm.close(), 50);
      expect((await closed).reason).toBe("stopped");
    } finally {
      vm.close();
    }
  });

  it("runs two busy machines side by side: each counts while the other does", async () => {
    const vms = await Promise.all([soft(counting(), true), soft(counting(), true)]);
    try {
      const runs = vms.map((vm) => vm.run({ timeoutMs: 30_000 }));
      for (const vm of vms) while (counter(vm) === 0) await new Promise((r) => setTimeout(r, 5));
      const before = vms.map(counter);
      blockFor(200);
      const after = vms.map(counter);
      for (const vm of vms) vm.stop();
      for (const r of await Promise.all(runs)) expect(r.reason).toBe("stopped");
      after.forEach((a, i) => {
        expect(a).toBeGreaterThan(before[i]!);
      });
    } finally {
      for (const vm of vms) vm.close();
    }
  });

  it("refuses what needs the vCPU on the machine's thread, saying why", async () => {
    const vm = await soft(outs(1), true);
    try {
      await expect(vm.gdbServer({ port: 0 })).rejects.toThrow(/vcpuThread: false/);
      const { encodeSnapshot } = await import("../../lib/snapshot/index.js");
      expect(() => encodeSnapshot(vm)).toThrow(/vcpuThread: false/);
    } finally {
      vm.close();
    }
    const smp = await createMachine({ backend: "soft", memoryMiB: 4, vcpus: 2, vcpuThread: true });
    try {
      expect(smp.hasVcpuThread).toBe(false);
      expect(smp.warnings.join("\n")).toMatch(/take turns on the machine's thread/);
    } finally {
      smp.close();
    }
  });
});
