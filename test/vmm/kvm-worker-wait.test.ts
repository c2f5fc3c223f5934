// The main thread waits for the vCPU thread's exits on a shared word. A notify that arrives without
// the word changing (the previous exit's notify, landing late) must not end the wait: when it did,
// the main thread read kvm_run while the guest was still in KVM_RUN and handled a port exit twice.

import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { waitForChange, waitForChangeSync } from "../../lib/vmm/kvm-worker.js";

// After `delay` ms: notify index 0 without changing it (a stale wake-up); after `later` ms more,
// bump it (the real answer) unless later < 0.
const NOTIFIER = `
const { workerData } = require("node:worker_threads");
const ctrl = new Int32Array(workerData.shared);
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
sleep(workerData.delay);
for (let i = 0; i < 5; i++) { Atomics.notify(ctrl, 0); sleep(2); }
Atomics.store(ctrl, 1, 1); // the stale notifies are out
if (workerData.later >= 0) { sleep(workerData.later); Atomics.add(ctrl, 0, 1); Atomics.notify(ctrl, 0); }
`;

function notifier(shared: SharedArrayBuffer, delay: number, later: number): Worker {
  return new Worker(NOTIFIER, { eval: true, workerData: { shared, delay, later } });
}

const finished = (w: Worker) => new Promise<void>((resolve) => w.once("exit", () => resolve()));

describe("waiting for the vCPU thread's exit word", () => {
  it("sync: stale notifies do not end the wait; the change does", async () => {
    const shared = new SharedArrayBuffer(8);
    const ctrl = new Int32Array(shared);
    const w = notifier(shared, 20, 20);
    expect(waitForChangeSync(ctrl, 0, 0, 30_000)).toBe(true);
    // it returned because of the change, which comes only after every stale notify
    expect(Atomics.load(ctrl, 1)).toBe(1);
    expect(Atomics.load(ctrl, 0)).toBe(1);
    await finished(w);
  });

  it("sync: stale notifies alone end in a timeout (false)", async () => {
    const shared = new SharedArrayBuffer(8);
    const ctrl = new Int32Array(shared);
    const w = notifier(shared, 10, -1);
    // every wait while the stale notifies arrive times out
    let woke = false;
    while (Atomics.load(ctrl, 1) === 0 && !woke) woke = waitForChangeSync(ctrl, 0, 0, 5);
    expect(woke).toBe(false);
    expect(waitForChangeSync(ctrl, 0, 0, 5)).toBe(false);
    await finished(w);
  });

  it("async: stale notifies do not resolve the wait; the change does", async () => {
    const shared = new SharedArrayBuffer(8);
    const ctrl = new Int32Array(shared);
    const w = notifier(shared, 20, 20);
    expect(await waitForChange(ctrl, 0, 0, 30_000)).toBe(true);
    expect(Atomics.load(ctrl, 1)).toBe(1);
    await finished(w);
  });

  it("a word that already differs answers at once; a zero budget with no change is false", async () => {
    const ctrl = new Int32Array(new SharedArrayBuffer(8));
    ctrl[0] = 7;
    expect(waitForChangeSync(ctrl, 0, 3, 0)).toBe(true);
    expect(await waitForChange(ctrl, 0, 3, 0)).toBe(true);
    expect(waitForChangeSync(ctrl, 0, 7, 0)).toBe(false);
    expect(await waitForChange(ctrl, 0, 7, 0)).toBe(false);
  });
});
