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

export class MachineClock implements GuestClock {
  readonly #origin = performance.now();
  #skippedNs = 0;

  nowNs(): number {
    return (performance.now() - this.#origin) * 1e6 + this.#skippedNs;
  }

  advanceTo(targetNs: number): void {
    const now = this.nowNs();
    if (targetNs > now) this.#skippedNs += targetNs - now;
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
