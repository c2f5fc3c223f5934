// The vCPU thread of async KVM runs: a worker owns KVM_RUN for one vCPU so that `await vm.run()`
// leaves the main thread's event loop free while the guest runs. Per exit the worker bumps a shared
// word and parks; the main thread reads the exit from its own mapping of the same kvm_run (no copy),
// handles it, and releases the worker for the next entry. Nothing travels by message per exit.
//
// The addon's run() records the calling thread as the vCPU's, so the addon's kick() (stop(),
// timeouts, the periodic halt check) signals this worker while it is in KVM_RUN, whichever thread
// calls it. Register ioctls from the main thread happen only while the worker is parked.
//
// The hand-over per exit is what async runs cost over sync ones (0.13-0.3x the sync rate in the
// 1-CPU nested-KVM lane). There the cost is not the wake-up itself (an Atomics ping-pong between
// two threads takes 32 us) but taking the CPU from a thread with a loaded vCPU and giving it back
// (hundreds of us: a bare KVM_RUN loop with one idle ping-pong per exit ran at 2-7k exits/s against
// 17k without). ExitLoop.hotEntry lets the main thread enter a guest that exits hot itself instead
// (0.7-1.2x the sync rate there), paying an RCU grace period per switch of threads (see there).

import { constants } from "node:os";
import { Worker } from "node:worker_threads";
import { KvmError } from "../kvm/errors.js";
import { startedWithin } from "./started-within.js";
import { waitForChange, waitForChangeSync } from "./wait-word.js";

/** shared words: REQ is bumped by the main thread per entry, DONE by the worker per exit */
const REQ = 0;
const DONE = 1;
const RESULT = 2;
const QUIT = 3;
/** RESULT of a run() that threw without an errno */
const NO_ERRNO = -1_000_000;

// CommonJS source of the worker. RESULT: 1 the guest exited, 0 interrupted, < 0 -errno.
const WORKER_SOURCE = `
const { workerData, parentPort } = require("node:worker_threads");
const addon = require(workerData.addonPath);
if (typeof addon.run !== "function") throw new Error(workerData.addonPath + " has no run()");
const ctrl = new Int32Array(workerData.shared);
const bell = workerData.doorbell ? new Int32Array(workerData.doorbell) : undefined;
const fd = workerData.vcpuFd;
let seen = Atomics.load(ctrl, ${REQ});
parentPort.postMessage("ready");
const spinUntil = (ms) => {
  const end = performance.now() + ms;
  do {
    for (let i = 0; i < 64; i++) if (Atomics.load(ctrl, ${REQ}) !== seen) return;
  } while (performance.now() < end);
};
for (;;) {
  // the main thread usually answers within microseconds: spinning briefly saves a sleep and a
  // cross-CPU wake-up (costly, especially in a nested guest) per exit
  spinUntil(workerData.spinMs);
  Atomics.wait(ctrl, ${REQ}, seen);
  if (Atomics.load(ctrl, ${QUIT}) !== 0) break;
  const req = Atomics.load(ctrl, ${REQ});
  if (req === seen) continue;
  seen = req;
  let result;
  try {
    result = addon.run(fd) ? 1 : 0;
  } catch (e) {
    result = e && typeof e.errno === "number" && e.errno < 0 ? e.errno : ${NO_ERRNO};
    parentPort.postMessage("KVM_RUN failed: " + (e && e.message));
  }
  Atomics.store(ctrl, ${RESULT}, result);
  Atomics.add(ctrl, ${DONE}, 1);
  Atomics.notify(ctrl, ${DONE});
  if (bell) {
    Atomics.add(bell, 0, 1);
    Atomics.notify(bell, 0);
  }
}
`;

/**
 * Worker options for the CommonJS sources evaluated here: workers inherit the process's execArgv,
 * and under `node --input-type=module` an eval'd worker would be parsed as ESM (no require).
 */
