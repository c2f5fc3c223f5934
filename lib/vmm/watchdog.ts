// A watchdog thread that kicks a vCPU out of KVM_RUN at a deadline. The main thread is blocked
// inside KVM_RUN while the guest runs, so its own timers cannot fire; a worker holding the vCPU's
// kick target ends the run as an "intr" exit: through the addon's kick() (callable from any
// thread), or with koffi by setting immediate_exit and signalling the vCPU thread itself
// (KOFFI_KICKER_SOURCE). Deadlines travel through shared memory; no message per entry.

import { Worker } from "node:worker_threads";
import type { KickTarget } from "../kvm/binding-api.js";
import { KOFFI_KICKER_SOURCE } from "../kvm/koffi-binding.js";
import { evalWorkerArgv } from "./kvm-worker.js";
import { startedWithin } from "./started-within.js";

export type { KickTarget } from "../kvm/binding-api.js";

/** how far the thread's clock may be from this one's (each thread has its own timeOrigin) */
const CLOCK_SKEW_MS = 1;
/** how long close() lets the thread end by itself (unmapping what it mapped) before terminating it */
const CLOSE_GRACE_MS = 1000;

// CommonJS source of the worker: waits on the shared sequence word until the deadline, then kicks.
const WORKER_SOURCE = `
const { workerData, parentPort } = require("node:worker_threads");
${KOFFI_KICKER_SOURCE}
function addonKicker(t) {
  const addon = require(t.addonPath);
  if (typeof addon.kick !== "function") throw new Error(t.addonPath + " has no kick()");
  return { kick: () => addon.kick(t.vcpuFd), close() {} };
}
const target = workerData.target;
const kicker = target.binding === "koffi" ? koffiKicker(target) : addonKicker(target);
parentPort.postMessage("ready");
const ctrl = new Int32Array(workerData.shared, 0, 2);
const deadline = new Float64Array(workerData.shared, 8, 1);
const now = () => performance.timeOrigin + performance.now();
for (;;) {
  if (Atomics.load(ctrl, 1) !== 0) break;
  const seq = Atomics.load(ctrl, 0);
  const d = deadline[0];
  if (d > 0 && now() >= d) {
    try {
      kicker.kick();
    } catch (e) {
      parentPort.postMessage("kick failed: " + (e && e.message));
    }
    parentPort.postMessage("kick");
    // wait for the next arm (or quit) rather than kicking again for the same deadline
    Atomics.wait(ctrl, 0, seq);
    continue;
  }
  Atomics.wait(ctrl, 0, seq, d > 0 ? Math.max(0.05, d - now()) : undefined);
}
kicker.close();
`;

export class Watchdog {
  readonly #shared = new SharedArrayBuffer(16);
  readonly #ctrl = new Int32Array(this.#shared, 0, 2);
  readonly #deadline = new Float64Array(this.#shared, 8, 1);
  readonly #worker: Worker;
  /** kicks the worker has delivered (counted as their messages arrive) */
  kicks = 0;
  /** the last problem the worker reported (failed start or kick) */
  lastError: string | undefined;
  readonly #ready: Promise<void>;
  readonly #exited: Promise<void>;

  constructor(target: KickTarget) {
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: evalWorkerArgv(),
      workerData: { shared: this.#shared, target },
    });
    let readyResolve: () => void = () => {};
    let readyReject: (e: Error) => void = () => {};
    this.#ready = new Promise<void>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    this.#worker.on("message", (m: string) => {
      if (m === "ready") readyResolve();
      else if (m === "kick") this.kicks++;
      else this.lastError = m;
    });
    // a failing watchdog only loses timeouts; the run itself goes on
    this.#worker.on("error", (e) => {
      this.lastError = e.message;
      readyReject(e);
    });
    this.#exited = new Promise<void>((resolve) => {
      this.#worker.on("exit", () => {
        readyReject(new Error(this.lastError ?? "the watchdog thread exited"));
        resolve();
      });
    });
    this.#worker.unref();
  }

  /** Resolves once the thread can kick (binding loaded, vCPU mapped); rejects if not (or after `ms`). */
  ready(ms = 10_000): Promise<void> {
    return startedWithin(this.#ready, ms, "the watchdog thread");
  }

  /** Kick at this absolute time (performance.timeOrigin + performance.now() milliseconds). */
  arm(deadlineMs: number): void {
    const armed = this.#deadline[0]!;
    this.#deadline[0] = deadlineMs;
    Atomics.add(this.#ctrl, 0, 1);
    // The thread sleeps until the armed deadline and reads the words again then, so a later
    // deadline, or none, needs no wake-up while that one is still ahead (the loop re-arms on
    // every guest entry: a wake-up each time costs a context switch per exit). After a kick the
    // thread sleeps until the next arm, but then the armed deadline has passed and it is woken.
    if (armed > 0 && (deadlineMs === 0 || deadlineMs >= armed) && armed > absoluteNow() + CLOCK_SKEW_MS)
      return;
    Atomics.notify(this.#ctrl, 0);
  }

  disarm(): void {
    this.arm(0);
  }

  async close(): Promise<void> {
    Atomics.store(this.#ctrl, 1, 1);
    Atomics.add(this.#ctrl, 0, 1);
    Atomics.notify(this.#ctrl, 0);
    // a koffi kicker unmaps its kvm_run on the way out; a mapping left behind would keep the vCPU
    // (and its VM) alive in the kernel until the process exits
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#exited,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_GRACE_MS);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    await this.#worker.terminate();
  }
}

export const absoluteNow = (): number => performance.timeOrigin + performance.now();
