// Soft vCPUs in worker threads (createMachine({ vcpuThread: true }), lib/vmm/backends/soft/threads.ts):
// the guest runs beside the machine's thread, not in slices of it, with the same exits, output and
// state as on the machine's thread. Other suites run again with every soft machine threaded (the
// "vcpu-thread" project of vitest.config.ts); this file holds what only threads can show.

import { describe, expect, it } from "vitest";
import { exampleImage } from "../../lib/examples/index.js";
import { addPcDevices, createMachine, type Machine, type VmExit } from "../../lib/index.js";
import {
  createRestoredMachine,
  decodeSnapshot,
  encodeSnapshot,
  type Snapshot,
  SnapshotError,
} from "../../lib/snapshot/index.js";
import { countingGuest } from "../snapshot/guests.js";
import { setSoftFpu, softFpu } from "../snapshot/soft-fpu.js";
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
        vm.loadFlat(exampleImage("real-hello").read(), { address: 0x7c00, mode: "real" });
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

  // (the debugger works on vCPU threads: test/gdb/machine.test.ts, smp.test.ts)
  it("keeps deterministic runs on the machine's thread, saying why", async () => {
    const det = await createMachine({
      backend: "soft",
      memoryMiB: 4,
      vcpus: 2,
      vcpuThread: true,
      deterministic: true,
    });
    try {
      expect(det.hasVcpuThread).toBe(false);
      expect(det.warnings.join("\n")).toMatch(
        /deterministic runs interleave the vCPUs on the machine's thread/,
      );
    } finally {
      det.close();
    }
  });

  describe("snapshots: the vCPU hands its state over from its thread", () => {
    interface Out {
      serial: number[];
      debug: number[];
    }
    const text = (b: number[]) => Buffer.from(b).toString("latin1");
    const image = countingGuest(200);
    const setupFor = (out: Out) => (vm: Machine) => {
      addPcDevices(vm, {
        serial: (b) => out.serial.push(...b),
        debugcon: (b) => out.debug.push(...b),
        coalesce: false,
      });
    };
    async function pc(vcpuThread: boolean, out: Out, restore?: Snapshot): Promise<Machine> {
      const opts = { backend: "soft", memoryMiB: 16, vcpuThread } as const;
      const vm = restore
        ? await createRestoredMachine({ ...opts, restore, setup: setupFor(out) }, createMachine)
        : await createMachine(opts);
      if (!restore) {
        setupFor(out)(vm);
        vm.loadFlat(image);
      }
      expect(vm.hasVcpuThread).toBe(vcpuThread);
      return vm;
    }
    async function finish(vm: Machine): Promise<void> {
      const r = vm.hasVcpuThread ? await vm.run({ timeoutMs: 30_000 }) : vm.runSync({ timeoutMs: 30_000 });
      expect(r.reason).toBe("hlt");
    }
    /** XMM registers the guest never touches: they must come back from the vCPU's thread as set */
    const xmmMark = Int32Array.from({ length: 64 }, (_, i) => 0x5a000000 + i);

    async function uninterrupted() {
      const whole: Out = { serial: [], debug: [] };
      const ref = await pc(false, whole);
      try {
        await finish(ref);
        return { whole, regs: ref.vcpu(0).getRegs(), sregs: ref.vcpu(0).getSregs() };
      } finally {
        ref.close();
      }
    }

    async function resumeAndCompare(snap: Snapshot, first: Out, threaded: boolean): Promise<void> {
      const ref = await uninterrupted();
      const second: Out = { serial: [], debug: [] };
      const b = await pc(threaded, second, snap);
      try {
        expect([...softFpu(b).xmm]).toEqual([...xmmMark]);
        await finish(b);
        expect(text([...first.serial, ...second.serial])).toBe(text(ref.whole.serial));
        expect(text([...first.debug, ...second.debug])).toBe(text(ref.whole.debug));
        // both parts did some of the work
        expect(first.debug.length).toBeGreaterThan(20);
        expect(second.debug.length).toBeGreaterThan(20);
        expect(b.vcpu(0).getRegs()).toEqual(ref.regs);
        expect(b.vcpu(0).getSregs()).toEqual(ref.sregs);
        expect(b.memory.view(0x500, 2)).toEqual(Uint8Array.from([200, 0]));
      } finally {
        b.close();
      }
    }

    /** a threaded machine stopped mid-run, saved with the XMM mark set in its thread */
    async function savedThreaded(stop: "max-exits" | "stop()"): Promise<{ snap: Snapshot; first: Out }> {
      const first: Out = { serial: [], debug: [] };
      const a = await pc(true, first);
      try {
        let r: Awaited<ReturnType<Machine["run"]>>;
        if (stop === "max-exits") {
          // 301 ends right after an IN: the thread completes it as the snapshot settles the vCPU
          r = await a.run({ maxExits: 301, timeoutMs: 30_000 });
          expect(r.reason).toBe("max-exits");
        } else {
          // from the exit listener, at whatever exit the 60th debug byte came with
          let stopped = false;
          a.on("exit", () => {
            if (!stopped && first.debug.length >= 60) {
              stopped = true;
              a.stop();
            }
          });
          r = await a.run({ timeoutMs: 30_000 });
          expect(r.reason).toBe("stopped");
        }
        setSoftFpu(a, { xmm: xmmMark });
        return { snap: decodeSnapshot(encodeSnapshot(a).bytes), first };
      } finally {
        a.close();
      }
    }

    for (const stop of ["max-exits", "stop()"] as const) {
      for (const threaded of [true, false]) {
        it(`saved threaded (ended by ${stop}), resumed ${threaded ? "threaded" : "on the machine's thread"}: the uninterrupted run's output and registers`, async () => {
          const { snap, first } = await savedThreaded(stop);
          expect(snap.header.backend).toBe("soft");
          expect(snap.vcpus[0]!.soft).toBeDefined();
          await resumeAndCompare(snap, first, threaded);
        });
      }
    }

    it("saved on the machine's thread, resumed threaded: the uninterrupted run's output and registers", async () => {
      const first: Out = { serial: [], debug: [] };
      const a = await pc(false, first);
      let snap: Snapshot;
      try {
        expect(a.runSync({ maxExits: 302, timeoutMs: 30_000 }).reason).toBe("max-exits");
        setSoftFpu(a, { xmm: xmmMark });
        snap = decodeSnapshot(encodeSnapshot(a).bytes);
      } finally {
        a.close();
      }
      await resumeAndCompare(snap, first, true);
    });

    it("a record the vCPU's thread refuses comes back as a SnapshotError naming the vCPU", async () => {
      const { snap } = await savedThreaded("max-exits");
      // handed over as an object, not decoded from a file: only the vCPU itself checks it
      const bad = structuredClone(snap);
      bad.vcpus[0]!.soft!.xmm = Buffer.alloc(8).toString("base64");
      const e = await pc(true, { serial: [], debug: [] }, bad).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(SnapshotError);
      expect((e as SnapshotError).section).toBe("vcpus");
      expect((e as Error).message).toMatch(/vCPU 0: XMM state is 8 bytes, want 256/);
    });
  });
});

describe("a soft vCPU thread that cannot start", () => {
  it("is a SoftVcpuThreadError (a VmmError) saying why, not a hang", async () => {
    const { createSoftBackend, SoftBackend } = await import("../../lib/vmm/backends/soft.js");
    const { SoftVcpuThreadError } = await import("../../lib/vmm/backends/soft/threads.js");
    const { VmmError } = await import("../../lib/index.js");
    const backend = createSoftBackend({
      memoryBytes: 1 << 20,
      threadModule: "file:///nonexistent/nodevmm-thread-worker.js",
    }) as InstanceType<typeof SoftBackend>;
    try {
      backend.createVcpu(0);
      const e = await backend.vcpuThreads().then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(SoftVcpuThreadError);
      expect(e).toBeInstanceOf(VmmError);
      expect((e as Error).message).toMatch(/vCPU 0's thread failed: .*nonexistent/);
    } finally {
      backend.close();
    }
  });
});
