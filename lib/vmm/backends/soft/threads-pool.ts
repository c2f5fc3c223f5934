// The worker threads soft vCPUs run on, as the machine's thread keeps them: each worker is one
// logical processor (thread-worker.ts) and runs one vCPU at a time. With fewer workers than vCPUs
// the vCPUs move between them the VT-x way: VMCLEAR on the old processor (the VMCS written back to
// its region, which every worker maps), the rest of the vCPU's state as data, VMPTRLD on the new
// one. This is where they are placed: a vCPU that wants to run goes to the worker it is on when
// that worker is free and its time slice there is not over, else it waits its turn for a free
// worker; a worker's vCPU gives it up at the end of a slice when another waits (the worker looks at
// the queued word), and at once when it halts or waits for SIPI; a halted vCPU waits without a
// worker until an interrupt, INIT/SIPI/NMI or a kick makes it runnable. A vCPU whose last exit
// waits for its completion (an IN's data...) is pinned to its worker until it has entered again.
// A worker keeps the interpreters (compiled code) of a few vCPUs that left it (thread-worker.ts;
// SoftVcpuPool.keep), so a vCPU goes back to one of those when it is free (before any other free
// worker), and a worker that comes free goes to a waiting vCPU whose interpreter it keeps before
// the ones ahead of it in the queue, each of which is passed over at most `threads` times.

import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";
import type { SharedChunk } from "../../../vmx/host-memory.js";
import { evalWorkerArgv } from "../../kvm-worker.js";
import { waitForChange } from "../../wait-word.js";
import {
  CONTROL_WORDS,
  fromWire,
  IRQ_TAKEN,
  SLEEP_HALTED,
  SLEEP_HELD,
  SLEEP_NONE,
  W,
} from "./thread-protocol.js";
import type { PoolVcpuLink, PoolWorkerData } from "./threads-pool-protocol.js";
import { type ArriveMessage, type DepartedMessage, poolLayout } from "./threads-pool-protocol.js";
import type { SoftVcpuContext } from "./vcpu-context.js";

/** A vCPU's turn on a worker while others wait for one (a Linux CFS-like granularity). */
export const SLICE_MS = 4;

/** How long the machine's thread waits for a worker to hand a vCPU's state over. */
const HANDOVER_MS = 60_000;

/** Loads the worker module (url) in the new thread; a failure to load is reported as the thread failing. */
const WORKER_SOURCE = `
const { workerData } = require("node:worker_threads");
import(workerData.url).catch((e) => {
  const data = workerData.nodevmmSoftPool;
  data.port.postMessage({ t: "failed", error: { name: e && e.name || "Error", message: String(e && e.message || e) } });
  for (const l of data.links) {
    const words = new Int32Array(l.control, 0, ${CONTROL_WORDS});
    Atomics.add(words, ${W.FAILED}, 1);
    Atomics.notify(words, ${W.DONE});
  }
  const bell = new Int32Array(data.doorbell);
  Atomics.add(bell, 0, 1);
  Atomics.notify(bell, 0);
});
`;

/** What a vCPU of the pool is to it (SoftThreadVcpu's side of the placement). */
export interface PooledVcpu {
  readonly index: number;
  readonly words: Int32Array;
  /** an entry was started and waits for a worker: send its command (the vCPU is placed) */
  dispatchEntry(): void;
  /** an entry that waits for a worker ends without running (a kick): an "intr" exit */
  cancelEntry(): void;
  /** runs the vCPU until the completion its last exit waits for is applied (no guest instruction) */
  settleEntry(): void;
}

/** Thrown by the pool; threads.ts turns it into its own error class. */
export class PoolError extends Error {
  override name = "PoolError";
  /** a worker thread failed (to start, or outside any command): the message is its error */
  threadFailed = false;
}

function workerFailed(message: string, cause?: unknown): PoolError {
  const e = new PoolError(message, cause === undefined ? undefined : { cause });
  e.threadFailed = true;
  return e;
}

type Location =
  | { kind: "fresh" }
  | { kind: "on"; w: number }
  /** it left worker w: its state is (or soon will be) on the (w, vCPU) channel */
  | { kind: "left"; w: number }
  | { kind: "held"; ctx: SoftVcpuContext };

