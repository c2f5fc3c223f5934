// `await vm.run()` on KVM with ExitLoop.hotEntry on (lib/vmm/loop.ts): after 64 quick exits through
// the vCPU thread the main thread enters the guest itself in watchdog-bounded slices, and goes back
// to the thread when the guest stops exiting. Output, exit sequence and registers are those of
// runSync(); stop(), timeoutMs and the event loop's turns hold while the guest exits hot.

import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { createMachine, type Machine, machineExitLoop } from "../../lib/vmm/machine.js";
import { probe, skipReason } from "./helpers.js";

// xor cx,cx; l: mov al,cl; out 0xe9,al; in al,0x60; inc cx; cmp cx,N; jne l; cli; hlt
const PORT_EXITS = 3000;
const PORT_LOOP = [
  ...[0x31, 0xc9, 0x88, 0xc8, 0xe6, 0xe9, 0xe4, 0x60, 0x41, 0x81, 0xf9],
  ...[PORT_EXITS & 0xff, PORT_EXITS >> 8, 0x75, 0xf3, 0xfa, 0xf4],
];
// l: inc al; out 0xe9,al; jmp l   (exits for ever)
const OUT_FOREVER = [0xfe, 0xc0, 0xe6, 0xe9, 0xeb, 0xfa];

async function withMachine(hot: boolean, body: (vm: Machine) => Promise<void>): Promise<void> {
  const vm = await createMachine({ memoryMiB: 4, backend: "kvm" });
  try {
    expect(vm.hasVcpuThread).toBe(true);
    machineExitLoop(vm).hotEntry = hot;
    await body(vm);
  } finally {
    vm.close();
  }
}

const noThread = probe.usable && probe.binding !== "addon";
describe.skipIf(!probe.usable || noThread)(
  `KVM async runs with hot entries${noThread ? ` (skipped: the vCPU thread needs the addon binding; this run uses ${probe.binding})` : skipReason}`,
  () => {
    it("port exits give the output, exit sequence and registers of runSync()", async () => {
      const trace = async (mode: "hot" | "sync") => {
        const out: number[] = [];
        const kinds: string[] = [];
        let rax = 0n;
        let reason = "";
        await withMachine(mode === "hot", async (vm) => {
          vm.io.onOut(0xe9, (_p, _s, v) => void out.push(v));
          let reads = 0;
          vm.io.onIn(0x60, () => reads++ & 0xff);
          vm.on("exit", (e: VmExit) => {
            if (e.kind !== "intr") kinds.push(e.kind === "io" ? `io:${e.direction}:${e.port}` : e.kind);
          });
          vm.loadFlat(Uint8Array.from(PORT_LOOP));
          const r = mode === "sync" ? vm.runSync({ timeoutMs: 60_000 }) : await vm.run({ timeoutMs: 60_000 });
          reason = r.reason;
          rax = vm.vcpu(0).getRegs().rax;
        });
        return { out, kinds, rax, reason };
      };
      const hot = await trace("hot");
      const sync = await trace("sync");
      expect(hot.reason).toBe("hlt");
      expect(sync.reason).toBe("hlt");
      expect(hot.out).toEqual(Array.from({ length: PORT_EXITS }, (_, i) => i & 0xff));
      expect(hot.out).toEqual(sync.out);
      expect(hot.kinds).toEqual(sync.kinds);
      // the last IN's data reached the guest (AL), whichever thread entered it
      expect(hot.rax & 0xffn).toBe(BigInt((PORT_EXITS - 1) & 0xff));
      expect(hot.rax).toBe(sync.rax);
    });

    it("stop(), timeoutMs and the event loop's turns hold while the guest exits without end", async () => {
      await withMachine(true, async (vm) => {
        let outs = 0;
        vm.io.onOut(0xe9, () => void outs++);
        vm.loadFlat(Uint8Array.from(OUT_FOREVER));
        let ticks = 0;
        const timer = setInterval(() => ticks++, 1);
        try {
          const p = vm.run();
          setTimeout(() => vm.stop(), 500);
          const stopped = await p;
          expect(stopped.reason).toBe("stopped");
          // the stop came from a timer: the event loop had its turns during the run
          expect(ticks).toBeGreaterThanOrEqual(3);
        } finally {
          clearInterval(timer);
        }
        expect(outs).toBeGreaterThan(64);
        const timed = await vm.run({ timeoutMs: 300 });
        expect(timed.reason).toBe("timeout");
        expect(timed.exits).toBeGreaterThan(0);
        // sync and hot async runs alternate on the one vCPU
        expect(vm.runSync({ maxExits: 10 }).reason).toBe("max-exits");
        expect((await vm.run({ maxExits: 200 })).reason).toBe("max-exits");
      });
    });
  },
);
