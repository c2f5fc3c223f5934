// When an async run with a vCPU thread (KVM) starts and stops entering the guest from the main thread
// (ExitLoop.hotEntry, lib/vmm/loop.ts): hot means 64 entries in a row that ended by themselves and
// took 4 ms each at most on average, hand-over included; a hot phase ends after three quiet slices
// in a row.
// A fake thread and watchdog stand in for kvm-worker.ts and watchdog.ts; busy waits stand in for
// the time entries take.

import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { type EntryWatchdog, ExitLoop, type VcpuThread } from "../../lib/vmm/loop.js";
import { FakeBackend, type FakeVcpu, intr, io } from "./fake-backend.js";

const busy = (ms: number): void => {
  const until = performance.now() + ms;
  while (performance.now() < until) {}
};

/**
 * A vCPU thread whose entries run `vcpu` and end by themselves. `delay(n)` for its n-th entry
 * (1-based): how long it takes, and whether the loop sees it end in its short poll or only later
 * in its awaited wait (a slow hand-over).
 */
function fakeThread(
  vcpu: FakeVcpu,
  delay: (n: number) => { ms: number; late: boolean },
): VcpuThread & {
  starts: number;
} {
  let pending: VmExit | undefined;
  let late = false;
  let ms = 0;
  const t = {
    starts: 0,
    closed: false,
    begin: () => undefined,
    end: () => undefined,
    start() {
      t.starts++;
      ({ ms, late } = delay(t.starts));
      pending = vcpu.run();
    },
    poll: () => {
      if (late) return false;
      busy(ms);
      return true;
    },
    wait: async () => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return true;
    },
    exit(): VmExit {
      const e = pending ?? intr();
      pending = undefined;
      return e;
    },
    kick: () => undefined,
  };
  return t;
}

const watchdog = (): EntryWatchdog => ({ arm: () => undefined, disarm: () => undefined });

function hotLoop(): { loop: ExitLoop; ports: number[] } {
  const ports: number[] = [];
  const loop = new ExitLoop({ io: (e) => void ports.push(e.data[0]!), intr: () => undefined });
  loop.watchdog = watchdog();
  loop.hotEntry = true;
  return { loop, ports };
}

describe("when async runs enter a hot guest from the main thread", () => {
  it("entries that end by themselves but take 5 ms each stay on the thread", async () => {
    const { loop } = hotLoop();
    const vcpu = new FakeBackend([], { tail: () => io("out", 0xe9, 1, [0]) }).createVcpu(0);
    const thread = fakeThread(vcpu, () => ({ ms: 5, late: false }));
    loop.vcpuThread = thread;
    const r = await loop.run(vcpu, { maxExits: 80 });
    expect(r.reason).toBe("max-exits");
    expect(thread.starts).toBe(80);
  });

  it("one entry the host delayed (30 ms, seen in the awaited wait) does not start the count again", async () => {
    const { loop, ports } = hotLoop();
    let n = 0;
    const vcpu = new FakeBackend([], { tail: () => io("out", 0xe9, 1, [++n & 0xff]) }).createVcpu(0);
    const thread = fakeThread(vcpu, (k) => (k === 10 ? { ms: 30, late: true } : { ms: 0, late: false }));
    loop.vcpuThread = thread;
    const r = await loop.run(vcpu, { maxExits: 300 });
    expect(r.reason).toBe("max-exits");
    // the 64 entries on the thread, the rest from the main thread, every exit handled in order
    expect(thread.starts).toBe(64);
    expect(loop.hotPhases).toBe(1);
    expect(loop.hotExits).toBe(300 - 64);
    expect(ports).toEqual(Array.from({ length: 300 }, (_, i) => (i + 1) & 0xff));
  });

  it("a hot phase outlasts two quiet slices and ends after the third", async () => {
    // `slow` slow entries make at most that many quiet slices, and at least slow - 1 (the slice the
    // first one lands in may have had its quick exits already)
    for (const slow of [2, 4]) {
      const { loop } = hotLoop();
      let n = 0;
      // hot entries from the main thread: 200 quick exits, then `slow` entries that only come
      // back at the slice's end (the watchdog's kick, here a 9 ms busy wait), then quick exits again
      const vcpu = new FakeBackend([], {
        tail: () => {
          n++;
          if (n > 200 && n <= 200 + slow) {
            busy(9);
            return intr();
          }
          return io("out", 0xe9, 1, [0]);
        },
      }).createVcpu(0);
      const thread = fakeThread(vcpu, () => ({ ms: 0, late: false }));
      loop.vcpuThread = thread;
      const r = await loop.run(vcpu, { maxExits: 400 });
      expect(r.reason).toBe("max-exits");
      if (slow === 2) expect(thread.starts).toBe(64);
      else expect(thread.starts).toBeGreaterThan(64);
    }
  });
});
