// The doorbell of a machine's vCPU threads (KVM's, kvm-threads.ts; the soft backend's,
// backends/soft/threads.ts): one shared word every thread bumps after an exit, so that the loop's
// thread waits for an exit of any vCPU with one wait (loop-threads.ts), blocking or not.

import { waitForChange, waitForChangeSync } from "./wait-word.js";

export abstract class DoorbellThreads {
  readonly #bell: Int32Array;
  #keepAlive: NodeJS.Timeout | undefined;

  constructor(bell: Int32Array) {
    this.#bell = bell;
  }

  begin(): void {
    // a pending Atomics.waitAsync does not keep Node alive
    this.#keepAlive ??= setInterval(() => {}, 1 << 30);
  }
  end(): void {
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
  }
  bell(): number {
    return Atomics.load(this.#bell, 0);
  }
  waitSync(seen: number, ms: number): boolean {
    return waitForChangeSync(this.#bell, 0, seen, ms);
  }
  wait(seen: number, ms: number): Promise<boolean> {
    return waitForChange(this.#bell, 0, seen, ms);
  }
}
