// The machine's clock. By default host monotonic time plus the idle time the loop skipped: when a
// halted guest waits for a timer, the loop jumps the clock to the timer's deadline instead of
// sleeping. A deterministic machine counts time in guest instructions instead (InstructionClock),
// so that timers fire at the same instruction of every run.

import type { Clock } from "../devices/device.js";

/** What the machine needs of its clock: the time devices and the TSC see, and idle skips. */
export interface GuestClock extends Clock {
  /** Moves guest time forward to `targetNs` if it is in the future. */
  advanceTo(targetNs: number): void;
}

/** What a MachineClock on another thread needs to show the same time (MachineClock.share). */
export interface SharedClockState {
  /** performance.timeOrigin + performance.now() when the clock started */
  readonly originEpochMs: number;
  /** one float64: the idle time skipped so far, in ns */
  readonly skipped: SharedArrayBuffer;
}

export class MachineClock implements GuestClock {
  /** the start in this thread's performance.now() time (threads' time origins differ) */
  readonly #origin: number;
  readonly #state: SharedClockState;
  readonly #skipped: Float64Array;

  /** A new clock, or (with `shared`) the same clock as another thread's. */
  constructor(shared?: SharedClockState) {
    this.#state = shared ?? {
      originEpochMs: performance.timeOrigin + performance.now(),
      skipped: new SharedArrayBuffer(8),
    };
    this.#origin = this.#state.originEpochMs - performance.timeOrigin;
    this.#skipped = new Float64Array(this.#state.skipped);
  }

  /** what a vCPU thread needs to read this clock (new MachineClock(state) there) */
  share(): SharedClockState {
    return this.#state;
  }

  nowNs(): number {
    return (performance.now() - this.#origin) * 1e6 + this.#skipped[0]!;
  }

  advanceTo(targetNs: number): void {
    const now = this.nowNs();
    if (targetNs > now) this.#skipped[0] = this.#skipped[0]! + (targetNs - now);
  }
}

/**
 * Guest time of deterministic machines: each instruction retired by any vCPU (in the unit of
 * instruction budgets: exceptions, interrupts and REP iterations count too) is one nanosecond, as
 * QEMU's -icount shift=0. Host time never enters it.
 */
export const NS_PER_INSTRUCTION = 1;

export class InstructionClock implements GuestClock {
  #skippedNs = 0;

  /** `retired`: instructions all vCPUs have retired so far */
  constructor(readonly retired: () => number) {}

  nowNs(): number {
    return this.retired() * NS_PER_INSTRUCTION + this.#skippedNs;
  }

  advanceTo(targetNs: number): void {
    const now = this.nowNs();
    if (targetNs > now) this.#skippedNs += targetNs - now;
  }

  /** instructions until guest time reaches `targetNs` (<= 0: it has; Infinity for Infinity) */
  instructionsUntil(targetNs: number): number {
    return Math.ceil((targetNs - this.nowNs()) / NS_PER_INSTRUCTION);
  }
}
