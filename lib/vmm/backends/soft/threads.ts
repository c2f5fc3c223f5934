// The machine's side of soft vCPUs that run in worker threads (thread-worker.ts). SoftThreadVcpu is
// the VcpuBackend the machine holds: its calls go to the parked thread and wait for the answer; its
// entries are started and taken by SoftVcpuThreads, the VcpuThreads the loop's thread runner drives
// (loop-threads.ts, as for KVM's vCPU threads). While an entry runs, the thread may ask for what
// lives here (an interrupt's vector, APIC registers): those requests are answered whenever this
// thread looks at the vCPU (ended(), and every wait for a call's answer).

import { type MessagePort, receiveMessageOnPort } from "node:worker_threads";
import { LocalApic } from "../../../devices/lapic.js";
import { VmmError } from "../../../types/errors.js";
import type { VmExit } from "../../../types/exits.js";
import type { Regs, SpecialRegs } from "../../../types/regs.js";
import type { SharedChunk } from "../../../vmx/host-memory.js";
import type { ApicMsrAccess, CpuSignal, InterruptController, VcpuBackend } from "../../backend.js";
import type { MachineClock } from "../../clock.js";
import { DoorbellThreads } from "../../doorbell.js";
import * as vmmErrors from "../../errors.js";
import type { VcpuThreads } from "../../loop-threads.js";
import { TSC_HZ } from "./cpuid.js";
import type { ArchVcpuState, SoftSavedState, SoftVcpuState } from "./saved-state.js";
import { readFastExit, UNBOUNDED, writeFastRun } from "./thread-codec.js";
import {
  APIC_BASE_I64,
  APIC_SHADOW,
  APIC_SHADOWED_REGS,
  bump,
  CONTROL_WORDS,
  type Command,
  type Completion,
  type EntryLimits,
  F64_RETIRED,
  fromWire,
  IRQ_ASK,
  IRQ_EOIS_MASK,
  IRQ_EOIS_SHIFT,
  IRQ_FAST,
  IRQ_TAKEN,
  type RequestOp,
  SIGNAL_INIT,
  SIGNAL_NMI,
  SIGNAL_SIPI,
  SLEEP_FOR_GOOD,
  SLEEP_HELD,
  SLEEP_NONE,
  TSC_OFFSET_I64,
  W,
  type WorkerMessage,
} from "./thread-protocol.js";
import { PoolError, type PooledVcpu, type SoftVcpuPool } from "./threads-pool.js";

const APIC_BASE_MSR = 0x1b;
/** IA32_APIC_BASE.EXTD (x2APIC mode) */
const APIC_EXTD = 1n << 10n;

/** How long an INIT, SIPI or NMI's sender waits for a running target to take it (see signal). */
const SIGNAL_WAIT_MS = 1000;

/** A thread that has not answered for this long is taken for dead (its error, if any, is reported). */
const CALL_TIMEOUT_MS = 60_000;

/** A soft vCPU's thread failed to start, stopped answering, or was used out of turn. */
export class SoftVcpuThreadError extends VmmError {
  override name = "SoftVcpuThreadError";
  override readonly code: string = "ERR_VMM_VCPU_THREAD";
}

/** the pool's error, as one of nodevmm's */
function asThreadError(index: number, e: unknown): Error {
  if (!(e instanceof PoolError)) return e as Error;
  const message = e.threadFailed
    ? `vCPU ${index}'s thread failed: ${e.message}`
    : `vCPU ${index}: ${e.message}`;
  return new SoftVcpuThreadError(message, { cause: e.cause ?? e });
}

/** an entry that ended without running (kicked while it waited for a worker): a host interrupt */
const QUEUED_INTR: VmExit = {
  kind: "intr",
  raw: {
    backend: "soft",
    reason: 1,
    exitReasonField: 1,
    qualification: 0n,
    instructionLength: 0,
  },
};

type Prepared = { completion: Completion | undefined; limits: EntryLimits };

/** What the machine's thread keeps of a vCPU whose thread starts (SoftBackend.createVcpu). */
export interface SoftThreadVcpuOptions {
  /** the workers it runs on (one logical processor each) */
  pool: SoftVcpuPool;
  /** its control block and APIC shadow (the pool's workers were given them) */
  control: SharedArrayBuffer;
  apicShadow: SharedArrayBuffer;
  eptp: bigint;
  index: number;
  clock: MachineClock | undefined;
  /** this CPU's view of the interrupt controller (its own local APIC) */
  interrupts: InterruptController | undefined;
  /** the interrupt state may have changed (an APIC register was written): look at every vCPU */
  onChange: () => void;
}