interface QueuedEntry {
  v: number;
  halted: boolean;
  passed: number;
}

export interface SoftVcpuPoolOptions {
  url: string;
  /** at most this many workers (undefined: one per vCPU) */
  threads: number | undefined;
  doorbell: SharedArrayBuffer;
  /** what every worker maps and knows, read when the workers start (the first call or run) */
  common: () => Pick<
    PoolWorkerData,
    "chunks" | "ram" | "eptp" | "ioBitmapA" | "ioBitmapB" | "msrBitmap" | "clock" | "interrupts" | "smp"
  >;
  /** each worker's own host-physical allocations begin here */
  firstHpa: (worker: number) => number;
}

/** A vCPU's own shared blocks, which the workers are given when they start. */
export interface PoolVcpuBlocks {
  control: SharedArrayBuffer;
  apicShadow: SharedArrayBuffer;
  vmcs: number;
}

export class SoftVcpuPool {
  /**
   * What each worker keeps of the vCPUs that ran on it while they are away (their interpreters:
   * decoded and compiled blocks), read as the workers start: at most `vcpus` interpreters, holding
   * at most `blocks` cached blocks in all (2^15: an interpreter starts its own cache over at 2^18
   * decoded instructions, 2^15 blocks of 8), the least recently used going first. vcpus 0: none (every arrival starts a new
   * interpreter, as before). Benchmarks change it.
   */
  static keep: { vcpus: number; blocks: number } = { vcpus: 8, blocks: 1 << 15 };

  readonly #opts: SoftVcpuPoolOptions;
  readonly #blocks: PoolVcpuBlocks[] = [];
  #started = false;
  threads = 0;
  oversubscribed = false;
  #n = 0;
  #layout!: ReturnType<typeof poolLayout>;
  #words!: Int32Array;
  readonly #bell: Int32Array;
  readonly #workers: Worker[] = [];
  readonly #control: MessagePort[] = [];
  /** the machine's ends of the (worker, vCPU) channels: #ports[w][v] */
  readonly #ports: MessagePort[][] = [];
  #loc: Location[] = [];
  #departedSeen: number[] = [];
  /** per worker: the vCPU whose state is there (-1 none), the one in an entry there (-1 none) */
  #resident: number[] = [];
  #running: number[] = [];
  /** per worker: when its vCPU's turn began (performance.now()) */
  #turnStart: number[] = [];
  /**
   * entries waiting for a worker, in order; "halted": also for an event that makes the vCPU
   * runnable; "passed": times a vCPU behind it took the worker it would have had (affinity)
   */
  #queue: QueuedEntry[] = [];
  #vcpus: PooledVcpu[] = [];
  /** host memory allocated on the machine's thread after the workers started (sent with arrivals) */
  readonly #extraChunks: SharedChunk[] = [];
  #failure: Error | undefined;
  #readyCount = 0;
  /** arrivals of a vCPU on a worker from another one (VMCLEAR there, VMPTRLD here) */
  migrations = 0;
  #closed = false;

  constructor(opts: SoftVcpuPoolOptions) {
    this.#opts = opts;
    this.#bell = new Int32Array(opts.doorbell);
  }

