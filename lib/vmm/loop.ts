// The one exit loop (design.md: "get the exit reason, call the handler registered for it, return
// to the guest"). Both backends feed it the same VmExit union. Handlers live in a table keyed by
// exit kind that users may override; a handler returns nothing to resume the guest or a StopRun to
// end the run. Limits are checked between exits; the soft backend's instruction budget makes a
// guest that never exits come back so that timeouts and slices still work.

import type { VmExit, VmExitKind } from "../types/exits.js";
import type { VcpuBackend } from "./backend.js";
import { MachineConfigError } from "./errors.js";
import { runThreadsAsync, runThreadsSync, type ThreadRunEnv, type VcpuThreads } from "./loop-threads.js";
import { ExitStats } from "./stats.js";

/**
 * Why a run ended. "hlt": every vCPU halted for good (HLT with interrupts off, or nothing left to wake it).
 * "shutdown": triple fault. "reset"/"poweroff": the guest asked (reset ports, i8042, ACPI, or a KVM system
 * event). "debug-exit": the guest wrote to the isa-debug-exit port (see `exitCode`). "debug": a debug
 * exception (breakpoint, single step). "timeout", "max-exits", "max-instructions": a {@link RunLimits} limit.
 * "fail-entry": VM entry failed. "internal-error": the backend could not go on. "stopped": Machine.stop(), an
 * aborted `signal`, or close(). "error": a handler or device threw (see `error`).
 */
export type RunReason =
  | "hlt"
  | "shutdown"
  | "reset"
  | "poweroff"
  | "debug-exit"
  | "debug"
  | "timeout"
  | "max-exits"
  | "max-instructions"
  | "fail-entry"
  | "internal-error"
  | "stopped"
  | "error";

/**
 * Bounds for one run; all optional, none by default (the run goes on until the guest stops). Checked between
 * exits. Bad values throw InvalidArgumentError before the run starts.
 */
export interface RunLimits {
  /** wall-clock limit for this run */
  timeoutMs?: number;
  /** stop after this many exits in this run */
  maxExits?: number;
  /** stop after this many guest instructions (exceptions and interrupts delivered and REP iterations count too) in this run (soft backend only) */
  maxInstructions?: number;
  /** aborting it ends the run as "stopped", as Machine.stop() does (checked by the Machine) */
  signal?: AbortSignal;
}

/**
 * What an exit handler returns to end the run (return nothing to resume the guest); the run's {@link
 * RunResult} carries these fields on.
 */
export interface StopRun {
  /** Why the run ended. */
  reason: RunReason;
  /** debug-exit: the guest's exit code */
  exitCode?: number;
  /** A human-readable detail (e.g. "triple fault (shutdown)", the error's message). */
  message?: string;
  /** reason "error": what was thrown (often a VmmError subclass such as UnhandledAccessError). */
  error?: unknown;
}

/** What `vm.run()`/`vm.runSync()` resolve to: why the run ended and how much it did. */
export interface RunResult extends StopRun {
  /** exits handled during this run */
  exits: number;
  /** guest instructions retired during this run, plus exceptions and interrupts delivered and REP iterations (soft backend) */
  instructions?: number;
  /** Wall-clock time the run took, in milliseconds. */
  durationMs: number;
  /** the exit that ended the run, when one did */
  exit?: VmExit;
}

/** Which vCPU an exit came from, as exit handlers get it. */
export interface ExitContext {
  /** That vCPU's backend, for registers (getRegs()/setRegs()); vm.vcpu(vcpuIndex) is the friendlier view. */
  readonly vcpu: VcpuBackend;
  /** The vCPU's index (0 is the bootstrap processor). */
  readonly vcpuIndex: number;
}

/**
 * Handles one VM-exit of kind `E`: return nothing to resume the guest, or a {@link StopRun} to end the run.
 * May change `exit` (an "in" exit's data, a hypercall's `ret`) before the guest resumes. Throwing ends the
 * run with reason "error".
 */
export type ExitHandler<E extends VmExit = VmExit> = (
  exit: E,
  ctx: ExitContext,
  // biome-ignore lint/suspicious/noConfusingVoidType: handlers that resume the guest return nothing
) => StopRun | undefined | void;
/** A handler per exit kind; kinds left out keep the machine's defaults. */
export type ExitHandlerTable = { [K in VmExitKind]?: ExitHandler<Extract<VmExit, { kind: K }>> };