export class SoftThreadVcpu implements VcpuBackend, PooledVcpu {
  readonly index: number;
  readonly #words: Int32Array;
  readonly #wide: BigInt64Array;
  readonly #floats: Float64Array;
  readonly #pool: SoftVcpuPool;
  /** an entry started and not yet sent to a worker (it waits for one) */
  #prepared: Prepared | undefined;
  /** the entry's command went to a worker (its exit comes from there) */
  #onWorker = false;
  /** an exit the pool made without a worker (kicked while waiting for one) */
  #synthetic: VmExit | undefined;
  /** the completion of an exit whose next entry was cancelled: it goes with the next one */
  #carried: Completion | undefined;
  readonly #irq: InterruptController | undefined;
  readonly #onChange: () => void;
  #cmd = 0;
  #exitsTaken = 0;
  #replied = 0;
  #inEntry = false;
  #inCall = false;
  /** budget and deadline set since the last entry (sent with the next command) */
  #entryLimits: EntryLimits = {};
  #lastExit: VmExit | undefined;
  #closed = false;
  #failure: Error | undefined;
  /** the registers the thread reads without an exit (APIC_SHADOW), when the CPU's APIC is a LocalApic */
  readonly #shadow: Int32Array;
  readonly #lapic: LocalApic | undefined;
  /** EOIs of the thread's (APIC_SHADOW.EOIS) applied so far */
  #eoisApplied = 0;
  readonly #eptp: bigint;

