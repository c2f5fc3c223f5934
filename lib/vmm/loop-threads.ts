// Runs of several vCPUs that each enter the guest from a thread of their own (KVM SMP:
// kvm-threads.ts). Every exit of every vCPU is handled here, on the loop's thread, one at a time:
// devices and handlers stay single-threaded, as under QEMU's big lock, while the other vCPUs keep
// running in the guest. The threads ring one shared doorbell after each exit, so one wait covers
// them all.
//
// A run ends with every vCPU parked (out of KVM_RUN, its exit handled), so that registers can be
// read afterwards: when it must end (a handler's stop, a limit, stop()), the vCPUs still in the
// guest are kicked and the exits they come back with are handled too, as exits that happened
// before the run ended. The same parking serves the halt check: a vCPU halted in the kernel never
// exits, so after HALT_CHECK_MS without an exit every vCPU is parked and the machine looks at
// their states (the exit hooks turn an interrupted entry into "hlt" when none can run again).
//
// The runner is a generator that yields what it waits for; runThreadsSync blocks on the doorbell
// (Atomics.wait), runThreadsAsync awaits it (Atomics.waitAsync) and yields to the event loop
// between slices.

import type { VmExit } from "../types/exits.js";
import type { RunResult, StopRun } from "./loop.js";

/** The vCPU threads of a machine, as the loop drives them (kvm-threads.ts for KVM). */
export interface VcpuThreads {
  readonly count: number;
  /** a thread has ended (the machine was closed, or it failed): no further entries */
  readonly closed: boolean;
  /** a run begins / ends (an async run's waits must keep the process alive) */
  begin(): void;
  end(): void;
  /** the doorbell word: it changes after every exit of any vCPU */
  bell(): number;
  /** blocks until the doorbell differs from `seen` (true) or `ms` pass (false) */
  waitSync(seen: number, ms: number): boolean;
  /** waitSync without blocking the event loop */
  wait(seen: number, ms: number): Promise<boolean>;
  /** lets vCPU `i` enter the guest once */
  start(i: number): void;
  /** vCPU `i` was started and its exit not yet taken */
  inEntry(i: number): boolean;
  /** vCPU `i`'s entry has ended (its exit can be taken) */
  ended(i: number): boolean;
  /** takes vCPU `i`'s exit (throws when its entry failed); the vCPU is parked until start(i) */
  exit(i: number): VmExit;
  /** makes vCPU `i`'s entry in progress (or its next) end promptly as an "intr" exit */
  kick(i: number): void;
  /**
   * Optional: a halted vCPU's entry ends with a HLT exit (soft threads), so the runner need not park
   * every vCPU after HALT_CHECK_MS without exits to look for halts (KVM's halt in the kernel).
   */
  readonly reportsHalts?: boolean;
  /**
   * Optional: the machine's interrupt state may have changed (an exit was handled, devices were
   * serviced): vCPUs whose interrupt controller is not in the kernel look at it again (soft threads).
   */
  sync?(): void;
}

/** What the runner needs of the loop: its dispatch, its hooks, the run's bookkeeping (RunState). */
export interface ThreadRunEnv {
  /** handles one exit of vCPU `i` whose entry began at `t0` (-1: not timed); the exit as refined */
  dispatch(i: number, exit: VmExit, t0: number): { stop: StopRun | undefined; exit: VmExit };
  /** whether the next entry is timed (ExitStats sampling) */
  timeNext(): boolean;
  pendingStop(): StopRun | undefined;
  service(): void;
  /** performance.now() time of the next device deadline (Infinity: none) */
  nextServiceMs(): number;
}

export interface ThreadRunState {
  exits: number;
  guestExits: number;
  readonly deadline: number;
  checkLimits(): StopRun | undefined;
  finish(stop: StopRun, exit?: VmExit): RunResult;
}

/** What the runner waits for: the doorbell to move from `seen` until `untilMs`, or the event loop's turn. */
export type ThreadWait = { seen: number; untilMs: number } | "yield";

/** No exit of any vCPU for this long: park them all and look whether any can run again. */
export const HALT_CHECK_MS = 50;
/** Parking: kick again the vCPUs that have not come back after this long. */
const KICK_AGAIN_MS = 50;
/** The shortest wait for a device deadline (a timer faster than this coalesces, see loop.ts). */
const MIN_DEVICE_WAIT_MS = 0.05;
/** An async run yields to the event loop after handling exits for this long. */
const SLICE_MS = 8;

const now = (): number => performance.now();

const closedStop = (): StopRun => ({ reason: "stopped", message: "the machine was closed during the run" });

function errorStop(error: unknown): StopRun {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return { reason: "error", message, error };
}

