// SMP on KVM's thread side (lib/vmm/kvm-threads.ts) on any host: each vCPU's KvmRunWorker rings
// the one shared doorbell after its entry (here an entry that fails, KVM_RUN on a file that is no
// vCPU, which a host without /dev/kvm can still make), the group maps vCPU i to its thread and its
// backend, and SMP on KVM is refused with a MachineConfigError where no thread can enter the guest.

import { closeSync, openSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { addonPath } from "../../lib/kvm/binding.js";
import { KvmError } from "../../lib/kvm/errors.js";
import type { VmExit } from "../../lib/types/exits.js";
import type { MachineBackend } from "../../lib/vmm/backend.js";
import { MachineConfigError } from "../../lib/vmm/errors.js";
import { type EntryThread, KvmVcpuThreads, kvmSmpUnsupported } from "../../lib/vmm/kvm-threads.js";
import { KvmRunWorker, waitForChange } from "../../lib/vmm/kvm-worker.js";
import { FakeVcpu, intr, io } from "./fake-backend.js";

const addon = addonPath();

describe.skipIf(!addon)(
  `KvmRunWorker doorbell${addon ? "" : " (skipped: the native addon is not built)"}`,
  () => {
    it("every thread's ended entry rings the shared doorbell once", async () => {
      const fd = openSync("/dev/null", "r");
      const bell = new SharedArrayBuffer(4);
      const word = new Int32Array(bell);
      const workers = [0, 1].map(() => new KvmRunWorker({ addonPath: addon!, vcpuFd: fd, doorbell: bell }));
      try {
        await Promise.all(workers.map((w) => w.ready()));
        for (let round = 1; round <= 3; round++) {
          const before = Atomics.load(word, 0);
          for (const w of workers) w.start();
          for (const w of workers) expect(await w.wait(10_000)).toBe(true);
          // both threads ring it, each after its exit word: whoever waits on the one word learns
          // of either exit (the ring may trail the exit word by a moment, never precede it)
          for (let seen = Atomics.load(word, 0); seen - before < 2; seen = Atomics.load(word, 0)) {
            expect(await waitForChange(word, 0, seen, 10_000)).toBe(true);
          }
          expect(Atomics.load(word, 0) - before).toBe(2);
          for (const w of workers) {
            expect(w.ended()).toBe(true);
            expect(w.inRun).toBe(true);
            // KVM_RUN on a file that is no vCPU fails: the error comes back as a KvmError
            expect(() => w.take()).toThrow(KvmError);
            expect(w.inRun).toBe(false);
          }
        }
      } finally {
        for (const w of workers) w.close();
        closeSync(fd);
      }
    });

    it("a thread without a doorbell leaves it alone; waitOut() blocks until its entry ended", async () => {
      const fd = openSync("/dev/null", "r");
      const w = new KvmRunWorker({ addonPath: addon!, vcpuFd: fd });
      try {
        await w.ready();
        expect(w.waitOut(0)).toBe(true); // no entry in progress
        w.start();
        // what closing a vCPU does before its memory is unmapped: the entry has ended on return
        expect(w.waitOut(10_000)).toBe(true);
        expect(w.ended()).toBe(true);
        expect(await w.wait(10_000)).toBe(true);
        expect(() => w.take()).toThrow(KvmError);
      } finally {
        w.close();
        closeSync(fd);
      }
    });
  },
);

/** A thread whose entries end at once with `exited` (true: an exit, false: interrupted). */
class InstantThread implements EntryThread {
  closed = false;
  inRun = false;
  exited = true;
  closes = 0;
  start(): void {
    this.inRun = true;
  }
  ended(): boolean {
    return this.inRun;
  }
  take(): boolean {
    this.inRun = false;
    return this.exited;
  }
  close(): void {
    this.closes++;
    this.closed = true;
  }
}

class ExitVcpu {
  kicks = 0;
  constructor(readonly exit: VmExit) {}
  exitOf(exited: boolean): VmExit {
    return exited ? this.exit : intr();
  }
  kick(): void {
    this.kicks++;
  }
}

describe("KvmVcpuThreads", () => {
  it("vCPU i's exit is decoded by vCPU i's backend from vCPU i's thread; kicks go to vCPU i", () => {
    const vcpus = [new ExitVcpu(io("out", 0x10, 1, [1])), new ExitVcpu(io("out", 0x20, 1, [2]))];
    const threads = [new InstantThread(), new InstantThread()];
    threads[1]!.exited = false;
    const g = new KvmVcpuThreads(vcpus, threads, new Int32Array(new SharedArrayBuffer(4)));
    expect(g.count).toBe(2);
    expect(g.allParked()).toBe(true);
    g.start(0);
    g.start(1);
    expect(g.inEntry(0) && g.inEntry(1)).toBe(true);
    expect(g.allParked()).toBe(false);
    expect(g.exit(0)).toMatchObject({ kind: "io", port: 0x10 });
    expect(g.exit(1).kind).toBe("intr");
    expect(g.allParked()).toBe(true);
    g.kick(1);
    expect(vcpus.map((v) => v.kicks)).toEqual([0, 1]);
    expect(g.closed).toBe(false);
    g.close();
    expect(threads.map((t) => t.closes)).toEqual([1, 1]);
    // closing kicks each vCPU, so that a KVM_RUN in progress returns and its thread can leave
    expect(vcpus.map((v) => v.kicks)).toEqual([1, 2]);
    expect(g.closed).toBe(true);
  });

  it("refuses vCPUs no thread can enter: koffi's kick target, none, or not a KVM vCPU", async () => {
    const koffi = Object.assign(new FakeVcpu(1, []), {
      crossThreadKick: () => ({
        binding: "koffi" as const,
        addonPath: "/nowhere",
        vcpuFd: 3,
        shared: new SharedArrayBuffer(16),
        signal: 40,
      }),
      exitOf: () => intr(),
      attachThread: () => {},
    });
    await expect(KvmVcpuThreads.start([koffi])).rejects.toThrow(MachineConfigError);
    await expect(KvmVcpuThreads.start([koffi])).rejects.toThrow(/addon binding/);
    const none = Object.assign(new FakeVcpu(0, []), {
      crossThreadKick: () => undefined,
      exitOf: () => intr(),
      attachThread: () => {},
    });
    await expect(KvmVcpuThreads.start([none])).rejects.toThrow(/no cross-thread kick/);
    await expect(KvmVcpuThreads.start([new FakeVcpu(0, [])])).rejects.toThrow(MachineConfigError);
  });

  it("kvmSmpUnsupported: says why for a KVM backend on koffi, nothing for the addon or soft", () => {
    const kvmOn = (kind: string) =>
      ({ kind: "kvm", kvm: { binding: { kind } } }) as unknown as MachineBackend;
    expect(kvmSmpUnsupported(kvmOn("koffi"))).toMatch(/addon binding.*koffi/);
    expect(kvmSmpUnsupported(kvmOn("addon"))).toBeUndefined();
    expect(kvmSmpUnsupported({ kind: "soft" } as MachineBackend)).toBeUndefined();
  });
});
