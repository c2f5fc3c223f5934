// `await vm.run()` on KVM enters the guest from a worker thread (lib/vmm/kvm-worker.ts): the event
// loop keeps running while the guest spins or halts, exits reach the one loop on the main thread
// exactly as in runSync(), stop()/timeouts end a run, and closing the machine ends the thread.

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { ensureDist, root } from "../support/dist.js";
import { probe, skipReason } from "./helpers.js";

const SPIN = [0xeb, 0xfe]; // jmp $
const STI_HLT = [0xfb, 0xf4, 0xeb, 0xfd]; // sti; 1: hlt; jmp 1
// xor cx,cx; l: mov al,cl; out 0xe9,al; in al,0x60; inc cx; cmp cx,N; jne l; cli; hlt
const PORT_EXITS = 1500;
const PORT_LOOP = [
  0x31,
  0xc9,
  0x88,
  0xc8,
  0xe6,
  0xe9,
  0xe4,
  0x60,
  0x41,
  0x81,
  0xf9,
  PORT_EXITS & 0xff,
  PORT_EXITS >> 8,
  0x75,
  0xf3,
  0xfa,
  0xf4,
];

async function withMachine(body: (vm: Machine) => Promise<void>): Promise<void> {
  const vm = await createMachine({ memoryMiB: 4, backend: "kvm" });
  try {
    expect(vm.warnings).toEqual([]);
    expect(vm.hasVcpuThread).toBe(true);
    await body(vm);
  } finally {
    vm.close();
  }
}

/** Timer callbacks on this thread during `run`: the count a free event loop reaches. */
async function ticksDuring<T>(run: () => Promise<T>): Promise<{ ticks: number; result: T }> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    const result = await run();
    return { ticks, result };
  } finally {
    clearInterval(timer);
  }
}