export interface LoopHooks {
  /** after every handled exit (the machine's "exit" event); data of "in" exits is filled by then */
  afterExit?(exit: VmExit, ctx: ExitContext): void;
  /** a stop asked for outside the handlers (device requestStop, machine.stop()) */
  pendingStop?(): StopRun | undefined;
  /** periodic service between exits (device timers) */
  service?(): void;
  /** performance.now() time of the next device deadline service() must meet (Infinity: none) */
  nextServiceMs?(): number;
  /**
   * Sees each exit before dispatch and may return the exit it stands for: an interrupted KVM_RUN
   * of a vCPU halted in the kernel with interrupts off is a HLT, as the soft backend reports it.
   */
  refineExit?(exit: VmExit, ctx: ExitContext): VmExit;
  /**
   * After an exit: whether the guest now waits for something only the host can cause (HLT with
   * interrupts enabled and no device timer due). The loop then sleeps instead of re-entering at
   * once, as a vCPU halted in KVM does. Reading it clears it.
   */
  takeIdleWait?(): boolean;
  /**
   * Async runs: resolves when the host raises an interrupt line, a device asks to be polled, a stop
   * is requested, or at `untilMs` (performance.now() time), whichever comes first.
   */
  waitForEvent?(untilMs: number): Promise<void>;
  /**
   * Several vCPUs, none runnable (all halted or waiting for SIPI): the run ends (a StopRun), guest
   * time moved on to a device deadline ("resume": look again), or only the host can wake a vCPU
   * ("wait": the loop sleeps as for takeIdleWait).
   */
  allAsleep?(): StopRun | "resume" | "wait";
  /**
   * Deterministic machines: guest instructions until the next device deadline (Infinity: none;
   * <= 0: due now). With it device deadlines bound entries by instructions, never by host time,
   * and every run takes the vCPUs' turns in fixed quanta (runnable() needed, even for one vCPU).
   */
  deviceBudget?(): number;
}

/** What #runUntil returns when the guest waits for a host event. */
const IDLE = Symbol("idle");
/** Longest sleep of an idle guest before the loop looks again (limits, stop requests). */
const IDLE_WAIT_MS = 50;

/** Blocks the thread for `ms` without spinning: in a sync run nothing on this thread can wake it. */
function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const vcpuList = (v: VcpuBackend | readonly VcpuBackend[]): readonly VcpuBackend[] =>
  Array.isArray(v) ? (v as readonly VcpuBackend[]) : [v as VcpuBackend];

/** How long an async slice runs before yielding to the event loop. */
const SLICE_MS = 8;
/** With a watchdog, the longest a single entry may block before the loop looks again (halt checks). */
const WATCHDOG_PERIOD_MS = 50;

/** Kicks the vCPU out of a blocking run at an absolute time (see watchdog.ts). */
export interface EntryWatchdog {
  arm(deadlineAbsMs: number): void;
  disarm(): void;
}
/**
 * A thread that makes the blocking guest entries of async runs (KVM: kvm-worker.ts), so the event
 * loop stays free while the guest runs. One entry at a time: start(), then poll()/wait() until it
 * ended, then exit() reads it (registers may be touched only between exit() and the next start()).
 */
export interface VcpuThread {
  /** the thread has ended (machine closed, or it failed): no further entries */
  readonly closed: boolean;
  /** a run begins / ends (keeps the process alive while a run waits on the thread) */
  begin(): void;
  end(): void;
  start(): void;
  /** whether the entry ended, blocking at most `ms` */
  poll(ms: number): boolean;
  /** resolves true when the entry ended, false after `ms` */
  wait(ms: number): Promise<boolean>;
  /** the ended entry's exit (throws when the entry failed) */
  exit(): VmExit;
  /** makes the entry in progress (or the next) end as an "intr" exit */
  kick(): void;
  /**
   * Optional: on while the thread makes the run's entries (the main thread waits), off while the
   * main thread enters the guest itself (hot slices) and when the run ends: work that reaches the
   * main thread without an exit (ioeventfd notifications) is only read while it waits.
   */
  offload?(on: boolean): void;
}

/**
 * With a vCPU thread, how long the main thread waits synchronously for a fast exit before it
 * awaits it instead (bounded by the slice: the event loop still gets a turn every SLICE_MS).
 */
const THREAD_POLL_MS = 0.2;

/**
 * An async run with a vCPU thread enters the guest from the main thread itself after this many
 * entries in a row ended by themselves (no kick), HOT_ENTRY_MS each on average, and goes back to
 * the thread after HOT_QUIET_SLICES slices in a row with fewer than HOT_MIN_EXITS exits of the
 * guest's own, interrupted entries aside (the guest computes or halts: the event loop must stay
 * free). Each switch moves KVM_RUN to another thread, which costs the kernel an RCU grace period
 * (about 12 ms in the nested-KVM lane), hence the hysteresis.
 */
const HOT_AFTER = 64;
/**
 * Entries that ended by themselves within this long on average, hand-over included, are hot (ms).
 * The hand-over alone took 0.3-3 ms per exit in the nested-KVM lane on a loaded host (2 ms let a
 * guest exiting at 8 kHz never go hot there); a guest exiting at 250 Hz or more counts.
 */
const HOT_ENTRY_MS = 4;
/** a hot slice with fewer guest exits than this (in 8 ms: 250 Hz, as HOT_ENTRY_MS) is quiet */
const HOT_MIN_EXITS = 2;
/**
 * Quiet slices in a row that end a hot phase: a host that takes the CPU from the whole VM for a
 * slice (a loaded host, the nested-KVM lane) makes one slice look quiet, and each switch between
 * threads costs an RCU grace period (milliseconds).
 */