  constructor(opts: SoftThreadVcpuOptions) {
    this.index = opts.index;
    const control = opts.control;
    this.#pool = opts.pool;
    this.#words = new Int32Array(control, 0, CONTROL_WORDS);
    this.#wide = new BigInt64Array(control);
    this.#floats = new Float64Array(control);
    this.#irq = opts.interrupts;
    this.#onChange = opts.onChange;
    this.#eptp = opts.eptp;
    this.#shadow = new Int32Array(opts.apicShadow);
    const lapic = opts.interrupts?.apicMsrs;
    this.#lapic = lapic instanceof LocalApic ? lapic : undefined;
    if (this.#lapic) this.#lapic.settle = () => this.#settle();
    this.#pool.attach(this);
    // IA32_APIC_BASE at reset (SoftVcpu's), until its worker publishes it: the local APIC asks
    // whether it is enabled before the vCPU has ever run (an INIT/SIPI sent to it)
    this.#wide[APIC_BASE_I64] = BigInt(opts.index === 0 ? 0xfee00900 : 0xfee00800);
    const apic = this.#irq?.apicMsrs;
    if (apic && opts.clock) {
      // TSC-deadline mode compares against the CPU's TSC: the clock's, plus the offset the guest's
      // IA32_TSC writes gave it (published by the thread at every exit and request)
      const clock = opts.clock;
      const perNs = TSC_HZ / 1e9;
      apic.tsc = {
        read: () =>
          BigInt.asUintN(64, BigInt(Math.floor(clock.nowNs() * perNs)) + this.#wide[TSC_OFFSET_I64]!),
        hz: TSC_HZ,
      };
    }
  }

  /** the words of its control block (the pool reads the sleep, signal and interrupt words) */
  get words(): Int32Array {
    return this.#words;
  }

  /** its channel on the worker it is on */
  get #port(): MessagePort {
    return this.#pool.port(this.index);
  }

  /** resolves once the workers serve commands; rejects when one cannot start */
  async ready(ms = 30_000): Promise<void> {
    try {
      await this.#pool.ready(ms);
    } catch (e) {
      this.#failure ??= asThreadError(this.index, e);
      throw this.#failure;
    }
  }

  #failed(): Error {
    this.#failure ??= asThreadError(
      this.index,
      this.#pool.failure() ?? new PoolError(`vCPU ${this.index}'s thread failed`),
    );
    return this.#failure;
  }

  get closed(): boolean {
    return (
      this.#closed ||
      this.#failure !== undefined ||
      this.#pool.closed ||
      Atomics.load(this.#words, W.FAILED) !== 0
    );
  }

  get inEntry(): boolean {
    return this.#inEntry;
  }

  #send(cmd: Command): void {
    if (this.#closed) throw new SoftVcpuThreadError(`vCPU ${this.index} is closed`);
    if (this.closed) throw this.#failed();
    try {
      // a call before ready() resolved (createMachine awaits it; tests that build backends may not)
      if (!this.#pool.isReady) this.#pool.readySync(CALL_TIMEOUT_MS);
      // a run was placed by the pool (dispatchEntry); a call goes where the vCPU is, or is moved to
      if (cmd.op === "call") this.#pool.placeForCall(this.index);
    } catch (e) {
      throw asThreadError(this.index, e);
    }
    // a run in the block's words where it fits (thread-codec.ts), else a message
    const fast = cmd.op === "run" && writeFastRun(this.#words, cmd.completion, cmd.limits);
    Atomics.store(this.#words, W.CMD_FAST, fast ? 1 : 0);
    if (!fast) this.#port.postMessage(cmd);
    this.#cmd = bump(this.#words, W.CMD);
    this.#pool.ring(this.index);
  }

  /** a call on the parked vCPU: its answer, or its error */
  call(name: string, ...args: unknown[]): unknown {
    if (this.#inEntry) throw new SoftVcpuThreadError(`vCPU ${this.index} is in the guest (${name})`);
    // a request of the thread's, answered here, that calls back into the vCPU
    if (this.#inCall) throw new SoftVcpuThreadError(`vCPU ${this.index} is busy with a call (${name})`);
    this.#inCall = true;
    try {
      return this.#call(name, args);
    } finally {
      this.#inCall = false;
    }
  }

  #call(name: string, args: unknown[]): unknown {
    const limits = this.#entryLimits;
    this.#entryLimits = {};
    this.#send({ op: "call", name, args, limits });
    const end = performance.now() + CALL_TIMEOUT_MS;
    for (;;) {
      this.serve();
      const done = Atomics.load(this.#words, W.DONE);
      if (done === this.#cmd) break;
      if (this.closed) throw this.#failed();
      const left = end - performance.now();
      if (left <= 0) throw new SoftVcpuThreadError(`vCPU ${this.index} did not answer ${name}`);
      Atomics.wait(this.#words, W.DONE, done, Math.min(left, 1000));
    }
    const m = receiveMessageOnPort(this.#port)?.message as WorkerMessage | undefined;
    if (m?.t !== "reply") throw new SoftVcpuThreadError(`vCPU ${this.index}: no answer to ${name}`);
    if (m.error) throw fromWire(m.error, "", vmmErrors);
    return m.ok;
  }

  /** Answers the thread's requests (interrupt acknowledge, APIC registers) that wait. */
  serve(): void {
    for (;;) {
      const asked = Atomics.load(this.#words, W.REQUEST);
      // what the thread did without asking before it asked (read after the request word, which
      // it bumps after them) is applied before the request
      this.#settle();
      if (asked === this.#replied) return;
      const m = receiveMessageOnPort(this.#port)?.message as WorkerMessage | undefined;
      if (m?.t !== "request") throw new SoftVcpuThreadError(`vCPU ${this.index}: a request went missing`);
      let reply: WorkerMessage;
      try {
        reply = { t: "reply", ok: this.#answer(m.op, m.args) };
      } catch (e) {
        reply = { t: "reply", error: { name: (e as Error).name, message: (e as Error).message } };
      }
      this.publishApic();
      this.#port.postMessage(reply);
      this.#replied = (this.#replied + 1) | 0;
      Atomics.store(this.#words, W.REPLIED, this.#replied);
      Atomics.notify(this.#words, W.REPLIED);
    }
  }

  /**
   * Copies the APIC registers the thread reads itself (APIC_SHADOWED_REGS) into the shadow: before
   * every entry, after every request it made and exit of any vCPU (sync), and before an INIT is
   * posted, i.e. before the thread can run on after anything that changes them.
   */
  publishApic(): void {
    this.#settle();
    const apic = this.#lapic;
    const shadow = this.#shadow;
    // the page is the machine's once the APIC is attached (the LapicPage on its MMIO bus)
    const attached = apic?.attached === true;
    Atomics.store(shadow, APIC_SHADOW.POST, attached ? 1 : 0);
    Atomics.store(shadow, APIC_SHADOW.X2APIC, attached && apic!.x2apic ? 1 : 0);
    if (!attached || apic!.x2apic) {
      Atomics.store(shadow, APIC_SHADOW.VALID, 0);
      return;
    }
    for (const reg of APIC_SHADOWED_REGS) Atomics.store(shadow, reg >> 4, apic!.peekRegister(reg));
    Atomics.store(shadow, APIC_SHADOW.BASE, apic!.ranges[0]!.base | 0);
    Atomics.store(shadow, APIC_SHADOW.VALID, 1);
  }

  /**
   * What the thread did without asking, applied in its order: the EOIs it posted, and the vector it
   * took (W.IRQ taken) after the first of them; then every vCPU's pending word is looked at again
   */
  #settle(): void {
    const apic = this.#lapic;
    if (!apic) return;
    // the word first: the EOIs it counts were posted before it, so EOIS (read next) holds them
    const w = Atomics.load(this.#words, W.IRQ);
    const posted = Atomics.load(this.#shadow, APIC_SHADOW.EOIS);
    const taken = (w & IRQ_TAKEN) !== 0;
    if (!taken && posted === this.#eoisApplied) return;
    if (taken) {
      const before = (w >>> IRQ_EOIS_SHIFT) & IRQ_EOIS_MASK;
      while ((this.#eoisApplied & IRQ_EOIS_MASK) !== before) this.#eoi(apic);
      // a vector an INIT took back meanwhile stays taken back (the CPU is reset anyway)
      apic.acknowledgeVector(w & 0xff);
      // only this thread changes a taken word; syncInterrupt publishes the next
      Atomics.store(this.#words, W.IRQ, 0);
    }
    while (this.#eoisApplied !== posted) this.#eoi(apic);
    // a lower vector may now be above the PPR; a level-triggered one's I/O APIC entry may send again
    this.#onChange();
  }

  #eoi(apic: LocalApic): void {
    this.#eoisApplied = (this.#eoisApplied + 1) | 0;
    apic.eoi();
  }

  /** W.IRQ as this CPU's controller has it now (see W.IRQ) */
  #pendingWord(): number {
    const irq = this.#irq;
    if (irq?.hasInterrupt() !== true) return 0;
    // the local APIC's vector may be taken at once; the 8259's is decided by its INTA
    const next = this.#lapic ? (irq as { nextApicVector?: () => number }).nextApicVector?.() : undefined;
    return next !== undefined && next >= 0 ? IRQ_FAST | next : IRQ_ASK;
  }

  #answer(op: RequestOp, args: unknown[]): unknown {
    const irq = this.#irq;
    const apic: ApicMsrAccess | undefined = irq?.apicMsrs;
    switch (op) {
      case "acknowledge": {
        const vector = irq!.acknowledge();
        this.#onChange();
        return vector;
      }
      case "tpr-get":
        return irq!.taskPriority!.get();
      case "tpr-set":
        irq!.taskPriority!.set(args[0] as number);
        this.#onChange();
        return undefined;
      case "apic-attached":
        return apic?.attached ?? false;
      case "apic-x2apic":
        return apic?.x2apic ?? false;
      case "apic-set-x2apic":
        apic!.setX2apic(args[0] as boolean);
        return undefined;
      case "apic-read-msr":
        return apic!.readMsr(args[0] as number);
      case "apic-write-msr": {
        const ok = apic!.writeMsr(args[0] as number, args[1] as bigint);
        this.#onChange();
        return ok;
      }
    }
  }

  /** Makes the pending-interrupt word what this CPU's controller says; true when it rose. */
  syncInterrupt(): boolean {
    this.publishApic();
    for (;;) {
      const want = this.#pendingWord();
      const had = Atomics.load(this.#words, W.IRQ);
      // the thread took the vector since: applied first, then looked at again
      if ((had & IRQ_TAKEN) !== 0) {
        this.#settle();
        continue;
      }
      if (want === had) return false;
      // the thread may take a published vector at any moment: the word changes only from what it was
      if (Atomics.compareExchange(this.#words, W.IRQ, had, want) !== had) continue;
      const rose = had === 0 && want !== 0;
      // a thread halted in the guest sleeps on the kick word: let it look again; one running the
      // guest looks at its next poll
      if (rose && this.#inEntry) this.#nudge();
      else Atomics.notify(this.#words, W.KICK);
      return rose;
    }
  }

  /**
   * Lets the guest run until its next exit (take it with takeExit once exitReady). `unbounded`: the
   * entry has no instruction budget and no host-time bound (runs of SoftVcpuThreads, which kick the
   * vCPU when the run must end or an interrupt arrives), so that a guest that never exits runs on
   * while this thread is busy.
   */
  startEntry(unbounded = false): void {
    if (this.#closed) throw new SoftVcpuThreadError(`vCPU ${this.index} is closed`);
    if (this.closed) throw this.#failed();
    const e = this.#lastExit as {
      kind?: string;
      direction?: string;
      write?: boolean;
      data?: Uint8Array;
      ret?: bigint;
    };
    let completion: Completion | undefined = this.#carried;
    this.#carried = undefined;
    if (e?.kind === "io" && e.direction === "in") completion = { data: e.data! };
    else if (e?.kind === "mmio" && !e.write) completion = { data: e.data! };
    else if (e?.kind === "hypercall") completion = { ret: e.ret! };
    this.#lastExit = undefined;
    // the APIC may have changed while the vCPU was parked (a snapshot restored, a reset)
    this.syncInterrupt();
    const limits = unbounded ? UNBOUNDED : this.#entryLimits;
    this.#entryLimits = {};
    this.#prepared = { completion, limits };
    this.#inEntry = true;
    // on its worker now, or when one is free (dispatchEntry)
    try {
      this.#pool.entryWanted(this.index, unbounded);
    } catch (err) {
      this.#prepared = undefined;
      this.#inEntry = false;
      throw asThreadError(this.index, err);
    }
  }

  /** the pool placed the vCPU on a worker: the entry's command goes there */
  dispatchEntry(): void {
    const p = this.#prepared;
    if (!p) return;
    this.#prepared = undefined;
    this.#onWorker = true;
    this.#send({ op: "run", completion: p.completion, limits: p.limits });
  }

  /** kicked while it waited for a worker: the entry ends without running ("intr") */
  cancelEntry(): void {
    const p = this.#prepared;
    if (!p) return;
    this.#prepared = undefined;
    this.#carried = p.completion;
    Atomics.store(this.#words, W.STOP, 0);
    this.#synthetic = QUEUED_INTR;
  }

  /**
   * Applies the completion its last exit waits for by an entry that ends before any guest
   * instruction (a kick latched first), so that the vCPU may leave its worker (between runs).
   */
  settleEntry(): void {
    if (this.#inEntry) return;
    Atomics.store(this.#words, W.STOP, 1);
    Atomics.store(this.#words, W.KICK, 1);
    const exit = this.run();
    if (exit.kind !== "intr") {
      // the next half of a string I/O element on MMIO: the machine has yet to see it
      this.#lastExit = exit;
      throw new SoftVcpuThreadError(`vCPU ${this.index} cannot leave its thread in the middle of string I/O`);
    }
  }

  get exitReady(): boolean {
    if (this.#synthetic) return true;
    if (!this.#onWorker) return false;
    this.serve();
    return this.#inEntry && Atomics.load(this.#words, W.EXIT) !== this.#exitsTaken;
  }

  takeExit(): VmExit {
    if (!this.exitReady) throw new SoftVcpuThreadError(`vCPU ${this.index} has no exit to take`);
    const synthetic = this.#synthetic;
    if (synthetic) {
      this.#synthetic = undefined;
      this.#inEntry = false;
      this.#lastExit = synthetic;
      return synthetic;
    }
    this.#exitsTaken = (this.#exitsTaken + 1) | 0;
    this.#inEntry = false;
    this.#onWorker = false;
    this.#pool.exitTaken(this.index);
    // the EOIs and interrupts the thread took before this exit (it bumped the exit word after
    // them) reach the APIC before the exit is handled (parked first: nothing nudges it meanwhile)
    this.#settle();
    if (Atomics.load(this.#words, W.EXIT_FAST) === 1) {
      this.#lastExit = readFastExit(this.#words);
      return this.#lastExit;
    }
    const m = receiveMessageOnPort(this.#port)?.message as WorkerMessage | undefined;
    if (m?.t === "exit") {
      this.#lastExit = m.exit as VmExit;
      return this.#lastExit;
    }
    if (m?.t === "exit-error") throw fromWire(m.error, "", vmmErrors);
    throw new SoftVcpuThreadError(`vCPU ${this.index}: its exit went missing`);
  }

  /** One entry on the calling thread's time: started, waited for, taken (runs outside SoftVcpuThreads). */
  run(): VmExit {
    this.startEntry();
    const end = performance.now() + CALL_TIMEOUT_MS;
    while (!this.exitReady) {
      if (this.closed) throw this.#failed();
      if (performance.now() >= end) throw new SoftVcpuThreadError(`vCPU ${this.index} never exited`);
      Atomics.wait(this.#words, W.EXIT, this.#exitsTaken, 50);
    }
    return this.takeExit();
  }

  getRegs(): Regs {
    return this.call("getRegs") as Regs;
  }
  setRegs(regs: Regs): void {
    this.call("setRegs", regs);
  }
  getSregs(): SpecialRegs {
    return this.call("getSregs") as SpecialRegs;
  }
  setSregs(sregs: SpecialRegs): void {
    this.call("setSregs", sregs);
  }
  getMsr(index: number): bigint | undefined {
    // the local APIC asks whether it is enabled at every access: the value the thread published as
    // it last exited, asked, or answered a call (the only times it can change), not a call
    if (index === APIC_BASE_MSR) {
      // EXTD is the APIC's mode (the interpreter keeps the other bits, as SoftVcpu's readMsr says)
      const base = BigInt.asUintN(64, this.#wide[APIC_BASE_I64]!);
      return this.#irq?.apicMsrs?.x2apic === true ? base | APIC_EXTD : base;
    }
    return this.call("getMsr", index) as bigint | undefined;
  }
  setMsr(index: number, value: bigint): void {
    this.call("setMsr", index, value);
  }
  // Budgets and deadlines take effect at the next entry: they go with its command (one hand-over
  // per entry, not three), and a call reads them out first.
  setInstructionBudget(n: number | undefined): void {
    this.#entryLimits.budget = { n };
  }
  setEntryDeadline(atMs: number | undefined): void {
    // epoch milliseconds: the thread's performance.now() has another origin
    this.#entryLimits.deadline = {
      at: atMs === undefined || !Number.isFinite(atMs) ? atMs : atMs + performance.timeOrigin,
    };
  }
  instructionsRetired(): number {
    return this.#floats[F64_RETIRED]!;
  }
  runnable(): boolean {
    // in an entry: what the thread published (a sleeping vCPU waits for an event; else it runs)
    if (this.#inEntry) return Atomics.load(this.#words, W.SLEEP) === SLEEP_NONE;
    return this.call("runnable") as boolean;
  }
  /**
   * Halted with interrupts disabled or waiting for SIPI (only INIT, SIPI or NMI can wake it), as
   * the thread published it while in an entry; undefined when parked (ask runnable() and the
   * registers then).
   */
  asleepForGood(): boolean | undefined {
    if (!this.#inEntry) return undefined;
    return Atomics.load(this.#words, W.SLEEP) === SLEEP_FOR_GOOD;
  }
  takeYield(): boolean {
    return this.call("takeYield") as boolean;
  }
  invalidateCode(gpa: number, length: number): void {
    this.call("invalidateCode", gpa, length);
  }
  /** SoftVcpu.captureSoftState, done in the vCPU's thread */
  captureSoftState(): SoftSavedState {
    return this.call("captureSoftState") as SoftSavedState;
  }
  /** SoftVcpu.applySoftState, done in the vCPU's thread */
  applySoftState(state: { soft?: SoftVcpuState | undefined; arch?: ArchVcpuState | undefined }): string[] {
    return this.call("applySoftState", state) as string[];
  }
  /** SoftVcpu.mmioInFlight, asked of the vCPU's thread */
  mmioInFlight(): boolean {
    return this.call("mmioInFlight") as boolean;
  }

  // The debugger's operations (SoftVcpu's, lib/vmm/debug-soft.ts): calls on the parked vCPU, and
  // words for what must reach it while it is in an entry (a hold, an EPT flush).

  /** SoftVcpu.setDebugControls, done in the vCPU's thread */
  setDebugControls(c: { trapBreakpoints?: boolean; monitorTrap?: boolean }): void {
    this.#refuseDebugger();
    this.call("setDebugControls", c);
  }
  /** SoftVcpu.exitVector, asked of the vCPU's thread */
  exitVector(): number {
    return this.call("exitVector") as number;
  }
  /** SoftVcpu.reflectBreakpoint, done in the vCPU's thread */
  reflectBreakpoint(): void {
    this.call("reflectBreakpoint");
  }
  /** SoftVcpu.attachHostChunks: the thread maps memory the machine's thread allocated since it started */
  attachHostChunks(chunks: readonly SharedChunk[]): void {
    // the workers the vCPUs move to later get them as they arrive
    this.#pool.addChunks(chunks);
    this.call("attachHostChunks", chunks);
  }
  eptPointer(): bigint {
    return this.#eptp;
  }
  /**
   * SoftVcpu.flushEpt: the thread flushes before it next runs the guest (W.INVEPT); one in the
   * guest is nudged out of it to do so (the debugger holds the others before it tightens a page).
   */
  flushEpt(): void {
    bump(this.#words, W.INVEPT);
    if (this.#inEntry) this.#nudge();
  }
  /**
   * SoftVcpu.held for a vCPU in its thread (W.HELD): a held vCPU runs no guest instruction until
   * released. Holding one in an entry returns once it is out of the guest (it answers this
   * thread's requests meanwhile), so that the debugger's next step runs alone.
   */
  get held(): boolean {
    return Atomics.load(this.#words, W.HELD) !== 0;
  }
  set held(on: boolean) {
    if (this.held === on) return;
    if (on) this.#refuseDebugger();
    Atomics.store(this.#words, W.HELD, on ? 1 : 0);
    if (!on) {
      Atomics.notify(this.#words, W.KICK);
      return;
    }
    if (!this.#inEntry) return;
    this.#nudge();
    const end = performance.now() + CALL_TIMEOUT_MS;
    for (;;) {
      const sleep = Atomics.load(this.#words, W.SLEEP);
      if (sleep === SLEEP_HELD || this.exitReady || this.closed) return;
      if (performance.now() >= end)
        throw new SoftVcpuThreadError(`vCPU ${this.index} did not stop for the debugger`);
      Atomics.wait(this.#words, W.SLEEP, sleep, 1);
    }
  }

  /**
   * The debugger holds vCPUs in their threads and steps one while the others wait there: with
   * fewer threads than vCPUs a held vCPU would keep a thread from the one that steps.
   */
  #refuseDebugger(): void {
    if (this.#pool.oversubscribed) {
      throw new SoftVcpuThreadError(
        `the debugger needs a thread per vCPU (${this.#pool.vcpuCount} vCPUs run on ${this.#pool.threads} threads: set vcpuThreads to ${this.#pool.vcpuCount})`,
      );
    }
  }

  /** ends the entry in progress (or the next) promptly with an "intr" exit */
  kick(): void {
    Atomics.store(this.#words, W.STOP, 1);
    this.#nudge();
    this.#pool.kicked(this.index);
  }

  /** makes the running vCPU look at its interrupt and signal words (the entry goes on) */
  #nudge(): void {
    Atomics.store(this.#words, W.KICK, 1);
    Atomics.notify(this.#words, W.KICK);
  }

  signal(kind: CpuSignal, vector?: number): void {
    let bits: number;
    switch (kind) {
      case "init":
        bits = SIGNAL_INIT;
        break;
      case "nmi":
        bits = SIGNAL_NMI;
        break;
      case "sipi":
        if (vector === undefined || !Number.isInteger(vector) || vector < 0 || vector > 0xff) {
          throw new RangeError(`SIPI vector must be an integer 0..255, got ${vector}`);
        }
        bits = SIGNAL_SIPI | (vector << 8);
        break;
      default:
        throw new RangeError(`unknown CPU signal ${String(kind)}`);
    }
    // an INIT reset the APIC's registers and took its requests back: the thread reads them (and
    // its pending word) after it takes the INIT
    this.syncInterrupt();
    // a later SIPI's vector replaces an earlier one's
    for (;;) {
      const old = Atomics.load(this.#words, W.SIGNALS);
      const next = kind === "sipi" ? (old & ~0xff00) | bits : old | bits;
      if (Atomics.compareExchange(this.#words, W.SIGNALS, old, next) === old) break;
    }
    Atomics.notify(this.#words, W.KICK);
    if (this.#inEntry && this.#onWorker) {
      this.#nudge();
      this.#awaitSignalsTaken();
    }
    // one that waits without a worker (halted, waiting for SIPI) takes them as it is placed
    this.#pool.schedule();
  }

  /**
   * The sender's IPI is delivered (its ICR's delivery status clears) once the target has taken it:
   * a vCPU that runs takes its signals before it runs another instruction, so waiting here (while
   * it is in an entry, serving its requests meanwhile) keeps a guest's "INIT stopped the other CPU"
   * true however the host schedules the threads. A vCPU that is parked takes them as it enters.
   */
  #awaitSignalsTaken(): void {
    const end = performance.now() + SIGNAL_WAIT_MS;
    for (;;) {
      const pending = Atomics.load(this.#words, W.SIGNALS);
      if (pending === 0 || this.exitReady || this.closed || performance.now() >= end) return;
      Atomics.wait(this.#words, W.SIGNALS, pending, 1);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pool.close();
  }
}

/** The soft vCPU threads of a machine, as the loop's thread runner drives them. */
export class SoftVcpuThreads extends DoorbellThreads implements VcpuThreads {
  /** a halted vCPU comes back with a HLT exit (thread-worker.ts): no parking to look for halts */
  readonly reportsHalts = true;
  readonly #vcpus: readonly SoftThreadVcpu[];

  readonly #pool: SoftVcpuPool;

  constructor(vcpus: readonly SoftThreadVcpu[], doorbell: SharedArrayBuffer, pool: SoftVcpuPool) {
    super(new Int32Array(doorbell));
    this.#vcpus = vcpus;
    this.#pool = pool;
  }

  get count(): number {
    return this.#vcpus.length;
  }
  get closed(): boolean {
    return this.#vcpus.some((v) => v.closed);
  }
  /** no vCPU is in an entry: their states may be read */
  allParked(): boolean {
    return this.#vcpus.every((v) => !v.inEntry);
  }
  start(i: number): void {
    this.#vcpus[i]!.startEntry(true);
  }
  inEntry(i: number): boolean {
    return this.#vcpus[i]!.inEntry;
  }
  ended(i: number): boolean {
    return this.#vcpus[i]!.exitReady;
  }
  exit(i: number): VmExit {
    return this.#vcpus[i]!.takeExit();
  }
  kick(i: number): void {
    this.#vcpus[i]!.kick();
  }
  /** the worker vCPU i's state is on (-1: none, it is between workers or never ran) */
  workerOf(i: number): number {
    return this.#pool.workerOf(i);
  }
  /** worker threads the vCPUs run on */
  get threadCount(): number {
    return this.#pool.threads;
  }
  /** times a vCPU arrived on a worker from another (VMCLEAR there, VMPTRLD there) so far */
  get migrations(): number {
    return this.#pool.migrations;
  }
  /** arrivals of vCPU i (of every vCPU: no argument) that took up the interpreter a worker kept of it */
  reusedInterpreters(i?: number): number {
    return this.#pool.reusedInterpreters(i);
  }
  /** the workers that keep vCPU i's interpreter from a stay there */
  keptOn(i: number): number[] {
    return this.#pool.keptOn(i);
  }
  /**
   * Moves parked vCPU i to worker `worker` (VMCLEAR on its processor, VMPTRLD on that one); false
   * when that worker runs another vCPU now. Its state arrives as it left, an instruction half
   * done included.
   */
  moveVcpu(i: number, worker: number): boolean {
    if (this.#vcpus[i]!.inEntry) return false;
    try {
      return this.#pool.moveVcpu(i, worker);
    } catch (e) {
      throw e instanceof PoolError ? new SoftVcpuThreadError(`vCPU ${i}: ${e.message}`) : e;
    }
  }

  /** every vCPU's pending-interrupt word as its controller says; a running vCPU with a new one is nudged */
  sync(): void {
    for (const v of this.#vcpus) v.syncInterrupt();
    // halted vCPUs an interrupt made runnable get a worker
    this.#pool.schedule();
  }
  close(): void {
    this.end();
    for (const v of this.#vcpus) v.close();
    this.#pool.close();
  }
}
