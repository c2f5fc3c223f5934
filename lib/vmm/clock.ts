// The machine's clock: host monotonic time plus the idle time the loop skipped. When a halted guest
// waits for a timer, the loop jumps the clock to the timer's deadline instead of sleeping.

import type { Clock } from "../devices/device.js";

export class MachineClock implements Clock {
  readonly #origin = performance.now();
  #skippedNs = 0;

  nowNs(): number {
    return (performance.now() - this.#origin) * 1e6 + this.#skippedNs;
  }

  /** Moves guest time forward to `targetNs` if it is in the future. */
  advanceTo(targetNs: number): void {
    const now = this.nowNs();
    if (targetNs > now) this.#skippedNs += targetNs - now;
  }
}