const HOT_QUIET_SLICES = 3;
/** see ExitLoop.hotWatchdogGraceMs */
const HOT_WATCHDOG_GRACE_MS = 16;

/**
 * The shortest entry a device deadline may ask for (the run's own deadline and the slice's end are
 * kept exactly): a timer programmed faster than the loop can serve it (an i8254 at divisor 1 fires
 * every 0.8 us) would otherwise end every entry before the guest ran a single instruction, so the
 * guest never got to run at all. Its periods coalesce meanwhile, as KVM clamps timer periods.
 */
const MIN_DEVICE_ENTRY_MS = 0.05;

/**
 * With a watchdog bounding each entry, the run reads the clock once per this many exits (and after
 * every interrupted entry, which is how a deadline's kick arrives): a clock read costs about what
 * all the rest of a KVM exit's Node-side work does.
 */
const CLOCK_EVERY = 16;

/** Instruction budget per backend entry when the backend supports one (bounds time between checks). */
const SLICE_INSTRUCTIONS = 200_000;

/**
 * Several vCPUs on this thread: each runs this many instructions (exceptions, interrupts and REP
 * iterations counted as budgets count them) before the next runnable one gets its turn, unless it
 * stops being runnable first. Fixed quanta make the interleaving a function of the guest alone.
 */
export const SMP_QUANTUM = 20_000;

const now = (): number => performance.now();

export class ExitLoop {
  readonly handlers: ExitHandlerTable;
  readonly stats = new ExitStats();
  readonly #hooks: LoopHooks;
  /** set by the machine when the backend's run() can block (KVM): bounds every entry */
  watchdog: EntryWatchdog | undefined;
  /** set by the machine when async runs enter the guest from a thread of their own (KVM) */
  vcpuThread: VcpuThread | undefined;
  /**
   * set by the machine when each of several vCPUs enters the guest from a thread of its own (KVM
   * SMP): runs of all of them go through loop-threads.ts, sync and async alike
   */
  vcpuThreads: VcpuThreads | undefined;
  /**
   * With a vCPU thread: enter a guest that exits hot from this thread (see HOT_AFTER). Each switch
   * of KVM_RUN between threads waits for an RCU grace period (KVM 6.1 tracks the vCPU's task; about
   * 12 ms in the nested-KVM lane), but in that lane every exit handed over between threads costs
   * more than the hand-over itself: taking the CPU from a thread with a loaded vCPU and giving it
   * back costs hundreds of microseconds there (measured: a bare KVM_RUN loop with one idle
   * Atomics ping-pong per exit ran at 2-7k exits/s against 17k without it; the ping-pong alone
   * costs 32 us). bench/exit-loop there (7 interleaved rounds, loaded host): hot entries at 0.84x
   * runSync (median of the rounds' ratios), through the thread 0.20x. Off by default on the loop
   * (the machine may turn it on); NODEVMM_HOT_ENTRY=1 turns it on for every loop.
   */
  hotEntry = process.env.NODEVMM_HOT_ENTRY === "1";
  /**
   * Hot slices: how long past a slice's end the watchdog may let an entry run. The guest's own
   * exits end a hot slice (the clock is read every CLOCK_EVERY exits), so the watchdog only has to
   * catch a guest that stops exiting; armed past the slice's end it stays armed across slices and
   * kicks about once per grace instead of once per slice. Each of its wake-ups takes the CPU from
   * the thread in KVM_RUN (a vCPU put and load). 0: armed at each slice's end, disarmed after it.
   */
  hotWatchdogGraceMs = HOT_WATCHDOG_GRACE_MS;
  /** hot phases begun and exits handled in them, over this loop's life (benches and tests read them) */
  hotPhases = 0;
  hotExits = 0;
  #armedAt = 0;
  #ctx: ExitContext | undefined;
  /** the exit #dispatch handled last */
  #lastExit: VmExit | undefined;

  constructor(handlers: ExitHandlerTable, hooks: LoopHooks = {}) {
    this.handlers = { ...handlers };
    this.#hooks = hooks;
  }

  /** Replaces the handler for one exit kind; returns the previous one so an override can chain. */
  setHandler<K extends VmExitKind>(
    kind: K,
    handler: ExitHandler<Extract<VmExit, { kind: K }>>,
  ): ExitHandler<Extract<VmExit, { kind: K }>> | undefined {
    const prev = this.handlers[kind] as ExitHandler<Extract<VmExit, { kind: K }>> | undefined;
    (this.handlers as Record<string, unknown>)[kind] = handler;
    return prev;
  }

  /** One guest entry, its exit, and the handler. Returns a StopRun when the run must end. */
  step(vcpu: VcpuBackend, vcpuIndex = vcpu.index): { exit: VmExit; stop?: StopRun } {
    const stop = this.#enter(vcpu, vcpuIndex);
    const exit = this.#lastExit!;
    this.#lastExit = undefined;
    return stop ? { exit, stop } : { exit };
  }