// the thread enters the guest through the addon (koffi cannot make a worker's KVM_RUN kickable)
const noThread = probe.usable && probe.binding !== "addon";
describe.skipIf(!probe.usable || noThread)(
  `KVM vCPU thread${noThread ? ` (skipped: the vCPU thread needs the addon binding; this run uses ${probe.binding})` : skipReason}`,
  () => {
    it("a spinning or halted guest leaves the event loop free: a 1 ms interval keeps ticking", async () => {
      for (const guest of [SPIN, STI_HLT]) {
        await withMachine(async (vm) => {
          vm.loadFlat(Uint8Array.from(guest));
          const { ticks, result } = await ticksDuring(() => vm.run({ timeoutMs: 300 }));
          expect(result.reason).toBe("timeout");
          // A main thread blocked in KVM_RUN for the whole run would not tick at all; the interval
          // ran several times while the guest spun or halted. (How often is a rate, and a loaded
          // nested-KVM host makes rates vary: bench/exit-loop measures them, not this test.)
          expect(ticks).toBeGreaterThanOrEqual(3);
          // the guest was really entered (the periodic kicks come back as exits)
          expect(result.exits).toBeGreaterThan(0);
        });
      }
    });

    it("a guest's port exits give the same output and exit sequence through run() and runSync()", async () => {
      const trace = async (sync: boolean) => {
        let out: number[] = [];
        const kinds: string[] = [];
        let result: Awaited<ReturnType<Machine["run"]>> | undefined;
        await withMachine(async (vm) => {
          vm.io.onOut(0xe9, (_p, _s, v) => void out.push(v));
          let reads = 0;
          vm.io.onIn(0x60, () => reads++ & 0xff);
          vm.on("exit", (e: VmExit) => {
            if (e.kind !== "intr") kinds.push(e.kind === "io" ? `io:${e.direction}:${e.port}` : e.kind);
          });
          vm.loadFlat(Uint8Array.from(PORT_LOOP));
          result = sync ? vm.runSync({ timeoutMs: 20_000 }) : await vm.run({ timeoutMs: 20_000 });
          out = out.slice();
          // the IN's data reached the guest: it is in AL at the end
          expect(Number(vm.vcpu(0).getRegs().rax & 0xffn)).toBe((PORT_EXITS - 1) & 0xff);
        });
        return { out, kinds, result: result! };
      };
      const a = await trace(false);
      const s = await trace(true);
      expect(a.result.reason).toBe("hlt");
      expect(s.result.reason).toBe("hlt");
      expect(a.out).toHaveLength(PORT_EXITS);
      expect(a.out).toEqual(Array.from({ length: PORT_EXITS }, (_, i) => i & 0xff));
      expect(a.out).toEqual(s.out);
      expect(a.kinds).toEqual(s.kinds);
      expect(a.kinds.at(-1)).toBe("hlt");
    });

    it("stop() and timeoutMs end runs of a spinning guest; sync and async runs alternate on one vCPU", async () => {
      await withMachine(async (vm) => {
        vm.loadFlat(Uint8Array.from(SPIN));
        const p = vm.run();
        setTimeout(() => vm.stop(), 30);
        const stopped = await p;
        expect(stopped.reason).toBe("stopped");
        expect(vm.running).toBe(false);
        expect((await vm.run({ timeoutMs: 40 })).reason).toBe("timeout");
        expect(vm.runSync({ timeoutMs: 40 }).reason).toBe("timeout");
        expect((await vm.run({ timeoutMs: 40 })).reason).toBe("timeout");
        expect(vm.vcpu(0).getRegs().rip).toBe(0x7c00n);
      });
    });

    it("a run that throws in a handler ends with reason error and leaves the thread usable", async () => {
      await withMachine(async (vm) => {
        vm.io.onOut(0xe9, () => {
          throw new Error("handler broke");
        });
        vm.loadFlat(Uint8Array.from(PORT_LOOP));
        const r = await vm.run({ timeoutMs: 20_000 });
        expect(r.reason).toBe("error");
        expect(r.message).toMatch(/handler broke/);
        const again = await vm.run({ timeoutMs: 20_000 });
        expect(again.reason).toBe("error");
      });
    });

    it("vcpuThread: false keeps async runs on the main thread, bounded by the watchdog", async () => {
      const vm = await createMachine({ memoryMiB: 4, backend: "kvm", vcpuThread: false });
      try {
        expect(vm.hasVcpuThread).toBe(false);
        expect(vm.canInterruptEntry).toBe(true);
        vm.loadFlat(Uint8Array.from(SPIN));
        expect((await vm.run({ timeoutMs: 40 })).reason).toBe("timeout");
      } finally {
        vm.close();
      }
    });

    const distSkip = ensureDist("dist/lib/vmm/machine.js", ["lib"]);
    it.skipIf(distSkip !== undefined)(
      `close() during and after runs leaves no thread behind: the process exits${distSkip ? ` (skipped: ${distSkip})` : ""}`,
      () => {
        const machine = pathToFileURL(join(root, "dist", "lib", "vmm", "machine.js")).href;
        const script = `
        import { createMachine } from ${JSON.stringify(machine)};
        const spin = Uint8Array.from([0xeb, 0xfe]);
        const a = await createMachine({ memoryMiB: 4, backend: "kvm" });
        if (!a.hasVcpuThread) throw new Error("no vCPU thread: " + a.warnings.join("; "));
        a.loadFlat(spin);
        const p = a.run();
        setTimeout(() => a.close(), 30);
        console.log((await p).reason);
        const b = await createMachine({ memoryMiB: 4, backend: "kvm" });
        b.loadFlat(spin);
        console.log((await b.run({ timeoutMs: 20 })).reason);
        b.close();
        const c = await createMachine({ memoryMiB: 4, backend: "kvm" });
        c.loadFlat(spin);
        console.log((await c.run({ timeoutMs: 20 })).reason);
        // c is never closed: its parked thread must not keep the process alive
      `;
        const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
          encoding: "utf8",
          timeout: 30_000,
        });
        expect(r.signal, `the process did not exit on its own; stderr: ${r.stderr}`).toBeNull();
        expect(r.stderr).toBe("");
        expect(r.status).toBe(0);
        expect(r.stdout.split("\n").filter(Boolean)).toEqual(["stopped", "timeout", "timeout"]);
      },
    );
  },
);