/** The run itself; see the file's head. Drive it with runThreadsSync or runThreadsAsync. */
export function* threadRun(
  run: ThreadRunState,
  threads: VcpuThreads,
  env: ThreadRunEnv,
): Generator<ThreadWait, RunResult, boolean> {
  const n = threads.count;
  const entryStart = new Float64Array(n);
  const start = (i: number): void => {
    entryStart[i] = env.timeNext() ? now() : -1;
    threads.start(i);
  };
  /** the stop that ends the run once every vCPU is parked (the first one wins) */
  let ending: { stop: StopRun; exit?: VmExit } | undefined;
  /** parking every vCPU to look at their states */
  let haltCheck = false;
  /** when the vCPUs still in the guest were last kicked (-1: not since parking began) */
  let kickedAt = -1;
  let lastExitAt = now();
  let sliceEnd = now() + SLICE_MS;
  /** where the next scan for ended entries begins, so that no vCPU's exits wait behind another's */
  let first = 0;

  const kickAll = (): void => {
    for (let i = 0; i < n; i++) if (threads.inEntry(i)) threads.kick(i);
    kickedAt = now();
  };
  const end = (stop: StopRun, exit?: VmExit): void => {
    ending ??= exit ? { stop, exit } : { stop };
  };

  const early = env.pendingStop() ?? run.checkLimits();
  if (early) return run.finish(early);
  if (threads.closed) return run.finish(closedStop());
  for (let i = 0; i < n; i++) if (!threads.inEntry(i)) start(i);

  for (;;) {
    if (threads.closed) return run.finish(ending?.stop ?? closedStop(), ending?.exit);
    const seen = threads.bell();
    let handled = false;
    for (let k = 0; k < n; k++) {
      const i = (first + k) % n;
      if (!threads.inEntry(i) || !threads.ended(i)) continue;
      handled = true;
      let stop: StopRun | undefined;
      let exit: VmExit | undefined;
      try {
        const r = env.dispatch(i, threads.exit(i), entryStart[i]!);
        stop = r.stop;
        exit = r.exit;
        run.exits++;
        if (exit.kind !== "intr") run.guestExits++;
        if (!stop) env.service();
        threads.sync?.();
        // a limit this exit reached ends the run before the vCPU re-enters (one exit more otherwise)
        if (!stop && !ending) stop = run.checkLimits();
      } catch (error) {
        stop = errorStop(error);
      }
      if (stop) end(stop, exit);
      if (threads.closed) return run.finish(ending?.stop ?? closedStop(), ending?.exit);
      if (!ending && !haltCheck) start(i);
    }
    first = (first + 1) % n;
    if (handled) lastExitAt = now();
    if (!ending) {
      const limit = run.checkLimits();
      if (limit) end(limit);
    }

    if (ending || haltCheck) {
      let parked = true;
      for (let i = 0; i < n; i++) if (threads.inEntry(i)) parked = false;
      if (parked) {
        if (ending) return run.finish(ending.stop, ending.exit);
        // every vCPU looked at and none ended the run: all go back into the guest
        haltCheck = false;
        kickedAt = -1;
        lastExitAt = now();
        for (let i = 0; i < n; i++) start(i);
        continue;
      }
      if (kickedAt < 0) kickAll();
    }

    if (handled) {
      if (now() >= sliceEnd) {
        yield "yield";
        sliceEnd = now() + SLICE_MS;
      }
      continue; // more may have ended meanwhile: look again before sleeping
    }

    const t = now();
    let device = env.nextServiceMs();
    if (device <= t) {
      // device timers while the vCPUs run (their interrupts go to the in-kernel irqchip, or to the
      // soft threads' pending words)
      env.service();
      threads.sync?.();
      device = env.nextServiceMs();
    }
    const untilMs =
      ending || haltCheck
        ? kickedAt + KICK_AGAIN_MS
        : Math.min(
            run.deadline,
            threads.reportsHalts ? Number.POSITIVE_INFINITY : lastExitAt + HALT_CHECK_MS,
            Math.max(device, t + MIN_DEVICE_WAIT_MS),
          );
    const woke = yield { seen, untilMs };
    sliceEnd = now() + SLICE_MS;
    if (woke) continue;
    if (ending || haltCheck) {
      if (now() >= kickedAt + KICK_AGAIN_MS) kickAll();
      continue;
    }
    const pending = env.pendingStop();
    if (pending) {
      end(pending);
      continue;
    }
    if (!threads.reportsHalts && now() >= lastExitAt + HALT_CHECK_MS) {
      haltCheck = true;
      kickAll();
    }
  }
}

/** Drives threadRun on this thread, blocking in Atomics.wait while no exit is due. */
export function runThreadsSync(run: ThreadRunState, threads: VcpuThreads, env: ThreadRunEnv): RunResult {
  threads.begin();
  try {
    const gen = threadRun(run, threads, env);
    let step = gen.next(false);
    while (!step.done) {
      const w = step.value;
      const woke = w === "yield" ? true : threads.waitSync(w.seen, Math.max(0, w.untilMs - now()));
      step = gen.next(woke);
    }
    return step.value;
  } finally {
    threads.end();
  }
}

/** Drives threadRun without holding the event loop: waits are awaited, slices yield to it. */
export async function runThreadsAsync(
  run: ThreadRunState,
  threads: VcpuThreads,
  env: ThreadRunEnv,
): Promise<RunResult> {
  threads.begin();
  try {
    const gen = threadRun(run, threads, env);
    let step = gen.next(false);
    while (!step.done) {
      const w = step.value;
      let woke = true;
      if (w === "yield") await new Promise<void>((resolve) => setImmediate(resolve));
      else woke = await threads.wait(w.seen, Math.max(0, w.untilMs - now()));
      step = gen.next(woke);
    }
    return step.value;
  } finally {
    threads.end();
  }
}