  /** step() without the result object: the exit is left in #lastExit (the per-exit path). */
  #enter(vcpu: VcpuBackend, vcpuIndex: number): StopRun | undefined {
    if (!this.stats.timeNext()) return this.#dispatch(vcpu, vcpuIndex, vcpu.run(), -1);
    const t0 = now();
    return this.#dispatch(vcpu, vcpuIndex, vcpu.run(), t0);
  }

  /** The context handlers see; one per vCPU, not one per exit. */
  #ctxOf(vcpu: VcpuBackend, vcpuIndex: number): ExitContext {
    const c = this.#ctx;
    if (c !== undefined && c.vcpu === vcpu && c.vcpuIndex === vcpuIndex) return c;
    const ctx = { vcpu, vcpuIndex };
    this.#ctx = ctx;
    return ctx;
  }

  /**
   * The handler part of step(), for an exit of an entry that began at `t0` (-1: an entry not
   * timed, see ExitStats). Leaves the exit in #lastExit and returns the StopRun, if any.
   */
  #dispatch(vcpu: VcpuBackend, vcpuIndex: number, raw: VmExit, t0: number): StopRun | undefined {
    let exit = raw;
    const stats = this.stats;
    let t1 = -1;
    if (t0 >= 0) {
      t1 = now();
      stats.recordGuest((t1 - t0) * 1e6);
    }
    const ctx = this.#ctxOf(vcpu, vcpuIndex);
    const hooks = this.#hooks;
    if (hooks.refineExit) exit = hooks.refineExit(exit, ctx);
    // the first exit of each kind is timed too, so that every kind in the table has a time
    if (t1 < 0 && stats.isNew(exit.kind)) t1 = now();
    this.#lastExit = exit;
    const handler = handlerOf(this.handlers, exit.kind);
    let stop: StopRun | undefined;
    if (handler) {
      stop = handler(exit, ctx) ?? undefined;
    } else {
      stop = { reason: "internal-error", message: `no handler for exit kind "${exit.kind}"` };
    }
    if (t1 >= 0) stats.record(exit, (now() - t1) * 1e6);
    else stats.count(exit);
    stats.countVcpu(vcpuIndex);
    hooks.afterExit?.(exit, ctx);
    return stop ?? hooks.pendingStop?.();
  }

  /**
   * Runs on the calling thread until a handler, a limit or a stop request ends the run. Several
   * vCPUs take turns in instruction quanta (SMP_QUANTUM); they need runnable() (the soft backend).
   */
  runSync(vcpus: VcpuBackend | readonly VcpuBackend[], limits: RunLimits = {}): RunResult {
    const threads = this.#threadsFor(vcpus, limits);
    if (threads) return runThreadsSync(...this.#onThreads(vcpuList(vcpus), limits, threads));
    const run = new RunState(vcpus, limits);
    this.#hooks.takeIdleWait?.();
    try {
      for (;;) {
        const r = this.#runUntil(run, Number.POSITIVE_INFINITY);
        if (r === IDLE) {
          this.#disarmWatchdog();
          sleepSync(Math.min(run.deadline, now() + IDLE_WAIT_MS) - now());
        } else if (r) {
          return r;
        }
      }
    } finally {
      this.#disarmWatchdog();
    }
  }

  /** Same as runSync, in slices of a few milliseconds with the event loop served in between. */
  async run(vcpus: VcpuBackend | readonly VcpuBackend[], limits: RunLimits = {}): Promise<RunResult> {
    const threads = this.#threadsFor(vcpus, limits);
    if (threads) return runThreadsAsync(...this.#onThreads(vcpuList(vcpus), limits, threads));
    const run = new RunState(vcpus, limits);
    this.#hooks.takeIdleWait?.();
    const thread = this.vcpuThread;
    if (thread && !thread.closed && run.vcpus.length === 1) return this.#runOnThread(run, thread);
    try {
      for (;;) {
        const r = this.#runUntil(run, now() + SLICE_MS);
        if (r && r !== IDLE) return r;
        this.#disarmWatchdog();
        if (r === IDLE && this.#hooks.waitForEvent) {
          await this.#hooks.waitForEvent(Math.min(run.deadline, now() + IDLE_WAIT_MS));
        } else {
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
    } finally {
      this.#disarmWatchdog();
    }
  }

  /** The vCPU threads a run of `vcpus` goes through: one thread per vCPU (KVM SMP, soft vCPU threads). */
  #threadsFor(vcpus: VcpuBackend | readonly VcpuBackend[], limits: RunLimits): VcpuThreads | undefined {
    const t = this.vcpuThreads;
    const list = vcpuList(vcpus);
    if (!t || list.length !== t.count) return undefined;
    // instruction budgets bound each entry: vCPUs that take them (soft threads) are entered one at a
    // time from this thread then, as without threads (KVM's refuse maxInstructions below)
    if (limits.maxInstructions !== undefined && list.every((v) => v.setInstructionBudget)) return undefined;
    return t;
  }

  /** A run on vCPU threads (loop-threads.ts): each vCPU's exits dispatched here as #dispatch does. */
  #onThreads(
    vcpus: readonly VcpuBackend[],
    limits: RunLimits,
    threads: VcpuThreads,
  ): [RunState, VcpuThreads, ThreadRunEnv] {
    const run = new RunState(vcpus, limits, true);
    const hooks = this.#hooks;
    const env: ThreadRunEnv = {
      dispatch: (i, exit, t0) => {
        const stop = this.#dispatch(vcpus[i]!, i, exit, t0);
        const handled = this.#lastExit!;
        this.#lastExit = undefined;
        return { stop, exit: handled };
      },
      timeNext: () => this.stats.timeNext(),
      pendingStop: () => hooks.pendingStop?.(),
      service: () => hooks.service?.(),
      nextServiceMs: () => hooks.nextServiceMs?.() ?? Number.POSITIVE_INFINITY,
    };
    return [run, threads, env];
  }

  /**
   * run() with the guest entered by a vCPU thread: the main thread awaits each exit (the event loop
   * runs meanwhile), handles it here, and lets the thread re-enter. Timeouts, stop() and the
   * periodic halt check kick the thread's entry, as the watchdog does for sync runs.
   */
  async #runOnThread(run: RunState, thread: VcpuThread): Promise<RunResult> {
    thread.begin();
    try {
      thread.offload?.(true);
      let sliceEnd = now() + SLICE_MS;
      /** entries in a row that ended by themselves (no kick), and when the first of them began */
      let fast = 0;
      let fastSince = 0;
      for (;;) {
        // the guest is exiting "hot" when HOT_AFTER such entries took HOT_ENTRY_MS each on average
        // (an average, so that one entry the host delayed does not start the count again)
        if (
          fast >= HOT_AFTER &&
          this.watchdog &&
          this.hotEntry &&
          (now() - fastSince) / fast > HOT_ENTRY_MS
        ) {
          fast = 0;
        }
        if (fast >= HOT_AFTER && this.watchdog && this.hotEntry) {
          // Hot: while the guest keeps exiting, this thread enters it itself in watchdog-bounded
          // slices (what runs without a vCPU thread do), so no exit pays for a wake-up of the
          // other thread. Back to the vCPU thread when a slice shows the guest stopped exiting.
          this.hotPhases++;
          const before = run.exits;
          thread.offload?.(false);
          const r = await this.#hotSlice(run);
          this.hotExits += run.exits - before;
          if (r) return r;
          thread.offload?.(true);
          // entries on the thread are not bounded by the watchdog: read the clock at every check
          run.clockEvery = 1;
          run.clockDue();
          fast = 0;
          sliceEnd = now() + SLICE_MS;
          continue;
        }
        const early = this.#hooks.pendingStop?.();
        if (early) return run.finish(early);
        const limit = run.checkLimits();
        if (limit) return run.finish(limit);
        if (thread.closed) return run.finish(closedStop());
        const t0 = now();
        thread.start();
        if (t0 >= sliceEnd) {
          // the guest runs meanwhile; other callbacks get their turn even if its exits come fast
          await new Promise<void>((resolve) => setImmediate(resolve));
          sliceEnd = now() + SLICE_MS;
        }
        if (thread.poll(THREAD_POLL_MS)) {
          if (fast++ === 0) fastSince = t0;
        } else {
          // once kicked, the entry gets a whole period to come back: re-kicking at once (a run
          // past its deadline waits 0 ms) would flood the thread with signals and never yield
          let kicked = false;
          for (;;) {
            const t = now();
            const until = kicked ? t + WATCHDOG_PERIOD_MS : Math.min(run.deadline, t + WATCHDOG_PERIOD_MS);
            if (await thread.wait(Math.max(0, until - t))) break;
            if (thread.closed) return run.finish(closedStop());
            thread.kick();
            kicked = true;
          }
          // the hand-over itself can take longer than the poll (a loaded or single-CPU host):
          // an entry that ended by itself still counts towards hot
          if (kicked) fast = 0;
          else if (fast++ === 0) fastSince = t0;
          sliceEnd = now() + SLICE_MS;
        }
        if (thread.closed) return run.finish(closedStop());
        let stop: StopRun | undefined;
        try {
          stop = this.#dispatch(run.vcpu, run.vcpu.index, thread.exit(), this.stats.timeNext() ? t0 : -1);
          run.exits++;
          if (!stop) this.#hooks.service?.();
        } catch (error) {
          const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
          return run.finish({ reason: "error", message, error });
        }
        if (stop) return run.finish(stop, this.#lastExit);
        if (this.#hooks.takeIdleWait?.()) {
          const limit = run.checkLimits();
          if (limit) return run.finish(limit);
          if (this.#hooks.waitForEvent)
            await this.#hooks.waitForEvent(Math.min(run.deadline, now() + IDLE_WAIT_MS));
          sliceEnd = now() + SLICE_MS;
        }
      }
    } finally {
      try {
        thread.offload?.(false);
      } finally {
        thread.end();
      }
    }
  }

  /**
   * Hot slices of an async run with a vCPU thread: SLICE_MS of exits entered from this thread, the
   * event loop served in between, for as long as the guest exits at least HOT_MIN_EXITS times a
   * slice. Returns the run's result when it ended, undefined when the guest went quiet.
   */
  async #hotSlice(run: RunState): Promise<RunResult | undefined> {
    try {
      // The first slice pays for moving KVM_RUN to this thread (an RCU grace period in the kernel,
      // milliseconds): it is not judged. After that, two quiet slices in a row end the hot phase.
      let quiet = -1;
      for (;;) {
        const before = run.guestExits;
        const sliceEnd = now() + SLICE_MS;
        const grace = this.hotWatchdogGraceMs;
        const r = this.#runUntil(run, sliceEnd, sliceEnd + grace);
        if (r && r !== IDLE) return r;
        // with a grace the watchdog stays armed across slices: disarming and re-arming it each
        // slice wakes its thread twice more
        if (r === IDLE || grace <= 0) this.#disarmWatchdog();
        if (r === IDLE) {
          if (this.#hooks.waitForEvent) {
            await this.#hooks.waitForEvent(Math.min(run.deadline, now() + IDLE_WAIT_MS));
          }
          return undefined;
        }
        // kicks aside (one ends the slice), few exits: the guest stopped exiting by itself
        if (run.guestExits - before >= HOT_MIN_EXITS) quiet = 0;
        else if (++quiet >= HOT_QUIET_SLICES) return undefined;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.#disarmWatchdog();
    }
  }

  // Re-arming costs a wake-up of the watchdog thread, so it happens only when the armed deadline
  // has passed or is later than needed, about once per period, not once per exit. `t` is the
  // run's clock (RunState.time()).
  #armWatchdog(w: EntryWatchdog, until: number, t: number): void {
    const want = Math.min(until, t + WATCHDOG_PERIOD_MS);
    if (this.#armedAt <= t || this.#armedAt > want) {
      this.#armedAt = want;
      w.arm(performance.timeOrigin + want);
    }
  }

  #disarmWatchdog(): void {
    if (this.watchdog && this.#armedAt !== 0) this.watchdog.disarm();
    this.#armedAt = 0;
  }

  /**
   * Runs exits until the run ends (returns its result), the slice deadline passes (undefined) or
   * the guest waits for a host event (IDLE).
   */
  #runUntil(run: RunState, sliceEnd: number, watchdogUntil = sliceEnd): RunResult | undefined | typeof IDLE {
    if (run.vcpus.length > 1 || this.#hooks.deviceBudget) return this.#runUntilSmp(run, sliceEnd);
    const hooks = this.#hooks;
    const early = hooks.pendingStop?.();
    if (early) return run.finish(early);
    const vcpu = run.vcpu;
    const index = vcpu.index;
    // what the backend takes is fixed (its methods); looked up once, not per exit
    const budgets = vcpu.setInstructionBudget !== undefined;
    const entryDeadlines = vcpu.setEntryDeadline !== undefined;
    // a watchdog bounds every entry in time: the clock need not be read after each exit
    run.clockEvery = this.watchdog && !entryDeadlines ? CLOCK_EVERY : 1;
    for (;;) {
      const limit = run.checkLimits();
      if (limit) return run.finish(limit);
      if (budgets) run.armBudget();
      if (entryDeadlines) this.#setEntryDeadline(vcpu, run, sliceEnd);
      const watchdog = this.watchdog;
      if (watchdog) this.#armWatchdog(watchdog, Math.min(run.deadline, watchdogUntil), run.lastTime);
      const exit = this.#enterCounted(run, vcpu, index);
      if (!isExit(exit)) return exit;
      // an interrupted entry may be the watchdog's kick at a deadline: look at the clock now
      if (exit.kind === "intr") run.clockDue();
      if (hooks.takeIdleWait?.()) return run.checkLimits() ? run.finish(run.checkLimits()!) : IDLE;
      if (sliceEnd !== Number.POSITIVE_INFINITY && run.time() >= sliceEnd) {
        return run.checkLimits() ? run.finish(run.checkLimits()!) : undefined;
      }
    }
  }

  /**
   * The entry comes back by the run's deadline, the slice's end, and the next device deadline (a
   * device due already, as at a run's first entry, is served rather than exited for at once).
   */
  #setEntryDeadline(vcpu: VcpuBackend, run: RunState, sliceEnd: number): void {
    const hooks = this.#hooks;
    let device = hooks.nextServiceMs?.() ?? Number.POSITIVE_INFINITY;
    if (device <= now()) {
      hooks.service?.();
      device = hooks.nextServiceMs?.() ?? Number.POSITIVE_INFINITY;
    }
    device = Math.max(device, now() + MIN_DEVICE_ENTRY_MS);
    vcpu.setEntryDeadline!(Math.min(run.deadline, sliceEnd, device));
  }

  /** One entry and its exit's handling, counted in `run`: the exit, or the run's result when it ended. */
  #enterCounted(run: RunState, vcpu: VcpuBackend, index: number): VmExit | RunResult {
    let stop: StopRun | undefined;
    try {
      stop = this.#enter(vcpu, index);
      run.exits++;
      if (!stop) this.#hooks.service?.();
    } catch (error) {
      return run.finish(errorStop(error));
    }
    const exit = this.#lastExit!;
    this.#lastExit = undefined;
    if (exit.kind !== "intr") run.guestExits++;
    return stop ? run.finish(stop, exit) : exit;
  }

  /**
   * #runUntil for several vCPUs on this thread: the current vCPU keeps the CPU until its quantum is
   * used or it stops being runnable (HLT, waiting for SIPI), then the next runnable one in index
   * order takes over. Each entry is bounded by the quantum, the run's limits, the slice's end and
   * the next device deadline, so devices and timeouts are served as with one vCPU.
   */
  #runUntilSmp(run: RunState, sliceEnd: number): RunResult | undefined | typeof IDLE {
    const hooks = this.#hooks;
    const early = hooks.pendingStop?.();
    if (early) return run.finish(early);
    for (;;) {
      const limit = run.checkLimits();
      if (limit) return run.finish(limit);
      const vcpu = run.pick();
      if (!vcpu) {
        const r = hooks.allAsleep?.() ?? "wait";
        if (r === "resume") continue;
        if (r === "wait") return run.checkLimits() ? run.finish(run.checkLimits()!) : IDLE;
        return run.finish(r);
      }
      const deviceBudget = hooks.deviceBudget;
      if (deviceBudget) {
        // deterministic: a device due is served first, and the next one bounds the entry in instructions
        let left = deviceBudget();
        if (left <= 0) {
          hooks.service?.();
          left = deviceBudget();
        }
        run.armQuantum(vcpu, Math.max(1, left));
        // no host time inside an entry: an interrupted entry would restart what VT-x restarts at
        // each entry (PAUSE-loop detection); the run's limits and slices are looked at between
        // entries, which the quantum keeps short
        vcpu.setEntryDeadline?.(Number.POSITIVE_INFINITY);
      } else {
        run.armQuantum(vcpu);
        if (vcpu.setEntryDeadline) this.#setEntryDeadline(vcpu, run, sliceEnd);
      }
      const exit = this.#enterCounted(run, vcpu, vcpu.index);
      if (!isExit(exit)) return exit;
      // one vCPU's idle wait is the scheduler's business (allAsleep), not the whole machine's
      hooks.takeIdleWait?.();
      if (sliceEnd !== Number.POSITIVE_INFINITY && run.time() >= sliceEnd) {
        return run.checkLimits() ? run.finish(run.checkLimits()!) : undefined;
      }
      if (exit.kind === "intr") run.clockDue();
    }
  }
}