  /** a vCPU's blocks, before the workers start */
  add(index: number, blocks: PoolVcpuBlocks): void {
    if (this.#started) throw new PoolError("the vCPU workers are already running: no vCPU can join them");
    this.#blocks[index] = blocks;
  }

  /** the workers, started at the first use (every vCPU is created by then) */
  #start(): void {
    if (this.#started) return;
    this.#started = true;
    const opts = this.#opts;
    const n = this.#blocks.length;
    const t = Math.max(1, opts.threads ?? n);
    const common = opts.common();
    this.threads = t;
    this.#n = n;
    this.oversubscribed = t < n;
    this.#layout = poolLayout(t, n);
    const pool = new SharedArrayBuffer(this.#layout.words * 4);
    this.#words = new Int32Array(pool);
    this.#loc = Array.from({ length: n }, () => ({ kind: "fresh" }) as Location);
    this.#departedSeen = new Array<number>(n).fill(0);
    this.#resident = new Array<number>(t).fill(-1);
    this.#running = new Array<number>(t).fill(-1);
    this.#turnStart = new Array<number>(t).fill(0);
    for (let v = 0; v < n; v++) {
      Atomics.store(this.#words, this.#layout.host(v), -1);
      // no exit yet: nothing waits for a completion
      Atomics.store(this.#words, this.#layout.departable(v), 1);
    }
    for (let w = 0; w < t; w++) {
      const mine: MessagePort[] = [];
      const theirs: PoolVcpuLink[] = [];
      for (let v = 0; v < n; v++) {
        const { port1, port2 } = new MessageChannel();
        port1.unref();
        mine.push(port1);
        const b = this.#blocks[v]!;
        theirs.push({ control: b.control, apicShadow: b.apicShadow, port: port2, vmcs: b.vmcs });
      }
      this.#ports.push(mine);
      const { port1, port2 } = new MessageChannel();
      port1.unref();
      this.#control.push(port1);
      const data: PoolWorkerData = {
        ...common,
        worker: w,
        threads: t,
        vcpus: n,
        links: theirs,
        pool,
        port: port2,
        firstHpa: opts.firstHpa(w),
        doorbell: opts.doorbell,
        oversubscribed: this.oversubscribed,
        sliceMs: SLICE_MS,
        keep: { ...SoftVcpuPool.keep },
      };
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        execArgv: evalWorkerArgv(),
        workerData: { url: opts.url, nodevmmSoftPool: data },
        transferList: [port2, ...theirs.map((l) => l.port)],
      });
      worker.on("error", (e) => {
        this.#failure ??= workerFailed(e.message);
      });
      // parked, it must not keep the process alive (runs hold it: SoftVcpuThreads.begin)
      worker.unref();
      this.#workers.push(worker);
    }
  }

  /** the vCPUs, once created (SoftThreadVcpu registers itself) */
  attach(v: PooledVcpu): void {
    this.#vcpus[v.index] = v;
  }

  /** the worker failed (its error), or undefined */
  failure(): Error | undefined {
    if (!this.#failure && this.#started) {
      for (let w = 0; w < this.threads; w++) {
        const m = receiveMessageOnPort(this.#control[w]!)?.message as
          | { t: string; error?: { name: string; message: string; stack?: string } }
          | undefined;
        if (m?.t === "ready") this.#readyCount++;
        if (m?.t === "failed" && m.error) {
          const e = fromWire(m.error);
          this.#failure = workerFailed(`${e.name}: ${e.message}`, e);
        }
      }
    }
    return this.#failure;
  }

  get isReady(): boolean {
    this.#start();
    if (this.#readyCount < this.threads) this.failure();
    return this.#readyCount >= this.threads;
  }

  /** resolves once every worker serves commands; rejects when one cannot start */
  async ready(ms = 30_000): Promise<void> {
    this.#start();
    const end = performance.now() + ms;
    const keepAlive = setInterval(() => {}, 1000);
    try {
      for (;;) {
        if (this.failure()) throw this.#failure;
        if (this.isReady) return;
        if (performance.now() >= end) throw new PoolError("the soft vCPU workers did not start");
        await waitForChange(
          this.#words,
          this.#layout.ready,
          Atomics.load(this.#words, this.#layout.ready),
          5,
        );
      }
    } finally {
      clearInterval(keepAlive);
    }
  }

  /** ready(), blocking (a call made before createMachine awaited it) */
  readySync(ms = 60_000): void {
    this.#start();
    const end = performance.now() + ms;
    for (;;) {
      if (this.failure()) throw this.#failure;
      if (this.isReady) return;
      if (performance.now() >= end) throw new PoolError("the soft vCPU workers did not start");
      Atomics.wait(this.#words, this.#layout.ready, Atomics.load(this.#words, this.#layout.ready), 5);
    }
  }

  /** the channel of vCPU v on the worker it is on (or last was) */
  port(v: number): MessagePort {
    this.#start();
    const loc = this.#loc[v]!;
    const w = loc.kind === "on" || loc.kind === "left" ? loc.w : 0;
    return this.#ports[w]![v]!;
  }

  /** the worker vCPU v is on (-1: none) */
  workerOf(v: number): number {
    const loc = this.#loc[v];
    return loc?.kind === "on" ? loc.w : -1;
  }

  /** host memory the machine's thread allocated since the workers started */
  addChunks(chunks: readonly SharedChunk[]): void {
    for (const c of chunks) {
      if (!this.#extraChunks.some((x) => x.base === c.base)) this.#extraChunks.push(c);
    }
  }

  /** a command for vCPU v was posted: its worker looks */
  ring(v: number): void {
    const w = this.workerOf(v);
    if (w < 0) return;
    Atomics.add(this.#words, this.#layout.bell(w), 1);
    Atomics.notify(this.#words, this.#layout.bell(w));
  }

  /**
   * vCPU v (parked) on a worker for a call: the one it is on, else a free one (its vCPU leaves;
   * one whose last exit waits for its completion is settled first). Between runs every worker is free.
   */
  placeForCall(v: number): number {
    this.#start();
    const here = this.workerOf(v);
    if (here >= 0) return here;
    let w = this.#pickWorker(v, true);
    if (w < 0) {
      // a pinned vCPU on a free worker: its completion applied by an entry that runs nothing
      for (let x = 0; x < this.threads && w < 0; x++) {
        if (this.#running[x] !== -1) continue;
        const r = this.#resident[x]!;
        if (r < 0 || this.#queued(r)) continue;
        this.#vcpus[r]!.settleEntry();
        if (this.#departable(r)) w = x;
      }
    }
    if (w < 0) throw new PoolError(`no worker is free for vCPU ${v} (every one runs another vCPU)`);
    this.#moveTo(v, w);
    return w;
  }

  /**
   * vCPU v started an entry (SoftThreadVcpu.startEntry): on its worker at once when that is free
   * and its turn there goes on, else in the queue (a halted one also waits for an event).
   */
  entryWanted(v: number, unbounded: boolean): void {
    this.#start();
    const words = this.#vcpus[v]!.words;
    const sleep = Atomics.load(words, W.SLEEP);
    // a single bounded entry (a step, maxInstructions) is run, halted or not
    const halted = unbounded && this.oversubscribed && sleep !== SLEEP_NONE && sleep !== SLEEP_HELD;
    const here = this.workerOf(v);
    const state = Atomics.load(this.#words, this.#layout.departable(v));
    // a vCPU whose exit waits for its completion keeps its worker (no other could take it)
    const pinned = state === 0;
    if (
      !halted &&
      here >= 0 &&
      this.#running[here] === -1 &&
      (!unbounded ||
        !this.oversubscribed ||
        pinned ||
        this.#queue.length === 0 ||
        (state !== 2 && performance.now() - this.#turnStart[here]! < SLICE_MS))
    ) {
      this.#dispatch(v, here);
      return;
    }
    this.#queue.push({ v, halted, passed: 0 });
    this.schedule();
  }

  /**
   * Moves parked vCPU v to worker w (VMCLEAR where it is, VMPTRLD there), as the placement does
   * when its worker is taken: for tests and for pinning a vCPU by hand. False when w runs another vCPU.
   */
  moveVcpu(v: number, w: number): boolean {
    this.#start();
    if (!Number.isInteger(w) || w < 0 || w >= this.threads) {
      throw new PoolError(`worker ${w} does not exist (0 to ${this.threads - 1})`);
    }
    if (this.#running[w] !== -1 || this.#queued(v) || this.#running.includes(v)) return false;
    const from = this.workerOf(v);
    if (from === w) return true;
    if (from >= 0) {
      if (!this.#departable(v)) this.#vcpus[v]!.settleEntry();
      // it leaves its worker with nobody arriving there
      this.#loc[v] = { kind: "left", w: from };
      this.#resident[from] = -1;
      Atomics.store(this.#words, this.#layout.host(v), -1);
      Atomics.store(this.#words, this.#layout.evict(from), 1);
      Atomics.add(this.#words, this.#layout.bell(from), 1);
      Atomics.notify(this.#words, this.#layout.bell(from));
    }
    const r = this.#resident[w]!;
    if (r >= 0 && !this.#departable(r)) this.#vcpus[r]!.settleEntry();
    this.#moveTo(v, w);
    return true;
  }

  /** vCPU v's exit was taken: its worker is free */
  exitTaken(v: number): void {
    const w = this.workerOf(v);
    if (w >= 0 && this.#running[w] === v) this.#running[w] = -1;
  }

  /** vCPU v was kicked: an entry still waiting for a worker ends at once */
  kicked(v: number): void {
    const i = this.#queue.findIndex((q) => q.v === v);
    if (i < 0) return;
    this.#queue.splice(i, 1);
    this.#vcpus[v]!.cancelEntry();
    this.#publishQueued();
    Atomics.add(this.#bell, 0, 1);
    Atomics.notify(this.#bell, 0);
  }

  /**
   * entries waiting: those an event made runnable, on the free workers, in order; a worker the
   * next one would get without its interpreter goes first to one behind it whose interpreter that
   * worker keeps (and is on no worker), at most `threads` times for each entry passed over
   */
  schedule(): void {
    const queue = this.#queue;
    if (queue.length === 0) return;
    const placed = new Set<number>();
    for (let i = 0; i < queue.length; i++) {
      const q = queue[i]!;
      if (placed.has(i) || !this.#mayRun(q)) continue;
      const w = this.#pickWorker(q.v, false);
      if (w < 0) continue;
      let take = i;
      if (this.workerOf(q.v) !== w && !this.#keptOn(w, q.v) && q.passed < this.threads) {
        for (let j = i + 1; j < queue.length; j++) {
          const r = queue[j]!;
          if (placed.has(j) || this.workerOf(r.v) >= 0 || !this.#keptOn(w, r.v)) continue;
          if (!this.#mayRun(r)) continue;
          take = j;
          break;
        }
      }
      placed.add(take);
      this.#dispatch(queue[take]!.v, w);
      if (take !== i) {
        // q looks again at the workers left
        q.passed++;
        i--;
      }
    }
    if (placed.size > 0) this.#queue = queue.filter((_, i) => !placed.has(i));
    this.#publishQueued();
  }

  /** a queued entry may run now (a halted vCPU once an event woke it) */
  #mayRun(q: QueuedEntry): boolean {
    if (q.halted && !this.#woke(q.v)) return false;
    q.halted = false;
    return true;
  }

  /** worker w keeps vCPU v's interpreter from its last stay there (its compiled code) */
  #keptOn(w: number, v: number): boolean {
    return Atomics.load(this.#words, this.#layout.kept(w, v)) === 1;
  }

  /** the workers that keep vCPU v's interpreter (it ran there and left) */
  keptOn(v: number): number[] {
    this.#start();
    const at: number[] = [];
    for (let w = 0; w < this.threads; w++) if (this.#keptOn(w, v)) at.push(w);
    return at;
  }

  /** arrivals of vCPU v (every vCPU: undefined) that took up its interpreter kept on that worker */
  reusedInterpreters(v?: number): number {
    if (!this.#started) return 0;
    if (v !== undefined) return Atomics.load(this.#words, this.#layout.reused(v));
    let n = 0;
    for (let i = 0; i < this.#n; i++) n += Atomics.load(this.#words, this.#layout.reused(i));
    return n;
  }

  #publishQueued(): void {
    let n = 0;
    for (const q of this.#queue) if (!q.halted) n++;
    Atomics.store(this.#words, this.#layout.queued, n);
  }

  #queued(v: number): boolean {
    return this.#queue.some((q) => q.v === v);
  }

  /** a halted vCPU (or one waiting for SIPI) may run: a signal, a kick, or an interrupt it takes */
  #woke(v: number): boolean {
    const words = this.#vcpus[v]!.words;
    if (Atomics.load(words, W.SIGNALS) !== 0 || Atomics.load(words, W.STOP) !== 0) return true;
    const irq = Atomics.load(words, W.IRQ);
    return Atomics.load(words, W.SLEEP) === SLEEP_HALTED && irq !== 0 && (irq & IRQ_TAKEN) === 0;
  }

  #departable(v: number): boolean {
    return Atomics.load(this.#words, this.#layout.departable(v)) !== 0;
  }

  /**
   * A free worker for v: its own; else, one with no vCPU on it or whose vCPU waits for an event or
   * is parked before one whose vCPU waits for a turn, and among those first one that keeps v's
   * interpreter, then an empty one (the vCPU's first worker, v mod threads, first). Never one
   * whose vCPU's last exit waits for its completion (with `settle` left to the caller).
   */
  #pickWorker(v: number, _forCall: boolean): number {
    const here = this.workerOf(v);
    if (here >= 0) return this.#running[here] === -1 ? here : -1;
    let best = -1;
    let bestRank = 99;
    for (let k = 0; k < this.threads; k++) {
      const w = (v + k) % this.threads;
      if (this.#running[w] !== -1) continue;
      const r = this.#resident[w]!;
      let rank: number;
      if (r < 0) rank = 0;
      else if (!this.#departable(r)) continue;
      else {
        const q = this.#queue.find((x) => x.v === r);
        rank = q === undefined ? 1 : q.halted ? 1 : 2;
      }
      rank = (rank === 2 ? 4 : rank) + (this.#keptOn(w, v) ? 0 : 2);
      if (rank < bestRank) {
        best = w;
        bestRank = rank;
      }
    }
    return best;
  }

  #dispatch(v: number, w: number): void {
    if (this.workerOf(v) !== w) this.#moveTo(v, w);
    if (this.#running[w] !== v) this.#turnStart[w] = performance.now();
    this.#running[w] = v;
    // a turn that goes on past its slice (nobody waited) starts again
    if (performance.now() - this.#turnStart[w]! >= SLICE_MS) this.#turnStart[w] = performance.now();
    this.#vcpus[v]!.dispatchEntry();
  }

  /** v's state to worker w (the vCPU there leaves it) */
  #moveTo(v: number, w: number): void {
    const context = this.#contextOf(v);
    if (context !== "fresh") this.migrations++;
    const r = this.#resident[w]!;
    if (r >= 0) {
      this.#loc[r] = { kind: "left", w };
      Atomics.store(this.#words, this.#layout.host(r), -1);
    }
    const m: ArriveMessage = { op: "arrive", context, chunks: this.#extraChunks };
    this.#ports[w]![v]!.postMessage(m);
    this.#resident[w] = v;
    this.#loc[v] = { kind: "on", w };
    this.#turnStart[w] = performance.now();
    Atomics.store(this.#words, this.#layout.host(v), w);
  }

  /** what vCPU v (on no worker) arrives with: its state as it left its last worker */
  #contextOf(v: number): SoftVcpuContext | "fresh" {
    const loc = this.#loc[v]!;
    if (loc.kind === "fresh") return "fresh";
    if (loc.kind === "held") return loc.ctx;
    if (loc.kind === "on") throw new PoolError(`vCPU ${v} is on worker ${loc.w}`);
    const at = this.#layout.departed(v);
    const end = performance.now() + HANDOVER_MS;
    while (Atomics.load(this.#words, at) === this.#departedSeen[v]) {
      if (this.failure()) throw this.#failure;
      if (performance.now() >= end) throw new PoolError(`vCPU ${v}'s state did not leave worker ${loc.w}`);
      Atomics.wait(this.#words, at, this.#departedSeen[v]!, 50);
    }
    this.#departedSeen[v] = this.#departedSeen[v]! + 1;
    const m = receiveMessageOnPort(this.#ports[loc.w]![v]!)?.message as DepartedMessage | undefined;
    if (m?.t !== "departed") throw new PoolError(`vCPU ${v}'s state went missing leaving worker ${loc.w}`);
    if (m.error || !m.context) {
      throw new PoolError(`vCPU ${v} could not leave worker ${loc.w}: ${m.error?.message ?? "no state"}`);
    }
    this.#loc[v] = { kind: "held", ctx: m.context };
    return m.context;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const ports of this.#ports) for (const p of ports) p.close();
    for (const p of this.#control) p.close();
    for (const w of this.#workers) void w.terminate();
    this.#queue = [];
  }

  /** vCPUs per worker now (tests, the debugger's refusal) */
  get vcpuCount(): number {
    return this.#n;
  }
}
