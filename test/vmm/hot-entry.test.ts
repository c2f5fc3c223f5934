// Async runs with a vCPU thread (KVM), with ExitLoop.hotEntry on: while the guest exits hot, the loop
// enters it from the main thread in watchdog-bounded slices instead of waking the thread per exit;
// when it goes quiet the thread takes over again. A fake thread and watchdog stand in for kvm-worker.ts and watchdog.ts.

import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { type EntryWatchdog, ExitLoop, type VcpuThread } from "../../lib/vmm/loop.js";
import { FakeBackend, type FakeVcpu, intr, io } from "./fake-backend.js";

/** A vCPU thread whose entries run `vcpu` (the same script), ending at once or never on their own. */
function fakeThread(vcpu: FakeVcpu, quick: () => boolean): VcpuThread & { starts: number } {
  let pending: VmExit | undefined;
  let ended = false;
  const t = {
    starts: 0,
    closed: false,
    begin: () => undefined,
    end: () => undefined,
    start() {
      t.starts++;
      ended = quick();
      pending = ended ? vcpu.run() : undefined;
    },
    poll: () => ended,
    wait: async () => ended,
    exit(): VmExit {
      const e = pending ?? intr();
      pending = undefined;
      return e;
    },
    kick() {
      ended = true;
    },
  };
  return t;
}

const watchdog = (): EntryWatchdog & { arms: number } => {
  const w = { arms: 0, arm: () => void w.arms++, disarm: () => undefined };
  return w;
};

describe("hot entries of async runs with a vCPU thread", () => {
  it("a guest exiting hot is entered from the main thread after 64 quick exits, every exit handled in order", async () => {
    const ports: number[] = [];
    const loop = new ExitLoop({ io: (e) => void ports.push(e.data[0]!), intr: () => undefined });
    let n = 0;
    const vcpu = new FakeBackend([], { tail: () => io("out", 0xe9, 1, [++n & 0xff]) }).createVcpu(0);
    const thread = fakeThread(vcpu, () => true);
    loop.vcpuThread = thread;
    loop.watchdog = watchdog();
    loop.hotEntry = true;
    const r = await loop.run(vcpu, { maxExits: 1000 });
    expect(r.reason).toBe("max-exits");
    expect(ports).toEqual(Array.from({ length: 1000 }, (_, i) => (i + 1) & 0xff));
    expect(thread.starts).toBe(64);
    expect(vcpu.runs).toBe(1000);
  });

  it("hotEntry = false (the default) keeps every entry on the thread", async () => {
    const loop = new ExitLoop({ io: () => undefined });
    const vcpu = new FakeBackend([], { tail: () => io("out", 0xe9, 1, [0]) }).createVcpu(0);
    const thread = fakeThread(vcpu, () => true);
    loop.vcpuThread = thread;
    loop.watchdog = watchdog();
    expect(loop.hotEntry).toBe(false);
    await loop.run(vcpu, { maxExits: 300 });
    expect(thread.starts).toBe(300);
  });

  it("a guest that stops exiting goes back to the thread", async () => {
    const loop = new ExitLoop({ io: () => undefined, intr: () => undefined });
    let n = 0;
    // 100 quick OUT exits, then the guest only comes back when kicked: an entry from the main
    // thread blocks until the watchdog's kick at the slice's end (8 ms), here a busy wait
    const vcpu = new FakeBackend([], {
      tail: () => {
        if (++n <= 100) return io("out", 0xe9, 1, [0]);
        const until = performance.now() + 9;
        while (performance.now() < until) {}
        return intr();
      },
    }).createVcpu(0);
    const thread = fakeThread(vcpu, () => vcpu.runs < 100);
    loop.vcpuThread = thread;
    loop.watchdog = watchdog();
    loop.hotEntry = true;
    const r = await loop.run(vcpu, { timeoutMs: 100 });
    expect(r.reason).toBe("timeout");
    // the thread's 64 entries, the hot slices, then entries on the thread again (kicked: intr)
    expect(thread.starts).toBeGreaterThan(64);
  });
});

describe("offload (ioeventfd notifications) around hot entries", () => {
  it("is on for the thread's entries only: off for the main thread's hot slices and when the run ends", async () => {
    const loop = new ExitLoop({ io: () => undefined, intr: () => undefined });
    let n = 0;
    // hot for 200 exits, then quiet (kicked entries), then hot again: both switches are taken
    const vcpu = new FakeBackend([], {
      tail: () => {
        n++;
        if (n <= 200 || (n > 260 && n <= 400)) return io("out", 0xe9, 1, [0]);
        const until = performance.now() + 9;
        while (performance.now() < until) {}
        return intr();
      },
    }).createVcpu(0);
    const thread = fakeThread(vcpu, () => true);
    const calls: boolean[] = [];
    let offloaded = false;
    let inThread = false;
    const wrong: string[] = [];
    const start = thread.start.bind(thread);
    thread.start = () => {
      if (!offloaded) wrong.push(`thread entry ${vcpu.runs} with offload off`);
      inThread = true;
      start();
      inThread = false;
    };
    const run = vcpu.run.bind(vcpu);
    vcpu.run = () => {
      if (!inThread && offloaded) wrong.push(`main-thread entry ${vcpu.runs} with offload on`);
      return run();
    };
    thread.offload = (on) => {
      calls.push(on);
      offloaded = on;
    };
    loop.vcpuThread = thread;
    loop.watchdog = watchdog();
    loop.hotEntry = true;
    await loop.run(vcpu, { maxExits: 450 });
    expect(wrong).toEqual([]);
    expect(loop.hotPhases).toBeGreaterThanOrEqual(1);
    expect(calls[0]).toBe(true);
    expect(calls.at(-1)).toBe(false);
    expect(calls).toContain(false);
    expect(offloaded).toBe(false);
  });
});