/** The run's end when a handler, a device or the backend threw. */
function errorStop(error: unknown): StopRun {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return { reason: "error", message, error };
}

/**
 * The handler for `kind`. Named reads for the frequent kinds: a keyed read with a different kind
 * from one exit to the next is megamorphic in V8 (a hash probe per exit) where each named read
 * stays monomorphic.
 */
function handlerOf(h: ExitHandlerTable, kind: VmExitKind): ExitHandler | undefined {
  switch (kind) {
    case "io":
      return h.io as ExitHandler | undefined;
    case "mmio":
      return h.mmio as ExitHandler | undefined;
    case "intr":
      return h.intr as ExitHandler | undefined;
    case "hlt":
      return h.hlt as ExitHandler | undefined;
    default:
      return h[kind] as ExitHandler | undefined;
  }
}

/** tells #enterCounted's exit from a run's result */
const isExit = (r: VmExit | RunResult): r is VmExit => (r as Partial<VmExit>).kind !== undefined;

const closedStop = (): StopRun => ({ reason: "stopped", message: "the machine was closed during the run" });

/** Bookkeeping of one run() call: limits, counters, the instruction budget, the vCPUs' turns. */
class RunState {
  readonly vcpus: readonly VcpuBackend[];
  /** the vCPU of a one-vCPU run (vcpus[0]) */
  readonly vcpu: VcpuBackend;
  /** SMP: index in `vcpus` of the vCPU whose quantum runs, and the instruction count it ends at */
  #current = 0;
  #quantumEnd = Number.NEGATIVE_INFINITY;
  exits = 0;
  readonly start = now();
  /** read the clock after this many exits (1: after each); see CLOCK_EVERY */
  clockEvery = 1;
  /** the clock as last read */
  lastTime = this.start;
  /** exits the guest made itself (not interrupted entries) */
  guestExits = 0;
  #untilClock = 0;
  readonly #startInstructions: number | undefined;
  /** loop-clock time the run must end by (Infinity without timeoutMs) */
  readonly deadline: number;