export function evalWorkerArgv(): string[] {
  const out: string[] = [];
  const args = process.execArgv;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith("--input-type=")) continue;
    if (a === "--input-type") {
      i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

/**
 * Optional key of a VcpuThreadTarget: whether the vCPU has exits queued (coalesced writes, see
 * KvmVcpu.run), in which case an entry is answered from the queue without waking the thread.
 */
export const PENDING_EXIT = Symbol("nodevmm.pendingExit");

export interface VcpuThreadTarget {
  [PENDING_EXIT]?: () => boolean;
  /** the thread runs KVM_RUN through the addon only: a koffi target is refused (ready() rejects) */
  binding?: "addon" | "koffi";
  addonPath: string;
  vcpuFd: number;
  /** how long each side spins for the other's answer before it sleeps (default: see spinMsDefault) */
  spinMs?: number;
  /**
   * SMP (kvm-threads.ts): an Int32 word the thread also bumps and notifies after each exit, shared
   * by every vCPU's thread, so that one wait on it wakes the main thread for an exit of any vCPU
   */
  doorbell?: SharedArrayBuffer;
}

/**
 * No spinning by default: measured with bench/exit-loop on a 2-core host shared with other work,
 * any spin (10-50 us) lowered async exits/s, the spinning thread taking the core the other needs.
 * In the 1-CPU nested-KVM lane a spin only delays the thread it waits for (bench/exit-loop/
 * handover.js: 32 us per round trip without spinning, 38-50 us with a 20 us spin on one side, 94
 * on both), and with 2 CPUs in that lane on a loaded host a 20-200 us spin gained nothing either.
 * NODEVMM_VCPU_SPIN_MS sets it, read when the thread starts (bench/exit-loop's spin columns).
 */
const spinMsDefault = (): number => Number(process.env.NODEVMM_VCPU_SPIN_MS ?? 0) || 0;

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

export { waitForChange, waitForChangeSync };

export class KvmRunWorker {
  readonly #shared = new SharedArrayBuffer(16);
  readonly #ctrl = new Int32Array(this.#shared);
  readonly #worker: Worker | undefined;
  readonly #ready: Promise<void>;
  readonly #fd: number;
  readonly #spinMs: number;
  /** DONE as it was when the entry in progress started */
  #doneAt = 0;
  readonly #pending: (() => boolean) | undefined;
  /** the entry in progress was answered from the vCPU's queue: the thread was not asked */
  #local = false;
  #inRun = false;
  #keepAlive: NodeJS.Timeout | undefined;
  #closed = false;
  #exited = false;
  /** the last problem the worker reported */
  lastError: string | undefined;

  constructor(target: VcpuThreadTarget) {
    this.#fd = target.vcpuFd;
    this.#spinMs = target.spinMs ?? spinMsDefault();
    this.#pending = target[PENDING_EXIT];
    if (target.binding !== undefined && target.binding !== "addon") {
      // koffi's run state lives in the thread that loaded it: the machine runs KVM_RUN on its own
      // thread then (bounded by the watchdog), so refuse here rather than start a useless thread
      this.#worker = undefined;
      this.#exited = true;
      this.lastError = `the vCPU thread needs the addon binding, not ${target.binding}`;
      this.#ready = Promise.reject(new Error(this.lastError));
      this.#ready.catch(() => {});
      return;
    }
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: evalWorkerArgv(),
      workerData: {
        shared: this.#shared,
        addonPath: target.addonPath,
        vcpuFd: target.vcpuFd,
        spinMs: this.#spinMs,
        doorbell: target.doorbell,
      },
    });
    let readyResolve: () => void = () => {};
    let readyReject: (e: Error) => void = () => {};
    this.#ready = new Promise<void>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    this.#worker.on("message", (m: string) => {
      if (m === "ready") readyResolve();
      else this.lastError = m;
    });
    this.#worker.on("error", (e) => {
      this.lastError = e.message;
      readyReject(e);
    });
    this.#worker.on("exit", () => {
      this.#exited = true;
      readyReject(new Error(this.lastError ?? "the vCPU thread exited"));
    });
    // parked between runs it must not keep the process alive (see begin())
    this.#worker.unref();
  }

  /** Resolves once the thread has loaded the addon; rejects if it cannot (or takes over `ms`). */
  ready(ms = 10_000): Promise<void> {
    return startedWithin(this.#ready, ms, "the vCPU thread");
  }

  get closed(): boolean {
    return this.#closed || this.#exited;
  }

  /**
   * A run starts / ends. A pending Atomics.waitAsync does not keep Node alive, and the thread may
   * leave mid-run (close()), so a timer holds the event loop open while a run waits on an exit.
   */
  begin(): void {
    this.#keepAlive ??= setInterval(() => {}, 1 << 30);
  }
  end(): void {
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
  }

  /** Lets the worker enter the guest (KVM_RUN) once. */
  start(): void {
    if (this.closed) throw new Error("the vCPU thread is closed");
    if (this.#inRun) throw new Error("the vCPU thread is already in a run");
    this.#inRun = true;
    this.#local = this.#pending?.() === true;
    if (this.#local) return;
    this.#doneAt = Atomics.load(this.#ctrl, DONE);
    Atomics.add(this.#ctrl, REQ, 1);
    Atomics.notify(this.#ctrl, REQ);
  }

  /** Whether the entry has ended, blocking this thread at most `ms` (a short spin for fast exits). */
  poll(ms: number): boolean {
    if (this.#local) return true;
    const end = performance.now() + Math.min(ms, this.#spinMs);
    do {
      for (let i = 0; i < 64; i++) if (Atomics.load(this.#ctrl, DONE) !== this.#doneAt) return true;
    } while (performance.now() < end);
    return waitForChangeSync(this.#ctrl, DONE, this.#doneAt, ms - this.#spinMs);
  }

  /** Whether an entry is in progress: start() was called and take() not yet. */
  get inRun(): boolean {
    return this.#inRun;
  }

  /** Whether the entry in progress has ended (without waiting). */
  ended(): boolean {
    return this.#local || Atomics.load(this.#ctrl, DONE) !== this.#doneAt;
  }

  /** Resolves true when the entry has ended, false after `ms` without blocking the event loop. */
  wait(ms: number): Promise<boolean> {
    if (this.#local) return Promise.resolve(true);
    return waitForChange(this.#ctrl, DONE, this.#doneAt, ms);
  }

  /** The ended entry's outcome: true the guest exited, false interrupted; throws a KvmError on failure. */
  take(): boolean {
    if (!this.#inRun) throw new Error("no entry in progress");
    this.#inRun = false;
    if (this.#local) {
      this.#local = false;
      return true; // the vCPU answers from its queue whatever this says
    }
    const r = Atomics.load(this.#ctrl, RESULT);
    if (r >= 0) return r === 1;
    const code = r === NO_ERRNO ? "EUNKNOWN" : (errnoNames.get(-r) ?? "EUNKNOWN");
    throw new KvmError(this.lastError ?? `ioctl KVM_RUN failed (${code})`, code, r, "ioctl", "KVM_RUN");
  }

  /**
   * Blocks until the entry in progress (if any) has ended, at most `ms`: after close() and a kick,
   * so that guest memory is unmapped only once the vCPU is out of the guest. False on timeout.
   */
  waitOut(ms: number): boolean {
    if (!this.#inRun || this.#local || this.#exited) return true;
    return waitForChangeSync(this.#ctrl, DONE, this.#doneAt, ms);
  }

  /**
   * Ends the thread: it leaves at once when parked, after its KVM_RUN otherwise (the caller kicks
   * the vCPU first). Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#ctrl, QUIT, 1);
    Atomics.add(this.#ctrl, REQ, 1);
    Atomics.notify(this.#ctrl, REQ);
    this.#worker?.unref();
  }

  get vcpuFd(): number {
    return this.#fd;
  }
}