  constructor(
    vcpus: VcpuBackend | readonly VcpuBackend[],
    readonly limits: RunLimits,
    /** each vCPU enters from a thread of its own (loop-threads.ts): no turns to take here */
    threaded = false,
  ) {
    this.vcpus = Array.isArray(vcpus) ? vcpus : [vcpus as VcpuBackend];
    if (this.vcpus.length === 0) throw new MachineConfigError("a run needs at least one vCPU");
    this.vcpu = this.vcpus[0]!;
    // the first pick() starts with vCPU 0 (the BSP)
    this.#current = this.vcpus.length - 1;
    if (!threaded && this.vcpus.length > 1 && !this.vcpus.every((v) => v.runnable && v.instructionsRetired)) {
      throw new MachineConfigError(
        "several vCPUs on one thread need a backend that reports runnable() and counts instructions (the soft backend)",
      );
    }
    const vcpu = this.vcpu;
    for (const key of ["timeoutMs", "maxExits", "maxInstructions"] as const) {
      const v = limits[key];
      if (v !== undefined && (typeof v !== "number" || !(v >= 0) || Number.isNaN(v))) {
        throw new MachineConfigError(`run limit ${key} must be a non-negative number, got ${String(v)}`);
      }
    }
    if (limits.maxInstructions !== undefined && (!vcpu.setInstructionBudget || !vcpu.instructionsRetired)) {
      throw new MachineConfigError(
        "maxInstructions needs a backend that counts instructions (the soft backend); KVM cannot",
      );
    }
    this.#startInstructions = this.#retired();
    this.deadline = limits.timeoutMs === undefined ? Number.POSITIVE_INFINITY : this.start + limits.timeoutMs;
  }

  /** instructions all vCPUs retired (budget units), or undefined when the backend does not count */
  #retired(): number | undefined {
    const vs = this.vcpus;
    if (vs.length === 1) return vs[0]!.instructionsRetired?.();
    let n = 0;
    for (const v of vs) {
      // vCPUs on threads of their own (KVM) count nothing
      const r = v.instructionsRetired?.();
      if (r === undefined) return undefined;
      n += r;
    }
    return n;
  }

  /**
   * SMP: the vCPU to enter next. The current one while its quantum lasts and it is runnable, else
   * the next runnable one after it (a new quantum); undefined when none is runnable.
   */
  pick(): VcpuBackend | undefined {
    const vs = this.vcpus;
    const cur = vs[this.#current]!;
    // a vCPU spinning on PAUSE waits for another: its turn ends early
    if (!cur.takeYield?.() && cur.instructionsRetired!() < this.#quantumEnd && cur.runnable!()) return cur;
    for (let k = 1; k <= vs.length; k++) {
      const i = (this.#current + k) % vs.length;
      const v = vs[i]!;
      if (v.runnable!()) {
        this.#current = i;
        this.#quantumEnd = v.instructionsRetired!() + SMP_QUANTUM;
        return v;
      }
    }
    this.#quantumEnd = Number.NEGATIVE_INFINITY;
    return undefined;
  }

  /** SMP: the entry's budget, the rest of the quantum (and of maxInstructions, and `most`) */
  armQuantum(vcpu: VcpuBackend, most = Number.POSITIVE_INFINITY): void {
    let budget = Math.min(most, this.#quantumEnd - vcpu.instructionsRetired!());
    if (this.limits.maxInstructions !== undefined) {
      budget = Math.min(budget, this.limits.maxInstructions - (this.instructions ?? 0));
    }
    vcpu.setInstructionBudget!(Math.max(1, budget));
  }

  get instructions(): number | undefined {
    const n = this.#retired();
    return n === undefined || this.#startInstructions === undefined ? undefined : n - this.#startInstructions;
  }

  checkLimits(): StopRun | undefined {
    const { maxExits, maxInstructions } = this.limits;
    if (maxExits !== undefined && this.exits >= maxExits) {
      return { reason: "max-exits", message: `reached ${maxExits} exits` };
    }
    if (maxInstructions !== undefined && (this.instructions ?? 0) >= maxInstructions) {
      return { reason: "max-instructions", message: `reached ${maxInstructions} instructions` };
    }
    if (this.time() >= this.deadline) {
      return { reason: "timeout", message: `timed out after ${this.limits.timeoutMs} ms` };
    }
    return undefined;
  }

  /** performance.now(), read at most once per `clockEvery` calls. */
  time(): number {
    if (--this.#untilClock > 0) return this.lastTime;
    this.#untilClock = this.clockEvery;
    this.lastTime = now();
    return this.lastTime;
  }

  /** The next time() reads the clock. */
  clockDue(): void {
    this.#untilClock = 0;
  }

  armBudget(): void {
    if (!this.vcpu.setInstructionBudget) return;
    // a backend with entry deadlines is bounded in time by them: a budget only for maxInstructions
    if (this.vcpu.setEntryDeadline && this.limits.maxInstructions === undefined) {
      this.vcpu.setInstructionBudget(undefined);
      return;
    }
    let budget = SLICE_INSTRUCTIONS;
    if (this.limits.maxInstructions !== undefined) {
      budget = Math.min(budget, this.limits.maxInstructions - (this.instructions ?? 0));
    }
    this.vcpu.setInstructionBudget(Math.max(1, budget));
  }

  finish(stop: StopRun, exit?: VmExit): RunResult {
    for (const v of this.vcpus) {
      v.setInstructionBudget?.(undefined);
      v.setEntryDeadline?.(undefined);
    }
    const result: RunResult = { ...stop, exits: this.exits, durationMs: now() - this.start };
    const n = this.instructions;
    if (n !== undefined) result.instructions = n;
    if (exit) result.exit = exit;
    return result;
  }
}
